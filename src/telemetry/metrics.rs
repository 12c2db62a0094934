//! The Prometheus metric families certkeeper exports. Names follow
//! `certkeeper_<noun>_<unit>[_total]`; labels are configured names and enums only, never error
//! text or secrets, so their number stays bounded by the config.

use crate::error::ErrorClass;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::collections::{HashMap, HashSet};

/// Every family: the per-target ones in one compact [`TargetTable`], the rest registered on
/// one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// One row per target behind every `certkeeper_target_*` family and
    /// `certkeeper_deployments_total`, rendered at each scrape.
    targets: TargetTable,
    pub certificate_expiration: GaugeVec,
    pub certificate_renewal: GaugeVec,
    pub certificate_not_before: GaugeVec,
    pub certificate_consecutive_failures: IntGaugeVec,
    pub certificate_last_success: GaugeVec,
    pub certificate_last_error: IntGaugeVec,
    pub target_certificate_expiration: TargetGauge,
    pub target_certificate_not_before: TargetGauge,
    pub target_in_sync: TargetIntGauge,
    pub target_consecutive_failures: TargetIntGauge,
    pub target_last_success: TargetGauge,
    pub target_parked: TargetIntGauge,
    pub target_last_error: TargetIntGauge,
    pub deployments: TargetCounter,
    pub errors: IntCounterVec,
    pub renewals: IntCounterVec,
    pub policy_compliant: IntGaugeVec,
    pub policy_last_check: GaugeVec,
    pub policy_consecutive_failures: IntGaugeVec,
    pub policy_remediation_overdue: IntGaugeVec,
    pub policy_last_error: IntGaugeVec,
    pub policy_remediations: IntCounterVec,
    pub cloud_requests: IntCounterVec,
    pub cloud_request_duration: HistogramVec,
    pub retry_pending: IntGaugeVec,
    pub last_reconcile: IntGauge,
    pub pass_running: prometheus::Gauge,
    /// When the running pass started (`None` while idle); read at each scrape.
    pass_started: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    pub config_reloads: IntCounterVec,
    pub build_info: IntGaugeVec,
    /// 1 while this instance leads (holds the shared store's lease; always with SQLite).
    pub leader: IntGauge,
    /// 1 when the last load of the config file (start or reload) was taken, 0 when refused.
    pub config_last_reload_successful: IntGauge,
    /// When the daemon last took a config file (start or reload), Unix seconds.
    pub config_last_reload_timestamp: IntGauge,
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
                error.code_label(),
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
        let single_gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
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
        let pass_running = prometheus::Gauge::new(
            "certkeeper_pass_running_seconds",
            "How long the current reconcile pass has run (0 while idle).",
        )?;
        registry.register(Box::new(pass_running.clone()))?;
        let targets = TargetTable::default();
        let leader = IntGauge::new(
            "certkeeper_leader",
            "1 while this instance leads (holds the shared store's leader lease), else 0.",
        )?;
        registry.register(Box::new(leader.clone()))?;
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
            certificate_not_before: gauge(
                "certkeeper_certificate_not_before_timestamp_seconds",
                "Start of validity of the newest stored version of each certificate (Unix time).",
                &["certificate"],
            )?,
            certificate_consecutive_failures: int_gauge(
                "certkeeper_certificate_consecutive_failures",
                "Obtain or import failures since the last success (0 when healthy).",
                &["certificate"],
            )?,
            certificate_last_success: gauge(
                "certkeeper_certificate_last_success_timestamp_seconds",
                "When a version was last obtained or imported (Unix time, 0 = never).",
                &["certificate"],
            )?,
            certificate_last_error: int_gauge(
                "certkeeper_certificate_last_error_info",
                "1 for the class of the last error while the certificate is failing.",
                &["certificate", "class"],
            )?,
            target_certificate_expiration: targets.gauge(Column::Expiration),
            target_certificate_not_before: targets.gauge(Column::NotBefore),
            target_in_sync: targets.int_gauge(Column::InSync),
            target_consecutive_failures: targets.int_gauge(Column::ConsecutiveFailures),
            target_last_success: targets.gauge(Column::LastSuccess),
            target_parked: targets.int_gauge(Column::Parked),
            target_last_error: targets.int_gauge(Column::LastError),
            deployments: TargetCounter(targets.clone()),
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
            policy_last_check: gauge(
                "certkeeper_policy_last_check_timestamp_seconds",
                "When the resource's last check completed (Unix time, 0 = never).",
                &["policy", "resource"],
            )?,
            policy_consecutive_failures: int_gauge(
                "certkeeper_policy_consecutive_failures",
                "Failed checks or remediations since the last success (0 when healthy).",
                &["policy", "resource"],
            )?,
            policy_remediation_overdue: int_gauge(
                "certkeeper_policy_remediation_overdue",
                "1 when the resource is non-compliant and a human must act (audit mode) or a maintenance window closed without correcting it.",
                &["policy", "resource"],
            )?,
            policy_last_error: int_gauge(
                "certkeeper_policy_last_error_info",
                "1 for the class of the last error while the resource is failing.",
                &["policy", "resource", "class"],
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
            pass_running,
            pass_started: Default::default(),
            config_reloads: counter("certkeeper_config_reloads_total", "Config reloads by result.", &["result"])?,
            build_info: int_gauge("certkeeper_build_info", "Always 1; the version is a label.", &["version"])?,
            leader,
            config_last_reload_successful: single_gauge(
                "certkeeper_config_last_reload_successful",
                "1 when the last config load or reload was taken, 0 when it was refused (the previous config keeps running).",
            )?,
            config_last_reload_timestamp: single_gauge(
                "certkeeper_config_last_reload_timestamp_seconds",
                "When the config now running was loaded (start or successful reload), Unix time.",
            )?,
            registry,
            targets,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // No reload refused yet (the start sets the timestamp once the config is loaded).
        metrics.config_last_reload_successful.set(1);
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
        let started = *self
            .pass_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.pass_running
            .set(started.map_or(0.0, |started| started.elapsed().as_secs_f64()));
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text)?;
        self.targets.encode(&mut text);
        Ok(text)
    }

    /// Names of every registered family, with or without samples (for the alert and
    /// dashboard coverage test). Histograms also export `_bucket`, `_sum` and `_count`.
    pub fn family_names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 24] = [
            &self.certificate_expiration,
            &self.certificate_renewal,
            &self.certificate_not_before,
            &self.certificate_consecutive_failures,
            &self.certificate_last_success,
            &self.certificate_last_error,
            &self.policy_last_check,
            &self.policy_consecutive_failures,
            &self.policy_remediation_overdue,
            &self.policy_last_error,
            &self.errors,
            &self.renewals,
            &self.policy_compliant,
            &self.policy_remediations,
            &self.cloud_requests,
            &self.cloud_request_duration,
            &self.retry_pending,
            &self.last_reconcile,
            &self.pass_running,
            &self.config_reloads,
            &self.build_info,
            &self.leader,
            &self.config_last_reload_successful,
            &self.config_last_reload_timestamp,
        ];
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|collector| collector.desc())
            .map(|desc| desc.fq_name.clone())
            .chain(TARGET_FAMILIES.iter().map(|family| family.name.to_owned()))
            .collect();
        for suffix in ["_bucket", "_sum", "_count"] {
            names.push(format!("certkeeper_cloud_request_duration_seconds{suffix}"));
        }
        names
    }
}

