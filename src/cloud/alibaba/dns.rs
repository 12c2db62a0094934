//! The `alidns` DNS-01 solver: AddDomainRecord TXT `_acme-challenge.<name>` in the zone found
//! by longest suffix among the account's domains (DescribeDomains); a duplicate record counts
//! as present; DeleteDomainRecord afterwards (a record already gone counts as deleted).

use super::client::{str_at, AlibabaClient, Product};
use crate::cloud::{DnsRecord, DnsSolver};
use crate::error::{CloudError, ErrorClass};
use async_trait::async_trait;
use std::sync::Arc;

pub struct AlidnsSolver {
    client: Arc<AlibabaClient>,
    ttl: u32,
}

impl AlidnsSolver {
    pub fn new(client: Arc<AlibabaClient>) -> Self {
        Self { client, ttl: 600 }
    }

    /// The account's zones (DescribeDomains, paged).
    pub async fn zones(&self) -> Result<Vec<String>, CloudError> {
        let mut zones = Vec::new();
        let mut page = 1u32;
        loop {
            let reply = self
                .client
                .call(
                    Product::Dns,
                    "DescribeDomains",
                    &[
                        ("PageNumber", page.to_string()),
                        ("PageSize", "100".to_owned()),
                    ],
                )
                .await?;
            let list = reply
                .get("Domains")
                .and_then(|domains| domains.get("Domain"))
                .and_then(|list| list.as_array())
                .cloned()
                .unwrap_or_default();
            zones.extend(
                list.iter()
                    .filter_map(|domain| str_at(domain, &["DomainName"]))
                    .map(|name| name.trim_end_matches('.').to_ascii_lowercase()),
            );
            let total = reply
                .get("TotalCount")
                .and_then(|t| t.as_u64())
                .unwrap_or(0);
            if list.is_empty() || zones.len() as u64 >= total {
                return Ok(zones);
            }
            page += 1;
        }
    }

    async fn find_record(
        &self,
        zone: &str,
        rr: &str,
        value: &str,
    ) -> Result<Option<String>, CloudError> {
        let reply = self
            .client
            .call(
                Product::Dns,
                "DescribeDomainRecords",
                &[
                    ("DomainName", zone.to_owned()),
                    ("RRKeyWord", rr.to_owned()),
                    ("Type", "TXT".to_owned()),
                    ("PageSize", "500".to_owned()),
                ],
            )
            .await?;
        let records = reply
            .get("DomainRecords")
            .and_then(|records| records.get("Record"))
            .and_then(|list| list.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(records.iter().find_map(|record| {
            (str_at(record, &["RR"]) == Some(rr) && str_at(record, &["Value"]) == Some(value))
                .then(|| str_at(record, &["RecordId"]).map(str::to_owned))
                .flatten()
        }))
    }
}

/// The longest zone `fqdn` ends in, and the host record (RR) inside it.
pub fn split_zone(fqdn: &str, zones: &[String]) -> Option<(String, String)> {
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    zones
        .iter()
        .filter(|zone| fqdn.ends_with(&format!(".{zone}")))
        .max_by_key(|zone| zone.len())
        .map(|zone| {
            let rr = fqdn[..fqdn.len() - zone.len() - 1].to_owned();
            (zone.clone(), rr)
        })
}

#[async_trait]
impl DnsSolver for AlidnsSolver {
    async fn present(&self, fqdn: &str, value: &str) -> Result<DnsRecord, CloudError> {
        let zones = self.zones().await?;
        let (zone, rr) = split_zone(fqdn, &zones).ok_or_else(|| {
            CloudError::new(
                "alibaba",
                "AddDomainRecord",
                ErrorClass::NotFound,
                "ZoneNotFound",
                format!("no alidns zone of this account contains {fqdn}"),
            )
        })?;
        let result = self
            .client
            .call(
                Product::Dns,
                "AddDomainRecord",
                &[
                    ("DomainName", zone.clone()),
                    ("RR", rr.clone()),
                    ("Type", "TXT".to_owned()),
                    ("Value", value.to_owned()),
                    ("TTL", self.ttl.to_string()),
                ],
            )
            .await;
        let record_id = match result {
            Ok(reply) => str_at(&reply, &["RecordId"])
                .map(str::to_owned)
                .ok_or_else(|| super::client::bad_reply("AddDomainRecord", "RecordId"))?,
            Err(error) if error.code == "DomainRecordDuplicate" => {
                self.find_record(&zone, &rr, value).await?.ok_or(error)?
            }
            Err(error) => return Err(error),
        };
        Ok(DnsRecord {
            zone,
            zone_id: None,
            record_id,
            fqdn: fqdn.trim_end_matches('.').to_owned(),
            value: value.to_owned(),
        })
    }

    async fn cleanup(&self, record: &DnsRecord) -> Result<(), CloudError> {
        match self
            .client
            .call(
                Product::Dns,
                "DeleteDomainRecord",
                &[("RecordId", record.record_id.clone())],
            )
            .await
        {
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
    fn longest_suffix_wins() {
        let zones = vec!["example.com".to_owned(), "sub.example.com".to_owned()];
        assert_eq!(
            split_zone("_acme-challenge.www.sub.example.com.", &zones),
            Some(("sub.example.com".into(), "_acme-challenge.www".into()))
        );
        assert_eq!(
            split_zone("_acme-challenge.example.com", &zones),
            Some(("example.com".into(), "_acme-challenge".into()))
        );
        assert_eq!(split_zone("_acme-challenge.example.org", &zones), None);
        assert_eq!(split_zone("_acme-challenge.notexample.com", &zones), None);
    }
}
