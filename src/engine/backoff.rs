//! The failure backoff across operations, owned by the scheduler: how long a target or policy
//! waits before the next attempt after a failure of a given class. Pure, so the schedule is
//! table-tested and the state (attempt count, inputs fingerprint) lives in the store, which
//! makes a restart change nothing. Backoff resets when the inputs (certificate version or
//! config) change.

use crate::error::ErrorClass;
use crate::store::Attempt;
use std::time::Duration;
use time::OffsetDateTime;

/// When to try again after `attempts` consecutive failures (1 = the first failure) of
/// `class`; `None` means parked until the inputs change.
pub fn next_delay(class: ErrorClass, attempts: u32) -> Option<Duration> {
    let doubling = |base: u64, cap: u64| {
        let factor = 1u64
            .checked_shl(attempts.saturating_sub(1).min(32))
            .unwrap_or(u64::MAX);
        Duration::from_secs(base.saturating_mul(factor).min(cap))
    };
    match class {
        // Throttled and transient were already retried inside the operation; the next
        // attempt waits a short while and grows if the vendor stays unwell.
        ErrorClass::Throttled | ErrorClass::Transient => Some(doubling(60, 30 * 60)),
        ErrorClass::Busy => Some(doubling(30, 30 * 60)),
        ErrorClass::Auth | ErrorClass::Billing | ErrorClass::NotFound | ErrorClass::Unsupported => {
            Some(doubling(3600, 32 * 3600))
        }
        ErrorClass::Invalid => None,
    }
}

/// The failures an attempt history (oldest first) ends with: the class of the last one,
/// how many passes they span (retries inside one pass share its time) and when the last
/// one was. `None` when the history does not end in a failure.
pub fn trailing_failures(history: &[Attempt]) -> Option<(ErrorClass, u32, OffsetDateTime)> {
    let failures: Vec<&Attempt> = history
        .iter()
        .rev()
        .take_while(|attempt| attempt.class.is_some())
        .collect();
    let last = failures.first()?;
    let mut times: Vec<OffsetDateTime> = failures.iter().map(|attempt| attempt.at).collect();
    times.dedup();
    let passes = u32::try_from(times.len()).unwrap_or(u32::MAX);
    Some((last.class?, passes, last.at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_by_class() {
        let secs = |class, attempts| next_delay(class, attempts).map(|delay| delay.as_secs());
        assert_eq!(secs(ErrorClass::Busy, 1), Some(30));
        assert_eq!(secs(ErrorClass::Busy, 2), Some(60));
        assert_eq!(secs(ErrorClass::Busy, 10), Some(1800));
        for class in [
            ErrorClass::Auth,
            ErrorClass::Billing,
            ErrorClass::NotFound,
            ErrorClass::Unsupported,
        ] {
            assert_eq!(secs(class, 1), Some(3600));
            assert_eq!(secs(class, 2), Some(7200));
            assert_eq!(secs(class, 6), Some(32 * 3600));
            assert_eq!(secs(class, 60), Some(32 * 3600));
        }
        assert_eq!(secs(ErrorClass::Invalid, 1), None);
        assert_eq!(secs(ErrorClass::Transient, 1), Some(60));
        assert_eq!(secs(ErrorClass::Throttled, 100), Some(1800));
    }
}
