//! `[store]`: how the state store is kept. The store key that seals private keys, ACME
//! account keys and local CA keys at rest (`store::seal`) is read and checked in [`key`].

pub mod key;

use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// `[store]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Literal store key (base64 or hex of 32 bytes): accepted with a warning.
    pub key: Option<Secret>,
    /// The file holding the store key; relative names resolve in `$CREDENTIALS_DIRECTORY`.
    pub key_file: Option<PathBuf>,
}
