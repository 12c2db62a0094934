//! The QingCloud part of `certkeeper sim`: serves `/iaas/` like the real API. It verifies
//! signature version 1 on GET queries and POST form bodies exactly as the official SDK
//! sends them, refuses stale `time_stamp`s, answers in the `{ret_code, message}` envelope
//! inside HTTP 200, and keeps MySQL Plus clusters whose SSL is switched by
//! `RunClusterCustomService` (`configuring_SSL`) jobs that move pending → working → an end
//! over a configurable delay while the cluster shows `transition_status = "updating"`.
//!
//! Fault codes beyond the shared ones: a fault rule on `RunClusterCustomService` with code
//! `JobFailed` (or `JobDoneWithFailure`) accepts the call but makes its job end `failed`
//! (or `done with failure`) and leaves SSL unchanged. A numeric code (e.g. `5100`) answers
//! with that `ret_code`.

use super::signer::{self, CanonicalQuery, StringToSign};
use crate::cloud::sim::{SimRequest, SimResponse, VendorSim};
use crate::secret::Secret;
use axum::http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the vendor's error table tells a caller to do about a `ret_code`: the simulator's
/// own reading of each row, which `tests/huawei_qingcloud_fidelity.rs` compares with the
/// client's classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentedRemedy {
    /// Correct the request (a parameter, the method, a config file).
    FixRequest,
    /// Correct the access key or the signature.
    FixCredentials,
    /// Correct the host clock (`time_stamp` expired).
    FixClock,
    /// "Access denied": no permission *or* a resource state that forbids the change; the
    /// table does not say which.
    PermissionOrState,
    /// The resource does not exist.
    Missing,
    /// Pay: balance or licence.
    Pay,
    /// A quota (the API request quota included) was exceeded.
    Quota,
    /// The API module does not exist here: ask the vendor.
    AskVendor,
    /// The vendor's own failure.
    VendorFault,
    /// The server is busy (load).
    ServerBusy,
    /// Resources or the service are not ready: try again later.
    WaitForResource,
}

/// One documented `ret_code` and the message the simulator answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentedRetCode {
    pub ret_code: i64,
    pub message: &'static str,
    pub remedy: DocumentedRemedy,
}

const fn row(ret_code: i64, message: &'static str, remedy: DocumentedRemedy) -> DocumentedRetCode {
    DocumentedRetCode {
        ret_code,
        message,
        remedy,
    }
}

use DocumentedRemedy as R;

/// The simulator's `ret_code` table, written from `shared/reference/cloud-apis.md` §7.2
/// (qingcloud-docs `api/error_code.md`), never from the client's. Rows in the order of
/// that table; each comment quotes its row.
pub const RET_CODES: &[DocumentedRetCode] = &[
    // "1100 | message format error (missing/invalid param)"
    row(1100, "InvalidParameter", R::FixRequest),
    // "1101 | request method error"
    row(1101, "InvalidRequestMethod", R::FixRequest),
    // "1200 | authentication failed (bad access_key_id or signature)"
    row(1200, "AuthFailure", R::FixCredentials),
    // "1300 | message expired (time_stamp expired, 超过60秒)"
    row(1300, "MessageExpired", R::FixClock),
    // "1400 | access denied (not owner / no permission / resource in an unmodifiable state)"
    row(1400, "PermissionDenied", R::PermissionOrState),
    // "2000 | login session expired"
    row(2000, "LoginSessionExpired", R::FixCredentials),
    // "2100 | resource not found"
    row(2100, "ResourceNotFound", R::Missing),
    // "2110 resource already exists"
    row(2110, "ResourceAlreadyExists", R::FixRequest),
    // "2400 | insufficient balance (余额不足) — not throttling"
    row(2400, "InsufficientBalance", R::Pay),
    // "2500 | quota exceeded — includes API request quota"
    row(2500, "QuotaExceeded", R::Quota),
    // "3300 | invalid API module"
    row(3300, "InvalidApiModule", R::AskVendor),
    // "4000–4005 | license errors"
    row(4000, "LicenseError", R::Pay),
    row(4001, "LicenseError", R::Pay),
    row(4002, "LicenseError", R::Pay),
    row(4003, "LicenseError", R::Pay),
    row(4004, "LicenseError", R::Pay),
    row(4005, "LicenseError", R::Pay),
    // "5000 | internal error"
    row(5000, "InternalError", R::VendorFault),
    // "5100 | server busy"
    row(5100, "ServerBusy", R::ServerBusy),
    // "5200 resources insufficient; 5300 service updating; 5400 dependency exists;
    // 5500/5600 misc"
    row(5200, "ResourcesInsufficient", R::WaitForResource),
    row(5300, "ServiceUpdating", R::WaitForResource),
    row(5400, "DependencyExists", R::FixRequest),
    row(5500, "InternalError", R::VendorFault),
    row(5600, "InternalError", R::VendorFault),
    // "8000–8004 | config-file errors"
    row(8000, "ConfigFileError", R::FixRequest),
    row(8001, "ConfigFileError", R::FixRequest),
    row(8002, "ConfigFileError", R::FixRequest),
    row(8003, "ConfigFileError", R::FixRequest),
    row(8004, "ConfigFileError", R::FixRequest),
];

