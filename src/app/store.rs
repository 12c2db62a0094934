//! The daemon's state store around the loop: sealing it at start, its daily retention, and
//! the newest event id a manual request's answer is read after.

use super::{BuildError, StartError};
use crate::config::Config;
use crate::store::{StateStore, StoreError};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How often the daemon applies the store's retention (after the first pass, then daily).
pub(super) const RETENTION_INTERVAL: Duration = Duration::from_secs(86_400);

/// Prunes old events and certificate versions (README, "Retention"); a failure is logged
/// and retried a day later, since nothing depends on it.
pub(super) fn apply_retention(store: &dyn StateStore, config: &Config, now: OffsetDateTime) {
    let names = config.certificates.iter().map(|c| c.name.as_str());
    match crate::store::apply_retention(store, names, now) {
        Ok(pruned) if pruned != crate::store::Pruned::default() => tracing::info!(
            events = pruned.events,
            versions = pruned.versions,
            "pruned the store by its retention"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "pruning the store failed"),
    }
}

/// The id of the newest event (0 for none): what a manual request's pass appends comes
/// after it. A read failure gives 0, which at worst reports an older failure too.
pub(super) fn newest_event_id(store: &dyn StateStore) -> i64 {
    store
        .tail_events(1)
        .ok()
        .and_then(|events| events.last().map(|event| event.id))
        .unwrap_or(0)
}

/// The store behind its sealing layer (`store::seal::prepare`): a missing or wrong store
/// key is the configuration's fault (78), a sealed value that does not open the state's (74).
pub(super) fn seal_store(
    store: crate::store::sqlite::SqliteStore,
    key: Option<crate::store::seal::StoreKey>,
    state_dir: &std::path::Path,
) -> Result<Arc<dyn StateStore>, StartError> {
    let (store, survey) =
        crate::store::seal::prepare(Arc::new(store), key).map_err(|error| match error {
            StoreError::Sealing { ref source, .. } if source.is_config() => {
                StartError::Config(BuildError::Store(error))
            }
            error => StartError::StateDirectory {
                what: "opening the state store in",
                path: state_dir.to_owned(),
                source: Box::new(error),
            },
        })?;
    if survey.sealed_now > 0 {
        tracing::info!(
            sealed = survey.sealed_now,
            "sealed the plain-text keys of the state store"
        );
    }
    Ok(store)
}
