//! The `file` target: writes `cert.pem`, `chain.pem`, `fullchain.pem` and `key.pem` (0600)
//! atomically into a directory, optionally hands them to an owner and group, then runs an
//! optional reload command with a timeout whose exit status is the deploy result. Live state
//! is what `cert.pem` holds now.
//!
//! A directory other users can write into is refused (class `invalid`; see
//! [`crate::fsutil::refuse_shared_directory`] for why the sticky bit does not save it), and
//! owner and mode are set on each temporary file before its rename, so a symlink swapped in
//! never hands another file to the configured owner. All file work runs on the blocking
//! pool, and `cert.pem` is read only if it is a regular file under the size cap.

use crate::cert::{CertificateBundle, LeafInfo};
use crate::cloud::{LiveCertificate, Target};
use crate::error::{CloudError, ErrorClass};
use crate::settings::ConfigIssue;
use async_trait::async_trait;
use serde::Deserialize;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const VENDOR: &str = "file";
const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Kind-specific keys of a `kind = "file"` target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub directory: PathBuf,
    /// User name or numeric uid that should own the files.
    pub owner: Option<String>,
    /// Group name or numeric gid.
    pub group: Option<String>,
    /// Program and arguments run after the files are in place, e.g. `["systemctl", "reload", "nginx"]`.
    pub reload_command: Option<Vec<String>>,
    /// How long the reload command may run (default 30 s), parsed at config load.
    #[serde(
        default,
        deserialize_with = "crate::settings::duration::deserialize_option"
    )]
    pub reload_timeout: Option<Duration>,
}

impl FileSettings {
    /// Pure checks of these keys; problems are pushed with their key path under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        if !self.directory.is_absolute() {
            issues.push(ConfigIssue::new(
                format!("{path}.directory"),
                "must be an absolute path",
            ));
        }
        if let Some(command) = &self.reload_command {
            if command
                .first()
                .is_none_or(|program| program.trim().is_empty())
            {
                issues.push(ConfigIssue::new(
                    format!("{path}.reload_command"),
                    "must name a program: [\"systemctl\", \"reload\", \"nginx\"]",
                ));
            }
        }
    }
}

/// A directory of PEM files.
pub struct FileTarget {
    name: String,
    directory: PathBuf,
    owner: Option<u32>,
    group: Option<u32>,
    reload_command: Option<Vec<String>>,
    reload_timeout: Duration,
}

impl FileTarget {
    /// Resolves owner and group names (reads /etc/passwd and /etc/group when they are names).
    pub fn new(name: &str, settings: &FileSettings) -> Result<Self, CloudError> {
        let owner = settings
            .owner
            .as_deref()
            .map(|owner| resolve_id(owner, Path::new("/etc/passwd")))
            .transpose()?;
        let group = settings
            .group
            .as_deref()
            .map(|group| resolve_id(group, Path::new("/etc/group")))
            .transpose()?;
        let reload_timeout = settings.reload_timeout.unwrap_or(DEFAULT_RELOAD_TIMEOUT);
        Ok(Self {
            name: name.to_owned(),
            directory: settings.directory.clone(),
            owner,
            group,
            reload_command: settings.reload_command.clone(),
            reload_timeout,
        })
    }

    /// `error`'s message already names the path (see [`with_path`]).
    fn io_error(&self, operation: &str, error: std::io::Error) -> CloudError {
        let class = match error.kind() {
            std::io::ErrorKind::PermissionDenied => ErrorClass::Auth,
            std::io::ErrorKind::NotFound => ErrorClass::NotFound,
            // A refused directory (shared) or file (not regular, over the cap): only the
            // operator can fix it, so retrying soon is pointless.
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::FileTooLarge => {
                ErrorClass::Invalid
            }
            _ => ErrorClass::Transient,
        };
        CloudError::new(
            VENDOR,
            operation,
            class,
            format!("{:?}", error.kind()),
            error.to_string(),
        )
    }

