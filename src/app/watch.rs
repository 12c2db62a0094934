//! What the loop watches besides its timers: the certificate files of file sources, the
//! secrets its accounts name (a replaced file counts like a reload that changed it), and
//! the scan schedule.

use crate::config::credentials::{SecretEnvironment, SecretFingerprint};
use crate::config::Config;
use crate::engine::pass::{CertificateSource, Components};
use crate::engine::schedule::cron_after;
use crate::source::file::FileEvent;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Watches the file sources of `components` until `stop` turns true, forwarding what they
/// find, tagged with the certificate's name, to the loop.
pub(super) fn watch_files(
    components: &Components,
    events: &tokio::sync::mpsc::UnboundedSender<(String, FileEvent)>,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    for entry in &components.certificates {
        let CertificateSource::Files(files) = &entry.source else {
            continue;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (files, name, events) = (files.clone(), entry.config.name.clone(), events.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = files.run(tx, stopped).await {
                tracing::warn!(certificate = %name, error = %error, "cannot watch the certificate files; they are read on each pass");
            }
        });
        let name = entry.config.name.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if events.send((name.clone(), event)).is_err() {
                    return;
                }
            }
        });
    }
}

/// How often the daemon re-reads the secrets its accounts name, to notice a replaced file.
/// The files are small and bounded; a few reads every few seconds cost nothing.
pub(super) const SECRET_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The fingerprints of `config`'s account secrets as their files and environment hold them
/// now. An account whose secret cannot be read at this moment (a file being replaced
/// without a rename) keeps its `known` fingerprint: its calls fail and say why.
pub(super) fn secrets_now(
    config: &Config,
    environment: &dyn SecretEnvironment,
    known: &BTreeMap<String, SecretFingerprint>,
) -> BTreeMap<String, SecretFingerprint> {
    config
        .credentials
        .iter()
        .filter_map(|(name, credentials)| {
            let fingerprint = match credentials.resolve(name, environment) {
                Ok(resolved) => resolved.secret_fingerprint(),
                Err(error) => {
                    tracing::debug!(credentials = %name, error = %error, "re-reading a secret failed; checked again later");
                    known.get(name)?.clone()
                }
            };
            Some((name.clone(), fingerprint))
        })
        .collect()
}

pub(super) fn next_scan_time(config: &Config, now: OffsetDateTime) -> Option<OffsetDateTime> {
    cron_after(config.daemon.scan_schedule.cron(), now)
}
