//! The operations endpoint on `daemon.metrics_listen`: `/metrics` (Prometheus text),
//! `/healthz` (the main loop is alive and a running pass is making progress) and `/readyz`
//! (store open, config loaded, first reconcile done).
//!
//! The listener is exposed to whatever can reach the port, so every connection is bounded:
//! request headers must arrive within [`HEADER_READ_TIMEOUT`] of the connection (or of the
//! previous response) starting to wait for them, which drops slowloris and idle keep-alive
//! clients alike; a connection lives at most [`CONNECTION_LIFETIME`] (a client pipelining or
//! reading slowly forever); at most [`MAX_CONNECTIONS`] are served at once (the rest get a
//! 503 and are closed); accept errors (EMFILE) back off instead of spinning.

use super::metrics::Metrics;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// How long a progressing pass may go without a step by default: longer than any single
/// vendor call (30 s request timeout plus retries) by a wide margin.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Readiness and liveness, shared between the engine and the endpoint.
///
/// Liveness has two parts: the main loop ticks (it is not wedged), and a running reconcile
/// pass reports progress (each obtain, deploy or policy step that completes, each cloud call
/// answered). A pass silent for longer than its budget is stalled: `/healthz` fails and the
/// loop stops sending `WATCHDOG=1`, so systemd restarts the service. No pass running is
/// healthy, however long ago the last one was.
#[derive(Debug)]
pub struct Health {
    store_open: AtomicBool,
    /// Set while the shared (PostgreSQL) store cannot be reached: not ready.
    store_unreachable: AtomicBool,
    config_loaded: AtomicBool,
    first_reconcile_done: AtomicBool,
    /// Unix seconds of the main loop's last tick.
    last_tick: AtomicI64,
    /// The origin of the millisecond clocks below (monotonic: a clock step never fakes a
    /// stall or hides one).
    epoch: Instant,
    pass_running: AtomicBool,
    /// Milliseconds after `epoch` of the running pass's last progress (or its start).
    last_progress_ms: AtomicU64,
    stall_budget_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            store_open: AtomicBool::new(false),
            store_unreachable: AtomicBool::new(false),
            config_loaded: AtomicBool::new(false),
            first_reconcile_done: AtomicBool::new(false),
            last_tick: AtomicI64::new(0),
            epoch: Instant::now(),
            pass_running: AtomicBool::new(false),
            last_progress_ms: AtomicU64::new(0),
            stall_budget_ms: AtomicU64::new(millis(DEFAULT_STALL_TIMEOUT)),
        }
    }
}

/// A stalled pass: how long it has been silent and the budget it exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub silent_for: Duration,
    pub budget: Duration,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "reconcile pass stalled: no progress for {}s (budget {}s)",
            self.silent_for.as_secs(),
            self.budget.as_secs()
        )
    }
}

/// Marks a pass as running until dropped (also when the pass panics or is aborted).
#[derive(Debug)]
pub struct PassGuard<'a>(&'a Health);

