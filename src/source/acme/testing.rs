//! A real Pebble for tests and the issuance benchmark: generates Pebble's HTTPS CA and leaf
//! with rcgen into a temporary directory, writes its config with free loopback ports, starts
//! `pebble-challtestsrv` (DNS only, answering 127.0.0.1) and `pebble -dnsserver` as child
//! processes that die with the harness, and waits until the directory answers. Missing
//! binaries fail with a message saying which Debian package to install. Inputs here are
//! ours, so failures are bugs or a broken machine and panic with a clear message.

use crate::cloud::{DnsRecord, DnsSolver};
use crate::error::{CloudError, ErrorClass};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Options of one Pebble instance.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// `externalAccountBindingRequired` with these `kid → base64url key` pairs.
    pub eab_keys: Vec<(String, String)>,
    /// Turn off Pebble's random badNonce rejections and authorization reuse (benchmarks).
    pub quiet: bool,
    /// `certificateValidityPeriod` in seconds.
    pub validity_seconds: Option<u64>,
}

/// A running Pebble plus challtestsrv. Killed on drop.
pub struct Pebble {
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT/dir`
    pub directory: String,
    /// Pebble's HTTPS CA (trust it through `ca_bundle`).
    pub ca_pem: String,
    /// The port Pebble's VA dials for HTTP-01: bind the responder on 127.0.0.1 here.
    pub http_port: u16,
    pub management_port: u16,
    /// challtestsrv's management API.
    pub challtestsrv: String,
    children: Vec<Child>,
    /// How Pebble itself was started, to restart it on the same ports.
    pebble_command: Vec<String>,
    pebble_env: Vec<(String, String)>,
    listen_port: u16,
    _tempdir: tempdir::TempDir,
}

mod tempdir {
    //! A minimal self-deleting directory, so the library does not depend on `tempfile`.
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> Self {
            let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct loopback ports nobody listens on right now. The listeners are held until
/// all are chosen: binding and dropping one at a time lets the kernel hand out the same
/// port twice (seen in CI: challtestsrv's DNS and management ports collided).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free loopback port"))
        .collect();
    std::array::from_fn(|index| {
        listeners[index]
            .local_addr()
            .map(|addr| addr.port())
            .expect("bound loopback port")
    })
}

fn require(binary: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{binary}` is not installed: the ACME tests need the real Pebble \
                 (run `sudo apt-get install -y pebble`)"
            )
        })
}

/// Pebble's HTTPS CA and a leaf for `localhost`, `127.0.0.1`, `::1`.
fn tls_material(dir: &Path) -> (String, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "certkeeper test Pebble CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, leaf.pem()).expect("write cert");
    std::fs::write(&key_path, leaf_key.serialize_pem()).expect("write key");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");
    (ca_cert.pem(), cert_path, key_path)
}

fn spawn_pebble(dir: &Path, command: &[String], env: &[(String, String)]) -> Child {
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    };
    Command::new(&command[0])
        .args(&command[1..])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(log("pebble.log"))
        .stderr(log("pebble.err"))
        .spawn()
        .expect("start pebble")
}

fn wait_for_port(port: u16, what: &str, children: &mut [Child]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        for child in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what} exited early with {status}");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not open port {port} within 30 s");
}

