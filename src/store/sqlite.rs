//! The embedded [`StateStore`]: one SQLite file, `state.db` in the state directory. The
//! file is created 0600 before SQLite touches it (SQLite gives its `-wal` and `-shm` files the
//! database file's mode), the directory 0700 when missing. Opening refuses a file from a newer
//! schema and a file that fails `PRAGMA integrity_check`, then applies pending migrations, one
//! transaction each. Every write runs in one `BEGIN IMMEDIATE` transaction, so a crash leaves
//! either the old or the new state, never half a certificate.

use super::seal::{SealError, SecretField, SecretKind, SecretRecords, Survey};
use super::{
    AcmeAccount, AriPoint, AriWindow, Attempt, CertificateVersion, DeployStatus, DeploymentRecord,
    Event, EventQuery, LastError, LocalCaRoot, PolicyStatus, RenewalPlan, StateStore, StoreError,
    SubjectKind,
};
use crate::error::ErrorClass;
use crate::secret::Secret;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;

/// The store's file name inside `state_dir`.
pub const FILE_NAME: &str = "state.db";

/// How long a write waits for another connection's write (a `certkeeper` CLI next to the
/// daemon) before failing with "database is locked". Writes are tiny, so this is generous.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema steps; `user_version` counts how many have been applied. Append only: a released
/// step is never edited, a change is a new step.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE certificate_versions (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        certificate  TEXT    NOT NULL CHECK (length(certificate) > 0),
        chain_pem    TEXT    NOT NULL,
        key_pem      TEXT    NOT NULL,
        fingerprint  TEXT    NOT NULL,
        serial       TEXT    NOT NULL,
        not_before   INTEGER NOT NULL,
        not_after    INTEGER NOT NULL,
        source       TEXT    NOT NULL,
        obtained_at  INTEGER NOT NULL
    );
    CREATE INDEX certificate_versions_by_name ON certificate_versions (certificate, id);

    CREATE TABLE deployments (
        target               TEXT    NOT NULL CHECK (length(target) > 0),
        certificate          TEXT    NOT NULL CHECK (length(certificate) > 0),
        desired_fingerprint  TEXT,
        observed_fingerprint TEXT,
        status               TEXT    NOT NULL
            CHECK (status IN ('in_sync', 'pending', 'deploying', 'failed', 'parked')),
        attempts             INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error_class     TEXT,
        last_error_code      TEXT,
        last_error_message   TEXT,
        next_attempt_at      INTEGER,
        updated_at           INTEGER NOT NULL,
        PRIMARY KEY (target, certificate)
    );

    CREATE TABLE attempts (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_kind TEXT    NOT NULL CHECK (subject_kind IN ('target', 'policy')),
        subject      TEXT    NOT NULL,
        operation    TEXT    NOT NULL,
        class        TEXT,
        code         TEXT,
        at           INTEGER NOT NULL
    );
    CREATE INDEX attempts_by_subject ON attempts (subject_kind, subject, id);

    CREATE TABLE policy_status (
        policy             TEXT    NOT NULL,
        resource           TEXT    NOT NULL,
        compliant          INTEGER NOT NULL CHECK (compliant IN (0, 1)),
        observed           TEXT    NOT NULL,
        last_checked       INTEGER NOT NULL,
        last_job_id        TEXT,
        last_error_class   TEXT,
        last_error_code    TEXT,
        last_error_message TEXT,
        PRIMARY KEY (policy, resource)
    );

    CREATE TABLE acme_accounts (
        directory_url TEXT    NOT NULL,
        account_name  TEXT    NOT NULL,
        credentials   TEXT    NOT NULL,
        created_at    INTEGER NOT NULL,
        PRIMARY KEY (directory_url, account_name)
    );

    CREATE TABLE renewal_plans (
        certificate       TEXT    PRIMARY KEY,
        fingerprint       TEXT    NOT NULL,
        renewal_at        INTEGER NOT NULL,
        ari_window_start  INTEGER,
        ari_window_end    INTEGER,
        ari_next_check_at INTEGER,
        updated_at        INTEGER NOT NULL,
        CHECK ((ari_window_start IS NULL) = (ari_window_end IS NULL))
    );

    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        kind    TEXT    NOT NULL,
        subject TEXT    NOT NULL,
        message TEXT    NOT NULL,
        fields  TEXT    NOT NULL
    );
    CREATE INDEX events_by_kind ON events (kind, id);
    CREATE INDEX events_by_subject ON events (subject, id);
    -- The log is append-only; a retention step, if ever needed, is a migration that says so.
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    "#,
    // 2: state the sources keep: the ARI point chosen per certificate (with the ARI
    // identifier it belongs to) and each local CA's root.
    r#"
    CREATE TABLE ari_points (
        certificate   TEXT    PRIMARY KEY,
        cert_id       TEXT    NOT NULL,
        window_start  INTEGER NOT NULL,
        window_end    INTEGER NOT NULL,
        renew_at      INTEGER NOT NULL,
        next_poll     INTEGER NOT NULL
    );

    CREATE TABLE local_cas (
        name        TEXT    PRIMARY KEY,
        cert_pem    TEXT    NOT NULL,
        key_pem     TEXT    NOT NULL,
        created_at  INTEGER NOT NULL
    );
    "#,
    // 3: attempts also record obtaining a certificate (its failures back off by class like
    // deploys). SQLite cannot change a CHECK in place, so the table is copied.
    r#"
    CREATE TABLE attempts_v3 (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_kind TEXT    NOT NULL
            CHECK (subject_kind IN ('target', 'policy', 'certificate')),
        subject      TEXT    NOT NULL,
        operation    TEXT    NOT NULL,
        class        TEXT,
        code         TEXT,
        at           INTEGER NOT NULL
    );
    INSERT INTO attempts_v3 (id, subject_kind, subject, operation, class, code, at)
        SELECT id, subject_kind, subject, operation, class, code, at FROM attempts;
    DROP TABLE attempts;
    ALTER TABLE attempts_v3 RENAME TO attempts;
    CREATE INDEX attempts_by_subject ON attempts (subject_kind, subject, id);
    "#,
    // 4: the event log gets a retention (README, "Retention"): old events may be deleted,
    // never edited. `certkeeper events --since` reads by time.
    r#"
    DROP TRIGGER events_no_delete;
    CREATE INDEX events_by_time ON events (at, id);
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The embedded SQLite state store. Cheap to share behind an `Arc`; calls serialize on one
/// connection, and other processes (the CLI) may open the same file at the same time.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) `state_dir/state.db`: the directory is created 0700, the
    /// file 0600, the schema migrated to [`SCHEMA_VERSION`]. Refuses a newer schema and a file
    /// that fails its integrity check.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        // An existing directory: ours is tightened to 0700, another user's shared one refused.
        crate::fsutil::secure_state_dir(state_dir).map_err(|source| StoreError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        Self::open_file(&state_dir.join(FILE_NAME))
    }

    /// Opens `state_dir/state.db` only when it exists, creating nothing otherwise: for
    /// read-mostly commands (`certkeeper status`) that may run as another user (root) and
    /// must not leave a directory or file the daemon's user cannot open.
    pub fn open_existing(state_dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = state_dir.join(FILE_NAME);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Self::open_file(&path).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Like [`open`](Self::open) with an explicit file path (its parent is the state directory).
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
                // The mode above is filtered by the umask; set it outright.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io)?;
            }
        }
        // Create the file ourselves so its keys are never readable by others, not even for the
        // moment between SQLite creating it and us fixing the mode.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;

        let sql = |operation: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sqlite {
                path,
                operation,
                source,
            }
        };
        let conn = connect(&path)?;

        // Refuse a newer schema before changing anything in the file (even the journal mode).
        let found: u32 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sql("reading the schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found,
                known: SCHEMA_VERSION,
            });
        }

        let store = Self {
            path: path.clone(),
            conn: Mutex::new(conn),
        };
        store.integrity_check()?;
        {
            let mut conn = store.lock();
            // WAL: readers (the CLI's `status`) never block the daemon's writes and see only
            // committed transactions. synchronous=FULL: with WAL, NORMAL may lose the last
            // commits on power loss; a lost commit here can be a freshly issued certificate
            // whose key is gone while a target already serves it, and writes are rare, so
            // every commit is made durable.
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .map_err(sql("enabling WAL"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::BadValue {
                    path,
                    what: "journal_mode",
                    reason: format!("SQLite refused WAL and kept {mode}"),
                });
            }
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sql("setting synchronous"))?;
            // Deleted and replaced content (pruned versions, keys sealed in place) is
            // overwritten with zeros instead of lingering in free pages.
            conn.pragma_update(None, "secure_delete", "ON")
                .map_err(sql("setting secure_delete"))?;
            migrate(&mut conn).map_err(sql("migrating the schema"))?;
        }
        Ok(store)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction, which rolled back: the
        // connection is still consistent, so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    /// Runs `work` in one immediate transaction and commits; any error rolls everything back.
    fn write<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock up front, so a second writer waits (busy timeout)
        // instead of failing when it upgrades from reading.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.error(operation))?;
        let value = work(&tx).map_err(self.error(operation))?;
        tx.commit().map_err(self.error(operation))?;
        Ok(value)
    }

    /// Runs `work` in one read transaction, so multi-statement reads see one snapshot.
    fn read<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.error(operation))?;
        let value = work(&tx).map_err(self.error(operation))?;
        tx.commit().map_err(self.error(operation))?;
        Ok(value)
    }
}

