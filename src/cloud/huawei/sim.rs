//! The Huawei part of `certkeeper sim`: IAM token issuance for seeded users (`POST
//! /v3/auth/tokens`), AK/SK `SDK-HMAC-SHA256` verification with the same staged signer the
//! client uses (the official SDK's recorded requests verify; tampered ones and wrong secrets
//! do not; `Content-Type`, `X-Project-Id` and `X-Security-Token` sent unsigned are refused,
//! as the SDK signs every header it sets), a body without a JSON `Content-Type` refused,
//! `X-Sdk-Date` skew over 15 minutes refused, TaurusDB instances with their backup
//! encryption state and KMS keys, and DNS zones with TXT recordsets. Errors use Huawei's
//! envelopes: `{error_code, error_msg, request_id}` for API Gateway, IAM and TaurusDB,
//! `{code, message}` for DNS.
//!
//! Codes the simulator answers with, each a row of [`ERRORS`] (status, message and the
//! remedy the vendor documents, with its source), written from the seeds and never from the
//! client's table: `APIGW.0301` (401) for every authentication failure, including an
//! expired signature; `DBS.200001` (400) parameter error; `DBS.200002` (404) unknown
//! instance; `DBS.200010` (403) project does not match; `DBS.200011` (409) instance not
//! `ACTIVE`; `DBS.200004` (403) the open-beta API refused (`backup_encryption_restricted`);
//! `KMS.0207` unknown key, `KMS.0209` disabled key and `KMS.0210` key pending deletion
//! (400, the DEW/KMS codes: TaurusDB publishes no code of its own for key problems, so the
//! simulator passes the KMS one through); `APIGW.0101` (404) unknown API. DNS: `DNS.0101`
//! (404) unknown zone, `DNS.0305` (404) unknown recordset, `DNS.0303` (400) bad recordset
//! and `DNS.0312` (400) recordset exists; these DNS numbers are the simulator's own, the
//! public table was not available, and the client classifies them by HTTP status.

use super::signer::{self, Authorization, CanonicalRequest};
use super::sim_iam::{TemporaryKeysSim, TemporarySeed};
use crate::cloud::sim::{SimRequest, SimResponse, VendorSim};
use crate::secret::Secret;
use axum::http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An AK/SK pair and the project it signs for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAccount {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub project_id: String,
}

/// An IAM user that may obtain tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub domain: String,
    pub name: String,
    pub password: Secret,
    /// The project a token is scoped to when the request scopes by project name.
    #[serde(default)]
    pub project_id: Option<String>,
}

/// A TaurusDB instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedInstance {
    pub id: String,
    /// `on` or `off` (default).
    #[serde(default = "default_off")]
    pub backup_encryption: BackupEncryption,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Owning project; any project when absent.
    #[serde(default)]
    pub project_id: Option<String>,
    /// `ACTIVE` (default) or another state, which refuses changes with `DBS.200011`.
    #[serde(default)]
    pub status: Option<String>,
}

fn default_off() -> BackupEncryption {
    BackupEncryption::Off
}

/// The values of `encryption_status`, written from the seed (003, request body table:
/// `encryption_status` 开启或关闭加密, 不区分大小写; the examples send `on` / `off`), not
/// taken from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupEncryption {
    On,
    Off,
}

impl BackupEncryption {
    /// Every value the API documents, in the form its examples answer with.
    pub const ALL: [BackupEncryption; 2] = [BackupEncryption::On, BackupEncryption::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            BackupEncryption::On => "on",
            BackupEncryption::Off => "off",
        }
    }

    /// The seed: "不区分大小写" (case-insensitive).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|known| known.as_str().eq_ignore_ascii_case(value))
    }
}

/// The only `type` the seed allows when switching encryption on ("当前只支持kms").
pub const ENCRYPTION_TYPE: &str = "kms";

/// `X-Sdk-Date` skew the API gateway tolerates: 15 minutes (cloud-apis.md §6.1, "APIG
/// rejects if >15 min from server time").
pub const MAX_SDK_DATE_SKEW_SECONDS: u64 = 15 * 60;

/// Headers the SDK sets before signing and therefore always signs when it sends them
/// (cloud-apis.md §6.1: `Content-Type`, `X-Project-Id` from `BasicCredentials`,
/// `X-Security-Token` for temporary keys).
const SDK_SIGNED_HEADERS: &[&str] = &["content-type", "x-project-id", "x-security-token"];

/// Whether `value` is the JSON media type the API takes (§6.3: `Content-Type:
/// application/json;charset=UTF-8`; the SDK sends `application/json` on a GET and
/// `application/json;charset=utf-8` with a body). Parameters other than a UTF-8 charset
/// are refused.
fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    let media_type = parts.next().unwrap_or_default();
    media_type.eq_ignore_ascii_case("application/json")
        && parts.all(|parameter| {
            parameter.split_once('=').is_some_and(|(name, charset)| {
                name.trim().eq_ignore_ascii_case("charset")
                    && charset.trim().eq_ignore_ascii_case("utf-8")
            })
        })
}

/// What the vendor's documents tell a caller to do about an error: the simulator's own
/// reading of each row, which `tests/huawei_qingcloud_fidelity.rs` compares with the
/// client's classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentedRemedy {
    /// Correct the request (a parameter, a name).
    FixRequest,
    /// Correct the credentials or the permissions.
    FixCredentials,
    /// The named resource does not exist.
    Missing,
    /// The resource is in a state that forbids the change now: try again later.
    WaitForResource,
    /// Something outside the request must change first (a KMS key enabled again).
    WaitForOutsideChange,
    /// Slow down: a throttling threshold was reached.
    SlowDown,
    /// The vendor's own failure.
    VendorFault,
    /// Only the vendor can help: the API is not published here or needs a service ticket.
    AskVendor,
}

