//! `certkeeper plan`: what the daemon would change right now, and nothing more. It reads the
//! store (never creating or migrating it), the watched certificate files and every target's
//! and policy resource's live state through the vendors' read-only calls, then prints one
//! line per certificate, target and resource with the action a pass would take. It writes
//! nothing anywhere, so it is safe next to a running daemon and in a change review.

use crate::app::{build_cloud, planned_renewal, BuildError};
use crate::cert::CertificateBundle;
use crate::cloud::Policy;
use crate::cloud::PolicyMode;
use crate::config::credentials::SecretEnvironment;
use crate::config::{Config, PolicyConfig, SourceConfig};
use crate::engine::decide::{decide, hold, superseded, Decision, Hold};
use crate::engine::deploy::TargetHandle;
use crate::engine::inputs;
use crate::retry::RetryPolicy;
use crate::source::file::{FileEvent, FileSource, WatchSpec};
use crate::store::sqlite::SqliteStore;
use crate::store::{StateStore, StoreError, SubjectKind};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
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
/// (Every action type's `None` prints as this.)
pub const NO_CHANGE: &str = "none";

/// Declares an action enum that serializes (and prints) as its snake_case name.
macro_rules! actions {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so the table's column widths apply.
                f.pad(self.as_str())
            }
        }
    };
}

actions! {
    /// What a pass would do about a certificate.
    CertificateAction {
        None = "none",
        /// No version yet.
        Obtain = "obtain",
        /// Due.
        Renew = "renew",
        /// The watched files changed.
        Import = "import",
        /// The watched files are unusable; the stored version stays.
        Rejected = "rejected",
    }
}

actions! {
    /// What a pass would do about a target.
    TargetAction {
        None = "none",
        Deploy = "deploy",
        /// No version to deploy yet.
        Wait = "wait",
        /// The version fails the pre-deploy checks.
        Blocked = "blocked",
        /// The live state could not be read.
        Error = "error",
    }
}

actions! {
    /// What a pass would do about a policy resource.
    PolicyAction {
        None = "none",
        /// Enforce mode.
        Remediate = "remediate",
        /// Audit mode.
        Report = "report",
        Error = "error",
    }
}

#[derive(Debug, Serialize)]
pub struct CertificatePlan {
    pub certificate: String,
    pub source: String,
    /// The version a pass would deploy (SHA-256 of the leaf), if there is one.
    pub desired: Option<String>,
    pub action: CertificateAction,
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
    pub action: TargetAction,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PolicyPlan {
    pub policy: String,
    pub resource: String,
    pub compliant: Option<bool>,
    pub action: PolicyAction,
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
            .filter(|row| row.action == TargetAction::Error)
            .count()
            + self
                .policies
                .iter()
                .filter(|row| row.action == PolicyAction::Error)
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
    let cloud = build_cloud(config, environment, Arc::new(()))?;
    plan_with(config, &cloud.targets, &cloud.policies, progress).await
}

/// [`plan`] with targets and policies already built: the daemon's own, so a plan asked of
/// a running daemon spends its clients' token buckets instead of competing with them.
pub async fn plan_with(
    config: &Config,
    handles: &HashMap<String, TargetHandle>,
    policy_handles: &[(PolicyConfig, Arc<dyn Policy>)],
    progress: bool,
) -> Result<PlanView, PlanError> {
    let now = OffsetDateTime::now_utc();
    let store = SqliteStore::open_existing(&config.daemon.state_dir)?;
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
            action: CertificateAction::None,
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
                                    row.action = CertificateAction::Import;
                                    row.desired = Some(found.fingerprint().to_owned());
                                    bundle = Some(found);
                                }
                            }
                            FileEvent::Rejected { error, .. } => {
                                row.action = CertificateAction::Rejected;
                                row.detail = Some(error.to_string());
                            }
                        }
                    }
                }
            }
            SourceConfig::Acme(_) | SourceConfig::LocalCa(_) => match &stored {
                None => {
                    row.action = CertificateAction::Obtain;
                    row.detail = Some("no version yet".into());
                }
                Some(version) => {
                    let renewal_at = match &store {
                        Some(store) => planned_renewal(store, certificate, version)?,
                        None => now,
                    };
                    if renewal_at <= now {
                        row.action = CertificateAction::Renew;
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
            let Some(handle) = handles.get(target_name).cloned() else {
                continue;
            };
            let (bundle, names, limit) =
                (bundle.clone(), certificate.domains.clone(), limit.clone());
            // What the ledger holds the target back by, as a pass would read it.
            let held = match (&store, &bundle) {
                (Some(store), Some(bundle)) => ledger_hold(
                    store,
                    config,
                    target_name,
                    &certificate.name,
                    bundle.fingerprint(),
                    now,
                )?,
                _ => None,
            };
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
                    action: TargetAction::None,
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
                        row.action = TargetAction::Error;
                        row.detail = Some(error.to_string());
                    }
                    (None, Ok(live)) => {
                        row.observed = describe(&live);
                        row.action = TargetAction::Wait;
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
                                    row.action = TargetAction::Deploy;
                                    let decision =
                                        decide(live.serves(bundle), handle.window.as_deref(), now);
                                    row.detail = match (held, decision) {
                                        (Some(Hold::Parked), _) => Some(
                                            "parked after an invalid failure: retried when \
                                             the certificate or the configuration changes"
                                                .into(),
                                        ),
                                        (Some(Hold::Until(at)), _) => {
                                            Some(format!("next attempt at {at}"))
                                        }
                                        (_, Decision::Deferred(opens)) => opens.map(|at| {
                                            format!("in the maintenance window opening {at}")
                                        }),
                                        _ => None,
                                    };
                                }
                                Err(violation) => {
                                    row.action = TargetAction::Blocked;
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
    for (config, policy) in policy_handles {
        for resource in policy.resources() {
            let mut row = PolicyPlan {
                policy: config.name.clone(),
                resource: resource.clone(),
                compliant: None,
                action: PolicyAction::None,
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
                            PolicyMode::Enforce => PolicyAction::Remediate,
                            PolicyMode::Audit => PolicyAction::Report,
                        };
                        row.detail =
                            Some(format!("{} (wants {})", finding.observed, finding.desired));
                    }
                }
                Err(error) => {
                    row.action = PolicyAction::Error;
                    row.detail = Some(error.to_string());
                }
            }
            policies.push(row);
        }
    }

    let changes = certificates
        .iter()
        .filter(|row| {
            matches!(
                row.action,
                CertificateAction::Obtain | CertificateAction::Renew | CertificateAction::Import
            )
        })
        .count()
        + targets
            .iter()
            .filter(|row| row.action == TargetAction::Deploy)
            .count()
        + policies
            .iter()
            .filter(|row| row.action == PolicyAction::Remediate)
            .count();
    Ok(PlanView {
        changes,
        certificates,
        targets,
        policies,
    })
}

