//! The Alibaba Cloud client: signs each RPC call with ACS3 (POST `/`, every parameter in an
//! `application/x-www-form-urlencoded` body covered by `x-acs-content-sha256`, none in the
//! URL), waits for the account's token bucket of that API, sends it over the shared client
//! (no redirects, bounded reply) and turns failures into [`CloudError`]s. This file
//! holds the only table that maps Alibaba error codes to an [`ErrorClass`]; unknown codes fall
//! back on the HTTP status. Retries (honouring `x-acs-retry-after`) go through
//! `retry::with_retries`, never a loop of our own.

use super::signer::{Acs3Call, SignedRequest};
use crate::cloud::account::ResolvedCredentials;
use crate::cloud::credentials::{is_stale_token_code, CredentialProvider, Credentials};
use crate::cloud::error_table::{ErrorCode, ErrorTable};
use crate::error::{CloudError, ErrorClass};
use crate::ratelimit::{RateLimiter, RateLimits};
use crate::retry::{with_retries, RetryPolicy};
use std::sync::Arc;
use std::time::Duration;

const VENDOR: &str = "alibaba";

/// An Alibaba product API: where it lives and which version we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// CDN 2018-05-10 (`SetCdnDomainSSLCertificate`, `DescribeDomainCertificateInfo`, and the
    /// deprecated `SetDomainServerCertificate`, whose `ForceSet` this version documents:
    /// seed 002, reference §2.5; the 2014-11-11 one has no `ForceSet`).
    Cdn,
    /// VOD 2017-03-21; domain APIs live only in cn-shanghai.
    Vod,
    Rds,
    Dns,
    /// SSL Certificates Service 2020-04-07.
    Cas,
}

impl Product {
    /// The key of the per-product endpoint override in the credentials section.
    pub fn key(self) -> &'static str {
        match self {
            Product::Cdn => "cdn",
            Product::Vod => "vod",
            Product::Rds => "rds",
            Product::Dns => "dns",
            Product::Cas => "cas",
        }
    }

    pub fn default_endpoint(self) -> &'static str {
        match self {
            Product::Cdn => "https://cdn.aliyuncs.com",
            Product::Vod => "https://vod.cn-shanghai.aliyuncs.com",
            Product::Rds => "https://rds.aliyuncs.com",
            Product::Dns => "https://alidns.aliyuncs.com",
            Product::Cas => "https://cas.aliyuncs.com",
        }
    }

    /// The region the default endpoint serves, for the products that are regional for us.
    pub fn home_region(self) -> Option<&'static str> {
        match self {
            // reference §5.2: `cas.aliyuncs.com` is the mainland (cn-hangzhou) service.
            Product::Cas => Some("cn-hangzhou"),
            Product::Vod => Some("cn-shanghai"),
            _ => None,
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Product::Cdn => "2018-05-10",
            Product::Vod => "2017-03-21",
            Product::Rds => "2014-08-15",
            Product::Dns => "2015-01-09",
            Product::Cas => "2020-04-07",
        }
    }
}

/// Documented per-account limits (calls per second) of the APIs we call in bulk.
pub const DEFAULT_RATE_LIMITS: &[(&str, f64)] = &[
    ("SetCdnDomainSSLCertificate", 30.0),
    ("SetDomainServerCertificate", 10.0),
    ("SetVodDomainSSLCertificate", 30.0),
    ("DescribeDomainCertificateInfo", 100.0),
    // Not documented (see BENCHMARKS.md): every documented sibling read of a domain's
    // certificate (CDN, DCDN, ApsaraVideo Live `Describe*DomainCertificateInfo`) allows
    // 100/s, and the 10/s fallback would cap the VOD write at a third of its 30/s.
    ("DescribeVodDomainCertificateInfo", 100.0),
    ("ListUserCertificateOrder", 10.0),
    // cas docstrings (reference §5.2): 100/s; the 10/s fallback would slow each upload.
    ("UploadUserCertificate", 100.0),
    ("DeleteUserCertificate", 100.0),
];

/// The documented defaults; config overrides go through [`RateLimits::with_overrides`].
pub fn default_rate_limits() -> RateLimits {
    RateLimits::from_defaults(DEFAULT_RATE_LIMITS)
}