/// The `configssl` values of `RunClusterCustomService` `configuring_SSL` the simulator
/// accepts, and the switch each means. The page contradicts itself (cloud-apis.md §8.12),
/// so both spellings are accepted unless a cluster is seeded with `configssl_values`.
pub const CONFIGSSL_VALUES: &[(&str, bool)] = &[
    // Seed 004, `service_params` row: "取值 `NO` 则关闭；取值 `YES` 则开启".
    ("YES", true),
    ("NO", false),
    // Seed 004, same row: "取值示例 {"configssl":"ON"}", and the request example
    // `%7B%22configssl%22%3A%22ON%22%7D`. OFF is not in the page: assumed by symmetry.
    ("ON", true),
    ("OFF", false),
];

/// Job statuses the simulator reports: `DescribeJobs` documents pending, working, failed,
/// successful (§7.4); `done with failure` is in the Go SDK's enum only.
pub const JOB_STATUSES: &[&str] = &[
    "pending",
    "working",
    "successful",
    "failed",
    "done with failure",
];

/// The `DescribeClusterEnvironment` key the simulator reports SSL under unless seeded
/// otherwise: it mirrors the custom service's parameter name (no public source names the
/// environment key).
pub const DEFAULT_SSL_ENV_KEY: &str = "configssl";

/// One account the simulator accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSeed {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// One MySQL Plus cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSeed {
    pub id: String,
    pub zone: String,
    #[serde(default)]
    pub ssl: bool,
    #[serde(default = "default_status")]
    pub status: String,
    #[serde(default)]
    pub transition_status: String,
    /// The `configssl` values this cluster takes (e.g. `["ON", "OFF"]`); any other is
    /// refused with ret_code 1100. All of [`CONFIGSSL_VALUES`] when absent.
    #[serde(default)]
    pub configssl_values: Option<Vec<String>>,
}

fn default_status() -> String {
    "active".into()
}

/// The `[qingcloud]` section of the simulator seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub accounts: Vec<AccountSeed>,
    #[serde(default)]
    pub mysql_plus_clusters: Vec<ClusterSeed>,
    /// How long a job stays `pending`, then `working` (each), in milliseconds.
    #[serde(default = "default_job_phase_ms")]
    pub job_phase_ms: u64,
    /// Refuse (ret_code 1300) a `time_stamp` further than this from the simulator's clock.
    /// `0` turns the check off (replaying recorded SDK requests).
    #[serde(default = "default_max_skew")]
    pub max_time_stamp_skew_secs: u64,
    /// The `DescribeClusterEnvironment` key that holds the effective SSL switch.
    #[serde(default = "default_env_key")]
    pub ssl_env_key: String,
}

fn default_job_phase_ms() -> u64 {
    2_000
}

/// The `time_stamp` skew the API tolerates: §7.2, "1300 | message expired (time_stamp
/// expired, 超过60秒)".
pub const MAX_TIME_STAMP_SKEW_SECS: u64 = 60;

fn default_max_skew() -> u64 {
    MAX_TIME_STAMP_SKEW_SECS
}

fn default_env_key() -> String {
    DEFAULT_SSL_ENV_KEY.to_owned()
}

