//! Private keys: generation for every configurable key type, reading PKCS#8, PKCS#1 and SEC1
//! keys into one normalised PKCS#8 form, CSR generation, and the key-matches-certificate test.
//! Signing goes through ring (via rcgen); the RustCrypto `rsa` crate is used only where ring
//! cannot help: generating RSA keys and reading PKCS#1 RSA keys.

use super::bundle::CertError;
use crate::secret::Secret;
use ring::signature::KeyPair as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::der::Encode as _;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding, ObjectIdentifier};
use rsa::traits::PublicKeyParts;
use std::fmt;
use std::str::FromStr;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The key types a `[[certificate]]` may ask for (`key = "..."` in the config).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum KeyType {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    pub const ALL: [KeyType; 5] = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// Generates a fresh key of this type as unencrypted PKCS#8 PEM. RSA 4096 takes seconds.
    pub fn generate(self) -> Result<Secret, CertError> {
        let failed = |reason: String| CertError::KeyGeneration {
            key_type: self.as_str(),
            reason,
        };
        let rsa_bits = match self {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                let alg = if self == KeyType::EcdsaP256 {
                    &rcgen::PKCS_ECDSA_P256_SHA256
                } else {
                    &rcgen::PKCS_ECDSA_P384_SHA384
                };
                let key = rcgen::KeyPair::generate_for(alg).map_err(|e| failed(e.to_string()))?;
                return Ok(Secret::new(key.serialize_pem()));
            }
            KeyType::Rsa2048 => 2048,
            KeyType::Rsa3072 => 3072,
            KeyType::Rsa4096 => 4096,
        };
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), rsa_bits)
            .map_err(|e| failed(e.to_string()))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| failed(e.to_string()))?;
        Ok(Secret::new(pem.as_str()))
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = KeyType::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unknown key type {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// An elliptic curve by name; `Other` keeps the OID of curves certkeeper does not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
    Other(String),
}

impl Curve {
    fn from_oid(oid: &str) -> Curve {
        match oid {
            "1.2.840.10045.3.1.7" => Curve::P256,
            "1.3.132.0.34" => Curve::P384,
            "1.3.132.0.35" => Curve::P521,
            other => Curve::Other(other.to_owned()),
        }
    }
}

/// A public key reduced to what identifies it, so a private key's public half and a
/// certificate's SubjectPublicKeyInfo compare by value whatever their encodings.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKeyId {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point (0x04 || x || y).
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
    /// Anything else, by algorithm OID.
    Other(String),
}

impl PublicKeyId {
    /// Reads the public key of a DER certificate.
    pub fn from_certificate_der(what: &str, der: &[u8]) -> Result<Self, CertError> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| {
            CertError::BadCertificate {
                what: what.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self::from_spki(cert.public_key()))
    }

    pub(crate) fn from_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Self {
        let oid = spki.algorithm.algorithm.to_id_string();
        let bits: &[u8] = &spki.subject_public_key.data;
        match oid.as_str() {
            "1.2.840.113549.1.1.1" => match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => PublicKeyId::Rsa {
                    n: strip_zeros(rsa.modulus).to_vec(),
                    e: strip_zeros(rsa.exponent).to_vec(),
                },
                _ => PublicKeyId::Other(oid),
            },
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| Curve::from_oid(&o.to_id_string()))
                    .unwrap_or_else(|| Curve::Other("implicit".to_owned()));
                PublicKeyId::Ec {
                    curve,
                    point: bits.to_vec(),
                }
            }
            "1.3.101.112" => PublicKeyId::Ed25519(bits.to_vec()),
            _ => PublicKeyId::Other(oid),
        }
    }

    /// RSA modulus size in bits; `None` for other key kinds.
    pub fn rsa_bits(&self) -> Option<usize> {
        match self {
            PublicKeyId::Rsa { n, .. } => Some(match n.first() {
                Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
                None => 0,
            }),
            _ => None,
        }
    }

    /// Human description for messages, e.g. `RSA 2048` or `ECDSA P-256`.
    pub fn describe(&self) -> String {
        match self {
            PublicKeyId::Rsa { .. } => format!("RSA {}", self.rsa_bits().unwrap_or(0)),
            PublicKeyId::Ec { curve, .. } => match curve {
                Curve::P256 => "ECDSA P-256".to_owned(),
                Curve::P384 => "ECDSA P-384".to_owned(),
                Curve::P521 => "ECDSA P-521".to_owned(),
                Curve::Other(oid) => format!("ECDSA curve {oid}"),
            },
            PublicKeyId::Ed25519(_) => "Ed25519".to_owned(),
            PublicKeyId::Other(oid) => format!("key algorithm {oid}"),
        }
    }
}

