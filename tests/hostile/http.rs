//! Hostile HTTP servers on loopback against every vendor client (Alibaba, Huawei AK/SK,
//! Huawei IAM, QingCloud) and the ACME client: a redirect is never followed (the redirecting
//! endpoint sees one request, the other host none, the error names only the Location host);
//! a 200 MB reply, announced or not, fails fast on the reply cap; a trickling or silent
//! server ends in a timeout within the configured bound; and the real daemon's peak RSS stays
//! flat while a vendor streams 200 MB at it, and it counts and logs a refused redirect.

use crate::support;
use bytes::Bytes;
use certkeeper::cloud::alibaba::client::{default_rate_limits, AlibabaClient, Product};
use certkeeper::cloud::http::{client, HttpSettings, ACME_REPLY_CAP, VENDOR_REPLY_CAP};
use certkeeper::cloud::huawei::client::{system_clock, ApiRequest, HuaweiClient};
use certkeeper::cloud::qingcloud::client::QingCloudClient;
use certkeeper::config::credentials::{AuthMethod, Provider, ResolvedCredentials};
use certkeeper::error::{CloudError, ErrorClass};
use certkeeper::secret::Secret;
use instant_acme::{BodyWrapper, HttpClient};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A private key in the Alibaba call: it must never reach another host or an error text.
const PRIVATE_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nTUFZLU5PVC1MRUFL\n-----END PRIVATE KEY-----\n";
const IAM_PASSWORD: &str = "iam-password-never-leaves";
/// The IAM token a scripted server issues: it must never reach another host.
const ISSUED_TOKEN: &str = "issued-token-never-leaves";
/// 200 MB: the reply size of the probe in issue 19.
const HUGE: u64 = 200 * 1000 * 1000;

/// What a scripted server does once it has read a request.
#[derive(Clone)]
enum Behaviour {
    /// Answers `status` with `Location: location`.
    Redirect { status: u16, location: String },
    /// Streams `total` bytes of spaces (JSON whitespace), written lazily in 64 KiB slices, with or
    /// without a `Content-Length`; holds the answer until `go` is set.
    Huge {
        total: u64,
        announce_length: bool,
        go: Arc<std::sync::atomic::AtomicBool>,
    },
    /// Issues an IAM token (`POST /v3/auth/tokens`), then answers every other request as
    /// [`Behaviour::Redirect`] does.
    TokenThenRedirect { location: String },
    /// Announces a body and sends one byte every 100 ms.
    Trickle,
    /// Never answers, holding the connection open.
    Silent,
}

/// A loopback HTTP/1.1 server that follows a [`Behaviour`] and records what it got.
struct ScriptedServer {
    url: String,
    requests: Arc<AtomicUsize>,
    /// Each request: head and body as text.
    seen: Arc<Mutex<Vec<String>>>,
}

