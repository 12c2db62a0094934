//! The SQL Server custom certificate of RDS: ModifyDBInstanceSSL takes it only as a PFX file
//! in OSS, named by `Certificate = oss-<region>[-internal].aliyuncs.com:<bucket>:<file>`
//! with its `PassWord` (seed 000, reference §4.1). This module builds that PFX (PKCS#12:
//! the leaf, its chain and the key, under a random password made for each upload) and puts
//! it into the operator's bucket with OSS PutObject (virtual-hosted style, signed with the
//! account's AccessKey: `Authorization: OSS <id>:<signature>`). The password is a
//! [`Secret`]: it goes into the one ModifyDBInstanceSSL call and nowhere else. The object is
//! kept after the change: the seed does not say RDS has copied it once the call returns (a
//! standby may read it again), and without the discarded password it is AES-256 ciphertext.

use super::client::AlibabaClient;
use crate::cert::key::PrivateKey;
use crate::cert::CertificateBundle;
use crate::error::{CloudError, ErrorClass};
use crate::secret::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use sha1::Sha1;

const VENDOR: &str = "alibaba";
const OPERATION: &str = "PutObject";

/// Characters of a generated PFX password (alphanumeric: any tool takes it on a command line).
const PASSWORD_LENGTH: usize = 32;

/// Where a PFX goes: the bucket's OSS region and whether RDS reads it over the internal
/// endpoint (same region, no public traffic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OssLocation {
    pub region: String,
    pub bucket: String,
    pub internal: bool,
}

impl OssLocation {
    /// `oss-<region>[-internal].aliyuncs.com`: the endpoint host RDS is told to read from.
    pub fn endpoint_host(&self) -> String {
        let internal = if self.internal { "-internal" } else { "" };
        format!("oss-{}{internal}.aliyuncs.com", self.region)
    }

    /// ModifyDBInstanceSSL's `Certificate` for `object` in this bucket (seed 000).
    pub fn certificate_parameter(&self, object: &str) -> String {
        format!("{}:{}:{object}", self.endpoint_host(), self.bucket)
    }
}

/// A PFX made for one upload and the password that opens it.
pub struct Pfx {
    pub der: Vec<u8>,
    pub password: Secret,
}

/// Builds the PFX of `bundle`: one key entry holding the key and the chain, leaf first,
/// encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and MACed with HMAC-SHA256, the
/// PKCS#12 profile OpenSSL 3 and Windows read by default.
pub fn build_pfx(bundle: &CertificateBundle) -> Result<Pfx, CloudError> {
    let invalid = |what: String| {
        CloudError::new(
            VENDOR,
            "BuildPfx",
            ErrorClass::Invalid,
            "PfxBuild",
            format!("cannot build the PFX for SQL Server: {what}"),
        )
    };
    let key = PrivateKey::from_pem("certificate key", bundle.key_pem.expose())
        .map_err(|error| invalid(error.to_string()))?;
    let ders = crate::cert::pem::certificate_ders("certificate", &bundle.fullchain_pem())
        .map_err(|error| invalid(error.to_string()))?;
    let chain = ders
        .iter()
        .map(|der| p12_keystore::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(error.to_string()))?;
    let local_key_id = hex::decode(bundle.fingerprint()).unwrap_or_default();
    let entry = p12_keystore::PrivateKeyChain::new(key.pkcs8_der(), local_key_id, chain);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "certkeeper",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(entry),
    );
    let password =
        Secret::new(Alphanumeric.sample_string(&mut rand::thread_rng(), PASSWORD_LENGTH));
    let der = store
        .writer(password.expose())
        .write()
        .map_err(|error| invalid(error.to_string()))?;
    Ok(Pfx { der, password })
}

/// The object name of `bundle`'s PFX for `instance`: one per certificate, so a replay
/// rewrites the same object and RDS never reads a half-replaced one of another certificate.
pub fn object_name(instance: &str, bundle: &CertificateBundle) -> String {
    let fingerprint = bundle.fingerprint();
    format!(
        "certkeeper-{instance}-{}.pfx",
        &fingerprint[..fingerprint.len().min(16)]
    )
}

