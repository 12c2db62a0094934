//! Obtaining and importing certificates: asks issuers for the certificates that are due,
//! stores new versions with their renewal plan, moves the plan to the CA's ARI suggestion,
//! and records each attempt (the obtain backoff reads that history).

use crate::config;
use crate::engine::event::{self, Event};
use crate::engine::pass::{CertificateEntry, CertificateSource, Components, Daemon, Shutdown};
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
        (Some(before), _) => RenewalRule::Before(*before),
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
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
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
        let stored = Event::CertificateStored {
            certificate: &certificate.name,
            version: &version,
            renewal_at,
            source,
        };
        event::emit(self.store.as_ref(), &self.metrics, now, stored)
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
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let name = entry.config.name.as_str();
        match event {
            FileEvent::Imported { bundle, .. } => {
                self.import(&entry.config, &bundle, &entry.config.source.label(), now)?;
                self.record_obtain(name, "import", None, now);
                Ok(())
            }
            FileEvent::Rejected { error, .. } => {
                // The file source has logged the rejection with the file it concerns.
                self.record_obtain(name, "import", Some((error.class, &error.code)), now);
                let rejected = Event::ImportRejected {
                    certificate: name,
                    error: &error,
                };
                event::emit(self.store.as_ref(), &self.metrics, now, rejected)
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
        now: OffsetDateTime,
    ) {
        let attempt = Attempt {
            subject_kind: SubjectKind::Certificate,
            subject: name.to_owned(),
            operation: operation.to_owned(),
            class: failure.map(|(class, _)| class),
            code: failure.map(|(_, code)| code.to_owned()),
            at: crate::store::truncate_to_seconds(now),
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
        shutdown: &Shutdown,
    ) -> Result<(), StoreError> {
        for entry in &components.certificates {
            if shutdown.is_set() {
                return Ok(());
            }
            self.health.progress();
            let name = entry.config.name.as_str();
            let label = entry.config.source.label();
            match &entry.source {
                CertificateSource::Files(files) => {
                    for event in files.scan().await {
                        self.file_event(entry, event, self.now())?;
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
                    let source_kind = entry.config.source.kind();
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
                            let finished = self.now();
                            self.import(&entry.config, &bundle, &label, finished)?;
                            self.record_obtain(name, "obtain", None, finished);
                            let obtained = Event::Obtained {
                                certificate: name,
                                source_kind,
                            };
                            event::emit(self.store.as_ref(), &self.metrics, finished, obtained)?;
                        }
                        Err(error) => {
                            let finished = self.now();
                            self.record_obtain(
                                name,
                                "obtain",
                                Some((error.class, &error.code)),
                                finished,
                            );
                            let failed = Event::ObtainFailed {
                                certificate: name,
                                source_kind,
                                error: &error,
                            };
                            event::emit(self.store.as_ref(), &self.metrics, finished, failed)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pass::Clock;
    use crate::source::{Issued, RenewalPoint};
    use crate::store::sqlite::SqliteStore;
    use crate::telemetry::metrics::Metrics;
    use crate::telemetry::server::Health;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    const CONFIG: &str = r#"
[local_ca.internal]

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = { local_ca = "internal" }
"#;

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<OffsetDateTime>>);

    impl FakeClock {
        fn at(start: OffsetDateTime) -> Self {
            Self(Arc::new(Mutex::new(start)))
        }
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
        fn set(&self, at: OffsetDateTime) {
            *self.0.lock().unwrap() = at;
        }
        fn as_clock(&self) -> Arc<Clock> {
            let clock = self.clone();
            Arc::new(move || clock.now())
        }
    }

    /// Issues 30-day certificates dated by the fake clock, or fails with `failure`; offers
    /// `point` as its ARI renewal point.
    struct FakeSource {
        clock: FakeClock,
        failure: Mutex<Option<ErrorClass>>,
        point: Mutex<Option<RenewalPoint>>,
        obtained: AtomicU32,
        ari_asked: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Source for FakeSource {
        async fn obtain(
            &self,
            request: &CertificateRequest,
        ) -> Result<crate::source::Issued, SourceError> {
            self.obtained.fetch_add(1, Ordering::SeqCst);
            if let Some(class) = *self.failure.lock().unwrap() {
                return Err(SourceError::new("local_ca", "issue", class, "Down", "down"));
            }
            let now = self.clock.now();
            let names: Vec<&str> = request.domains.iter().map(String::as_str).collect();
            let bundle = crate::cert::testing::self_signed(
                &names,
                now - time::Duration::hours(1),
                now + time::Duration::days(30),
            );
            Ok(Issued {
                chain_pem: bundle.leaf_pem,
                key_pem: bundle.key_pem,
                renewal: None,
            })
        }

        async fn renewal_point(
            &self,
            _certificate: &str,
            _leaf_pem: &str,
        ) -> Result<Option<RenewalPoint>, SourceError> {
            self.ari_asked.fetch_add(1, Ordering::SeqCst);
            Ok(self.point.lock().unwrap().clone())
        }
    }

    struct Fixture {
        _directory: tempfile::TempDir,
        clock: FakeClock,
        source: Arc<FakeSource>,
        store: Arc<dyn StateStore>,
        daemon: Daemon,
        components: Components,
    }

    impl Fixture {
        fn new() -> Self {
            let directory = tempfile::tempdir().unwrap();
            let text = format!(
                "[daemon]\nstate_dir = {:?}\n{CONFIG}",
                directory.path().display().to_string()
            );
            let config = config::load_str("t.toml", &text).unwrap().config;
            let clock = FakeClock::at(OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap());
            let source = Arc::new(FakeSource {
                clock: clock.clone(),
                failure: Mutex::new(None),
                point: Mutex::new(None),
                obtained: AtomicU32::new(0),
                ari_asked: AtomicU32::new(0),
            });
            let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(directory.path()).unwrap());
            let daemon = Daemon::new(store.clone(), Metrics::new().unwrap(), Health::new())
                .with_clock(clock.as_clock());
            let components = Components {
                certificates: vec![CertificateEntry {
                    config: config.certificates[0].clone(),
                    source: CertificateSource::Issuer(source.clone()),
                }],
                config,
                targets: HashMap::new(),
                policies: Vec::new(),
                inputs: HashMap::new(),
                secrets: BTreeMap::new(),
                _responders: Vec::new(),
            };
            Self {
                _directory: directory,
                clock,
                source,
                store,
                daemon,
                components,
            }
        }

        /// One obtain step at `at` on the fake clock; how many times the source was asked.
        async fn obtain_at(&self, at: OffsetDateTime) -> u32 {
            self.clock.set(at);
            self.daemon
                .obtain_due(&self.components, at, &BTreeSet::new(), &Shutdown::never())
                .await
                .unwrap();
            self.source.obtained.load(Ordering::SeqCst)
        }

        fn plan(&self) -> RenewalPlan {
            self.store.renewal_plan("www").unwrap().unwrap()
        }

        fn entry(&self) -> &CertificateEntry {
            &self.components.certificates[0]
        }
    }

    #[tokio::test]
    async fn a_certificate_is_obtained_when_due_and_not_before() {
        let fixture = Fixture::new();
        let start = fixture.clock.now();
        assert_eq!(
            fixture.obtain_at(start).await,
            1,
            "no version yet: due at once"
        );
        let first = fixture
            .store
            .latest_certificate_version("www")
            .unwrap()
            .unwrap();
        let plan = fixture.plan();
        // A third of the 30-day lifetime before expiry, less at most an hour of jitter.
        let base = first.not_after - (first.not_after - first.not_before) / 3;
        assert!(
            plan.renewal_at <= base && plan.renewal_at >= base - time::Duration::hours(1),
            "{plan:?}"
        );
        assert_eq!(
            fixture.daemon.certificate_due_at(fixture.entry()).unwrap(),
            Some(plan.renewal_at)
        );

        assert_eq!(fixture.obtain_at(start + time::Duration::days(1)).await, 1);
        assert_eq!(
            fixture
                .obtain_at(plan.renewal_at - time::Duration::seconds(1))
                .await,
            1,
            "one second early is not due"
        );
        assert_eq!(fixture.obtain_at(plan.renewal_at).await, 2);
        let second = fixture
            .store
            .latest_certificate_version("www")
            .unwrap()
            .unwrap();
        assert_ne!(second.fingerprint, first.fingerprint);
        assert_eq!(fixture.plan().fingerprint, second.fingerprint);
    }

    #[tokio::test]
    async fn a_failed_obtain_waits_for_its_backoff() {
        let fixture = Fixture::new();
        *fixture.source.failure.lock().unwrap() = Some(ErrorClass::Transient);
        let start = fixture.clock.now();
        assert_eq!(fixture.obtain_at(start).await, 1);
        let history = fixture
            .store
            .attempts(SubjectKind::Certificate, "www")
            .unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].at, start, "recorded at the fake clock's time");
        assert_eq!(history[0].class, Some(ErrorClass::Transient));
        let retry_at = fixture
            .daemon
            .certificate_due_at(fixture.entry())
            .unwrap()
            .unwrap();
        assert!(retry_at > start, "a failure backs off: {retry_at}");
        assert_eq!(obtain_retry_at(&history), Some(retry_at));

        assert_eq!(
            fixture
                .obtain_at(retry_at - time::Duration::seconds(1))
                .await,
            1,
            "not asked again during the backoff"
        );
        *fixture.source.failure.lock().unwrap() = None;
        assert_eq!(fixture.obtain_at(retry_at).await, 2);
        assert!(fixture
            .store
            .latest_certificate_version("www")
            .unwrap()
            .is_some());
        let forced = BTreeSet::from(["www".to_owned()]);
        fixture
            .daemon
            .obtain_due(&fixture.components, retry_at, &forced, &Shutdown::never())
            .await
            .unwrap();
        assert_eq!(
            fixture.source.obtained.load(Ordering::SeqCst),
            3,
            "a manual renew is not held back by the plan"
        );
    }

    #[test]
    fn an_import_stores_a_new_fingerprint_once() {
        let fixture = Fixture::new();
        let now = fixture.clock.now();
        let certificate = &fixture.components.config.certificates[0];
        let bundle = crate::cert::testing::self_signed(
            &["www.example.com"],
            now - time::Duration::days(1),
            now + time::Duration::days(60),
        );
        fixture
            .daemon
            .import(certificate, &bundle, "file", now)
            .unwrap();
        let later = now + time::Duration::hours(1);
        fixture
            .daemon
            .import(certificate, &bundle, "file", later)
            .unwrap();
        let versions = fixture.store.certificate_versions("www").unwrap();
        assert_eq!(versions.len(), 1, "the same fingerprint is stored once");
        assert_eq!(fixture.plan().updated_at, now, "and planned once");

        let renewed = crate::cert::testing::self_signed(
            &["www.example.com"],
            later,
            later + time::Duration::days(60),
        );
        fixture
            .daemon
            .import(certificate, &renewed, "file", later)
            .unwrap();
        assert_eq!(fixture.store.certificate_versions("www").unwrap().len(), 2);
        let plan = fixture.plan();
        assert_eq!(
            (plan.fingerprint.as_str(), plan.updated_at),
            (renewed.fingerprint(), later)
        );
        let stored = fixture
            .store
            .events(&crate::store::EventQuery {
                subject: Some("www".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            stored
                .iter()
                .filter(|event| event.kind == "certificate.stored")
                .map(|event| event.at)
                .collect::<Vec<_>>(),
            vec![now, later]
        );
    }

    #[tokio::test]
    async fn an_ari_point_moves_the_renewal() {
        let fixture = Fixture::new();
        let start = fixture.clock.now();
        fixture.obtain_at(start).await;
        let planned = fixture.plan().renewal_at;
        let renew_at = start + time::Duration::days(2);
        let next_poll = start + time::Duration::hours(6);
        *fixture.source.point.lock().unwrap() = Some(RenewalPoint {
            cert_id: "id".into(),
            window_start: renew_at - time::Duration::hours(1),
            window_end: renew_at + time::Duration::hours(1),
            renew_at,
            next_poll,
        });
        let asked_before = fixture.source.ari_asked.load(Ordering::SeqCst);

        let check = start + time::Duration::minutes(1);
        assert_eq!(fixture.obtain_at(check).await, 1);
        let plan = fixture.plan();
        assert_ne!(planned, renew_at);
        assert_eq!(
            plan.renewal_at, renew_at,
            "the CA's point replaces the plan"
        );
        assert_eq!(plan.ari_next_check_at, Some(next_poll));
        assert_eq!(plan.updated_at, check);
        assert_eq!(
            fixture.daemon.certificate_due_at(fixture.entry()).unwrap(),
            Some(renew_at)
        );
        let asked = fixture.source.ari_asked.load(Ordering::SeqCst);
        assert_eq!(asked, asked_before + 1);

        fixture
            .obtain_at(next_poll - time::Duration::seconds(1))
            .await;
        assert_eq!(
            fixture.source.ari_asked.load(Ordering::SeqCst),
            asked,
            "the CA's Retry-After is obeyed"
        );
        assert_eq!(
            fixture.obtain_at(renew_at).await,
            2,
            "renewed at the CA's point"
        );
    }
}