/// When a certificate is valid, as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// A run of failures: how many since the last success, and the class of the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failing {
    pub consecutive: u32,
    pub class: ErrorClass,
}

/// Everything the state gauges say about one certificate (see METRICS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateState {
    /// The newest stored version, if any.
    pub newest: Option<Validity>,
    /// Its planned renewal; 0 ("due now") when there is no version yet.
    pub renewal_at: i64,
    /// The last successful obtain or import (0 = never).
    pub last_success: i64,
    pub failing: Option<Failing>,
}

/// Everything the state gauges say about one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetState {
    pub in_sync: bool,
    /// What the target serves, when known.
    pub served: Option<Validity>,
    /// The last time it was proven in sync (0 = never).
    pub last_success: i64,
    pub parked: bool,
    pub failing: Option<Failing>,
}

/// Everything the state gauges say about one policy resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyResourceState {
    pub compliant: bool,
    /// The last completed check (0 = never).
    pub last_check: i64,
    pub remediation_overdue: bool,
    pub failing: Option<Failing>,
}

/// The configured objects whose series should exist; everything else is removed by
/// [`Metrics::retain_objects`].
#[derive(Debug, Default, Clone)]
pub struct Configured {
    pub certificates: HashSet<String>,
    /// `(target, kind)`.
    pub targets: HashSet<(String, String)>,
    /// `(policy, resource)`.
    pub resources: HashSet<(String, String)>,
}

