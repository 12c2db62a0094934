//! Pre-deploy checks: the last gate before a certificate reaches a target. The checks run as
//! an ordered chain and stop at the first violation, whose reason is one of a fixed set (it
//! becomes a metric label and a ledger status). The current time is an argument, never read
//! from a clock here, so every verdict is reproducible in tests.

use super::bundle::CertificateBundle;
use super::key::{Curve, PrivateKey, PublicKeyId};
use super::names;
use super::pem::{certificate_ders, issued_by};
use std::fmt;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Smallest RSA modulus accepted (NIST SP 800-131A; CAs have refused less since 2013).
pub const MIN_RSA_BITS: usize = 2048;

/// Why a certificate must not be deployed. The set is closed: it is used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationReason {
    Expired,
    NotYetValid,
    KeyMismatch,
    NameMismatch,
    ChainBroken,
    WeakKey,
    ExpiresTooSoon,
}

impl ViolationReason {
    /// Check order: the first failing check is the one reported.
    pub const ALL: [ViolationReason; 7] = [
        ViolationReason::Expired,
        ViolationReason::NotYetValid,
        ViolationReason::KeyMismatch,
        ViolationReason::NameMismatch,
        ViolationReason::ChainBroken,
        ViolationReason::WeakKey,
        ViolationReason::ExpiresTooSoon,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ViolationReason::Expired => "expired",
            ViolationReason::NotYetValid => "not_yet_valid",
            ViolationReason::KeyMismatch => "key_mismatch",
            ViolationReason::NameMismatch => "name_mismatch",
            ViolationReason::ChainBroken => "chain_broken",
            ViolationReason::WeakKey => "weak_key",
            ViolationReason::ExpiresTooSoon => "expires_too_soon",
        }
    }
}

impl fmt::Display for ViolationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first failed check: a bounded reason plus a sentence for humans (never key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Violation {
    pub reason: ViolationReason,
    pub detail: String,
}

impl Violation {
    fn new(reason: ViolationReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Runs the checks in [`ViolationReason::ALL`] order against the bundle for the domains
/// `names`, at time `now`, requiring at least `min_remaining` validity left.
pub fn check_predeploy(
    bundle: &CertificateBundle,
    names: &[String],
    now: OffsetDateTime,
    min_remaining: Duration,
) -> Result<(), Violation> {
    use ViolationReason as R;
    let info = &bundle.info;
    if now >= info.not_after {
        return Err(Violation::new(
            R::Expired,
            format!("the certificate expired at {}", info.not_after),
        ));
    }
    if now < info.not_before {
        return Err(Violation::new(
            R::NotYetValid,
            format!("the certificate is valid only from {}", info.not_before),
        ));
    }

    let ders = certificate_ders("leaf", &bundle.leaf_pem)
        .map_err(|e| Violation::new(R::ChainBroken, format!("unreadable leaf: {e}")))?;
    let leaf_der = ders
        .first()
        .ok_or_else(|| Violation::new(R::ChainBroken, "no leaf certificate"))?;
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| Violation::new(R::ChainBroken, format!("unreadable leaf: {e}")))?;

    let key = PrivateKey::from_pem("key", bundle.key_pem.expose())
        .map_err(|e| Violation::new(R::KeyMismatch, format!("unusable private key: {e}")))?;
    let key_public = key
        .public_key("key")
        .map_err(|e| Violation::new(R::KeyMismatch, format!("unusable private key: {e}")))?;
    let cert_public = PublicKeyId::from_spki(leaf.public_key());
    if key_public != cert_public {
        return Err(Violation::new(
            R::KeyMismatch,
            format!(
                "the private key ({}) does not belong to the certificate ({})",
                key_public.describe(),
                cert_public.describe()
            ),
        ));
    }

    let san = san_dns_names(&leaf);
    let missing = names::uncovered(&san, names);
    if !missing.is_empty() {
        return Err(Violation::new(
            R::NameMismatch,
            format!(
                "not covered by the certificate's names [{}]: {}",
                san.join(", "),
                missing.join(", ")
            ),
        ));
    }

    check_chain(&leaf, &bundle.chain_pem, now)?;

    match &cert_public {
        PublicKeyId::Rsa { .. } => {
            let bits = cert_public.rsa_bits().unwrap_or(0);
            if bits < MIN_RSA_BITS {
                return Err(Violation::new(
                    R::WeakKey,
                    format!("RSA {bits} is below the {MIN_RSA_BITS}-bit minimum"),
                ));
            }
        }
        PublicKeyId::Ec {
            curve: Curve::Other(_),
            ..
        }
        | PublicKeyId::Other(_) => {
            return Err(Violation::new(
                R::WeakKey,
                format!("{} is not an accepted key type", cert_public.describe()),
            ));
        }
        PublicKeyId::Ec { .. } | PublicKeyId::Ed25519(_) => {}
    }

    let remaining = info.not_after - now;
    if remaining < min_remaining {
        return Err(Violation::new(
            R::ExpiresTooSoon,
            format!(
                "the certificate expires at {}, {} hours from now; at least {} hours are required",
                info.not_after,
                remaining.whole_hours(),
                min_remaining.whole_hours()
            ),
        ));
    }
    Ok(())
}

/// Each certificate must be issued (name and signature) by the next, and every intermediate
/// must be valid now. The chain may stop below the root, as servers usually send it.
fn check_chain(
    leaf: &X509Certificate<'_>,
    chain_pem: &str,
    now: OffsetDateTime,
) -> Result<(), Violation> {
    use ViolationReason as R;
    let broken = |detail: String| Violation::new(R::ChainBroken, detail);
    let ders = certificate_ders("chain", chain_pem)
        .map_err(|e| broken(format!("unreadable chain: {e}")))?;
    let chain = ders
        .iter()
        .map(|der| X509Certificate::from_der(der).map(|(_, cert)| cert))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| broken(format!("unreadable chain certificate: {e}")))?;
    let mut child = leaf;
    for parent in &chain {
        if !issued_by(child, parent) {
            return Err(broken(format!(
                "{:?} is not issued by the next certificate in the chain, {:?}",
                child.subject().to_string(),
                parent.subject().to_string()
            )));
        }
        let validity = parent.validity();
        if now < validity.not_before.to_datetime() || now >= validity.not_after.to_datetime() {
            return Err(broken(format!(
                "chain certificate {:?} is outside its validity ({} to {})",
                parent.subject().to_string(),
                validity.not_before.to_datetime(),
                validity.not_after.to_datetime()
            )));
        }
        child = parent;
    }
    Ok(())
}

/// DNS names from subjectAltName only: clients have ignored the CN since RFC 6125.
fn san_dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                out.push(names::normalize(dns));
            }
        }
    }
    out
}
