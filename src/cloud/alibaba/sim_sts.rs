//! The simulated Alibaba STS (2015-04-01 `AssumeRole`, `AssumeRoleWithOIDC`) and ECS
//! instance metadata service (IMDSv2: `PUT /latest/api/token`, then
//! `/latest/meta-data/ram/security-credentials/[ROLE]` with `X-aliyun-ecs-metadata-token`),
//! written from the vendor docs. Keys it issues live `token_lifetime_secs` (short in tests)
//! and are checked on every API call by [`StsSim::key_secret`]: an expired token is refused
//! with `InvalidSecurityToken.Expired`, a forged one with `InvalidSecurityToken.Malformed`,
//! one sent with another key with `InvalidSecurityToken.MismatchWithAccessKey` (the POP
//! gateway's common codes).

use crate::cloud::sim::{SimRequest, SimResponse};
use crate::cloud::sim_keys::{format_expiry, plain, IssuedKeys, KeyCheck, SessionTokens};
use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The `[alibaba.sts]` section of the simulator seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StsSeed {
    /// Longest life of an issued key, whatever `DurationSeconds` asks (STS: 900 to 43200 s;
    /// tests set a few seconds so keys expire during a run).
    #[serde(default = "default_lifetime")]
    pub token_lifetime_secs: u64,
    /// Roles that may be assumed (empty: any well-formed ARN).
    #[serde(default)]
    pub roles: Vec<String>,
    /// OIDC providers (`acs:ram::UID:oidc-provider/NAME`) and the tokens each accepts.
    #[serde(default)]
    pub oidc_providers: Vec<OidcProviderSeed>,
    /// The RAM role attached to the simulated ECS instance (none: no role).
    #[serde(default)]
    pub ecs_role_name: Option<String>,
}

/// One OIDC identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderSeed {
    pub arn: String,
    pub tokens: Vec<String>,
}

fn default_lifetime() -> u64 {
    43_200
}

impl Default for StsSeed {
    fn default() -> Self {
        Self {
            token_lifetime_secs: default_lifetime(),
            roles: Vec::new(),
            oidc_providers: Vec::new(),
            ecs_role_name: None,
        }
    }
}

