//! QingCloud API signature version 1 (`HmacSHA256`), pure: the clock and the `req_id` are
//! inputs, and the stages ([`CanonicalQuery`], [`StringToSign`]) are types whose `Display` is
//! the text the spec hashes, so a failing vector shows which stage broke. The client and the
//! simulator both use this module: the client to sign, the simulator to verify.
//! Source: qingcloud-sdk 1.2.16 `qingcloud/conn/auth.py` and `qingcloud-docs` `signature.md`.

use crate::secret::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use time::OffsetDateTime;

/// The only path the IaaS API signs (with its trailing slash).
pub const IAAS_PATH: &str = "/iaas/";

/// Formats `time_stamp` the way the API wants it: UTC, `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_time_stamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Parses a `time_stamp` (the simulator checks skew with it).
pub fn parse_time_stamp(text: &str) -> Option<OffsetDateTime> {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|at| at.assume_utc())
}

/// Percent-encodes the way the SDK's `quote(…, safe='~')` does: only `A-Z a-z 0-9 - _ . ~`
/// stay, everything else (space too) becomes `%XX` with upper-case hex over UTF-8 bytes.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a form-encoded component (`+` is a space), as servers read both the GET query
/// and the POST body. Invalid UTF-8 is replaced rather than refused: the signature check
/// then fails, which is the answer such a request deserves.
pub fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Splits a form-encoded string into decoded `(name, value)` pairs, in order.
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (form_decode(name), form_decode(value)),
            None => (form_decode(pair), String::new()),
        })
        .collect()
}

/// The sorted, encoded parameter string: the canonical part of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalQuery(String);

impl CanonicalQuery {
    /// Sorts by name (byte order; the SDK sorts the dict's keys) and encodes every name and
    /// value. `signature` itself is never part of it.
    pub fn new(params: &[(String, String)]) -> Self {
        let mut sorted: Vec<&(String, String)> = params
            .iter()
            .filter(|(name, _)| name != "signature")
            .collect();
        sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let text = sorted
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CanonicalQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `METHOD \n PATH \n CanonicalQuery`: what the HMAC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringToSign {
    pub method: String,
    pub path: String,
    pub canonical: CanonicalQuery,
}

impl fmt::Display for StringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}\n{}", self.method, self.path, self.canonical)
    }
}

impl StringToSign {
    /// `base64(hmac_sha256(secret, self))`.
    pub fn sign(&self, secret: &Secret) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.mac(secret))
    }

    fn mac(&self, secret: &Secret) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
            Ok(mac) => mac,
            Err(_) => return Vec::new(),
        };
        mac.update(self.to_string().as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a received base64 signature in constant time.
    pub fn verify(&self, secret: &Secret, signature: &str) -> bool {
        let Ok(received) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            return false;
        };
        mac.update(self.to_string().as_bytes());
        mac.verify_slice(&received).is_ok()
    }
}

/// The common parameters the SDK adds to every call.
#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a Secret,
    /// Lower-case zone id, e.g. `pek3`.
    pub zone: &'a str,
    pub time_stamp: OffsetDateTime,
    /// The SDK's random `req_id` (uuid hex); signed like any parameter.
    pub req_id: &'a str,
}

/// A signed request: the full parameter list and the signature, ready for GET or POST.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub string_to_sign: StringToSign,
    pub signature: String,
}

impl SignedRequest {
    /// The query of a GET (or the body of a POST): the canonical string then
    /// `&signature=` with the signature encoded, exactly as the SDK writes it. The canonical
    /// encoding is also valid form encoding (`%20` for a space), so the same bytes serve
    /// as an `application/x-www-form-urlencoded` body.
    pub fn encoded_params(&self) -> String {
        format!(
            "{}&signature={}",
            self.string_to_sign.canonical,
            encode(&self.signature)
        )
    }
}