/// `Date` as OSS signs it (RFC 1123, GMT).
fn http_date(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// OSS signature V1 of a PutObject without Content-MD5, whose only `x-oss-` header is the
/// security token of temporary keys: `base64(HMAC-SHA1(secret,
/// "PUT\n\n<type>\n<date>\n[x-oss-security-token:<token>\n]/<bucket>/<object>"))`.
pub fn put_signature(
    secret: &str,
    content_type: &str,
    date: &str,
    security_token: Option<&str>,
    bucket: &str,
    object: &str,
) -> String {
    let oss_headers = security_token
        .map(|token| format!("x-oss-security-token:{token}\n"))
        .unwrap_or_default();
    let string_to_sign = format!("PUT\n\n{content_type}\n{date}\n{oss_headers}/{bucket}/{object}");
    // HMAC accepts keys of any length, so construction cannot fail.
    let digest = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(string_to_sign.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Puts `body` into `location` as `object`. The endpoint is the credentials' `oss` override
/// (scheme, host and port; the bucket is prepended to its host) or the region's public one:
/// certkeeper uploads over the public endpoint even where RDS reads over the internal one.
pub async fn put_object(
    client: &AlibabaClient,
    location: &OssLocation,
    object: &str,
    body: Vec<u8>,
) -> Result<(), CloudError> {
    let failure = |class: ErrorClass, code: &str, message: String| {
        CloudError::new(VENDOR, OPERATION, class, code, message)
    };
    let creds = client.credentials();
    let default = format!(
        "https://{}",
        OssLocation {
            internal: false,
            ..location.clone()
        }
        .endpoint_host()
    );
    let endpoint = creds.endpoint_for("oss", &default);
    let mut url = url::Url::parse(&endpoint).map_err(|error| {
        failure(
            ErrorClass::Invalid,
            "BadEndpoint",
            format!("endpoint {endpoint}: {error}"),
        )
    })?;
    let host = url.host_str().unwrap_or_default().to_owned();
    url.set_host(Some(&format!("{}.{host}", location.bucket)))
        .map_err(|error| {
            failure(
                ErrorClass::Invalid,
                "BadEndpoint",
                format!("bucket {}: {error}", location.bucket),
            )
        })?;
    url.set_path(&format!("/{object}"));
    url.set_query(None);
    let content_type = "application/x-pkcs12";
    let date = http_date(time::OffsetDateTime::now_utc());
    // Temporary keys (STS, roles) come from the account's provider, like every other call.
    let keys = client.signing_keys().await?;
    let token = keys.security_token.as_ref().map(|token| token.expose());
    let signature = put_signature(
        keys.secret.expose(),
        content_type,
        &date,
        token,
        &location.bucket,
        object,
    );
    let mut request = client
        .http()
        .put(url)
        .header("Content-Type", content_type)
        .header("Date", &date)
        .header(
            "Authorization",
            format!("OSS {}:{signature}", keys.access_key_id),
        );
    if let Some(token) = token {
        request = request.header("x-oss-security-token", token);
    }
    let request = request.body(body);
    let reply = crate::cloud::http::send(request, crate::cloud::http::VENDOR_REPLY_CAP)
        .await
        .map_err(|error| error.into_cloud(VENDOR, OPERATION))?;
    if (200..300).contains(&reply.status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&reply.body);
    let code = xml_field(&text, "Code").unwrap_or("Unknown").to_owned();
    let message = xml_field(&text, "Message").unwrap_or_default().to_owned();
    Err(failure(
        classify(&code, reply.status),
        &code,
        format!(
            "OSS refused the SQL Server PFX for bucket {}: {message}",
            location.bucket
        ),
    )
    .with_request_id(xml_field(&text, "RequestId").map(str::to_owned))
    .with_status(reply.status))
}

/// The class of an OSS error (its documented common codes; an unknown 5xx is transient).
fn classify(code: &str, status: u16) -> ErrorClass {
    match code {
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" => ErrorClass::Auth,
        "NoSuchBucket" => ErrorClass::NotFound,
        "RequestTimeTooSkewed" | "InternalError" | "ServiceUnavailable" => ErrorClass::Transient,
        _ if status >= 500 => ErrorClass::Transient,
        _ if status == 429 => ErrorClass::Throttled,
        _ => ErrorClass::Invalid,
    }
}

/// The text of `<name>…</name>` in an OSS error document.
pub fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_parameter_has_the_seed_form() {
        let location = OssLocation {
            region: "cn-beijing".into(),
            bucket: "zhttest".into(),
            internal: true,
        };
        // Seed 000's example: oss-cn-beijing-internal.aliyuncs.com:zhttest:test.pfx
        assert_eq!(
            location.certificate_parameter("test.pfx"),
            "oss-cn-beijing-internal.aliyuncs.com:zhttest:test.pfx"
        );
        assert_eq!(
            xml_field("<Error><Code>NoSuchBucket</Code></Error>", "Code"),
            Some("NoSuchBucket")
        );
        let date = http_date(time::macros::datetime!(2026-11-29 15:04:05 UTC));
        assert_eq!(date, "Sun, 29 Nov 2026 15:04:05 GMT");
    }

    #[test]
    fn a_pfx_opens_with_its_password_only() {
        let bundle = crate::cert::bundle::testing::fresh(&["db.example.com"]);
        let pfx = build_pfx(&bundle).unwrap();
        assert_eq!(pfx.password.expose().len(), PASSWORD_LENGTH);
        assert!(!format!("{:?}", pfx.password).contains(pfx.password.expose()));
        let store = p12_keystore::KeyStore::from_pkcs12(&pfx.der, pfx.password.expose()).unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        assert_eq!(
            crate::cert::bundle::sha256_hex(chain.chain()[0].as_der()),
            bundle.fingerprint()
        );
        assert!(p12_keystore::KeyStore::from_pkcs12(&pfx.der, "wrong").is_err());
        assert_ne!(
            build_pfx(&bundle).unwrap().password.expose(),
            pfx.password.expose()
        );
    }
}
