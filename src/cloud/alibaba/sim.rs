//! The Alibaba part of `certkeeper sim`: verifies ACS3 and RPC V1 signatures exactly as the
//! official SDKs produce them (skew and nonce checks included), enforces the documented
//! per-account rate limits with the engine's token-bucket logic, and keeps CDN and VOD domains,
//! CDN's certificate store, RDS instances, alidns zones and cas certificates (per region),
//! answering with the codes the seeds document. Its rates, refusals and value sets are its own
//! (`sim_tables`), never the client's. The region of a request is the one its `host` names
//! (`vod.cn-shanghai.aliyuncs.com`); the simulator's own loopback address names the default.
//! Requests are plain POST `/` with parameters in the query (as the product SDKs send them)
//! or in a form body (as our client sends them), or both.

use crate::cert::bundle::LeafInfo;
use crate::cloud::alibaba::client::{format_acs_date, parse_acs_date};
use crate::cloud::alibaba::signer::{
    form_decode, signatures_equal, Authorization, CanonicalRequest, RpcCanonical,
};
use crate::cloud::alibaba::sim_oss::{self, OssSim};
use crate::cloud::alibaba::sim_sts::{StsRefusal, StsSeed, StsSim};
use crate::cloud::alibaba::sim_tables;
use crate::cloud::sim::{SimRequest, SimResponse, VendorSim};
use crate::ratelimit::BucketState;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// Headers an ACS3 request must sign.
const REQUIRED_SIGNED_HEADERS: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
];

/// One access key the simulator accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSeed {
    pub access_key_id: String,
    pub access_key_secret: String,
}

/// One RDS instance of the seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsSeed {
    pub id: String,
    /// `MySQL`, `PostgreSQL` or `SQLServer` (DescribeDBInstanceAttribute `Engine`): decides
    /// which ModifyDBInstanceSSL parameters are taken (`sim_tables::RDS_ENGINE_PARAMETERS`).
    #[serde(default = "default_engine")]
    pub engine: String,
    pub connection_string: String,
}

fn default_engine() -> String {
    "MySQL".into()
}

/// The `[alibaba]` section of the simulator seed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub accounts: Vec<AccountSeed>,
    #[serde(default)]
    pub cdn_domains: Vec<String>,
    #[serde(default)]
    pub vod_domains: Vec<String>,
    #[serde(default)]
    pub dns_zones: Vec<String>,
    #[serde(default)]
    pub rds_instances: Vec<RdsSeed>,
    /// Per-action limits (calls per second per account) over the documented defaults.
    #[serde(default)]
    pub rate_limits: HashMap<String, f64>,
    /// The account (UID) each access key belongs to: the limits apply per account, so keys
    /// of one account share its buckets. A key not listed is an account of its own.
    #[serde(default)]
    pub key_accounts: HashMap<String, String>,
    /// Largest accepted difference between the request time and ours (15 min like Alibaba).
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
    /// `false` skips the skew and nonce checks (for replaying recorded requests only).
    #[serde(default = "default_true")]
    pub check_timestamp: bool,
    /// `x-acs-retry-after` (ms) on injected `Throttling*` faults.
    #[serde(default = "default_retry_after")]
    pub throttle_retry_after_ms: u64,
    /// How long an RDS instance stays SSL-modifying after ModifyDBInstanceSSL.
    #[serde(default = "default_rds_delay")]
    pub rds_ssl_delay_ms: u64,
    /// STS and the instance metadata service (`sim_sts`).
    #[serde(default)]
    pub sts: StsSeed,
}

fn default_skew() -> u64 {
    15 * 60
}
fn default_true() -> bool {
    true
}
fn default_retry_after() -> u64 {
    1000
}
fn default_rds_delay() -> u64 {
    2000
}

impl Default for Seed {
    fn default() -> Self {
        Self {
            accounts: Vec::new(),
            cdn_domains: Vec::new(),
            vod_domains: Vec::new(),
            dns_zones: Vec::new(),
            rds_instances: Vec::new(),
            rate_limits: HashMap::new(),
            key_accounts: HashMap::new(),
            max_clock_skew_secs: default_skew(),
            check_timestamp: true,
            throttle_retry_after_ms: default_retry_after(),
            rds_ssl_delay_ms: default_rds_delay(),
            sts: StsSeed::default(),
        }
    }
}

/// A certificate installed somewhere, as the state dump shows it.
#[derive(Debug, Clone, Default)]
struct Installed {
    pem: String,
    fingerprint: String,
    not_after: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default)]
struct DomainState {
    ssl: bool,
    cert: Option<Installed>,
    cert_name: Option<String>,
    cert_type: Option<String>,
    cert_id: Option<String>,
    env: Option<String>,
    writes: u64,
}

#[derive(Debug, Clone)]
struct RdsState {
    seed: RdsSeed,
    ssl: bool,
    ca_type: String,
    cert: Option<Installed>,
    client_ca: bool,
    client_crl: bool,
    acl: Option<String>,
    busy_until: Option<std::time::Instant>,
    writes: u64,
}

impl RdsState {
    fn status(&self) -> &'static str {
        match self.busy_until {
            Some(until) if std::time::Instant::now() < until => "SSLModifying",
            _ => "Running",
        }
    }

    fn is_postgres(&self) -> bool {
        self.seed.engine.eq_ignore_ascii_case("postgresql")
    }
}

#[derive(Debug, Clone)]
struct DnsRecordState {
    id: String,
    rr: String,
    kind: String,
    value: String,
    ttl: u64,
}

#[derive(Debug, Clone)]
struct CasCert {
    id: u64,
    /// The cas region it was uploaded to (the host's region, cn-hangzhou for cas.aliyuncs.com).
    region: String,
    name: String,
    cert: Installed,
}