/// What the deployment ledger holds `target` back by, read as a pass reads it (the pass's
/// own `engine::decide`): nothing when the row is for another version or the target's
/// configuration changed while it failed. Read like a drift scan: a target the ledger
/// thinks in sync is still read, so drift shows.
fn ledger_hold(
    store: &SqliteStore,
    config: &Config,
    target: &str,
    certificate: &str,
    desired: &str,
    now: OffsetDateTime,
) -> Result<Option<Hold>, StoreError> {
    let Some(record) = store.deployment(target, certificate)? else {
        return Ok(None);
    };
    let history = store.attempts(SubjectKind::Target, target)?;
    let recorded = inputs::recorded(&history);
    let config_changed = config
        .targets
        .iter()
        .find(|configured| configured.name == target)
        .is_some_and(|configured| recorded != Some(inputs::fingerprint(configured).as_str()));
    if superseded(&record, desired, config_changed) {
        return Ok(None);
    }
    Ok(hold(&record, true, now))
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
        .filter(|row| row.action != CertificateAction::None)
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
    for row in view
        .targets
        .iter()
        .filter(|row| row.action != TargetAction::None)
    {
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
    for row in view
        .policies
        .iter()
        .filter(|row| row.action != PolicyAction::None)
    {
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

    fn view(changes: usize, target_action: TargetAction) -> PlanView {
        PlanView {
            changes,
            certificates: Vec::new(),
            targets: vec![TargetPlan {
                target: "cdn".into(),
                certificate: "www".into(),
                kind: "alibaba-cdn".into(),
                desired: None,
                observed: None,
                action: target_action,
                detail: None,
            }],
            policies: Vec::new(),
        }
    }

    #[test]
    fn exit_code_is_detailed_like_terraform() {
        assert_eq!(view(0, TargetAction::None).exit_code(), 0);
        assert_eq!(view(1, TargetAction::Deploy).exit_code(), EXIT_CHANGES);
        assert_eq!(view(0, TargetAction::Error).exit_code(), EXIT_UNREADABLE);
        // A change next to an unreadable target: the plan has holes, so 1 wins.
        let mut mixed = view(1, TargetAction::Deploy);
        mixed.targets.extend(view(0, TargetAction::Error).targets);
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

    #[test]
    fn actions_serialize_and_print_as_their_names() {
        let names = |json: serde_json::Value, text: &str| assert_eq!(json, text);
        for action in CertificateAction::ALL {
            names(serde_json::to_value(action).unwrap(), action.as_str());
        }
        for action in TargetAction::ALL {
            names(serde_json::to_value(action).unwrap(), action.as_str());
        }
        for action in PolicyAction::ALL {
            names(serde_json::to_value(action).unwrap(), action.as_str());
        }
        assert_eq!(TargetAction::None.as_str(), NO_CHANGE);
        assert_eq!(format!("{:<8}|", TargetAction::Wait), "wait    |");
    }
}
