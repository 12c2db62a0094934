//! Alibaba Cloud temporary credentials, as the official credential chain gets them
//! (`aliyun/credentials-go`, `credentials-python`):
//! - `ram_role_arn`: STS `AssumeRole` (2015-04-01), signed with the section's AccessKey;
//! - `oidc_role_arn` (RRSA): STS `AssumeRoleWithOIDC`, anonymous, carrying the service
//!   account token read from its file on every refresh (the kubelet rotates it);
//! - `ecs_ram_role`: the instance metadata service with the IMDSv2 hardening: a session
//!   token from `PUT /latest/api/token` (header `X-aliyun-ecs-metadata-token-ttl-seconds`)
//!   sent as `X-aliyun-ecs-metadata-token` on every read of
//!   `/latest/meta-data/ram/security-credentials/[ROLE]`.
//!
//! Each returns `{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`; replies are
//! bounded and classified by `client.rs` like every other Alibaba answer.

use super::client::{decode_response, now_acs_date, parse_acs_date};
use super::signer::{form_encode, Acs3Call, SignedRequest};
use crate::cloud::account::{read_secret_text, ResolvedCredentials};
use crate::cloud::credentials::{CredentialProvider, CredentialSource, Credentials};
use crate::error::{CloudError, ErrorClass};
use crate::secret::Secret;
use async_trait::async_trait;
use std::path::PathBuf;
use time::OffsetDateTime;

const VENDOR: &str = "alibaba";

/// The STS API version of `AssumeRole` and `AssumeRoleWithOIDC`.
pub const STS_VERSION: &str = "2015-04-01";
/// The public STS endpoint.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
/// The ECS metadata service (link-local; never contacted by tests, which set an endpoint).
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// The requested lifetime when the config gives none (the SDKs' default).
pub const DEFAULT_DURATION_SECONDS: u64 = 3600;
/// The IMDSv2 session token lifetime the SDKs ask for (6 h).
pub const METADATA_TOKEN_TTL_SECONDS: u64 = 21_600;
/// The session name when the config gives none.
pub const DEFAULT_SESSION_NAME: &str = "certkeeper";
/// Largest credential reply we read (a few hundred bytes in practice).
const REPLY_CAP: usize = 64 * 1024;

/// Reads `{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}` from `object`.
fn credentials_of(operation: &str, object: &serde_json::Value) -> Result<Credentials, CloudError> {
    let field = |name: &str| {
        object[name]
            .as_str()
            .filter(|value| !value.is_empty())
            .ok_or_else(|| super::client::bad_reply(operation, name))
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?.to_owned(),
        secret: Secret::new(field("AccessKeySecret")?),
        security_token: Some(Secret::new(field("SecurityToken")?)),
        expires_at: Some(
            parse_acs_date(field("Expiration")?)
                .ok_or_else(|| super::client::bad_reply(operation, "readable Expiration"))?,
        ),
    })
}

fn host_of(operation: &str, endpoint: &str) -> Result<(url::Url, String), CloudError> {
    let invalid = |message: String| {
        CloudError::new(
            VENDOR,
            operation,
            ErrorClass::Invalid,
            "BadEndpoint",
            message,
        )
    };
    let url = url::Url::parse(endpoint).map_err(|error| invalid(format!("{endpoint}: {error}")))?;
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(invalid(format!("{endpoint} has no host"))),
    };
    Ok((url, host))
}

async fn post_sts(
    http: &reqwest::Client,
    operation: &str,
    url: url::Url,
    body: String,
    headers: Vec<(String, String)>,
) -> Result<Credentials, CloudError> {
    let mut request = http.post(url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let reply = crate::cloud::http::send(request, REPLY_CAP)
        .await
        .map_err(|error| error.into_cloud(VENDOR, operation))?;
    let retry_after = reply.header("x-acs-retry-after");
    let json = decode_response(operation, reply.status, retry_after.as_deref(), &reply.body)?;
    credentials_of(operation, &json["Credentials"])
}

fn duration_of(credentials: &ResolvedCredentials) -> String {
    credentials
        .temporary
        .duration_seconds
        .unwrap_or(DEFAULT_DURATION_SECONDS)
        .to_string()
}

fn session_name_of(credentials: &ResolvedCredentials) -> String {
    credentials
        .temporary
        .role_session_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned())
}

