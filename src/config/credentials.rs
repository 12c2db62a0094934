//! `[credentials.NAME]`: one vendor account. The secret comes from an environment variable,
//! a file (relative names resolve in `$CREDENTIALS_DIRECTORY`, where systemd's
//! `LoadCredential=` puts them) or, with a warning, a literal in the config.

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

/// Why a secret could not be read at start-up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials.{name}: {field}: environment variable {variable} is not set")]
    MissingEnv {
        name: String,
        field: &'static str,
        variable: String,
    },
    #[error("credentials.{name}: {field}: cannot read {path}: {reason}")]
    File {
        name: String,
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("credentials.{name}: {field} is required")]
    Missing { name: String, field: &'static str },
}

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

/// The real process environment.
pub struct ProcessEnvironment;

impl SecretEnvironment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn credentials_directory(&self) -> Option<PathBuf> {
        std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
    }
}

/// Reads a secret given as a literal, `NAME_env` or `NAME_file`.
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
                name: owner.to_owned(),
                field,
                variable: variable.to_owned(),
            });
    }
    if let Some(file) = file {
        let path = match (file.is_relative(), environment.credentials_directory()) {
            (true, Some(directory)) => directory.join(file),
            _ => file.to_owned(),
        };
        return std::fs::read_to_string(&path)
            .map(|text| Some(Secret::new(text.trim_end())))
            .map_err(|error| CredentialError::File {
                name: owner.to_owned(),
                field,
                path,
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
        let access_key_secret = resolve_secret(
            name,
            "access_key_secret",
            self.access_key_secret.as_ref(),
            self.access_key_secret_env.as_deref(),
            self.access_key_secret_file.as_deref(),
            environment,
        )?;
        let password = resolve_secret(
            name,
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
                    name: name.to_owned(),
                    field: "access_key_id",
                })
            }
        };
        let access_key_secret = match (access_key_secret, token_auth) {
            (Some(secret), _) => secret,
            (None, true) => Secret::default(),
            (None, false) => {
                return Err(CredentialError::Missing {
                    name: name.to_owned(),
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
            auth: self.auth,
            iam_endpoint: self.iam_endpoint.clone(),
            domain_name: self.domain_name.clone(),
            user_name: self.user_name.clone(),
            project_name: self.project_name.clone(),
            password,
        })
    }
}
