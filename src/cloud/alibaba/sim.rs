//! The alibaba part of `certkeeper sim`.

use crate::cloud::sim::{SimRequest, SimResponse, VendorSim};
use serde::Deserialize;

/// The `[alibaba]` section of the simulator seed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {}

pub struct AlibabaSim {}

impl AlibabaSim {
    pub fn new(_seed: Seed) -> Self {
        Self {}
    }
}

impl VendorSim for AlibabaSim {
    fn vendor(&self) -> &'static str {
        "alibaba"
    }

    fn claims(&self, path: &str) -> bool {
        path == "/"
    }

    fn action(&self, _request: &SimRequest) -> String {
        "unknown".into()
    }

    fn error(&self, _request: &SimRequest, status: u16, code: &str, message: &str) -> SimResponse {
        SimResponse::json(
            status,
            &serde_json::json!({"code": code, "message": message}),
        )
        .with_outcome(code)
    }

    fn handle(&self, request: &SimRequest) -> SimResponse {
        self.error(request, 501, "NotImplemented", "not simulated yet")
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}
