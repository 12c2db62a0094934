//! The deploy queue of a pass: every (target, newest version) pair, queued per vendor account
//! and run by one driver per account with bounded concurrency; unfinished work goes first.

use crate::engine::deploy::{reconcile_target_with_inputs, DeployContext, TargetHandle};
use crate::engine::pass::{Components, Daemon, Shutdown};
use crate::store::{CertificateVersion, DeployStatus, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use time::OffsetDateTime;

/// One (target, certificate version) for a pass's deploy queue.
struct DeployJob {
    handle: TargetHandle,
    version: Arc<CertificateVersion>,
    names: Arc<[String]>,
    inputs: Option<String>,
    scan: bool,
}

impl Daemon {
    /// Deploys the newest version of every certificate to its targets; one failing target
    /// never blocks the others. Concurrency is bounded per vendor account.
    pub(crate) async fn deploy_all(
        &self,
        components: &Components,
        now: OffsetDateTime,
        scan: bool,
        force: &BTreeSet<String>,
        shutdown: &Shutdown,
    ) -> Result<(), StoreError> {
        let context = DeployContext {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            retry: self.retry,
            grace: components.config.daemon.grace_period,
        };
        // Targets the ledger does not show in sync go first: after a restart in the middle
        // of a rollout, the unfinished work is not queued behind re-reading the finished.
        let in_sync: BTreeSet<(String, String)> = self
            .store
            .deployments()?
            .into_iter()
            .filter(|record| record.status == DeployStatus::InSync)
            .filter_map(|record| Some((record.target, record.desired_fingerprint?)))
            .collect();
        // Queued per vendor and run by one driver each with at most `concurrency` deploys
        // in flight, so 10,000 targets never mean 10,000 live futures at once (the memory
        // of a burst stays with the allocator long after the pass).
        // One queue per vendor account: the vendors' limits are per account, so accounts
        // never wait in one another's queue (a fleet over four Alibaba accounts runs each at
        // its own limit at once).
        let config = &components.config;
        let accounts: HashMap<&str, &str> = config
            .targets
            .iter()
            .filter_map(|target| {
                let name = target.credentials.as_deref()?;
                let credentials = config.credentials.get(name);
                let account = credentials
                    .and_then(|credentials| credentials.account.as_deref())
                    .or(credentials.and_then(|credentials| credentials.access_key_id.as_deref()))
                    .unwrap_or(name);
                Some((target.name.as_str(), account))
            })
            .collect();
        let account = |target: &str| accounts.get(target).copied().unwrap_or_default();
        let mut queues: HashMap<(&'static str, &str), Vec<(bool, DeployJob)>> = HashMap::new();
        for entry in &components.certificates {
            let Some(version) = self.store.latest_certificate_version(&entry.config.name)? else {
                continue;
            };
            let version = Arc::new(version);
            let names: Arc<[String]> = entry.config.domains.clone().into();
            for target_name in &entry.config.deploy_to {
                let Some(handle) = components.targets.get(target_name).cloned() else {
                    continue;
                };
                let forced = force.contains(target_name);
                if forced {
                    self.clear_backoff(target_name, &entry.config.name)?;
                }
                let done = in_sync.contains(&(target_name.clone(), version.fingerprint.clone()));
                let job = DeployJob {
                    inputs: components.inputs.get(target_name).cloned(),
                    handle,
                    version: version.clone(),
                    names: names.clone(),
                    scan: scan || forced,
                };
                queues
                    .entry((job.handle.vendor, account(target_name)))
                    .or_default()
                    .push((done, job));
            }
        }
        let concurrency = components.config.daemon.concurrency.max(1);
        let mut drivers = tokio::task::JoinSet::new();
        for ((vendor, _), mut jobs) in queues {
            jobs.sort_by_key(|(done, _)| *done);
            let context = context.clone();
            let health = self.health.clone();
            let shutdown = shutdown.clone();
            drivers.spawn(async move {
                let mut running = tokio::task::JoinSet::new();
                let mut jobs = jobs.into_iter().map(|(_, job)| job);
                loop {
                    while running.len() < concurrency {
                        if shutdown.is_set() {
                            // Stopping: the deploys in flight finish, no new one starts.
                            let not_started = jobs.by_ref().count();
                            if not_started > 0 {
                                tracing::info!(
                                    vendor,
                                    not_started,
                                    "stopping: targets left unreconciled in this pass; the next start does them"
                                );
                            }
                            break;
                        }
                        let Some(job) = jobs.next() else { break };
                        let context = context.clone();
                        running.spawn(async move {
                            reconcile_target_with_inputs(
                                &context,
                                &job.handle,
                                &job.version,
                                &job.names,
                                job.inputs.as_deref(),
                                now,
                                job.scan,
                            )
                            .await
                        });
                    }
                    let joined = running.join_next().await;
                    health.progress();
                    match joined {
                        None => return Ok(()),
                        Some(Ok(Ok(_))) => {}
                        Some(Ok(Err(error))) => return Err(error),
                        Some(Err(error)) => {
                            tracing::error!(error = %error, "a deploy task failed")
                        }
                    }
                }
            });
        }
        while let Some(joined) = drivers.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(error) => tracing::error!(error = %error, "a deploy driver failed"),
            }
        }
        Ok(())
    }

    /// A manual deploy: forget the backoff (and a parked state) so the target is tried now.
    pub(crate) fn clear_backoff(&self, target: &str, certificate: &str) -> Result<(), StoreError> {
        if let Some(mut record) = self.store.deployment(target, certificate)? {
            if matches!(record.status, DeployStatus::Failed | DeployStatus::Parked) {
                record.status = DeployStatus::Pending;
            }
            record.next_attempt_at = None;
            record.attempts = 0;
            self.store.put_deployment(&record)?;
        }
        Ok(())
    }
}
