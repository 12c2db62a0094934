//! `certkeeper renew` / `deploy` when no daemon answers on the control socket: one pass in
//! this process, holding the state directory's lock, answered as the daemon would.

use super::store::{newest_event_id, seal_store};
use super::{build, source_store_for, BuildError, StartError};
use crate::config::{self, credentials::ProcessEnvironment};
use crate::control::{add_to, check_request, ControlRequest, ControlResponse};
use crate::engine::pass::{Daemon, Manual, Shutdown};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::Health;
use std::sync::Arc;

/// `certkeeper renew` / `certkeeper deploy` without a daemon: one pass in this process that
/// does the requested work (and whatever else is due), then the same answer the daemon
/// would give.
pub async fn run_manual(
    loaded: config::Loaded,
    request: ControlRequest,
) -> anyhow::Result<ControlResponse> {
    use anyhow::Context;
    let config = loaded.config;
    if let Err(refusal) = check_request(&config, &request) {
        return Ok(refusal);
    }
    if config.store.backend == crate::config::store::StoreBackend::Postgres {
        // A pass here would race the cluster's leader; only a daemon that leads may deploy.
        return Ok(ControlResponse::failed(
            "no daemon is running here, and with the shared PostgreSQL store only the leading \
             daemon renews or deploys: run this where a certkeeper daemon runs",
        ));
    }
    let metrics = Metrics::new().context("setting up metrics")?;
    let store = crate::store::sqlite::SqliteStore::open(&config.daemon.state_dir)
        .context("opening the state store")?;
    // A daemon whose socket we could not reach still owns the directory: do not race it.
    let _state_lock = crate::fsutil::lock_state_dir(&config.daemon.state_dir)
        .context("locking the state directory")?;
    let store_key = crate::store::seal::configured_key(&config.store, &ProcessEnvironment)
        .map_err(|error| StartError::Config(BuildError::Component(error.to_string())))?;
    let store = seal_store(store, store_key, &config.daemon.state_dir)?;
    let source_store = source_store_for(&store, &config);
    let components = build(
        &config,
        source_store,
        &ProcessEnvironment,
        Arc::new(metrics.clone()),
    )
    .await
    .context("building components")?;
    let since_event = newest_event_id(store.as_ref());
    let daemon = Daemon::new(store, metrics, Health::new());
    let mut manual = Manual::default();
    add_to(&mut manual, &request);
    daemon
        .reconcile(&components, false, &manual, &Shutdown::never())
        .await
        .context("running the pass")?;
    Ok(crate::control::answer_request(
        daemon.store.as_ref(),
        &components,
        &request,
        since_event,
    ))
}