impl fmt::Debug for PublicKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The algorithm of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

/// A private key read from PEM, normalised to PKCS#8 DER. `Debug` never shows the key.
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("der", &"** REDACTED **")
            .finish()
    }
}

impl PrivateKey {
    /// Reads the single private key in `pem_text` (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(what: &str, pem_text: &str) -> Result<Self, CertError> {
        let blocks = super::pem::read_blocks(what, pem_text.as_bytes())?;
        let keys: Vec<_> = blocks
            .iter()
            .filter(|b| super::pem::is_key_block(b))
            .collect();
        match keys.as_slice() {
            [] => Err(CertError::NoKey {
                what: what.to_owned(),
            }),
            [one] => {
                super::pem::refuse_encrypted(what, one)?;
                Self::from_block(what, one.tag(), one.contents())
            }
            several => Err(CertError::SeveralKeys {
                what: what.to_owned(),
                count: several.len(),
            }),
        }
    }

    /// Reads one key from its PEM label and DER contents.
    pub(crate) fn from_block(what: &str, tag: &str, der: &[u8]) -> Result<Self, CertError> {
        match tag {
            "PRIVATE KEY" => Self::from_pkcs8(what, der),
            "RSA PRIVATE KEY" => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| bad_key(what, e))?;
                let doc = key.to_pkcs8_der().map_err(|e| bad_key(what, e))?;
                Ok(PrivateKey {
                    algorithm: KeyAlgorithm::Rsa,
                    pkcs8: Zeroizing::new(doc.as_bytes().to_vec()),
                })
            }
            "EC PRIVATE KEY" => Self::from_sec1(what, der),
            other => Err(CertError::UnsupportedKey {
                what: what.to_owned(),
                reason: format!("PEM block {other:?} is not a private key"),
            }),
        }
    }

    fn from_pkcs8(what: &str, der: &[u8]) -> Result<Self, CertError> {
        let info = rsa::pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| bad_key(what, e))?;
        let algorithm = match info.algorithm.oid {
            OID_RSA => KeyAlgorithm::Rsa,
            OID_EC => match info.algorithm.parameters_oid() {
                Ok(OID_P256) => KeyAlgorithm::EcdsaP256,
                Ok(OID_P384) => KeyAlgorithm::EcdsaP384,
                Ok(OID_P521) => {
                    return Err(CertError::UnsupportedKey {
                        what: what.to_owned(),
                        reason: "ECDSA P-521 keys are not supported; use P-256 or P-384".to_owned(),
                    })
                }
                Ok(other) => {
                    return Err(CertError::UnsupportedKey {
                        what: what.to_owned(),
                        reason: format!("elliptic curve {other} is not supported"),
                    })
                }
                Err(_) => {
                    return Err(CertError::BadKey {
                        what: what.to_owned(),
                        reason: "EC key without a named curve".to_owned(),
                    })
                }
            },
            OID_ED25519 => KeyAlgorithm::Ed25519,
            other => {
                return Err(CertError::UnsupportedKey {
                    what: what.to_owned(),
                    reason: format!("key algorithm {other} is not supported"),
                })
            }
        };
        let key = PrivateKey {
            algorithm,
            pkcs8: Zeroizing::new(der.to_vec()),
        };
        // Derive the public key now so a corrupt key fails here, naming its input, rather
        // than later as a confusing mismatch.
        key.public_key(what)?;
        Ok(key)
    }

    /// SEC1 (`EC PRIVATE KEY`, RFC 5915) is wrapped into PKCS#8 (RFC 5208) so ring can read
    /// it; the curve comes from the key's own parameters, or from the scalar length.
    fn from_sec1(what: &str, der: &[u8]) -> Result<Self, CertError> {
        let fields = der_sequence_fields(der).ok_or_else(|| CertError::BadKey {
            what: what.to_owned(),
            reason: "malformed SEC1 EC private key".to_owned(),
        })?;
        let scalar_len = fields
            .iter()
            .find(|(tag, _)| *tag == 0x04)
            .map(|(_, value)| value.len());
        let named = fields
            .iter()
            .find(|(tag, _)| *tag == 0xa0)
            .and_then(|(_, value)| {
                <ObjectIdentifier as rsa::pkcs8::der::Decode>::from_der(value).ok()
            });
        let curve = match (named, scalar_len) {
            (Some(oid), _) => oid,
            (None, Some(32)) => OID_P256,
            (None, Some(48)) => OID_P384,
            _ => {
                return Err(CertError::BadKey {
                    what: what.to_owned(),
                    reason: "SEC1 EC key without a recognisable curve".to_owned(),
                })
            }
        };
        let algorithm = rsa::pkcs8::spki::AlgorithmIdentifier {
            oid: OID_EC,
            parameters: Some(rsa::pkcs8::der::asn1::AnyRef::from(&curve)),
        };
        let info = rsa::pkcs8::PrivateKeyInfo::new(algorithm, der);
        let pkcs8 = Zeroizing::new(info.to_der().map_err(|e| bad_key(what, e))?);
        Self::from_pkcs8(what, &pkcs8)
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The key as PKCS#8 DER (secret).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key as PKCS#8 PEM (secret).
    pub fn pkcs8_pem(&self) -> Secret {
        let block = ::pem::Pem::new("PRIVATE KEY", self.pkcs8.to_vec());
        Secret::new(::pem::encode_config(
            &block,
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        ))
    }

    /// The public half, derived from the private key (for EC keys ring also checks that the
    /// embedded public point belongs to the scalar).
    pub fn public_key(&self, what: &str) -> Result<PublicKeyId, CertError> {
        let rng = ring::rand::SystemRandom::new();
        let ec = |alg, curve| {
            ring::signature::EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8, &rng)
                .map(|kp| PublicKeyId::Ec {
                    curve,
                    point: kp.public_key().as_ref().to_vec(),
                })
                .map_err(|e| bad_key(what, e))
        };
        match self.algorithm {
            KeyAlgorithm::Rsa => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(&self.pkcs8)
                    .map_err(|e| bad_key(what, e))?;
                Ok(PublicKeyId::Rsa {
                    n: key.n().to_bytes_be(),
                    e: key.e().to_bytes_be(),
                })
            }
            KeyAlgorithm::EcdsaP256 => ec(
                &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                Curve::P256,
            ),
            KeyAlgorithm::EcdsaP384 => ec(
                &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                Curve::P384,
            ),
            KeyAlgorithm::Ed25519 => {
                ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
                    .map(|kp| PublicKeyId::Ed25519(kp.public_key().as_ref().to_vec()))
                    .map_err(|e| bad_key(what, e))
            }
        }
    }

    /// Whether this key is the private half of the certificate's public key.
    pub fn matches_certificate_der(&self, what: &str, cert_der: &[u8]) -> Result<bool, CertError> {
        Ok(self.public_key(what)? == PublicKeyId::from_certificate_der(what, cert_der)?)
    }

    /// The key as an rcgen key pair, for signing CSRs and test certificates.
    pub fn to_rcgen(&self, what: &str) -> Result<rcgen::KeyPair, CertError> {
        // rcgen's auto-detection tries Ed25519, P-256, P-384, then RSA with SHA-256, which is
        // exactly the mapping we want; the algorithm is already known to be one of those.
        rcgen::KeyPair::try_from(self.pkcs8.as_slice()).map_err(|e| bad_key(what, e))
    }
}

