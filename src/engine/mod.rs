//! The engine: maintenance windows, renewal timing, the two retry layers (in-operation in
//! `retry`, across operations in `backoff`), vendor rate limits (`ratelimit`) and the
//! reconcile loop that drives sources, targets and policies.

pub mod backoff;
pub mod deploy;
pub mod policy;
pub mod ratelimit;
pub mod renewal;
pub mod retry;
pub mod window;