impl Default for Seed {
    fn default() -> Self {
        Self {
            accounts: Vec::new(),
            mysql_plus_clusters: Vec::new(),
            job_phase_ms: default_job_phase_ms(),
            max_time_stamp_skew_secs: default_max_skew(),
            ssl_env_key: default_env_key(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobEnd {
    Successful,
    Failed,
    DoneWithFailure,
}

#[derive(Debug)]
struct SimJob {
    id: String,
    cluster: String,
    zone: String,
    desired_ssl: bool,
    created: Instant,
    end: JobEnd,
    applied: bool,
}

#[derive(Debug)]
struct Cluster {
    seed: ClusterSeed,
}

#[derive(Debug, Default)]
struct State {
    clusters: BTreeMap<String, Cluster>,
    jobs: Vec<SimJob>,
    /// Signed `RunClusterCustomService` calls, accepted or not.
    write_calls: u64,
    jobs_started: u64,
    /// Authenticated requests that came as a POST form body.
    post_requests: u64,
}

pub struct QingCloudSim {
    accounts: Vec<AccountSeed>,
    phase: Duration,
    max_skew: u64,
    ssl_env_key: String,
    state: Mutex<State>,
}

impl QingCloudSim {
    pub fn new(seed: Seed) -> Self {
        let clusters = seed
            .mysql_plus_clusters
            .into_iter()
            .map(|cluster| {
                let mut cluster = cluster;
                cluster.zone = cluster.zone.to_ascii_lowercase();
                (cluster.id.clone(), Cluster { seed: cluster })
            })
            .collect();
        Self {
            accounts: seed.accounts,
            phase: Duration::from_millis(seed.job_phase_ms),
            max_skew: seed.max_time_stamp_skew_secs,
            ssl_env_key: seed.ssl_env_key,
            state: Mutex::new(State {
                clusters,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain data updates: a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn job_status(&self, job: &SimJob, now: Instant) -> &'static str {
        let age = now.saturating_duration_since(job.created);
        if age < self.phase {
            "pending"
        } else if age < self.phase * 2 {
            "working"
        } else {
            match job.end {
                JobEnd::Successful => "successful",
                JobEnd::Failed => "failed",
                JobEnd::DoneWithFailure => "done with failure",
            }
        }
    }

    /// Applies every job that has ended: SSL switched on success, the cluster idle again.
    fn advance(&self, state: &mut State, now: Instant) {
        for job in state.jobs.iter_mut().filter(|job| !job.applied) {
            if now.saturating_duration_since(job.created) < self.phase * 2 {
                continue;
            }
            job.applied = true;
            if let Some(cluster) = state.clusters.get_mut(&job.cluster) {
                if job.end == JobEnd::Successful {
                    cluster.seed.ssl = job.desired_ssl;
                }
                cluster.seed.transition_status.clear();
            }
        }
    }

    fn handle_with(&self, request: &SimRequest, end: JobEnd) -> SimResponse {
        let params = request_params(request);
        if let Err(response) = self.authenticate(request, &params) {
            return response;
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let action = get("action").unwrap_or_default();
        let zone = get("zone").unwrap_or_default().to_owned();
        if zone.is_empty() || zone != zone.to_ascii_lowercase() {
            return envelope_error(1100, "zone must be given in lower case");
        }
        let list = |prefix: &str| -> Vec<String> {
            let mut indexed: Vec<(u32, String)> = params
                .iter()
                .filter_map(|(key, value)| {
                    let index = key.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
                    Some((index, value.clone()))
                })
                .collect();
            indexed.sort();
            indexed.into_iter().map(|(_, value)| value).collect()
        };
        let now = Instant::now();
        let mut state = self.lock();
        self.advance(&mut state, now);
        if request.method == Method::POST {
            state.post_requests += 1;
        }
        match action {
            "DescribeClusters" => {
                let wanted = list("clusters");
                let statuses = list("status");
                let set: Vec<serde_json::Value> = state
                    .clusters
                    .values()
                    .filter(|cluster| cluster.seed.zone == zone)
                    .filter(|cluster| wanted.is_empty() || wanted.contains(&cluster.seed.id))
                    .filter(|cluster| {
                        statuses.is_empty() || statuses.contains(&cluster.seed.status)
                    })
                    .map(|cluster| {
                        serde_json::json!({
                            "cluster_id": cluster.seed.id,
                            "status": cluster.seed.status,
                            "transition_status": cluster.seed.transition_status,
                            "app_id": "app-mysqlplus",
                            "node_count": 2,
                        })
                    })
                    .collect();
                ok(serde_json::json!({
                    "action": "DescribeClustersResponse",
                    "total_count": set.len(),
                    "cluster_set": set,
                    "ret_code": 0,
                }))
            }
            "DescribeClusterEnvironment" => {
                // The doc's table says `cluster`, its example `cluster_id`: accept both.
                let id = get("cluster")
                    .or_else(|| get("cluster_id"))
                    .unwrap_or_default();
                let Some(cluster) = state
                    .clusters
                    .get(id)
                    .filter(|cluster| cluster.seed.zone == zone)
                else {
                    return envelope_error(
                        2100,
                        &format!("ResourceNotFound, resource [{id}] not found"),
                    );
                };
                ok(serde_json::json!({
                    "action": "DescribeClusterEnvironmentResponse",
                    "config": {
                        "type": "array",
                        "key": "env",
                        "description": "MySQL Plus service properties",
                        "properties": [
                            {"key": "max_connections", "type": "integer", "default": 2000},
                            {
                                "key": self.ssl_env_key,
                                "type": "string",
                                "range": ["YES", "NO"],
                                "default": if cluster.seed.ssl { "YES" } else { "NO" },
                            },
                        ],
                    },
                    "ret_code": 0,
                }))
            }
            "DescribeJobs" => {
                let wanted = list("jobs");
                let statuses = list("status");
                let set: Vec<serde_json::Value> = state
                    .jobs
                    .iter()
                    .filter(|job| job.zone == zone)
                    .filter(|job| wanted.is_empty() || wanted.contains(&job.id))
                    .filter(|job| {
                        statuses.is_empty()
                            || statuses.iter().any(|status| status == self.job_status(job, now))
                    })
                    .map(|job| {
                        let status = self.job_status(job, now);
                        serde_json::json!({
                            "job_id": job.id,
                            "job_action": "RunClusterCustomService",
                            "status": status,
                            "resource_ids": job.cluster,
                            "error_codes": if matches!(status, "failed" | "done with failure") { "5000" } else { "" },
                        })
                    })
                    .collect();
                ok(serde_json::json!({
                    "action": "DescribeJobsResponse",
                    "total_count": set.len(),
                    "job_set": set,
                    "ret_code": 0,
                }))
            }
            "RunClusterCustomService" => {
                state.write_calls += 1;
                let id = get("cluster").unwrap_or_default().to_owned();
                let running = state
                    .jobs
                    .iter()
                    .any(|job| job.cluster == id && !job.applied);
                let Some(cluster) = state
                    .clusters
                    .get_mut(&id)
                    .filter(|cluster| cluster.seed.zone == zone)
                else {
                    return envelope_error(
                        2100,
                        &format!("ResourceNotFound, resource [{id}] not found"),
                    );
                };
                if get("role") != Some("maininstance") || get("service") != Some("configuring_SSL")
                {
                    return envelope_error(
                        1100,
                        "InvalidParameter, only role maininstance with service configuring_SSL is simulated",
                    );
                }
                let desired = match get("service_params")
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                    .as_ref()
                    .and_then(|params| params.get("configssl"))
                    .and_then(serde_json::Value::as_str)
                    .filter(|value| {
                        cluster
                            .seed
                            .configssl_values
                            .as_ref()
                            .is_none_or(|taken| taken.iter().any(|taken| taken == value))
                    })
                    .and_then(|value| {
                        CONFIGSSL_VALUES
                            .iter()
                            .find(|(known, _)| *known == value)
                            .map(|(_, on)| *on)
                    }) {
                    Some(on) => on,
                    None => {
                        return envelope_error(
                            1100,
                            "InvalidParameter, service_params has no valid configssl value",
                        )
                    }
                };
                if cluster.seed.status != "active"
                    || !cluster.seed.transition_status.is_empty()
                    || running
                {
                    return envelope_error(
                        1400,
                        // Worded after the vendor's sample ("PermissionDenied, instance
                        // [i-2aypaijz] is not running， can not be stopped"): prose that the
                        // client must not need to read.
                        &format!("PermissionDenied, cluster [{id}] can not run custom service now"),
                    );
                }
                cluster.seed.transition_status = "updating".into();
                state.jobs_started += 1;
                let job_id = format!("j-sim{:08}", state.jobs_started);
                state.jobs.push(SimJob {
                    id: job_id.clone(),
                    cluster: id.clone(),
                    zone,
                    desired_ssl: desired,
                    created: now,
                    end,
                    applied: false,
                });
                ok(serde_json::json!({
                    "action": "RunClusterCustomServiceResponse",
                    "job_id": job_id,
                    "service": "configuring_SSL",
                    "role": "maininstance",
                    "cluster_id": id,
                    "ret_code": 0,
                }))
            }
            other => envelope_error(
                1100,
                &format!("InvalidAction, action [{other}] is not simulated"),
            ),
        }
    }

    /// Signature version 1 and time stamp checks; the error envelope when they fail.
    fn authenticate(
        &self,
        request: &SimRequest,
        params: &[(String, String)],
    ) -> Result<(), SimResponse> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        if request.path != signer::IAAS_PATH {
            return Err(envelope_error(1100, "path must be /iaas/"));
        }
        let (Some(access_key_id), Some(signature)) = (get("access_key_id"), get("signature"))
        else {
            return Err(envelope_error(
                1200,
                "AuthFailure, access_key_id and signature are required",
            ));
        };
        if get("signature_method") != Some("HmacSHA256") || get("signature_version") != Some("1") {
            return Err(envelope_error(
                1200,
                "AuthFailure, only signature_version 1 with HmacSHA256 is simulated",
            ));
        }
        let Some(account) = self
            .accounts
            .iter()
            .find(|account| account.access_key_id == access_key_id)
        else {
            return Err(envelope_error(1200, "AuthFailure, access key not found"));
        };
        let string_to_sign = StringToSign {
            method: request.method.as_str().to_owned(),
            path: request.path.clone(),
            canonical: CanonicalQuery::new(params),
        };
        if !string_to_sign.verify(&account.secret_access_key, signature) {
            return Err(envelope_error(1200, "AuthFailure, signature not match"));
        }
        if self.max_skew > 0 {
            let Some(time_stamp) = get("time_stamp").and_then(signer::parse_time_stamp) else {
                return Err(envelope_error(
                    1100,
                    "InvalidParameter, time_stamp is required",
                ));
            };
            let skew = (request.received_at - time_stamp)
                .whole_seconds()
                .unsigned_abs();
            if skew > self.max_skew {
                return Err(envelope_error(
                    1300,
                    "MessageExpired, time_stamp is too far from server time",
                ));
            }
        }
        Ok(())
    }
}

/// The parameters of a request: the query, plus the form body of a POST.
fn request_params(request: &SimRequest) -> Vec<(String, String)> {
    let mut params = signer::parse_form(&request.raw_query);
    if request.method == Method::POST {
        params.extend(signer::parse_form(&String::from_utf8_lossy(&request.body)));
    }
    params
}

fn ok(value: serde_json::Value) -> SimResponse {
    SimResponse::json(200, &value)
}

/// QingCloud errors travel inside HTTP 200.
fn envelope_error(ret_code: i64, message: &str) -> SimResponse {
    SimResponse::json(
        200,
        &serde_json::json!({"ret_code": ret_code, "message": message}),
    )
    .with_outcome(ret_code.to_string())
}

impl VendorSim for QingCloudSim {
    fn vendor(&self) -> &'static str {
        "qingcloud"
    }

    fn claims(&self, path: &str) -> bool {
        path.starts_with("/iaas/")
    }

    fn action(&self, request: &SimRequest) -> String {
        request_params(request)
            .into_iter()
            .find(|(name, _)| name == "action")
            .map(|(_, value)| value)
            .unwrap_or_else(|| "unknown".into())
    }

    fn error(&self, request: &SimRequest, status: u16, code: &str, message: &str) -> SimResponse {
        match code {
            "JobFailed" => self.handle_with(request, JobEnd::Failed),
            "JobDoneWithFailure" => self.handle_with(request, JobEnd::DoneWithFailure),
            _ => {
                let (ret_code, message) = match code.parse::<i64>() {
                    Ok(ret_code) => (ret_code, message.to_owned()),
                    Err(_) => (5000, format!("{code}: {message}")),
                };
                SimResponse::json(
                    status,
                    &serde_json::json!({"ret_code": ret_code, "message": message}),
                )
                .with_outcome(code)
            }
        }
    }

    fn handle(&self, request: &SimRequest) -> SimResponse {
        self.handle_with(request, JobEnd::Successful)
    }

    fn state(&self) -> serde_json::Value {
        let now = Instant::now();
        let mut state = self.lock();
        self.advance(&mut state, now);
        let clusters: Vec<serde_json::Value> = state
            .clusters
            .values()
            .map(|cluster| {
                serde_json::json!({
                    "id": cluster.seed.id,
                    "zone": cluster.seed.zone,
                    "ssl": cluster.seed.ssl,
                    "status": cluster.seed.status,
                    "transition_status": cluster.seed.transition_status,
                })
            })
            .collect();
        let jobs: Vec<serde_json::Value> = state
            .jobs
            .iter()
            .map(|job| {
                serde_json::json!({
                    "job_id": job.id,
                    "cluster": job.cluster,
                    "ssl": job.desired_ssl,
                    "status": self.job_status(job, now),
                })
            })
            .collect();
        serde_json::json!({
            "mysql_plus_clusters": clusters,
            "jobs": jobs,
            "write_calls": state.write_calls,
            "jobs_started": state.jobs_started,
            "post_requests": state.post_requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use time::OffsetDateTime;

    fn sim(skew: u64, job_phase_ms: u64) -> QingCloudSim {
        QingCloudSim::new(Seed {
            accounts: vec![AccountSeed {
                access_key_id: "testAccessKeyId".into(),
                secret_access_key: Secret::new("testAccessKeySecret"),
            }],
            mysql_plus_clusters: vec![ClusterSeed {
                id: "cl-oracle01".into(),
                zone: "pek3".into(),
                ssl: false,
                status: "active".into(),
                transition_status: String::new(),
                configssl_values: None,
            }],
            job_phase_ms,
            max_time_stamp_skew_secs: skew,
            ssl_env_key: default_env_key(),
        })
    }

    fn get(query: &str, at: OffsetDateTime) -> SimRequest {
        SimRequest {
            method: Method::GET,
            path: "/iaas/".into(),
            raw_query: query.into(),
            headers: Default::default(),
            body: Bytes::new(),
            received_at: at,
        }
    }

    fn signed_query(action: &str, params: &[(&str, &str)], at: OffsetDateTime) -> String {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        signer::sign(
            "GET",
            action,
            &params,
            &signer::SigningInput {
                access_key_id: "testAccessKeyId",
                secret: &Secret::new("testAccessKeySecret"),
                zone: "pek3",
                time_stamp: at,
                req_id: "r1",
            },
        )
        .encoded_params()
    }

    fn ret_code(response: &SimResponse) -> i64 {
        serde_json::from_slice::<serde_json::Value>(&response.body).unwrap()["ret_code"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn skew_is_refused_and_a_second_job_too() {
        let now = OffsetDateTime::now_utc();
        let sim = sim(60, 60_000);
        let stale = signed_query("DescribeJobs", &[], now - time::Duration::minutes(10));
        assert_eq!(ret_code(&sim.handle(&get(&stale, now))), 1300);
        let run = signed_query(
            "RunClusterCustomService",
            &[
                ("cluster", "cl-oracle01"),
                ("role", "maininstance"),
                ("service", "configuring_SSL"),
                ("service_params", r#"{"configssl":"YES"}"#),
            ],
            now,
        );
        assert_eq!(ret_code(&sim.handle(&get(&run, now))), 0);
        assert_eq!(ret_code(&sim.handle(&get(&run, now))), 1400);
        let state = sim.state();
        assert_eq!(state["jobs_started"], 1);
        assert_eq!(state["write_calls"], 2);
        assert_eq!(
            state["mysql_plus_clusters"][0]["transition_status"],
            "updating"
        );
    }

    #[test]
    fn the_example_seed_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim-seed.example.toml");
        let seed =
            crate::cloud::sim::SimSeed::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
        let qingcloud = seed.qingcloud;
        assert_eq!(qingcloud.accounts.len(), 1);
        assert_eq!(qingcloud.mysql_plus_clusters[0].id, "cl-ouhutv70");
        assert_eq!(qingcloud.mysql_plus_clusters[0].status, "active");
        assert_eq!(
            qingcloud.mysql_plus_clusters[1].transition_status,
            "updating"
        );
        assert_eq!(qingcloud.ssl_env_key, DEFAULT_SSL_ENV_KEY);
    }
}
