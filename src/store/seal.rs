//! Keys sealed at rest: the private key of every certificate version, every ACME account's
//! credentials and every local CA's key are encrypted before they reach a [`StateStore`]
//! backend and decrypted after, by [`SealedStore`], a layer over any backend (a backend
//! joins by implementing [`SecretRecords`], the walk used to migrate, check and rekey; the
//! SQLite one does). The cipher is AES-256-GCM (`ring::aead`) with a random 96-bit nonce per
//! value; the record's identity (kind, certificate name and fingerprint, ACME directory and
//! account, CA name) is the associated data, so a sealed value copied onto another row does
//! not open. A stored value reads `certkeeper-sealed:v1:KEYID:BASE64(nonce | ciphertext |
//! tag)`: `KEYID` names the store key (8 hex digits of an HMAC of a constant under the key,
//! which tells nothing about the key), so a store sealed under another key is recognised
//! as such before anything is decrypted, and `certkeeper store rekey` can tell old from new.
//!
//! The key is 32 random bytes written as base64 (or hex), given by `[store] key_file` (a
//! relative name resolves in `$CREDENTIALS_DIRECTORY`, so `LoadCredentialEncrypted=` works
//! unchanged) and loaded once at start. [`prepare`] runs when the daemon opens the store:
//! with a key it checks every sealed value opens and seals the plain-text ones (an existing
//! store's migration), all in one transaction; without a key it refuses a sealed store. A
//! refusal changes nothing.

use super::{
    AcmeAccount, AriPoint, Attempt, CertificateVersion, DeploymentRecord, Event, EventQuery,
    LocalCaRoot, PolicyStatus, RenewalPlan, StateStore, StoreError, SubjectKind,
};
use crate::secret::Secret;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// What every sealed value starts with (format version 1: AES-256-GCM).
pub const SEALED_PREFIX: &str = "certkeeper-sealed:v1:";

/// Why a value could not be sealed or opened, or a store not be prepared. Never holds a key
/// or a plain-text value.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the state store is sealed with store key {sealed_with}, but no store key is \
         configured: set `key_file` under [store] to that key (nothing was changed)"
    )]
    KeyMissing { sealed_with: String },
    #[error(
        "the configured store key (id {configured}) is not the key the state store is sealed \
         with (id {sealed_with}): configure that key, or restore a backup sealed with this one \
         (nothing was changed)"
    )]
    WrongKey {
        configured: String,
        sealed_with: String,
    },
    #[error(
        "{what}: the sealed value does not open with store key {key_id} (altered, or moved \
         from another record); restore a backup of the state store"
    )]
    Tampered { what: String, key_id: String },
    #[error("{what}: stored in plain text in a sealed store; restore a backup of the state store")]
    Plaintext { what: String },
    #[error("{what}: malformed sealed value ({reason}); restore a backup of the state store")]
    Malformed { what: String, reason: &'static str },
    #[error("{field}: not a store key: {reason}")]
    BadKey { field: String, reason: &'static str },
    #[error(transparent)]
    KeyUnreadable(#[from] crate::config::credentials::CredentialError),
    #[error("sealing failed: no random nonce from the system, or a value too large")]
    Cipher,
}

impl SealError {
    /// Whether the configuration (the key it names) is at fault, not the stored data:
    /// restarting with the same configuration cannot help either way, but the operator
    /// fixes a different thing.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            SealError::KeyMissing { .. }
                | SealError::WrongKey { .. }
                | SealError::BadKey { .. }
                | SealError::KeyUnreadable(_)
        )
    }
}

/// The store key: 32 bytes, zeroed on drop, never printed (`Debug` shows its id only).
#[derive(Clone)]
pub struct StoreKey {
    bytes: Zeroizing<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.id)
    }
}

impl StoreKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes.as_ref()),
            b"certkeeper store key id",
        );
        let id = hex::encode(&tag.as_ref()[..4]);
        Self { bytes, id }
    }

    /// A key from its text: base64 (standard or URL-safe, padded or not) or hex of exactly
    /// 32 bytes, surrounding whitespace ignored. `field` names the setting in errors.
    pub fn from_text(text: &Secret, field: &str) -> Result<Self, SealError> {
        let text = text.expose().trim();
        let bad = |reason| SealError::BadKey {
            field: field.to_owned(),
            reason,
        };
        let decoded: Zeroizing<Vec<u8>> = Zeroizing::new(if text.len() == 64 {
            hex::decode(text).map_err(|_| bad("64 characters but not hex"))?
        } else {
            let trimmed = text.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(trimmed)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
                .map_err(|_| {
                    bad("neither base64 nor hex; generate one with `openssl rand -base64 32`")
                })?
        });
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            bad("must be 32 bytes (44 base64 or 64 hex characters); `openssl rand -base64 32`")
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key's id as written in sealed values (not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> LessSafeKey {
        // AES-256-GCM takes any 32-byte key.
        match UnboundKey::new(&AES_256_GCM, self.bytes.as_ref()) {
            Ok(key) => LessSafeKey::new(key),
            Err(_) => unreachable!("AES-256-GCM keys are 32 bytes"),
        }
    }
}

