//! The one place that reads ACME problem types (RFC 8555 §6.7, RFC 9773): it turns an
//! instant-acme error into a [`SourceError`] whose [`ErrorClass`] decides the retry rule.
//! `rateLimited` is throttled and keeps the CA's Retry-After; `badNonce` is retried inside
//! instant-acme and only surfaces (as transient) when that gave up; validation failures are
//! `invalid`, so the engine parks the certificate instead of hammering the CA's
//! failed-validation limit (Let's Encrypt: 5 per name per hour).

use crate::error::ErrorClass;
use crate::source::SourceError;
use std::time::Duration;

pub(crate) const ORIGIN: &str = "acme";
const URN_PREFIX: &str = "urn:ietf:params:acme:error:";

/// Marker the HTTP client appends to a problem's `detail` to carry the response's
/// Retry-After through instant-acme, which keeps only the problem document.
pub(crate) const RETRY_AFTER_MARKER: &str = " [retry-after-seconds=";

/// The class of one ACME problem type (with or without its URN prefix).
pub fn classify_problem(problem_type: Option<&str>, status: Option<u16>) -> ErrorClass {
    let short = problem_type.map(|t| t.strip_prefix(URN_PREFIX).unwrap_or(t));
    match short {
        Some("rateLimited") => ErrorClass::Throttled,
        Some("badNonce") | Some("serverInternal") => ErrorClass::Transient,
        Some(
            "unauthorized"
            | "caa"
            | "dns"
            | "connection"
            | "incorrectResponse"
            | "rejectedIdentifier"
            | "tls"
            | "unsupportedIdentifier"
            | "badCSR"
            | "badSignatureAlgorithm"
            | "badPublicKey"
            | "malformed"
            | "invalidContact"
            | "unsupportedContact"
            | "orderNotReady"
            | "alreadyReplaced"
            | "badRevocationReason"
            | "alreadyRevoked"
            | "invalidProfile",
        ) => ErrorClass::Invalid,
        Some("accountDoesNotExist") => ErrorClass::NotFound,
        Some("externalAccountRequired" | "userActionRequired") => ErrorClass::Auth,
        _ => status.map_or(ErrorClass::Invalid, ErrorClass::from_http_status),
    }
}

