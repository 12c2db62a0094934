//! The daemon's local control channel: a Unix socket in the state directory (mode 0600, so
//! only the service user and root can open it) taking one JSON request per connection and
//! answering with one JSON line. `certkeeper renew NAME` and `certkeeper deploy TARGET` use
//! it to hand work to the running daemon, which does it in its own loop (one writer to the
//! store, one set of rate-limit buckets); without a daemon they run the work in-process.
//!
//! Both ends are bounded. The daemon answers every connection with one JSON line, an error
//! one for garbage, an oversize request, or no request within [`REQUEST_TIMEOUT`]; it serves
//! at most [`MAX_CONNECTIONS`] at once (at the cap a newcomer displaces the oldest connection
//! that has not sent its request yet, or is refused if all are working), and backs off on
//! accept errors. The CLI gives up on a daemon that does not accept within
//! [`CONNECT_TIMEOUT`] or answer within [`REPLY_TIMEOUT`] (15 minutes, since a manual renew
//! may wait on an ACME order and a rollout; `CERTKEEPER_CONTROL_TIMEOUT`, a duration such as
//! `30m`, overrides it).

use crate::config::Config;
use crate::engine::pass::{Components, Manual};
use crate::store::{DeployStatus, StateStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The socket's file name inside `state_dir`.
pub const SOCKET_NAME: &str = "control.sock";

/// Longest request line read; requests are a few dozen bytes.
pub const MAX_REQUEST: usize = 4096;

/// How long a connection may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once (a small share of the unit's `LimitNOFILE`).
pub const MAX_CONNECTIONS: usize = 64;

/// How long the daemon waits for a client to take its reply.
const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the CLI waits for the daemon to accept its connection and take its request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the CLI waits for the daemon's answer by default.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The environment variable overriding [`REPLY_TIMEOUT`].
pub const REPLY_TIMEOUT_ENV: &str = "CERTKEEPER_CONTROL_TIMEOUT";

/// Longest reply the CLI reads: a plan is a JSON object per target (≈ 300 bytes), so
/// 100,000 targets fit.
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// Work asked of the daemon by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Obtain a new version of the certificate now (or re-read its files), then deploy it.
    Renew { certificate: String },
    /// Read the target's live state now and deploy if it differs, ignoring any backoff.
    Deploy { target: String },
    /// Re-read the configuration (as SIGHUP does) and answer whether it was taken, so
    /// `systemctl reload` can fail when the daemon refuses the new file.
    Reload,
    /// `certkeeper plan` made by the daemon with its own clients, so the plan's reads spend
    /// the daemon's token buckets instead of competing with its work on the same accounts.
    /// Answered beside any pass, never queued for one.
    Plan {
        #[serde(default)]
        json: bool,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    pub message: String,
    /// The request named no configured certificate or target (a usage error).
    #[serde(default)]
    pub unknown_name: bool,
    /// Where each target concerned stands after the work (absent from older daemons).
    #[serde(default)]
    pub outcomes: Vec<TargetOutcome>,
    /// `plan`: its exit code (0 no change, 2 changes, 1 unreadable); `message` is the
    /// printed plan.
    #[serde(default)]
    pub exit_code: Option<u8>,
}

/// One target's state after a manual request, as `renew` and `deploy` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetOutcome {
    pub target: String,
    /// The ledger status: `in_sync`, `pending`, `deploying`, `failed`, `parked`.
    pub status: String,
    /// The fingerprint it serves when in sync, the class, code and message when it failed.
    #[serde(default)]
    pub detail: String,
    /// Whether this target makes the request fail (a failed or parked deploy).
    #[serde(default)]
    pub failed: bool,
}

impl std::fmt::Display for TargetOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status.replace('_', " ");
        if self.detail.is_empty() {
            write!(f, "{}: {status}", self.target)
        } else {
            write!(f, "{}: {status}: {}", self.target, self.detail)
        }
    }
}

impl ControlResponse {
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: message.into(),
            unknown_name: false,
            outcomes: Vec::new(),
            exit_code: None,
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            unknown_name: false,
            outcomes: Vec::new(),
            exit_code: None,
        }
    }

    pub fn unknown_name(message: impl Into<String>) -> Self {
        Self {
            unknown_name: true,
            ..Self::failed(message)
        }
    }
}

/// A request received by the daemon, with where to send the answer.
pub type Incoming = (ControlRequest, oneshot::Sender<ControlResponse>);