/// A connection to the existing file at `path` (never created), waiting out other writers.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let sql = |operation: &'static str| {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            operation,
            source,
        }
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("opening"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql("setting the busy timeout"))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    for (index, step) in MIGRATIONS.iter().enumerate() {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read the version under the write lock: another process opening the same file at
        // the same moment may have applied this step while we waited.
        let applied: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if applied as usize > index {
            continue;
        }
        tx.execute_batch(step)?;
        // user_version lives in the file header and is part of this transaction.
        tx.pragma_update(None, "user_version", index as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

// ---- value conversions -------------------------------------------------------------------

pub(super) fn secs(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

pub(super) fn opt_secs(at: Option<OffsetDateTime>) -> Option<i64> {
    at.map(secs)
}

fn bad(index: usize, kind: Type, reason: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, kind, reason.into())
}

fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<OffsetDateTime> {
    let value: i64 = row.get(index)?;
    OffsetDateTime::from_unix_timestamp(value)
        .map_err(|error| bad(index, Type::Integer, error.to_string()))
}

fn opt_time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    let value: Option<i64> = row.get(index)?;
    value
        .map(|value| {
            OffsetDateTime::from_unix_timestamp(value)
                .map_err(|error| bad(index, Type::Integer, error.to_string()))
        })
        .transpose()
}

fn class_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<ErrorClass>> {
    let value: Option<String> = row.get(index)?;
    value
        .map(|value| {
            ErrorClass::parse(&value)
                .ok_or_else(|| bad(index, Type::Text, format!("unknown error class {value:?}")))
        })
        .transpose()
}

/// Reads the three `last_error_*` columns starting at `index`.
fn last_error_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<LastError>> {
    let Some(class) = class_at(row, index)? else {
        return Ok(None);
    };
    Ok(Some(LastError {
        class,
        code: row.get::<_, Option<String>>(index + 1)?.unwrap_or_default(),
        message: row.get::<_, Option<String>>(index + 2)?.unwrap_or_default(),
    }))
}

fn json_at(row: &Row<'_>, index: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|error| bad(index, Type::Text, error.to_string()))
}

pub(super) fn json_text(value: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail (its map keys are strings).
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

pub(super) fn count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

const VERSION_COLUMNS: &str = "id, certificate, chain_pem, key_pem, fingerprint, serial, \
     not_before, not_after, source, obtained_at";

fn version_from(row: &Row<'_>) -> rusqlite::Result<CertificateVersion> {
    Ok(CertificateVersion {
        id: row.get(0)?,
        certificate: row.get(1)?,
        chain_pem: row.get(2)?,
        key_pem: Secret::new(row.get::<_, String>(3)?),
        fingerprint: row.get(4)?,
        serial: row.get(5)?,
        not_before: time_at(row, 6)?,
        not_after: time_at(row, 7)?,
        source: row.get(8)?,
        obtained_at: time_at(row, 9)?,
    })
}

const DEPLOYMENT_COLUMNS: &str = "target, certificate, desired_fingerprint, \
     observed_fingerprint, status, attempts, last_error_class, last_error_code, \
     last_error_message, next_attempt_at, updated_at";

fn deployment_from(row: &Row<'_>) -> rusqlite::Result<DeploymentRecord> {
    let status: String = row.get(4)?;
    Ok(DeploymentRecord {
        target: row.get(0)?,
        certificate: row.get(1)?,
        desired_fingerprint: row.get(2)?,
        observed_fingerprint: row.get(3)?,
        status: DeployStatus::parse(&status)
            .ok_or_else(|| bad(4, Type::Text, format!("unknown status {status:?}")))?,
        attempts: row.get(5)?,
        last_error: last_error_at(row, 6)?,
        next_attempt_at: opt_time_at(row, 9)?,
        updated_at: time_at(row, 10)?,
    })
}

fn put_deployment_in(
    tx: &rusqlite::Transaction<'_>,
    record: &DeploymentRecord,
) -> rusqlite::Result<()> {
    let error = record.last_error.as_ref();
    tx.execute(
        "INSERT OR REPLACE INTO deployments (target, certificate, desired_fingerprint, \
         observed_fingerprint, status, attempts, last_error_class, last_error_code, \
         last_error_message, next_attempt_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            record.target,
            record.certificate,
            record.desired_fingerprint,
            record.observed_fingerprint,
            record.status.as_str(),
            record.attempts,
            error.map(|e| e.class.as_str()),
            error.map(|e| e.code.as_str()),
            error.map(|e| e.message.as_str()),
            opt_secs(record.next_attempt_at),
            secs(record.updated_at),
        ],
    )?;
    Ok(())
}

fn record_attempt_in(tx: &rusqlite::Transaction<'_>, attempt: &Attempt) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO attempts (subject_kind, subject, operation, class, code, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            attempt.subject_kind.as_str(),
            attempt.subject,
            attempt.operation,
            attempt.class.map(ErrorClass::as_str),
            attempt.code,
            secs(attempt.at),
        ],
    )?;
    Ok(())
}

