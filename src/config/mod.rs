//! The configuration users write (TOML, default `/etc/certkeeper/certkeeper.toml`) and its
//! validation. Loading is two steps: `parse` turns text into typed sections (unknown keys
//! refused with the nearest valid key suggested; durations, cron schedules and maintenance
//! windows parsed into their types once, here), then `validate` checks values and
//! cross-references without touching the file system, network or environment. Every
//! problem is reported as `file:line:column: key.path: message`, located in one parse of
//! the document whatever the number of problems. `check` (not `--offline`) then resolves
//! what `run` will need ([`preflight`]).

pub mod credentials;
pub mod duration;
mod locate;
pub mod preflight;
pub mod store;

use crate::cloud::registry::{self, PolicyProduct, TargetProduct};
use crate::cloud::PolicyMode;
use crate::secret::Secret;
use crate::window::Schedule;
use credentials::{AuthMethod, CredentialsConfig, Provider};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::{format_duration, parse_duration};
pub use locate::Position;

/// Where the config lives when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/certkeeper/certkeeper.toml";

/// Config files larger than this are refused before parsing.
// 16 MiB: a 100,000-target fleet is ≈ 11 MB of TOML (BENCHMARKS.md, scale curve); 4 MiB
// stopped at ≈ 38,000 targets.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// One problem found by validation, located by its key path (`target[2].domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, with `[i]` for array entries: `target[2].maintenance_window.schedule`.
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A problem with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedIssue {
    pub file: String,
    pub position: Option<Position>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for LocatedIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(f, "{}:{}:{}: ", self.file, position.line, position.column)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{}", list(.0))]
    Invalid(Vec<LocatedIssue>),
}

fn list(issues: &[LocatedIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The message with at most `limit` issues and a count of the rest: what a log line
    /// carries (a 50,000-issue config must not become a 4 MB log line).
    pub fn summary(&self, limit: usize) -> String {
        let issues = self.issues();
        if issues.len() <= limit {
            return self.to_string();
        }
        format!(
            "{}\n... and {} more issues (`certkeeper check` lists them all)",
            list(&issues[..limit]),
            issues.len() - limit
        )
    }

    pub fn issues(&self) -> &[LocatedIssue] {
        match self {
            ConfigError::Invalid(issues) => issues,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// Cron schedule of drift scans (every target's live state) and policy checks.
    #[serde(default = "default_scan_schedule")]
    pub scan_schedule: Schedule,
    /// How long before expiry a certificate still counts as usable for deploys.
    #[serde(
        default = "default_grace_period",
        deserialize_with = "duration::deserialize"
    )]
    pub grace_period: Duration,
    /// How many deploys may run at once per vendor account.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long SIGTERM waits for in-flight deploys before exiting.
    #[serde(
        default = "default_shutdown_grace",
        deserialize_with = "duration::deserialize"
    )]
    pub shutdown_grace: Duration,
    /// How long a running pass may go without progress before `/healthz` fails and the
    /// systemd watchdog is no longer fed.
    #[serde(
        default = "default_stall_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub stall_timeout: Duration,
    /// Accept a config that manages nothing (no certificate, no policy). Off by default, so
    /// an empty or truncated file is refused instead of silently managing nothing.
    #[serde(default)]
    pub allow_empty: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            metrics_listen: default_metrics_listen(),
            scan_schedule: default_scan_schedule(),
            grace_period: default_grace_period(),
            concurrency: default_concurrency(),
            shutdown_grace: default_shutdown_grace(),
            stall_timeout: default_stall_timeout(),
            allow_empty: false,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/certkeeper")
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_scan_schedule() -> Schedule {
    match Schedule::parse("*/15 * * * *") {
        Ok(schedule) => schedule,
        // The constant above is a valid expression (the `defaults_are_valid` test).
        Err(error) => unreachable!("{error}"),
    }
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_stall_timeout() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_grace_period() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_concurrency() -> usize {
    8
}

/// ACME challenge types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChallengeType {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "dns-01")]
    Dns01,
}

/// `[acme.NAME]`: one ACME account at one CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    pub directory: String,
    #[serde(default)]
    pub contact: Vec<String>,
    pub eab_kid: Option<String>,
    pub eab_hmac_key: Option<Secret>,
    pub eab_hmac_key_env: Option<String>,
    pub eab_hmac_key_file: Option<PathBuf>,
    #[serde(default = "default_challenge")]
    pub challenge: ChallengeType,
    /// Credentials of the DNS provider for dns-01 (an `alibaba` or `huawei` account).
    pub dns_credentials: Option<String>,
    #[serde(default = "default_http01_listen")]
    pub http01_listen: String,
    /// Extra CA certificates (PEM) to trust for this directory, e.g. Pebble's.
    pub ca_bundle: Option<PathBuf>,
    pub profile: Option<String>,
    #[serde(default = "default_true")]
    pub ari: bool,
    /// How long to wait for DNS-01 records to propagate.
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub dns_propagation_wait: Option<Duration>,
    /// Orders in flight at once for this account.
    pub max_concurrent_orders: Option<usize>,
}

fn default_challenge() -> ChallengeType {
    ChallengeType::Http01
}
fn default_http01_listen() -> String {
    "0.0.0.0:80".into()
}
fn default_true() -> bool {
    true
}

/// `[local_ca.NAME]`: an internal CA for internal endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalCaConfig {
    /// Root certificate and key files; when absent the root is generated once and kept in the store.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(
        default = "default_leaf_lifetime",
        deserialize_with = "duration::deserialize"
    )]
    pub leaf_lifetime: Duration,
    pub common_name: Option<String>,
}

fn default_leaf_lifetime() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SourceConfig {
    Acme(String),
    File {
        cert: PathBuf,
        key: PathBuf,
        chain: Option<PathBuf>,
    },
    LocalCa(String),
}

