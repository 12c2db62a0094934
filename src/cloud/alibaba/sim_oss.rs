//! The OSS part of the Alibaba simulator, as far as RDS SQL Server needs it: PutObject into a
//! bucket named by the virtual host (`<bucket>.oss-<region>[-internal].aliyuncs.com`),
//! signed with OSS signature V1 (`Authorization: OSS <id>:<base64 HMAC-SHA1>` over
//! `VERB\nContent-MD5\nContent-Type\nDate\n<x-oss- headers></bucket/object>`, checked here
//! from the OSS documentation, not with the client's code), a `Date` within 15 minutes, and
//! the object read back by the `Certificate` ModifyDBInstanceSSL names
//! (`oss-<region>[-internal].aliyuncs.com:<bucket>:<file>`, seed 000). Errors are OSS's XML
//! documents. The simulator routes only `.pfx` objects here (the only files RDS reads).

use crate::cloud::sim::{SimRequest, SimResponse};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Largest accepted clock difference of `Date` (OSS: 15 minutes, `RequestTimeTooSkewed`).
const MAX_SKEW_SECS: i64 = 15 * 60;

/// One stored object: the OSS region of the endpoint it was put through, and its bytes.
struct Object {
    region: String,
    body: Vec<u8>,
}

/// The buckets' objects, by (bucket, object name).
#[derive(Default)]
pub struct OssSim {
    objects: Mutex<BTreeMap<(String, String), Object>>,
}

/// An OSS refusal: status, code, message.
pub struct OssError(pub u16, pub &'static str, pub String);

/// `oss-<region>[-internal].aliyuncs.com` → the region.
fn endpoint_region(host: &str) -> Option<&str> {
    let region = host.strip_prefix("oss-")?.strip_suffix(".aliyuncs.com")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    (!region.is_empty()).then_some(region)
}

fn hmac_sha1_base64(secret: &str, text: &str) -> String {
    // HMAC accepts keys of any length.
    let digest = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

impl OssSim {
    /// Whether `path` is an object this simulator serves.
    pub fn claims(path: &str) -> bool {
        path.len() > 1 && path.ends_with(".pfx")
    }

    /// Handles a PutObject; `secret_of` finds an access key's secret from its id and the
    /// `x-oss-security-token` sent with it (temporary keys), or says why it cannot.
    pub fn put_object(
        &self,
        request: &SimRequest,
        secret_of: impl Fn(&str, Option<&str>) -> Result<String, (&'static str, String)>,
        check_time: bool,
    ) -> SimResponse {
        match self.try_put(request, secret_of, check_time) {
            Ok(()) => SimResponse {
                status: 200,
                headers: vec![(
                    "x-oss-request-id".into(),
                    uuid::Uuid::new_v4().simple().to_string(),
                )],
                body: Vec::new(),
                outcome: "ok".into(),
            },
            Err(OssError(status, code, message)) => error_document(status, code, &message),
        }
    }

    fn try_put(
        &self,
        request: &SimRequest,
        secret_of: impl Fn(&str, Option<&str>) -> Result<String, (&'static str, String)>,
        check_time: bool,
    ) -> Result<(), OssError> {
        if request.method != http::Method::PUT {
            return Err(OssError(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.".into(),
            ));
        }
        let host = request.header("host").unwrap_or_default();
        let host = host.split(':').next().unwrap_or_default();
        let (bucket, endpoint) = host.split_once('.').unwrap_or_default();
        let region = endpoint_region(endpoint).ok_or_else(|| {
            OssError(
                400,
                "InvalidBucketName",
                format!("{host} is not <bucket>.oss-<region>.aliyuncs.com"),
            )
        })?;
        let object = request.path.trim_start_matches('/').to_owned();
        let authorization = request.header("authorization").unwrap_or_default();
        let (id, signature) = authorization
            .strip_prefix("OSS ")
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(|| {
                OssError(
                    403,
                    "AccessDenied",
                    "The OSS Access Key Id you provided does not exist in our records.".into(),
                )
            })?;
        let token = request.header("x-oss-security-token");
        let secret =
            secret_of(id, token).map_err(|(code, message)| OssError(403, code, message))?;
        let date = request.header("date").unwrap_or_default();
        if check_time {
            let format = time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            );
            let at = time::PrimitiveDateTime::parse(date, &format)
                .map(|at| at.assume_utc())
                .map_err(|_| {
                    OssError(
                        403,
                        "AccessDenied",
                        "OSS authentication requires a valid Date.".into(),
                    )
                })?;
            if (request.received_at - at).abs() > time::Duration::seconds(MAX_SKEW_SECS) {
                return Err(OssError(
                    403,
                    "RequestTimeTooSkewed",
                    "The difference between the request time and the current time is too large."
                        .into(),
                ));
            }
        }
        let mut oss_headers: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-oss-"))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().trim().to_owned(),
                )
            })
            .collect();
        oss_headers.sort();
        let canonical_headers: String = oss_headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let string_to_sign = format!(
            "PUT\n{}\n{}\n{date}\n{canonical_headers}/{bucket}/{object}",
            request.header("content-md5").unwrap_or_default(),
            request.header("content-type").unwrap_or_default(),
        );
        let expected = hmac_sha1_base64(&secret, &string_to_sign);
        if !crate::cloud::alibaba::signer::signatures_equal(&expected, signature) {
            return Err(OssError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided."
                    .into(),
            ));
        }
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (bucket.to_owned(), object),
                Object {
                    region: region.to_owned(),
                    body: request.body.to_vec(),
                },
            );
        Ok(())
    }

    /// The object ModifyDBInstanceSSL's `Certificate` names, if it is stored in that bucket
    /// through an endpoint of the same region.
    pub fn read(&self, certificate: &str) -> Result<Vec<u8>, String> {
        let mut parts = certificate.splitn(3, ':');
        let (Some(endpoint), Some(bucket), Some(object)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "Certificate {certificate:?} is not oss-<region>.aliyuncs.com:<bucket>:<file>"
            ));
        };
        let region = endpoint_region(endpoint)
            .ok_or_else(|| format!("{endpoint} is not an OSS endpoint"))?;
        let objects = self
            .objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        objects
            .get(&(bucket.to_owned(), object.to_owned()))
            .filter(|stored| stored.region == region)
            .map(|stored| stored.body.clone())
            .ok_or_else(|| format!("no object {object} in bucket {bucket} of {region}"))
    }

    /// The stored object names, for the state dump.
    pub fn names(&self) -> Vec<String> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .map(|(bucket, object)| format!("{bucket}/{object}"))
            .collect()
    }
}

/// OSS's error document.
pub fn error_document(status: u16, code: &str, message: &str) -> SimResponse {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    SimResponse {
        status,
        headers: vec![("content-type".into(), "application/xml".into())],
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{code}</Code>\n  <Message>{message}</Message>\n  <RequestId>{request_id}</RequestId>\n</Error>\n"
        )
        .into_bytes(),
        outcome: code.to_owned(),
    }
}