    async fn run_reload(&self) -> Result<(), CloudError> {
        let Some(command) = &self.reload_command else {
            return Ok(());
        };
        let Some((program, arguments)) = command.split_first() else {
            return Ok(());
        };
        let mut child = tokio::process::Command::new(program)
            .args(arguments)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                CloudError::new(
                    VENDOR,
                    "reload",
                    ErrorClass::Invalid,
                    "SpawnFailed",
                    format!("{program}: {error}"),
                )
            })?;
        match tokio::time::timeout(self.reload_timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(CloudError::new(
                VENDOR,
                "reload",
                ErrorClass::Transient,
                "ReloadFailed",
                format!("{program} exited with {status}"),
            )),
            Ok(Err(error)) => Err(CloudError::new(
                VENDOR,
                "reload",
                ErrorClass::Transient,
                "ReloadFailed",
                format!("{program}: {error}"),
            )),
            Err(_) => {
                let _ = child.kill().await;
                Err(CloudError::new(
                    VENDOR,
                    "reload",
                    ErrorClass::Transient,
                    "Timeout",
                    format!(
                        "{program} did not finish within {}s",
                        self.reload_timeout.as_secs()
                    ),
                ))
            }
        }
    }
}

/// Prefixes an error from std with the path it is about, as `fsutil`'s errors already are.
fn with_path(path: &Path) -> impl Fn(std::io::Error) -> std::io::Error + '_ {
    move |error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// The largest passwd/group file we read to resolve a name: far above any real one.
const MAX_DATABASE_BYTES: u64 = 16 * 1024 * 1024;

/// A numeric id, or the name's id from a passwd/group style file (`name:x:ID:...`).
fn resolve_id(value: &str, database: &Path) -> Result<u32, CloudError> {
    if let Ok(id) = value.parse() {
        return Ok(id);
    }
    let text = crate::fsutil::read_regular(database, MAX_DATABASE_BYTES)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            (name == value).then_some(id)
        })
        .next()
        .ok_or_else(|| {
            CloudError::new(
                VENDOR,
                "configure",
                ErrorClass::NotFound,
                "UnknownOwner",
                format!("`{value}` is not in {}", database.display()),
            )
        })
}

#[async_trait]
impl Target for FileTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    async fn observe(&self) -> Result<LiveCertificate, CloudError> {
        let path = self.directory.join("cert.pem");
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                crate::fsutil::read_regular(&path, crate::cert::MAX_INPUT_BYTES as u64)
            })
            .await
            .map_err(task_failed("observe"))?
        };
        match read {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let info = LeafInfo::from_pem(&path.display().to_string(), &text).ok();
                Ok(LiveCertificate {
                    ssl_enabled: info.is_some(),
                    fingerprint: info.as_ref().map(|info| info.fingerprint.clone()),
                    not_after: info.map(|info| info.not_after),
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(LiveCertificate::default())
            }
            Err(error) => Err(self.io_error("observe", error)),
        }
    }

    async fn deploy(&self, bundle: &CertificateBundle) -> Result<(), CloudError> {
        let directory = self.directory.clone();
        let files: Vec<(&str, Vec<u8>, u32)> = vec![
            // The key first and cert.pem last: observe() reads cert.pem, so it changes only
            // once everything it pairs with is in place.
            (
                "key.pem",
                bundle.key_pem.expose().as_bytes().to_vec(),
                0o600,
            ),
            ("chain.pem", bundle.chain_pem.as_bytes().to_vec(), 0o644),
            ("fullchain.pem", bundle.fullchain_pem().into_bytes(), 0o644),
            ("cert.pem", bundle.leaf_pem.as_bytes().to_vec(), 0o644),
        ];
        let (owner, group) = (self.owner, self.group);
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // 0755 at most (the umask may narrow it): a directory we create never fails
            // the check below.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&directory)
                .map_err(with_path(&directory))?;
            crate::fsutil::refuse_shared_directory(&directory)?;
            for (file, contents, mode) in files {
                let path = directory.join(file);
                crate::fsutil::write_atomic_owned(&path, &contents, mode, owner, group)
                    .map_err(with_path(&path))?;
            }
            Ok(())
        })
        .await
        .map_err(task_failed("deploy"))?;
        written.map_err(|error| self.io_error("deploy", error))?;
        self.run_reload().await
    }
}