/// One error the simulator answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentedError {
    pub code: &'static str,
    pub status: u16,
    pub message: &'static str,
    pub remedy: DocumentedRemedy,
}

const fn row(
    code: &'static str,
    status: u16,
    message: &'static str,
    remedy: DocumentedRemedy,
) -> DocumentedError {
    DocumentedError {
        code,
        status,
        message,
        remedy,
    }
}

use DocumentedRemedy as R;

/// The simulator's error table, written from the seeds (`shared/seeds/003…` TaurusDB
/// `ModifyBackupEncryptStatus`, `shared/reference/cloud-apis.md` §6) and never from the
/// client's table. Each row names the source it was written from.
pub const ERRORS: &[DocumentedError] = &[
    // §6.4: "APIGW.0101 API not found".
    row(
        "APIGW.0101",
        404,
        "The API does not exist or has not been published in the environment.",
        R::AskVendor,
    ),
    // §6.4: "APIGW.0301 401 Incorrect IAM authentication information (bad AK/SK signature,
    // expired/undecryptable token, AK locked)".
    row(
        "APIGW.0301",
        401,
        "Incorrect IAM authentication information",
        R::FixCredentials,
    ),
    // §6.4: "APIGW.0303 app auth / signature expired".
    row(
        "APIGW.0303",
        401,
        "Incorrect app authentication information",
        R::FixCredentials,
    ),
    // §6.4: "APIGW.0308 429 The throttling threshold has been reached".
    row(
        "APIGW.0308",
        429,
        "The throttling threshold has been reached: policy user over ratelimit",
        R::SlowDown,
    ),
    // §6.4: "API Gateway codes (prefix appears as both `APIGW.` and `APIG.` in docs)".
    row(
        "APIG.0101",
        404,
        "The API does not exist or has not been published in the environment.",
        R::AskVendor,
    ),
    row(
        "APIG.0301",
        401,
        "Incorrect IAM authentication information",
        R::FixCredentials,
    ),
    row(
        "APIG.0303",
        401,
        "Incorrect app authentication information",
        R::FixCredentials,
    ),
    row(
        "APIG.0308",
        429,
        "The throttling threshold has been reached: policy user over ratelimit",
        R::SlowDown,
    ),
    // §6.4: "DBS.200001 400 parameter error".
    row("DBS.200001", 400, "Parameter error.", R::FixRequest),
    // Seed 003 接口约束: "该接口目前公测阶段,如需使用,请提交工单联系客服人员申请权限" (open
    // beta: ask for permission by service ticket); §6.3: "one intl doc copy marks the API
    // OBT". The seed names no refusal code: the simulator answers 403 with the RDS
    // table's "operation not allowed" code, an assumption.
    row(
        "DBS.200004",
        403,
        "The API is in open beta; submit a service ticket to apply for permission.",
        R::AskVendor,
    ),
    // §6.4: "DBS.200002 404 instance not found".
    row(
        "DBS.200002",
        404,
        "The DB instance does not exist.",
        R::Missing,
    ),
    // Not in the seeds: a project that does not own the path's instance. The simulator's
    // choice, after the RDS table's "tenant and instance do not match".
    row(
        "DBS.200010",
        403,
        "Authentication failed.",
        R::FixCredentials,
    ),
    // §6.4: "DBS.200011/DBS.200019 409 another operation in progress / instance faulty
    // (retry later)".
    row(
        "DBS.200011",
        409,
        "This instance status makes it not be allowed to do this operation now.",
        R::WaitForResource,
    ),
    row(
        "DBS.200019",
        409,
        "Another operation is being performed on the DB instance or the DB instance is faulty.",
        R::WaitForResource,
    ),
    // §6.3: "e.g. DBS.280234 Invalid DB instance name."
    row(
        "DBS.280234",
        400,
        "Invalid DB instance name.",
        R::FixRequest,
    ),
    // §6.4: "DBS.108000 500".
    row("DBS.108000", 500, "System error.", R::VendorFault),
    // KMS (DEW) codes, as surfaced through the backup-encryption call: TaurusDB publishes
    // none of its own for key problems. Seed 003: `kms_key_id` comes from DEW; §6.3: "key
    // must not be disabled/deleted while in use". Codes as named by issue 13.
    row("KMS.0207", 400, "The key does not exist.", R::Missing),
    row(
        "KMS.0209",
        400,
        "The key has been disabled and cannot be used.",
        R::WaitForOutsideChange,
    ),
    row(
        "KMS.0210",
        400,
        "The key is pending deletion and cannot be used.",
        R::WaitForOutsideChange,
    ),
    // Not in the seeds: IAM refusing a malformed token request (the simulator's choice).
    row("IAM.0011", 400, "Request body is invalid.", R::FixRequest),
    // §6.5: "DNS.0001 Internal error."
    row("DNS.0001", 500, "Internal error.", R::VendorFault),
    // §6.5: "DNS.0014 403 Request forbidden by flow control".
    row(
        "DNS.0014",
        403,
        "Request forbidden by flow control.",
        R::SlowDown,
    ),
    // DNS numbers below are the simulator's own (§6.5 names no table); the client
    // classifies them by HTTP status.
    row("DNS.0101", 404, "The zone does not exist.", R::Missing),
    row(
        "DNS.0305",
        404,
        "The record set does not exist.",
        R::Missing,
    ),
    row("DNS.0303", 400, "Invalid request body.", R::FixRequest),
    row(
        "DNS.0312",
        400,
        "A record set of this name and type exists.",
        R::FixRequest,
    ),
];

/// The row of `code` in [`ERRORS`]; a code missing from the table (a bug in the simulator)
/// answers as the vendor's internal error rather than panicking.
fn documented(code: &str) -> DocumentedError {
    ERRORS
        .iter()
        .copied()
        .find(|row| row.code == code)
        .unwrap_or(row("DBS.108000", 500, "System error.", R::VendorFault))
}

