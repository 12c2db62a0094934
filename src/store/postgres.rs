//! The shared [`StateStore`] for several daemons (`[store] backend = "postgres"`,
//! docs/ha.md): the same tables as the SQLite store, plus the leader lease
//! (`store::lease`) and the fencing token on every ledger, certificate-version and attempt
//! row.
//!
//! Threading: the trait is synchronous and is called from async code, and the blocking
//! `postgres` client runs its own small runtime, which must never be entered from inside
//! another one. So one dedicated thread owns the connection; each call sends it a job and
//! waits for the answer, blocking the caller exactly as a SQLite write does. A broken
//! connection (the database restarted or went away) is dropped and the next call connects
//! again, so the store resumes by itself when the database returns.
//!
//! Fencing: a store carries the token of the leadership its process holds (0 before any).
//! Every write to the ledger, the versions and the attempts first reads the lease row
//! `FOR SHARE` and is refused ([`StoreError::Fenced`]) when a newer leadership exists; the
//! lease takeover updates that row, so it waits for a write in flight and every later write
//! of the old leader sees the new token.
//!
//! Migrations are versioned (`certkeeper_schema.version`) and run in one transaction under a
//! transaction-scoped advisory lock, so two daemons starting at once apply each step once.

use super::copy;
use super::sqlite::{count, json_text, opt_secs, secs};
use super::{
    AcmeAccount, AriPoint, AriWindow, Attempt, CertificateVersion, DeployStatus, DeploymentRecord,
    Event, EventQuery, LastError, LocalCaRoot, PolicyStatus, RenewalPlan, StateStore, StoreError,
    SubjectKind,
};
use crate::error::ErrorClass;
use crate::secret::Secret;
use postgres::{Client, GenericClient, Row};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Key of the advisory lock held while migrating (any constant unique to certkeeper).
const MIGRATION_LOCK: i64 = 0x6365_7274_6b65_6570; // "certkeep"

