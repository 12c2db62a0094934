//! Hostile probes: http (filled by its owner).
