//! Rollout benchmark: one new certificate to many Alibaba CDN and VOD domains through the
//! real client, targets and `cloud::converge`, against the in-process simulator enforcing the
//! documented per-action limits. Prints, per API action, the calls made, the achieved rate
//! against the documented limit, the throttled replies the simulator counted, the wall time
//! and the process's peak RSS (client and simulator share the process).
//!
//! ```text
//! cargo run --release --example rollout_bench -- --cdn 2000 --vod 200 [--concurrency 64]
//!     [--rate DescribeVodDomainCertificateInfo=10] [--retry]
//! ```
//! `--concurrency` bounds the converges in flight per product (CDN and VOD each get their own
//! semaphore: their limits are separate buckets, and a shared semaphore would let the slower
//! product's queue starve the other). `--rate Action=N` overrides the client's rate for an
//! action only: the simulator keeps enforcing `DEFAULT_RATE_LIMITS`, so a rate above the
//! table shows as throttled replies, one below it as a lower achieved rate. `--retry` gives
//! the client the default retry policy (throttled replies are then retried instead of
//! failing the converge).
//!
//! The achieved rate of an action is measured between its first and last reply, as
//! `(calls - 1) / span`: a perfectly shaped bucket lets the first call through at once and
//! then one every `1 / limit` seconds, so that is exactly the limit. The "phase" rate divides
//! all calls by the time from the start of the rollout to the last reply.

use certkeeper::cert::bundle::testing;
use certkeeper::cert::CertificateBundle;
use certkeeper::cloud::alibaba::cdn::{CdnSettings, CdnTarget};
use certkeeper::cloud::alibaba::client::{default_rate_limits, AlibabaClient, DEFAULT_RATE_LIMITS};
use certkeeper::cloud::alibaba::sim::{AccountSeed, Seed};
use certkeeper::cloud::alibaba::vod::{VodSettings, VodTarget};
use certkeeper::cloud::sim::{serve, SimSeed, Simulator};
use certkeeper::cloud::{LiveCertificate, Target};
use certkeeper::config::credentials::{Provider, ResolvedCredentials};
use certkeeper::engine::converge::{converge, Convergence};
use certkeeper::error::CloudError;
use certkeeper::retry::RetryPolicy;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const ID: &str = "LTAIbenchmark";
const SECRET: &str = "benchmark-secret";

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `--rate Action=N`, repeatable.
fn rate_overrides(args: &[String]) -> HashMap<String, f64> {
    args.windows(2)
        .filter(|pair| pair[0] == "--rate")
        .filter_map(|pair| {
            let (action, rate) = pair[1].split_once('=')?;
            Some((action.to_owned(), rate.parse().ok()?))
        })
        .collect()
}

/// Reply instants of one action, relative to nothing in particular (compared to `start`).
#[derive(Default)]
struct Log {
    replies: HashMap<&'static str, Vec<Instant>>,
}

/// A target that records when each observe (Describe…) and deploy (Set…) call returned.
struct Timed {
    inner: Box<dyn Target>,
    observe_action: &'static str,
    deploy_action: &'static str,
    log: Arc<Mutex<Log>>,
}

impl Timed {
    fn record(&self, action: &'static str) {
        let now = Instant::now();
        if let Ok(mut log) = self.log.lock() {
            log.replies.entry(action).or_default().push(now);
        }
    }
}

#[async_trait::async_trait]
impl Target for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn observe(&self) -> Result<LiveCertificate, CloudError> {
        let live = self.inner.observe().await;
        if live.is_ok() {
            self.record(self.observe_action);
        }
        live
    }

    async fn deploy(&self, bundle: &CertificateBundle) -> Result<(), CloudError> {
        let done = self.inner.deploy(bundle).await;
        if done.is_ok() {
            self.record(self.deploy_action);
        }
        done
    }
}

