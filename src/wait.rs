//! `certkeeper wait --certificate NAME`: blocks until the store holds a version of the
//! certificate (and, with `--deployed`, every target it deploys to serves that version),
//! for init containers and startup ordering. Read-only: it polls the store the daemon
//! writes, so it works beside a running daemon and before the store exists.

use certkeeper::config::Config;
use certkeeper::store::sqlite::SqliteStore;
use certkeeper::store::{status_report, DeployStatus, StatusReport, StoreError};
use std::time::{Duration, Instant};

/// How often the store is read again.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How `wait` ended when the certificate is not ready.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("no [[certificate]] named `{0}` in the config")]
    UnknownCertificate(String),
    #[error("timed out after {waited:?}: {what}")]
    TimedOut { waited: Duration, what: String },
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

/// Polls until `certificate` is ready or `timeout` passed; prints the ready version.
pub fn wait(
    config: &Config,
    certificate: &str,
    deployed: bool,
    timeout: Duration,
) -> Result<String, WaitError> {
    let targets = config
        .certificates
        .iter()
        .find(|configured| configured.name == certificate)
        .map(|configured| configured.deploy_to.clone())
        .ok_or_else(|| WaitError::UnknownCertificate(certificate.to_owned()))?;
    let started = Instant::now();
    loop {
        let report = match SqliteStore::open_existing(&config.daemon.state_dir)? {
            Some(store) => status_report(&store)?,
            None => StatusReport::default(),
        };
        let missing = match readiness(&report, certificate, deployed.then_some(&targets[..])) {
            Ok(ready) => return Ok(ready),
            Err(missing) => missing,
        };
        if started.elapsed() >= timeout {
            return Err(WaitError::TimedOut {
                waited: timeout,
                what: missing,
            });
        }
        std::thread::sleep(POLL_INTERVAL.min(timeout.saturating_sub(started.elapsed())));
    }
}

/// `Ok(what is ready)` or `Err(what is still missing)`.
fn readiness(
    report: &StatusReport,
    certificate: &str,
    targets: Option<&[String]>,
) -> Result<String, String> {
    let version = report
        .certificates
        .iter()
        .find(|status| status.name == certificate)
        .ok_or_else(|| format!("{certificate} has no stored version yet"))?;
    let Some(targets) = targets else {
        return Ok(format!(
            "{certificate}: version {} stored",
            version.fingerprint
        ));
    };
    let waiting: Vec<String> = targets
        .iter()
        .filter_map(|target| {
            let row = report
                .deployments
                .iter()
                .find(|row| &row.target == target && row.certificate == certificate);
            match row {
                Some(row)
                    if row.status == DeployStatus::InSync
                        && row.observed_fingerprint.as_deref()
                            == Some(version.fingerprint.as_str()) =>
                {
                    None
                }
                Some(row) => Some(format!("{target} ({})", status_word(row.status))),
                None => Some(format!("{target} (not deployed yet)")),
            }
        })
        .collect();
    if waiting.is_empty() {
        Ok(format!(
            "{certificate}: version {} deployed to {} target(s)",
            version.fingerprint,
            targets.len()
        ))
    } else {
        Err(format!(
            "{certificate}: version {} not yet on {}",
            version.fingerprint,
            waiting.join(", ")
        ))
    }
}

fn status_word(status: DeployStatus) -> &'static str {
    match status {
        DeployStatus::InSync => "in sync with another version",
        DeployStatus::Pending => "pending",
        DeployStatus::Deploying => "deploying",
        DeployStatus::Failed => "failed",
        DeployStatus::Parked => "parked",
    }
}
