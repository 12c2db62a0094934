//! The local CA source: an internal CA (rcgen) for internal endpoints such as RDS private
//! connection strings, and the offline demo. Its root is loaded from files when configured,
//! else generated once and kept in the store, so every restart signs with the same root.
//! It issues short-lived leaves (the configured `leaf_lifetime`) signed directly by the root;
//! the chain handed back is the leaf alone and the root is published via [`LocalCa::root_pem`].
//! Root files are read only if they are regular files under [`crate::cert::MAX_INPUT_BYTES`],
//! and the daemon opens the CA through [`LocalCa::load`], on the blocking pool.

use crate::config::{KeyAlgorithm, LocalCaConfig};
use crate::error::ErrorClass;
use crate::secret::Secret;
use crate::source::{
    generate_key, key_pair, CertificateRequest, Issued, Source, SourceError, SourceStore,
};
use async_trait::async_trait;
use rand::RngCore;
use std::path::PathBuf;
use std::time::Duration;
use time::OffsetDateTime;

const ORIGIN: &str = "local_ca";
/// A generated root lasts ten years; leaves are short-lived, so the root outlives them all.
const ROOT_LIFETIME_DAYS: i64 = 3650;

/// What a local CA needs, resolved from `[local_ca.NAME]`.
#[derive(Debug, Clone)]
pub struct LocalCaSettings {
    pub name: String,
    pub common_name: String,
    pub leaf_lifetime: Duration,
    /// Root certificate and key files; `None` means generated and kept in the store.
    pub root_files: Option<(PathBuf, PathBuf)>,
}

impl LocalCaSettings {
    pub fn new(name: impl Into<String>, leaf_lifetime: Duration) -> Self {
        let name = name.into();
        Self {
            common_name: format!("certkeeper local CA {name}"),
            name,
            leaf_lifetime,
            root_files: None,
        }
    }

    pub fn from_config(name: &str, config: &LocalCaConfig) -> Result<Self, SourceError> {
        let mut settings = Self::new(name, config.leaf_lifetime);
        if let Some(common_name) = &config.common_name {
            settings.common_name = common_name.clone();
        }
        settings.root_files = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        Ok(settings)
    }
}

/// A ready local CA.
pub struct LocalCa {
    settings: LocalCaSettings,
    root_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn failure(operation: &str, code: &str, message: impl Into<String>) -> SourceError {
    SourceError::new(ORIGIN, operation, ErrorClass::Invalid, code, message)
}

impl LocalCa {
    /// [`open`](Self::open) on the blocking pool: it reads files and the store, and may
    /// generate a key.
    pub async fn load(
        settings: LocalCaSettings,
        store: std::sync::Arc<dyn SourceStore>,
    ) -> Result<Self, SourceError> {
        tokio::task::spawn_blocking(move || Self::open(settings, store.as_ref()))
            .await
            .map_err(|error| failure("load root", "TaskFailed", error.to_string()))?
    }

    /// Loads the root from files or the store, generating (and storing) it the first time.
    pub fn open(settings: LocalCaSettings, store: &dyn SourceStore) -> Result<Self, SourceError> {
        let (root_pem, key_pem) = match &settings.root_files {
            Some((cert, key)) => {
                // Errors from the reader name the file.
                let read = |path: &PathBuf| {
                    crate::fsutil::read_regular(path, crate::cert::MAX_INPUT_BYTES as u64)
                        .map_err(|error| failure("load root", "Read", error.to_string()))
                        .and_then(|bytes| {
                            String::from_utf8(bytes).map_err(|_| {
                                failure(
                                    "load root",
                                    "Read",
                                    format!("{}: not UTF-8 text (PEM expected)", path.display()),
                                )
                            })
                        })
                };
                (read(cert)?, Secret::new(read(key)?))
            }
            None => match store.load_local_ca(&settings.name)? {
                Some(stored) => stored,
                None => {
                    let (cert, key) = generate_root(&settings.common_name)?;
                    store.save_local_ca(&settings.name, &cert, &key)?;
                    tracing::info!(ca = %settings.name, "generated local CA root");
                    (cert, key)
                }
            },
        };
        let issuer = issuer_from_pem(&root_pem, &key_pem)?;
        Ok(Self {
            settings,
            root_pem,
            issuer,
        })
    }

