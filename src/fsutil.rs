//! Durable file writes: write to a temporary file in the same directory, fsync it, rename it
//! over the target, then fsync the directory, so a crash leaves either the old or the new
//! file, never half of one. Key files are created 0600 from the start; owner and mode are
//! set on the temporary file's descriptor before the rename, never on a path after it.
//! Also the state directory's lock, which keeps a second daemon off a directory one already
//! runs on; the checks that keep other users out of the directories we write; and bounded
//! reads that refuse FIFOs, sockets and devices instead of blocking on them.
//!
//! Everything here blocks: async callers run it under `tokio::task::spawn_blocking`.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Atomically replaces `path` with `contents`, with permission bits `mode` (e.g. 0o600).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_owned(path, contents, mode, None, None)
}

/// Atomically replaces `path` with `contents`, owned by `owner`/`group` (unchanged when
/// `None`) with permission bits exactly `mode` (the umask does not apply).
///
/// The temporary file is created exclusively (`O_EXCL` also refuses a symlink planted at
/// its name) and 0600, then given its owner and mode through its own descriptor
/// (`fchown`, `fchmod`) before a byte is written and before the rename: a symlink swapped
/// in at `path` is replaced by the rename, never followed, so no other file is handed over.
pub fn write_atomic_owned(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<u32>,
    group: Option<u32>,
) -> io::Result<()> {
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
            .mode(0o600)
            .open(&temporary)?;
        if owner.is_some() || group.is_some() {
            std::os::unix::fs::fchown(&file, owner, group)?;
        }
        // After the chown, which clears set-id bits.
        file.set_permissions(Permissions::from_mode(mode))?;
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

/// Opens `path` for reading without ever blocking on the open and only if it is a regular
/// file: `O_NONBLOCK` makes opening a FIFO return at once (a blocking open waits for a
/// writer forever), `O_NOCTTY` keeps a terminal from becoming ours, and the descriptor's
/// `fstat` refuses FIFOs, sockets, devices and directories. Symlinks are followed on
/// purpose: certbot's `live/NAME/*.pem` are symlinks into `archive/`. Errors start with
/// the path.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        // Opening a Unix socket fails with ENXIO ("No such device or address"): say what
        // the path is instead.
        Err(errno) if errno == rustix::io::Errno::NXIO => {
            return Err(match fs::metadata(path) {
                Ok(metadata) => not_regular(path, &metadata.file_type()),
                Err(_) => with_path(path, io::Error::from(errno)),
            })
        }
        Err(errno) => return Err(with_path(path, io::Error::from(errno))),
    };
    let metadata = file.metadata().map_err(|error| with_path(path, error))?;
    if !metadata.is_file() {
        return Err(not_regular(path, &metadata.file_type()));
    }
    Ok(file)
}

/// Reads the regular file at `path` whole, refusing it (`FileTooLarge`, the cap in the
/// message) when it is larger than `cap` bytes; see [`open_regular`] for what else is
/// refused. The cap holds even if the file grows while it is read.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let too_large = |size: u64| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "{}: {size} bytes is more than the {cap}-byte cap for this file",
                path.display()
            ),
        )
    };
    let size = file
        .metadata()
        .map_err(|error| with_path(path, error))?
        .len();
    if size > cap {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| with_path(path, error))?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > cap {
        return Err(too_large(read));
    }
    Ok(bytes)
}

fn with_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

fn not_regular(path: &Path, file_type: &fs::FileType) -> io::Error {
    let what = if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}, not a regular file; refusing to read it",
            path.display()
        ),
    )
}

/// Refuses a directory other users can write into: the mode must not have the group- or
/// world-write bit, whatever the sticky bit says. With the sticky bit others can still
/// create the names we have not written yet (`chain.pem` before the first deploy, the
/// next temporary name), and a reader such as nginx would trust what they plant. The
/// error (`InvalidInput`) names the directory and its mode.
pub fn refuse_shared_directory(directory: &Path) -> io::Result<()> {
    let metadata = fs::metadata(directory).map_err(|error| with_path(directory, error))?;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is group- or world-writable (mode {mode:04o}): another user could replace \
                 the files written there; remove the write bits (chmod go-w) or name a \
                 subdirectory, which certkeeper creates 0755",
                directory.display()
            ),
        ));
    }
    Ok(())
}

/// Keeps other users out of the state directory (the store, the lock, `control.sock`):
/// one we own is tightened to 0700 (logged at WARN with the mode it had); one owned by
/// someone else that is group- or world-writable (sticky or not) is refused, since we
/// cannot tighten it and another user could replace `control.sock` or the store. A
/// missing directory (or a path through a file) is left to the caller, which creates it
/// or names what is wrong. Errors do not repeat the path.
pub fn secure_state_dir(state_dir: &Path) -> io::Result<()> {
    // Through a descriptor, so the mode we check is the mode we change.
    let directory = match File::open(state_dir) {
        Ok(directory) => directory,
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(error) => return Err(error),
    };
    let metadata = directory.metadata()?;
    if !metadata.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the state directory is not a directory",
        ));
    }
    let mode = metadata.mode() & 0o7777;
    if metadata.uid() == rustix::process::geteuid().as_raw() {
        if mode & 0o077 != 0 {
            directory.set_permissions(Permissions::from_mode(0o700))?;
            tracing::warn!(
                state_dir = %state_dir.display(),
                mode = %format!("{mode:04o}"),
                "tightened the state directory to 0700: other users could read or replace \
                 the store and the control socket"
            );
        }
        return Ok(());
    }
    if mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the state directory is owned by uid {} and group- or world-writable (mode \
                 {mode:04o}): another user could replace the store or control.sock; name a \
                 subdirectory, which certkeeper creates 0700",
                metadata.uid()
            ),
        ));
    }
    Ok(())
}