/// Removes the series of `family` whose labels `keep` refuses.
fn retain_series<T: prometheus::core::MetricVecBuilder>(
    family: &prometheus::core::MetricVec<T>,
    keep: &dyn Fn(&HashMap<&str, &str>) -> bool,
) {
    use prometheus::core::Collector;
    for gathered in family.collect() {
        for metric in gathered.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            if !keep(&labels) {
                // Just gathered, so present; a concurrent removal is harmless.
                let _ = family.remove(&labels);
            }
        }
    }
}

/// Sets `family{labels..., class}` to 1 for `class` and removes the other classes' series, so
/// one object never has two `last_error_info` series (`None` removes them all).
fn set_error_class(family: &IntGaugeVec, labels: &[&str], class: Option<ErrorClass>) {
    for other in ErrorClass::ALL {
        if Some(other) != class {
            let mut values = labels.to_vec();
            values.push(other.as_str());
            // Absent is the usual case.
            let _ = family.remove_label_values(&values);
        }
    }
    if let Some(class) = class {
        let mut values = labels.to_vec();
        values.push(class.as_str());
        family.with_label_values(&values).set(1);
    }
}

fn set_or_remove(family: &GaugeVec, labels: &[&str], value: Option<i64>) {
    match value {
        Some(value) => family.with_label_values(labels).set(value as f64),
        None => {
            let _ = family.remove_label_values(labels);
        }
    }
}

