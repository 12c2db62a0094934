//! Hostile probes: sockets (filled by its owner).
