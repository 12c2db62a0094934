//! Hostile probes: files (filled by its owner).
