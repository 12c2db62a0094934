//! The deploy decision for one target, pure (no store, no vendor, `now` given), shared by
//! the pass (`engine::deploy`) and `certkeeper plan`, so the plan shows what a pass would
//! do: whether the ledger row still applies ([`superseded`]), whether it holds the target
//! back ([`hold`]: parked, backing off, in sync) and, once the live state is known, what
//! to do about it ([`decide`]: nothing, wait for the window, deploy).

use crate::store::{DeployStatus, DeploymentRecord};
use crate::window::MaintenanceWindow;
use time::OffsetDateTime;

/// Why the ledger lets no work start on a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Failed with an `invalid` error: waits until the certificate or config changes.
    Parked,
    /// Known to serve the desired version; only a drift scan reads it again.
    InSync,
    /// Backing off after a failure, or deferred to a window, until this time.
    Until(OffsetDateTime),
}

/// What to do once the live state is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The target already serves the desired version.
    InSync,
    /// A deploy is needed but the maintenance window is closed; it opens then.
    Deferred(Option<OffsetDateTime>),
    /// Deploy now.
    Deploy,
}

/// Whether `record`'s failure history no longer applies: it was kept for another version
/// than `desired` (a fingerprint), or the target's configuration changed while it failed.
pub fn superseded(record: &DeploymentRecord, desired: &str, config_changed: bool) -> bool {
    let failing = matches!(
        record.status,
        DeployStatus::Failed | DeployStatus::Parked | DeployStatus::Pending
    );
    record.desired_fingerprint.as_deref() != Some(desired) || (config_changed && failing)
}

/// What the ledger says before anything is read (for a record that is not
/// [`superseded`]); `None` lets the work go on. `scan` is a drift scan, which re-reads a
/// target known in sync.
pub fn hold(record: &DeploymentRecord, scan: bool, now: OffsetDateTime) -> Option<Hold> {
    match record.status {
        DeployStatus::Parked => Some(Hold::Parked),
        DeployStatus::InSync if !scan => Some(Hold::InSync),
        DeployStatus::Pending | DeployStatus::Failed => record
            .next_attempt_at
            .filter(|at| *at > now)
            .map(Hold::Until),
        _ => None,
    }
}

/// What to do about a target that `serves` the desired version or not, given its window.
pub fn decide(serves: bool, window: Option<&MaintenanceWindow>, now: OffsetDateTime) -> Decision {
    if serves {
        return Decision::InSync;
    }
    match window {
        Some(window) if !window.is_open(now) => Decision::Deferred(window.next_open(now)),
        _ => Decision::Deploy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-01-06 12:00 UTC);

    fn record(status: DeployStatus, next_attempt_at: Option<OffsetDateTime>) -> DeploymentRecord {
        DeploymentRecord {
            target: "cdn".into(),
            certificate: "www".into(),
            desired_fingerprint: Some("aa".into()),
            observed_fingerprint: None,
            status,
            attempts: 1,
            last_error: None,
            next_attempt_at,
            updated_at: NOW,
        }
    }

    #[test]
    fn the_ledger_holds_parked_in_sync_and_backing_off_targets() {
        let later = NOW + time::Duration::minutes(5);
        let earlier = NOW - time::Duration::minutes(5);
        assert_eq!(
            hold(&record(DeployStatus::Parked, None), false, NOW),
            Some(Hold::Parked)
        );
        assert_eq!(
            hold(&record(DeployStatus::InSync, None), false, NOW),
            Some(Hold::InSync)
        );
        assert_eq!(hold(&record(DeployStatus::InSync, None), true, NOW), None);
        assert_eq!(
            hold(&record(DeployStatus::Failed, Some(later)), false, NOW),
            Some(Hold::Until(later))
        );
        assert_eq!(
            hold(&record(DeployStatus::Failed, Some(earlier)), false, NOW),
            None
        );
        assert_eq!(
            hold(&record(DeployStatus::Deploying, Some(later)), false, NOW),
            None
        );
    }

    #[test]
    fn a_new_version_or_a_changed_config_supersedes_the_history() {
        let failed = record(DeployStatus::Failed, None);
        assert!(!superseded(&failed, "aa", false));
        assert!(superseded(&failed, "bb", false));
        assert!(superseded(&failed, "aa", true));
        // A config change does not reset a target that is not failing.
        assert!(!superseded(&record(DeployStatus::InSync, None), "aa", true));
    }

    #[test]
    fn a_closed_window_defers_only_a_needed_deploy() {
        let window =
            MaintenanceWindow::new("0 2 * * *", std::time::Duration::from_secs(3600)).unwrap();
        assert_eq!(decide(true, Some(&window), NOW), Decision::InSync);
        assert_eq!(decide(false, None, NOW), Decision::Deploy);
        assert_eq!(
            decide(false, Some(&window), NOW),
            Decision::Deferred(window.next_open(NOW))
        );
        let inside = datetime!(2030-01-07 02:30 UTC);
        assert_eq!(decide(false, Some(&window), inside), Decision::Deploy);
    }
}