impl Pebble {
    /// Starts challtestsrv and Pebble and waits until both listen.
    pub fn start(options: PebbleOptions) -> Self {
        let pebble_bin = require("pebble");
        let challtestsrv_bin = require("pebble-challtestsrv");
        let tempdir = tempdir::TempDir::new("certkeeper-pebble");
        let dir = tempdir.path().to_path_buf();
        let (ca_pem, cert_path, key_path) = tls_material(&dir);
        let [listen_port, management_port, http_port, tls_port, dns_port, challtest_port] =
            free_ports::<6>();

        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": cert_path,
            "privateKey": key_path,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !options.eab_keys.is_empty(),
        });
        if !options.eab_keys.is_empty() {
            pebble["externalAccountMACKeys"] = options
                .eab_keys
                .iter()
                .map(|(kid, key)| (kid.clone(), serde_json::Value::String(key.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        if let Some(seconds) = options.validity_seconds {
            pebble["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.join("pebble-config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&serde_json::json!({ "pebble": pebble }))
                .expect("config json"),
        )
        .expect("write config");

        let log = |name: &str| {
            std::fs::File::create(dir.join(name))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        let mut children = Vec::new();
        children.push(
            Command::new(challtestsrv_bin)
                .args(["-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-management", &format!("127.0.0.1:{challtest_port}")])
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err"))
                .spawn()
                .expect("start pebble-challtestsrv"),
        );
        let pebble_command = vec![
            pebble_bin.to_string_lossy().into_owned(),
            "-config".to_owned(),
            config_path.to_string_lossy().into_owned(),
            "-dnsserver".to_owned(),
            format!("127.0.0.1:{dns_port}"),
        ];
        let mut pebble_env = vec![("PEBBLE_VA_NOSLEEP".to_owned(), "1".to_owned())];
        if options.quiet {
            pebble_env.push(("PEBBLE_WFE_NONCEREJECT".to_owned(), "0".to_owned()));
            pebble_env.push(("PEBBLE_AUTHZREUSE".to_owned(), "0".to_owned()));
        }
        children.push(spawn_pebble(&dir, &pebble_command, &pebble_env));
        wait_for_port(challtest_port, "pebble-challtestsrv", &mut children);
        wait_for_port(listen_port, "pebble", &mut children);
        wait_for_port(management_port, "pebble management", &mut children);
        Self {
            directory: format!("https://127.0.0.1:{listen_port}/dir"),
            ca_pem,
            http_port,
            management_port,
            challtestsrv: format!("http://127.0.0.1:{challtest_port}"),
            dir,
            children,
            pebble_command,
            pebble_env,
            listen_port,
            _tempdir: tempdir,
        }
    }

    /// Stops Pebble and starts it again on the same ports: all its state (accounts,
    /// orders, roots) is gone, as after a real restart.
    pub fn restart(&mut self) {
        if let Some(mut old) = self.children.pop() {
            let _ = old.kill();
            let _ = old.wait();
        }
        // The old process released its ports when it died; wait until they are closed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.listen_port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.children.push(spawn_pebble(
            &self.dir,
            &self.pebble_command,
            &self.pebble_env,
        ));
        wait_for_port(self.listen_port, "pebble", &mut self.children);
        wait_for_port(
            self.management_port,
            "pebble management",
            &mut self.children,
        );
    }

    /// The root the issued certificates chain to (random per Pebble start).
    pub async fn issuing_root(&self) -> String {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca pem"),
            )
            .build()
            .expect("client");
        client
            .get(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .send()
            .await
            .expect("roots")
            .text()
            .await
            .expect("roots body")
    }

    /// Pebble's logs, for failure messages.
    pub fn logs(&self) -> String {
        [
            "pebble.log",
            "pebble.err",
            "challtestsrv.log",
            "challtestsrv.err",
        ]
        .iter()
        .map(|name| {
            format!(
                "== {name}\n{}",
                std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
            )
        })
        .collect()
    }
}

/// A [`DnsSolver`] writing TXT records into challtestsrv (`/set-txt`, `/clear-txt`), which
/// Pebble's VA asks. Records every call so tests can prove cleanup happened.
pub struct ChalltestsrvDns {
    management: String,
    client: reqwest::Client,
    pub log: Mutex<Vec<String>>,
}

impl ChalltestsrvDns {
    pub fn new(pebble: &Pebble) -> Self {
        Self {
            management: pebble.challtestsrv.clone(),
            client: reqwest::Client::new(),
            log: Mutex::new(Vec::new()),
        }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), CloudError> {
        let response = self
            .client
            .post(format!("{}{path}", self.management))
            .json(&body)
            .send()
            .await
            .map_err(|error| CloudError::network("challtestsrv", path, &error))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(CloudError::new(
                "challtestsrv",
                path,
                ErrorClass::from_http_status(response.status().as_u16()),
                response.status().as_str(),
                "challtestsrv refused",
            ))
        }
    }

    fn note(&self, entry: String) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(entry);
    }
}

