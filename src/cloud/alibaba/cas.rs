//! SSL Certificates Service (cas 2020-04-07) helpers shared by the CDN and VOD targets when
//! `cert_type = "cas"`: upload a bundle once per fingerprint (reusing an identical earlier
//! upload), and delete certificates this daemon uploaded once nothing uses them. Every call
//! goes to the cas region the target's `CertRegion` names: a `CertId` is only found in the
//! region it was uploaded to.

use super::client::{str_at, AlibabaClient, Product};
use crate::cert::CertificateBundle;
use crate::error::{CloudError, ErrorClass};

/// Prefix of every certificate name we upload; cleanup never touches other names.
pub const NAME_PREFIX: &str = "certkeeper-";

/// The cas name of `bundle`: unique per fingerprint and within the 63-character limit.
pub fn cas_name(bundle: &CertificateBundle) -> String {
    let fingerprint = bundle.fingerprint();
    format!("{NAME_PREFIX}{}", &fingerprint[..fingerprint.len().min(40)])
}

/// One uploaded certificate as `ListUserCertificateOrder` (OrderType UPLOAD) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub id: String,
    pub name: String,
}

/// Lists uploaded certificates whose name contains `keyword`.
pub async fn list_uploaded(
    client: &AlibabaClient,
    region: &str,
    keyword: &str,
) -> Result<Vec<Uploaded>, CloudError> {
    let mut out = Vec::new();
    let mut page = 1u32;
    loop {
        let reply = client
            .call_in_region(
                Product::Cas,
                Some(region),
                "ListUserCertificateOrder",
                &[
                    ("OrderType", "UPLOAD".to_owned()),
                    ("Keyword", keyword.to_owned()),
                    ("CurrentPage", page.to_string()),
                    ("ShowSize", "50".to_owned()),
                ],
            )
            .await?;
        let items = reply
            .get("CertificateOrderList")
            .and_then(|list| list.as_array())
            .cloned()
            .unwrap_or_default();
        for item in &items {
            let id = match item.get("CertificateId") {
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => continue,
            };
            let name = str_at(item, &["Name"]).unwrap_or_default().to_owned();
            out.push(Uploaded { id, name });
        }
        let total = reply
            .get("TotalCount")
            .and_then(|t| t.as_u64())
            .unwrap_or(0);
        if items.is_empty() || out.len() as u64 >= total {
            return Ok(out);
        }
        page += 1;
    }
}

/// The cas id of `bundle`, uploading it only when no identical upload exists.
pub async fn ensure_uploaded(
    client: &AlibabaClient,
    region: &str,
    bundle: &CertificateBundle,
) -> Result<String, CloudError> {
    let name = cas_name(bundle);
    if let Some(existing) = list_uploaded(client, region, &name)
        .await?
        .into_iter()
        .find(|item| item.name == name)
    {
        return Ok(existing.id);
    }
    let reply = client
        .call_in_region(
            Product::Cas,
            Some(region),
            "UploadUserCertificate",
            &[
                ("Name", name.clone()),
                ("Cert", bundle.fullchain_pem()),
                ("Key", bundle.key_pem.expose().to_owned()),
            ],
        )
        .await?;
    match reply.get("CertId") {
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err(super::client::bad_reply("UploadUserCertificate", "CertId")),
    }
}

/// Deletes certificates we uploaded other than `keep`. A certificate still in use is
/// refused by the service (and left alone); other failures are returned.
pub async fn cleanup(
    client: &AlibabaClient,
    region: &str,
    keep: &str,
) -> Result<usize, CloudError> {
    let mut deleted = 0;
    for item in list_uploaded(client, region, NAME_PREFIX).await? {
        if item.id == keep || !item.name.starts_with(NAME_PREFIX) {
            continue;
        }
        match client
            .call_in_region(
                Product::Cas,
                Some(region),
                "DeleteUserCertificate",
                &[("CertId", item.id.clone())],
            )
            .await
        {
            Ok(_) => deleted += 1,
            // In use elsewhere, or gone already: not ours to force.
            Err(error)
                if matches!(error.class, ErrorClass::Invalid | ErrorClass::NotFound)
                    || error.code == "DeleteFailed" => {}
            Err(error) => return Err(error),
        }
    }
    Ok(deleted)
}
