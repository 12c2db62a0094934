//! The QingCloud IaaS client: signs each call (signature version 1), sends it to `/iaas/`
//! as a GET, or as a form POST when the parameters are too long for a URL, reads the
//! `{ret_code, message}` envelope that QingCloud returns inside HTTP 200 and classifies
//! failures. This file holds the only table that turns QingCloud `ret_code`s into an
//! [`ErrorClass`]. It never retries: `retry` owns that.

use super::signer::{self, SigningInput};
use crate::cloud::account::ResolvedCredentials;
use crate::cloud::credentials::CredentialProvider;
use crate::cloud::error_table::{ErrorCode, ErrorTable};
use crate::error::{CloudError, ErrorClass};
use std::sync::Arc;

/// The public API host (SDK default).
pub const DEFAULT_ENDPOINT: &str = "https://api.qingcloud.com";

/// Longest GET query we send; longer calls (e.g. PEM blocks in `service_params`) go as a
/// POST form body, which the API accepts with the same signature (`docs/common/iaas_post.md`).
///
/// The signed GET query is QingCloud's documented style (signature.md, the SDK's default)
/// and stays: the only secret is the access key secret, which is never sent, and no call we
/// make carries a key or password (`service_params` is `{"configssl":"YES"}`). What the query
/// does hold, the access key id and a signature valid until `time_stamp` expires, could leak
/// only through a redirect's `Location` request or `Referer`, and the shared client follows
/// no redirect and sends no `Referer`.
pub const MAX_GET_QUERY: usize = 2048;

const VENDOR: &str = "qingcloud";

/// Every documented `ret_code` (`qingcloud-docs` `api/error_code.md`) and its class.
/// Codes not listed fall back on [`class_by_range`].
pub const ERROR_TABLE: ErrorTable = ErrorTable::new(&[
    ErrorCode::new("1100", ErrorClass::Invalid, "message format error"),
    ErrorCode::new("1101", ErrorClass::Invalid, "request method error"),
    ErrorCode::new("1200", ErrorClass::Auth, "authentication failed"),
    // An expired time stamp almost always means the host clock is off, which no quick
    // retry fixes; an operator must act, as for other signature failures.
    ErrorCode::new("1300", ErrorClass::Auth, "message expired (time_stamp)"),
    // 1400 means "access denied": no permission *or* a resource state that forbids the
    // change (error_code.md), and the answer has no field that says which: only prose,
    // whose wording and language the vendor may change. The safe class is a timed retry
    // (busy): a state conflict, the usual case while a job runs, clears by itself, while a
    // missing permission costs one refused call per backoff step and its message stays
    // visible in `status`, the event log and the error counter. Reading it as a permission
    // failure would instead hold a mere state conflict back for hours.
    ErrorCode::new(
        "1400",
        ErrorClass::Busy,
        "access denied (permission or resource state)",
    ),
    ErrorCode::new("2000", ErrorClass::Auth, "login session expired"),
    ErrorCode::new("2100", ErrorClass::NotFound, "resource not found"),
    ErrorCode::new("2110", ErrorClass::Invalid, "resource already exists"),
    // 2400 is insufficient balance, not throttling.
    ErrorCode::new("2400", ErrorClass::Billing, "insufficient balance"),
    // 2500 includes the daily API request quota (resets at 00:00), so a quick retry never
    // helps: it is a quota, retried across operations.
    ErrorCode::new("2500", ErrorClass::Billing, "quota exceeded"),
    ErrorCode::new("3300", ErrorClass::Unsupported, "invalid API module"),
    ErrorCode::new("4000", ErrorClass::Billing, "license error"),
    ErrorCode::new("4001", ErrorClass::Billing, "license error"),
    ErrorCode::new("4002", ErrorClass::Billing, "license error"),
    ErrorCode::new("4003", ErrorClass::Billing, "license error"),
    ErrorCode::new("4004", ErrorClass::Billing, "license error"),
    ErrorCode::new("4005", ErrorClass::Billing, "license error"),
    ErrorCode::new("5000", ErrorClass::Transient, "internal error"),
    // "Server busy" is load, not resource state: the SDK retries 5000 and 5100 alike with
    // exponential backoff, and so do we (class transient, not busy).
    ErrorCode::new("5100", ErrorClass::Transient, "server busy"),
    ErrorCode::new("5200", ErrorClass::Busy, "resources insufficient"),
    ErrorCode::new("5300", ErrorClass::Busy, "service updating"),
    ErrorCode::new("5400", ErrorClass::Invalid, "dependency exists"),
    ErrorCode::new("5500", ErrorClass::Transient, "internal error"),
    ErrorCode::new("5600", ErrorClass::Transient, "internal error"),
    ErrorCode::new("8000", ErrorClass::Invalid, "config file error"),
    ErrorCode::new("8001", ErrorClass::Invalid, "config file error"),
    ErrorCode::new("8002", ErrorClass::Invalid, "config file error"),
    ErrorCode::new("8003", ErrorClass::Invalid, "config file error"),
    ErrorCode::new("8004", ErrorClass::Invalid, "config file error"),
]);

