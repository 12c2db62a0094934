//! `certkeeper status`: what the store knows, joined with what the config names, as a table
//! for people or JSON for scripts. Read-only: a state directory without a store shows every
//! configured certificate and target as not yet obtained or deployed. [`events`] is the
//! other read-only view of the store: `certkeeper events`.

pub mod events;

use crate::config::Config;
use crate::engine::pass::Components;
use crate::store::sqlite::SqliteStore;
use crate::store::{status_report, StateStore, StatusReport, StoreError, SubjectKind};
use serde::Serialize;
use std::io::Write;
use time::OffsetDateTime;

/// Why status could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl StatusError {
    /// The reader went away (`certkeeper status | head`): not a failure of `status`.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            StatusError::Output(error) => error.kind() == std::io::ErrorKind::BrokenPipe,
            StatusError::Json(error) => {
                error.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe)
            }
            StatusError::Store(_) => false,
        }
    }
}

#[derive(Debug, Serialize)]
struct CertificateRow {
    name: String,
    source: String,
    domains: Vec<String>,
    fingerprint: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    not_after: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    renewal_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize)]
struct TargetRow {
    name: String,
    kind: String,
    certificate: Option<String>,
    status: String,
    in_sync: bool,
    /// What the ledger wants on the target and what it last saw there, so a script can
    /// tell "in sync with the newest version" from "in sync with an older one".
    desired_fingerprint: Option<String>,
    observed_fingerprint: Option<String>,
    attempts: u32,
    last_error_class: Option<String>,
    last_error_code: Option<String>,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    next_attempt_at: Option<OffsetDateTime>,
    /// What the daemon will do next about this target, in words.
    next_action: String,
}

#[derive(Debug, Serialize)]
struct PolicyRow {
    policy: String,
    kind: String,
    resource: String,
    compliant: Option<bool>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_checked: Option<OffsetDateTime>,
    last_job_id: Option<String>,
    last_error_code: Option<String>,
    /// What the policy learned about its vendor account (`Policy::account_note`).
    #[serde(skip_serializing_if = "Option::is_none")]
    account_note: Option<String>,
}

#[derive(Debug, Serialize)]
struct StatusView {
    certificates: Vec<CertificateRow>,
    targets: Vec<TargetRow>,
    policies: Vec<PolicyRow>,
}

/// Reads the store in `config.daemon.state_dir` (if there is one) and prints the view.
pub fn print(config: &Config, json: bool, out: &mut dyn Write) -> Result<(), StatusError> {
    // Opening never creates anything here: `status` run as root must not leave a store the
    // daemon's user cannot open.
    let report = match SqliteStore::open_existing(&config.daemon.state_dir)? {
        Some(store) => status_report(&store)?,
        None => StatusReport::default(),
    };
    let now = OffsetDateTime::now_utc();
    let view = join(config, &report, now);
    if json {
        serde_json::to_writer_pretty(&mut *out, &view)?;
        writeln!(out)?;
    } else {
        write_tables(&view, now, out)?;
    }
    Ok(())
}

/// [`summary_line`] from the store: the status report plus which certificates' last
/// obtain attempt failed.
pub fn daemon_summary(
    config: &Config,
    store: &dyn StateStore,
    now: OffsetDateTime,
) -> Result<String, StoreError> {
    let report = status_report(store)?;
    let mut obtain_failing = 0;
    for certificate in &config.certificates {
        let attempts = store.attempts(SubjectKind::Certificate, &certificate.name)?;
        if attempts
            .last()
            .is_some_and(|attempt| attempt.class.is_some())
        {
            obtain_failing += 1;
        }
    }
    Ok(summary_line(config, &report, obtain_failing, now))
}

