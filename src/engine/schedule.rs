//! When the daemon next has work: pure functions over what the store holds, so the loop
//! sleeps until the earliest renewal, retry or scan instead of waking on a fixed tick, and a
//! restart computes the same times. Obtaining a certificate backs off by the class of its
//! last failures, read from the attempt history like deploys read theirs from the ledger.

use crate::engine::backoff::next_delay;
use crate::error::ErrorClass;
use crate::store::Attempt;
use std::time::Duration;
use time::OffsetDateTime;

/// The longest the loop sleeps without a reason: a safety net against a missed event, long
/// enough that an idle daemon costs nothing.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The earliest of `candidates`, no earlier than `now` and no later than `now + max_sleep`.
pub fn next_wake(
    now: OffsetDateTime,
    candidates: impl IntoIterator<Item = OffsetDateTime>,
    max_sleep: Duration,
) -> OffsetDateTime {
    let latest = now + max_sleep;
    candidates
        .into_iter()
        .fold(latest, |earliest, at| earliest.min(at))
        .max(now)
}

/// When obtaining may be tried again after the trailing failures in `history` (oldest
/// first); `None` when the last attempt succeeded or there is none. A CA's refusal of the
/// request (`invalid`) is not parked as a deploy would be: it is often fixed outside our
/// config (DNS, CAA records, an account limit), so it waits like `auth`, doubling from 1 h.
pub fn obtain_retry_at(history: &[Attempt]) -> Option<OffsetDateTime> {
    let failures: Vec<&Attempt> = history
        .iter()
        .rev()
        .take_while(|attempt| attempt.class.is_some())
        .collect();
    let last = failures.first()?;
    let class = match last.class? {
        ErrorClass::Invalid => ErrorClass::Auth,
        class => class,
    };
    let attempts = u32::try_from(failures.len()).unwrap_or(u32::MAX);
    let delay = next_delay(class, attempts)?;
    Some(last.at + delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SubjectKind;
    use time::macros::datetime;

    fn attempt(class: Option<ErrorClass>, at: OffsetDateTime) -> Attempt {
        Attempt {
            subject_kind: SubjectKind::Certificate,
            subject: "www".into(),
            operation: "obtain".into(),
            class,
            code: class.map(|_| "X".to_owned()),
            at,
        }
    }

    #[test]
    fn wake_is_the_earliest_candidate_within_bounds() {
        let now = datetime!(2026-11-23 10:00 UTC);
        let hour = Duration::from_secs(3600);
        let cases = [
            (vec![], now + hour),
            (
                vec![now + Duration::from_secs(30)],
                now + Duration::from_secs(30),
            ),
            (
                vec![now + Duration::from_secs(90), now + Duration::from_secs(30)],
                now + Duration::from_secs(30),
            ),
            // Overdue work runs now, far-off work waits at most max_sleep.
            (vec![now - hour], now),
            (vec![now + 10 * hour], now + hour),
        ];
        for (candidates, expected) in cases {
            assert_eq!(
                next_wake(now, candidates.clone(), hour),
                expected,
                "{candidates:?}"
            );
        }
    }

    #[test]
    fn obtain_backs_off_by_the_class_of_trailing_failures() {
        let t = datetime!(2026-11-23 10:00 UTC);
        assert_eq!(obtain_retry_at(&[]), None);
        assert_eq!(obtain_retry_at(&[attempt(None, t)]), None);
        // One transient failure: 60 s; two: 120 s.
        assert_eq!(
            obtain_retry_at(&[attempt(Some(ErrorClass::Transient), t)]),
            Some(t + Duration::from_secs(60))
        );
        assert_eq!(
            obtain_retry_at(&[
                attempt(Some(ErrorClass::Transient), t),
                attempt(Some(ErrorClass::Transient), t + Duration::from_secs(60)),
            ]),
            Some(t + Duration::from_secs(180))
        );
        // A success resets the count.
        assert_eq!(
            obtain_retry_at(&[
                attempt(Some(ErrorClass::Transient), t),
                attempt(None, t),
                attempt(Some(ErrorClass::Busy), t),
            ]),
            Some(t + Duration::from_secs(30))
        );
        // A CA refusal waits an hour rather than parking.
        assert_eq!(
            obtain_retry_at(&[attempt(Some(ErrorClass::Invalid), t)]),
            Some(t + Duration::from_secs(3600))
        );
    }
}
