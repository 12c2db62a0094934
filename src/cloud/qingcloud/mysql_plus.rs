//! Policy `qingcloud-mysql-plus-ssl`: keeps SSL of QingCloud MySQL Plus clusters on (or
//! off). `check` reads `DescribeClusters` (status, transition_status),
//! `DescribeClusterEnvironment` (the effective SSL switch) and the cluster's running jobs;
//! `remediate` runs `RunClusterCustomService` (role `maininstance`, service
//! `configuring_SSL`) and polls its job to the end. Toggling SSL restarts the database, so
//! `engine::converge::apply_policy` only lets this run inside the maintenance window.
//!
//! `service_params` is sent as `{"configssl":"YES"}` / `{"configssl":"NO"}`: the
//! configuring_SSL page (seed 004) describes the values YES/NO while its example sends
//! `ON`; YES/NO agrees with the sibling `add_user` page. A cluster that refuses the value
//! as a malformed parameter (ret_code 1100, which starts no job) is asked once more with
//! the example's form (ON/OFF); the form that worked is remembered for the policy's account
//! and shown in every finding ([`ConfigsslForm`]). The result is verified by reading the
//! effective value back, never assumed.
//!
//! The effective value is read where the documented APIs expose it: DescribeClusters and
//! DescribeJobs carry no SSL state (status, transition status, job status only), and
//! DescribeClusterEnvironment documents each property's `default` as its effective value
//! (describe_cluster_env.md). No document names MySQL Plus's SSL property, so the policy
//! reads the key configured as `ssl_env_key`, else the service parameter's own name
//! `configssl` (any case). When the cluster reports neither, the check fails `unsupported`
//! with the keys the cluster does report, so the operator can set `ssl_env_key`.
//!
//! A cluster that is not `active`, shows a `transition_status` or has a pending/working job
//! is reported busy, and no job is started on it. Once a job has started, every error
//! (job failed, `done with failure`, deadline passed, polling failed) carries its job id;
//! the engine then waits for the next window (`engine::converge::remediation_deferred_until`)
//! instead of starting another job in this one.

use super::client::{field_str, QingCloudClient};
use super::jobs::{self, JobPollConfig, JobPollSettings};
use crate::cloud::{Policy, PolicyFinding, PolicyMode, Remediation};
use crate::error::{CloudError, ErrorClass};
use crate::settings::ConfigIssue;
use crate::window::MaintenanceWindow;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The environment key read for the effective SSL switch unless `ssl_env_key` says
/// otherwise. No public source names MySQL Plus's key; it mirrors the custom service's
/// `configssl` parameter (seed 004) and is configurable for that reason.
pub const DEFAULT_SSL_ENV_KEY: &str = "configssl";

/// How many environment keys an "SSL state not reported" error lists.
const LISTED_ENV_KEYS: usize = 20;

/// The two spellings of the `configssl` value in the vendor's page (seed 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigsslForm {
    /// The prose: "取值 `NO` 则关闭；取值 `YES` 则开启". Sent first.
    YesNo,
    /// The example: `{"configssl":"ON"}` (OFF by symmetry; the page shows no "off" example).
    OnOff,
}

impl ConfigsslForm {
    /// The documented form, sent until a cluster of the account refuses it.
    pub const DOCUMENTED: ConfigsslForm = ConfigsslForm::YesNo;

    /// The value that switches SSL `on` or off in this form.
    pub fn value(self, on: bool) -> &'static str {
        match (self, on) {
            (ConfigsslForm::YesNo, true) => "YES",
            (ConfigsslForm::YesNo, false) => "NO",
            (ConfigsslForm::OnOff, true) => "ON",
            (ConfigsslForm::OnOff, false) => "OFF",
        }
    }

    fn other(self) -> Self {
        match self {
            ConfigsslForm::YesNo => ConfigsslForm::OnOff,
            ConfigsslForm::OnOff => ConfigsslForm::YesNo,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ConfigsslForm::YesNo => "YES/NO",
            ConfigsslForm::OnOff => "ON/OFF",
        }
    }
}

