//! Obtaining and importing certificates: asks issuers for the certificates that are due,
//! stores new versions with their renewal plan, moves the plan to the CA's ARI suggestion,
//! and records each attempt (the obtain backoff reads that history).

use crate::config;
use crate::engine::pass::{CertificateEntry, CertificateSource, Components, Daemon};
use crate::engine::renewal::{choose_jitter, renewal_time, RenewalInputs, RenewalRule};
use crate::engine::schedule::obtain_retry_at;
use crate::error::ErrorClass;
use crate::source::file::FileEvent;
use crate::source::{CertificateRequest, Source, SourceError};
use crate::store::{Attempt, CertificateVersion, RenewalPlan, StateStore, StoreError, SubjectKind};
use std::collections::BTreeSet;
use std::time::Duration;
use time::OffsetDateTime;

/// When `version` is due for renewal: its persisted plan, or (a plan from an older run, or
/// none) the configured rule without jitter.
pub fn planned_renewal(
    store: &dyn StateStore,
    certificate: &config::CertificateConfig,
    version: &CertificateVersion,
) -> Result<OffsetDateTime, StoreError> {
    crate::engine::state::planned_renewal(
        store,
        &certificate.name,
        renewal_rule(certificate),
        version,
    )
}

pub(crate) fn renewal_rule(certificate: &config::CertificateConfig) -> RenewalRule {
    match (&certificate.renew_before, certificate.renew_ratio) {
        (Some(before), _) => config::parse_duration(before)
            .map(RenewalRule::Before)
            .unwrap_or_default(),
        (None, Some(ratio)) => RenewalRule::Ratio(ratio),
        (None, None) => RenewalRule::default(),
    }
}