impl SourceConfig {
    /// How the store and `status` name the source: `acme:NAME`, `file`, `local_ca:NAME`.
    pub fn label(&self) -> String {
        match self {
            SourceConfig::Acme(name) => format!("acme:{name}"),
            SourceConfig::File { .. } => "file".into(),
            SourceConfig::LocalCa(name) => format!("local_ca:{name}"),
        }
    }
    /// The kind of source, without its name: the `source` label of
    /// `certkeeper_renewals_total` (`acme`, `file`, `local_ca`).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Acme(_) => "acme",
            SourceConfig::File { .. } => "file",
            SourceConfig::LocalCa(_) => "local_ca",
        }
    }
}

/// Private key algorithms certkeeper generates (`key = "ecdsa-p256"` ...): the certificate
/// model's own key type, so the config and key generation cannot disagree.
pub use crate::cert::KeyType as KeyAlgorithm;

/// `[[certificate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub name: String,
    pub domains: Vec<String>,
    pub source: SourceConfig,
    #[serde(default)]
    pub key: KeyAlgorithm,
    #[serde(default, deserialize_with = "duration::deserialize_option")]
    pub renew_before: Option<Duration>,
    pub renew_ratio: Option<f64>,
    #[serde(default)]
    pub deploy_to: Vec<String>,
}

/// `maintenance_window = { schedule = "<cron>", duration = "2h" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub schedule: Schedule,
    #[serde(deserialize_with = "duration::deserialize")]
    pub duration: Duration,
}

impl WindowConfig {
    /// The window (both parts were parsed at load; this refuses a zero duration).
    pub fn build(&self) -> Result<crate::window::MaintenanceWindow, String> {
        crate::window::MaintenanceWindow::from_schedule(self.schedule.clone(), self.duration)
    }
}

/// The kind-specific part of a `[[target]]`: its product's settings, parsed by the product
/// its `kind` names in `cloud::registry::TARGETS`.
pub type TargetSettings = registry::Settings<dyn TargetProduct>;

/// The keys every `[[target]]` has, whatever its kind.
const TARGET_COMMON_KEYS: &[&str] = &["name", "kind", "credentials", "maintenance_window"];
const POLICY_COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "credentials",
    "resources",
    "mode",
    "maintenance_window",
    "schedule",
];

/// `[[target]]`.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub kind: String,
    pub credentials: Option<String>,
    pub maintenance_window: Option<WindowConfig>,
    pub settings: TargetSettings,
}

/// The kind-specific part of a `[[policy]]`, parsed by the product its `kind` names in
/// `cloud::registry::POLICIES`.
pub type PolicySettings = registry::Settings<dyn PolicyProduct>;

/// `[[policy]]`.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub name: String,
    pub kind: String,
    pub credentials: String,
    pub resources: Vec<String>,
    pub mode: PolicyMode,
    pub maintenance_window: Option<WindowConfig>,
    /// Cron schedule of checks; the daemon's scan schedule when absent.
    pub schedule: Option<Schedule>,
    pub settings: PolicySettings,
}

/// The whole configuration, parsed and validated.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub store: store::StoreConfig,
    pub credentials: BTreeMap<String, CredentialsConfig>,
    pub acme: BTreeMap<String, AcmeConfig>,
    pub local_ca: BTreeMap<String, LocalCaConfig>,
    pub certificates: Vec<CertificateConfig>,
    pub targets: Vec<TargetConfig>,
    pub policies: Vec<PolicyConfig>,
}

/// The document as serde sees it before the kind-specific parts are split out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: DaemonConfig,
    #[serde(default)]
    store: store::StoreConfig,
    #[serde(default)]
    credentials: BTreeMap<String, CredentialsConfig>,
    #[serde(default)]
    acme: BTreeMap<String, AcmeConfig>,
    #[serde(default)]
    local_ca: BTreeMap<String, LocalCaConfig>,
    #[serde(default)]
    certificate: Vec<CertificateConfig>,
    #[serde(default)]
    target: Vec<toml::Table>,
    #[serde(default)]
    policy: Vec<toml::Table>,
}

/// A loaded config with the warnings validation raised (literal secrets, ...).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<LocatedIssue>,
}

/// Reads, parses and validates the config at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let (file, text) = read(path)?;
    load_str(&file, &text)
}

/// `certkeeper check`: [`load`], then (unless `offline`) what `run` will need
/// ([`preflight::preflight`]: secrets, certificate files, the state directory), every
/// problem located in the file.
pub fn check(
    path: &Path,
    environment: &dyn credentials::SecretEnvironment,
    offline: bool,
) -> Result<Loaded, ConfigError> {
    let (file, text) = read(path)?;
    let loaded = load_str(&file, &text)?;
    if offline {
        return Ok(loaded);
    }
    let issues = preflight::preflight(&loaded.config, environment);
    if issues.is_empty() {
        return Ok(loaded);
    }
    let locator = locate::Locator::new(&text);
    Err(ConfigError::Invalid(
        issues
            .into_iter()
            .map(|issue| issue.into_located(&file, &locator))
            .collect(),
    ))
}