/// Reads the store key the config names, if any (`[store] key` or `key_file`).
pub fn configured_key(
    config: &crate::config::store::StoreConfig,
    environment: &dyn crate::config::credentials::SecretEnvironment,
) -> Result<Option<StoreKey>, SealError> {
    let field = if config.key_file.is_some() {
        "store.key_file"
    } else {
        "store.key"
    };
    config
        .resolve_key(environment)?
        .map(|text| StoreKey::from_text(&text, field))
        .transpose()
}

/// Which kind of record a key-bearing value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// `certificate_versions.key_pem`, identified by certificate name and fingerprint.
    CertificateKey,
    /// `acme_accounts.credentials`, identified by directory URL and account name.
    AcmeAccount,
    /// `local_cas.key_pem`, identified by CA name.
    LocalCaKey,
}

impl SecretKind {
    fn as_str(self) -> &'static str {
        match self {
            SecretKind::CertificateKey => "certificate_key",
            SecretKind::AcmeAccount => "acme_account",
            SecretKind::LocalCaKey => "local_ca_key",
        }
    }

    /// The record named for an operator (no secret in it).
    fn describe(self, identity: &[&str]) -> String {
        let part = |index: usize| identity.get(index).copied().unwrap_or_default();
        match self {
            SecretKind::CertificateKey => format!(
                "the private key of certificate `{}` (fingerprint {})",
                part(0),
                part(1)
            ),
            SecretKind::AcmeAccount => {
                format!("ACME account `{}` at {}", part(1), part(0))
            }
            SecretKind::LocalCaKey => format!("the key of local CA `{}`", part(0)),
        }
    }
}

/// One key-bearing value as a backend stores it, with the identity it is sealed to.
pub struct SecretField {
    pub kind: SecretKind,
    /// CertificateKey: [certificate, fingerprint]; AcmeAccount: [directory_url,
    /// account_name]; LocalCaKey: [name].
    pub identity: Vec<String>,
    /// As stored: sealed, or plain text in a store not sealed yet.
    pub stored: Secret,
}

impl SecretField {
    fn identity(&self) -> Vec<&str> {
        self.identity.iter().map(String::as_str).collect()
    }
}

/// What a backend offers the sealing layer beyond [`StateStore`]: a walk over every
/// key-bearing value that can replace them, in one transaction.
pub trait SecretRecords {
    /// Where the store is, for messages (a file, a database name; never a password).
    fn location(&self) -> PathBuf;

    /// Calls `rewrite` on every key-bearing value and stores the replacement it returns
    /// (`None`: keep), all in one transaction: when `rewrite` fails, nothing is written and
    /// its error is returned as [`StoreError::Sealing`]. Returns how many were replaced.
    /// Replaced plain text must not linger in the backend's files (SQLite: secure_delete,
    /// WAL truncated).
    fn rewrite_secrets(
        &self,
        rewrite: &mut dyn FnMut(&SecretField) -> Result<Option<String>, SealError>,
    ) -> Result<usize, StoreError>;
}

fn associated_data(kind: SecretKind, identity: &[&str]) -> Vec<u8> {
    let mut data = b"certkeeper-sealed:v1\0".to_vec();
    data.extend_from_slice(kind.as_str().as_bytes());
    for part in identity {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part.as_bytes());
    }
    data
}

/// The key id of a sealed value, `None` for plain text.
pub fn sealed_key_id(stored: &str) -> Option<&str> {
    stored
        .strip_prefix(SEALED_PREFIX)
        .map(|rest| rest.split(':').next().unwrap_or_default())
}

/// Seals `plaintext` for the record `(kind, identity)`.
pub fn seal(
    key: &StoreKey,
    kind: SecretKind,
    identity: &[&str],
    plaintext: &str,
) -> Result<String, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Cipher)?;
    let mut buffer = Zeroizing::new(plaintext.as_bytes().to_vec());
    key.cipher()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(kind, identity)),
            &mut *buffer,
        )
        .map_err(|_| SealError::Cipher)?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&buffer);
    Ok(format!(
        "{SEALED_PREFIX}{}:{}",
        key.id,
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(blob)
    ))
}