/// Marks a reconcile pass as running until dropped (`certkeeper_pass_running_seconds`).
#[must_use = "the pass counts as running only while the guard lives"]
pub struct PassRunning(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

impl Drop for PassRunning {
    fn drop(&mut self) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

impl Metrics {
    /// Starts the clock of `certkeeper_pass_running_seconds`; it stops when the guard drops.
    pub fn pass_running(&self) -> PassRunning {
        *self
            .pass_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(std::time::Instant::now());
        PassRunning(self.pass_started.clone())
    }
}

/// The state gauges, set whole (at start and reload, from the store) or one outcome at a
/// time (by the pass, where the outcome is decided).
impl Metrics {
    /// Every gauge of one certificate.
    pub fn set_certificate_state(&self, certificate: &str, state: &CertificateState) {
        self.set_certificate_version(certificate, state.newest, state.renewal_at);
        let labels = [certificate];
        self.certificate_last_success
            .with_label_values(&labels)
            .set(state.last_success as f64);
        self.set_certificate_failing(certificate, state.failing);
    }

    /// The newest version's validity (absent without one) and its planned renewal.
    pub fn set_certificate_version(
        &self,
        certificate: &str,
        newest: Option<Validity>,
        renewal_at: i64,
    ) {
        let labels = [certificate];
        set_or_remove(
            &self.certificate_expiration,
            &labels,
            newest.map(|validity| validity.not_after),
        );
        set_or_remove(
            &self.certificate_not_before,
            &labels,
            newest.map(|validity| validity.not_before),
        );
        self.certificate_renewal
            .with_label_values(&labels)
            .set(renewal_at as f64);
    }

    /// An obtain or import succeeded at `at`.
    pub fn certificate_succeeded(&self, certificate: &str, at: i64) {
        self.certificate_last_success
            .with_label_values(&[certificate])
            .set(at as f64);
        self.set_certificate_failing(certificate, None);
    }

    /// The failure run of a certificate (`None`: healthy).
    pub fn set_certificate_failing(&self, certificate: &str, failing: Option<Failing>) {
        self.certificate_consecutive_failures
            .with_label_values(&[certificate])
            .set(failing.map_or(0, |failing| i64::from(failing.consecutive)));
        set_error_class(
            &self.certificate_last_error,
            &[certificate],
            failing.map(|failing| failing.class),
        );
    }

    /// Every gauge of one target.
    pub fn set_target_state(&self, target: &str, kind: &str, state: &TargetState) {
        self.targets.update(target, kind, |row| {
            row.in_sync = Some(i64::from(state.in_sync));
            row.set_served(state.served);
            row.last_success = Some(state.last_success as f64);
            row.set_failing(state.failing, state.parked);
        });
    }

    /// What the target serves: both timestamps when known, neither when not.
    pub fn set_target_served(&self, target: &str, kind: &str, served: Option<Validity>) {
        self.targets
            .update(target, kind, |row| row.set_served(served));
    }

    /// A read proved the target serves the desired version at `at`.
    pub fn target_proven_in_sync(&self, target: &str, kind: &str, at: i64) {
        self.targets.update(target, kind, |row| {
            row.in_sync = Some(1);
            row.last_success = Some(at as f64);
            row.set_failing(None, false);
        });
    }

    /// The target does not (or is not known to) serve the desired version.
    pub fn target_not_in_sync(&self, target: &str, kind: &str) {
        self.targets
            .update(target, kind, |row| row.in_sync = Some(0));
    }

    /// The failure run of a target (`None`: healthy) and whether it is parked.
    pub fn set_target_failing(
        &self,
        target: &str,
        kind: &str,
        failing: Option<Failing>,
        parked: bool,
    ) {
        self.targets
            .update(target, kind, |row| row.set_failing(failing, parked));
    }

    /// Every gauge of one policy resource.
    pub fn set_policy_resource_state(
        &self,
        policy: &str,
        resource: &str,
        state: &PolicyResourceState,
    ) {
        let labels = [policy, resource];
        self.policy_compliant
            .with_label_values(&labels)
            .set(i64::from(state.compliant));
        self.policy_last_check
            .with_label_values(&labels)
            .set(state.last_check as f64);
        self.policy_remediation_overdue
            .with_label_values(&labels)
            .set(i64::from(state.remediation_overdue));
        self.policy_consecutive_failures
            .with_label_values(&labels)
            .set(
                state
                    .failing
                    .map_or(0, |failing| i64::from(failing.consecutive)),
            );
        set_error_class(
            &self.policy_last_error,
            &labels,
            state.failing.map(|failing| failing.class),
        );
    }

    /// Removes every per-object series of an object not in `configured` (after a reload).
    pub fn retain_objects(&self, configured: &Configured) {
        let certificate = |labels: &HashMap<&str, &str>| {
            labels
                .get("certificate")
                .is_some_and(|name| configured.certificates.contains(*name))
        };
        let resource =
            |labels: &HashMap<&str, &str>| match (labels.get("policy"), labels.get("resource")) {
                (Some(policy), Some(resource)) => configured
                    .resources
                    .contains(&((*policy).to_owned(), (*resource).to_owned())),
                _ => false,
            };
        for family in [
            &self.certificate_expiration,
            &self.certificate_renewal,
            &self.certificate_not_before,
            &self.certificate_last_success,
        ] {
            retain_series(family, &certificate);
        }
        retain_series(&self.certificate_consecutive_failures, &certificate);
        retain_series(&self.certificate_last_error, &certificate);
        self.targets.retain(|target, kind| {
            configured
                .targets
                .contains(&(target.to_owned(), kind.to_owned()))
        });
        for family in [
            &self.policy_compliant,
            &self.policy_consecutive_failures,
            &self.policy_remediation_overdue,
            &self.policy_last_error,
        ] {
            retain_series(family, &resource);
        }
        retain_series(&self.policy_last_check, &resource);
    }
}

/// One family rendered from the [`TargetTable`].
struct TargetFamily {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

/// The per-target families in the order of [`Column`], then `certkeeper_deployments_total`.
const TARGET_FAMILIES: [TargetFamily; 8] = [
    TargetFamily {
        name: "certkeeper_target_certificate_expiration_timestamp_seconds",
        help: "Expiry of the certificate each target actually serves (Unix time).",
        kind: "gauge",
    },
    TargetFamily {
        name: "certkeeper_target_certificate_not_before_timestamp_seconds",
        help: "Start of validity of the certificate each target actually serves (Unix time).",
        kind: "gauge",
    },
    TargetFamily {
        name: "certkeeper_target_in_sync",
        help: "1 when a read proved the target serves the desired certificate, else 0.",
        kind: "gauge",
    },
    TargetFamily {
        name: "certkeeper_target_consecutive_failures",
        help: "Failed reads or deploys since the last success (0 when healthy).",
        kind: "gauge",
    },
    TargetFamily {
        name: "certkeeper_target_last_success_timestamp_seconds",
        help: "When the target was last proven in sync (Unix time, 0 = never).",
        kind: "gauge",
    },
    TargetFamily {
        name: "certkeeper_target_parked",
        help: "1 when the target is parked until its certificate or config changes (a human must act).",
        kind: "gauge",
    },
    TargetFamily {
        name: "certkeeper_target_last_error_info",
        help: "1 for the class of the last error while the target is failing.",
        kind: "gauge",
    },
    TargetFamily {
        name: "certkeeper_deployments_total",
        help: "Deploy attempts by result.",
        kind: "counter",
    },
];

/// A per-target gauge family: a column of the [`TargetTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Expiration,
    NotBefore,
    InSync,
    ConsecutiveFailures,
    LastSuccess,
    Parked,
    /// `certkeeper_target_last_error_info{target, kind, class}`: one class per target.
    LastError,
}

/// Everything exported about one target. A value is `None` while its series is absent.
#[derive(Debug, Default)]
struct TargetRow {
    expiration: Option<f64>,
    not_before: Option<f64>,
    last_success: Option<f64>,
    in_sync: Option<i64>,
    consecutive_failures: Option<i64>,
    parked: Option<i64>,
    last_error: Option<(ErrorClass, i64)>,
    /// `certkeeper_deployments_total` by result (`success`, `failure`).
    deployments: Vec<(Box<str>, u64)>,
}

impl TargetRow {
    fn set_served(&mut self, served: Option<Validity>) {
        self.expiration = served.map(|validity| validity.not_after as f64);
        self.not_before = served.map(|validity| validity.not_before as f64);
    }

    fn set_failing(&mut self, failing: Option<Failing>, parked: bool) {
        if failing.is_some() {
            self.in_sync = Some(0);
        }
        self.consecutive_failures =
            Some(failing.map_or(0, |failing| i64::from(failing.consecutive)));
        self.parked = Some(i64::from(parked));
        self.last_error = failing.map(|failing| (failing.class, 1));
    }

    fn float(&self, column: Column) -> Option<f64> {
        match column {
            Column::Expiration => self.expiration,
            Column::NotBefore => self.not_before,
            Column::LastSuccess => self.last_success,
            Column::InSync => self.in_sync.map(|value| value as f64),
            Column::ConsecutiveFailures => self.consecutive_failures.map(|value| value as f64),
            Column::Parked => self.parked.map(|value| value as f64),
            Column::LastError => self.last_error.map(|(_, value)| value as f64),
        }
    }

    fn set_float(&mut self, column: Column, class: Option<ErrorClass>, value: f64) {
        match column {
            Column::Expiration => self.expiration = Some(value),
            Column::NotBefore => self.not_before = Some(value),
            Column::LastSuccess => self.last_success = Some(value),
            Column::InSync => self.in_sync = Some(value as i64),
            Column::ConsecutiveFailures => self.consecutive_failures = Some(value as i64),
            Column::Parked => self.parked = Some(value as i64),
            Column::LastError => self.last_error = class.map(|class| (class, value as i64)),
        }
    }

    fn clear(&mut self, column: Column, class: Option<ErrorClass>) {
        match column {
            Column::Expiration => self.expiration = None,
            Column::NotBefore => self.not_before = None,
            Column::LastSuccess => self.last_success = None,
            Column::InSync => self.in_sync = None,
            Column::ConsecutiveFailures => self.consecutive_failures = None,
            Column::Parked => self.parked = None,
            Column::LastError => {
                if self.last_error.map(|(set, _)| Some(set)) == Some(class) {
                    self.last_error = None;
                }
            }
        }
    }
}

/// The rows, by target name and interned kind, sorted so a scrape reads in a stable order.
#[derive(Debug, Default)]
struct TargetRows {
    /// The few distinct kinds (`file`, `alibaba-cdn`, ...), each stored once.
    kinds: Vec<Box<str>>,
    rows: std::collections::BTreeMap<(Box<str>, u8), TargetRow>,
}

impl TargetRows {
    fn kind_index(&mut self, kind: &str) -> u8 {
        match self.kinds.iter().position(|known| &**known == kind) {
            Some(index) => index as u8,
            None => {
                // Kinds are the configured target kinds (a dozen); u8 is plenty, and the
                // last slot absorbs anything beyond rather than panicking.
                if self.kinds.len() < usize::from(u8::MAX) {
                    self.kinds.push(kind.into());
                }
                (self.kinds.len() - 1) as u8
            }
        }
    }

    fn find(&self, target: &str, kind: &str) -> Option<&TargetRow> {
        let kind = self.kinds.iter().position(|known| &**known == kind)? as u8;
        self.rows.get(&(Box::from(target), kind))
    }
}

/// The per-target series of every `certkeeper_target_*` family and of
/// `certkeeper_deployments_total`: one row of plain numbers per target, rendered as text at
/// each scrape. Registered prometheus series cost ≈ 0.5 KiB each (label pairs as owned
/// strings, a hash map entry, an atomic); eight families over 10,000 targets were 80,000.
#[derive(Debug, Clone, Default)]
pub struct TargetTable(std::sync::Arc<std::sync::Mutex<TargetRows>>);

impl TargetTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, TargetRows> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, target: &str, kind: &str, change: impl FnOnce(&mut TargetRow)) {
        let mut rows = self.lock();
        let kind = rows.kind_index(kind);
        change(rows.rows.entry((target.into(), kind)).or_default());
    }

    fn gauge(&self, column: Column) -> TargetGauge {
        TargetGauge(TargetIntGauge {
            table: self.clone(),
            column,
        })
    }

    fn int_gauge(&self, column: Column) -> TargetIntGauge {
        TargetIntGauge {
            table: self.clone(),
            column,
        }
    }

    /// Keeps the rows `keep(target, kind)` accepts.
    fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut rows = self.lock();
        let TargetRows { kinds, rows } = &mut *rows;
        rows.retain(|(target, kind), _| {
            keep(
                target,
                kinds.get(usize::from(*kind)).map_or("", |kind| kind),
            )
        });
    }

    /// Appends every family with at least one series in the text exposition format.
    fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        let rows = self.lock();
        let kind_of = |index: u8| rows.kinds.get(usize::from(index)).map_or("", |kind| kind);
        // `write!` to a String cannot fail.
        let header = |out: &mut String, family: &TargetFamily| {
            let _ = write!(
                out,
                "# HELP {} {}\n# TYPE {} {}\n",
                family.name, family.help, family.name, family.kind
            );
        };
        let columns = [
            Column::Expiration,
            Column::NotBefore,
            Column::InSync,
            Column::ConsecutiveFailures,
            Column::LastSuccess,
            Column::Parked,
            Column::LastError,
        ];
        for (column, family) in columns.into_iter().zip(&TARGET_FAMILIES) {
            let mut present = rows
                .rows
                .iter()
                .filter_map(|(key, row)| Some((key, row, row.float(column)?)))
                .peekable();
            if present.peek().is_none() {
                continue;
            }
            header(out, family);
            for ((target, kind), row, value) in present {
                out.push_str(family.name);
                out.push('{');
                if let (Column::LastError, Some((class, _))) = (column, row.last_error) {
                    let _ = write!(out, "class=\"{}\",", class.as_str());
                }
                let _ = writeln!(
                    out,
                    "kind=\"{}\",target=\"{}\"}} {value}",
                    escape_label(kind_of(*kind)),
                    escape_label(target)
                );
            }
        }
        let family = &TARGET_FAMILIES[7];
        let mut first = true;
        for ((target, kind), row) in &rows.rows {
            for (result, count) in &row.deployments {
                if std::mem::take(&mut first) {
                    header(out, family);
                }
                let _ = writeln!(
                    out,
                    "{}{{kind=\"{}\",result=\"{}\",target=\"{}\"}} {count}",
                    family.name,
                    escape_label(kind_of(*kind)),
                    escape_label(result),
                    escape_label(target)
                );
            }
        }
    }
}

