//! The file source: certificates someone else issues, dropped on disk. It watches one
//! certificate + key pair, or a directory of pairs named by convention (`NAME.crt` +
//! `NAME.key`, or `NAME/fullchain.pem` + `NAME/privkey.pem`), with `notify`. Changes are
//! debounced (a quiet period) so a file still being written is not read, and every read is
//! validated anyway (the cert module's parser, then its pre-deploy check chain: key matches,
//! names covered, chain intact, not expired, enough validity left), so a half-written or mismatched
//! pair is never imported: it produces a [`FileEvent::Rejected`] and the previous good
//! version stays in force. A new version is imported only when the fingerprint changes.
//!
//! Scans run on the blocking pool, never on an async worker, and read only regular files
//! under [`crate::cert::MAX_INPUT_BYTES`]: a FIFO, socket or device in place of a
//! certificate or key is rejected at once with an error naming it, instead of wedging the
//! daemon on an open that waits for a writer.

use crate::cert::{CertError, CertificateBundle, ViolationReason};
use crate::error::ErrorClass;
use crate::source::{CertificateRequest, Issued, Source, SourceError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;

const ORIGIN: &str = "file";

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchSpec {
    /// One pair; `cert` may hold the full chain, `chain` adds intermediates from a third file.
    Pair {
        name: String,
        cert: PathBuf,
        key: PathBuf,
        chain: Option<PathBuf>,
    },
    /// Every `NAME.crt`/`NAME.key` and `NAME/fullchain.pem`/`NAME/privkey.pem` inside.
    Directory(PathBuf),
}

impl WatchSpec {
    /// The pair of a `[[certificate]]` whose `source = { file = { cert, key, chain } }`.
    pub fn from_config(name: &str, source: &crate::config::SourceConfig) -> Option<Self> {
        match source {
            crate::config::SourceConfig::File { cert, key, chain } => Some(WatchSpec::Pair {
                name: name.to_owned(),
                cert: cert.clone(),
                key: key.clone(),
                chain: chain.clone(),
            }),
            _ => None,
        }
    }
}

/// What a scan found.
#[derive(Debug, Clone)]
pub enum FileEvent {
    /// A new version (new fingerprint) passed validation and is now current.
    Imported {
        name: String,
        bundle: CertificateBundle,
    },
    /// The files are unusable; the previous good version (if any) stays current.
    Rejected { name: String, error: SourceError },
}

/// The watched-files [`Source`].
pub struct FileSource {
    spec: WatchSpec,
    debounce: Duration,
    /// Configured domains per certificate name: the files must cover them.
    names: BTreeMap<String, Vec<String>>,
    /// Validity the files must still have to be imported.
    min_remaining: time::Duration,
    current: Mutex<BTreeMap<String, CertificateBundle>>,
}

/// One pair's paths.
struct PairPaths {
    name: String,
    cert: PathBuf,
    key: PathBuf,
    chain: Option<PathBuf>,
}

impl FileSource {
    /// `debounce`: how long the files must stay quiet before they are read (e.g. 500 ms).
    pub fn new(spec: WatchSpec, debounce: Duration) -> Self {
        Self {
            spec,
            debounce,
            names: BTreeMap::new(),
            min_remaining: time::Duration::ZERO,
            current: Mutex::new(BTreeMap::new()),
        }
    }

    /// The `[[certificate]]` domains the files for `name` must cover (`name_mismatch`
    /// otherwise). Without it only the other checks apply.
    pub fn with_domains(mut self, name: impl Into<String>, domains: Vec<String>) -> Self {
        self.names.insert(name.into(), domains);
        self
    }

    /// Files with less validity left than this are refused (`expires_too_soon`); default 0.
    pub fn with_min_remaining(mut self, min_remaining: time::Duration) -> Self {
        self.min_remaining = min_remaining;
        self
    }

    /// The version in force for `name`.
    pub fn current(&self, name: &str) -> Option<CertificateBundle> {
        self.lock().get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CertificateBundle>> {
        // Poisoning only means a panic elsewhere; the map holds whole bundles only.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads and validates every pair now (on the blocking pool); imports those whose
    /// fingerprint changed.
    pub async fn scan(&self) -> Vec<FileEvent> {
        let spec = self.spec.clone();
        let names = self.names.clone();
        let min_remaining = self.min_remaining;
        let checked =
            tokio::task::spawn_blocking(move || read_and_check(&spec, &names, min_remaining)).await;
        match checked {
            Ok(checked) => self.import_checked(checked),
            // The blocking task panicked: nothing was read, nothing changes.
            Err(error) => {
                tracing::error!(error = %error, "scanning certificate files failed");
                Vec::new()
            }
        }
    }

    /// Makes the pairs that passed (and changed) current.
    fn import_checked(
        &self,
        checked: Vec<(String, Result<CertificateBundle, SourceError>)>,
    ) -> Vec<FileEvent> {
        let mut events = Vec::new();
        for (name, checked) in checked {
            match checked {
                Ok(bundle) => {
                    let mut current = self.lock();
                    let unchanged = current
                        .get(&name)
                        .is_some_and(|old| old.fingerprint() == bundle.fingerprint());
                    if !unchanged {
                        current.insert(name.clone(), bundle.clone());
                        tracing::info!(certificate = %name, fingerprint = %bundle.fingerprint(), "imported certificate from files");
                        events.push(FileEvent::Imported { name, bundle });
                    }
                }
                Err(error) => {
                    tracing::warn!(certificate = %name, error = %error, "certificate files rejected; the previous version stays in force");
                    events.push(FileEvent::Rejected { name, error });
                }
            }
        }
        events
    }

    /// Scans once, then watches the files and scans again after each quiet period, sending
    /// what it finds on `events`, until `shutdown` completes.
    pub async fn run(
        &self,
        events: UnboundedSender<FileEvent>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SourceError> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if !matches!(event.kind, notify::EventKind::Access(_)) {
                        let _ = tx.send(());
                    }
                }
            })
            .map_err(|error| watch_error(error.to_string()))?;
        // Directories are watched rather than files: an atomic replace (write + rename)
        // swaps the inode a file watch would follow.
        let mut dirs: Vec<(PathBuf, RecursiveMode)> = match &self.spec {
            WatchSpec::Directory(dir) => vec![(dir.clone(), RecursiveMode::Recursive)],
            WatchSpec::Pair {
                cert, key, chain, ..
            } => [Some(cert), Some(key), chain.as_ref()]
                .into_iter()
                .flatten()
                .map(|path| (parent_dir(path), RecursiveMode::NonRecursive))
                .collect(),
        };
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        dirs.dedup_by(|a, b| a.0 == b.0);
        for (dir, mode) in &dirs {
            watcher
                .watch(dir, *mode)
                .map_err(|error| watch_error(format!("{}: {error}", dir.display())))?;
        }
        for event in self.scan().await {
            let _ = events.send(event);
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                changed = rx.recv() => if changed.is_none() { return Ok(()) },
            }
            // Wait for a quiet period: every further change restarts it.
            loop {
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    changed = tokio::time::timeout(self.debounce, rx.recv()) => match changed {
                        Ok(Some(())) => continue,
                        Ok(None) => return Ok(()),
                        Err(_) => break,
                    },
                }
            }
            for event in self.scan().await {
                let _ = events.send(event);
            }
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Every pair of `spec`, read and put through the pre-deploy checks: blocking work for
/// the blocking pool.
fn read_and_check(
    spec: &WatchSpec,
    names: &BTreeMap<String, Vec<String>>,
    min_remaining: time::Duration,
) -> Vec<(String, Result<CertificateBundle, SourceError>)> {
    let pairs = match spec {
        WatchSpec::Pair {
            name,
            cert,
            key,
            chain,
        } => vec![PairPaths {
            name: name.clone(),
            cert: cert.clone(),
            key: key.clone(),
            chain: chain.clone(),
        }],
        WatchSpec::Directory(dir) => directory_pairs(dir),
    };
    pairs
        .into_iter()
        .map(|pair| {
            let domains = names.get(&pair.name).map(Vec::as_slice).unwrap_or_default();
            let checked = read_pair(&pair).and_then(|bundle| {
                validate_pair(&bundle, domains, OffsetDateTime::now_utc(), min_remaining)
                    .map(|()| bundle)
            });
            (pair.name, checked)
        })
        .collect()
}

fn watch_error(message: String) -> SourceError {
    SourceError::new(ORIGIN, "watch", ErrorClass::Invalid, "Watch", message)
}

/// Pairs by convention inside `dir`, sorted by name.
fn directory_pairs(dir: &Path) -> Vec<PairPaths> {
    let mut pairs = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return pairs;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let fullchain = path.join("fullchain.pem");
            if fullchain.exists() {
                if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    pairs.push(PairPaths {
                        name: name.to_owned(),
                        cert: fullchain,
                        key: path.join("privkey.pem"),
                        chain: None,
                    });
                }
            }
        } else if path.extension().is_some_and(|ext| ext == "crt") {
            if let Some(name) = path.file_stem().and_then(|n| n.to_str()) {
                pairs.push(PairPaths {
                    name: name.to_owned(),
                    cert: path.clone(),
                    key: path.with_extension("key"),
                    chain: None,
                });
            }
        }
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    pairs
}