/// How long connecting may take before the call fails (the database host is down).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long sent data may stay unacknowledged before the connection counts as dead (a
/// database host that vanished without closing the connection).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Schema steps; `certkeeper_schema.version` counts how many have been applied. Append
/// only: a released step is never edited, a change is a new step. Text keys use the "C"
/// collation so listings sort byte-wise, as SQLite's do, whatever the database's locale.
const MIGRATIONS: &[&str] = &[
    // 1: the SQLite schema (at its version 4) plus the lease and fencing columns.
    r#"
    CREATE TABLE certificate_versions (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        certificate   TEXT COLLATE "C" NOT NULL CHECK (length(certificate) > 0),
        chain_pem     TEXT   NOT NULL,
        key_pem       TEXT   NOT NULL,
        fingerprint   TEXT   NOT NULL,
        serial        TEXT   NOT NULL,
        not_before    BIGINT NOT NULL,
        not_after     BIGINT NOT NULL,
        source        TEXT   NOT NULL,
        obtained_at   BIGINT NOT NULL,
        fencing_token BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX certificate_versions_by_name ON certificate_versions (certificate, id);

    CREATE TABLE deployments (
        target               TEXT COLLATE "C" NOT NULL CHECK (length(target) > 0),
        certificate          TEXT COLLATE "C" NOT NULL CHECK (length(certificate) > 0),
        desired_fingerprint  TEXT,
        observed_fingerprint TEXT,
        status               TEXT    NOT NULL
            CHECK (status IN ('in_sync', 'pending', 'deploying', 'failed', 'parked')),
        attempts             INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error_class     TEXT,
        last_error_code      TEXT,
        last_error_message   TEXT,
        next_attempt_at      BIGINT,
        updated_at           BIGINT  NOT NULL,
        fencing_token        BIGINT  NOT NULL DEFAULT 0,
        PRIMARY KEY (target, certificate)
    );

    CREATE TABLE attempts (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subject_kind  TEXT   NOT NULL
            CHECK (subject_kind IN ('target', 'policy', 'certificate')),
        subject       TEXT   NOT NULL,
        operation     TEXT   NOT NULL,
        class         TEXT,
        code          TEXT,
        at            BIGINT NOT NULL,
        fencing_token BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX attempts_by_subject ON attempts (subject_kind, subject, id);

    CREATE TABLE policy_status (
        policy             TEXT COLLATE "C" NOT NULL,
        resource           TEXT COLLATE "C" NOT NULL,
        compliant          BOOLEAN NOT NULL,
        observed           TEXT    NOT NULL,
        last_checked       BIGINT  NOT NULL,
        last_job_id        TEXT,
        last_error_class   TEXT,
        last_error_code    TEXT,
        last_error_message TEXT,
        PRIMARY KEY (policy, resource)
    );

    CREATE TABLE acme_accounts (
        directory_url TEXT   NOT NULL,
        account_name  TEXT   NOT NULL,
        credentials   TEXT   NOT NULL,
        created_at    BIGINT NOT NULL,
        PRIMARY KEY (directory_url, account_name)
    );

    CREATE TABLE renewal_plans (
        certificate       TEXT COLLATE "C" PRIMARY KEY,
        fingerprint       TEXT   NOT NULL,
        renewal_at        BIGINT NOT NULL,
        ari_window_start  BIGINT,
        ari_window_end    BIGINT,
        ari_next_check_at BIGINT,
        updated_at        BIGINT NOT NULL,
        CHECK ((ari_window_start IS NULL) = (ari_window_end IS NULL))
    );

    CREATE TABLE events (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at      BIGINT NOT NULL,
        kind    TEXT   NOT NULL,
        subject TEXT   NOT NULL,
        message TEXT   NOT NULL,
        fields  TEXT   NOT NULL
    );
    CREATE INDEX events_by_kind ON events (kind, id);
    CREATE INDEX events_by_subject ON events (subject, id);
    CREATE INDEX events_by_time ON events (at, id);
    -- Deleted only by the retention, never edited.
    CREATE FUNCTION certkeeper_events_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'events are append-only'; END $$;
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        FOR EACH ROW EXECUTE FUNCTION certkeeper_events_append_only();

    CREATE TABLE ari_points (
        certificate  TEXT PRIMARY KEY,
        cert_id      TEXT   NOT NULL,
        window_start BIGINT NOT NULL,
        window_end   BIGINT NOT NULL,
        renew_at     BIGINT NOT NULL,
        next_poll    BIGINT NOT NULL
    );

    CREATE TABLE local_cas (
        name       TEXT PRIMARY KEY,
        cert_pem   TEXT   NOT NULL,
        key_pem    TEXT   NOT NULL,
        created_at BIGINT NOT NULL
    );

    -- One row: who leads, under which fencing token, until when (the database's clock).
    CREATE TABLE leader_lease (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        holder      TEXT        NOT NULL,
        token       BIGINT      NOT NULL CHECK (token > 0),
        acquired_at TIMESTAMPTZ NOT NULL,
        expires_at  TIMESTAMPTZ NOT NULL
    );
    "#,
    // 2: `renew` and `deploy` asked of a follower wait here for the leader (docs/ha.md).
    r#"
    CREATE TABLE manual_requests (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request      TEXT        NOT NULL,
        requested_by TEXT        NOT NULL,
        requested_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        taken_by     TEXT,
        answer       TEXT
    );
    CREATE INDEX manual_requests_open ON manual_requests (id) WHERE taken_by IS NULL;
    "#,
    // 3: HTTP-01 challenge answers, so every instance behind a load balancer answers the CA.
    r#"
    CREATE TABLE http01_tokens (
        token             TEXT        PRIMARY KEY,
        key_authorization TEXT        NOT NULL,
        published_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    );
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Where and how to reach the database. The URL may carry a password: it is a [`Secret`]
/// and only [`ConnectOptions::label`] (host, port, database) ever prints.
#[derive(Clone)]
pub struct ConnectOptions {
    pub url: Secret,
    /// PEM file of the CA that signed the server's certificate; the public web roots when
    /// absent. Used when the URL asks for TLS (`sslmode=require`, or `prefer`).
    pub ca_file: Option<PathBuf>,
}

impl ConnectOptions {
    /// The URL from `url_env` or `url_file` (relative: in `$CREDENTIALS_DIRECTORY`), like
    /// every other secret.
    pub fn from_config(
        store: &crate::config::store::StoreConfig,
        environment: &dyn crate::config::credentials::SecretEnvironment,
    ) -> Result<Self, crate::config::credentials::CredentialError> {
        let url = crate::config::credentials::resolve_secret(
            "store",
            "url",
            None,
            store.url_env.as_deref(),
            store.url_file.as_deref(),
            environment,
        )?
        .ok_or_else(|| crate::config::credentials::CredentialError::Missing {
            owner: "store".into(),
            field: "url",
        })?;
        Ok(Self {
            url,
            ca_file: store.ca_file.clone(),
        })
    }
}

/// What one job on the store thread can fail with, before it is named for the operator.
enum Failure {
    Db(postgres::Error),
    Bad { what: &'static str, reason: String },
    Fenced { token: i64, current: i64 },
    TooNew { found: u32 },
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Self {
        Failure::Db(error)
    }
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// The store thread's side: the parsed settings and the connection, made on first use and
/// again after it broke.
struct Session {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Option<Client>,
}

impl Session {
    fn client(&mut self) -> Result<&mut Client, Failure> {
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => self.config.connect(self.tls.clone())?,
        };
        Ok(self.client.insert(client))
    }
}

/// The PostgreSQL state store. Cheap to share behind an `Arc`; calls serialize on the
/// store thread's one connection, and any number of processes share the database.
pub struct PostgresStore {
    label: String,
    jobs: Mutex<mpsc::Sender<Job>>,
    fencing_token: AtomicI64,
    /// When set (a daemon), fenced writes are refused here, without asking the database,
    /// once the local lease has run out.
    leadership: std::sync::OnceLock<Arc<super::lease::Leadership>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.label)
            .finish_non_exhaustive()
    }
}

/// `host:port/database` of a parsed URL: what errors and logs name (never the password).
fn label_of(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgresql://{host}:{port}/{database}")
}

fn tls_config(options: &ConnectOptions, label: &str) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let bad = |reason: String| StoreError::BadValue {
                path: PathBuf::from(label),
                what: "store.ca_file",
                reason,
            };
            let text = crate::fsutil::read_regular(path, 1 << 20)
                .map_err(|error| bad(format!("{}: {error}", path.display())))?;
            let blocks = pem::parse_many(&text)
                .map_err(|error| bad(format!("{}: {error}", path.display())))?;
            for block in blocks.iter().filter(|block| block.tag() == "CERTIFICATE") {
                roots
                    .add(rustls::pki_types::CertificateDer::from(
                        block.contents().to_vec(),
                    ))
                    .map_err(|error| bad(format!("{}: {error}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(bad(format!("{}: no CERTIFICATE in it", path.display())));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| StoreError::BadValue {
            path: PathBuf::from(label),
            what: "TLS settings",
            reason: error.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

impl PostgresStore {
    /// Parses the URL, starts the store thread, connects and migrates the schema to
    /// [`SCHEMA_VERSION`]; refuses a database written by a newer certkeeper.
    pub fn open(options: &ConnectOptions) -> Result<Self, StoreError> {
        let mut config = postgres::Config::from_str(options.url.expose()).map_err(|error| {
            // The parser's message names the option, never the URL's value.
            StoreError::BadValue {
                path: PathBuf::from("store.url"),
                what: "the PostgreSQL URL",
                reason: error.to_string(),
            }
        })?;
        let label = label_of(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("certkeeper");
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(options, &label)?);
        let (jobs, queue) = mpsc::channel::<Job>();
        let mut session = Session {
            config,
            tls,
            client: None,
        };
        std::thread::Builder::new()
            .name("certkeeper-postgres".into())
            .spawn(move || {
                // Ends when the store (every sender) is dropped.
                for job in queue {
                    job(&mut session);
                }
            })
            .map_err(|source| StoreError::Io {
                path: PathBuf::from(&label),
                source,
            })?;
        let store = Self {
            label,
            jobs: Mutex::new(jobs),
            fencing_token: AtomicI64::new(0),
            leadership: std::sync::OnceLock::new(),
        };
        store.call("migrating the schema", migrate)?;
        Ok(store)
    }

    /// `postgresql://host:port/database`, as errors name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The fencing token this store's writes carry (0: none yet).
    pub fn fencing_token(&self) -> i64 {
        self.fencing_token.load(Ordering::SeqCst)
    }

    /// Sets the token of the leadership this process now holds (see `store::lease`).
    pub fn set_fencing_token(&self, token: i64) {
        self.fencing_token.store(token, Ordering::SeqCst);
    }

    /// Makes fenced writes depend on `leadership` being current (a daemon's store).
    pub fn attach_leadership(&self, leadership: Arc<super::lease::Leadership>) {
        let _ = self.leadership.set(leadership);
    }

    fn error(&self, operation: &'static str, failure: Failure) -> StoreError {
        let database = self.label.clone();
        match failure {
            Failure::Db(source) => StoreError::Postgres {
                database,
                operation,
                source,
            },
            Failure::Bad { what, reason } => StoreError::BadValue {
                path: PathBuf::from(database),
                what,
                reason,
            },
            Failure::Fenced { token, current } => StoreError::Fenced {
                database,
                operation,
                token,
                current,
            },
            Failure::TooNew { found } => StoreError::TooNew {
                path: PathBuf::from(database),
                found,
                known: SCHEMA_VERSION,
            },
        }
    }

    /// Runs `work` on the store thread with a live connection and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Client) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session: &mut Session| {
            let result = session.client().and_then(work);
            let _ = reply.send(result);
        });
        let gone = || StoreError::Io {
            path: PathBuf::from(&self.label),
            source: std::io::Error::other("the store thread has stopped"),
        };
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(job)
            .map_err(|_| gone())?;
        answer
            .recv()
            .map_err(|_| gone())?
            .map_err(|failure| self.error(operation, failure))
    }

    /// One read-write transaction.
    fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(operation, move |client| {
            let mut tx = client.transaction()?;
            let value = work(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// One write transaction that only a current leadership may make: refused when the
    /// lease row carries a newer token than this store's. `work` gets the token to record.
    fn fenced_write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut postgres::Transaction<'_>, i64) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self
            .leadership
            .get()
            .is_some_and(|leadership| !leadership.is_leader())
        {
            return Err(StoreError::NotLeader {
                database: self.label.clone(),
                operation,
            });
        }
        let token = self.fencing_token();
        self.write(operation, move |tx| {
            let current = tx
                .query_opt("SELECT token FROM leader_lease WHERE id = 1 FOR SHARE", &[])?
                .map(|row| row.try_get::<_, i64>(0))
                .transpose()?;
            if let Some(current) = current.filter(|current| *current > token) {
                return Err(Failure::Fenced { token, current });
            }
            work(tx, token)
        })
    }

    /// One read. Every read here is a single statement, which PostgreSQL runs on one
    /// snapshot by itself: no BEGIN and COMMIT round trips (a pass makes thousands of reads).
    fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Client) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(operation, work)
    }

    // ---- the leader lease (driven by `store::lease`) -----------------------------------

    /// Takes the lease for `holder` when nobody holds it or the holder's lease expired
    /// (the database's clock decides), with a token one above the last; `None` when
    /// another instance holds it. Does not change this store's fencing token.
    pub fn try_acquire_lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let holder = holder.to_owned();
        let ttl_ms = millis(ttl);
        self.write("taking the leader lease", move |tx| {
            let row = tx.query_opt(
                "INSERT INTO leader_lease (id, holder, token, acquired_at, expires_at) \
                 VALUES (1, $1, 1, clock_timestamp(), \
                         clock_timestamp() + $2::bigint * interval '1 millisecond') \
                 ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, \
                     token = leader_lease.token + 1, acquired_at = EXCLUDED.acquired_at, \
                     expires_at = EXCLUDED.expires_at \
                 WHERE leader_lease.expires_at < clock_timestamp() \
                 RETURNING token",
                &[&holder, &ttl_ms],
            )?;
            Ok(row.map(|row| row.try_get::<_, i64>(0)).transpose()?)
        })
    }

    /// Extends the lease `holder` holds under `token`; `false` when it is no longer theirs
    /// (it expired and another instance took it).
    pub fn renew_lease(&self, holder: &str, token: i64, ttl: Duration) -> Result<bool, StoreError> {
        let holder = holder.to_owned();
        let ttl_ms = millis(ttl);
        self.write("renewing the leader lease", move |tx| {
            let renewed = tx.execute(
                "UPDATE leader_lease SET \
                     expires_at = clock_timestamp() + $3::bigint * interval '1 millisecond' \
                 WHERE id = 1 AND holder = $1 AND token = $2",
                &[&holder, &token, &ttl_ms],
            )?;
            Ok(renewed == 1)
        })
    }

    /// Gives the lease up at once (a clean shutdown), so another instance need not wait
    /// for it to expire. The token stays, so the next leadership still gets a higher one.
    pub fn release_lease(&self, holder: &str, token: i64) -> Result<(), StoreError> {
        let holder = holder.to_owned();
        self.write("releasing the leader lease", move |tx| {
            tx.execute(
                "UPDATE leader_lease SET expires_at = clock_timestamp() \
                 WHERE id = 1 AND holder = $1 AND token = $2",
                &[&holder, &token],
            )?;
            Ok(())
        })
    }

    /// Who holds the lease now (`None`: nobody, or it expired).
    pub fn current_leader(&self) -> Result<Option<Leader>, StoreError> {
        self.read("reading the leader lease", |tx| {
            let row = tx.query_opt(
                "SELECT holder, token, \
                     (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
                 FROM leader_lease WHERE id = 1 AND expires_at > clock_timestamp()",
                &[],
            )?;
            row.map(|row| -> Result<Leader, Failure> {
                Ok(Leader {
                    holder: row.try_get(0)?,
                    token: row.try_get(1)?,
                    expires_in: Duration::from_millis(
                        u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
                    ),
                })
            })
            .transpose()
        })
    }
}

impl PostgresStore {
    /// Fills this (empty) store with `tables` read from SQLite in one transaction, which
    /// commits only when every table read back matches `expected` (`store::copy`).
    pub(super) fn import(
        &self,
        tables: Vec<copy::TableRows>,
        expected: Vec<copy::TableSum>,
    ) -> Result<(), copy::CopyError> {
        self.call("copying a SQLite store in", move |client| {
            let mut tx = client.transaction()?;
            for ((table, rows), expected) in tables.iter().zip(&expected) {
                let present: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])?
                    .try_get(0)?;
                if present > 0 {
                    return Ok(Err(copy::CopyError::NotEmpty {
                        table: table.name,
                        rows: present,
                    }));
                }
                let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
                let placeholders: Vec<String> =
                    (1..=names.len()).map(|index| format!("${index}")).collect();
                let insert = tx.prepare(&format!(
                    "INSERT INTO {} ({}) {} VALUES ({})",
                    table.name,
                    names.join(", "),
                    if table.identity {
                        "OVERRIDING SYSTEM VALUE"
                    } else {
                        ""
                    },
                    placeholders.join(", ")
                ))?;
                for row in rows {
                    let values = row
                        .iter()
                        .zip(table.columns)
                        .map(|(cell, (column, kind))| to_sql(cell, *kind, column))
                        .collect::<Result<Vec<_>, Failure>>()?;
                    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
                        .iter()
                        .map(|value| value.as_ref() as &(dyn postgres::types::ToSql + Sync))
                        .collect();
                    tx.execute(&insert, &params)?;
                }
                if table.identity && !rows.is_empty() {
                    tx.execute(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{0}', 'id'), \
                             (SELECT max(id) FROM {0}))",
                            table.name
                        ),
                        &[],
                    )?;
                }
                // Read back in the source's order (byte-wise on text keys) and compare.
                let order: Vec<String> = table
                    .order_by
                    .split(", ")
                    .map(|key| {
                        let text = table
                            .columns
                            .iter()
                            .any(|(name, kind)| *name == key && matches!(kind, copy::Kind::Text));
                        if text {
                            format!("{key} COLLATE \"C\"")
                        } else {
                            key.to_owned()
                        }
                    })
                    .collect();
                let back = tx
                    .query(
                        &format!(
                            "SELECT {} FROM {} ORDER BY {}",
                            names.join(", "),
                            table.name,
                            order.join(", ")
                        ),
                        &[],
                    )?
                    .iter()
                    .map(|row| {
                        table
                            .columns
                            .iter()
                            .enumerate()
                            .map(|(index, (_, kind))| from_sql(row, index, *kind))
                            .collect::<Result<Vec<_>, Failure>>()
                    })
                    .collect::<Result<Vec<_>, Failure>>()?;
                let got = copy::sum(table.name, &back);
                if &got != expected {
                    return Ok(Err(copy::CopyError::Mismatch {
                        table: table.name,
                        expected: format!("{} rows, sha256 {}", expected.rows, expected.sha256),
                        got: format!("{} rows, sha256 {}", got.rows, got.sha256),
                    }));
                }
            }
            tx.commit()?;
            Ok(Ok(()))
        })?
    }
}

