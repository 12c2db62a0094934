//! The Alibaba simulator's own tables (rates, refusals, value sets), written from the vendor
//! documents and never from the client's: where client and simulator share a table, a wrong
//! entry can never be caught. `tests/alibaba_fidelity.rs` compares the two; each disagreement
//! there is a deliberate, commented exception.
//!
//! Sources: "seed 000/001/002 line N" is line N of `tests/fixtures/seeds/00x_*.txt` (the
//! verbatim error rows of `shared/seeds/000_*`, `001_*`, `002_*`); "reference §x" is
//! `shared/reference/cloud-apis.md`. Rows with neither are the simulator's own choices where
//! the vendor documents nothing, each saying why.

/// One refusal as the vendor documents it: HTTP status, code, message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentedError {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
    /// Where the row comes from (a seed line or a reference section).
    pub source: &'static str,
}

const fn row(
    status: u16,
    code: &'static str,
    message: &'static str,
    source: &'static str,
) -> DocumentedError {
    DocumentedError {
        status,
        code,
        message,
        source,
    }
}

/// Every code the simulator answers with.
pub const DOCUMENTED_ERRORS: &[DocumentedError] = &[
    // Gateway and signature (reference §1.4). SignatureDoesNotMatch is 400 for V1 and 403 for
    // V3 there: the V3 check answers 403 with this row's message.
    row(
        400,
        "MissingParameter",
        "A required parameter is missing.",
        "reference §1.4",
    ),
    row(
        400,
        "InvalidParameter",
        "A parameter is invalid.",
        "reference §1.4",
    ),
    row(
        400,
        "IncompleteSignature",
        "The request signature is incomplete.",
        "reference §1.4",
    ),
    row(
        404,
        "InvalidAccessKeyId.NotFound",
        "Specified access key is not found.",
        "reference §1.4 (404 in the PolarDB table)",
    ),
    row(
        400,
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation.",
        "reference §1.4 (400 for V1)",
    ),
    row(
        400,
        "InvalidTimeStamp.Expired",
        "Specified time stamp or date value is expired.",
        "reference §1.2: x-acs-date within 15 min",
    ),
    row(
        400,
        "SignatureNonceUsed",
        "Specified signature nonce was used already.",
        "reference §1.2: x-acs-signature-nonce unique",
    ),
    row(
        400,
        "Throttling.User",
        "Request was denied due to user flow control.",
        "reference §1.4 (observed 400)",
    ),
    row(
        404,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
        "not in the seeds: the gateway's answer to an unknown action",
    ),
    row(
        400,
        "UnsupportedOperation",
        "The specified region does not serve this operation.",
        "reference §1.4 code; seed 001 says only cn-shanghai serves VOD domain APIs, no code given",
    ),
    // RDS ModifyDBInstanceSSL (seed 000).
    row(
        400,
        "InvalidServerCertOrPrivateKey",
        "Specify server certificate or private key is invalid.",
        "seed 000 line 5",
    ),
    row(
        400,
        "InvalidClientCACert",
        "Specify client ca certificate is invalid.",
        "seed 000 line 6",
    ),
    row(
        400,
        "InvalidClientCrl",
        "Specify client certificate revocation list is invalid.",
        "seed 000 line 7",
    ),
    row(
        400,
        "InvalidCAType.NotFound",
        "Specify ca type is not found.",
        "seed 000 line 8",
    ),
    row(
        400,
        "InvalidACL.NotFound",
        "Specify acl is not found.",
        "seed 000 line 9",
    ),
    row(
        400,
        "InvalidSSLStatus",
        "Specify ssl status is invalid.",
        "seed 000 line 10",
    ),
    row(
        400,
        "IncorrectDBSslStatus",
        "Specified DB SSLStatus does not support this operation.",
        "seed 000 line 11",
    ),
    row(
        400,
        "InvalidDBInstanceId.NotFound",
        "The DBInstanceId provided does not exist in records.",
        "seed 000 line 33",
    ),
    row(
        400,
        "RequiredParam.NotFound",
        "Required input param is not found.",
        "seed 000 line 44",
    ),
    row(
        400,
        "Parameters.Invalid",
        "Parameter error, please check the parameters.",
        "seed 000 line 45",
    ),
    row(
        400,
        "InvalidDBInstanceEngineType.Format",
        "the DB instance engine type does not support this operation.",
        "seed 000 line 49",
    ),
    row(
        403,
        "InvalidClientCrl.Permission",
        "Client ca certificate is set first if need to set client certificate revocation list.",
        "seed 000 line 56",
    ),
    row(
        403,
        "InvalidACL.Permission",
        "Client ca certificate is set first if need to set acl.",
        "seed 000 line 57",
    ),
    row(
        404,
        "Endpoint.NotFound",
        "Specified endpoint is not existed.",
        "seed 000 line 68",
    ),
    // VOD SetVodDomainSSLCertificate (seed 001) and CDN SetDomainServerCertificate (seed 002).
    row(
        400,
        "InvalidSSLProtocol.ValueNotSupported",
        "The specified SSLProtocol is invalid.",
        "seed 001 line 5",
    ),
    row(
        400,
        "InvalidServerCertificateStatus.ValueNotSupported",
        "The specified ServerCertificateStatus is invalid.",
        "seed 002 line 5",
    ),
    row(
        400,
        "SSLPub.MissingParameter",
        "The SSLPub parameter is required.",
        "seed 001 line 6, seed 002 line 6",
    ),
    row(
        400,
        "SSLPri.MissingParameter",
        "The SSLPri parameter is required.",
        "seed 001 line 7, seed 002 line 7",
    ),
    row(
        400,
        "InvalidSSLPub",
        "The specified SSLPub is invalid.",
        "seed 001 line 8, seed 002 line 8",
    ),
    row(
        400,
        "InvalidSSLPri",
        "The specified SSLPri is invalid.",
        "seed 001 line 9, seed 002 line 9",
    ),
    row(
        400,
        "Certificate.MissMatch",
        "The SSLPri does not match the certificate.",
        "seed 001 line 10, seed 002 line 10",
    ),
    row(
        400,
        "InvalidCertName.TooLong",
        "The length of the certificate name cannot exceed 128 characters.",
        "seed 001 line 12, seed 002 line 12",
    ),
    row(
        400,
        "Certificate.NotFind",
        "The certificate does not exist.",
        "seed 001 line 17, seed 002 line 18",
    ),
    row(
        400,
        "Certificate.Duplicated",
        "The certificate name already exists.",
        "seed 001 line 18, seed 002 line 19",
    ),
    row(
        400,
        "Certificate.FormatError",
        "The format of the certificate is invalid.",
        "seed 001 line 19, seed 002 line 20",
    ),
    row(
        400,
        "CertificateContent.Duplicated",
        "The certificate has been uploaded,do not upload again.",
        "seed 002 line 25",
    ),
    row(
        400,
        "Certificate.Expired",
        "The certificate has expired.",
        "seed 001 line 24, seed 002 line 26",
    ),
    row(
        400,
        "Abs.CertRegion.ValueNotSupported",
        "CertRegion is not supported.",
        "seed 001 line 31",
    ),
    row(
        400,
        "CertNameAlreadyExists",
        "The CertName already exists.",
        "seed 001 line 32",
    ),
    row(
        404,
        "CertName.MissingParameter",
        "The CertName parameter is required.",
        "seed 002 line 40",
    ),
    row(
        404,
        "InvalidDomain.NotFound",
        "The specified domain does not exist.",
        "not in the seeds: the CDN/VOD answer to an unknown domain",
    ),
    // alidns and cas (not in the seeds: reference §5.1 names DomainRecordDuplicate; the rest
    // are the services' answers for a missing record or certificate and a repeated name).
    row(
        400,
        "InvalidDomainName.NoExist",
        "The specified domain name does not exist.",
        "reference §5.1 (DescribeDomainRecords)",
    ),
    row(
        400,
        "DomainRecordDuplicate",
        "The DNS record already exists.",
        "reference §5.1",
    ),
    row(
        400,
        "DomainRecordNotBelongToUser",
        "The DNS record does not exist.",
        "not in the seeds",
    ),
    row(
        400,
        "NameRepeat",
        "The certificate name already exists.",
        "reference §5.2: Name unique per account",
    ),
    row(
        400,
        "CertNotExist",
        "The certificate does not exist.",
        "not in the seeds",
    ),
    row(
        400,
        "DeleteFailed",
        "Error deleting the certificate.",
        "seed 001 line 16",
    ),
];

