//! The daemon's side of a cluster on the shared PostgreSQL store (docs/ha.md): opening the
//! store, the leadership, `renew` and `deploy` asked of a follower travelling to the leader
//! through the store's request queue (and the answer back), HTTP-01 answers in the store.

use super::StartError;
use crate::config::credentials::SecretEnvironment;
use crate::config::store::StoreBackend;
use crate::config::Config;
use crate::control::{ControlRequest, ControlResponse, REPLY_TIMEOUT};
use crate::store::lease::{Leadership, Round};
use crate::store::postgres::ConnectOptions;
use crate::store::{PostgresStore, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::Health;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The PostgreSQL store when `[store] backend = "postgres"` (connected and migrated), else
/// `None` (the SQLite file in the state directory).
pub(super) async fn open_shared_store(
    config: &Config,
    environment: &(dyn SecretEnvironment + Send + Sync),
) -> Result<Option<Arc<PostgresStore>>, StartError> {
    if config.store.backend != StoreBackend::Postgres {
        return Ok(None);
    }
    let options = ConnectOptions::from_config(&config.store, environment)
        .map_err(|error| StartError::Config(error.into()))?;
    let store = tokio::task::spawn_blocking(move || PostgresStore::open(&options))
        .await
        .map_err(|error| StartError::Internal(super::BuildError::Unavailable(error.to_string())))?
        .map_err(|error| match error {
            // Unreachable for now (a database host still booting): exit 70, which systemd
            // restarts; a store it cannot use (newer schema, bad URL) is 74, which it does not.
            StoreError::Postgres { .. } => StartError::Internal(super::BuildError::Store(error)),
            error => StartError::StateDirectory {
                what: "opening the shared state store",
                path: PathBuf::from("store"),
                source: Box::new(error),
            },
        })?;
    tracing::info!(database = %store.label(), "using the shared PostgreSQL state store");
    Ok(Some(Arc::new(store)))
}

/// The store [`open_local_or`] opened: the local SQLite file is sealed by the caller once it
/// holds the state directory's lock (`app::seal_store`); the shared one is used as it is
/// (`[store] key_file` is refused with PostgreSQL, see `config::store`).
pub(super) enum Opened {
    Shared(Arc<PostgresStore>),
    Local(crate::store::sqlite::SqliteStore),
}

/// The store the daemon runs on: `shared` when there is one (the state directory then only
/// holds the control socket), else the SQLite file in `state_dir`. Blocks.
pub(super) fn open_local_or(
    shared: Option<Arc<PostgresStore>>,
    state_dir: &std::path::Path,
) -> Result<Opened, StartError> {
    let failed =
        |what, source: Box<dyn std::error::Error + Send + Sync>| StartError::StateDirectory {
            what,
            path: state_dir.to_path_buf(),
            source,
        };
    match shared {
        Some(shared) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .and_then(|()| crate::fsutil::secure_state_dir(state_dir))
                .map_err(|error| failed("preparing the state directory", Box::new(error)))?;
            Ok(Opened::Shared(shared))
        }
        None => crate::store::sqlite::SqliteStore::open(state_dir)
            .map(Opened::Local)
            .map_err(|error| failed("opening the state store in", Box::new(error))),
    }
}

