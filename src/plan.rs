//! `certkeeper plan`: what the daemon would change right now, and nothing more. It reads the
//! store (never creating or migrating it), the watched certificate files and every target's
//! and policy resource's live state through the vendors' read-only calls, then prints one
//! line per certificate, target and resource with the action a pass would take. It writes
//! nothing anywhere, so it is safe next to a running daemon and in a change review.

use crate::app::{build_cloud, planned_renewal, BuildError};
use crate::cert::CertificateBundle;
use crate::cloud::PolicyMode;
use crate::config::credentials::SecretEnvironment;
use crate::config::{Config, SourceConfig};
use crate::retry::RetryPolicy;
use crate::source::file::{FileEvent, FileSource, WatchSpec};
use crate::store::sqlite::SqliteStore;
use crate::store::{StateStore, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The action `none` means nothing would change.
pub const NO_CHANGE: &str = "none";

#[derive(Debug, Serialize)]
pub struct CertificatePlan {
    pub certificate: String,
    pub source: String,
    /// The version a pass would deploy (SHA-256 of the leaf), if there is one.
    pub desired: Option<String>,
    /// `none`, `obtain` (no version yet), `renew` (due), `import` (the files changed),
    /// `rejected` (the files are unusable; the stored version stays).
    pub action: String,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TargetPlan {
    pub target: String,
    pub certificate: String,
    pub kind: String,
    pub desired: Option<String>,
    /// What the target serves: the leaf's SHA-256, or what the vendor tells of it.
    pub observed: Option<String>,
    /// `none`, `deploy`, `wait` (no version to deploy yet), `blocked` (the version fails
    /// the pre-deploy checks), `error` (the live state could not be read).
    pub action: String,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PolicyPlan {
    pub policy: String,
    pub resource: String,
    pub compliant: Option<bool>,
    /// `none`, `remediate` (enforce mode), `report` (audit mode), `error`.
    pub action: String,
    pub detail: Option<String>,
}

/// Everything a pass would do.
#[derive(Debug, Serialize)]
pub struct PlanView {
    /// How many certificates, targets and resources would change.
    pub changes: usize,
    pub certificates: Vec<CertificatePlan>,
    pub targets: Vec<TargetPlan>,
    pub policies: Vec<PolicyPlan>,
}

impl PlanView {
    /// Targets and policy resources whose live state could not be read.
    pub fn unreadable(&self) -> usize {
        self.targets
            .iter()
            .filter(|row| row.action == "error")
            .count()
            + self
                .policies
                .iter()
                .filter(|row| row.action == "error")
                .count()
    }

    /// The exit code, like terraform's `-detailed-exitcode`: 0 nothing would change, 2 a
    /// pass would change something, 1 something could not be read (a plan with holes
    /// proves nothing, so this wins over 2).
    pub fn exit_code(&self) -> u8 {
        if self.unreadable() > 0 {
            EXIT_UNREADABLE
        } else if self.changes > 0 {
            EXIT_CHANGES
        } else {
            0
        }
    }
}

/// `plan`'s exit code when something could not be read (or no plan could be made).
pub const EXIT_UNREADABLE: u8 = 1;
/// `plan`'s exit code when a pass would change something.
pub const EXIT_CHANGES: u8 = 2;

/// How many live-state reads run at once (the vendor clients' buckets still pace them).
const READ_CONCURRENCY: usize = 8;

/// Reads retried more patiently than a pass does: `plan` runs beside the daemon, which
/// spends the same account's read limit, and a plan with holes answers nothing.
const PLAN_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 12,
    throttle_base: Duration::from_secs(1),
    throttle_cap: Duration::from_secs(10),
    transient_base: Duration::from_millis(500),
    transient_cap: Duration::from_secs(10),
};

/// Builds the plan. Reads secrets (to sign read calls) but writes nothing. With `progress`,
/// counts the live-state reads on stderr (for a terminal).
pub async fn plan(
    config: &Config,
    environment: &dyn SecretEnvironment,
    progress: bool,
) -> Result<PlanView, PlanError> {
    let now = OffsetDateTime::now_utc();
    let cloud = build_cloud(config, environment, Arc::new(()))?;
    // The shared store when the cluster uses one (every instance plans from the same state).
    let store: Option<Box<dyn StateStore>> = match config.store.backend {
        crate::config::store::StoreBackend::Postgres => {
            let options =
                crate::store::postgres::ConnectOptions::from_config(&config.store, environment)
                    .map_err(BuildError::from)?;
            Some(Box::new(crate::store::PostgresStore::open(&options)?))
        }
        crate::config::store::StoreBackend::Sqlite => {
            SqliteStore::open_existing(&config.daemon.state_dir)?
                .map(|store| Box::new(store) as Box<dyn StateStore>)
        }
    };
    let grace =
        time::Duration::try_from(config.daemon.grace_period).unwrap_or(time::Duration::ZERO);

    let mut certificates = Vec::new();
    let mut desired: BTreeMap<String, Option<CertificateBundle>> = BTreeMap::new();
    for certificate in &config.certificates {
        let stored = match &store {
            Some(store) => store.latest_certificate_version(&certificate.name)?,
            None => None,
        };
        let stored_bundle = stored.as_ref().and_then(|version| version.to_bundle().ok());
        let mut row = CertificatePlan {
            certificate: certificate.name.clone(),
            source: certificate.source.label(),
            desired: stored.as_ref().map(|version| version.fingerprint.clone()),
            action: NO_CHANGE.into(),
            detail: None,
        };
        let mut bundle = stored_bundle;
        match &certificate.source {
            SourceConfig::File { .. } => {
                if let Some(spec) = WatchSpec::from_config(&certificate.name, &certificate.source) {
                    let files = FileSource::new(spec, Duration::ZERO)
                        .with_domains(&certificate.name, certificate.domains.clone());
                    for event in files.scan().await {
                        match event {
                            FileEvent::Imported { bundle: found, .. } => {
                                if row.desired.as_deref() != Some(found.fingerprint()) {
                                    row.action = "import".into();
                                    row.desired = Some(found.fingerprint().to_owned());
                                    bundle = Some(found);
                                }
                            }
                            FileEvent::Rejected { error, .. } => {
                                row.action = "rejected".into();
                                row.detail = Some(error.to_string());
                            }
                        }
                    }
                }
            }
            SourceConfig::Acme(_) | SourceConfig::LocalCa(_) => match &stored {
                None => {
                    row.action = "obtain".into();
                    row.detail = Some("no version yet".into());
                }
                Some(version) => {
                    let renewal_at = match &store {
                        Some(store) => planned_renewal(store.as_ref(), certificate, version)?,
                        None => now,
                    };
                    if renewal_at <= now {
                        row.action = "renew".into();
                        row.detail = Some(format!("due since {renewal_at}"));
                    }
                }
            },
        }
        desired.insert(certificate.name.clone(), bundle);
        certificates.push(row);
    }

    let mut reads = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(READ_CONCURRENCY));
    let mut order = 0usize;
    for certificate in &config.certificates {
        let bundle = desired.get(&certificate.name).cloned().flatten();
        for target_name in &certificate.deploy_to {
            let Some(handle) = cloud.targets.get(target_name).cloned() else {
                continue;
            };
            let (bundle, names, limit) =
                (bundle.clone(), certificate.domains.clone(), limit.clone());
            let certificate = certificate.name.clone();
            let index = order;
            order += 1;
            reads.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let mut row = TargetPlan {
                    target: handle.name.clone(),
                    certificate,
                    kind: handle.kind.to_owned(),
                    desired: bundle
                        .as_ref()
                        .map(|bundle| bundle.fingerprint().to_owned()),
                    observed: None,
                    action: NO_CHANGE.into(),
                    detail: None,
                };
                // Throttled and transient reads are retried as in a pass: a daemon running
                // next to `plan` shares the account's limits.
                let live = crate::retry::with_retries(
                    &PLAN_RETRY,
                    || handle.target.observe(),
                    |_, _, _| {},
                )
                .await;
                match (&bundle, live) {
                    (_, Err(error)) => {
                        row.action = "error".into();
                        row.detail = Some(error.to_string());
                    }
                    (None, Ok(live)) => {
                        row.observed = describe(&live);
                        row.action = "wait".into();
                        row.detail = Some("no certificate version to deploy yet".into());
                    }
                    (Some(bundle), Ok(live)) => {
                        // A vendor that returns only the expiry (RDS) still serves a known
                        // version when it matches: show that version.
                        row.observed = if live.serves(bundle) {
                            Some(bundle.fingerprint().to_owned())
                        } else {
                            describe(&live)
                        };
                        if !live.serves(bundle) {
                            match crate::cert::check_predeploy(bundle, &names, now, grace) {
                                Ok(()) => {
                                    row.action = "deploy".into();
                                    if let Some(window) = &handle.window {
                                        if !window.is_open(now) {
                                            row.detail = window.next_open(now).map(|at| {
                                                format!("in the maintenance window opening {at}")
                                            });
                                        }
                                    }
                                }
                                Err(violation) => {
                                    row.action = "blocked".into();
                                    row.detail = Some(violation.to_string());
                                }
                            }
                        }
                    }
                }
                (index, row)
            });
        }
    }
    let mut targets: Vec<(usize, TargetPlan)> = Vec::new();
    while let Some(joined) = reads.join_next().await {
        if let Ok(row) = joined {
            targets.push(row);
        }
        if progress {
            eprint!("\rreading live state: {}/{order} targets", targets.len());
        }
    }
    if progress && order > 0 {
        eprintln!();
    }
    targets.sort_by_key(|(index, _)| *index);
    let targets: Vec<TargetPlan> = targets.into_iter().map(|(_, row)| row).collect();

    let mut policies = Vec::new();
    for (config, policy) in &cloud.policies {
        for resource in policy.resources() {
            let mut row = PolicyPlan {
                policy: config.name.clone(),
                resource: resource.clone(),
                compliant: None,
                action: NO_CHANGE.into(),
                detail: None,
            };
            let checked =
                crate::retry::with_retries(&PLAN_RETRY, || policy.check(&resource), |_, _, _| {})
                    .await;
            match checked {
                Ok(finding) => {
                    row.compliant = Some(finding.compliant);
                    if !finding.compliant {
                        row.action = match policy.mode() {
                            PolicyMode::Enforce => "remediate".into(),
                            PolicyMode::Audit => "report".into(),
                        };
                        row.detail =
                            Some(format!("{} (wants {})", finding.observed, finding.desired));
                    }
                }
                Err(error) => {
                    row.action = "error".into();
                    row.detail = Some(error.to_string());
                }
            }
            policies.push(row);
        }
    }

    let changes = certificates
        .iter()
        .filter(|row| matches!(row.action.as_str(), "obtain" | "renew" | "import"))
        .count()
        + targets.iter().filter(|row| row.action == "deploy").count()
        + policies
            .iter()
            .filter(|row| row.action == "remediate")
            .count();
    Ok(PlanView {
        changes,
        certificates,
        targets,
        policies,
    })
}