/// Opens a value [`seal`] made for the same record.
pub fn open(
    key: &StoreKey,
    kind: SecretKind,
    identity: &[&str],
    stored: &str,
) -> Result<Secret, SealError> {
    let what = || kind.describe(identity);
    let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
        return Err(SealError::Plaintext { what: what() });
    };
    let malformed = |reason| SealError::Malformed {
        what: what(),
        reason,
    };
    let (key_id, body) = rest.split_once(':').ok_or_else(|| malformed("no key id"))?;
    if key_id != key.id {
        return Err(SealError::WrongKey {
            configured: key.id.clone(),
            sealed_with: key_id.to_owned(),
        });
    }
    let blob = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(body)
        .map_err(|_| malformed("not base64"))?;
    if blob.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(malformed("too short"));
    }
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed("bad nonce"))?;
    let mut buffer = Zeroizing::new(sealed.to_vec());
    let plain = key
        .cipher()
        .open_in_place(
            nonce,
            Aad::from(associated_data(kind, identity)),
            &mut buffer,
        )
        .map_err(|_| SealError::Tampered {
            what: what(),
            key_id: key.id.clone(),
        })?;
    let text = std::str::from_utf8(plain).map_err(|_| malformed("not text inside"))?;
    Ok(Secret::new(text))
}

/// What [`inspect`] or [`prepare`] found: plain-text values, sealed values per key id, and
/// how many plain ones were sealed now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    pub plain: usize,
    pub sealed: BTreeMap<String, usize>,
    pub sealed_now: usize,
}

impl Survey {
    /// Counts one stored value as plain or sealed (under its key id).
    pub fn count(&mut self, stored: &str) {
        match sealed_key_id(stored) {
            Some(id) => *self.sealed.entry(id.to_owned()).or_default() += 1,
            None => self.plain += 1,
        }
    }
}

impl std::fmt::Display for Survey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sealed: usize = self.sealed.values().sum();
        match (sealed, self.plain) {
            (0, 0) => f.write_str("no keys stored yet"),
            (0, plain) => write!(f, "{plain} keys in plain text (not sealed)"),
            (sealed, 0) => write!(
                f,
                "{sealed} keys sealed with store key {}",
                self.sealed.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            (sealed, plain) => write!(f, "{sealed} keys sealed, {plain} in plain text"),
        }
    }
}

/// Walks every key-bearing value: with `key`, each sealed one must open and (when
/// `migrate`) each plain one is sealed; without, a sealed one is refused. One transaction:
/// a refusal changes nothing.
fn walk(
    store: &dyn SecretRecords,
    key: Option<&StoreKey>,
    migrate: bool,
) -> Result<Survey, StoreError> {
    let mut survey = Survey::default();
    let sealed_now = store.rewrite_secrets(&mut |field| {
        let identity = field.identity();
        match (sealed_key_id(field.stored.expose()), key) {
            (Some(id), None) => Err(SealError::KeyMissing {
                sealed_with: id.to_owned(),
            }),
            (Some(id), Some(key)) => {
                *survey.sealed.entry(id.to_owned()).or_default() += 1;
                open(key, field.kind, &identity, field.stored.expose()).map(|_| None)
            }
            (None, Some(key)) if migrate => {
                seal(key, field.kind, &identity, field.stored.expose()).map(Some)
            }
            (None, _) => {
                survey.plain += 1;
                Ok(None)
            }
        }
    })?;
    survey.sealed_now = sealed_now;
    if let Some(key) = key.filter(|_| sealed_now > 0) {
        *survey.sealed.entry(key.id.clone()).or_default() += sealed_now;
    }
    Ok(survey)
}

/// Checks the store against `key` without writing (`certkeeper check`).
pub fn inspect(store: &dyn SecretRecords, key: Option<&StoreKey>) -> Result<Survey, StoreError> {
    walk(store, key, false)
}

/// Counts plain and sealed values without a key, opening nothing (backup, restore).
pub fn inspect_plain(store: &dyn SecretRecords) -> Result<Survey, StoreError> {
    let mut survey = Survey::default();
    store.rewrite_secrets(&mut |field| {
        survey.count(field.stored.expose());
        Ok(None)
    })?;
    Ok(survey)
}

