//! Telemetry: logs (tracing, human on a terminal, JSON otherwise) and, with the engine,
//! metrics and typed events.

pub mod logging;
