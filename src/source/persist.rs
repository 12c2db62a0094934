//! The daemon's [`SourceStore`]: the state sources keep (ACME accounts, ARI points, local CA
//! roots) written through the crash-safe [`StateStore`] (SQLite in production), so a restart
//! reuses the ACME account, keeps the drawn renewal instant and keeps the local CA's root.
//! ACME accounts live in the store's `acme_accounts` table keyed by directory URL and account
//! name; the source only knows the name, so the adapter is told each account's directory.

use super::{RenewalPoint, SourceError, SourceStore};
use crate::error::ErrorClass;
use crate::secret::Secret;
use crate::store::{AcmeAccount, AriPoint, LocalCaRoot, StateStore, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// [`SourceStore`] over any [`StateStore`].
#[derive(Clone)]
pub struct StateSourceStore {
    store: Arc<dyn StateStore>,
    /// `[acme.NAME]` → its directory URL; an unknown name is stored under an empty URL.
    directories: HashMap<String, String>,
}

impl StateSourceStore {
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self {
            store,
            directories: HashMap::new(),
        }
    }

    /// Records the directory URL of ACME account `account`, the second half of its key in
    /// the store (the same name against another CA is another account).
    pub fn with_acme_directory(
        mut self,
        account: impl Into<String>,
        directory_url: impl Into<String>,
    ) -> Self {
        self.directories
            .insert(account.into(), directory_url.into());
        self
    }

    fn directory(&self, account: &str) -> &str {
        self.directories.get(account).map_or("", String::as_str)
    }
}

/// A store failure seen by a source: transient (disk full, lock timeout) unless the stored
/// data itself is wrong, which no retry fixes. The store's message names the file, never a key.
fn store_error(operation: &str, error: StoreError) -> SourceError {
    let class = match error {
        StoreError::Sealing { .. } => ErrorClass::Invalid,
        StoreError::BadValue { .. } | StoreError::Corrupt { .. } | StoreError::TooNew { .. } => {
            ErrorClass::Invalid
        }
        StoreError::Io { .. }
        | StoreError::Sqlite { .. }
        | StoreError::Postgres { .. }
        | StoreError::Fenced { .. }
        | StoreError::NotLeader { .. } => ErrorClass::Transient,
    };
    SourceError::new("store", operation, class, "StateStore", error.to_string())
}

impl SourceStore for StateSourceStore {
    fn load_account(&self, account: &str) -> Result<Option<Secret>, SourceError> {
        self.store
            .acme_account(self.directory(account), account)
            .map(|found| found.map(|stored| stored.credentials))
            .map_err(|error| store_error("load account", error))
    }

    fn save_account(&self, account: &str, credentials: &Secret) -> Result<(), SourceError> {
        self.store
            .put_acme_account(&AcmeAccount {
                directory_url: self.directory(account).to_owned(),
                account_name: account.to_owned(),
                credentials: credentials.clone(),
                created_at: OffsetDateTime::now_utc(),
            })
            .map_err(|error| store_error("save account", error))
    }

    fn delete_account(&self, account: &str) -> Result<(), SourceError> {
        self.store
            .delete_acme_account(self.directory(account), account)
            .map_err(|error| store_error("delete account", error))
    }

    fn load_renewal_point(&self, certificate: &str) -> Result<Option<RenewalPoint>, SourceError> {
        self.store
            .ari_point(certificate)
            .map(|found| {
                found.map(|point| RenewalPoint {
                    cert_id: point.cert_id,
                    window_start: point.window_start,
                    window_end: point.window_end,
                    renew_at: point.renew_at,
                    next_poll: point.next_poll,
                })
            })
            .map_err(|error| store_error("load renewal point", error))
    }

    fn save_renewal_point(
        &self,
        certificate: &str,
        point: &RenewalPoint,
    ) -> Result<(), SourceError> {
        self.store
            .put_ari_point(&AriPoint {
                certificate: certificate.to_owned(),
                cert_id: point.cert_id.clone(),
                window_start: point.window_start,
                window_end: point.window_end,
                renew_at: point.renew_at,
                next_poll: point.next_poll,
            })
            .map_err(|error| store_error("save renewal point", error))
    }

    fn load_local_ca(&self, ca: &str) -> Result<Option<(String, Secret)>, SourceError> {
        self.store
            .local_ca(ca)
            .map(|found| found.map(|root| (root.cert_pem, root.key_pem)))
            .map_err(|error| store_error("load local CA", error))
    }

    fn save_local_ca(&self, ca: &str, cert_pem: &str, key_pem: &Secret) -> Result<(), SourceError> {
        self.store
            .put_local_ca(&LocalCaRoot {
                name: ca.to_owned(),
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.clone(),
                created_at: OffsetDateTime::now_utc(),
            })
            .map_err(|error| store_error("save local CA", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use time::macros::datetime;

    fn open(dir: &std::path::Path) -> StateSourceStore {
        StateSourceStore::new(Arc::new(SqliteStore::open(dir).unwrap()))
            .with_acme_directory("le", "https://acme.test/dir")
    }

    #[test]
    fn everything_survives_reopening_the_sqlite_store() {
        let dir = tempfile::tempdir().unwrap();
        let point = RenewalPoint {
            cert_id: "aki.serial".into(),
            window_start: datetime!(2026-03-01 00:00:00 UTC),
            window_end: datetime!(2026-03-03 00:00:00 UTC),
            renew_at: datetime!(2026-03-02 01:02:03 UTC),
            next_poll: datetime!(2026-02-01 06:00:00 UTC),
        };
        {
            let store = open(dir.path());
            store
                .save_account("le", &Secret::new("{\"id\":1}"))
                .unwrap();
            store.save_renewal_point("web", &point).unwrap();
            store
                .save_local_ca("ops", "CERT", &Secret::new("ROOT-KEY"))
                .unwrap();
        }
        let store = open(dir.path());
        assert_eq!(
            store.load_account("le").unwrap().unwrap().expose(),
            "{\"id\":1}"
        );
        assert_eq!(store.load_renewal_point("web").unwrap(), Some(point));
        let (cert, key) = store.load_local_ca("ops").unwrap().unwrap();
        assert_eq!((cert.as_str(), key.expose()), ("CERT", "ROOT-KEY"));
        // The account is keyed by its directory: the same name elsewhere is another account.
        let raw = SqliteStore::open(dir.path()).unwrap();
        assert!(raw
            .acme_account("https://acme.test/dir", "le")
            .unwrap()
            .is_some());
        assert!(raw.acme_account("", "le").unwrap().is_none());
        store.delete_account("le").unwrap();
        assert!(store.load_account("le").unwrap().is_none());
    }

    #[test]
    fn local_ca_root_is_reused_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::source::local_ca::LocalCaSettings::new(
            "ops",
            std::time::Duration::from_secs(86_400),
        );
        let first = {
            let store: Arc<dyn SourceStore> = Arc::new(open(dir.path()));
            crate::source::local_ca::LocalCa::open(settings.clone(), store.as_ref()).unwrap()
        };
        let store: Arc<dyn SourceStore> = Arc::new(open(dir.path()));
        let second = crate::source::local_ca::LocalCa::open(settings, store.as_ref()).unwrap();
        assert_eq!(first.root_pem(), second.root_pem());
    }
}
