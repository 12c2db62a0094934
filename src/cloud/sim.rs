//! The cloud simulator frame behind `certkeeper sim`: one loopback port serves every vendor
//! (Alibaba on `/`, Huawei under `/v3/` and `/v2/`, QingCloud under `/iaas/`). The frame
//! routes requests, injects faults, counts calls and serves the admin endpoints; each
//! vendor's `sim.rs` verifies signatures, keeps state and answers as the vendor documents.
//!
//! Admin endpoints: `POST /__sim/faults` adds fault rules, `DELETE /__sim/faults` clears
//! them, `GET /__sim/state` dumps every resource, `GET /__sim/stats` counts calls per
//! vendor, action and outcome.

use axum::body::{to_bytes, Body};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

use super::{alibaba, huawei, qingcloud};

/// Largest request body the simulator reads (certificates with long chains fit easily).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A request as a vendor simulator sees it: nothing decoded, so signatures can be checked
/// against the exact bytes the client sent.
#[derive(Debug, Clone)]
pub struct SimRequest {
    pub method: Method,
    pub path: String,
    /// The query exactly as on the request line, without the `?`.
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The peer's view of the clock when the request arrived.
    pub received_at: OffsetDateTime,
}

impl SimRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A vendor simulator's answer.
#[derive(Debug, Clone)]
pub struct SimResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `ok` or the vendor error code, for `/__sim/stats`.
    pub outcome: String,
}

impl SimResponse {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json;charset=utf-8".into(),
            )],
            body: value.to_string().into_bytes(),
            outcome: "ok".into(),
        }
    }

    pub fn with_outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// One vendor's simulated API.
pub trait VendorSim: Send + Sync {
    /// `alibaba`, `huawei` or `qingcloud`: the `vendor` of fault rules and stats.
    fn vendor(&self) -> &'static str;
    /// Whether this vendor serves `path`.
    fn claims(&self, path: &str) -> bool;
    /// The API action a request names (Alibaba `Action`, QingCloud `action`, Huawei a name
    /// derived from method and path), used to match fault rules and count calls.
    fn action(&self, request: &SimRequest) -> String;
    /// The vendor's error envelope for an injected fault.
    fn error(&self, request: &SimRequest, status: u16, code: &str, message: &str) -> SimResponse;
    /// Verifies, applies and answers one request.
    fn handle(&self, request: &SimRequest) -> SimResponse;
    /// Every resource this vendor holds, for `/__sim/state`.
    fn state(&self) -> serde_json::Value;
}

/// The seed file (TOML) the simulator starts from; see `config/sim-seed.example.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSeed {
    #[serde(default)]
    pub alibaba: alibaba::sim::Seed,
    #[serde(default)]
    pub huawei: huawei::sim::Seed,
    #[serde(default)]
    pub qingcloud: qingcloud::sim::Seed,
}

