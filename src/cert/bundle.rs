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
    #[error("{what}: cannot read: {reason}")]
    Io { what: String, reason: String },
    #[error("{what}: the input is empty")]
    Empty { what: String },
    #[error("{what}: {size} bytes is more than the {limit}-byte limit for certificate and key inputs; is this the right file?")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    #[error("{what}: binary DER where PEM text was expected; convert it with `openssl x509 -inform der` (certificate) or `openssl pkey -inform der` (key)")]
    DerNotPem { what: String },
    #[error("{what}: base64 without PEM armour; wrap it in `-----BEGIN ...-----` and `-----END ...-----` lines")]
    BareBase64 { what: String },
    #[error("{what}: not a text file (PEM expected)")]
    NotText { what: String },
    #[error("{what}: unexpected PEM block {tag:?}; expected CERTIFICATE or a private key")]
    UnexpectedBlock { what: String, tag: String },
    #[error("{what}: no CERTIFICATE block found")]
    NoCertificate { what: String },
    #[error("{what}: no private key found (expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)")]
    NoKey { what: String },
    #[error("{what}: {count} private keys found; exactly one is expected")]
    SeveralKeys { what: String, count: usize },
    #[error("{what}: the private key is encrypted; certkeeper runs unattended and needs it unencrypted (`openssl pkey -in KEY -out PLAIN`), protected by file permissions instead")]
    EncryptedKey { what: String },
    #[error("{what}: unreadable private key: {reason}")]
    BadKey { what: String, reason: String },
    #[error("{what}: unsupported private key: {reason}")]
    UnsupportedKey { what: String, reason: String },
    #[error("{what}: certificate {subject:?} is not part of the chain of {leaf:?}; remove it")]
    UnrelatedCertificate {
        what: String,
        subject: String,
        leaf: String,
    },
    #[error("{what}: cannot put the chain in order: {reason}")]
    ChainOrder { what: String, reason: String },
    #[error("generating a {key_type} key failed: {reason}")]
    KeyGeneration {
        key_type: &'static str,
        reason: String,
    },
    #[error("building the certificate signing request failed: {reason}")]
    Csr { reason: String },
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
    /// Builds a bundle from trusted PEM texts (the store, tests), reading the leaf's facts
    /// only. User input goes through [`crate::cert::parse_bundle`] (chain order, key format)
    /// and every bundle through [`crate::cert::check_predeploy`] before a deployment.
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

    /// A self-signed certificate (PEM) for `names` whose key is `key` (any supported type),
    /// valid from a day ago for 90 days.
    pub fn certificate_for_key(key: &Secret, names: &[&str]) -> String {
        let key = crate::cert::key::PrivateKey::from_pem("test key", key.expose())
            .expect("test key")
            .to_rcgen("test key")
            .expect("rcgen key");
        let now = OffsetDateTime::now_utc();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("names");
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(90);
        params.self_signed(&key).expect("self-signed").pem()
    }

    /// A fresh Ed25519 key as PKCS#8 PEM (not a configurable key type, but one certkeeper
    /// must recognise in files).
    pub fn ed25519_key() -> Secret {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
        Secret::new(key.serialize_pem())
    }

    /// The same EC key in SEC1 form (`EC PRIVATE KEY`, as `openssl ecparam -genkey` writes
    /// it, with the named-curve parameters).
    pub fn sec1_pem(pkcs8_pem: &Secret) -> Secret {
        use rsa::pkcs8::der::Encode;
        let block = pem::parse(pkcs8_pem.expose()).expect("pem");
        let info = rsa::pkcs8::PrivateKeyInfo::try_from(block.contents()).expect("pkcs8");
        let curve = info
            .algorithm
            .parameters
            .expect("curve")
            .to_der()
            .expect("oid");
        // ring writes ECPrivateKey without the optional [0] parameters; insert them after
        // the private key octet string, as OpenSSL does.
        let inner = info.private_key;
        let (body_start, body_len) = if inner[1] & 0x80 == 0 {
            (2, inner[1] as usize)
        } else {
            let n = (inner[1] & 0x7f) as usize;
            (
                2 + n,
                inner[2..2 + n]
                    .iter()
                    .fold(0, |a, b| (a << 8) | *b as usize),
            )
        };
        let body = &inner[body_start..body_start + body_len];
        // version INTEGER (3 bytes) + OCTET STRING (2 + len).
        let split = 3 + 2 + body[4] as usize;
        let mut new_body = body[..split].to_vec();
        new_body.push(0xa0);
        new_body.push(curve.len() as u8);
        new_body.extend_from_slice(&curve);
        new_body.extend_from_slice(&body[split..]);
        let mut der = vec![0x30];
        if new_body.len() < 0x80 {
            der.push(new_body.len() as u8);
        } else {
            der.push(0x81);
            der.push(new_body.len() as u8);
        }
        der.extend_from_slice(&new_body);
        Secret::new(pem::encode(&pem::Pem::new("EC PRIVATE KEY", der)))
    }

    /// A three-level PKI: root CA, intermediate CA and a leaf for `names`, all PEM.
    pub struct TestChain {
        pub root: String,
        pub intermediate: String,
        pub leaf: String,
        pub key: Secret,
    }

    impl TestChain {
        /// Root, intermediate and leaf signed in that order; the leaf valid from
        /// `not_before` to `not_after`, the CAs for ten years around now.
        pub fn new(names: &[&str], not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
            Self::named("certkeeper test", names, not_before, not_after)
        }

        /// As [`TestChain::new`] with CA names prefixed by `prefix`, so two chains differ.
        pub fn named(
            prefix: &str,
            names: &[&str],
            not_before: OffsetDateTime,
            not_after: OffsetDateTime,
        ) -> Self {
            let now = OffsetDateTime::now_utc();
            let ca_params = |cn: String| {
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params.distinguished_name = rcgen::DistinguishedName::new();
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, cn);
                params.not_before = now - time::Duration::days(3650);
                params.not_after = now + time::Duration::days(3650);
                params
            };
            let root_key = rcgen::KeyPair::generate().expect("key");
            let root_params = ca_params(format!("{prefix} root"));
            let root = root_params.self_signed(&root_key).expect("root");
            let root_issuer = rcgen::Issuer::new(root_params, root_key);

            let int_key = rcgen::KeyPair::generate().expect("key");
            let int_params = ca_params(format!("{prefix} intermediate"));
            let intermediate = int_params
                .signed_by(&int_key, &root_issuer)
                .expect("intermediate");
            let int_issuer = rcgen::Issuer::new(int_params, int_key);

            let leaf_key = rcgen::KeyPair::generate().expect("key");
            let mut leaf_params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .expect("names");
            leaf_params.not_before = not_before;
            leaf_params.not_after = not_after;
            let leaf = leaf_params.signed_by(&leaf_key, &int_issuer).expect("leaf");
            Self {
                root: root.pem(),
                intermediate: intermediate.pem(),
                leaf: leaf.pem(),
                key: Secret::new(leaf_key.serialize_pem()),
            }
        }
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
