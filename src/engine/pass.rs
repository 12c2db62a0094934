//! One reconcile pass and the state it runs on: the [`Components`] built from one config
//! (rebuilt whole on reload), the [`Daemon`] state that outlives reloads, and the pass
//! itself (`reconcile`: obtain, deploy, check policies, refresh the gauges). The obtain
//! logic lives in `obtain`, the deploy queue in `rollout`, what is due next in `due`.

use crate::cloud::Policy;
use crate::config::credentials::SecretFingerprint;
use crate::config::{self, Config, SourceConfig};
use crate::engine::deploy::{refresh_retry_pending, TargetHandle};
use crate::engine::obtain::renewal_rule;
use crate::engine::policy::{reconcile_policy, PolicyContext};
use crate::error::ErrorClass;
use crate::retry::RetryPolicy;
use crate::source::acme::Http01Responder;
use crate::source::file::FileSource;
use crate::source::Source;
use crate::store::{Attempt, DeployStatus, StateStore, StoreError, SubjectKind};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::Health;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use time::OffsetDateTime;

/// A certificate and where it comes from.
pub struct CertificateEntry {
    pub(crate) config: config::CertificateConfig,
    pub(crate) source: CertificateSource,
}

pub enum CertificateSource {
    /// Obtained on demand (ACME, local CA).
    Issuer(Arc<dyn Source>),
    /// Imported when the watched files change.
    Files(Arc<FileSource>),
}

/// Everything built from one config. Rebuilt whole on reload.
pub struct Components {
    pub(crate) config: Config,
    pub(crate) certificates: Vec<CertificateEntry>,
    pub(crate) targets: HashMap<String, TargetHandle>,
    pub(crate) policies: Vec<(config::PolicyConfig, Arc<dyn Policy>)>,
    /// A digest of each target's and policy's configuration: a change unparks it.
    pub(crate) inputs: HashMap<String, String>,
    /// A keyed digest of each account's secrets: a change resets the auth backoff of what
    /// uses the account (see `Daemon::reset_auth_backoff`).
    pub(crate) secrets: BTreeMap<String, SecretFingerprint>,
    /// Keeps HTTP-01 listeners alive for as long as these components live.
    pub(crate) _responders: Vec<Arc<Http01Responder>>,
}

/// Where the pass reads the time: the system clock in the daemon, a fake one in tests.
pub type Clock = dyn Fn() -> OffsetDateTime + Send + Sync;

/// Tells a running pass that the daemon is stopping: once set, no new obtain, deploy or
/// policy check starts; what is already running finishes (the loop waits `shutdown_grace`).
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Set when `true` is sent on the channel of `receiver`.
    pub fn new(receiver: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(receiver)
    }

    /// A token that is never set: a one-off pass (`run_manual`) or a test.
    pub fn never() -> Self {
        Self(tokio::sync::watch::channel(false).1)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

/// The state that outlives reloads.
pub struct Daemon {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) metrics: Metrics,
    pub(crate) health: Arc<Health>,
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<Clock>,
}

impl Daemon {
    pub fn new(store: Arc<dyn StateStore>, metrics: Metrics, health: Arc<Health>) -> Self {
        Self {
            store,
            metrics,
            health,
            retry: RetryPolicy::default(),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// The same daemon reading the time from `clock`.
    pub fn with_clock(mut self, clock: Arc<Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The time now, from the injected clock.
    pub(crate) fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// The configured policies, as the state gauges see them.
    pub(crate) fn policy_items(
        components: &Components,
    ) -> Vec<crate::engine::state::PolicyItem<'_>> {
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
    pub(crate) fn inventory<'a>(components: &'a Components) -> crate::engine::state::Inventory<'a> {
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
        let now = self.now();
        if let Err(error) =
            crate::engine::state::restore(self.store.as_ref(), &self.metrics, &inventory, now)
        {
            tracing::error!(error = %error, "cannot restore the metrics from the state store");
        }
    }

    /// A fixed secret takes effect at once: every deployment, policy resource and ACME
    /// certificate (DNS-01) that uses one of the `changed` accounts and last failed on
    /// authentication leaves its backoff and is tried in the next pass. Deployments go back
    /// to pending; policy and obtain histories get a `secret_changed` marker (a success-less
    /// attempt, which ends the run of failures the backoff is computed from).
    pub(crate) fn reset_auth_backoff(
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
        let now = crate::store::truncate_to_seconds(self.now());
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
    pub(crate) async fn check_policies(
        &self,
        components: &Components,
        now: OffsetDateTime,
        all: bool,
        shutdown: &Shutdown,
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
                if shutdown.is_set() {
                    return Ok(());
                }
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
    /// Once `shutdown` is set the pass starts nothing new and ends when its running work has.
    pub async fn reconcile(
        &self,
        components: &Components,
        scan: bool,
        manual: &Manual,
        shutdown: &Shutdown,
    ) -> Result<(), StoreError> {
        let _pass = self.health.begin_pass();
        let _running = self.metrics.pass_running();
        let now = self.now();
        self.obtain_due(components, now, &manual.renew, shutdown)
            .await?;
        // A fresh clock: obtaining may have taken minutes, and a certificate issued during
        // this pass must not look "not yet valid" to its deploy.
        let now = self.now();
        self.deploy_all(components, now, scan, &manual.deploy, shutdown)
            .await?;
        self.check_policies(components, now, scan, shutdown).await?;
        refresh_retry_pending(self.store.as_ref(), &self.metrics)?;
        crate::engine::state::refresh_remediation_overdue(
            self.store.as_ref(),
            &self.metrics,
            &Self::policy_items(components),
            now,
        )?;
        let finished = self.now().unix_timestamp();
        self.metrics.last_reconcile.set(finished);
        self.health.tick(finished);
        self.health.set_first_reconcile_done();
        Ok(())
    }
}

/// Work asked for by hand (`certkeeper renew`, `certkeeper deploy`).
#[derive(Debug, Default, Clone)]
pub struct Manual {
    pub renew: BTreeSet<String>,
    pub deploy: BTreeSet<String>,
}
