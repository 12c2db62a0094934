//! Alibaba signing: the ACS3-HMAC-SHA256 canonical request and the client's `Acs3Call`, and
//! the RPC V1 (HMAC-SHA1) canonical string, with arbitrary methods, parameters and headers.
//! Invariants: signing is deterministic and independent of parameter and header order; the
//! simulator's check (decode the wire query, rebuild, compare) accepts what the client signed;
//! the `Authorization` header reads back; the RPC string to sign has exactly three `&` parts.
#![no_main]

use certkeeper::cloud::alibaba::signer::{
    form_decode, form_encode, percent_encode, sign_acs3, Acs3Call, Authorization, CanonicalRequest,
    RpcCanonical, EMPTY_SHA256,
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// Fields: method, host, action, version, date, nonce, access key id, secret, params (list),
/// headers (list), payload.
struct Input {
    method: String,
    host: String,
    action: String,
    version: String,
    date: String,
    nonce: String,
    access_key_id: String,
    secret: String,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Input {
    fn parse(data: &[u8]) -> Self {
        let fields = common::Fields::parse(data);
        Self {
            method: fields.text(0),
            host: fields.text(1),
            action: fields.text(2),
            version: fields.text(3),
            date: fields.text(4),
            nonce: fields.text(5),
            access_key_id: fields.text(6),
            secret: fields.text(7),
            params: fields.pairs(8),
            headers: fields.pairs(9),
            payload: fields.text(10).into_bytes(),
        }
    }
}

fn is_token(text: &str) -> bool {
    text.bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    // Encoding: only unreserved characters and `%XX` come out.
    for (name, value) in &input.params {
        for text in [percent_encode(name), percent_encode(value)] {
            assert!(text.bytes().all(|byte| byte.is_ascii_alphanumeric()
                || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'%')));
        }
    }
    // The wire encoding reads back to the parameters, so what is signed is what is sent.
    assert_eq!(form_decode(&form_encode(&input.params)), input.params);

    // ACS3 canonical request: deterministic, order-independent.
    let payload_hash = certkeeper::cert::sha256_hex(&input.payload);
    let canonical = CanonicalRequest::new(
        &input.method,
        input.params.clone(),
        &input.headers,
        &payload_hash,
    );
    let mut params = input.params.clone();
    params.reverse();
    let mut headers = input.headers.clone();
    headers.reverse();
    let shuffled = CanonicalRequest::new(&input.method, params, &headers, &payload_hash);
    assert_eq!(canonical.to_string(), shuffled.to_string());
    let auth = sign_acs3(&input.access_key_id, &input.secret, &canonical);
    assert_eq!(
        auth,
        sign_acs3(&input.access_key_id, &input.secret, &shuffled)
    );
    assert!(!format!("{auth:?}").contains(&auth.signature));

    // The client's call, checked the way the simulator checks it.
    let call = Acs3Call {
        host: &input.host,
        action: &input.action,
        version: &input.version,
        params: &input.params,
        date: &input.date,
        nonce: &input.nonce,
    };
    let signed = call.sign(&input.access_key_id, &input.secret);
    let header = signed
        .headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.clone())
        .expect("an authorization header");
    let rebuilt = CanonicalRequest::new(
        "POST",
        form_decode(&signed.query),
        &call.signed_headers(),
        EMPTY_SHA256,
    );
    let expected = rebuilt.string_to_sign().sign(&input.secret);
    if is_token(&input.access_key_id) {
        let parsed = Authorization::parse(&header).expect("our Authorization parses");
        assert_eq!(parsed.access_key_id, input.access_key_id);
        assert_eq!(parsed.signature, expected);
        assert_eq!(parsed.signed_headers, rebuilt.signed_headers());
    } else {
        let _ = Authorization::parse(&header);
    }
    assert!(!signed.headers.iter().any(|(name, _)| name == "host"));

    // RPC V1: deterministic, order-independent, `METHOD&%2F&canonical`.
    let rpc = RpcCanonical {
        params: input.params.clone(),
    };
    let string_to_sign = rpc.string_to_sign(&input.method);
    let mut reversed = input.params.clone();
    reversed.reverse();
    let other = RpcCanonical { params: reversed }.string_to_sign(&input.method);
    assert_eq!(string_to_sign, other);
    assert_eq!(
        string_to_sign.sign(&input.secret),
        other.sign(&input.secret)
    );
    if !input.method.contains('&') {
        assert_eq!(string_to_sign.to_string().matches('&').count(), 2);
    }
    let _ = Authorization::parse(&input.method);
});
