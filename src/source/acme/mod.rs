//! The ACME source (RFC 8555 through instant-acme): one [`AcmeSource`] per `[acme.NAME]`.
//! It owns the account (registered once, kept in the store), answers challenges through one
//! [`ChallengeSolver`], bounds the orders in flight with a semaphore, sends ARI `replaces`
//! when renewing (and retries without it if the CA refuses), and chooses the ARI renewal
//! point of what it issued. Files are named after the protocol's nouns: `account`, `order`,
//! `challenge`, `ari`; `errors` is the only code that reads problem types.

pub mod account;
pub mod ari;
pub mod challenge;
pub mod errors;
pub mod http;
pub mod order;
#[doc(hidden)]
pub mod testing;

pub use account::Eab;
pub use challenge::{ChallengeSolver, Http01Responder, SharedTokens};
pub use errors::classify_problem;
pub use http::AcmeHttp;

use crate::config::AcmeConfig;
use crate::error::ErrorClass;
use crate::secret::Secret;
use crate::source::{CertificateRequest, Issued, RenewalPoint, Source, SourceError, SourceStore};
use account::AccountManager;
use async_trait::async_trait;
use errors::{classify, is_account_missing, is_replaces_refusal, ORIGIN};
use order::OrderFailure;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;

/// How order status is polled when the CA sends no Retry-After. The first delay is short
/// because a CA may finish within milliseconds (Pebble does); doubling keeps a slow real CA
/// from being hammered, and its Retry-After always wins.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    pub first_delay: Duration,
    pub backoff: f32,
    pub timeout: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(20),
            backoff: 2.0,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Everything an [`AcmeSource`] needs, resolved (EAB key read, CA bundle loaded).
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The `[acme.NAME]` name: the key of the stored account.
    pub account: String,
    pub directory: String,
    pub contact: Vec<String>,
    pub eab: Option<Eab>,
    /// Extra trusted roots (PEM), e.g. a test CA's.
    pub ca_bundle_pem: Option<String>,
    pub profile: Option<String>,
    pub ari: bool,
    pub max_concurrent_orders: usize,
    pub poll: PollSettings,
}

impl AcmeSettings {
    /// Settings for a directory with defaults for everything else (tests, benchmarks).
    pub fn new(account: impl Into<String>, directory: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            directory: directory.into(),
            contact: Vec::new(),
            eab: None,
            ca_bundle_pem: None,
            profile: None,
            ari: true,
            max_concurrent_orders: 4,
            poll: PollSettings::default(),
        }
    }

    /// Resolves a validated `[acme.NAME]`: reads the EAB key (inline, env or file) and the
    /// CA bundle. This is the build step, so it may touch the environment and files.
    pub fn from_config(name: &str, config: &AcmeConfig) -> Result<Self, SourceError> {
        let config_error = |code: &str, message: String| {
            SourceError::new(ORIGIN, "configure", ErrorClass::Invalid, code, message)
        };
        // One resolution rule for every secret: the process-wide cache of environment
        // secrets, `$CREDENTIALS_DIRECTORY` for relative files.
        let hmac = crate::config::credentials::resolve_secret(
            &format!("acme.{name}"),
            "eab_hmac_key",
            config.eab_hmac_key.as_ref(),
            config.eab_hmac_key_env.as_deref(),
            config.eab_hmac_key_file.as_deref(),
            &crate::config::credentials::ProcessEnvironment,
        )
        .map_err(|error| config_error("EabKey", error.to_string()))?
        .map(|key| Secret::new(key.expose().trim()));
        let eab = match (&config.eab_kid, hmac) {
            (Some(kid), Some(hmac_key)) => Some(Eab {
                kid: kid.clone(),
                hmac_key,
            }),
            _ => None,
        };
        let ca_bundle_pem = match &config.ca_bundle {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|error| {
                config_error(
                    "CaBundle",
                    format!("acme.{name}: cannot read {}: {error}", path.display()),
                )
            })?),
            None => None,
        };
        Ok(Self {
            account: name.to_owned(),
            directory: config.directory.clone(),
            contact: config.contact.clone(),
            eab,
            ca_bundle_pem,
            profile: config.profile.clone(),
            ari: config.ari,
            max_concurrent_orders: config.max_concurrent_orders.unwrap_or(4).max(1),
            poll: PollSettings::default(),
        })
    }
}