impl ScriptedServer {
    fn start(behaviour: Behaviour) -> Self {
        let port = support::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (requests.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (behaviour, counter, log) = (behaviour.clone(), counter.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &behaviour, &counter, &log));
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            requests,
            seen,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request (head, then `Content-Length` bytes of body).
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_string();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(head + &String::from_utf8_lossy(&body))
}

fn serve(
    mut stream: TcpStream,
    behaviour: &Behaviour,
    counter: &AtomicUsize,
    log: &Mutex<Vec<String>>,
) {
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    log.lock().unwrap().push(request.clone());
    counter.fetch_add(1, Ordering::SeqCst);
    match behaviour {
        Behaviour::Redirect { status, location } => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Behaviour::Huge {
            total,
            announce_length,
            go,
        } => {
            while !go.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let length = if *announce_length {
                format!("Content-Length: {total}\r\n")
            } else {
                String::new()
            };
            if write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
            )
            .is_err()
            {
                return;
            }
            // Written lazily: the test never holds more than one slice.
            let slice = [b' '; 64 * 1024];
            let mut sent = 0u64;
            while sent < *total {
                if stream.write_all(&slice).is_err() {
                    return;
                }
                sent += slice.len() as u64;
            }
        }
        Behaviour::TokenThenRedirect { location } => {
            if request.starts_with("POST /v3/auth/tokens") {
                let body = r#"{"token":{"issued_at":"2030-01-01T00:00:00Z","expires_at":"2030-01-02T00:00:00Z","project":{"id":"p"}}}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 201 Created\r\nX-Subject-Token: {ISSUED_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            } else {
                let _ = write!(
                    stream,
                    "HTTP/1.1 307 Moved\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        }
        Behaviour::Trickle => {
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                .is_err()
            {
                return;
            }
            while stream.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Behaviour::Silent => {
            // Holds the connection until the client gives up and closes it.
            let mut buffer = [0u8; 1024];
            while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
        }
    }
}

/// The clients under test, one call each.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Alibaba,
    Huawei,
    HuaweiIam,
    QingCloud,
}

const CALLERS: [Caller; 4] = [
    Caller::Alibaba,
    Caller::Huawei,
    Caller::HuaweiIam,
    Caller::QingCloud,
];

/// Makes `caller`'s call against `url` with `http`; every call here must fail.
async fn call(caller: Caller, url: &str, http: reqwest::Client) -> CloudError {
    match caller {
        Caller::Alibaba => {
            let credentials =
                ResolvedCredentials::new("ali", Provider::Alibaba, "LTAIhostile", "ali-secret")
                    .with_endpoint(url);
            AlibabaClient::new(credentials, http, default_rate_limits())
                .call(
                    Product::Cdn,
                    "SetCdnDomainSSLCertificate",
                    &[
                        ("DomainName", "www.example.com".to_owned()),
                        ("SSLPri", PRIVATE_KEY.to_owned()),
                    ],
                )
                .await
                .unwrap_err()
        }
        Caller::Huawei | Caller::HuaweiIam => {
            let mut credentials =
                ResolvedCredentials::new("hw", Provider::Huawei, "HWAK", "hw-secret")
                    .with_endpoint(url);
            credentials.project_id = Some("0123456789abcdef0123456789abcdef".into());
            if let Caller::HuaweiIam = caller {
                credentials.auth = AuthMethod::Token;
                credentials.iam_endpoint = Some(url.to_owned());
                credentials.domain_name = Some("acme".into());
                credentials.user_name = Some("deployer".into());
                credentials.password = Some(Secret::new(IAM_PASSWORD));
            }
            let client = HuaweiClient::new(&credentials, http, system_clock()).unwrap();
            client
                .send(&ApiRequest {
                    operation: "DescribeBackupEncryptStatus",
                    method: reqwest::Method::GET,
                    base: client.gaussdb_endpoint(),
                    path: "/v3/0123456789abcdef0123456789abcdef/instances/i1/backups/encryption"
                        .into(),
                    query: Vec::new(),
                    body: None,
                })
                .await
                .unwrap_err()
        }
        Caller::QingCloud => {
            let credentials =
                ResolvedCredentials::new("qc", Provider::Qingcloud, "QYHOSTILE", "qc-secret")
                    .with_endpoint(url);
            QingCloudClient::new(http, &credentials, Some("pek3a"))
                .unwrap()
                .call("DescribeJobs", &[])
                .await
                .unwrap_err()
        }
    }
}

/// Short timeouts so the slow-server tests end quickly.
fn short() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    }
}

/// Guards a call against a hang: ten times any expected duration.
async fn bounded<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn no_client_follows_a_redirect_and_the_error_names_only_the_location_host() {
    for caller in CALLERS {
        for status in [307, 302] {
            // The other host: a listener nobody may connect to.
            let other = TcpListener::bind(("127.0.0.1", support::free_port())).unwrap();
            let other_host = other.local_addr().unwrap().to_string();
            let server = ScriptedServer::start(Behaviour::Redirect {
                status,
                location: format!("http://{other_host}/stolen?SSLPri=secret-query&token=x"),
            });
            let error = bounded(
                "a redirected call",
                call(
                    caller,
                    &server.url,
                    client(HttpSettings::default()).unwrap(),
                ),
            )
            .await;
            let context = format!("{caller:?} {status}: {error}");
            assert_eq!(error.class, ErrorClass::Transient, "{context}");
            assert_eq!(error.code, "Redirect", "{context}");
            assert_eq!(error.http_status, Some(status), "{context}");
            assert!(error.message.contains(&other_host), "{context}");
            for leaked in [
                "stolen",
                "secret-query",
                "token=",
                PRIVATE_KEY,
                IAM_PASSWORD,
            ] {
                assert!(!error.to_string().contains(leaked), "{context}");
            }
            assert_eq!(server.requests(), 1, "{context}");
            other.set_nonblocking(true).unwrap();
            assert!(
                other.accept().is_err(),
                "{context}: the other host was contacted"
            );
            if let Caller::HuaweiIam = caller {
                assert_eq!(
                    error.operation, "KeystoneCreateUserTokenByPassword",
                    "{context}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_redirected_token_call_never_carries_the_token_to_the_other_host() {
    let other = TcpListener::bind(("127.0.0.1", support::free_port())).unwrap();
    let other_host = other.local_addr().unwrap().to_string();
    let server = ScriptedServer::start(Behaviour::TokenThenRedirect {
        location: format!("http://{other_host}/v3/p/instances"),
    });
    let mut credentials =
        ResolvedCredentials::new("hw", Provider::Huawei, "", "").with_endpoint(&server.url);
    credentials.auth = AuthMethod::Token;
    credentials.iam_endpoint = Some(server.url.clone());
    credentials.domain_name = Some("acme".into());
    credentials.user_name = Some("deployer".into());
    credentials.password = Some(Secret::new(IAM_PASSWORD));
    let http = client(HttpSettings::default()).unwrap();
    let huawei = HuaweiClient::new(&credentials, http, system_clock()).unwrap();
    let error = bounded(
        "a redirected GaussDB call",
        huawei.send(&ApiRequest {
            operation: "ModifyBackupEncryptStatus",
            method: reqwest::Method::POST,
            base: huawei.gaussdb_endpoint(),
            path: "/v3/p/instances/i1/backups/encryption".into(),
            query: Vec::new(),
            body: Some(serde_json::json!({"encryption_status": "off"})),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str(), error.operation.as_str()),
        (
            ErrorClass::Transient,
            "Redirect",
            "ModifyBackupEncryptStatus"
        ),
        "{error}"
    );
    assert!(error.message.contains(&other_host), "{error}");
    assert!(!error.to_string().contains(ISSUED_TOKEN), "{error}");
    // One token call, one product call carrying the token, and nothing more.
    assert_eq!(server.requests(), 2);
    let seen = server.seen.lock().unwrap().clone();
    assert!(seen[1].contains(ISSUED_TOKEN), "{}", seen[1]);
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_err(), "the other host was contacted");
}

#[tokio::test]
async fn the_alibaba_private_key_travels_in_the_form_body_never_in_the_url() {
    let other = TcpListener::bind(("127.0.0.1", support::free_port())).unwrap();
    let server = ScriptedServer::start(Behaviour::Redirect {
        status: 307,
        location: format!("http://{}/", other.local_addr().unwrap()),
    });
    call(
        Caller::Alibaba,
        &server.url,
        client(HttpSettings::default()).unwrap(),
    )
    .await;
    let seen = server.seen.lock().unwrap().clone();
    let request = &seen[0];
    let request_line = request.lines().next().unwrap();
    assert_eq!(request_line, "POST / HTTP/1.1", "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded"),
        "{request}"
    );
    assert!(
        request.contains("SSLPri=-----BEGIN+PRIVATE+KEY"),
        "{request}"
    );
    assert!(
        !request.to_ascii_lowercase().contains("referer"),
        "{request}"
    );
}

#[tokio::test]
async fn a_200_mb_reply_fails_fast_on_the_cap_with_or_without_its_length() {
    for caller in CALLERS {
        for announce_length in [true, false] {
            let server = ScriptedServer::start(Behaviour::Huge {
                total: HUGE,
                announce_length,
                go: Arc::new(true.into()),
            });
            // The default timeouts: the cap, not a timeout, must end the read.
            let error = bounded(
                "an oversized reply",
                call(
                    caller,
                    &server.url,
                    client(HttpSettings::default()).unwrap(),
                ),
            )
            .await;
            let context = format!("{caller:?} announced={announce_length}: {error}");
            assert_eq!(
                (error.class, error.code.as_str()),
                (ErrorClass::Transient, "ReplyTooLarge"),
                "{context}"
            );
            assert!(
                error.message.contains(&VENDOR_REPLY_CAP.to_string()),
                "{context}"
            );
            let host = server.url.trim_start_matches("http://");
            assert!(error.message.contains(host), "{context}");
            assert_eq!(server.requests(), 1, "{context}");
        }
    }
}

#[tokio::test]
async fn a_trickling_or_silent_server_ends_in_a_timeout_within_the_bound() {
    for behaviour in [Behaviour::Trickle, Behaviour::Silent] {
        for caller in CALLERS {
            let server = ScriptedServer::start(behaviour.clone());
            let started = Instant::now();
            let error = bounded(
                "a slow server",
                call(caller, &server.url, client(short()).unwrap()),
            )
            .await;
            let elapsed = started.elapsed();
            let context = format!("{caller:?}: {error} after {elapsed:?}");
            assert_eq!(
                (error.class, error.code.as_str()),
                (ErrorClass::Transient, "Timeout"),
                "{context}"
            );
            // The bound is the 2 s total timeout; 20 s only guards against a hang.
            assert!(elapsed >= Duration::from_secs(2), "{context}");
            assert!(elapsed < Duration::from_secs(20), "{context}");
        }
    }
}

/// One ACME request through the client handed to instant-acme.
async fn acme_get(
    url: &str,
    settings: HttpSettings,
) -> Result<instant_acme::BytesResponse, instant_acme::Error> {
    let acme = certkeeper::source::acme::AcmeHttp::with_settings(None, settings).unwrap();
    let request = ::http::Request::get(format!("{url}/directory"))
        .body(BodyWrapper::<Bytes>::from(Vec::new()))
        .unwrap();
    acme.request(request).await
}

#[tokio::test]
async fn the_acme_client_refuses_redirects_and_oversized_replies_and_times_out() {
    let other = TcpListener::bind(("127.0.0.1", support::free_port())).unwrap();
    let other_host = other.local_addr().unwrap().to_string();
    let server = ScriptedServer::start(Behaviour::Redirect {
        status: 307,
        location: format!("http://{other_host}/acme/new-order?x=1"),
    });
    let error = bounded(
        "an ACME redirect",
        acme_get(&server.url, HttpSettings::ACME),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains(&other_host), "{error}");
    assert!(!error.contains("new-order"), "{error}");
    assert_eq!(server.requests(), 1);
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_err(), "the other host was contacted");

    let huge = ScriptedServer::start(Behaviour::Huge {
        total: HUGE,
        announce_length: false,
        go: Arc::new(true.into()),
    });
    let error = bounded(
        "an oversized ACME reply",
        acme_get(&huge.url, HttpSettings::ACME),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains(&ACME_REPLY_CAP.to_string()), "{error}");

    let silent = ScriptedServer::start(Behaviour::Silent);
    let error = bounded("a silent CA", acme_get(&silent.url, short()))
        .await
        .err()
        .unwrap();
    // A transport failure stays a reqwest error, which the ACME error mapping reads as
    // transient (and not as a refusal of `replaces`).
    let timed_out = match &error {
        instant_acme::Error::Other(inner) => inner
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout),
        _ => false,
    };
    assert!(timed_out, "{error}");
}

/// `VmRSS` or `VmHWM` of `pid`, in bytes.
fn memory_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The real daemon deploying one certificate (local CA) to one Alibaba CDN target whose
/// endpoint is `server`, with its JSON log collected as it comes.
struct DaemonUnderTest {
    daemon: support::ChildGuard,
    metrics_port: u16,
    log: Arc<Mutex<String>>,
    _directory: tempfile::TempDir,
}

impl DaemonUnderTest {
    fn start(server: &ScriptedServer) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let metrics_port = support::free_port();
        let config = directory.path().join("certkeeper.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
scan_schedule = "* * * * *"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIhostile"
access_key_secret_env = "TEST_ALIBABA_SECRET"
endpoint = "{url}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-www"]

[[target]]
name = "cdn-www"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"
"#,
                state = directory.path().join("state").display(),
                url = server.url,
            ),
        )
        .unwrap();
        let mut daemon = support::spawn_daemon(&config, &[("TEST_ALIBABA_SECRET", "ali-secret")]);
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = daemon.0.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Self {
            daemon,
            metrics_port,
            log,
            _directory: directory,
        }
    }

    /// Waits until `certkeeper_errors_total` counts `code` for the target's first read. The
    /// call is retried (transient) within the deploy; the deploy then fails and counts every
    /// attempt's error.
    fn wait_for_error(&self, code: &str) {
        let series = format!(
            r#"certkeeper_errors_total{{class="transient",code="{code}",operation="DescribeDomainCertificateInfo",vendor="alibaba"}}"#
        );
        support::wait_for(&series, Duration::from_secs(300), || {
            support::http_get(self.metrics_port, "/metrics")
                .and_then(|(_, text)| support::metric_value(&text, &series))
                .is_some_and(|count| count >= 1.0)
        });
    }

    /// Waits for the deploy-failure warning naming `code` and `host`; returns the whole log.
    fn wait_for_warning(&self, code: &str, host: &str) -> String {
        support::wait_for(
            "the deploy failure log line",
            Duration::from_secs(30),
            || {
                self.log.lock().unwrap().lines().any(|line| {
                    line.contains("\"WARN\"") && line.contains(code) && line.contains(host)
                })
            },
        );
        self.log.lock().unwrap().clone()
    }
}

