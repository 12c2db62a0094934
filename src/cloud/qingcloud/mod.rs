//! qingcloud: signer, client (the only code that classifies qingcloud errors), products and simulator.

pub mod mysql_plus;
pub mod sim;