/// The leadership of this instance: lease-driven with the shared store (the driver runs
/// until the returned sender is set), always leading with SQLite. Sets `certkeeper_leader`
/// and makes the store refuse fenced writes once the local lease has run out.
pub(super) fn lead(
    shared: &Option<Arc<PostgresStore>>,
    config: &Config,
    metrics: &Metrics,
    health: &Arc<Health>,
) -> (
    Arc<Leadership>,
    Option<tokio::task::JoinHandle<()>>,
    tokio::sync::watch::Sender<bool>,
) {
    let leadership = match shared {
        Some(shared) => {
            let instance = config
                .store
                .instance
                .clone()
                .unwrap_or_else(Leadership::default_instance);
            let leadership = Leadership::new(instance, config.store.lease_ttl);
            shared.attach_leadership(leadership.clone());
            leadership
        }
        None => Leadership::single(),
    };
    metrics.leader.set(i64::from(leadership.is_leader()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = shared.clone().map(|shared| {
        let health = health.clone();
        tokio::spawn(crate::store::lease::drive(
            leadership.clone(),
            shared,
            stopped,
            move |round| health.set_store_reachable(!matches!(round, Round::Unreachable(_))),
        ))
    });
    (leadership, task, stop)
}

/// How often a follower looks for the leader's answer.
const ANSWER_POLL: Duration = Duration::from_millis(500);

/// Runs `work` against the store on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<PostgresStore>,
    work: impl FnOnce(&PostgresStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || work(&store)).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// A follower's answer to `request`: queued for the leader, then its answer once given
/// (at most [`REPLY_TIMEOUT`], the CLI's own wait; an untaken request is withdrawn then).
pub(super) async fn forward(
    store: Arc<PostgresStore>,
    instance: String,
    request: ControlRequest,
) -> ControlResponse {
    let text = match serde_json::to_string(&request) {
        Ok(text) => text,
        Err(error) => return ControlResponse::failed(format!("encoding the request: {error}")),
    };
    let id = match blocking(&store, move |store| store.enqueue_request(&text, &instance)).await {
        Ok(id) => id,
        Err(error) => {
            return ControlResponse::failed(format!(
                "cannot pass the request to the leader through the store: {error}"
            ))
        }
    };
    tracing::info!(request = ?request, id, "passed a manual request to the leader");
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while Instant::now() < deadline {
        tokio::time::sleep(ANSWER_POLL).await;
        match blocking(&store, move |store| store.request_answer(id)).await {
            Ok(Some(answer)) => {
                return serde_json::from_str(&answer).unwrap_or_else(|error| {
                    ControlResponse::failed(format!("the leader's answer is unreadable: {error}"))
                })
            }
            Ok(None) => {}
            // The database may come back within the wait; the request is still queued.
            Err(error) => tracing::warn!(error = %error, id, "cannot read the leader's answer yet"),
        }
    }
    let withdrawn = blocking(&store, move |store| store.withdraw_request(id)).await;
    ControlResponse::failed(match withdrawn {
        Ok(true) => "no leader took the request in time; it was withdrawn".to_owned(),
        _ => "the leader took the request but gave no answer in time".to_owned(),
    })
}

/// Requests taken from the queue: each with its id, unreadable ones as their error.
pub(super) type Taken = Vec<(i64, Result<ControlRequest, String>)>;

/// The leader takes what followers queued; each comes back with its id.
pub(super) async fn take(store: Arc<PostgresStore>, instance: String) -> Taken {
    match blocking(&store, move |store| store.take_requests(&instance)).await {
        Ok(taken) => taken
            .into_iter()
            .map(|(id, text)| {
                let request = serde_json::from_str(&text).map_err(|error| error.to_string());
                (id, request)
            })
            .collect(),
        Err(error) => {
            tracing::warn!(error = %error, "cannot read the requests queued for the leader");
            Vec::new()
        }
    }
}

/// Stores the leader's answer to request `id` for the follower that waits for it.
pub(super) async fn answer(
    store: Arc<PostgresStore>,
    id: i64,
    answer: tokio::sync::oneshot::Receiver<ControlResponse>,
) {
    let answer = answer
        .await
        .unwrap_or_else(|_| ControlResponse::failed("the leader stopped before doing this"));
    let text = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
    if let Err(error) = blocking(&store, move |store| store.answer_request(id, &text)).await {
        tracing::warn!(error = %error, id, "cannot store the answer to a forwarded request");
    }
}

/// HTTP-01 answers kept in the shared store: published by the leader's order, served by
/// whichever instance the CA's request reaches.
pub(super) struct StoreTokens(pub Arc<PostgresStore>);

impl crate::source::acme::SharedTokens for StoreTokens {
    fn publish(&self, token: &str, key_authorization: &str) {
        if let Err(error) = self.0.put_http01_token(token, key_authorization) {
            tracing::warn!(error = %error, "cannot share an HTTP-01 token with the other instances");
        }
    }

    fn lookup(&self, token: &str) -> Option<String> {
        self.0.http01_token(token).unwrap_or_else(|error| {
            tracing::warn!(error = %error, "cannot read HTTP-01 tokens from the store");
            None
        })
    }

    fn withdraw(&self, token: &str) {
        if let Err(error) = self.0.delete_http01_token(token) {
            tracing::warn!(error = %error, "cannot withdraw a shared HTTP-01 token");
        }
    }
}

/// Makes every HTTP-01 listener of `components` share its tokens through `shared`.
pub(super) fn share_tokens(
    components: &crate::engine::pass::Components,
    shared: &Option<Arc<PostgresStore>>,
) {
    if let Some(shared) = shared {
        for responder in &components._responders {
            responder.share_with(Arc::new(StoreTokens(shared.clone())));
        }
    }
}

#[cfg(test)]
mod tests;