type SqlValue = Box<dyn postgres::types::ToSql + Sync + Send>;

fn to_sql(cell: &copy::Cell, kind: copy::Kind, column: &'static str) -> Result<SqlValue, Failure> {
    use copy::{Cell, Kind};
    let bad = |reason: String| Failure::Bad {
        what: column,
        reason,
    };
    Ok(match (cell, kind) {
        (Cell::Null, Kind::Text) => Box::new(None::<String>),
        (Cell::Null, Kind::Big) => Box::new(None::<i64>),
        (Cell::Null, Kind::Int) => Box::new(None::<i32>),
        (Cell::Null, Kind::Bool) => Box::new(None::<bool>),
        (Cell::Integer(value), Kind::Big) => Box::new(*value),
        (Cell::Integer(value), Kind::Int) => {
            Box::new(i32::try_from(*value).map_err(|_| bad(format!("{value} out of range")))?)
        }
        (Cell::Integer(value), Kind::Bool) => Box::new(*value != 0),
        (Cell::Integer(value), Kind::Text) => Box::new(value.to_string()),
        (Cell::Text(text), Kind::Text) => Box::new(text.clone()),
        (Cell::Text(_), _) => return Err(bad("text where a number belongs".into())),
    })
}

fn from_sql(row: &Row, index: usize, kind: copy::Kind) -> Result<copy::Cell, Failure> {
    use copy::{Cell, Kind};
    let integer = |value: Option<i64>| value.map_or(Cell::Null, Cell::Integer);
    Ok(match kind {
        Kind::Text => row
            .try_get::<_, Option<String>>(index)?
            .map_or(Cell::Null, Cell::Text),
        Kind::Big => integer(row.try_get(index)?),
        Kind::Int => integer(row.try_get::<_, Option<i32>>(index)?.map(i64::from)),
        Kind::Bool => integer(row.try_get::<_, Option<bool>>(index)?.map(i64::from)),
    })
}

