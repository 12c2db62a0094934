//! DNS-01 solver `huaweicloud-dns` on Huawei Cloud DNS (API v2). The zone is the public zone
//! (`GET /v2/zones`) whose name is the longest suffix of the challenge name; the TXT
//! recordset is created with `POST /v2/zones/{zone_id}/recordsets`, extended with `PUT` when a
//! recordset of that name exists already (wildcard and apex share one name), and trimmed or
//! deleted on cleanup. Huawei writes names with a trailing dot and wants TXT values wrapped
//! in double quotes (https://support.huaweicloud.com/intl/en-us/api-dns/dns_api_64001.html).

use super::client::{ApiRequest, HuaweiClient, VENDOR};
use crate::cloud::{DnsRecord, DnsSolver};
use crate::error::{CloudError, ErrorClass};
use async_trait::async_trait;
use reqwest::Method;
use std::sync::Arc;

pub const KIND: &str = "huaweicloud-dns";

/// Zones fetched per page (the API maximum).
const PAGE: usize = 500;

/// Publishes `_acme-challenge` TXT records in Huawei Cloud DNS.
pub struct HuaweiDnsSolver {
    client: Arc<HuaweiClient>,
    ttl: u32,
}

/// `name.` as Huawei writes it.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// `"value"` as Huawei wants TXT values.
fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

/// Among `zones`, the longest one that `fqdn` is in (on a label boundary).
pub fn best_zone<'a>(fqdn: &str, zones: &'a [(String, String)]) -> Option<&'a (String, String)> {
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    zones
        .iter()
        .filter(|(name, _)| {
            let zone = name.trim_end_matches('.').to_ascii_lowercase();
            fqdn == zone || fqdn.ends_with(&format!(".{zone}"))
        })
        .max_by_key(|(name, _)| name.trim_end_matches('.').len())
}

fn malformed(operation: &str, message: &str) -> CloudError {
    CloudError::new(
        VENDOR,
        operation,
        ErrorClass::Transient,
        "MalformedResponse",
        message,
    )
}