/// The documented row of `code`.
pub fn documented(code: &str) -> Option<&'static DocumentedError> {
    DOCUMENTED_ERRORS.iter().find(|row| row.code == code)
}

/// Documented per-account limits, calls per second; actions not listed are not limited by
/// the simulator (no document gives a number to enforce).
pub const RATE_LIMITS: &[(&str, f64)] = &[
    // reference §2.1: "up to 30 times per second per account".
    ("SetCdnDomainSSLCertificate", 30.0),
    // seed 002: "You can call this operation up to 10 times per second per user."
    ("SetDomainServerCertificate", 10.0),
    // seed 001: "单用户调用频率:30 次/秒" (30 calls a second per user).
    ("SetVodDomainSSLCertificate", 30.0),
    // reference §2.3: "100 calls/s/account".
    ("DescribeDomainCertificateInfo", 100.0),
    // reference §2.4: 30/s.
    ("DescribeCdnDomainDetail", 30.0),
    // reference §5.2 table, "Limit (docstring)" column.
    ("UploadUserCertificate", 100.0),
    ("DeleteUserCertificate", 100.0),
    ("GetUserCertificateDetail", 100.0),
    ("ListUserCertificateOrder", 10.0),
];

/// `CertRegion` values: reference §2.1 and §3 (`cn-hangzhou` default, `ap-southeast-1`).
pub const CERT_REGIONS: &[&str] = &["cn-hangzhou", "ap-southeast-1"];

