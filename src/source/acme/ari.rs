//! ACME Renewal Information (RFC 9773). The certificate identifier is
//! `base64url(AKI keyIdentifier) "." base64url(serial)`; the CA's suggested window is fetched,
//! a uniformly random point inside it is chosen once and persisted (a restart must not draw
//! again), and the window is fetched again only after the CA's Retry-After. When the CA
//! moves the window, a new point is drawn. Without ARI the engine falls back on lifetime.

use super::errors::{classify, ORIGIN};
use crate::error::ErrorClass;
use crate::source::{RenewalPoint, SourceError, SourceStore};
use base64::Engine as _;
use instant_acme::{Account, CertificateIdentifier};
use rand::Rng;
use std::borrow::Cow;
use std::time::Duration;
use time::OffsetDateTime;

/// Retry-After is clamped to this range (RFC 9773 §4.3.2 lets clients bound it).
const MIN_POLL: Duration = Duration::from_secs(60);
const MAX_POLL: Duration = Duration::from_secs(24 * 3600);

/// The ARI identifier of a PEM certificate.
pub fn cert_id(leaf_pem: &str) -> Result<CertificateIdentifier<'static>, SourceError> {
    use x509_parser::prelude::*;
    let bad = |reason: String| {
        SourceError::new(
            ORIGIN,
            "ari identifier",
            ErrorClass::Invalid,
            "BadCertificate",
            reason,
        )
    };
    let block = ::pem::parse(leaf_pem).map_err(|error| bad(error.to_string()))?;
    let (_, cert) =
        X509Certificate::from_der(block.contents()).map_err(|error| bad(error.to_string()))?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
        .ok_or_else(|| bad("the certificate has no Authority Key Identifier".into()))?;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(CertificateIdentifier {
        authority_key_identifier: Cow::Owned(engine.encode(aki)),
        serial: Cow::Owned(engine.encode(cert.tbs_certificate.raw_serial())),
    })
}

/// A uniformly random instant in `[start, end]`, truncated to whole seconds.
pub fn choose_point(
    start: OffsetDateTime,
    end: OffsetDateTime,
    rng: &mut impl Rng,
) -> OffsetDateTime {
    let span = (end - start).whole_seconds().max(0);
    let offset = if span == 0 {
        0
    } else {
        rng.gen_range(0..=span)
    };
    let point = start + time::Duration::seconds(offset);
    point.replace_nanosecond(0).unwrap_or(point)
}

/// Brings the persisted renewal point of `certificate` up to date: reuses it while the CA's
/// Retry-After has not passed, keeps the chosen instant while the window is unchanged, and
/// draws anew when the window moved. `Ok(None)` when the CA offers no ARI.
pub(crate) async fn refresh(
    account: &Account,
    store: &dyn SourceStore,
    certificate: &str,
    leaf_pem: &str,
    now: OffsetDateTime,
) -> Result<Option<RenewalPoint>, SourceError> {
    let id = cert_id(leaf_pem)?;
    let id_text = id.to_string();
    let stored = store
        .load_renewal_point(certificate)?
        .filter(|point| point.cert_id == id_text);
    if let Some(point) = &stored {
        if now < point.next_poll {
            return Ok(stored);
        }
    }
    let (info, retry_after) = match account.renewal_info(&id).await {
        Ok(answer) => answer,
        Err(instant_acme::Error::Unsupported(_)) => return Ok(None),
        Err(error) => return Err(classify("renewalInfo", &error)),
    };
    let window = info.suggested_window;
    if window.end < window.start {
        return Err(SourceError::new(
            ORIGIN,
            "renewalInfo",
            ErrorClass::Invalid,
            "BadWindow",
            "the CA's renewal window ends before it starts",
        ));
    }
    let poll = retry_after.clamp(MIN_POLL, MAX_POLL);
    let renew_at = match &stored {
        Some(point) if point.window_start == window.start && point.window_end == window.end => {
            point.renew_at
        }
        _ => choose_point(window.start, window.end, &mut rand::thread_rng()),
    };
    let point = RenewalPoint {
        cert_id: id_text,
        window_start: window.start,
        window_end: window.end,
        renew_at,
        next_poll: now + poll,
    };
    store.save_renewal_point(certificate, &point)?;
    Ok(Some(point))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use time::macros::datetime;

    #[test]
    fn the_point_lies_in_the_window_on_whole_seconds() {
        let start = datetime!(2026-01-01 00:00:00.5 UTC);
        let end = datetime!(2026-01-03 00:00:00 UTC);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let point = choose_point(start, end, &mut rng);
            assert!(point >= start - time::Duration::seconds(1) && point <= end);
            assert_eq!(point.nanosecond(), 0);
        }
        assert_eq!(choose_point(end, end, &mut rng), end);
    }

    #[test]
    fn identifiers_need_an_authority_key_identifier() {
        // rcgen's self-signed certificates carry no AKI.
        let bundle = crate::cert::bundle::testing::fresh(&["a.example.test"]);
        let error = cert_id(&bundle.leaf_pem).unwrap_err();
        assert_eq!(error.code, "BadCertificate");
    }
}