fn records_of(recordset: &serde_json::Value) -> Vec<String> {
    recordset["records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|record| record.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl HuaweiDnsSolver {
    /// `ttl` in seconds (Huawei's default is 300; short is better for challenges).
    pub fn new(client: Arc<HuaweiClient>, ttl: u32) -> Self {
        Self { client, ttl }
    }

    fn request(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        query: Vec<(&str, String)>,
        body: Option<serde_json::Value>,
    ) -> ApiRequest {
        ApiRequest {
            operation,
            method,
            base: self.client.dns_endpoint(),
            path,
            query: query
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            body,
        }
    }

    async fn zones(&self) -> Result<Vec<(String, String)>, CloudError> {
        let mut zones = Vec::new();
        loop {
            let request = self.request(
                "ListPublicZones",
                Method::GET,
                "/v2/zones".into(),
                vec![
                    ("type", "public".into()),
                    ("limit", PAGE.to_string()),
                    ("offset", zones.len().to_string()),
                ],
                None,
            );
            let answer = self.client.send(&request).await?;
            let page: Vec<(String, String)> = answer.body["zones"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|zone| {
                            Some((
                                zone["name"].as_str()?.to_owned(),
                                zone["id"].as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let full = page.len() == PAGE;
            zones.extend(page);
            if !full {
                return Ok(zones);
            }
        }
    }

    async fn find_recordset(
        &self,
        zone_id: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, CloudError> {
        let request = self.request(
            "ListRecordSetsByZone",
            Method::GET,
            format!("/v2/zones/{zone_id}/recordsets"),
            vec![
                ("type", "TXT".into()),
                ("name", name.to_owned()),
                ("search_mode", "equal".into()),
            ],
            None,
        );
        let answer = self.client.send(&request).await?;
        Ok(answer.body["recordsets"].as_array().and_then(|list| {
            list.iter()
                .find(|set| {
                    set["name"]
                        .as_str()
                        .is_some_and(|found| found.eq_ignore_ascii_case(name))
                })
                .cloned()
        }))
    }

    async fn update(
        &self,
        zone_id: &str,
        record_id: &str,
        records: Vec<String>,
    ) -> Result<(), CloudError> {
        let request = self.request(
            "UpdateRecordSet",
            Method::PUT,
            format!("/v2/zones/{zone_id}/recordsets/{record_id}"),
            Vec::new(),
            Some(serde_json::json!({"records": records, "ttl": self.ttl})),
        );
        self.client.send(&request).await.map(|_| ())
    }
}

#[async_trait]
impl DnsSolver for HuaweiDnsSolver {
    async fn present(&self, fqdn: &str, value: &str) -> Result<DnsRecord, CloudError> {
        let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
        let zones = self.zones().await?;
        let (zone_name, zone_id) = best_zone(&fqdn, &zones).cloned().ok_or_else(|| {
            CloudError::new(
                VENDOR,
                "ListPublicZones",
                ErrorClass::NotFound,
                "ZoneNotFound",
                format!("no public zone of this account contains {fqdn}"),
            )
        })?;
        let name = absolute(&fqdn);
        let wanted = quoted(value);
        let record = |record_id: String| DnsRecord {
            zone: zone_name.trim_end_matches('.').to_owned(),
            zone_id: Some(zone_id.clone()),
            record_id,
            fqdn: fqdn.clone(),
            value: value.to_owned(),
        };
        if let Some(existing) = self.find_recordset(&zone_id, &name).await? {
            let record_id = existing["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| malformed("ListRecordSetsByZone", "recordset has no id"))?;
            let mut records = records_of(&existing);
            if !records.contains(&wanted) {
                records.push(wanted);
                self.update(&zone_id, &record_id, records).await?;
            }
            return Ok(record(record_id));
        }
        let request = self.request(
            "CreateRecordSet",
            Method::POST,
            format!("/v2/zones/{zone_id}/recordsets"),
            Vec::new(),
            Some(serde_json::json!({
                "name": name,
                "type": "TXT",
                "records": [wanted],
                "ttl": self.ttl,
                "description": "certkeeper ACME DNS-01 challenge",
            })),
        );
        let answer = self.client.send(&request).await?;
        let record_id = answer.body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| malformed("CreateRecordSet", "created recordset has no id"))?;
        Ok(record(record_id))
    }

    async fn cleanup(&self, record: &DnsRecord) -> Result<(), CloudError> {
        let zone_id = match &record.zone_id {
            Some(id) => id.clone(),
            None => {
                let zones = self.zones().await?;
                match best_zone(&record.fqdn, &zones) {
                    Some((_, id)) => id.clone(),
                    None => return Ok(()),
                }
            }
        };
        let path = format!("/v2/zones/{zone_id}/recordsets/{}", record.record_id);
        let show = self.request("ShowRecordSet", Method::GET, path.clone(), Vec::new(), None);
        let existing = match self.client.send(&show).await {
            Ok(answer) => answer.body,
            Err(error) if error.class == ErrorClass::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let wanted = quoted(&record.value);
        let remaining: Vec<String> = records_of(&existing)
            .into_iter()
            .filter(|found| *found != wanted)
            .collect();
        if !remaining.is_empty() {
            return self.update(&zone_id, &record.record_id, remaining).await;
        }
        let delete = self.request("DeleteRecordSet", Method::DELETE, path, Vec::new(), None);
        match self.client.send(&delete).await {
            Ok(_) => Ok(()),
            Err(error) if error.class == ErrorClass::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_zone_suffix_wins_on_label_boundaries() {
        let zones = vec![
            ("example.com.".to_owned(), "z1".to_owned()),
            ("sub.example.com.".to_owned(), "z2".to_owned()),
            ("ample.com.".to_owned(), "z3".to_owned()),
        ];
        assert_eq!(
            best_zone("_acme-challenge.www.sub.example.com", &zones).map(|z| z.1.as_str()),
            Some("z2")
        );
        assert_eq!(
            best_zone("_acme-challenge.example.com.", &zones).map(|z| z.1.as_str()),
            Some("z1")
        );
        assert_eq!(best_zone("_acme-challenge.other.org", &zones), None);
        assert_eq!(absolute("a.example.com"), "a.example.com.");
        assert_eq!(absolute("a.example.com."), "a.example.com.");
        assert_eq!(quoted("tok"), "\"tok\"");
    }
}
