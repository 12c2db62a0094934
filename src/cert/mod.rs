//! The certificate model: a deployable bundle (leaf, chain, private key), its fingerprint
//! and validity, key and CSR generation, and the ordered pre-deploy checks that keep a bad
//! certificate from ever reaching a target.

pub mod bundle;

pub use bundle::{CertError, CertificateBundle, LeafInfo};