impl PostgresStore {
    // ---- manual requests forwarded from followers to the leader --------------------------

    /// Queues a request (JSON) for the leader; returns its id.
    pub fn enqueue_request(&self, request: &str, requested_by: &str) -> Result<i64, StoreError> {
        let (request, by) = (request.to_owned(), requested_by.to_owned());
        self.write("queueing a request for the leader", move |tx| {
            Ok(tx
                .query_one(
                    "INSERT INTO manual_requests (request, requested_by) VALUES ($1, $2) \
                     RETURNING id",
                    &[&request, &by],
                )?
                .try_get(0)?)
        })
    }

    /// Takes every queued request not yet taken, oldest first (the leader calls this).
    pub fn take_requests(&self, taken_by: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let by = taken_by.to_owned();
        self.write("taking queued requests", move |tx| {
            many(
                tx,
                "UPDATE manual_requests SET taken_by = $1 WHERE id IN \
                 (SELECT id FROM manual_requests WHERE taken_by IS NULL ORDER BY id \
                  FOR UPDATE SKIP LOCKED) RETURNING id, request",
                &[&by],
                |row| Ok((row.try_get(0)?, row.try_get(1)?)),
            )
        })
    }

    /// Stores the leader's answer (JSON) to request `id`.
    pub fn answer_request(&self, id: i64, answer: &str) -> Result<(), StoreError> {
        let answer = answer.to_owned();
        self.write("answering a queued request", move |tx| {
            tx.execute(
                "UPDATE manual_requests SET answer = $2 WHERE id = $1",
                &[&id, &answer],
            )?;
            Ok(())
        })
    }

    /// The answer to request `id` once there is one; the row goes with it.
    pub fn request_answer(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.write("reading a queued request's answer", move |tx| {
            one(
                tx,
                "DELETE FROM manual_requests WHERE id = $1 AND answer IS NOT NULL \
                 RETURNING answer",
                &[&id],
                |row| Ok(row.try_get(0)?),
            )
        })
    }

    /// Publishes an HTTP-01 answer for every instance (replacing an older one).
    pub fn put_http01_token(&self, token: &str, key_authorization: &str) -> Result<(), StoreError> {
        let (token, answer) = (token.to_owned(), key_authorization.to_owned());
        self.write("publishing an HTTP-01 token", move |tx| {
            tx.execute(
                "INSERT INTO http01_tokens (token, key_authorization) VALUES ($1, $2) \
                 ON CONFLICT (token) DO UPDATE SET key_authorization = EXCLUDED.key_authorization",
                &[&token, &answer],
            )?;
            Ok(())
        })
    }

    /// The published answer for `token`, if any.
    pub fn http01_token(&self, token: &str) -> Result<Option<String>, StoreError> {
        let token = token.to_owned();
        self.read("reading an HTTP-01 token", move |tx| {
            one(
                tx,
                "SELECT key_authorization FROM http01_tokens WHERE token = $1",
                &[&token],
                |row| Ok(row.try_get(0)?),
            )
        })
    }

    /// Withdraws the answer for `token` (its order ended).
    pub fn delete_http01_token(&self, token: &str) -> Result<(), StoreError> {
        let token = token.to_owned();
        self.write("withdrawing an HTTP-01 token", move |tx| {
            tx.execute("DELETE FROM http01_tokens WHERE token = $1", &[&token])?;
            Ok(())
        })
    }

    /// Withdraws request `id` if no leader took it yet; `false` when one did.
    pub fn withdraw_request(&self, id: i64) -> Result<bool, StoreError> {
        self.write("withdrawing a queued request", move |tx| {
            Ok(tx.execute(
                "DELETE FROM manual_requests WHERE id = $1 AND taken_by IS NULL",
                &[&id],
            )? == 1)
        })
    }
}

