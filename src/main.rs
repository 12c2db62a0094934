//! The `certkeeper` command: parse → load and validate config (exit 78 on error) → build →
//! run → drain. Exit codes follow sysexits(3): 0 ok, 1 failure, 64 usage, 69 unavailable,
//! 70 internal, 74 I/O, 78 configuration.

#![forbid(unsafe_code)]

use anyhow::Context;
use certkeeper::config;
use certkeeper::control::ControlRequest;
use certkeeper::telemetry::logging::{self, LogFormat};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod cli_docs;
mod store_cli;
mod wait;

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
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
    /// Validate the configuration and what `run` will need (secrets, certificate files, a
    /// writable state directory); exit 0 when all is well, 78 otherwise.
    Check {
        /// Validate the file only: read no secret, file or directory (CI linting).
        #[arg(long)]
        offline: bool,
    },
    /// Show certificates and targets from the state directory.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the cloud simulator (Alibaba, Huawei, QingCloud APIs) on a loopback port.
    #[cfg(feature = "sim")]
    Sim {
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: std::net::SocketAddr,
        /// Seed file (TOML) with accounts and resources; see config/sim-seed.example.toml.
        #[arg(long)]
        seed: Option<PathBuf>,
    },
    /// Run the offline demo: the simulator plus the daemon rolling a certificate out to a
    /// small simulated fleet and enforcing both policies.
    #[cfg(feature = "sim")]
    Demo {
        /// Where the demo writes its config, state and files (relative to the current
        /// directory unless absolute).
        #[arg(long, default_value = "certkeeper-demo")]
        directory: PathBuf,
        /// Where the demo daemon serves /metrics.
        #[arg(
            long,
            env = "CERTKEEPER_DEMO_METRICS_LISTEN",
            default_value = "127.0.0.1:9464"
        )]
        metrics_listen: String,
        /// How many simulated CDN domains to roll out to.
        #[arg(long, default_value_t = 20)]
        cdn_domains: usize,
        /// Exit once everything has converged instead of serving until Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Read every target's and policy resource's live state and print what a pass would
    /// change. Writes nothing. Exits 0 when nothing would change, 2 when a pass would
    /// change something, 1 when something could not be read (like terraform's
    /// `-detailed-exitcode`).
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
    /// Ask the running daemon to re-read its configuration and wait for its answer: exit 0
    /// when it took the new file, 1 when it refused it (the old one keeps running), 69 when
    /// no daemon answers. For the unit's `ExecReload=`.
    Reload,
    /// Show the event log from the state directory (read-only, safe next to the daemon):
    /// `TIME  KIND  SUBJECT  MESSAGE` per line, oldest first.
    Events {
        /// Only events since this long ago (`24h`, `7d`) or this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events of this certificate and of the targets it deploys to.
        #[arg(long)]
        certificate: Option<String>,
        /// Only events of this target.
        #[arg(long)]
        target: Option<String>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Keep printing new events as they are logged, until Ctrl-C or SIGTERM.
        #[arg(short, long)]
        follow: bool,
    },
    /// Exit 0 when the running daemon's /healthz answers 200 (container HEALTHCHECK).
    Healthcheck,
    /// Print the version.
    Version,
    /// Wait until the store holds a version of CERTIFICATE (with --deployed: until every
    /// target it deploys to serves it), for init containers and startup ordering. Read-only.
    /// Exits 0 when ready, 1 on timeout, 64 for an unknown certificate.
    Wait {
        /// The `[[certificate]]` name.
        #[arg(long)]
        certificate: String,
        /// Also wait until every target in its deploy_to serves that version.
        #[arg(long)]
        deployed: bool,
        /// Give up after this long (`90s`, `5m`, `1h`).
        #[arg(long, default_value = "5m", value_parser = config::duration::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Back up, restore or rekey the state store (README, "Backup and restore").
    Store {
        #[command(subcommand)]
        action: store_cli::StoreAction,
    },
    /// Write man pages or shell completions (for packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

/// What `certkeeper generate` writes.
#[derive(Subcommand)]
enum Generate {
    /// Write certkeeper.1 and certkeeper.toml.5 into DIRECTORY.
    Man { directory: PathBuf },
    /// Print the completion script for SHELL.
    Completions { shell: clap_complete::Shell },
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
        Command::Check { offline } => check(&cli.config, offline),
        Command::Healthcheck => match load_config(&cli.config) {
            Ok(loaded) => report(healthcheck(&loaded.config.daemon.metrics_listen), 1),
            Err(code) => code,
        },
        Command::Run => match load_config(&cli.config) {
            Ok(loaded) => {
                // Before the runtime starts threads: see `take_environment_secrets`.
                let taken = config::credentials::take_environment_secrets(&loaded.config);
                tracing::debug!(variables = ?taken, "secrets taken out of the environment");
                let runtime = match tokio::runtime::Runtime::new() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        eprintln!("certkeeper: starting the runtime: {error}");
                        return ExitCode::from(EX_SOFTWARE);
                    }
                };
                match runtime.block_on(certkeeper::app::run(cli.config.clone(), loaded)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        eprintln!("certkeeper: {}", describe(&error));
                        ExitCode::from(run_exit_code(&error))
                    }
                }
            }
            Err(code) => code,
        },
        Command::Status { json } => match load_config(&cli.config) {
            Ok(loaded) => {
                match certkeeper::status::print(&loaded.config, json, &mut std::io::stdout().lock())
                {
                    // A reader that went away (`| head`) is not an error.
                    Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
                    result => report(result.map_err(anyhow::Error::from), EX_IOERR),
                }
            }
            Err(code) => code,
        },
        #[cfg(feature = "sim")]
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
        #[cfg(feature = "sim")]
        Command::Sim { listen, seed } => report(run_sim(listen, seed), EX_SOFTWARE),
        Command::Plan { json } => match load_config(&cli.config) {
            Ok(loaded) => match plan(&loaded.config, json) {
                Ok(code) => ExitCode::from(code),
                Err(error) => {
                    eprintln!("certkeeper: {}", describe(&error));
                    ExitCode::from(certkeeper::plan::EXIT_UNREADABLE)
                }
            },
            Err(code) => code,
        },
        Command::Events {
            since,
            certificate,
            target,
            json,
            follow,
        } => match load_config(&cli.config) {
            Ok(loaded) => events(
                &loaded.config,
                since.as_deref(),
                certificate.as_deref(),
                target.as_deref(),
                json,
                follow,
            ),
            Err(code) => code,
        },
        Command::Renew { certificate } => {
            manual(&cli.config, ControlRequest::Renew { certificate })
        }
        Command::Deploy { target } => manual(&cli.config, ControlRequest::Deploy { target }),
        Command::Reload => reload(&cli.config),
        Command::Wait {
            certificate,
            deployed,
            timeout,
        } => match load_config(&cli.config) {
            Ok(loaded) => wait_for_certificate(&loaded.config, &certificate, deployed, timeout),
            Err(code) => code,
        },
        Command::Store { action } => match load_config(&cli.config) {
            Ok(loaded) => store_cli::run(&loaded.config, action),
            Err(code) => code,
        },
        Command::Generate { what } => generate(what),
    }
}

