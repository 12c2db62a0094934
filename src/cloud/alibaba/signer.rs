//! Alibaba Cloud request signing, pure and staged: `ACS3-HMAC-SHA256` (what our client
//! sends) and RPC V1 HMAC-SHA1 (what older official SDKs still send, so the simulator must
//! verify it too). Time and nonce are inputs; each stage (canonical request, string to sign,
//! signature) is a value whose `Display` is the documented text, so a failing vector test
//! names the stage that broke. See `../shared/reference/cloud-apis.md` §1.2–1.3.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::fmt;

/// The ACS3 algorithm name, first line of the string to sign and prefix of `Authorization`.
pub const ACS3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// SHA-256 of the empty body, which every query-only call signs.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 encoding: only `A-Z a-z 0-9 - _ . ~` stay as they are (space is `%20`).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a query or form body with form rules (`+` is a space), as the SDKs' wire format
/// requires before re-encoding. Pairs keep their order; a name without `=` has an empty value.
pub fn form_decode(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// Encodes parameters for the wire the way the official SDKs do (form encoding).
pub fn form_encode(params: &[(String, String)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

fn canonical_pairs(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (percent_encode(name), percent_encode(value)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The ACS3 canonical request. Its `Display` is the exact text that is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    pub method: String,
    /// Decoded query parameters (any order; sorted when written).
    pub query: Vec<(String, String)>,
    /// Signed headers: lower-case names, trimmed values, sorted by name.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body.
    pub payload_hash: String,
}

impl CanonicalRequest {
    pub fn new(
        method: &str,
        query: Vec<(String, String)>,
        headers: &[(String, String)],
        payload_hash: &str,
    ) -> Self {
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        headers.sort();
        Self {
            method: method.to_ascii_uppercase(),
            query,
            headers,
            payload_hash: payload_hash.to_owned(),
        }
    }

    /// The `;`-joined list of signed header names.
    pub fn signed_headers(&self) -> String {
        self.headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn string_to_sign(&self) -> StringToSign {
        StringToSign {
            hashed_canonical_request: hex_sha256(self.to_string().as_bytes()),
        }
    }
}

impl fmt::Display for CanonicalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.method)?;
        writeln!(f, "/")?;
        writeln!(f, "{}", canonical_pairs(&self.query))?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}:{value}")?;
        }
        writeln!(f)?;
        writeln!(f, "{}", self.signed_headers())?;
        write!(f, "{}", self.payload_hash)
    }
}

/// The ACS3 string to sign: algorithm and the hex hash of the canonical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringToSign {
    pub hashed_canonical_request: String,
}

impl StringToSign {
    /// Hex HMAC-SHA256 of this text under `secret`.
    pub fn sign(&self, secret: &str) -> String {
        hex::encode(hmac_sha256(secret.as_bytes(), self.to_string().as_bytes()))
    }
}

impl fmt::Display for StringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ACS3_ALGORITHM}\n{}", self.hashed_canonical_request)
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha1>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The `Authorization` header value of an ACS3 request.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub signed_headers: String,
    pub signature: String,
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ACS3_ALGORITHM} Credential={},SignedHeaders={},Signature={}",
            self.access_key_id, self.signed_headers, self.signature
        )
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signature proves nothing about the secret, but keep logs free of it anyway.
        f.debug_struct("Authorization")
            .field("access_key_id", &self.access_key_id)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.trim().strip_prefix(ACS3_ALGORITHM)?.trim_start();
        let mut id = None;
        let mut headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let (name, value) = part.trim().split_once('=')?;
            match name {
                "Credential" => id = Some(value.to_owned()),
                "SignedHeaders" => headers = Some(value.to_owned()),
                "Signature" => signature = Some(value.to_owned()),
                _ => {}
            }
        }
        Some(Self {
            access_key_id: id?,
            signed_headers: headers?,
            signature: signature?,
        })
    }
}

/// Signs `canonical` with `secret`: the three later stages in one go.
pub fn sign_acs3(access_key_id: &str, secret: &str, canonical: &CanonicalRequest) -> Authorization {
    Authorization {
        access_key_id: access_key_id.to_owned(),
        signed_headers: canonical.signed_headers(),
        signature: canonical.string_to_sign().sign(secret),
    }
}

/// What our client sends for one RPC call: the wire query, the body and every header to set.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub query: String,
    /// The form body (`application/x-www-form-urlencoded`), empty for a query-only call.
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// The `content-type` of a form body, signed like the other headers.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The inputs of one ACS3 RPC call (POST `/`): [`sign`](Self::sign) puts every parameter
/// in the query, as the product SDKs do; [`sign_form`](Self::sign_form) puts them in a form
/// body, which the gateway reads the same way (vector `generic_rpc_form_body_*`).
pub struct Acs3Call<'a> {
    pub host: &'a str,
    pub action: &'a str,
    pub version: &'a str,
    pub params: &'a [(String, String)],
    /// `x-acs-date`, e.g. `2024-01-15T08:30:00Z`.
    pub date: &'a str,
    pub nonce: &'a str,
}

