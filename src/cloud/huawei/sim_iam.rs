//! The simulated Huawei sources of temporary AK/SK, written from the vendor docs: the ECS
//! metadata service (`GET /openstack/latest/securitykey`, with the session token of
//! `PUT /meta-data/latest/api/token` and `X-Metadata-Token` required unless the seed turns
//! that off) and IAM `POST /v3.0/OS-CREDENTIAL/securitytokens` for an IAM token. Keys live
//! `lifetime_seconds` (short in tests); [`TemporaryKeysSim::key_secret`] checks the
//! `X-Security-Token` of every signed call, and the API simulator refuses a bad one with
//! `APIGW.0301` (401) like every other authentication failure.

use crate::cloud::sim::{SimRequest, SimResponse};
use crate::cloud::sim_keys::{plain, IssuedKeys, KeyCheck, SessionTokens};
use axum::http::Method;
use serde::Deserialize;
use time::OffsetDateTime;

/// The `[huawei.temporary]` section of the simulator seed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporarySeed {
    /// Longest life of issued keys (IAM: 900 to 86400 s, default 900); tests set seconds.
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
    /// Serve the securitykey without a metadata session token (older metadata services).
    #[serde(default)]
    pub metadata_token_optional: bool,
    /// Whether the simulated instance has an agency (default: yes).
    #[serde(default)]
    pub no_agency: bool,
}

pub struct TemporaryKeysSim {
    seed: TemporarySeed,
    keys: IssuedKeys,
    sessions: SessionTokens,
}

/// IAM's default lifetime of temporary keys.
const DEFAULT_LIFETIME: u64 = 900;

impl TemporaryKeysSim {
    pub fn new(seed: TemporarySeed) -> Self {
        Self {
            seed,
            keys: IssuedKeys::default(),
            sessions: SessionTokens::default(),
        }
    }

    /// How many temporary keys were issued.
    pub fn issued(&self) -> u64 {
        self.keys.issued()
    }

    /// The secret of an issued key whose token is live; `Ok(None)` for keys never issued;
    /// else the reason, for the `APIGW.0301` message.
    pub fn key_secret(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<Option<String>, &'static str> {
        match self.keys.check(access_key_id, token, at) {
            KeyCheck::NotIssued => Ok(None),
            KeyCheck::Valid(secret) => Ok(Some(secret)),
            KeyCheck::MissingToken => Err("temporary AK requires X-Security-Token"),
            KeyCheck::Malformed | KeyCheck::Mismatch => Err("invalid security token"),
            KeyCheck::Expired => Err("the security token has expired"),
        }
    }

    fn credential(&self, now: OffsetDateTime, asked: Option<u64>) -> serde_json::Value {
        let limit = self.seed.lifetime_seconds.unwrap_or(86_400);
        let lifetime = asked.unwrap_or(DEFAULT_LIFETIME).min(limit);
        let key = self
            .keys
            .issue("TMP", now, time::Duration::seconds(lifetime as i64));
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        serde_json::json!({"credential": {
            "access": key.access_key_id,
            "secret": key.secret,
            "securitytoken": key.security_token,
            "expires_at": key.expires_at.format(&format).unwrap_or_default(),
        }})
    }

    /// IAM `securitytokens` for a caller whose `X-Auth-Token` the API simulator verified:
    /// `Err` is the message of an `IAM.0011`-style refusal of the body.
    pub fn issue_for_token(
        &self,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<serde_json::Value, &'static str> {
        let body: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| "Request body is invalid.")?;
        let identity = &body["auth"]["identity"];
        let token_method = identity["methods"]
            .as_array()
            .is_some_and(|methods| methods.iter().any(|m| m == "token"));
        if !token_method {
            return Err("auth.identity.methods must contain token.");
        }
        let asked = match &identity["token"]["duration_seconds"] {
            serde_json::Value::Null => None,
            value => Some(
                value
                    .as_u64()
                    .filter(|seconds| (900..=86_400).contains(seconds))
                    .ok_or("duration_seconds must be between 900 and 86400.")?,
            ),
        };
        Ok(self.credential(now, asked))
    }

    /// The metadata service: the session token and the securitykey.
    pub fn metadata(&self, request: &SimRequest) -> SimResponse {
        let text = plain;
        let now = request.received_at;
        match (request.path.as_str(), &request.method) {
            ("/meta-data/latest/api/token", &Method::PUT) => {
                let ttl = request.header("x-metadata-token-ttl-seconds");
                match self.sessions.open(ttl, now) {
                    Some(token) => text(200, &token),
                    None => text(400, "Bad Request"),
                }
            }
            ("/openstack/latest/securitykey", &Method::GET) => {
                let live = self
                    .sessions
                    .is_live(request.header("x-metadata-token"), now);
                if !live && !self.seed.metadata_token_optional {
                    return text(401, "Unauthorized");
                }
                if self.seed.no_agency {
                    return text(404, "Not Found");
                }
                SimResponse::json(200, &self.credential(now, self.seed.lifetime_seconds))
            }
            _ => text(404, "Not Found"),
        }
    }
}