/// Why the control channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}: bad reply: {message}")]
    Protocol { path: PathBuf, message: String },
    #[error("control socket {path}: the daemon did not {what} within {}{hint}", wait_text(*waited))]
    Unresponsive {
        path: PathBuf,
        what: &'static str,
        waited: Duration,
        hint: &'static str,
    },
    #[error("{REPLY_TIMEOUT_ENV}: {message}")]
    BadTimeout { message: String },
}

impl ControlError {
    /// The daemon is there but does not respond (sysexits EX_UNAVAILABLE).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unresponsive { .. })
    }
}

/// `300ms`, `5s`, `15m`: how long was waited, as the operator would write it.
fn wait_text(waited: Duration) -> String {
    match waited.as_secs() {
        0 => format!("{}ms", waited.as_millis()),
        seconds if seconds % 60 == 0 => format!("{}m", seconds / 60),
        seconds => format!("{seconds}s"),
    }
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Admission of connections: how many are open, and which have not sent their request yet
/// (oldest first), each with the signal that displaces it.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    open: usize,
    next_id: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// One admitted connection; frees its place when dropped.
struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    displaced: oneshot::Receiver<()>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // The state stays consistent whatever panicked while holding it (plain counters).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a new connection: a free one, or the oldest waiting connection's (which
    /// is told to close); `None` when every connection is working on a request.
    fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let mut state = self.lock();
        if state.open >= MAX_CONNECTIONS {
            let (_, oldest) = state.waiting.pop_first()?;
            let _ = oldest.send(());
        }
        state.open += 1;
        let id = state.next_id;
        state.next_id += 1;
        let (displace, displaced) = oneshot::channel();
        state.waiting.insert(id, displace);
        Some(Ticket {
            gate: self.clone(),
            id,
            displaced,
        })
    }
}

impl Ticket {
    /// The request arrived: this connection is working and is no longer displaced.
    fn working(&self) {
        self.gate.lock().waiting.remove(&self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.open = state.open.saturating_sub(1);
        state.waiting.remove(&self.id);
    }
}

/// Binds the socket (replacing one a killed daemon left behind) and serves it until the
/// returned task is aborted, passing each request to `requests`.
pub fn serve(
    state_dir: &Path,
    requests: mpsc::Sender<Incoming>,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(state_dir);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(tokio::spawn(async move {
        let gate = Arc::new(Gate::default());
        let mut backoff = crate::telemetry::server::AcceptBackoff::new("control");
        loop {
            let Some((stream, _)) = backoff.accepted(listener.accept().await).await else {
                continue;
            };
            let Some(ticket) = gate.admit() else {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "control connection refused: every connection is working on a request"
                );
                tokio::spawn(reply(
                    stream,
                    ControlResponse::failed(format!(
                        "the daemon is already working on {MAX_CONNECTIONS} control requests; try again later"
                    )),
                ));
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                if let Err(error) = answer(stream, ticket, requests).await {
                    tracing::debug!(error = %error, "control connection ended early");
                }
            });
        }
    }))
}

/// Reads one request line: what it asks, or why it cannot be understood.
async fn read_request(
    reader: &mut tokio::net::unix::OwnedReadHalf,
) -> Result<ControlRequest, String> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_REQUEST + 1).unwrap_or(u64::MAX);
    tokio::io::BufReader::new(reader.take(limit))
        .read_until(b'\n', &mut line)
        .await
        .map_err(|error| format!("reading the request failed: {error}"))?;
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    let text = std::str::from_utf8(&line).map_err(|_| "request is not UTF-8".to_owned())?;
    if text.trim().is_empty() {
        return Err("empty request".to_owned());
    }
    serde_json::from_str(text.trim()).map_err(|error| format!("bad request: {error}"))
}

async fn answer(
    stream: tokio::net::UnixStream,
    mut ticket: Ticket,
    requests: mpsc::Sender<Incoming>,
) -> std::io::Result<()> {
    let (mut reader, writer) = stream.into_split();
    let received = tokio::select! {
        read = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut reader)) => match read {
            Ok(Ok(request)) => Ok(request),
            Ok(Err(reason)) => {
                tracing::warn!(reason = %reason, "control request refused");
                Err(reason)
            }
            Err(_) => {
                tracing::debug!("control connection sent no request in time");
                Err(format!(
                    "no request within {}s: send one JSON line such as {{\"command\":\"deploy\",\"target\":\"NAME\"}}",
                    REQUEST_TIMEOUT.as_secs()
                ))
            }
        },
        Ok(()) = &mut ticket.displaced => {
            tracing::debug!("idle control connection displaced by a new one");
            Err(format!(
                "closed: {MAX_CONNECTIONS} control connections are open and this one had sent no request"
            ))
        }
    };
    let response = match received {
        Ok(request) => {
            ticket.working();
            let (reply, answer) = oneshot::channel();
            if requests.send((request, reply)).await.is_err() {
                ControlResponse::failed("the daemon is shutting down")
            } else {
                answer.await.unwrap_or_else(|_| {
                    ControlResponse::failed("the daemon stopped before finishing")
                })
            }
        }
        Err(reason) => ControlResponse::failed(reason),
    };
    drop(reader);
    write_reply(writer, &response).await
}

