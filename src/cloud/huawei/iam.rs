//! IAM token auth for Huawei Cloud: `POST /v3/auth/tokens` with the password method (domain
//! and user, scoped to a project), the token taken from the `X-Subject-Token` answer header
//! (https://support.huaweicloud.com/intl/en-us/api-iam/iam_30_0001.html). The token is cached
//! and renewed [`IamSettings::renew_before`] its expiry, or at once after the API rejected it
//! (the client calls [`TokenSource::invalidate`] on a 401). Errors are classified by
//! `client.rs`, like every other Huawei answer.

use super::client::{send_request, VENDOR};
use crate::error::{CloudError, ErrorClass};
use crate::secret::Secret;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The IAM API name of the token call (errors, fault rules, stats).
pub const OPERATION: &str = "KeystoneCreateUserTokenByPassword";

/// What the token request needs.
#[derive(Debug, Clone)]
pub struct IamSettings {
    /// IAM base URL, e.g. `https://iam.cn-north-4.myhuaweicloud.com`.
    pub endpoint: String,
    /// The account (domain) name.
    pub domain_name: String,
    pub user_name: String,
    pub password: Secret,
    /// Scope by project name (a region name for default projects)...
    pub project_name: Option<String>,
    /// ...or by project id, which wins when both are given.
    pub project_id: Option<String>,
    /// Renew this long before the token expires.
    pub renew_before: Duration,
}

impl IamSettings {
    /// Tokens live 24 h; renewing an hour early keeps a slow call from carrying a token that
    /// expires in flight.
    pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(3600);

    /// The request body (password method, project scope, else domain scope).
    pub fn request_body(&self) -> serde_json::Value {
        let scope = match (&self.project_id, &self.project_name) {
            (Some(id), _) => serde_json::json!({"project": {"id": id}}),
            (None, Some(name)) => serde_json::json!({"project": {"name": name}}),
            (None, None) => serde_json::json!({"domain": {"name": self.domain_name}}),
        };
        serde_json::json!({"auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {
                    "name": self.user_name,
                    "password": self.password.expose(),
                    "domain": {"name": self.domain_name},
                }},
            },
            "scope": scope,
        }})
    }
}

/// An issued token.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub expires_at: OffsetDateTime,
    /// The project the token is scoped to, when the answer names it.
    pub project_id: Option<String>,
}

impl Token {
    /// Whether the token can still be used at `now` without renewal.
    pub fn is_fresh(&self, now: OffsetDateTime, renew_before: Duration) -> bool {
        now + renew_before < self.expires_at
    }
}

/// Issues and caches tokens for one IAM user.
pub struct TokenSource {
    settings: IamSettings,
    cached: tokio::sync::Mutex<Option<Token>>,
}

impl TokenSource {
    pub fn new(settings: IamSettings) -> Self {
        Self {
            settings,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A token valid at `now`: the cached one, or a new one.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        now: OffsetDateTime,
    ) -> Result<Token, CloudError> {
        // The lock is held across the issuance so concurrent calls share one new token.
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            if token.is_fresh(now, self.settings.renew_before) {
                return Ok(token.clone());
            }
        }
        let token = self.issue(http, now).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops the cached token after the API refused it.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn issue(
        &self,
        http: &reqwest::Client,
        now: OffsetDateTime,
    ) -> Result<Token, CloudError> {
        let url = format!(
            "{}/v3/auth/tokens?nocatalog=true",
            self.settings.endpoint.trim_end_matches('/')
        );
        // The password travels in the body: the shared client never follows a redirect, so
        // it cannot be replayed to another host.
        let request = http
            .post(url)
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(self.settings.request_body().to_string());
        let answer = send_request(OPERATION, request).await?;
        let value = answer.subject_token.ok_or_else(|| {
            CloudError::new(
                VENDOR,
                OPERATION,
                ErrorClass::Transient,
                "MissingSubjectToken",
                "IAM answered without an X-Subject-Token header",
            )
            .with_request_id(answer.request_id.clone())
        })?;
        let token = &answer.body["token"];
        let time_of = |field: &str| {
            token[field]
                .as_str()
                .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
        };
        // The token's lifetime (expires_at - issued_at, both IAM's clock) is counted from our
        // own clock, so a skew between the two clocks cannot make us use an expired token.
        // Without a readable expiry, assume the shortest sensible life so the token is
        // renewed soon rather than used past its end.
        let expires_at = match (time_of("issued_at"), time_of("expires_at")) {
            (Some(issued), Some(expires)) if expires > issued => now + (expires - issued),
            (_, Some(expires)) => expires,
            _ => now + self.settings.renew_before + Duration::from_secs(60),
        };
        Ok(Token {
            value,
            expires_at,
            project_id: token["project"]["id"].as_str().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn settings() -> IamSettings {
        IamSettings {
            endpoint: "http://iam".into(),
            domain_name: "acme".into(),
            user_name: "deployer".into(),
            password: Secret::new("pw"),
            project_name: Some("cn-north-4".into()),
            project_id: None,
            renew_before: IamSettings::DEFAULT_RENEW_BEFORE,
        }
    }

    #[test]
    fn body_uses_password_method_and_project_scope() {
        let body = settings().request_body();
        assert_eq!(body["auth"]["identity"]["methods"][0], "password");
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "acme"
        );
        assert_eq!(body["auth"]["scope"]["project"]["name"], "cn-north-4");
        let by_id = IamSettings {
            project_id: Some("p1".into()),
            ..settings()
        };
        assert_eq!(by_id.request_body()["auth"]["scope"]["project"]["id"], "p1");
    }

    #[test]
    fn token_is_renewed_before_expiry() {
        let token = Token {
            value: Secret::new("t"),
            expires_at: datetime!(2024-01-02 00:00 UTC),
            project_id: None,
        };
        let hour = Duration::from_secs(3600);
        assert!(token.is_fresh(datetime!(2024-01-01 22:00 UTC), hour));
        assert!(!token.is_fresh(datetime!(2024-01-01 23:30 UTC), hour));
        assert!(!format!("{token:?}").contains("\"t\""));
    }
}
