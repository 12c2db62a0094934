//! The HTTP client instant-acme talks through: the shared client policy of
//! [`crate::cloud::http`] (rustls, TCP_NODELAY, bounded timeouts, no redirects, no
//! `Referer`), trusting the system roots plus every certificate of an optional CA bundle
//! (instant-acme's own `builder_with_root` loads only the first one). Replies are read within
//! [`ACME_REPLY_CAP`]. It also copies a problem response's Retry-After into the problem's
//! `detail`, because instant-acme keeps only the problem document and the error mapping
//! needs the hint.

use super::errors::{ORIGIN, RETRY_AFTER_MARKER};
use crate::cloud::http::{HttpSettings, ReplyError, ACME_REPLY_CAP};
use crate::error::ErrorClass;
use crate::source::SourceError;
use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use std::future::Future;
use std::pin::Pin;

/// A reqwest-backed [`HttpClient`].
#[derive(Clone)]
pub struct AcmeHttp {
    client: reqwest::Client,
}

impl AcmeHttp {
    /// `ca_bundle_pem`: extra roots to trust (all certificates of the PEM text).
    pub fn new(ca_bundle_pem: Option<&str>) -> Result<Self, SourceError> {
        Self::with_settings(ca_bundle_pem, HttpSettings::ACME)
    }

    /// Like [`new`](Self::new) with other timeouts (tests of slow or silent CAs).
    pub fn with_settings(
        ca_bundle_pem: Option<&str>,
        settings: HttpSettings,
    ) -> Result<Self, SourceError> {
        let mut roots = Vec::new();
        if let Some(bundle) = ca_bundle_pem {
            roots = reqwest::Certificate::from_pem_bundle(bundle.as_bytes())
                .map_err(|error| bad_bundle(error.to_string()))?;
            if roots.is_empty() {
                return Err(bad_bundle("no certificate in the CA bundle".into()));
            }
        }
        let client = crate::cloud::http::client_trusting(settings, roots).map_err(|error| {
            SourceError::new(
                ORIGIN,
                "build http client",
                ErrorClass::Invalid,
                "HttpClient",
                error.to_string(),
            )
        })?;
        Ok(Self { client })
    }

    /// The underlying client, for plain GETs outside instant-acme.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

fn bad_bundle(reason: String) -> SourceError {
    SourceError::new(
        ORIGIN,
        "load ca_bundle",
        ErrorClass::Invalid,
        "CaBundle",
        reason,
    )
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let request = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body);
            let reply = crate::cloud::http::send(request, ACME_REPLY_CAP)
                .await
                .map_err(|error| match error {
                    // Transport failures stay reqwest errors, a redirect or an oversized
                    // reply stays a ReplyError: the error mapping reads both types as "the
                    // CA was not reached", never as the CA refusing the order.
                    ReplyError::Transport(error) => instant_acme::Error::Other(Box::new(error)),
                    refused => instant_acme::Error::Other(Box::new(refused)),
                })?;
            let status = http::StatusCode::from_u16(reply.status)
                .map_err(|error| instant_acme::Error::Http(error.into()))?;
            let headers = reply.headers;
            let mut body = reply.body;
            if !status.is_success() {
                if let Some(seconds) = retry_after_seconds(&headers) {
                    body = annotate_problem(&body, seconds).unwrap_or(body);
                }
            }
            let mut builder = http::Response::builder().status(status);
            if let Some(map) = builder.headers_mut() {
                *map = headers;
            }
            let (parts, ()) = builder
                .body(())
                .map_err(instant_acme::Error::Http)?
                .into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// Retry-After as seconds from now: either delay-seconds or an HTTP-date.
fn retry_after_seconds(headers: &http::HeaderMap) -> Option<u64> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.timestamp() - chrono::Utc::now().timestamp();
    Some(delta.max(0) as u64)
}

/// Appends the Retry-After marker to a problem document's `detail`.
fn annotate_problem(body: &[u8], seconds: u64) -> Option<Bytes> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object_mut()?;
    let detail = object
        .get("detail")
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_owned();
    object.insert(
        "detail".into(),
        serde_json::Value::String(format!("{detail}{RETRY_AFTER_MARKER}{seconds}]")),
    );
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_detail_gets_the_retry_after_marker() {
        let body = br#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"slow down"}"#;
        let annotated = annotate_problem(body, 30).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&annotated).unwrap();
        assert_eq!(value["detail"], format!("slow down{RETRY_AFTER_MARKER}30]"));
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after_seconds(&headers), Some(120));
    }

    #[test]
    fn a_refused_redirect_is_not_a_refusal_of_replaces() {
        let redirect = instant_acme::Error::Other(Box::new(ReplyError::Redirect {
            status: 307,
            location: "elsewhere.example".into(),
        }));
        assert!(!super::super::errors::is_replaces_refusal(&redirect));
        let mapped = super::super::errors::classify("newOrder", &redirect);
        assert_eq!(mapped.class, ErrorClass::Transient);
        assert!(mapped.message.contains("elsewhere.example"), "{mapped:?}");
    }

    #[test]
    fn an_empty_bundle_is_refused() {
        assert!(AcmeHttp::new(Some("not a pem")).is_err());
        assert!(AcmeHttp::new(None).is_ok());
    }
}
