//! Huawei Cloud temporary AK/SK with a security token (signed and sent as
//! `X-Security-Token`), from two places:
//! - `ecs_metadata`: the ECS metadata service's `GET /openstack/latest/securitykey` (the
//!   agency bound to the instance; huaweicloudsdkcore `MetadataCredentials`). When the
//!   service hands out a session token (`PUT /meta-data/latest/api/token` with
//!   `X-Metadata-Token-Ttl-Seconds`), it is sent as `X-Metadata-Token`.
//! - `iam_temporary`: IAM `POST /v3.0/OS-CREDENTIAL/securitytokens` with the user's IAM
//!   token (`X-Auth-Token`, from [`TokenSource`]) and `methods = ["token"]`
//!   (https://support.huaweicloud.com/intl/en-us/api-iam/iam_04_0002.html).
//!
//! Both answer `{"credential": {"access", "secret", "securitytoken", "expires_at"}}`.

use super::client::{send_request, VENDOR};
use super::iam::{IamSettings, TokenSource};
use crate::cloud::account::ResolvedCredentials;
use crate::cloud::credentials::{CredentialSource, Credentials};
use crate::error::{CloudError, ErrorClass};
use crate::secret::Secret;
use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The ECS metadata service (link-local; tests set `metadata_endpoint`).
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";
/// The metadata session token headers.
pub const METADATA_TOKEN_TTL_HEADER: &str = "X-Metadata-Token-Ttl-Seconds";
pub const METADATA_TOKEN_HEADER: &str = "X-Metadata-Token";
/// The requested lifetime of IAM temporary keys (IAM allows 900 to 86400 s).
pub const DEFAULT_DURATION_SECONDS: u64 = 3600;
/// The IAM API name of the temporary-key call (errors, fault rules, stats).
pub const OPERATION: &str = "CreateTemporaryAccessKeyByToken";
const METADATA_OPERATION: &str = "ShowMetadataSecurityKey";

/// Reads `credential` of a securitykey / securitytokens answer.
fn credentials_of(operation: &str, body: &serde_json::Value) -> Result<Credentials, CloudError> {
    let credential = &body["credential"];
    let field = |name: &str| {
        credential[name]
            .as_str()
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                CloudError::new(
                    VENDOR,
                    operation,
                    ErrorClass::Transient,
                    "MalformedResponse",
                    format!("answer has no credential.{name}"),
                )
            })
    };
    let expires_at = OffsetDateTime::parse(field("expires_at")?, &Rfc3339).map_err(|_| {
        CloudError::new(
            VENDOR,
            operation,
            ErrorClass::Transient,
            "MalformedResponse",
            "credential.expires_at is not an RFC 3339 time",
        )
    })?;
    Ok(Credentials {
        access_key_id: field("access")?.to_owned(),
        secret: Secret::new(field("secret")?),
        security_token: Some(Secret::new(field("securitytoken")?)),
        expires_at: Some(expires_at),
    })
}

/// `ecs_metadata`: the instance agency's temporary keys.
pub struct Metadata {
    endpoint: String,
}

impl Metadata {
    pub fn new(credentials: &ResolvedCredentials) -> Self {
        Self {
            endpoint: credentials
                .temporary
                .metadata_endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_owned())
                .trim_end_matches('/')
                .to_owned(),
        }
    }
}

#[async_trait]
impl CredentialSource for Metadata {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        _: OffsetDateTime,
    ) -> Result<Credentials, CloudError> {
        // A session token when the service offers one; older services answer 404 and serve
        // the key without it.
        let token_request = http
            .put(format!("{}/meta-data/latest/api/token", self.endpoint))
            .header(METADATA_TOKEN_TTL_HEADER, "21600");
        let session = match crate::cloud::http::send(token_request, 4096).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                Some(Secret::new(String::from_utf8_lossy(&reply.body).trim()))
            }
            Ok(_) => None,
            Err(error) => return Err(error.into_cloud(VENDOR, METADATA_OPERATION)),
        };
        let mut request = http.get(format!("{}/openstack/latest/securitykey", self.endpoint));
        if let Some(session) = &session {
            request = request.header(METADATA_TOKEN_HEADER, session.expose());
        }
        let answer = send_request(METADATA_OPERATION, request).await?;
        credentials_of(METADATA_OPERATION, &answer.body)
    }
}

/// `iam_temporary`: temporary keys for the IAM user's token.
pub struct IamTemporary {
    tokens: TokenSource,
    endpoint: String,
    duration_seconds: u64,
}

impl IamTemporary {
    pub fn new(credentials: &ResolvedCredentials) -> Self {
        let region = credentials.region.as_deref().unwrap_or("cn-north-4");
        let endpoint = credentials.iam_endpoint.clone().unwrap_or_else(|| {
            credentials.endpoint_for("iam", &format!("https://iam.{region}.myhuaweicloud.com"))
        });
        let settings = IamSettings {
            endpoint: endpoint.clone(),
            domain_name: credentials.domain_name.clone().unwrap_or_default(),
            user_name: credentials.user_name.clone().unwrap_or_default(),
            password: credentials.password.clone().unwrap_or_default(),
            project_name: credentials
                .project_name
                .clone()
                .or_else(|| credentials.region.clone()),
            project_id: credentials.project_id.clone(),
            renew_before: IamSettings::DEFAULT_RENEW_BEFORE,
        };
        Self {
            tokens: TokenSource::new(settings),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            duration_seconds: credentials
                .temporary
                .duration_seconds
                .unwrap_or(DEFAULT_DURATION_SECONDS),
        }
    }

    async fn issue(
        &self,
        http: &reqwest::Client,
        now: OffsetDateTime,
    ) -> Result<Credentials, CloudError> {
        let token = self.tokens.token(http, now).await?;
        let body = serde_json::json!({"auth": {"identity": {
            "methods": ["token"],
            "token": {"duration_seconds": self.duration_seconds},
        }}});
        let request = http
            .post(format!(
                "{}/v3.0/OS-CREDENTIAL/securitytokens",
                self.endpoint
            ))
            .header("Content-Type", "application/json;charset=UTF-8")
            .header("X-Auth-Token", token.value.expose())
            .body(body.to_string());
        let answer = send_request(OPERATION, request).await?;
        credentials_of(OPERATION, &answer.body)
    }
}

#[async_trait]
impl CredentialSource for IamTemporary {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        now: OffsetDateTime,
    ) -> Result<Credentials, CloudError> {
        match self.issue(http, now).await {
            // The IAM token was revoked or ended early: a new one, once.
            Err(error) if error.http_status == Some(401) => {
                self.tokens.invalidate().await;
                self.issue(http, now).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_answers_are_read_and_never_printed() {
        let body = serde_json::json!({"credential": {
            "access": "TMPAK", "secret": "s3cr3t", "securitytoken": "tok3n",
            "expires_at": "2024-01-15T09:30:00.000000Z"}});
        let credentials = credentials_of(OPERATION, &body).unwrap();
        assert_eq!(credentials.access_key_id, "TMPAK");
        assert_eq!(
            credentials.security_token.as_ref().unwrap().expose(),
            "tok3n"
        );
        let debug = format!("{credentials:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("tok3n"),
            "{debug}"
        );
        let error = credentials_of(OPERATION, &serde_json::json!({})).unwrap_err();
        assert_eq!(error.code, "MalformedResponse");
    }
}
