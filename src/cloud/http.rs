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