    /// The root certificate, for clients to trust.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Issues a leaf for `names`, valid from a minute ago (clock skew) for the configured
    /// lifetime.
    pub fn issue(
        &self,
        names: &[String],
        key: KeyAlgorithm,
        now: OffsetDateTime,
    ) -> Result<Issued, SourceError> {
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SerialNumber,
        };
        let leaf_key_pem = generate_key(ORIGIN, key)?;
        let leaf_key = key_pair(ORIGIN, &leaf_key_pem)?;
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(|error| failure("issue", "BadName", error.to_string()))?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.clone());
        }
        let lifetime = time::Duration::try_from(self.settings.leaf_lifetime)
            .map_err(|error| failure("issue", "Lifetime", error.to_string()))?;
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + lifetime;
        let mut serial = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut serial);
        serial[0] &= 0x7f; // positive
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&leaf_key, &self.issuer)
            .map_err(|error| failure("issue", "Sign", error.to_string()))?;
        Ok(Issued {
            chain_pem: cert.pem(),
            key_pem: leaf_key_pem,
            renewal: None,
        })
    }
}

#[async_trait]
impl Source for LocalCa {
    async fn obtain(&self, request: &CertificateRequest) -> Result<Issued, SourceError> {
        self.issue(&request.domains, request.key, OffsetDateTime::now_utc())
    }
}

fn generate_root(common_name: &str) -> Result<(String, Secret), SourceError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let key = key_pair(ORIGIN, &generate_key(ORIGIN, KeyAlgorithm::EcdsaP256)?)?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|error| failure("generate root", "Params", error.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name.to_owned());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(ROOT_LIFETIME_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|error| failure("generate root", "Sign", error.to_string()))?;
    Ok((cert.pem(), Secret::new(key.serialize_pem())))
}

