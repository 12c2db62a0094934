//! `[credentials.NAME]`: one vendor account. The secret comes from an environment variable,
//! a file (relative names resolve in `$CREDENTIALS_DIRECTORY`, where systemd's
//! `LoadCredential=` puts them) or, with a warning, a literal in the config.

use crate::secret::Secret;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
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

/// `[credentials.NAME]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    pub provider: Provider,
    pub access_key_id: Option<String>,
    /// Literal secret: accepted with a warning; prefer `_env` or `_file`.
    pub access_key_secret: Option<Secret>,
    pub access_key_secret_env: Option<String>,
    pub access_key_secret_file: Option<PathBuf>,
    pub region: Option<String>,
    /// Huawei project id (signed as `X-Project-Id` and used in paths).
    pub project_id: Option<String>,
    /// QingCloud zone, e.g. `pek3`.
    pub zone: Option<String>,
    /// Sends every product of this vendor to one base URL (the simulator).
    pub endpoint: Option<String>,
    /// Overrides one product's base URL, e.g. `{ cdn = "https://..." }`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
    /// Alibaba only: the account (UID) these keys belong to. Vendor rate limits apply per
    /// account, so credentials naming the same account share token buckets (default: the
    /// access key id, one account per key).
    pub account: Option<String>,
    /// Alibaba only: calls per second per action over the documented limits, e.g.
    /// `{ SetCdnDomainSSLCertificate = 20 }` for an account with a lower quota.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, f64>,
    /// Huawei only: `aksk` (default) or `token`.
    #[serde(default)]
    pub auth: AuthMethod,
    /// Huawei IAM (token auth): endpoint, account (domain) name, user name, project name.
    pub iam_endpoint: Option<String>,
    pub domain_name: Option<String>,
    pub user_name: Option<String>,
    pub project_name: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// Why a secret could not be read. Each names the key to fix and how the secret was looked
/// up; `owner` is the section (`credentials.ali`, `acme.le`).
#[derive(Debug, thiserror::Error)]
#[error("{}", self.issue())]
pub enum CredentialError {
    MissingEnv {
        owner: String,
        field: &'static str,
        variable: String,
    },
    /// A relative `*_file` name with no `$CREDENTIALS_DIRECTORY` to resolve it in.
    RelativeFile {
        owner: String,
        field: &'static str,
        path: PathBuf,
    },
    File {
        owner: String,
        field: &'static str,
        path: PathBuf,
        /// The relative name as written, when `path` is it resolved in
        /// `$CREDENTIALS_DIRECTORY`.
        relative: Option<PathBuf>,
        reason: String,
    },
    Missing {
        owner: String,
        field: &'static str,
    },
}

impl CredentialError {
    /// The problem as a config issue (key path and message), so `check` locates it in the
    /// file; its `Display` is the same text.
    pub fn issue(&self) -> super::ConfigIssue {
        let quoted = |path: &Path| format!("{:?}", path.display().to_string());
        let (path, message) = match self {
            CredentialError::MissingEnv {
                owner,
                field,
                variable,
            } => (
                format!("{owner}.{field}_env"),
                format!("environment variable {variable} is not set"),
            ),
            CredentialError::RelativeFile { owner, field, path } => (
                format!("{owner}.{field}_file"),
                format!(
                    "{} is relative and $CREDENTIALS_DIRECTORY is not set",
                    quoted(path)
                ),
            ),
            CredentialError::File {
                owner,
                field,
                path,
                relative,
                reason,
            } => (
                format!("{owner}.{field}_file"),
                match relative {
                    Some(relative) => format!(
                        "cannot read {} ({} in $CREDENTIALS_DIRECTORY): {reason}",
                        path.display(),
                        quoted(relative)
                    ),
                    None => format!("cannot read {}: {reason}", path.display()),
                },
            ),
            CredentialError::Missing { owner, field } => {
                (owner.clone(), format!("{field} is required"))
            }
        };
        super::ConfigIssue::new(path, message)
    }
}

