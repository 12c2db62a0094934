//! `[credentials.NAME]`: one vendor account. The secret comes from an environment variable,
//! a file (relative names resolve in `$CREDENTIALS_DIRECTORY`, where systemd's
//! `LoadCredential=` puts them) or, with a warning, a literal in the config.

use crate::cloud::account::read_secret_file;
pub use crate::cloud::account::{
    read_secret_text, AuthMethod, CredentialKind, Provider, ResolvedCredentials, SecretFingerprint,
    TemporarySettings,
};
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `[credentials.NAME]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    pub provider: Provider,
    /// Where the keys come from (default `access_key`).
    #[serde(default, rename = "type")]
    pub kind: CredentialKind,
    pub access_key_id: Option<String>,
    /// `sts`: the AccessKeyId in a file, re-read with the secret and token when it changes.
    pub access_key_id_file: Option<PathBuf>,
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
    /// `sts`: the security token (literal, `_env` or `_file`, re-read when it changes).
    pub security_token: Option<Secret>,
    pub security_token_env: Option<String>,
    pub security_token_file: Option<PathBuf>,
    /// `ram_role_arn`, `oidc_role_arn`: the role to assume (`oidc_role_arn` falls back on
    /// `$ALIBABA_CLOUD_ROLE_ARN`).
    pub role_arn: Option<String>,
    /// `ram_role_arn`, `oidc_role_arn`: the session name (default `certkeeper`).
    pub role_session_name: Option<String>,
    /// `ram_role_arn`, `oidc_role_arn`: requested lifetime in seconds (default 3600, at
    /// least 900 as STS requires).
    pub duration_seconds: Option<u64>,
    /// `ram_role_arn`: an inline policy narrowing the role, and the role's external id.
    pub policy: Option<String>,
    pub external_id: Option<String>,
    /// `ram_role_arn`, `oidc_role_arn`: the STS base URL (default `https://sts.aliyuncs.com`).
    pub sts_endpoint: Option<String>,
    /// `ecs_ram_role`: the role name (default: the one the metadata service lists).
    pub role_name: Option<String>,
    /// `ecs_ram_role`, `ecs_metadata`: the metadata service's base URL (default the
    /// vendor's link-local address).
    pub metadata_endpoint: Option<String>,
    /// `oidc_role_arn`: the OIDC provider ARN and the token file (default
    /// `$ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and `$ALIBABA_CLOUD_OIDC_TOKEN_FILE`).
    pub oidc_provider_arn: Option<String>,
    pub oidc_token_file: Option<PathBuf>,
}

/// The environment variables of the official RRSA chain (ACK pods with RRSA enabled).
pub const ROLE_ARN_ENV: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const OIDC_PROVIDER_ARN_ENV: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const OIDC_TOKEN_FILE_ENV: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";

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
            credentials.security_token_env.clone(),
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