/// Makes a freshly opened store ready for the daemon: with `key`, verifies every sealed
/// value and seals the plain ones (the first start with a key migrates an existing store),
/// and returns the store behind [`SealedStore`]; without, refuses a sealed store and
/// returns it as it is.
pub fn prepare<S: StateStore + SecretRecords + 'static>(
    store: Arc<S>,
    key: Option<StoreKey>,
) -> Result<(Arc<dyn StateStore>, Survey), StoreError> {
    let survey = walk(store.as_ref(), key.as_ref(), true)?;
    let store: Arc<dyn StateStore> = match key {
        Some(key) => {
            let location = store.location();
            Arc::new(SealedStore::new(store, key, location))
        }
        None => store,
    };
    Ok((store, survey))
}

/// Re-seals every key under `new` in one transaction (`certkeeper store rekey`): values
/// sealed under `old` (or already under `new`) and plain ones. Refuses, changing nothing,
/// a value sealed under any other key, or a sealed store when `old` is `None`. Returns how
/// many values were rewritten.
pub fn rekey(
    store: &dyn SecretRecords,
    old: Option<&StoreKey>,
    new: &StoreKey,
) -> Result<usize, StoreError> {
    store.rewrite_secrets(&mut |field| {
        let identity = field.identity();
        let stored = field.stored.expose();
        let plain = match (sealed_key_id(stored), old) {
            (None, _) => field.stored.clone(),
            (Some(id), _) if id == new.id => {
                open(new, field.kind, &identity, stored)?;
                return Ok(None);
            }
            (Some(id), None) => {
                return Err(SealError::KeyMissing {
                    sealed_with: id.to_owned(),
                })
            }
            (Some(_), Some(old)) => open(old, field.kind, &identity, stored)?,
        };
        seal(new, field.kind, &identity, plain.expose()).map(Some)
    })
}

/// A [`StateStore`] whose key-bearing values are sealed on the way in and opened on the
/// way out; everything else passes through unchanged.
pub struct SealedStore {
    inner: Arc<dyn StateStore>,
    key: StoreKey,
    location: PathBuf,
}

impl std::fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedStore")
            .field("location", &self.location)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl SealedStore {
    /// Seals over `inner` with `key`; `location` names the store in errors.
    pub fn new(inner: Arc<dyn StateStore>, key: StoreKey, location: PathBuf) -> Self {
        Self {
            inner,
            key,
            location,
        }
    }

    fn error(&self, source: SealError) -> StoreError {
        StoreError::Sealing {
            path: self.location.clone(),
            source,
        }
    }

    fn seal(
        &self,
        kind: SecretKind,
        identity: &[&str],
        value: &Secret,
    ) -> Result<Secret, StoreError> {
        seal(&self.key, kind, identity, value.expose())
            .map(Secret::new)
            .map_err(|error| self.error(error))
    }

    fn open(
        &self,
        kind: SecretKind,
        identity: &[&str],
        value: &Secret,
    ) -> Result<Secret, StoreError> {
        open(&self.key, kind, identity, value.expose()).map_err(|error| self.error(error))
    }

    fn open_version(
        &self,
        mut version: CertificateVersion,
    ) -> Result<CertificateVersion, StoreError> {
        version.key_pem = self.open(
            SecretKind::CertificateKey,
            &[&version.certificate, &version.fingerprint],
            &version.key_pem,
        )?;
        Ok(version)
    }

    fn open_versions(
        &self,
        versions: Vec<CertificateVersion>,
    ) -> Result<Vec<CertificateVersion>, StoreError> {
        versions
            .into_iter()
            .map(|version| self.open_version(version))
            .collect()
    }
}

impl StateStore for SealedStore {
    fn integrity_check(&self) -> Result<(), StoreError> {
        self.inner.integrity_check()
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        self.inner.schema_version()
    }

    fn insert_certificate_version(
        &self,
        version: &CertificateVersion,
        deploy_to: &[String],
    ) -> Result<i64, StoreError> {
        let mut sealed = version.clone();
        sealed.key_pem = self.seal(
            SecretKind::CertificateKey,
            &[&version.certificate, &version.fingerprint],
            &version.key_pem,
        )?;
        self.inner.insert_certificate_version(&sealed, deploy_to)
    }

    fn certificate_version(&self, id: i64) -> Result<Option<CertificateVersion>, StoreError> {
        self.inner
            .certificate_version(id)?
            .map(|version| self.open_version(version))
            .transpose()
    }

    fn latest_certificate_version(
        &self,
        certificate: &str,
    ) -> Result<Option<CertificateVersion>, StoreError> {
        self.inner
            .latest_certificate_version(certificate)?
            .map(|version| self.open_version(version))
            .transpose()
    }

    fn certificate_versions(
        &self,
        certificate: &str,
    ) -> Result<Vec<CertificateVersion>, StoreError> {
        self.open_versions(self.inner.certificate_versions(certificate)?)
    }

