//! The one HTTP client policy every vendor, IAM, DNS and ACME call shares, and the one way
//! their replies are read.
//!
//! The client ([`client`], [`client_trusting`]): rustls only, bounded connect and total
//! timeouts (the total one covers the body, so a trickling reply ends too), **no redirects**
//! and **no `Referer`**. A followed redirect replays the request (a signed query, an IAM
//! password, an `X-Auth-Token`) to a host nobody configured and takes that host's answer for
//! the vendor's; so a 3xx is never followed: [`read_reply`] turns it into a
//! [`ReplyError::Redirect`] that names only the `Location` host.
//!
//! Replies ([`send`], [`read_reply`]) are read through one bounded reader: the announced
//! `Content-Length` is checked first, then the bytes are counted while streaming, and the
//! read stops as soon as the cap is crossed, so a hostile or broken server cannot grow the
//! daemon's memory. Vendor clients add signing and classify errors
//! ([`ReplyError::into_cloud`]).

use crate::error::{CloudError, ErrorClass};
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// Largest vendor (Alibaba, Huawei incl. IAM and DNS, QingCloud) reply we read. The largest
/// real ones are listing pages (alidns `DescribeDomains` or Huawei DNS record sets at 100 per
/// page, QingCloud `DescribeJobs`) and certificate reads with their chains: tens of KiB.
/// 4 MiB is two orders of magnitude above that and still small next to the daemon's budget.
pub const VENDOR_REPLY_CAP: usize = 4 * 1024 * 1024;

/// Largest ACME reply we read. The biggest is the certificate chain (RFC 8555 §7.4.2): a
/// leaf with 100 names plus two intermediates is well under 64 KiB (a long-chain CA under
/// 100 KiB); directories, orders (even with the 100-identifier maximum of common CAs) and
/// problem documents are a few KiB. 1 MiB leaves ten times that.
pub const ACME_REPLY_CAP: usize = 1024 * 1024;

/// Timeouts of one client.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// Time to open the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time for the whole exchange, from connecting until the last byte of the body: it also
    /// ends a reply that trickles in slower than it should.
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    /// Vendor APIs: a certificate write answers within seconds.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpSettings {
    /// ACME: finalization and certificate download at a busy CA may take longer.
    pub const ACME: HttpSettings = HttpSettings {
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(60),
    };
}

/// Builds the vendor client. Fails only if the TLS backend cannot start.
pub fn client(settings: HttpSettings) -> Result<reqwest::Client, reqwest::Error> {
    client_trusting(settings, Vec::new())
}

/// Builds a client that also trusts `extra_roots` (e.g. an ACME CA's private root), with the
/// same policy as [`client`].
pub fn client_trusting(
    settings: HttpSettings,
    extra_roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .tcp_nodelay(true)
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .user_agent(concat!("certkeeper/", env!("CARGO_PKG_VERSION")));
    for root in extra_roots {
        builder = builder.add_root_certificate(root);
    }
    builder.build()
}

/// A reply read whole, within its cap.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A header's value as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

/// Why a call got no usable reply. The texts name hosts only: a URL may hold a signed query.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The server answered 3xx; we never follow.
    #[error("refused to follow a redirect (HTTP {status}) to {location}")]
    Redirect {
        status: u16,
        /// `host` or `host:port` of the `Location`, or a phrase when there is none.
        location: String,
    },
    /// The reply is larger than its cap (announced or counted).
    #[error("reply from {host} is larger than the {cap}-byte cap{}", announced.map(|bytes| format!(" (announced {bytes} bytes)")).unwrap_or_default())]
    TooLarge {
        host: String,
        cap: usize,
        announced: Option<u64>,
    },
    /// Connect, TLS, timeout or body read failure (URL stripped).
    #[error("{}", transport_text(.0))]
    Transport(reqwest::Error),
}

/// Sends `request` and reads its reply within `cap` bytes.
pub async fn send(request: reqwest::RequestBuilder, cap: usize) -> Result<Reply, ReplyError> {
    let response = request
        .send()
        .await
        .map_err(|error| ReplyError::Transport(error.without_url()))?;
    read_reply(response, cap).await
}

/// Reads `response` within `cap` bytes: a 3xx is refused, an announced length above the cap
/// fails before a byte is read, and the body is counted chunk by chunk while it streams in,
/// failing (and dropping the connection) as soon as it passes the cap.
pub async fn read_reply(mut response: reqwest::Response, cap: usize) -> Result<Reply, ReplyError> {
    let status = response.status();
    let host = host_of(response.url());
    if status.is_redirection() {
        return Err(ReplyError::Redirect {
            status: status.as_u16(),
            location: location_host(&response),
        });
    }
    let announced = response.content_length();
    if announced.is_some_and(|length| length > cap as u64) {
        return Err(ReplyError::TooLarge {
            host,
            cap,
            announced,
        });
    }
    let headers = response.headers().clone();
    // The chunks are kept as they come and joined once at the end: growing one buffer while
    // reading would double it (and copy) on the way to the cap, so a reply stopped at the
    // cap would cost up to three times the cap.
    let mut chunks = Vec::new();
    let mut length = 0usize;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| ReplyError::Transport(error.without_url()))?
    {
        length += chunk.len();
        if length > cap {
            return Err(ReplyError::TooLarge {
                host,
                cap,
                announced,
            });
        }
        chunks.push(chunk);
    }
    let body = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut joined = BytesMut::with_capacity(length);
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            joined.freeze()
        }
    };
    Ok(Reply {
        status: status.as_u16(),
        headers,
        body,
    })
}

