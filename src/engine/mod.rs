//! The engine: maintenance windows, renewal timing, the retry layers and (later) the
//! reconcile loop that drives sources, targets and policies.

pub mod ratelimit;
pub mod retry;
pub mod window;