/// The `[huawei]` section of the simulator seed; see `config/sim-seed.example.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub accounts: Vec<SeedAccount>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Enabled KMS key ids.
    #[serde(default)]
    pub kms_keys: Vec<String>,
    /// Disabled KMS key ids: using one is refused with `KMS.0209`.
    #[serde(default)]
    pub disabled_kms_keys: Vec<String>,
    /// KMS key ids pending deletion: using one is refused with `KMS.0210`.
    #[serde(default)]
    pub pending_deletion_kms_keys: Vec<String>,
    /// Model the seed's restriction (open beta, permission by service ticket): every
    /// backup-encryption call is refused with 403 `DBS.200004`.
    #[serde(default)]
    pub backup_encryption_restricted: bool,
    /// Let DescribeBackupEncryptStatus also report `kms_key_id` while encryption is on.
    /// The seed's response table has only `encryption_status`, so this is off by default;
    /// it exercises the client's comparison of the key where an answer carries it.
    #[serde(default)]
    pub describe_reports_kms_key: bool,
    /// Public DNS zones, e.g. `example.com`.
    #[serde(default)]
    pub dns_zones: Vec<String>,
    #[serde(default)]
    pub gaussdb_instances: Vec<SeedInstance>,
    /// Accept any `X-Sdk-Date` (to replay recorded requests with old timestamps).
    #[serde(default)]
    pub skip_sdk_date_check: bool,
    /// Largest accepted distance between `X-Sdk-Date` and the simulator's clock;
    /// [`MAX_SDK_DATE_SKEW_SECONDS`].
    #[serde(default)]
    pub max_clock_skew_seconds: Option<u64>,
    /// Token lifetime; 86400 (24 h) as IAM.
    #[serde(default)]
    pub token_ttl_seconds: Option<u64>,
    /// Temporary AK/SK: the metadata service and IAM `securitytokens` (`sim_iam`).
    #[serde(default)]
    pub temporary: TemporarySeed,
}

#[derive(Debug, Clone)]
struct Instance {
    encryption: BackupEncryption,
    kms_key_id: Option<String>,
    project_id: Option<String>,
    status: String,
}

#[derive(Debug, Clone)]
struct RecordSet {
    id: String,
    name: String,
    kind: String,
    records: Vec<String>,
    ttl: u64,
}

#[derive(Debug, Clone)]
struct Zone {
    id: String,
    /// With the trailing dot.
    name: String,
    recordsets: BTreeMap<String, RecordSet>,
}

#[derive(Debug, Clone)]
struct IssuedToken {
    project_id: Option<String>,
    expires_at: OffsetDateTime,
}

#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, Instance>,
    zones: Vec<Zone>,
    tokens: BTreeMap<String, IssuedToken>,
    tokens_issued: u64,
    writes: BTreeMap<String, u64>,
    next_id: u64,
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("ff80808{:025x}", self.next_id)
    }
}

/// The simulated Huawei Cloud.
pub struct HuaweiSim {
    seed: Seed,
    state: Mutex<State>,
    temporary: TemporaryKeysSim,
}

/// Who a request authenticated as.
struct Caller {
    project_id: Option<String>,
}

/// How errors are wrapped: API Gateway / IAM / TaurusDB, or DNS.
#[derive(Clone, Copy)]
enum Envelope {
    Dbs,
    Dns,
}

fn envelope_for(path: &str) -> Envelope {
    if path.starts_with("/v2/") {
        Envelope::Dns
    } else {
        Envelope::Dbs
    }
}

/// Answers with `code`'s row of [`ERRORS`]: its status, and `message` (the row's own when
/// empty).
fn fail_as(envelope: Envelope, code: &str, message: &str) -> SimResponse {
    let row = documented(code);
    let message = if message.is_empty() {
        row.message
    } else {
        message
    };
    fail(envelope, row.status, row.code, message)
}

fn fail(envelope: Envelope, status: u16, code: &str, message: &str) -> SimResponse {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let body = match envelope {
        Envelope::Dbs => {
            serde_json::json!({"error_code": code, "error_msg": message, "request_id": request_id})
        }
        Envelope::Dns => serde_json::json!({"code": code, "message": message}),
    };
    SimResponse::json(status, &body)
        .with_header("X-Request-Id", request_id)
        .with_outcome(code)
}

fn ok(status: u16, body: serde_json::Value) -> SimResponse {
    SimResponse::json(status, &body)
        .with_header("X-Request-Id", uuid::Uuid::new_v4().simple().to_string())
}

/// `name=value` pairs of a raw query, decoded.
fn query_params(raw: &str) -> BTreeMap<String, String> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_encoding::percent_decode_str(text)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

impl HuaweiSim {
    pub fn new(seed: Seed) -> Self {
        let mut state = State::default();
        for instance in &seed.gaussdb_instances {
            state.instances.insert(
                instance.id.clone(),
                Instance {
                    encryption: instance.backup_encryption,
                    kms_key_id: instance.kms_key_id.clone(),
                    project_id: instance.project_id.clone(),
                    status: instance.status.clone().unwrap_or_else(|| "ACTIVE".into()),
                },
            );
        }
        for name in &seed.dns_zones {
            let id = state.new_id();
            state.zones.push(Zone {
                id,
                name: format!("{}.", name.trim_end_matches('.').to_ascii_lowercase()),
                recordsets: BTreeMap::new(),
            });
        }
        Self {
            temporary: TemporaryKeysSim::new(seed.temporary.clone()),
            seed,
            state: Mutex::new(state),
        }
    }