#[derive(Default)]
struct State {
    cdn: BTreeMap<String, DomainState>,
    vod: BTreeMap<String, DomainState>,
    rds: BTreeMap<String, RdsState>,
    zones: BTreeMap<String, Vec<DnsRecordState>>,
    cas: BTreeMap<u64, CasCert>,
    /// CDN's own store of uploaded certificates, by name.
    cdn_certs: BTreeMap<String, Installed>,
    /// VOD's store of uploaded certificates, by name.
    vod_certs: BTreeMap<String, Installed>,
    next_id: u64,
    nonces: HashMap<String, OffsetDateTime>,
    buckets: HashMap<(String, String), BucketState>,
}

pub struct AlibabaSim {
    seed: Seed,
    sts: StsSim,
    state: Mutex<State>,
    /// OSS buckets, where SQL Server's PFX files are put.
    oss: OssSim,
}

/// A refusal: HTTP status, code, message.
struct Refusal(u16, &'static str, String);

type Answer = Result<Value, Refusal>;

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(status, code, message.into())
}

/// The refusal `code` with the status and message of its row in [`sim_tables`].
fn doc(code: &'static str) -> Refusal {
    match sim_tables::documented(code) {
        Some(row) => Refusal(row.status, row.code, row.message.to_owned()),
        // Unreachable while `tests/alibaba_fidelity.rs` checks every `doc` code has a row.
        None => Refusal(500, "InternalError", format!("no simulator row for {code}")),
    }
}

/// The documented status of `code` with a more precise message.
fn doc_with(code: &'static str, message: impl Into<String>) -> Refusal {
    let status = sim_tables::documented(code).map_or(400, |row| row.status);
    Refusal(status, code, message.into())
}

/// Why a certificate/key pair is refused.
enum PairError {
    Cert,
    Key,
    Mismatch,
    Expired,
}

/// Parses and checks a certificate (first PEM block is the leaf) against its key.
fn check_pair(cert_pem: &str, key_pem: &str) -> Result<Installed, PairError> {
    let leaf = LeafInfo::from_pem("certificate", cert_pem).map_err(|_| PairError::Cert)?;
    let der = pem::parse_many(cert_pem)
        .ok()
        .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
        .ok_or(PairError::Cert)?;
    // PKCS#8, PKCS#1 and SEC1 keys, RSA, ECDSA and Ed25519, as the real services take them.
    let key = crate::cert::key::PrivateKey::from_pem("key", key_pem).map_err(|_| PairError::Key)?;
    if !key
        .matches_certificate_der("certificate", der.contents())
        .map_err(|_| PairError::Key)?
    {
        return Err(PairError::Mismatch);
    }
    if leaf.not_after <= OffsetDateTime::now_utc() {
        return Err(PairError::Expired);
    }
    Ok(Installed {
        pem: cert_pem.to_owned(),
        fingerprint: leaf.fingerprint,
        not_after: Some(leaf.not_after),
    })
}

/// Opens a PFX with `password` and checks its leaf against its key: a wrong password, a
/// file that is no PFX, or a PFX without a key are all `InvalidServerCertOrPrivateKey`.
fn open_pfx(der: &[u8], password: &str) -> Result<Installed, Refusal> {
    let store = p12_keystore::KeyStore::from_pkcs12(der, password)
        .map_err(|_| doc("InvalidServerCertOrPrivateKey"))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| doc("InvalidServerCertOrPrivateKey"))?;
    let cert_pem: String = chain
        .chain()
        .iter()
        .map(|cert| pem::encode(&pem::Pem::new("CERTIFICATE", cert.as_der().to_vec())))
        .collect();
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", chain.key().to_vec()));
    check_pair(&cert_pem, &key_pem).map_err(|_| doc("InvalidServerCertOrPrivateKey"))
}

fn parse_leaf(cert_pem: &str) -> Option<Installed> {
    LeafInfo::from_pem("certificate", cert_pem)
        .ok()
        .map(|leaf| Installed {
            pem: cert_pem.to_owned(),
            fingerprint: leaf.fingerprint,
            not_after: Some(leaf.not_after),
        })
}

/// The decoded parameters of a request.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            refuse(
                400,
                "MissingParameter",
                format!("{name} is mandatory for this action."),
            )
        })
    }
}

/// The region a request was sent to, read from its `host` as the vendor's gateway routes
/// it: `<product>.<region>.aliyuncs.com` names one (reference §3, §5.2). A central host
/// (`cdn.aliyuncs.com`, `cas.aliyuncs.com`) or any other name (the simulator's own loopback
/// address) names none: the product's default region.
fn host_region(request: &SimRequest) -> Option<String> {
    let host = request.header("host")?;
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let inner = name.to_ascii_lowercase();
    let inner = inner.strip_suffix(".aliyuncs.com")?;
    let (_, region) = inner.split_once('.')?;
    // `rds-vpc.cn-hangzhou-finance`: the region is the last label before the suffix.
    Some(region.rsplit('.').next().unwrap_or(region).to_owned())
}

fn params_of(request: &SimRequest) -> Params {
    let mut params = form_decode(&request.raw_query);
    let form = request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form && !request.body.is_empty() {
        params.extend(form_decode(&String::from_utf8_lossy(&request.body)));
    }
    Params(params)
}

fn domain_json(name: &str, domain: &DomainState) -> Value {
    json!({
        "DomainName": name,
        "CertName": domain.cert_name.clone().unwrap_or_default(),
        "CertId": domain.cert_id.clone().unwrap_or_default(),
        "CertType": domain.cert_type.clone().unwrap_or_default(),
        "ServerCertificateStatus": if domain.ssl { "on" } else { "off" },
        "ServerCertificate": domain.cert.as_ref().map(|c| c.pem.clone()).unwrap_or_default(),
        "CertExpireTime": domain.cert.as_ref().and_then(|c| c.not_after).map(format_acs_date).unwrap_or_default(),
        "Status": "success",
    })
}

fn installed_json(cert: &Option<Installed>) -> (Value, Value) {
    (
        json!(cert.as_ref().map(|c| c.fingerprint.clone())),
        json!(cert.as_ref().and_then(|c| c.not_after).map(format_acs_date)),
    )
}