/// Reads a pair (regular files only, each at most [`crate::cert::MAX_INPUT_BYTES`]) and
/// parses it with the cert module's parser (leaf and chain in any order, PKCS#8/PKCS#1/SEC1
/// keys, precise messages for DER or non-PEM files). Errors name the file at fault.
fn read_pair(pair: &PairPaths) -> Result<CertificateBundle, SourceError> {
    let read = |path: &Path| {
        crate::fsutil::read_regular(path, crate::cert::MAX_INPUT_BYTES as u64).map_err(|error| {
            let (class, code) = match error.kind() {
                std::io::ErrorKind::NotFound => (ErrorClass::NotFound, "Read"),
                std::io::ErrorKind::InvalidInput => (ErrorClass::Invalid, "NotRegularFile"),
                std::io::ErrorKind::FileTooLarge => (ErrorClass::Invalid, "TooLarge"),
                _ => (ErrorClass::Invalid, "Read"),
            };
            SourceError::new(ORIGIN, "read", class, code, error.to_string())
        })
    };
    let mut cert = read(&pair.cert)?;
    if let Some(extra) = &pair.chain {
        cert.push(b'\n');
        cert.extend(read(extra)?);
    }
    // Zeroizing: the buffer holds the private key.
    let key = zeroize::Zeroizing::new(read(&pair.key)?);
    crate::cert::parse_bundle_bytes(
        &pair.cert.display().to_string(),
        &cert,
        &pair.key.display().to_string(),
        &key,
    )
    .map_err(|error| {
        // The parser already orders the chain; a certificate that does not fit is the same
        // defect the pre-deploy chain check names `chain_broken`.
        let code = match error {
            CertError::UnrelatedCertificate { .. } | CertError::ChainOrder { .. } => {
                ViolationReason::ChainBroken.as_str()
            }
            _ => "BadCertificate",
        };
        SourceError::new(
            ORIGIN,
            "validate",
            ErrorClass::Invalid,
            code,
            error.to_string(),
        )
    })
}

