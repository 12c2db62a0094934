//! `[store]`: where the state lives. The default is the embedded SQLite file in
//! `daemon.state_dir`; `backend = "postgres"` shares one PostgreSQL database between several
//! daemons, one of which leads at a time (docs/ha.md). The database URL may hold a password,
//! so it is a secret read from the environment or a file (relative to
//! `$CREDENTIALS_DIRECTORY`), never a literal in the config. The store key that seals
//! private keys, ACME account keys and local CA keys at rest (`store::seal`) is read and
//! checked in [`key`].

pub mod key;

use super::ConfigIssue;
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Which [`StateStore`](crate::store::StateStore) backend the daemon uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Sqlite,
    Postgres,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: StoreBackend,
    /// The environment variable holding the PostgreSQL URL (`postgres://user:pw@host/db`).
    pub url_env: Option<String>,
    /// The file holding the PostgreSQL URL; relative: to `$CREDENTIALS_DIRECTORY`.
    pub url_file: Option<PathBuf>,
    /// PEM file of the CA that signed the database server's certificate (TLS with
    /// `sslmode=require` in the URL); the public web roots when absent.
    pub ca_file: Option<PathBuf>,
    /// How long a leader's lease lasts unrenewed; another instance takes over after it.
    #[serde(
        default = "default_lease_ttl",
        deserialize_with = "super::duration::deserialize"
    )]
    pub lease_ttl: Duration,
    /// This instance's name in the lease and in `status` (default: host name and pid).
    pub instance: Option<String>,
    /// Literal store key (base64 or hex of 32 bytes): accepted with a warning.
    pub key: Option<Secret>,
    /// The file holding the store key; relative names resolve in `$CREDENTIALS_DIRECTORY`.
    pub key_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            url_env: None,
            url_file: None,
            ca_file: None,
            lease_ttl: default_lease_ttl(),
            instance: None,
            key: None,
            key_file: None,
        }
    }
}

/// The leader lease's default time to live.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

fn default_lease_ttl() -> Duration {
    DEFAULT_LEASE_TTL
}

/// The shortest lease accepted: it is renewed every third of it, over the network.
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

pub(super) fn validate(store: &StoreConfig, errors: &mut Vec<ConfigIssue>) {
    match store.backend {
        StoreBackend::Sqlite => {
            for (set, key) in [
                (store.url_env.is_some(), "store.url_env"),
                (store.url_file.is_some(), "store.url_file"),
                (store.ca_file.is_some(), "store.ca_file"),
            ] {
                if set {
                    errors.push(ConfigIssue::new(
                        key,
                        "only used with backend = \"postgres\"; remove it or set the backend",
                    ));
                }
            }
        }
        StoreBackend::Postgres => {
            // The sealing layer needs the backend to rewrite every key in one transaction
            // (migration, rekey); only SQLite does yet. Refused rather than keeping keys in
            // PostgreSQL in plain text behind a setting that says they are sealed.
            let key_path = match (&store.key, &store.key_file) {
                (Some(_), None) => Some("store.key"),
                (_, Some(_)) => Some("store.key_file"),
                (None, None) => None,
            };
            if let Some(key_path) = key_path {
                errors.push(ConfigIssue::new(
                    key_path,
                    "keys sealed at rest are not supported with backend = \"postgres\" yet; \
                     remove the store key or use the SQLite store",
                ));
            }
            if store.url_env.is_some() == store.url_file.is_some() {
                errors.push(ConfigIssue::new(
                    "store",
                    "backend = \"postgres\" needs the database URL from exactly one of \
                     `url_env` (an environment variable) or `url_file` (a file)",
                ));
            }
        }
    }
    if store.lease_ttl < MIN_LEASE_TTL {
        errors.push(ConfigIssue::new(
            "store.lease_ttl",
            format!(
                "must be at least {}s: the lease is renewed every third of it",
                MIN_LEASE_TTL.as_secs()
            ),
        ));
    }
    if store.instance.as_deref().is_some_and(str::is_empty) {
        errors.push(ConfigIssue::new("store.instance", "must not be empty"));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    fn load(store: &str) -> Result<super::StoreConfig, String> {
        load_str(
            "t.toml",
            &format!("[daemon]\nstate_dir = \"/x\"\nallow_empty = true\n\n[store]\n{store}"),
        )
        .map(|loaded| loaded.config.store)
        .map_err(|error| error.to_string())
    }

    #[test]
    fn sqlite_is_the_default_and_postgres_reads_its_url_from_one_secret_source() {
        let sqlite = load("").unwrap();
        assert_eq!(sqlite.backend, super::StoreBackend::Sqlite);
        assert_eq!(sqlite.lease_ttl, super::DEFAULT_LEASE_TTL);
        let postgres =
            load("backend = \"postgres\"\nurl_env = \"DB_URL\"\nlease_ttl = \"20s\"\n").unwrap();
        assert_eq!(postgres.backend, super::StoreBackend::Postgres);
        assert_eq!(postgres.lease_ttl, std::time::Duration::from_secs(20));

        let neither = load("backend = \"postgres\"\n").unwrap_err();
        assert!(neither.contains("exactly one of `url_env`"), "{neither}");
        let both = load("backend = \"postgres\"\nurl_env = \"A\"\nurl_file = \"b\"\n").unwrap_err();
        assert!(both.contains("exactly one"), "{both}");
        let stray = load("url_env = \"A\"\n").unwrap_err();
        assert!(
            stray.contains("store.url_env") && stray.contains("postgres"),
            "{stray}"
        );
        let short =
            load("backend = \"postgres\"\nurl_env = \"A\"\nlease_ttl = \"1s\"\n").unwrap_err();
        assert!(short.contains("store.lease_ttl"), "{short}");
        let literal = load("backend = \"postgres\"\nurl = \"postgres://u:pw@h/db\"\n").unwrap_err();
        assert!(
            !literal.contains("pw@"),
            "a literal URL is refused, not echoed: {literal}"
        );
    }

    #[test]
    fn a_store_key_with_postgres_is_refused_rather_than_left_unsealed() {
        let refused =
            load("backend = \"postgres\"\nurl_env = \"A\"\nkey_file = \"k\"\n").unwrap_err();
        assert!(
            refused.contains("store.key_file") && refused.contains("not supported"),
            "{refused}"
        );
        let literal = load("backend = \"postgres\"\nurl_env = \"A\"\nkey = \"k\"\n").unwrap_err();
        assert!(
            literal.contains("store.key:") && !literal.contains("key_file"),
            "the refusal names the key that was set: {literal}"
        );
    }
}