impl Acs3Call<'_> {
    /// The headers we sign (all we set before signing, as the SDK does).
    pub fn signed_headers(&self) -> Vec<(String, String)> {
        vec![
            ("accept".into(), "application/json".into()),
            ("host".into(), self.host.into()),
            ("x-acs-action".into(), self.action.into()),
            ("x-acs-content-sha256".into(), EMPTY_SHA256.into()),
            ("x-acs-date".into(), self.date.into()),
            ("x-acs-signature-nonce".into(), self.nonce.into()),
            ("x-acs-version".into(), self.version.into()),
        ]
    }

    pub fn canonical_request(&self) -> CanonicalRequest {
        CanonicalRequest::new(
            "POST",
            self.params.to_vec(),
            &self.signed_headers(),
            EMPTY_SHA256,
        )
    }

    pub fn sign(&self, access_key_id: &str, secret: &str) -> SignedRequest {
        SignedRequest {
            query: form_encode(self.params),
            body: String::new(),
            headers: wire_headers(self.canonical_request(), access_key_id, secret),
        }
    }

    /// The headers signed for a form-body call: those of [`signed_headers`] plus
    /// `content-type`, with `x-acs-content-sha256` the hash of `body`.
    ///
    /// [`signed_headers`]: Self::signed_headers
    pub fn form_signed_headers(&self, body: &str) -> Vec<(String, String)> {
        let mut headers = self.signed_headers();
        for (name, value) in &mut headers {
            if name == "x-acs-content-sha256" {
                *value = hex_sha256(body.as_bytes());
            }
        }
        headers.push(("content-type".into(), FORM_CONTENT_TYPE.into()));
        headers
    }

    /// The canonical request of the form-body call: an empty canonical query (body
    /// parameters are covered only by the payload hash) and the body's hash.
    pub fn form_canonical_request(&self) -> CanonicalRequest {
        let body = form_encode(self.params);
        CanonicalRequest::new(
            "POST",
            Vec::new(),
            &self.form_signed_headers(&body),
            &hex_sha256(body.as_bytes()),
        )
    }

    /// Signs the call with every parameter in a form body and none in the URL, so PEM keys
    /// (CDN/VOD `SSLPri`, legacy CDN `PrivateKey`, RDS `ServerKey`, CAS `Key`) never travel
    /// in a query string that proxies and access logs keep.
    pub fn sign_form(&self, access_key_id: &str, secret: &str) -> SignedRequest {
        self.sign_form_with_token(access_key_id, secret, None)
    }

    /// [`sign_form`](Self::sign_form) with STS credentials: the token travels in
    /// `x-acs-security-token` (with `x-acs-accesskey-id`), signed like the other `x-acs-*`
    /// headers, as the official SDK sends it (vector `acs3_cdn_SetCdnDomainSSLCertificate_sts`).
    pub fn sign_form_with_token(
        &self,
        access_key_id: &str,
        secret: &str,
        security_token: Option<&str>,
    ) -> SignedRequest {
        let body = form_encode(self.params);
        let mut headers = self.form_signed_headers(&body);
        if let Some(token) = security_token {
            headers.extend(security_token_headers(access_key_id, token));
        }
        let canonical =
            CanonicalRequest::new("POST", Vec::new(), &headers, &hex_sha256(body.as_bytes()));
        SignedRequest {
            query: String::new(),
            body,
            headers: wire_headers(canonical, access_key_id, secret),
        }
    }
}

/// The headers an ACS3 request with STS credentials adds (and signs).
pub fn security_token_headers(access_key_id: &str, token: &str) -> [(String, String); 2] {
    [
        ("x-acs-accesskey-id".into(), access_key_id.into()),
        ("x-acs-security-token".into(), token.into()),
    ]
}

/// The RPC V1 parameter that carries an STS token (signed with the others).
pub const RPC_SECURITY_TOKEN_PARAM: &str = "SecurityToken";

/// The headers to send for `canonical`: the signed ones and `authorization`.
fn wire_headers(
    canonical: CanonicalRequest,
    access_key_id: &str,
    secret: &str,
) -> Vec<(String, String)> {
    let authorization = sign_acs3(access_key_id, secret, &canonical);
    let mut headers = canonical.headers;
    // Host is set by the HTTP library from the URL; it is signed, not sent twice.
    headers.retain(|(name, _)| name != "host");
    headers.push(("authorization".into(), authorization.to_string()));
    headers
}