impl Daemon {
    /// Stores a new version (if its fingerprint is new) and plans its renewal.
    pub(crate) fn import(
        &self,
        certificate: &config::CertificateConfig,
        bundle: &crate::cert::CertificateBundle,
        source: &str,
    ) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        if self
            .store
            .latest_certificate_version(&certificate.name)?
            .is_some_and(|latest| latest.fingerprint == bundle.fingerprint())
        {
            return Ok(());
        }
        let version = CertificateVersion::from_bundle(&certificate.name, bundle, source, now);
        self.store
            .insert_certificate_version(&version, &certificate.deploy_to)?;
        let lifetime = (bundle.info.not_after - bundle.info.not_before).unsigned_abs();
        let renewal_at = renewal_time(&RenewalInputs {
            not_before: bundle.info.not_before,
            not_after: bundle.info.not_after,
            rule: renewal_rule(certificate),
            ari_point: None,
            jitter: choose_jitter(lifetime, &mut rand::thread_rng()),
        });
        self.store.put_renewal_plan(&RenewalPlan {
            certificate: certificate.name.clone(),
            fingerprint: bundle.fingerprint().to_owned(),
            renewal_at,
            ari_window: None,
            ari_next_check_at: None,
            updated_at: now,
        })?;
        self.metrics.set_certificate_version(
            &certificate.name,
            Some(crate::engine::state::validity(&version)),
            renewal_at.unix_timestamp(),
        );
        tracing::info!(
            certificate = %certificate.name,
            fingerprint = %version.fingerprint,
            serial = %version.serial,
            not_after = %version.not_after,
            renewal_at = %renewal_at,
            source = %source,
            "stored a new certificate version"
        );
        self.event(
            "certificate.stored",
            &certificate.name,
            format!("stored a new version of {}", certificate.name),
            serde_json::json!({"fingerprint": bundle.fingerprint(), "source": source, "not_after": bundle.info.not_after.unix_timestamp()}),
        );
        Ok(())
    }

    /// Moves the renewal point of `latest` to the CA's ARI suggestion when the source has
    /// one, at most once per the CA's Retry-After (kept in the plan, so restarts obey it).
    pub(crate) async fn refresh_ari(
        &self,
        entry: &CertificateEntry,
        source: &dyn Source,
        latest: &CertificateVersion,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let name = entry.config.name.as_str();
        let Some(mut plan) = self
            .store
            .renewal_plan(name)?
            .filter(|plan| plan.fingerprint == latest.fingerprint)
        else {
            return Ok(());
        };
        if plan.ari_next_check_at.is_some_and(|at| at > now) {
            return Ok(());
        }
        match source.renewal_point(name, &latest.chain_pem).await {
            Ok(Some(point)) => {
                plan.renewal_at = renewal_time(&RenewalInputs {
                    not_before: latest.not_before,
                    not_after: latest.not_after,
                    rule: renewal_rule(&entry.config),
                    ari_point: Some(point.renew_at),
                    jitter: Duration::ZERO,
                });
                plan.ari_window = Some(crate::store::AriWindow {
                    start: point.window_start,
                    end: point.window_end,
                });
                plan.ari_next_check_at = Some(point.next_poll);
                plan.updated_at = now;
                self.store.put_renewal_plan(&plan)?;
                self.metrics
                    .certificate_renewal
                    .with_label_values(&[name])
                    .set(plan.renewal_at.unix_timestamp() as f64);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(certificate = %name, code = %error.code, error = %error, "renewal information unavailable; keeping the planned time");
            }
        }
        Ok(())
    }

    /// Stores what a file source found: a new version, or the refusal of bad files (the
    /// previous version stays in force).
    pub(crate) fn file_event(
        &self,
        entry: &CertificateEntry,
        event: FileEvent,
    ) -> Result<(), StoreError> {
        let name = entry.config.name.as_str();
        match event {
            FileEvent::Imported { bundle, .. } => {
                self.import(&entry.config, &bundle, &entry.config.source.label())?;
                self.record_obtain(name, "import", None);
                Ok(())
            }
            FileEvent::Rejected { error, .. } => {
                // The file source has logged the rejection with the file it concerns.
                self.record_obtain(name, "import", Some((error.class, &error.code)));
                self.metrics
                    .renewals
                    .with_label_values(&[name, "file", "failure"])
                    .inc();
                self.event(
                    "certificate.rejected",
                    name,
                    error.to_string(),
                    serde_json::json!({"code": error.code, "class": error.class.as_str()}),
                );
                Ok(())
            }
        }
    }

    /// When an issued certificate is next due: the renewal plan of its newest version (or
    /// the configured rule when an older run left no plan), but not before the backoff of
    /// failed attempts allows. `None` for file sources, which are event-driven.
    pub(crate) fn certificate_due_at(
        &self,
        entry: &CertificateEntry,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let CertificateSource::Issuer(_) = entry.source else {
            return Ok(None);
        };
        let name = entry.config.name.as_str();
        let renewal_at = match self.store.latest_certificate_version(name)? {
            None => OffsetDateTime::UNIX_EPOCH,
            Some(latest) => planned_renewal(self.store.as_ref(), &entry.config, &latest)?,
        };
        let history = self.store.attempts(SubjectKind::Certificate, name)?;
        let retry_at = obtain_retry_at(&history);
        Ok(Some(retry_at.map_or(renewal_at, |at| at.max(renewal_at))))
    }

    /// Records an obtain or import attempt and sets the certificate's failure gauges from
    /// the history it ends (the same reading as at start, `engine::state`).
    pub(crate) fn record_obtain(
        &self,
        name: &str,
        operation: &str,
        failure: Option<(ErrorClass, &str)>,
    ) {
        let attempt = Attempt {
            subject_kind: SubjectKind::Certificate,
            subject: name.to_owned(),
            operation: operation.to_owned(),
            class: failure.map(|(class, _)| class),
            code: failure.map(|(_, code)| code.to_owned()),
            at: crate::store::truncate_to_seconds(OffsetDateTime::now_utc()),
        };
        if let Err(error) = self.store.record_attempt(&attempt) {
            tracing::error!(error = %error, "cannot record an obtain attempt");
        }
        if failure.is_none() {
            self.metrics
                .certificate_succeeded(name, attempt.at.unix_timestamp());
            return;
        }
        match self.store.attempts(SubjectKind::Certificate, name) {
            Ok(history) => self
                .metrics
                .set_certificate_failing(name, crate::engine::state::failing(&history)),
            Err(error) => tracing::error!(error = %error, "cannot read the obtain attempts"),
        }
    }

    /// Obtains certificates that are due (or named in `force`) from issuers and imports
    /// changed files.
    pub(crate) async fn obtain_due(
        &self,
        components: &Components,
        now: OffsetDateTime,
        force: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        for entry in &components.certificates {
            self.health.progress();
            let name = entry.config.name.as_str();
            let label = entry.config.source.label();
            match &entry.source {
                CertificateSource::Files(files) => {
                    for event in files.scan().await {
                        self.file_event(entry, event)?;
                    }
                }
                CertificateSource::Issuer(source) => {
                    let latest = self.store.latest_certificate_version(name)?;
                    if let Some(latest) = &latest {
                        self.refresh_ari(entry, source.as_ref(), latest, now)
                            .await?;
                    }
                    let forced = force.contains(name);
                    if !forced && self.certificate_due_at(entry)?.is_some_and(|at| at > now) {
                        continue;
                    }
                    let mut request = CertificateRequest::new(name, entry.config.domains.clone());
                    request.key = entry.config.key;
                    request.previous_leaf_pem =
                        latest.as_ref().map(|latest| latest.chain_pem.clone());
                    let source_kind = label.split(':').next().unwrap_or("source");
                    match source.obtain(&request).await.and_then(|issued| {
                        issued.bundle().map_err(|error| {
                            SourceError::new(
                                "source",
                                "parse",
                                crate::error::ErrorClass::Invalid,
                                "BadCertificate",
                                error.to_string(),
                            )
                        })
                    }) {
                        Ok(bundle) => {
                            self.import(&entry.config, &bundle, &label)?;
                            self.record_obtain(name, "obtain", None);
                            self.metrics
                                .renewals
                                .with_label_values(&[name, source_kind, "success"])
                                .inc();
                        }
                        Err(error) => {
                            self.record_obtain(name, "obtain", Some((error.class, &error.code)));
                            self.metrics
                                .renewals
                                .with_label_values(&[name, source_kind, "failure"])
                                .inc();
                            crate::telemetry::logging::failure!(
                                crate::telemetry::logging::needs_human(error.class, false),
                                certificate = %name, class = %error.class, code = %error.code,
                                error = %error, "obtaining a certificate failed"
                            );
                            self.event("certificate.obtain_failed", name, error.to_string(), serde_json::json!({"class": error.class.as_str(), "code": error.code}));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