/// Secret files larger than this are refused: a secret is a few dozen bytes, and the file
/// is read into memory.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

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
    endpoint: Option<String>,
    endpoints: BTreeMap<String, String>,
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
        }
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

    /// The key rate-limit buckets are shared by: the account, else the access key id.
    pub fn rate_limit_account(&self) -> &str {
        self.account.as_deref().unwrap_or(&self.access_key_id)
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

/// Where the process finds secrets: the environment and systemd's credentials directory.
/// Passed in so resolution is testable without touching the real environment.
pub trait SecretEnvironment {
    fn var(&self, name: &str) -> Option<String>;
    fn credentials_directory(&self) -> Option<PathBuf>;
}

/// The real process environment, through the cache of secrets taken from it at start
/// (see [`take_environment_secrets`]).
pub struct ProcessEnvironment;

impl SecretEnvironment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        let cached = environment_secrets()
            .get(name)
            .map(|secret| secret.expose().to_owned());
        cached.or_else(|| std::env::var(name).ok())
    }

    fn credentials_directory(&self) -> Option<PathBuf> {
        std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
    }
}

/// Secrets taken out of the process environment, by variable name, for the life of the
/// process: a reload resolves them again from here.
static ENVIRONMENT_SECRETS: std::sync::Mutex<BTreeMap<String, Secret>> =
    std::sync::Mutex::new(BTreeMap::new());

fn environment_secrets() -> std::sync::MutexGuard<'static, BTreeMap<String, Secret>> {
    // The map is only ever inserted into; a panic elsewhere cannot leave it half-written.
    ENVIRONMENT_SECRETS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A secret variable's value: from the cache of taken variables, else the environment.
pub fn environment_secret(variable: &str) -> Option<Secret> {
    ProcessEnvironment.var(variable).map(Secret::new)
}

/// Every environment variable `config` reads a secret from (`*_secret_env`, `password_env`,
/// `eab_hmac_key_env`).
pub fn secret_variables(config: &super::Config) -> BTreeSet<String> {
    let credentials = config.credentials.values().flat_map(|credentials| {
        [
            credentials.access_key_secret_env.clone(),
            credentials.password_env.clone(),
        ]
    });
    let acme = config
        .acme
        .values()
        .map(|acme| acme.eab_hmac_key_env.clone());
    credentials.chain(acme).flatten().collect()
}

/// Reads the secret variables `config` names into the process-wide cache and removes them
/// from the environment, so no child process (a file target's reload command) inherits
/// them and no later `getenv` finds them; returns the names taken. (`/proc/PID/environ`
/// shows the environment the process was started with, which only its starter controls.)
///
/// Call it before the runtime starts threads: the C library's `getenv` and `setenv` are not
/// safe against each other on other threads (which is why edition 2024 makes `remove_var`
/// unsafe; this crate is edition 2021, where it is safe to call). Variables a reloaded config
/// names for the first time are read from the environment and left there.
pub fn take_environment_secrets(config: &super::Config) -> Vec<String> {
    let mut taken = Vec::new();
    let mut cache = environment_secrets();
    for variable in secret_variables(config) {
        if let Some(value) = std::env::var_os(&variable) {
            if let Some(value) = value.to_str() {
                cache.insert(variable.clone(), Secret::new(value));
            }
            std::env::remove_var(&variable);
            taken.push(variable);
        }
    }
    taken
}

