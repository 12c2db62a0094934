//! QingCloud: the signature version 1 signer, the client (the only code that classifies
//! QingCloud `ret_code`s), job polling, the MySQL Plus SSL policy and the simulator.

pub mod client;
pub mod jobs;
pub mod mysql_plus;
pub mod signer;
#[cfg(feature = "sim")]
pub mod sim;

pub use client::QingCloudClient;
pub use mysql_plus::{MysqlPlusSslPolicy, MysqlPlusSslSettings};
