//! When work is next due: renewals and obtain retries, ARI checks, policy schedules and
//! their backoff, deploy retries. The loop sleeps until the earliest of these.

use crate::config::{self, Config};
use crate::engine::pass::{Components, Daemon};
use crate::engine::schedule::policy_due_at;
use crate::store::{DeployStatus, PolicyStatus, StoreError, SubjectKind};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;

impl Daemon {
    /// When `policy` is next checked (see [`policy_due_at`]), on its own schedule or the
    /// daemon's scan schedule; a failed resource waits for its backoff in the attempt
    /// history (the same the policy pass obeys, so a wake-up is never wasted).
    pub(crate) fn policy_due(
        &self,
        config: &Config,
        policy: &config::PolicyConfig,
        statuses: &[PolicyStatus],
    ) -> Result<OffsetDateTime, StoreError> {
        let expression = policy
            .schedule
            .as_ref()
            .unwrap_or(&config.daemon.scan_schedule);
        let schedule = expression.cron();
        let mine: Vec<&PolicyStatus> = statuses
            .iter()
            .filter(|status| status.policy == policy.name)
            .collect();
        let mut retries = HashMap::new();
        for status in mine.iter().filter(|status| status.last_error.is_some()) {
            let subject = crate::engine::policy::subject(&policy.name, &status.resource);
            let history = self.store.attempts(SubjectKind::Policy, &subject)?;
            retries.insert(
                status.resource.clone(),
                crate::engine::policy::retry_at(&history),
            );
        }
        Ok(policy_due_at(
            schedule,
            &policy.resources,
            &mine,
            |status| retries.get(&status.resource).copied().flatten(),
        ))
    }

    /// When work is next due: renewals and obtain retries, deploy retries and windows.
    pub(crate) fn next_due(
        &self,
        components: &Components,
    ) -> Result<Vec<OffsetDateTime>, StoreError> {
        let mut due = Vec::new();
        for entry in &components.certificates {
            due.extend(self.certificate_due_at(entry)?);
        }
        for plan in self.store.renewal_plans()? {
            due.extend(plan.ari_next_check_at);
        }
        let statuses = self.store.policy_statuses()?;
        for (config, _) in &components.policies {
            due.push(self.policy_due(&components.config, config, &statuses)?);
        }
        let wanted: BTreeSet<(&str, &str)> = components
            .certificates
            .iter()
            .flat_map(|entry| {
                entry
                    .config
                    .deploy_to
                    .iter()
                    .map(|target| (target.as_str(), entry.config.name.as_str()))
            })
            .collect();
        for record in self.store.deployments()? {
            if !wanted.contains(&(record.target.as_str(), record.certificate.as_str())) {
                continue;
            }
            match record.status {
                DeployStatus::Pending | DeployStatus::Failed | DeployStatus::Deploying => {
                    due.push(record.next_attempt_at.unwrap_or(OffsetDateTime::UNIX_EPOCH));
                }
                DeployStatus::InSync | DeployStatus::Parked => {}
            }
        }
        Ok(due)
    }
}
