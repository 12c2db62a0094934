//! Leader election (placeholder, filled next).