/// Prints the plan and returns its exit code (0 no change, 2 changes, 1 unreadable). A
/// running daemon makes it with its own clients, so the plan's reads spend the daemon's
/// token buckets; without one (or with a daemon that cannot answer it) it is made here.
fn plan(config: &config::Config, json: bool) -> anyhow::Result<u8> {
    let request = ControlRequest::Plan { json };
    match certkeeper::control::send(&config.daemon.state_dir, &request) {
        Ok(Some(answer)) => {
            if let Some(code) = answer.exit_code {
                if answer.ok {
                    use std::io::Write;
                    std::io::stdout()
                        .lock()
                        .write_all(answer.message.as_bytes())?;
                } else {
                    eprintln!("certkeeper: {}", answer.message);
                }
                return Ok(code);
            }
            // A daemon from before `plan` was a request.
            eprintln!(
                "certkeeper: the daemon cannot plan ({}); planning in this process",
                answer.message
            );
        }
        Ok(None) => {}
        Err(error) => eprintln!("certkeeper: {error}; planning in this process"),
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    use std::io::IsTerminal;
    let view = runtime.block_on(certkeeper::plan::plan(
        config,
        &config::credentials::ProcessEnvironment,
        std::io::stderr().is_terminal(),
    ))?;
    certkeeper::plan::print(&view, json, &mut std::io::stdout().lock())?;
    Ok(view.exit_code())
}

/// `events`: 0 when printed (or followed until a signal), 64 for a bad filter, 74 when the
/// store cannot be read.
fn events(
    config: &config::Config,
    since: Option<&str>,
    certificate: Option<&str>,
    target: Option<&str>,
    json: bool,
    follow: bool,
) -> ExitCode {
    use certkeeper::status::events::{self, EventFilter, EventsError};
    let now = time::OffsetDateTime::now_utc();
    let result = EventFilter::new(config, since, certificate, target, now).and_then(|filter| {
        let runtime = tokio::runtime::Runtime::new().map_err(EventsError::Runtime)?;
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut terminate = signal(SignalKind::terminate()).map_err(EventsError::Runtime)?;
            let stop = async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            };
            let mut out = std::io::stdout().lock();
            events::run(config, &filter, json, follow, &mut out, stop).await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`| head`) is not an error.
        Err(EventsError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("certkeeper: {error}");
            ExitCode::from(match error {
                EventsError::Usage(_) => EX_USAGE,
                _ => EX_IOERR,
            })
        }
    }
}

