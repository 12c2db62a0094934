//! Reading certificate and key files into a [`CertificateBundle`]: size and format checks
//! before any parsing, PEM blocks sorted into certificates and one private key, and the chain
//! put in order (leaf first, each certificate followed by its issuer). Every error names the
//! input it came from and says what is wrong with it, never quoting key material.

use super::bundle::{CertError, CertificateBundle, LeafInfo};
use super::key::PrivateKey;
use crate::secret::Secret;
use x509_parser::prelude::{FromDer, X509Certificate, X509Error};
use zeroize::Zeroize;

/// Largest certificate or key input accepted, checked before parsing. Real bundles are a few
/// kilobytes; a 1 MiB limit leaves room for long chains while a wrong file (a log, an image,
/// /dev/zero) fails at once instead of being parsed.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Parses a certificate input (leaf plus optional chain, in any order) and a key input into
/// a bundle whose chain is ordered leaf-first. `what` names the certificate (a file name or
/// the configured name); errors say `"<what> certificate: ..."` or `"<what> key: ..."`.
/// When `key_pem` is blank the key is taken from the certificate input (a combined file).
pub fn parse_bundle(
    what: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<CertificateBundle, CertError> {
    parse_bundle_bytes(
        &format!("{what} certificate"),
        cert_pem.as_bytes(),
        &format!("{what} key"),
        key_pem.as_bytes(),
    )
}

/// Like [`parse_bundle`] with raw file contents and one name per input (usually the paths),
/// so binary DER and non-text files get a precise message.
pub fn parse_bundle_bytes(
    cert_what: &str,
    cert_input: &[u8],
    key_what: &str,
    key_input: &[u8],
) -> Result<CertificateBundle, CertError> {
    let cert_blocks = read_blocks(cert_what, cert_input)?;
    let cert_ders: Vec<&[u8]> = cert_blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.contents())
        .collect();
    if cert_ders.is_empty() {
        return Err(CertError::NoCertificate {
            what: cert_what.to_owned(),
        });
    }
    let ordered = order_chain(cert_what, &cert_ders)?;

    let key_in_cert_input =
        key_input.iter().all(u8::is_ascii_whitespace) && cert_blocks.iter().any(is_key_block);
    let key_blocks_owned;
    let (key_what, key_blocks) = if key_in_cert_input {
        (cert_what, &cert_blocks)
    } else {
        key_blocks_owned = read_blocks(key_what, key_input)?;
        (key_what, &key_blocks_owned)
    };
    let key_block = single_key(key_what, key_blocks)?;
    // Reading the key validates it and tells PKCS#8, PKCS#1 and SEC1 apart; the bundle keeps
    // the key in its original encoding, which some targets require.
    PrivateKey::from_block(key_what, key_block.tag(), key_block.contents())?;
    let key_pem = Secret::new(encode(key_block.tag(), key_block.contents()));

    let info = LeafInfo::from_der(cert_what, ordered[0])?;
    let leaf_pem = encode("CERTIFICATE", ordered[0]);
    let chain_pem: String = ordered[1..]
        .iter()
        .map(|der| encode("CERTIFICATE", der))
        .collect();
    Ok(CertificateBundle {
        leaf_pem,
        chain_pem,
        key_pem,
        info,
    })
}

fn encode(tag: &str, der: &[u8]) -> String {
    let block = ::pem::Pem::new(tag, der.to_vec());
    let text = ::pem::encode_config(
        &block,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    );
    // The block may hold a private key; do not leave a copy behind.
    block.into_contents().zeroize();
    text
}

pub(crate) fn is_key_block(block: &::pem::Pem) -> bool {
    matches!(
        block.tag(),
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY"
    )
}

/// Encrypted keys are refused: the daemon runs unattended with no passphrase to give, and
/// the key's protection is the state directory's permissions.
pub(crate) fn refuse_encrypted(what: &str, block: &::pem::Pem) -> Result<(), CertError> {
    let legacy_encrypted = block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"));
    if block.tag() == "ENCRYPTED PRIVATE KEY" || legacy_encrypted {
        return Err(CertError::EncryptedKey {
            what: what.to_owned(),
        });
    }
    Ok(())
}

fn single_key<'a>(what: &str, blocks: &'a [::pem::Pem]) -> Result<&'a ::pem::Pem, CertError> {
    let keys: Vec<&::pem::Pem> = blocks.iter().filter(|b| is_key_block(b)).collect();
    match keys.as_slice() {
        [] => Err(CertError::NoKey {
            what: what.to_owned(),
        }),
        [one] => {
            refuse_encrypted(what, one)?;
            Ok(one)
        }
        several => Err(CertError::SeveralKeys {
            what: what.to_owned(),
            count: several.len(),
        }),
    }
}