impl SimSeed {
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// A fault rule: requests matching `vendor` (and `action` if given) get the vendor's error
/// envelope with `status`, `code` and `message`, `count` times or with `probability`, after
/// an optional `delay_ms`. A rule with no `code` only delays.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub vendor: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default = "default_fault_status")]
    pub status: u16,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

fn default_fault_status() -> u16 {
    500
}

impl FaultRule {
    fn matches(&self, vendor: &str, action: &str) -> bool {
        self.vendor == vendor
            && self
                .action
                .as_deref()
                .map_or(true, |wanted| wanted == action)
    }
}

/// The simulator: vendor sims plus fault rules and call counters.
pub struct Simulator {
    vendors: Vec<Box<dyn VendorSim>>,
    faults: Mutex<Vec<FaultRule>>,
    stats: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl Simulator {
    pub fn new(seed: SimSeed) -> Self {
        // The registry: one line per vendor. Alibaba serves `/`, so it comes last.
        let vendors: Vec<Box<dyn VendorSim>> = vec![
            Box::new(huawei::sim::HuaweiSim::new(seed.huawei)),
            Box::new(qingcloud::sim::QingCloudSim::new(seed.qingcloud)),
            Box::new(alibaba::sim::AlibabaSim::new(seed.alibaba)),
        ];
        Self {
            vendors,
            faults: Mutex::new(Vec::new()),
            stats: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // A panic while holding these locks cannot leave them inconsistent (plain pushes and
        // counters), so a poisoned lock is still usable.
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add_faults(&self, rules: Vec<FaultRule>) {
        Self::lock(&self.faults).extend(rules);
    }

    pub fn clear_faults(&self) {
        Self::lock(&self.faults).clear();
    }

    /// Takes the first matching fault: returns its delay and, when it carries a code, the
    /// error to answer with.
    fn take_fault(&self, vendor: &str, action: &str) -> Option<FaultRule> {
        let mut faults = Self::lock(&self.faults);
        let index = faults.iter().position(|rule| {
            rule.matches(vendor, action)
                && match (rule.count, rule.probability) {
                    (Some(count), _) => count > 0,
                    (None, Some(probability)) => rand::random::<f64>() < probability,
                    (None, None) => true,
                }
        })?;
        let rule = faults[index].clone();
        if let Some(count) = faults[index].count.as_mut() {
            *count -= 1;
            if *count == 0 {
                faults.remove(index);
            }
        }
        Some(rule)
    }

    fn count(&self, vendor: &str, action: &str, outcome: &str) {
        *Self::lock(&self.stats)
            .entry((vendor.to_owned(), action.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    pub fn stats_json(&self) -> serde_json::Value {
        let stats = Self::lock(&self.stats);
        let mut out = serde_json::Map::new();
        for ((vendor, action, outcome), count) in stats.iter() {
            let vendor_entry = out
                .entry(vendor.clone())
                .or_insert_with(|| serde_json::json!({}));
            let action_entry = vendor_entry.as_object_mut().map(|map| {
                map.entry(action.clone())
                    .or_insert_with(|| serde_json::json!({}))
            });
            if let Some(serde_json::Value::Object(outcomes)) = action_entry {
                outcomes.insert(outcome.clone(), serde_json::json!(count));
            }
        }
        serde_json::Value::Object(out)
    }

    pub fn state_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for vendor in &self.vendors {
            out.insert(vendor.vendor().to_owned(), vendor.state());
        }
        serde_json::Value::Object(out)
    }

    /// Routes one vendor request through fault injection and the vendor simulator.
    pub async fn dispatch(&self, request: SimRequest) -> SimResponse {
        let Some(vendor) = self
            .vendors
            .iter()
            .find(|vendor| vendor.claims(&request.path))
        else {
            return SimResponse::json(
                404,
                &serde_json::json!({"error": "no simulated vendor serves this path"}),
            )
            .with_outcome("NoRoute");
        };
        let action = vendor.action(&request);
        let response = match self.take_fault(vendor.vendor(), &action) {
            Some(rule) => {
                if let Some(delay) = rule.delay_ms {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                match &rule.code {
                    Some(code) => {
                        let message = rule.message.as_deref().unwrap_or("injected fault");
                        vendor.error(&request, rule.status, code, message)
                    }
                    None => vendor.handle(&request),
                }
            }
            None => vendor.handle(&request),
        };
        self.count(vendor.vendor(), &action, &response.outcome);
        response
    }
}

/// Serves the simulator on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    simulator: Arc<Simulator>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(move |request: Request<Body>| {
        let simulator = simulator.clone();
        async move { handle(&simulator, request).await }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn handle(simulator: &Simulator, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let path = parts.uri.path().to_owned();
    if let Some(admin) = path.strip_prefix("/__sim/") {
        return admin_endpoint(simulator, &parts.method, admin, &body);
    }
    let request = SimRequest {
        method: parts.method,
        path,
        raw_query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
        received_at: OffsetDateTime::now_utc(),
    };
    let answer = simulator.dispatch(request).await;
    let mut response = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response.body(Body::from(answer.body)).unwrap_or_else(|_| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulator produced an invalid response",
        )
    })
}

fn admin_endpoint(
    simulator: &Simulator,
    method: &Method,
    endpoint: &str,
    body: &[u8],
) -> Response<Body> {
    match (method, endpoint) {
        (&Method::POST, "faults") => {
            // One rule or a list of rules.
            let rules = serde_json::from_slice::<Vec<FaultRule>>(body)
                .or_else(|_| serde_json::from_slice::<FaultRule>(body).map(|rule| vec![rule]));
            match rules {
                Ok(rules) => {
                    simulator.add_faults(rules);
                    plain(StatusCode::NO_CONTENT, "")
                }
                Err(error) => plain(StatusCode::BAD_REQUEST, &format!("bad fault rule: {error}")),
            }
        }
        (&Method::DELETE, "faults") => {
            simulator.clear_faults();
            plain(StatusCode::NO_CONTENT, "")
        }
        (&Method::GET, "state") => json(simulator.state_json()),
        (&Method::GET, "stats") => json(simulator.stats_json()),
        _ => plain(StatusCode::NOT_FOUND, "unknown admin endpoint"),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = status;
    response
}

fn json(value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_are_used_up() {
        let simulator = Simulator::new(SimSeed::default());
        simulator.add_faults(vec![FaultRule {
            vendor: "alibaba".into(),
            action: Some("DescribeDomainCertificateInfo".into()),
            status: 503,
            code: Some("ServiceUnavailable".into()),
            message: None,
            count: Some(2),
            probability: None,
            delay_ms: None,
        }]);
        assert!(simulator
            .take_fault("alibaba", "SetCdnDomainSSLCertificate")
            .is_none());
        assert!(simulator
            .take_fault("alibaba", "DescribeDomainCertificateInfo")
            .is_some());
        assert!(simulator
            .take_fault("alibaba", "DescribeDomainCertificateInfo")
            .is_some());
        assert!(simulator
            .take_fault("alibaba", "DescribeDomainCertificateInfo")
            .is_none());
    }
}