const POLICY_COLUMNS: &str = "policy, resource, compliant, observed, last_checked, \
     last_job_id, last_error_class, last_error_code, last_error_message";

fn policy_from(row: &Row<'_>) -> rusqlite::Result<PolicyStatus> {
    Ok(PolicyStatus {
        policy: row.get(0)?,
        resource: row.get(1)?,
        compliant: row.get(2)?,
        observed: json_at(row, 3)?,
        last_checked: time_at(row, 4)?,
        last_job_id: row.get(5)?,
        last_error: last_error_at(row, 6)?,
    })
}

const PLAN_COLUMNS: &str = "certificate, fingerprint, renewal_at, ari_window_start, \
     ari_window_end, ari_next_check_at, updated_at";

fn plan_from(row: &Row<'_>) -> rusqlite::Result<RenewalPlan> {
    let start = opt_time_at(row, 3)?;
    let end = opt_time_at(row, 4)?;
    Ok(RenewalPlan {
        certificate: row.get(0)?,
        fingerprint: row.get(1)?,
        renewal_at: time_at(row, 2)?,
        ari_window: start.zip(end).map(|(start, end)| AriWindow { start, end }),
        ari_next_check_at: opt_time_at(row, 5)?,
        updated_at: time_at(row, 6)?,
    })
}