/// A refusal with the vendor's status, code and message.
pub struct StsRefusal(pub u16, pub &'static str, pub String);

fn refusal(status: u16, code: &'static str, message: &str) -> StsRefusal {
    StsRefusal(status, code, message.to_owned())
}

pub struct StsSim {
    seed: StsSeed,
    keys: IssuedKeys,
    /// IMDSv2 session tokens.
    sessions: SessionTokens,
}

impl StsSim {
    pub fn new(seed: StsSeed) -> Self {
        Self {
            seed,
            keys: IssuedKeys::default(),
            sessions: SessionTokens::default(),
        }
    }

    /// The secret of `access_key_id` if STS issued it and `token` is its live token;
    /// `Ok(None)` for keys STS never issued (the seed's long-lived ones).
    pub fn key_secret(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<Option<String>, StsRefusal> {
        match self.keys.check(access_key_id, token, at) {
            KeyCheck::NotIssued => Ok(None),
            KeyCheck::Valid(secret) => Ok(Some(secret)),
            KeyCheck::MissingToken => Err(refusal(
                400,
                "MissingSecurityToken",
                "SecurityToken is mandatory for this action.",
            )),
            KeyCheck::Malformed => Err(refusal(
                400,
                "InvalidSecurityToken.Malformed",
                "Specified SecurityToken is malformed.",
            )),
            KeyCheck::Mismatch => Err(refusal(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
            )),
            KeyCheck::Expired => Err(refusal(
                400,
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            )),
        }
    }

    /// How many keys STS and the metadata service issued.
    pub fn issued(&self) -> u64 {
        self.keys.issued()
    }

    fn issue(&self, now: OffsetDateTime, asked: Option<&str>) -> Result<Value, StsRefusal> {
        let asked = match asked {
            None => 3600,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|seconds| (900..=43_200).contains(seconds))
                .ok_or_else(|| {
                    refusal(
                        400,
                        "InvalidParameter.DurationSeconds",
                        "The parameter DurationSeconds is invalid.",
                    )
                })?,
        };
        let lifetime = asked.min(self.seed.token_lifetime_secs);
        let key = self
            .keys
            .issue("STS.", now, time::Duration::seconds(lifetime as i64));
        Ok(json!({
            "AccessKeyId": key.access_key_id,
            "AccessKeySecret": key.secret,
            "SecurityToken": key.security_token,
            "Expiration": format_expiry(key.expires_at),
        }))
    }

    fn check_role(&self, role_arn: Option<&str>) -> Result<String, StsRefusal> {
        let role = role_arn.filter(|arn| !arn.is_empty()).ok_or_else(|| {
            refusal(
                400,
                "MissingRoleArn",
                "RoleArn is mandatory for this action.",
            )
        })?;
        if !role.starts_with("acs:ram::") || !role.contains(":role/") {
            return Err(refusal(
                400,
                "InvalidParameter.RoleArn",
                "The parameter RoleArn is wrongly formed.",
            ));
        }
        if !self.seed.roles.is_empty() && !self.seed.roles.iter().any(|known| known == role) {
            return Err(refusal(404, "EntityNotExist.Role", "The role not exists."));
        }
        Ok(role.to_owned())
    }

    fn answer(role: &str, session: &str, credentials: Value) -> Value {
        json!({
            "AssumedRoleUser": {
                "Arn": format!("{}/{session}", role.replace(":role/", ":assumed-role/")),
                "AssumedRoleId": format!("3{}:{session}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            },
            "Credentials": credentials,
        })
    }

    /// `AssumeRole`, for a caller whose signature the API simulator already verified.
    pub fn assume_role(
        &self,
        get: impl Fn(&str) -> Option<String>,
        now: OffsetDateTime,
    ) -> Result<Value, StsRefusal> {
        let role = self.check_role(get("RoleArn").as_deref())?;
        let session = get("RoleSessionName")
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                refusal(
                    400,
                    "MissingRoleSessionName",
                    "RoleSessionName is mandatory for this action.",
                )
            })?;
        let credentials = self.issue(now, get("DurationSeconds").as_deref())?;
        Ok(Self::answer(&role, &session, credentials))
    }

    /// `AssumeRoleWithOIDC`: anonymous; the OIDC token proves the caller.
    pub fn assume_role_with_oidc(
        &self,
        get: impl Fn(&str) -> Option<String>,
        now: OffsetDateTime,
    ) -> Result<Value, StsRefusal> {
        let role = self.check_role(get("RoleArn").as_deref())?;
        let provider_arn = get("OIDCProviderArn")
            .filter(|arn| !arn.is_empty())
            .ok_or_else(|| {
                refusal(
                    400,
                    "MissingOIDCProviderArn",
                    "OIDCProviderArn is mandatory for this action.",
                )
            })?;
        let token = get("OIDCToken")
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                refusal(
                    400,
                    "MissingOIDCToken",
                    "OIDCToken is mandatory for this action.",
                )
            })?;
        let provider = self
            .seed
            .oidc_providers
            .iter()
            .find(|provider| provider.arn == provider_arn)
            .ok_or_else(|| {
                refusal(
                    404,
                    "EntityNotExist.OIDCProvider",
                    "The specified OIDC provider does not exist.",
                )
            })?;
        if !provider.tokens.contains(&token) {
            return Err(refusal(
                400,
                "AuthenticationFail.OIDCToken.Invalid",
                "The OIDC token is invalid.",
            ));
        }
        let session = get("RoleSessionName").unwrap_or_else(|| "oidc".to_owned());
        let credentials = self.issue(now, get("DurationSeconds").as_deref())?;
        Ok(Self::answer(&role, &session, credentials))
    }

    /// The instance metadata service: `PUT /latest/api/token` and the RAM role reads, which
    /// require a live session token (IMDSv2 enforced). Plain text, or JSON credentials.
    pub fn metadata(&self, request: &SimRequest) -> SimResponse {
        let text = plain;
        let now = request.received_at;
        if request.path == "/latest/api/token" {
            if request.method != Method::PUT {
                return text(405, "Method Not Allowed");
            }
            let ttl = request.header("x-aliyun-ecs-metadata-token-ttl-seconds");
            return match self.sessions.open(ttl, now) {
                Some(token) => text(200, &token),
                None => text(400, "Bad Request"),
            };
        }
        if !self
            .sessions
            .is_live(request.header("x-aliyun-ecs-metadata-token"), now)
        {
            return text(401, "Unauthorized");
        }
        let Some(role) = &self.seed.ecs_role_name else {
            return text(404, "Not Found");
        };
        match request
            .path
            .strip_prefix("/latest/meta-data/ram/security-credentials/")
        {
            Some("") => text(200, role),
            Some(asked) if asked == role => {
                let credentials = match self.issue(now, None) {
                    Ok(credentials) => credentials,
                    Err(StsRefusal(status, _, message)) => return text(status, &message),
                };
                let mut body = credentials;
                body["Code"] = json!("Success");
                body["LastUpdated"] = json!(format_expiry(now));
                SimResponse::json(200, &body)
            }
            _ => text(404, "Not Found"),
        }
    }
}