/// The region a `CertRegion`-less request means: reference §2.1 and seed 001 ("默认值为cn-hangzhou").
pub const DEFAULT_CERT_REGION: &str = "cn-hangzhou";

/// The only region serving VOD domain APIs: seed 001 "本接口目前仅支持 华东 2(上海) 地域"; reference §3.
pub const VOD_REGION: &str = "cn-shanghai";

/// `ACL` / `ReplicationACL` values of ModifyDBInstanceSSL (seed 000 request parameters).
pub const RDS_ACL_VALUES: &[&str] = &["cert", "prefer", "verify-ca", "verify-full"];

/// Which engines ModifyDBInstanceSSL takes each parameter from; any other engine is refused
/// with `InvalidDBInstanceEngineType.Format` (seed 000 line 49).
pub const RDS_ENGINE_PARAMETERS: &[(&str, &[&str])] = &[
    // Seed 000 request parameters: "该参数支持 RDS MySQL 和 RDS PostgreSQL 云盘版".
    ("CAType", &["MySQL", "PostgreSQL"]),
    ("ServerCert", &["MySQL", "PostgreSQL"]),
    ("ServerKey", &["MySQL", "PostgreSQL"]),
    // Seed 000: "该参数支持 RDS PostgreSQL 云盘版".
    ("ClientCAEnabled", &["PostgreSQL"]),
    ("ClientCACert", &["PostgreSQL"]),
    ("ClientCrlEnabled", &["PostgreSQL"]),
    ("ClientCertRevocationList", &["PostgreSQL"]),
    ("ACL", &["PostgreSQL"]),
    ("ReplicationACL", &["PostgreSQL"]),
    // Seed 000 says PostgreSQL cloud disk only; reference §4.1 (SDK 16.0.2, newer than the
    // page) adds MySQL and SQL Server. The simulator follows the newer document: refusing
    // what the vendor's current SDK documents would hide a real capability.
    ("ForceEncryption", &["MySQL", "PostgreSQL", "SQLServer"]),
    // Seed 000 says PostgreSQL; reference §4.1/§4.2: SQL Server's minimum TLS version.
    ("TlsVersion", &["PostgreSQL", "SQLServer"]),
    // Reference §4.1: SQL Server's custom certificate, a PFX in OSS, and its password.
    ("Certificate", &["SQLServer"]),
    ("PassWord", &["SQLServer"]),
];
