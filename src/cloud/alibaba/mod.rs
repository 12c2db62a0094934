//! alibaba: signer, client (the only code that classifies alibaba errors), products and simulator.

pub mod sim;