/// Reads a secret file, refusing what is not a regular file (a FIFO would block) and
/// anything larger than [`MAX_SECRET_FILE_BYTES`].
fn read_secret_file(path: &Path) -> std::io::Result<String> {
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

/// Reads a secret given as a literal, `NAME_env` or `NAME_file`; `owner` is the section
/// that names it (`credentials.ali`), for messages.
pub fn resolve_secret(
    owner: &str,
    field: &'static str,
    literal: Option<&Secret>,
    env_name: Option<&str>,
    file: Option<&Path>,
    environment: &dyn SecretEnvironment,
) -> Result<Option<Secret>, CredentialError> {
    if let Some(variable) = env_name {
        return environment
            .var(variable)
            .map(|value| Some(Secret::new(value.trim_end())))
            .ok_or_else(|| CredentialError::MissingEnv {
                owner: owner.to_owned(),
                field,
                variable: variable.to_owned(),
            });
    }
    if let Some(file) = file {
        let path = match (file.is_relative(), environment.credentials_directory()) {
            (false, _) => file.to_owned(),
            (true, Some(directory)) => directory.join(file),
            (true, None) => {
                return Err(CredentialError::RelativeFile {
                    owner: owner.to_owned(),
                    field,
                    path: file.to_owned(),
                })
            }
        };
        return read_secret_file(&path)
            .map(|text| Some(Secret::new(text.trim_end())))
            .map_err(|error| CredentialError::File {
                owner: owner.to_owned(),
                field,
                path,
                relative: file.is_relative().then(|| file.to_owned()),
                reason: error.to_string(),
            });
    }
    Ok(literal.cloned())
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
    /// The fingerprint of this account's secrets (access key secret and password).
    pub fn secret_fingerprint(&self) -> SecretFingerprint {
        SecretFingerprint::of(&[
            self.access_key_secret.expose(),
            self.password.as_ref().map_or("", Secret::expose),
        ])
    }
}

impl CredentialsConfig {
    /// Reads the secrets this account names.
    pub fn resolve(
        &self,
        name: &str,
        environment: &dyn SecretEnvironment,
    ) -> Result<ResolvedCredentials, CredentialError> {
        let owner = format!("credentials.{name}");
        let access_key_secret = resolve_secret(
            &owner,
            "access_key_secret",
            self.access_key_secret.as_ref(),
            self.access_key_secret_env.as_deref(),
            self.access_key_secret_file.as_deref(),
            environment,
        )?;
        let password = resolve_secret(
            &owner,
            "password",
            self.password.as_ref(),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
            environment,
        )?;
        let token_auth = self.auth == AuthMethod::Token;
        let access_key_id = match (&self.access_key_id, token_auth) {
            (Some(id), _) => id.clone(),
            (None, true) => String::new(),
            (None, false) => {
                return Err(CredentialError::Missing {
                    owner: owner.clone(),
                    field: "access_key_id",
                })
            }
        };
        let access_key_secret = match (access_key_secret, token_auth) {
            (Some(secret), _) => secret,
            (None, true) => Secret::default(),
            (None, false) => {
                return Err(CredentialError::Missing {
                    owner: owner.clone(),
                    field: "access_key_secret",
                })
            }
        };
        Ok(ResolvedCredentials {
            name: name.to_owned(),
            provider: self.provider,
            access_key_id,
            access_key_secret,
            region: self.region.clone(),
            project_id: self.project_id.clone(),
            zone: self.zone.clone(),
            endpoint: self
                .endpoint
                .as_ref()
                .map(|url| url.trim_end_matches('/').to_owned()),
            endpoints: self.endpoints.clone(),
            account: self.account.clone(),
            rate_limits: self.rate_limits.clone(),
            auth: self.auth,
            iam_endpoint: self.iam_endpoint.clone(),
            domain_name: self.domain_name.clone(),
            user_name: self.user_name.clone(),
            project_name: self.project_name.clone(),
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fingerprints_tell_a_change_without_showing_the_secret() {
        let account =
            |secret: &str| ResolvedCredentials::new("ali", Provider::Alibaba, "AK", secret);
        assert_eq!(
            account("hunter2").secret_fingerprint(),
            account("hunter2").secret_fingerprint()
        );
        assert_ne!(
            account("hunter2").secret_fingerprint(),
            account("hunter3").secret_fingerprint()
        );
        let mut with_password = account("hunter2");
        with_password.password = Some(Secret::new("pw"));
        assert_ne!(
            with_password.secret_fingerprint(),
            account("hunter2").secret_fingerprint()
        );
        assert_eq!(
            format!("{:?}", account("hunter2").secret_fingerprint()),
            "SecretFingerprint(..)"
        );
    }

    #[test]
    fn secret_files_are_bounded_regular_files() {
        let directory = tempfile::tempdir().unwrap();
        let big = directory.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE_BYTES as usize + 1]).unwrap();
        let error = read_secret_file(&big).unwrap_err().to_string();
        assert!(error.contains("larger than"), "{error}");
        let error = read_secret_file(directory.path()).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
        let small = directory.path().join("small");
        std::fs::write(&small, "s3cret\n").unwrap();
        assert_eq!(read_secret_file(&small).unwrap(), "s3cret\n");
    }
}
