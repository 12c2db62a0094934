//! The daemon's local control channel: a Unix socket in the state directory (mode 0600, so
//! only the service user and root can open it) taking one JSON request per connection and
//! answering with one JSON line. `certkeeper renew NAME` and `certkeeper deploy TARGET` use
//! it to hand work to the running daemon, which does it in its own loop (one writer to the
//! store, one set of rate-limit buckets); without a daemon they run the work in-process.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The socket's file name inside `state_dir`.
pub const SOCKET_NAME: &str = "control.sock";

/// Longest request line read; requests are a few dozen bytes.
const MAX_REQUEST: u64 = 4096;

/// Work asked of the daemon by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Obtain a new version of the certificate now (or re-read its files), then deploy it.
    Renew { certificate: String },
    /// Read the target's live state now and deploy if it differs, ignoring any backoff.
    Deploy { target: String },
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
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            unknown_name: false,
            outcomes: Vec::new(),
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
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
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
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                if let Err(error) = answer(stream, requests).await {
                    tracing::debug!(error = %error, "control connection ended early");
                }
            });
        }
    }))
}

async fn answer(
    stream: tokio::net::UnixStream,
    requests: mpsc::Sender<Incoming>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(reader.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<ControlRequest>(line.trim()) {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if requests.send((request, reply)).await.is_err() {
                ControlResponse::failed("the daemon is shutting down")
            } else {
                answer.await.unwrap_or_else(|_| {
                    ControlResponse::failed("the daemon stopped before finishing")
                })
            }
        }
        Err(error) => ControlResponse::failed(format!("bad request: {error}")),
    };
    let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    writer.write_all(text.as_bytes()).await?;
    writer.shutdown().await
}

/// Sends `request` to the daemon of `state_dir` and waits for its answer. `Ok(None)` when
/// no daemon listens (no socket, or a stale one).
pub fn send(
    state_dir: &Path,
    request: &ControlRequest,
) -> Result<Option<ControlResponse>, ControlError> {
    let path = socket_path(state_dir);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(io(error)),
    };
    let mut text = serde_json::to_string(request).map_err(|error| ControlError::Protocol {
        path: path.clone(),
        message: error.to_string(),
    })?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(line.trim())
        .map(Some)
        .map_err(|error| ControlError::Protocol {
            path: path.clone(),
            message: error.to_string(),
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

    #[tokio::test]
    async fn a_bad_request_is_answered_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel::<Incoming>(4);
        let server = serve(dir.path(), tx).unwrap();
        let mut stream = tokio::net::UnixStream::connect(socket_path(dir.path()))
            .await
            .unwrap();
        stream
            .write_all(b"{\"command\":\"explode\"}\n")
            .await
            .unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut line)
            .await
            .unwrap();
        let response: ControlResponse = serde_json::from_str(line.trim()).unwrap();
        assert!(!response.ok);
        assert!(response.message.contains("bad request"), "{response:?}");
        server.abort();
    }
}