/// Sends `response` as one JSON line and closes, giving up on a client that does not read.
async fn write_reply(
    mut writer: impl tokio::io::AsyncWrite + Unpin,
    response: &ControlResponse,
) -> std::io::Result<()> {
    let mut text = serde_json::to_string(response).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    let written = async {
        writer.write_all(text.as_bytes()).await?;
        writer.shutdown().await
    };
    tokio::time::timeout(REPLY_WRITE_TIMEOUT, written)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not take its reply",
            ))
        })
}

async fn reply(stream: tokio::net::UnixStream, response: ControlResponse) {
    let _ = write_reply(stream, &response).await;
}

/// The reply timeout: `CERTKEEPER_CONTROL_TIMEOUT` if set, else [`REPLY_TIMEOUT`].
pub fn reply_timeout_from_env() -> Result<Duration, ControlError> {
    match std::env::var(REPLY_TIMEOUT_ENV) {
        Err(_) => Ok(REPLY_TIMEOUT),
        Ok(text) => match crate::config::parse_duration(&text) {
            Ok(timeout) if !timeout.is_zero() => Ok(timeout),
            Ok(_) => Err(ControlError::BadTimeout {
                message: "must be longer than zero".to_owned(),
            }),
            Err(message) => Err(ControlError::BadTimeout { message }),
        },
    }
}

/// Sends `request` to the daemon of `state_dir` and waits for its answer (see
/// [`reply_timeout_from_env`]). `Ok(None)` when no daemon listens (no socket, or a stale one).
pub fn send(
    state_dir: &Path,
    request: &ControlRequest,
) -> Result<Option<ControlResponse>, ControlError> {
    send_within(state_dir, request, reply_timeout_from_env()?)
}

/// [`send`], waiting at most `reply_timeout` for the answer.
pub fn send_within(
    state_dir: &Path,
    request: &ControlRequest,
    reply_timeout: Duration,
) -> Result<Option<ControlResponse>, ControlError> {
    let path = socket_path(state_dir);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let unresponsive = |what, waited, hint| ControlError::Unresponsive {
        path: path.clone(),
        what,
        waited,
        hint,
    };
    let mut stream = match connect_within(&path, CONNECT_TIMEOUT) {
        None => return Err(unresponsive("accept the connection", CONNECT_TIMEOUT, "")),
        Some(Ok(stream)) => stream,
        Some(Err(error))
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Some(Err(error)) => return Err(io(error)),
    };
    let mut text = serde_json::to_string(request).map_err(|error| ControlError::Protocol {
        path: path.clone(),
        message: error.to_string(),
    })?;
    text.push('\n');
    stream
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(io)?;
    match stream.write_all(text.as_bytes()) {
        Ok(()) => {}
        Err(error) if is_timeout(&error) => {
            return Err(unresponsive("take the request", CONNECT_TIMEOUT, ""))
        }
        // The daemon refused the connection (at its cap) and closed: its reply says why.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(io(error)),
    }
    let no_answer = || {
        unresponsive(
            "answer",
            reply_timeout,
            " (it may still be working; set CERTKEEPER_CONTROL_TIMEOUT to wait longer)",
        )
    };
    let deadline = Instant::now() + reply_timeout;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply.contains(&b'\n') {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(no_answer());
        }
        stream.set_read_timeout(Some(remaining)).map_err(io)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(length) => reply.extend_from_slice(&chunk[..length]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) if is_timeout(&error) => return Err(no_answer()),
            Err(error) => return Err(io(error)),
        }
        if reply.len() > MAX_REPLY {
            return Err(ControlError::Protocol {
                path: path.clone(),
                message: format!("reply longer than {MAX_REPLY} bytes"),
            });
        }
    }
    let line = reply
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    if line.is_empty() {
        return Err(ControlError::Protocol {
            path: path.clone(),
            message: "the daemon closed the connection without answering".to_owned(),
        });
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|error| ControlError::Protocol {
            path: path.clone(),
            message: error.to_string(),
        })
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Connects on a helper thread (a Unix connect blocks while the daemon's backlog is full);
/// `None` if it did not finish within `timeout`.
fn connect_within(
    path: &Path,
    timeout: Duration,
) -> Option<std::io::Result<std::os::unix::net::UnixStream>> {
    let (done, result) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = done.send(std::os::unix::net::UnixStream::connect(path));
    });
    result.recv_timeout(timeout).ok()
}

