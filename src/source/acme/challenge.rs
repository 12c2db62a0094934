//! Answering ACME challenges (RFC 8555 §8.3, §8.4). HTTP-01: one built-in listener on
//! `http01_listen` serves `/.well-known/acme-challenge/TOKEN` for every order in flight,
//! from a shared token table; a [`TokenGuard`] removes an order's tokens when the order ends,
//! however it ends. DNS-01: TXT records go through a [`DnsSolver`]; the order code waits for
//! propagation and always cleans up, also after a failure.

use super::errors::ORIGIN;
use crate::cloud::DnsSolver;
use crate::error::ErrorClass;
use crate::source::SourceError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How an ACME source proves control of its names.
#[derive(Clone)]
pub enum ChallengeSolver {
    Http01(Arc<Http01Responder>),
    Dns01 {
        solver: Arc<dyn DnsSolver>,
        /// How long to wait after creating the records before telling the CA to look.
        propagation_wait: Duration,
    },
}

type Tokens = Arc<RwLock<HashMap<String, String>>>;

/// Tokens shared with the other instances of a cluster (the PostgreSQL store, docs/ha.md),
/// so whichever instance the load balancer reaches answers the CA. Calls block briefly.
pub trait SharedTokens: Send + Sync {
    fn publish(&self, token: &str, key_authorization: &str);
    fn lookup(&self, token: &str) -> Option<String>;
    fn withdraw(&self, token: &str);
}

type Shared = Arc<std::sync::OnceLock<Arc<dyn SharedTokens>>>;

/// The HTTP-01 listener. Dropping it stops the server.
pub struct Http01Responder {
    tokens: Tokens,
    shared: Shared,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Http01Responder {
    /// Binds `listen` and starts serving challenge tokens.
    pub async fn bind(listen: SocketAddr) -> Result<Arc<Self>, SourceError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|error| {
                SourceError::new(
                    ORIGIN,
                    "http01 listen",
                    ErrorClass::Invalid,
                    "Bind",
                    format!("cannot listen on {listen}: {error}"),
                )
            })?;
        let local_addr = listener.local_addr().map_err(|error| {
            SourceError::new(
                ORIGIN,
                "http01 listen",
                ErrorClass::Transient,
                "Bind",
                error.to_string(),
            )
        })?;
        let tokens: Tokens = Arc::default();
        let shared: Shared = Arc::default();
        let app = axum::Router::new()
            .route(
                "/.well-known/acme-challenge/{token}",
                axum::routing::get(serve_token),
            )
            .with_state((tokens.clone(), shared.clone()));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(error = %error, "HTTP-01 listener stopped");
            }
        });
        Ok(Arc::new(Self {
            tokens,
            shared,
            local_addr,
            task,
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Publishes `key_authorization` for `token` until the guard is dropped.
    pub(crate) fn publish(&self, guard: &mut TokenGuard, token: &str, key_authorization: &str) {
        write(&self.tokens).insert(token.to_owned(), key_authorization.to_owned());
        if let Some(shared) = self.shared.get() {
            shared.publish(token, key_authorization);
            guard.shared = Some(shared.clone());
        }
        guard.tokens = Some(self.tokens.clone());
        guard.published.push(token.to_owned());
    }

    /// Also publishes tokens to (and answers from) `shared`, for a cluster; set once.
    pub fn share_with(&self, shared: Arc<dyn SharedTokens>) {
        let _ = self.shared.set(shared);
    }

    /// How many tokens are being served (for tests: zero once every order ended).
    pub fn in_flight(&self) -> usize {
        read(&self.tokens).len()
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes the tokens one order published when the order ends.
#[derive(Default)]
pub(crate) struct TokenGuard {
    tokens: Option<Tokens>,
    shared: Option<Arc<dyn SharedTokens>>,
    published: Vec<String>,
}

impl Drop for TokenGuard {
    fn drop(&mut self) {
        if let Some(tokens) = &self.tokens {
            let mut map = write(tokens);
            for token in &self.published {
                map.remove(token);
            }
        }
        if let Some(shared) = &self.shared {
            for token in &self.published {
                shared.withdraw(token);
            }
        }
    }
}

// A poisoned table only means a handler panicked mid-insert; the map is still usable.
fn write(tokens: &Tokens) -> std::sync::RwLockWriteGuard<'_, HashMap<String, String>> {
    tokens
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
fn read(tokens: &Tokens) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
    tokens
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve_token(
    axum::extract::State((tokens, shared)): axum::extract::State<(Tokens, Shared)>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Result<String, axum::http::StatusCode> {
    if let Some(answer) = read(&tokens).get(&token).cloned() {
        return Ok(answer);
    }
    // Another instance of the cluster may have published it.
    let Some(shared) = shared.get().cloned() else {
        return Err(axum::http::StatusCode::NOT_FOUND);
    };
    tokio::task::spawn_blocking(move || shared.lookup(&token))
        .await
        .ok()
        .flatten()
        .ok_or(axum::http::StatusCode::NOT_FOUND)
}

/// The TXT record name for a DNS-01 challenge of `domain` (a wildcard's base name).
pub(crate) fn dns01_record_name(domain: &str) -> String {
    format!(
        "_acme-challenge.{}",
        domain.trim_start_matches("*.").trim_end_matches('.')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_published_tokens_until_the_guard_drops() {
        let responder = Http01Responder::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = format!(
            "http://{}/.well-known/acme-challenge/tok1",
            responder.local_addr()
        );
        let client = reqwest::Client::new();
        {
            let mut guard = TokenGuard::default();
            responder.publish(&mut guard, "tok1", "tok1.thumb");
            let body = client.get(&url).send().await.unwrap().text().await.unwrap();
            assert_eq!(body, "tok1.thumb");
            assert_eq!(responder.in_flight(), 1);
        }
        assert_eq!(responder.in_flight(), 0);
        let status = client.get(&url).send().await.unwrap().status();
        assert_eq!(status, 404);
    }

    #[test]
    fn record_names_strip_wildcards() {
        assert_eq!(
            dns01_record_name("*.example.test"),
            "_acme-challenge.example.test"
        );
        assert_eq!(dns01_record_name("a.test"), "_acme-challenge.a.test");
    }
}