/// The config's text and its name for messages; refuses files over [`MAX_CONFIG_BYTES`].
fn read(path: &Path) -> Result<(String, String), ConfigError> {
    use std::io::Read;
    let file = path.display().to_string();
    let unreadable = |reason: String| ConfigError::Read {
        file: file.clone(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|error| unreadable(error.to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|opened| opened.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(|error| unreadable(error.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(unreadable(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok((file, text))
}

/// Parses and validates config text; `file` names it in messages.
pub fn load_str(file: &str, text: &str) -> Result<Loaded, ConfigError> {
    let config = parse(text).map_err(|issue| {
        ConfigError::Invalid(vec![issue.into_located(file, &locate::Locator::new(text))])
    })?;
    let (errors, warnings) = validate(&config);
    if errors.is_empty() && warnings.is_empty() {
        return Ok(Loaded {
            config,
            warnings: Vec::new(),
        });
    }
    // One parse of the document locates every issue (see `locate::Locator`).
    let locator = locate::Locator::new(text);
    let locate_all = |issues: Vec<ConfigIssue>| -> Vec<LocatedIssue> {
        issues
            .into_iter()
            .map(|issue| issue.into_located(file, &locator))
            .collect()
    };
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(locate_all(errors)));
    }
    Ok(Loaded {
        config,
        warnings: locate_all(warnings),
    })
}

/// A parse problem: either located by the TOML parser itself (syntax) or by key path.
enum ParseIssue {
    Syntax {
        offset: Option<usize>,
        message: String,
    },
    Key(ConfigIssue),
}

impl ConfigIssue {
    fn into_located(self, file: &str, locator: &locate::Locator) -> LocatedIssue {
        LocatedIssue {
            file: file.to_owned(),
            position: locator.locate(&self.path),
            path: self.path,
            message: self.message,
        }
    }
}

impl ParseIssue {
    fn into_located(self, file: &str, locator: &locate::Locator) -> LocatedIssue {
        match self {
            ParseIssue::Syntax { offset, message } => LocatedIssue {
                file: file.to_owned(),
                position: offset.map(|offset| locator.position_of(offset)),
                path: String::new(),
                message,
            },
            ParseIssue::Key(issue) => issue.into_located(file, locator),
        }
    }
}

fn parse(text: &str) -> Result<Config, ParseIssue> {
    // Syntax first, so a TOML error is reported at the parser's own position.
    if let Err(error) = text.parse::<toml::Table>() {
        return Err(ParseIssue::Syntax {
            offset: error.span().map(|span| span.start),
            message: format!("invalid TOML: {}", error.message()),
        });
    }
    let raw: RawConfig = deserialize_at(toml::Deserializer::new(text), "", &[])?;
    let mut targets = Vec::with_capacity(raw.target.len());
    for (index, table) in raw.target.into_iter().enumerate() {
        targets.push(parse_target(table, &format!("target[{index}]"))?);
    }
    let mut policies = Vec::with_capacity(raw.policy.len());
    for (index, table) in raw.policy.into_iter().enumerate() {
        policies.push(parse_policy(table, &format!("policy[{index}]"))?);
    }
    Ok(Config {
        daemon: raw.daemon,
        store: raw.store,
        credentials: raw.credentials,
        acme: raw.acme,
        local_ca: raw.local_ca,
        certificates: raw.certificate,
        targets,
        policies,
    })
}

/// Deserializes with the failing key's path kept, turning serde's "unknown field" message
/// into one that suggests the nearest valid key.
fn deserialize_at<'de, T: DeserializeOwned, D>(
    deserializer: D,
    prefix: &str,
    extra_keys: &[&str],
) -> Result<T, ParseIssue>
where
    D: serde::Deserializer<'de, Error = toml::de::Error>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let inner_path = error.path().to_string();
        let message = error.inner().message().to_owned();
        let mut path = join_path(prefix, if inner_path == "." { "" } else { &inner_path });
        let message = match unknown_field(&message) {
            Some((field, mut expected)) => {
                expected.extend(extra_keys.iter().map(|key| key.to_string()));
                // serde_path_to_error already names the unknown key in some positions.
                if !path.ends_with(field.as_str()) {
                    path = join_path(&path, &field);
                }
                let mut text = format!("unknown key `{field}`");
                if let Some(nearest) = nearest(&field, &expected) {
                    text.push_str(&format!(" (did you mean `{nearest}`?)"));
                }
                text
            }
            None => message.trim().to_owned(),
        };
        ParseIssue::Key(ConfigIssue::new(path, message))
    })
}

fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// Reads serde's ``unknown field `x`, expected one of `a`, `b` `` (or ``expected `a` ``).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_owned();
    let expected = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field, expected))
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo.
fn nearest(word: &str, candidates: &[String]) -> Option<String> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.clone())
}

/// Splits the common keys off a `[[target]]` or `[[policy]]` table; the rest goes to the
/// kind's own settings struct, which refuses unknown keys.
fn take_string(
    table: &mut toml::Table,
    key: &str,
    path: &str,
    required: bool,
) -> Result<Option<String>, ParseIssue> {
    match table.remove(key) {
        Some(toml::Value::String(value)) => Ok(Some(value)),
        Some(other) => Err(ParseIssue::Key(ConfigIssue::new(
            format!("{path}.{key}"),
            format!("must be a string, not {}", other.type_str()),
        ))),
        None if required => Err(ParseIssue::Key(ConfigIssue::new(
            path,
            format!("missing key `{key}`"),
        ))),
        None => Ok(None),
    }
}

fn take_value<T: DeserializeOwned>(
    table: &mut toml::Table,
    key: &str,
    path: &str,
) -> Result<Option<T>, ParseIssue> {
    match table.remove(key) {
        Some(value) => deserialize_at(value, &format!("{path}.{key}"), &[]).map(Some),
        None => Ok(None),
    }
}

/// A product's own keys (`table` without the common ones) as its settings type `T`; an
/// unknown key is named at `path` with the nearest of `T`'s and the `common` keys.
pub fn settings_at<T: DeserializeOwned>(
    table: toml::Table,
    path: &str,
    common: &[&str],
) -> Result<T, ConfigIssue> {
    match deserialize_at(toml::Value::Table(table), path, common) {
        Ok(settings) => Ok(settings),
        Err(ParseIssue::Key(issue)) => Err(issue),
        // Only the parser of the whole file reports syntax; a value has none left.
        Err(ParseIssue::Syntax { message, .. }) => Err(ConfigIssue::new(path, message)),
    }
}

/// The product `kind` names, or the issue naming the kinds there are.
fn product<P: ?Sized>(
    products: &'static [registry::Product<P>],
    kind: &str,
    path: &str,
) -> Result<&'static registry::Product<P>, ParseIssue> {
    registry::find(products, kind).ok_or_else(|| {
        let known: Vec<&str> = products.iter().map(|product| product.kind).collect();
        unknown_kind(path, kind, &known)
    })
}

