//! When to renew a certificate: a pure function of its validity, the configured rule and an
//! optional ARI point, so it can be table-tested and persisted. Order of precedence: the
//! persisted ARI point (RFC 9773) if any, else `renew_before`, else `renew_ratio` (default:
//! renew when a third of the lifetime remains), minus a small jitter chosen once. The result is
//! truncated to whole seconds, as cert-manager does, so it persists and compares exactly.

use std::time::Duration;
use time::OffsetDateTime;

/// The share of the lifetime left at renewal when nothing else is configured.
pub const DEFAULT_RENEW_RATIO: f64 = 1.0 / 3.0;

/// How the renewal point is configured for one certificate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewalRule {
    /// Renew this long before expiry.
    Before(Duration),
    /// Renew when this share of the lifetime remains (0 < ratio < 1).
    Ratio(f64),
}

impl Default for RenewalRule {
    fn default() -> Self {
        RenewalRule::Ratio(DEFAULT_RENEW_RATIO)
    }
}

/// Inputs of [`renewal_time`].
#[derive(Debug, Clone, Copy)]
pub struct RenewalInputs {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub rule: RenewalRule,
    /// A point inside the CA's ARI window, chosen once at random and persisted.
    pub ari_point: Option<OffsetDateTime>,
    /// Jitter chosen once per version (0..=max), subtracted so fleets do not renew in lockstep.
    pub jitter: Duration,
}

/// The instant to renew at, truncated to whole seconds.
///
/// A `renew_before` longer than the whole lifetime (short-lived certificates) falls back to the
/// ratio rule, so a 6-day certificate with `renew_before = "30d"` is not renewed in a loop; the
/// jitter never moves the point before a tenth of the lifetime has passed.
pub fn renewal_time(inputs: &RenewalInputs) -> OffsetDateTime {
    let lifetime = inputs.not_after - inputs.not_before;
    let point = if let Some(ari) = inputs.ari_point {
        ari
    } else {
        let ratio_point = |ratio: f64| inputs.not_after - lifetime * ratio.clamp(0.0, 1.0);
        let base = match inputs.rule {
            RenewalRule::Before(before) => match time::Duration::try_from(before) {
                Ok(before) if before < lifetime => inputs.not_after - before,
                _ => ratio_point(DEFAULT_RENEW_RATIO),
            },
            RenewalRule::Ratio(ratio) => ratio_point(ratio),
        };
        let jitter = time::Duration::try_from(inputs.jitter).unwrap_or(time::Duration::ZERO);
        let earliest: OffsetDateTime = inputs.not_before + lifetime / 10i32;
        (base - jitter).max(earliest.min(base))
    };
    truncate_to_seconds(point)
}

/// A jitter for a certificate: at most 1 % of its lifetime, capped at one hour.
pub fn choose_jitter(lifetime: Duration, rng: &mut impl rand::Rng) -> Duration {
    let cap = (lifetime / 100).min(Duration::from_secs(3600));
    Duration::from_secs(rng.gen_range(0..=cap.as_secs()))
}

pub fn truncate_to_seconds(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const DAY: u64 = 86_400;

    /// (name, not_after, rule, ari point, jitter seconds, expected)
    type Case = (
        &'static str,
        OffsetDateTime,
        RenewalRule,
        Option<OffsetDateTime>,
        u64,
        OffsetDateTime,
    );

    #[test]
    fn table() {
        let start = datetime!(2026-01-01 00:00:00 UTC);
        let ninety = start + time::Duration::days(90);
        let cases: &[Case] = &[
            (
                "default third",
                ninety,
                RenewalRule::default(),
                None,
                0,
                start + time::Duration::days(60),
            ),
            (
                "renew_before 30d",
                ninety,
                RenewalRule::Before(Duration::from_secs(30 * DAY)),
                None,
                0,
                start + time::Duration::days(60),
            ),
            (
                "renew_before 10d",
                ninety,
                RenewalRule::Before(Duration::from_secs(10 * DAY)),
                None,
                0,
                start + time::Duration::days(80),
            ),
            (
                "ratio 0.5",
                ninety,
                RenewalRule::Ratio(0.5),
                None,
                0,
                start + time::Duration::days(45),
            ),
            (
                "ari wins",
                ninety,
                RenewalRule::Before(Duration::from_secs(30 * DAY)),
                Some(datetime!(2026-03-15 12:34:56.789 UTC)),
                0,
                datetime!(2026-03-15 12:34:56 UTC),
            ),
            (
                "jitter subtracted",
                ninety,
                RenewalRule::Before(Duration::from_secs(30 * DAY)),
                None,
                600,
                start + time::Duration::days(60) - time::Duration::seconds(600),
            ),
            (
                "short-lived: renew_before longer than lifetime falls back to a third",
                start + time::Duration::days(6),
                RenewalRule::Before(Duration::from_secs(30 * DAY)),
                None,
                0,
                start + time::Duration::days(4),
            ),
            (
                "jitter never before a tenth of the lifetime",
                start + time::Duration::hours(10),
                RenewalRule::Ratio(0.8),
                None,
                5400,
                start + time::Duration::hours(1),
            ),
            (
                "sub-second truncated",
                datetime!(2026-01-01 00:00:01.5 UTC) + time::Duration::days(3),
                RenewalRule::Ratio(0.5),
                None,
                0,
                datetime!(2026-01-02 12:00:00 UTC),
            ),
        ];
        for (name, not_after, rule, ari_point, jitter, expected) in cases {
            let got = renewal_time(&RenewalInputs {
                not_before: start,
                not_after: *not_after,
                rule: *rule,
                ari_point: *ari_point,
                jitter: Duration::from_secs(*jitter),
            });
            assert_eq!(got, *expected, "{name}");
            assert_eq!(got.nanosecond(), 0, "{name}: truncated");
        }
    }

    #[test]
    fn jitter_is_bounded() {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            assert!(
                choose_jitter(Duration::from_secs(90 * DAY), &mut rng) <= Duration::from_secs(3600)
            );
            assert!(choose_jitter(Duration::from_secs(DAY), &mut rng) <= Duration::from_secs(864));
        }
    }
}