/// The daemon's one-line state for systemd's `STATUS=` (what `systemctl status` shows):
/// `52/52 in sync, next renewal web in 19d, 0 failing`, plus policy compliance when the
/// config has policies. Failing counts targets failed or parked, policy resources whose
/// last check or correction failed and the `obtain_failing` certificates.
pub fn summary_line(
    config: &Config,
    report: &StatusReport,
    obtain_failing: usize,
    now: OffsetDateTime,
) -> String {
    use crate::store::DeployStatus;
    // Indexed once: a search per pair made every pass end quadratic in the fleet (38 s at
    // 100,000 targets; BENCHMARKS.md, scale curve).
    let records: std::collections::HashMap<(&str, &str), &crate::store::DeploymentRecord> = report
        .deployments
        .iter()
        .map(|record| {
            (
                (record.target.as_str(), record.certificate.as_str()),
                record,
            )
        })
        .collect();
    let ledger = |target: &str, certificate: &str| records.get(&(target, certificate)).copied();
    let pairs: Vec<(&str, &str)> = config
        .certificates
        .iter()
        .flat_map(|certificate| {
            certificate
                .deploy_to
                .iter()
                .map(|target| (target.as_str(), certificate.name.as_str()))
        })
        .collect();
    let statuses: Vec<Option<DeployStatus>> = pairs
        .iter()
        .map(|(target, certificate)| ledger(target, certificate).map(|record| record.status))
        .collect();
    let in_sync = statuses
        .iter()
        .filter(|status| **status == Some(DeployStatus::InSync))
        .count();
    let configured_resources: Vec<(&str, &str)> = config
        .policies
        .iter()
        .flat_map(|policy| {
            policy
                .resources
                .iter()
                .map(|resource| (policy.name.as_str(), resource.as_str()))
        })
        .collect();
    let resource_status = |policy: &str, resource: &str| {
        report
            .policies
            .iter()
            .find(|status| status.policy == policy && status.resource == resource)
    };
    let failing = obtain_failing
        + statuses
            .iter()
            .filter(|status| matches!(status, Some(DeployStatus::Failed | DeployStatus::Parked)))
            .count()
        + configured_resources
            .iter()
            .filter(|(policy, resource)| {
                resource_status(policy, resource).is_some_and(|status| status.last_error.is_some())
            })
            .count();
    let next_renewal = config
        .certificates
        .iter()
        .filter_map(|certificate| {
            report
                .certificates
                .iter()
                .find(|stored| stored.name == certificate.name)
                .and_then(|stored| stored.renewal_at)
                .map(|at| (at, certificate.name.as_str()))
        })
        .min();
    let mut parts = vec![format!("{in_sync}/{} in sync", pairs.len())];
    parts.push(match next_renewal {
        Some((at, name)) if at <= now => format!("renewal of {name} due now"),
        Some((at, name)) => format!("next renewal {name} in {}", in_words(at - now)),
        None => "no renewal planned".to_owned(),
    });
    if !configured_resources.is_empty() {
        let compliant = configured_resources
            .iter()
            .filter(|(policy, resource)| {
                resource_status(policy, resource).is_some_and(|status| status.compliant)
            })
            .count();
        parts.push(format!(
            "{compliant}/{} compliant",
            configured_resources.len()
        ));
    }
    parts.push(format!("{failing} failing"));
    parts.join(", ")
}

/// A positive span in its largest whole unit: `19d`, `5h`, `12m`, `<1m`.
fn in_words(span: time::Duration) -> String {
    if span.whole_days() >= 1 {
        format!("{}d", span.whole_days())
    } else if span.whole_hours() >= 1 {
        format!("{}h", span.whole_hours())
    } else if span.whole_minutes() >= 1 {
        format!("{}m", span.whole_minutes())
    } else {
        "<1m".to_owned()
    }
}