const EVENT_COLUMNS: &str = "id, at, kind, subject, message, fields";

fn event_from(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        at: time_at(row, 1)?,
        kind: row.get(2)?,
        subject: row.get(3)?,
        message: row.get(4)?,
        fields: json_at(row, 5)?,
    })
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> rusqlite::Result<Vec<T>> {
    rows.collect()
}

impl StateStore for SqliteStore {
    fn integrity_check(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        let report = match conn
            .prepare("PRAGMA integrity_check")
            .and_then(|mut statement| {
                let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
                collect(rows)
            }) {
            Ok(report) => report,
            // Damage bad enough that the check itself cannot walk the file.
            Err(rusqlite::Error::SqliteFailure(failure, message))
                if failure.code == rusqlite::ErrorCode::DatabaseCorrupt =>
            {
                vec![message.unwrap_or_else(|| "database disk image is malformed".into())]
            }
            Err(error) => return Err(self.error("checking integrity")(error)),
        };
        if report.len() == 1 && report[0] == "ok" {
            Ok(())
        } else {
            // The report lists pages and indexes, never row contents.
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                report: report.join("; "),
            })
        }
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        self.lock()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.error("reading the schema version"))
    }

    fn insert_certificate_version(
        &self,
        version: &CertificateVersion,
        deploy_to: &[String],
    ) -> Result<i64, StoreError> {
        self.write("storing a certificate version", |tx| {
            tx.execute(
                "INSERT INTO certificate_versions (certificate, chain_pem, key_pem, \
                 fingerprint, serial, not_before, not_after, source, obtained_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    version.certificate,
                    version.chain_pem,
                    version.key_pem.expose(),
                    version.fingerprint,
                    version.serial,
                    secs(version.not_before),
                    secs(version.not_after),
                    version.source,
                    secs(version.obtained_at),
                ],
            )?;
            let id = tx.last_insert_rowid();
            for target in deploy_to {
                tx.execute(
                    "INSERT INTO deployments (target, certificate, desired_fingerprint, \
                     status, attempts, updated_at) VALUES (?1, ?2, ?3, 'pending', 0, ?4) \
                     ON CONFLICT (target, certificate) DO UPDATE SET \
                     desired_fingerprint = excluded.desired_fingerprint, \
                     status = 'pending', attempts = 0, last_error_class = NULL, \
                     last_error_code = NULL, last_error_message = NULL, \
                     next_attempt_at = NULL, updated_at = excluded.updated_at",
                    params![
                        target,
                        version.certificate,
                        version.fingerprint,
                        secs(version.obtained_at)
                    ],
                )?;
            }
            Ok(id)
        })
    }

    fn certificate_version(&self, id: i64) -> Result<Option<CertificateVersion>, StoreError> {
        self.read("reading a certificate version", |tx| {
            tx.query_row(
                &format!("SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE id = ?1"),
                [id],
                version_from,
            )
            .optional()
        })
    }

    fn latest_certificate_version(
        &self,
        certificate: &str,
    ) -> Result<Option<CertificateVersion>, StoreError> {
        self.read("reading a certificate version", |tx| {
            tx.query_row(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE certificate = ?1 \
                     ORDER BY id DESC LIMIT 1"
                ),
                [certificate],
                version_from,
            )
            .optional()
        })
    }

    fn certificate_versions(
        &self,
        certificate: &str,
    ) -> Result<Vec<CertificateVersion>, StoreError> {
        self.read("listing certificate versions", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE certificate = ?1 \
                 ORDER BY id DESC"
            ))?;
            let rows = statement.query_map([certificate], version_from)?;
            collect(rows)
        })
    }

    fn latest_certificate_versions(&self) -> Result<Vec<CertificateVersion>, StoreError> {
        self.read("listing certificates", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE id IN \
                 (SELECT max(id) FROM certificate_versions GROUP BY certificate) \
                 ORDER BY certificate"
            ))?;
            let rows = statement.query_map([], version_from)?;
            collect(rows)
        })
    }

    fn prune_certificate_versions(
        &self,
        certificate: &str,
        keep: usize,
    ) -> Result<usize, StoreError> {
        self.write("pruning certificate versions", |tx| {
            tx.execute(
                "DELETE FROM certificate_versions WHERE certificate = ?1 \
                 AND id NOT IN (SELECT id FROM certificate_versions WHERE certificate = ?1 \
                                ORDER BY id DESC LIMIT ?2) \
                 AND fingerprint NOT IN \
                     (SELECT desired_fingerprint FROM deployments \
                      WHERE certificate = ?1 AND desired_fingerprint IS NOT NULL \
                      UNION SELECT observed_fingerprint FROM deployments \
                      WHERE certificate = ?1 AND observed_fingerprint IS NOT NULL)",
                params![certificate, count(keep)],
            )
        })
    }

    fn put_deployment(&self, record: &DeploymentRecord) -> Result<(), StoreError> {
        self.write("storing a deployment", |tx| put_deployment_in(tx, record))
    }

    fn put_deployment_with_attempt(
        &self,
        record: &DeploymentRecord,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        self.write("storing a deployment attempt", |tx| {
            put_deployment_in(tx, record)?;
            record_attempt_in(tx, attempt)
        })
    }

    fn deployment(
        &self,
        target: &str,
        certificate: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        self.read("reading a deployment", |tx| {
            tx.query_row(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
                     WHERE target = ?1 AND certificate = ?2"
                ),
                [target, certificate],
                deployment_from,
            )
            .optional()
        })
    }

    fn deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.read("listing deployments", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY certificate, target"
            ))?;
            let rows = statement.query_map([], deployment_from)?;
            collect(rows)
        })
    }

    fn due_deployments(&self, now: OffsetDateTime) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.read("listing due deployments", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
                 WHERE status IN ('pending', 'failed') \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) \
                 ORDER BY certificate, target"
            ))?;
            let rows = statement.query_map([secs(now)], deployment_from)?;
            collect(rows)
        })
    }

    fn record_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        self.write("recording an attempt", |tx| record_attempt_in(tx, attempt))
    }

    fn attempts(&self, kind: SubjectKind, subject: &str) -> Result<Vec<Attempt>, StoreError> {
        self.read("listing attempts", |tx| {
            let mut statement = tx.prepare(
                "SELECT subject_kind, subject, operation, class, code, at FROM attempts \
                 WHERE subject_kind = ?1 AND subject = ?2 ORDER BY id",
            )?;
            let rows = statement.query_map([kind.as_str(), subject], |row| {
                let kind: String = row.get(0)?;
                Ok(Attempt {
                    subject_kind: SubjectKind::parse(&kind).ok_or_else(|| {
                        bad(0, Type::Text, format!("unknown subject kind {kind:?}"))
                    })?,
                    subject: row.get(1)?,
                    operation: row.get(2)?,
                    class: class_at(row, 3)?,
                    code: row.get(4)?,
                    at: time_at(row, 5)?,
                })
            })?;
            collect(rows)
        })
    }

    fn put_policy_status(&self, status: &PolicyStatus) -> Result<(), StoreError> {
        let error = status.last_error.as_ref();
        self.write("storing a policy status", |tx| {
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO policy_status ({POLICY_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    status.policy,
                    status.resource,
                    status.compliant,
                    json_text(&status.observed),
                    secs(status.last_checked),
                    status.last_job_id,
                    error.map(|e| e.class.as_str()),
                    error.map(|e| e.code.as_str()),
                    error.map(|e| e.message.as_str()),
                ],
            )?;
            Ok(())
        })
    }

    fn policy_status(
        &self,
        policy: &str,
        resource: &str,
    ) -> Result<Option<PolicyStatus>, StoreError> {
        self.read("reading a policy status", |tx| {
            tx.query_row(
                &format!(
                    "SELECT {POLICY_COLUMNS} FROM policy_status \
                     WHERE policy = ?1 AND resource = ?2"
                ),
                [policy, resource],
                policy_from,
            )
            .optional()
        })
    }

    fn policy_statuses(&self) -> Result<Vec<PolicyStatus>, StoreError> {
        self.read("listing policy status", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {POLICY_COLUMNS} FROM policy_status ORDER BY policy, resource"
            ))?;
            let rows = statement.query_map([], policy_from)?;
            collect(rows)
        })
    }

    fn put_acme_account(&self, account: &AcmeAccount) -> Result<(), StoreError> {
        self.write("storing an ACME account", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO acme_accounts (directory_url, account_name, \
                 credentials, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    account.directory_url,
                    account.account_name,
                    account.credentials.expose(),
                    secs(account.created_at),
                ],
            )?;
            Ok(())
        })
    }

    fn acme_account(
        &self,
        directory_url: &str,
        account_name: &str,
    ) -> Result<Option<AcmeAccount>, StoreError> {
        self.read("reading an ACME account", |tx| {
            tx.query_row(
                "SELECT directory_url, account_name, credentials, created_at \
                 FROM acme_accounts WHERE directory_url = ?1 AND account_name = ?2",
                [directory_url, account_name],
                |row| {
                    Ok(AcmeAccount {
                        directory_url: row.get(0)?,
                        account_name: row.get(1)?,
                        credentials: Secret::new(row.get::<_, String>(2)?),
                        created_at: time_at(row, 3)?,
                    })
                },
            )
            .optional()
        })
    }

    fn delete_acme_account(
        &self,
        directory_url: &str,
        account_name: &str,
    ) -> Result<(), StoreError> {
        self.write("deleting an ACME account", |tx| {
            tx.execute(
                "DELETE FROM acme_accounts WHERE directory_url = ?1 AND account_name = ?2",
                [directory_url, account_name],
            )?;
            Ok(())
        })
    }

    fn put_ari_point(&self, point: &AriPoint) -> Result<(), StoreError> {
        self.write("storing an ARI point", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO ari_points (certificate, cert_id, window_start, \
                 window_end, renew_at, next_poll) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    point.certificate,
                    point.cert_id,
                    secs(point.window_start),
                    secs(point.window_end),
                    secs(point.renew_at),
                    secs(point.next_poll),
                ],
            )?;
            Ok(())
        })
    }

    fn ari_point(&self, certificate: &str) -> Result<Option<AriPoint>, StoreError> {
        self.read("reading an ARI point", |tx| {
            tx.query_row(
                "SELECT certificate, cert_id, window_start, window_end, renew_at, next_poll \
                 FROM ari_points WHERE certificate = ?1",
                [certificate],
                |row| {
                    Ok(AriPoint {
                        certificate: row.get(0)?,
                        cert_id: row.get(1)?,
                        window_start: time_at(row, 2)?,
                        window_end: time_at(row, 3)?,
                        renew_at: time_at(row, 4)?,
                        next_poll: time_at(row, 5)?,
                    })
                },
            )
            .optional()
        })
    }

    fn put_local_ca(&self, root: &LocalCaRoot) -> Result<(), StoreError> {
        self.write("storing a local CA root", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO local_cas (name, cert_pem, key_pem, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    root.name,
                    root.cert_pem,
                    root.key_pem.expose(),
                    secs(root.created_at),
                ],
            )?;
            Ok(())
        })
    }

    fn local_ca(&self, name: &str) -> Result<Option<LocalCaRoot>, StoreError> {
        self.read("reading a local CA root", |tx| {
            tx.query_row(
                "SELECT name, cert_pem, key_pem, created_at FROM local_cas WHERE name = ?1",
                [name],
                |row| {
                    Ok(LocalCaRoot {
                        name: row.get(0)?,
                        cert_pem: row.get(1)?,
                        key_pem: Secret::new(row.get::<_, String>(2)?),
                        created_at: time_at(row, 3)?,
                    })
                },
            )
            .optional()
        })
    }

    fn put_renewal_plan(&self, plan: &RenewalPlan) -> Result<(), StoreError> {
        self.write("storing a renewal plan", |tx| {
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO renewal_plans ({PLAN_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    plan.certificate,
                    plan.fingerprint,
                    secs(plan.renewal_at),
                    opt_secs(plan.ari_window.map(|window| window.start)),
                    opt_secs(plan.ari_window.map(|window| window.end)),
                    opt_secs(plan.ari_next_check_at),
                    secs(plan.updated_at),
                ],
            )?;
            Ok(())
        })
    }

    fn renewal_plan(&self, certificate: &str) -> Result<Option<RenewalPlan>, StoreError> {
        self.read("reading a renewal plan", |tx| {
            tx.query_row(
                &format!("SELECT {PLAN_COLUMNS} FROM renewal_plans WHERE certificate = ?1"),
                [certificate],
                plan_from,
            )
            .optional()
        })
    }

    fn renewal_plans(&self) -> Result<Vec<RenewalPlan>, StoreError> {
        self.read("listing renewal plans", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {PLAN_COLUMNS} FROM renewal_plans ORDER BY certificate"
            ))?;
            let rows = statement.query_map([], plan_from)?;
            collect(rows)
        })
    }

    fn append_event(&self, event: &Event) -> Result<i64, StoreError> {
        self.write("appending an event", |tx| {
            tx.execute(
                "INSERT INTO events (at, kind, subject, message, fields) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    secs(event.at),
                    event.kind,
                    event.subject,
                    event.message,
                    json_text(&event.fields),
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.read("listing events", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE id > ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR subject = ?3) \
                 AND (?5 IS NULL OR at >= ?5) \
                 ORDER BY id LIMIT ?4"
            ))?;
            let rows = statement.query_map(
                params![
                    query.after_id.unwrap_or(0),
                    query.kind,
                    query.subject,
                    // SQLite reads a negative LIMIT as "no limit".
                    query.limit.map(count).unwrap_or(-1),
                    opt_secs(query.since),
                ],
                event_from,
            )?;
            collect(rows)
        })
    }

    fn prune_events(&self, before: OffsetDateTime) -> Result<usize, StoreError> {
        self.write("pruning events", |tx| {
            tx.execute("DELETE FROM events WHERE at < ?1", [secs(before)])
        })
    }

    fn tail_events(&self, count_wanted: usize) -> Result<Vec<Event>, StoreError> {
        self.read("listing events", |tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM \
                 (SELECT {EVENT_COLUMNS} FROM events ORDER BY id DESC LIMIT ?1) ORDER BY id"
            ))?;
            let rows = statement.query_map([count(count_wanted)], event_from)?;
            collect(rows)
        })
    }
}