/// The instance holding the leader lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub holder: String,
    pub token: i64,
    pub expires_in: Duration,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn migrate(client: &mut Client) -> Result<(), Failure> {
    let mut tx = client.transaction()?;
    // Held until commit: a second daemon starting now waits here, then finds the steps done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS certkeeper_schema (version INTEGER NOT NULL)")?;
    let found = match tx.query_opt("SELECT version FROM certkeeper_schema", &[])? {
        Some(row) => row.try_get::<_, i32>(0)?,
        None => {
            tx.execute("INSERT INTO certkeeper_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    let found = u32::try_from(found).map_err(|_| Failure::Bad {
        what: "certkeeper_schema.version",
        reason: format!("negative version {found}"),
    })?;
    if found > SCHEMA_VERSION {
        return Err(Failure::TooNew { found });
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.batch_execute(step)?;
    }
    let version = SCHEMA_VERSION as i32;
    tx.execute("UPDATE certkeeper_schema SET version = $1", &[&version])?;
    tx.commit()?;
    Ok(())
}

// ---- value conversions (the column encodings are SQLite's: whole seconds, JSON text) --

fn time_at(row: &Row, index: usize, what: &'static str) -> Result<OffsetDateTime, Failure> {
    let value: i64 = row.try_get(index)?;
    OffsetDateTime::from_unix_timestamp(value).map_err(|error| Failure::Bad {
        what,
        reason: error.to_string(),
    })
}

fn opt_time_at(
    row: &Row,
    index: usize,
    what: &'static str,
) -> Result<Option<OffsetDateTime>, Failure> {
    let value: Option<i64> = row.try_get(index)?;
    value
        .map(|value| {
            OffsetDateTime::from_unix_timestamp(value).map_err(|error| Failure::Bad {
                what,
                reason: error.to_string(),
            })
        })
        .transpose()
}

fn class_at(row: &Row, index: usize) -> Result<Option<ErrorClass>, Failure> {
    let value: Option<String> = row.try_get(index)?;
    value
        .map(|value| {
            ErrorClass::parse(&value).ok_or_else(|| Failure::Bad {
                what: "error class",
                reason: format!("unknown error class {value:?}"),
            })
        })
        .transpose()
}

/// Reads the three `last_error_*` columns starting at `index`.
fn last_error_at(row: &Row, index: usize) -> Result<Option<LastError>, Failure> {
    let Some(class) = class_at(row, index)? else {
        return Ok(None);
    };
    Ok(Some(LastError {
        class,
        code: row
            .try_get::<_, Option<String>>(index + 1)?
            .unwrap_or_default(),
        message: row
            .try_get::<_, Option<String>>(index + 2)?
            .unwrap_or_default(),
    }))
}

fn json_at(row: &Row, index: usize, what: &'static str) -> Result<serde_json::Value, Failure> {
    let text: String = row.try_get(index)?;
    serde_json::from_str(&text).map_err(|error| Failure::Bad {
        what,
        reason: error.to_string(),
    })
}

fn collect<T>(
    rows: Vec<Row>,
    convert: impl Fn(&Row) -> Result<T, Failure>,
) -> Result<Vec<T>, Failure> {
    rows.iter().map(convert).collect()
}

const VERSION_COLUMNS: &str = "id, certificate, chain_pem, key_pem, fingerprint, serial, \
     not_before, not_after, source, obtained_at";

fn version_from(row: &Row) -> Result<CertificateVersion, Failure> {
    Ok(CertificateVersion {
        id: row.try_get(0)?,
        certificate: row.try_get(1)?,
        chain_pem: row.try_get(2)?,
        key_pem: Secret::new(row.try_get::<_, String>(3)?),
        fingerprint: row.try_get(4)?,
        serial: row.try_get(5)?,
        not_before: time_at(row, 6, "certificate_versions.not_before")?,
        not_after: time_at(row, 7, "certificate_versions.not_after")?,
        source: row.try_get(8)?,
        obtained_at: time_at(row, 9, "certificate_versions.obtained_at")?,
    })
}

const DEPLOYMENT_COLUMNS: &str = "target, certificate, desired_fingerprint, \
     observed_fingerprint, status, attempts, last_error_class, last_error_code, \
     last_error_message, next_attempt_at, updated_at";

fn deployment_from(row: &Row) -> Result<DeploymentRecord, Failure> {
    let status: String = row.try_get(4)?;
    let attempts: i32 = row.try_get(5)?;
    Ok(DeploymentRecord {
        target: row.try_get(0)?,
        certificate: row.try_get(1)?,
        desired_fingerprint: row.try_get(2)?,
        observed_fingerprint: row.try_get(3)?,
        status: DeployStatus::parse(&status).ok_or_else(|| Failure::Bad {
            what: "deployments.status",
            reason: format!("unknown status {status:?}"),
        })?,
        attempts: u32::try_from(attempts).map_err(|_| Failure::Bad {
            what: "deployments.attempts",
            reason: format!("negative count {attempts}"),
        })?,
        last_error: last_error_at(row, 6)?,
        next_attempt_at: opt_time_at(row, 9, "deployments.next_attempt_at")?,
        updated_at: time_at(row, 10, "deployments.updated_at")?,
    })
}

fn put_deployment_in(
    tx: &mut postgres::Transaction<'_>,
    record: &DeploymentRecord,
    token: i64,
) -> Result<(), Failure> {
    let error = record.last_error.as_ref();
    let attempts = i32::try_from(record.attempts).unwrap_or(i32::MAX);
    tx.execute(
        "INSERT INTO deployments (target, certificate, desired_fingerprint, \
         observed_fingerprint, status, attempts, last_error_class, last_error_code, \
         last_error_message, next_attempt_at, updated_at, fencing_token) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (target, certificate) DO UPDATE SET \
         desired_fingerprint = EXCLUDED.desired_fingerprint, \
         observed_fingerprint = EXCLUDED.observed_fingerprint, status = EXCLUDED.status, \
         attempts = EXCLUDED.attempts, last_error_class = EXCLUDED.last_error_class, \
         last_error_code = EXCLUDED.last_error_code, \
         last_error_message = EXCLUDED.last_error_message, \
         next_attempt_at = EXCLUDED.next_attempt_at, updated_at = EXCLUDED.updated_at, \
         fencing_token = EXCLUDED.fencing_token",
        &[
            &record.target,
            &record.certificate,
            &record.desired_fingerprint,
            &record.observed_fingerprint,
            &record.status.as_str(),
            &attempts,
            &error.map(|e| e.class.as_str()),
            &error.map(|e| e.code.as_str()),
            &error.map(|e| e.message.as_str()),
            &opt_secs(record.next_attempt_at),
            &secs(record.updated_at),
            &token,
        ],
    )?;
    Ok(())
}

fn record_attempt_in(
    tx: &mut postgres::Transaction<'_>,
    attempt: &Attempt,
    token: i64,
) -> Result<(), Failure> {
    tx.execute(
        "INSERT INTO attempts (subject_kind, subject, operation, class, code, at, \
         fencing_token) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &attempt.subject_kind.as_str(),
            &attempt.subject,
            &attempt.operation,
            &attempt.class.map(ErrorClass::as_str),
            &attempt.code,
            &secs(attempt.at),
            &token,
        ],
    )?;
    Ok(())
}