/// `renew` / `deploy`: to the running daemon over its socket, else one pass in-process; both
/// wait for the pass that does the work. Prints the newest version and each target's
/// outcome; exits 0 when everything succeeded, 1 when the obtain failed, the files were
/// rejected or a deploy failed (or is parked), 64 for an unknown name.
/// `reload`: the daemon re-reads the file and answers; never done in-process. A file that
/// does not even load is refused here with the same message the daemon would log.
fn reload(path: &std::path::Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            eprintln!("certkeeper: reload refused; the running daemon keeps its configuration");
            return ExitCode::FAILURE;
        }
    };
    match certkeeper::control::send(&loaded.config.daemon.state_dir, &ControlRequest::Reload) {
        Ok(Some(answer)) if answer.ok => {
            println!("{}", answer.message);
            ExitCode::SUCCESS
        }
        Ok(Some(answer)) => {
            eprintln!("certkeeper: {}", answer.message);
            ExitCode::FAILURE
        }
        Ok(None) => {
            eprintln!(
                "certkeeper: no daemon is running on {}",
                loaded.config.daemon.state_dir.display()
            );
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(error) if error.is_unavailable() => {
            eprintln!("certkeeper: {error}");
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(error) => {
            eprintln!("certkeeper: {error}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

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
        Err(error) if error.is_unavailable() => {
            eprintln!("certkeeper: {error}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
        Err(error) => Err(error.into()),
    };
    match answer {
        Ok(answer) if answer.ok => {
            println!("{}", answer.message);
            print_outcomes(&answer.outcomes);
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!("certkeeper: {}", answer.message);
            print_outcomes(&answer.outcomes);
            if answer.unknown_name {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("certkeeper: {}", describe(&error));
            // 78/74 when the in-process start was refused like `run` (a store key), else 70.
            ExitCode::from(run_exit_code(&error))
        }
    }
}

/// One line per target of a manual request: `  cdn-www: failed: auth Code: message`.
fn wait_for_certificate(
    config: &config::Config,
    certificate: &str,
    deployed: bool,
    timeout: std::time::Duration,
) -> ExitCode {
    match wait::wait(config, certificate, deployed, timeout) {
        Ok(ready) => {
            println!("{ready}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("certkeeper: {error}");
            ExitCode::from(match error {
                wait::WaitError::UnknownCertificate(_) => EX_USAGE,
                wait::WaitError::TimedOut { .. } => 1,
                wait::WaitError::Store(_) => EX_IOERR,
            })
        }
    }
}

fn generate(what: Generate) -> ExitCode {
    match what {
        Generate::Man { directory } => {
            let written = cli_docs::write_man_pages(Cli::command(), &directory)
                .with_context(|| format!("writing man pages into {}", directory.display()));
            report(written.map(|_| ()), EX_IOERR)
        }
        Generate::Completions { shell } => {
            cli_docs::write_completions(Cli::command(), shell, &mut std::io::stdout().lock());
            ExitCode::SUCCESS
        }
    }
}

fn print_outcomes(outcomes: &[certkeeper::control::TargetOutcome]) {
    for outcome in outcomes {
        println!("  {outcome}");
    }
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose text the line
/// already holds: several layers print their source inline as well as chaining it, and an
/// operator should read each reason once.
fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn report(result: anyhow::Result<()>, code: u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("certkeeper: {}", describe(&error));
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

/// The exit code of a failed `run` (sysexits): 78 when the config or a secret it names
/// cannot be used, 74 when the state directory cannot be opened or locked, 70 otherwise.
/// The unit's `RestartPreventExitStatus` lists the codes a restart cannot fix.
fn run_exit_code(error: &anyhow::Error) -> u8 {
    use certkeeper::app::StartError;
    match error.downcast_ref::<StartError>() {
        Some(StartError::Config(_)) => EX_CONFIG,
        Some(StartError::StateDirectory { .. }) => EX_IOERR,
        Some(StartError::Internal(_)) | None => EX_SOFTWARE,
    }
}

fn check(path: &std::path::Path, offline: bool) -> ExitCode {
    match config::check(path, &config::credentials::ProcessEnvironment, offline) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            let config = &loaded.config;
            // The state store against the configured store key (sealed, plain, wrong key).
            let store_line = if offline {
                Ok(None)
            } else {
                store_cli::check(config)
            };
            let store_line = match store_line {
                Ok(line) => line,
                Err(message) => {
                    eprintln!("{}: {message}", path.display());
                    return ExitCode::from(EX_CONFIG);
                }
            };
            println!(
                "{}: ok ({} certificates, {} targets, {} policies, {} credentials){}",
                path.display(),
                config.certificates.len(),
                config.targets.len(),
                config.policies.len(),
                config.credentials.len(),
                if offline {
                    "; secrets, files and the state directory not checked (--offline)"
                } else {
                    ""
                }
            );
            if let Some(line) = store_line {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(EX_CONFIG)
        }
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
        Some(status) => {
            // The body says why (e.g. which budget a stalled pass exceeded).
            let reason = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
            anyhow::bail!("/healthz answered {status}: {reason}")
        }
        None => anyhow::bail!("/healthz gave no HTTP answer"),
    }
}

#[cfg(feature = "sim")]
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

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open /state: {source}")]
    struct Inline {
        source: std::io::Error,
    }

    #[test]
    fn describe_names_each_reason_once() {
        let error = anyhow::Error::new(Inline {
            source: std::io::Error::other("mode 1777"),
        })
        .context("opening the state store");
        assert_eq!(
            describe(&error),
            "opening the state store: cannot open /state: mode 1777"
        );
    }
}
