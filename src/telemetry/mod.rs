//! Telemetry: logs (tracing, human on a terminal, JSON otherwise), Prometheus metrics and
//! typed events.

pub mod logging;
pub mod metrics;
pub mod server;
