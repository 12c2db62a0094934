//! `certkeeper store backup|restore|rekey|copy`, and the state store line of `certkeeper check`.
//! Backup reads the store next to a running daemon; restore and rekey replace or rewrite it,
//! so they take the state directory's lock first and are refused (74) while a daemon holds
//! it. Exit codes: 0 done, 74 the store or a file cannot be read or written (or a daemon
//! runs), 78 the store key is missing, unreadable or not the store's.

use certkeeper::config::{self, credentials::ProcessEnvironment};
use certkeeper::store::seal::{self, SealError, StoreKey};
use certkeeper::store::sqlite::SqliteStore;
use certkeeper::store::StoreError;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A malformed `store` argument (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
const EX_IOERR: u8 = 74;
const EX_CONFIG: u8 = 78;

/// What `certkeeper store` does.
#[derive(Subcommand)]
pub enum StoreAction {
    /// Write a consistent copy of the state store to FILE (mode 0600), safe while the daemon
    /// runs. Sealed keys stay sealed.
    Backup {
        /// Where to write the copy (replaced atomically if it exists).
        file: PathBuf,
    },
    /// Replace the state store with the backup FILE, after checking its integrity and
    /// schema version (an older schema is migrated). Refused while a daemon runs on the
    /// state directory. The replaced store is kept as `state.db.before-restore`.
    Restore {
        /// A file written by `certkeeper store backup`.
        file: PathBuf,
    },
    /// Re-seal every key in the state store under a new store key, in one transaction.
    /// The configured key opens the current ones; a store not sealed yet is sealed.
    /// Refused while a daemon runs. Afterwards, point `[store] key_file` at the new key.
    Rekey {
        /// The new key: 32 random bytes as base64 (`openssl rand -base64 32`), mode 0600.
        #[arg(long)]
        new_key_file: PathBuf,
        /// The current key, instead of the one `[store]` names (e.g. decrypted from a
        /// systemd credential outside the service).
        #[arg(long)]
        old_key_file: Option<PathBuf>,
    },
    /// Copy a SQLite state store (keys included, sealed ones stay sealed) into the empty
    /// PostgreSQL store that the configuration's `[store]` section names; commits only when
    /// every table's row count and SHA-256 checksum read back equal the source's
    /// (docs/ha.md). Exit 64 for a malformed --from/--to.
    Copy {
        /// `sqlite:PATH`: the state directory or its `state.db`.
        #[arg(long)]
        from: String,
        /// `postgres`: the store `[store]` names (URL from `url_env` or `url_file`).
        #[arg(long)]
        to: String,
    },
}

/// Runs one `store` action for the loaded config.
pub fn run(config: &config::Config, action: StoreAction) -> ExitCode {
    let state_dir = &config.daemon.state_dir;
    let result = match action {
        StoreAction::Backup { file } => backup(state_dir, &file),
        StoreAction::Restore { file } => restore(config, &file),
        StoreAction::Rekey {
            new_key_file,
            old_key_file,
        } => rekey(config, &new_key_file, old_key_file.as_deref()),
        StoreAction::Copy { from, to } => copy(config, &from, &to),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("certkeeper: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A refusal: what to print and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        let code = match &error {
            StoreError::Sealing { source, .. } if source.is_config() => EX_CONFIG,
            _ => EX_IOERR,
        };
        Failure {
            message: error.to_string(),
            code,
        }
    }
}

impl From<SealError> for Failure {
    fn from(error: SealError) -> Self {
        let code = if error.is_config() {
            EX_CONFIG
        } else {
            EX_IOERR
        };
        Failure {
            message: error.to_string(),
            code,
        }
    }
}

fn io_failure(message: String) -> Failure {
    Failure {
        message,
        code: EX_IOERR,
    }
}

fn existing_store(state_dir: &Path) -> Result<SqliteStore, Failure> {
    SqliteStore::open_existing(state_dir)?.ok_or_else(|| {
        io_failure(format!(
            "{}: no state store here (nothing to rekey)",
            state_dir.display()
        ))
    })
}

/// The state directory's lock, or a refusal naming the running daemon.
fn lock(state_dir: &Path) -> Result<std::fs::File, Failure> {
    certkeeper::fsutil::lock_state_dir(state_dir).map_err(|error| {
        io_failure(format!(
            "{}: {error}; stop it first (systemctl stop certkeeper)",
            state_dir.display()
        ))
    })
}

fn backup(state_dir: &Path, file: &Path) -> Result<String, Failure> {
    let database = state_dir.join(certkeeper::store::sqlite::FILE_NAME);
    if !database.exists() {
        return Err(io_failure(format!(
            "{}: no state store here (nothing to back up)",
            state_dir.display()
        )));
    }
    let survey = SqliteStore::backup(state_dir, file)?;
    Ok(format!(
        "backed up {} to {} ({survey})",
        database.display(),
        file.display()
    ))
}

fn restore(config: &config::Config, file: &Path) -> Result<String, Failure> {
    let state_dir = &config.daemon.state_dir;
    // Restoring onto a new host: the directory may not exist yet.
    let prepared = if state_dir.exists() {
        Ok(())
    } else {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
    };
    prepared
        .and_then(|()| certkeeper::fsutil::secure_state_dir(state_dir))
        .map_err(|error| io_failure(format!("{}: {error}", state_dir.display())))?;
    let _lock = lock(state_dir)?;
    let version = SqliteStore::restore(state_dir, file).map_err(|error| {
        io_failure(format!(
            "{} not restored, the state store is unchanged: {error}",
            file.display()
        ))
    })?;
    let restored = existing_store(state_dir)?;
    let survey = seal::inspect_plain(&restored)?;
    let mut message = format!(
        "restored {} from {} (schema version {version}; {survey})",
        restored.path().display(),
        file.display()
    );
    // What the daemon will meet at its next start, said now (a key that cannot be read here,
    // e.g. a credential only the service sees, is left to that start).
    let configured = seal::configured_key(&config.store, &ProcessEnvironment)
        .ok()
        .flatten();
    let foreign: Vec<&String> = survey
        .sealed
        .keys()
        .filter(|id| {
            configured
                .as_ref()
                .is_none_or(|key| key.id() != id.as_str())
        })
        .collect();
    if !config.store.has_key() && !foreign.is_empty() {
        message.push_str(
            "\nnote: the restored keys are sealed; configure `[store] key_file` with their key \
             before starting the daemon",
        );
    } else if let (Some(key), false) = (&configured, foreign.is_empty()) {
        message.push_str(&format!(
            "\nnote: the restored keys are sealed with store key {}, not with the configured \
             key {}: configure that key before starting the daemon",
            foreign
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            key.id()
        ));
    }
    Ok(message)
}

/// A key given on the command line as `FLAG PATH`.
fn key_from_file(flag: &str, path: &Path) -> Result<StoreKey, Failure> {
    let text = config::store::key::read_key_file(path).map_err(|reason| Failure {
        // The reason names the file already when the file system refused it.
        message: if reason.contains(&path.display().to_string()) {
            format!("{flag}: {reason}")
        } else {
            format!("{flag} {}: {reason}", path.display())
        },
        code: EX_CONFIG,
    })?;
    Ok(StoreKey::from_text(&text, flag)?)
}

fn rekey(
    config: &config::Config,
    new_key_file: &Path,
    old_key_file: Option<&Path>,
) -> Result<String, Failure> {
    let new_key = key_from_file("--new-key-file", new_key_file)?;
    let old_key = match old_key_file {
        Some(path) => Some(key_from_file("--old-key-file", path)?),
        None => seal::configured_key(&config.store, &ProcessEnvironment)?,
    };
    let state_dir = &config.daemon.state_dir;
    let store = existing_store(state_dir)?;
    let _lock = lock(state_dir)?;
    let rewritten = seal::rekey(&store, old_key.as_ref(), &new_key)?;
    Ok(format!(
        "rekeyed {rewritten} keys in {} to store key {}; now point `[store] key_file` at {} \
         (or replace the credential) before starting the daemon",
        store.path().display(),
        new_key.id(),
        new_key_file.display()
    ))
}

/// The state store line of `certkeeper check`: how its keys are kept and whether the
/// configured store key fits. `Ok(None)` when there is no store yet.
pub fn check(config: &config::Config) -> Result<Option<String>, String> {
    let key = seal::configured_key(&config.store, &ProcessEnvironment)
        .map_err(|error| error.to_string())?;
    let Some(store) =
        SqliteStore::open_existing(&config.daemon.state_dir).map_err(|error| error.to_string())?
    else {
        return Ok(key.map(|key| {
            format!(
                "state store: none yet; keys will be sealed with store key {}",
                key.id()
            )
        }));
    };
    let survey = seal::inspect(&store, key.as_ref()).map_err(|error| error.to_string())?;
    let mut line = format!("state store: {survey}");
    if survey.plain > 0 && key.is_some() {
        line.push_str("; the daemon seals them when it starts");
    }
    Ok(Some(line))
}

/// `store copy --from sqlite:PATH --to postgres`: each table's verified row count and
/// checksum, then the total.
fn copy(config: &config::Config, from: &str, to: &str) -> Result<String, Failure> {
    let usage = |message: &str| Failure {
        message: message.to_owned(),
        code: EX_USAGE,
    };
    let Some(source) = from.strip_prefix("sqlite:") else {
        return Err(usage(
            "--from must be sqlite:PATH (the state directory or its state.db)",
        ));
    };
    if to != "postgres" {
        return Err(usage(
            "--to must be postgres (the store [store] names in the config)",
        ));
    }
    let io = |error: anyhow::Error| Failure {
        message: format!("{error:#}"),
        code: EX_IOERR,
    };
    let options = certkeeper::store::postgres::ConnectOptions::from_config(
        &config.store,
        &ProcessEnvironment,
    )
    .map_err(|error| io(error.into()))?;
    let target =
        certkeeper::store::PostgresStore::open(&options).map_err(|error| io(error.into()))?;
    let sums = certkeeper::store::copy::sqlite_to_postgres(Path::new(source), &target)
        .map_err(|error| io(error.into()))?;
    let mut lines: Vec<String> = sums
        .iter()
        .map(|sum| format!("{}: {} rows, sha256 {}", sum.table, sum.rows, sum.sha256))
        .collect();
    let rows: u64 = sums.iter().map(|sum| sum.rows).sum();
    lines.push(format!(
        "copied {rows} rows; every table's count and checksum verified"
    ));
    Ok(lines.join("\n"))
}
