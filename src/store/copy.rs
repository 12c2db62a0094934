//! `certkeeper store copy --from sqlite:PATH --to postgres`: moves an existing SQLite state
//! (keys, ledger, history, events) into an empty PostgreSQL store, in one transaction that
//! commits only when every table's row count and SHA-256 checksum read back from
//! PostgreSQL equal those read from SQLite. Ids are kept (the event cursor of `events
//! --follow` and the ledger's references stay valid) and the identity sequences continue
//! after them.

use super::postgres::PostgresStore;
use super::StoreError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// How a column is stored in PostgreSQL (SQLite keeps integers and text either way).
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Text,
    Big,
    Int,
    Bool,
}

/// One table copied: its columns in order and its key for a stable order.
pub(super) struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    pub order_by: &'static str,
    /// Has a `GENERATED ALWAYS AS IDENTITY` id in PostgreSQL.
    pub identity: bool,
}

use Kind::{Big, Bool, Int, Text};

/// Every table of the SQLite schema (version 4), with PostgreSQL's types.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "certificate_versions",
        columns: &[
            ("id", Big),
            ("certificate", Text),
            ("chain_pem", Text),
            ("key_pem", Text),
            ("fingerprint", Text),
            ("serial", Text),
            ("not_before", Big),
            ("not_after", Big),
            ("source", Text),
            ("obtained_at", Big),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "deployments",
        columns: &[
            ("target", Text),
            ("certificate", Text),
            ("desired_fingerprint", Text),
            ("observed_fingerprint", Text),
            ("status", Text),
            ("attempts", Int),
            ("last_error_class", Text),
            ("last_error_code", Text),
            ("last_error_message", Text),
            ("next_attempt_at", Big),
            ("updated_at", Big),
        ],
        order_by: "target, certificate",
        identity: false,
    },
    Table {
        name: "attempts",
        columns: &[
            ("id", Big),
            ("subject_kind", Text),
            ("subject", Text),
            ("operation", Text),
            ("class", Text),
            ("code", Text),
            ("at", Big),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "policy_status",
        columns: &[
            ("policy", Text),
            ("resource", Text),
            ("compliant", Bool),
            ("observed", Text),
            ("last_checked", Big),
            ("last_job_id", Text),
            ("last_error_class", Text),
            ("last_error_code", Text),
            ("last_error_message", Text),
        ],
        order_by: "policy, resource",
        identity: false,
    },
    Table {
        name: "acme_accounts",
        columns: &[
            ("directory_url", Text),
            ("account_name", Text),
            ("credentials", Text),
            ("created_at", Big),
        ],
        order_by: "directory_url, account_name",
        identity: false,
    },
    Table {
        name: "renewal_plans",
        columns: &[
            ("certificate", Text),
            ("fingerprint", Text),
            ("renewal_at", Big),
            ("ari_window_start", Big),
            ("ari_window_end", Big),
            ("ari_next_check_at", Big),
            ("updated_at", Big),
        ],
        order_by: "certificate",
        identity: false,
    },
    Table {
        name: "events",
        columns: &[
            ("id", Big),
            ("at", Big),
            ("kind", Text),
            ("subject", Text),
            ("message", Text),
            ("fields", Text),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "ari_points",
        columns: &[
            ("certificate", Text),
            ("cert_id", Text),
            ("window_start", Big),
            ("window_end", Big),
            ("renew_at", Big),
            ("next_poll", Big),
        ],
        order_by: "certificate",
        identity: false,
    },
    Table {
        name: "local_cas",
        columns: &[
            ("name", Text),
            ("cert_pem", Text),
            ("key_pem", Text),
            ("created_at", Big),
        ],
        order_by: "name",
        identity: false,
    },
];

/// A table and its rows, in the table's order.
pub(super) type TableRows = (&'static Table, Vec<Vec<Cell>>);

/// One cell, as both sides agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cell {
    Null,
    Integer(i64),
    Text(String),
}

impl Cell {
    /// Fed to the checksum: type-tagged and length-prefixed, so no two rows collide.
    fn digest_into(&self, hasher: &mut Sha256) {
        match self {
            Cell::Null => hasher.update(b"N"),
            Cell::Integer(value) => {
                hasher.update(b"I");
                hasher.update(value.to_be_bytes());
            }
            Cell::Text(text) => {
                hasher.update(b"T");
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
}

/// Row count and checksum of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSum {
    pub table: &'static str,
    pub rows: u64,
    pub sha256: String,
}

pub(super) fn sum(table: &'static str, rows: &[Vec<Cell>]) -> TableSum {
    let mut hasher = Sha256::new();
    for row in rows {
        for cell in row {
            cell.digest_into(&mut hasher);
        }
    }
    TableSum {
        table,
        rows: rows.len() as u64,
        sha256: hex::encode(hasher.finalize()),
    }
}

/// Why the copy did not happen (nothing was written to PostgreSQL then).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{}: cannot read the SQLite store: {source}", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{}: no SQLite state store there", path.display())]
    Missing { path: PathBuf },
    #[error(
        "the PostgreSQL store already holds {rows} rows in {table}: `store copy` only fills an \
         empty one (drop and re-create the database to start over)"
    )]
    NotEmpty { table: &'static str, rows: i64 },
    #[error("{table}: copied {got} does not match the source's {expected}; nothing was committed")]
    Mismatch {
        table: &'static str,
        expected: String,
        got: String,
    },
}

/// Reads every table of the SQLite store at `path` (the file, or the state directory
/// holding `state.db`), migrating it to the current schema first.
fn read_sqlite(path: &Path) -> Result<Vec<TableRows>, CopyError> {
    let file = if path.is_dir() {
        path.join(super::sqlite::FILE_NAME)
    } else {
        path.to_path_buf()
    };
    if !file.exists() {
        return Err(CopyError::Missing { path: file });
    }
    // Opening checks the integrity and brings the schema to the version the tables list.
    drop(super::SqliteStore::open_file(&file)?);
    let failed = |source| CopyError::Source {
        path: file.clone(),
        source,
    };
    let conn =
        rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(failed)?;
    let mut tables = Vec::new();
    for table in TABLES {
        let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        let mut statement = conn
            .prepare(&format!(
                "SELECT {} FROM {} ORDER BY {}",
                columns.join(", "),
                table.name,
                table.order_by
            ))
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| {
                (0..columns.len())
                    .map(|index| {
                        Ok(match row.get_ref(index)? {
                            rusqlite::types::ValueRef::Null => Cell::Null,
                            rusqlite::types::ValueRef::Integer(value) => Cell::Integer(value),
                            other => Cell::Text(
                                other
                                    .as_str()
                                    .map_err(|error| {
                                        rusqlite::Error::FromSqlConversionFailure(
                                            index,
                                            other.data_type(),
                                            Box::new(error),
                                        )
                                    })?
                                    .to_owned(),
                            ),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Cell>>>()
            })
            .map_err(failed)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(failed)?;
        tables.push((table, rows));
    }
    Ok(tables)
}

/// Copies the SQLite store at `from` into the (empty) PostgreSQL `to`; returns each table's
/// verified count and checksum.
pub fn sqlite_to_postgres(from: &Path, to: &PostgresStore) -> Result<Vec<TableSum>, CopyError> {
    let tables = read_sqlite(from)?;
    let expected: Vec<TableSum> = tables
        .iter()
        .map(|(table, rows)| sum(table.name, rows))
        .collect();
    to.import(tables, expected.clone())?;
    Ok(expected)
}
