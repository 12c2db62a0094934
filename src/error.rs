//! The error vocabulary every vendor maps into. A vendor's `client.rs` (and the ACME error
//! mapping) is the only place that reads HTTP statuses, vendor codes or problem types; it
//! turns them into a [`CloudError`] whose [`ErrorClass`] decides the retry rule, so nothing
//! downstream matches on strings.
//!
//! | class | meaning | within one operation | across operations |
//! |---|---|---|---|
//! | `throttled` | rate limit hit | wait `retry_after`, else 1 s doubling to 60 s | — (retried in-op) |
//! | `transient` | 5xx, timeouts, network | full-jitter backoff 2 s → 5 min, 5 attempts | next scan |
//! | `busy` | resource state forbids it now | no | 30 s doubling to 30 min |
//! | `invalid` | request or certificate rejected | no | parked until cert or config changes |
//! | `auth` | credentials, signature, permission | no | 1 h doubling to 32 h |
//! | `billing` | payment, quota, real-name, account | no | 1 h doubling to 32 h |
//! | `not_found` | domain, instance, key unknown | no | 1 h doubling to 32 h |
//! | `unsupported` | engine, version, region, product | no | 1 h doubling to 32 h |

use std::fmt;
use std::time::Duration;

/// What kind of failure a vendor reported, which decides how (and whether) to retry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Throttled,
    Transient,
    Busy,
    Invalid,
    Auth,
    Billing,
    NotFound,
    Unsupported,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Throttled,
        ErrorClass::Transient,
        ErrorClass::Busy,
        ErrorClass::Invalid,
        ErrorClass::Auth,
        ErrorClass::Billing,
        ErrorClass::NotFound,
        ErrorClass::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Transient => "transient",
            ErrorClass::Busy => "busy",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Auth => "auth",
            ErrorClass::Billing => "billing",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Unsupported => "unsupported",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|class| class.as_str() == value)
    }

    /// Whether the same operation may be repeated at once (after a short wait) by the
    /// in-operation retry loop.
    pub fn retry_within_operation(self) -> bool {
        matches!(self, ErrorClass::Throttled | ErrorClass::Transient)
    }

    /// The fallback class for a vendor code missing from the vendor's table, by HTTP status:
    /// 429 throttled, 5xx transient, 401/403 auth, 404 not found, anything else invalid.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            429 => ErrorClass::Throttled,
            500..=599 => ErrorClass::Transient,
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            _ => ErrorClass::Invalid,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure reported by (or on the way to) a cloud vendor, kept as data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{vendor} {operation}: {class} error {code}: {message}{}{}", request_id.as_deref().map(|id| format!(" (request id {id})")).unwrap_or_default(), job_id.as_deref().map(|id| format!(" (job id {id})")).unwrap_or_default())]
pub struct CloudError {
    /// `alibaba`, `huawei`, `qingcloud`, `acme`, `file`.
    pub vendor: &'static str,
    /// The API action or step, e.g. `SetCdnDomainSSLCertificate`.
    pub operation: String,
    pub class: ErrorClass,
    /// The vendor's own code (`Throttling.User`, `DBS.200019`, `5100`), or a local one such as
    /// `Network` or `Timeout` when the request never got an answer.
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub http_status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// The vendor job a failed remediation ran (QingCloud `j-…`), for the event log and so
    /// the engine can defer the next attempt to the next maintenance window.
    pub job_id: Option<String>,
    /// Whether `code` is one the vendor documents (or one of certkeeper's own), so it may be
    /// a metric label. The engine sets it when it emits the error (it asks
    /// `cloud::registry`); unset, the code is counted as `other`, keeping label sets bounded.
    pub code_documented: bool,
}

impl CloudError {
    pub fn new(
        vendor: &'static str,
        operation: impl Into<String>,
        class: ErrorClass,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            vendor,
            operation: operation.into(),
            class,
            code: code.into(),
            message: message.into(),
            request_id: None,
            http_status: None,
            retry_after: None,
            job_id: None,
            code_documented: false,
        }
    }

    /// The `code` label for `certkeeper_errors_total`: the code when documented, else
    /// `other` (see [`CloudError::code_documented`]).
    pub fn code_label(&self) -> &str {
        if self.code_documented {
            &self.code
        } else {
            "other"
        }
    }

    pub fn with_job_id(mut self, job_id: Option<String>) -> Self {
        self.job_id = job_id;
        self
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// A transport failure (connect, timeout, body read): always transient.
    pub fn network(
        vendor: &'static str,
        operation: impl Into<String>,
        error: &reqwest::Error,
    ) -> Self {
        let code = if error.is_timeout() {
            "Timeout"
        } else {
            "Network"
        };
        // reqwest errors carry the URL, never credentials: our signatures live in headers or
        // in the query of a URL that `without_url` strips.
        let message = error_chain(error);
        Self::new(vendor, operation, ErrorClass::Transient, code, message)
    }
}

/// The message of an error and its sources, without the request URL (which may hold a
/// signature) when the error is a `reqwest::Error`.
fn error_chain(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() {
        "request timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_fall_back_on_http_status() {
        assert_eq!(ErrorClass::from_http_status(429), ErrorClass::Throttled);
        assert_eq!(ErrorClass::from_http_status(503), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(403), ErrorClass::Auth);
        assert_eq!(ErrorClass::from_http_status(404), ErrorClass::NotFound);
        assert_eq!(ErrorClass::from_http_status(400), ErrorClass::Invalid);
    }

    #[test]
    fn class_names_round_trip() {
        for class in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(class.as_str()), Some(class));
        }
    }

    #[test]
    fn display_keeps_code_message_and_request_id() {
        let error = CloudError::new(
            "alibaba",
            "SetCdnDomainSSLCertificate",
            ErrorClass::Invalid,
            "Certificate.MissMatch",
            "key does not match",
        )
        .with_request_id(Some("REQ-1".into()));
        let text = error.to_string();
        assert!(text.contains("Certificate.MissMatch"), "{text}");
        assert!(text.contains("REQ-1"), "{text}");
        assert!(text.contains("invalid"), "{text}");
    }
}
