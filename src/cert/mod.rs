//! The certificate model: a deployable bundle (leaf, chain, private key), its fingerprint
//! and validity, key and CSR generation, and the ordered pre-deploy checks that keep a bad
//! certificate from ever reaching a target.

/// `CertificateBundle`, `LeafInfo` (fingerprint, serial, issuer, validity), test fixtures.
pub mod bundle;
/// Pre-deploy checks: ordered, first violation wins, bounded `ViolationReason`.
pub mod checks;
/// `KeyType` generation, PKCS#8/PKCS#1/SEC1 keys, key-matches-certificate, CSRs.
pub mod key;
/// SAN coverage with wildcard rules.
pub mod names;
/// Reading PEM inputs (size and format checks) into a bundle with an ordered chain.
pub mod pem;

pub use bundle::{sha256_hex, testing, CertError, CertificateBundle, LeafInfo};
pub use checks::{check_predeploy, Violation, ViolationReason};
pub use key::{csr_der, key_matches_certificate, KeyType, PrivateKey};
pub use names::{covers as names_cover, name_covers};
pub use pem::{load_bundle_files, parse_bundle, parse_bundle_bytes, read_input, MAX_INPUT_BYTES};
