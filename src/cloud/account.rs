//! A vendor account as the clients see it: whose keys ([`Provider`]), where they come
//! from ([`CredentialKind`], [`TemporarySettings`]), the secrets read and the endpoints
//! chosen ([`ResolvedCredentials`]). `config::credentials` parses `[credentials.NAME]` and
//! resolves it into these; the clients and credential providers import them from here, so
//! nothing in `cloud/` imports the config.

use crate::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The vendor an account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Alibaba,
    Huawei,
    Qingcloud,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Alibaba => "alibaba",
            Provider::Huawei => "huawei",
            Provider::Qingcloud => "qingcloud",
        }
    }
}

/// How Huawei requests authenticate: AK/SK signatures (default) or an IAM token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    #[default]
    Aksk,
    Token,
}

/// Where an account's keys come from (`type = ...`), named after the official credential
/// chains (Alibaba `credentials-go`/`credentials-python` types; Huawei `huaweicloudsdkcore`
/// metadata credentials). Every kind but `access_key` yields temporary keys with a security
/// token, refreshed before they expire; `access_key` and `sts` re-read their files when
/// they change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A long-lived AccessKey pair (every vendor).
    #[default]
    AccessKey,
    /// AccessKeyId, secret and security token handed out by someone else (Alibaba, Huawei).
    Sts,
    /// Alibaba: STS `AssumeRole` with this section's AccessKey as the source credential.
    RamRoleArn,
    /// Alibaba: the ECS instance RAM role, from the instance metadata service (IMDSv2).
    EcsRamRole,
    /// Alibaba: RRSA, STS `AssumeRoleWithOIDC` with a service-account token file.
    OidcRoleArn,
    /// Huawei: temporary AK/SK of the ECS agency, from `/openstack/latest/securitykey`.
    EcsMetadata,
    /// Huawei: temporary AK/SK from IAM (`/v3.0/OS-CREDENTIAL/securitytokens`) for the IAM
    /// user's token (domain, user, password).
    IamTemporary,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::AccessKey => "access_key",
            CredentialKind::Sts => "sts",
            CredentialKind::RamRoleArn => "ram_role_arn",
            CredentialKind::EcsRamRole => "ecs_ram_role",
            CredentialKind::OidcRoleArn => "oidc_role_arn",
            CredentialKind::EcsMetadata => "ecs_metadata",
            CredentialKind::IamTemporary => "iam_temporary",
        }
    }

    /// The providers this kind exists for.
    pub fn providers(self) -> &'static [Provider] {
        match self {
            CredentialKind::AccessKey => {
                &[Provider::Alibaba, Provider::Huawei, Provider::Qingcloud]
            }
            CredentialKind::Sts => &[Provider::Alibaba, Provider::Huawei],
            CredentialKind::RamRoleArn
            | CredentialKind::EcsRamRole
            | CredentialKind::OidcRoleArn => &[Provider::Alibaba],
            CredentialKind::EcsMetadata | CredentialKind::IamTemporary => &[Provider::Huawei],
        }
    }

    /// Whether this section's own `access_key_id` and secret are required.
    pub fn needs_access_key(self) -> bool {
        matches!(
            self,
            CredentialKind::AccessKey | CredentialKind::Sts | CredentialKind::RamRoleArn
        )
    }
}

/// Temporary-credential settings of a resolved account (only those of its kind are set).
#[derive(Debug, Clone, Default)]
pub struct TemporarySettings {
    /// `sts`: files re-read when they change (resolved paths).
    pub access_key_id_file: Option<PathBuf>,
    pub access_key_secret_file: Option<PathBuf>,
    pub security_token: Option<Secret>,
    pub security_token_file: Option<PathBuf>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub duration_seconds: Option<u64>,
    pub policy: Option<String>,
    pub external_id: Option<String>,
    pub sts_endpoint: Option<String>,
    pub role_name: Option<String>,
    pub metadata_endpoint: Option<String>,
    pub oidc_provider_arn: Option<String>,
    pub oidc_token_file: Option<PathBuf>,
}

/// Secret files larger than this are refused: a secret is a few dozen bytes, and the file
/// is read into memory.
pub(crate) const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// An account ready for a client: secrets read, endpoints chosen.
#[derive(Debug, Clone)]
pub struct ResolvedCredentials {
    pub name: String,
    pub provider: Provider,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub zone: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) endpoints: BTreeMap<String, String>,
    /// The account whose rate limits these keys share (`None`: the access key's own).
    pub account: Option<String>,
    /// Per-action rate overrides (calls per second).
    pub rate_limits: BTreeMap<String, f64>,
    pub auth: AuthMethod,
    pub iam_endpoint: Option<String>,
    pub domain_name: Option<String>,
    pub user_name: Option<String>,
    pub project_name: Option<String>,
    pub password: Option<Secret>,
    /// Where the keys come from; `temporary` holds that kind's settings.
    pub kind: CredentialKind,
    pub temporary: TemporarySettings,
}

