//! The `certkeeper` command: parse → load and validate config (exit 78 on error) → build →
//! run → drain. Exit codes follow sysexits(3): 0 ok, 1 failure, 64 usage, 69 unavailable,
//! 70 internal, 74 I/O, 78 configuration.

use anyhow::Context;
use certkeeper::config;
use certkeeper::control::ControlRequest;
use certkeeper::telemetry::logging::{self, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const EX_USAGE: u8 = 64;
const EX_SOFTWARE: u8 = 70;
const EX_IOERR: u8 = 74;
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "certkeeper",
    version,
    about = "Keeps TLS certificates valid, deployed and compliant across cloud services"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "CERTKEEPER_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log format: human on a terminal, JSON otherwise, unless set.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    log_format: LogFormat,
    /// Log level or filter (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: obtain, deploy and verify certificates, enforce policies.
    Run,
    /// Validate the configuration and exit (0 valid, 78 invalid).
    Check,
    /// Show certificates and targets from the state directory.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the cloud simulator (Alibaba, Huawei, QingCloud APIs) on a loopback port.
    Sim {
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: std::net::SocketAddr,
        /// Seed file (TOML) with accounts and resources; see config/sim-seed.example.toml.
        #[arg(long)]
        seed: Option<PathBuf>,
    },
    /// Run the offline demo: the simulator plus the daemon rolling a certificate out to a
    /// small simulated fleet and enforcing both policies.
    Demo {
        /// Where the demo writes its config, state and files.
        #[arg(long, default_value = "certkeeper-demo")]
        directory: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics_listen: String,
        /// How many simulated CDN domains to roll out to.
        #[arg(long, default_value_t = 20)]
        cdn_domains: usize,
        /// Exit once everything has converged instead of serving until Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Read every target's and policy resource's live state and print what a pass would
    /// change. Writes nothing.
    Plan {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Obtain a new version of CERTIFICATE now and deploy it (through the running daemon,
    /// else in this process).
    Renew {
        /// The `[[certificate]]` name.
        certificate: String,
    },
    /// Read TARGET's live state now and deploy the newest version if it differs, ignoring
    /// any backoff (through the running daemon, else in this process).
    Deploy {
        /// The `[[target]]` name.
        target: String,
    },
    /// Exit 0 when the running daemon's /healthz answers 200 (container HEALTHCHECK).
    Healthcheck,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let hardened = certkeeper::process::harden();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => EX_USAGE,
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    logging::init(cli.log_format, &cli.log_level);
    if let Err(error) = hardened {
        tracing::warn!(error = %error, "cannot mark the process non-dumpable; a core dump could hold keys");
    }
    match cli.command {
        Command::Version => {
            println!("certkeeper {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check => check(&cli.config),
        Command::Healthcheck => match load_config(&cli.config) {
            Ok(loaded) => report(healthcheck(&loaded.config.daemon.metrics_listen), 1),
            Err(code) => code,
        },
        Command::Run => match load_config(&cli.config) {
            Ok(loaded) => {
                let runtime = match tokio::runtime::Runtime::new() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        eprintln!("certkeeper: starting the runtime: {error}");
                        return ExitCode::from(EX_SOFTWARE);
                    }
                };
                report(
                    runtime.block_on(certkeeper::app::run(cli.config.clone(), loaded)),
                    EX_SOFTWARE,
                )
            }
            Err(code) => code,
        },
        Command::Status { json } => match load_config(&cli.config) {
            Ok(loaded) => {
                let result =
                    certkeeper::status::print(&loaded.config, json, &mut std::io::stdout().lock());
                report(result.map_err(anyhow::Error::from), EX_IOERR)
            }
            Err(code) => code,
        },
        Command::Demo {
            directory,
            metrics_listen,
            cdn_domains,
            once,
        } => {
            let result = tokio::runtime::Runtime::new()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(certkeeper::demo::run(
                        &directory,
                        &metrics_listen,
                        cdn_domains,
                        once,
                    ))
                });
            report(result, EX_SOFTWARE)
        }
        Command::Sim { listen, seed } => report(run_sim(listen, seed), EX_SOFTWARE),
        Command::Plan { json } => match load_config(&cli.config) {
            Ok(loaded) => report(plan(&loaded.config, json), EX_SOFTWARE),
            Err(code) => code,
        },
        Command::Renew { certificate } => {
            manual(&cli.config, ControlRequest::Renew { certificate })
        }
        Command::Deploy { target } => manual(&cli.config, ControlRequest::Deploy { target }),
    }
}

fn plan(config: &config::Config, json: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    use std::io::IsTerminal;
    let view = runtime.block_on(certkeeper::plan::plan(
        config,
        &config::credentials::ProcessEnvironment,
        std::io::stderr().is_terminal(),
    ))?;
    certkeeper::plan::print(&view, json, &mut std::io::stdout().lock())?;
    Ok(())
}

/// `renew` / `deploy`: to the running daemon over its socket, else one pass in-process.
/// Exits 0 when the work succeeded, 1 when it failed, 64 for an unknown name.
fn manual(path: &std::path::Path, request: ControlRequest) -> ExitCode {
    let loaded = match load_config(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let state_dir = loaded.config.daemon.state_dir.clone();
    let answer = match certkeeper::control::send(&state_dir, &request) {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => {
            eprintln!("certkeeper: no daemon is running; doing it in this process");
            tokio::runtime::Runtime::new()
                .context("starting the runtime")
                .and_then(|runtime| runtime.block_on(certkeeper::app::run_manual(loaded, request)))
        }
        Err(error) => Err(error.into()),
    };
    match answer {
        Ok(answer) if answer.ok => {
            println!("{}", answer.message);
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!("certkeeper: {}", answer.message);
            if answer.unknown_name {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("certkeeper: {error:#}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

fn report(result: anyhow::Result<()>, code: u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("certkeeper: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<config::Loaded, ExitCode> {
    match config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(loaded)
        }
        Err(error) => {
            eprintln!("{error}");
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match load_config(path) {
        Ok(loaded) => {
            let config = &loaded.config;
            println!(
                "{}: ok ({} certificates, {} targets, {} policies, {} credentials)",
                path.display(),
                config.certificates.len(),
                config.targets.len(),
                config.policies.len(),
                config.credentials.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// GET /healthz on the metrics listener with a short timeout; no HTTP client needed.
fn healthcheck(listen: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let address: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("metrics_listen `{listen}`"))?;
    let timeout = std::time::Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.take(4096).read_to_string(&mut answer)?;
    match answer.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(status) => anyhow::bail!("/healthz answered {status}"),
        None => anyhow::bail!("/healthz gave no HTTP answer"),
    }
}

fn run_sim(listen: std::net::SocketAddr, seed: Option<PathBuf>) -> anyhow::Result<()> {
    use certkeeper::cloud::sim::{serve, SimSeed, Simulator};
    let seed = match seed {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading seed {}", path.display()))?;
            SimSeed::from_toml(&text).with_context(|| format!("parsing seed {}", path.display()))?
        }
        None => SimSeed::default(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let address = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%address, "simulator listening");
        // Tests and scripts read this line to learn the port when listening on port 0.
        println!("listening on http://{address}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(
            listener,
            std::sync::Arc::new(Simulator::new(seed)),
            shutdown,
        )
        .await
        .context("serving")
    })
}