/// The next thing the daemon does about a target, from its ledger row.
fn next_action(record: Option<&crate::store::DeploymentRecord>, now: OffsetDateTime) -> String {
    use crate::store::DeployStatus;
    let Some(record) = record else {
        return "deploy once a version exists".into();
    };
    match (record.status, record.next_attempt_at) {
        (DeployStatus::InSync, _) => "verify on the next drift scan".into(),
        (DeployStatus::Parked, _) => {
            "parked until the certificate or the configuration changes".into()
        }
        (DeployStatus::Deploying, _) => "re-read and finish the interrupted deploy".into(),
        (_, Some(at)) if at > now => match &record.last_error {
            Some(error) => format!(
                "retry at {} ({} backoff, {} attempt(s))",
                date(Some(at)),
                error.class,
                record.attempts
            ),
            None => format!("deploy at {} (maintenance window)", date(Some(at))),
        },
        _ => "deploy on the next pass".into(),
    }
}

fn join(config: &Config, report: &StatusReport, now: OffsetDateTime) -> StatusView {
    let certificates = config
        .certificates
        .iter()
        .map(|certificate| {
            let stored = report
                .certificates
                .iter()
                .find(|stored| stored.name == certificate.name);
            CertificateRow {
                name: certificate.name.clone(),
                source: certificate.source.label(),
                domains: certificate.domains.clone(),
                fingerprint: stored.map(|stored| stored.fingerprint.clone()),
                not_after: stored.map(|stored| stored.not_after),
                renewal_at: stored.and_then(|stored| stored.renewal_at),
            }
        })
        .collect();
    let deployments: std::collections::HashMap<&str, &crate::store::DeploymentRecord> = report
        .deployments
        .iter()
        .map(|record| (record.target.as_str(), record))
        .collect();
    // The first certificate naming each target, indexed once (not a search per target).
    let mut certificate_of: std::collections::HashMap<&str, &str> =
        std::collections::HashMap::new();
    for certificate in &config.certificates {
        for target in &certificate.deploy_to {
            certificate_of
                .entry(target.as_str())
                .or_insert(certificate.name.as_str());
        }
    }
    let mut targets = Vec::new();
    for target in &config.targets {
        let certificate = certificate_of
            .get(target.name.as_str())
            .map(|name| name.to_string());
        let record = deployments.get(target.name.as_str()).copied();
        targets.push(TargetRow {
            name: target.name.clone(),
            kind: target.kind.clone(),
            certificate,
            status: record
                .map(|record| record.status.as_str().to_owned())
                .unwrap_or_else(|| "never_deployed".into()),
            in_sync: record
                .is_some_and(|record| record.status == crate::store::DeployStatus::InSync),
            desired_fingerprint: record.and_then(|record| record.desired_fingerprint.clone()),
            observed_fingerprint: record.and_then(|record| record.observed_fingerprint.clone()),
            attempts: record.map(|record| record.attempts).unwrap_or(0),
            last_error_class: record
                .and_then(|record| record.last_error.as_ref())
                .map(|error| error.class.as_str().to_owned()),
            last_error_code: record
                .and_then(|record| record.last_error.as_ref())
                .map(|error| error.code.clone()),
            last_error: record
                .and_then(|record| record.last_error.as_ref())
                .map(|error| error.message.clone()),
            next_attempt_at: record.and_then(|record| record.next_attempt_at),
            next_action: next_action(record, now),
        });
    }
    let mut policies = Vec::new();
    for policy in &config.policies {
        for resource in &policy.resources {
            let status = report
                .policies
                .iter()
                .find(|status| status.policy == policy.name && &status.resource == resource);
            policies.push(PolicyRow {
                policy: policy.name.clone(),
                kind: policy.kind.clone(),
                resource: resource.clone(),
                compliant: status.map(|status| status.compliant),
                last_checked: status.map(|status| status.last_checked),
                last_job_id: status.and_then(|status| status.last_job_id.clone()),
                last_error_code: status
                    .and_then(|status| status.last_error.as_ref())
                    .map(|error| error.code.clone()),
                account_note: status
                    .and_then(|status| status.observed["account_note"].as_str())
                    .map(str::to_owned),
            });
        }
    }
    StatusView {
        certificates,
        targets,
        policies,
    }
}

