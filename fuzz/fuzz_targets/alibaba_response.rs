//! Alibaba reply decoding (`client::decode_response`: status, `x-acs-retry-after`, body) as the
//! client runs it on every answer. Input: a `common::Reply` with one header line
//! (`x-acs-retry-after`).
//! Invariants: a 2xx is accepted exactly when its body is JSON; every other status is an
//! error that keeps the status, and a positive `x-acs-retry-after` always means throttled.
#![no_main]

use certkeeper::cloud::alibaba::client::{decode_response, is_known_code, str_at};
use certkeeper::error::ErrorClass;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(reply) = common::Reply::parse(data) else {
        return;
    };
    let retry_after = reply.header(0);
    let result = decode_response("Fuzz", reply.status, retry_after.as_deref(), reply.body);
    let is_json = serde_json::from_slice::<serde_json::Value>(reply.body).is_ok();
    match result {
        Ok(value) => {
            assert!((200..300).contains(&reply.status));
            assert!(is_json);
            let _ = str_at(&value, &["RequestId"]);
        }
        Err(error) => {
            let _ = error.to_string();
            let _ = format!("{error:?}");
            assert!(!error.code.trim().is_empty());
            assert_eq!(error.http_status, Some(reply.status));
            if (200..300).contains(&reply.status) {
                assert!(!is_json);
                assert_eq!(error.class, ErrorClass::Transient);
            } else {
                let hinted = retry_after
                    .as_deref()
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .is_some_and(|ms| ms > 0);
                if hinted {
                    assert_eq!(error.class, ErrorClass::Throttled);
                }
                let _ = is_known_code(&error.code);
            }
        }
    }
});
