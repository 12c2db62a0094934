//! Huawei Cloud AK/SK request signing, `SDK-HMAC-SHA256`, as `huaweicloudsdkcore` does it
//! (https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-algorithm-002.html).
//! Pure and staged: [`CanonicalRequest`], [`StringToSign`] and [`Authorization`] are values
//! whose `Display` is the exact text of that stage, so a failing vector names the stage that
//! broke. Time is an input (the `X-Sdk-Date` value); nothing here reads a clock. The
//! simulator verifies requests with the same types.

use crate::secret::Secret;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use std::fmt;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The scheme name, first word of the `Authorization` header.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// The header that carries the signing time.
pub const SDK_DATE_HEADER: &str = "X-Sdk-Date";

/// When this header says `UNSIGNED-PAYLOAD`, the SDK signs that literal instead of the
/// body hash (used for non-JSON bodies).
const CONTENT_SHA256_HEADER: &str = "x-sdk-content-sha256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// RFC 3986 encoding: everything but `A-Z a-z 0-9 - _ . ~` is escaped (the SDK's
/// `quote(value, safe='~')`).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// RFC 3986 encoding of one path segment, query name or query value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, RFC3986).to_string()
}

fn decode(value: &str) -> String {
    percent_decode_str(value).decode_utf8_lossy().into_owned()
}

/// `X-Sdk-Date` text for `time`: UTC `YYYYMMDDTHHMMSSZ`.
pub fn format_sdk_date(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

/// Parses an `X-Sdk-Date` value; `None` when it is not `YYYYMMDDTHHMMSSZ`.
pub fn parse_sdk_date(value: &str) -> Option<OffsetDateTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(value, &format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Stage 1: the canonical request. `Display` is the text that is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    pub method: String,
    /// Each segment decoded and RFC 3986 encoded again, always ending in `/`.
    pub uri: String,
    /// `name=value` pairs sorted by name (then value), RFC 3986 encoded, joined by `&`.
    pub query: String,
    /// Lower-cased names with trimmed values, sorted by name.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: String,
}

impl CanonicalRequest {
    /// Builds the canonical request from what goes on the wire: `path` and `raw_query` as on
    /// the request line (percent-encoded or not), the headers to sign (any case; names with
    /// `_` are skipped as the SDK does) and the body bytes.
    pub fn new(
        method: &str,
        path: &str,
        raw_query: &str,
        signed_headers: &[(&str, &str)],
        body: &[u8],
    ) -> Self {
        let mut headers: Vec<(String, String)> = signed_headers
            .iter()
            .filter(|(name, _)| !name.contains('_'))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        headers.sort();
        let unsigned = headers
            .iter()
            .any(|(name, value)| name == CONTENT_SHA256_HEADER && value == UNSIGNED_PAYLOAD);
        let payload_hash = if unsigned {
            UNSIGNED_PAYLOAD.to_owned()
        } else {
            sha256_hex(body)
        };
        Self {
            method: method.to_ascii_uppercase(),
            uri: canonical_uri(path),
            query: canonical_query(raw_query),
            headers,
            payload_hash,
        }
    }

    /// The `SignedHeaders` value: lower-cased names joined by `;`.
    pub fn signed_headers(&self) -> String {
        self.headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Stage 2 for this request, signed at `sdk_date` (the `X-Sdk-Date` text).
    pub fn string_to_sign(&self, sdk_date: &str) -> StringToSign {
        StringToSign {
            sdk_date: sdk_date.to_owned(),
            canonical_request_hash: sha256_hex(self.to_string().as_bytes()),
        }
    }
}

impl fmt::Display for CanonicalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.method)?;
        writeln!(f, "{}", self.uri)?;
        writeln!(f, "{}", self.query)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}:{value}")?;
        }
        writeln!(f)?;
        writeln!(f, "{}", self.signed_headers())?;
        f.write_str(&self.payload_hash)
    }
}

fn canonical_uri(path: &str) -> String {
    let mut uri = path
        .split('/')
        .map(|segment| encode(&decode(segment)))
        .collect::<Vec<_>>()
        .join("/");
    // The SDK always ends the canonical URI with `/`, even though the wire path does not.
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Builds a query string that is already canonical, so the wire query and the signed one are
/// the same text (the SDK sends it this way too).
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let raw = pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    canonical_query(&raw)
}

/// Stage 2: the string to sign. `Display` is the text fed to the HMAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringToSign {
    pub sdk_date: String,
    pub canonical_request_hash: String,
}

impl StringToSign {
    /// Stage 3: hex HMAC-SHA256 keyed with the secret key.
    pub fn signature(&self, secret: &Secret) -> String {
        hex::encode(self.mac(secret).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is the right one, compared in constant time.
    pub fn verify(&self, secret: &Secret, signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(secret).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn mac(&self, secret: &Secret) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the
        // function total without a panic path.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        mac.update(self.to_string().as_bytes());
        mac
    }
}

impl fmt::Display for StringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ALGORITHM}\n{}\n{}",
            self.sdk_date, self.canonical_request_hash
        )
    }
}

/// Stage 4: the `Authorization` header. `Display` is the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub signed_headers: String,
    pub signature: String,
}