fn unknown_kind(path: &str, kind: &str, known: &[&str]) -> ParseIssue {
    let candidates: Vec<String> = known.iter().map(|kind| kind.to_string()).collect();
    let mut message = format!(
        "unknown kind `{kind}`; expected one of {}",
        known.join(", ")
    );
    if let Some(nearest) = nearest(kind, &candidates) {
        message = format!("unknown kind `{kind}` (did you mean `{nearest}`?)");
    }
    ParseIssue::Key(ConfigIssue::new(format!("{path}.kind"), message))
}

fn parse_target(mut table: toml::Table, path: &str) -> Result<TargetConfig, ParseIssue> {
    let name = take_string(&mut table, "name", path, true)?.unwrap_or_default();
    let kind = take_string(&mut table, "kind", path, true)?.unwrap_or_default();
    let credentials = take_string(&mut table, "credentials", path, false)?;
    let maintenance_window = take_value(&mut table, "maintenance_window", path)?;
    let product = product(registry::TARGETS, &kind, path)?;
    let parsed = (product.parse)(table, path, TARGET_COMMON_KEYS).map_err(ParseIssue::Key)?;
    let settings = TargetSettings::new(product, parsed);
    Ok(TargetConfig {
        name,
        kind,
        credentials,
        maintenance_window,
        settings,
    })
}

fn parse_policy(mut table: toml::Table, path: &str) -> Result<PolicyConfig, ParseIssue> {
    let name = take_string(&mut table, "name", path, true)?.unwrap_or_default();
    let kind = take_string(&mut table, "kind", path, true)?.unwrap_or_default();
    let credentials = take_string(&mut table, "credentials", path, true)?.unwrap_or_default();
    let resources: Vec<String> = take_value(&mut table, "resources", path)?.unwrap_or_default();
    let mode = take_value(&mut table, "mode", path)?.unwrap_or(PolicyMode::Audit);
    let maintenance_window = take_value(&mut table, "maintenance_window", path)?;
    let schedule = take_value(&mut table, "schedule", path)?;
    let product = product(registry::POLICIES, &kind, path)?;
    let parsed = (product.parse)(table, path, POLICY_COMMON_KEYS).map_err(ParseIssue::Key)?;
    let settings = PolicySettings::new(product, parsed);
    Ok(PolicyConfig {
        name,
        kind,
        credentials,
        resources,
        mode,
        maintenance_window,
        schedule,
        settings,
    })
}

/// Checks values and cross-references. Pure: no file system, network or environment.
/// Returns (errors, warnings).
pub fn validate(config: &Config) -> (Vec<ConfigIssue>, Vec<ConfigIssue>) {
    SUGGESTION_COMPARISONS_LEFT.with(|left| left.set(SUGGESTION_COMPARISONS));
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    validate_daemon(&config.daemon, &mut errors);
    validate_stall_budget(config, &mut errors);
    if config.certificates.is_empty() && config.policies.is_empty() && !config.daemon.allow_empty {
        errors.push(ConfigIssue::new(
            "",
            "manages nothing: no [[certificate]] and no [[policy]]; add one, or set \
             `allow_empty = true` under [daemon] if managing nothing is intended",
        ));
    }
    for (name, credentials) in &config.credentials {
        validate_credentials(name, credentials, &mut errors, &mut warnings);
    }
    check_shared_accounts(config, &mut errors);
    for (name, acme) in &config.acme {
        validate_acme(name, acme, config, &mut errors, &mut warnings);
    }
    for (name, ca) in &config.local_ca {
        let path = format!("local_ca.{name}");
        if ca.cert.is_some() != ca.key.is_some() {
            errors.push(ConfigIssue::new(
                &path,
                "give both `cert` and `key`, or neither to have the root generated",
            ));
        }
    }
    let target_names = unique_names(
        config.targets.iter().map(|target| target.name.as_str()),
        "target",
        &mut errors,
    );
    for (index, target) in config.targets.iter().enumerate() {
        validate_target(index, target, config, &mut errors);
    }
    unique_names(
        config
            .certificates
            .iter()
            .map(|certificate| certificate.name.as_str()),
        "certificate",
        &mut errors,
    );
    for (index, certificate) in config.certificates.iter().enumerate() {
        validate_certificate(index, certificate, config, &target_names, &mut errors);
    }
    unique_names(
        config.policies.iter().map(|policy| policy.name.as_str()),
        "policy",
        &mut errors,
    );
    for (index, policy) in config.policies.iter().enumerate() {
        validate_policy(index, policy, config, &mut errors);
    }
    store::key::validate(&config.store, &mut errors, &mut warnings);
    (errors, warnings)
}

/// Names must be non-empty and unique within their section; returns the set of names.
fn unique_names<'a>(
    names: impl Iterator<Item = &'a str>,
    section: &str,
    errors: &mut Vec<ConfigIssue>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    for (index, name) in names.enumerate() {
        let path = format!("{section}[{index}].name");
        if !valid_name(name) {
            errors.push(ConfigIssue::new(path, format!("`{name}` is not a valid name: use letters, digits, `-`, `_` and `.` (at most 64)")));
        } else if !seen.insert(name) {
            errors.push(ConfigIssue::new(
                path,
                format!("duplicate {section} name `{name}`"),
            ));
        }
    }
    seen
}

/// Names appear in metric labels and file names, so they are kept short and plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.')
        })
}

/// A pass waiting out a DNS-01 propagation makes no progress meanwhile: the stall budget must
/// be longer, or every DNS-01 order would look like a stuck pass and get the daemon restarted.
fn validate_stall_budget(config: &Config, errors: &mut Vec<ConfigIssue>) {
    let budget = config.daemon.stall_timeout;
    if budget.is_zero() {
        errors.push(ConfigIssue::new(
            "daemon.stall_timeout",
            "must be longer than zero: every pass would count as stalled",
        ));
    }
    for (name, acme) in &config.acme {
        let Some(wait) = acme.dns_propagation_wait else {
            continue;
        };
        if wait >= budget {
            errors.push(ConfigIssue::new(
                format!("acme.{name}.dns_propagation_wait"),
                format!(
                    "`{}` is not shorter than daemon.stall_timeout (`{}`): the wait would look like a stuck pass; raise daemon.stall_timeout",
                    format_duration(wait),
                    format_duration(budget),
                ),
            ));
        }
    }
}

