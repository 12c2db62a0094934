//! huawei: signer, client (the only code that classifies huawei errors), products and simulator.

pub mod gaussdb;
pub mod sim;
