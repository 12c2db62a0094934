//! The store key of `[store]` (`key` or `key_file`): like every other secret it is a file (a
//! relative name resolves in `$CREDENTIALS_DIRECTORY`, so systemd's `LoadCredential=` and
//! `LoadCredentialEncrypted=` hand it over unchanged) or, with a warning, a literal. The file
//! must not be readable by group or others.

use super::StoreConfig;
use crate::config::credentials::{CredentialError, SecretEnvironment};
use crate::secret::Secret;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    use std::io::Read;
    // One descriptor for the mode check and the read: the file checked is the file read.
    let file = crate::fsutil::open_regular(path).map_err(|error| error.to_string())?;
    let mode = file.metadata().map_err(|error| error.to_string())?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others read the store key; chmod 600 it"
        ));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_KEY_FILE_BYTES} bytes: not a store key"
        ));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| "not text: write the key as base64 (`openssl rand -base64 32`)".to_owned())?;
    Ok(Secret::new(text.trim_end()))
}

/// One way to give the key; a literal one is accepted with a warning.
pub(in crate::config) fn validate(
    store: &StoreConfig,
    errors: &mut Vec<crate::config::ConfigIssue>,
    warnings: &mut Vec<crate::config::ConfigIssue>,
) {
    if store.key.is_some() && store.key_file.is_some() {
        errors.push(crate::config::ConfigIssue::new(
            "store.key",
            "give only one of `key`, `key_file`",
        ));
    } else if store.key.is_some() {
        warnings.push(crate::config::ConfigIssue::new(
            "store.key",
            "secret written in the config file; prefer `key_file`",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    struct Credentials(Option<PathBuf>);

    impl SecretEnvironment for Credentials {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn credentials_directory(&self) -> Option<PathBuf> {
            self.0.clone()
        }
    }

    fn write(path: &Path, contents: &[u8], mode: u32) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn key_files_resolve_in_the_credentials_directory_and_must_be_private() {
        let directory = tempfile::tempdir().unwrap();
        let key = directory.path().join("certkeeper-store-key");
        write(&key, b"c2VjcmV0\n", 0o400);
        let config = StoreConfig {
            key: None,
            key_file: Some("certkeeper-store-key".into()),
            ..StoreConfig::default()
        };
        let found = config
            .resolve_key(&Credentials(Some(directory.path().into())))
            .unwrap()
            .unwrap();
        assert_eq!(found.expose(), "c2VjcmV0");

        let error = config.resolve_key(&Credentials(None)).unwrap_err();
        assert_eq!(error.issue().path, "store.key_file");
        assert!(error
            .to_string()
            .contains("$CREDENTIALS_DIRECTORY is not set"));

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = config
            .resolve_key(&Credentials(Some(directory.path().into())))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("mode 0640 lets group or others read"),
            "{error}"
        );
        assert!(error.contains("\"certkeeper-store-key\" in $CREDENTIALS_DIRECTORY"));
        assert!(!error.contains("c2VjcmV0"));
    }

    #[test]
    fn key_files_are_small_text_files() {
        let directory = tempfile::tempdir().unwrap();
        let big = directory.path().join("big");
        write(&big, &vec![b'A'; MAX_KEY_FILE_BYTES as usize + 1], 0o600);
        assert!(read_key_file(&big).unwrap_err().contains("larger than"));
        let binary = directory.path().join("binary");
        write(&binary, &[0xff; 32], 0o600);
        assert!(read_key_file(&binary).unwrap_err().contains("not text"));
        assert!(read_key_file(directory.path())
            .unwrap_err()
            .contains("not a regular file"));
        // A FIFO is refused at once instead of waiting for a writer.
        let fifo = directory.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(read_key_file(&fifo).unwrap_err().contains("FIFO"));
    }

    #[test]
    fn one_way_to_give_the_key_and_a_literal_one_warns() {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let both = StoreConfig {
            key: Some(Secret::new("x")),
            key_file: Some("k".into()),
            ..StoreConfig::default()
        };
        validate(&both, &mut errors, &mut warnings);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("only one of"));
        errors.clear();
        let literal = StoreConfig {
            key: Some(Secret::new("x")),
            key_file: None,
            ..StoreConfig::default()
        };
        validate(&literal, &mut errors, &mut warnings);
        assert!(errors.is_empty());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].path, "store.key");
    }
}
