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
use crate::cloud::{apply_policy, DnsSolver, Policy, PolicyOutcome, Target};
use crate::config::credentials::{
    ProcessEnvironment, Provider, ResolvedCredentials, SecretEnvironment,
};
use crate::config::{self, ChallengeType, Config, PolicySettings, SourceConfig, TargetSettings};
use crate::engine::deploy::{reconcile_target, DeployContext, TargetHandle};
use crate::engine::renewal::{choose_jitter, renewal_time, RenewalInputs, RenewalRule};
use crate::engine::retry::RetryPolicy;
use crate::error::CloudError;
use crate::source::acme::{AcmeSettings, AcmeSource, ChallengeSolver, Http01Responder};
use crate::source::file::{FileEvent, FileSource, WatchSpec};
use crate::source::local_ca::{LocalCa, LocalCaSettings};
use crate::source::{CertificateRequest, Source, SourceError, SourceStore};
use crate::store::{
    CertificateVersion, Event, LastError, PolicyStatus, RenewalPlan, StateStore, StoreError,
};
use crate::systemd::Notifier;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::Health;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

/// Why the daemon could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Credentials(#[from] config::credentials::CredentialError),
    #[error("{0}")]
    Component(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn component(error: impl std::fmt::Display) -> BuildError {
    BuildError::Component(error.to_string())
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
    /// Keeps HTTP-01 listeners alive for as long as these components live.
    _responders: Vec<Arc<Http01Responder>>,
}

/// Builds vendor clients (one per account, so targets of one account share its rate-limit
/// buckets), targets, policies and sources. Does I/O: reads secrets, binds HTTP-01 ports.
pub async fn build(
    config: &Config,
    source_store: Arc<dyn SourceStore>,
    environment: &dyn SecretEnvironment,
    observer: Arc<dyn crate::cloud::http::RequestObserver>,
) -> Result<Components, BuildError> {
    let http = crate::cloud::http::client(Default::default()).map_err(component)?;
    let mut resolved: BTreeMap<String, ResolvedCredentials> = BTreeMap::new();
    for (name, credentials) in &config.credentials {
        resolved.insert(name.clone(), credentials.resolve(name, environment)?);
    }
    let mut alibaba: HashMap<String, Arc<AlibabaClient>> = HashMap::new();
    let mut huawei: HashMap<String, Arc<HuaweiClient>> = HashMap::new();
    let account = |name: &str| {
        resolved
            .get(name)
            .cloned()
            .ok_or_else(|| component(format!("no credentials named `{name}`")))
    };
    for (name, credentials) in &resolved {
        match credentials.provider {
            Provider::Alibaba => {
                let client = AlibabaClient::new(
                    credentials.clone(),
                    http.clone(),
                    crate::cloud::alibaba::client::default_rate_limits(),
                )
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
                        let responder = Http01Responder::bind(address).await.map_err(component)?;
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
        let ca = LocalCa::open(settings, source_store.as_ref()).map_err(component)?;
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
                CertificateSource::Files(Arc::new(FileSource::new(
                    spec,
                    Duration::from_millis(500),
                )))
            }
        };
        certificates.push(CertificateEntry {
            config: certificate.clone(),
            source,
        });
    }
    Ok(Components {
        config: config.clone(),
        certificates,
        targets,
        policies,
        _responders: responders.into_values().collect(),
    })
}

/// The state that outlives reloads.
pub struct Daemon {
    store: Arc<dyn StateStore>,
    metrics: Metrics,
    health: Arc<Health>,
    retry: RetryPolicy,
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
        self.metrics
            .certificate_expiration
            .with_label_values(&[certificate.name.as_str()])
            .set(bundle.info.not_after.unix_timestamp() as f64);
        self.metrics
            .certificate_renewal
            .with_label_values(&[certificate.name.as_str()])
            .set(renewal_at.unix_timestamp() as f64);
        self.event(
            "certificate.stored",
            &certificate.name,
            format!("stored a new version of {}", certificate.name),
            serde_json::json!({"fingerprint": bundle.fingerprint(), "source": source, "not_after": bundle.info.not_after.unix_timestamp()}),
        );
        Ok(())
    }

    /// Obtains certificates that are due from issuers and imports changed files.
    async fn obtain_due(
        &self,
        components: &Components,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for entry in &components.certificates {
            let name = entry.config.name.as_str();
            let label = entry.config.source.label();
            match &entry.source {
                CertificateSource::Files(files) => {
                    for event in tokio::task::block_in_place(|| files.scan()) {
                        match event {
                            FileEvent::Imported { bundle, .. } => {
                                self.import(&entry.config, &bundle, &label)?
                            }
                            FileEvent::Rejected { error, .. } => {
                                self.metrics
                                    .renewals
                                    .with_label_values(&[name, "file", "failure"])
                                    .inc();
                                self.event("certificate.rejected", name, error.to_string(), serde_json::json!({"code": error.code, "class": error.class.as_str()}));
                            }
                        }
                    }
                }
                CertificateSource::Issuer(source) => {
                    let latest = self.store.latest_certificate_version(name)?;
                    let due = match (&latest, self.store.renewal_plan(name)?) {
                        (None, _) => true,
                        (Some(latest), Some(plan)) if plan.fingerprint == latest.fingerprint => {
                            plan.renewal_at <= now
                        }
                        (Some(latest), _) => {
                            // No plan for this version (stored by an older run): the
                            // configured rule without jitter.
                            renewal_time(&RenewalInputs {
                                not_before: latest.not_before,
                                not_after: latest.not_after,
                                rule: renewal_rule(&entry.config),
                                ari_point: None,
                                jitter: Duration::ZERO,
                            }) <= now
                        }
                    };
                    if !due {
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
                            self.metrics
                                .renewals
                                .with_label_values(&[name, source_kind, "success"])
                                .inc();
                        }
                        Err(error) => {
                            self.metrics
                                .renewals
                                .with_label_values(&[name, source_kind, "failure"])
                                .inc();
                            tracing::warn!(certificate = %name, class = %error.class, code = %error.code, error = %error, "obtaining a certificate failed");
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
    ) -> Result<(), StoreError> {
        let context = DeployContext {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            retry: self.retry,
            grace: config::parse_duration(&components.config.daemon.grace_period)
                .unwrap_or(Duration::from_secs(7 * 86_400)),
        };
        let mut limits: HashMap<&'static str, Arc<Semaphore>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        for entry in &components.certificates {
            let Some(version) = self.store.latest_certificate_version(&entry.config.name)? else {
                continue;
            };
            let version = Arc::new(version);
            for target_name in &entry.config.deploy_to {
                let Some(handle) = components.targets.get(target_name).cloned() else {
                    continue;
                };
                let limit = limits
                    .entry(handle.vendor)
                    .or_insert_with(|| {
                        Arc::new(Semaphore::new(components.config.daemon.concurrency))
                    })
                    .clone();
                let (context, version, names) = (
                    context.clone(),
                    version.clone(),
                    entry.config.domains.clone(),
                );
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    reconcile_target(&context, &handle, &version, &names, now, scan).await
                });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error),
                Err(error) => tracing::error!(error = %error, "a deploy task failed"),
            }
        }
        Ok(())
    }

    /// Checks (and in enforce mode corrects) every policy resource.
    async fn check_policies(
        &self,
        components: &Components,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for (config, policy) in &components.policies {
            for resource in policy.resources() {
                let outcome = apply_policy(policy.as_ref(), &resource, now).await;
                let previous = self.store.policy_status(&config.name, &resource)?;
                let mut status = PolicyStatus {
                    policy: config.name.clone(),
                    resource: resource.clone(),
                    compliant: false,
                    observed: serde_json::Value::Null,
                    last_checked: now,
                    last_job_id: previous.and_then(|previous| previous.last_job_id),
                    last_error: None,
                };
                match &outcome {
                    Ok(PolicyOutcome::Compliant) => status.compliant = true,
                    Ok(PolicyOutcome::Remediated(remediation)) => {
                        status.compliant = true;
                        status.last_job_id = remediation.job_id.clone();
                        self.metrics
                            .policy_remediations
                            .with_label_values(&[config.name.as_str(), "success"])
                            .inc();
                        self.event(
                            "policy.remediated",
                            &config.name,
                            format!("{resource} corrected"),
                            serde_json::json!({"resource": resource, "job_id": remediation.job_id}),
                        );
                    }
                    Ok(PolicyOutcome::Reported(finding)) | Ok(PolicyOutcome::Busy(finding)) => {
                        status.observed = serde_json::json!(finding.observed);
                    }
                    Ok(PolicyOutcome::Deferred {
                        finding,
                        window_opens,
                    }) => {
                        status.observed = serde_json::json!({"observed": finding.observed, "window_opens": window_opens.map(|at| at.unix_timestamp())});
                    }
                    Err(error) => {
                        status.last_error = Some(LastError {
                            class: error.class,
                            code: error.code.clone(),
                            message: error.message.clone(),
                        });
                        if error.job_id.is_some() {
                            status.last_job_id = error.job_id.clone();
                        }
                        self.record_error(error);
                        self.metrics
                            .policy_remediations
                            .with_label_values(&[config.name.as_str(), "failure"])
                            .inc();
                    }
                }
                self.metrics
                    .policy_compliant
                    .with_label_values(&[config.name.as_str(), resource.as_str()])
                    .set(i64::from(status.compliant));
                self.store.put_policy_status(&status)?;
            }
        }
        Ok(())
    }

    fn record_error(&self, error: &CloudError) {
        self.metrics
            .errors
            .with_label_values(&[
                error.vendor,
                &error.operation,
                error.class.as_str(),
                crate::cloud::code_label(error.vendor, &error.code),
            ])
            .inc();
        tracing::warn!(vendor = error.vendor, class = %error.class, code = %error.code, error = %error, "operation failed");
    }

    /// One full pass: obtain, deploy, (on scans) re-read live state and check policies.
    pub async fn reconcile(&self, components: &Components, scan: bool) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        self.obtain_due(components, now).await?;
        self.deploy_all(components, now, scan).await?;
        if scan {
            self.check_policies(components, now).await?;
        }
        let finished = OffsetDateTime::now_utc().unix_timestamp();
        self.metrics.last_reconcile.set(finished);
        self.health.tick(finished);
        self.health.set_first_reconcile_done();
        Ok(())
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

/// The daemon with its secrets' environment injected; with `once`, returns as soon as every
/// target is in sync and every policy resource compliant (or fails after two minutes).
pub async fn run_with(
    config_path: PathBuf,
    loaded: config::Loaded,
    environment: Arc<dyn SecretEnvironment + Send + Sync>,
    once: bool,
    reporter: Option<Reporter>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    let notifier = Notifier::new();
    let metrics = Metrics::new().context("setting up metrics")?;
    let health = Health::new();
    let mut config = loaded.config;
    let store = crate::store::sqlite::SqliteStore::open(&config.daemon.state_dir)
        .context("opening the state store")?;
    let store: Arc<dyn StateStore> = Arc::new(store);
    health.set_store_open();
    let source_store = source_store_for(&store, &config);
    let mut components = build(
        &config,
        source_store.clone(),
        environment.as_ref(),
        Arc::new(metrics.clone()),
    )
    .await
    .context("building components")?;
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
    let daemon = Daemon::new(store.clone(), metrics.clone(), health.clone());
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    daemon
        .reconcile(&components, true)
        .await
        .context("first reconcile")?;
    let started = std::time::Instant::now();
    let report = |components: &Components| -> anyhow::Result<bool> {
        let (line, converged) = rollout_summary(store.as_ref(), components)?;
        if let Some(reporter) = &reporter {
            reporter(&line);
        }
        Ok(converged)
    };
    if report(&components)? && once {
        let _ = stop_tx.send(true);
        return Ok(());
    }
    notifier.ready(&format!(
        "{} certificates, {} targets",
        config.certificates.len(),
        config.targets.len()
    ));
    tracing::info!("certkeeper ready");
    let watchdog = notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(30));
    let mut watchdog_timer = tokio::time::interval(watchdog);
    // Deploy retries and file imports are picked up every tick; live-state scans and policy
    // checks run on the configured cron schedule.
    let mut tick = tokio::time::interval(if once {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(30)
    });
    let mut next_scan = next_scan_time(&config, OffsetDateTime::now_utc());
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = watchdog_timer.tick() => {
                notifier.watchdog();
                health.tick(OffsetDateTime::now_utc().unix_timestamp());
            }
            _ = hangup.recv() => {
                notifier.reloading();
                match reload(&config_path, source_store.clone(), environment.as_ref(), Arc::new(metrics.clone())).await {
                    Ok((new_config, new_components)) => {
                        config = new_config;
                        components = new_components;
                        metrics.config_reloads.with_label_values(&["success"]).inc();
                        tracing::info!("configuration reloaded");
                        if let Err(error) = daemon.reconcile(&components, true).await {
                            tracing::error!(error = %error, "reconcile after reload failed");
                        }
                    }
                    Err(error) => {
                        metrics.config_reloads.with_label_values(&["failure"]).inc();
                        tracing::error!(error = %error, "reload refused; the previous configuration keeps running");
                    }
                }
                notifier.ready("reloaded");
            }
            _ = tick.tick() => {
                let now = OffsetDateTime::now_utc();
                let scan = once || next_scan.is_some_and(|at| at <= now);
                if scan {
                    next_scan = next_scan_time(&config, now);
                }
                if let Err(error) = daemon.reconcile(&components, scan).await {
                    tracing::error!(error = %error, "reconcile failed");
                }
                notifier.status(&format!("last reconcile {}", now.unix_timestamp()));
                match report(&components) {
                    Ok(true) if once => break,
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "reading rollout state failed"),
                }
                if once && started.elapsed() > Duration::from_secs(120) {
                    let _ = stop_tx.send(true);
                    anyhow::bail!("did not converge within two minutes; see `certkeeper status`");
                }
            }
        }
    }
    notifier.stopping();
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

fn next_scan_time(config: &Config, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let schedule = crate::engine::window::parse_cron(&config.daemon.scan_schedule).ok()?;
    let from = chrono::DateTime::from_timestamp(now.unix_timestamp(), 0)?;
    OffsetDateTime::from_unix_timestamp(schedule.after(&from).next()?.timestamp()).ok()
}

async fn reload(
    path: &Path,
    source_store: Arc<dyn SourceStore>,
    environment: &(dyn SecretEnvironment + Send + Sync),
    observer: Arc<dyn crate::cloud::http::RequestObserver>,
) -> anyhow::Result<(Config, Components)> {
    let loaded = config::load(path)?;
    for warning in &loaded.warnings {
        tracing::warn!(warning = %warning, "config warning");
    }
    let components = build(&loaded.config, source_store, environment, observer).await?;
    Ok((loaded.config, components))
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
