//! The engine: one reconcile pass (`pass`) and its parts — obtaining and importing
//! certificates (`obtain`), the per-vendor deploy queue (`rollout`) over the per-target
//! reconcile (`deploy`), policy checks (`policy`) and what is due next (`due`) — plus the
//! pure pieces they use: maintenance windows, renewal timing, the two retry layers
//! (in-operation in `retry`, across operations in `backoff`), vendor rate limits
//! (`ratelimit`), when the loop next wakes (`schedule`) and the state gauges rebuilt from
//! the store (`state`). The daemon loop in `app` drives it; nothing here reads `app`.

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