const POLICY_COLUMNS: &str = "policy, resource, compliant, observed, last_checked, \
     last_job_id, last_error_class, last_error_code, last_error_message";

fn policy_from(row: &Row) -> Result<PolicyStatus, Failure> {
    Ok(PolicyStatus {
        policy: row.try_get(0)?,
        resource: row.try_get(1)?,
        compliant: row.try_get(2)?,
        observed: json_at(row, 3, "policy_status.observed")?,
        last_checked: time_at(row, 4, "policy_status.last_checked")?,
        last_job_id: row.try_get(5)?,
        last_error: last_error_at(row, 6)?,
    })
}

const PLAN_COLUMNS: &str = "certificate, fingerprint, renewal_at, ari_window_start, \
     ari_window_end, ari_next_check_at, updated_at";

fn plan_from(row: &Row) -> Result<RenewalPlan, Failure> {
    let start = opt_time_at(row, 3, "renewal_plans.ari_window_start")?;
    let end = opt_time_at(row, 4, "renewal_plans.ari_window_end")?;
    Ok(RenewalPlan {
        certificate: row.try_get(0)?,
        fingerprint: row.try_get(1)?,
        renewal_at: time_at(row, 2, "renewal_plans.renewal_at")?,
        ari_window: start.zip(end).map(|(start, end)| AriWindow { start, end }),
        ari_next_check_at: opt_time_at(row, 5, "renewal_plans.ari_next_check_at")?,
        updated_at: time_at(row, 6, "renewal_plans.updated_at")?,
    })
}

const EVENT_COLUMNS: &str = "id, at, kind, subject, message, fields";

fn event_from(row: &Row) -> Result<Event, Failure> {
    Ok(Event {
        id: row.try_get(0)?,
        at: time_at(row, 1, "events.at")?,
        kind: row.try_get(2)?,
        subject: row.try_get(3)?,
        message: row.try_get(4)?,
        fields: json_at(row, 5, "events.fields")?,
    })
}

fn attempt_from(row: &Row) -> Result<Attempt, Failure> {
    let kind: String = row.try_get(0)?;
    Ok(Attempt {
        subject_kind: SubjectKind::parse(&kind).ok_or_else(|| Failure::Bad {
            what: "attempts.subject_kind",
            reason: format!("unknown subject kind {kind:?}"),
        })?,
        subject: row.try_get(1)?,
        operation: row.try_get(2)?,
        class: class_at(row, 3)?,
        code: row.try_get(4)?,
        at: time_at(row, 5, "attempts.at")?,
    })
}

/// A query returning at most one row, converted.
fn one<T>(
    tx: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    convert: impl Fn(&Row) -> Result<T, Failure>,
) -> Result<Option<T>, Failure> {
    tx.query_opt(sql, params)?.as_ref().map(convert).transpose()
}

/// A query returning rows, converted.
fn many<T>(
    tx: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    convert: impl Fn(&Row) -> Result<T, Failure>,
) -> Result<Vec<T>, Failure> {
    collect(tx.query(sql, params)?, convert)
}

