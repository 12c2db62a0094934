//! Alibaba Cloud: the staged signers, the client (the only code that classifies Alibaba
//! errors), the CDN, VOD and RDS targets, the alidns DNS-01 solver and the simulator.

pub mod cas;
pub mod cdn;
pub mod client;
pub mod dns;
pub mod oss;
pub mod rds;
pub mod signer;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod sim_oss;
#[cfg(feature = "sim")]
pub mod sim_sts;
pub mod sim_tables;
pub mod sts;
pub mod vod;

pub use client::{AlibabaClient, Product};