/// The DNS-01 propagation wait of `[acme.NAME]`: `dns_propagation_wait`, else 10 s (enough
/// for the authoritative servers of the supported DNS providers to answer).
pub fn dns_propagation_wait(config: &AcmeConfig) -> Result<Duration, SourceError> {
    // Parsed at config load: nothing left to refuse here.
    Ok(config
        .dns_propagation_wait
        .unwrap_or(Duration::from_secs(10)))
}

/// Typed events of the ACME source, for telemetry and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeEvent {
    AccountCreated {
        account: String,
        url: String,
    },
    AccountReused {
        account: String,
        url: String,
    },
    /// The order was sent with `replaces` and the CA refused it; retried without.
    ReplacesRefused {
        certificate: String,
        cert_id: String,
        code: String,
    },
    OrderCompleted {
        certificate: String,
        elapsed: Duration,
    },
}

/// An ACME CA as a certificate [`Source`].
pub struct AcmeSource {
    settings: Arc<AcmeSettings>,
    accounts: AccountManager,
    store: Arc<dyn SourceStore>,
    solver: ChallengeSolver,
    orders: tokio::sync::Semaphore,
    events: Option<UnboundedSender<AcmeEvent>>,
}

impl AcmeSource {
    pub fn new(
        settings: AcmeSettings,
        store: Arc<dyn SourceStore>,
        solver: ChallengeSolver,
    ) -> Result<Self, SourceError> {
        Self::with_events(settings, store, solver, None)
    }

    /// Like [`new`](Self::new), reporting [`AcmeEvent`]s on `events`.
    pub fn with_events(
        settings: AcmeSettings,
        store: Arc<dyn SourceStore>,
        solver: ChallengeSolver,
        events: Option<UnboundedSender<AcmeEvent>>,
    ) -> Result<Self, SourceError> {
        let http = AcmeHttp::new(settings.ca_bundle_pem.as_deref())?;
        let orders = tokio::sync::Semaphore::new(settings.max_concurrent_orders.max(1));
        let settings = Arc::new(settings);
        Ok(Self {
            accounts: AccountManager::new(settings.clone(), http, store.clone(), events.clone()),
            settings,
            store,
            solver,
            orders,
            events,
        })
    }

    /// The account URL at the CA (registering or restoring the account if needed).
    pub async fn account_url(&self) -> Result<String, SourceError> {
        Ok(self.accounts.get().await?.id().to_owned())
    }

    /// The ARI renewal point of an issued certificate: persisted, re-fetched only after the
    /// CA's Retry-After. `None` when ARI is off or the CA does not offer it (use lifetime).
    pub async fn renewal_point(
        &self,
        certificate: &str,
        leaf_pem: &str,
    ) -> Result<Option<RenewalPoint>, SourceError> {
        if !self.settings.ari {
            return Ok(None);
        }
        let account = self.accounts.get().await?;
        ari::refresh(
            &account,
            self.store.as_ref(),
            certificate,
            leaf_pem,
            OffsetDateTime::now_utc(),
        )
        .await
    }