fn sts_endpoint_of(credentials: &ResolvedCredentials) -> String {
    credentials
        .temporary
        .sts_endpoint
        .clone()
        .unwrap_or_else(|| credentials.endpoint_for("sts", DEFAULT_STS_ENDPOINT))
}

/// `ram_role_arn`: `AssumeRole` signed with the section's own keys.
pub struct AssumeRole {
    source: CredentialProvider,
    endpoint: String,
    params: Vec<(String, String)>,
}

impl AssumeRole {
    pub fn new(credentials: &ResolvedCredentials, source: CredentialProvider) -> Self {
        let temporary = &credentials.temporary;
        let mut params = vec![
            (
                "RoleArn".to_owned(),
                temporary.role_arn.clone().unwrap_or_default(),
            ),
            ("RoleSessionName".to_owned(), session_name_of(credentials)),
            ("DurationSeconds".to_owned(), duration_of(credentials)),
        ];
        if let Some(policy) = &temporary.policy {
            params.push(("Policy".to_owned(), policy.clone()));
        }
        if let Some(external_id) = &temporary.external_id {
            params.push(("ExternalId".to_owned(), external_id.clone()));
        }
        Self {
            source,
            endpoint: sts_endpoint_of(credentials),
            params,
        }
    }
}

#[async_trait]
impl CredentialSource for AssumeRole {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        _: OffsetDateTime,
    ) -> Result<Credentials, CloudError> {
        const OPERATION: &str = "AssumeRole";
        let (mut url, host) = host_of(OPERATION, &self.endpoint)?;
        let source = self.source.current().await?;
        let date = now_acs_date();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let call = Acs3Call {
            host: &host,
            action: OPERATION,
            version: STS_VERSION,
            params: &self.params,
            date: &date,
            nonce: &nonce,
        };
        let SignedRequest { body, headers, .. } = call.sign_form_with_token(
            &source.access_key_id,
            source.secret.expose(),
            source.security_token.as_ref().map(Secret::expose),
        );
        url.set_path("/");
        url.set_query(None);
        post_sts(http, OPERATION, url, body, headers).await
    }
}

/// `oidc_role_arn` (RRSA): `AssumeRoleWithOIDC`, which STS answers without a signature.
pub struct OidcRole {
    endpoint: String,
    role_arn: String,
    provider_arn: String,
    token_file: PathBuf,
    session_name: String,
    duration: String,
}

impl OidcRole {
    pub fn new(credentials: &ResolvedCredentials) -> Self {
        let temporary = &credentials.temporary;
        Self {
            endpoint: sts_endpoint_of(credentials),
            role_arn: temporary.role_arn.clone().unwrap_or_default(),
            provider_arn: temporary.oidc_provider_arn.clone().unwrap_or_default(),
            token_file: temporary.oidc_token_file.clone().unwrap_or_default(),
            session_name: session_name_of(credentials),
            duration: duration_of(credentials),
        }
    }
}

#[async_trait]
impl CredentialSource for OidcRole {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        _: OffsetDateTime,
    ) -> Result<Credentials, CloudError> {
        const OPERATION: &str = "AssumeRoleWithOIDC";
        // Read on every refresh: the kubelet replaces the projected token file.
        let token = read_secret_text(&self.token_file).map_err(|error| {
            CloudError::new(
                VENDOR,
                OPERATION,
                ErrorClass::Invalid,
                "OidcTokenFileUnreadable",
                format!("cannot read {}: {error}", self.token_file.display()),
            )
        })?;
        let (mut url, _) = host_of(OPERATION, &self.endpoint)?;
        let params = vec![
            ("Action".to_owned(), OPERATION.to_owned()),
            ("Version".to_owned(), STS_VERSION.to_owned()),
            ("Format".to_owned(), "JSON".to_owned()),
            ("Timestamp".to_owned(), now_acs_date()),
            ("RoleArn".to_owned(), self.role_arn.clone()),
            ("OIDCProviderArn".to_owned(), self.provider_arn.clone()),
            ("OIDCToken".to_owned(), token.expose().to_owned()),
            ("RoleSessionName".to_owned(), self.session_name.clone()),
            ("DurationSeconds".to_owned(), self.duration.clone()),
        ];
        url.set_path("/");
        url.set_query(None);
        let headers = vec![(
            "content-type".to_owned(),
            super::signer::FORM_CONTENT_TYPE.to_owned(),
        )];
        post_sts(http, OPERATION, url, form_encode(&params), headers).await
    }
}

