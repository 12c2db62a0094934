//! The products certkeeper can drive, one line each ([`TARGETS`], [`POLICIES`]), and which
//! error codes each vendor documents. A product declares everything about itself in its
//! own file: its `kind`, its settings type (the rest of its `[[target]]` or `[[policy]]`
//! table, refusing unknown keys), their validation ([`TargetProduct::check`]) and how it is
//! built from a vendor account ([`TargetProduct::build`]). The config parses and validates
//! by looking the kind up here, and `app::build` constructs through it, so adding a product
//! is that file plus one line below.
//!
//! The error codes: whether a code is documented decides whether it may be a metric label;
//! the engine asks here when it emits an error, and telemetry only reads the answer the
//! error carries.

use super::account::Provider;
use super::alibaba::AlibabaClient;
use super::error_table::ErrorTable;
use super::huawei::client::HuaweiClient;
use super::qingcloud::QingCloudClient;
use super::{alibaba, file, huawei, qingcloud, Policy, PolicyMode, Target};
use crate::cert::checks::ViolationReason;
use crate::settings::ConfigIssue;
use crate::window::MaintenanceWindow;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Every `[[target]]` kind.
pub const TARGETS: &[TargetKind] = &[
    alibaba::cdn::PRODUCT, // alibaba-cdn
    alibaba::vod::PRODUCT, // alibaba-vod
    alibaba::rds::PRODUCT, // alibaba-rds
    file::PRODUCT,         // file
];

/// Every `[[policy]]` kind.
pub const POLICIES: &[PolicyKind] = &[
    huawei::gaussdb::PRODUCT,       // huawei-gaussdb-backup-encryption
    qingcloud::mysql_plus::PRODUCT, // qingcloud-mysql-plus-ssl
];

/// One product's registry entry: what `kind = "..."` names and how its settings parse.
pub struct Product<P: ?Sized + 'static> {
    /// The `kind` value in the config, e.g. `alibaba-cdn`.
    pub kind: &'static str,
    /// The name the settings print under in `Debug`. The inputs fingerprint
    /// (`engine::inputs`) digests that text, so it stays what it was when the settings
    /// were an enum: a new name would unpark every parked target of the kind once.
    pub variant: &'static str,
    /// Whose concurrency and rate limits a deploy counts against (`alibaba`, `file`, ...).
    pub vendor: &'static str,
    /// The credentials provider the product needs; `None` takes no credentials.
    pub provider: Option<Provider>,
    /// Parses the kind's own keys (the table without the common ones); `parse_settings`
    /// for the product's settings type.
    pub parse: ParseSettings<P>,
}

/// Parses a product's own table at a key path, the common keys named for suggestions.
pub type ParseSettings<P> = fn(toml::Table, &str, &[&str]) -> Result<Arc<P>, ConfigIssue>;

pub type TargetKind = Product<dyn TargetProduct>;
pub type PolicyKind = Product<dyn PolicyProduct>;

/// What a target's `build` reads besides its own settings: the common keys of its
/// `[[target]]` (`config::TargetConfig::spec`).
#[derive(Debug, Clone, Copy)]
pub struct TargetSpec<'a> {
    pub name: &'a str,
    /// The `[credentials.NAME]` account; `None` is the vendor's default account.
    pub credentials: Option<&'a str>,
}

/// What a policy's `build` reads besides its own settings: the common keys of its
/// `[[policy]]` (`config::PolicyConfig::spec`).
#[derive(Debug, Clone, Copy)]
pub struct PolicySpec<'a> {
    pub name: &'a str,
    pub credentials: &'a str,
    pub resources: &'a [String],
    pub mode: PolicyMode,
}

/// The kind-specific settings of a `[[target]]`, parsed at load.
pub trait TargetProduct: Any + fmt::Debug + Send + Sync {
    /// Checks the values beyond their types; `path` is the target's (`target[2]`).
    fn check(&self, path: &str, issues: &mut Vec<ConfigIssue>);
    /// Builds the target `spec` describes, with these settings.
    fn build(
        &self,
        spec: TargetSpec<'_>,
        window: Option<MaintenanceWindow>,
        accounts: &dyn Accounts,
    ) -> Result<Arc<dyn Target>, String>;
}

/// The kind-specific settings of a `[[policy]]`, parsed at load.
pub trait PolicyProduct: Any + fmt::Debug + Send + Sync {
    /// Checks the values beyond their types, and the resources they apply to.
    fn check(&self, path: &str, resources: &[String], issues: &mut Vec<ConfigIssue>);
    /// Builds the policy `spec` describes, with these settings.
    fn build(
        &self,
        spec: PolicySpec<'_>,
        window: Option<MaintenanceWindow>,
        accounts: &dyn Accounts,
    ) -> Result<Arc<dyn Policy>, String>;
}

/// The vendor clients of the configured accounts, built once per account by `app::build`
/// (so the targets of one account share its rate-limit buckets).
pub trait Accounts {
    fn alibaba(&self, account: Option<&str>) -> Result<Arc<AlibabaClient>, String>;
    fn huawei(&self, account: &str) -> Result<Arc<HuaweiClient>, String>;
    fn qingcloud(&self, account: &str) -> Result<QingCloudClient, String>;
}