// ---- sealing, backup and restore -------------------------------------------------------

/// The key-bearing columns: table, identity columns, value column, and what they hold.
const SECRET_COLUMNS: &[(&str, &[&str], &str, SecretKind)] = &[
    (
        "certificate_versions",
        &["certificate", "fingerprint"],
        "key_pem",
        SecretKind::CertificateKey,
    ),
    (
        "acme_accounts",
        &["directory_url", "account_name"],
        "credentials",
        SecretKind::AcmeAccount,
    ),
    ("local_cas", &["name"], "key_pem", SecretKind::LocalCaKey),
];

impl SecretRecords for SqliteStore {
    fn location(&self) -> PathBuf {
        self.path.clone()
    }

    fn rewrite_secrets(
        &self,
        rewrite: &mut dyn FnMut(&SecretField) -> Result<Option<String>, SealError>,
    ) -> Result<usize, StoreError> {
        let mut refused = None;
        let rewritten = self.write("sealing keys", |tx| {
            let mut rewritten = 0;
            for (table, identity, column, kind) in SECRET_COLUMNS {
                let mut select = tx.prepare(&format!(
                    "SELECT rowid, {}, {column} FROM {table} ORDER BY rowid",
                    identity.join(", ")
                ))?;
                let rows = select.query_map([], |row| {
                    let mut parts = Vec::with_capacity(identity.len());
                    for index in 0..identity.len() {
                        parts.push(row.get::<_, String>(index + 1)?);
                    }
                    Ok((
                        row.get::<_, i64>(0)?,
                        SecretField {
                            kind: *kind,
                            identity: parts,
                            stored: Secret::new(row.get::<_, String>(identity.len() + 1)?),
                        },
                    ))
                })?;
                let fields = collect(rows)?;
                for (rowid, field) in fields {
                    match rewrite(&field) {
                        Ok(None) => {}
                        Ok(Some(value)) => {
                            tx.execute(
                                &format!("UPDATE {table} SET {column} = ?1 WHERE rowid = ?2"),
                                params![value, rowid],
                            )?;
                            rewritten += 1;
                        }
                        Err(error) => {
                            refused = Some(error);
                            // Any error rolls the transaction back; this one is replaced
                            // by the refusal below.
                            return Err(rusqlite::Error::InvalidQuery);
                        }
                    }
                }
            }
            Ok(rewritten)
        });
        if let Some(source) = refused {
            return Err(StoreError::Sealing {
                path: self.path.clone(),
                source,
            });
        }
        let rewritten = rewritten?;
        if rewritten > 0 {
            // The old values' pages are in the WAL: checkpoint them into the file (where
            // secure_delete zeroed them) and truncate the WAL, so no plain text is left.
            let busy: i64 = self
                .lock()
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                .map_err(self.error("truncating the WAL after sealing"))?;
            if busy != 0 {
                // A reader (a `status` next to us) kept the WAL: old values may stay in
                // it until the last connection closes, which checkpoints and removes it.
                tracing::warn!(
                    path = %self.path.display(),
                    "could not truncate the WAL after sealing (a reader holds it): plain-text \
                     keys may stay in state.db-wal until the daemon stops"
                );
            }
        }
        Ok(rewritten)
    }
}