/// Helpers for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod testing {
    /// A FIFO at `path`: what a hostile or mistaken hand may leave where a file belongs.
    pub(crate) fn make_fifo(path: &std::path::Path) {
        use rustix::fs::{FileType, Mode, CWD};
        rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .expect("making a FIFO");
    }
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

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn fifos_sockets_devices_and_directories_are_refused_without_blocking() {
        let directory = tempfile::tempdir().unwrap();
        let fifo = directory.path().join("cert.pem");
        crate::fsutil::testing::make_fifo(&fifo);
        let socket = directory.path().join("key.pem");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (socket.as_path(), "a socket"),
            (Path::new("/dev/zero"), "a device"),
            (directory.path(), "a directory"),
        ] {
            let error = read_regular(path, 1024).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
            let message = error.to_string();
            assert!(
                message.starts_with(&path.display().to_string()) && message.contains(what),
                "{message}"
            );
        }
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_the_cap_named() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("huge.pem");
        fs::write(&path, vec![b'A'; 2048]).unwrap();
        let error = read_regular(&path, 1024).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert!(
            error.to_string().contains("1024-byte cap") && error.to_string().contains("huge.pem"),
            "{error}"
        );
        assert_eq!(read_regular(&path, 2048).unwrap().len(), 2048);
        let missing = read_regular(&directory.path().join("missing.pem"), 1024).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
    }

    /// A symlink planted at the final name is replaced, never followed: the file it points
    /// to keeps its contents, mode and owner, and the new file has exactly the asked-for
    /// owner and mode (set on the temporary file's descriptor, whatever the umask).
    #[test]
    fn owner_and_mode_go_to_the_new_file_never_through_a_planted_symlink() {
        let directory = tempfile::tempdir().unwrap();
        let victim = directory.path().join("shadow");
        fs::write(&victim, "precious").unwrap();
        fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        let path = directory.path().join("cert.pem");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let me = fs::metadata(directory.path()).unwrap();
        write_atomic_owned(&path, b"new", 0o644, Some(me.uid()), Some(me.gid())).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(mode_of(&victim), 0o600);
        let written = fs::symlink_metadata(&path).unwrap();
        assert!(written.is_file(), "the symlink was replaced");
        assert_eq!(mode_of(&path), 0o644);
        assert_eq!((written.uid(), written.gid()), (me.uid(), me.gid()));
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // A mode wider than the umask allows is still exact.
        write_atomic_owned(&path, b"newer", 0o664, None, None).unwrap();
        assert_eq!(mode_of(&path), 0o664);
    }

    #[test]
    fn group_or_world_writable_directories_are_refused_sticky_or_not() {
        let directory = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o1777, 0o770, 0o1733] {
            fs::set_permissions(directory.path(), Permissions::from_mode(mode)).unwrap();
            let error = refuse_shared_directory(directory.path()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            let message = error.to_string();
            assert!(
                message.contains(&directory.path().display().to_string())
                    && message.contains(&format!("{mode:04o}"))
                    && message.contains("world-writable"),
                "{message}"
            );
        }
        for mode in [0o755, 0o750, 0o700] {
            fs::set_permissions(directory.path(), Permissions::from_mode(mode)).unwrap();
            refuse_shared_directory(directory.path()).unwrap();
        }
    }

    #[test]
    fn a_state_directory_we_own_is_tightened_to_0700() {
        let directory = tempfile::tempdir().unwrap();
        fs::set_permissions(directory.path(), Permissions::from_mode(0o777)).unwrap();
        secure_state_dir(directory.path()).unwrap();
        assert_eq!(mode_of(directory.path()), 0o700);
        secure_state_dir(&directory.path().join("not-yet")).unwrap();
    }

    /// A world-writable state directory someone else owns is refused: as root we make one
    /// (owned by `nobody`); otherwise /tmp is one (root-owned, 1777).
    #[test]
    fn a_shared_state_directory_someone_else_owns_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let shared = if rustix::process::geteuid().is_root() {
            let shared = scratch.path().join("shared");
            fs::create_dir(&shared).unwrap();
            std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
            fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
            shared
        } else {
            std::path::PathBuf::from("/tmp")
        };
        let before = mode_of(&shared);
        let error = secure_state_dir(&shared).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("world-writable"), "{error}");
        assert_eq!(mode_of(&shared), before, "left alone");
    }
}
