//! certkeeper keeps TLS certificates valid, deployed and compliant across cloud services.
//!
//! Crate map:
//! - [`app`]: wiring: builds every component from a config (`app/build.rs`) and runs the
//!   daemon loop. See `ARCHITECTURE.md` for the layers and the life of a certificate.
//! - [`config`]: the TOML the user writes, and its pure validation.
//! - [`cert`]: bundles, parsing, fingerprints, key generation, pre-deploy checks.
//! - [`source`]: where certificates come from (ACME, watched files, local CA).
//! - [`cloud`]: targets, policies and DNS solvers per vendor, plus the simulator.
//! - `demo`: the offline demo (simulator + daemon), with the default `sim` feature.
//! - [`engine`]: the reconcile pass (obtain, rollout, policies, what is due), renewal
//!   timing, backoff across operations.
//! - Pure leaves every layer may use: [`window`] (cron schedules and maintenance windows),
//!   [`ratelimit`] (vendor token buckets), [`retry`] (retries within one operation).
//! - [`status`]: the `certkeeper status` view; [`plan`]: the `certkeeper plan` view.
//! - [`control`]: the daemon's Unix socket for `renew` and `deploy`.
//! - [`store`]: the state that must survive a crash (SQLite by default).
//! - [`telemetry`]: logs, metrics and typed events.
//! - [`error`]: the error classes every vendor maps into.
//! - [`settings`]: what the config and the products share to read settings (the issue type,
//!   typo suggestions, durations, domain syntax).
//! - [`fsutil`]: crash-safe file writes, bounded reads of regular files, directory modes.
//! - [`process`]: process hardening at start (not dumpable).
//! - [`secret`]: values that never print.
//! - [`systemd`]: READY / WATCHDOG / STATUS / RELOADING / STOPPING.

#![forbid(unsafe_code)]

pub mod app;
pub mod cert;
pub mod cloud;
pub mod config;
pub mod control;
#[cfg(feature = "sim")]
pub mod demo;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod plan;
pub mod process;
pub mod ratelimit;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod source;
pub mod status;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod window;