/// A label value in the text format: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped.into()
}

/// The labels `[target, kind]` (and `class` or `result` third) of a per-target series; a
/// missing label reads as empty rather than panicking.
fn target_labels<'a>(labels: &[&'a str]) -> (&'a str, &'a str, &'a str) {
    let label = |index: usize| labels.get(index).copied().unwrap_or_default();
    (label(0), label(1), label(2))
}

/// An integer per-target family (`certkeeper_target_in_sync`, ...), with the part of
/// prometheus' `IntGaugeVec` the engine uses.
#[derive(Debug, Clone)]
pub struct TargetIntGauge {
    table: TargetTable,
    column: Column,
}

/// One series of a [`TargetIntGauge`] or [`TargetGauge`].
pub struct TargetCell<'a> {
    family: &'a TargetIntGauge,
    target: &'a str,
    kind: &'a str,
    /// The `class` label of `certkeeper_target_last_error_info`.
    class: Option<ErrorClass>,
}

impl TargetIntGauge {
    pub fn with_label_values<'a>(&'a self, labels: &[&'a str]) -> TargetCell<'a> {
        let (target, kind, class) = target_labels(labels);
        TargetCell {
            family: self,
            target,
            kind,
            class: ErrorClass::parse(class),
        }
    }

    /// Removes one series (absent is fine).
    pub fn remove_label_values(&self, labels: &[&str]) {
        let (target, kind, class) = target_labels(labels);
        let class = ErrorClass::parse(class);
        self.table
            .update(target, kind, |row| row.clear(self.column, class));
    }
}

impl TargetCell<'_> {
    fn set_float(&self, value: f64) {
        let (column, class) = (self.family.column, self.class);
        self.family.table.update(self.target, self.kind, |row| {
            row.set_float(column, class, value)
        });
    }