/// Rebuilds an rcgen issuer from a root certificate and key: the subject (with its string
/// types, so leaves name the issuer byte for byte) and the subject key identifier (so the
/// leaves' AKI matches whatever method made the root's SKI).
fn issuer_from_pem(
    root_pem: &str,
    key_pem: &Secret,
) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, SourceError> {
    use rcgen::{DistinguishedName, DnType, DnValue, KeyIdMethod, KeyUsagePurpose};
    use x509_parser::prelude::*;
    let key = rcgen::KeyPair::from_pem(key_pem.expose())
        .map_err(|error| failure("load root", "BadKey", format!("root key: {error}")))?;
    let block = ::pem::parse(root_pem)
        .map_err(|error| failure("load root", "BadCertificate", error.to_string()))?;
    let (_, cert) = X509Certificate::from_der(block.contents())
        .map_err(|error| failure("load root", "BadCertificate", error.to_string()))?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != cert.public_key().raw {
        return Err(failure(
            "load root",
            "KeyMismatch",
            "the root key does not belong to the root certificate",
        ));
    }
    let mut dn = DistinguishedName::new();
    for attribute in cert.subject().iter_attributes() {
        let oid = attribute.attr_type();
        let dn_type = match oid.to_id_string().as_str() {
            "2.5.4.3" => DnType::CommonName,
            "2.5.4.10" => DnType::OrganizationName,
            "2.5.4.11" => DnType::OrganizationalUnitName,
            "2.5.4.6" => DnType::CountryName,
            "2.5.4.8" => DnType::StateOrProvinceName,
            "2.5.4.7" => DnType::LocalityName,
            _ => match oid.iter() {
                Some(arcs) => DnType::CustomDnType(arcs.collect()),
                None => continue,
            },
        };
        let value = attribute.attr_value();
        let text = attribute.as_str().unwrap_or_default().to_owned();
        let dn_value = if value.tag() == x509_parser::der_parser::asn1_rs::Tag::PrintableString {
            rcgen::string::PrintableString::try_from(text.clone())
                .map(DnValue::PrintableString)
                .unwrap_or(DnValue::Utf8String(text))
        } else {
            DnValue::Utf8String(text)
        };
        dn.push(dn_type, dn_value);
    }
    let ski = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = dn;
    if let Some(ski) = ski {
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    }
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(rcgen::Issuer::new(params, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemoryStore;
    use x509_parser::prelude::*;

    fn verify(issued: &Issued, root_pem: &str) {
        let leaf = ::pem::parse(&issued.chain_pem).unwrap();
        let root = ::pem::parse(root_pem).unwrap();
        let (_, leaf) = X509Certificate::from_der(leaf.contents()).unwrap();
        let (_, root) = X509Certificate::from_der(root.contents()).unwrap();
        leaf.verify_signature(Some(root.public_key())).unwrap();
        assert_eq!(leaf.issuer(), root.subject());
        let aki = leaf
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        let ski = root
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, ski);
    }

    #[test]
    fn the_root_is_generated_once_and_reused() {
        let store = MemoryStore::new();
        let settings = LocalCaSettings::new("internal", Duration::from_secs(3 * 86400));
        let first = LocalCa::open(settings.clone(), &store).unwrap();
        let second = LocalCa::open(settings, &store).unwrap();
        assert_eq!(first.root_pem(), second.root_pem());

        let now = OffsetDateTime::now_utc();
        let names = vec![
            "db.internal.test".to_string(),
            "rds.internal.test".to_string(),
        ];
        let issued = second.issue(&names, KeyAlgorithm::EcdsaP384, now).unwrap();
        verify(&issued, first.root_pem());
        let bundle = issued.bundle().unwrap();
        assert_eq!(bundle.info.names, names);
        let lifetime = bundle.info.not_after - now;
        assert!(lifetime <= ::time::Duration::days(3) && lifetime > ::time::Duration::days(2));
    }

    #[test]
    fn a_root_from_files_signs_with_its_own_name_and_key_id() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example Ops");
        params
            .distinguished_name
            .push(DnType::CommonName, "Ops Root");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![7; 20]);
        let root = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
        std::fs::write(dir.path().join("root.key"), key.serialize_pem()).unwrap();
        let mut settings = LocalCaSettings::new("ops", Duration::from_secs(3600));
        settings.root_files = Some((dir.path().join("root.pem"), dir.path().join("root.key")));
        let store = MemoryStore::new();
        let ca = LocalCa::open(settings, &store).unwrap();
        assert!(
            store.load_local_ca("ops").unwrap().is_none(),
            "files are not copied"
        );
        let issued = ca
            .issue(
                &["api.internal.test".into()],
                KeyAlgorithm::EcdsaP256,
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        verify(&issued, &root.pem());
    }

    #[test]
    fn a_mismatched_root_key_is_refused() {
        let store = MemoryStore::new();
        let other = rcgen::KeyPair::generate().unwrap();
        let (cert, _) = generate_root("x").unwrap();
        store
            .save_local_ca("bad", &cert, &Secret::new(other.serialize_pem()))
            .unwrap();
        let error = LocalCa::open(LocalCaSettings::new("bad", Duration::from_secs(60)), &store)
            .err()
            .unwrap();
        assert_eq!(error.code, "KeyMismatch");
    }

    /// A FIFO as the root key: `load` answers at once with an error naming it.
    #[tokio::test]
    async fn a_fifo_as_a_root_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = generate_root("fifo").unwrap();
        std::fs::write(dir.path().join("root.pem"), cert).unwrap();
        let key = dir.path().join("root.key");
        crate::fsutil::testing::make_fifo(&key);
        let mut settings = LocalCaSettings::new("ops", Duration::from_secs(3600));
        settings.root_files = Some((dir.path().join("root.pem"), key.clone()));
        let store: std::sync::Arc<dyn SourceStore> = std::sync::Arc::new(MemoryStore::new());
        let error = tokio::time::timeout(Duration::from_secs(30), LocalCa::load(settings, store))
            .await
            .expect("load never waits on a FIFO")
            .err()
            .unwrap();
        assert!(
            error.message.contains(&key.display().to_string()) && error.message.contains("a FIFO"),
            "{error}"
        );
    }
}
