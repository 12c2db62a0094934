//! Maintenance windows: a cron schedule of opening times plus a duration. Changes that can
//! restart a database (RDS SSL, MySQL Plus SSL, GaussDB settings) wait for an open window.
//! Schedules are read in UTC.

use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

/// A cron schedule parsed once (at config load) from its expression, which it keeps for
/// messages and `Debug`: five fields (minute hour day month weekday), or six/seven with
/// seconds (and year) first.
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    parsed: cron::Schedule,
}

impl Schedule {
    /// Parses `expression`; the error names it and says what is wrong (for the config's
    /// `file:line:column: key.path: message`).
    pub fn parse(expression: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expression}"),
            6 | 7 => expression.to_owned(),
            _ => return Err(format!("cron expression `{expression}` must have 5 fields (minute hour day month weekday), or 6-7 with seconds first")),
        };
        let parsed = cron::Schedule::from_str(&full)
            .map_err(|error| format!("cron expression `{expression}` is invalid: {error}"))?;
        Ok(Self {
            expression: expression.to_owned(),
            parsed,
        })
    }

    /// The expression as the config wrote it.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The parsed schedule, for computing occurrences.
    pub fn cron(&self) -> &cron::Schedule {
        &self.parsed
    }
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The expression only: the digest of a target's config (`engine::inputs`) hashes
        // this text, and the parsed form says nothing more.
        self.expression.fmt(formatter)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Eq for Schedule {}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expression = String::deserialize(deserializer)?;
        Self::parse(&expression).map_err(serde::de::Error::custom)
    }
}

/// A recurring window, e.g. `schedule = "0 2 * * Sun"`, `duration = "2h"`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    schedule: Schedule,
    duration: Duration,
}

impl MaintenanceWindow {
    /// Parses a cron expression: five fields (minute hour day month weekday) or six/seven
    /// with seconds (and year) first.
    pub fn new(expression: &str, duration: Duration) -> Result<Self, String> {
        Self::from_schedule(Schedule::parse(expression)?, duration)
    }

    /// A window opening at `schedule`, open for `duration` (more than zero).
    pub fn from_schedule(schedule: Schedule, duration: Duration) -> Result<Self, String> {
        if duration.is_zero() {
            return Err("maintenance window duration must be greater than zero".into());
        }
        Ok(Self { schedule, duration })
    }

    pub fn expression(&self) -> &str {
        self.schedule.expression()
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether `now` falls inside an occurrence of the window.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.current_close(now).is_some()
    }

    /// When the currently open window closes, if one is open.
    pub fn current_close(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let length = time::Duration::try_from(self.duration).ok()?;
        // The latest start at or before `now` is the first start after `now - duration`
        // (minus a second, because `after` is exclusive).
        let from = now - length - time::Duration::seconds(1);
        let start = to_time(self.schedule.cron().after(&to_chrono(from)?).next()?)?;
        (start <= now && now < start + length).then_some(start + length)
    }

    /// The next time the window opens strictly after `now`.
    pub fn next_open(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        to_time(self.schedule.cron().after(&to_chrono(now)?).next()?)
    }
}

fn to_chrono(at: OffsetDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(at.unix_timestamp(), 0)
}

fn to_time(at: chrono::DateTime<chrono::Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(at.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn open_inside_and_closed_outside() {
        // Sundays 02:00 for two hours. 2026-11-22 is a Sunday.
        let window = MaintenanceWindow::new("0 2 * * Sun", Duration::from_secs(7200)).unwrap();
        assert!(window.is_open(datetime!(2026-11-22 02:00 UTC)));
        assert!(window.is_open(datetime!(2026-11-22 03:59:59 UTC)));
        assert!(!window.is_open(datetime!(2026-11-22 04:00 UTC)));
        assert!(!window.is_open(datetime!(2026-11-22 01:59 UTC)));
        assert_eq!(
            window.next_open(datetime!(2026-11-23 12:00 UTC)),
            Some(datetime!(2026-11-29 02:00 UTC))
        );
        assert_eq!(
            window.current_close(datetime!(2026-11-22 03:00 UTC)),
            Some(datetime!(2026-11-22 04:00 UTC))
        );
    }

    #[test]
    fn bad_expressions_are_refused() {
        assert!(MaintenanceWindow::new("0 2 * *", Duration::from_secs(60)).is_err());
        assert!(MaintenanceWindow::new("99 2 * * *", Duration::from_secs(60)).is_err());
        assert!(MaintenanceWindow::new("0 2 * * *", Duration::ZERO).is_err());
    }
}
