//! QingCloud signature version 1: the canonical query and the client's `sign`, with
//! arbitrary methods, actions and parameters, checked the way the simulator checks them
//! (decode the wire form, rebuild, verify). Also the time stamp and form readers.
//! Invariants: what the client signs verifies after the wire round trip, for GET and POST;
//! signing is deterministic; a changed signature fails; time stamps read back.
#![no_main]

use certkeeper::cloud::qingcloud::signer::{
    encode, format_time_stamp, parse_form, parse_time_stamp, sign, CanonicalQuery, SigningInput,
    StringToSign, IAAS_PATH,
};
use certkeeper::secret::Secret;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

#[path = "common.rs"]
mod common;

/// Fields: method, action, params (list), access key id, secret, zone, req_id, time (seconds
/// since the epoch, folded into years 1970..=9999, what the API can carry), form text.
struct Input {
    method: String,
    action: String,
    params: Vec<(String, String)>,
    access_key_id: String,
    secret: String,
    zone: String,
    req_id: String,
    time: u64,
    form: String,
}

impl Input {
    fn parse(data: &[u8]) -> Self {
        let fields = common::Fields::parse(data);
        Self {
            method: fields.text(0),
            action: fields.text(1),
            params: fields.pairs(2),
            access_key_id: fields.text(3),
            secret: fields.text(4),
            zone: fields.text(5),
            req_id: fields.text(6),
            time: fields.number(7),
            form: fields.text(8),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let _ = parse_form(&input.form);
    let _ = parse_time_stamp(&input.form);
    let seconds = (input.time % 253_402_300_800) as i64;
    let at = OffsetDateTime::from_unix_timestamp(seconds).expect("in range");
    assert_eq!(parse_time_stamp(&format_time_stamp(at)), Some(at));

    let secret = Secret::new(input.secret.clone());
    let signing = SigningInput {
        access_key_id: &input.access_key_id,
        secret: &secret,
        zone: &input.zone,
        time_stamp: at,
        req_id: &input.req_id,
    };
    for method in ["GET", "POST", input.method.as_str()] {
        let signed = sign(method, &input.action, &input.params, &signing);
        let again = sign(method, &input.action, &input.params, &signing);
        assert_eq!(signed.signature, again.signature);
        let wire = signed.encoded_params();
        assert!(wire.bytes().all(|byte| byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'%' | b'=' | b'&')));
        // The simulator's side.
        let received = parse_form(&wire);
        let get = |name: &str| {
            received
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(get("access_key_id"), Some(input.access_key_id.as_str()));
        assert_eq!(get("action"), Some(input.action.as_str()));
        let signature = get("signature").expect("a signature");
        assert_eq!(signature, signed.signature);
        let rebuilt = StringToSign {
            method: method.to_ascii_uppercase(),
            path: IAAS_PATH.to_owned(),
            canonical: CanonicalQuery::new(&received),
        };
        assert_eq!(rebuilt, signed.string_to_sign);
        assert!(rebuilt.verify(&secret, signature));
        assert!(!rebuilt.verify(&secret, &format!("A{signature}")));
    }
    for (name, value) in &input.params {
        assert_eq!(
            parse_form(&format!("{}={}", encode(name), encode(value))),
            vec![(name.clone(), value.clone())]
        );
    }
});
