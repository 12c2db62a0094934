//! The only module that knows every component: it builds vendor clients, targets, policies
//! and sources from a validated config, and runs the daemon loop (`certkeeper run`):
//! obtain or import certificates when due, deploy them through the ledger, check policies on
//! their schedules, serve metrics, speak the systemd notify protocol, reload on SIGHUP
//! (a bad new config is refused and the old one keeps running) and drain on SIGTERM.

use crate::cloud::alibaba::{
    cdn::CdnTarget, client::AlibabaClient, dns::AlidnsSolver, rds::RdsTarget, vod::VodTarget,
};
use crate::cloud::file::FileTarget;
use crate::cloud::huawei::client::HuaweiClient;
use crate::cloud::huawei::dns::HuaweiDnsSolver;
use crate::cloud::huawei::gaussdb::GaussDbBackupEncryptionPolicy;
use crate::cloud::qingcloud::{MysqlPlusSslPolicy, QingCloudClient};
use crate::cloud::{DnsSolver, Policy, Target};
use crate::config::credentials::{
    ProcessEnvironment, Provider, ResolvedCredentials, SecretEnvironment, SecretFingerprint,
};
use crate::config::{self, ChallengeType, Config, PolicySettings, SourceConfig, TargetSettings};
use crate::control::{ControlRequest, ControlResponse, Incoming};
use crate::engine::deploy::{
    reconcile_target_with_inputs, refresh_retry_pending, DeployContext, TargetHandle,
};
use crate::engine::inputs;
use crate::engine::policy::{reconcile_policy, PolicyContext};
use crate::engine::renewal::{choose_jitter, renewal_time, RenewalInputs, RenewalRule};
use crate::engine::retry::RetryPolicy;
use crate::engine::schedule::{cron_after, next_wake, obtain_retry_at, policy_due_at, MAX_SLEEP};
use crate::error::ErrorClass;
use crate::source::acme::{AcmeSettings, AcmeSource, ChallengeSolver, Http01Responder};
use crate::source::file::{FileEvent, FileSource, WatchSpec};
use crate::source::local_ca::{LocalCa, LocalCaSettings};
use crate::source::{CertificateRequest, Source, SourceError, SourceStore};
use crate::store::{
    Attempt, CertificateVersion, DeployStatus, Event, PolicyStatus, RenewalPlan, StateStore,
    StoreError, SubjectKind,
};
use crate::systemd::Notifier;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::Health;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Why the daemon could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A secret the config names cannot be read.
    #[error(transparent)]
    Credentials(#[from] config::credentials::CredentialError),
    /// A value of the config that validation could not check (a file, a setting).
    #[error("{0}")]
    Component(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not the config's fault: an HTTP client or a listener could not be set up.
    #[error("{0}")]
    Unavailable(String),
}

fn component(error: impl std::fmt::Display) -> BuildError {
    BuildError::Component(error.to_string())
}

fn unavailable(error: impl std::fmt::Display) -> BuildError {
    BuildError::Unavailable(error.to_string())
}

/// Why `certkeeper run` could not start, typed so that `main` maps it to an exit code (the
/// one place that mapping lives) without reading messages.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or a secret it names cannot be used: restarting does not help (78).
    #[error("the configuration cannot be used")]
    Config(#[source] BuildError),
    /// The state directory cannot be opened, created, written or locked (74).
    #[error("{what} {}", path.display())]
    StateDirectory {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else (70).
    #[error("building components")]
    Internal(#[source] BuildError),
}

impl StartError {
    fn from_build(error: BuildError, state_dir: &Path) -> Self {
        match error {
            BuildError::Credentials(_) | BuildError::Component(_) => StartError::Config(error),
            BuildError::Store(source) => StartError::StateDirectory {
                what: "writing the state store in",
                path: state_dir.to_owned(),
                source: Box::new(source),
            },
            BuildError::Unavailable(_) => StartError::Internal(error),
        }
    }
}

/// A certificate and where it comes from.
struct CertificateEntry {
    config: config::CertificateConfig,
    source: CertificateSource,
}

enum CertificateSource {
    /// Obtained on demand (ACME, local CA).
    Issuer(Arc<dyn Source>),
    /// Imported when the watched files change.
    Files(Arc<FileSource>),
}

/// Everything built from one config. Rebuilt whole on reload.
pub struct Components {
    config: Config,
    certificates: Vec<CertificateEntry>,
    targets: HashMap<String, TargetHandle>,
    policies: Vec<(config::PolicyConfig, Arc<dyn Policy>)>,
    /// A digest of each target's and policy's configuration: a change unparks it.
    inputs: HashMap<String, String>,
    /// A keyed digest of each account's secrets: a change resets the auth backoff of what
    /// uses the account (see `Daemon::reset_auth_backoff`).
    secrets: BTreeMap<String, SecretFingerprint>,
    /// Keeps HTTP-01 listeners alive for as long as these components live.
    _responders: Vec<Arc<Http01Responder>>,
}

/// The cloud side of a config: vendor clients, targets and policies. Reads secrets but
/// writes nothing, so `plan` can build it next to a running daemon.
pub struct Cloud {
    alibaba: HashMap<String, Arc<AlibabaClient>>,
    huawei: HashMap<String, Arc<HuaweiClient>>,
    pub(crate) targets: HashMap<String, TargetHandle>,
    pub(crate) policies: Vec<(config::PolicyConfig, Arc<dyn Policy>)>,
    secrets: BTreeMap<String, SecretFingerprint>,
}

/// Builds vendor clients (one per account, so targets of one account share its rate-limit
/// buckets), targets and policies.
pub fn build_cloud(
    config: &Config,
    environment: &dyn SecretEnvironment,
    observer: Arc<dyn crate::cloud::http::RequestObserver>,
) -> Result<Cloud, BuildError> {
    let http = crate::cloud::http::client(Default::default()).map_err(unavailable)?;
    let mut resolved: BTreeMap<String, ResolvedCredentials> = BTreeMap::new();
    for (name, credentials) in &config.credentials {
        resolved.insert(name.clone(), credentials.resolve(name, environment)?);
    }
    let secrets = resolved
        .iter()
        .map(|(name, credentials)| (name.clone(), credentials.secret_fingerprint()))
        .collect();
    let mut alibaba: HashMap<String, Arc<AlibabaClient>> = HashMap::new();
    let mut huawei: HashMap<String, Arc<HuaweiClient>> = HashMap::new();
    let account = |name: &str| {
        resolved
            .get(name)
            .cloned()
            .ok_or_else(|| component(format!("no credentials named `{name}`")))
    };
    let alibaba_limiters = crate::cloud::alibaba::client::AccountLimiters::default();
    for (name, credentials) in &resolved {
        match credentials.provider {
            Provider::Alibaba => {
                let client = alibaba_limiters
                    .client(credentials.clone(), http.clone())
                    .with_observer(observer.clone());
                alibaba.insert(name.clone(), Arc::new(client));
            }
            Provider::Huawei => {
                let client = HuaweiClient::new(
                    credentials,
                    http.clone(),
                    crate::cloud::huawei::client::system_clock(),
                )
                .map_err(component)?
                .with_observer(observer.clone());
                huawei.insert(name.clone(), Arc::new(client));
            }
            Provider::Qingcloud => {}
        }
    }
    let alibaba_client = |name: &Option<String>| {
        name.as_ref()
            .and_then(|name| alibaba.get(name).cloned())
            .ok_or_else(|| component("target needs alibaba credentials"))
    };

    let mut targets = HashMap::new();
    for target in &config.targets {
        let window = target
            .maintenance_window
            .as_ref()
            .map(|window| window.build())
            .transpose()
            .map_err(component)?;
        let (vendor, built): (&'static str, Arc<dyn Target>) = match &target.settings {
            TargetSettings::AlibabaCdn(settings) => (
                "alibaba",
                Arc::new(CdnTarget::new(
                    &target.name,
                    settings.clone(),
                    alibaba_client(&target.credentials)?,
                )),
            ),
            TargetSettings::AlibabaVod(settings) => (
                "alibaba",
                Arc::new(VodTarget::new(
                    &target.name,
                    settings.clone(),
                    alibaba_client(&target.credentials)?,
                )),
            ),
            TargetSettings::AlibabaRds(settings) => (
                "alibaba",
                Arc::new(
                    RdsTarget::new(
                        &target.name,
                        settings.clone(),
                        alibaba_client(&target.credentials)?,
                    )
                    .with_maintenance_window(window.clone()),
                ),
            ),
            TargetSettings::File(settings) => (
                "file",
                Arc::new(FileTarget::new(&target.name, settings).map_err(component)?),
            ),
        };
        let kind = built.kind();
        targets.insert(
            target.name.clone(),
            TargetHandle {
                name: target.name.clone(),
                kind,
                vendor,
                target: built,
                window,
            },
        );
    }

    let mut policies: Vec<(config::PolicyConfig, Arc<dyn Policy>)> = Vec::new();
    for policy in &config.policies {
        let window = policy
            .maintenance_window
            .as_ref()
            .map(|window| window.build())
            .transpose()
            .map_err(component)?;
        let built: Arc<dyn Policy> = match &policy.settings {
            PolicySettings::HuaweiGaussdbBackupEncryption(settings) => {
                let client = huawei
                    .get(&policy.credentials)
                    .cloned()
                    .ok_or_else(|| component("policy needs huawei credentials"))?;
                Arc::new(GaussDbBackupEncryptionPolicy::new(
                    &policy.name,
                    policy.mode,
                    policy.resources.clone(),
                    settings.clone(),
                    client,
                    window,
                ))
            }
            PolicySettings::QingcloudMysqlPlusSsl(settings) => {
                let credentials = account(&policy.credentials)?;
                let client = QingCloudClient::new(http.clone(), &credentials, None)
                    .map_err(component)?
                    .with_observer(observer.clone());
                Arc::new(
                    MysqlPlusSslPolicy::new(
                        &policy.name,
                        policy.mode,
                        window,
                        policy.resources.clone(),
                        client,
                        settings,
                    )
                    .map_err(|issue| component(format!("{}: {}", issue.path, issue.message)))?,
                )
            }
        };
        policies.push((policy.clone(), built));
    }
    Ok(Cloud {
        alibaba,
        huawei,
        targets,
        policies,
        secrets,
    })
}

/// Builds the cloud side and the sources. Does I/O: reads secrets, binds HTTP-01 ports,
/// creates a local CA's root on first use.
pub async fn build(
    config: &Config,
    source_store: Arc<dyn SourceStore>,
    environment: &dyn SecretEnvironment,
    observer: Arc<dyn crate::cloud::http::RequestObserver>,
) -> Result<Components, BuildError> {
    let cloud = build_cloud(config, environment, observer)?;
    build_sources(config, cloud, source_store).await
}

/// The sources of `config` next to its already built cloud side: the rest of [`build`].
async fn build_sources(
    config: &Config,
    cloud: Cloud,
    source_store: Arc<dyn SourceStore>,
) -> Result<Components, BuildError> {
    let Cloud {
        alibaba,
        huawei,
        targets,
        policies,
        secrets,
    } = cloud;

    // Sources: one ACME source per account and one local CA per name, shared by certificates.
    let mut responders: HashMap<String, Arc<Http01Responder>> = HashMap::new();
    let mut acme_sources: HashMap<String, Arc<dyn Source>> = HashMap::new();
    for (name, acme) in &config.acme {
        let settings = AcmeSettings::from_config(name, acme).map_err(component)?;
        let solver = match acme.challenge {
            ChallengeType::Http01 => {
                let responder = match responders.get(&acme.http01_listen) {
                    Some(responder) => responder.clone(),
                    None => {
                        let address = acme.http01_listen.parse().map_err(component)?;
                        let responder =
                            Http01Responder::bind(address).await.map_err(unavailable)?;
                        responders.insert(acme.http01_listen.clone(), responder.clone());
                        responder
                    }
                };
                ChallengeSolver::Http01(responder)
            }
            ChallengeType::Dns01 => {
                let dns_name = acme.dns_credentials.clone().unwrap_or_default();
                let solver: Arc<dyn DnsSolver> = if let Some(client) = alibaba.get(&dns_name) {
                    Arc::new(AlidnsSolver::new(client.clone()))
                } else if let Some(client) = huawei.get(&dns_name) {
                    Arc::new(HuaweiDnsSolver::new(client.clone(), 60))
                } else {
                    return Err(component(format!("acme.{name}: dns_credentials `{dns_name}` is not an alibaba or huawei account")));
                };
                let propagation_wait =
                    crate::source::acme::dns_propagation_wait(acme).map_err(component)?;
                ChallengeSolver::Dns01 {
                    solver,
                    propagation_wait,
                }
            }
        };
        let source = AcmeSource::new(settings, source_store.clone(), solver).map_err(component)?;
        acme_sources.insert(name.clone(), Arc::new(source));
    }
    let mut local_cas: HashMap<String, Arc<dyn Source>> = HashMap::new();
    for (name, ca) in &config.local_ca {
        let settings = LocalCaSettings::from_config(name, ca).map_err(component)?;
        let ca = LocalCa::load(settings, source_store.clone())
            .await
            .map_err(component)?;
        local_cas.insert(name.clone(), Arc::new(ca));
    }
    let mut certificates = Vec::new();
    for certificate in &config.certificates {
        let source = match &certificate.source {
            SourceConfig::Acme(account) => CertificateSource::Issuer(
                acme_sources
                    .get(account)
                    .cloned()
                    .ok_or_else(|| component(format!("no acme account `{account}`")))?,
            ),
            SourceConfig::LocalCa(ca) => CertificateSource::Issuer(
                local_cas
                    .get(ca)
                    .cloned()
                    .ok_or_else(|| component(format!("no local_ca `{ca}`")))?,
            ),
            SourceConfig::File { .. } => {
                let spec = WatchSpec::from_config(&certificate.name, &certificate.source)
                    .ok_or_else(|| component("file source without files"))?;
                CertificateSource::Files(Arc::new(
                    FileSource::new(spec, Duration::from_millis(500))
                        .with_domains(&certificate.name, certificate.domains.clone()),
                ))
            }
        };
        certificates.push(CertificateEntry {
            config: certificate.clone(),
            source,
        });
    }
    let inputs = config
        .targets
        .iter()
        .map(|target| (target.name.clone(), inputs::fingerprint(target)))
        .chain(
            config
                .policies
                .iter()
                .map(|policy| (policy.name.clone(), inputs::fingerprint(policy))),
        )
        .collect();
    Ok(Components {
        inputs,
        secrets,
        config: config.clone(),
        certificates,
        targets,
        policies,
        _responders: responders.into_values().collect(),
    })
}

/// One (target, certificate version) for a pass's deploy queue.
struct DeployJob {
    handle: TargetHandle,
    version: Arc<CertificateVersion>,
    names: Arc<[String]>,
    inputs: Option<String>,
    scan: bool,
}

/// The state that outlives reloads.
pub struct Daemon {
    store: Arc<dyn StateStore>,
    metrics: Metrics,
    health: Arc<Health>,
    retry: RetryPolicy,
}

/// When `version` is due for renewal: its persisted plan, or (a plan from an older run, or
/// none) the configured rule without jitter.
pub(crate) fn planned_renewal(
    store: &dyn StateStore,
    certificate: &config::CertificateConfig,
    version: &CertificateVersion,
) -> Result<OffsetDateTime, StoreError> {
    crate::engine::state::planned_renewal(
        store,
        &certificate.name,
        renewal_rule(certificate),
        version,
    )
}

fn renewal_rule(certificate: &config::CertificateConfig) -> RenewalRule {
    match (&certificate.renew_before, certificate.renew_ratio) {
        (Some(before), _) => config::parse_duration(before)
            .map(RenewalRule::Before)
            .unwrap_or_default(),
        (None, Some(ratio)) => RenewalRule::Ratio(ratio),
        (None, None) => RenewalRule::default(),
    }
}

impl Daemon {
    pub fn new(store: Arc<dyn StateStore>, metrics: Metrics, health: Arc<Health>) -> Self {
        Self {
            store,
            metrics,
            health,
            retry: RetryPolicy::default(),
        }
    }

    fn event(&self, kind: &str, subject: &str, message: String, fields: serde_json::Value) {
        let event = Event {
            id: 0,
            at: OffsetDateTime::now_utc(),
            kind: kind.into(),
            subject: subject.into(),
            message,
            fields,
        };
        if let Err(error) = self.store.append_event(&event) {
            tracing::error!(error = %error, "cannot append to the event log");
        }
    }

    /// Stores a new version (if its fingerprint is new) and plans its renewal.
    fn import(
        &self,
        certificate: &config::CertificateConfig,
        bundle: &crate::cert::CertificateBundle,
        source: &str,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        if self
            .store
            .latest_certificate_version(&certificate.name)?
            .is_some_and(|latest| latest.fingerprint == bundle.fingerprint())
        {
            return Ok(());
        }
        let version = CertificateVersion::from_bundle(&certificate.name, bundle, source, now);
        self.store
            .insert_certificate_version(&version, &certificate.deploy_to)?;
        let lifetime = (bundle.info.not_after - bundle.info.not_before).unsigned_abs();
        let renewal_at = renewal_time(&RenewalInputs {
            not_before: bundle.info.not_before,
            not_after: bundle.info.not_after,
            rule: renewal_rule(certificate),
            ari_point: None,
            jitter: choose_jitter(lifetime, &mut rand::thread_rng()),
        });
        self.store.put_renewal_plan(&RenewalPlan {
            certificate: certificate.name.clone(),
            fingerprint: bundle.fingerprint().to_owned(),
            renewal_at,
            ari_window: None,
            ari_next_check_at: None,
            updated_at: now,
        })?;
        self.metrics.set_certificate_version(
            &certificate.name,
            Some(crate::engine::state::validity(&version)),
            renewal_at.unix_timestamp(),
        );
        tracing::info!(
            certificate = %certificate.name,
            fingerprint = %version.fingerprint,
            serial = %version.serial,
            not_after = %version.not_after,
            renewal_at = %renewal_at,
            source = %source,
            "stored a new certificate version"
        );
        self.event(
            "certificate.stored",
            &certificate.name,
            format!("stored a new version of {}", certificate.name),
            serde_json::json!({"fingerprint": bundle.fingerprint(), "source": source, "not_after": bundle.info.not_after.unix_timestamp()}),
        );
        Ok(())
    }

    /// Moves the renewal point of `latest` to the CA's ARI suggestion when the source has
    /// one, at most once per the CA's Retry-After (kept in the plan, so restarts obey it).
    async fn refresh_ari(
        &self,
        entry: &CertificateEntry,
        source: &dyn Source,
        latest: &CertificateVersion,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let name = entry.config.name.as_str();
        let Some(mut plan) = self
            .store
            .renewal_plan(name)?
            .filter(|plan| plan.fingerprint == latest.fingerprint)
        else {
            return Ok(());
        };
        if plan.ari_next_check_at.is_some_and(|at| at > now) {
            return Ok(());
        }
        match source.renewal_point(name, &latest.chain_pem).await {
            Ok(Some(point)) => {
                plan.renewal_at = renewal_time(&RenewalInputs {
                    not_before: latest.not_before,
                    not_after: latest.not_after,
                    rule: renewal_rule(&entry.config),
                    ari_point: Some(point.renew_at),
                    jitter: Duration::ZERO,
                });
                plan.ari_window = Some(crate::store::AriWindow {
                    start: point.window_start,
                    end: point.window_end,
                });
                plan.ari_next_check_at = Some(point.next_poll);
                plan.updated_at = now;
                self.store.put_renewal_plan(&plan)?;
                self.metrics
                    .certificate_renewal
                    .with_label_values(&[name])
                    .set(plan.renewal_at.unix_timestamp() as f64);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(certificate = %name, code = %error.code, error = %error, "renewal information unavailable; keeping the planned time");
            }
        }
        Ok(())
    }

    /// Stores what a file source found: a new version, or the refusal of bad files (the
    /// previous version stays in force).
    fn file_event(&self, entry: &CertificateEntry, event: FileEvent) -> Result<(), StoreError> {
        let name = entry.config.name.as_str();
        match event {
            FileEvent::Imported { bundle, .. } => {
                self.import(&entry.config, &bundle, &entry.config.source.label())?;
                self.record_obtain(name, "import", None);
                Ok(())
            }
            FileEvent::Rejected { error, .. } => {
                // The file source has logged the rejection with the file it concerns.
                self.record_obtain(name, "import", Some((error.class, &error.code)));
                self.metrics
                    .renewals
                    .with_label_values(&[name, "file", "failure"])
                    .inc();
                self.event(
                    "certificate.rejected",
                    name,
                    error.to_string(),
                    serde_json::json!({"code": error.code, "class": error.class.as_str()}),
                );
                Ok(())
            }
        }
    }

    /// When an issued certificate is next due: the renewal plan of its newest version (or
    /// the configured rule when an older run left no plan), but not before the backoff of
    /// failed attempts allows. `None` for file sources, which are event-driven.
    fn certificate_due_at(
        &self,
        entry: &CertificateEntry,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let CertificateSource::Issuer(_) = entry.source else {
            return Ok(None);
        };
        let name = entry.config.name.as_str();
        let renewal_at = match self.store.latest_certificate_version(name)? {
            None => OffsetDateTime::UNIX_EPOCH,
            Some(latest) => planned_renewal(self.store.as_ref(), &entry.config, &latest)?,
        };
        let history = self.store.attempts(SubjectKind::Certificate, name)?;
        let retry_at = obtain_retry_at(&history);
        Ok(Some(retry_at.map_or(renewal_at, |at| at.max(renewal_at))))
    }

    /// Records an obtain or import attempt and sets the certificate's failure gauges from
    /// the history it ends (the same reading as at start, `engine::state`).
    fn record_obtain(&self, name: &str, operation: &str, failure: Option<(ErrorClass, &str)>) {
        let attempt = Attempt {
            subject_kind: SubjectKind::Certificate,
            subject: name.to_owned(),
            operation: operation.to_owned(),
            class: failure.map(|(class, _)| class),
            code: failure.map(|(_, code)| code.to_owned()),
            at: crate::store::truncate_to_seconds(OffsetDateTime::now_utc()),
        };
        if let Err(error) = self.store.record_attempt(&attempt) {
            tracing::error!(error = %error, "cannot record an obtain attempt");
        }
        if failure.is_none() {
            self.metrics
                .certificate_succeeded(name, attempt.at.unix_timestamp());
            return;
        }
        match self.store.attempts(SubjectKind::Certificate, name) {
            Ok(history) => self
                .metrics
                .set_certificate_failing(name, crate::engine::state::failing(&history)),
            Err(error) => tracing::error!(error = %error, "cannot read the obtain attempts"),
        }
    }

    /// The configured policies, as the state gauges see them.
    fn policy_items(components: &Components) -> Vec<crate::engine::state::PolicyItem<'_>> {
        components
            .policies
            .iter()
            .map(|(config, policy)| crate::engine::state::PolicyItem {
                name: &config.name,
                policy: policy.as_ref(),
            })
            .collect()
    }

    /// What the state gauges cover: every configured certificate, target and policy.
    fn inventory<'a>(components: &'a Components) -> crate::engine::state::Inventory<'a> {
        use crate::engine::state::{CertificateItem, Inventory, TargetItem};
        let mut deployed: HashMap<&str, Vec<&str>> = HashMap::new();
        for entry in &components.certificates {
            for target in &entry.config.deploy_to {
                deployed
                    .entry(target.as_str())
                    .or_default()
                    .push(entry.config.name.as_str());
            }
        }
        Inventory {
            certificates: components
                .certificates
                .iter()
                .map(|entry| CertificateItem {
                    name: &entry.config.name,
                    rule: renewal_rule(&entry.config),
                })
                .collect(),
            targets: components
                .config
                .targets
                .iter()
                .filter_map(|target| components.targets.get(&target.name))
                .map(|handle| TargetItem {
                    name: &handle.name,
                    kind: handle.kind,
                    certificates: deployed.remove(handle.name.as_str()).unwrap_or_default(),
                })
                .collect(),
            policies: Self::policy_items(components),
        }
    }

    /// Sets every state gauge of `components` from the store and drops those of objects no
    /// longer configured (at start, before READY, and after each reload). A store that
    /// cannot be read is logged; the pass reports it again.
    pub fn restore_metrics(&self, components: &Components) {
        let inventory = Self::inventory(components);
        let now = OffsetDateTime::now_utc();
        if let Err(error) =
            crate::engine::state::restore(self.store.as_ref(), &self.metrics, &inventory, now)
        {
            tracing::error!(error = %error, "cannot restore the metrics from the state store");
        }
    }

    /// Obtains certificates that are due (or named in `force`) from issuers and imports
    /// changed files.
    async fn obtain_due(
        &self,
        components: &Components,
        now: OffsetDateTime,
        force: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        for entry in &components.certificates {
            self.health.progress();
            let name = entry.config.name.as_str();
            let label = entry.config.source.label();
            match &entry.source {
                CertificateSource::Files(files) => {
                    for event in files.scan().await {
                        self.file_event(entry, event)?;
                    }
                }
                CertificateSource::Issuer(source) => {
                    let latest = self.store.latest_certificate_version(name)?;
                    if let Some(latest) = &latest {
                        self.refresh_ari(entry, source.as_ref(), latest, now)
                            .await?;
                    }
                    let forced = force.contains(name);
                    if !forced && self.certificate_due_at(entry)?.is_some_and(|at| at > now) {
                        continue;
                    }
                    let mut request = CertificateRequest::new(name, entry.config.domains.clone());
                    request.key = entry.config.key;
                    request.previous_leaf_pem =
                        latest.as_ref().map(|latest| latest.chain_pem.clone());
                    let source_kind = label.split(':').next().unwrap_or("source");
                    match source.obtain(&request).await.and_then(|issued| {
                        issued.bundle().map_err(|error| {
                            SourceError::new(
                                "source",
                                "parse",
                                crate::error::ErrorClass::Invalid,
                                "BadCertificate",
                                error.to_string(),
                            )
                        })
                    }) {
                        Ok(bundle) => {
                            self.import(&entry.config, &bundle, &label)?;
                            self.record_obtain(name, "obtain", None);
                            self.metrics
                                .renewals
                                .with_label_values(&[name, source_kind, "success"])
                                .inc();
                        }
                        Err(error) => {
                            self.record_obtain(name, "obtain", Some((error.class, &error.code)));
                            self.metrics
                                .renewals
                                .with_label_values(&[name, source_kind, "failure"])
                                .inc();
                            crate::telemetry::logging::failure!(
                                crate::telemetry::logging::needs_human(error.class, false),
                                certificate = %name, class = %error.class, code = %error.code,
                                error = %error, "obtaining a certificate failed"
                            );
                            self.event("certificate.obtain_failed", name, error.to_string(), serde_json::json!({"class": error.class.as_str(), "code": error.code}));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Deploys the newest version of every certificate to its targets; one failing target
    /// never blocks the others. Concurrency is bounded per vendor.
    async fn deploy_all(
        &self,
        components: &Components,
        now: OffsetDateTime,
        scan: bool,
        force: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let context = DeployContext {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            retry: self.retry,
            grace: config::parse_duration(&components.config.daemon.grace_period)
                .unwrap_or(Duration::from_secs(7 * 86_400)),
        };
        // Targets the ledger does not show in sync go first: after a restart in the middle
        // of a rollout, the unfinished work is not queued behind re-reading the finished.
        let in_sync: BTreeSet<(String, String)> = self
            .store
            .deployments()?
            .into_iter()
            .filter(|record| record.status == DeployStatus::InSync)
            .filter_map(|record| Some((record.target, record.desired_fingerprint?)))
            .collect();
        // Queued per vendor and run by one driver each with at most `concurrency` deploys
        // in flight, so 10,000 targets never mean 10,000 live futures at once (the memory
        // of a burst stays with the allocator long after the pass).
        let mut queues: HashMap<&'static str, Vec<(bool, DeployJob)>> = HashMap::new();
        for entry in &components.certificates {
            let Some(version) = self.store.latest_certificate_version(&entry.config.name)? else {
                continue;
            };
            let version = Arc::new(version);
            let names: Arc<[String]> = entry.config.domains.clone().into();
            for target_name in &entry.config.deploy_to {
                let Some(handle) = components.targets.get(target_name).cloned() else {
                    continue;
                };
                let forced = force.contains(target_name);
                if forced {
                    self.clear_backoff(target_name, &entry.config.name)?;
                }
                let done = in_sync.contains(&(target_name.clone(), version.fingerprint.clone()));
                let job = DeployJob {
                    inputs: components.inputs.get(target_name).cloned(),
                    handle,
                    version: version.clone(),
                    names: names.clone(),
                    scan: scan || forced,
                };
                queues
                    .entry(job.handle.vendor)
                    .or_default()
                    .push((done, job));
            }
        }
        let concurrency = components.config.daemon.concurrency.max(1);
        let mut drivers = tokio::task::JoinSet::new();
        for (_, mut jobs) in queues {
            jobs.sort_by_key(|(done, _)| *done);
            let context = context.clone();
            let health = self.health.clone();
            drivers.spawn(async move {
                let mut running = tokio::task::JoinSet::new();
                let mut jobs = jobs.into_iter().map(|(_, job)| job);
                loop {
                    while running.len() < concurrency {
                        let Some(job) = jobs.next() else { break };
                        let context = context.clone();
                        running.spawn(async move {
                            reconcile_target_with_inputs(
                                &context,
                                &job.handle,
                                &job.version,
                                &job.names,
                                job.inputs.as_deref(),
                                now,
                                job.scan,
                            )
                            .await
                        });
                    }
                    let joined = running.join_next().await;
                    health.progress();
                    match joined {
                        None => return Ok(()),
                        Some(Ok(Ok(_))) => {}
                        Some(Ok(Err(error))) => return Err(error),
                        Some(Err(error)) => {
                            tracing::error!(error = %error, "a deploy task failed")
                        }
                    }
                }
            });
        }
        while let Some(joined) = drivers.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(error) => tracing::error!(error = %error, "a deploy driver failed"),
            }
        }
        Ok(())
    }

    /// When `policy` is next checked (see [`policy_due_at`]), on its own schedule or the
    /// daemon's scan schedule; a failed resource waits for its backoff in the attempt
    /// history (the same the policy pass obeys, so a wake-up is never wasted).
    fn policy_due(
        &self,
        config: &Config,
        policy: &config::PolicyConfig,
        statuses: &[PolicyStatus],
    ) -> Result<OffsetDateTime, StoreError> {
        let expression = policy
            .schedule
            .as_ref()
            .unwrap_or(&config.daemon.scan_schedule);
        let Ok(schedule) = crate::engine::window::parse_cron(expression) else {
            // Validated at load; checking now is the safe side.
            return Ok(OffsetDateTime::UNIX_EPOCH);
        };
        let mine: Vec<&PolicyStatus> = statuses
            .iter()
            .filter(|status| status.policy == policy.name)
            .collect();
        let mut retries = HashMap::new();
        for status in mine.iter().filter(|status| status.last_error.is_some()) {
            let subject = crate::engine::policy::subject(&policy.name, &status.resource);
            let history = self.store.attempts(SubjectKind::Policy, &subject)?;
            retries.insert(
                status.resource.clone(),
                crate::engine::policy::retry_at(&history),
            );
        }
        Ok(policy_due_at(
            &schedule,
            &policy.resources,
            &mine,
            |status| retries.get(&status.resource).copied().flatten(),
        ))
    }

    /// A manual deploy: forget the backoff (and a parked state) so the target is tried now.
    fn clear_backoff(&self, target: &str, certificate: &str) -> Result<(), StoreError> {
        if let Some(mut record) = self.store.deployment(target, certificate)? {
            if matches!(record.status, DeployStatus::Failed | DeployStatus::Parked) {
                record.status = DeployStatus::Pending;
            }
            record.next_attempt_at = None;
            record.attempts = 0;
            self.store.put_deployment(&record)?;
        }
        Ok(())
    }

    /// A fixed secret takes effect at once: every deployment, policy resource and ACME
    /// certificate (DNS-01) that uses one of the `changed` accounts and last failed on
    /// authentication leaves its backoff and is tried in the next pass. Deployments go back
    /// to pending; policy and obtain histories get a `secret_changed` marker (a success-less
    /// attempt, which ends the run of failures the backoff is computed from).
    fn reset_auth_backoff(
        &self,
        components: &Components,
        changed: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let config = &components.config;
        let uses_changed =
            |credentials: Option<&String>| credentials.is_some_and(|name| changed.contains(name));
        let targets: BTreeMap<&str, &str> = config
            .targets
            .iter()
            .filter(|target| uses_changed(target.credentials.as_ref()))
            .filter_map(|target| Some((target.name.as_str(), target.credentials.as_deref()?)))
            .collect();
        for mut record in self.store.deployments()? {
            let Some(account) = targets.get(record.target.as_str()) else {
                continue;
            };
            if record.last_error.as_ref().map(|error| error.class) != Some(ErrorClass::Auth) {
                continue;
            }
            if record.status == DeployStatus::Failed {
                record.status = DeployStatus::Pending;
            }
            record.next_attempt_at = None;
            record.attempts = 0;
            self.store.put_deployment(&record)?;
            tracing::info!(target = %record.target, certificate = %record.certificate, credentials = %account, "the secret of its credentials changed: auth backoff reset, retried in the next pass");
        }
        let now = crate::store::truncate_to_seconds(OffsetDateTime::now_utc());
        let mut marked = Vec::new();
        for policy in &config.policies {
            if !changed.contains(&policy.credentials) {
                continue;
            }
            for resource in &policy.resources {
                let subject = crate::engine::policy::subject(&policy.name, resource);
                marked.push((SubjectKind::Policy, subject, policy.credentials.as_str()));
            }
        }
        for certificate in &config.certificates {
            let SourceConfig::Acme(account) = &certificate.source else {
                continue;
            };
            let dns = config
                .acme
                .get(account)
                .and_then(|acme| acme.dns_credentials.as_ref());
            if let Some(dns) = dns.filter(|dns| changed.contains(*dns)) {
                marked.push((
                    SubjectKind::Certificate,
                    certificate.name.clone(),
                    dns.as_str(),
                ));
            }
        }
        for (kind, subject, account) in marked {
            let history = self.store.attempts(kind, &subject)?;
            let failing_on_auth = crate::engine::backoff::trailing_failures(&history)
                .is_some_and(|(class, _, _)| class == ErrorClass::Auth);
            if !failing_on_auth {
                continue;
            }
            self.store.record_attempt(&Attempt {
                subject_kind: kind,
                subject: subject.clone(),
                operation: "secret_changed".to_owned(),
                class: None,
                code: None,
                at: now,
            })?;
            tracing::info!(subject = %subject, kind = kind.as_str(), credentials = %account, "the secret of its credentials changed: auth backoff reset, retried in the next pass");
        }
        Ok(())
    }

    /// Checks (and in enforce mode corrects) every policy resource.
    async fn check_policies(
        &self,
        components: &Components,
        now: OffsetDateTime,
        all: bool,
    ) -> Result<(), StoreError> {
        let statuses = self.store.policy_statuses()?;
        let context = PolicyContext {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            retry: self.retry,
        };
        for (config, policy) in &components.policies {
            if !all && self.policy_due(&components.config, config, &statuses)? > now {
                continue;
            }
            let inputs = components
                .inputs
                .get(&config.name)
                .cloned()
                .unwrap_or_default();
            for resource in policy.resources() {
                reconcile_policy(
                    &context,
                    &config.name,
                    policy.as_ref(),
                    &resource,
                    &inputs,
                    now,
                )
                .await?;
                self.health.progress();
            }
        }
        Ok(())
    }

    /// One full pass: obtain, deploy, (on scans) re-read live state and check policies.
    /// `manual` names certificates to obtain and targets to deploy now whatever is due.
    pub async fn reconcile(
        &self,
        components: &Components,
        scan: bool,
        manual: &Manual,
    ) -> Result<(), StoreError> {
        let _pass = self.health.begin_pass();
        let _running = self.metrics.pass_running();
        let now = OffsetDateTime::now_utc();
        self.obtain_due(components, now, &manual.renew).await?;
        // A fresh clock: obtaining may have taken minutes, and a certificate issued during
        // this pass must not look "not yet valid" to its deploy.
        let now = OffsetDateTime::now_utc();
        self.deploy_all(components, now, scan, &manual.deploy)
            .await?;
        self.check_policies(components, now, scan).await?;
        refresh_retry_pending(self.store.as_ref(), &self.metrics)?;
        crate::engine::state::refresh_remediation_overdue(
            self.store.as_ref(),
            &self.metrics,
            &Self::policy_items(components),
            now,
        )?;
        let finished = OffsetDateTime::now_utc().unix_timestamp();
        self.metrics.last_reconcile.set(finished);
        self.health.tick(finished);
        self.health.set_first_reconcile_done();
        Ok(())
    }

    /// When work is next due: renewals and obtain retries, deploy retries and windows.
    fn next_due(&self, components: &Components) -> Result<Vec<OffsetDateTime>, StoreError> {
        let mut due = Vec::new();
        for entry in &components.certificates {
            due.extend(self.certificate_due_at(entry)?);
        }
        for plan in self.store.renewal_plans()? {
            due.extend(plan.ari_next_check_at);
        }
        let statuses = self.store.policy_statuses()?;
        for (config, _) in &components.policies {
            due.push(self.policy_due(&components.config, config, &statuses)?);
        }
        let wanted: BTreeSet<(&str, &str)> = components
            .certificates
            .iter()
            .flat_map(|entry| {
                entry
                    .config
                    .deploy_to
                    .iter()
                    .map(|target| (target.as_str(), entry.config.name.as_str()))
            })
            .collect();
        for record in self.store.deployments()? {
            if !wanted.contains(&(record.target.as_str(), record.certificate.as_str())) {
                continue;
            }
            match record.status {
                DeployStatus::Pending | DeployStatus::Failed | DeployStatus::Deploying => {
                    due.push(record.next_attempt_at.unwrap_or(OffsetDateTime::UNIX_EPOCH));
                }
                DeployStatus::InSync | DeployStatus::Parked => {}
            }
        }
        Ok(due)
    }

    /// Answers a manual request after the pass that did its work: the newest version and
    /// where each target concerned stands. `since_event` is the newest event id before that
    /// pass, so an obtain failure or a rejection of the files during it fails the request.
    fn answer(
        &self,
        components: &Components,
        request: &ControlRequest,
        since_event: i64,
    ) -> ControlResponse {
        self.answer_from_store(components, request, since_event)
            .unwrap_or_else(|error| ControlResponse::failed(format!("reading the store: {error}")))
    }

    fn answer_from_store(
        &self,
        components: &Components,
        request: &ControlRequest,
        since_event: i64,
    ) -> Result<ControlResponse, StoreError> {
        match request {
            ControlRequest::Reload => Ok(ControlResponse::failed(
                "a reload is answered when it ends, not after a pass",
            )),
            ControlRequest::Renew { certificate } => {
                let during_pass = self.store.events(&crate::store::EventQuery {
                    after_id: Some(since_event),
                    subject: Some(certificate.clone()),
                    ..Default::default()
                })?;
                let stored = during_pass
                    .iter()
                    .any(|event| event.kind == "certificate.stored");
                let refused = during_pass.into_iter().rfind(|event| {
                    matches!(
                        event.kind.as_str(),
                        "certificate.obtain_failed" | "certificate.rejected"
                    )
                });
                let latest = self.store.latest_certificate_version(certificate)?;
                let newest = match &latest {
                    Some(version) => format!(
                        "{}; newest version {} (not after {})",
                        if stored {
                            "stored a new version"
                        } else {
                            "no new version"
                        },
                        version.fingerprint,
                        crate::status::events::rfc3339(version.not_after)
                    ),
                    None => "no version obtained yet".to_owned(),
                };
                let targets = components
                    .certificates
                    .iter()
                    .find(|entry| &entry.config.name == certificate)
                    .map(|entry| entry.config.deploy_to.clone())
                    .unwrap_or_default();
                let outcomes = targets
                    .iter()
                    .map(|target| self.outcome(target, certificate))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut response = match (refused, &latest) {
                    (Some(event), _) => ControlResponse::failed(format!(
                        "{certificate}: {} ({}); {newest}",
                        event.message,
                        event
                            .kind
                            .trim_start_matches("certificate.")
                            .replace('_', " ")
                    )),
                    (None, None) => ControlResponse::failed(format!(
                        "{certificate}: {newest}; see `certkeeper status`"
                    )),
                    (None, Some(_)) if outcomes.iter().any(|outcome| outcome.failed) => {
                        ControlResponse::failed(format!("{certificate}: {newest}; a deploy failed"))
                    }
                    (None, Some(_)) => ControlResponse::ok(format!("{certificate}: {newest}")),
                };
                response.outcomes = outcomes;
                Ok(response)
            }
            ControlRequest::Deploy { target } => {
                let certificate = components
                    .certificates
                    .iter()
                    .find(|entry| entry.config.deploy_to.contains(target))
                    .map(|entry| entry.config.name.clone())
                    .unwrap_or_default();
                let outcome = self.outcome(target, &certificate)?;
                let mut response = if outcome.status == DeployStatus::InSync.as_str() {
                    ControlResponse::ok(format!("{target}: in sync with {}", outcome.detail))
                } else if self.store.deployment(target, &certificate)?.is_none() {
                    ControlResponse::failed(format!(
                        "{target}: nothing to deploy yet (certificate {certificate} has no version)"
                    ))
                } else {
                    ControlResponse::failed(outcome.to_string())
                };
                response.outcomes = vec![outcome];
                Ok(response)
            }
        }
    }

    /// Where `target` stands for `certificate` in the ledger, as `renew`/`deploy` print it.
    fn outcome(
        &self,
        target: &str,
        certificate: &str,
    ) -> Result<crate::control::TargetOutcome, StoreError> {
        let record = self.store.deployment(target, certificate)?;
        let (status, detail) = match &record {
            None => (DeployStatus::Pending, "no version deployed yet".to_owned()),
            Some(record) => {
                let detail = match (record.status, &record.last_error) {
                    (DeployStatus::InSync, _) => {
                        record.desired_fingerprint.clone().unwrap_or_default()
                    }
                    (DeployStatus::Failed | DeployStatus::Parked, Some(error)) => {
                        format!("{} {}: {}", error.class, error.code, error.message)
                    }
                    _ => record
                        .next_attempt_at
                        .map(|at| format!("next attempt at {}", crate::status::events::rfc3339(at)))
                        .unwrap_or_default(),
                };
                (record.status, detail)
            }
        };
        Ok(crate::control::TargetOutcome {
            target: target.to_owned(),
            status: status.as_str().to_owned(),
            detail,
            failed: matches!(status, DeployStatus::Failed | DeployStatus::Parked),
        })
    }
}

/// How often the daemon applies the store's retention (after the first pass, then daily).
const RETENTION_INTERVAL: Duration = Duration::from_secs(86_400);

/// Prunes old events and certificate versions (README, "Retention"); a failure is logged
/// and retried a day later, since nothing depends on it.
fn apply_retention(store: &dyn StateStore, config: &Config, now: OffsetDateTime) {
    let names = config.certificates.iter().map(|c| c.name.as_str());
    match crate::store::apply_retention(store, names, now) {
        Ok(pruned) if pruned != crate::store::Pruned::default() => tracing::info!(
            events = pruned.events,
            versions = pruned.versions,
            "pruned the store by its retention"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "pruning the store failed"),
    }
}

/// The id of the newest event (0 for none): what a manual request's pass appends comes
/// after it. A read failure gives 0, which at worst reports an older failure too.
fn newest_event_id(store: &dyn StateStore) -> i64 {
    store
        .tail_events(1)
        .ok()
        .and_then(|events| events.last().map(|event| event.id))
        .unwrap_or(0)
}

/// Work asked for by hand (`certkeeper renew`, `certkeeper deploy`).
#[derive(Debug, Default, Clone)]
pub struct Manual {
    pub renew: BTreeSet<String>,
    pub deploy: BTreeSet<String>,
}

impl Manual {
    fn add(&mut self, request: &ControlRequest) {
        match request {
            ControlRequest::Renew { certificate } => {
                self.renew.insert(certificate.clone());
            }
            ControlRequest::Deploy { target } => {
                self.deploy.insert(target.clone());
            }
            // Answered by the loop when the reload ends, never queued for a pass.
            ControlRequest::Reload => {}
        }
    }
}

/// Refuses a request naming nothing configured, before any work is queued.
fn check_request(config: &Config, request: &ControlRequest) -> Result<(), ControlResponse> {
    match request {
        ControlRequest::Renew { certificate }
            if !config.certificates.iter().any(|c| &c.name == certificate) =>
        {
            Err(ControlResponse::unknown_name(format!(
                "no certificate named `{certificate}` in the configuration"
            )))
        }
        ControlRequest::Deploy { target } if !config.targets.iter().any(|t| &t.name == target) => {
            Err(ControlResponse::unknown_name(format!(
                "no target named `{target}` in the configuration"
            )))
        }
        _ => Ok(()),
    }
}

/// Prints a line per reconcile pass (the demo's rollout view).
pub type Reporter = Box<dyn Fn(&str) + Send + Sync>;

/// `certkeeper run`: runs until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf, loaded: config::Loaded) -> anyhow::Result<()> {
    run_with(
        config_path,
        loaded,
        Arc::new(ProcessEnvironment),
        false,
        None,
    )
    .await
}

/// A one-line rollout summary from the store, and whether everything has converged.
fn rollout_summary(
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

/// Watches the file sources of `components` until `stop` turns true, forwarding what they
/// find, tagged with the certificate's name, to the loop.
fn watch_files(
    components: &Components,
    events: &tokio::sync::mpsc::UnboundedSender<(String, FileEvent)>,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    for entry in &components.certificates {
        let CertificateSource::Files(files) = &entry.source else {
            continue;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (files, name, events) = (files.clone(), entry.config.name.clone(), events.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = files.run(tx, stopped).await {
                tracing::warn!(certificate = %name, error = %error, "cannot watch the certificate files; they are read on each pass");
            }
        });
        let name = entry.config.name.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if events.send((name.clone(), event)).is_err() {
                    return;
                }
            }
        });
    }
}

/// Config issues a refused reload logs; the rest are counted (`check` lists them all).
const MAX_LOGGED_ISSUES: usize = 20;

/// The shortest pause between two passes, so a record that stays due cannot spin the loop.
const MIN_PASS_INTERVAL: Duration = Duration::from_secs(1);

/// The daemon with its secrets' environment injected; with `once`, returns as soon as every
/// target is in sync and every policy resource compliant (or fails after two minutes).
///
/// One loop takes every event: timers (the earliest renewal, retry or scan, computed from
/// the store after each pass), file changes, SIGHUP, manual requests on the control socket,
/// SIGTERM/SIGINT. Passes run as a task beside the loop, so the watchdog, reloads and
/// signals are served while a long rollout runs; events during a pass queue one more pass.
pub async fn run_with(
    config_path: PathBuf,
    loaded: config::Loaded,
    environment: Arc<dyn SecretEnvironment + Send + Sync>,
    once: bool,
    reporter: Option<Reporter>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    use tokio::time::Instant;
    let notifier = Notifier::new();
    let metrics = Metrics::new().context("setting up metrics")?;
    let health = Health::new();
    let mut config = loaded.config;
    health.set_stall_budget(
        config::parse_duration(&config.daemon.stall_timeout)
            .unwrap_or(crate::telemetry::server::DEFAULT_STALL_TIMEOUT),
    );
    // Every cloud call answered is progress of the running pass.
    let progress_observer: Arc<dyn crate::cloud::http::RequestObserver> =
        Arc::new(crate::telemetry::server::ProgressObserver {
            health: health.clone(),
            inner: Arc::new(metrics.clone()),
        });
    // On the blocking pool: the state directory's checks, SQLite's open and the lock block.
    let state_dir = config.daemon.state_dir.clone();
    let opening = {
        let state_dir = state_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<_, StartError> {
            let store = crate::store::sqlite::SqliteStore::open(&state_dir).map_err(|source| {
                StartError::StateDirectory {
                    what: "opening the state store in",
                    path: state_dir.clone(),
                    source: Box::new(source),
                }
            })?;
            let lock = crate::fsutil::lock_state_dir(&state_dir).map_err(|source| {
                StartError::StateDirectory {
                    what: "locking the state directory",
                    path: state_dir.clone(),
                    source: Box::new(source),
                }
            })?;
            Ok((store, lock))
        })
    };
    let (store, _state_lock) = opening.await.context("opening the state store")??;
    let store: Arc<dyn StateStore> = Arc::new(store);
    health.set_store_open();
    let source_store = source_store_for(&store, &config);
    let start_error = |error| StartError::from_build(error, &state_dir);
    let cloud = build_cloud(&config, environment.as_ref(), progress_observer.clone())
        .map_err(start_error)?;
    let mut components = Arc::new(
        build_sources(&config, cloud, source_store.clone())
            .await
            .map_err(start_error)?,
    );
    health.set_config_loaded();
    let listener = tokio::net::TcpListener::bind(&config.daemon.metrics_listen)
        .await
        .with_context(|| format!("binding metrics on {}", config.daemon.metrics_listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server_stop = {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
        }
    };
    let server = tokio::spawn(crate::telemetry::server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        server_stop,
    ));
    let daemon = Arc::new(Daemon::new(store.clone(), metrics.clone(), health.clone()));
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Incoming>(64);
    let control_server = match crate::control::serve(&config.daemon.state_dir, control_tx) {
        Ok(server) => Some(server),
        Err(error) => {
            tracing::warn!(error = %error, "no control socket: `certkeeper renew` and `deploy` will run in-process");
            None
        }
    };
    let (files_tx, mut files_rx) = tokio::sync::mpsc::unbounded_channel();
    let (mut watch_stop_tx, watch_stop_rx) = tokio::sync::watch::channel(false);
    watch_files(&components, &files_tx, &watch_stop_rx);
    daemon.restore_metrics(&components);

    // READY as soon as the config is loaded and the store open: the first pass runs in the
    // loop like every other, and /readyz reports when it has finished.
    notifier.ready(&format!(
        "{} certificates, {} targets",
        config.certificates.len(),
        config.targets.len()
    ));
    tracing::info!("certkeeper ready");
    let report = |components: &Components| -> anyhow::Result<bool> {
        let (line, converged) = rollout_summary(store.as_ref(), components)?;
        if let Some(reporter) = &reporter {
            reporter(&line);
        }
        Ok(converged)
    };
    let started = std::time::Instant::now();
    let watchdog = notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(30));
    let mut watchdog_timer = tokio::time::interval(watchdog);
    watchdog_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stall_reported = false;
    let mut next_scan = next_scan_time(&config, OffsetDateTime::now_utc());
    let mut wake_at = Instant::now();
    let mut pass_wanted = true;
    let mut scan_wanted = true;
    let mut running: Option<tokio::task::JoinHandle<Result<(), StoreError>>> = None;
    let mut queued: Vec<Incoming> = Vec::new();
    let mut answering: Vec<Incoming> = Vec::new();
    let mut answering_since = 0;
    let mut retention_due = Instant::now();
    // A reload parses and builds beside the loop (the control socket and the watchdog keep
    // being served); a SIGHUP during one queues one more.
    let mut reloading: Option<tokio::task::JoinHandle<anyhow::Result<(Config, Components)>>> = None;
    let mut reload_again = false;
    // `certkeeper reload` callers: answered when the reload running now ends, or (asked
    // during one) when the next, which reads the file as it is after their request, ends.
    let mut reload_callers: Vec<tokio::sync::oneshot::Sender<ControlResponse>> = Vec::new();
    let mut reload_callers_next: Vec<tokio::sync::oneshot::Sender<ControlResponse>> = Vec::new();
    let start_reload = || {
        notifier.reloading();
        tokio::spawn(reload(
            config_path.clone(),
            source_store.clone(),
            environment.clone(),
            progress_observer.clone(),
        ))
    };
    // Accounts whose secret a reload found changed; their auth backoff is reset before the
    // next pass starts (not during one, whose failure would be written over the reset).
    let mut secrets_changed: BTreeSet<String> = BTreeSet::new();
    loop {
        if running.is_none() && (pass_wanted || Instant::now() >= wake_at) {
            if !secrets_changed.is_empty() {
                let changed = std::mem::take(&mut secrets_changed);
                if let Err(error) = daemon.reset_auth_backoff(&components, &changed) {
                    tracing::error!(error = %error, "resetting the backoff of changed credentials failed");
                }
            }
            let now = OffsetDateTime::now_utc();
            let scan = scan_wanted || once || next_scan.is_some_and(|at| at <= now);
            if scan {
                next_scan = next_scan_time(&config, now);
            }
            let mut manual = Manual::default();
            for (request, _) in &queued {
                manual.add(request);
            }
            answering = std::mem::take(&mut queued);
            answering_since = newest_event_id(store.as_ref());
            pass_wanted = false;
            scan_wanted = false;
            let (daemon, components) = (daemon.clone(), components.clone());
            running = Some(tokio::spawn(async move {
                daemon.reconcile(&components, scan, &manual).await
            }));
        }
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = watchdog_timer.tick() => {
                health.tick(OffsetDateTime::now_utc().unix_timestamp());
                // A stalled pass starves the watchdog, so systemd restarts the daemon.
                match health.stall() {
                    None => {
                        notifier.watchdog();
                        if stall_reported {
                            tracing::info!("the pass is making progress again; feeding the watchdog");
                            stall_reported = false;
                        }
                    }
                    Some(stall) if !stall_reported => {
                        tracing::error!(silent_seconds = stall.silent_for.as_secs(), budget_seconds = stall.budget.as_secs(), "{stall}; no longer feeding the watchdog");
                        stall_reported = true;
                    }
                    Some(_) => {}
                }
            }
            _ = hangup.recv() => {
                if reloading.is_some() {
                    tracing::info!("SIGHUP during a reload: another reload follows it");
                    reload_again = true;
                } else {
                    reloading = Some(start_reload());
                }
            }
            reloaded = async {
                match reloading.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                reloading = None;
                match reloaded.map_err(anyhow::Error::from).and_then(|result| result) {
                    Ok((new_config, new_components)) => {
                        secrets_changed.extend(changed_secrets(&components, &new_components));
                        config = new_config;
                        components = Arc::new(new_components);
                        daemon.restore_metrics(&components);
                        let _ = watch_stop_tx.send(true);
                        let (tx, rx) = tokio::sync::watch::channel(false);
                        watch_stop_tx = tx;
                        watch_files(&components, &files_tx, &rx);
                        next_scan = next_scan_time(&config, OffsetDateTime::now_utc());
                        metrics.config_reloads.with_label_values(&["success"]).inc();
                        tracing::info!("configuration reloaded");
                        pass_wanted = true;
                        scan_wanted = true;
                        for caller in reload_callers.drain(..) {
                            let _ = caller.send(ControlResponse::ok("configuration reloaded"));
                        }
                    }
                    Err(error) => {
                        metrics.config_reloads.with_label_values(&["failure"]).inc();
                        let error = match error.downcast_ref::<config::ConfigError>() {
                            Some(invalid) => invalid.summary(MAX_LOGGED_ISSUES),
                            None => format!("{error:#}"),
                        };
                        tracing::error!(error = %error, "reload refused; the previous configuration keeps running");
                        for caller in reload_callers.drain(..) {
                            let _ = caller.send(ControlResponse::failed(format!(
                                "reload refused; the previous configuration keeps running: {error}"
                            )));
                        }
                    }
                }
                notifier.ready("reloaded");
                if std::mem::take(&mut reload_again) {
                    reload_callers.append(&mut reload_callers_next);
                    reloading = Some(start_reload());
                }
            }
            Some((request, reply)) = control_rx.recv() => {
                // One branch for every request: a select! pattern that does not match would
                // drop the request it received.
                if request == ControlRequest::Reload {
                    tracing::info!("reload requested on the control socket");
                    if reloading.is_some() {
                        reload_again = true;
                        reload_callers_next.push(reply);
                    } else {
                        reload_callers.push(reply);
                        reloading = Some(start_reload());
                    }
                    continue;
                }
                match check_request(&config, &request) {
                    Ok(()) => {
                        tracing::info!(request = ?request, "manual request");
                        queued.push((request, reply));
                        pass_wanted = true;
                    }
                    Err(refusal) => {
                        let _ = reply.send(refusal);
                    }
                }
            }
            Some((name, event)) = files_rx.recv() => {
                if let Some(entry) = components.certificates.iter().find(|entry| entry.config.name == name) {
                    if let Err(error) = daemon.file_event(entry, event) {
                        tracing::error!(error = %error, "storing an imported certificate failed");
                    }
                    pass_wanted = true;
                }
            }
            joined = async {
                match running.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                running = None;
                let mut pause = MIN_PASS_INTERVAL;
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::error!(error = %error, "reconcile failed");
                        pause = Duration::from_secs(30);
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "a reconcile pass panicked");
                        pause = Duration::from_secs(30);
                    }
                }
                for (request, reply) in answering.drain(..) {
                    let _ = reply.send(daemon.answer(&components, &request, answering_since));
                }
                let now = OffsetDateTime::now_utc();
                if Instant::now() >= retention_due {
                    retention_due = Instant::now() + RETENTION_INTERVAL;
                    apply_retention(store.as_ref(), &config, now);
                }
                match crate::status::daemon_summary(&config, store.as_ref(), now) {
                    Ok(line) => notifier.status(&line),
                    Err(error) => tracing::error!(error = %error, "reading the state for STATUS failed"),
                }
                match report(&components) {
                    Ok(true) if once => break,
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "reading rollout state failed"),
                }
                if once && started.elapsed() > Duration::from_secs(120) {
                    let _ = stop_tx.send(true);
                    anyhow::bail!("did not converge within two minutes; see `certkeeper status`");
                }
                let due = match daemon.next_due(&components) {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::error!(error = %error, "reading what is due failed");
                        vec![now + Duration::from_secs(30)]
                    }
                };
                let max_sleep = if once { Duration::from_secs(1) } else { MAX_SLEEP };
                let wake = next_wake(now, due.into_iter().chain(next_scan), max_sleep);
                let sleep = Duration::try_from(wake - now).unwrap_or_default().max(pause);
                wake_at = Instant::now() + sleep;
                tracing::debug!(seconds = sleep.as_secs(), "next pass");
            }
            _ = tokio::time::sleep_until(wake_at), if running.is_none() => {}
        }
    }
    notifier.stopping();
    tracing::info!("stopping");
    if let Some(task) = reloading {
        task.abort();
    }
    if let Some(server) = control_server {
        server.abort();
    }
    let _ = watch_stop_tx.send(true);
    if let Some(task) = running {
        let grace = config::parse_duration(&config.daemon.shutdown_grace)
            .unwrap_or(Duration::from_secs(30));
        tracing::info!(
            grace_seconds = grace.as_secs(),
            "waiting for in-flight work"
        );
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
            tracing::warn!(
                "in-flight work did not finish within the grace period; the next start resumes it"
            );
        }
    }
    for (_, reply) in queued.into_iter().chain(answering) {
        let _ = reply.send(ControlResponse::failed(
            "the daemon stopped before doing this",
        ));
    }
    for caller in reload_callers.into_iter().chain(reload_callers_next) {
        let _ = caller.send(ControlResponse::failed(
            "the daemon stopped before the reload ended",
        ));
    }
    let _ = std::fs::remove_file(crate::control::socket_path(&config.daemon.state_dir));
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// `certkeeper renew` / `certkeeper deploy` without a daemon: one pass in this process that
/// does the requested work (and whatever else is due), then the same answer the daemon
/// would give.
pub async fn run_manual(
    loaded: config::Loaded,
    request: ControlRequest,
) -> anyhow::Result<ControlResponse> {
    use anyhow::Context;
    let config = loaded.config;
    if let Err(refusal) = check_request(&config, &request) {
        return Ok(refusal);
    }
    let metrics = Metrics::new().context("setting up metrics")?;
    let store = crate::store::sqlite::SqliteStore::open(&config.daemon.state_dir)
        .context("opening the state store")?;
    // A daemon whose socket we could not reach still owns the directory: do not race it.
    let _state_lock = crate::fsutil::lock_state_dir(&config.daemon.state_dir)
        .context("locking the state directory")?;
    let store: Arc<dyn StateStore> = Arc::new(store);
    let source_store = source_store_for(&store, &config);
    let components = build(
        &config,
        source_store,
        &ProcessEnvironment,
        Arc::new(metrics.clone()),
    )
    .await
    .context("building components")?;
    let since_event = newest_event_id(store.as_ref());
    let daemon = Daemon::new(store, metrics, Health::new());
    let mut manual = Manual::default();
    manual.add(&request);
    daemon
        .reconcile(&components, false, &manual)
        .await
        .context("running the pass")?;
    Ok(daemon.answer(&components, &request, since_event))
}