impl Drop for PassGuard<'_> {
    fn drop(&mut self) {
        self.0.pass_running.store(false, Ordering::SeqCst);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_store_open(&self) {
        self.store_open.store(true, Ordering::SeqCst);
    }

    /// Whether the shared store answered its last call (the leader lease's round).
    pub fn set_store_reachable(&self, reachable: bool) {
        self.store_unreachable.store(!reachable, Ordering::SeqCst);
    }

    pub fn set_config_loaded(&self) {
        self.config_loaded.store(true, Ordering::SeqCst);
    }

    pub fn set_first_reconcile_done(&self) {
        self.first_reconcile_done.store(true, Ordering::SeqCst);
    }

    /// The main loop is alive (it is not a sign of progress of a pass).
    pub fn tick(&self, now_unix: i64) {
        self.last_tick.store(now_unix, Ordering::SeqCst);
    }

    /// How long a running pass may go without progress (`daemon.stall_timeout`).
    pub fn set_stall_budget(&self, budget: Duration) {
        self.stall_budget_ms
            .store(millis(budget).max(1), Ordering::SeqCst);
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// A pass starts: it counts as progressing from now until the guard is dropped.
    pub fn begin_pass(&self) -> PassGuard<'_> {
        self.progress();
        self.pass_running.store(true, Ordering::SeqCst);
        PassGuard(self)
    }

    /// The running pass completed a step (or a cloud call was answered).
    pub fn progress(&self) {
        self.last_progress_ms
            .fetch_max(self.now_ms(), Ordering::SeqCst);
    }

    /// The running pass's stall, if it has been silent for longer than its budget.
    pub fn stall(&self) -> Option<Stall> {
        self.stall_at(self.now_ms())
    }

    fn stall_at(&self, now_ms: u64) -> Option<Stall> {
        if !self.pass_running.load(Ordering::SeqCst) {
            return None;
        }
        let silent_ms = now_ms.saturating_sub(self.last_progress_ms.load(Ordering::SeqCst));
        let budget_ms = self.stall_budget_ms.load(Ordering::SeqCst);
        (silent_ms > budget_ms).then(|| Stall {
            silent_for: Duration::from_millis(silent_ms),
            budget: Duration::from_millis(budget_ms),
        })
    }

    /// What is still missing before the daemon is ready; empty when ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.store_open.load(Ordering::SeqCst) {
            missing.push("store not open");
        }
        if self.store_unreachable.load(Ordering::SeqCst) {
            missing.push("state store unreachable");
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

    /// Why `/healthz` fails, if it does.
    fn unhealthy(&self, now_unix: i64) -> Option<String> {
        if let Some(stall) = self.stall() {
            return Some(stall.to_string());
        }
        (!self.alive(now_unix, STALE_AFTER)).then(|| "main loop stalled".to_owned())
    }
}

/// Cloud calls answered count as progress of the running pass; the metrics observe them too.
pub struct ProgressObserver {
    pub health: Arc<Health>,
    pub inner: Arc<dyn super::RequestObserver>,
}

impl super::RequestObserver for ProgressObserver {
    fn observe(&self, vendor: &'static str, action: &str, outcome: &str, elapsed: Duration) {
        self.health.progress();
        self.inner.observe(vendor, action, outcome, elapsed);
    }
}

/// How long the loop may be silent before `/healthz` fails.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// Request headers must be complete this long after a connection starts waiting for them
/// (hyper starts the clock on an idle keep-alive connection too: it is the idle timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection is asked to close (after its current response) once this old, and dropped
/// [`CLOSE_GRACE`] later: a scraper reconnects, an idle or trickling client is let go.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Connections served at once; well under `LimitNOFILE` with the control socket's share and
/// the outbound vendor connections.
pub const MAX_CONNECTIONS: usize = 128;

/// The pause after the first failed `accept` of a burst, doubled per failure up to
/// [`ACCEPT_BACKOFF_MAX`]: EMFILE does not go away by retrying at once, and spinning on it
/// starves everything else on the runtime.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Backoff for a listener's accept loop; one WARN per burst of failures.
#[derive(Debug)]
pub struct AcceptBackoff {
    listener: &'static str,
    delay: Option<Duration>,
}

impl AcceptBackoff {
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            delay: None,
        }
    }

    /// The accepted connection, or (after a pause, see [`Self::failed`]) `None`.
    pub async fn accepted<T>(&mut self, accepted: std::io::Result<T>) -> Option<T> {
        match accepted {
            Ok(connection) => {
                self.succeeded();
                Some(connection)
            }
            Err(error) => {
                self.failed(&error).await;
                None
            }
        }
    }

    /// An accept succeeded: a burst of failures, if any, is over.
    fn succeeded(&mut self) {
        if self.delay.take().is_some() {
            tracing::info!(listener = self.listener, "accepting connections again");
        }
    }

    /// The pause after one more failure.
    fn next_delay(&mut self) -> Duration {
        let delay = match self.delay {
            None => ACCEPT_BACKOFF_MIN,
            Some(previous) => (previous * 2).min(ACCEPT_BACKOFF_MAX),
        };
        self.delay = Some(delay);
        delay
    }

    /// An accept failed: logs the first failure of a burst at WARN, then pauses.
    async fn failed(&mut self, error: &std::io::Error) {
        if self.delay.is_none() {
            tracing::warn!(listener = self.listener, error = %error, "accepting a connection failed; backing off until it works again");
        }
        tokio::time::sleep(self.next_delay()).await;
    }
}