impl AlibabaSim {
    pub fn new(seed: Seed) -> Self {
        let mut state = State {
            next_id: 1000,
            ..State::default()
        };
        for domain in &seed.cdn_domains {
            state
                .cdn
                .insert(domain.to_ascii_lowercase(), DomainState::default());
        }
        for domain in &seed.vod_domains {
            state
                .vod
                .insert(domain.to_ascii_lowercase(), DomainState::default());
        }
        for zone in &seed.dns_zones {
            state.zones.insert(zone.to_ascii_lowercase(), Vec::new());
        }
        for instance in &seed.rds_instances {
            state.rds.insert(
                instance.id.clone(),
                RdsState {
                    seed: instance.clone(),
                    ssl: false,
                    ca_type: "aliyun".into(),
                    cert: None,
                    client_ca: false,
                    client_crl: false,
                    acl: None,
                    busy_until: None,
                    writes: 0,
                },
            );
        }
        Self {
            sts: StsSim::new(seed.sts.clone()),
            seed,
            state: Mutex::new(state),
            oss: OssSim::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain data: a panic mid-update cannot break an invariant we rely on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn secret_of(&self, access_key_id: &str) -> Option<&str> {
        self.seed
            .accounts
            .iter()
            .find(|a| a.access_key_id == access_key_id)
            .map(|a| a.access_key_secret.as_str())
    }

    /// The secret of a request's key: an STS key with its live token, else a seeded key
    /// (which may carry no token).
    fn key_secret(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<String, Refusal> {
        match self.sts.key_secret(access_key_id, token, at) {
            Err(StsRefusal(status, code, message)) => Err(refuse(status, code, message)),
            Ok(Some(secret)) => Ok(secret),
            Ok(None) => self
                .secret_of(access_key_id)
                .map(str::to_owned)
                .ok_or_else(|| doc("InvalidAccessKeyId.NotFound")),
        }
    }

    fn rate_for(&self, action: &str) -> Option<f64> {
        self.seed.rate_limits.get(action).copied().or_else(|| {
            sim_tables::RATE_LIMITS
                .iter()
                .find(|(a, _)| *a == action)
                .map(|(_, r)| *r)
        })
    }

    /// Checks the request time and nonce (15 minutes each, as Alibaba does).
    fn check_freshness(
        &self,
        request: &SimRequest,
        date: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<(), Refusal> {
        if !self.seed.check_timestamp {
            return Ok(());
        }
        let at = date.and_then(parse_acs_date).ok_or_else(|| {
            doc_with(
                "MissingParameter",
                "Timestamp is mandatory for this action.",
            )
        })?;
        let skew = (request.received_at - at).abs();
        if skew > time::Duration::seconds(self.seed.max_clock_skew_secs as i64) {
            return Err(doc("InvalidTimeStamp.Expired"));
        }
        let nonce = nonce.ok_or_else(|| {
            doc_with(
                "MissingParameter",
                "SignatureNonce is mandatory for this action.",
            )
        })?;
        let mut state = self.lock();
        let window = time::Duration::seconds(15 * 60);
        state
            .nonces
            .retain(|_, seen| request.received_at - *seen < window);
        if state.nonces.contains_key(nonce) {
            return Err(doc("SignatureNonceUsed"));
        }
        state.nonces.insert(nonce.to_owned(), request.received_at);
        Ok(())
    }

    /// Verifies the signature; returns the access key id.
    fn authenticate(&self, request: &SimRequest, params: &Params) -> Result<String, Refusal> {
        if let Some(header) = request.header("authorization") {
            let auth = Authorization::parse(header).ok_or_else(|| {
                doc_with(
                    "IncompleteSignature",
                    "The Authorization header is malformed.",
                )
            })?;
            let token = request.header("x-acs-security-token");
            let secret = self.key_secret(&auth.access_key_id, token, request.received_at)?;
            // The SDKs sign the host and every x-acs-* header they send; a request that
            // leaves one out could be replayed with it changed.
            let signed: Vec<&str> = auth.signed_headers.split(';').collect();
            let token_signed = token.is_none() || signed.contains(&"x-acs-security-token");
            for required in REQUIRED_SIGNED_HEADERS
                .into_iter()
                .chain((!token_signed).then_some("x-acs-security-token"))
            {
                if !signed.contains(&required) {
                    return Err(refuse(
                        400,
                        "IncompleteSignature",
                        format!("header {required} must be signed"),
                    ));
                }
            }
            // A body's content type says how it is read (a form body carries parameters):
            // the doc requires it signed whenever there is a body.
            if !request.body.is_empty() && !signed.contains(&"content-type") {
                return Err(doc_with(
                    "IncompleteSignature",
                    "header content-type must be signed when there is a body",
                ));
            }
            let mut headers = Vec::new();
            for name in signed {
                let value = request.header(name).ok_or_else(|| {
                    refuse(
                        400,
                        "IncompleteSignature",
                        format!("signed header {name} is missing"),
                    )
                })?;
                headers.push((name.to_owned(), value.to_owned()));
            }
            let payload_hash = hex::encode(Sha256::digest(&request.body));
            if let Some(claimed) = request.header("x-acs-content-sha256") {
                if claimed != payload_hash {
                    return Err(doc_with(
                        "SignatureDoesNotMatch",
                        "The payload hash does not match the body.",
                    ));
                }
            }
            // Form-body parameters are covered by the payload hash, not the canonical query.
            let canonical = CanonicalRequest::new(
                request.method.as_str(),
                form_decode(&request.raw_query),
                &headers,
                &payload_hash,
            );
            let expected = canonical.string_to_sign().sign(&secret);
            if !signatures_equal(&expected, &auth.signature) {
                return Err(refuse(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature does not conform to Aliyun standards.",
                ));
            }
            self.check_freshness(
                request,
                request.header("x-acs-date"),
                request.header("x-acs-signature-nonce"),
            )?;
            return Ok(auth.access_key_id);
        }
        let signature = params
            .get("Signature")
            .ok_or_else(|| {
                doc_with(
                    "MissingParameter",
                    "Signature is mandatory for this action.",
                )
            })?
            .to_owned();
        let id = params.required("AccessKeyId")?.to_owned();
        let secret = self.key_secret(&id, params.get("SecurityToken"), request.received_at)?;
        let canonical = RpcCanonical {
            params: params
                .0
                .iter()
                .filter(|(n, _)| n != "Signature")
                .cloned()
                .collect(),
        };
        let expected = canonical
            .string_to_sign(request.method.as_str())
            .sign(&secret);
        if !signatures_equal(&expected, &signature) {
            return Err(doc("SignatureDoesNotMatch"));
        }
        self.check_freshness(
            request,
            params.get("Timestamp"),
            params.get("SignatureNonce"),
        )?;
        Ok(id)
    }

    fn throttle(&self, account: &str, action: &str) -> Result<(), Duration> {
        let Some(rate) = self.rate_for(action) else {
            return Ok(());
        };
        let now = tokio::time::Instant::now();
        let mut state = self.lock();
        state
            .buckets
            .entry((account.to_owned(), action.to_owned()))
            // A bucket holds one second's worth, as the documented "N per second" allows.
            .or_insert_with(|| BucketState::new(rate, rate, now))
            .try_take(now)
    }

    fn throttled(&self, request: &SimRequest, retry_after: Duration) -> SimResponse {
        let ms = retry_after.as_millis().max(1) as u64;
        self.envelope(
            request,
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
        .with_header("x-acs-retry-after", ms.to_string())
    }

    fn envelope(
        &self,
        request: &SimRequest,
        status: u16,
        code: &str,
        message: &str,
    ) -> SimResponse {
        let host = request.header("host").unwrap_or("127.0.0.1").to_owned();
        SimResponse::json(
            status,
            &json!({
                "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
                "HostId": host,
                "Code": code,
                "Message": message,
                "Recommend": format!("https://api.alibabacloud.com/troubleshoot?q={code}"),
            }),
        )
        .with_outcome(code)
    }

    fn next_id(state: &mut State) -> u64 {
        state.next_id += 1;
        state.next_id
    }

    /// Sets a CDN or VOD domain's certificate; `legacy` is SetDomainServerCertificate and
    /// `force_set` whether its version documents `ForceSet` (2018-05-10, reference §2.5).
    fn set_domain_cert(
        &self,
        product: &str,
        params: &Params,
        legacy: bool,
        force_set: bool,
    ) -> Answer {
        let domain = params.required("DomainName")?.to_ascii_lowercase();
        let (status_name, pub_name, pri_name) = if legacy {
            ("ServerCertificateStatus", "ServerCertificate", "PrivateKey")
        } else {
            ("SSLProtocol", "SSLPub", "SSLPri")
        };
        let on = match params.get(status_name) {
            Some("on") => true,
            Some("off") | None if legacy => false,
            Some("off") => false,
            _ if legacy => return Err(doc("InvalidServerCertificateStatus.ValueNotSupported")),
            _ => return Err(doc("InvalidSSLProtocol.ValueNotSupported")),
        };
        {
            let state = self.lock();
            let domains = if product == "vod" {
                &state.vod
            } else {
                &state.cdn
            };
            if !domains.contains_key(&domain) {
                return Err(doc("InvalidDomain.NotFound"));
            }
        }
        let cert_type = params.get("CertType").unwrap_or("upload").to_owned();
        let cert_name = params.get("CertName").map(str::to_owned);
        if cert_name.as_ref().is_some_and(|n| n.chars().count() > 128) {
            return Err(doc("InvalidCertName.TooLong"));
        }
        let mut installed = None;
        let mut cert_id = None;
        if on {
            if cert_type == "cas" {
                let id = params.required("CertId")?;
                // The CertId is looked up in the cas region CertRegion names (default
                // cn-hangzhou, seed 001): one uploaded elsewhere is not found there.
                let region = params
                    .get("CertRegion")
                    .unwrap_or(sim_tables::DEFAULT_CERT_REGION);
                if !sim_tables::CERT_REGIONS.contains(&region) {
                    return Err(doc("Abs.CertRegion.ValueNotSupported"));
                }
                let state = self.lock();
                let cert = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| state.cas.get(&id))
                    .filter(|cert| cert.region == region)
                    .ok_or_else(|| doc("Certificate.NotFind"))?;
                if cert
                    .cert
                    .not_after
                    .is_some_and(|t| t <= OffsetDateTime::now_utc())
                {
                    return Err(doc("Certificate.Expired"));
                }
                installed = Some(cert.cert.clone());
                cert_id = Some(id.to_owned());
            } else {
                if legacy && cert_name.is_none() {
                    return Err(doc("CertName.MissingParameter"));
                }
                let cert = params
                    .get(pub_name)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| doc("SSLPub.MissingParameter"))?;
                let key = params
                    .get(pri_name)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| doc("SSLPri.MissingParameter"))?;
                installed = Some(check_pair(cert, key).map_err(|error| match error {
                    PairError::Cert => doc("InvalidSSLPub"),
                    PairError::Key => doc("InvalidSSLPri"),
                    PairError::Mismatch => doc("Certificate.MissMatch"),
                    PairError::Expired => doc("Certificate.Expired"),
                })?);
            }
        }
        let mut state = self.lock();
        if product == "cdn" && cert_type == "upload" {
            if let (Some(name), Some(cert)) = (&cert_name, &installed) {
                // CDN keeps uploaded certificates by name, per account (seed 002). The legacy
                // call refuses a known name unless `ForceSet=1` ("does not perform the check
                // and overwrites ... the same name") and the same content under another
                // name whatever ForceSet says. The current API's page is not in the seeds:
                // it overwrites by name, as the console does.
                if legacy {
                    let forced = force_set && params.get("ForceSet") == Some("1");
                    if !forced && state.cdn_certs.contains_key(name) {
                        return Err(doc("Certificate.Duplicated"));
                    }
                    let elsewhere = state
                        .cdn_certs
                        .iter()
                        .any(|(other, c)| other != name && c.fingerprint == cert.fingerprint);
                    if elsewhere {
                        return Err(doc("CertificateContent.Duplicated"));
                    }
                }
                state.cdn_certs.insert(name.clone(), cert.clone());
            }
        }
        if product == "vod" && cert_type == "upload" {
            if let (Some(name), Some(cert)) = (&cert_name, &installed) {
                // VOD keeps uploaded certificates by name too, and has no ForceSet (seed
                // 001): a known name holding another certificate is `CertNameAlreadyExists`,
                // the same certificate under another name `CertificateContent.Duplicated`.
                // The seed does not say more; the same certificate again under its own name
                // (a second domain) reuses the stored copy, as the console does.
                if let Some(stored) = state.vod_certs.get(name) {
                    if stored.fingerprint != cert.fingerprint {
                        return Err(doc("CertNameAlreadyExists"));
                    }
                }
                let elsewhere = state
                    .vod_certs
                    .iter()
                    .any(|(other, c)| other != name && c.fingerprint == cert.fingerprint);
                if elsewhere {
                    return Err(doc("CertificateContent.Duplicated"));
                }
                state.vod_certs.insert(name.clone(), cert.clone());
            }
        }
        let domains = if product == "vod" {
            &mut state.vod
        } else {
            &mut state.cdn
        };
        if let Some(entry) = domains.get_mut(&domain) {
            entry.ssl = on;
            entry.writes += 1;
            if on {
                entry.cert = installed;
                entry.cert_name = cert_name;
                entry.cert_type = Some(cert_type);
                entry.cert_id = cert_id;
                entry.env = params.get("Env").map(str::to_owned);
            }
        }
        Ok(json!({}))
    }

    fn describe_domain_cert(&self, product: &str, params: &Params) -> Answer {
        let domain = params.required("DomainName")?.to_ascii_lowercase();
        let state = self.lock();
        let domains = if product == "vod" {
            &state.vod
        } else {
            &state.cdn
        };
        let entry = domains
            .get(&domain)
            .ok_or_else(|| doc("InvalidDomain.NotFound"))?;
        let infos = if entry.ssl || entry.cert.is_some() {
            vec![domain_json(&domain, entry)]
        } else {
            Vec::new()
        };
        Ok(json!({"CertInfos": {"CertInfo": infos}}))
    }

    fn rds_instance<'a>(
        state: &'a mut State,
        params: &Params,
    ) -> Result<&'a mut RdsState, Refusal> {
        let id = params.required("DBInstanceId")?;
        state
            .rds
            .get_mut(id)
            .ok_or_else(|| doc("InvalidDBInstanceId.NotFound"))
    }