fn validate_daemon(daemon: &DaemonConfig, errors: &mut Vec<ConfigIssue>) {
    if daemon.state_dir.as_os_str().is_empty() || !daemon.state_dir.is_absolute() {
        errors.push(ConfigIssue::new(
            "daemon.state_dir",
            "must be an absolute path",
        ));
    }
    if daemon
        .metrics_listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        errors.push(ConfigIssue::new(
            "daemon.metrics_listen",
            format!(
                "`{}` is not an address and port such as 127.0.0.1:9464",
                daemon.metrics_listen
            ),
        ));
    }
    if daemon.concurrency == 0 || daemon.concurrency > 256 {
        errors.push(ConfigIssue::new(
            "daemon.concurrency",
            "must be between 1 and 256",
        ));
    }
}

/// Product names each vendor's `endpoints` table may override.
fn products_of(provider: Provider) -> &'static [&'static str] {
    match provider {
        // `cas.ap-southeast-1`: the international cas service a `cert_region` may name.
        Provider::Alibaba => &["cdn", "vod", "rds", "dns", "cas", "cas.ap-southeast-1"],
        Provider::Huawei => &["gaussdb", "iam", "dns"],
        Provider::Qingcloud => &["iaas"],
    }
}

fn check_url(value: &str, path: String, errors: &mut Vec<ConfigIssue>) {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => errors.push(ConfigIssue::new(
            path,
            format!("`{value}` is not an http(s) URL"),
        )),
    }
}

/// Exactly one way to give a secret; a literal one is accepted with a warning.
fn check_secret_sources(
    path: &str,
    field: &str,
    sources: [bool; 3],
    required: bool,
    errors: &mut Vec<ConfigIssue>,
    warnings: &mut Vec<ConfigIssue>,
) {
    let [literal, env, file] = sources;
    let given = sources.iter().filter(|given| **given).count();
    if given > 1 {
        errors.push(ConfigIssue::new(
            format!("{path}.{field}"),
            format!("give only one of `{field}`, `{field}_env`, `{field}_file`"),
        ));
    } else if given == 0 && required {
        errors.push(ConfigIssue::new(
            path,
            format!("missing `{field}_env` or `{field}_file`"),
        ));
    }
    let _ = (env, file);
    if literal {
        warnings.push(ConfigIssue::new(
            format!("{path}.{field}"),
            format!("secret written in the config file; prefer `{field}_env` or `{field}_file`"),
        ));
    }
}

fn validate_credentials(
    name: &str,
    credentials: &CredentialsConfig,
    errors: &mut Vec<ConfigIssue>,
    warnings: &mut Vec<ConfigIssue>,
) {
    let path = format!("credentials.{name}");
    if !valid_name(name) {
        errors.push(ConfigIssue::new(
            &path,
            format!("`{name}` is not a valid name"),
        ));
    }
    let token_auth = credentials.auth == AuthMethod::Token;
    if token_auth && credentials.provider != Provider::Huawei {
        errors.push(ConfigIssue::new(
            format!("{path}.auth"),
            "token auth exists only for provider = \"huawei\"",
        ));
    }
    // Kinds that fetch their keys (instance roles, RRSA, IAM temporary keys) need none here.
    let keyless = !credentials.kind.needs_access_key();
    credentials.validate_kind(&path, errors);
    if !token_auth
        && !keyless
        && credentials.access_key_id_file.is_none()
        && credentials
            .access_key_id
            .as_deref()
            .is_none_or(str::is_empty)
    {
        errors.push(ConfigIssue::new(&path, "missing `access_key_id`"));
    }
    check_secret_sources(
        &path,
        "access_key_secret",
        [
            credentials.access_key_secret.is_some(),
            credentials.access_key_secret_env.is_some(),
            credentials.access_key_secret_file.is_some(),
        ],
        !token_auth && !keyless,
        errors,
        warnings,
    );
    match credentials.provider {
        Provider::Huawei => {
            if credentials.project_id.is_none() {
                errors.push(ConfigIssue::new(
                    &path,
                    "missing `project_id` (Huawei paths and signatures name the project)",
                ));
            }
            if credentials.region.is_none() && credentials.endpoint.is_none() {
                errors.push(ConfigIssue::new(
                    &path,
                    "missing `region` (or an `endpoint`)",
                ));
            }
            if token_auth || credentials.kind == credentials::CredentialKind::IamTemporary {
                for (field, value) in [
                    ("domain_name", &credentials.domain_name),
                    ("user_name", &credentials.user_name),
                ] {
                    if value.is_none() {
                        errors.push(ConfigIssue::new(
                            &path,
                            format!("missing `{field}` (needed for auth = \"token\")"),
                        ));
                    }
                }
                check_secret_sources(
                    &path,
                    "password",
                    [
                        credentials.password.is_some(),
                        credentials.password_env.is_some(),
                        credentials.password_file.is_some(),
                    ],
                    true,
                    errors,
                    warnings,
                );
            }
        }
        Provider::Qingcloud => {
            if credentials.zone.is_none() {
                errors.push(ConfigIssue::new(&path, "missing `zone` (e.g. \"pek3\")"));
            }
        }
        Provider::Alibaba => {}
    }
    if credentials.provider != Provider::Huawei {
        for field in ["iam_endpoint", "domain_name", "user_name", "project_name"] {
            let given = match field {
                "iam_endpoint" => credentials.iam_endpoint.is_some(),
                "domain_name" => credentials.domain_name.is_some(),
                "user_name" => credentials.user_name.is_some(),
                _ => credentials.project_name.is_some(),
            };
            if given {
                errors.push(ConfigIssue::new(
                    format!("{path}.{field}"),
                    "applies only to provider = \"huawei\"",
                ));
            }
        }
    }
    if let Some(endpoint) = &credentials.endpoint {
        check_url(endpoint, format!("{path}.endpoint"), errors);
    }
    check_rate_limits(&path, credentials, errors);
    let products = products_of(credentials.provider);
    for (product, url) in &credentials.endpoints {
        let product_path = format!("{path}.endpoints.{product}");
        if !products.contains(&product.as_str()) {
            errors.push(ConfigIssue::new(
                product_path,
                format!(
                    "unknown product `{product}` for {}; expected one of {}",
                    credentials.provider.as_str(),
                    products.join(", ")
                ),
            ));
        } else {
            check_url(url, product_path, errors);
        }
    }
}