/// Every Alibaba error code we know, with its class: the codes of the ModifyDBInstanceSSL,
/// SetVodDomainSSLCertificate and SetDomainServerCertificate docs (seeds 000–002), the
/// SetCdnDomainSSLCertificate, cas and alidns codes we meet, and the common gateway codes.
/// Codes starting with `Throttling` are throttled whatever the table says.
pub const ERROR_TABLE: ErrorTable = {
    use ErrorClass::*;
    ErrorTable::new(&[
        // Gateway, signature and permission.
        ErrorCode::new("Throttling", Throttled, ""),
        ErrorCode::new("Throttling.User", Throttled, ""),
        ErrorCode::new("Throttling.Api", Throttled, ""),
        ErrorCode::new("ServiceUnavailable", Transient, ""),
        ErrorCode::new("InternalError", Transient, ""),
        ErrorCode::new("UnknownError", Transient, ""),
        // A reused nonce only means the same signed bytes were sent twice; a fresh attempt
        // carries a new nonce.
        ErrorCode::new("SignatureNonceUsed", Transient, ""),
        ErrorCode::new("SignatureDoesNotMatch", Auth, ""),
        ErrorCode::new("IncompleteSignature", Auth, ""),
        ErrorCode::new("InvalidAccessKeyId.NotFound", Auth, ""),
        ErrorCode::new("InvalidAccessKeyId", Auth, ""),
        ErrorCode::new("InvalidAccessKeyId.Inactive", Auth, ""),
        // STS tokens (POP gateway common codes). An expired one is refreshed and the call
        // retried once by the client before this class is ever seen.
        ErrorCode::new("InvalidSecurityToken.Expired", Auth, ""),
        ErrorCode::new("InvalidSecurityToken.Malformed", Auth, ""),
        ErrorCode::new("InvalidSecurityToken.MismatchWithAccessKey", Auth, ""),
        ErrorCode::new("MissingSecurityToken", Auth, ""),
        // STS AssumeRole / AssumeRoleWithOIDC: the role, the provider or the trust policy
        // is the operator's to fix.
        ErrorCode::new("EntityNotExist.Role", Auth, ""),
        ErrorCode::new("EntityNotExist.OIDCProvider", Auth, ""),
        ErrorCode::new("AuthenticationFail.OIDCToken.Invalid", Auth, ""),
        ErrorCode::new("NoPermission", Auth, ""),
        ErrorCode::new("InvalidParameter.RoleArn", Invalid, ""),
        ErrorCode::new("InvalidParameter.DurationSeconds", Invalid, ""),
        // The projected token file is rotated by the kubelet: the next refresh reads the
        // new one.
        ErrorCode::new("AuthenticationFail.OIDCToken.Expired", Transient, ""),
        ErrorCode::new("Forbidden", Auth, ""),
        ErrorCode::new("Forbidden.RAM", Auth, ""),
        ErrorCode::new("Forbidden.RiskControl", Auth, ""),
        ErrorCode::new("Forbidden.UserVerification", Auth, ""),
        // Clock skew is fixed by the operator (NTP), like credentials.
        ErrorCode::new("InvalidTimeStamp.Expired", Auth, ""),
        ErrorCode::new("IllegalTimestamp", Auth, ""),
        ErrorCode::new("MissingParameter", Invalid, ""),
        ErrorCode::new("InvalidParameter", Invalid, ""),
        ErrorCode::new("UnsupportedOperation", Unsupported, ""),
        ErrorCode::new("NoSuchVersion", Unsupported, ""),
        ErrorCode::new("InvalidAction.NotFound", Unsupported, ""),
        // RDS ModifyDBInstanceSSL (seed 000).
        ErrorCode::new("InvalidServerCertOrPrivateKey", Invalid, ""),
        ErrorCode::new("InvalidClientCACert", Invalid, ""),
        ErrorCode::new("InvalidClientCrl", Invalid, ""),
        ErrorCode::new("InvalidCAType.NotFound", Invalid, ""),
        ErrorCode::new("InvalidACL.NotFound", Invalid, ""),
        ErrorCode::new("InvalidSSLStatus", Invalid, ""),
        ErrorCode::new("IncorrectDBSslStatus", Busy, ""),
        ErrorCode::new("InvalidModifyMode.Format", Invalid, ""),
        ErrorCode::new("Order.ComboInstanceNotAllowOperate", Unsupported, ""),
        ErrorCode::new("Price.PricingPlanResultNotFound", Billing, ""),
        ErrorCode::new("Order.NoRealNameAuthentication", Billing, ""),
        ErrorCode::new("InsufficientAvailableQuota", Billing, ""),
        ErrorCode::new("CommodityServiceCalling.Exception", Transient, ""),
        ErrorCode::new("RegionDissolvedEOM", Unsupported, ""),
        ErrorCode::new("Commodity.InvalidComponent", Billing, ""),
        ErrorCode::new("RegionEndTimeDissolvedIndia", Unsupported, ""),
        ErrorCode::new("RegionEndTimeDissolvedAustralia", Unsupported, ""),
        ErrorCode::new("Price.CommoditySys", Transient, ""),
        ErrorCode::new("Pay.InsufficientBalance", Billing, ""),
        ErrorCode::new("Order.PeriodInvalid", Billing, ""),
        ErrorCode::new("pay.noCreditCard", Billing, ""),
        ErrorCode::new("Order.InstHasUnpaidOrder", Billing, ""),
        ErrorCode::new("noAvailablePaymentMethod", Billing, ""),
        ErrorCode::new("BasicInfoUncompleted", Billing, ""),
        ErrorCode::new("Risk.RiskControlRejection", Billing, ""),
        ErrorCode::new("Api.NotSupport", Unsupported, ""),
        ErrorCode::new("ContainForbiddenLabelError", Billing, ""),
        ErrorCode::new("InvalidDBInstanceId.NotFound", NotFound, ""),
        ErrorCode::new("InvalidInstanceLevel.DiskType", Unsupported, ""),
        ErrorCode::new("InvalidParam", Invalid, ""),
        ErrorCode::new("KmsApiError", Auth, ""),
        ErrorCode::new("System.SaleValidateFailed", Transient, ""),
        ErrorCode::new("Abs.InvalidAccount.NotFound", Billing, ""),
        ErrorCode::new("SqlExecuteFailedOrTimeout", Transient, ""),
        ErrorCode::new("ColdData.EngineVersionNotSupport", Unsupported, ""),
        ErrorCode::new("ColdData.MinorVersionNotSupport", Unsupported, ""),
        ErrorCode::new("IncorrectTargetClasscode", Unsupported, ""),
        ErrorCode::new("InvalidConnectionString.Duplicate", Invalid, ""),
        ErrorCode::new("RequiredParam.NotFound", Invalid, ""),
        ErrorCode::new("Parameters.Invalid", Invalid, ""),
        ErrorCode::new("BackupPolicyNotSupport", Unsupported, ""),
        ErrorCode::new("InvalideStatus.Format", Busy, ""),
        ErrorCode::new("InvalidReleasedKeepPolicy.Format", Invalid, ""),
        ErrorCode::new("InvalidDBInstanceEngineType.Format", Unsupported, ""),
        ErrorCode::new("Pay.NoCreditCard", Billing, ""),
        ErrorCode::new("VpcNetworkTypeNotSupport", Unsupported, ""),
        ErrorCode::new("MirrorInsExists", Invalid, ""),
        ErrorCode::new("UnsupportedClassCode", Unsupported, ""),
        ErrorCode::new("InvalidBackupSet", Invalid, ""),
        ErrorCode::new("OrdTCommodityQueryError", Transient, ""),
        // The client CA must be configured first: a configuration error, not a permission.
        ErrorCode::new("InvalidClientCrl.Permission", Invalid, ""),
        ErrorCode::new("InvalidACL.Permission", Invalid, ""),
        ErrorCode::new("OrderStatus.UnPaid", Billing, ""),
        ErrorCode::new("InvalidReduceDiskSize", Invalid, ""),
        ErrorCode::new("CloudSSDNotSupport", Unsupported, ""),
        ErrorCode::new("InvalidUserOperatorPermission", Auth, ""),
        ErrorCode::new("InvalidVswitchId", Invalid, ""),
        ErrorCode::new("IncorrectMinorVersion", Unsupported, ""),
        ErrorCode::new("OperationDenied.ZoneResource", Unsupported, ""),
        ErrorCode::new("NotInFlowController", Auth, ""),
        ErrorCode::new("InvalidKmsKey", Invalid, ""),
        ErrorCode::new("InvalidInstanceLevel.Malformed", Unsupported, ""),
        ErrorCode::new("Endpoint.NotFound", NotFound, ""),
        ErrorCode::new("InvalidClusterKms", Auth, ""),
        ErrorCode::new("Request.NotFound", NotFound, ""),
        ErrorCode::new("HostInfo.NotFound", NotFound, ""),
        ErrorCode::new("ExternalFailure", Transient, ""),
        ErrorCode::new("RequestMetaDataFailed", Transient, ""),
        ErrorCode::new("InvokeProxyFailure", Transient, ""),
        // CDN and VOD certificate calls (seeds 001, 002).
        ErrorCode::new("InvalidSSLProtocol.ValueNotSupported", Invalid, ""),
        ErrorCode::new(
            "InvalidServerCertificateStatus.ValueNotSupported",
            Invalid,
            "",
        ),
        ErrorCode::new("SSLPub.MissingParameter", Invalid, ""),
        ErrorCode::new("SSLPri.MissingParameter", Invalid, ""),
        ErrorCode::new("InvalidSSLPub", Invalid, ""),
        ErrorCode::new("InvalidSSLPri", Invalid, ""),
        ErrorCode::new("InvalidSSLPubOrInvalidSSLPri", Invalid, ""),
        ErrorCode::new("Certificate.MissMatch", Invalid, ""),
        ErrorCode::new("InvalidCertificate.TooLong", Invalid, ""),
        ErrorCode::new("InvalidCertName.TooLong", Invalid, ""),
        ErrorCode::new("IllegalOperationDomain", Auth, ""),
        ErrorCode::new("AuthenticationFailed", Auth, ""),
        ErrorCode::new("SetDomainCertificate.ParameterError", Invalid, ""),
        ErrorCode::new("Certificate.StatusError", Invalid, ""),
        ErrorCode::new("DeleteFailed", Transient, ""),
        ErrorCode::new("Certificate.NotFind", NotFound, ""),
        ErrorCode::new("Certificate.Duplicated", Invalid, ""),
        ErrorCode::new("Certificate.FormatError", Invalid, ""),
        ErrorCode::new("Certificate.KeyNull", Invalid, ""),
        ErrorCode::new("Key.Malformed", Invalid, ""),
        ErrorCode::new("CertStorage.failed", Transient, ""),
        ErrorCode::new("CertificateContent.Duplicated", Invalid, ""),
        ErrorCode::new("Certificate.Expired", Invalid, ""),
        // The domain is being configured or stopped: a later attempt may succeed.
        ErrorCode::new("InvalidDomain.notOnline", Busy, ""),
        ErrorCode::new("InvalidDomain.Offline", Busy, ""),
        ErrorCode::new("Decode.Error", Invalid, ""),
        ErrorCode::new("sslPub.Error", Invalid, ""),
        ErrorCode::new("sslPri.Error", Invalid, ""),
        ErrorCode::new("DomainInSafeMode", Auth, ""),
        ErrorCode::new("DomainInProtectedMode", Auth, ""),
        ErrorCode::new("CreateCertificateFailed", Transient, ""),
        ErrorCode::new("Abs.CertRegion.ValueNotSupported", Unsupported, ""),
        ErrorCode::new("CertNameAlreadyExists", Invalid, ""),
        ErrorCode::new("DomainOwnerVerifyFail", Auth, ""),
        ErrorCode::new("CertName.MissingParameter", Invalid, ""),
        ErrorCode::new("Certificate.NotPermittedOff", Unsupported, ""),
        ErrorCode::new("Certificate.SettedNotEffect", Unsupported, ""),
        ErrorCode::new("InvalidDomain.NotFound", NotFound, ""),
        ErrorCode::new("InvalidDomainName.NoExist", NotFound, ""),
        // alidns.
        ErrorCode::new("DomainRecordDuplicate", Invalid, ""),
        ErrorCode::new("DomainRecordConflict", Invalid, ""),
        ErrorCode::new("DomainRecordNotBelongToUser", NotFound, ""),
        ErrorCode::new("InvalidRR.NoExist", NotFound, ""),
        // cas.
        ErrorCode::new("NameRepeat", Invalid, ""),
        ErrorCode::new("CertNotExist", NotFound, ""),
    ])
};

