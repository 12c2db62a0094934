//! The engine: one reconcile pass (`pass`) and its parts — obtaining and importing
//! certificates (`obtain`), the per-vendor deploy queue (`rollout`) over the per-target
//! reconcile (`deploy`), policy checks (`policy`), describe → correct → verify over the
//! cloud traits (`converge`), the reports of each outcome (`event`) and what is due next
//! (`due`) — plus renewal timing (`renewal`), the backoff across operations (`backoff`), when the loop
//! next wakes (`schedule`) and the state gauges rebuilt from the store (`state`). The pure
//! pieces that `cloud` needs too (windows, rate limits, in-operation retries) are leaves
//! beside it (`crate::window`, `crate::ratelimit`, `crate::retry`), so `cloud` never imports
//! the engine. The daemon loop in `app` drives it; nothing here reads `app`.

pub mod backoff;
pub mod converge;
pub mod decide;
pub mod deploy;
pub mod due;
pub mod event;
pub mod inputs;
pub mod obtain;
pub mod pass;
pub mod policy;
pub mod renewal;
pub mod rollout;
pub mod schedule;
pub mod state;
