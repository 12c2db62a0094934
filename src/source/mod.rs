//! Where certificates come from: the [`Source`] trait every origin implements (ACME, watched
//! files, the local CA), the [`SourceError`] they report (an [`ErrorClass`] plus a retry hint,
//! classified once at the edge), and the small [`SourceStore`] through which sources keep the
//! state that must survive a restart (ACME account credentials, chosen ARI renewal points,
//! the local CA root). Obtaining a certificate is separate from deploying it: a source hands
//! back an [`Issued`] and the engine decides what to do with it.

pub mod acme;
pub mod file;
pub mod local_ca;
pub mod persist;

use crate::cert::{CertError, CertificateBundle, PrivateKey};
use crate::config::KeyAlgorithm;
use crate::error::{CloudError, ErrorClass};
use crate::secret::Secret;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// What the engine asks a source for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The `[[certificate]]` name; keys persisted per certificate (ARI point) use it.
    pub name: String,
    /// DNS names, the first one becoming the subject; wildcards as `*.example.com`.
    pub domains: Vec<String>,
    pub key: KeyAlgorithm,
    /// The leaf (PEM) this request renews, when there is one: ACME sends its ARI identifier
    /// as `replaces`.
    pub previous_leaf_pem: Option<String>,
}

impl CertificateRequest {
    pub fn new(name: impl Into<String>, domains: Vec<String>) -> Self {
        Self {
            name: name.into(),
            domains,
            key: KeyAlgorithm::default(),
            previous_leaf_pem: None,
        }
    }
}

/// A certificate a source produced.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf first, then the intermediates, as the CA returned them.
    pub chain_pem: String,
    pub key_pem: Secret,
    /// The ARI renewal point chosen for this certificate, when the CA offers ARI.
    pub renewal: Option<RenewalPoint>,
}

impl Issued {
    /// Splits the chain into leaf and intermediates and reads the leaf's facts.
    pub fn bundle(&self) -> Result<CertificateBundle, CertError> {
        let (leaf, chain) = split_chain(&self.chain_pem)?;
        CertificateBundle::from_pem(&leaf, &chain, self.key_pem.clone())
    }
}

/// Splits a PEM chain into its first certificate and the rest.
pub fn split_chain(chain_pem: &str) -> Result<(String, String), CertError> {
    let blocks = pem::parse_many(chain_pem).map_err(|error| CertError::MalformedPem {
        what: "certificate chain".into(),
        reason: error.to_string(),
    })?;
    let mut certs = blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        // LF line endings: pem's default is CRLF, which some cloud APIs reject.
        .map(|block| {
            pem::encode_config(
                &block,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        });
    let leaf = certs.next().ok_or_else(|| CertError::NoPem {
        what: "certificate chain".into(),
    })?;
    Ok((leaf, certs.collect::<Vec<_>>().join("")))
}

/// An ARI (RFC 9773) renewal point: the CA's suggested window, the random instant inside it
/// we chose once (and persisted, so a restart does not draw again), and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenewalPoint {
    /// The ARI certificate identifier (`base64url(AKI).base64url(serial)`).
    pub cert_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub window_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub window_end: OffsetDateTime,
    /// When to renew: uniformly random in the window, truncated to seconds.
    #[serde(with = "time::serde::rfc3339")]
    pub renew_at: OffsetDateTime,
    /// When the CA said the window may be fetched again (its Retry-After).
    #[serde(with = "time::serde::rfc3339")]
    pub next_poll: OffsetDateTime,
}

