//! huawei: the `SDK-HMAC-SHA256` signer, IAM token auth, the client (the only code that
//! classifies Huawei errors), the TaurusDB (GaussDB for MySQL) backup-encryption policy, the
//! Huawei DNS-01 solver and the simulator.

pub mod client;
pub mod dns;
pub mod gaussdb;
pub mod iam;
pub mod securitykey;
pub mod signer;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod sim_iam;
