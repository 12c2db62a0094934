//! QingCloud asynchronous jobs: `DescribeJobs` reads one job's status, and [`wait_for_job`]
//! polls it from `pending`/`working` to an end (`successful`, `failed`, `done with
//! failure`) with a growing interval and a deadline. Polling is part of one operation (the
//! change is not finished until its job is), not a retry: a failed job is returned as an
//! error carrying its job id, never started again here.

use super::client::{field_str, QingCloudClient};
use crate::error::{CloudError, ErrorClass};
use crate::settings::ConfigIssue;
use serde::Deserialize;
use std::time::Duration;

/// A job's status as `DescribeJobs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Working,
    Successful,
    Failed,
    /// In the Go SDK's enum, not in the docs: treated as a failure.
    DoneWithFailure,
    Other(String),
}

impl JobStatus {
    pub fn parse(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "working" => Self::Working,
            "successful" => Self::Successful,
            "failed" => Self::Failed,
            "done with failure" => Self::DoneWithFailure,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, Self::Pending | Self::Working)
    }
}

/// One job from `DescribeJobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: String,
    pub status: JobStatus,
    pub job_action: String,
    /// Resource ids the job touches (`resource_ids` is space separated).
    pub resource_ids: Vec<String>,
    pub error_codes: String,
}

/// How a job is polled. Defaults suit a database restart (minutes); tests use milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPollSettings {
    /// The first wait between polls; it doubles up to `max_interval`.
    pub interval: Duration,
    pub max_interval: Duration,
    /// How long a job may run before we stop waiting (the job keeps running on the
    /// vendor's side; the cluster then shows busy until it ends).
    pub deadline: Duration,
}

impl Default for JobPollSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
            deadline: Duration::from_secs(30 * 60),
        }
    }
}

/// `job_poll_interval` / `job_timeout` as written in a policy (in `1h30m` style).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JobPollConfig {
    pub interval: Option<String>,
    pub max_interval: Option<String>,
    pub deadline: Option<String>,
}

impl JobPollConfig {
    /// Pure checks; problems are pushed under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        if let Err(issue) = self.build(path) {
            issues.push(issue);
        }
    }

    /// The settings, defaults filled in.
    pub fn build(&self, path: &str) -> Result<JobPollSettings, ConfigIssue> {
        let defaults = JobPollSettings::default();
        let read = |key: &str, value: &Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => match crate::settings::duration::parse_duration(text) {
                Ok(duration) if !duration.is_zero() => Ok(duration),
                Ok(_) => Err(ConfigIssue::new(
                    format!("{path}.{key}"),
                    "must be greater than zero",
                )),
                Err(message) => Err(ConfigIssue::new(format!("{path}.{key}"), message)),
            },
        };
        let settings = JobPollSettings {
            interval: read("interval", &self.interval, defaults.interval)?,
            max_interval: read("max_interval", &self.max_interval, defaults.max_interval)?,
            deadline: read("deadline", &self.deadline, defaults.deadline)?,
        };
        if settings.max_interval < settings.interval {
            return Err(ConfigIssue::new(
                format!("{path}.max_interval"),
                "must not be shorter than interval",
            ));
        }
        if settings.deadline < settings.interval {
            return Err(ConfigIssue::new(
                format!("{path}.deadline"),
                "must not be shorter than interval",
            ));
        }
        Ok(settings)
    }
}

