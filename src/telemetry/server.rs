//! The operations endpoint on `daemon.metrics_listen`: `/metrics` (Prometheus text),
//! `/healthz` (the main loop has ticked recently) and `/readyz` (store open, config loaded,
//! first reconcile done).

use super::metrics::Metrics;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Readiness and liveness, shared between the engine and the endpoint.
#[derive(Debug, Default)]
pub struct Health {
    store_open: AtomicBool,
    config_loaded: AtomicBool,
    first_reconcile_done: AtomicBool,
    /// Unix seconds of the main loop's last tick.
    last_tick: AtomicI64,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_store_open(&self) {
        self.store_open.store(true, Ordering::SeqCst);
    }

    pub fn set_config_loaded(&self) {
        self.config_loaded.store(true, Ordering::SeqCst);
    }

    pub fn set_first_reconcile_done(&self) {
        self.first_reconcile_done.store(true, Ordering::SeqCst);
    }

    pub fn tick(&self, now_unix: i64) {
        self.last_tick.store(now_unix, Ordering::SeqCst);
    }

    /// What is still missing before the daemon is ready; empty when ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.store_open.load(Ordering::SeqCst) {
            missing.push("store not open");
        }
        if !self.config_loaded.load(Ordering::SeqCst) {
            missing.push("config not loaded");
        }
        if !self.first_reconcile_done.load(Ordering::SeqCst) {
            missing.push("first reconcile not done");
        }
        missing
    }

    /// Whether the loop ticked within `stale_after` of `now_unix`.
    pub fn alive(&self, now_unix: i64, stale_after: Duration) -> bool {
        let last = self.last_tick.load(Ordering::SeqCst);
        last > 0 && now_unix.saturating_sub(last) <= stale_after.as_secs() as i64
    }
}

/// How long the loop may be silent before `/healthz` fails.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// Serves the endpoints until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready_health = health.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.encode() {
                        Ok(text) => (
                            StatusCode::OK,
                            [("content-type", "text/plain; version=0.0.4")],
                            text,
                        )
                            .into_response(),
                        Err(error) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let health = health.clone();
                async move {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    if health.alive(now, STALE_AFTER) {
                        (StatusCode::OK, "ok\n".to_owned())
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "main loop stalled\n".to_owned(),
                        )
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let health = ready_health.clone();
                async move {
                    let missing = health.not_ready();
                    if missing.is_empty() {
                        (StatusCode::OK, "ready\n".to_owned())
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("{}\n", missing.join(", ")),
                        )
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_latch_and_liveness() {
        let health = Health::new();
        assert_eq!(health.not_ready().len(), 3);
        health.set_store_open();
        health.set_config_loaded();
        health.set_first_reconcile_done();
        assert!(health.not_ready().is_empty());
        assert!(!health.alive(1_000, STALE_AFTER));
        health.tick(1_000);
        assert!(health.alive(1_100, STALE_AFTER));
        assert!(!health.alive(1_200, STALE_AFTER));
    }
}