impl Authorization {
    /// Reads a header value written by [`Display`](fmt::Display) (or the SDK); `None` when
    /// it is not an `SDK-HMAC-SHA256` authorization.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
        let (mut access, mut signed, mut signature) = (None, None, None);
        for field in rest.split(',') {
            let (name, value) = field.trim().split_once('=')?;
            match name {
                "Access" => access = Some(value.to_owned()),
                "SignedHeaders" => signed = Some(value.to_owned()),
                "Signature" => signature = Some(value.to_owned()),
                _ => return None,
            }
        }
        Some(Self {
            access_key_id: access?,
            signed_headers: signed?,
            signature: signature?,
        })
    }

    /// The signed header names, as listed.
    pub fn signed_header_names(&self) -> impl Iterator<Item = &str> {
        self.signed_headers
            .split(';')
            .filter(|name| !name.is_empty())
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `, ` between fields, as the SDK and APIG expect.
        write!(
            f,
            "{ALGORITHM} Access={}, SignedHeaders={}, Signature={}",
            self.access_key_id, self.signed_headers, self.signature
        )
    }
}

/// Runs all stages: the `Authorization` value for `canonical` signed at `sdk_date`.
pub fn sign(
    canonical: &CanonicalRequest,
    sdk_date: &str,
    access_key_id: &str,
    secret: &Secret,
) -> Authorization {
    Authorization {
        access_key_id: access_key_id.to_owned(),
        signed_headers: canonical.signed_headers(),
        signature: canonical.string_to_sign(sdk_date).signature(secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vectors/huawei_sdk_hmac_sha256.json"
        ));
        serde_json::from_str(text).unwrap()
    }

    fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
        value[key].as_str().unwrap()
    }

    /// Every case of the official SDK's vectors, compared stage by stage.
    #[test]
    fn sdk_vectors_pass_stage_by_stage() {
        let cases = vectors();
        assert!(cases.len() >= 4);
        for case in &cases {
            let name = str_of(case, "name");
            let raw = &case["raw_request"];
            let headers: Vec<(String, String)> = raw["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap().to_owned(),
                        pair[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let authorization = headers
                .iter()
                .find(|(name, _)| name == "Authorization")
                .map(|(_, value)| Authorization::parse(value).unwrap())
                .unwrap();
            // Only the headers named in the signature count (see vectors/README.md).
            let signed: Vec<(&str, &str)> = headers
                .iter()
                .filter(|(name, _)| {
                    authorization
                        .signed_header_names()
                        .any(|signed| signed.eq_ignore_ascii_case(name))
                })
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let target = str_of(raw, "target");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let canonical = CanonicalRequest::new(
                str_of(raw, "method"),
                path,
                query,
                &signed,
                str_of(raw, "body").as_bytes(),
            );
            assert_eq!(
                canonical.to_string(),
                str_of(case, "canonical_request"),
                "{name}: canonical request"
            );
            let sdk_date = str_of(&case["inputs"], "x_sdk_date");
            let string_to_sign = canonical.string_to_sign(sdk_date);
            assert_eq!(
                string_to_sign.to_string(),
                str_of(case, "string_to_sign"),
                "{name}: string to sign"
            );
            let secret = Secret::new(str_of(case, "access_key_secret"));
            assert_eq!(
                string_to_sign.signature(&secret),
                str_of(case, "signature"),
                "{name}: signature"
            );
            assert!(string_to_sign.verify(&secret, str_of(case, "signature")));
            let signed_auth = sign(&canonical, sdk_date, str_of(case, "access_key_id"), &secret);
            assert_eq!(
                signed_auth.to_string(),
                str_of(case, "authorization"),
                "{name}: authorization"
            );
            assert_eq!(signed_auth, authorization, "{name}: parse round trip");
        }
    }

    /// The published documentation example (cloud-apis.md §6.1).
    #[test]
    fn documentation_example() {
        let canonical = CanonicalRequest::new(
            "GET",
            "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            "marker=13551d6b-755d-4757-b956-536f674975c0&limit=2",
            &[
                ("Content-Type", "application/json"),
                ("Host", "service.region.example.com"),
                ("X-Sdk-Date", "20191115T033655Z"),
            ],
            b"",
        );
        let string_to_sign = canonical.string_to_sign("20191115T033655Z");
        assert_eq!(
            string_to_sign.canonical_request_hash,
            "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
        );
        let authorization = sign(
            &canonical,
            "20191115T033655Z",
            "QTWAOYTTINDUT2QVKYUC",
            &Secret::new("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"),
        );
        assert_eq!(
            authorization.to_string(),
            "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        let time = time::macros::datetime!(2024-01-15 08:30:00 UTC);
        assert_eq!(format_sdk_date(time), "20240115T083000Z");
        assert_eq!(parse_sdk_date("20240115T083000Z"), Some(time));
        assert_eq!(parse_sdk_date("2024-01-15T08:30:00Z"), None);
    }

    #[test]
    fn query_string_is_canonical_and_names_with_underscore_are_not_signed() {
        assert_eq!(
            query_string(&[("type", "TXT"), ("name", "a b+/.")]),
            "name=a%20b%2B%2F.&type=TXT"
        );
        let canonical = CanonicalRequest::new(
            "get",
            "/v2/zones/",
            "",
            &[("Host", "h"), ("X_Odd", "v")],
            b"",
        );
        assert_eq!(canonical.signed_headers(), "host");
        assert_eq!(canonical.uri, "/v2/zones/");
        assert_eq!(canonical.method, "GET");
    }

    #[test]
    fn malformed_authorization_is_refused() {
        assert!(Authorization::parse("SDK-HMAC-SHA256 Access=a, SignedHeaders=host").is_none());
        assert!(Authorization::parse("ACS3-HMAC-SHA256 Access=a").is_none());
    }
}