    fn modify_rds_ssl(&self, params: &Params) -> Answer {
        let delay = Duration::from_millis(self.seed.rds_ssl_delay_ms);
        let mut state = self.lock();
        let instance = Self::rds_instance(&mut state, params)?;
        if instance.status() != "Running" {
            return Err(doc("IncorrectDBSslStatus"));
        }
        let connection = params.required("ConnectionString")?;
        if connection != instance.seed.connection_string {
            return Err(doc("Endpoint.NotFound"));
        }
        let enabled = match params.get("SSLEnabled") {
            Some("1") | None => true,
            Some("0") => false,
            Some(_) => return Err(doc("InvalidSSLStatus")),
        };
        let engine = instance.seed.engine.as_str();
        let refused = sim_tables::RDS_ENGINE_PARAMETERS
            .iter()
            .find(|(name, engines)| {
                params.get(name).is_some()
                    && !engines.iter().any(|e| e.eq_ignore_ascii_case(engine))
            });
        if let Some((name, _)) = refused {
            return Err(doc_with(
                "InvalidDBInstanceEngineType.Format",
                format!("the DB instance engine type does not support this operation: {name} on {engine}."),
            ));
        }
        // An absent switch keeps what the instance has (the seed documents no default): only
        // `0` turns a client CA or CRL off again.
        let client_ca = match params.get("ClientCAEnabled") {
            Some("1") => true,
            Some("0") => false,
            _ => instance.client_ca,
        };
        let client_crl = match params.get("ClientCrlEnabled") {
            Some("1") => true,
            Some("0") => false,
            _ => instance.client_crl && client_ca,
        };
        if params.get("ClientCAEnabled") == Some("1") {
            let ca = params.get("ClientCACert").unwrap_or_default();
            if parse_leaf(ca).is_none() {
                return Err(doc("InvalidClientCACert"));
            }
        }
        if params.get("ClientCrlEnabled") == Some("1") {
            if !client_ca {
                return Err(doc("InvalidClientCrl.Permission"));
            }
            if !params
                .get("ClientCertRevocationList")
                .unwrap_or_default()
                .contains("BEGIN X509 CRL")
            {
                return Err(doc("InvalidClientCrl"));
            }
        }
        for acl in ["ACL", "ReplicationACL"] {
            if let Some(value) = params.get(acl) {
                if !client_ca {
                    return Err(doc("InvalidACL.Permission"));
                }
                if !sim_tables::RDS_ACL_VALUES.contains(&value) {
                    return Err(doc("InvalidACL.NotFound"));
                }
            }
        }
        // SQL Server's custom certificate: a PFX in OSS and its password (seed 000).
        let pfx = params.get("Certificate").filter(|v| !v.is_empty());
        let ca_type = match (params.get("CAType"), pfx) {
            (Some(ca_type), _) => ca_type,
            (None, Some(_)) => "custom",
            (None, None) => "aliyun",
        };
        let mut installed = None;
        if let (true, Some(location)) = (enabled, pfx) {
            let password = params
                .get("PassWord")
                .ok_or_else(|| doc("RequiredParam.NotFound"))?;
            let der = self
                .oss
                .read(location)
                .map_err(|why| doc_with("InvalidServerCertOrPrivateKey", why))?;
            installed = Some(open_pfx(&der, password)?);
        } else if enabled {
            match ca_type {
                "custom" => {
                    let cert = params.get("ServerCert").filter(|v| !v.is_empty());
                    let key = params.get("ServerKey").filter(|v| !v.is_empty());
                    let (Some(cert), Some(key)) = (cert, key) else {
                        return Err(doc("RequiredParam.NotFound"));
                    };
                    installed = Some(
                        check_pair(cert, key).map_err(|_| doc("InvalidServerCertOrPrivateKey"))?,
                    );
                }
                "aliyun" => {}
                _ => return Err(doc("InvalidCAType.NotFound")),
            }
        }
        instance.ssl = enabled;
        instance.ca_type = ca_type.to_owned();
        instance.cert = installed;
        instance.client_ca = client_ca;
        instance.client_crl = client_crl;
        instance.acl = params.get("ACL").map(str::to_owned);
        instance.writes += 1;
        instance.busy_until = Some(std::time::Instant::now() + delay);
        Ok(json!({}))
    }

