//! The file source: certificates someone else issues, dropped on disk. It watches one
//! certificate + key pair, or a directory of pairs named by convention (`NAME.crt` +
//! `NAME.key`, or `NAME/fullchain.pem` + `NAME/privkey.pem`), with `notify`. Changes are
//! debounced (a quiet period) so a file still being written is not read, and every read is
//! validated anyway (PEM parses, key matches, not expired), so a half-written or mismatched
//! pair is never imported: it produces a [`FileEvent::Rejected`] and the previous good
//! version stays in force. A new version is imported only when the fingerprint changes.

use crate::cert::CertificateBundle;
use crate::error::ErrorClass;
use crate::secret::Secret;
use crate::source::{split_chain, CertificateRequest, Issued, Source, SourceError};
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
            current: Mutex::new(BTreeMap::new()),
        }
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

    fn pairs(&self) -> Vec<PairPaths> {
        match &self.spec {
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
        }
    }

    /// Reads and validates every pair now; imports those whose fingerprint changed.
    pub fn scan(&self) -> Vec<FileEvent> {
        let mut events = Vec::new();
        for pair in self.pairs() {
            match read_pair(&pair) {
                Ok(bundle) => {
                    let mut current = self.lock();
                    let unchanged = current
                        .get(&pair.name)
                        .is_some_and(|old| old.fingerprint() == bundle.fingerprint());
                    if !unchanged {
                        current.insert(pair.name.clone(), bundle.clone());
                        tracing::info!(certificate = %pair.name, fingerprint = %bundle.fingerprint(), "imported certificate from files");
                        events.push(FileEvent::Imported {
                            name: pair.name,
                            bundle,
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(certificate = %pair.name, error = %error, "certificate files rejected; the previous version stays in force");
                    events.push(FileEvent::Rejected {
                        name: pair.name,
                        error,
                    });
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
        for event in self.scan() {
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
            for event in self.scan() {
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

fn read_pair(pair: &PairPaths) -> Result<CertificateBundle, SourceError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|error| {
            SourceError::new(
                ORIGIN,
                "read",
                if error.kind() == std::io::ErrorKind::NotFound {
                    ErrorClass::NotFound
                } else {
                    ErrorClass::Invalid
                },
                "Read",
                format!("{}: {error}", path.display()),
            )
        })
    };
    let mut chain = read(&pair.cert)?;
    if let Some(extra) = &pair.chain {
        chain.push('\n');
        chain.push_str(&read(extra)?);
    }
    let key = Secret::new(read(&pair.key)?);
    validate_pair(&chain, &key, OffsetDateTime::now_utc())
}

/// The checks a pair must pass before import: the PEM parses, the key belongs to the leaf,
/// the leaf is currently valid. One function so the lead can swap in the cert module's
/// `parse_bundle` and pre-deploy check chain.
pub fn validate_pair(
    chain_pem: &str,
    key_pem: &Secret,
    now: OffsetDateTime,
) -> Result<CertificateBundle, SourceError> {
    let invalid = |code: &str, message: String| {
        SourceError::new(ORIGIN, "validate", ErrorClass::Invalid, code, message)
    };
    let (leaf, chain) =
        split_chain(chain_pem).map_err(|error| invalid("BadCertificate", error.to_string()))?;
    let bundle = CertificateBundle::from_pem(&leaf, &chain, key_pem.clone())
        .map_err(|error| invalid("BadCertificate", error.to_string()))?;
    key_matches(&bundle).map_err(|message| invalid("KeyMismatch", message))?;
    if bundle.info.not_after <= now {
        return Err(invalid(
            "Expired",
            format!("the certificate expired at {}", bundle.info.not_after),
        ));
    }
    Ok(bundle)
}

/// Whether the private key is the leaf's: compares the key's SubjectPublicKeyInfo with the
/// certificate's.
fn key_matches(bundle: &CertificateBundle) -> Result<(), String> {
    use x509_parser::prelude::*;
    let key = rcgen::KeyPair::from_pem(bundle.key_pem.expose())
        .map_err(|error| format!("the private key is unreadable: {error}"))?;
    let block = ::pem::parse(&bundle.leaf_pem).map_err(|error| error.to_string())?;
    let (_, cert) = X509Certificate::from_der(block.contents()).map_err(|e| e.to_string())?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) == cert.public_key().raw {
        Ok(())
    } else {
        Err("the private key does not belong to the certificate".into())
    }
}

#[async_trait]
impl Source for FileSource {
    /// The version in force; scans first when nothing was imported yet.
    async fn obtain(&self, request: &CertificateRequest) -> Result<Issued, SourceError> {
        if self.current(&request.name).is_none() {
            for event in self.scan() {
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

    #[test]
    fn a_half_written_file_is_rejected_then_the_complete_one_imported() {
        let dir = tempfile::tempdir().unwrap();
        let source = pair_source(dir.path());
        let bundle = testing::fresh(&["www.example.test"]);
        std::fs::write(dir.path().join("site.key"), bundle.key_pem.expose()).unwrap();
        let half = &bundle.leaf_pem[..bundle.leaf_pem.len() / 2];
        std::fs::write(dir.path().join("site.crt"), half).unwrap();
        let events = source.scan();
        assert!(imported(&events).is_empty());
        assert!(
            matches!(&events[0], FileEvent::Rejected { error, .. } if error.code == "BadCertificate")
        );
        assert!(source.current("site").is_none());

        write(dir.path(), &bundle);
        assert_eq!(
            imported(&source.scan()),
            vec![bundle.fingerprint().to_owned()]
        );
        // Same files again: same fingerprint, no new version.
        assert!(source.scan().is_empty());
    }

    #[test]
    fn a_wrong_key_or_expired_certificate_never_replaces_the_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let source = pair_source(dir.path());
        let good = testing::fresh(&["www.example.test"]);
        write(dir.path(), &good);
        assert_eq!(imported(&source.scan()).len(), 1);

        let other = testing::fresh(&["www.example.test"]);
        std::fs::write(dir.path().join("site.crt"), &other.leaf_pem).unwrap();
        let events = source.scan();
        assert!(
            matches!(&events[0], FileEvent::Rejected { error, .. } if error.code == "KeyMismatch")
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
        let events = source.scan();
        assert!(matches!(&events[0], FileEvent::Rejected { error, .. } if error.code == "Expired"));

        std::fs::remove_file(dir.path().join("site.crt")).unwrap();
        let events = source.scan();
        assert!(
            matches!(&events[0], FileEvent::Rejected { error, .. } if error.class == ErrorClass::NotFound)
        );
        assert_eq!(
            source.current("site").unwrap().fingerprint(),
            good.fingerprint()
        );
    }

    #[test]
    fn directories_pair_files_by_convention() {
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
        let events = source.scan();
        assert_eq!(
            imported(&events),
            vec![a.fingerprint().to_owned(), b.fingerprint().to_owned()]
        );
        assert_eq!(source.current("b").unwrap().fingerprint(), b.fingerprint());
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
