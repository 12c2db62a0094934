//! Replays the official QingCloud SDK's recorded requests (GET and POST) byte for byte
//! against the simulator over loopback: accepted as sent, refused when tampered with, signed
//! with another secret, or stale.

#![cfg(feature = "sim")]

use certkeeper::cloud::qingcloud::sim::{AccountSeed, ClusterSeed, Seed};
use certkeeper::cloud::sim::{serve, SimSeed, Simulator};
use certkeeper::secret::Secret;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
struct Case {
    name: String,
    raw_request: RawRequest,
}

#[derive(Deserialize)]
struct RawRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn cases() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vectors/qingcloud_v1.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn start(secret: &str, max_skew: u64) -> (String, tokio::sync::oneshot::Sender<()>) {
    let seed = SimSeed {
        qingcloud: Seed {
            accounts: vec![AccountSeed {
                access_key_id: "testAccessKeyId".into(),
                secret_access_key: Secret::new(secret),
            }],
            mysql_plus_clusters: vec![ClusterSeed {
                id: "cl-oracle01".into(),
                zone: "pek3".into(),
                ssl: false,
                status: "active".into(),
                transition_status: String::new(),
                configssl_values: None,
            }],
            // Jobs end at once, so the replayed RunClusterCustomService calls do not collide.
            job_phase_ms: 0,
            max_time_stamp_skew_secs: max_skew,
            ..Seed::default()
        },
        ..SimSeed::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        Arc::new(Simulator::new(seed)),
        async move {
            let _ = stopped.await;
        },
    ));
    (format!("http://{address}"), stop)
}

/// Sends a recorded request as recorded (target, body, content type) and returns ret_code.
async fn replay(base: &str, raw: &RawRequest, tamper: bool) -> i64 {
    let swap = |text: &str| {
        if tamper {
            text.replace("cl-oracle01", "cl-oracle02")
                .replace("j-oracle0001", "j-oracle0002")
        } else {
            text.to_owned()
        }
    };
    let client = reqwest::Client::new();
    let url = format!("{base}{}", swap(&raw.target));
    let mut request = match raw.method.as_str() {
        "GET" => client.get(url),
        "POST" => client.post(url).body(swap(&raw.body)),
        other => panic!("unexpected method {other}"),
    };
    for (name, value) in &raw.headers {
        if name.eq_ignore_ascii_case("content-type") {
            request = request.header("content-type", value);
        }
    }
    let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
    answer["ret_code"].as_i64().unwrap()
}

#[tokio::test]
async fn sdk_requests_are_accepted_and_tampered_ones_refused() {
    let cases = cases();
    assert!(cases.iter().any(|case| case.raw_request.method == "POST"));
    let (base, _stop) = start("testAccessKeySecret", 0).await;
    for case in &cases {
        assert_eq!(
            replay(&base, &case.raw_request, false).await,
            0,
            "{}",
            case.name
        );
        assert_eq!(
            replay(&base, &case.raw_request, true).await,
            1200,
            "{} tampered",
            case.name
        );
    }
    let (wrong, _stop_wrong) = start("anotherSecret", 0).await;
    for case in &cases {
        assert_eq!(
            replay(&wrong, &case.raw_request, false).await,
            1200,
            "{}",
            case.name
        );
    }
    // With the time stamp check on, the 2024 recordings are stale.
    let (strict, _stop_strict) = start("testAccessKeySecret", 300).await;
    for case in &cases {
        assert_eq!(
            replay(&strict, &case.raw_request, false).await,
            1300,
            "{}",
            case.name
        );
    }
}