    fn describe_rds_ssl(&self, params: &Params) -> Answer {
        let mut state = self.lock();
        let instance = Self::rds_instance(&mut state, params)?;
        let pg = instance.is_postgres();
        let enabled = match (pg, instance.ssl) {
            (true, true) => "on",
            (true, false) => "off",
            (false, true) => "Yes",
            (false, false) => "No",
        };
        let mut reply = json!({
            "SSLEnabled": enabled,
            "ConnectionString": instance.seed.connection_string,
            "CAType": instance.ca_type,
            "SSLExpireTime": instance.cert.as_ref().and_then(|c| c.not_after).map(format_acs_date).unwrap_or_default(),
            "RequireUpdate": if pg { "0" } else { "No" },
        });
        if pg {
            reply["ServerCert"] = json!(instance
                .cert
                .as_ref()
                .map(|c| c.pem.clone())
                .unwrap_or_default());
            reply["LastModifyStatus"] = json!(if instance.status() == "Running" {
                "success"
            } else {
                "setting"
            });
            reply["ACL"] = json!(instance.acl.clone().unwrap_or_default());
        }
        Ok(reply)
    }

    fn describe_rds_attribute(&self, params: &Params) -> Answer {
        let mut state = self.lock();
        let instance = Self::rds_instance(&mut state, params)?;
        Ok(json!({"Items": {"DBInstanceAttribute": [{
            "DBInstanceId": instance.seed.id,
            "DBInstanceStatus": instance.status(),
            "Engine": instance.seed.engine,
            "ConnectionString": instance.seed.connection_string,
            "LockMode": "Unlock",
        }]}}))
    }

