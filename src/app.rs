//! Wiring: the only module that knows every component. `build` makes vendor clients,
//! targets, policies and sources from a validated config; this file runs the daemon loop
//! (`certkeeper run`): it starts a pass (`engine::pass`) when work is due, serves metrics,
//! speaks the systemd notify protocol, reloads on SIGHUP (a bad new config is refused and
//! the old one keeps running) and drains on SIGTERM. Beside it: `ha` (leadership with the
//! shared store), `store` (sealing and retention), `watch` (file sources, secret files,
//! the scan schedule) and `manual` (`renew`/`deploy` with no daemon running).

mod build;
mod ha;
mod manual;
mod store;
mod watch;

use crate::config::credentials::{ProcessEnvironment, SecretEnvironment};
use crate::config::{self, Config};
use crate::control::{add_to, check_request, ControlRequest, ControlResponse, Incoming};
pub use crate::engine::obtain::planned_renewal;
use crate::engine::pass::{Components, Daemon, Manual, Shutdown};
use crate::engine::schedule::{next_wake, MAX_SLEEP};
use crate::store::{StateStore, StoreError};
use crate::systemd::Notifier;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::Health;
pub use build::{build, build_cloud, BuildError, Cloud, StartError};
use build::{build_sources, changed_secrets, reload, source_store_for};
pub use manual::run_manual;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{apply_retention, newest_event_id, seal_store, RETENTION_INTERVAL};
use time::OffsetDateTime;
use watch::{next_scan_time, secrets_now, watch_files, SECRET_CHECK_INTERVAL};

/// How often a follower reads the shared store into its gauges.
const FOLLOWER_REFRESH: Duration = Duration::from_secs(5);

/// How often the leader looks for requests followers queued.
const FORWARDED_POLL: Duration = Duration::from_secs(1);

/// Prints a line per reconcile pass (the demo's rollout view).
pub type Reporter = Box<dyn Fn(&str) + Send + Sync>;

/// `certkeeper run`: runs until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf, loaded: config::Loaded) -> anyhow::Result<()> {
    run_with(
        config_path,
        loaded,
        Arc::new(ProcessEnvironment),
        false,
        None,
    )
    .await
}

/// Config issues a refused reload logs; the rest are counted (`check` lists them all).
const MAX_LOGGED_ISSUES: usize = 20;

/// The shortest pause between two passes, so a record that stays due cannot spin the loop.
const MIN_PASS_INTERVAL: Duration = Duration::from_secs(1);