/// The `parse` of a product whose settings type is `T`.
pub fn parse_settings<T: DeserializeOwned + TargetProduct>(
    table: toml::Table,
    path: &str,
    common_keys: &[&str],
) -> Result<Arc<dyn TargetProduct>, ConfigIssue> {
    Ok(Arc::new(crate::settings::settings_at::<T>(
        table,
        path,
        common_keys,
    )?))
}

/// The `parse` of a policy product whose settings type is `T`.
pub fn parse_policy_settings<T: DeserializeOwned + PolicyProduct>(
    table: toml::Table,
    path: &str,
    common_keys: &[&str],
) -> Result<Arc<dyn PolicyProduct>, ConfigIssue> {
    Ok(Arc::new(crate::settings::settings_at::<T>(
        table,
        path,
        common_keys,
    )?))
}

/// The entry for `kind`, if it is one.
pub fn find<P: ?Sized>(products: &'static [Product<P>], kind: &str) -> Option<&'static Product<P>> {
    products.iter().find(|product| product.kind == kind)
}

/// A product's parsed settings with their registry entry.
pub struct Settings<P: ?Sized + 'static> {
    pub product: &'static Product<P>,
    settings: Arc<P>,
}

impl<P: ?Sized> Settings<P> {
    pub fn new(product: &'static Product<P>, settings: Arc<P>) -> Self {
        Self { product, settings }
    }
}

impl<P: ?Sized> Clone for Settings<P> {
    fn clone(&self) -> Self {
        Self {
            product: self.product,
            settings: self.settings.clone(),
        }
    }
}

impl<P: ?Sized> std::ops::Deref for Settings<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.settings
    }
}

impl<P: ?Sized + fmt::Debug> fmt::Debug for Settings<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple(self.product.variant)
            .field(&&*self.settings)
            .finish()
    }
}

impl Settings<dyn TargetProduct> {
    /// The settings as their own type, if they are a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        let settings: &dyn Any = &*self.settings;
        settings.downcast_ref()
    }
}

/// Codes certkeeper itself reports (transport failures, verification); the pre-deploy
/// checks' codes are [`ViolationReason`]'s names.
const LOCAL_CODES: &[&str] = &[
    "Network",
    "Timeout",
    "Redirect",
    "ReplyTooLarge",
    "VerificationFailed",
    "BadStoredVersion",
    "ReloadFailed",
    "SpawnFailed",
    "JobFailed",
    "JobDoneWithFailure",
];

/// Whether `code` is one of the vendor's documented codes (or one of ours), so it may be a
/// metric label; anything else is counted as `other` to keep label sets bounded.
pub fn is_known_code(vendor: &str, code: &str) -> bool {
    LOCAL_CODES.contains(&code)
        || ViolationReason::ALL
            .iter()
            .any(|reason| reason.as_str() == code)
        || error_table(vendor).is_some_and(|table| table.contains(code))
}

/// The documented error codes of `vendor`'s client, if it is a vendor with a client.
pub fn error_table(vendor: &str) -> Option<&'static ErrorTable> {
    match vendor {
        "alibaba" => Some(&alibaba::client::ERROR_TABLE),
        "huawei" => Some(&huawei::client::ERROR_TABLE),
        "qingcloud" => Some(&qingcloud::client::ERROR_TABLE),
        _ => None,
    }
}

/// The `code` label for `certkeeper_errors_total`.
pub fn code_label<'a>(vendor: &str, code: &'a str) -> &'a str {
    if is_known_code(vendor, code) {
        code
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_labels_are_bounded_by_the_vendor_tables() {
        assert_eq!(code_label("alibaba", "Throttling.User"), "Throttling.User");
        assert_eq!(code_label("huawei", "DBS.200019"), "DBS.200019");
        assert_eq!(code_label("qingcloud", "5100"), "5100");
        assert_eq!(code_label("certkeeper", "key_mismatch"), "key_mismatch");
        assert_eq!(code_label("alibaba", "Made.Up.By.A.Server"), "other");
        assert_eq!(code_label("qingcloud", "not a number"), "other");
    }

    #[test]
    fn every_vendor_client_has_one_table_each_code_listed_once() {
        for vendor in ["alibaba", "huawei", "qingcloud"] {
            let table = error_table(vendor).unwrap();
            let mut codes = std::collections::BTreeSet::new();
            for row in table.rows() {
                assert!(
                    codes.insert(row.code),
                    "{vendor}: {} listed twice",
                    row.code
                );
                assert!(is_known_code(vendor, row.code), "{vendor}: {}", row.code);
            }
            assert!(!codes.is_empty(), "{vendor}");
        }
        assert!(error_table("file").is_none());
    }

    #[test]
    fn each_kind_and_each_debug_name_is_listed_once() {
        let mut kinds = std::collections::BTreeSet::new();
        let mut variants = std::collections::BTreeSet::new();
        let targets = TARGETS
            .iter()
            .map(|product| (product.kind, product.variant));
        let policies = POLICIES
            .iter()
            .map(|product| (product.kind, product.variant));
        for (kind, variant) in targets.chain(policies) {
            assert!(kinds.insert(kind), "{kind} listed twice");
            assert!(variants.insert(variant), "{variant} listed twice");
        }
        assert!(find(TARGETS, "alibaba-cdn").is_some());
        assert!(find(POLICIES, "alibaba-cdn").is_none());
    }
}
