//! `certkeeper events`: the event log from the store, so what happened last night is one
//! command away. Read-only and safe next to the running daemon (the store is WAL: a reader
//! never blocks its writes). Filters by time (`--since 24h` or an RFC 3339 instant), by
//! certificate (its own events and those of the targets it deploys to) and by target; prints
//! a line per event or one JSON object per line, and with `--follow` keeps polling the store
//! for new events until Ctrl-C or SIGTERM.

use crate::config::Config;
use crate::store::sqlite::SqliteStore;
use crate::store::{Event, EventQuery, StateStore, StoreError};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How often `--follow` looks for new events: bounded, so a follower costs the daemon
/// nothing noticeable and shows an event within a second or two.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Events read per query, so a long log is streamed rather than held in memory at once.
const PAGE: usize = 1000;

/// Why the events could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// A filter names nothing configured or does not parse (a usage error).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("setting up the runtime or signal handlers: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Which events to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub since: Option<OffsetDateTime>,
    /// Only events about these subjects (certificate, target or policy names); all if `None`.
    pub subjects: Option<BTreeSet<String>>,
}

impl EventFilter {
    /// Builds the filter from the command line: `since` as a duration back from `now`
    /// (`24h`, `7d`) or an RFC 3339 instant; `certificate` and `target` must be configured.
    pub fn new(
        config: &Config,
        since: Option<&str>,
        certificate: Option<&str>,
        target: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Self, EventsError> {
        let since = since.map(|text| parse_since(text, now)).transpose()?;
        let by_certificate = certificate
            .map(|name| {
                config
                    .certificates
                    .iter()
                    .find(|certificate| certificate.name == name)
                    .map(|certificate| {
                        std::iter::once(certificate.name.clone())
                            .chain(certificate.deploy_to.iter().cloned())
                            .collect::<BTreeSet<_>>()
                    })
                    .ok_or_else(|| {
                        EventsError::Usage(format!(
                            "no certificate named `{name}` in the configuration"
                        ))
                    })
            })
            .transpose()?;
        let by_target = target
            .map(|name| {
                if config.targets.iter().any(|target| target.name == name) {
                    Ok(BTreeSet::from([name.to_owned()]))
                } else {
                    Err(EventsError::Usage(format!(
                        "no target named `{name}` in the configuration"
                    )))
                }
            })
            .transpose()?;
        let subjects = match (by_certificate, by_target) {
            (Some(certificate), Some(target)) => {
                Some(certificate.intersection(&target).cloned().collect())
            }
            (certificate, target) => certificate.or(target),
        };
        Ok(Self { since, subjects })
    }

    fn matches(&self, event: &Event) -> bool {
        self.subjects
            .as_ref()
            .is_none_or(|subjects| subjects.contains(&event.subject))
    }
}

/// `24h`, `7d`, `1h30m` back from `now`, or an RFC 3339 instant.
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, EventsError> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    crate::config::parse_duration(text)
        .ok()
        .and_then(|span| time::Duration::try_from(span).ok())
        .and_then(|span| now.checked_sub(span))
        .ok_or_else(|| {
            EventsError::Usage(format!(
                "--since `{text}`: expected a duration such as `24h` or `7d`, or an RFC 3339 \
                 time such as `2026-11-29T03:00:00Z`"
            ))
        })
}

/// `2026-11-29T03:12:45Z`: how the CLI prints an instant.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// One event as `certkeeper events` prints it: `2026-11-29T03:12:45Z  deploy.succeeded
/// cdn-www  deployed www to cdn-www`, or one JSON object.
pub fn write_event(event: &Event, json: bool, out: &mut dyn Write) -> Result<(), EventsError> {
    if json {
        serde_json::to_writer(&mut *out, event)?;
        writeln!(out)?;
    } else {
        let at = rfc3339(event.at);
        writeln!(
            out,
            "{at}  {}  {}  {}",
            event.kind, event.subject, event.message
        )?;
    }
    Ok(())
}

/// Prints every matching event after `after_id` (oldest first) and returns the id of the
/// last event read, matching or not: the cursor for the next poll.
pub fn print_new(
    store: &dyn StateStore,
    filter: &EventFilter,
    after_id: i64,
    json: bool,
    out: &mut dyn Write,
) -> Result<i64, EventsError> {
    let mut cursor = after_id;
    loop {
        let page = store.events(&EventQuery {
            after_id: Some(cursor),
            since: filter.since,
            limit: Some(PAGE),
            ..Default::default()
        })?;
        for event in page.iter().filter(|event| filter.matches(event)) {
            write_event(event, json, out)?;
        }
        out.flush()?;
        match page.last() {
            Some(last) if page.len() == PAGE => cursor = last.id,
            Some(last) => return Ok(last.id),
            None => return Ok(cursor),
        }
    }
}