    fn get_float(&self) -> f64 {
        let rows = self.family.table.lock();
        let Some(row) = rows.find(self.target, self.kind) else {
            return 0.0;
        };
        match (self.family.column, row.last_error) {
            (Column::LastError, Some((class, _))) if Some(class) != self.class => 0.0,
            (column, _) => row.float(column).unwrap_or(0.0),
        }
    }

    pub fn set(&self, value: i64) {
        self.set_float(value as f64);
    }

    /// 0 when the series is absent.
    pub fn get(&self) -> i64 {
        self.get_float() as i64
    }
}

/// A floating-point per-target family (timestamps), with the part of prometheus'
/// `GaugeVec` the engine uses.
#[derive(Debug, Clone)]
pub struct TargetGauge(TargetIntGauge);

/// One series of a [`TargetGauge`].
pub struct TargetGaugeCell<'a>(TargetCell<'a>);

impl TargetGauge {
    pub fn with_label_values<'a>(&'a self, labels: &[&'a str]) -> TargetGaugeCell<'a> {
        TargetGaugeCell(self.0.with_label_values(labels))
    }

    /// Removes one series (absent is fine).
    pub fn remove_label_values(&self, labels: &[&str]) {
        self.0.remove_label_values(labels);
    }
}

impl TargetGaugeCell<'_> {
    pub fn set(&self, value: f64) {
        self.0.set_float(value);
    }