/// The class of an Alibaba error: the table, then the `Throttling` prefix (the status of a
/// throttled reply varies by product), then the HTTP status.
pub fn classify(code: &str, status: u16) -> ErrorClass {
    if let Some(class) = ERROR_TABLE.class_of(code) {
        return class;
    }
    if code.starts_with("Throttling") {
        return ErrorClass::Throttled;
    }
    ErrorClass::from_http_status(status)
}

/// Whether `code` is in [`ERROR_TABLE`].
pub fn is_known_code(code: &str) -> bool {
    ERROR_TABLE.contains(code)
}

/// The Alibaba error envelope `{Code, Message, RequestId, HostId, Recommend}`.
#[derive(Debug, Default, serde::Deserialize)]
struct ErrorBody {
    #[serde(alias = "code", rename = "Code")]
    code: Option<String>,
    #[serde(alias = "message", rename = "Message")]
    message: Option<String>,
    #[serde(alias = "requestId", rename = "RequestId")]
    request_id: Option<String>,
    #[serde(rename = "HostId")]
    _host_id: Option<String>,
    #[serde(rename = "Recommend")]
    recommend: Option<String>,
}

/// Turns a failed reply into a classified error.
pub fn parse_error(
    operation: &str,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> CloudError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    // A blank `Code` says no more than a missing one (found by fuzzing: it left the error
    // without a code); both fall back on the status.
    let code = parsed
        .code
        .filter(|code| !code.trim().is_empty())
        .unwrap_or_else(|| format!("HTTP{status}"));
    let mut message = parsed.message.unwrap_or_default();
    if let Some(recommend) = parsed.recommend {
        message = format!("{message} (see {recommend})");
    }
    // `x-acs-retry-after` is in milliseconds (Tea SDK `get_backoff_time`).
    let retry_after = retry_after
        .and_then(|value| value.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    // Like the Tea SDK: a positive `x-acs-retry-after` makes any failure a throttling one.
    let class = if retry_after.is_some() {
        ErrorClass::Throttled
    } else {
        classify(&code, status)
    };
    CloudError::new(VENDOR, operation, class, code, message)
        .with_request_id(parsed.request_id)
        .with_status(status)
        .with_retry_after(retry_after)
}

/// One rate limiter per Alibaba account: the clients of credentials naming one `account`
/// share its token buckets, since the vendor's limits are per account, not per key. The
/// limits are the documented ones with the credentials' `rate_limits` over them (`check`
/// refuses two credentials of one account that disagree on them).
#[derive(Default)]
pub struct AccountLimiters {
    limiters: std::sync::Mutex<std::collections::HashMap<String, Arc<RateLimiter>>>,
}

impl AccountLimiters {
    /// A client for `creds` sharing the limiter of its account.
    pub fn client(&self, creds: ResolvedCredentials, http: reqwest::Client) -> AlibabaClient {
        let overrides: std::collections::HashMap<String, f64> = creds
            .rate_limits
            .iter()
            .map(|(action, rate)| (action.clone(), *rate))
            .collect();
        let limiter = self
            .limiters
            .lock()
            // A map of `Arc`s: a panic elsewhere cannot leave it half-written.
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(creds.rate_limit_account().to_owned())
            .or_insert_with(|| {
                Arc::new(RateLimiter::new(
                    default_rate_limits().with_overrides(&overrides),
                ))
            })
            .clone();
        AlibabaClient::new(creds, http, RateLimits::default()).with_limiter(limiter)
    }
}

/// One Alibaba account's API client. Cheap to share behind an `Arc` between targets.
pub struct AlibabaClient {
    creds: ResolvedCredentials,
    /// Asked for the keys of every call (static, re-read from files, or temporary).
    provider: Arc<CredentialProvider>,
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    retry: Option<RetryPolicy>,
    observer: Option<Arc<dyn crate::cloud::http::RequestObserver>>,
    clock: crate::cloud::http::Clock,
}

impl AlibabaClient {
    /// A client with its own token buckets (`limits`). Each call is a single attempt: the
    /// engine's deploy step already wraps `observe` and `deploy` in `with_retries`, and two
    /// nested loops would multiply the attempts. Standalone users opt in with
    /// [`with_retry_policy`](Self::with_retry_policy).
    pub fn new(creds: ResolvedCredentials, http: reqwest::Client, limits: RateLimits) -> Self {
        Self {
            provider: Arc::new(CredentialProvider::for_account(&creds, &http)),
            creds,
            http,
            limiter: Arc::new(RateLimiter::new(limits)),
            retry: None,
            observer: None,
            clock: crate::cloud::http::system_clock(),
        }
    }

    /// Replaces the clock the `x-acs-date` time stamp is read from (tests of clock skew).
    pub fn with_clock(mut self, clock: crate::cloud::http::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Reports every call (action, outcome, duration) to `observer`, e.g. the metrics.
    pub fn with_observer(mut self, observer: Arc<dyn crate::cloud::http::RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Signs with the keys `provider` hands out instead of those of the credentials.
    pub fn with_provider(mut self, provider: Arc<CredentialProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// Shares `limiter` with other clients of the same account.
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// `Some` retries throttled and transient failures of each call through
    /// `retry::with_retries` (honouring `x-acs-retry-after`); `None` (the default)
    /// makes every call a single attempt.
    pub fn with_retry_policy(mut self, retry: Option<RetryPolicy>) -> Self {
        self.retry = retry;
        self
    }

    /// The account's credentials, for OSS (its own signature, [`super::oss`]).
    pub(crate) fn credentials(&self) -> &ResolvedCredentials {
        &self.creds
    }

    /// The keys a call signs with now (temporary ones refreshed by the provider), for OSS.
    pub(crate) async fn signing_keys(
        &self,
    ) -> Result<Arc<crate::cloud::credentials::Credentials>, CloudError> {
        self.provider.current().await
    }

    /// The HTTP client of this account's calls, for OSS.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The account name the buckets are keyed by (`account`, else the access key id).
    pub fn account(&self) -> &str {
        self.creds.rate_limit_account()
    }

    /// Calls `action` of `product` with `params`, retrying throttled and transient failures
    /// as the retry policy says. Returns the JSON body of the success reply.
    pub async fn call(
        &self,
        product: Product,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, CloudError> {
        self.call_in_region(product, None, action, params).await
    }

    /// [`call`](Self::call) at `product`'s endpoint in `region` (`None`: its default
    /// endpoint). Only cas is regional for us: a certificate referenced with `CertRegion`
    /// must be uploaded to that region's cas (reference §5.2).
    pub async fn call_in_region(
        &self,
        product: Product,
        region: Option<&str>,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, CloudError> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        match &self.retry {
            Some(policy) => {
                with_retries(
                    policy,
                    || self.call_once_in(product, region, action, &params),
                    |error, attempt, delay| {
                        tracing::debug!(
                            action,
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            code = %error.code,
                            "retrying Alibaba call"
                        );
                    },
                )
                .await
            }
            None => self.call_once_in(product, region, action, &params).await,
        }
    }

    /// One signed attempt, after waiting for a token.
    pub async fn call_once(
        &self,
        product: Product,
        action: &str,
        params: &[(String, String)],
    ) -> Result<serde_json::Value, CloudError> {
        self.call_once_in(product, None, action, params).await
    }

    async fn call_once_in(
        &self,
        product: Product,
        region: Option<&str>,
        action: &str,
        params: &[(String, String)],
    ) -> Result<serde_json::Value, CloudError> {
        let endpoint = self.endpoint(product, region);
        // The retry after an expired token sits inside the observed call: the observer (the
        // request metrics) sees one call and its final outcome, never an `auth` that was
        // only a token's end of life.
        let attempt = async {
            let credentials = self.provider.current().await?;
            match self
                .attempt(endpoint.clone(), product, action, params, &credentials)
                .await
            {
                Err(error)
                    if is_stale_token_code(&error.code) && credentials.security_token.is_some() =>
                {
                    tracing::info!(
                        account = self.provider.name(),
                        action,
                        "security token expired; refreshing it and sending the call once more"
                    );
                    self.provider.expired(&credentials).await;
                    let fresh = self.provider.current().await?;
                    self.attempt(endpoint, product, action, params, &fresh)
                        .await
                }
                other => other,
            }
        };
        crate::cloud::http::observed(self.observer.as_ref(), VENDOR, action, attempt).await
    }

    /// The base URL of `product` in `region`: a region other than the product's home one is
    /// configured as `endpoints."cas.ap-southeast-1"` (else the vendor-wide `endpoint`,
    /// else `https://cas.ap-southeast-1.aliyuncs.com`); a product-wide override never
    /// stands for another region.
    fn endpoint(&self, product: Product, region: Option<&str>) -> String {
        match region.filter(|region| Some(*region) != product.home_region()) {
            Some(region) => {
                let key = format!("{}.{region}", product.key());
                let default = format!("https://{}.{region}.aliyuncs.com", product.key());
                self.creds.endpoint_for(&key, &default)
            }
            None => self
                .creds
                .endpoint_for(product.key(), product.default_endpoint()),
        }
    }

    async fn attempt(
        &self,
        endpoint: String,
        product: Product,
        action: &str,
        params: &[(String, String)],
        credentials: &Credentials,
    ) -> Result<serde_json::Value, CloudError> {
        let url = url::Url::parse(&endpoint).map_err(|error| {
            CloudError::new(
                VENDOR,
                action,
                ErrorClass::Invalid,
                "BadEndpoint",
                format!("endpoint {endpoint}: {error}"),
            )
        })?;
        let Some(host) = crate::cloud::http::host_and_port(&url) else {
            return Err(CloudError::new(
                VENDOR,
                action,
                ErrorClass::Invalid,
                "BadEndpoint",
                format!("endpoint {endpoint} has no host"),
            ));
        };
        self.limiter.acquire(self.account(), action).await;
        let date = format_acs_date((self.clock)());
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let call = Acs3Call {
            host: &host,
            action,
            version: product.version(),
            params,
            date: &date,
            nonce: &nonce,
        };
        // The product SDKs put every parameter (PEM keys included) in the query; the gateway
        // reads RPC parameters from a form body just as well (vendor doc "V3 request
        // structure": formData body parameters, signed through the payload hash; the SDK
        // oracle cases `generic_rpc_form_body_SetCdnDomainSSLCertificate` (ACS3) and
        // `rds_ModifyDBInstanceSSL_form_body` (V1) send the PEMs that way). So the key never
        // sits in a URL that proxies, access logs or a redirect would carry. None of the RPC
        // APIs we call (CDN, VOD, RDS, alidns, CAS) requires the query, so nothing stays
        // there.
        let SignedRequest {
            query: _,
            body,
            headers,
        } = call.sign_form_with_token(
            &credentials.access_key_id,
            credentials.secret.expose(),
            credentials
                .security_token
                .as_ref()
                .map(crate::secret::Secret::expose),
        );
        let mut request_url = url.clone();
        request_url.set_path("/");
        request_url.set_query(None);
        let mut request = self.http.post(request_url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let reply = crate::cloud::http::send(request, crate::cloud::http::VENDOR_REPLY_CAP)
            .await
            .map_err(|error| error.into_cloud(VENDOR, action))?;
        let retry_after = reply.header("x-acs-retry-after");
        let decoded = decode_response(action, reply.status, retry_after.as_deref(), &reply.body);
        if let Err(error) = &decoded {
            if error.class == ErrorClass::Throttled {
                // Every target of this account slows down, not just the one refused.
                let wait = error.retry_after.unwrap_or(Duration::from_secs(1));
                self.limiter.hold_off(self.account(), action, wait);
            }
        }
        decoded
    }
}

/// Reads a reply from its status, `x-acs-retry-after` header and body: the JSON of a 2xx,
/// else the classified error. Pure, so the fuzzer can feed it any reply.
pub fn decode_response(
    action: &str,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<serde_json::Value, CloudError> {
    if !(200..300).contains(&status) {
        return Err(parse_error(action, status, retry_after, body));
    }
    serde_json::from_slice(body).map_err(|error| {
        CloudError::new(
            VENDOR,
            action,
            ErrorClass::Transient,
            "BadResponse",
            format!("reply is not JSON: {error}"),
        )
        .with_status(status)
    })
}

/// `x-acs-date` for now: ISO 8601 UTC to the second.
pub fn now_acs_date() -> String {
    format_acs_date(time::OffsetDateTime::now_utc())
}

pub fn format_acs_date(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// Parses `2024-01-15T08:30:00Z` (and any RFC 3339 time).
pub fn parse_acs_date(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Reads a string field at `path` (object keys) of a JSON reply.
pub fn str_at<'a>(value: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    current.as_str()
}

/// A reply that lacks a field we need.
pub fn bad_reply(operation: &str, what: &str) -> CloudError {
    CloudError::new(
        VENDOR,
        operation,
        ErrorClass::Transient,
        "BadResponse",
        format!("reply has no {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_fall_back_on_status_and_throttling_prefix() {
        assert_eq!(classify("Throttling.Whatever", 400), ErrorClass::Throttled);
        assert_eq!(classify("Nope", 429), ErrorClass::Throttled);
        assert_eq!(classify("Nope", 502), ErrorClass::Transient);
        assert_eq!(classify("Nope", 403), ErrorClass::Auth);
        assert_eq!(classify("Nope", 404), ErrorClass::NotFound);
        assert_eq!(classify("Nope", 400), ErrorClass::Invalid);
        assert_eq!(classify("Certificate.MissMatch", 400), ErrorClass::Invalid);
    }

    #[test]
    fn error_body_and_retry_after_are_parsed() {
        let body = br#"{"Code":"Throttling.User","Message":"slow down","RequestId":"R1","HostId":"cdn.aliyuncs.com","Recommend":"https://x"}"#;
        let error = parse_error("SetCdnDomainSSLCertificate", 400, Some("1500"), body);
        assert_eq!(error.class, ErrorClass::Throttled);
        assert_eq!(error.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(error.request_id.as_deref(), Some("R1"));
        assert_eq!(error.code, "Throttling.User");
        let hinted = parse_error("X", 503, Some("200"), br#"{"Code":"ServiceUnavailable"}"#);
        assert_eq!(hinted.class, ErrorClass::Throttled);
        assert_eq!(
            parse_error("X", 400, Some("0"), b"{}").class,
            ErrorClass::Invalid
        );
        let garbage = parse_error("X", 503, None, b"<html>");
        assert_eq!(garbage.class, ErrorClass::Transient);
        assert_eq!(garbage.code, "HTTP503");
    }

    #[test]
    fn blank_code_falls_back_on_the_status() {
        // Fuzzing regression (fuzz/ alibaba_response): `{"Code":""}` gave an empty code.
        let error = parse_error("X", 400, None, br#"{"Code":"","RequestId":"R1"}"#);
        assert_eq!(error.code, "HTTP400");
        assert_eq!(error.class, ErrorClass::Invalid);
        assert_eq!(
            parse_error("X", 503, None, br#"{"Code":" "}"#).code,
            "HTTP503"
        );
    }

    #[test]
    fn decode_response_reads_json_replies_and_classifies_the_rest() {
        let ok = decode_response("X", 200, None, br#"{"RequestId":"R"}"#).unwrap();
        assert_eq!(str_at(&ok, &["RequestId"]), Some("R"));
        let not_json = decode_response("X", 200, None, b"<html>").unwrap_err();
        assert_eq!(not_json.class, ErrorClass::Transient);
        assert_eq!(not_json.code, "BadResponse");
        let refused = decode_response("X", 400, None, br#"{"Code":"NameRepeat"}"#).unwrap_err();
        assert_eq!(refused.class, ErrorClass::Invalid);
        let hinted = decode_response("X", 500, Some("30"), b"").unwrap_err();
        assert_eq!(hinted.class, ErrorClass::Throttled);
        assert_eq!(hinted.retry_after, Some(Duration::from_millis(30)));
    }

    /// Every row of the error tables in seeds 000, 001 and 002 names a code in our table.
    /// The rows are extracted into `tests/fixtures/seeds/` (sources in its README).
    #[test]
    fn every_seed_error_code_is_classified() {
        let mut seen = 0;
        for (seed, text) in [
            (
                "000_rds_modify_db_instance_ssl.txt",
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/seeds/000_rds_modify_db_instance_ssl.txt"
                )),
            ),
            (
                "001_vod_set_vod_domain_ssl_certificate.txt",
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/seeds/001_vod_set_vod_domain_ssl_certificate.txt"
                )),
            ),
            (
                "002_cdn_set_domain_server_certificate.txt",
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/seeds/002_cdn_set_domain_server_certificate.txt"
                )),
            ),
        ] {
            for line in text.lines() {
                let line = line.trim();
                let Some(status) = line.get(..3).and_then(|s| s.parse::<u16>().ok()) else {
                    continue;
                };
                if !(400..600).contains(&status) {
                    continue;
                }
                let rest = line[3..].trim_start_matches([' ', '|']).trim_start();
                // Pipe tables separate the code; the others run code and message together,
                // so take the longest known code the row starts with.
                let code = if line.contains('|') {
                    rest.split('|').next().unwrap().trim().to_owned()
                } else {
                    ERROR_TABLE
                        .rows()
                        .iter()
                        .map(|row| row.code)
                        .filter(|code| rest.starts_with(code))
                        .max_by_key(|code| code.len())
                        .unwrap_or_else(|| panic!("{seed}: no known code in row {line}"))
                        .to_owned()
                };
                assert!(is_known_code(&code), "{seed}: {code} not in the table");
                // The message right after the code must start a word (not a code's tail).
                let message = rest[code.len()..].trim_start_matches([' ', '|']);
                assert!(
                    message.starts_with(|c: char| c.is_uppercase())
                        || message.starts_with("account")
                        || message.starts_with("sql")
                        || message.starts_with("the "),
                    "{seed}: suspicious split of {line}"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 70 + 32 + 36);
    }
}