/// `ecs_ram_role`: the instance's RAM role from the metadata service, IMDSv2 only.
pub struct EcsRamRole {
    endpoint: String,
    role_name: Option<String>,
}

impl EcsRamRole {
    pub fn new(credentials: &ResolvedCredentials) -> Self {
        Self {
            endpoint: credentials
                .temporary
                .metadata_endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            role_name: credentials.temporary.role_name.clone(),
        }
    }

    async fn text(
        &self,
        request: reqwest::RequestBuilder,
        operation: &str,
    ) -> Result<String, CloudError> {
        let reply = crate::cloud::http::send(request, REPLY_CAP)
            .await
            .map_err(|error| error.into_cloud(VENDOR, operation))?;
        if !(200..300).contains(&reply.status) {
            // The metadata service answers plain text, no vendor envelope: the status says
            // it. A missing role (404) or a refused session (401/403) is the operator's to
            // fix, like any credential.
            let class = match reply.status {
                401 | 403 | 404 => ErrorClass::Auth,
                status => ErrorClass::from_http_status(status),
            };
            return Err(CloudError::new(
                VENDOR,
                operation,
                class,
                format!("HTTP{}", reply.status),
                "the instance metadata service refused the request",
            )
            .with_status(reply.status));
        }
        String::from_utf8(reply.body.to_vec())
            .map(|text| text.trim().to_owned())
            .map_err(|_| super::client::bad_reply(operation, "text"))
    }
}

/// The IMDSv2 header names.
pub const METADATA_TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
pub const METADATA_TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";

#[async_trait]
impl CredentialSource for EcsRamRole {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        _: OffsetDateTime,
    ) -> Result<Credentials, CloudError> {
        const OPERATION: &str = "EcsRamRoleCredentials";
        let session = Secret::new(
            self.text(
                http.put(format!("{}/latest/api/token", self.endpoint))
                    .header(METADATA_TOKEN_TTL_HEADER, METADATA_TOKEN_TTL_SECONDS),
                OPERATION,
            )
            .await?,
        );
        let base = format!(
            "{}/latest/meta-data/ram/security-credentials/",
            self.endpoint
        );
        let role = match &self.role_name {
            Some(role) => role.clone(),
            None => {
                let listed = self
                    .text(
                        http.get(&base)
                            .header(METADATA_TOKEN_HEADER, session.expose()),
                        OPERATION,
                    )
                    .await?;
                listed
                    .lines()
                    .next()
                    .map(str::trim)
                    .filter(|role| !role.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        CloudError::new(
                            VENDOR,
                            OPERATION,
                            ErrorClass::Auth,
                            "NoInstanceRole",
                            "no RAM role is attached to this instance",
                        )
                    })?
            }
        };
        let text = self
            .text(
                http.get(format!("{base}{role}"))
                    .header(METADATA_TOKEN_HEADER, session.expose()),
                OPERATION,
            )
            .await?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| super::client::bad_reply(OPERATION, "JSON credentials"))?;
        if json["Code"].as_str().is_some_and(|code| code != "Success") {
            return Err(CloudError::new(
                VENDOR,
                OPERATION,
                ErrorClass::Transient,
                "MetadataNotSuccess",
                "the metadata service did not answer Success",
            ));
        }
        credentials_of(OPERATION, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_and_never_printed() {
        let json = serde_json::json!({
            "AccessKeyId": "STS.id", "AccessKeySecret": "s3cr3t",
            "SecurityToken": "tok3n", "Expiration": "2024-01-15T09:30:00Z"});
        let credentials = credentials_of("AssumeRole", &json).unwrap();
        assert_eq!(credentials.access_key_id, "STS.id");
        let debug = format!("{credentials:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("tok3n"),
            "{debug}"
        );
        let missing = credentials_of("AssumeRole", &serde_json::json!({})).unwrap_err();
        assert_eq!(missing.code, "BadResponse");
    }
}
