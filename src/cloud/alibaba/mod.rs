//! alibaba: signer, client (the only code that classifies alibaba errors), products and simulator.

pub mod cdn;
pub mod rds;
pub mod sim;
pub mod vod;