    fn emit(&self, event: AcmeEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// The profile to ask for: the configured one, when the CA lists it.
    fn profile(&self, account: &instant_acme::Account) -> Option<String> {
        let wanted = self.settings.profile.as_deref()?;
        if account.profiles().any(|profile| profile.name == wanted) {
            Some(wanted.to_owned())
        } else {
            tracing::warn!(account = %self.settings.account, profile = wanted, "the CA does not list this profile; ordering without it");
            None
        }
    }
}

#[async_trait]
impl Source for AcmeSource {
    async fn obtain(&self, request: &CertificateRequest) -> Result<Issued, SourceError> {
        let _permit = self.orders.acquire().await.map_err(|_| {
            SourceError::new(
                ORIGIN,
                "order",
                ErrorClass::Transient,
                "ShuttingDown",
                "the ACME source is closing",
            )
        })?;
        let started = Instant::now();
        // The key exists before the CA is asked for anything; a retried order (account
        // re-registered, `replaces` dropped) reuses it. RSA generation takes a while, so it
        // runs off the async workers.
        let algorithm = request.key;
        let key =
            tokio::task::spawn_blocking(move || crate::source::generate_key(ORIGIN, algorithm))
                .await
                .map_err(|error| {
                    SourceError::new(
                        ORIGIN,
                        "generate key",
                        ErrorClass::Transient,
                        "KeyGeneration",
                        error.to_string(),
                    )
                })??;
        let mut replaces = match (&request.previous_leaf_pem, self.settings.ari) {
            (Some(leaf), true) => ari::cert_id(leaf).ok(),
            _ => None,
        };
        // At most: one re-registration (account gone) and one retry without `replaces`.
        let mut reregistered = false;
        // instant-acme already retries a badNonce three times per request; a CA that rejects
        // nonces at random can still exhaust that on a busy order, so the whole order gets two
        // more tries (the key is reused, nothing else was committed at the CA).
        let mut nonce_retries = 2;
        let finished = loop {
            let account = self.accounts.get().await?;
            let profile = self.profile(&account);
            match order::run(
                &account,
                request,
                &self.solver,
                &self.settings.poll,
                profile.as_deref(),
                replaces.clone(),
                &key,
            )
            .await
            {
                Ok(finished) => break finished,
                Err(OrderFailure::Other(error))
                    if error.code == "badNonce" && nonce_retries > 0 =>
                {
                    nonce_retries -= 1;
                    continue;
                }
                Err(OrderFailure::Other(error)) => return Err(error),
                Err(OrderFailure::NewOrder(error)) => {
                    if is_account_missing(&error) && !reregistered {
                        tracing::warn!(account = %self.settings.account, "the CA no longer knows the account; registering again");
                        self.accounts.forget(&account).await?;
                        reregistered = true;
                        continue;
                    }
                    let mapped = classify("newOrder", &error);
                    if let (Some(id), true) = (&replaces, is_replaces_refusal(&error)) {
                        tracing::warn!(certificate = %request.name, error = %mapped, "the CA refused `replaces`; ordering without it");
                        self.emit(AcmeEvent::ReplacesRefused {
                            certificate: request.name.clone(),
                            cert_id: id.to_string(),
                            code: mapped.code.clone(),
                        });
                        replaces = None;
                        continue;
                    }
                    if mapped.code == "badNonce" && nonce_retries > 0 {
                        nonce_retries -= 1;
                        continue;
                    }
                    return Err(mapped);
                }
            }
        };
        self.emit(AcmeEvent::OrderCompleted {
            certificate: request.name.clone(),
            elapsed: started.elapsed(),
        });
        let mut issued = Issued {
            chain_pem: finished.chain_pem,
            key_pem: finished.key_pem,
            renewal: None,
        };
        if self.settings.ari {
            if let Ok((leaf, _)) = crate::source::split_chain(&issued.chain_pem) {
                // A missing window is not a failed issuance: the engine falls back on lifetime.
                match self.renewal_point(&request.name, &leaf).await {
                    Ok(point) => issued.renewal = point,
                    Err(error) => {
                        tracing::warn!(certificate = %request.name, error = %error, "could not fetch the ARI renewal window")
                    }
                }
            }
        }
        Ok(issued)
    }

    async fn renewal_point(
        &self,
        certificate: &str,
        leaf_pem: &str,
    ) -> Result<Option<RenewalPoint>, SourceError> {
        AcmeSource::renewal_point(self, certificate, leaf_pem).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> AcmeConfig {
        toml::from_str(&format!(
            "directory = \"https://acme.example.test/dir\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn settings_read_the_eab_key_file_and_ca_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hmac"), "c2VjcmV0\n").unwrap();
        let bundle = crate::cert::bundle::testing::fresh(&["ca.example.test"]);
        std::fs::write(dir.path().join("ca.pem"), &bundle.leaf_pem).unwrap();
        let config = config(&format!(
            "eab_kid = \"kid-1\"\neab_hmac_key_file = {:?}\nca_bundle = {:?}\nmax_concurrent_orders = 7\ndns_propagation_wait = \"30s\"",
            dir.path().join("hmac"),
            dir.path().join("ca.pem")
        ));
        let settings = AcmeSettings::from_config("le", &config).unwrap();
        let eab = settings.eab.unwrap();
        assert_eq!(
            (eab.kid.as_str(), eab.hmac_key.expose()),
            ("kid-1", "c2VjcmV0")
        );
        assert!(!format!("{:?}", eab).contains("c2VjcmV0"));
        assert_eq!(
            settings.ca_bundle_pem.as_deref(),
            Some(bundle.leaf_pem.as_str())
        );
        assert_eq!(settings.max_concurrent_orders, 7);
        assert_eq!(
            dns_propagation_wait(&config).unwrap(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_missing_eab_file_is_a_clear_error() {
        let config = config("eab_kid = \"k\"\neab_hmac_key_file = \"/nonexistent/hmac\"");
        let error = AcmeSettings::from_config("le", &config).unwrap_err();
        assert_eq!(error.class, ErrorClass::Invalid);
        assert!(error.message.contains("/nonexistent/hmac"), "{error}");
    }
}