/// Peak resident set size of this process (client and simulator), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Converges every target, at most `concurrency` at a time; returns (deployed, failures, first error).
async fn roll_out(
    targets: Vec<Arc<dyn Target>>,
    bundle: Arc<CertificateBundle>,
    concurrency: usize,
) -> (usize, usize, Option<String>) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for target in targets {
        let permits = permits.clone();
        let bundle = bundle.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            converge(target.as_ref(), &bundle).await
        });
    }
    let (mut deployed, mut failed, mut first_error) = (0, 0, None);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Convergence::Deployed)) => deployed += 1,
            Ok(Ok(Convergence::AlreadyInSync)) => {}
            Ok(Err(error)) => {
                failed += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
            Err(error) => {
                failed += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    (deployed, failed, first_error)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cdn_count = arg(&args, "--cdn", 2000);
    let vod_count = arg(&args, "--vod", 200);
    let concurrency = arg(&args, "--concurrency", 64);
    let overrides = rate_overrides(&args);
    let retry = args
        .iter()
        .any(|a| a == "--retry")
        .then(RetryPolicy::default);

    let cdn_domains: Vec<String> = (0..cdn_count)
        .map(|i| format!("cdn{i:05}.example.com"))
        .collect();
    let vod_domains: Vec<String> = (0..vod_count)
        .map(|i| format!("vod{i:05}.example.com"))
        .collect();
    let seed = SimSeed {
        alibaba: Seed {
            accounts: vec![AccountSeed {
                access_key_id: ID.into(),
                access_key_secret: SECRET.into(),
            }],
            cdn_domains: cdn_domains.clone(),
            vod_domains: vod_domains.clone(),
            ..Seed::default()
        },
        ..SimSeed::default()
    };
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot bind the simulator: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let base = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(error) => {
            eprintln!("simulator address: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let sim = Arc::new(Simulator::new(seed));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, sim.clone(), async move {
        let _ = stopped.await;
    }));

    let http = match certkeeper::cloud::http::client(Default::default()) {
        Ok(http) => http,
        Err(error) => {
            eprintln!("http client: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let creds =
        ResolvedCredentials::new("bench", Provider::Alibaba, ID, SECRET).with_endpoint(&base);
    let limits = default_rate_limits().with_overrides(&overrides);
    let client = Arc::new(AlibabaClient::new(creds, http, limits.clone()).with_retry_policy(retry));
    // One wildcard certificate covers every benchmark domain.
    let bundle = Arc::new(testing::fresh(&["*.example.com", "example.com"]));

    let log = Arc::new(Mutex::new(Log::default()));
    let cdn_targets: Vec<Arc<dyn Target>> = cdn_domains
        .iter()
        .map(|domain| {
            let settings = CdnSettings {
                domain: domain.clone(),
                cert_type: Default::default(),
                api: Default::default(),
                cleanup: false,
                cert_region: None,
            };
            Arc::new(Timed {
                inner: Box::new(CdnTarget::new(domain.clone(), settings, client.clone())),
                observe_action: "DescribeDomainCertificateInfo",
                deploy_action: "SetCdnDomainSSLCertificate",
                log: log.clone(),
            }) as Arc<dyn Target>
        })
        .collect();
    let vod_targets: Vec<Arc<dyn Target>> = vod_domains
        .iter()
        .map(|domain| {
            let settings = VodSettings {
                domain: domain.clone(),
                cert_type: Default::default(),
                env: Default::default(),
                cert_region: None,
            };
            Arc::new(Timed {
                inner: Box::new(VodTarget::new(domain.clone(), settings, client.clone())),
                observe_action: "DescribeVodDomainCertificateInfo",
                deploy_action: "SetVodDomainSSLCertificate",
                log: log.clone(),
            }) as Arc<dyn Target>
        })
        .collect();

    println!(
        "rollout: {cdn_count} CDN + {vod_count} VOD domains, concurrency {concurrency} per product, retry {}, rss before {} KiB",
        if retry.is_some() { "on" } else { "off" },
        peak_rss_kib().unwrap_or(0)
    );
    let start = Instant::now();
    let cdn = tokio::spawn(roll_out(cdn_targets, bundle.clone(), concurrency));
    let vod = tokio::spawn(roll_out(vod_targets, bundle.clone(), concurrency));
    let (cdn, vod) = (cdn.await, vod.await);
    let wall = start.elapsed();
    let rss = peak_rss_kib();

    let mut ok = true;
    for (product, result, expected) in [("CDN", cdn, cdn_count), ("VOD", vod, vod_count)] {
        match result {
            Ok((deployed, failed, first_error)) => {
                println!("{product}: {deployed}/{expected} deployed, {failed} failed");
                if let Some(error) = first_error {
                    println!("{product}: first failure: {error}");
                }
                ok &= deployed == expected && failed == 0;
            }
            Err(error) => {
                println!("{product}: task failed: {error}");
                ok = false;
            }
        }
    }

    // Every domain must now serve the new certificate, as the simulator sees it.
    let state = sim.state_json();
    for key in ["cdn_domains", "vod_domains"] {
        let serving = state["alibaba"][key]
            .as_object()
            .map(|domains| {
                domains
                    .values()
                    .filter(|d| d["fingerprint"].as_str() == Some(bundle.fingerprint()))
                    .count()
            })
            .unwrap_or(0);
        println!("simulator: {serving} {key} serve the new certificate");
    }

    let stats = sim.stats_json();
    let documented: HashMap<&str, f64> = DEFAULT_RATE_LIMITS.iter().copied().collect();
    println!();
    println!("| Action | Calls | Documented limit | Client rate | Achieved calls/s (first→last reply) | ÷ limit | Phase calls/s | Throttled replies | Last reply at |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let replies_of = |action: &str| -> Vec<Instant> {
        let log = match log.lock() {
            Ok(log) => log,
            Err(poisoned) => poisoned.into_inner(),
        };
        log.replies.get(action).cloned().unwrap_or_default()
    };
    for action in [
        "SetCdnDomainSSLCertificate",
        "DescribeDomainCertificateInfo",
        "SetVodDomainSSLCertificate",
        "DescribeVodDomainCertificateInfo",
    ] {
        let replies = replies_of(action);
        let calls = replies.len();
        let (first, last) = match (replies.iter().min(), replies.iter().max()) {
            (Some(first), Some(last)) => (*first, *last),
            _ => (start, start),
        };
        let span = last.duration_since(first).as_secs_f64();
        let achieved = if calls > 1 && span > 0.0 {
            (calls - 1) as f64 / span
        } else {
            0.0
        };
        let phase_secs = last.duration_since(start).as_secs_f64();
        let phase = if phase_secs > 0.0 {
            calls as f64 / phase_secs
        } else {
            0.0
        };
        let outcomes = &stats["alibaba"][action];
        let throttled: u64 = outcomes
            .as_object()
            .map(|map| {
                map.iter()
                    .filter(|(code, _)| code.starts_with("Throttling"))
                    .filter_map(|(_, count)| count.as_u64())
                    .sum()
            })
            .unwrap_or(0);
        let limit = documented.get(action).copied();
        println!(
            "| {action} | {calls} | {} | {:.0}/s | {achieved:.2} | {} | {phase:.2} | {throttled} | {:.2} s |",
            limit.map(|l| format!("{l:.0}/s")).unwrap_or_else(|| "not documented".into()),
            limits.rate_for(action),
            limit
                .map(|l| format!("{:.3}", achieved / l))
                .unwrap_or_else(|| "–".into()),
            phase_secs,
        );
    }
    println!();
    println!(
        "wall time {:.2} s, peak RSS {} (client + simulator in one process)",
        wall.as_secs_f64(),
        rss.map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0))
            .unwrap_or_else(|| "unknown".into())
    );
    println!("simulator stats: {stats}");

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
