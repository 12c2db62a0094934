//! What certkeeper knows about its vendors beyond the traits: which error codes each one
//! documents (so a code may be a metric label). The engine asks here when it emits an
//! error; telemetry only reads the label the error carries.

use super::{alibaba, huawei, qingcloud};
use crate::cert::checks::ViolationReason;

/// Codes certkeeper itself reports (transport failures, verification); the pre-deploy
/// checks' codes are [`ViolationReason`]'s names.
const LOCAL_CODES: &[&str] = &[
    "Network",
    "Timeout",
    "Redirect",
    "ReplyTooLarge",
    "VerificationFailed",
    "BadStoredVersion",
    "ReloadFailed",
    "SpawnFailed",
    "JobFailed",
    "JobDoneWithFailure",
];

/// Whether `code` is one of the vendor's documented codes (or one of ours), so it may be a
/// metric label; anything else is counted as `other` to keep label sets bounded.
pub fn is_known_code(vendor: &str, code: &str) -> bool {
    LOCAL_CODES.contains(&code)
        || ViolationReason::ALL
            .iter()
            .any(|reason| reason.as_str() == code)
        || match vendor {
            "alibaba" => alibaba::client::is_known_code(code),
            "huawei" => huawei::client::class_of(code).is_some(),
            "qingcloud" => qingcloud::client::is_known_code(code),
            _ => false,
        }
}

/// The `code` label for `certkeeper_errors_total`.
pub fn code_label<'a>(vendor: &str, code: &'a str) -> &'a str {
    if is_known_code(vendor, code) {
        code
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_labels_are_bounded_by_the_vendor_tables() {
        assert_eq!(code_label("alibaba", "Throttling.User"), "Throttling.User");
        assert_eq!(code_label("huawei", "DBS.200019"), "DBS.200019");
        assert_eq!(code_label("qingcloud", "5100"), "5100");
        assert_eq!(code_label("certkeeper", "key_mismatch"), "key_mismatch");
        assert_eq!(code_label("alibaba", "Made.Up.By.A.Server"), "other");
        assert_eq!(code_label("qingcloud", "not a number"), "other");
    }
}
