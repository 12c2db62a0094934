//! The daemon's side of a cluster on the shared PostgreSQL store (docs/ha.md): `renew` and
//! `deploy` asked of a follower travel to the leader through the store's request queue,
//! and the leader's answer travels back the same way, so they work on any instance.

use crate::control::{ControlRequest, ControlResponse, REPLY_TIMEOUT};
use crate::store::{PostgresStore, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
