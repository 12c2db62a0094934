//! Local CA (filled in below).