fn router(metrics: Metrics, health: Arc<Health>) -> axum::Router {
    let ready_health = health.clone();
    axum::Router::new()
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
                    match health.unhealthy(now) {
                        None => (StatusCode::OK, "ok\n".to_owned()),
                        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
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
        )
}

/// The answer to a connection beyond [`MAX_CONNECTIONS`].
const BUSY_REPLY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\nconnection: close\r\n\r\ntoo many connections\n";

/// Serves the endpoints until `shutdown` resolves, then lets in-flight requests finish (for
/// at most [`CLOSE_GRACE`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = hyper_util::service::TowerToHyperService::new(router(metrics, health));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut backoff = AcceptBackoff::new("metrics");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Some((stream, _)) = backoff.accepted(accepted).await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = service.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            let finished = tokio::select! {
                result = connection.as_mut() => Some(result),
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => None,
                _ = closing.changed() => None,
            };
            let result = match finished {
                Some(result) => result,
                None => close(connection).await,
            };
            if let Err(error) = result {
                tracing::debug!(error = %error, "metrics connection ended with an error");
            }
        });
    }
    let _ = closing_tx.send(true);
    // Every slot back: all connections have finished (each closes within CLOSE_GRACE).
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(CLOSE_GRACE * 2, slots.acquire_many(all)).await;
    Ok(())
}

/// Asks a connection to close after its current response; drops it if it takes longer than
/// [`CLOSE_GRACE`].
async fn close<C>(mut connection: std::pin::Pin<&mut C>) -> Result<(), hyper::Error>
where
    C: std::future::Future<Output = Result<(), hyper::Error>> + GracefulShutdown,
{
    connection.as_mut().shutdown_gracefully();
    tokio::time::timeout(CLOSE_GRACE, connection)
        .await
        .unwrap_or(Ok(()))
}

/// A served connection that can be asked to finish.
trait GracefulShutdown {
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static + hyper::body::Body,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Tells a connection beyond the cap why it is closed, without waiting on it for long. The
/// request is drained (a little of it, briefly) so that closing does not reset the
/// connection before the client has read the 503.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let refused = async {
        stream.write_all(BUSY_REPLY).await?;
        stream.shutdown().await?;
        let mut drained = [0u8; 4096];
        for _ in 0..16 {
            if stream.read(&mut drained).await? == 0 {
                break;
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), refused).await;
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
        assert_eq!(
            health.unhealthy(1_200).as_deref(),
            Some("main loop stalled")
        );
    }

    #[test]
    fn only_a_running_pass_without_progress_stalls() {
        let health = Health::new();
        health.set_stall_budget(Duration::from_secs(5));
        let far_future = health.now_ms() + 3_600_000;
        assert_eq!(health.stall_at(far_future), None, "idle is healthy");
        let pass = health.begin_pass();
        let started = health.last_progress_ms.load(Ordering::SeqCst);
        assert_eq!(health.stall_at(started + 5_000), None, "within the budget");
        let stall = health.stall_at(started + 7_000).unwrap();
        assert_eq!(stall.silent_for, Duration::from_secs(7));
        assert_eq!(
            stall.to_string(),
            "reconcile pass stalled: no progress for 7s (budget 5s)"
        );
        health.progress();
        let progressed = health.last_progress_ms.load(Ordering::SeqCst);
        assert_eq!(health.stall_at(progressed + 5_000), None, "progress resets");
        drop(pass);
        assert_eq!(health.stall_at(far_future), None, "a finished pass is idle");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_cap_get_a_503_and_are_closed() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Metrics::new().unwrap(),
            Health::new(),
            async move {
                let _ = stopped.await;
            },
        ));
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        let mut extra = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut answer = String::new();
        extra.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.ends_with("too many connections\n"), "{answer}");
        // A freed slot serves again.
        drop(held.pop());
        let mut served = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            served.clear();
            let read = stream.read_to_string(&mut served).await;
            if read.is_ok() && !served.contains("too many connections") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served.contains("store not open"), "{served}");
        let _ = stop.send(());
        drop(held);
        server.await.unwrap().unwrap();
    }

    #[test]
    fn accept_backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = AcceptBackoff::new("test");
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1_000, 1_000].map(Duration::from_millis)
        );
        backoff.succeeded();
        assert_eq!(backoff.next_delay(), ACCEPT_BACKOFF_MIN);
    }
}