#[test]
fn a_200_mb_vendor_reply_leaves_the_daemon_peak_rss_within_10_mib_of_idle() {
    let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = ScriptedServer::start(Behaviour::Huge {
        total: HUGE,
        announce_length: false,
        go: go.clone(),
    });
    let daemon = DaemonUnderTest::start(&server);
    let pid = daemon.daemon.id();
    // Idle: started, and its first vendor call is waiting on the server.
    support::wait_for(
        "the daemon's first vendor call",
        Duration::from_secs(60),
        || server.requests() >= 1,
    );
    let idle = memory_of(pid, "VmRSS");
    // Forget the start-up peak (Linux ≥ 4.0); the comparison below needs only the idle RSS.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    go.store(true, Ordering::SeqCst);
    daemon.wait_for_error("ReplyTooLarge");
    let peak = memory_of(pid, "VmHWM");
    assert!(
        peak <= idle + 10 * 1024 * 1024,
        "peak RSS {peak} B vs idle {idle} B"
    );
    daemon.wait_for_warning("ReplyTooLarge", server.url.trim_start_matches("http://"));
}

#[test]
fn the_daemon_counts_and_logs_a_refused_redirect_and_never_contacts_the_other_host() {
    let other = TcpListener::bind(("127.0.0.1", support::free_port())).unwrap();
    let other_host = other.local_addr().unwrap().to_string();
    let server = ScriptedServer::start(Behaviour::Redirect {
        status: 307,
        location: format!("http://{other_host}/collect?from=certkeeper"),
    });
    let daemon = DaemonUnderTest::start(&server);
    daemon.wait_for_error("Redirect");
    let log = daemon.wait_for_warning("Redirect", &other_host);
    assert!(!log.contains("collect?from"), "{log}");
    assert!(!log.contains("ali-secret"), "{log}");
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_err(), "the other host was contacted");
}
