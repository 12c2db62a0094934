//! What the engine reports about an outcome, in one place: an error is labelled here with
//! whether its code is documented (`cloud::registry`), so telemetry counts it without
//! knowing the vendors.

use crate::error::CloudError;
use crate::telemetry::metrics::Metrics;

/// Counts `error` in `certkeeper_errors_total`, its code label bounded by the vendor tables.
pub fn count_error(metrics: &Metrics, error: &CloudError) {
    let mut labelled = error.clone();
    labelled.code_documented = crate::cloud::registry::is_known_code(error.vendor, &error.code);
    metrics.count_error(&labelled);
}