/// Whether `code` (a `ret_code` as text) is in [`ERROR_TABLE`]: metric labels keep only these.
pub fn is_known_code(code: &str) -> bool {
    ERROR_TABLE.contains(code)
}

/// The class of a code missing from [`ERROR_TABLE`], by its documented family.
fn class_by_range(ret_code: i64) -> ErrorClass {
    match ret_code {
        1200..=1499 | 2000..=2099 => ErrorClass::Auth,
        2100..=2199 => ErrorClass::NotFound,
        2400..=2599 | 4000..=4999 => ErrorClass::Billing,
        3000..=3999 => ErrorClass::Unsupported,
        5000..=5199 | 5500..=5999 => ErrorClass::Transient,
        5200..=5399 => ErrorClass::Busy,
        _ => ErrorClass::Invalid,
    }
}

/// Classifies a `ret_code` by its documented table, then by its documented family. The
/// message is prose for people and is never read.
pub fn classify(ret_code: i64) -> ErrorClass {
    ERROR_TABLE
        .class_of(&ret_code.to_string())
        .unwrap_or_else(|| class_by_range(ret_code))
}

// Where "now" comes from (one type for every vendor client); tests pin it.
pub use crate::cloud::http::Clock;

/// A QingCloud account bound to one zone.
#[derive(Clone)]
pub struct QingCloudClient {
    http: reqwest::Client,
    base_url: String,
    /// The configured key id: names the account (its keys may be re-read from files).
    access_key_id: String,
    /// Asked for the keys of every call; a replaced secret file is used by the next one.
    provider: Arc<CredentialProvider>,
    zone: String,
    clock: Clock,
    observer: Option<Arc<dyn crate::cloud::http::RequestObserver>>,
}

impl std::fmt::Debug for QingCloudClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QingCloudClient")
            .field("base_url", &self.base_url)
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"** REDACTED **")
            .field("zone", &self.zone)
            .finish()
    }
}

impl QingCloudClient {
    /// Builds a client from resolved credentials; `zone` comes from the credentials unless
    /// given (`credentials.zone` is required for QingCloud).
    pub fn new(
        http: reqwest::Client,
        credentials: &ResolvedCredentials,
        zone: Option<&str>,
    ) -> Result<Self, CloudError> {
        let zone = zone
            .map(str::to_owned)
            .or_else(|| credentials.zone.clone())
            .filter(|zone| !zone.trim().is_empty())
            .ok_or_else(|| {
                CloudError::new(
                    VENDOR,
                    "configure",
                    ErrorClass::Invalid,
                    "MissingZone",
                    format!("credentials.{} needs a zone (e.g. pek3)", credentials.name),
                )
            })?;
        Ok(Self {
            http,
            base_url: credentials.endpoint_for("iaas", DEFAULT_ENDPOINT),
            access_key_id: credentials.access_key_id.clone(),
            provider: Arc::new(CredentialProvider::files_of(credentials)),
            // The API wants lower-case zone ids (`pek3a`, `sh1a`).
            zone: zone.trim().to_ascii_lowercase(),
            clock: crate::cloud::http::system_clock(),
            observer: None,
        })
    }

