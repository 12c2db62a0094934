//! A certificate bundle as certkeeper stores and deploys it: the leaf, the chain above it and
//! the private key, with the facts about the leaf every component needs (SHA-256
//! fingerprint, serial, issuer, names, validity).

use crate::secret::Secret;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Why a PEM or DER input could not be turned into a usable certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("{what}: no PEM block found")]
    NoPem { what: String },
    #[error("{what}: malformed PEM: {reason}")]
    MalformedPem { what: String, reason: String },
    #[error("{what}: not a valid X.509 certificate: {reason}")]
    BadCertificate { what: String, reason: String },
}

/// Facts about one leaf certificate, read from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// Lower-case hex SHA-256 of the DER encoding.
    pub fingerprint: String,
    /// Lower-case hex serial number.
    pub serial: String,
    pub issuer: String,
    pub subject: String,
    /// DNS names from the subjectAltName extension (the CN when there is none).
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafInfo {
    /// Reads the first certificate of a PEM text.
    pub fn from_pem(what: &str, pem_text: &str) -> Result<Self, CertError> {
        let blocks = pem::parse_many(pem_text).map_err(|error| CertError::MalformedPem {
            what: what.to_owned(),
            reason: error.to_string(),
        })?;
        let block = blocks
            .iter()
            .find(|block| block.tag() == "CERTIFICATE")
            .ok_or_else(|| CertError::NoPem {
                what: what.to_owned(),
            })?;
        Self::from_der(what, block.contents())
    }

    pub fn from_der(what: &str, der: &[u8]) -> Result<Self, CertError> {
        use x509_parser::prelude::*;
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|error| CertError::BadCertificate {
                what: what.to_owned(),
                reason: error.to_string(),
            })?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    names.push(dns.to_ascii_lowercase());
                }
            }
        }
        if names.is_empty() {
            if let Some(cn) = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
            {
                names.push(cn.to_ascii_lowercase());
            }
        }
        Ok(Self {
            fingerprint: sha256_hex(der),
            serial: cert.raw_serial_as_string().replace(':', ""),
            issuer: cert.issuer().to_string(),
            subject: cert.subject().to_string(),
            names,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What certkeeper deploys: a leaf, the intermediates above it, and the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateBundle {
    /// The leaf certificate, one PEM block.
    pub leaf_pem: String,
    /// The intermediates in order from the leaf's issuer upwards; may be empty.
    pub chain_pem: String,
    /// The private key in PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Secret,
    pub info: LeafInfo,
}

impl CertificateBundle {
    /// Builds a bundle from PEM texts, reading the leaf's facts. Full validation (key match,
    /// chain order, names) is the job of the pre-deploy checks.
    pub fn from_pem(leaf_pem: &str, chain_pem: &str, key_pem: Secret) -> Result<Self, CertError> {
        let info = LeafInfo::from_pem("certificate", leaf_pem)?;
        Ok(Self {
            leaf_pem: leaf_pem.trim_end().to_owned() + "\n",
            chain_pem: chain_pem.trim().to_owned()
                + if chain_pem.trim().is_empty() {
                    ""
                } else {
                    "\n"
                },
            key_pem,
            info,
        })
    }

    /// Leaf followed by the chain, as most servers and cloud APIs take it.
    pub fn fullchain_pem(&self) -> String {
        if self.chain_pem.is_empty() {
            self.leaf_pem.clone()
        } else {
            format!("{}{}", self.leaf_pem, self.chain_pem)
        }
    }

    pub fn fingerprint(&self) -> &str {
        &self.info.fingerprint
    }
}

impl std::fmt::Debug for CertificateBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateBundle")
            .field("fingerprint", &self.info.fingerprint)
            .field("names", &self.info.names)
            .field("not_after", &self.info.not_after)
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

/// Generated certificates for tests, the simulator demo and benchmarks (never fixtures on
/// disk). Inputs here are ours, not a user's, so generation failures are bugs.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A self-signed ECDSA P-256 certificate for `names`, valid from `not_before` to `not_after`.
    pub fn self_signed(
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CertificateBundle {
        let key = rcgen::KeyPair::generate().expect("key generation");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("names");
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key).expect("self-signed");
        CertificateBundle::from_pem(&cert.pem(), "", Secret::new(key.serialize_pem()))
            .expect("bundle")
    }

    /// A certificate valid for 90 days from now.
    pub fn fresh(names: &[&str]) -> CertificateBundle {
        let now = OffsetDateTime::now_utc();
        self_signed(
            names,
            now - time::Duration::days(1),
            now + time::Duration::days(90),
        )
    }
}
