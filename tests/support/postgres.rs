//! A real PostgreSQL server for tests: `initdb` in a temporary directory, the postmaster on
//! a loopback port with its socket in that directory, stopped (and its files removed) when
//! the handle drops. Uses the Debian `postgresql` package's binaries
//! (`/usr/lib/postgresql/VERSION/bin`, the newest installed; `scripts/test` installs it).
//! PostgreSQL refuses to run as root and tests may run as root, so then every server command
//! runs as `nobody` through `setpriv` (which execs, so the child is the postmaster itself).
//!
//! Standalone on purpose (std and `tempfile` only): the integration tests reach it as
//! `support::postgres`, and the library's own PostgreSQL tests include this very file with
//! `#[path]`, so there is one harness.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The role every test connects as (trusted on loopback: the server lives only for a test).
pub const USER: &str = "certkeeper";

/// How long a server may take to start (initdb is separate): generous, the machine is shared.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running (or stopped, see [`PgServer::stop`]) PostgreSQL server owned by one test.
pub struct PgServer {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    directory: tempfile::TempDir,
}

/// The newest installed server's binary directory.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql): run scripts/test, which installs the Debian package `postgresql`")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/initdb: install the Debian package `postgresql`")
}

/// `(uid, gid)` of `nobody` when running as root, `None` otherwise.
fn unprivileged_user() -> Option<(u32, u32)> {
    let id = |flag: &str, name: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, name])
            .output()
            .expect("running id");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("id printed a number")
    };
    let output = Command::new("id").arg("-u").output().expect("running id");
    let root = String::from_utf8_lossy(&output.stdout).trim() == "0";
    root.then(|| (id("-u", "nobody"), id("-g", "nobody")))
}

impl PgServer {
    /// `initdb` a fresh cluster and start it on `port` (from `support::free_port()`).
    pub fn start(port: u16) -> Self {
        let directory = tempfile::Builder::new()
            .prefix("certkeeper-pg")
            .tempdir()
            .expect("creating the PostgreSQL directory");
        let run_as = unprivileged_user();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(directory.path(), Some(uid), Some(gid))
                .expect("giving the PostgreSQL directory to nobody");
        }
        let mut server = Self {
            port,
            bin: bin_dir(),
            data: directory.path().join("data"),
            run_as,
            child: None,
            directory,
        };
        let output = server
            .command("initdb")
            .args(["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"])
            .arg(format!("--username={USER}"))
            .arg("-D")
            .arg(&server.data)
            .stdin(Stdio::null())
            .output()
            .expect("running initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        server.resume();
        server
    }

    /// A server binary, run as the unprivileged user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some((uid, gid)) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    /// The socket directory and the server log live beside the data directory.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// `postgres://certkeeper@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the postmaster on the existing data directory and waits until it accepts
    /// connections (after [`stop`](Self::stop): the same data, the same port).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.directory.path().join("server.log"))
            .expect("opening the server log");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(
                self.directory.path().join("server.log"),
                Some(uid),
                Some(gid),
            )
            .expect("giving the server log to nobody");
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.directory.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("sharing the server log"))
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", USER, "-p"])
                .arg(self.port.to_string())
                .status()
                .map(|status| status.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "postgres exited ({status}) before accepting connections:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the postmaster (fast shutdown: sessions are cut, as when a database host goes
    /// down) and waits until the port is closed. The data stays for [`resume`](Self::resume).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PostgreSQL's fast shutdown; the postmaster runs as `nobody`, so the
        // signal goes through kill(1) (root may signal it; the test's own user owns it else).
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts the server with TLS on (`cert_pem`, `key_pem`) and refuses every TCP
    /// connection without it (`hostssl` only), so a test sees TLS really used.
    pub fn require_tls(&mut self, cert_pem: &str, key_pem: &str) {
        use std::os::unix::fs::PermissionsExt;
        for (name, contents) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = self.data.join(name);
            std::fs::write(&path, contents).expect("writing the server's TLS files");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("restricting the server's TLS files");
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .expect("giving the TLS files to nobody");
            }
        }
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("reading postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).expect("writing postgresql.conf");
        let hba = self.data.join("pg_hba.conf");
        let rules: String = std::fs::read_to_string(&hba)
            .expect("reading pg_hba.conf")
            .lines()
            .map(|line| match line.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{line}\n"),
            })
            .collect();
        std::fs::write(&hba, rules).expect("writing pg_hba.conf");
        self.stop();
        self.resume();
    }

    /// Whether the postmaster is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs one SQL statement with `psql` against `database` and returns its unaligned
    /// output (`psql -At`); panics naming the statement when it fails.
    pub fn sql(&self, database: &str, statement: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                USER,
                "-p",
            ])
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(statement)
            .stdin(Stdio::null())
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql {statement:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// The server's log so far (for a failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
