//! Issues N certificates against a local Pebble (started here, Debian package `pebble`) and
//! prints wall time, per-certificate median and peak RSS.
//!
//! ```text
//! cargo run --release --example issue_bench -- --count 20 --concurrency 20
//! ```
//! Pebble runs with `PEBBLE_VA_NOSLEEP=1`, no badNonce injection and no authorization
//! reuse, so every certificate pays for a full order. Reference figures for lego, certbot
//! and Pebble's own floor are in `../shared/reference/pebble.md`.

use certkeeper::source::acme::testing::{bench_issue, Pebble, PebbleOptions};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let count = arg(&args, "--count", 20);
    let concurrency = arg(&args, "--concurrency", count.max(1));
    let pebble = Pebble::start(PebbleOptions {
        quiet: true,
        ..Default::default()
    });
    match bench_issue(&pebble, count, concurrency).await {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("benchmark failed: {error}\n{}", pebble.logs());
            std::process::ExitCode::FAILURE
        }
    }
}