impl ResolvedCredentials {
    /// Builds resolved credentials directly (tests, benchmarks, the demo).
    pub fn new(
        name: &str,
        provider: Provider,
        access_key_id: &str,
        access_key_secret: &str,
    ) -> Self {
        Self {
            name: name.to_owned(),
            provider,
            access_key_id: access_key_id.to_owned(),
            access_key_secret: Secret::new(access_key_secret),
            region: None,
            project_id: None,
            zone: None,
            endpoint: None,
            endpoints: BTreeMap::new(),
            account: None,
            rate_limits: BTreeMap::new(),
            auth: AuthMethod::Aksk,
            iam_endpoint: None,
            domain_name: None,
            user_name: None,
            project_name: None,
            password: None,
            kind: CredentialKind::AccessKey,
            temporary: TemporarySettings::default(),
        }
    }

    /// Makes this account of `kind` with `settings` (tests, the demo).
    pub fn with_kind(mut self, kind: CredentialKind, settings: TemporarySettings) -> Self {
        self.kind = kind;
        self.temporary = settings;
        self
    }

    /// Sends every product to `endpoint` (e.g. the simulator's `http://127.0.0.1:8700`).
    pub fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.trim_end_matches('/').to_owned());
        self
    }

    /// Shares rate limits with the other keys of `account`.
    pub fn with_account(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }

    /// The key rate-limit buckets are shared by: the account, else the access key id, else
    /// (keys that change with every refresh) the section name.
    pub fn rate_limit_account(&self) -> &str {
        match (&self.account, self.kind) {
            (Some(account), _) => account,
            (None, CredentialKind::AccessKey) => &self.access_key_id,
            (None, _) => &self.name,
        }
    }

    /// Sends `product` (`cdn`, `cas.ap-southeast-1`...) to `endpoint`, over the vendor-wide one.
    pub fn with_product_endpoint(mut self, product: &str, endpoint: &str) -> Self {
        self.endpoints.insert(
            product.to_owned(),
            endpoint.trim_end_matches('/').to_owned(),
        );
        self
    }

    /// The base URL for `product` (`cdn`, `vod`, `rds`, `dns`, `cas`, `gaussdb`, `iam`,
    /// `iaas`...): the per-product override, else the vendor-wide endpoint, else `default`.
    pub fn endpoint_for(&self, product: &str, default: &str) -> String {
        self.endpoints
            .get(product)
            .or(self.endpoint.as_ref())
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| default.to_owned())
    }
}

/// Reads a secret file, refusing what is not a regular file (a FIFO would block) and
/// anything larger than [`MAX_SECRET_FILE_BYTES`].
pub(crate) fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_SECRET_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// Reads a secret file as `config::credentials::resolve_secret` does (bounded, a regular file, trailing
/// whitespace trimmed): the credential provider re-reads changed files through it.
pub fn read_secret_text(path: &Path) -> std::io::Result<Secret> {
    read_secret_file(path).map(|text| Secret::new(text.trim_end()))
}

/// A keyed digest of an account's secrets: tells a reload that a secret changed without
/// keeping the secret. The key is random per process and never leaves memory, so the
/// digest cannot be checked against guesses by anyone who sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFingerprint([u8; 32]);

impl std::fmt::Debug for SecretFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretFingerprint(..)")
    }
}

impl SecretFingerprint {
    fn of(parts: &[&str]) -> Self {
        static KEY: std::sync::OnceLock<ring::hmac::Key> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rand::random::<[u8; 32]>())
        });
        let mut context = ring::hmac::Context::with_key(key);
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut digest = [0; 32];
        digest.copy_from_slice(context.sign().as_ref());
        Self(digest)
    }
}

impl ResolvedCredentials {
    /// The fingerprint of this account's secrets (access key secret, password, security
    /// token).
    pub fn secret_fingerprint(&self) -> SecretFingerprint {
        SecretFingerprint::of(&[
            self.access_key_secret.expose(),
            self.password.as_ref().map_or("", Secret::expose),
            self.temporary
                .security_token
                .as_ref()
                .map_or("", Secret::expose),
        ])
    }
}
