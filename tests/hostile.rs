//! Hostile probes against the release-shaped daemon and its clients, on loopback only: what a
//! redirecting, oversized, trickling or silent server, a FIFO or a symlink race, a huge bad
//! config and a flood of idle socket connections do to certkeeper, and what the operator sees.

mod support;

#[path = "hostile/config.rs"]
mod config;
#[path = "hostile/files.rs"]
mod files;
#[path = "hostile/http.rs"]
mod http;
#[path = "hostile/sockets.rs"]
mod sockets;