    /// The IAM token of `request` (`X-Auth-Token`), if it is live: its project.
    fn token_caller(&self, request: &SimRequest) -> Option<Result<Caller, &'static str>> {
        let token = request.header("x-auth-token")?;
        let state = self.lock();
        Some(match state.tokens.get(token) {
            None => Err("decrypt token fail"),
            Some(issued) if issued.expires_at <= request.received_at => Err("token expired"),
            Some(issued) => Ok(Caller {
                project_id: issued.project_id.clone(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Handlers never leave the state half-changed across a panic point.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn authenticate(&self, request: &SimRequest) -> Result<Caller, SimResponse> {
        let envelope = envelope_for(&request.path);
        let refuse = |message: &str| {
            fail_as(
                envelope,
                "APIGW.0301",
                &format!("Incorrect IAM authentication information: {message}"),
            )
        };
        if let Some(caller) = self.token_caller(request) {
            return caller.map_err(refuse);
        }
        let authorization = request
            .header("authorization")
            .and_then(Authorization::parse)
            .ok_or_else(|| refuse("no SDK-HMAC-SHA256 authorization or token"))?;
        // A temporary key (with its live X-Security-Token), else a seeded one.
        let temporary = self
            .temporary
            .key_secret(
                &authorization.access_key_id,
                request.header("x-security-token"),
                request.received_at,
            )
            .map_err(refuse)?;
        let (secret, project_id) = match temporary {
            Some(secret) => (
                Secret::new(secret),
                request.header("x-project-id").map(str::to_owned),
            ),
            None => {
                let account = self
                    .seed
                    .accounts
                    .iter()
                    .find(|account| account.access_key_id == authorization.access_key_id)
                    .ok_or_else(|| refuse("ak not found"))?;
                (
                    account.secret_access_key.clone(),
                    Some(account.project_id.clone()),
                )
            }
        };
        let signed: Vec<&str> = authorization.signed_header_names().collect();
        if !signed.contains(&"host") || !signed.contains(&"x-sdk-date") {
            return Err(refuse("host and x-sdk-date must be signed"));
        }
        // The SDK signs every header it sets before signing (§6.1: "SDK signs every header
        // present except names containing `_`"), so one of these travelling unsigned was
        // added or changed after the signature.
        if let Some(unsigned) = SDK_SIGNED_HEADERS
            .iter()
            .find(|name| request.header(name).is_some() && !signed.contains(name))
        {
            return Err(refuse(&format!("{unsigned} is sent but not signed")));
        }
        let sdk_date = request
            .header(signer::SDK_DATE_HEADER)
            .ok_or_else(|| refuse("missing X-Sdk-Date"))?;
        let signed_at =
            signer::parse_sdk_date(sdk_date).ok_or_else(|| refuse("malformed X-Sdk-Date"))?;
        let max_skew = self
            .seed
            .max_clock_skew_seconds
            .unwrap_or(MAX_SDK_DATE_SKEW_SECONDS);
        let skew = (request.received_at - signed_at).abs();
        if !self.seed.skip_sdk_date_check && skew > time::Duration::seconds(max_skew as i64) {
            return Err(refuse("signature expired"));
        }
        let mut pairs = Vec::new();
        for name in &signed {
            let value = request
                .header(name)
                .ok_or_else(|| refuse("a signed header is missing"))?;
            pairs.push((*name, value));
        }
        let canonical = CanonicalRequest::new(
            request.method.as_str(),
            &request.path,
            &request.raw_query,
            &pairs,
            &request.body,
        );
        if !canonical
            .string_to_sign(sdk_date)
            .verify(&secret, &authorization.signature)
        {
            return Err(refuse("verify aksk signature fail"));
        }
        if let (Some(project), Some(own)) = (request.header("x-project-id"), &project_id) {
            if project != own {
                return Err(refuse("X-Project-Id does not belong to this AK"));
            }
        }
        Ok(Caller { project_id })
    }

    fn count_write(&self, action: &str) {
        *self.lock().writes.entry(action.to_owned()).or_default() += 1;
    }

    fn issue_token(&self, request: &SimRequest) -> SimResponse {
        let refuse = || {
            SimResponse::json(
                401,
                &serde_json::json!({"error": {"code": 401, "title": "Unauthorized",
                    "message": "The username or password is wrong."}}),
            )
            .with_outcome("Unauthorized")
        };
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return fail_as(Envelope::Dbs, "IAM.0011", "Request body is invalid.");
        };
        let auth = &body["auth"];
        let password_method = auth["identity"]["methods"]
            .as_array()
            .is_some_and(|methods| methods.iter().any(|m| m == "password"));
        let user = &auth["identity"]["password"]["user"];
        let found = self.seed.users.iter().find(|seeded| {
            user["name"] == seeded.name.as_str()
                && user["domain"]["name"] == seeded.domain.as_str()
                && user["password"] == seeded.password.expose()
        });
        let (true, Some(seeded)) = (password_method, found) else {
            return refuse();
        };
        let scope = &auth["scope"]["project"];
        let project_id = scope["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| seeded.project_id.clone());
        let ttl = self.seed.token_ttl_seconds.unwrap_or(86_400);
        let issued_at = request.received_at;
        let expires_at = issued_at + time::Duration::seconds(ttl as i64);
        let token = format!("MIIsim{}", uuid::Uuid::new_v4().simple());
        {
            let mut state = self.lock();
            state.tokens.insert(
                token.clone(),
                IssuedToken {
                    project_id: project_id.clone(),
                    expires_at,
                },
            );
            state.tokens_issued += 1;
        }
        let format = |time: OffsetDateTime| time.format(&Rfc3339).unwrap_or_default();
        ok(
            201,
            serde_json::json!({"token": {
                "methods": ["password"],
                "issued_at": format(issued_at),
                "expires_at": format(expires_at),
                "project": {"id": project_id, "name": scope["name"]},
                "user": {"name": seeded.name, "domain": {"name": seeded.domain}},
            }}),
        )
        .with_header("X-Subject-Token", token)
    }

    fn gaussdb(&self, request: &SimRequest, caller: &Caller, parts: &[&str]) -> SimResponse {
        let project = parts[1];
        if caller
            .project_id
            .as_deref()
            .is_some_and(|owned| owned != project)
        {
            return fail_as(Envelope::Dbs, "DBS.200010", "Authentication failed.");
        }
        match (&request.method, parts.len()) {
            (&Method::GET, 3) => self.list_instances(request, project),
            (method, 6) if parts[4] == "backups" && parts[5] == "encryption" => {
                let instance = parts[3];
                if self.seed.backup_encryption_restricted {
                    return fail_as(Envelope::Dbs, "DBS.200004", "");
                }
                match *method {
                    Method::GET => self.describe_encryption(project, instance),
                    Method::POST => {
                        self.count_write("ModifyBackupEncryptStatus");
                        self.modify_encryption(request, project, instance)
                    }
                    _ => unknown_api(&request.path),
                }
            }
            _ => unknown_api(&request.path),
        }
    }

    fn visible(instance: &Instance, project: &str) -> bool {
        instance
            .project_id
            .as_deref()
            .is_none_or(|owner| owner == project)
    }

    fn list_instances(&self, request: &SimRequest, project: &str) -> SimResponse {
        let params = query_params(&request.raw_query);
        let state = self.lock();
        let instances: Vec<serde_json::Value> = state
            .instances
            .iter()
            .filter(|(_, instance)| Self::visible(instance, project))
            .filter(|(id, _)| params.get("id").is_none_or(|wanted| wanted == *id))
            // The simulator names an instance by its id.
            .filter(|(id, _)| params.get("name").is_none_or(|wanted| wanted == *id))
            .map(|(id, instance)| {
                serde_json::json!({"id": id, "name": id, "status": instance.status,
                    "type": "Cluster", "project_id": project})
            })
            .collect();
        ok(
            200,
            serde_json::json!({"total_count": instances.len(), "instances": instances}),
        )
    }

    fn describe_encryption(&self, project: &str, id: &str) -> SimResponse {
        let state = self.lock();
        match state.instances.get(id) {
            Some(instance) if Self::visible(instance, project) => {
                let mut answer =
                    serde_json::json!({"encryption_status": instance.encryption.as_str()});
                if self.seed.describe_reports_kms_key {
                    answer["kms_key_id"] = serde_json::json!(instance.kms_key_id);
                }
                ok(200, answer)
            }
            _ => instance_not_found(),
        }
    }

    fn modify_encryption(&self, request: &SimRequest, project: &str, id: &str) -> SimResponse {
        let parameter_error = |message: &str| fail_as(Envelope::Dbs, "DBS.200001", message);
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return parameter_error("Parameter error: body is not JSON.");
        };
        let status = body["encryption_status"]
            .as_str()
            .map(str::to_ascii_lowercase);
        let kind = body["type"].as_str().map(str::to_ascii_lowercase);
        let key = body["kms_key_id"].as_str();
        let mut state = self.lock();
        let Some(instance) = state
            .instances
            .get_mut(id)
            .filter(|instance| Self::visible(instance, project))
        else {
            return instance_not_found();
        };
        if instance.status != "ACTIVE" {
            return fail_as(
                Envelope::Dbs,
                "DBS.200011",
                &format!(
                    "This instance {} status makes it not be allowed to do this operation now.",
                    instance.status
                ),
            );
        }
        match (status.as_deref(), kind.as_deref(), key) {
            (Some("on"), Some(ENCRYPTION_TYPE), Some(key)) => {
                if self.seed.pending_deletion_kms_keys.iter().any(|k| k == key) {
                    return fail_as(Envelope::Dbs, "KMS.0210", "");
                }
                if self.seed.disabled_kms_keys.iter().any(|k| k == key) {
                    return fail_as(Envelope::Dbs, "KMS.0209", "");
                }
                if !self.seed.kms_keys.iter().any(|k| k == key) {
                    return fail_as(Envelope::Dbs, "KMS.0207", "");
                }
                instance.encryption = BackupEncryption::On;
                instance.kms_key_id = Some(key.to_owned());
            }
            (Some("on"), _, _) => {
                return parameter_error(
                    "Parameter error: type kms and kms_key_id are required to enable encryption.",
                )
            }
            (Some("off"), None, None) => {
                instance.encryption = BackupEncryption::Off;
                instance.kms_key_id = None;
            }
            (Some("off"), _, _) => return parameter_error(
                "Parameter error: type and kms_key_id are not passed when disabling encryption.",
            ),
            _ => return parameter_error("Parameter error: encryption_status must be on or off."),
        }
        ok(
            200,
            serde_json::json!({"encryption_status": instance.encryption.as_str()}),
        )
    }

    fn dns(&self, request: &SimRequest, parts: &[&str]) -> SimResponse {
        match (&request.method, parts.len()) {
            (&Method::GET, 2) => self.list_zones(request),
            (method, 4) if parts[3] == "recordsets" => match *method {
                Method::GET => self.list_recordsets(request, parts[2]),
                Method::POST => {
                    self.count_write("CreateRecordSet");
                    self.create_recordset(request, parts[2])
                }
                _ => unknown_api(&request.path),
            },
            (method, 5) if parts[3] == "recordsets" => match *method {
                Method::GET => self.show_recordset(parts[2], parts[4]),
                Method::PUT => {
                    self.count_write("UpdateRecordSet");
                    self.update_recordset(request, parts[2], parts[4])
                }
                Method::DELETE => {
                    self.count_write("DeleteRecordSet");
                    self.delete_recordset(parts[2], parts[4])
                }
                _ => unknown_api(&request.path),
            },
            _ => unknown_api(&request.path),
        }
    }

    fn list_zones(&self, request: &SimRequest) -> SimResponse {
        let params = query_params(&request.raw_query);
        let limit = params
            .get("limit")
            .and_then(|limit| limit.parse::<usize>().ok())
            .unwrap_or(500)
            .min(500);
        let offset = params
            .get("offset")
            .and_then(|offset| offset.parse::<usize>().ok())
            .unwrap_or(0);
        let wanted = params
            .get("name")
            .map(|name| format!("{}.", name.trim_end_matches('.').to_ascii_lowercase()));
        let like = params.get("search_mode").is_none_or(|mode| mode != "equal");
        let state = self.lock();
        let matching: Vec<&Zone> = state
            .zones
            .iter()
            .filter(|zone| match &wanted {
                None => true,
                Some(name) if like => zone.name.contains(name.trim_end_matches('.')),
                Some(name) => zone.name == *name,
            })
            .collect();
        let zones: Vec<serde_json::Value> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|zone| {
                serde_json::json!({"id": zone.id, "name": zone.name, "zone_type": "public",
                    "status": "ACTIVE", "record_num": zone.recordsets.len()})
            })
            .collect();
        ok(
            200,
            serde_json::json!({"zones": zones, "metadata": {"total_count": matching.len()}}),
        )
    }

    fn list_recordsets(&self, request: &SimRequest, zone_id: &str) -> SimResponse {
        let params = query_params(&request.raw_query);
        let state = self.lock();
        let Some(zone) = state.zones.iter().find(|zone| zone.id == zone_id) else {
            return zone_not_found();
        };
        let exact = params
            .get("search_mode")
            .is_some_and(|mode| mode == "equal");
        let recordsets: Vec<serde_json::Value> = zone
            .recordsets
            .values()
            .filter(|set| params.get("type").is_none_or(|kind| *kind == set.kind))
            .filter(|set| match params.get("name") {
                None => true,
                Some(name) if exact => set.name.eq_ignore_ascii_case(&absolute(name)),
                Some(name) => set.name.contains(name.trim_end_matches('.')),
            })
            .map(|set| recordset_json(zone, set, "ACTIVE"))
            .collect();
        ok(
            200,
            serde_json::json!({"recordsets": recordsets,
                "metadata": {"total_count": recordsets.len()}}),
        )
    }

    fn create_recordset(&self, request: &SimRequest, zone_id: &str) -> SimResponse {
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return fail_as(Envelope::Dns, "DNS.0303", "Invalid request body.");
        };
        let mut state = self.lock();
        let id = state.new_id();
        let Some(zone) = state.zones.iter_mut().find(|zone| zone.id == zone_id) else {
            return zone_not_found();
        };
        let (Some(name), Some(kind), Some(records)) = (
            body["name"].as_str(),
            body["type"].as_str(),
            string_list(&body["records"]),
        ) else {
            return fail_as(
                Envelope::Dns,
                "DNS.0303",
                "name, type and records are required.",
            );
        };
        let name = absolute(name).to_ascii_lowercase();
        if !(name == zone.name || name.ends_with(&format!(".{}", zone.name))) {
            return fail_as(
                Envelope::Dns,
                "DNS.0303",
                "The record set name is not in this zone.",
            );
        }
        if let Err(message) = check_records(kind, &records) {
            return fail_as(Envelope::Dns, "DNS.0303", message);
        }
        if zone
            .recordsets
            .values()
            .any(|set| set.name == name && set.kind == kind)
        {
            return fail_as(
                Envelope::Dns,
                "DNS.0312",
                "A record set of this name and type exists.",
            );
        }
        let set = RecordSet {
            id: id.clone(),
            name,
            kind: kind.to_owned(),
            records,
            ttl: body["ttl"].as_u64().unwrap_or(300),
        };
        let answer = recordset_json(zone, &set, "PENDING_CREATE");
        zone.recordsets.insert(id, set);
        ok(202, answer)
    }

    fn show_recordset(&self, zone_id: &str, record_id: &str) -> SimResponse {
        let state = self.lock();
        let Some(zone) = state.zones.iter().find(|zone| zone.id == zone_id) else {
            return zone_not_found();
        };
        match zone.recordsets.get(record_id) {
            Some(set) => ok(200, recordset_json(zone, set, "ACTIVE")),
            None => recordset_not_found(),
        }
    }

    fn update_recordset(
        &self,
        request: &SimRequest,
        zone_id: &str,
        record_id: &str,
    ) -> SimResponse {
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
            return fail_as(Envelope::Dns, "DNS.0303", "Invalid request body.");
        };
        let mut state = self.lock();
        let Some(zone) = state.zones.iter_mut().find(|zone| zone.id == zone_id) else {
            return zone_not_found();
        };
        let Some(set) = zone.recordsets.get(record_id).cloned() else {
            return recordset_not_found();
        };
        let mut updated = set;
        if let Some(records) = string_list(&body["records"]) {
            if let Err(message) = check_records(&updated.kind, &records) {
                return fail_as(Envelope::Dns, "DNS.0303", message);
            }
            updated.records = records;
        }
        if let Some(ttl) = body["ttl"].as_u64() {
            updated.ttl = ttl;
        }
        let answer = recordset_json(zone, &updated, "PENDING_UPDATE");
        zone.recordsets.insert(record_id.to_owned(), updated);
        ok(202, answer)
    }

    fn delete_recordset(&self, zone_id: &str, record_id: &str) -> SimResponse {
        let mut state = self.lock();
        let Some(zone) = state.zones.iter_mut().find(|zone| zone.id == zone_id) else {
            return zone_not_found();
        };
        match zone.recordsets.remove(record_id) {
            Some(set) => {
                let answer = recordset_json(zone, &set, "PENDING_DELETE");
                ok(202, answer)
            }
            None => recordset_not_found(),
        }
    }
}

fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn string_list(value: &serde_json::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// Records must be non-empty; TXT values must be wrapped in double quotes, as the real API
/// demands.
fn check_records(kind: &str, records: &[String]) -> Result<(), &'static str> {
    if records.is_empty() {
        return Err("records must not be empty.");
    }
    if kind == "TXT"
        && records
            .iter()
            .any(|record| record.len() < 2 || !record.starts_with('"') || !record.ends_with('"'))
    {
        return Err("TXT record values must be wrapped in double quotes.");
    }
    Ok(())
}

fn recordset_json(zone: &Zone, set: &RecordSet, status: &str) -> serde_json::Value {
    serde_json::json!({"id": set.id, "name": set.name, "type": set.kind,
        "records": set.records, "ttl": set.ttl, "status": status,
        "zone_id": zone.id, "zone_name": zone.name, "default": false})
}

fn instance_not_found() -> SimResponse {
    fail_as(
        Envelope::Dbs,
        "DBS.200002",
        "The DB instance does not exist.",
    )
}

fn zone_not_found() -> SimResponse {
    fail_as(Envelope::Dns, "DNS.0101", "The zone does not exist.")
}

fn recordset_not_found() -> SimResponse {
    fail_as(Envelope::Dns, "DNS.0305", "The record set does not exist.")
}

fn unknown_api(path: &str) -> SimResponse {
    fail_as(envelope_for(path), "APIGW.0101", "")
}

impl VendorSim for HuaweiSim {
    fn vendor(&self) -> &'static str {
        "huawei"
    }