/// Credentials naming one `account` share its rate-limit buckets, so they must agree on the
/// `rate_limits` those buckets are built with.
fn check_shared_accounts(config: &Config, errors: &mut Vec<ConfigIssue>) {
    let mut first_of_account: BTreeMap<&str, (&str, &CredentialsConfig)> = BTreeMap::new();
    for (name, credentials) in &config.credentials {
        let Some(account) = credentials.account.as_deref() else {
            continue;
        };
        match first_of_account.get(account) {
            Some((first, earlier)) if earlier.rate_limits != credentials.rate_limits => {
                errors.push(ConfigIssue::new(
                    format!("credentials.{name}.rate_limits"),
                    format!(
                        "differs from credentials.{first}.rate_limits, which shares account \
                         `{account}` (one account, one set of buckets)"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                first_of_account.insert(account, (name, credentials));
            }
        }
    }
}

/// `account` and `rate_limits` of one credentials section (Alibaba only).
fn check_rate_limits(path: &str, credentials: &CredentialsConfig, errors: &mut Vec<ConfigIssue>) {
    if credentials.provider != Provider::Alibaba {
        for (field, given) in [
            ("account", credentials.account.is_some()),
            ("rate_limits", !credentials.rate_limits.is_empty()),
        ] {
            if given {
                errors.push(ConfigIssue::new(
                    format!("{path}.{field}"),
                    "applies only to provider = \"alibaba\"",
                ));
            }
        }
        return;
    }
    if credentials
        .account
        .as_deref()
        .is_some_and(|a| a.trim().is_empty())
    {
        errors.push(ConfigIssue::new(
            format!("{path}.account"),
            "must not be empty",
        ));
    }
    for (action, rate) in &credentials.rate_limits {
        if !(rate.is_finite() && *rate > 0.0 && *rate <= 10_000.0) {
            errors.push(ConfigIssue::new(
                format!("{path}.rate_limits.{action}"),
                "must be a number of calls per second above 0 and at most 10000",
            ));
        }
    }
}

fn validate_acme(
    name: &str,
    acme: &AcmeConfig,
    config: &Config,
    errors: &mut Vec<ConfigIssue>,
    warnings: &mut Vec<ConfigIssue>,
) {
    let path = format!("acme.{name}");
    check_url(&acme.directory, format!("{path}.directory"), errors);
    for (index, contact) in acme.contact.iter().enumerate() {
        if !contact.starts_with("mailto:") || !contact.contains('@') {
            errors.push(ConfigIssue::new(
                format!("{path}.contact[{index}]"),
                format!("`{contact}` must be a mailto: address"),
            ));
        }
    }
    let hmac_given = [
        acme.eab_hmac_key.is_some(),
        acme.eab_hmac_key_env.is_some(),
        acme.eab_hmac_key_file.is_some(),
    ];
    if acme.eab_kid.is_some() || hmac_given.iter().any(|given| *given) {
        if acme.eab_kid.is_none() {
            errors.push(ConfigIssue::new(
                &path,
                "missing `eab_kid` (the EAB HMAC key needs its key id)",
            ));
        }
        check_secret_sources(&path, "eab_hmac_key", hmac_given, true, errors, warnings);
    }
    match acme.challenge {
        ChallengeType::Http01 => {
            if acme.http01_listen.parse::<std::net::SocketAddr>().is_err() {
                errors.push(ConfigIssue::new(
                    format!("{path}.http01_listen"),
                    format!("`{}` is not an address and port", acme.http01_listen),
                ));
            }
        }
        ChallengeType::Dns01 => match &acme.dns_credentials {
            None => errors.push(ConfigIssue::new(
                &path,
                "missing `dns_credentials` (needed for challenge = \"dns-01\")",
            )),
            Some(credentials) => match config.credentials.get(credentials) {
                None => errors.push(ConfigIssue::new(
                    format!("{path}.dns_credentials"),
                    unknown_reference(
                        "credentials",
                        credentials,
                        config.credentials.keys().map(String::as_str),
                    ),
                )),
                Some(account) if account.provider == Provider::Qingcloud => {
                    errors.push(ConfigIssue::new(
                        format!("{path}.dns_credentials"),
                        "DNS-01 needs an `alibaba` or `huawei` account",
                    ))
                }
                Some(_) => {}
            },
        },
    }
    if acme.max_concurrent_orders == Some(0) {
        errors.push(ConfigIssue::new(
            format!("{path}.max_concurrent_orders"),
            "must be at least 1",
        ));
    }
}

/// Edit-distance comparisons one validation may spend on "did you mean" suggestions: far more
/// than every typo of a real config needs, while a config with tens of thousands of bad
/// references among thousands of names still validates in linear time (past the budget,
/// references are reported without a suggestion).
const SUGGESTION_COMPARISONS: usize = 200_000;

thread_local! {
    /// What is left of `SUGGESTION_COMPARISONS` in the validation running on this thread.
    static SUGGESTION_COMPARISONS_LEFT: std::cell::Cell<usize> =
        const { std::cell::Cell::new(SUGGESTION_COMPARISONS) };
}

fn unknown_reference<'a>(
    section: &str,
    name: &str,
    known: impl ExactSizeIterator<Item = &'a str>,
) -> String {
    let mut message = format!("no {section} named `{name}`");
    if known.len() == 0 {
        message.push_str(" (none is defined)");
        return message;
    }
    let affordable = SUGGESTION_COMPARISONS_LEFT.with(|left| {
        let affordable = left.get() >= known.len();
        left.set(left.get().saturating_sub(known.len()));
        affordable
    });
    if affordable {
        let known: Vec<String> = known.map(str::to_owned).collect();
        if let Some(nearest) = nearest(name, &known) {
            message.push_str(&format!(" (did you mean `{nearest}`?)"));
        }
    }
    message
}

/// Checks a DNS name (optionally a wildcard) and pushes an issue when it is not valid.
pub fn check_domain(domain: &str, path: &str, allow_wildcard: bool, issues: &mut Vec<ConfigIssue>) {
    if let Err(reason) = domain_syntax(domain, allow_wildcard) {
        issues.push(ConfigIssue::new(
            path,
            format!("`{domain}` is not a valid domain name: {reason}"),
        ));
    }
}

fn domain_syntax(domain: &str, allow_wildcard: bool) -> Result<(), String> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels".into());
    }
    for (index, label) in labels.iter().enumerate() {
        if *label == "*" {
            if index != 0 {
                return Err("`*` may only be the first label".into());
            }
            if !allow_wildcard {
                return Err("wildcards are not allowed here".into());
            }
            continue;
        }
        if label.is_empty() || label.len() > 63 {
            return Err("each label must be 1 to 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
        if !label
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '-')
        {
            return Err(format!(
                "label `{label}` has characters other than letters, digits and `-`"
            ));
        }
    }
    Ok(())
}

fn validate_certificate(
    index: usize,
    certificate: &CertificateConfig,
    config: &Config,
    targets: &BTreeSet<&str>,
    errors: &mut Vec<ConfigIssue>,
) {
    let path = format!("certificate[{index}]");
    if certificate.domains.is_empty() {
        errors.push(ConfigIssue::new(
            format!("{path}.domains"),
            "must name at least one domain",
        ));
    }
    let wildcard_allowed = match &certificate.source {
        SourceConfig::Acme(account) => match config.acme.get(account) {
            None => {
                errors.push(ConfigIssue::new(
                    format!("{path}.source.acme"),
                    unknown_reference(
                        "[acme] account",
                        account,
                        config.acme.keys().map(String::as_str),
                    ),
                ));
                true
            }
            Some(acme) => acme.challenge == ChallengeType::Dns01,
        },
        SourceConfig::LocalCa(ca) => {
            if !config.local_ca.contains_key(ca) {
                errors.push(ConfigIssue::new(
                    format!("{path}.source.local_ca"),
                    unknown_reference("[local_ca]", ca, config.local_ca.keys().map(String::as_str)),
                ));
            }
            true
        }
        SourceConfig::File { cert, key, .. } => {
            if cert == key {
                errors.push(ConfigIssue::new(
                    format!("{path}.source.file.key"),
                    "must differ from `cert`",
                ));
            }
            true
        }
    };
    let mut seen = BTreeSet::new();
    for (domain_index, domain) in certificate.domains.iter().enumerate() {
        let domain_path = format!("{path}.domains[{domain_index}]");
        if domain.starts_with("*.") && !wildcard_allowed {
            errors.push(ConfigIssue::new(
                &domain_path,
                format!(
                    "`{domain}` is a wildcard, which ACME issues only with challenge = \"dns-01\""
                ),
            ));
            continue;
        }
        check_domain(domain, &domain_path, true, errors);
        if !seen.insert(domain.to_ascii_lowercase()) {
            errors.push(ConfigIssue::new(
                &domain_path,
                format!("`{domain}` is listed twice"),
            ));
        }
    }
    match (&certificate.renew_before, certificate.renew_ratio) {
        (Some(_), Some(_)) => errors.push(ConfigIssue::new(
            format!("{path}.renew_ratio"),
            "give `renew_before` or `renew_ratio`, not both",
        )),
        (Some(_), None) => {}
        (None, Some(ratio)) => {
            if !(ratio > 0.0 && ratio < 1.0) {
                errors.push(ConfigIssue::new(
                    format!("{path}.renew_ratio"),
                    "must be between 0 and 1 (the share of lifetime left at renewal)",
                ));
            }
        }
        (None, None) => {}
    }
    for (target_index, target) in certificate.deploy_to.iter().enumerate() {
        if !targets.contains(target.as_str()) {
            errors.push(ConfigIssue::new(
                format!("{path}.deploy_to[{target_index}]"),
                unknown_reference("target", target, targets.iter().copied()),
            ));
        }
    }
}

fn check_credentials_ref(
    path: &str,
    name: &str,
    wanted: Provider,
    config: &Config,
    errors: &mut Vec<ConfigIssue>,
) {
    match config.credentials.get(name) {
        None => errors.push(ConfigIssue::new(
            format!("{path}.credentials"),
            unknown_reference(
                "credentials",
                name,
                config.credentials.keys().map(String::as_str),
            ),
        )),
        Some(account) if account.provider != wanted => errors.push(ConfigIssue::new(
            format!("{path}.credentials"),
            format!(
                "`{name}` is a {} account; this kind needs a {} one",
                account.provider.as_str(),
                wanted.as_str()
            ),
        )),
        Some(_) => {}
    }
}

fn check_window(path: &str, window: &Option<WindowConfig>, errors: &mut Vec<ConfigIssue>) {
    if let Some(window) = window {
        if let Err(error) = window.build() {
            errors.push(ConfigIssue::new(
                format!("{path}.maintenance_window.schedule"),
                error,
            ));
        }
    }
}

fn validate_target(
    index: usize,
    target: &TargetConfig,
    config: &Config,
    errors: &mut Vec<ConfigIssue>,
) {
    let path = format!("target[{index}]");
    match (target.settings.product.provider, &target.credentials) {
        (Some(provider), Some(name)) => {
            check_credentials_ref(&path, name, provider, config, errors)
        }
        (Some(_), None) => errors.push(ConfigIssue::new(&path, "missing key `credentials`")),
        (None, Some(_)) => errors.push(ConfigIssue::new(
            format!("{path}.credentials"),
            format!("a `{}` target takes no credentials", target.kind),
        )),
        (None, None) => {}
    }
    check_window(&path, &target.maintenance_window, errors);
    target.settings.check(&path, errors);
}

fn validate_policy(
    index: usize,
    policy: &PolicyConfig,
    config: &Config,
    errors: &mut Vec<ConfigIssue>,
) {
    let path = format!("policy[{index}]");
    if let Some(provider) = policy.settings.product.provider {
        check_credentials_ref(&path, &policy.credentials, provider, config, errors);
    }
    if policy.resources.is_empty() {
        errors.push(ConfigIssue::new(
            &path,
            "missing key `resources` (the instance or cluster ids to check)",
        ));
    }
    for (resource_index, resource) in policy.resources.iter().enumerate() {
        if resource.trim().is_empty() || resource.len() > 128 {
            errors.push(ConfigIssue::new(
                format!("{path}.resources[{resource_index}]"),
                "must be a resource id of 1 to 128 characters",
            ));
        }
    }
    check_window(&path, &policy.maintenance_window, errors);
    policy.settings.check(&path, &policy.resources, errors);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_kind_is_its_label_without_the_name() {
        let file = SourceConfig::File {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            chain: None,
        };
        for (source, kind) in [
            (SourceConfig::Acme("le".into()), "acme"),
            (file, "file"),
            (SourceConfig::LocalCa("internal".into()), "local_ca"),
        ] {
            assert_eq!(source.kind(), kind);
            assert_eq!(source.label().split(':').next(), Some(kind));
        }
    }

    #[test]
    fn unknown_field_messages_are_read() {
        let (field, expected) =
            unknown_field("unknown field `domian`, expected one of `domain`, `api`").unwrap();
        assert_eq!(field, "domian");
        assert_eq!(expected, vec!["domain", "api"]);
        assert_eq!(nearest("domian", &expected), Some("domain".into()));
        assert_eq!(nearest("zzzz", &expected), None);
    }

    #[test]
    fn domains() {
        assert!(domain_syntax("www.example.com", false).is_ok());
        assert!(domain_syntax("*.example.com", true).is_ok());
        assert!(domain_syntax("*.example.com", false).is_err());
        assert!(domain_syntax("a.*.example.com", true).is_err());
        assert!(domain_syntax("-a.example.com", true).is_err());
        assert!(domain_syntax("localhost", true).is_err());
        assert!(domain_syntax("exa_mple.com", true).is_err());
    }

    #[test]
    fn a_dns_propagation_wait_must_fit_in_the_stall_budget() {
        let text = |wait: &str| {
            format!(
                "[daemon]\nstall_timeout = \"2m\"\n[acme.le]\ndirectory = \"https://acme.example/dir\"\ndns_propagation_wait = \"{wait}\"\n"
            )
        };
        let issues = |wait: &str| {
            let Ok(config) = parse(&text(wait)) else {
                panic!("the test config parses")
            };
            let (errors, _) = validate(&config);
            errors
                .into_iter()
                .filter(|issue| issue.path == "acme.le.dns_propagation_wait")
                .map(|issue| issue.message)
                .collect::<Vec<_>>()
        };
        assert!(issues("90s").is_empty());
        let Ok(mut zero) = parse(&text("1s")) else {
            panic!("the test config parses")
        };
        zero.daemon.stall_timeout = Duration::ZERO;
        assert!(validate(&zero)
            .0
            .iter()
            .any(|issue| issue.path == "daemon.stall_timeout"));
        let refused = issues("2m");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].contains("not shorter than daemon.stall_timeout (`2m`)"),
            "{refused:?}"
        );
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(default_scan_schedule().expression(), "*/15 * * * *");
        let config = DaemonConfig::default();
        assert_eq!(config.grace_period, Duration::from_secs(7 * 86_400));
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert_eq!(config.stall_timeout, Duration::from_secs(300));
    }

    #[test]
    fn durations_cron_and_windows_are_typed_at_load() {
        let Ok(config) = parse(
            "[daemon]\nscan_schedule = \"0 * * * *\"\ngrace_period = \"1w\"\nstall_timeout = \"90s\"\n\
             [local_ca.internal]\nleaf_lifetime = \"2d\"\n\
             [[target]]\nname = \"files\"\nkind = \"file\"\ndirectory = \"/srv/tls\"\n\
             reload_timeout = \"5s\"\n\
             maintenance_window = { schedule = \"0 2 * * Sun\", duration = \"1h30m\" }\n",
        ) else {
            panic!("the test config parses")
        };
        assert_eq!(config.daemon.scan_schedule.expression(), "0 * * * *");
        assert_eq!(config.daemon.grace_period, Duration::from_secs(604_800));
        assert_eq!(config.daemon.stall_timeout, Duration::from_secs(90));
        assert_eq!(
            config.local_ca["internal"].leaf_lifetime,
            Duration::from_secs(172_800)
        );
        let target = &config.targets[0];
        let Some(window) = &target.maintenance_window else {
            panic!("a window")
        };
        assert_eq!(window.duration, Duration::from_secs(5_400));
        assert_eq!(window.schedule.expression(), "0 2 * * Sun");
        let Some(settings) = target
            .settings
            .downcast_ref::<crate::cloud::file::FileSettings>()
        else {
            panic!("a file target")
        };
        assert_eq!(settings.reload_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_bad_duration_or_cron_is_refused_at_load_with_its_key_path() {
        for (text, path, message) in [
            (
                "[daemon]\ngrace_period = \"7 days\"\n",
                "daemon.grace_period",
                "`7 days` is not a duration",
            ),
            (
                "[daemon]\nscan_schedule = \"hourly\"\n",
                "daemon.scan_schedule",
                "cron expression `hourly` must have 5 fields",
            ),
            (
                "[local_ca.internal]\nleaf_lifetime = \"30\"\n",
                "local_ca.internal.leaf_lifetime",
                "has no unit",
            ),
        ] {
            let Err(ParseIssue::Key(issue)) = parse(text) else {
                panic!("{text} is refused at parse")
            };
            assert_eq!(issue.path, path, "{text}");
            assert!(issue.message.contains(message), "{text}: {}", issue.message);
        }
    }
}