    /// Reports every call (action, outcome, duration) to `observer`, e.g. the metrics.
    pub fn with_observer(mut self, observer: Arc<dyn crate::cloud::http::RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Replaces the clock (tests of time-stamp skew).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The account this client speaks for: endpoint and access key id (never the secret).
    pub fn account(&self) -> String {
        format!("{} {}", self.base_url, self.access_key_id)
    }

    /// Calls `action` with `params` (already flattened: `jobs.1`, …) and returns the JSON
    /// body of a `ret_code = 0` answer.
    pub async fn call(
        &self,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, CloudError> {
        let attempt = self.attempt(action, params);
        crate::cloud::http::observed(self.observer.as_ref(), VENDOR, action, attempt).await
    }

    async fn attempt(
        &self,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, CloudError> {
        let all: Vec<(String, String)> = params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        let req_id = uuid::Uuid::new_v4().simple().to_string();
        let keys = self.provider.current().await?;
        let input = SigningInput {
            access_key_id: &keys.access_key_id,
            secret: &keys.secret,
            zone: &self.zone,
            time_stamp: (self.clock)(),
            req_id: &req_id,
        };
        let get = signer::sign("GET", action, &all, &input);
        let url = format!("{}{}", self.base_url, signer::IAAS_PATH);
        let request = if get.encoded_params().len() <= MAX_GET_QUERY {
            self.http.get(format!("{url}?{}", get.encoded_params()))
        } else {
            let post = signer::sign("POST", action, &all, &input);
            self.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(post.encoded_params())
        };
        let reply = crate::cloud::http::send(request, crate::cloud::http::VENDOR_REPLY_CAP)
            .await
            .map_err(|error| error.into_cloud(VENDOR, action))?;
        parse_envelope(action, reply.status, &reply.body)
            .map_err(|error| error.with_request_id(Some(req_id)))
    }
}

/// Reads a QingCloud answer: HTTP errors by status, then the `ret_code` envelope.
pub fn parse_envelope(
    action: &str,
    status: u16,
    body: &[u8],
) -> Result<serde_json::Value, CloudError> {
    let parsed = serde_json::from_slice::<serde_json::Value>(body);
    let value = match parsed {
        Ok(value) => value,
        Err(_) if status != 200 => {
            return Err(CloudError::new(
                VENDOR,
                action,
                ErrorClass::from_http_status(status),
                format!("HTTP{status}"),
                format!("HTTP {status} without a QingCloud envelope"),
            )
            .with_status(status))
        }
        Err(error) => {
            // A 200 that is not JSON comes from a proxy or a truncated answer.
            return Err(CloudError::new(
                VENDOR,
                action,
                ErrorClass::Transient,
                "MalformedResponse",
                format!("answer is not JSON: {error}"),
            )
            .with_status(status));
        }
    };
    let ret_code = value.get("ret_code").and_then(serde_json::Value::as_i64);
    match ret_code {
        Some(0) if status == 200 => Ok(value),
        Some(code) if code != 0 => {
            let message = value
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            Err(CloudError::new(
                VENDOR,
                action,
                classify(code),
                code.to_string(),
                // Bounded: vendor messages are short, but never let one flood a log line.
                message.chars().take(500).collect::<String>(),
            )
            .with_status(status))
        }
        _ => Err(CloudError::new(
            VENDOR,
            action,
            if status == 200 {
                ErrorClass::Transient
            } else {
                ErrorClass::from_http_status(status)
            },
            if status == 200 {
                "MalformedResponse".to_owned()
            } else {
                format!("HTTP{status}")
            },
            "answer has no ret_code",
        )
        .with_status(status)),
    }
}

/// Reads a string field of an answer, or reports the answer as malformed.
pub fn field_str<'a>(
    value: &'a serde_json::Value,
    action: &str,
    name: &str,
) -> Result<&'a str, CloudError> {
    value
        .get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            CloudError::new(
                VENDOR,
                action,
                ErrorClass::Transient,
                "MalformedResponse",
                format!("answer has no `{name}`"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_is_classified_once() {
        let mut seen = std::collections::BTreeSet::new();
        for row in ERROR_TABLE.rows() {
            assert!(seen.insert(row.code), "{} listed twice", row.code);
        }
        assert_eq!(classify(1100), ErrorClass::Invalid);
        assert_eq!(classify(1200), ErrorClass::Auth);
        assert_eq!(classify(1300), ErrorClass::Auth);
        // Whatever the prose says, 1400 is a timed retry.
        assert_eq!(classify(1400), ErrorClass::Busy);
        assert_eq!(classify(2100), ErrorClass::NotFound);
        assert_eq!(classify(2400), ErrorClass::Billing);
        assert_eq!(classify(2500), ErrorClass::Billing);
        assert_eq!(classify(5000), ErrorClass::Transient);
        assert_eq!(classify(5100), ErrorClass::Transient);
        assert_eq!(classify(5300), ErrorClass::Busy);
    }

    #[test]
    fn unknown_codes_fall_back_on_their_range() {
        assert_eq!(classify(1250), ErrorClass::Auth);
        assert_eq!(classify(2199), ErrorClass::NotFound);
        assert_eq!(classify(2450), ErrorClass::Billing);
        assert_eq!(classify(5150), ErrorClass::Transient);
        assert_eq!(classify(5250), ErrorClass::Busy);
        assert_eq!(classify(9999), ErrorClass::Invalid);
    }

    #[test]
    fn envelope_inside_http_200_is_read() {
        let ok = parse_envelope("DescribeJobs", 200, br#"{"ret_code":0,"total_count":0}"#);
        assert!(ok.is_ok());
        let error = parse_envelope(
            "DescribeJobs",
            200,
            br#"{"ret_code":2400,"message":"insufficient balance"}"#,
        )
        .unwrap_err();
        assert_eq!(error.class, ErrorClass::Billing);
        assert_eq!(error.code, "2400");
        let gateway = parse_envelope("DescribeJobs", 502, b"<html>").unwrap_err();
        assert_eq!(gateway.class, ErrorClass::Transient);
        let garbage = parse_envelope("DescribeJobs", 200, b"{}").unwrap_err();
        assert_eq!(garbage.code, "MalformedResponse");
    }
}