fn parse_job(value: &serde_json::Value) -> Option<Job> {
    let text = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let job_id = text("job_id");
    if job_id.is_empty() {
        return None;
    }
    let error_codes = match value.get("error_codes") {
        Some(serde_json::Value::String(codes)) => codes.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    Some(Job {
        job_id,
        status: JobStatus::parse(&text("status")),
        job_action: text("job_action"),
        resource_ids: text("resource_ids")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        error_codes,
    })
}

fn job_set(value: &serde_json::Value) -> Vec<Job> {
    value
        .get("job_set")
        .and_then(serde_json::Value::as_array)
        .map(|jobs| jobs.iter().filter_map(parse_job).collect())
        .unwrap_or_default()
}

/// Reads one job.
pub async fn describe_job(client: &QingCloudClient, job_id: &str) -> Result<Job, CloudError> {
    let answer = client
        .call("DescribeJobs", &[("jobs.1", job_id.to_owned())])
        .await?;
    job_set(&answer)
        .into_iter()
        .find(|job| job.job_id == job_id)
        .ok_or_else(|| {
            CloudError::new(
                "qingcloud",
                "DescribeJobs",
                ErrorClass::NotFound,
                "JobNotFound",
                format!("job {job_id} is not listed"),
            )
            .with_job_id(Some(job_id.to_owned()))
        })
}

/// The pending or working jobs that touch `resource_id` (a second job must never start
/// while one of these runs).
pub async fn running_jobs_on(
    client: &QingCloudClient,
    resource_id: &str,
) -> Result<Vec<Job>, CloudError> {
    let answer = client
        .call(
            "DescribeJobs",
            &[
                ("status.1", "pending".to_owned()),
                ("status.2", "working".to_owned()),
                ("limit", "100".to_owned()),
            ],
        )
        .await?;
    Ok(job_set(&answer)
        .into_iter()
        .filter(|job| {
            job.status.is_running() && job.resource_ids.iter().any(|id| id == resource_id)
        })
        .collect())
}

/// Polls `job_id` until it ends or `settings.deadline` passes. A job that ends in failure
/// is an error of class busy (the cluster could not take the change now) carrying the
/// job id; so is one still running at the deadline. Both must wait for the next window.
pub async fn wait_for_job(
    client: &QingCloudClient,
    job_id: &str,
    settings: &JobPollSettings,
) -> Result<Job, CloudError> {
    let started = tokio::time::Instant::now();
    let mut interval = settings.interval;
    loop {
        let job = describe_job(client, job_id).await?;
        match &job.status {
            JobStatus::Successful => return Ok(job),
            JobStatus::Failed | JobStatus::DoneWithFailure => {
                return Err(CloudError::new(
                    "qingcloud",
                    "DescribeJobs",
                    ErrorClass::Busy,
                    "JobFailed",
                    format!(
                        "job {job_id} ({}) ended {}{}",
                        job.job_action,
                        match job.status {
                            JobStatus::Failed => "failed",
                            _ => "done with failure",
                        },
                        if job.error_codes.is_empty() {
                            String::new()
                        } else {
                            format!(", error codes {}", job.error_codes)
                        }
                    ),
                )
                .with_job_id(Some(job_id.to_owned())))
            }
            JobStatus::Other(status) => {
                return Err(CloudError::new(
                    "qingcloud",
                    "DescribeJobs",
                    ErrorClass::Busy,
                    "JobStatusUnknown",
                    format!("job {job_id} has unknown status `{status}`"),
                )
                .with_job_id(Some(job_id.to_owned())))
            }
            JobStatus::Pending | JobStatus::Working => {}
        }
        let elapsed = started.elapsed();
        if elapsed >= settings.deadline {
            return Err(CloudError::new(
                "qingcloud",
                "DescribeJobs",
                ErrorClass::Busy,
                "JobTimeout",
                format!(
                    "job {job_id} still running after {}s",
                    settings.deadline.as_secs()
                ),
            )
            .with_job_id(Some(job_id.to_owned())));
        }
        // Waiting for a job is the operation itself, not a retry of a failed call.
        tokio::time::sleep(interval.min(settings.deadline - elapsed)).await;
        interval = (interval * 2).min(settings.max_interval);
    }
}

/// Used by the simulator and tests: a job_set entry as the API writes it.
pub fn job_json(job: &Job) -> serde_json::Value {
    serde_json::json!({
        "job_id": job.job_id,
        "job_action": job.job_action,
        "status": match &job.status {
            JobStatus::Pending => "pending",
            JobStatus::Working => "working",
            JobStatus::Successful => "successful",
            JobStatus::Failed => "failed",
            JobStatus::DoneWithFailure => "done with failure",
            JobStatus::Other(other) => other.as_str(),
        },
        "resource_ids": job.resource_ids.join(" "),
        "error_codes": job.error_codes,
    })
}

/// Reads `job_id` from an answer that started a job.
pub fn started_job_id(answer: &serde_json::Value, action: &str) -> Result<String, CloudError> {
    field_str(answer, action, "job_id").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_and_round_trip() {
        for status in [
            "pending",
            "working",
            "successful",
            "failed",
            "done with failure",
        ] {
            let job = Job {
                job_id: "j-1".into(),
                status: JobStatus::parse(status),
                job_action: "RunClusterCustomService".into(),
                resource_ids: vec!["cl-1".into(), "cln-2".into()],
                error_codes: String::new(),
            };
            assert_eq!(parse_job(&job_json(&job)), Some(job));
        }
        assert!(JobStatus::Pending.is_running());
        assert!(!JobStatus::DoneWithFailure.is_running());
    }

    #[test]
    fn poll_config_validates() {
        let mut issues = Vec::new();
        JobPollConfig {
            interval: Some("10s".into()),
            max_interval: Some("5s".into()),
            deadline: None,
        }
        .validate("policy[0].job_poll", &mut issues);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "policy[0].job_poll.max_interval");
        let built = JobPollConfig::default().build("p").unwrap();
        assert_eq!(built, JobPollSettings::default());
    }
}
