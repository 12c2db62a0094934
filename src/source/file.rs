//! Watched certificate files (filled in below).