    fn latest_certificate_versions(&self) -> Result<Vec<CertificateVersion>, StoreError> {
        self.open_versions(self.inner.latest_certificate_versions()?)
    }

    fn prune_certificate_versions(
        &self,
        certificate: &str,
        keep: usize,
    ) -> Result<usize, StoreError> {
        self.inner.prune_certificate_versions(certificate, keep)
    }

    fn put_deployment(&self, record: &DeploymentRecord) -> Result<(), StoreError> {
        self.inner.put_deployment(record)
    }

    fn put_deployment_with_attempt(
        &self,
        record: &DeploymentRecord,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        self.inner.put_deployment_with_attempt(record, attempt)
    }

    fn deployment(
        &self,
        target: &str,
        certificate: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        self.inner.deployment(target, certificate)
    }

    fn deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.inner.deployments()
    }

    fn due_deployments(&self, now: OffsetDateTime) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.inner.due_deployments(now)
    }

    fn record_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        self.inner.record_attempt(attempt)
    }

    fn attempts(&self, kind: SubjectKind, subject: &str) -> Result<Vec<Attempt>, StoreError> {
        self.inner.attempts(kind, subject)
    }

    fn put_policy_status(&self, status: &PolicyStatus) -> Result<(), StoreError> {
        self.inner.put_policy_status(status)
    }

    fn policy_status(
        &self,
        policy: &str,
        resource: &str,
    ) -> Result<Option<PolicyStatus>, StoreError> {
        self.inner.policy_status(policy, resource)
    }

    fn policy_statuses(&self) -> Result<Vec<PolicyStatus>, StoreError> {
        self.inner.policy_statuses()
    }

    fn put_acme_account(&self, account: &AcmeAccount) -> Result<(), StoreError> {
        let mut sealed = account.clone();
        sealed.credentials = self.seal(
            SecretKind::AcmeAccount,
            &[&account.directory_url, &account.account_name],
            &account.credentials,
        )?;
        self.inner.put_acme_account(&sealed)
    }

    fn acme_account(
        &self,
        directory_url: &str,
        account_name: &str,
    ) -> Result<Option<AcmeAccount>, StoreError> {
        self.inner
            .acme_account(directory_url, account_name)?
            .map(|mut account| {
                account.credentials = self.open(
                    SecretKind::AcmeAccount,
                    &[&account.directory_url, &account.account_name],
                    &account.credentials,
                )?;
                Ok(account)
            })
            .transpose()
    }

    fn delete_acme_account(
        &self,
        directory_url: &str,
        account_name: &str,
    ) -> Result<(), StoreError> {
        self.inner.delete_acme_account(directory_url, account_name)
    }

    fn put_ari_point(&self, point: &AriPoint) -> Result<(), StoreError> {
        self.inner.put_ari_point(point)
    }

    fn ari_point(&self, certificate: &str) -> Result<Option<AriPoint>, StoreError> {
        self.inner.ari_point(certificate)
    }

    fn put_local_ca(&self, root: &LocalCaRoot) -> Result<(), StoreError> {
        let mut sealed = root.clone();
        sealed.key_pem = self.seal(SecretKind::LocalCaKey, &[&root.name], &root.key_pem)?;
        self.inner.put_local_ca(&sealed)
    }

    fn local_ca(&self, name: &str) -> Result<Option<LocalCaRoot>, StoreError> {
        self.inner
            .local_ca(name)?
            .map(|mut root| {
                root.key_pem = self.open(SecretKind::LocalCaKey, &[&root.name], &root.key_pem)?;
                Ok(root)
            })
            .transpose()
    }

    fn put_renewal_plan(&self, plan: &RenewalPlan) -> Result<(), StoreError> {
        self.inner.put_renewal_plan(plan)
    }

    fn renewal_plan(&self, certificate: &str) -> Result<Option<RenewalPlan>, StoreError> {
        self.inner.renewal_plan(certificate)
    }

    fn renewal_plans(&self) -> Result<Vec<RenewalPlan>, StoreError> {
        self.inner.renewal_plans()
    }

    fn append_event(&self, event: &Event) -> Result<i64, StoreError> {
        self.inner.append_event(event)
    }

    fn prune_events(&self, before: OffsetDateTime) -> Result<usize, StoreError> {
        self.inner.prune_events(before)
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.inner.events(query)
    }

    fn tail_events(&self, count: usize) -> Result<Vec<Event>, StoreError> {
        self.inner.tail_events(count)
    }
}

#[cfg(test)]
mod tests;
