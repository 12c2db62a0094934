//! telemetry (filled in by its issue).
