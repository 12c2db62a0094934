//! The engine: maintenance windows, renewal timing, the two retry layers (in-operation in
//! `retry`, across operations in `backoff`), vendor rate limits (`ratelimit`), when the loop next
//! wakes (`schedule`) and the per-target reconcile (`deploy`) that the daemon loop in
//! `app` drives, and the state gauges rebuilt from the store (`state`).

pub mod backoff;
pub mod deploy;
pub mod due;
pub mod inputs;
pub mod obtain;
pub mod pass;
pub mod policy;
pub mod ratelimit;
pub mod renewal;
pub mod retry;
pub mod rollout;
pub mod schedule;
pub mod state;
pub mod window;
