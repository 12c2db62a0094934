//! The HTTP client every vendor client shares: rustls only, bounded connect and request
//! timeouts, an optional extra CA bundle. Vendor clients add signing and classify errors.

use std::time::Duration;

/// Timeouts for vendor API calls.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds the shared client. Fails only if the TLS backend cannot start.
pub fn client(settings: HttpSettings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .user_agent(concat!("certkeeper/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sees every vendor API call once it has an answer: how metrics are layered onto the vendor
/// clients without the vendor folders knowing about Prometheus.
pub trait RequestObserver: Send + Sync {
    /// `outcome` is `ok` or the error class.
    fn observe(
        &self,
        vendor: &'static str,
        action: &str,
        outcome: &str,
        elapsed: std::time::Duration,
    );
}

/// Observes nothing: for one-shot commands such as `certkeeper plan`.
impl RequestObserver for () {
    fn observe(&self, _: &'static str, _: &str, _: &str, _: std::time::Duration) {}
}

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