fn next_scan_time(config: &Config, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let schedule = crate::engine::window::parse_cron(&config.daemon.scan_schedule).ok()?;
    cron_after(&schedule, now)
}

/// Reads, validates and builds the config at `path` for a reload, beside the loop: the
/// parse, the validation and the reading of secrets (file reads that may be slow) on a
/// blocking thread, the rest of the build as a task.
async fn reload(
    path: PathBuf,
    source_store: Arc<dyn SourceStore>,
    environment: Arc<dyn SecretEnvironment + Send + Sync>,
    observer: Arc<dyn crate::cloud::http::RequestObserver>,
) -> anyhow::Result<(Config, Components)> {
    let (loaded, cloud) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let loaded = config::load(&path)?;
        let cloud = build_cloud(&loaded.config, environment.as_ref(), observer)?;
        Ok((loaded, cloud))
    })
    .await??;
    for warning in &loaded.warnings {
        tracing::warn!(warning = %warning, "config warning");
    }
    let components = build_sources(&loaded.config, cloud, source_store).await?;
    Ok((loaded.config, components))
}

/// Accounts in both `old` and `new` whose secrets differ (compared by keyed digest).
fn changed_secrets(old: &Components, new: &Components) -> Vec<String> {
    new.secrets
        .iter()
        .filter(|(name, fingerprint)| {
            old.secrets
                .get(*name)
                .is_some_and(|previous| previous != *fingerprint)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Where sources keep ACME accounts, ARI points and local CA roots: the state store, with
/// each account's directory URL so an account is found again after a restart.
fn source_store_for(store: &Arc<dyn StateStore>, config: &Config) -> Arc<dyn SourceStore> {
    let mut adapter = crate::source::persist::StateSourceStore::new(store.clone());
    for (name, acme) in &config.acme {
        adapter = adapter.with_acme_directory(name, &acme.directory);
    }
    Arc::new(adapter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeploymentRecord, LastError};

    /// Every secret variable is set.
    struct AllSet;

    impl SecretEnvironment for AllSet {
        fn var(&self, _: &str) -> Option<String> {
            Some("secret".into())
        }
        fn credentials_directory(&self) -> Option<PathBuf> {
            None
        }
    }

    const CONFIG: &str = r#"
[credentials.ali]
provider = "alibaba"
access_key_id = "AK"
access_key_secret_env = "ALI"
endpoint = "http://127.0.0.1:9"

[credentials.qc]
provider = "qingcloud"
access_key_id = "QK"
access_key_secret_env = "QC"
zone = "pek3"
endpoint = "http://127.0.0.1:9"

[local_ca.internal]

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = { local_ca = "internal" }
deploy_to = ["cdn-auth", "cdn-busy"]

[[target]]
name = "cdn-auth"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"

[[target]]
name = "cdn-busy"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"

[[policy]]
name = "ssl"
kind = "qingcloud-mysql-plus-ssl"
credentials = "qc"
resources = ["c-auth", "c-busy"]
ssl = true
"#;

    fn failed(target: &str, class: ErrorClass, now: OffsetDateTime) -> DeploymentRecord {
        DeploymentRecord {
            target: target.into(),
            certificate: "www".into(),
            desired_fingerprint: Some("f".into()),
            observed_fingerprint: None,
            status: DeployStatus::Failed,
            attempts: 3,
            last_error: Some(LastError {
                class,
                code: "Code".into(),
                message: "failed".into(),
            }),
            next_attempt_at: Some(now + time::Duration::hours(1)),
            updated_at: now,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_changed_secret_resets_only_the_auth_backoff_of_what_uses_it() {
        let directory = tempfile::tempdir().unwrap();
        let text = format!(
            "[daemon]\nstate_dir = {:?}\n{CONFIG}",
            directory.path().display().to_string()
        );
        let loaded = config::load_str("t.toml", &text).unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(crate::store::sqlite::SqliteStore::open(directory.path()).unwrap());
        let metrics = Metrics::new().unwrap();
        let components = build(
            &loaded.config,
            source_store_for(&store, &loaded.config),
            &AllSet,
            Arc::new(()),
        )
        .await
        .unwrap();
        let now = crate::store::truncate_to_seconds(OffsetDateTime::now_utc());
        store
            .put_deployment(&failed("cdn-auth", ErrorClass::Auth, now))
            .unwrap();
        store
            .put_deployment(&failed("cdn-busy", ErrorClass::Busy, now))
            .unwrap();
        for (resource, class) in [("c-auth", ErrorClass::Auth), ("c-busy", ErrorClass::Busy)] {
            store
                .record_attempt(&Attempt {
                    subject_kind: SubjectKind::Policy,
                    subject: crate::engine::policy::subject("ssl", resource),
                    operation: "check".into(),
                    class: Some(class),
                    code: Some("Code".into()),
                    at: now,
                })
                .unwrap();
        }
        let daemon = Daemon::new(store.clone(), metrics, Health::new());

        // An account nothing failed on: nothing changes.
        let changed = BTreeSet::from(["other".to_owned()]);
        daemon.reset_auth_backoff(&components, &changed).unwrap();
        assert_eq!(
            store.deployment("cdn-auth", "www").unwrap().unwrap(),
            failed("cdn-auth", ErrorClass::Auth, now)
        );

        let changed = BTreeSet::from(["ali".to_owned(), "qc".to_owned()]);
        daemon.reset_auth_backoff(&components, &changed).unwrap();
        let reset = store.deployment("cdn-auth", "www").unwrap().unwrap();
        assert_eq!(reset.status, DeployStatus::Pending);
        assert_eq!((reset.attempts, reset.next_attempt_at), (0, None));
        assert_eq!(
            store.deployment("cdn-busy", "www").unwrap().unwrap(),
            failed("cdn-busy", ErrorClass::Busy, now),
            "a failure that is not about authentication keeps its backoff"
        );
        let history = |resource| {
            store
                .attempts(
                    SubjectKind::Policy,
                    &crate::engine::policy::subject("ssl", resource),
                )
                .unwrap()
        };
        assert_eq!(crate::engine::policy::retry_at(&history("c-auth")), None);
        assert_eq!(
            history("c-auth")
                .last()
                .map(|attempt| attempt.operation.as_str()),
            Some("secret_changed")
        );
        assert!(crate::engine::policy::retry_at(&history("c-busy")).is_some());
    }
}