/// Refuses a request naming nothing configured, before any work is queued.
pub(crate) fn check_request(
    config: &Config,
    request: &ControlRequest,
) -> Result<(), ControlResponse> {
    match request {
        ControlRequest::Renew { certificate }
            if !config.certificates.iter().any(|c| &c.name == certificate) =>
        {
            Err(ControlResponse::unknown_name(format!(
                "no certificate named `{certificate}` in the configuration"
            )))
        }
        ControlRequest::Deploy { target } if !config.targets.iter().any(|t| &t.name == target) => {
            Err(ControlResponse::unknown_name(format!(
                "no target named `{target}` in the configuration"
            )))
        }
        _ => Ok(()),
    }
}

/// Adds `request` to the work of the next pass.
pub(crate) fn add_to(manual: &mut Manual, request: &ControlRequest) {
    match request {
        ControlRequest::Renew { certificate } => {
            manual.renew.insert(certificate.clone());
        }
        ControlRequest::Deploy { target } => {
            manual.deploy.insert(target.clone());
        }
        // Answered by the loop when the reload ends, never queued for a pass.
        ControlRequest::Reload => {}
        // Answered beside the passes (see `answer_plan`).
        ControlRequest::Plan { .. } => {}
    }
}

/// Answers `plan` with the daemon's own targets and policies (their clients' token buckets
/// pace the reads beside the daemon's work): the plan as `certkeeper plan` prints it, and
/// its exit code.
pub(crate) async fn answer_plan(components: &Components, json: bool) -> ControlResponse {
    let planned = crate::plan::plan_with(
        &components.config,
        &components.targets,
        &components.policies,
        false,
    )
    .await;
    let printed = planned.and_then(|view| {
        let mut out = Vec::new();
        crate::plan::print(&view, json, &mut out)?;
        Ok((view.exit_code(), out))
    });
    match printed {
        Ok((exit_code, out)) => ControlResponse {
            exit_code: Some(exit_code),
            ..ControlResponse::ok(String::from_utf8_lossy(&out).into_owned())
        },
        Err(error) => ControlResponse {
            exit_code: Some(crate::plan::EXIT_UNREADABLE),
            ..ControlResponse::failed(error.to_string())
        },
    }
}

/// Answers a manual request after the pass that did its work: the newest version and
/// where each target concerned stands. `since_event` is the newest event id before that
/// pass, so an obtain failure or a rejection of the files during it fails the request.
pub(crate) fn answer_request(
    store: &dyn StateStore,
    components: &Components,
    request: &ControlRequest,
    since_event: i64,
) -> ControlResponse {
    answer_from_store(store, components, request, since_event)
        .unwrap_or_else(|error| ControlResponse::failed(format!("reading the store: {error}")))
}

