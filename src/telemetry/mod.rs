//! Telemetry: logs (tracing, human on a terminal, JSON otherwise), Prometheus metrics and
//! typed events.

pub mod logging;
pub mod metrics;
pub mod server;

/// Sees every vendor API call once it has an answer: how metrics are layered onto the vendor
/// clients (`cloud::http::observed`) without the vendor folders knowing about Prometheus.
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