/// A blocking task that panicked or was cancelled.
fn task_failed(operation: &'static str) -> impl Fn(tokio::task::JoinError) -> CloudError {
    move |error| {
        CloudError::new(
            VENDOR,
            operation,
            ErrorClass::Transient,
            "TaskFailed",
            error.to_string(),
        )
    }
}

/// `kind = "file"`: its line in `cloud::registry::TARGETS`.
pub const PRODUCT: crate::cloud::registry::TargetKind = crate::cloud::registry::TargetKind {
    kind: "file",
    variant: "File",
    vendor: "file",
    provider: None,
    parse: crate::cloud::registry::parse_settings::<FileSettings>,
};

impl crate::cloud::registry::TargetProduct for FileSettings {
    fn check(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        self.validate(path, issues);
    }

    fn build(
        &self,
        spec: crate::cloud::registry::TargetSpec<'_>,
        _window: Option<crate::window::MaintenanceWindow>,
        _accounts: &dyn crate::cloud::registry::Accounts,
    ) -> Result<std::sync::Arc<dyn Target>, String> {
        let target = FileTarget::new(spec.name, self).map_err(|error| error.to_string())?;
        Ok(std::sync::Arc::new(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;
    use std::os::unix::fs::PermissionsExt;

    fn settings(directory: &Path, reload: Option<Vec<&str>>) -> FileSettings {
        FileSettings {
            directory: directory.to_owned(),
            owner: None,
            group: None,
            reload_command: reload.map(|command| command.into_iter().map(str::to_owned).collect()),
            reload_timeout: Some(Duration::from_secs(5)),
        }
    }

    #[tokio::test]
    async fn failing_or_slow_reload_fails_the_deploy() {
        let directory = tempfile::tempdir().unwrap();
        let bundle = testing::fresh(&["www.example.com"]);
        let failing =
            FileTarget::new("files", &settings(directory.path(), Some(vec!["false"]))).unwrap();
        let error = failing.deploy(&bundle).await.unwrap_err();
        assert_eq!(error.code, "ReloadFailed");
        let mut slow_settings = settings(directory.path(), Some(vec!["sleep", "5"]));
        slow_settings.reload_timeout = Some(Duration::from_secs(1));
        let slow = FileTarget::new("files", &slow_settings).unwrap();
        assert_eq!(slow.deploy(&bundle).await.unwrap_err().code, "Timeout");
    }

    #[test]
    fn owner_names_resolve_from_the_database() {
        let directory = tempfile::tempdir().unwrap();
        let passwd = directory.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101::/:/bin/false\n",
        )
        .unwrap();
        assert_eq!(resolve_id("nginx", &passwd).unwrap(), 101);
        assert_eq!(resolve_id("42", &passwd).unwrap(), 42);
        assert_eq!(
            resolve_id("nobody-here", &passwd).unwrap_err().class,
            ErrorClass::NotFound
        );
    }

    #[tokio::test]
    async fn a_world_writable_directory_is_refused_and_nothing_written() {
        let directory = tempfile::tempdir().unwrap();
        let shared = directory.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let target = FileTarget::new("files", &settings(&shared, None)).unwrap();
        let error = target
            .deploy(&testing::fresh(&["www.example.com"]))
            .await
            .unwrap_err();
        assert_eq!(error.class, ErrorClass::Invalid);
        assert!(
            error.message.contains(&shared.display().to_string())
                && error.message.contains("mode 1777"),
            "{error}"
        );
        assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
    }

    /// A FIFO at `cert.pem` is refused at once instead of blocking a thread forever.
    #[tokio::test]
    async fn a_fifo_at_cert_pem_is_refused_by_observe() {
        let directory = tempfile::tempdir().unwrap();
        let fifo = directory.path().join("cert.pem");
        crate::fsutil::testing::make_fifo(&fifo);
        let target = FileTarget::new("files", &settings(directory.path(), None)).unwrap();
        let error = tokio::time::timeout(Duration::from_secs(30), target.observe())
            .await
            .expect("observe returns")
            .unwrap_err();
        assert_eq!(error.class, ErrorClass::Invalid);
        assert!(
            error.message.contains(&fifo.display().to_string()) && error.message.contains("a FIFO"),
            "{error}"
        );
    }
}