fn answer_from_store(
    store: &dyn StateStore,
    components: &Components,
    request: &ControlRequest,
    since_event: i64,
) -> Result<ControlResponse, StoreError> {
    match request {
        ControlRequest::Reload => Ok(ControlResponse::failed(
            "a reload is answered when it ends, not after a pass",
        )),
        ControlRequest::Plan { .. } => Ok(ControlResponse::failed(
            "a plan is answered beside the passes, not after one",
        )),
        ControlRequest::Renew { certificate } => {
            let during_pass = store.events(&crate::store::EventQuery {
                after_id: Some(since_event),
                subject: Some(certificate.clone()),
                ..Default::default()
            })?;
            let stored = during_pass
                .iter()
                .any(|event| event.kind == "certificate.stored");
            let refused = during_pass.into_iter().rfind(|event| {
                matches!(
                    event.kind.as_str(),
                    "certificate.obtain_failed" | "certificate.rejected"
                )
            });
            let latest = store.latest_certificate_version(certificate)?;
            let newest = match &latest {
                Some(version) => format!(
                    "{}; newest version {} (not after {})",
                    if stored {
                        "stored a new version"
                    } else {
                        "no new version"
                    },
                    version.fingerprint,
                    crate::status::events::rfc3339(version.not_after)
                ),
                None => "no version obtained yet".to_owned(),
            };
            let targets = components
                .certificates
                .iter()
                .find(|entry| &entry.config.name == certificate)
                .map(|entry| entry.config.deploy_to.clone())
                .unwrap_or_default();
            let outcomes = targets
                .iter()
                .map(|target| outcome(store, target, certificate))
                .collect::<Result<Vec<_>, _>>()?;
            let mut response = match (refused, &latest) {
                (Some(event), _) => ControlResponse::failed(format!(
                    "{certificate}: {} ({}); {newest}",
                    event.message,
                    event
                        .kind
                        .trim_start_matches("certificate.")
                        .replace('_', " ")
                )),
                (None, None) => ControlResponse::failed(format!(
                    "{certificate}: {newest}; see `certkeeper status`"
                )),
                (None, Some(_)) if outcomes.iter().any(|outcome| outcome.failed) => {
                    ControlResponse::failed(format!("{certificate}: {newest}; a deploy failed"))
                }
                (None, Some(_)) => ControlResponse::ok(format!("{certificate}: {newest}")),
            };
            response.outcomes = outcomes;
            Ok(response)
        }
        ControlRequest::Deploy { target } => {
            let certificate = components
                .certificates
                .iter()
                .find(|entry| entry.config.deploy_to.contains(target))
                .map(|entry| entry.config.name.clone())
                .unwrap_or_default();
            let outcome = outcome(store, target, &certificate)?;
            let mut response = if outcome.status == DeployStatus::InSync.as_str() {
                ControlResponse::ok(format!("{target}: in sync with {}", outcome.detail))
            } else if store.deployment(target, &certificate)?.is_none() {
                ControlResponse::failed(format!(
                    "{target}: nothing to deploy yet (certificate {certificate} has no version)"
                ))
            } else {
                ControlResponse::failed(outcome.to_string())
            };
            response.outcomes = vec![outcome];
            Ok(response)
        }
    }
}

