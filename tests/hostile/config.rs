//! Hostile probes: config (filled by its owner).
