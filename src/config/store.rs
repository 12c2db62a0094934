//! `[store]`: how the state store is kept. Today one setting: the key that seals private
//! keys, ACME account keys and local CA keys at rest (see `store::seal`). Like every other
//! secret it is a file (a relative name resolves in `$CREDENTIALS_DIRECTORY`, so systemd's
//! `LoadCredential=` and `LoadCredentialEncrypted=` hand it over unchanged) or, with a
//! warning, a literal. The file must not be readable by group or others.

use super::credentials::{CredentialError, SecretEnvironment};
use crate::secret::Secret;
use serde::Deserialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `[store]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Literal store key (base64 or hex of 32 bytes): accepted with a warning.
    pub key: Option<Secret>,
    /// The file holding the store key; relative names resolve in `$CREDENTIALS_DIRECTORY`.
    pub key_file: Option<PathBuf>,
}

/// The section name used in messages.
const OWNER: &str = "store";

impl StoreConfig {
    /// Whether a store key is configured at all.
    pub fn has_key(&self) -> bool {
        self.key.is_some() || self.key_file.is_some()
    }

    /// The store key's text, read from where the config says; `None` when none is
    /// configured. A key file readable by group or others is refused.
    pub fn resolve_key(
        &self,
        environment: &dyn SecretEnvironment,
    ) -> Result<Option<Secret>, CredentialError> {
        if let Some(file) = &self.key_file {
            let path = match (file.is_relative(), environment.credentials_directory()) {
                (false, _) => file.clone(),
                (true, Some(directory)) => directory.join(file),
                (true, None) => {
                    return Err(CredentialError::RelativeFile {
                        owner: OWNER.into(),
                        field: "key",
                        path: file.clone(),
                    })
                }
            };
            return read_key_file(&path)
                .map(Some)
                .map_err(|reason| CredentialError::File {
                    owner: OWNER.into(),
                    field: "key",
                    path,
                    relative: file.is_relative().then(|| file.clone()),
                    reason,
                });
        }
        Ok(self.key.clone())
    }
}

/// A key file is a few dozen bytes; anything larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Reads a store key file: a regular file, at most [`MAX_KEY_FILE_BYTES`], mode 0600 or
/// stricter (like every key file certkeeper writes), trailing whitespace dropped.
pub fn read_key_file(path: &Path) -> Result<Secret, String> {
    let file = crate::fsutil::open_regular(path).map_err(|error| error.to_string())?;
    let mode = file.metadata().map_err(|error| error.to_string())?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others read the store key; chmod 600 it"
        ));
    }
    let bytes =
        crate::fsutil::read_regular(path, MAX_KEY_FILE_BYTES).map_err(|error| error.to_string())?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "not text: write the key as base64 (`openssl rand -base64 32`)".to_owned())?;
    Ok(Secret::new(text.trim_end()))
}

impl StoreConfig {
    /// One way to give the key; a literal one is accepted with a warning.
    pub(super) fn validate(
        &self,
        errors: &mut Vec<super::ConfigIssue>,
        warnings: &mut Vec<super::ConfigIssue>,
    ) {
        if self.key.is_some() && self.key_file.is_some() {
            errors.push(super::ConfigIssue::new(
                "store.key",
                "give only one of `key`, `key_file`",
            ));
        } else if self.key.is_some() {
            warnings.push(super::ConfigIssue::new(
                "store.key",
                "secret written in the config file; prefer `key_file`",
            ));
        }
    }
}