impl SqliteStore {
    /// Writes a consistent copy of `state_dir/state.db` to `destination` while others may
    /// keep writing (`VACUUM INTO` reads one snapshot): created 0600 next to it, fsynced,
    /// renamed over it, the directory fsynced. The store is opened as it is, never created or
    /// migrated (a backup before an upgrade is of the old schema). Sealed keys stay sealed;
    /// free pages are not copied. Returns how the copied keys are kept.
    pub fn backup(state_dir: &Path, destination: &Path) -> Result<Survey, StoreError> {
        let path = state_dir.join(FILE_NAME);
        let sql = |operation: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sqlite {
                path,
                operation,
                source,
            }
        };
        let io = |source| StoreError::Io {
            path: destination.to_path_buf(),
            source,
        };
        let conn = connect(&path)?;
        let directory = destination
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = destination.file_name().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        })?;
        let temporary = directory.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            // VACUUM INTO accepts an empty file: create it 0600 first, so the copy of the
            // keys is never readable by others.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(io)?;
            let target = temporary.to_str().ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the backup path is not UTF-8",
                ))
            })?;
            conn.execute("VACUUM INTO ?1", [target])
                .map_err(sql("writing the backup"))?;
            std::fs::File::open(&temporary)
                .and_then(|file| file.sync_all())
                .map_err(io)?;
            std::fs::rename(&temporary, destination).map_err(io)?;
            std::fs::File::open(directory)
                .and_then(|file| file.sync_all())
                .map_err(io)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result?;
        let mut survey = Survey::default();
        for (table, _, column, _) in SECRET_COLUMNS {
            let exists: bool = conn
                .query_row(
                    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |row| row.get(0),
                )
                .map_err(sql("reading the schema"))?;
            if !exists {
                continue;
            }
            let mut select = conn
                .prepare(&format!("SELECT {column} FROM {table}"))
                .map_err(sql("counting keys"))?;
            let values = select
                .query_map([], |row| row.get::<_, String>(0).map(Secret::new))
                .and_then(collect)
                .map_err(sql("counting keys"))?;
            for value in values {
                survey.count(value.expose());
            }
        }
        Ok(survey)
    }

    /// Replaces `state_dir/state.db` with the backup `source`, which the caller has made
    /// sure no daemon uses (the state directory's lock). The backup is copied into the
    /// directory first and opened there: its integrity is checked, a newer schema refused
    /// and an older one migrated, before it replaces anything. The replaced store is kept
    /// as `state.db.before-restore`. Returns the restored store's schema version.
    pub fn restore(state_dir: &Path, source: &Path) -> Result<u32, StoreError> {
        let target = state_dir.join(FILE_NAME);
        let staged = state_dir.join(format!(
            ".{FILE_NAME}.restore-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let staged_wal = |suffix: &str| {
            let mut name = staged.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        let result = (|| {
            let io_at = |path: &Path| {
                let path = path.to_path_buf();
                move |source| StoreError::Io { path, source }
            };
            let mut input = crate::fsutil::open_regular(source).map_err(io_at(source))?;
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&staged)
                .map_err(io_at(&staged))?;
            std::io::copy(&mut input, &mut output).map_err(io_at(source))?;
            output.sync_all().map_err(io_at(&staged))?;
            drop(output);
            // Refuses a file that is no SQLite store, fails its integrity check or comes
            // from a newer certkeeper; migrates an older one.
            let version = {
                // Errors name the backup, not its staged copy.
                let backup = source.to_path_buf();
                let restored = Self::open_file(&staged).map_err(|error| match error {
                    StoreError::Sqlite { source, .. } => StoreError::Sqlite {
                        path: backup,
                        operation: "reading the backup",
                        source,
                    },
                    StoreError::Corrupt { report, .. } => StoreError::Corrupt {
                        path: backup,
                        report,
                    },
                    StoreError::TooNew { found, known, .. } => StoreError::TooNew {
                        path: backup,
                        found,
                        known,
                    },
                    other => other,
                })?;
                restored
                    .lock()
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(restored.error("checkpointing the backup"))?;
                restored.schema_version()?
            };
            // The replaced store's WAL must not be replayed into the restored file.
            if target.exists() {
                let current = Self::open_file(&target)?;
                current
                    .lock()
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(current.error("checkpointing the replaced store"))?;
                drop(current);
                std::fs::rename(
                    &target,
                    state_dir.join(format!("{FILE_NAME}.before-restore")),
                )
                .map_err(io_at(&target))?;
            }
            for suffix in ["-wal", "-shm"] {
                let mut name = target.clone().into_os_string();
                name.push(suffix);
                match std::fs::remove_file(&name) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StoreError::Io {
                            path: PathBuf::from(name),
                            source: error,
                        })
                    }
                    _ => {}
                }
            }
            // Run as root for a service user's directory (DynamicUser=): the restored file
            // must belong to whoever owns the directory, as the replaced one did.
            let owner = std::fs::metadata(state_dir).map_err(io_at(state_dir))?;
            let staged_owner = std::fs::metadata(&staged).map_err(io_at(&staged))?;
            if (owner.uid(), owner.gid()) != (staged_owner.uid(), staged_owner.gid()) {
                std::os::unix::fs::chown(&staged, Some(owner.uid()), Some(owner.gid()))
                    .map_err(io_at(&staged))?;
            }
            std::fs::rename(&staged, &target).map_err(io_at(&target))?;
            std::fs::File::open(state_dir)
                .and_then(|directory| directory.sync_all())
                .map_err(io_at(state_dir))?;
            Ok(version)
        })();
        for leftover in [staged.clone(), staged_wal("-wal"), staged_wal("-shm")] {
            let _ = std::fs::remove_file(leftover);
        }
        result
    }
}

#[cfg(test)]
mod tests;
