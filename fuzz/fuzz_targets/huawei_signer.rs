//! Huawei SDK-HMAC-SHA256 signing: canonical URI, query and headers from arbitrary wire
//! paths, queries and headers, and the client's `sign_headers` checked the way the simulator
//! checks it. Invariants: canonicalisation is idempotent (the canonical form of a canonical
//! query or URI is itself, so `query_string` output is sent as it is signed), independent of
//! header order and name case; the signature verifies and a changed one does not; the
//! `Authorization` header reads back.
#![no_main]

use certkeeper::cloud::huawei::client::sign_headers;
use certkeeper::cloud::huawei::signer::{
    parse_sdk_date, query_string, sign, Authorization, CanonicalRequest, SDK_DATE_HEADER,
};
use certkeeper::secret::Secret;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// Fields: method, path, raw query, query pairs (list), headers (list), body, `X-Sdk-Date`,
/// access key id, secret.
struct Input {
    method: String,
    path: String,
    raw_query: String,
    pairs: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    sdk_date: String,
    access_key_id: String,
    secret: String,
}

impl Input {
    fn parse(data: &[u8]) -> Self {
        let fields = common::Fields::parse(data);
        Self {
            method: fields.text(0),
            path: fields.text(1),
            raw_query: fields.text(2),
            pairs: fields.pairs(3),
            headers: fields.pairs(4),
            body: fields.text(5).into_bytes(),
            sdk_date: fields.text(6),
            access_key_id: fields.text(7),
            secret: fields.text(8),
        }
    }
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.'))
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let secret = Secret::new(input.secret.clone());
    let headers: Vec<(&str, &str)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let canonical = CanonicalRequest::new(
        &input.method,
        &input.path,
        &input.raw_query,
        &headers,
        &input.body,
    );

    // Idempotent canonical URI and query.
    let again = CanonicalRequest::new(
        &input.method,
        &canonical.uri,
        &canonical.query,
        &headers,
        &input.body,
    );
    assert_eq!(again.uri, canonical.uri);
    assert_eq!(again.query, canonical.query);
    assert!(canonical.uri.ends_with('/'));

    // `query_string` is already canonical: the wire query is the signed one.
    let pairs: Vec<(&str, &str)> = input
        .pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let wire = query_string(&pairs);
    assert_eq!(
        CanonicalRequest::new("GET", "/", &wire, &[], b"").query,
        wire
    );

    // Header order and name case do not matter.
    let upper: Vec<(String, String)> = input
        .headers
        .iter()
        .rev()
        .map(|(name, value)| (name.to_ascii_uppercase(), value.clone()))
        .collect();
    let upper_refs: Vec<(&str, &str)> = upper
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let shuffled = CanonicalRequest::new(
        &input.method,
        &input.path,
        &input.raw_query,
        &upper_refs,
        &input.body,
    );
    assert_eq!(shuffled.to_string(), canonical.to_string());

    // Sign, verify, refuse a changed signature.
    let auth = sign(&canonical, &input.sdk_date, &input.access_key_id, &secret);
    let string_to_sign = canonical.string_to_sign(&input.sdk_date);
    assert!(string_to_sign.verify(&secret, &auth.signature));
    let mut tampered = auth.signature.clone();
    let last = if tampered.pop() == Some('0') {
        '1'
    } else {
        '0'
    };
    tampered.push(last);
    assert!(!string_to_sign.verify(&secret, &tampered));
    let _ = Authorization::parse(&input.method);
    let _ = parse_sdk_date(&input.sdk_date);

    // The client's signing, checked as the simulator does: names from the header, values
    // looked up by name. Only for distinct token header names, as HTTP carries them.
    let mut names: Vec<String> = input
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let distinct = names.len() == input.headers.len()
        && input.headers.iter().all(|(name, _)| {
            is_token(name)
                && !name.eq_ignore_ascii_case(SDK_DATE_HEADER)
                && !name.eq_ignore_ascii_case("authorization")
        });
    if distinct && is_token(&input.access_key_id) {
        let mut sent = input.headers.clone();
        sign_headers(
            &mut sent,
            &input.method,
            &input.path,
            &wire,
            &input.body,
            &input.sdk_date,
            &input.access_key_id,
            &secret,
        );
        let authorization = sent
            .iter()
            .find(|(name, _)| name == "Authorization")
            .and_then(|(_, value)| Authorization::parse(value))
            .expect("our Authorization parses");
        assert_eq!(authorization.access_key_id, input.access_key_id);
        let mut received = Vec::new();
        for name in authorization.signed_header_names() {
            let value = sent
                .iter()
                .find(|(sent_name, _)| sent_name.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
                .expect("every signed header is sent");
            received.push((name, value));
        }
        let rebuilt =
            CanonicalRequest::new(&input.method, &input.path, &wire, &received, &input.body);
        assert!(rebuilt
            .string_to_sign(&input.sdk_date)
            .verify(&secret, &authorization.signature));
    }
});
