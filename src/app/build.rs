//! Building the daemon's components from a validated config: one vendor client per account,
//! targets, policies, sources (ACME accounts, local CAs, watched files) and the input
//! digests that unpark a changed target, and rebuilds all of it for a reload. The only place
//! that names every vendor.

use crate::cloud::alibaba::{client::AlibabaClient, dns::AlidnsSolver};
use crate::cloud::huawei::client::HuaweiClient;
use crate::cloud::huawei::dns::HuaweiDnsSolver;
use crate::cloud::qingcloud::QingCloudClient;
use crate::cloud::{registry, DnsSolver, Policy};
use crate::config::credentials::{
    Provider, ResolvedCredentials, SecretEnvironment, SecretFingerprint,
};
use crate::config::{self, ChallengeType, Config, SourceConfig};
use crate::engine::deploy::TargetHandle;
use crate::engine::inputs;
use crate::engine::pass::{CertificateEntry, CertificateSource, Components};
use crate::source::acme::{AcmeSettings, AcmeSource, ChallengeSolver, Http01Responder};
use crate::source::file::{FileSource, WatchSpec};
use crate::source::local_ca::{LocalCa, LocalCaSettings};
use crate::source::{Source, SourceStore};
use crate::store::{StateStore, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    pub(super) fn from_build(error: BuildError, state_dir: &Path) -> Self {
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

/// The cloud side of a config: vendor clients, targets and policies. Reads secrets but
/// writes nothing, so `plan` can build it next to a running daemon.
pub struct Cloud {
    alibaba: HashMap<String, Arc<AlibabaClient>>,
    huawei: HashMap<String, Arc<HuaweiClient>>,
    pub targets: HashMap<String, TargetHandle>,
    pub policies: Vec<(config::PolicyConfig, Arc<dyn Policy>)>,
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
    let accounts = Accounts {
        alibaba: &alibaba,
        huawei: &huawei,
        resolved: &resolved,
        http: &http,
        observer: &observer,
    };

    let mut targets = HashMap::new();
    for target in &config.targets {
        let window = target
            .maintenance_window
            .as_ref()
            .map(|window| window.build())
            .transpose()
            .map_err(component)?;
        let vendor = target.settings.product.vendor;
        let built = target
            .settings
            .build(target.spec(), window.clone(), &accounts)
            .map_err(component)?;
        let kind = built.kind();
        targets.insert(
            target.name.clone(),
            TargetHandle {
                name: target.name.clone(),
                kind,
                vendor,
                target: built,
                window: window.map(Box::new),
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
        let built = policy
            .settings
            .build(policy.spec(), window, &accounts)
            .map_err(component)?;
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

/// The vendor clients `build_cloud` made, one per account, lent to the products
/// (`cloud::registry`) that construct targets and policies.
struct Accounts<'a> {
    alibaba: &'a HashMap<String, Arc<AlibabaClient>>,
    huawei: &'a HashMap<String, Arc<HuaweiClient>>,
    resolved: &'a BTreeMap<String, ResolvedCredentials>,
    http: &'a reqwest::Client,
    observer: &'a Arc<dyn crate::cloud::http::RequestObserver>,
}

impl registry::Accounts for Accounts<'_> {
    fn alibaba(&self, account: Option<&str>) -> Result<Arc<AlibabaClient>, String> {
        account
            .and_then(|name| self.alibaba.get(name).cloned())
            .ok_or_else(|| "target needs alibaba credentials".to_owned())
    }

    fn huawei(&self, account: &str) -> Result<Arc<HuaweiClient>, String> {
        self.huawei
            .get(account)
            .cloned()
            .ok_or_else(|| "policy needs huawei credentials".to_owned())
    }

    fn qingcloud(&self, account: &str) -> Result<QingCloudClient, String> {
        let credentials = self
            .resolved
            .get(account)
            .ok_or_else(|| format!("no credentials named `{account}`"))?;
        Ok(QingCloudClient::new(self.http.clone(), credentials, None)
            .map_err(|error| error.to_string())?
            .with_observer(self.observer.clone()))
    }
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
pub(super) async fn build_sources(
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

/// Where sources keep ACME accounts, ARI points and local CA roots: the state store, with
/// each account's directory URL so an account is found again after a restart.
pub(super) fn source_store_for(
    store: &Arc<dyn StateStore>,
    config: &Config,
) -> Arc<dyn SourceStore> {
    let mut adapter = crate::source::persist::StateSourceStore::new(store.clone());
    for (name, acme) in &config.acme {
        adapter = adapter.with_acme_directory(name, &acme.directory);
    }
    Arc::new(adapter)
}

/// Reads, validates and builds the config at `path` for a reload, beside the loop: the
/// parse, the validation and the reading of secrets (file reads that may be slow) on a
/// blocking thread, the rest of the build as a task.
pub(super) async fn reload(
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
pub(super) fn changed_secrets(
    old: &BTreeMap<String, SecretFingerprint>,
    new: &BTreeMap<String, SecretFingerprint>,
) -> Vec<String> {
    new.iter()
        .filter(|(name, fingerprint)| {
            old.get(*name)
                .is_some_and(|previous| previous != *fingerprint)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pass::Daemon;
    use crate::error::ErrorClass;
    use crate::store::{Attempt, DeployStatus, DeploymentRecord, LastError, SubjectKind};
    use crate::telemetry::metrics::Metrics;
    use crate::telemetry::server::Health;
    use std::collections::BTreeSet;
    use time::OffsetDateTime;

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
