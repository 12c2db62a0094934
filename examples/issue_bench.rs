//! Issues N certificates against a local Pebble (started here, Debian package `pebble`) and
//! prints wall time, per-certificate median and peak RSS; then, where `lego` and `certbot`
//! are installed, issues the same number with each of them on the same Pebble (one after
//! another, as they work) and prints the ratios.
//!
//! ```text
//! cargo run --release --example issue_bench -- --count 20 [--concurrency 20] [--compare-count 20] [--no-compare]
//! ```
//! Pebble runs with `PEBBLE_VA_NOSLEEP=1`, no badNonce injection and no authorization
//! reuse, so every certificate pays for a full order. Reference figures for lego, certbot
//! and Pebble's own floor are in `../shared/reference/pebble.md`. Peak RSS of the other
//! clients comes from `/usr/bin/time` when it is installed.

use certkeeper::source::acme::testing::{bench_issue, BenchReport, Pebble, PebbleOptions};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn installed(binary: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(binary).is_file())
}

/// One external client's run: per-certificate times and the largest child RSS.
struct External {
    times: Vec<Duration>,
    peak_rss_kib: Option<u64>,
    failures: usize,
    last_error: Option<String>,
}

impl External {
    fn median(&self) -> Duration {
        let mut times = self.times.clone();
        times.sort();
        times.get(times.len() / 2).copied().unwrap_or_default()
    }
}

/// Runs `command` once per certificate (under `/usr/bin/time -f %M` when available).
fn run_external(count: usize, work: &Path, mut command: impl FnMut(usize) -> Command) -> External {
    let timer = Path::new("/usr/bin/time").is_file();
    let mut report = External {
        times: Vec::new(),
        peak_rss_kib: None,
        failures: 0,
        last_error: None,
    };
    for index in 0..count {
        let inner = command(index);
        let rss_file = work.join(format!("rss-{index}"));
        let mut cmd = if timer {
            let mut wrapped = Command::new("/usr/bin/time");
            wrapped.arg("-f").arg("%M").arg("-o").arg(&rss_file);
            wrapped.arg(inner.get_program()).args(inner.get_args());
            for (key, value) in inner.get_envs() {
                if let Some(value) = value {
                    wrapped.env(key, value);
                }
            }
            wrapped
        } else {
            inner
        };
        let started = Instant::now();
        match cmd.output() {
            Ok(output) if output.status.success() => report.times.push(started.elapsed()),
            Ok(output) => {
                report.failures += 1;
                let text = String::from_utf8_lossy(&output.stderr);
                report.last_error =
                    Some(text.lines().rev().take(5).collect::<Vec<_>>().join(" | "));
            }
            Err(error) => {
                report.failures += 1;
                report.last_error = Some(error.to_string());
            }
        }
        if let Some(kib) = std::fs::read_to_string(&rss_file).ok().and_then(|text| {
            text.lines()
                .last()
                .and_then(|l| l.trim().parse::<u64>().ok())
        }) {
            report.peak_rss_kib = Some(report.peak_rss_kib.unwrap_or(0).max(kib));
        }
    }
    report
}

/// Prints a client's figures and its ratios to ours: time per certificate (wall / count)
/// against our concurrent run, and the per-certificate median against our one-at-a-time run.
fn print_external(
    name: &str,
    external: &External,
    ours: &BenchReport,
    ours_sequential: &BenchReport,
) {
    let wall: Duration = external.times.iter().sum();
    let share = |wall: Duration, count: usize| wall.as_secs_f64() / count.max(1) as f64;
    println!(
        "{name}: {} certificates one after another ({} failed): wall {:.3} s, per-certificate median {:.3} s, peak RSS {} | vs certkeeper: time per certificate x{:.1}, median x{:.1} (one at a time), peak RSS x{}",
        external.times.len(),
        external.failures,
        wall.as_secs_f64(),
        external.median().as_secs_f64(),
        external
            .peak_rss_kib
            .map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0))
            .unwrap_or_else(|| "unknown".into()),
        share(wall, external.times.len()) / share(ours.wall, ours.count).max(1e-9),
        external.median().as_secs_f64() / ours_sequential.median().as_secs_f64().max(1e-9),
        // Ours is the whole benchmark process (VmHWM, responder included); theirs the
        // largest single run.
        match (external.peak_rss_kib, ours.peak_rss_kib) {
            (Some(theirs), Some(ours)) => format!("{:.2}", theirs as f64 / ours.max(1) as f64),
            _ => "?".into(),
        },
    );
    if let Some(error) = &external.last_error {
        println!("{name}: last failure: {error}");
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let count = arg(&args, "--count", 20);
    let concurrency = arg(&args, "--concurrency", count.max(1));
    let compare_count = arg(&args, "--compare-count", count);
    let compare = !args.iter().any(|a| a == "--no-compare");
    let pebble = Pebble::start(PebbleOptions {
        quiet: true,
        ..Default::default()
    });
    let report = match bench_issue(&pebble, count, concurrency).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("benchmark failed: {error}\n{}", pebble.logs());
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{report}");
    // The responder of the previous run is aborted asynchronously; let it release the port.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sequential = match bench_issue(&pebble, count, 1).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("benchmark failed: {error}\n{}", pebble.logs());
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{sequential}");
    if !compare {
        return std::process::ExitCode::SUCCESS;
    }
    // The HTTP-01 port is free again: bench_issue dropped its responder.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ca_file = pebble.dir.join("ca.pem");
    let http = format!("127.0.0.1:{}", pebble.http_port);
    if installed("lego") {
        let work = pebble.dir.join("lego");
        let _ = std::fs::create_dir_all(&work);
        let external = run_external(compare_count, &work, |index| {
            let mut cmd = Command::new("lego");
            cmd.env("LEGO_CA_CERTIFICATES", &ca_file)
                .args(["--server", &pebble.directory, "--accept-tos"])
                .args([
                    "--email",
                    "bench@example.test",
                    "--http",
                    "--http.port",
                    &http,
                ])
                .arg("--path")
                .arg(&work)
                .args(["--domains", &format!("lego{index}.example.test"), "run"]);
            cmd
        });
        print_external("lego", &external, &report, &sequential);
    } else {
        println!("lego: not installed (apt-get install lego)");
    }
    if installed("certbot") {
        let work = pebble.dir.join("certbot");
        let _ = std::fs::create_dir_all(&work);
        let external = run_external(compare_count, &work, |index| {
            let mut cmd = Command::new("certbot");
            cmd.env("REQUESTS_CA_BUNDLE", &ca_file)
                .args([
                    "certonly",
                    "--standalone",
                    "--non-interactive",
                    "--agree-tos",
                ])
                .args([
                    "--email",
                    "bench@example.test",
                    "--server",
                    &pebble.directory,
                ])
                .args(["--http-01-address", "127.0.0.1", "--http-01-port"])
                .arg(pebble.http_port.to_string())
                .arg("--config-dir")
                .arg(work.join("config"))
                .arg("--work-dir")
                .arg(work.join("work"))
                .arg("--logs-dir")
                .arg(work.join("logs"))
                .args(["-d", &format!("certbot{index}.example.test")]);
            cmd
        });
        print_external("certbot", &external, &report, &sequential);
    } else {
        println!("certbot: not installed (apt-get install certbot)");
    }
    std::process::ExitCode::SUCCESS
}