    fn zone_mut<'a>(
        state: &'a mut State,
        params: &Params,
    ) -> Result<&'a mut Vec<DnsRecordState>, Refusal> {
        let zone = params.required("DomainName")?.to_ascii_lowercase();
        state
            .zones
            .get_mut(&zone)
            .ok_or_else(|| doc("InvalidDomainName.NoExist"))
    }

    fn add_record(&self, params: &Params) -> Answer {
        let rr = params.required("RR")?.to_owned();
        let kind = params.required("Type")?.to_owned();
        let value = params.required("Value")?.to_owned();
        let ttl = params
            .get("TTL")
            .and_then(|t| t.parse().ok())
            .unwrap_or(600);
        let mut state = self.lock();
        let id = Self::next_id(&mut state).to_string();
        let records = Self::zone_mut(&mut state, params)?;
        if records
            .iter()
            .any(|r| r.rr == rr && r.kind == kind && r.value == value)
        {
            return Err(doc("DomainRecordDuplicate"));
        }
        records.push(DnsRecordState {
            id: id.clone(),
            rr,
            kind,
            value,
            ttl,
        });
        Ok(json!({"RecordId": id}))
    }

    fn delete_record(&self, params: &Params) -> Answer {
        let id = params.required("RecordId")?;
        let mut state = self.lock();
        for records in state.zones.values_mut() {
            if let Some(index) = records.iter().position(|r| r.id == id) {
                records.remove(index);
                return Ok(json!({"RecordId": id}));
            }
        }
        Err(doc("DomainRecordNotBelongToUser"))
    }

    fn describe_records(&self, params: &Params) -> Answer {
        let rr = params.get("RRKeyWord").map(str::to_owned);
        let kind = params.get("Type").map(str::to_owned);
        let zone = params.required("DomainName")?.to_ascii_lowercase();
        let mut state = self.lock();
        let records = Self::zone_mut(&mut state, params)?;
        let list: Vec<Value> = records
            .iter()
            .filter(|r| rr.as_ref().is_none_or(|k| r.rr.contains(k.as_str())))
            .filter(|r| kind.as_ref().is_none_or(|k| &r.kind == k))
            .map(|r| json!({"RecordId": r.id, "RR": r.rr, "Type": r.kind, "Value": r.value, "TTL": r.ttl, "DomainName": zone, "Line": "default", "Status": "ENABLE"}))
            .collect();
        Ok(
            json!({"TotalCount": list.len(), "PageNumber": 1, "PageSize": 500, "DomainRecords": {"Record": list}}),
        )
    }

    fn describe_domains(&self) -> Answer {
        let state = self.lock();
        let list: Vec<Value> = state
            .zones
            .keys()
            .map(|z| json!({"DomainName": z}))
            .collect();
        Ok(
            json!({"TotalCount": list.len(), "PageNumber": 1, "PageSize": 100, "Domains": {"Domain": list}}),
        )
    }

    fn upload_cas(&self, params: &Params, region: &str) -> Answer {
        let name = params.required("Name")?.to_owned();
        let cert = params.required("Cert")?;
        let key = params.required("Key")?;
        let installed = check_pair(cert, key).map_err(|error| match error {
            PairError::Cert | PairError::Key => doc("Certificate.FormatError"),
            PairError::Mismatch => doc("Certificate.MissMatch"),
            PairError::Expired => doc("Certificate.Expired"),
        })?;
        let mut state = self.lock();
        // Names are unique per account in each region's service (reference §5.2).
        if state
            .cas
            .values()
            .any(|c| c.name == name && c.region == region)
        {
            return Err(doc("NameRepeat"));
        }
        let id = Self::next_id(&mut state);
        state.cas.insert(
            id,
            CasCert {
                id,
                region: region.to_owned(),
                name,
                cert: installed,
            },
        );
        Ok(json!({"CertId": id, "ResourceId": format!("cas-upload-{id}")}))
    }

    fn list_cas(&self, params: &Params, region: &str) -> Answer {
        let keyword = params.get("Keyword").unwrap_or_default();
        let state = self.lock();
        let list: Vec<Value> = state
            .cas
            .values()
            .filter(|c| c.region == region && c.name.contains(keyword))
            .map(|c| json!({"CertificateId": c.id, "Name": c.name, "Sha2": c.cert.fingerprint.to_uppercase(), "Upload": true,
                "EndDate": c.cert.not_after.map(format_acs_date).unwrap_or_default()}))
            .collect();
        Ok(
            json!({"TotalCount": list.len(), "CurrentPage": 1, "ShowSize": list.len(), "CertificateOrderList": list}),
        )
    }

    fn delete_cas(&self, params: &Params, region: &str) -> Answer {
        let id: u64 = params
            .required("CertId")?
            .parse()
            .map_err(|_| doc("InvalidParameter"))?;
        let mut state = self.lock();
        if state.cas.get(&id).is_none_or(|c| c.region != region) {
            return Err(doc("CertNotExist"));
        }
        let id_text = id.to_string();
        let in_use = state
            .cdn
            .values()
            .chain(state.vod.values())
            .any(|d| d.cert_id.as_deref() == Some(id_text.as_str()));
        if in_use {
            return Err(doc("DeleteFailed"));
        }
        state.cas.remove(&id);
        Ok(json!({}))
    }

    /// Runs `action`; `region` is the one the request's host names, if any.
    fn apply(&self, action: &str, version: &str, params: &Params, region: Option<&str>) -> Answer {
        let cas_region = region.unwrap_or(sim_tables::DEFAULT_CERT_REGION);
        match (action, version) {
            ("SetCdnDomainSSLCertificate", "2018-05-10") => {
                self.set_domain_cert("cdn", params, false, false)
            }
            ("SetDomainServerCertificate", "2014-11-11" | "2018-05-10") => {
                self.set_domain_cert("cdn", params, true, version == "2018-05-10")
            }
            ("DescribeDomainCertificateInfo", "2018-05-10") => {
                self.describe_domain_cert("cdn", params)
            }
            ("SetVodDomainSSLCertificate", "2017-03-21") => {
                self.set_domain_cert("vod", params, false, false)
            }
            ("DescribeVodDomainCertificateInfo", "2017-03-21") => {
                self.describe_domain_cert("vod", params)
            }
            ("ModifyDBInstanceSSL", "2014-08-15") => self.modify_rds_ssl(params),
            ("DescribeDBInstanceSSL", "2014-08-15") => self.describe_rds_ssl(params),
            ("DescribeDBInstanceAttribute", "2014-08-15") => self.describe_rds_attribute(params),
            ("AddDomainRecord", "2015-01-09") => self.add_record(params),
            ("DeleteDomainRecord", "2015-01-09") => self.delete_record(params),
            ("DescribeDomainRecords", "2015-01-09") => self.describe_records(params),
            ("DescribeDomains", "2015-01-09") => self.describe_domains(),
            ("UploadUserCertificate", "2020-04-07") => self.upload_cas(params, cas_region),
            ("ListUserCertificateOrder", "2020-04-07") => self.list_cas(params, cas_region),
            ("DeleteUserCertificate", "2020-04-07") => self.delete_cas(params, cas_region),
            _ => Err(refuse(
                404,
                "InvalidAction.NotFound",
                format!("Specified api {action} ({version}) is not found."),
            )),
        }
    }
}