impl ReplyError {
    /// The classified error of `vendor`'s `operation`. Every case is `transient`: a redirect
    /// or an oversized reply comes from a proxy, a misrouted endpoint or a broken gateway,
    /// not from the request, so the call is retried with backoff (and counted under its
    /// class in `certkeeper_errors_total`) rather than parked as if the certificate were bad.
    pub fn into_cloud(self, vendor: &'static str, operation: &str) -> CloudError {
        match &self {
            ReplyError::Transport(error) => CloudError::network(vendor, operation, error),
            ReplyError::Redirect { status, .. } => CloudError::new(
                vendor,
                operation,
                ErrorClass::Transient,
                "Redirect",
                self.to_string(),
            )
            .with_status(*status),
            ReplyError::TooLarge { .. } => CloudError::new(
                vendor,
                operation,
                ErrorClass::Transient,
                "ReplyTooLarge",
                self.to_string(),
            ),
        }
    }
}

/// `host` or `host:port` of `url` (what the vendors' signatures cover as the host), never
/// its path or query; `None` for a URL without a host.
pub fn host_and_port(url: &reqwest::Url) -> Option<String> {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => Some(format!("{host}:{port}")),
        (Some(host), None) => Some(host.to_owned()),
        (None, _) => None,
    }
}

/// Where a vendor client reads "now" (request time stamps, token expiry); tests pin it.
pub type Clock = std::sync::Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(time::OffsetDateTime::now_utc)
}

/// `host` or `host:port` of `url`, never its path or query.
fn host_of(url: &reqwest::Url) -> String {
    host_and_port(url).unwrap_or_else(|| "an unnamed host".to_owned())
}

/// The host a redirect points to (a relative `Location` points to the same host).
fn location_host(response: &reqwest::Response) -> String {
    let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
        return "no location".to_owned();
    };
    let target = location
        .to_str()
        .ok()
        .and_then(|text| response.url().join(text).ok());
    match target {
        Some(url) => host_of(&url),
        None => "an unreadable location".to_owned(),
    }
}

/// A transport error's text: what failed and why, without the URL.
fn transport_text(error: &reqwest::Error) -> String {
    CloudError::network("", "", error).message
}

// The observer trait lives in telemetry (a leaf) so telemetry never imports the vendor
// layer; the vendor clients name it here.
pub use crate::telemetry::RequestObserver;

/// Runs one API call and reports it to `observer`, if there is one.
pub async fn observed<T>(
    observer: Option<&std::sync::Arc<dyn RequestObserver>>,
    vendor: &'static str,
    action: &str,
    call: impl std::future::Future<Output = Result<T, crate::error::CloudError>>,
) -> Result<T, crate::error::CloudError> {
    let started = std::time::Instant::now();
    let result = call.await;
    if let Some(observer) = observer {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.class.as_str(),
        };
        observer.observe(vendor, action, outcome, started.elapsed());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        reqwest::Response::from(builder.body(body.to_owned()).unwrap())
    }

    #[tokio::test]
    async fn a_redirect_names_only_the_location_host() {
        let absolute = response(
            307,
            &[("location", "https://evil.example:8443/steal?SSLPri=key")],
            "",
        );
        let error = read_reply(absolute, 1024).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "refused to follow a redirect (HTTP 307) to evil.example:8443"
        );
        // A relative Location stays on the host that answered.
        let relative = response(302, &[("location", "/elsewhere?token=t")], "");
        let text = read_reply(relative, 1024).await.unwrap_err().to_string();
        assert!(
            !text.contains("elsewhere") && !text.contains("token"),
            "{text}"
        );
        let bare = response(301, &[], "");
        let error = read_reply(bare, 1024).await.unwrap_err();
        assert!(error.to_string().ends_with("to no location"), "{error}");
        let cloud = error.into_cloud("alibaba", "X");
        assert_eq!(
            (cloud.class, cloud.code.as_str(), cloud.http_status),
            (ErrorClass::Transient, "Redirect", Some(301))
        );
    }

    #[tokio::test]
    async fn the_cap_is_checked_on_the_announced_and_the_counted_length() {
        let announced = response(200, &[("content-length", "2048")], &"x".repeat(2048));
        match read_reply(announced, 1024).await.unwrap_err() {
            ReplyError::TooLarge { cap, announced, .. } => {
                assert_eq!((cap, announced), (1024, Some(2048)))
            }
            other => panic!("{other}"),
        }
        let unannounced = response(200, &[], &"x".repeat(1025));
        let error = read_reply(unannounced, 1024).await.unwrap_err();
        assert!(error.to_string().contains("1024-byte cap"), "{error}");
        let cloud = error.into_cloud("huawei", "X");
        assert_eq!(
            (cloud.class, cloud.code.as_str()),
            (ErrorClass::Transient, "ReplyTooLarge")
        );
        let fits = read_reply(response(200, &[("x-request-id", "r")], "{}"), 2)
            .await
            .unwrap();
        assert_eq!((fits.status, &fits.body[..]), (200, &b"{}"[..]));
        assert_eq!(fits.header("x-request-id").as_deref(), Some("r"));
    }
}