#[async_trait]
impl DnsSolver for ChalltestsrvDns {
    async fn present(&self, fqdn: &str, value: &str) -> Result<DnsRecord, CloudError> {
        self.post(
            "/set-txt",
            serde_json::json!({ "host": format!("{fqdn}."), "value": value }),
        )
        .await?;
        self.note(format!("present {fqdn}"));
        Ok(DnsRecord {
            zone: fqdn.trim_start_matches("_acme-challenge.").to_owned(),
            zone_id: None,
            record_id: fqdn.to_owned(),
            fqdn: fqdn.to_owned(),
            value: value.to_owned(),
        })
    }

    async fn cleanup(&self, record: &DnsRecord) -> Result<(), CloudError> {
        self.post(
            "/clear-txt",
            serde_json::json!({ "host": format!("{}.", record.fqdn) }),
        )
        .await?;
        self.note(format!("cleanup {}", record.fqdn));
        Ok(())
    }
}

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub count: usize,
    pub concurrency: usize,
    pub wall: Duration,
    /// Per-certificate times from the start of its order (after waiting for a slot) to the
    /// downloaded chain.
    pub per_certificate: Vec<Duration>,
    /// Peak resident set of this process (VmHWM), when the OS reports it.
    pub peak_rss_kib: Option<u64>,
}

impl BenchReport {
    pub fn median(&self) -> Duration {
        let mut times = self.per_certificate.clone();
        times.sort();
        times.get(times.len() / 2).copied().unwrap_or_default()
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "certkeeper: {} certificates, {} at once: wall {:.3} s, per-certificate median {:.3} s, peak RSS {}",
            self.count,
            self.concurrency,
            self.wall.as_secs_f64(),
            self.median().as_secs_f64(),
            self.peak_rss_kib
                .map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0))
                .unwrap_or_else(|| "unknown".into()),
        )
    }
}

/// Peak resident set size of this process in KiB (Linux `VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Issues `count` single-name certificates over HTTP-01 against `pebble`, at most
/// `concurrency` at once, with a fresh account, and measures them.
pub async fn bench_issue(
    pebble: &Pebble,
    count: usize,
    concurrency: usize,
) -> Result<BenchReport, crate::source::SourceError> {
    use crate::source::acme::{
        AcmeEvent, AcmeSettings, AcmeSource, ChallengeSolver, Http01Responder,
    };
    use crate::source::{CertificateRequest, MemoryStore, Source};
    use std::sync::Arc;
    let responder = Http01Responder::bind(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        pebble.http_port,
    )))
    .await?;
    let mut settings = AcmeSettings::new("bench", pebble.directory.clone());
    settings.ca_bundle_pem = Some(pebble.ca_pem.clone());
    settings.max_concurrent_orders = concurrency.max(1);
    settings.ari = false;
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let source = Arc::new(AcmeSource::with_events(
        settings,
        Arc::new(MemoryStore::new()),
        ChallengeSolver::Http01(responder),
        Some(events),
    )?);
    // Register the account first: it is a one-time cost, not a per-certificate one.
    source.account_url().await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let source = source.clone();
        tasks.spawn(async move {
            let name = format!("bench{index}.example.test");
            source
                .obtain(&CertificateRequest::new(name.clone(), vec![name]))
                .await
                .map(|_| ())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => result?,
            Err(error) => {
                return Err(crate::source::SourceError::new(
                    "acme",
                    "bench",
                    ErrorClass::Transient,
                    "Join",
                    error.to_string(),
                ))
            }
        }
    }
    let wall = started.elapsed();
    let mut per_certificate = Vec::with_capacity(count);
    while let Ok(event) = seen.try_recv() {
        if let AcmeEvent::OrderCompleted { elapsed, .. } = event {
            per_certificate.push(elapsed);
        }
    }
    Ok(BenchReport {
        count,
        concurrency,
        wall,
        per_certificate,
        peak_rss_kib: peak_rss_kib(),
    })
}
