//! Durable file writes: write to a temporary file in the same directory, fsync it, rename it
//! over the target, then fsync the directory, so a crash leaves either the old or the new
//! file, never half of one. Key files are created 0600 from the start. Also the state
//! directory's lock, which keeps a second daemon off a directory one already runs on.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The lock file's name inside the state directory.
pub const LOCK_NAME: &str = "daemon.lock";

/// Takes the exclusive lock of `state_dir` for as long as the returned file lives. The
/// kernel drops it when the process dies, so a `kill -9` never leaves it stale. Fails with
/// `WouldBlock` when another process holds it.
pub fn lock_state_dir(state_dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(state_dir.join(LOCK_NAME))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "another certkeeper daemon is running on {}",
                state_dir.display()
            ),
        )),
        Err(fs::TryLockError::Error(error)) => Err(error),
    }
}

/// Atomically replaces `path` with `contents`, created with `mode` (e.g. 0o600).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temporary = directory.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        File::open(directory)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_takes_one_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_state_dir(dir.path()).unwrap();
        let error = lock_state_dir(dir.path()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert!(
            error.to_string().contains("another certkeeper daemon"),
            "{error}"
        );
        drop(held);
        lock_state_dir(dir.path()).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_with_mode_and_leaves_no_temporary() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("key.pem");
        write_atomic(&path, b"old", 0o600).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(directory.path()).unwrap().count(), 1);
    }
}