/// A failure of a source, kept as data. Only the ACME error mapping (`acme/errors.rs`) reads
/// problem types; everything downstream sees the class and the retry hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin} {operation}: {class} error {code}: {message}")]
pub struct SourceError {
    /// `acme`, `file`, `local_ca`, `store`.
    pub origin: &'static str,
    /// The step, e.g. `newOrder`, `finalize`, `read`.
    pub operation: String,
    pub class: ErrorClass,
    /// The ACME problem type without its URN prefix (`rateLimited`), or a local code.
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl SourceError {
    pub fn new(
        origin: &'static str,
        operation: impl Into<String>,
        class: ErrorClass,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            origin,
            operation: operation.into(),
            class,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The same failure as a [`CloudError`], for the shared retry loop and the engine.
    pub fn to_cloud_error(&self) -> CloudError {
        CloudError::new(
            self.origin,
            self.operation.clone(),
            self.class,
            self.code.clone(),
            self.message.clone(),
        )
        .with_retry_after(self.retry_after)
    }
}

/// Anything that can produce a certificate for a request.
#[async_trait]
pub trait Source: Send + Sync {
    async fn obtain(&self, request: &CertificateRequest) -> Result<Issued, SourceError>;

    /// The CA's suggested renewal point for an issued leaf (ACME ARI), persisted by the
    /// source and re-fetched only after the CA's Retry-After. `None`: use the lifetime.
    async fn renewal_point(
        &self,
        _certificate: &str,
        _leaf_pem: &str,
    ) -> Result<Option<RenewalPoint>, SourceError> {
        Ok(None)
    }
}

/// The state sources persist. The daemon backs it with the state store through
/// [`persist::StateSourceStore`]; tests use [`MemoryStore`]. Values that hold keys travel as [`Secret`].
pub trait SourceStore: Send + Sync {
    /// ACME account credentials (instant-acme's JSON) per `[acme.NAME]`.
    fn load_account(&self, account: &str) -> Result<Option<Secret>, SourceError>;
    fn save_account(&self, account: &str, credentials: &Secret) -> Result<(), SourceError>;
    fn delete_account(&self, account: &str) -> Result<(), SourceError>;
    /// The ARI point chosen for a certificate name.
    fn load_renewal_point(&self, certificate: &str) -> Result<Option<RenewalPoint>, SourceError>;
    fn save_renewal_point(
        &self,
        certificate: &str,
        point: &RenewalPoint,
    ) -> Result<(), SourceError>;
    /// A local CA's root: certificate PEM and key PEM.
    fn load_local_ca(&self, ca: &str) -> Result<Option<(String, Secret)>, SourceError>;
    fn save_local_ca(&self, ca: &str, cert_pem: &str, key_pem: &Secret) -> Result<(), SourceError>;
}

/// An in-memory [`SourceStore`] for tests, the demo and benchmarks. Also counts account
/// writes so tests can prove an account was created only once.
#[derive(Default)]
pub struct MemoryStore {
    accounts: Mutex<HashMap<String, Secret>>,
    points: Mutex<HashMap<String, RenewalPoint>>,
    cas: Mutex<HashMap<String, (String, Secret)>>,
    account_writes: Mutex<u32>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times an account was saved (created or re-registered).
    pub fn account_writes(&self) -> u32 {
        *lock(&self.account_writes)
    }
}

/// A poisoned lock only means another test thread panicked; the map itself is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SourceStore for MemoryStore {
    fn load_account(&self, account: &str) -> Result<Option<Secret>, SourceError> {
        Ok(lock(&self.accounts).get(account).cloned())
    }
    fn save_account(&self, account: &str, credentials: &Secret) -> Result<(), SourceError> {
        lock(&self.accounts).insert(account.to_owned(), credentials.clone());
        *lock(&self.account_writes) += 1;
        Ok(())
    }
    fn delete_account(&self, account: &str) -> Result<(), SourceError> {
        lock(&self.accounts).remove(account);
        Ok(())
    }
    fn load_renewal_point(&self, certificate: &str) -> Result<Option<RenewalPoint>, SourceError> {
        Ok(lock(&self.points).get(certificate).cloned())
    }
    fn save_renewal_point(
        &self,
        certificate: &str,
        point: &RenewalPoint,
    ) -> Result<(), SourceError> {
        lock(&self.points).insert(certificate.to_owned(), point.clone());
        Ok(())
    }
    fn load_local_ca(&self, ca: &str) -> Result<Option<(String, Secret)>, SourceError> {
        Ok(lock(&self.cas).get(ca).cloned())
    }
    fn save_local_ca(&self, ca: &str, cert_pem: &str, key_pem: &Secret) -> Result<(), SourceError> {
        lock(&self.cas).insert(ca.to_owned(), (cert_pem.to_owned(), key_pem.clone()));
        Ok(())
    }
}

/// Generates a private key of the configured algorithm (ECDSA P-256/P-384, RSA
/// 2048/3072/4096) as PKCS#8 PEM. RSA takes a while: async callers run it on a blocking
/// thread.
pub fn generate_key(origin: &'static str, algorithm: KeyAlgorithm) -> Result<Secret, SourceError> {
    algorithm.generate().map_err(|error| {
        SourceError::new(
            origin,
            "generate key",
            ErrorClass::Transient,
            "KeyGeneration",
            error.to_string(),
        )
    })
}

/// The rcgen key pair of a PEM key, for signing with it.
pub fn key_pair(origin: &'static str, key_pem: &Secret) -> Result<rcgen::KeyPair, SourceError> {
    PrivateKey::from_pem("generated key", key_pem.expose())
        .and_then(|key| key.to_rcgen("generated key"))
        .map_err(|error| {
            SourceError::new(
                origin,
                "load key",
                ErrorClass::Invalid,
                "BadKey",
                error.to_string(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;

    #[test]
    fn split_chain_separates_leaf_from_intermediates() {
        let a = testing::fresh(&["a.example.test"]);
        let b = testing::fresh(&["b.example.test"]);
        let (leaf, chain) = split_chain(&format!("{}{}", a.leaf_pem, b.leaf_pem)).unwrap();
        assert_eq!(
            crate::cert::LeafInfo::from_pem("leaf", &leaf)
                .unwrap()
                .fingerprint,
            a.info.fingerprint
        );
        assert_eq!(
            crate::cert::LeafInfo::from_pem("chain", &chain)
                .unwrap()
                .fingerprint,
            b.info.fingerprint
        );
        assert!(!leaf.contains('\r') && !chain.contains('\r'));
    }

    #[test]
    fn every_configured_key_algorithm_generates() {
        for (algorithm, expected) in [
            (
                KeyAlgorithm::EcdsaP256,
                crate::cert::key::KeyAlgorithm::EcdsaP256,
            ),
            (
                KeyAlgorithm::EcdsaP384,
                crate::cert::key::KeyAlgorithm::EcdsaP384,
            ),
            (KeyAlgorithm::Rsa2048, crate::cert::key::KeyAlgorithm::Rsa),
        ] {
            let pem = generate_key("acme", algorithm).unwrap();
            let key = PrivateKey::from_pem("test", pem.expose()).unwrap();
            assert_eq!(key.algorithm(), expected, "{algorithm:?}");
            key_pair("acme", &pem).unwrap();
        }
    }

    #[test]
    fn memory_store_counts_account_writes() {
        let store = MemoryStore::new();
        store.save_account("le", &Secret::new("{}")).unwrap();
        assert_eq!(store.account_writes(), 1);
        assert_eq!(store.load_account("le").unwrap().unwrap().expose(), "{}");
    }
}