/// The path of a `*_file` setting: absolute as written, relative ones in
/// `$CREDENTIALS_DIRECTORY`.
pub fn resolve_file(
    owner: &str,
    field: &'static str,
    file: &Path,
    environment: &dyn SecretEnvironment,
) -> Result<PathBuf, CredentialError> {
    match (file.is_relative(), environment.credentials_directory()) {
        (false, _) => Ok(file.to_owned()),
        (true, Some(directory)) => Ok(directory.join(file)),
        (true, None) => Err(CredentialError::RelativeFile {
            owner: owner.to_owned(),
            field,
            path: file.to_owned(),
        }),
    }
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
        let path = resolve_file(owner, field, file, environment)?;
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
        let token_auth = self.auth == AuthMethod::Token || !self.kind.needs_access_key();
        let file_id = match &self.access_key_id_file {
            Some(file) => Some(
                resolve_secret(&owner, "access_key_id", None, None, Some(file), environment)?
                    .map(|id| id.expose().to_owned())
                    .unwrap_or_default(),
            ),
            None => None,
        };
        let temporary = self.resolve_temporary(&owner, environment)?;
        let access_key_id = match (self.access_key_id.as_ref().or(file_id.as_ref()), token_auth) {
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
            kind: self.kind,
            temporary,
        })
    }

    /// The settings of a temporary kind: files resolved, the security token read, the RRSA
    /// environment variables consulted where the config leaves a field out.
    fn resolve_temporary(
        &self,
        owner: &str,
        environment: &dyn SecretEnvironment,
    ) -> Result<TemporarySettings, CredentialError> {
        let file = |field, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|path| resolve_file(owner, field, path, environment))
                .transpose()
        };
        let security_token = resolve_secret(
            owner,
            "security_token",
            self.security_token.as_ref(),
            self.security_token_env.as_deref(),
            self.security_token_file.as_deref(),
            environment,
        )?;
        let oidc = self.kind == CredentialKind::OidcRoleArn;
        let from_env = |value: &Option<String>, variable: &str| {
            value
                .clone()
                .or_else(|| oidc.then(|| environment.var(variable)).flatten())
        };
        let oidc_token_file = match (&self.oidc_token_file, oidc) {
            (Some(path), _) => Some(path.clone()),
            (None, true) => environment.var(OIDC_TOKEN_FILE_ENV).map(PathBuf::from),
            (None, false) => None,
        };
        let temporary = TemporarySettings {
            access_key_id_file: file("access_key_id", &self.access_key_id_file)?,
            access_key_secret_file: file("access_key_secret", &self.access_key_secret_file)?,
            security_token,
            security_token_file: file("security_token", &self.security_token_file)?,
            role_arn: from_env(&self.role_arn, ROLE_ARN_ENV),
            role_session_name: self.role_session_name.clone(),
            duration_seconds: self.duration_seconds,
            policy: self.policy.clone(),
            external_id: self.external_id.clone(),
            sts_endpoint: self.sts_endpoint.clone(),
            role_name: self.role_name.clone(),
            metadata_endpoint: self.metadata_endpoint.clone(),
            oidc_provider_arn: from_env(&self.oidc_provider_arn, OIDC_PROVIDER_ARN_ENV),
            oidc_token_file: file("oidc_token", &oidc_token_file)?,
        };
        let missing = |field| CredentialError::Missing {
            owner: owner.to_owned(),
            field,
        };
        match self.kind {
            CredentialKind::Sts if temporary.security_token.is_none() => {
                Err(missing("security_token"))
            }
            CredentialKind::RamRoleArn | CredentialKind::OidcRoleArn
                if temporary.role_arn.is_none() =>
            {
                Err(missing("role_arn"))
            }
            CredentialKind::OidcRoleArn if temporary.oidc_provider_arn.is_none() => {
                Err(missing("oidc_provider_arn"))
            }
            CredentialKind::OidcRoleArn if temporary.oidc_token_file.is_none() => {
                Err(missing("oidc_token_file"))
            }
            _ => Ok(temporary),
        }
    }

    /// Checks what `validate` can see of the kind (no fs, no env): the provider has it, and
    /// the fields it needs are there; `path` is `credentials.NAME`.
    pub fn validate_kind(&self, path: &str, errors: &mut Vec<super::ConfigIssue>) {
        let issue = |field: &str, message: String| {
            super::ConfigIssue::new(format!("{path}.{field}"), message)
        };
        if !self.kind.providers().contains(&self.provider) {
            errors.push(issue(
                "type",
                format!(
                    "type = \"{}\" does not exist for provider = \"{}\"",
                    self.kind.as_str(),
                    self.provider.as_str()
                ),
            ));
        }
        let required: &[(&str, bool)] = match self.kind {
            CredentialKind::RamRoleArn => &[("role_arn", self.role_arn.is_some())],
            CredentialKind::IamTemporary => &[
                ("domain_name", self.domain_name.is_some()),
                ("user_name", self.user_name.is_some()),
            ],
            _ => &[],
        };
        for (field, given) in required {
            if !given {
                errors.push(issue(
                    field,
                    format!("required for type = \"{}\"", self.kind.as_str()),
                ));
            }
        }
        if let Some(seconds) = self.duration_seconds {
            if !(900..=43_200).contains(&seconds) {
                errors.push(issue(
                    "duration_seconds",
                    "must be between 900 and 43200 (STS limits)".to_owned(),
                ));
            }
        }
        let kind_fields: [(&str, bool, &[CredentialKind]); 6] = [
            (
                "security_token",
                self.security_token.is_some()
                    || self.security_token_env.is_some()
                    || self.security_token_file.is_some(),
                &[CredentialKind::Sts],
            ),
            (
                "access_key_id_file",
                self.access_key_id_file.is_some(),
                &[CredentialKind::Sts, CredentialKind::AccessKey],
            ),
            (
                "role_arn",
                self.role_arn.is_some(),
                &[CredentialKind::RamRoleArn, CredentialKind::OidcRoleArn],
            ),
            (
                "role_name",
                self.role_name.is_some(),
                &[CredentialKind::EcsRamRole],
            ),
            (
                "metadata_endpoint",
                self.metadata_endpoint.is_some(),
                &[CredentialKind::EcsRamRole, CredentialKind::EcsMetadata],
            ),
            (
                "oidc_provider_arn",
                self.oidc_provider_arn.is_some() || self.oidc_token_file.is_some(),
                &[CredentialKind::OidcRoleArn],
            ),
        ];
        for (field, given, kinds) in kind_fields {
            if given && !kinds.contains(&self.kind) {
                errors.push(issue(
                    field,
                    format!("does not apply to type = \"{}\"", self.kind.as_str()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::account::MAX_SECRET_FILE_BYTES;

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
        let mut with_token = account("hunter2");
        with_token.temporary.security_token = Some(Secret::new("CAIS1"));
        assert_ne!(
            with_token.secret_fingerprint(),
            account("hunter2").secret_fingerprint()
        );
        assert_eq!(
            format!("{:?}", account("hunter2").secret_fingerprint()),
            "SecretFingerprint(..)"
        );
    }

    fn issues_of(credentials: &str) -> String {
        let text = format!(
            "[daemon]\nstate_dir = \"/tmp/x\"\nallow_empty = true\n\n[credentials.c]\n{credentials}\n"
        );
        match crate::config::load_str("certkeeper.toml", &text) {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn kinds_are_checked_against_their_vendor_and_fields() {
        // Instance roles need no key; each vendor has its own kinds.
        assert_eq!(
            issues_of("provider = \"alibaba\"\ntype = \"ecs_ram_role\""),
            ""
        );
        assert_eq!(
            issues_of(
                "provider = \"huawei\"\ntype = \"ecs_metadata\"\nregion = \"cn-north-4\"\nproject_id = \"p\""
            ),
            ""
        );
        let wrong_vendor =
            issues_of("provider = \"qingcloud\"\ntype = \"ecs_ram_role\"\nzone = \"pek3\"");
        assert!(
            wrong_vendor.contains("certkeeper.toml:7:")
                && wrong_vendor.contains("credentials.c.type")
                && wrong_vendor.contains("does not exist for provider = \"qingcloud\""),
            "{wrong_vendor}"
        );
        let no_role = issues_of(
            "provider = \"alibaba\"\ntype = \"ram_role_arn\"\naccess_key_id = \"AK\"\naccess_key_secret_env = \"S\"",
        );
        assert!(
            no_role.contains("credentials.c.role_arn: required"),
            "{no_role}"
        );
        let short =
            issues_of("provider = \"alibaba\"\ntype = \"oidc_role_arn\"\nduration_seconds = 60");
        assert!(
            short.contains("duration_seconds: must be between 900"),
            "{short}"
        );
        let stray = issues_of(
            "provider = \"alibaba\"\naccess_key_id = \"AK\"\naccess_key_secret_env = \"S\"\nrole_name = \"r\"",
        );
        assert!(stray.contains("role_name: does not apply"), "{stray}");
        let unknown = issues_of("provider = \"alibaba\"\ntype = \"magic\"");
        assert!(!unknown.is_empty(), "an unknown type is refused");
    }

    struct FakeEnvironment(BTreeMap<String, String>);

    impl SecretEnvironment for FakeEnvironment {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
        fn credentials_directory(&self) -> Option<PathBuf> {
            None
        }
    }

    #[test]
    fn rrsa_settings_come_from_the_documented_environment_variables() {
        let config: CredentialsConfig =
            toml::from_str("provider = \"alibaba\"\ntype = \"oidc_role_arn\"").unwrap();
        let error = config
            .resolve("pod", &FakeEnvironment(BTreeMap::new()))
            .unwrap_err();
        assert!(
            error.to_string().contains("role_arn is required"),
            "{error}"
        );
        let environment = FakeEnvironment(BTreeMap::from([
            (ROLE_ARN_ENV.to_owned(), "acs:ram::1:role/r".to_owned()),
            (
                OIDC_PROVIDER_ARN_ENV.to_owned(),
                "acs:ram::1:oidc-provider/p".to_owned(),
            ),
            (OIDC_TOKEN_FILE_ENV.to_owned(), "/var/run/token".to_owned()),
        ]));
        let resolved = config.resolve("pod", &environment).unwrap();
        assert_eq!(resolved.kind, CredentialKind::OidcRoleArn);
        assert_eq!(
            resolved.temporary.role_arn.as_deref(),
            Some("acs:ram::1:role/r")
        );
        assert_eq!(
            resolved.temporary.oidc_token_file.as_deref(),
            Some(Path::new("/var/run/token"))
        );
        // Keys that change with every refresh: rate limits are kept per section.
        assert_eq!(resolved.rate_limit_account(), "pod");
        // An `sts` token is resolved like any secret and never printed.
        let sts: CredentialsConfig = toml::from_str(
            "provider = \"alibaba\"\ntype = \"sts\"\naccess_key_id = \"STS.x\"\naccess_key_secret = \"s\"\nsecurity_token = \"CAIStoken\"",
        )
        .unwrap();
        let resolved = sts.resolve("sts", &environment).unwrap();
        assert_eq!(
            resolved
                .temporary
                .security_token
                .as_ref()
                .map(Secret::expose),
            Some("CAIStoken")
        );
        assert!(!format!("{resolved:?}").contains("CAIStoken"));
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
