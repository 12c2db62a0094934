//! The inputs fingerprint of a target or policy: a digest of its configuration, recorded in
//! the store's attempt history (operation `inputs`, the digest as the code) whenever it
//! changes. A change is what unparks an `invalid` failure and resets the backoff; keeping it
//! in the store means a config edited while the daemon was down is noticed on start, and a
//! restart with the same config changes nothing.

use crate::store::{Attempt, StateStore, StoreError, SubjectKind};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The operation name of the attempts that record an inputs fingerprint.
pub const OPERATION: &str = "inputs";

/// A digest of `config`'s `Debug` text (secrets print redacted, so none goes into it). A
/// new release that prints the config differently only unparks once.
pub fn fingerprint(config: &impl std::fmt::Debug) -> String {
    let digest = Sha256::digest(format!("{config:?}").as_bytes());
    hex::encode(&digest[..16])
}

/// The fingerprint last recorded in `history`, if any.
pub fn recorded(history: &[Attempt]) -> Option<&str> {
    history
        .iter()
        .rev()
        .find(|attempt| attempt.operation == OPERATION)
        .and_then(|attempt| attempt.code.as_deref())
}

/// Records `inputs` for `subject` unless it is already the last one recorded; returns the
/// marker when it was written (the inputs changed, or were never recorded).
pub fn note(
    store: &dyn StateStore,
    kind: SubjectKind,
    subject: &str,
    history: &[Attempt],
    inputs: &str,
    now: OffsetDateTime,
) -> Result<Option<Attempt>, StoreError> {
    if recorded(history) == Some(inputs) {
        return Ok(None);
    }
    let marker = Attempt {
        subject_kind: kind,
        subject: subject.to_owned(),
        operation: OPERATION.to_owned(),
        class: None,
        code: Some(inputs.to_owned()),
        at: now,
    };
    store.record_attempt(&marker)?;
    Ok(Some(marker))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn noted_once_per_change() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).unwrap();
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        let history = |store: &SqliteStore| store.attempts(SubjectKind::Target, "t").unwrap();
        assert!(note(&store, SubjectKind::Target, "t", &[], "a", now)
            .unwrap()
            .is_some());
        assert!(
            note(&store, SubjectKind::Target, "t", &history(&store), "a", now)
                .unwrap()
                .is_none()
        );
        assert!(
            note(&store, SubjectKind::Target, "t", &history(&store), "b", now)
                .unwrap()
                .is_some()
        );
        assert_eq!(recorded(&history(&store)), Some("b"));
        assert_ne!(fingerprint(&("x", 1)), fingerprint(&("x", 2)));
        assert_eq!(fingerprint(&("x", 1)).len(), 32);
    }
}