/// The pre-deploy check chain a pair must pass before import (expired, not yet valid, key
/// mismatch, names, chain, weak key, too little validity left). The error code is the
/// violation reason (`key_mismatch`, `expired`, ...), the same label the engine uses.
pub fn validate_pair(
    bundle: &CertificateBundle,
    names: &[String],
    now: OffsetDateTime,
    min_remaining: time::Duration,
) -> Result<(), SourceError> {
    crate::cert::check_predeploy(bundle, names, now, min_remaining).map_err(|violation| {
        SourceError::new(
            ORIGIN,
            "validate",
            ErrorClass::Invalid,
            violation.reason.as_str(),
            violation.to_string(),
        )
    })
}

#[async_trait]
impl Source for FileSource {
    /// The version in force; scans first when nothing was imported yet.
    async fn obtain(&self, request: &CertificateRequest) -> Result<Issued, SourceError> {
        if self.current(&request.name).is_none() {
            for event in self.scan().await {
                if let FileEvent::Rejected { name, error } = event {
                    if name == request.name {
                        return Err(error);
                    }
                }
            }
        }
        let bundle = self.current(&request.name).ok_or_else(|| {
            SourceError::new(
                ORIGIN,
                "obtain",
                ErrorClass::NotFound,
                "NoFiles",
                format!("no certificate files for `{}`", request.name),
            )
        })?;
        Ok(Issued {
            chain_pem: bundle.fullchain_pem(),
            key_pem: bundle.key_pem.clone(),
            renewal: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;
    use crate::secret::Secret;

    fn pair_source(dir: &Path) -> FileSource {
        FileSource::new(
            WatchSpec::Pair {
                name: "site".into(),
                cert: dir.join("site.crt"),
                key: dir.join("site.key"),
                chain: None,
            },
            Duration::from_millis(300),
        )
    }

    fn write(dir: &Path, bundle: &CertificateBundle) {
        std::fs::write(dir.join("site.crt"), &bundle.leaf_pem).unwrap();
        std::fs::write(dir.join("site.key"), bundle.key_pem.expose()).unwrap();
    }

    fn imported(events: &[FileEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                FileEvent::Imported { bundle, .. } => Some(bundle.fingerprint().to_owned()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_half_written_file_is_rejected_then_the_complete_one_imported() {
        let dir = tempfile::tempdir().unwrap();
        let source = pair_source(dir.path());
        let bundle = testing::fresh(&["www.example.test"]);
        std::fs::write(dir.path().join("site.key"), bundle.key_pem.expose()).unwrap();
        let half = &bundle.leaf_pem[..bundle.leaf_pem.len() / 2];
        std::fs::write(dir.path().join("site.crt"), half).unwrap();
        let events = source.scan().await;
        assert!(imported(&events).is_empty());
        assert!(
            matches!(&events[0], FileEvent::Rejected { error, .. } if error.code == "BadCertificate")
        );
        assert!(source.current("site").is_none());

        write(dir.path(), &bundle);
        assert_eq!(
            imported(&source.scan().await),
            vec![bundle.fingerprint().to_owned()]
        );
        // Same files again: same fingerprint, no new version.
        assert!(source.scan().await.is_empty());
    }

    #[tokio::test]
    async fn a_wrong_key_or_expired_certificate_never_replaces_the_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let source = pair_source(dir.path());
        let good = testing::fresh(&["www.example.test"]);
        write(dir.path(), &good);
        assert_eq!(imported(&source.scan().await).len(), 1);

        let other = testing::fresh(&["www.example.test"]);
        std::fs::write(dir.path().join("site.crt"), &other.leaf_pem).unwrap();
        let events = source.scan().await;
        assert!(
            matches!(&events[0], FileEvent::Rejected { error, .. } if error.code == "key_mismatch")
        );
        assert_eq!(
            source.current("site").unwrap().fingerprint(),
            good.fingerprint()
        );

        let now = OffsetDateTime::now_utc();
        let expired = testing::self_signed(
            &["www.example.test"],
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        );
        write(dir.path(), &expired);
        let events = source.scan().await;
        assert!(matches!(&events[0], FileEvent::Rejected { error, .. } if error.code == "expired"));

        std::fs::remove_file(dir.path().join("site.crt")).unwrap();
        let events = source.scan().await;
        assert!(
            matches!(&events[0], FileEvent::Rejected { error, .. } if error.class == ErrorClass::NotFound)
        );
        assert_eq!(
            source.current("site").unwrap().fingerprint(),
            good.fingerprint()
        );
    }

    /// Every violation class of the pre-deploy chain is refused with its reason as the code,
    /// and the good version stays in force each time.
    #[tokio::test]
    async fn each_violation_is_refused_and_the_previous_version_stays() {
        let dir = tempfile::tempdir().unwrap();
        let source = pair_source(dir.path())
            .with_domains("site", vec!["www.example.test".into()])
            .with_min_remaining(time::Duration::days(7));
        let good = testing::fresh(&["www.example.test"]);
        write(dir.path(), &good);
        assert_eq!(imported(&source.scan().await).len(), 1);

        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let files = |cert: String, key: &Secret| (cert, key.clone());
        let chain = testing::TestChain::new(&["www.example.test"], now - day, now + 90 * day);
        let stranger = testing::TestChain::named("other", &["x.test"], now - day, now + 90 * day);
        let other_key = testing::fresh(&["www.example.test"]);
        let cases = [
            ("expired", {
                let b = testing::self_signed(&["www.example.test"], now - 30 * day, now - day);
                files(b.leaf_pem, &b.key_pem)
            }),
            ("not_yet_valid", {
                let b = testing::self_signed(&["www.example.test"], now + day, now + 90 * day);
                files(b.leaf_pem, &b.key_pem)
            }),
            (
                "key_mismatch",
                files(good.leaf_pem.clone(), &other_key.key_pem),
            ),
            ("name_mismatch", {
                let b = testing::fresh(&["api.example.test"]);
                files(b.leaf_pem, &b.key_pem)
            }),
            (
                "chain_broken",
                files(
                    format!("{}{}", chain.leaf, stranger.intermediate),
                    &chain.key,
                ),
            ),
            ("expires_too_soon", {
                let b = testing::self_signed(&["www.example.test"], now - day, now + 2 * day);
                files(b.leaf_pem, &b.key_pem)
            }),
        ];
        for (reason, (cert, key)) in cases {
            std::fs::write(dir.path().join("site.crt"), cert).unwrap();
            std::fs::write(dir.path().join("site.key"), key.expose()).unwrap();
            let events = source.scan().await;
            assert_eq!(events.len(), 1, "{reason}");
            match &events[0] {
                FileEvent::Rejected { error, .. } => {
                    assert_eq!(error.code, reason, "{error}");
                    assert_eq!(error.class, ErrorClass::Invalid);
                    assert!(!error.message.contains("PRIVATE KEY"));
                }
                FileEvent::Imported { .. } => panic!("{reason}: imported"),
            }
            assert_eq!(
                source.current("site").unwrap().fingerprint(),
                good.fingerprint(),
                "{reason}"
            );
        }

        // A proper chain (leaf + its intermediate, any order) is accepted.
        std::fs::write(
            dir.path().join("site.crt"),
            format!("{}{}", chain.intermediate, chain.leaf),
        )
        .unwrap();
        std::fs::write(dir.path().join("site.key"), chain.key.expose()).unwrap();
        assert_eq!(imported(&source.scan().await).len(), 1);
    }

    #[tokio::test]
    async fn directories_pair_files_by_convention() {
        let dir = tempfile::tempdir().unwrap();
        let a = testing::fresh(&["a.example.test"]);
        let b = testing::fresh(&["b.example.test"]);
        std::fs::write(dir.path().join("a.crt"), &a.leaf_pem).unwrap();
        std::fs::write(dir.path().join("a.key"), a.key_pem.expose()).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/fullchain.pem"), &b.leaf_pem).unwrap();
        std::fs::write(dir.path().join("b/privkey.pem"), b.key_pem.expose()).unwrap();
        let source = FileSource::new(
            WatchSpec::Directory(dir.path().to_path_buf()),
            Duration::from_millis(300),
        );
        let events = source.scan().await;
        assert_eq!(
            imported(&events),
            vec![a.fingerprint().to_owned(), b.fingerprint().to_owned()]
        );
        assert_eq!(source.current("b").unwrap().fingerprint(), b.fingerprint());
    }

    /// A FIFO in place of the certificate (or an oversized key) is rejected at once, naming
    /// the file, and the good version stays in force.
    #[tokio::test]
    async fn a_fifo_or_an_oversized_file_is_rejected_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = pair_source(dir.path());
        let good = testing::fresh(&["www.example.test"]);
        write(dir.path(), &good);
        assert_eq!(imported(&source.scan().await).len(), 1);

        let cert = dir.path().join("site.crt");
        std::fs::remove_file(&cert).unwrap();
        crate::fsutil::testing::make_fifo(&cert);
        let events = tokio::time::timeout(Duration::from_secs(30), source.scan())
            .await
            .expect("a scan never waits on a FIFO");
        match &events[..] {
            [FileEvent::Rejected { error, .. }] => {
                assert_eq!(
                    (error.class, error.code.as_str()),
                    (ErrorClass::Invalid, "NotRegularFile")
                );
                assert!(
                    error.message.contains(&cert.display().to_string())
                        && error.message.contains("a FIFO"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }

        std::fs::remove_file(&cert).unwrap();
        std::fs::write(&cert, &good.leaf_pem).unwrap();
        let huge = vec![b'A'; crate::cert::MAX_INPUT_BYTES + 1];
        std::fs::write(dir.path().join("site.key"), huge).unwrap();
        match &source.scan().await[..] {
            [FileEvent::Rejected { error, .. }] => {
                assert_eq!(error.code, "TooLarge");
                assert!(
                    error.message.contains("site.key")
                        && error
                            .message
                            .contains(&format!("{}-byte cap", crate::cert::MAX_INPUT_BYTES)),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            source.current("site").unwrap().fingerprint(),
            good.fingerprint()
        );
    }

    /// Waits (generously) for the next import; rejections on the way are allowed (a slow
    /// machine may read between two writes), imports of anything else are not.
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<FileEvent>) -> FileEvent {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("an event within 20 s")
                .expect("open channel");
            if matches!(event, FileEvent::Imported { .. }) {
                return event;
            }
        }
    }

    #[tokio::test]
    async fn the_watcher_imports_only_complete_atomic_or_slow_writes() {
        let dir = tempfile::tempdir().unwrap();
        let source = std::sync::Arc::new(pair_source(dir.path()));
        let first = testing::fresh(&["www.example.test"]);
        write(dir.path(), &first);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = source.clone();
        let task = tokio::spawn(async move {
            runner
                .run(tx, async {
                    let _ = stopped.await;
                })
                .await
        });
        match next(&mut rx).await {
            FileEvent::Imported { bundle, .. } => {
                assert_eq!(bundle.fingerprint(), first.fingerprint())
            }
            other => panic!("{other:?}"),
        }

        // A slow partial write inside the quiet period: only the finished pair is read.
        let second = testing::fresh(&["www.example.test"]);
        std::fs::write(dir.path().join("site.key"), second.key_pem.expose()).unwrap();
        let half = &second.leaf_pem[..second.leaf_pem.len() / 2];
        std::fs::write(dir.path().join("site.crt"), half).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(dir.path().join("site.crt"), &second.leaf_pem).unwrap();
        match next(&mut rx).await {
            FileEvent::Imported { bundle, .. } => {
                assert_eq!(bundle.fingerprint(), second.fingerprint())
            }
            other => panic!("{other:?}"),
        }

        // Atomic replace of the certificate (write elsewhere, rename over) with the same
        // key as before: one import.
        let third = {
            let key = rcgen::KeyPair::from_pem(second.key_pem.expose()).unwrap();
            let params =
                rcgen::CertificateParams::new(vec!["www.example.test".to_string()]).unwrap();
            params.self_signed(&key).unwrap().pem()
        };
        let staging = dir.path().join(".site.crt.tmp");
        std::fs::write(&staging, &third).unwrap();
        std::fs::rename(&staging, dir.path().join("site.crt")).unwrap();
        match next(&mut rx).await {
            FileEvent::Imported { bundle, .. } => {
                assert_eq!(bundle.leaf_pem.trim(), third.trim())
            }
            other => panic!("{other:?}"),
        }
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        while let Ok(event) = rx.try_recv() {
            assert!(
                matches!(event, FileEvent::Rejected { .. }),
                "no further imports: {event:?}"
            );
        }
    }
}
