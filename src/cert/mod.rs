//! The certificate model: a deployable bundle (leaf, chain, private key), its fingerprint
//! and validity, key and CSR generation, and the ordered pre-deploy checks that keep a bad
//! certificate from ever reaching a target.

pub mod bundle;
pub mod checks;
pub mod key;
pub mod names;
pub mod pem;

pub use bundle::{sha256_hex, testing, CertError, CertificateBundle, LeafInfo};
pub use checks::{check_predeploy, Violation, ViolationReason};
pub use key::{csr_der, key_matches_certificate, KeyType, PrivateKey};
pub use names::{covers as names_cover, name_covers};
pub use pem::{parse_bundle, parse_bundle_bytes, MAX_INPUT_BYTES};