/// Whether an error says the stored account is gone (e.g. Pebble restarted), so the
/// account must be registered again.
pub(crate) fn is_account_missing(error: &instant_acme::Error) -> bool {
    matches!(error, instant_acme::Error::Api(problem)
        if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
}

/// Whether a newOrder sent with `replaces` was refused because of it (RFC 9773 §5): the CA
/// rejected the request (`alreadyReplaced`, `malformed`, ...), or accepted it without
/// reflecting `replaces` (instant-acme reports that as a mismatch). Transport failures and
/// rate limits are not refusals: they fail the order as they are.
pub(crate) fn is_replaces_refusal(error: &instant_acme::Error) -> bool {
    match error {
        instant_acme::Error::Api(_) => matches!(
            classify("newOrder", error).class,
            ErrorClass::Invalid | ErrorClass::Unsupported
        ),
        instant_acme::Error::Unsupported(_) => true,
        instant_acme::Error::Other(inner) => {
            inner.downcast_ref::<reqwest::Error>().is_none()
                && inner
                    .downcast_ref::<crate::cloud::http::ReplyError>()
                    .is_none()
        }
        _ => false,
    }
}

/// Maps an instant-acme error met during `operation` into a [`SourceError`].
pub(crate) fn classify(operation: &str, error: &instant_acme::Error) -> SourceError {
    use instant_acme::Error;
    match error {
        Error::Api(problem) => {
            // A compound problem is classified by its first subproblem, which names the
            // identifier that failed.
            let problem_type = match problem.r#type.as_deref() {
                Some(t) if t.ends_with(":compound") => problem
                    .subproblems
                    .first()
                    .and_then(|sub| sub.r#type.as_deref())
                    .or(Some(t)),
                other => other,
            };
            let class = classify_problem(problem_type, problem.status);
            let (message, retry_after) = split_retry_after(&problem.to_string());
            let code = problem_type
                .map(|t| t.strip_prefix(URN_PREFIX).unwrap_or(t).to_owned())
                .unwrap_or_else(|| "Problem".into());
            SourceError::new(ORIGIN, operation, class, code, message).with_retry_after(retry_after)
        }
        Error::Timeout(next) => SourceError::new(
            ORIGIN,
            operation,
            ErrorClass::Transient,
            "Timeout",
            "the CA did not finish in time",
        )
        .with_retry_after(next.map(|at| at.saturating_duration_since(std::time::Instant::now()))),
        Error::Unsupported(what) => SourceError::new(
            ORIGIN,
            operation,
            ErrorClass::Unsupported,
            "Unsupported",
            format!("the CA does not support {what}"),
        ),
        Error::Json(error) => SourceError::new(
            ORIGIN,
            operation,
            ErrorClass::Transient,
            "BadResponse",
            format!("unreadable answer from the CA: {error}"),
        ),
        Error::Crypto | Error::KeyRejected => SourceError::new(
            ORIGIN,
            operation,
            ErrorClass::Invalid,
            "Key",
            error.to_string(),
        ),
        // Transport failures (connect, TLS, body read) and anything else instant-acme may
        // add: retrying later is the safe reading.
        other => SourceError::new(
            ORIGIN,
            operation,
            ErrorClass::Transient,
            "Network",
            other.to_string(),
        ),
    }
}

/// Removes the Retry-After marker from a problem text and returns the hint it carried.
fn split_retry_after(text: &str) -> (String, Option<Duration>) {
    let Some(start) = text.find(RETRY_AFTER_MARKER) else {
        return (text.to_owned(), None);
    };
    let rest = &text[start + RETRY_AFTER_MARKER.len()..];
    let Some(end) = rest.find(']') else {
        return (text.to_owned(), None);
    };
    let seconds = rest[..end].parse::<u64>().ok().map(Duration::from_secs);
    let message = format!("{}{}", &text[..start], &rest[end + 1..]);
    (message, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(json: &str) -> instant_acme::Error {
        instant_acme::Error::Api(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn problem_types_map_to_classes() {
        let cases = [
            ("rateLimited", ErrorClass::Throttled),
            ("badNonce", ErrorClass::Transient),
            ("serverInternal", ErrorClass::Transient),
            ("unauthorized", ErrorClass::Invalid),
            ("caa", ErrorClass::Invalid),
            ("dns", ErrorClass::Invalid),
            ("connection", ErrorClass::Invalid),
            ("incorrectResponse", ErrorClass::Invalid),
            ("rejectedIdentifier", ErrorClass::Invalid),
            ("accountDoesNotExist", ErrorClass::NotFound),
            ("externalAccountRequired", ErrorClass::Auth),
        ];
        for (short, class) in cases {
            let full = format!("{URN_PREFIX}{short}");
            assert_eq!(classify_problem(Some(&full), Some(400)), class, "{short}");
        }
        assert_eq!(
            classify_problem(Some("urn:example:new"), Some(503)),
            ErrorClass::Transient
        );
    }

    #[test]
    fn rate_limit_keeps_retry_after_and_drops_the_marker() {
        let error = problem(&format!(
            r#"{{"type":"{URN_PREFIX}rateLimited","detail":"too many certificates{RETRY_AFTER_MARKER}3600]","status":429}}"#
        ));
        let mapped = classify("newOrder", &error);
        assert_eq!(mapped.class, ErrorClass::Throttled);
        assert_eq!(mapped.code, "rateLimited");
        assert_eq!(mapped.retry_after, Some(Duration::from_secs(3600)));
        assert!(
            !mapped.message.contains("retry-after-seconds"),
            "{}",
            mapped.message
        );
        assert!(mapped.message.contains("too many certificates"));
    }

    #[test]
    fn compound_problems_use_the_first_subproblem() {
        let error = problem(&format!(
            r#"{{"type":"{URN_PREFIX}compound","detail":"x","status":403,
                "subproblems":[{{"type":"{URN_PREFIX}caa","detail":"CAA forbids"}}]}}"#
        ));
        let mapped = classify("finalize", &error);
        assert_eq!(mapped.class, ErrorClass::Invalid);
        assert_eq!(mapped.code, "caa");
    }

    #[test]
    fn only_rejections_count_as_replaces_refusals() {
        let already = problem(&format!(
            r#"{{"type":"{URN_PREFIX}alreadyReplaced","status":409}}"#
        ));
        assert!(is_replaces_refusal(&already));
        let limited = problem(&format!(
            r#"{{"type":"{URN_PREFIX}rateLimited","status":429}}"#
        ));
        assert!(!is_replaces_refusal(&limited));
        let mismatch = instant_acme::Error::Other("replaces field mismatch".into());
        assert!(is_replaces_refusal(&mismatch));
    }

    #[test]
    fn account_missing_is_recognised() {
        let error = problem(&format!(
            r#"{{"type":"{URN_PREFIX}accountDoesNotExist","status":400}}"#
        ));
        assert!(is_account_missing(&error));
        assert!(!is_account_missing(&instant_acme::Error::Str("x")));
    }
}
