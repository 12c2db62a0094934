//! Huawei answer decoding (`client::decode_response`: status, headers, body) as the client
//! runs it on every answer, and the error-envelope reader it uses. Input: a `common::Reply`
//! with three header lines: `x-request-id`, `retry-after`, `x-subject-token`.
//! Invariants: a 2xx is accepted exactly when its body is empty or JSON; other statuses are
//! errors that keep status and request id; a body without an envelope is quoted at most 200
//! characters long.
#![no_main]

use certkeeper::cloud::huawei::client::{decode_response, parse_error_body};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const HEADERS: [&str; 3] = ["x-request-id", "retry-after", "x-subject-token"];

fuzz_target!(|data: &[u8]| {
    let Some(reply) = common::Reply::parse(data) else {
        return;
    };
    let header = |name: &str| {
        let index = HEADERS.iter().position(|known| *known == name)?;
        reply.header(index)
    };
    let accepted =
        reply.body.is_empty() || serde_json::from_slice::<serde_json::Value>(reply.body).is_ok();
    let envelope = parse_error_body(reply.body);
    match decode_response("Fuzz", reply.status, header, reply.body) {
        Ok(answer) => {
            assert!((200..300).contains(&reply.status));
            assert!(accepted);
            assert_eq!(answer.status, reply.status);
            assert_eq!(answer.request_id, reply.header(0));
            assert_eq!(
                answer
                    .subject_token
                    .as_ref()
                    .map(|token| token.expose().to_owned()),
                reply.header(2)
            );
        }
        Err(error) => {
            let _ = error.to_string();
            let _ = format!("{error:?}");
            assert_eq!(error.http_status, Some(reply.status));
            assert!(!error.code.trim().is_empty());
            if (200..300).contains(&reply.status) {
                assert!(!accepted);
                assert_eq!(error.request_id, reply.header(0));
            } else {
                if reply.header(0).is_some() {
                    assert_eq!(error.request_id, reply.header(0));
                }
                if envelope.is_none() {
                    assert!(error.message.chars().count() <= 200);
                    assert_eq!(error.code, format!("HTTP{}", reply.status));
                }
            }
        }
    }
});