    /// 0 when the series is absent.
    pub fn get(&self) -> f64 {
        self.0.get_float()
    }
}

/// `certkeeper_deployments_total{target, kind, result}`, with the part of prometheus'
/// `IntCounterVec` the engine uses.
#[derive(Debug, Clone)]
pub struct TargetCounter(TargetTable);

/// One series of the [`TargetCounter`].
pub struct TargetCounterCell<'a> {
    table: &'a TargetTable,
    labels: (&'a str, &'a str, &'a str),
}

impl TargetCounter {
    pub fn with_label_values<'a>(&'a self, labels: &[&'a str]) -> TargetCounterCell<'a> {
        TargetCounterCell {
            table: &self.0,
            labels: target_labels(labels),
        }
    }
}

impl TargetCounterCell<'_> {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, by: u64) {
        let (target, kind, result) = self.labels;
        self.table.update(target, kind, |row| {
            match row
                .deployments
                .iter_mut()
                .find(|(known, _)| &**known == result)
            {
                Some((_, count)) => *count += by,
                None => row.deployments.push((result.into(), by)),
            }
        });
    }

    /// 0 when the series is absent.
    pub fn get(&self) -> u64 {
        let (target, kind, result) = self.labels;
        let rows = self.table.lock();
        rows.find(target, kind)
            .and_then(|row| row.deployments.iter().find(|(known, _)| &**known == result))
            .map_or(0, |(_, count)| *count)
    }
}

