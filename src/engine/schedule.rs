//! When the daemon next has work: pure functions over what the store holds, so the loop
//! sleeps until the earliest renewal, retry or scan instead of waking on a fixed tick, and a
//! restart computes the same times. Obtaining a certificate backs off by the class of its
//! last failures, read from the attempt history like deploys read theirs from the ledger.

use crate::engine::backoff::{next_delay, trailing_failures};
use crate::error::ErrorClass;
use crate::store::{Attempt, PolicyStatus};
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
    let (class, failures, last) = trailing_failures(history)?;
    let class = match class {
        ErrorClass::Invalid => ErrorClass::Auth,
        class => class,
    };
    Some(last + next_delay(class, failures)?)
}

/// The next time after `after` that `schedule` fires.
pub fn cron_after(schedule: &cron::Schedule, after: OffsetDateTime) -> Option<OffsetDateTime> {
    let from = chrono::DateTime::from_timestamp(after.unix_timestamp(), 0)?;
    OffsetDateTime::from_unix_timestamp(schedule.after(&from).next()?.timestamp()).ok()
}

/// When a policy is next checked, from the last check of each of its `resources`: a
/// resource never checked is due now; otherwise the policy's schedule after the oldest
/// check, brought forward to the opening of a maintenance window a correction waits for,
/// to 30 s after a busy resource was seen, and to `retry_at` of a failed resource (its
/// class backoff; `None` when parked, which waits for the schedule).
pub fn policy_due_at(
    schedule: &cron::Schedule,
    resources: &[String],
    statuses: &[&PolicyStatus],
    retry_at: impl Fn(&PolicyStatus) -> Option<OffsetDateTime>,
) -> OffsetDateTime {
    let mut oldest: Option<OffsetDateTime> = None;
    let mut due: Vec<OffsetDateTime> = Vec::new();
    for resource in resources {
        let Some(status) = statuses.iter().find(|status| &status.resource == resource) else {
            return OffsetDateTime::UNIX_EPOCH;
        };
        oldest = Some(oldest.map_or(status.last_checked, |at| at.min(status.last_checked)));
        if let Some(opens) = crate::engine::policy::job_failed_until(status) {
            due.push(opens);
        } else if status.last_error.is_some() {
            due.extend(retry_at(status));
        } else if !status.compliant {
            let observed = crate::engine::policy::Observed::read(&status.observed);
            if observed.busy {
                due.push(status.last_checked + Duration::from_secs(30));
            }
            due.extend(observed.window_opens);
        }
    }
    let scheduled = oldest
        .and_then(|oldest| cron_after(schedule, oldest))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    due.into_iter().fold(scheduled, OffsetDateTime::min)
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

    fn status(resource: &str, at: OffsetDateTime) -> PolicyStatus {
        PolicyStatus {
            policy: "p".into(),
            resource: resource.into(),
            compliant: true,
            observed: serde_json::Value::Null,
            last_checked: at,
            last_job_id: None,
            last_error: None,
        }
    }

    #[test]
    fn policy_checks_follow_the_schedule_windows_busy_and_errors() {
        let hourly = crate::window::Schedule::parse("0 * * * *").unwrap();
        let hourly = hourly.cron();
        let t = datetime!(2026-11-23 10:20 UTC);
        let resources = vec!["a".to_owned(), "b".to_owned()];
        let a = status("a", t);
        let first_retry = |status: &PolicyStatus| {
            let class = status.last_error.as_ref()?.class;
            next_delay(class, 1).map(|delay| status.last_checked + delay)
        };
        // A resource never checked: now.
        assert_eq!(
            policy_due_at(hourly, &resources, &[&a], first_retry),
            OffsetDateTime::UNIX_EPOCH
        );
        // Both compliant: the next hour after the oldest check.
        let b = status("b", t - Duration::from_secs(600));
        assert_eq!(
            policy_due_at(hourly, &resources, &[&a, &b], first_retry),
            datetime!(2026-11-23 11:00 UTC)
        );
        // A correction deferred to a window opening at 10:45.
        let mut deferred = status("b", t);
        deferred.compliant = false;
        deferred.observed =
            serde_json::json!({"window_opens": datetime!(2026-11-23 10:45 UTC).unix_timestamp()});
        assert_eq!(
            policy_due_at(hourly, &resources, &[&a, &deferred], first_retry),
            datetime!(2026-11-23 10:45 UTC)
        );
        // Busy: 30 s.
        let mut busy = status("b", t);
        busy.compliant = false;
        busy.observed = serde_json::json!({"observed": "updating", "busy": true});
        assert_eq!(
            policy_due_at(hourly, &resources, &[&a, &busy], first_retry),
            t + Duration::from_secs(30)
        );
        // Auth error: an hour; invalid: the schedule.
        let mut failed = status("b", t);
        failed.last_error = Some(crate::store::LastError {
            class: ErrorClass::Auth,
            code: "X".into(),
            message: "m".into(),
        });
        assert_eq!(
            policy_due_at(hourly, &resources, &[&a, &failed], first_retry),
            datetime!(2026-11-23 11:00 UTC)
        );
        failed.last_error = Some(crate::store::LastError {
            class: ErrorClass::Transient,
            code: "X".into(),
            message: "m".into(),
        });
        assert_eq!(
            policy_due_at(hourly, &resources, &[&a, &failed], first_retry),
            t + Duration::from_secs(60)
        );
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
