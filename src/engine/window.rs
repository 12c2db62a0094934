//! Maintenance windows: a cron schedule of opening times plus a duration. Changes that can
//! restart a database (RDS SSL, MySQL Plus SSL, GaussDB settings) wait for an open window.
//! Schedules are read in UTC.

use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

/// A recurring window, e.g. `schedule = "0 2 * * Sun"`, `duration = "2h"`.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    schedule: cron::Schedule,
    expression: String,
    duration: Duration,
}

impl PartialEq for MaintenanceWindow {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.duration == other.duration
    }
}

impl MaintenanceWindow {
    /// Parses a cron expression: five fields (minute hour day month weekday) or six/seven
    /// with seconds (and year) first.
    pub fn new(expression: &str, duration: Duration) -> Result<Self, String> {
        let schedule = parse_cron(expression)?;
        if duration.is_zero() {
            return Err("maintenance window duration must be greater than zero".into());
        }
        Ok(Self {
            schedule,
            expression: expression.to_owned(),
            duration,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
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
        let start = to_time(self.schedule.after(&to_chrono(from)?).next()?)?;
        (start <= now && now < start + length).then_some(start + length)
    }

    /// The next time the window opens strictly after `now`.
    pub fn next_open(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        to_time(self.schedule.after(&to_chrono(now)?).next()?)
    }
}

/// Parses five-field cron (minute first) or the `cron` crate's six/seven-field form.
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    let fields = expression.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expression}"),
        6 | 7 => expression.to_owned(),
        _ => return Err(format!("cron expression `{expression}` must have 5 fields (minute hour day month weekday), or 6-7 with seconds first")),
    };
    cron::Schedule::from_str(&full)
        .map_err(|error| format!("cron expression `{expression}` is invalid: {error}"))
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