    fn claims(&self, path: &str) -> bool {
        ["/v3/", "/v2/", "/v3.0/", "/openstack/", "/meta-data/"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
    }

    fn action(&self, request: &SimRequest) -> String {
        let parts = segments(&request.path);
        let method = &request.method;
        let action = match (parts.as_slice(), method) {
            (["v3", "auth", "tokens"], &Method::POST) => "KeystoneCreateUserTokenByPassword",
            (["v3.0", "OS-CREDENTIAL", "securitytokens"], &Method::POST) => {
                "CreateTemporaryAccessKeyByToken"
            }
            (["openstack", ..], _) => "ShowMetadataSecurityKey",
            (["meta-data", ..], _) => "CreateMetadataToken",
            (["v3", _, "instances"], &Method::GET) => "ListGaussMySqlInstances",
            (["v3", _, "instances", _, "backups", "encryption"], &Method::GET) => {
                "DescribeBackupEncryptStatus"
            }
            (["v3", _, "instances", _, "backups", "encryption"], &Method::POST) => {
                "ModifyBackupEncryptStatus"
            }
            (["v2", "zones"], &Method::GET) => "ListPublicZones",
            (["v2", "zones", _, "recordsets"], &Method::GET) => "ListRecordSetsByZone",
            (["v2", "zones", _, "recordsets"], &Method::POST) => "CreateRecordSet",
            (["v2", "zones", _, "recordsets", _], &Method::GET) => "ShowRecordSet",
            (["v2", "zones", _, "recordsets", _], &Method::PUT) => "UpdateRecordSet",
            (["v2", "zones", _, "recordsets", _], &Method::DELETE) => "DeleteRecordSet",
            _ => "unknown",
        };
        action.to_owned()
    }

    fn error(&self, request: &SimRequest, status: u16, code: &str, message: &str) -> SimResponse {
        fail(envelope_for(&request.path), status, code, message)
    }

    fn handle(&self, request: &SimRequest) -> SimResponse {
        let parts = segments(&request.path);
        if parts == ["v3", "auth", "tokens"] && request.method == Method::POST {
            return self.issue_token(request);
        }
        if matches!(parts.first(), Some(&"openstack") | Some(&"meta-data")) {
            return self.temporary.metadata(request);
        }
        if parts == ["v3.0", "OS-CREDENTIAL", "securitytokens"] && request.method == Method::POST {
            let refuse = |message: &str| {
                fail_as(
                    Envelope::Dbs,
                    "APIGW.0301",
                    &format!("Incorrect IAM authentication information: {message}"),
                )
            };
            return match self.token_caller(request) {
                None => refuse("X-Auth-Token is required"),
                Some(Err(message)) => refuse(message),
                Some(Ok(_)) => match self
                    .temporary
                    .issue_for_token(&request.body, request.received_at)
                {
                    Ok(body) => ok(201, body),
                    Err(message) => fail_as(Envelope::Dbs, "IAM.0011", message),
                },
            };
        }
        let caller = match self.authenticate(request) {
            Ok(caller) => caller,
            Err(refusal) => return refusal,
        };
        if !request.body.is_empty()
            && !request
                .header("content-type")
                .is_some_and(is_json_content_type)
        {
            let envelope = envelope_for(&request.path);
            let code = match envelope {
                Envelope::Dbs => "DBS.200001",
                Envelope::Dns => "DNS.0303",
            };
            return fail_as(
                envelope,
                code,
                "Content-Type must be application/json;charset=UTF-8.",
            );
        }
        match parts.as_slice() {
            ["v3", _, "instances", ..] => self.gaussdb(request, &caller, &parts),
            ["v2", "zones", ..] => self.dns(request, &parts),
            _ => unknown_api(&request.path),
        }
    }

    fn state(&self) -> serde_json::Value {
        let state = self.lock();
        let instances: serde_json::Map<String, serde_json::Value> = state
            .instances
            .iter()
            .map(|(id, instance)| {
                (
                    id.clone(),
                    serde_json::json!({"backup_encryption": instance.encryption.as_str(),
                        "kms_key_id": instance.kms_key_id, "status": instance.status}),
                )
            })
            .collect();
        let zones: serde_json::Map<String, serde_json::Value> = state
            .zones
            .iter()
            .map(|zone| {
                let recordsets: Vec<serde_json::Value> = zone
                    .recordsets
                    .values()
                    .map(|set| recordset_json(zone, set, "ACTIVE"))
                    .collect();
                (
                    zone.name.trim_end_matches('.').to_owned(),
                    serde_json::json!({"id": zone.id, "recordsets": recordsets}),
                )
            })
            .collect();
        serde_json::json!({
            "gaussdb_instances": instances,
            "dns_zones": zones,
            "tokens_issued": state.tokens_issued,
            "temporary_keys_issued": self.temporary.issued(),
            "write_calls": state.writes,
            "write_calls_total": state.writes.values().sum::<u64>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn seed() -> Seed {
        toml::from_str(
            r#"
            kms_keys = ["b82fa43f-f6e8-4ec4-9c31-231bc547c526"]
            dns_zones = ["example.com"]
            [[accounts]]
            access_key_id = "AK"
            secret_access_key = "SK"
            project_id = "p1"
            [[gaussdb_instances]]
            id = "7033e7c3cf93438797d44ad7ae0a7d95in07"
            "#,
        )
        .unwrap()
    }

    fn signed_request(method: Method, path: &str, body: &str, at: OffsetDateTime) -> SimRequest {
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Host".to_owned(), "sim".to_owned()),
            ("X-Project-Id".to_owned(), "p1".to_owned()),
        ];
        super::super::client::sign_headers(
            &mut headers,
            method.as_str(),
            path,
            "",
            body.as_bytes(),
            &signer::format_sdk_date(at),
            "AK",
            &Secret::new("SK"),
        );
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        SimRequest {
            method,
            path: path.to_owned(),
            raw_query: String::new(),
            headers: map,
            body: body.to_owned().into_bytes().into(),
            received_at: OffsetDateTime::now_utc(),
        }
    }

    const PATH: &str = "/v3/p1/instances/7033e7c3cf93438797d44ad7ae0a7d95in07/backups/encryption";

    #[test]
    fn signed_requests_pass_and_stale_or_tampered_ones_do_not() {
        let sim = HuaweiSim::new(seed());
        let now = OffsetDateTime::now_utc();
        let good = sim.handle(&signed_request(Method::GET, PATH, "", now));
        assert_eq!(good.status, 200, "{}", String::from_utf8_lossy(&good.body));
        let stale = sim.handle(&signed_request(
            Method::GET,
            PATH,
            "",
            now - time::Duration::minutes(16),
        ));
        assert_eq!(stale.status, 401);
        assert_eq!(stale.outcome, "APIGW.0301");
        let mut tampered =
            signed_request(Method::POST, PATH, r#"{"encryption_status":"off"}"#, now);
        tampered.body = br#"{"encryption_status":"on"}"#.to_vec().into();
        assert_eq!(sim.handle(&tampered).status, 401);
        assert_eq!(sim.state()["write_calls_total"], 0);
    }

    #[test]
    fn keys_are_checked_before_encryption_is_switched_on() {
        let sim = HuaweiSim::new(Seed {
            disabled_kms_keys: vec!["00000000-0000-0000-0000-000000000000".into()],
            ..seed()
        });
        let now = OffsetDateTime::now_utc();
        let body = |key: &str| {
            format!(r#"{{"encryption_status":"on","type":"kms","kms_key_id":"{key}"}}"#)
        };
        let unknown = sim.handle(&signed_request(
            Method::POST,
            PATH,
            &body("11111111-1111-1111-1111-111111111111"),
            now,
        ));
        assert_eq!(unknown.outcome, "KMS.0207");
        let disabled = sim.handle(&signed_request(
            Method::POST,
            PATH,
            &body("00000000-0000-0000-0000-000000000000"),
            now,
        ));
        assert_eq!(disabled.outcome, "KMS.0209");
        let on = sim.handle(&signed_request(
            Method::POST,
            PATH,
            &body("b82fa43f-f6e8-4ec4-9c31-231bc547c526"),
            now,
        ));
        assert_eq!(on.status, 200);
        assert_eq!(
            sim.state()["gaussdb_instances"]["7033e7c3cf93438797d44ad7ae0a7d95in07"]
                ["backup_encryption"],
            "on"
        );
        assert_eq!(sim.state()["write_calls"]["ModifyBackupEncryptStatus"], 3);
    }

    #[test]
    fn every_error_row_is_listed_once_and_the_fallback_is_a_row() {
        let mut seen = std::collections::BTreeSet::new();
        for row in ERRORS {
            assert!(seen.insert(row.code), "{} listed twice", row.code);
            assert_eq!(documented(row.code), *row);
        }
        assert_eq!(documented("Not.A.Code").code, "DBS.108000");
        assert!(seen.contains("DBS.108000"));
    }

    #[test]
    fn example_seed_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/sim-seed.example.toml"
        ))
        .unwrap();
        let seed = crate::cloud::sim::SimSeed::from_toml(&text).unwrap().huawei;
        assert_eq!(seed.accounts.len(), 1);
        assert_eq!(seed.users.len(), 1);
        assert_eq!(
            seed.gaussdb_instances[0].backup_encryption,
            BackupEncryption::Off
        );
        assert_eq!(seed.dns_zones, vec!["example.com".to_owned()]);
        assert!(!seed.skip_sdk_date_check);
    }

    #[test]
    fn actions_are_named_after_the_sdk_operations() {
        let sim = HuaweiSim::new(Seed::default());
        let request = signed_request(Method::POST, PATH, "", OffsetDateTime::now_utc());
        assert_eq!(sim.action(&request), "ModifyBackupEncryptStatus");
        let request = signed_request(
            Method::DELETE,
            "/v2/zones/z/recordsets/r",
            "",
            OffsetDateTime::now_utc(),
        );
        assert_eq!(sim.action(&request), "DeleteRecordSet");
    }
}