/// The RPC V1 canonical parameter string (sorted, RFC 3986 encoded, `&`-joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCanonical {
    /// Every signed parameter (query and form body), without `Signature`.
    pub params: Vec<(String, String)>,
}

impl fmt::Display for RpcCanonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&canonical_pairs(&self.params))
    }
}

impl RpcCanonical {
    pub fn string_to_sign(&self, method: &str) -> RpcStringToSign {
        RpcStringToSign {
            method: method.to_ascii_uppercase(),
            canonical: self.to_string(),
        }
    }
}

/// `METHOD&%2F&encode(canonical)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcStringToSign {
    pub method: String,
    pub canonical: String,
}

impl fmt::Display for RpcStringToSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}&{}&{}",
            self.method,
            percent_encode("/"),
            percent_encode(&self.canonical)
        )
    }
}

impl RpcStringToSign {
    /// Base64 HMAC-SHA1 under `secret&`.
    pub fn sign(&self, secret: &str) -> String {
        let key = format!("{secret}&");
        base64::engine::general_purpose::STANDARD
            .encode(hmac_sha1(key.as_bytes(), self.to_string().as_bytes()))
    }
}

/// Compares two signatures in constant time.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    // Fold every byte so the time does not depend on where the first difference is.
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_rfc3986() {
        assert_eq!(percent_encode("a b+c/d=~*"), "a%20b%2Bc%2Fd%3D~%2A");
        assert_eq!(
            form_decode("a=x+y%2Bz&b=&c"),
            vec![
                ("a".into(), "x y+z".into()),
                ("b".into(), String::new()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn client_signature_verifies_through_canonical_rebuild() {
        let params = vec![("DomainName".to_owned(), "a b".to_owned())];
        let call = Acs3Call {
            host: "127.0.0.1:1",
            action: "DescribeDomainCertificateInfo",
            version: "2018-05-10",
            params: &params,
            date: "2024-01-01T00:00:00Z",
            nonce: "n",
        };
        let signed = call.sign("id", "secret");
        let auth = signed
            .headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, value)| Authorization::parse(value).unwrap())
            .unwrap();
        let rebuilt = CanonicalRequest::new(
            "POST",
            form_decode(&signed.query),
            &call.signed_headers(),
            EMPTY_SHA256,
        );
        assert_eq!(rebuilt.string_to_sign().sign("secret"), auth.signature);
        assert!(!format!("{auth:?}").contains(&auth.signature));
    }

    #[test]
    fn form_signature_covers_the_body_and_leaves_the_query_empty() {
        let params = vec![
            ("DomainName".to_owned(), "www.example.com".to_owned()),
            (
                "SSLPri".to_owned(),
                "-----BEGIN PRIVATE KEY-----\nk+/=\n".to_owned(),
            ),
        ];
        let call = Acs3Call {
            host: "cdn.aliyuncs.com",
            action: "SetCdnDomainSSLCertificate",
            version: "2018-05-10",
            params: &params,
            date: "2024-01-01T00:00:00Z",
            nonce: "n",
        };
        let signed = call.sign_form("id", "secret");
        assert!(signed.query.is_empty());
        assert_eq!(form_decode(&signed.body), params);
        let header = |name: &str| {
            signed
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("content-type"), FORM_CONTENT_TYPE);
        assert_eq!(
            header("x-acs-content-sha256"),
            hex_sha256(signed.body.as_bytes())
        );
        // A verifier rebuilds the canonical request from the wire: empty query, body hash.
        let auth = Authorization::parse(&header("authorization")).unwrap();
        assert!(auth.signed_headers.contains("content-type"));
        let rebuilt = CanonicalRequest::new(
            "POST",
            Vec::new(),
            &call.form_signed_headers(&signed.body),
            &hex_sha256(signed.body.as_bytes()),
        );
        assert_eq!(rebuilt.string_to_sign().sign("secret"), auth.signature);
    }

    #[test]
    fn legacy_doc_example_matches() {
        // cloud-apis.md §1.3: computed example with AK `testid` / `testsecret`.
        let params = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDomainCertificateInfo"),
            ("DomainName", "www.example.com"),
            ("Format", "json"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3156853299f313e23d1673dc12e1703d"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-01-01T00:00:00Z"),
            ("Version", "2018-05-10"),
        ];
        let canonical = RpcCanonical {
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        let sts = canonical.string_to_sign("POST");
        assert!(sts
            .to_string()
            .contains("Timestamp%3D2024-01-01T00%253A00%253A00Z"));
        assert_eq!(sts.sign("testsecret"), "NFTk+Fm6N+gQwyZwve1zkTo0Xqo=");
    }
}