/// What the account note says before the form it sends (read back after a restart).
const NOTE_SENDS: &str = "certkeeper sends ";

/// The `configssl` form each account (endpoint and access key id) was found to take, for
/// this process: an account's clusters share one API, so a second policy of the account
/// does not pay the refused call again. Only forms that differ from the documented one are
/// kept. The form is also in the account note the engine stores with each policy status,
/// and a restart takes it back from there ([`Policy::restore_account_note`]).
fn learned_forms(
) -> std::sync::MutexGuard<'static, std::collections::BTreeMap<String, ConfigsslForm>> {
    static LEARNED: Mutex<std::collections::BTreeMap<String, ConfigsslForm>> =
        Mutex::new(std::collections::BTreeMap::new());
    LEARNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `ret_code` 1100, "message format error (missing/invalid param)": how a cluster refuses a
/// `configssl` value it does not take. No job starts, so asking again is safe.
const MALFORMED_PARAMETER: &str = "1100";

/// The kind name in the config.
pub const KIND: &str = "qingcloud-mysql-plus-ssl";

/// Kind-specific keys of a `[[policy]]` of this kind.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MysqlPlusSslSettings {
    /// Desired state: `true` keeps SSL on, `false` keeps it off.
    pub ssl: bool,
    /// How the `configuring_SSL` job is polled: `{ interval = "5s", max_interval = "1m",
    /// deadline = "30m" }` (these are the defaults).
    #[serde(default)]
    pub job_poll: JobPollConfig,
    /// The `DescribeClusterEnvironment` key holding the effective SSL value.
    #[serde(default)]
    pub ssl_env_key: Option<String>,
}

impl MysqlPlusSslSettings {
    /// Pure checks of these keys; problems are pushed with their key path under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        self.job_poll.validate(&format!("{path}.job_poll"), issues);
        if let Some(key) = &self.ssl_env_key {
            if key.trim().is_empty() || key.len() > 64 {
                issues.push(ConfigIssue::new(
                    format!("{path}.ssl_env_key"),
                    "must be an environment key of 1 to 64 characters",
                ));
            }
        }
    }
}

/// One configured `qingcloud-mysql-plus-ssl` policy.
pub struct MysqlPlusSslPolicy {
    name: String,
    mode: PolicyMode,
    window: Option<MaintenanceWindow>,
    clusters: Vec<String>,
    client: QingCloudClient,
    desired_ssl: bool,
    poll: JobPollSettings,
    /// Configured `ssl_env_key`; `None` reads [`DEFAULT_SSL_ENV_KEY`].
    ssl_env_key: Option<String>,
    /// Clusters this process is remediating now: a second job must never start on one.
    in_flight: Mutex<BTreeSet<String>>,
}

impl MysqlPlusSslPolicy {
    /// Builds the policy; `settings` must have passed `validate`.
    pub fn new(
        name: impl Into<String>,
        mode: PolicyMode,
        window: Option<MaintenanceWindow>,
        clusters: Vec<String>,
        client: QingCloudClient,
        settings: &MysqlPlusSslSettings,
    ) -> Result<Self, ConfigIssue> {
        let name = name.into();
        let poll = settings
            .job_poll
            .build(&format!("policy {name}.job_poll"))?;
        Ok(Self {
            name,
            mode,
            window,
            clusters,
            client,
            desired_ssl: settings.ssl,
            poll,
            ssl_env_key: settings.ssl_env_key.clone(),
            in_flight: Mutex::new(BTreeSet::new()),
        })
    }

    /// Overrides job polling (tests poll every few milliseconds).
    pub fn with_poll_settings(mut self, poll: JobPollSettings) -> Self {
        self.poll = poll;
        self
    }