impl StateStore for PostgresStore {
    fn integrity_check(&self) -> Result<(), StoreError> {
        // PostgreSQL checks its own pages; what can be wrong here is the schema.
        let found = self.schema_version()?;
        if found == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: PathBuf::from(&self.label),
                report: format!("schema version {found}, expected {SCHEMA_VERSION}"),
            })
        }
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        self.read("reading the schema version", |tx| {
            let version: i32 = tx
                .query_one("SELECT version FROM certkeeper_schema", &[])?
                .try_get(0)?;
            u32::try_from(version).map_err(|_| Failure::Bad {
                what: "certkeeper_schema.version",
                reason: format!("negative version {version}"),
            })
        })
    }

    fn insert_certificate_version(
        &self,
        version: &CertificateVersion,
        deploy_to: &[String],
    ) -> Result<i64, StoreError> {
        let version = version.clone();
        let deploy_to = deploy_to.to_vec();
        self.fenced_write("storing a certificate version", move |tx, token| {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO certificate_versions (certificate, chain_pem, key_pem, \
                     fingerprint, serial, not_before, not_after, source, obtained_at, \
                     fencing_token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     RETURNING id",
                    &[
                        &version.certificate,
                        &version.chain_pem,
                        &version.key_pem.expose(),
                        &version.fingerprint,
                        &version.serial,
                        &secs(version.not_before),
                        &secs(version.not_after),
                        &version.source,
                        &secs(version.obtained_at),
                        &token,
                    ],
                )?
                .try_get(0)?;
            for target in &deploy_to {
                tx.execute(
                    "INSERT INTO deployments (target, certificate, desired_fingerprint, \
                     status, attempts, updated_at, fencing_token) \
                     VALUES ($1, $2, $3, 'pending', 0, $4, $5) \
                     ON CONFLICT (target, certificate) DO UPDATE SET \
                     desired_fingerprint = EXCLUDED.desired_fingerprint, \
                     status = 'pending', attempts = 0, last_error_class = NULL, \
                     last_error_code = NULL, last_error_message = NULL, \
                     next_attempt_at = NULL, updated_at = EXCLUDED.updated_at, \
                     fencing_token = EXCLUDED.fencing_token",
                    &[
                        target,
                        &version.certificate,
                        &version.fingerprint,
                        &secs(version.obtained_at),
                        &token,
                    ],
                )?;
            }
            Ok(id)
        })
    }

    fn certificate_version(&self, id: i64) -> Result<Option<CertificateVersion>, StoreError> {
        self.read("reading a certificate version", move |tx| {
            one(
                tx,
                &format!("SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE id = $1"),
                &[&id],
                version_from,
            )
        })
    }

    fn latest_certificate_version(
        &self,
        certificate: &str,
    ) -> Result<Option<CertificateVersion>, StoreError> {
        let certificate = certificate.to_owned();
        self.read("reading a certificate version", move |tx| {
            one(
                tx,
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE certificate = $1 \
                     ORDER BY id DESC LIMIT 1"
                ),
                &[&certificate],
                version_from,
            )
        })
    }

    fn certificate_versions(
        &self,
        certificate: &str,
    ) -> Result<Vec<CertificateVersion>, StoreError> {
        let certificate = certificate.to_owned();
        self.read("listing certificate versions", move |tx| {
            many(
                tx,
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE certificate = $1 \
                     ORDER BY id DESC"
                ),
                &[&certificate],
                version_from,
            )
        })
    }

    fn latest_certificate_versions(&self) -> Result<Vec<CertificateVersion>, StoreError> {
        self.read("listing certificates", |tx| {
            many(
                tx,
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM certificate_versions WHERE id IN \
                     (SELECT max(id) FROM certificate_versions GROUP BY certificate) \
                     ORDER BY certificate"
                ),
                &[],
                version_from,
            )
        })
    }

    fn prune_certificate_versions(
        &self,
        certificate: &str,
        keep: usize,
    ) -> Result<usize, StoreError> {
        let certificate = certificate.to_owned();
        let keep = count(keep);
        self.write("pruning certificate versions", move |tx| {
            let deleted = tx.execute(
                "DELETE FROM certificate_versions WHERE certificate = $1 \
                 AND id NOT IN (SELECT id FROM certificate_versions WHERE certificate = $1 \
                                ORDER BY id DESC LIMIT $2) \
                 AND fingerprint NOT IN \
                     (SELECT desired_fingerprint FROM deployments \
                      WHERE certificate = $1 AND desired_fingerprint IS NOT NULL \
                      UNION SELECT observed_fingerprint FROM deployments \
                      WHERE certificate = $1 AND observed_fingerprint IS NOT NULL)",
                &[&certificate, &keep],
            )?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
    }

    fn put_deployment(&self, record: &DeploymentRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.fenced_write("storing a deployment", move |tx, token| {
            put_deployment_in(tx, &record, token)
        })
    }

    fn put_deployment_with_attempt(
        &self,
        record: &DeploymentRecord,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        let record = record.clone();
        let attempt = attempt.clone();
        self.fenced_write("storing a deployment attempt", move |tx, token| {
            put_deployment_in(tx, &record, token)?;
            record_attempt_in(tx, &attempt, token)
        })
    }

    fn deployment(
        &self,
        target: &str,
        certificate: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        let target = target.to_owned();
        let certificate = certificate.to_owned();
        self.read("reading a deployment", move |tx| {
            one(
                tx,
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
                     WHERE target = $1 AND certificate = $2"
                ),
                &[&target, &certificate],
                deployment_from,
            )
        })
    }

    fn deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.read("listing deployments", |tx| {
            many(
                tx,
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments ORDER BY certificate, target"
                ),
                &[],
                deployment_from,
            )
        })
    }

    fn due_deployments(&self, now: OffsetDateTime) -> Result<Vec<DeploymentRecord>, StoreError> {
        let now = secs(now);
        self.read("listing due deployments", move |tx| {
            many(
                tx,
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments \
                     WHERE status IN ('pending', 'failed') \
                     AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
                     ORDER BY certificate, target"
                ),
                &[&now],
                deployment_from,
            )
        })
    }

    fn record_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let attempt = attempt.clone();
        self.fenced_write("recording an attempt", move |tx, token| {
            record_attempt_in(tx, &attempt, token)
        })
    }

    fn attempts(&self, kind: SubjectKind, subject: &str) -> Result<Vec<Attempt>, StoreError> {
        let subject = subject.to_owned();
        self.read("listing attempts", move |tx| {
            many(
                tx,
                "SELECT subject_kind, subject, operation, class, code, at FROM attempts \
                 WHERE subject_kind = $1 AND subject = $2 ORDER BY id",
                &[&kind.as_str(), &subject],
                attempt_from,
            )
        })
    }

    fn put_policy_status(&self, status: &PolicyStatus) -> Result<(), StoreError> {
        let status = status.clone();
        self.write("storing a policy status", move |tx| {
            let error = status.last_error.as_ref();
            tx.execute(
                &format!(
                    "INSERT INTO policy_status ({POLICY_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (policy, resource) DO UPDATE SET \
                     compliant = EXCLUDED.compliant, observed = EXCLUDED.observed, \
                     last_checked = EXCLUDED.last_checked, \
                     last_job_id = EXCLUDED.last_job_id, \
                     last_error_class = EXCLUDED.last_error_class, \
                     last_error_code = EXCLUDED.last_error_code, \
                     last_error_message = EXCLUDED.last_error_message"
                ),
                &[
                    &status.policy,
                    &status.resource,
                    &status.compliant,
                    &json_text(&status.observed),
                    &secs(status.last_checked),
                    &status.last_job_id,
                    &error.map(|e| e.class.as_str()),
                    &error.map(|e| e.code.as_str()),
                    &error.map(|e| e.message.as_str()),
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
        let policy = policy.to_owned();
        let resource = resource.to_owned();
        self.read("reading a policy status", move |tx| {
            one(
                tx,
                &format!(
                    "SELECT {POLICY_COLUMNS} FROM policy_status \
                     WHERE policy = $1 AND resource = $2"
                ),
                &[&policy, &resource],
                policy_from,
            )
        })
    }

    fn policy_statuses(&self) -> Result<Vec<PolicyStatus>, StoreError> {
        self.read("listing policy status", |tx| {
            many(
                tx,
                &format!("SELECT {POLICY_COLUMNS} FROM policy_status ORDER BY policy, resource"),
                &[],
                policy_from,
            )
        })
    }

    fn put_acme_account(&self, account: &AcmeAccount) -> Result<(), StoreError> {
        let account = account.clone();
        self.write("storing an ACME account", move |tx| {
            tx.execute(
                "INSERT INTO acme_accounts (directory_url, account_name, credentials, \
                 created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (directory_url, account_name) DO UPDATE SET \
                 credentials = EXCLUDED.credentials, created_at = EXCLUDED.created_at",
                &[
                    &account.directory_url,
                    &account.account_name,
                    &account.credentials.expose(),
                    &secs(account.created_at),
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
        let directory_url = directory_url.to_owned();
        let account_name = account_name.to_owned();
        self.read("reading an ACME account", move |tx| {
            one(
                tx,
                "SELECT directory_url, account_name, credentials, created_at \
                 FROM acme_accounts WHERE directory_url = $1 AND account_name = $2",
                &[&directory_url, &account_name],
                |row| {
                    Ok(AcmeAccount {
                        directory_url: row.try_get(0)?,
                        account_name: row.try_get(1)?,
                        credentials: Secret::new(row.try_get::<_, String>(2)?),
                        created_at: time_at(row, 3, "acme_accounts.created_at")?,
                    })
                },
            )
        })
    }

    fn delete_acme_account(
        &self,
        directory_url: &str,
        account_name: &str,
    ) -> Result<(), StoreError> {
        let directory_url = directory_url.to_owned();
        let account_name = account_name.to_owned();
        self.write("deleting an ACME account", move |tx| {
            tx.execute(
                "DELETE FROM acme_accounts WHERE directory_url = $1 AND account_name = $2",
                &[&directory_url, &account_name],
            )?;
            Ok(())
        })
    }

    fn put_ari_point(&self, point: &AriPoint) -> Result<(), StoreError> {
        let point = point.clone();
        self.write("storing an ARI point", move |tx| {
            tx.execute(
                "INSERT INTO ari_points (certificate, cert_id, window_start, window_end, \
                 renew_at, next_poll) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (certificate) DO UPDATE SET cert_id = EXCLUDED.cert_id, \
                 window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end, \
                 renew_at = EXCLUDED.renew_at, next_poll = EXCLUDED.next_poll",
                &[
                    &point.certificate,
                    &point.cert_id,
                    &secs(point.window_start),
                    &secs(point.window_end),
                    &secs(point.renew_at),
                    &secs(point.next_poll),
                ],
            )?;
            Ok(())
        })
    }

    fn ari_point(&self, certificate: &str) -> Result<Option<AriPoint>, StoreError> {
        let certificate = certificate.to_owned();
        self.read("reading an ARI point", move |tx| {
            one(
                tx,
                "SELECT certificate, cert_id, window_start, window_end, renew_at, next_poll \
                 FROM ari_points WHERE certificate = $1",
                &[&certificate],
                |row| {
                    Ok(AriPoint {
                        certificate: row.try_get(0)?,
                        cert_id: row.try_get(1)?,
                        window_start: time_at(row, 2, "ari_points.window_start")?,
                        window_end: time_at(row, 3, "ari_points.window_end")?,
                        renew_at: time_at(row, 4, "ari_points.renew_at")?,
                        next_poll: time_at(row, 5, "ari_points.next_poll")?,
                    })
                },
            )
        })
    }

    fn put_local_ca(&self, root: &LocalCaRoot) -> Result<(), StoreError> {
        let root = root.clone();
        self.write("storing a local CA root", move |tx| {
            tx.execute(
                "INSERT INTO local_cas (name, cert_pem, key_pem, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                 cert_pem = EXCLUDED.cert_pem, key_pem = EXCLUDED.key_pem, \
                 created_at = EXCLUDED.created_at",
                &[
                    &root.name,
                    &root.cert_pem,
                    &root.key_pem.expose(),
                    &secs(root.created_at),
                ],
            )?;
            Ok(())
        })
    }

    fn local_ca(&self, name: &str) -> Result<Option<LocalCaRoot>, StoreError> {
        let name = name.to_owned();
        self.read("reading a local CA root", move |tx| {
            one(
                tx,
                "SELECT name, cert_pem, key_pem, created_at FROM local_cas WHERE name = $1",
                &[&name],
                |row| {
                    Ok(LocalCaRoot {
                        name: row.try_get(0)?,
                        cert_pem: row.try_get(1)?,
                        key_pem: Secret::new(row.try_get::<_, String>(2)?),
                        created_at: time_at(row, 3, "local_cas.created_at")?,
                    })
                },
            )
        })
    }

    fn put_renewal_plan(&self, plan: &RenewalPlan) -> Result<(), StoreError> {
        let plan = plan.clone();
        self.write("storing a renewal plan", move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO renewal_plans ({PLAN_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (certificate) DO UPDATE SET \
                     fingerprint = EXCLUDED.fingerprint, renewal_at = EXCLUDED.renewal_at, \
                     ari_window_start = EXCLUDED.ari_window_start, \
                     ari_window_end = EXCLUDED.ari_window_end, \
                     ari_next_check_at = EXCLUDED.ari_next_check_at, \
                     updated_at = EXCLUDED.updated_at"
                ),
                &[
                    &plan.certificate,
                    &plan.fingerprint,
                    &secs(plan.renewal_at),
                    &opt_secs(plan.ari_window.map(|window| window.start)),
                    &opt_secs(plan.ari_window.map(|window| window.end)),
                    &opt_secs(plan.ari_next_check_at),
                    &secs(plan.updated_at),
                ],
            )?;
            Ok(())
        })
    }

    fn renewal_plan(&self, certificate: &str) -> Result<Option<RenewalPlan>, StoreError> {
        let certificate = certificate.to_owned();
        self.read("reading a renewal plan", move |tx| {
            one(
                tx,
                &format!("SELECT {PLAN_COLUMNS} FROM renewal_plans WHERE certificate = $1"),
                &[&certificate],
                plan_from,
            )
        })
    }

    fn renewal_plans(&self) -> Result<Vec<RenewalPlan>, StoreError> {
        self.read("listing renewal plans", |tx| {
            many(
                tx,
                &format!("SELECT {PLAN_COLUMNS} FROM renewal_plans ORDER BY certificate"),
                &[],
                plan_from,
            )
        })
    }

    fn append_event(&self, event: &Event) -> Result<i64, StoreError> {
        let event = event.clone();
        self.write("appending an event", move |tx| {
            Ok(tx
                .query_one(
                    "INSERT INTO events (at, kind, subject, message, fields) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[
                        &secs(event.at),
                        &event.kind,
                        &event.subject,
                        &event.message,
                        &json_text(&event.fields),
                    ],
                )?
                .try_get(0)?)
        })
    }

    fn prune_events(&self, before: OffsetDateTime) -> Result<usize, StoreError> {
        let before = secs(before);
        self.write("pruning events", move |tx| {
            let deleted = tx.execute("DELETE FROM events WHERE at < $1", &[&before])?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let query = query.clone();
        self.read("listing events", move |tx| {
            many(
                tx,
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE id > $1 AND ($2::text IS NULL OR kind = $2) \
                     AND ($3::text IS NULL OR subject = $3) \
                     AND ($5::bigint IS NULL OR at >= $5) \
                     ORDER BY id LIMIT $4"
                ),
                &[
                    &query.after_id.unwrap_or(0),
                    &query.kind,
                    &query.subject,
                    // LIMIT NULL is no limit.
                    &query.limit.map(count),
                    &opt_secs(query.since),
                ],
                event_from,
            )
        })
    }

    fn tail_events(&self, count_wanted: usize) -> Result<Vec<Event>, StoreError> {
        let wanted = count(count_wanted);
        self.read("listing events", move |tx| {
            many(
                tx,
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM \
                     (SELECT {EVENT_COLUMNS} FROM events ORDER BY id DESC LIMIT $1) AS newest \
                     ORDER BY id"
                ),
                &[&wanted],
                event_from,
            )
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
