//! The in-operation retry loop, the only place that sleeps between attempts of one call:
//! throttled honours the vendor's retry-after up to 60 s (else 1 s doubling to 60 s; a longer
//! hint ends the operation, to be scheduled across operations); transient backs
//! off exponentially with full jitter (2 s doubling to 5 min, 5 attempts). Every other
//! class returns at once, to be scheduled across operations by the engine.

use crate::error::{CloudError, ErrorClass};
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// The longest vendor retry-after waited for within one operation.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Limits of the in-operation loop.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub throttle_base: Duration,
    pub throttle_cap: Duration,
    pub transient_base: Duration,
    pub transient_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            throttle_base: Duration::from_secs(1),
            throttle_cap: Duration::from_secs(60),
            transient_base: Duration::from_secs(2),
            transient_cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1` after `error` on attempt `attempt`
    /// (1-based), or `None` when the error must not be retried within the operation.
    pub fn delay(&self, error: &CloudError, attempt: u32, rng: &mut impl Rng) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let doubling = |base: Duration, cap: Duration| {
            let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
            base.saturating_mul(factor).min(cap)
        };
        match error.class {
            // The hint is the vendor's to choose, so it is bounded: one longer than
            // `MAX_RETRY_AFTER` ends this operation (the engine schedules the next across operations) rather
            // than holding the pass, and the stall watchdog, for as long as a reply says.
            ErrorClass::Throttled => match error.retry_after {
                Some(after) if after > MAX_RETRY_AFTER => None,
                Some(after) => Some(after),
                None => Some(doubling(self.throttle_base, self.throttle_cap)),
            },
            ErrorClass::Transient => {
                let ceiling = doubling(self.transient_base, self.transient_cap);
                Some(Duration::from_millis(
                    rng.gen_range(0..=ceiling.as_millis() as u64),
                ))
            }
            _ => None,
        }
    }
}

/// The failures [`with_retries`] retried, collected from its `on_retry` callback so the
/// caller can count and record each once the operation has ended.
#[derive(Default)]
pub struct RetriedErrors(std::sync::Mutex<Vec<CloudError>>);

impl RetriedErrors {
    pub fn push(&self, error: &CloudError) {
        // Plain pushes cannot leave the list inconsistent, so a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(error.clone());
    }

    pub fn take(self) -> Vec<CloudError> {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs `operation` until it succeeds, fails with a class that is not retried within an
/// operation, or runs out of attempts. `on_retry` sees each error that will be retried
/// (for metrics and the attempt history).
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut operation: F,
    mut on_retry: impl FnMut(&CloudError, u32, Duration),
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                let delay = policy.delay(&error, attempt, &mut rand::thread_rng());
                match delay {
                    Some(delay) => {
                        on_retry(&error, attempt, delay);
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn error(class: ErrorClass) -> CloudError {
        CloudError::new("test", "Op", class, "Code", "message")
    }

    #[test]
    fn a_retry_after_beyond_the_cap_ends_the_operation() {
        let policy = RetryPolicy::default();
        let mut rng = rand::thread_rng();
        let patient = error(ErrorClass::Throttled).with_retry_after(Some(Duration::from_secs(60)));
        assert_eq!(
            policy.delay(&patient, 1, &mut rng),
            Some(Duration::from_secs(60))
        );
        let endless =
            error(ErrorClass::Throttled).with_retry_after(Some(Duration::from_secs(86_400)));
        assert_eq!(policy.delay(&endless, 1, &mut rng), None);
    }

    #[test]
    fn throttled_honours_retry_after_and_doubles_without_it() {
        let policy = RetryPolicy::default();
        let mut rng = StepRng::new(0, 1);
        let hinted =
            error(ErrorClass::Throttled).with_retry_after(Some(Duration::from_millis(1500)));
        assert_eq!(
            policy.delay(&hinted, 1, &mut rng),
            Some(Duration::from_millis(1500))
        );
        let plain = error(ErrorClass::Throttled);
        assert_eq!(
            policy.delay(&plain, 1, &mut rng),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            policy.delay(&plain, 3, &mut rng),
            Some(Duration::from_secs(4))
        );
        assert_eq!(policy.delay(&plain, 5, &mut rng), None);
    }

    #[test]
    fn transient_jitter_stays_under_the_cap_and_other_classes_are_not_retried() {
        let policy = RetryPolicy {
            max_attempts: 50,
            ..RetryPolicy::default()
        };
        let mut rng = rand::thread_rng();
        for attempt in 1..40 {
            let delay = policy
                .delay(&error(ErrorClass::Transient), attempt, &mut rng)
                .unwrap();
            assert!(delay <= Duration::from_secs(300));
        }
        for class in [
            ErrorClass::Busy,
            ErrorClass::Invalid,
            ErrorClass::Auth,
            ErrorClass::Billing,
            ErrorClass::NotFound,
            ErrorClass::Unsupported,
        ] {
            assert_eq!(policy.delay(&error(class), 1, &mut rng), None, "{class}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_retries_stops_at_success() {
        let calls = AtomicU32::new(0);
        let mut retried = Vec::new();
        let result = with_retries(
            &RetryPolicy::default(),
            || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(error(ErrorClass::Throttled).with_retry_after(Some(Duration::from_secs(2))))
                } else {
                    Ok(7)
                }
            },
            |error, _, delay| retried.push((error.class, delay)),
        )
        .await;
        assert_eq!(result, Ok(7));
        assert_eq!(
            retried,
            vec![(ErrorClass::Throttled, Duration::from_secs(2)); 2]
        );
    }
}
