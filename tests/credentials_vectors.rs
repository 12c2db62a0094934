//! The Huawei token-bearing case of `tests/fixtures/vectors/temporary_credentials.json`
//! (`huaweicloudsdkcore` with temporary AK/SK): `X-Security-Token` is sent and signed, and
//! our client's header signing reproduces the SDK's `Authorization` from the same headers.
//! (The Alibaba cases are in `tests/alibaba_vectors.rs`.)

use certkeeper::cloud::huawei::client::{sign_headers, SECURITY_TOKEN_HEADER};
use certkeeper::secret::Secret;
use serde_json::Value;

#[test]
fn huawei_security_token_is_signed_as_the_sdk_signs_it() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vectors/temporary_credentials.json"
    );
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = cases
        .iter()
        .find(|case| case["name"] == "huawei_gaussdb_ModifyBackupEncryptStatus_security_token")
        .unwrap();
    let text = |value: &Value| value.as_str().unwrap().to_owned();
    let token = text(&case["security_token"]);
    let authorization = text(&case["authorization"]);
    assert!(
        authorization.contains("x-security-token"),
        "{authorization}"
    );
    // The headers the SDK signed, as it sent them (X-Sdk-Date is added by the signer).
    let wire: Vec<(String, String)> = case["raw_request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (text(&pair[0]), text(&pair[1])))
        .collect();
    let value = |name: &str| {
        wire.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(value(SECURITY_TOKEN_HEADER), token);
    let mut headers: Vec<(String, String)> = [
        "Content-Type",
        "Host",
        "User-Agent",
        "X-Project-Id",
        SECURITY_TOKEN_HEADER,
    ]
    .iter()
    .map(|name| (name.to_string(), value(name)))
    .collect();
    let raw = &case["raw_request"];
    let target = text(&raw["target"]);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let body = match &raw["body"] {
        Value::String(body) => body.clone().into_bytes(),
        _ => Vec::new(),
    };
    sign_headers(
        &mut headers,
        &text(&raw["method"]),
        path,
        query,
        &body,
        &text(&case["inputs"]["x_sdk_date"]),
        &text(&case["access_key_id"]),
        &Secret::new(text(&case["access_key_secret"])),
    );
    assert_eq!(headers.last().unwrap().1, authorization);
}