    fn on_off(value: bool) -> &'static str {
        if value {
            "on"
        } else {
            "off"
        }
    }

    async fn cluster_state(&self, cluster: &str) -> Result<(String, String), CloudError> {
        let answer = self
            .client
            .call(
                "DescribeClusters",
                &[("clusters.1", cluster.to_owned()), ("verbose", "1".into())],
            )
            .await?;
        let entry = answer
            .get("cluster_set")
            .and_then(serde_json::Value::as_array)
            .and_then(|set| {
                set.iter().find(|entry| {
                    entry.get("cluster_id").and_then(serde_json::Value::as_str) == Some(cluster)
                })
            })
            .ok_or_else(|| {
                CloudError::new(
                    "qingcloud",
                    "DescribeClusters",
                    ErrorClass::NotFound,
                    "ClusterNotFound",
                    format!("cluster {cluster} not found in zone {}", self.client.zone()),
                )
            })?;
        let status = field_str(entry, "DescribeClusters", "status")?.to_owned();
        // Idle clusters return an empty (or missing) transition_status.
        let transition = entry
            .get("transition_status")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok((status, transition))
    }

    async fn effective_ssl(&self, cluster: &str) -> Result<bool, CloudError> {
        let answer = self
            .client
            .call(
                "DescribeClusterEnvironment",
                &[("cluster", cluster.to_owned())],
            )
            .await?;
        let properties = answer
            .get("config")
            .and_then(|config| config.get("properties"))
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let key_of = |property: &serde_json::Value| {
            property
                .get("key")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let wanted = self.ssl_env_key.as_deref().unwrap_or(DEFAULT_SSL_ENV_KEY);
        let value = properties
            .iter()
            .find(|property| key_of(property).is_some_and(|key| key.eq_ignore_ascii_case(wanted)))
            // `default` is the effective value (describe_cluster_env.md).
            .and_then(|property| property.get("default"));
        let not_reported = |detail: String| {
            let reported: Vec<String> = properties
                .iter()
                .filter_map(key_of)
                .take(LISTED_ENV_KEYS)
                .map(|key| key.chars().take(64).collect())
                .collect();
            CloudError::new(
                "qingcloud",
                "DescribeClusterEnvironment",
                ErrorClass::Unsupported,
                "SslStateNotReported",
                format!(
                    "cluster {cluster} {detail}; no documented API reports the SSL state \
                     elsewhere (DescribeClusters and DescribeJobs carry none). Keys it \
                     reports: [{}]; set ssl_env_key to the one holding SSL",
                    reported.join(", ")
                ),
            )
        };
        match value {
            Some(serde_json::Value::Bool(on)) => Ok(*on),
            Some(serde_json::Value::Number(number)) => Ok(number.as_i64() != Some(0)),
            Some(serde_json::Value::String(text)) => {
                match text.trim().to_ascii_lowercase().as_str() {
                    "yes" | "on" | "true" | "1" | "enabled" => Ok(true),
                    "no" | "off" | "false" | "0" | "disabled" | "" => Ok(false),
                    _ => Err(not_reported(format!(
                        "reports `{wanted}` as {:?}, which is neither on nor off",
                        text.chars().take(32).collect::<String>()
                    ))),
                }
            }
            Some(_) => Err(not_reported(format!(
                "reports `{wanted}` with a value that is neither on nor off"
            ))),
            None => Err(not_reported(format!(
                "reports no environment key `{wanted}`"
            ))),
        }
    }

    /// The `configssl` form this policy's account takes, as last learned.
    pub fn configssl_form(&self) -> ConfigsslForm {
        learned_forms()
            .get(&self.client.account())
            .copied()
            .unwrap_or(ConfigsslForm::DOCUMENTED)
    }

    fn remember_configssl_form(&self, form: ConfigsslForm) {
        learned_forms().insert(self.client.account(), form);
    }

    /// Starts the `configuring_SSL` job in the account's form; a refusal of the value as a
    /// malformed parameter (1100) is asked once more in the other form, and the form that
    /// worked is remembered. Returns the answer and the value sent.
    async fn start_configuring_ssl(
        &self,
        cluster: &str,
    ) -> Result<(serde_json::Value, &'static str), CloudError> {
        let first = self.configssl_form();
        let mut form = first;
        loop {
            let configssl = form.value(self.desired_ssl);
            let outcome = self
                .client
                .call(
                    "RunClusterCustomService",
                    &[
                        ("cluster", cluster.to_owned()),
                        ("role", "maininstance".into()),
                        ("service", "configuring_SSL".into()),
                        (
                            "service_params",
                            serde_json::json!({ "configssl": configssl }).to_string(),
                        ),
                    ],
                )
                .await;
            match outcome {
                Ok(answer) => {
                    if form != first {
                        self.remember_configssl_form(form);
                        tracing::warn!(
                            policy = %self.name,
                            cluster,
                            refused = first.describe(),
                            accepted = form.describe(),
                            "the cluster refused the documented configssl form; the other \
                             form is used for this account from now on"
                        );
                    }
                    return Ok((answer, configssl));
                }
                Err(error) if error.code == MALFORMED_PARAMETER && form == first => {
                    form = form.other();
                }
                Err(error) if error.code == MALFORMED_PARAMETER => {
                    let message = format!(
                        "{} (configssl refused in both forms, {} and {})",
                        error.message,
                        first.describe(),
                        form.describe()
                    );
                    return Err(CloudError { message, ..error });
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn busy_error(cluster: &str, observed: &str) -> CloudError {
        CloudError::new(
            "qingcloud",
            "RunClusterCustomService",
            ErrorClass::Busy,
            "ClusterBusy",
            format!("cluster {cluster} is busy ({observed}); no second job is started"),
        )
    }

    /// Reads the cluster: effective SSL, and whether anything forbids a change now.
    async fn read(&self, cluster: &str, in_flight: bool) -> Result<PolicyFinding, CloudError> {
        let (status, transition) = self.cluster_state(cluster).await?;
        let ssl = self.effective_ssl(cluster).await?;
        let running = jobs::running_jobs_on(&self.client, cluster).await?;
        let mut observed = format!("ssl {}", Self::on_off(ssl));
        let form = self.configssl_form();
        if form != ConfigsslForm::DOCUMENTED {
            observed.push_str(&format!("; account takes configssl {}", form.describe()));
        }
        let mut reasons = Vec::new();
        if status != "active" {
            reasons.push(format!("status {status}"));
        }
        if !transition.is_empty() {
            reasons.push(format!("transition_status {transition}"));
        }
        if let Some(job) = running.first() {
            reasons.push(format!("job {} running", job.job_id));
        }
        if in_flight {
            reasons.push("remediation in progress".into());
        }
        if !reasons.is_empty() {
            observed.push_str(&format!(" ({})", reasons.join(", ")));
        }
        Ok(PolicyFinding {
            resource: cluster.to_owned(),
            compliant: ssl == self.desired_ssl,
            observed,
            desired: format!("ssl {}", Self::on_off(self.desired_ssl)),
            busy: !reasons.is_empty(),
        })
    }

    async fn run_and_wait(&self, cluster: &str) -> Result<Remediation, CloudError> {
        // Re-read right before writing: the state may have changed since the pass's check
        // (another process, a job that ended), and a second job must never start.
        let finding = self.read(cluster, false).await?;
        if finding.compliant {
            return Ok(Remediation { job_id: None });
        }
        if finding.busy {
            return Err(Self::busy_error(cluster, &finding.observed));
        }
        let (answer, configssl) = self.start_configuring_ssl(cluster).await?;
        let job_id = jobs::started_job_id(&answer, "RunClusterCustomService")?;
        tracing::info!(
            policy = %self.name,
            cluster,
            job_id = %job_id,
            ssl = configssl,
            "started MySQL Plus configuring_SSL job"
        );
        // From here on every error names the job, so the engine defers to the next window
        // instead of starting another job in this one.
        jobs::wait_for_job(&self.client, &job_id, &self.poll)
            .await
            .map_err(|error| {
                let job = error.job_id.clone().or_else(|| Some(job_id.clone()));
                error.with_job_id(job)
            })?;
        Ok(Remediation {
            job_id: Some(job_id),
        })
    }
}

/// Removes a cluster from the in-flight set when its remediation ends.
struct InFlight<'a> {
    set: &'a Mutex<BTreeSet<String>>,
    cluster: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(self.cluster);
    }
}

#[async_trait]
impl Policy for MysqlPlusSslPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn mode(&self) -> PolicyMode {
        self.mode
    }

    fn maintenance_window(&self) -> Option<&MaintenanceWindow> {
        self.window.as_ref()
    }

    fn resources(&self) -> Vec<String> {
        self.clusters.clone()
    }

    fn account_note(&self) -> Option<String> {
        let form = self.configssl_form();
        (form != ConfigsslForm::DOCUMENTED).then(|| {
            format!(
                "clusters of this account refused configssl {}; {NOTE_SENDS}{}",
                ConfigsslForm::DOCUMENTED.describe(),
                form.describe()
            )
        })
    }

    /// The form a note of this policy's account named before a restart, unless this process
    /// learned one itself since.
    fn restore_account_note(&self, note: &str) {
        let Some((_, sent)) = note.rsplit_once(NOTE_SENDS) else {
            return;
        };
        let form = [ConfigsslForm::YesNo, ConfigsslForm::OnOff]
            .into_iter()
            .find(|form| form.describe() == sent);
        if let Some(form) = form {
            learned_forms().entry(self.client.account()).or_insert(form);
        }
    }

    async fn check(&self, cluster: &str) -> Result<PolicyFinding, CloudError> {
        let in_flight = self.lock_in_flight().contains(cluster);
        self.read(cluster, in_flight).await
    }

    async fn remediate(&self, cluster: &str) -> Result<Remediation, CloudError> {
        if !self.lock_in_flight().insert(cluster.to_owned()) {
            return Err(Self::busy_error(cluster, "remediation in progress"));
        }
        // Released on every exit, a cancelled future included.
        let _guard = InFlight {
            set: &self.in_flight,
            cluster,
        };
        self.run_and_wait(cluster).await
    }
}

/// `kind = "qingcloud-mysql-plus-ssl"`: its line in `cloud::registry::POLICIES`.
pub const PRODUCT: crate::cloud::registry::PolicyKind = crate::cloud::registry::PolicyKind {
    kind: "qingcloud-mysql-plus-ssl",
    variant: "QingcloudMysqlPlusSsl",
    vendor: "qingcloud",
    provider: Some(crate::cloud::account::Provider::Qingcloud),
    parse: crate::cloud::registry::parse_policy_settings::<MysqlPlusSslSettings>,
};

impl crate::cloud::registry::PolicyProduct for MysqlPlusSslSettings {
    fn check(&self, path: &str, _resources: &[String], issues: &mut Vec<ConfigIssue>) {
        self.validate(path, issues);
    }

    fn build(
        &self,
        spec: crate::cloud::registry::PolicySpec<'_>,
        window: Option<MaintenanceWindow>,
        accounts: &dyn crate::cloud::registry::Accounts,
    ) -> Result<std::sync::Arc<dyn Policy>, String> {
        let client = accounts.qingcloud(spec.credentials)?;
        let policy = MysqlPlusSslPolicy::new(
            spec.name,
            spec.mode,
            window,
            spec.resources.to_vec(),
            client,
            self,
        )
        .map_err(|issue| format!("{}: {}", issue.path, issue.message))?;
        Ok(std::sync::Arc::new(policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_unknown_keys_and_validate() {
        let settings: MysqlPlusSslSettings =
            toml::from_str("ssl = true\njob_poll = { interval = \"2s\", deadline = \"10m\" }")
                .unwrap();
        assert!(settings.ssl);
        let mut issues = Vec::new();
        settings.validate("policy[0]", &mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        assert!(toml::from_str::<MysqlPlusSslSettings>("ssl = true\nsssl = 1").is_err());
        let bad: MysqlPlusSslSettings =
            toml::from_str("ssl = false\njob_poll = { interval = \"x\" }\nssl_env_key = \"\"")
                .unwrap();
        bad.validate("policy[1]", &mut issues);
        let paths: Vec<&str> = issues.iter().map(|issue| issue.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["policy[1].job_poll.interval", "policy[1].ssl_env_key"]
        );
    }
}
