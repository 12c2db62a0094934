//! One leader at a time among daemons sharing a PostgreSQL store (docs/ha.md).
//!
//! The choice: a **lease row with an expiry**, not a session advisory lock. A session lock
//! is tied to one connection, so a connection that breaks for a moment (a database restart,
//! a proxy) ends the leadership silently, and a half-open connection keeps it for as long
//! as TCP does. A row has an explicit expiry on the database's clock (no trust in the
//! daemons' clocks), carries a fencing token that grows with every new leadership, and shows
//! who leads to every instance and to `status`.
//!
//! The holder renews every third of the TTL. Locally it counts as leader only until
//! `last renewal sent + TTL - TTL/5`, measured on the monotonic clock from *before* the
//! renewal was sent: the database's expiry is later than that, so an instance that stopped
//! renewing (paused, cut off, its database gone) stops acting before anyone else can start.
//! What slips through anyway (a write already in flight when the process was paused) is
//! refused by the store: every ledger, version and attempt write carries the token, and
//! the store refuses one older than the lease row's ([`StoreError::Fenced`]).
//!
//! The SQLite store has no lease: one daemon per state directory (the directory lock), which
//! always leads ([`Leadership::single`]).

use super::postgres::PostgresStore;
use super::StoreError;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// This instance's view of the leadership, shared by the lease driver, the daemon loop
/// (which runs passes only while leading) and the store (which refuses fenced writes once
/// the local lease has run out).
#[derive(Debug)]
pub struct Leadership {
    instance: String,
    ttl: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` until which this instance may act as leader (0: not).
    valid_until_ms: AtomicU64,
    token: AtomicI64,
    /// Who leads as last read from the store (`None`: nobody, or unknown).
    seen_leader: Mutex<Option<String>>,
    changes: tokio::sync::watch::Sender<bool>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Leadership {
    /// A lease-driven leadership for `instance`, not leading yet.
    pub fn new(instance: impl Into<String>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            instance: instance.into(),
            ttl,
            epoch: Instant::now(),
            valid_until_ms: AtomicU64::new(0),
            token: AtomicI64::new(0),
            seen_leader: Mutex::new(None),
            changes: tokio::sync::watch::channel(false).0,
        })
    }

    /// The only daemon of a SQLite store: always the leader.
    pub fn single() -> Arc<Self> {
        let leadership = Self::new("local", Duration::MAX);
        leadership.valid_until_ms.store(u64::MAX, Ordering::SeqCst);
        leadership.changes.send_replace(true);
        leadership
    }

    /// The default instance name: host name and process id.
    pub fn default_instance() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "certkeeper".into());
        format!("{host}:{}", std::process::id())
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// Whether this instance may act as leader now (obtain, deploy, remediate, ARI).
    pub fn is_leader(&self) -> bool {
        self.now_ms() < self.valid_until_ms.load(Ordering::SeqCst)
    }

    /// How long this instance still leads unless it renews (`None`: it does not lead).
    fn remaining(&self) -> Option<Duration> {
        let until = self.valid_until_ms.load(Ordering::SeqCst);
        let now = self.now_ms();
        (now < until).then(|| Duration::from_millis(until - now))
    }

    /// The fencing token of the current (or last) leadership, 0 before any.
    pub fn token(&self) -> i64 {
        self.token.load(Ordering::SeqCst)
    }

    /// Who leads, as last read from the store (this instance's name while it leads).
    pub fn leader(&self) -> Option<String> {
        if self.is_leader() {
            return Some(self.instance.clone());
        }
        self.seen_leader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// `true` while leading; changes when the leadership is gained or lost.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// The lease was taken or renewed under `token` by a request sent at `sent`.
    fn hold(&self, token: i64, sent: Instant) {
        let margin = self.ttl / 5;
        let until = sent.saturating_duration_since(self.epoch) + self.ttl.saturating_sub(margin);
        self.token.store(token, Ordering::SeqCst);
        self.valid_until_ms.store(millis(until), Ordering::SeqCst);
        self.changes
            .send_if_modified(|leading| !std::mem::replace(leading, true));
    }

    fn step_down(&self) {
        self.valid_until_ms.store(0, Ordering::SeqCst);
        self.changes
            .send_if_modified(|leading| std::mem::replace(leading, false));
    }

    /// Tells subscribers when the local lease ran out without a renewal saying so (the
    /// database is unreachable).
    fn notice_expiry(&self) {
        if !self.is_leader() {
            self.step_down();
        }
    }

    fn saw(&self, leader: Option<String>) {
        *self
            .seen_leader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = leader;
    }
}

/// What one round of the lease driver found, for the daemon's health and logs.
#[derive(Debug)]
pub enum Round {
    Leading {
        token: i64,
        gained: bool,
    },
    Following {
        leader: Option<String>,
    },
    /// The store could not be reached; the local lease runs out by itself.
    Unreachable(StoreError),
}

/// One round: renew (while leading) or try to take the lease, then read who leads. Blocks
/// on the store: call it from a blocking thread.
pub fn round(leadership: &Leadership, store: &PostgresStore) -> Round {
    let sent = Instant::now();
    let was_leading = leadership.is_leader();
    let result = if was_leading {
        let token = leadership.token();
        store
            .renew_lease(&leadership.instance, token, leadership.ttl)
            .map(|renewed| renewed.then_some(token))
    } else {
        store.try_acquire_lease(&leadership.instance, leadership.ttl)
    };
    match result {
        Ok(Some(token)) => {
            store.set_fencing_token(token);
            leadership.hold(token, sent);
            Round::Leading {
                token,
                gained: !was_leading,
            }
        }
        Ok(None) => {
            leadership.step_down();
            let leader = store
                .current_leader()
                .ok()
                .flatten()
                .map(|leader| leader.holder);
            leadership.saw(leader.clone());
            Round::Following { leader }
        }
        Err(error) => {
            leadership.notice_expiry();
            Round::Unreachable(error)
        }
    }
}

/// Runs the lease until `stop` is set, then gives it up if held (so another instance takes
/// over at once instead of after the TTL). `on_round` sees every round's result.
pub async fn drive(
    leadership: Arc<Leadership>,
    store: Arc<PostgresStore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    on_round: impl Fn(&Round) + Send + 'static,
) {
    let period = leadership.ttl / 3;
    loop {
        let (lease, shared) = (leadership.clone(), store.clone());
        match tokio::task::spawn_blocking(move || round(&lease, &shared)).await {
            Ok(result) => {
                match &result {
                    Round::Leading {
                        token,
                        gained: true,
                    } => tracing::info!(
                        instance = %leadership.instance,
                        fencing_token = token,
                        "this instance now leads"
                    ),
                    Round::Unreachable(error) => tracing::warn!(
                        error = %error,
                        leading = leadership.is_leader(),
                        "cannot reach the state store to renew the leader lease"
                    ),
                    _ => {}
                }
                on_round(&result);
            }
            Err(error) => tracing::error!(error = %error, "the lease round failed"),
        }
        // Wake at the period, or when the local lease runs out, whichever is first: a
        // leader that cannot renew says so (stops its pass, its gauge goes to 0) at once.
        let wake = leadership
            .remaining()
            .map_or(period, |left| period.min(left + Duration::from_millis(1)));
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    if leadership.is_leader() {
        let token = leadership.token();
        leadership.step_down();
        let released =
            tokio::task::spawn_blocking(move || store.release_lease(&leadership.instance, token))
                .await;
        if let Ok(Err(error)) = released {
            tracing::warn!(error = %error, "could not release the leader lease; it expires by itself");
        }
    }
}