/// The daemon with its secrets' environment injected; with `once`, returns as soon as every
/// target is in sync and every policy resource compliant (or fails after two minutes).
///
/// One loop takes every event: timers (the earliest renewal, retry or scan, computed from
/// the store after each pass), file changes, SIGHUP, manual requests on the control socket,
/// SIGTERM/SIGINT. Passes run as a task beside the loop, so the watchdog, reloads and
/// signals are served while a long rollout runs; events during a pass queue one more pass.
pub async fn run_with(
    config_path: PathBuf,
    loaded: config::Loaded,
    environment: Arc<dyn SecretEnvironment + Send + Sync>,
    once: bool,
    reporter: Option<Reporter>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    use tokio::time::Instant;
    let notifier = Notifier::new();
    let metrics = Metrics::new().context("setting up metrics")?;
    let health = Health::new();
    let config = loaded.config;
    health.set_stall_budget(config.daemon.stall_timeout);
    // Every cloud call answered is progress of the running pass.
    let progress_observer: Arc<dyn crate::cloud::http::RequestObserver> =
        Arc::new(crate::telemetry::server::ProgressObserver {
            health: health.clone(),
            inner: Arc::new(metrics.clone()),
        });
    // On the blocking pool: the state directory's checks, SQLite's open and the lock block.
    let state_dir = config.daemon.state_dir.clone();
    let store_key = crate::store::seal::configured_key(&config.store, environment.as_ref())
        .map_err(|error| StartError::Config(BuildError::Component(error.to_string())))?;
    let shared = ha::open_shared_store(&config, environment.as_ref()).await?;
    let opening = {
        let state_dir = state_dir.clone();
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || -> Result<_, StartError> {
            let opened = ha::open_local_or(shared, &state_dir)?;
            let lock = crate::fsutil::lock_state_dir(&state_dir).map_err(|source| {
                StartError::StateDirectory {
                    what: "locking the state directory",
                    path: state_dir.clone(),
                    source: Box::new(source),
                }
            })?;
            let store: Arc<dyn StateStore> = match opened {
                ha::Opened::Shared(shared) => shared,
                ha::Opened::Local(local) => seal_store(local, store_key, &state_dir)?,
            };
            Ok((store, lock))
        })
    };
    let (store, _state_lock) = opening.await.context("opening the state store")??;
    health.set_store_open();
    // One leader among the daemons sharing a PostgreSQL store; the SQLite one always leads.
    let (leadership, lease_task, lease_stop_tx) = ha::lead(&shared, &config, &metrics, &health);
    let mut leader_changes = leadership.subscribe();
    // A follower refreshes its gauges from the shared store (the leader's pass does it).
    let mut follower_timer = tokio::time::interval(FOLLOWER_REFRESH);
    follower_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The leader picks up `renew` and `deploy` that followers queued in the store.
    let mut forwarded_timer = tokio::time::interval(FORWARDED_POLL);
    forwarded_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut taking: Option<tokio::task::JoinHandle<ha::Taken>> = None;
    let source_store = source_store_for(&store, &config);
    let start_error = |error| StartError::from_build(error, &state_dir);
    let cloud = build_cloud(&config, environment.as_ref(), progress_observer.clone())
        .map_err(start_error)?;
    let mut components = Arc::new(
        build_sources(&config, cloud, source_store.clone())
            .await
            .map_err(start_error)?,
    );
    ha::share_tokens(&components, &shared);
    // Held once: the components own the config from here on (≈ 6 MiB at 10,000 targets).
    drop(config);
    health.set_config_loaded();
    metrics.config_load(true, OffsetDateTime::now_utc().unix_timestamp());
    let listener = tokio::net::TcpListener::bind(&components.config.daemon.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "binding metrics on {}",
                components.config.daemon.metrics_listen
            )
        })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Set on SIGTERM/SIGINT: the running pass stops taking new work (see `Shutdown`).
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let server_stop = {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
        }
    };
    let server = tokio::spawn(crate::telemetry::server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        server_stop,
    ));
    let daemon = Arc::new(Daemon::new(store.clone(), metrics.clone(), health.clone()));
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Incoming>(64);
    let control_server = match crate::control::serve(
        &components.config.daemon.state_dir,
        control_tx,
    ) {
        Ok(server) => Some(server),
        Err(error) => {
            tracing::warn!(error = %error, "no control socket: `certkeeper renew` and `deploy` will run in-process");
            None
        }
    };
    let (files_tx, mut files_rx) = tokio::sync::mpsc::unbounded_channel();
    let (mut watch_stop_tx, watch_stop_rx) = tokio::sync::watch::channel(false);
    watch_files(&components, &files_tx, &watch_stop_rx);
    daemon.restore_metrics(&components);

    // READY as soon as the config is loaded and the store open: the first pass runs in the
    // loop like every other, and /readyz reports when it has finished.
    notifier.ready(&format!(
        "{} certificates, {} targets",
        components.config.certificates.len(),
        components.config.targets.len()
    ));
    tracing::info!("certkeeper ready");
    let report = |components: &Components| -> anyhow::Result<bool> {
        let (line, converged) = crate::status::rollout_summary(store.as_ref(), components)?;
        if let Some(reporter) = &reporter {
            reporter(&line);
        }
        Ok(converged)
    };
    let started = std::time::Instant::now();
    let watchdog = notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(30));
    let mut watchdog_timer = tokio::time::interval(watchdog);
    watchdog_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stall_reported = false;
    let mut next_scan = next_scan_time(&components.config, OffsetDateTime::now_utc());
    let mut wake_at = Instant::now();
    let mut pass_wanted = true;
    let mut scan_wanted = true;
    let mut running: Option<tokio::task::JoinHandle<Result<(), StoreError>>> = None;
    let mut queued: Vec<Incoming> = Vec::new();
    let mut answering: Vec<Incoming> = Vec::new();
    let mut answering_since = 0;
    let mut retention_due = Instant::now();
    // A reload parses and builds beside the loop (the control socket and the watchdog keep
    // being served); a SIGHUP during one queues one more.
    let mut reloading: Option<tokio::task::JoinHandle<anyhow::Result<(Config, Components)>>> = None;
    let mut reload_again = false;
    // `certkeeper reload` callers: answered when the reload running now ends, or (asked
    // during one) when the next, which reads the file as it is after their request, ends.
    let mut reload_callers: Vec<tokio::sync::oneshot::Sender<ControlResponse>> = Vec::new();
    let mut reload_callers_next: Vec<tokio::sync::oneshot::Sender<ControlResponse>> = Vec::new();
    let start_reload = || {
        notifier.reloading();
        tokio::spawn(reload(
            config_path.clone(),
            source_store.clone(),
            environment.clone(),
            progress_observer.clone(),
        ))
    };
    // Accounts whose secret a reload found changed; their auth backoff is reset before the
    // next pass starts (not during one, whose failure would be written over the reset).
    let mut secrets_changed: BTreeSet<String> = BTreeSet::new();
    // The secrets as last seen, on disk or at the last reload: a secret file replaced under
    // the running daemon counts like a reload that changed it (no SIGHUP needed).
    let mut known_secrets = components.secrets.clone();
    let mut secret_check = tokio::time::interval(SECRET_CHECK_INTERVAL);
    secret_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if running.is_none() && leadership.is_leader() && (pass_wanted || Instant::now() >= wake_at)
        {
            if !secrets_changed.is_empty() {
                let changed = std::mem::take(&mut secrets_changed);
                if let Err(error) = daemon.reset_auth_backoff(&components, &changed) {
                    tracing::error!(error = %error, "resetting the backoff of changed credentials failed");
                }
            }
            let now = OffsetDateTime::now_utc();
            let scan = scan_wanted || once || next_scan.is_some_and(|at| at <= now);
            if scan {
                next_scan = next_scan_time(&components.config, now);
            }
            let mut manual = Manual::default();
            for (request, _) in &queued {
                add_to(&mut manual, request);
            }
            answering = std::mem::take(&mut queued);
            answering_since = newest_event_id(store.as_ref());
            pass_wanted = false;
            scan_wanted = false;
            let (daemon, components) = (daemon.clone(), components.clone());
            let shutdown = Shutdown::new(shutdown_rx.clone());
            running = Some(tokio::spawn(async move {
                daemon
                    .reconcile(&components, scan, &manual, &shutdown)
                    .await
            }));
        }
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = watchdog_timer.tick() => {
                health.tick(OffsetDateTime::now_utc().unix_timestamp());
                // A stalled pass starves the watchdog, so systemd restarts the daemon.
                match health.stall() {
                    None => {
                        notifier.watchdog();
                        if stall_reported {
                            tracing::info!("the pass is making progress again; feeding the watchdog");
                            stall_reported = false;
                        }
                    }
                    Some(stall) if !stall_reported => {
                        tracing::error!(silent_seconds = stall.silent_for.as_secs(), budget_seconds = stall.budget.as_secs(), "{stall}; no longer feeding the watchdog");
                        stall_reported = true;
                    }
                    Some(_) => {}
                }
            }
            _ = secret_check.tick() => {
                let now_secrets = secrets_now(&components.config, environment.as_ref(), &known_secrets);
                let changed = changed_secrets(&known_secrets, &now_secrets);
                known_secrets = now_secrets;
                if !changed.is_empty() {
                    tracing::info!(credentials = ?changed, "a secret of these credentials changed on disk: what failed authentication with them is retried now");
                    secrets_changed.extend(changed);
                    pass_wanted = true;
                }
            }
            _ = hangup.recv() => {
                if reloading.is_some() {
                    tracing::info!("SIGHUP during a reload: another reload follows it");
                    reload_again = true;
                } else {
                    reloading = Some(start_reload());
                }
            }
            reloaded = async {
                match reloading.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                reloading = None;
                match reloaded.map_err(anyhow::Error::from).and_then(|result| result) {
                    Ok((_, new_components)) => {
                        secrets_changed.extend(changed_secrets(&known_secrets, &new_components.secrets));
                        known_secrets = new_components.secrets.clone();
                        components = Arc::new(new_components);
                        ha::share_tokens(&components, &shared);
                        daemon.restore_metrics(&components);
                        let _ = watch_stop_tx.send(true);
                        let (tx, rx) = tokio::sync::watch::channel(false);
                        watch_stop_tx = tx;
                        watch_files(&components, &files_tx, &rx);
                        next_scan = next_scan_time(&components.config, OffsetDateTime::now_utc());
                        metrics.config_reloads.with_label_values(&["success"]).inc();
                        metrics.config_load(true, OffsetDateTime::now_utc().unix_timestamp());
                        tracing::info!("configuration reloaded");
                        pass_wanted = true;
                        scan_wanted = true;
                        for caller in reload_callers.drain(..) {
                            let _ = caller.send(ControlResponse::ok("configuration reloaded"));
                        }
                    }
                    Err(error) => {
                        metrics.config_reloads.with_label_values(&["failure"]).inc();
                        metrics.config_load(false, OffsetDateTime::now_utc().unix_timestamp());
                        let error = match error.downcast_ref::<config::ConfigError>() {
                            Some(invalid) => invalid.summary(MAX_LOGGED_ISSUES),
                            None => format!("{error:#}"),
                        };
                        tracing::error!(error = %error, "reload refused; the previous configuration keeps running");
                        for caller in reload_callers.drain(..) {
                            let _ = caller.send(ControlResponse::failed(format!(
                                "reload refused; the previous configuration keeps running: {error}"
                            )));
                        }
                    }
                }
                notifier.ready("reloaded");
                if std::mem::take(&mut reload_again) {
                    reload_callers.append(&mut reload_callers_next);
                    reloading = Some(start_reload());
                }
            }
            Some((request, reply)) = control_rx.recv() => {
                // One branch for every request: a select! pattern that does not match would
                // drop the request it received.
                if request == ControlRequest::Reload {
                    tracing::info!("reload requested on the control socket");
                    if reloading.is_some() {
                        reload_again = true;
                        reload_callers_next.push(reply);
                    } else {
                        reload_callers.push(reply);
                        reloading = Some(start_reload());
                    }
                    continue;
                }
                if let ControlRequest::Plan { json } = request {
                    // Beside any pass, with the daemon's clients and their token buckets.
                    tracing::info!("plan requested on the control socket");
                    let components = components.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(crate::control::answer_plan(&components, json).await);
                    });
                    continue;
                }
                match check_request(&components.config, &request) {
                    Ok(()) if !leadership.is_leader() => {
                        // A follower passes it on; the SQLite store always leads.
                        if let Some(shared) = &shared {
                            let (shared, instance) = (shared.clone(), leadership.instance().to_owned());
                            tokio::spawn(async move {
                                let _ = reply.send(ha::forward(shared, instance, request).await);
                            });
                        }
                    }
                    Ok(()) => {
                        tracing::info!(request = ?request, "manual request");
                        queued.push((request, reply));
                        pass_wanted = true;
                    }
                    Err(refusal) => {
                        let _ = reply.send(refusal);
                    }
                }
            }
            Some((name, event)) = files_rx.recv() => {
                // The leader imports (its writes are fenced); a follower's copy would be refused.
                if !leadership.is_leader() {
                    continue;
                }
                if let Some(entry) = components.certificates.iter().find(|entry| entry.config.name == name) {
                    if let Err(error) = daemon.file_event(entry, event, OffsetDateTime::now_utc()) {
                        tracing::error!(error = %error, "storing an imported certificate failed");
                    }
                    pass_wanted = true;
                }
            }
            joined = async {
                match running.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                running = None;
                let mut pause = MIN_PASS_INTERVAL;
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::error!(error = %error, "reconcile failed");
                        pause = Duration::from_secs(30);
                    }
                    Err(error) if error.is_cancelled() => {
                        tracing::warn!("the reconcile pass was stopped: this instance no longer leads");
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "a reconcile pass panicked");
                        pause = Duration::from_secs(30);
                    }
                }
                for (request, reply) in answering.drain(..) {
                    let _ = reply.send(crate::control::answer_request(store.as_ref(), &components, &request, answering_since));
                }
                let now = OffsetDateTime::now_utc();
                if Instant::now() >= retention_due {
                    retention_due = Instant::now() + RETENTION_INTERVAL;
                    apply_retention(store.as_ref(), &components.config, now);
                }
                match crate::status::daemon_summary(&components.config, store.as_ref(), now) {
                    Ok(line) => notifier.status(&line),
                    Err(error) => tracing::error!(error = %error, "reading the state for STATUS failed"),
                }
                match report(&components) {
                    Ok(true) if once => break,
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "reading rollout state failed"),
                }
                if once && started.elapsed() > Duration::from_secs(120) {
                    let _ = stop_tx.send(true);
                    anyhow::bail!("did not converge within two minutes; see `certkeeper status`");
                }
                let due = match daemon.next_due(&components) {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::error!(error = %error, "reading what is due failed");
                        vec![now + Duration::from_secs(30)]
                    }
                };
                let max_sleep = if once { Duration::from_secs(1) } else { MAX_SLEEP };
                let wake = next_wake(now, due.into_iter().chain(next_scan), max_sleep);
                let sleep = Duration::try_from(wake - now).unwrap_or_default().max(pause);
                wake_at = Instant::now() + sleep;
                tracing::debug!(seconds = sleep.as_secs(), "next pass");
            }
            _ = tokio::time::sleep_until(wake_at), if running.is_none() && leadership.is_leader() => {}
            Ok(()) = leader_changes.changed() => {
                let leading = *leader_changes.borrow_and_update();
                metrics.leader.set(i64::from(leading));
                if leading {
                    pass_wanted = true;
                    scan_wanted = true;
                } else if let Some(task) = &running {
                    // Its cloud writes must stop now; the new leader re-observes what it left.
                    tracing::warn!("lost the leadership: stopping the running pass");
                    task.abort();
                }
            }
            _ = forwarded_timer.tick(), if shared.is_some() && taking.is_none() && leadership.is_leader() => {
                if let Some(shared) = &shared {
                    taking = Some(tokio::spawn(ha::take(shared.clone(), leadership.instance().to_owned())));
                }
            }
            taken = async {
                match taking.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                taking = None;
                for (id, request) in taken.unwrap_or_default() {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    if let Some(shared) = &shared {
                        tokio::spawn(ha::answer(shared.clone(), id, answer));
                    }
                    match request.map(|request| (check_request(&components.config, &request).err(), request)) {
                        Ok((None, request)) => {
                            tracing::info!(request = ?request, id, "manual request from a follower");
                            queued.push((request, reply));
                            pass_wanted = true;
                        }
                        Ok((Some(refusal), _)) => {
                            let _ = reply.send(refusal);
                        }
                        Err(error) => {
                            let _ = reply.send(ControlResponse::failed(format!("unreadable request: {error}")));
                        }
                    }
                }
            }
            _ = follower_timer.tick() => {
                if !leadership.is_leader() {
                    daemon.restore_metrics(&components);
                    health.set_first_reconcile_done();
                }
            }
        }
    }
    notifier.stopping();
    tracing::info!("stopping");
    if let Some(task) = reloading {
        task.abort();
    }
    if let Some(server) = control_server {
        server.abort();
    }
    let _ = watch_stop_tx.send(true);
    // The running pass starts nothing new from here on; what is in flight may finish.
    let _ = shutdown_tx.send(true);
    if let Some(task) = running {
        let grace = components.config.daemon.shutdown_grace;
        tracing::info!(
            grace_seconds = grace.as_secs(),
            "waiting for in-flight work"
        );
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
            tracing::warn!(
                "in-flight work did not finish within the grace period; the next start resumes it"
            );
        }
    }
    for (_, reply) in queued.into_iter().chain(answering) {
        let _ = reply.send(ControlResponse::failed(
            "the daemon stopped before doing this",
        ));
    }
    for caller in reload_callers.into_iter().chain(reload_callers_next) {
        let _ = caller.send(ControlResponse::failed(
            "the daemon stopped before the reload ended",
        ));
    }
    // Given up only now that no pass of ours runs: another instance takes over at once.
    let _ = lease_stop_tx.send(true);
    if let Some(task) = lease_task {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = std::fs::remove_file(crate::control::socket_path(
        &components.config.daemon.state_dir,
    ));
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}
