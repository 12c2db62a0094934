//! Token buckets for vendor rate limits, shared by every vendor: one bucket per account and
//! API action, with the documented per-action rate (configurable). Clients `acquire` before
//! each call so a burst of deploys is shaped to the vendor's limit instead of being throttled;
//! the simulator uses the same [`BucketState`] logic (non-blocking `try_take`) to enforce it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The pure state of one bucket: `rate` tokens a second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct BucketState {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl BucketState {
    /// A full bucket. `rate` below a tiny positive number is clamped so waits stay finite.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let rate = rate.max(0.001);
        let burst = burst.max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token if one is there; otherwise says how long until one will be.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Empties the bucket so the next token comes `wait` from now: a vendor's throttle
    /// reply slows every caller of the bucket, not only the one that was refused.
    pub fn hold_off(&mut self, now: Instant, wait: Duration) {
        self.refill(now);
        self.tokens = self.tokens.min(-(wait.as_secs_f64() * self.rate));
    }

    /// Reserves a token even when none is there (the balance goes negative) and returns how
    /// long the caller must wait before using it. Reservation keeps waiters in FIFO order.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One shared bucket.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<BucketState>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            state: Mutex::new(BucketState::new(rate, burst, Instant::now())),
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&self) {
        let wait = {
            // A panic while holding this lock leaves plain numbers behind: still usable.
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.reserve(Instant::now())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl TokenBucket {
    /// See [`BucketState::hold_off`].
    pub fn hold_off(&self, wait: Duration) {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .hold_off(Instant::now(), wait);
    }
}

/// Rates per action (calls per second), with a default for actions not listed.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default = "default_rate")]
    pub default_per_second: f64,
    /// Tokens the bucket may hold; 1 shapes calls evenly.
    #[serde(default = "default_burst")]
    pub burst: f64,
    #[serde(default)]
    pub per_action: HashMap<String, f64>,
}

fn default_rate() -> f64 {
    10.0
}

fn default_burst() -> f64 {
    1.0
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            default_per_second: default_rate(),
            burst: default_burst(),
            per_action: HashMap::new(),
        }
    }
}

impl RateLimits {
    /// Limits from a list of `(action, per second)` defaults.
    pub fn from_defaults(defaults: &[(&str, f64)]) -> Self {
        Self {
            per_action: defaults
                .iter()
                .map(|(action, rate)| ((*action).to_owned(), *rate))
                .collect(),
            ..Self::default()
        }
    }

    /// Overrides (from the config) win over the defaults.
    pub fn with_overrides(mut self, overrides: &HashMap<String, f64>) -> Self {
        self.per_action
            .extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        self
    }

    pub fn rate_for(&self, action: &str) -> f64 {
        self.per_action
            .get(action)
            .copied()
            .unwrap_or(self.default_per_second)
    }
}

/// Buckets per (account, action), created on first use. Share one `RateLimiter` between
/// every client of the same account so targets together stay under the account's limit.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(String, String), Arc<TokenBucket>>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn bucket(&self, account: &str, action: &str) -> Arc<TokenBucket> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets
            .entry((account.to_owned(), action.to_owned()))
            .or_insert_with(|| {
                Arc::new(TokenBucket::new(
                    self.limits.rate_for(action),
                    self.limits.burst,
                ))
            })
            .clone()
    }

    /// After a throttle reply: no call of `account`'s `action` for `wait`, whoever makes it.
    pub fn hold_off(&self, account: &str, action: &str, wait: Duration) {
        self.bucket(account, action).hold_off(wait);
    }

    /// Waits for a token of `account`'s `action` bucket.
    pub async fn acquire(&self, account: &str, action: &str) {
        self.bucket(account, action).acquire().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_take_refuses_then_refills() {
        let start = Instant::now();
        let mut bucket = BucketState::new(10.0, 2.0, start);
        assert!(bucket.try_take(start).is_ok());
        assert!(bucket.try_take(start).is_ok());
        let wait = bucket.try_take(start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(bucket.try_take(start + Duration::from_millis(100)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_shapes_calls_to_the_rate() {
        let limiter = RateLimiter::new(RateLimits::from_defaults(&[("Set", 5.0)]));
        let start = Instant::now();
        for _ in 0..11 {
            limiter.acquire("acct", "Set").await;
        }
        // One token at once, then ten more at 5/s.
        assert!(start.elapsed() >= Duration::from_secs(2));
        // Another account has its own bucket.
        let before = Instant::now();
        limiter.acquire("other", "Set").await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_holds_off_every_caller_of_the_bucket() {
        let limiter = RateLimiter::new(RateLimits::from_defaults(&[("Set", 100.0)]));
        limiter.acquire("acct", "Set").await;
        limiter.hold_off("acct", "Set", Duration::from_secs(2));
        let start = Instant::now();
        limiter.acquire("acct", "Set").await;
        assert!(start.elapsed() >= Duration::from_secs(2));
        // Other actions and accounts are not slowed.
        let before = Instant::now();
        limiter.acquire("acct", "Describe").await;
        limiter.acquire("other", "Set").await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