fn describe(live: &crate::cloud::LiveCertificate) -> Option<String> {
    if !live.ssl_enabled {
        return Some("tls off".into());
    }
    match (&live.fingerprint, live.not_after) {
        (Some(fingerprint), _) => Some(fingerprint.to_ascii_lowercase()),
        (None, Some(not_after)) => Some(format!("expires {not_after}")),
        (None, None) => None,
    }
}

/// Prints the plan: JSON, or a line per change and a summary.
pub fn print(view: &PlanView, json: bool, out: &mut dyn Write) -> Result<(), PlanError> {
    if json {
        serde_json::to_writer_pretty(&mut *out, view)?;
        writeln!(out)?;
        return Ok(());
    }
    let short = |fingerprint: &Option<String>| {
        fingerprint
            .as_deref()
            .map(|value| value.chars().take(16).collect::<String>())
            .unwrap_or_else(|| "-".into())
    };
    for row in view
        .certificates
        .iter()
        .filter(|row| row.action != NO_CHANGE)
    {
        writeln!(
            out,
            "certificate {:<24} {:<8} {}{}",
            row.certificate,
            row.action,
            short(&row.desired),
            row.detail
                .as_deref()
                .map(|d| format!("  ({d})"))
                .unwrap_or_default()
        )?;
    }
    for row in view.targets.iter().filter(|row| row.action != NO_CHANGE) {
        writeln!(
            out,
            "target      {:<24} {:<8} {} -> {}{}",
            row.target,
            row.action,
            short(&row.observed),
            short(&row.desired),
            row.detail
                .as_deref()
                .map(|d| format!("  ({d})"))
                .unwrap_or_default()
        )?;
    }
    for row in view.policies.iter().filter(|row| row.action != NO_CHANGE) {
        writeln!(
            out,
            "policy      {:<24} {:<8} {}{}",
            format!("{}/{}", row.policy, row.resource),
            row.action,
            row.resource,
            row.detail
                .as_deref()
                .map(|d| format!("  ({d})"))
                .unwrap_or_default()
        )?;
    }
    let errors = view.unreadable();
    if view.changes == 0 && errors == 0 {
        writeln!(out, "No changes: every target serves its newest certificate and every policy resource is compliant.")?;
    } else {
        writeln!(
            out,
            "{} change(s); {} target(s) and {} policy resource(s) checked; {} could not be read.",
            view.changes,
            view.targets.len(),
            view.policies.len(),
            errors
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(changes: usize, target_action: &str) -> PlanView {
        PlanView {
            changes,
            certificates: Vec::new(),
            targets: vec![TargetPlan {
                target: "cdn".into(),
                certificate: "www".into(),
                kind: "alibaba-cdn".into(),
                desired: None,
                observed: None,
                action: target_action.into(),
                detail: None,
            }],
            policies: Vec::new(),
        }
    }

    #[test]
    fn exit_code_is_detailed_like_terraform() {
        assert_eq!(view(0, NO_CHANGE).exit_code(), 0);
        assert_eq!(view(1, "deploy").exit_code(), EXIT_CHANGES);
        assert_eq!(view(0, "error").exit_code(), EXIT_UNREADABLE);
        // A change next to an unreadable target: the plan has holes, so 1 wins.
        let mut mixed = view(1, "deploy");
        mixed.targets.extend(view(0, "error").targets);
        assert_eq!(mixed.exit_code(), EXIT_UNREADABLE);
        let mut out = Vec::new();
        print(&mixed, false, &mut out).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("1 could not be read"),
            "the summary says why"
        );
    }
}
