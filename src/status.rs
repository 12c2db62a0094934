//! `certkeeper status`: what the store knows, joined with what the config names, as a table
//! for people or JSON for scripts. Read-only: a state directory without a store shows every
//! configured certificate and target as not yet obtained or deployed.

use crate::config::Config;
use crate::store::sqlite::SqliteStore;
use crate::store::{status_report, StatusReport, StoreError};
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
    let mut targets = Vec::new();
    for target in &config.targets {
        let certificate = config
            .certificates
            .iter()
            .find(|certificate| certificate.deploy_to.contains(&target.name))
            .map(|certificate| certificate.name.clone());
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
    }
    Ok(())
}