fn bad_key(what: &str, error: impl fmt::Display) -> CertError {
    // Parser errors from der/pkcs8/ring name a structure or position, never key bytes.
    CertError::BadKey {
        what: what.to_owned(),
        reason: error.to_string(),
    }
}

/// Splits a DER SEQUENCE into (tag, value) pairs, one level deep. Only used on SEC1 keys,
/// whose fields all have single-byte tags.
fn der_sequence_fields(der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (tag, body, rest) = der_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut fields = Vec::new();
    let mut input = body;
    while !input.is_empty() {
        let (tag, value, rest) = der_tlv(input)?;
        fields.push((tag, value));
        input = rest;
    }
    Some(fields)
}

fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Whether the private key in `key_pem` belongs to the certificate `cert_der`.
pub fn key_matches_certificate(
    what: &str,
    key_pem: &Secret,
    cert_der: &[u8],
) -> Result<bool, CertError> {
    PrivateKey::from_pem(what, key_pem.expose())?.matches_certificate_der(what, cert_der)
}

/// A DER PKCS#10 certificate signing request for `names` (subjectAltName DNS names; the
/// first one is also the CN), signed with `key`.
pub fn csr_der(key: &Secret, names: &[String]) -> Result<Vec<u8>, CertError> {
    let failed = |reason: String| CertError::Csr { reason };
    let first = names
        .first()
        .ok_or_else(|| failed("no names to request".to_owned()))?;
    let key = PrivateKey::from_pem("CSR key", key.expose())?.to_rcgen("CSR key")?;
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| failed(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, first.as_str());
    let csr = params
        .serialize_request(&key)
        .map_err(|e| failed(e.to_string()))?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;
    use std::sync::OnceLock;

    /// One RSA 2048 key per test run: generating RSA keys is slow.
    pub(crate) fn rsa2048() -> &'static Secret {
        static KEY: OnceLock<Secret> = OnceLock::new();
        KEY.get_or_init(|| KeyType::Rsa2048.generate().unwrap())
    }

    fn der_of(key: &Secret) -> Vec<u8> {
        let cert = testing::certificate_for_key(key, &["a.example.com"]);
        ::pem::parse(&cert).unwrap().into_contents()
    }

    #[test]
    fn key_type_names_round_trip_through_serde_and_from_str() {
        for t in KeyType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<KeyType>(&json).unwrap(), t);
            assert_eq!(t.as_str().parse::<KeyType>().unwrap(), t);
        }
        assert_eq!(KeyType::default(), KeyType::EcdsaP256);
        let err = "rsa-1024".parse::<KeyType>().unwrap_err();
        assert!(err.contains("rsa-2048"), "{err}");
    }

    #[test]
    fn generated_keys_have_the_requested_algorithm() {
        for (t, alg) in [
            (KeyType::EcdsaP256, KeyAlgorithm::EcdsaP256),
            (KeyType::EcdsaP384, KeyAlgorithm::EcdsaP384),
        ] {
            let key = t.generate().unwrap();
            assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_eq!(
                PrivateKey::from_pem("k", key.expose()).unwrap().algorithm(),
                alg
            );
        }
        let key = PrivateKey::from_pem("k", rsa2048().expose()).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Rsa);
        assert_eq!(key.public_key("k").unwrap().rsa_bits(), Some(2048));
    }

    #[test]
    fn large_rsa_keys_generate_with_their_size() {
        for (t, bits) in [(KeyType::Rsa3072, 3072), (KeyType::Rsa4096, 4096)] {
            let key = PrivateKey::from_pem("k", t.generate().unwrap().expose()).unwrap();
            assert_eq!(key.public_key("k").unwrap().rsa_bits(), Some(bits));
            let der = der_of(&key.pkcs8_pem());
            assert!(key.matches_certificate_der("k", &der).unwrap());
        }
    }

    #[test]
    fn every_key_type_matches_its_own_certificate_and_not_another() {
        let keys = [
            KeyType::EcdsaP256.generate().unwrap(),
            KeyType::EcdsaP384.generate().unwrap(),
            rsa2048().clone(),
            testing::ed25519_key(),
            // Same algorithm as the first, different key: catches comparing only the curve.
            KeyType::EcdsaP256.generate().unwrap(),
        ];
        let certs: Vec<Vec<u8>> = keys.iter().map(der_of).collect();
        for (i, key) in keys.iter().enumerate() {
            for (j, cert) in certs.iter().enumerate() {
                assert_eq!(
                    key_matches_certificate("k", key, cert).unwrap(),
                    i == j,
                    "key {i} vs certificate {j}"
                );
            }
        }
    }

    #[test]
    fn pkcs1_and_sec1_keys_read_and_match() {
        // PKCS#1 from the rsa crate's own encoder.
        let rsa_key = rsa::RsaPrivateKey::from_pkcs8_pem(rsa2048().expose()).unwrap();
        let pkcs1 = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&rsa_key, LineEnding::LF)
            .unwrap()
            .to_string();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let cert = der_of(rsa2048());
        assert!(key_matches_certificate("k", &Secret::new(pkcs1), &cert).unwrap());

        // SEC1: the ECPrivateKey inside a PKCS#8 key, relabelled.
        for t in [KeyType::EcdsaP256, KeyType::EcdsaP384] {
            let key = t.generate().unwrap();
            let sec1 = testing::sec1_pem(&key);
            assert!(sec1.expose().starts_with("-----BEGIN EC PRIVATE KEY-----"));
            let cert = der_of(&key);
            assert!(key_matches_certificate("k", &sec1, &cert).unwrap());
            // Without the optional curve parameters the scalar length names the curve.
            let block = ::pem::parse(key.expose()).unwrap();
            let inner = rsa::pkcs8::PrivateKeyInfo::try_from(block.contents())
                .unwrap()
                .private_key
                .to_vec();
            let bare = Secret::new(::pem::encode(&::pem::Pem::new("EC PRIVATE KEY", inner)));
            assert!(key_matches_certificate("k", &bare, &cert).unwrap());
            let parsed = PrivateKey::from_pem("k", sec1.expose()).unwrap();
            assert_eq!(
                parsed.algorithm(),
                if t == KeyType::EcdsaP256 {
                    KeyAlgorithm::EcdsaP256
                } else {
                    KeyAlgorithm::EcdsaP384
                }
            );
        }
    }

    #[test]
    fn corrupt_keys_are_errors_naming_the_input_without_key_material() {
        let block = ::pem::Pem::new("PRIVATE KEY", vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let text = ::pem::encode(&block);
        let err = PrivateKey::from_pem("/etc/k.pem", &text).unwrap_err();
        assert!(matches!(err, CertError::BadKey { .. }), "{err:?}");
        assert!(err.to_string().starts_with("/etc/k.pem: "), "{err}");
    }

    #[test]
    fn csr_carries_the_names_and_verifies() {
        for key in [KeyType::EcdsaP256.generate().unwrap(), rsa2048().clone()] {
            let names = vec!["a.example.com".to_owned(), "*.b.example.com".to_owned()];
            let der = csr_der(&key, &names).unwrap();
            let (_, csr) =
                x509_parser::certification_request::X509CertificationRequest::from_der(&der)
                    .unwrap();
            csr.verify_signature().unwrap();
            let mut found = Vec::new();
            for ext in csr.requested_extensions().into_iter().flatten() {
                if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                    for name in &san.general_names {
                        if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                            found.push(n.to_string());
                        }
                    }
                }
            }
            assert_eq!(found, names);
        }
        assert!(matches!(
            csr_der(&KeyType::EcdsaP256.generate().unwrap(), &[]),
            Err(CertError::Csr { .. })
        ));
    }

    #[test]
    fn debug_of_a_private_key_is_redacted() {
        let key =
            PrivateKey::from_pem("k", KeyType::EcdsaP256.generate().unwrap().expose()).unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.contains("REDACTED") && shown.contains("EcdsaP256"),
            "{shown}"
        );
    }
}