/// `certkeeper events`: prints what matches, then with `follow` polls for new events every
/// [`FOLLOW_INTERVAL`] until `stop` resolves (Ctrl-C or SIGTERM in `main`). A state
/// directory without a store has no events yet; a follower waits for the store to appear.
pub async fn run(
    config: &Config,
    filter: &EventFilter,
    json: bool,
    follow: bool,
    out: &mut dyn Write,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), EventsError> {
    let state_dir = &config.daemon.state_dir;
    let mut store = SqliteStore::open_existing(state_dir)?;
    let mut cursor = 0;
    if let Some(store) = &store {
        cursor = print_new(store, filter, cursor, json, out)?;
    }
    if !follow {
        return Ok(());
    }
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        if store.is_none() {
            store = SqliteStore::open_existing(state_dir)?;
        }
        if let Some(store) = &store {
            cursor = print_new(store, filter, cursor, json, out)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00:00 UTC);

    /// `web` deploys to targets `a` and `b`, `api` to `c`.
    fn config() -> Config {
        crate::status::tests::config()
    }

    #[test]
    fn since_takes_a_duration_or_an_instant() {
        assert_eq!(
            parse_since("24h", NOW).unwrap(),
            datetime!(2026-11-28 12:00:00 UTC)
        );
        assert_eq!(
            parse_since("2026-11-29T03:12:45Z", NOW).unwrap(),
            datetime!(2026-11-29 03:12:45 UTC)
        );
        let error = parse_since("yesterday", NOW).unwrap_err().to_string();
        assert!(error.contains("--since `yesterday`"), "{error}");
    }

    #[test]
    fn a_certificate_brings_its_targets_and_unknown_names_are_refused() {
        let config = config();
        let filter = EventFilter::new(&config, None, Some("web"), None, NOW).unwrap();
        assert_eq!(
            filter.subjects,
            Some(BTreeSet::from([
                "a".to_owned(),
                "b".to_owned(),
                "web".to_owned()
            ]))
        );
        let both = EventFilter::new(&config, None, Some("web"), Some("b"), NOW).unwrap();
        assert_eq!(both.subjects, Some(BTreeSet::from(["b".to_owned()])));
        let neither = EventFilter::new(&config, None, Some("web"), Some("c"), NOW).unwrap();
        assert_eq!(neither.subjects, Some(BTreeSet::new()), "c is api's target");
        for (certificate, target) in [(Some("nope"), None), (None, Some("nope"))] {
            let error = EventFilter::new(&config, None, certificate, target, NOW).unwrap_err();
            assert!(matches!(error, EventsError::Usage(_)), "{error}");
            assert!(error.to_string().contains("`nope`"), "{error}");
        }
    }

    #[test]
    fn lines_and_json_lines() {
        let event = Event {
            id: 7,
            at: datetime!(2026-11-29 03:12:45 UTC),
            kind: "deploy.succeeded".into(),
            subject: "cdn-www".into(),
            message: "deployed www to cdn-www".into(),
            fields: serde_json::json!({"certificate": "www"}),
        };
        let mut out = Vec::new();
        write_event(&event, false, &mut out).unwrap();
        write_event(&event, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("2026-11-29T03:12:45Z  deploy.succeeded  cdn-www  deployed www to cdn-www")
        );
        let json: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(json["at"], "2026-11-29T03:12:45Z");
        assert_eq!(json["fields"]["certificate"], "www");
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn pages_through_a_long_log_and_returns_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for n in 0..(PAGE + 5) {
            store
                .append_event(&Event {
                    id: 0,
                    at: NOW,
                    kind: "deploy.in_sync".into(),
                    subject: if n % 2 == 0 { "a" } else { "c" }.into(),
                    message: format!("event {n}"),
                    fields: serde_json::json!({}),
                })
                .unwrap();
        }
        let filter = EventFilter::new(&config(), None, None, Some("a"), NOW).unwrap();
        let mut out = Vec::new();
        let cursor = print_new(&store, &filter, 0, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), (PAGE + 5).div_ceil(2));
        assert!(text.lines().all(|line| line.contains("  a  ")));
        assert_eq!(cursor, (PAGE + 5) as i64);
        let mut again = Vec::new();
        assert_eq!(
            print_new(&store, &filter, cursor, false, &mut again).unwrap(),
            cursor
        );
        assert!(again.is_empty(), "nothing new after the cursor");
    }
}
