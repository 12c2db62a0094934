//! QingCloud answer decoding (`client::parse_envelope`: HTTP status, then the `ret_code`
//! envelope inside a 200) and the job id reader of the started-job answers. Input: a
//! `common::Reply` without headers (the client reads none).
//! Invariants: success only for HTTP 200 with `ret_code` 0; errors keep the status, have a
//! code and quote at most 500 characters of the vendor's message.
#![no_main]

use certkeeper::cloud::qingcloud::client::parse_envelope;
use certkeeper::cloud::qingcloud::jobs::started_job_id;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(reply) = common::Reply::parse(data) else {
        return;
    };
    match parse_envelope("Fuzz", reply.status, reply.body) {
        Ok(value) => {
            assert_eq!(reply.status, 200);
            assert_eq!(
                value.get("ret_code").and_then(|code| code.as_i64()),
                Some(0)
            );
            let _ = started_job_id(&value, "Fuzz");
        }
        Err(error) => {
            let _ = error.to_string();
            let _ = format!("{error:?}");
            assert!(!error.code.is_empty());
            assert_eq!(error.http_status, Some(reply.status));
            assert!(error.message.chars().count() <= 500);
        }
    }
});
