//! source (filled in by its issue).