/// Checks size and format, then splits the input into PEM blocks. Blocks other than
/// certificates, keys and `EC PARAMETERS` (which `openssl ecparam -genkey` emits) are refused
/// so a CSR or a public key given by mistake is named rather than ignored.
pub(crate) fn read_blocks(what: &str, input: &[u8]) -> Result<Vec<::pem::Pem>, CertError> {
    let error = |make: fn(String) -> CertError| make(what.to_owned());
    if input.len() > MAX_INPUT_BYTES {
        return Err(CertError::TooLarge {
            what: what.to_owned(),
            size: input.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(error(|what| CertError::Empty { what }));
    }
    let text = match std::str::from_utf8(input) {
        Ok(text) if !text.chars().any(is_binary_char) => text,
        // A DER certificate or key is a SEQUENCE: tag 0x30 followed by a length.
        _ if input[0] == 0x30 => return Err(error(|what| CertError::DerNotPem { what })),
        Ok(text) if text.starts_with('0') && text.contains('\u{fffd}') => {
            // DER that went through a lossy UTF-8 conversion before reaching us.
            return Err(error(|what| CertError::DerNotPem { what }));
        }
        _ => return Err(error(|what| CertError::NotText { what })),
    };
    let blocks = ::pem::parse_many(text).map_err(|e| CertError::MalformedPem {
        what: what.to_owned(),
        reason: describe_pem_error(&e),
    })?;
    if blocks.is_empty() {
        let trimmed = text.trim();
        let bare_base64 = trimmed.starts_with("MI")
            && trimmed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c) || c.is_whitespace());
        return Err(if bare_base64 {
            error(|what| CertError::BareBase64 { what })
        } else {
            error(|what| CertError::NoPem { what })
        });
    }
    for block in &blocks {
        if !(block.tag() == "CERTIFICATE" || block.tag() == "EC PARAMETERS" || is_key_block(block))
        {
            return Err(CertError::UnexpectedBlock {
                what: what.to_owned(),
                tag: block.tag().to_owned(),
            });
        }
    }
    Ok(blocks)
}

fn is_binary_char(c: char) -> bool {
    c == '\u{fffd}' || (c.is_control() && !c.is_ascii_whitespace())
}

/// The pem crate's messages can quote the offending base64 byte; a key file's bytes must
/// never reach an error, so only the kind of problem is kept.
fn describe_pem_error(error: &::pem::PemError) -> String {
    use ::pem::PemError as E;
    match error {
        E::MismatchedTags(begin, end) => {
            format!("BEGIN {begin:?} closed by END {end:?}")
        }
        E::MalformedFraming => "malformed BEGIN/END framing".to_owned(),
        E::MissingBeginTag => "missing -----BEGIN ...----- line".to_owned(),
        E::MissingEndTag => "missing -----END ...----- line".to_owned(),
        E::MissingData => "PEM block without data".to_owned(),
        E::InvalidData(_) => "invalid base64 data inside a PEM block".to_owned(),
        E::InvalidHeader(_) => "invalid PEM header line".to_owned(),
        E::NotUtf8(_) => "not UTF-8 text".to_owned(),
    }
}

/// Puts the certificates in chain order: leaf first, then each certificate's issuer. The leaf
/// is the certificate that issued none of the others (the one heading the longest chain if
/// several qualify); every certificate must lie on the leaf's path, or it is unrelated.
pub(crate) fn order_chain<'a>(what: &str, ders: &[&'a [u8]]) -> Result<Vec<&'a [u8]>, CertError> {
    let mut unique: Vec<&[u8]> = Vec::new();
    for der in ders {
        if !unique.contains(der) {
            unique.push(der);
        }
    }
    let certs = unique
        .iter()
        .enumerate()
        .map(|(i, der)| {
            X509Certificate::from_der(der)
                .map(|(_, cert)| cert)
                .map_err(|e| CertError::BadCertificate {
                    what: format!("{what} (certificate #{})", i + 1),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = certs.len();
    let issued =
        |child: usize, parent: usize| child != parent && issued_by(&certs[child], &certs[parent]);

    let walk = |start: usize| {
        let mut path = vec![start];
        let mut current = start;
        while !is_self_issued(&certs[current]) {
            match (0..n).find(|&j| !path.contains(&j) && issued(current, j)) {
                Some(next) => {
                    path.push(next);
                    current = next;
                }
                None => break,
            }
        }
        path
    };
    let leaves: Vec<usize> = (0..n).filter(|&i| !(0..n).any(|j| issued(j, i))).collect();
    // max_by_key keeps the last of equals; iterate in reverse so input order breaks ties.
    let path = leaves
        .iter()
        .rev()
        .map(|&i| walk(i))
        .max_by_key(Vec::len)
        .ok_or_else(|| CertError::ChainOrder {
            what: what.to_owned(),
            reason: "every certificate issued another one (a cycle); no leaf to start from"
                .to_owned(),
        })?;
    if let Some(stray) = (0..n).find(|i| !path.contains(i)) {
        return Err(CertError::UnrelatedCertificate {
            what: what.to_owned(),
            subject: certs[stray].subject().to_string(),
            leaf: certs[path[0]].subject().to_string(),
        });
    }
    Ok(path.into_iter().map(|i| unique[i]).collect())
}

fn is_self_issued(cert: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == cert.subject().as_raw()
}

/// `child` names `parent` as issuer and `parent`'s key verifies `child`'s signature. When
/// ring cannot check the signature algorithm, the name match alone decides.
pub(crate) fn issued_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    if child.issuer().as_raw() != parent.subject().as_raw() {
        return false;
    }
    match child.verify_signature(Some(parent.public_key())) {
        Ok(()) => true,
        Err(X509Error::SignatureUnsupportedAlgorithm) => true,
        Err(_) => false,
    }
}

/// Splits a PEM text holding certificates into DER blocks (for chain checks).
pub(crate) fn certificate_ders(what: &str, pem_text: &str) -> Result<Vec<Vec<u8>>, CertError> {
    if pem_text.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(read_blocks(what, pem_text.as_bytes())?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect())
}