fn date(at: Option<OffsetDateTime>) -> String {
    at.map(|at| {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}Z",
            at.year(),
            at.month() as u8,
            at.day(),
            at.hour(),
            at.minute()
        )
    })
    .unwrap_or_else(|| "-".into())
}

/// Left-aligned columns sized to their widest cell.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|title| title.to_string()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row.clone()))?;
    }
    Ok(())
}

fn write_tables(
    view: &StatusView,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let certificate_rows: Vec<Vec<String>> = view
        .certificates
        .iter()
        .map(|row| {
            let days_left = row
                .not_after
                .map(|not_after| format!("{}", (not_after - now).whole_days()))
                .unwrap_or_else(|| "-".into());
            vec![
                row.name.clone(),
                row.source.clone(),
                if row.fingerprint.is_some() {
                    date(row.not_after)
                } else {
                    "not obtained".into()
                },
                days_left,
                date(row.renewal_at),
            ]
        })
        .collect();
    table(
        out,
        &[
            "CERTIFICATE",
            "SOURCE",
            "EXPIRES",
            "DAYS LEFT",
            "NEXT RENEWAL",
        ],
        &certificate_rows,
    )?;
    writeln!(out)?;
    let target_rows: Vec<Vec<String>> = view
        .targets
        .iter()
        .map(|row| {
            let error = match (&row.last_error_class, &row.last_error_code) {
                (Some(class), Some(code)) => format!("{class} {code}"),
                _ => "-".into(),
            };
            vec![
                row.name.clone(),
                row.kind.clone(),
                row.certificate.clone().unwrap_or_else(|| "-".into()),
                if row.in_sync {
                    "yes".into()
                } else {
                    format!("no ({})", row.status)
                },
                error,
                row.next_action.clone(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "TARGET",
            "KIND",
            "CERTIFICATE",
            "IN SYNC",
            "LAST ERROR",
            "NEXT",
        ],
        &target_rows,
    )?;
    if !view.policies.is_empty() {
        writeln!(out)?;
        let policy_rows: Vec<Vec<String>> = view
            .policies
            .iter()
            .map(|row| {
                vec![
                    row.policy.clone(),
                    row.resource.clone(),
                    match row.compliant {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => "not checked".into(),
                    },
                    date(row.last_checked),
                    row.last_error_code.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            out,
            &[
                "POLICY",
                "RESOURCE",
                "COMPLIANT",
                "LAST CHECKED",
                "LAST ERROR",
            ],
            &policy_rows,
        )?;
        for row in &view.policies {
            if let Some(note) = &row.account_note {
                writeln!(out, "note: {} {}: {note}", row.policy, row.resource)?;
            }
        }
    }
    Ok(())
}

/// A one-line rollout summary from the store, and whether everything has converged.
pub fn rollout_summary(
    store: &dyn StateStore,
    components: &Components,
) -> Result<(String, bool), StoreError> {
    let deployments = store.deployments()?;
    let wanted: usize = components
        .certificates
        .iter()
        .map(|entry| entry.config.deploy_to.len())
        .sum();
    let in_sync = deployments
        .iter()
        .filter(|record| record.status == crate::store::DeployStatus::InSync)
        .count();
    let failed = deployments
        .iter()
        .filter(|record| {
            matches!(
                record.status,
                crate::store::DeployStatus::Failed | crate::store::DeployStatus::Parked
            )
        })
        .count();
    let statuses = store.policy_statuses()?;
    let resources: usize = components
        .policies
        .iter()
        .map(|(config, _)| config.resources.len())
        .sum();
    let compliant = statuses.iter().filter(|status| status.compliant).count();
    let line = format!(
        "rollout: {in_sync}/{wanted} targets in sync, {failed} failing; policies: {compliant}/{resources} resources compliant"
    );
    Ok((line, in_sync == wanted && compliant == resources))
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn a_reader_that_went_away_is_not_a_failure() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(StatusError::Output(pipe()).is_broken_pipe());
        assert!(StatusError::Json(serde_json::Error::io(pipe())).is_broken_pipe());
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!StatusError::Output(denied).is_broken_pipe());
    }

    use super::*;
    use crate::store::{CertificateStatus, DeployStatus, DeploymentRecord, LastError};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 03:00:00 UTC);

    /// `web` deploys to targets `a` and `b`, `api` to `c` (file sources and targets).
    pub(crate) fn config() -> Config {
        crate::config::load_str(
            "test.toml",
            r#"
[daemon]
state_dir = "/var/lib/certkeeper"

[[certificate]]
name = "web"
domains = ["www.example.com"]
source = { file = { cert = "/x/c.pem", key = "/x/k.pem" } }
deploy_to = ["a", "b"]

[[certificate]]
name = "api"
domains = ["api.example.com"]
source = { file = { cert = "/x/c.pem", key = "/x/k.pem" } }
deploy_to = ["c"]

[[target]]
name = "a"
kind = "file"
directory = "/tmp/a"

[[target]]
name = "b"
kind = "file"
directory = "/tmp/b"

[[target]]
name = "c"
kind = "file"
directory = "/tmp/c"
"#,
        )
        .unwrap()
        .config
    }

    fn stored(name: &str, renewal_at: Option<OffsetDateTime>) -> CertificateStatus {
        CertificateStatus {
            name: name.into(),
            version_id: 1,
            fingerprint: "ab".into(),
            serial: "01".into(),
            not_before: NOW,
            not_after: NOW + time::Duration::days(30),
            source: "file".into(),
            obtained_at: NOW,
            renewal_at,
        }
    }

    fn row(target: &str, certificate: &str, status: DeployStatus) -> DeploymentRecord {
        DeploymentRecord {
            target: target.into(),
            certificate: certificate.into(),
            desired_fingerprint: Some("ab".into()),
            observed_fingerprint: None,
            status,
            attempts: 0,
            last_error: (status == DeployStatus::Failed).then(|| LastError {
                class: crate::error::ErrorClass::Auth,
                code: "InvalidAccessKeyId".into(),
                message: "wrong key".into(),
            }),
            next_attempt_at: None,
            updated_at: NOW,
        }
    }

    #[test]
    fn summary_names_the_next_renewal_in_words_and_counts_failures() {
        let report = StatusReport {
            certificates: vec![
                stored(
                    "web",
                    Some(NOW + time::Duration::days(19) + time::Duration::hours(5)),
                ),
                stored("api", Some(NOW + time::Duration::days(40))),
            ],
            deployments: vec![
                row("a", "web", DeployStatus::InSync),
                row("b", "web", DeployStatus::Failed),
                row("c", "api", DeployStatus::InSync),
            ],
            policies: Vec::new(),
        };
        let line = summary_line(&config(), &report, 0, NOW);
        assert_eq!(line, "2/3 in sync, next renewal web in 19d, 1 failing");
        assert!(summary_line(&config(), &report, 1, NOW).ends_with(", 2 failing"));
        assert!(!line.contains(&NOW.unix_timestamp().to_string()));
    }

    #[test]
    fn summary_before_anything_is_stored_and_when_a_renewal_is_due() {
        let line = summary_line(&config(), &StatusReport::default(), 0, NOW);
        assert_eq!(line, "0/3 in sync, no renewal planned, 0 failing");
        let report = StatusReport {
            certificates: vec![stored("api", Some(NOW - time::Duration::hours(1)))],
            ..StatusReport::default()
        };
        assert_eq!(
            summary_line(&config(), &report, 0, NOW),
            "0/3 in sync, renewal of api due now, 0 failing"
        );
        let soon = StatusReport {
            certificates: vec![stored("api", Some(NOW + time::Duration::minutes(90)))],
            ..StatusReport::default()
        };
        assert!(summary_line(&config(), &soon, 0, NOW).contains("next renewal api in 1h"));
    }
}