impl VendorSim for AlibabaSim {
    fn vendor(&self) -> &'static str {
        "alibaba"
    }

    fn claims(&self, path: &str) -> bool {
        path == "/" || OssSim::claims(path) || path.starts_with("/latest/")
    }

    fn action(&self, request: &SimRequest) -> String {
        if OssSim::claims(&request.path) {
            return "PutObject".into();
        }
        if request.path.starts_with("/latest/") {
            return "InstanceMetadata".into();
        }
        request
            .header("x-acs-action")
            .map(str::to_owned)
            .or_else(|| params_of(request).get("Action").map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    }

    fn error(&self, request: &SimRequest, status: u16, code: &str, message: &str) -> SimResponse {
        if OssSim::claims(&request.path) {
            return sim_oss::error_document(status, code, message);
        }
        let response = self.envelope(request, status, code, message);
        if code.starts_with("Throttling") {
            response.with_header(
                "x-acs-retry-after",
                self.seed.throttle_retry_after_ms.to_string(),
            )
        } else {
            response
        }
    }

    fn handle(&self, request: &SimRequest) -> SimResponse {
        if OssSim::claims(&request.path) {
            return self.oss.put_object(
                request,
                |id, token| {
                    // OSS names its own codes: an unknown key, or a token STS would refuse.
                    let at = OffsetDateTime::now_utc();
                    match self.key_secret(id, token, at) {
                        Ok(secret) => Ok(secret),
                        Err(Refusal(_, "InvalidAccessKeyId.NotFound", _)) => Err((
                            "InvalidAccessKeyId",
                            "The OSS Access Key Id you provided does not exist in our records."
                                .to_owned(),
                        )),
                        Err(Refusal(_, _, message)) => Err(("InvalidSecurityToken", message)),
                    }
                },
                self.seed.check_timestamp,
            );
        }
        if request.path.starts_with("/latest/") {
            return self.sts.metadata(request);
        }
        let params = params_of(request);
        let get = |name: &str| params.get(name).map(str::to_owned);
        // STS: AssumeRoleWithOIDC is anonymous (the OIDC token is the proof); AssumeRole is
        // signed like any call.
        let sts_answer = |answer: Result<Value, StsRefusal>| match answer {
            Ok(mut body) => {
                body["RequestId"] = json!(uuid::Uuid::new_v4().to_string().to_uppercase());
                SimResponse::json(200, &body)
            }
            Err(StsRefusal(status, code, message)) => {
                self.envelope(request, status, code, &message)
            }
        };
        let action = self.action(request);
        if action == "AssumeRoleWithOIDC" {
            return sts_answer(self.sts.assume_role_with_oidc(get, request.received_at));
        }
        let account = match self.authenticate(request, &params) {
            Ok(account) => account,
            Err(Refusal(status, code, message)) => {
                return self.envelope(request, status, code, &message)
            }
        };
        if action == "AssumeRole" {
            return sts_answer(self.sts.assume_role(get, request.received_at));
        }
        let version = request
            .header("x-acs-version")
            .or_else(|| params.get("Version"))
            .unwrap_or_default()
            .to_owned();
        let account = self
            .seed
            .key_accounts
            .get(&account)
            .cloned()
            .unwrap_or(account);
        if let Err(wait) = self.throttle(&account, &action) {
            return self.throttled(request, wait);
        }
        let region = host_region(request);
        // VOD domain APIs are served from cn-shanghai only (seed 001, reference §3).
        if version == "2017-03-21"
            && region
                .as_deref()
                .is_some_and(|r| r != sim_tables::VOD_REGION)
        {
            let Refusal(status, code, _) = doc("UnsupportedOperation");
            let message = format!(
                "{action} is served only in {}, not {}.",
                sim_tables::VOD_REGION,
                region.unwrap_or_default()
            );
            return self.envelope(request, status, code, &message);
        }
        match self.apply(&action, &version, &params, region.as_deref()) {
            Ok(mut body) => {
                body["RequestId"] = json!(uuid::Uuid::new_v4().to_string().to_uppercase());
                SimResponse::json(200, &body)
            }
            Err(Refusal(status, code, message)) => self.envelope(request, status, code, &message),
        }
    }

    fn state(&self) -> Value {
        let state = self.lock();
        let domains = |map: &BTreeMap<String, DomainState>| -> Value {
            map.iter()
                .map(|(name, d)| {
                    let (fingerprint, not_after) = installed_json(&d.cert);
                    (name.clone(), json!({"ssl": d.ssl, "fingerprint": fingerprint, "not_after": not_after,
                        "cert_type": d.cert_type, "cert_id": d.cert_id, "env": d.env, "writes": d.writes}))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let rds: serde_json::Map<String, Value> = state
            .rds
            .iter()
            .map(|(id, r)| {
                let (fingerprint, not_after) = installed_json(&r.cert);
                (id.clone(), json!({"ssl": r.ssl, "fingerprint": fingerprint, "not_after": not_after,
                    "status": r.status(), "engine": r.seed.engine, "ca_type": r.ca_type, "client_ca": r.client_ca, "client_crl": r.client_crl, "writes": r.writes}))
            })
            .collect();
        let zones: serde_json::Map<String, Value> = state
            .zones
            .iter()
            .map(|(zone, records)| {
                (zone.clone(), records.iter().map(|r| json!({"id": r.id, "rr": r.rr, "type": r.kind, "value": r.value, "ttl": r.ttl})).collect())
            })
            .collect();
        let cas: Vec<Value> = state
            .cas
            .values()
            .map(|c| json!({"id": c.id, "region": c.region, "name": c.name, "fingerprint": c.cert.fingerprint}))
            .collect();
        let stored = |map: &BTreeMap<String, Installed>| -> Value {
            map.iter()
                .map(|(name, c)| (name.clone(), json!({"fingerprint": c.fingerprint})))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({"cdn_certificates": stored(&state.cdn_certs), "vod_certificates": stored(&state.vod_certs), "cdn_domains": domains(&state.cdn), "vod_domains": domains(&state.vod), "rds_instances": rds, "dns_zones": zones, "cas_certificates": cas, "oss_objects": self.oss.names(), "sts_keys_issued": self.sts.issued()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;

    #[test]
    fn pairs_are_checked() {
        let a = testing::fresh(&["a.example.com"]);
        let b = testing::fresh(&["b.example.com"]);
        assert!(check_pair(&a.leaf_pem, a.key_pem.expose()).is_ok());
        assert!(matches!(
            check_pair(&a.leaf_pem, b.key_pem.expose()),
            Err(PairError::Mismatch)
        ));
        assert!(matches!(
            check_pair("junk", a.key_pem.expose()),
            Err(PairError::Cert)
        ));
        assert!(matches!(
            check_pair(&a.leaf_pem, "junk"),
            Err(PairError::Key)
        ));
        // An SEC1 (`EC PRIVATE KEY`) form of the same key is accepted too.
        let sec1 = testing::sec1_pem(&a.key_pem);
        assert!(check_pair(&a.leaf_pem, sec1.expose()).is_ok());
        let now = OffsetDateTime::now_utc();
        let old = testing::self_signed(
            &["o.example.com"],
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        );
        assert!(matches!(
            check_pair(&old.leaf_pem, old.key_pem.expose()),
            Err(PairError::Expired)
        ));
    }

    #[test]
    fn example_seed_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/sim-seed.example.toml"
        ))
        .unwrap();
        let seed = crate::cloud::sim::SimSeed::from_toml(&text).unwrap();
        assert!(!seed.alibaba.accounts.is_empty());
        assert!(!seed.alibaba.rds_instances.is_empty());
    }
}
