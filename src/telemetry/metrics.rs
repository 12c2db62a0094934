//! The Prometheus metric families certkeeper exports. Names follow
//! `certkeeper_<noun>_<unit>[_total]`; labels are configured names and enums only, never error
//! text or secrets, so their number stays bounded by the config.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every family, registered on one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub certificate_expiration: GaugeVec,
    pub certificate_renewal: GaugeVec,
    pub target_certificate_expiration: GaugeVec,
    pub target_in_sync: IntGaugeVec,
    pub deployments: IntCounterVec,
    pub errors: IntCounterVec,
    pub renewals: IntCounterVec,
    pub policy_compliant: IntGaugeVec,
    pub policy_remediations: IntCounterVec,
    pub cloud_requests: IntCounterVec,
    pub cloud_request_duration: HistogramVec,
    pub retry_pending: IntGaugeVec,
    pub last_reconcile: IntGauge,
    pub config_reloads: IntCounterVec,
    pub build_info: IntGaugeVec,
}

/// Why the metrics could not be set up or encoded (a programming error in names or labels).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Counts one failed call in `certkeeper_errors_total` (codes outside the vendors'
    /// documented tables are labelled `other`, so a server cannot grow the series).
    pub fn count_error(&self, error: &crate::error::CloudError) {
        self.errors
            .with_label_values(&[
                error.vendor,
                &error.operation,
                error.class.as_str(),
                crate::cloud::code_label(error.vendor, &error.code),
            ])
            .inc();
    }

    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, MetricsError> {
            let family = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(family.clone()))?;
            Ok(family)
        };
        let int_gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, MetricsError> {
                let family = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(family.clone()))?;
                Ok(family)
            };
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let family = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(family.clone()))?;
                Ok(family)
            };
        let cloud_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "certkeeper_cloud_request_duration_seconds",
                "Duration of cloud API calls.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["vendor", "action"],
        )?;
        registry.register(Box::new(cloud_request_duration.clone()))?;
        let last_reconcile = IntGauge::new(
            "certkeeper_last_reconcile_timestamp_seconds",
            "When the last reconcile pass finished (Unix time).",
        )?;
        registry.register(Box::new(last_reconcile.clone()))?;
        let metrics = Self {
            certificate_expiration: gauge(
                "certkeeper_certificate_expiration_timestamp_seconds",
                "Expiry of the newest stored version of each certificate (Unix time).",
                &["certificate"],
            )?,
            certificate_renewal: gauge(
                "certkeeper_certificate_renewal_timestamp_seconds",
                "When each certificate is due for renewal (Unix time).",
                &["certificate"],
            )?,
            target_certificate_expiration: gauge(
                "certkeeper_target_certificate_expiration_timestamp_seconds",
                "Expiry of the certificate each target actually serves (Unix time).",
                &["target", "kind"],
            )?,
            target_in_sync: int_gauge(
                "certkeeper_target_in_sync",
                "1 when the target serves the desired certificate.",
                &["target", "kind"],
            )?,
            deployments: counter("certkeeper_deployments_total", "Deploy attempts by result.", &["target", "kind", "result"])?,
            errors: counter(
                "certkeeper_errors_total",
                "Errors by vendor, operation, class and vendor code (`other` for codes outside the tables).",
                &["vendor", "operation", "class", "code"],
            )?,
            renewals: counter("certkeeper_renewals_total", "Renewals by source and result.", &["certificate", "source", "result"])?,
            policy_compliant: int_gauge(
                "certkeeper_policy_compliant",
                "1 when the resource complies with the policy.",
                &["policy", "resource"],
            )?,
            policy_remediations: counter(
                "certkeeper_policy_remediations_total",
                "Policy remediations by result.",
                &["policy", "result"],
            )?,
            cloud_requests: counter(
                "certkeeper_cloud_requests_total",
                "Cloud API calls by vendor, action and outcome.",
                &["vendor", "action", "outcome"],
            )?,
            cloud_request_duration,
            retry_pending: int_gauge("certkeeper_retry_pending", "Operations waiting for a retry, by error class.", &["class"])?,
            last_reconcile,
            config_reloads: counter("certkeeper_config_reloads_total", "Config reloads by result.", &["result"])?,
            build_info: int_gauge("certkeeper_build_info", "Always 1; the version is a label.", &["version"])?,
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for class in crate::error::ErrorClass::ALL {
            metrics
                .retry_pending
                .with_label_values(&[class.as_str()])
                .set(0);
        }
        Ok(metrics)
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// Names of every registered family, with or without samples (for the alert and
    /// dashboard coverage test). Histograms also export `_bucket`, `_sum` and `_count`.
    pub fn family_names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 15] = [
            &self.certificate_expiration,
            &self.certificate_renewal,
            &self.target_certificate_expiration,
            &self.target_in_sync,
            &self.deployments,
            &self.errors,
            &self.renewals,
            &self.policy_compliant,
            &self.policy_remediations,
            &self.cloud_requests,
            &self.cloud_request_duration,
            &self.retry_pending,
            &self.last_reconcile,
            &self.config_reloads,
            &self.build_info,
        ];
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|collector| collector.desc())
            .map(|desc| desc.fq_name.clone())
            .collect();
        for suffix in ["_bucket", "_sum", "_count"] {
            names.push(format!("certkeeper_cloud_request_duration_seconds{suffix}"));
        }
        names
    }
}

impl crate::cloud::http::RequestObserver for Metrics {
    fn observe(
        &self,
        vendor: &'static str,
        action: &str,
        outcome: &str,
        elapsed: std::time::Duration,
    ) {
        self.cloud_requests
            .with_label_values(&[vendor, action, outcome])
            .inc();
        self.cloud_request_duration
            .with_label_values(&[vendor, action])
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_build_info_and_families() {
        let metrics = Metrics::new().unwrap();
        metrics
            .target_in_sync
            .with_label_values(&["cdn-www", "alibaba-cdn"])
            .set(1);
        let text = metrics.encode().unwrap();
        assert!(text.contains("certkeeper_build_info{version=\""), "{text}");
        assert!(
            text.contains("certkeeper_target_in_sync{kind=\"alibaba-cdn\",target=\"cdn-www\"} 1"),
            "{text}"
        );
        assert!(text.contains("certkeeper_retry_pending{class=\"busy\"} 0"));
    }
}