/// Where `target` stands for `certificate` in the ledger, as `renew`/`deploy` print it.
fn outcome(
    store: &dyn StateStore,
    target: &str,
    certificate: &str,
) -> Result<crate::control::TargetOutcome, StoreError> {
    let record = store.deployment(target, certificate)?;
    let (status, detail) = match &record {
        None => (DeployStatus::Pending, "no version deployed yet".to_owned()),
        Some(record) => {
            let detail = match (record.status, &record.last_error) {
                (DeployStatus::InSync, _) => record.desired_fingerprint.clone().unwrap_or_default(),
                (DeployStatus::Failed | DeployStatus::Parked, Some(error)) => {
                    format!("{} {}: {}", error.class, error.code, error.message)
                }
                _ => record
                    .next_attempt_at
                    .map(|at| format!("next attempt at {}", crate::status::events::rfc3339(at)))
                    .unwrap_or_default(),
            };
            (record.status, detail)
        }
    };
    Ok(crate::control::TargetOutcome {
        target: target.to_owned(),
        status: status.as_str().to_owned(),
        detail,
        failed: matches!(status, DeployStatus::Failed | DeployStatus::Parked),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_reaches_the_loop_and_its_answer_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel::<Incoming>(4);
        let server = serve(dir.path(), tx).unwrap();
        let mode = std::fs::metadata(socket_path(dir.path()))
            .map(|meta| std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777)
            .unwrap();
        assert_eq!(mode, 0o600, "only the service user may open the socket");
        let loop_side = tokio::spawn(async move {
            let (request, reply) = rx.recv().await.unwrap();
            reply
                .send(ControlResponse::ok(format!("{request:?}")))
                .unwrap();
        });
        let path = dir.path().to_owned();
        let response = tokio::task::spawn_blocking(move || {
            send(
                &path,
                &ControlRequest::Renew {
                    certificate: "www".into(),
                },
            )
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
        assert!(response.ok);
        assert!(response.message.contains("www"), "{response:?}");
        loop_side.await.unwrap();
        server.abort();
    }

    #[test]
    fn an_answer_without_outcomes_still_reads() {
        // What a daemon from before per-target outcomes sends.
        let old: ControlResponse =
            serde_json::from_str(r#"{"ok":false,"message":"cdn: failed"}"#).unwrap();
        assert_eq!(old, ControlResponse::failed("cdn: failed"));
        let outcome = TargetOutcome {
            target: "cdn".into(),
            status: "in_sync".into(),
            detail: "ab12".into(),
            failed: false,
        };
        assert_eq!(outcome.to_string(), "cdn: in sync: ab12");
    }

    #[test]
    fn no_daemon_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let request = ControlRequest::Deploy {
            target: "cdn".into(),
        };
        assert_eq!(send(dir.path(), &request).unwrap(), None);
        // A socket file left by a killed daemon: nobody listens.
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap());
        assert_eq!(send(dir.path(), &request).unwrap(), None);
    }

    /// Connects, sends `bytes` (nothing if empty) and reads the one reply line.
    async fn exchange(state_dir: &Path, bytes: &[u8]) -> ControlResponse {
        let stream = tokio::net::UnixStream::connect(socket_path(state_dir))
            .await
            .unwrap();
        read_reply(stream, bytes).await
    }

    async fn read_reply(mut stream: tokio::net::UnixStream, bytes: &[u8]) -> ControlResponse {
        // A refused connection may be closed before the request is written: the reply is
        // there all the same.
        let _ = stream.write_all(bytes).await;
        let mut line = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut line)
            .await
            .unwrap();
        serde_json::from_str(line.trim()).unwrap()
    }

    #[tokio::test]
    async fn a_bad_request_of_every_kind_is_answered_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel::<Incoming>(4);
        let server = serve(dir.path(), tx).unwrap();
        let oversize = vec![b'x'; MAX_REQUEST + 10];
        let cases: [(&[u8], &str); 5] = [
            (
                b"{\"command\":\"explode\"}\n",
                "bad request: unknown variant `explode`",
            ),
            (b"hello there\n", "bad request"),
            (b"\xff\xfe\xfd\n", "not UTF-8"),
            (&oversize, "longer than 4096 bytes"),
            (b"\n", "empty request"),
        ];
        for (bytes, expected) in cases {
            let response = exchange(dir.path(), bytes).await;
            assert!(!response.ok);
            assert!(response.message.contains(expected), "{response:?}");
        }
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_answered_and_closed_after_the_request_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel::<Incoming>(4);
        let server = serve(dir.path(), tx).unwrap();
        let started = tokio::time::Instant::now();
        let response = exchange(dir.path(), b"").await;
        assert!(started.elapsed() >= REQUEST_TIMEOUT);
        assert!(!response.ok);
        assert!(
            response.message.contains("no request within 10s"),
            "{response:?}"
        );
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_cap_a_newcomer_displaces_the_oldest_idle_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel::<Incoming>(4);
        let server = serve(dir.path(), tx).unwrap();
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(ControlResponse::ok(format!("{request:?}")));
            }
        });
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(
                tokio::net::UnixStream::connect(socket_path(dir.path()))
                    .await
                    .unwrap(),
            );
        }
        let response = exchange(dir.path(), b"{\"command\":\"deploy\",\"target\":\"cdn\"}\n").await;
        assert!(response.ok, "{response:?}");
        let oldest = read_reply(idle.remove(0), b"").await;
        assert!(oldest.message.contains("had sent no request"), "{oldest:?}");
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_every_connection_is_working_a_newcomer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel::<Incoming>(MAX_CONNECTIONS + 4);
        let server = serve(dir.path(), tx).unwrap();
        let mut working = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut stream = tokio::net::UnixStream::connect(socket_path(dir.path()))
                .await
                .unwrap();
            stream
                .write_all(b"{\"command\":\"renew\",\"certificate\":\"www\"}\n")
                .await
                .unwrap();
            working.push(stream);
        }
        // Every request reached the loop (which never answers): all connections are working.
        let mut pending = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            pending.push(rx.recv().await.unwrap());
        }
        let response = exchange(dir.path(), b"{\"command\":\"deploy\",\"target\":\"cdn\"}\n").await;
        assert!(!response.ok);
        assert!(
            response.message.contains("already working on 64"),
            "{response:?}"
        );
        server.abort();
    }

    #[test]
    fn a_daemon_that_accepts_and_never_answers_is_unresponsive() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap();
        let holder = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
        let request = ControlRequest::Deploy {
            target: "cdn".into(),
        };
        let started = Instant::now();
        let error = send_within(dir.path(), &request, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(30), "bounded wait");
        assert!(error.is_unavailable(), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains("did not answer within 300ms") && text.contains(REPLY_TIMEOUT_ENV),
            "{text}"
        );
        drop(holder.join().unwrap());
    }
}
