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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing::{self, TestChain};
    use crate::cert::pem::parse_bundle;
    use crate::secret::Secret;

    const DAY: Duration = Duration::days(1);

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// A leaf valid from `now - 10d` to `now + 60d` for www.example.com and *.api.example.com.
    fn setup() -> (OffsetDateTime, TestChain, CertificateBundle) {
        let now = OffsetDateTime::now_utc();
        let chain = TestChain::new(
            &["www.example.com", "*.api.example.com"],
            now - 10 * DAY,
            now + 60 * DAY,
        );
        let input = format!("{}{}", chain.leaf, chain.intermediate);
        let bundle = parse_bundle("t", &input, chain.key.expose()).unwrap();
        (now, chain, bundle)
    }

    fn reason(result: Result<(), Violation>) -> ViolationReason {
        result.unwrap_err().reason
    }

    #[test]
    fn a_good_bundle_passes() {
        let (now, _, bundle) = setup();
        let wanted = names(&["www.example.com", "v1.api.example.com"]);
        check_predeploy(&bundle, &wanted, now, 14 * DAY).unwrap();
        check_predeploy(&bundle, &[], now, Duration::ZERO).unwrap();
    }

    #[test]
    fn expired_and_not_yet_valid_use_the_given_time() {
        let (now, _, bundle) = setup();
        let wanted = names(&["www.example.com"]);
        let late = check_predeploy(&bundle, &wanted, now + 61 * DAY, DAY).unwrap_err();
        assert_eq!(late.reason, ViolationReason::Expired);
        assert!(late.to_string().starts_with("expired: "), "{late}");
        assert_eq!(
            reason(check_predeploy(
                &bundle,
                &wanted,
                bundle.info.not_after,
                Duration::ZERO
            )),
            ViolationReason::Expired
        );
        assert_eq!(
            reason(check_predeploy(&bundle, &wanted, now - 11 * DAY, DAY)),
            ViolationReason::NotYetValid
        );
    }

    #[test]
    fn a_key_from_another_certificate_is_a_mismatch() {
        let (now, _, bundle) = setup();
        for other in [
            crate::cert::KeyType::EcdsaP256.generate().unwrap(),
            testing::ed25519_key(),
        ] {
            let mut wrong = bundle.clone();
            wrong.key_pem = other;
            let v = check_predeploy(&wrong, &[], now, DAY).unwrap_err();
            assert_eq!(v.reason, ViolationReason::KeyMismatch);
            assert!(!v.detail.contains("PRIVATE"), "{v}");
        }
        let mut garbage = bundle.clone();
        garbage.key_pem = Secret::new("not a key");
        assert_eq!(
            reason(check_predeploy(&garbage, &[], now, DAY)),
            ViolationReason::KeyMismatch
        );
    }

    #[test]
    fn names_follow_the_wildcard_rules() {
        let (now, _, bundle) = setup();
        for bad in [
            "example.com",
            "api.example.com",
            "a.b.api.example.com",
            "mail.example.com",
        ] {
            let v =
                check_predeploy(&bundle, &names(&["www.example.com", bad]), now, DAY).unwrap_err();
            assert_eq!(v.reason, ViolationReason::NameMismatch, "{bad}");
            assert!(v.detail.ends_with(bad), "{v}");
        }
        let ok = names(&["WWW.EXAMPLE.COM.", "x.API.example.com"]);
        check_predeploy(&bundle, &ok, now, DAY).unwrap();
    }

    #[test]
    fn a_chain_from_another_ca_is_broken() {
        let (now, _, bundle) = setup();
        let other = TestChain::named("other", &["x.org"], now - DAY, now + DAY);
        let broken = CertificateBundle::from_pem(
            &bundle.leaf_pem,
            &other.intermediate,
            bundle.key_pem.clone(),
        )
        .unwrap();
        let v = check_predeploy(&broken, &[], now, DAY).unwrap_err();
        assert_eq!(v.reason, ViolationReason::ChainBroken);
        assert!(v.detail.contains("CN=other intermediate"), "{v}");
        // Intermediate and root in the wrong order (bundles built without parse_bundle).
        let (_, chain, _) = setup();
        let swapped = CertificateBundle::from_pem(
            &chain.leaf,
            &format!("{}{}", chain.root, chain.intermediate),
            chain.key.clone(),
        )
        .unwrap();
        assert_eq!(
            reason(check_predeploy(&swapped, &[], now, DAY)),
            ViolationReason::ChainBroken
        );
        let full = CertificateBundle::from_pem(
            &chain.leaf,
            &format!("{}{}", chain.intermediate, chain.root),
            chain.key.clone(),
        )
        .unwrap();
        check_predeploy(&full, &[], now, DAY).unwrap();
    }

    #[test]
    fn rsa_below_2048_bits_is_weak() {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        /// rcgen certifies any public key it is shown as PKCS#1 bytes plus an algorithm.
        struct RsaPublic(Vec<u8>);
        impl rcgen::PublicKeyData for RsaPublic {
            fn der_bytes(&self) -> &[u8] {
                &self.0
            }
            fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
                &rcgen::PKCS_RSA_SHA256
            }
        }
        // ring refuses to sign with RSA 1024, so a P-256 CA certifies the 1024-bit key.
        let now = OffsetDateTime::now_utc();
        let weak = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let public = RsaPublic(
            weak.to_public_key()
                .to_pkcs1_der()
                .unwrap()
                .as_bytes()
                .to_vec(),
        );
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut params = rcgen::CertificateParams::new(vec!["w.example".to_owned()]).unwrap();
        params.not_before = now - DAY;
        params.not_after = now + 30 * DAY;
        let leaf = params.signed_by(&public, &issuer).unwrap();
        let key = Secret::new(weak.to_pkcs8_pem(LineEnding::LF).unwrap().as_str());
        let bundle =
            parse_bundle("t", &format!("{}{}", leaf.pem(), ca.pem()), key.expose()).unwrap();
        let v = check_predeploy(&bundle, &names(&["w.example"]), now, DAY).unwrap_err();
        assert_eq!(v.reason, ViolationReason::WeakKey);
        assert!(v.detail.contains("RSA 1024"), "{v}");
    }

    #[test]
    fn too_little_remaining_validity_is_reported_last() {
        let (now, _, bundle) = setup();
        let v = check_predeploy(&bundle, &[], now, 90 * DAY).unwrap_err();
        assert_eq!(v.reason, ViolationReason::ExpiresTooSoon);
        check_predeploy(&bundle, &[], now, 59 * DAY).unwrap();
        assert_eq!(
            reason(check_predeploy(&bundle, &[], now + 50 * DAY, 14 * DAY)),
            ViolationReason::ExpiresTooSoon
        );
    }

    #[test]
    fn the_first_violation_in_order_wins() {
        let (now, _, bundle) = setup();
        let mut bad = bundle.clone();
        bad.key_pem = crate::cert::KeyType::EcdsaP256.generate().unwrap();
        let wrong_names = names(&["nope.example.org"]);
        // Expired beats key mismatch and name mismatch.
        assert_eq!(
            reason(check_predeploy(&bad, &wrong_names, now + 100 * DAY, DAY)),
            ViolationReason::Expired
        );
        // Key mismatch beats name mismatch.
        assert_eq!(
            reason(check_predeploy(&bad, &wrong_names, now, DAY)),
            ViolationReason::KeyMismatch
        );
        // Name mismatch beats expires too soon.
        assert_eq!(
            reason(check_predeploy(&bundle, &wrong_names, now, 365 * DAY)),
            ViolationReason::NameMismatch
        );
    }

    #[test]
    fn reasons_have_stable_snake_case_names() {
        let shown: Vec<&str> = ViolationReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            shown,
            [
                "expired",
                "not_yet_valid",
                "key_mismatch",
                "name_mismatch",
                "chain_broken",
                "weak_key",
                "expires_too_soon"
            ]
        );
        for r in ViolationReason::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }
}