impl super::RequestObserver for Metrics {
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

impl Metrics {
    /// Records the outcome of loading the config file at `at` (Unix seconds): a taken
    /// config sets the timestamp, a refused one only clears the success gauge (the running
    /// config is still the one loaded then).
    pub fn config_load(&self, successful: bool, at: i64) {
        self.config_last_reload_successful
            .set(i64::from(successful));
        if successful {
            self.config_last_reload_timestamp.set(at);
        }
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

    #[test]
    fn one_error_class_per_object_and_removed_objects_disappear() {
        let metrics = Metrics::new().unwrap();
        let failing = |class| {
            Some(Failing {
                consecutive: 2,
                class,
            })
        };
        metrics.set_target_failing("cdn", "alibaba-cdn", failing(ErrorClass::Busy), false);
        metrics.set_target_failing("cdn", "alibaba-cdn", failing(ErrorClass::Auth), false);
        metrics.set_certificate_state(
            "www",
            &CertificateState {
                newest: None,
                renewal_at: 0,
                last_success: 0,
                failing: failing(ErrorClass::Invalid),
            },
        );
        metrics.set_policy_resource_state(
            "ssl",
            "db-1",
            &PolicyResourceState {
                compliant: false,
                last_check: 5,
                remediation_overdue: true,
                failing: None,
            },
        );
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            "certkeeper_target_last_error_info{class=\"auth\",kind=\"alibaba-cdn\",target=\"cdn\"} 1"
        ));
        assert!(!text.contains("class=\"busy\",kind"), "{text}");
        assert!(text.contains("certkeeper_target_in_sync{kind=\"alibaba-cdn\",target=\"cdn\"} 0"));
        assert!(text
            .contains("certkeeper_certificate_renewal_timestamp_seconds{certificate=\"www\"} 0"));
        assert!(!text.contains("certkeeper_certificate_expiration_timestamp_seconds{"));
        assert!(text
            .contains("certkeeper_policy_remediation_overdue{policy=\"ssl\",resource=\"db-1\"} 1"));

        metrics.target_proven_in_sync("cdn", "alibaba-cdn", 7);
        let text = metrics.encode().unwrap();
        assert!(
            !text.contains("certkeeper_target_last_error_info{"),
            "{text}"
        );
        assert!(text.contains("certkeeper_target_last_success_timestamp_seconds{kind=\"alibaba-cdn\",target=\"cdn\"} 7"));

        metrics.retain_objects(&Configured {
            certificates: ["www".to_owned()].into(),
            ..Configured::default()
        });
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            "certkeeper_certificate_last_error_info{certificate=\"www\",class=\"invalid\"} 1"
        ));
        for gone in ["target=\"cdn\"", "resource=\"db-1\""] {
            assert!(!text.contains(gone), "{gone} left in {text}");
        }
    }

    #[test]
    fn target_rows_render_like_registered_series() {
        let metrics = Metrics::new().unwrap();
        let odd = "a\"b\\c\nd";
        metrics
            .deployments
            .with_label_values(&[odd, "file", "success"])
            .inc();
        metrics
            .deployments
            .with_label_values(&[odd, "file", "success"])
            .inc();
        metrics
            .deployments
            .with_label_values(&["cdn", "alibaba-cdn", "failure"])
            .inc();
        metrics.set_target_served(
            "cdn",
            "alibaba-cdn",
            Some(Validity {
                not_before: 1_700_000_000,
                not_after: 1_800_000_000,
            }),
        );
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                "certkeeper_deployments_total{kind=\"file\",result=\"success\",target=\"a\\\"b\\\\c\\nd\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "certkeeper_deployments_total{kind=\"alibaba-cdn\",result=\"failure\",target=\"cdn\"} 1"
        ));
        assert!(text.contains("# TYPE certkeeper_deployments_total counter\n"));
        assert!(text.contains(
            "certkeeper_target_certificate_expiration_timestamp_seconds{kind=\"alibaba-cdn\",target=\"cdn\"} 1800000000\n"
        ));
        // A family with no series has no header either, as with registered families.
        assert!(!text.contains("certkeeper_target_parked"), "{text}");
        assert_eq!(
            metrics
                .deployments
                .with_label_values(&[odd, "file", "success"])
                .get(),
            2
        );
        // Known neither by target nor by kind: read as absent (0), nothing created.
        assert_eq!(
            metrics
                .target_in_sync
                .with_label_values(&["nobody", "file"])
                .get(),
            0
        );
        metrics.set_target_served("cdn", "alibaba-cdn", None);
        let text = metrics.encode().unwrap();
        assert!(
            !text.contains("certkeeper_target_certificate_expiration"),
            "{text}"
        );
    }

    #[test]
    fn pass_running_counts_only_while_a_pass_runs() {
        let metrics = Metrics::new().unwrap();
        let running = |metrics: &Metrics| {
            let text = metrics.encode().unwrap();
            text.lines()
                .find_map(|line| line.strip_prefix("certkeeper_pass_running_seconds "))
                .map(|value| value.parse::<f64>().unwrap())
                .unwrap()
        };
        assert_eq!(running(&metrics), 0.0);
        let pass = metrics.pass_running();
        assert!(running(&metrics) > 0.0);
        drop(pass);
        assert_eq!(running(&metrics), 0.0);
    }
}