/// Adds `action` and the common parameters to `params` and signs them for `method` on
/// `/iaas/`.
pub fn sign(
    method: &str,
    action: &str,
    params: &[(String, String)],
    input: &SigningInput<'_>,
) -> SignedRequest {
    let mut all: Vec<(String, String)> = params.to_vec();
    for (name, value) in [
        ("action", action.to_owned()),
        ("access_key_id", input.access_key_id.to_owned()),
        ("signature_method", "HmacSHA256".to_owned()),
        ("signature_version", "1".to_owned()),
        ("version", "1".to_owned()),
        ("time_stamp", format_time_stamp(input.time_stamp)),
        ("zone", input.zone.to_ascii_lowercase()),
        ("req_id", input.req_id.to_owned()),
    ] {
        all.retain(|(existing, _)| existing != name);
        all.push((name.to_owned(), value));
    }
    let string_to_sign = StringToSign {
        method: method.to_ascii_uppercase(),
        path: IAAS_PATH.to_owned(),
        canonical: CanonicalQuery::new(&all),
    };
    let signature = string_to_sign.sign(input.secret);
    SignedRequest {
        string_to_sign,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Case {
        name: String,
        access_key_id: String,
        access_key_secret: String,
        inputs: Inputs,
        raw_request: RawRequest,
        canonical_request: String,
        string_to_sign: String,
        signature: String,
    }

    #[derive(Deserialize)]
    struct Inputs {
        method: String,
        zone: String,
        params: serde_json::Map<String, serde_json::Value>,
        time_stamp: String,
        req_id: String,
    }

    #[derive(Deserialize)]
    struct RawRequest {
        target: String,
        body: String,
    }

    fn cases() -> Vec<Case> {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vectors/qingcloud_v1.json"
        ));
        serde_json::from_str(text).unwrap()
    }

    /// The SDK's flattening: lists become `name.1`, `name.2`…; numbers print plainly.
    fn flatten(params: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in params {
            match value {
                serde_json::Value::Array(items) => {
                    for (index, item) in items.iter().enumerate() {
                        out.push((format!("{name}.{}", index + 1), scalar(item)));
                    }
                }
                other => out.push((name.clone(), scalar(other))),
            }
        }
        out
    }

    fn scalar(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }

    #[test]
    fn every_vector_case_passes_stage_by_stage() {
        let cases = cases();
        assert!(cases.len() >= 4);
        for case in cases {
            let secret = Secret::new(case.access_key_secret.clone());
            // The action is the SDK call's first argument, not one of `params`: read it
            // from the recorded request.
            let wire = match case.raw_request.target.split_once('?') {
                Some((_, query)) => query.to_owned(),
                None => case.raw_request.body.clone(),
            };
            let action = parse_form(&wire)
                .into_iter()
                .find(|(name, _)| name == "action")
                .map(|(_, value)| value)
                .unwrap();
            let signed = sign(
                &case.inputs.method,
                &action,
                &flatten(&case.inputs.params),
                &SigningInput {
                    access_key_id: &case.access_key_id,
                    secret: &secret,
                    zone: &case.inputs.zone,
                    time_stamp: parse_time_stamp(&case.inputs.time_stamp).unwrap(),
                    req_id: &case.inputs.req_id,
                },
            );
            assert_eq!(
                signed.string_to_sign.canonical.as_str(),
                case.canonical_request,
                "{}: canonical",
                case.name
            );
            assert_eq!(
                signed.string_to_sign.to_string(),
                case.string_to_sign,
                "{}: string to sign",
                case.name
            );
            assert_eq!(signed.signature, case.signature, "{}: signature", case.name);
            if case.inputs.method == "GET" {
                assert_eq!(
                    format!("/iaas/?{}", signed.encoded_params()),
                    case.raw_request.target,
                    "{}: wire query",
                    case.name
                );
            } else {
                // The SDK's body is in dict order; the same pairs, decoded, must match ours.
                let mut theirs = parse_form(&case.raw_request.body);
                let mut ours = parse_form(&signed.encoded_params());
                theirs.sort();
                ours.sort();
                assert_eq!(ours, theirs, "{}: body", case.name);
            }
            // The verifier side accepts the SDK's signature and refuses a tampered one.
            assert!(signed.string_to_sign.verify(&secret, &case.signature));
            assert!(!signed
                .string_to_sign
                .verify(&Secret::new("wrong"), &case.signature));
        }
    }

    #[test]
    fn published_doc_example_is_reproduced() {
        let params: Vec<(String, String)> = [
            ("access_key_id", "QYACCESSKEYIDEXAMPLE"),
            ("action", "RunInstances"),
            ("count", "1"),
            ("image_id", "centos64x86a"),
            ("instance_name", "demo"),
            ("instance_type", "small_b"),
            ("login_mode", "passwd"),
            ("login_passwd", "QingCloud20130712"),
            ("signature_method", "HmacSHA256"),
            ("signature_version", "1"),
            ("time_stamp", "2013-08-27T14:30:10Z"),
            ("version", "1"),
            ("vxnets.1", "vxnet-0"),
            ("zone", "pek3a"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let string_to_sign = StringToSign {
            method: "GET".into(),
            path: IAAS_PATH.into(),
            canonical: CanonicalQuery::new(&params),
        };
        assert_eq!(
            string_to_sign.sign(&Secret::new("SECRETACCESSKEY")),
            "byjccvWIvAftaq+oublemagH3bYAlDWxxLFAzAsyslw="
        );
    }

    #[test]
    fn time_stamp_is_utc_and_round_trips() {
        let at = time::macros::datetime!(2024-01-15 16:30:00 +08:00);
        assert_eq!(format_time_stamp(at), "2024-01-15T08:30:00Z");
        assert_eq!(
            parse_time_stamp("2024-01-15T08:30:00Z"),
            Some(time::macros::datetime!(2024-01-15 08:30:00 UTC))
        );
        assert_eq!(encode("a b+/=é"), "a%20b%2B%2F%3D%C3%A9");
    }
}
