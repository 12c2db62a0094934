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

/// Reads a certificate or key file, refusing one larger than [`MAX_INPUT_BYTES`] before
/// reading it (a wrong path to a huge file must not be slurped into memory).
pub fn read_input(path: &std::path::Path) -> Result<Vec<u8>, CertError> {
    use std::io::Read;
    let what = path.display().to_string();
    let io = |e: std::io::Error| CertError::Io {
        what: what.clone(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_INPUT_BYTES as u64 {
        return Err(CertError::TooLarge {
            what,
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: MAX_INPUT_BYTES,
        });
    }
    // The size can change between the check and the read; `take` keeps the bound anyway.
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// Reads and parses a certificate file and a key file (`key` may be `None` when the
/// certificate file also holds the key). Errors name the file at fault.
pub fn load_bundle_files(
    cert: &std::path::Path,
    key: Option<&std::path::Path>,
) -> Result<CertificateBundle, CertError> {
    let cert_bytes = read_input(cert)?;
    let (key_name, mut key_bytes) = match key {
        Some(path) => (path.display().to_string(), read_input(path)?),
        None => (cert.display().to_string(), Vec::new()),
    };
    let result = parse_bundle_bytes(
        &cert.display().to_string(),
        &cert_bytes,
        &key_name,
        &key_bytes,
    );
    key_bytes.zeroize();
    result
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

/// Self-signed: names itself as issuer and its own key verifies its signature. A name match
/// alone is not enough; tools such as rcgen give every certificate the same default name.
fn is_self_issued(cert: &X509Certificate<'_>) -> bool {
    issued_by(cert, cert)
}

/// `child` names `parent` as issuer and `parent`'s key verifies `child`'s signature. When
/// ring cannot check the signature algorithm (P-521, unusual RSA-PSS parameters), the names
/// decide, provided the signature family fits the parent's key type.
pub(crate) fn issued_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    if child.issuer().as_raw() != parent.subject().as_raw() {
        return false;
    }
    match child.verify_signature(Some(parent.public_key())) {
        Ok(()) => true,
        Err(X509Error::SignatureUnsupportedAlgorithm) => {
            let signature = child.signature_algorithm.algorithm.to_id_string();
            let key = parent.public_key().algorithm.algorithm.to_id_string();
            if signature.starts_with("1.2.840.10045.4.") {
                key == "1.2.840.10045.2.1"
            } else if signature.starts_with("1.2.840.113549.1.1.") {
                key == "1.2.840.113549.1.1.1" || key == "1.2.840.113549.1.1.10"
            } else {
                signature == key && signature.starts_with("1.3.101.")
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing::{self, TestChain};
    use crate::cert::KeyType;
    use time::{Duration, OffsetDateTime};

    fn chain() -> TestChain {
        let now = OffsetDateTime::now_utc();
        TestChain::new(
            &["www.example.com"],
            now - Duration::days(1),
            now + Duration::days(60),
        )
    }

    fn subjects(bundle: &CertificateBundle) -> Vec<String> {
        let mut pems = vec![bundle.leaf_pem.clone()];
        pems.extend(
            ::pem::parse_many(&bundle.chain_pem)
                .unwrap()
                .iter()
                .map(::pem::encode),
        );
        pems.iter()
            .map(|p| LeafInfo::from_pem("t", p).unwrap().subject)
            .collect()
    }

    #[test]
    fn every_order_of_a_three_level_chain_comes_out_leaf_first() {
        let c = chain();
        let orders = [
            [&c.leaf, &c.intermediate, &c.root],
            [&c.leaf, &c.root, &c.intermediate],
            [&c.root, &c.intermediate, &c.leaf],
            [&c.root, &c.leaf, &c.intermediate],
            [&c.intermediate, &c.leaf, &c.root],
            [&c.intermediate, &c.root, &c.leaf],
        ];
        for order in orders {
            let input: String = order.iter().map(|s| s.as_str()).collect();
            let bundle = parse_bundle("site", &input, c.key.expose()).unwrap();
            let leaf_subject = LeafInfo::from_pem("t", &c.leaf).unwrap().subject;
            assert_eq!(
                subjects(&bundle),
                [
                    leaf_subject.as_str(),
                    "CN=certkeeper test intermediate",
                    "CN=certkeeper test root"
                ]
            );
            assert_eq!(bundle.leaf_pem, c.leaf);
            assert_eq!(bundle.info.names, vec!["www.example.com"]);
        }
    }

    #[test]
    fn leaf_and_intermediate_in_reverse_order_are_swapped() {
        let c = chain();
        let input = format!("{}{}", c.intermediate, c.leaf);
        let bundle = parse_bundle("site", &input, c.key.expose()).unwrap();
        assert_eq!(bundle.leaf_pem, c.leaf);
        assert_eq!(bundle.chain_pem, c.intermediate);
        assert_eq!(
            bundle.fullchain_pem(),
            format!("{}{}", c.leaf, c.intermediate)
        );
    }

    #[test]
    fn unrelated_certificates_are_rejected_by_subject() {
        let c = chain();
        let now = OffsetDateTime::now_utc();
        let other = TestChain::named("other", &["x.org"], now, now + Duration::days(9));
        for stray in [&other.root, &other.intermediate, &other.leaf] {
            let input = format!("{}{}{}", c.leaf, stray, c.intermediate);
            let err = parse_bundle("/etc/ssl/site.pem", &input, c.key.expose()).unwrap_err();
            assert!(
                matches!(&err, CertError::UnrelatedCertificate { .. }),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with("/etc/ssl/site.pem certificate: "),
                "{text}"
            );
            assert!(text.contains("is not part of the chain"), "{text}");
        }
        let err =
            parse_bundle("s", &format!("{}{}", c.leaf, other.root), c.key.expose()).unwrap_err();
        assert!(err.to_string().contains("CN=other root"), "{err}");
    }

    #[test]
    fn duplicate_certificates_are_tolerated() {
        let c = chain();
        let input = format!("{}{}{}", c.leaf, c.intermediate, c.intermediate);
        let bundle = parse_bundle("s", &input, c.key.expose()).unwrap();
        assert_eq!(bundle.chain_pem, c.intermediate);
    }

    #[test]
    fn encrypted_keys_are_refused_clearly() {
        let c = chain();
        let pkcs8 = ::pem::encode(&::pem::Pem::new("ENCRYPTED PRIVATE KEY", vec![0x30, 0x00]));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n\
                      MAMCAQA=\n-----END RSA PRIVATE KEY-----\n";
        for key in [pkcs8.as_str(), legacy] {
            let err = parse_bundle_bytes("cert.pem", c.leaf.as_bytes(), "key.pem", key.as_bytes())
                .unwrap_err();
            assert_eq!(
                err,
                CertError::EncryptedKey {
                    what: "key.pem".to_owned()
                }
            );
            assert!(err.to_string().contains("encrypted"), "{err}");
        }
    }

    #[test]
    fn garbage_base64_is_a_malformed_pem_without_quoting_it() {
        let c = chain();
        let garbage =
            "-----BEGIN CERTIFICATE-----\nMIIB@@@not*base64!!\n-----END CERTIFICATE-----\n";
        let err = parse_bundle_bytes(
            "cert.pem",
            garbage.as_bytes(),
            "key.pem",
            c.key.expose().as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, CertError::MalformedPem { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cert.pem: malformed PEM: invalid base64 data inside a PEM block"
        );
        let bad_key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0@@@\n-----END PRIVATE KEY-----\n";
        let err = parse_bundle_bytes("c", c.leaf.as_bytes(), "k", bad_key.as_bytes()).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn base64_that_is_not_der_is_a_bad_certificate() {
        let block = ::pem::encode(&::pem::Pem::new("CERTIFICATE", b"hello".to_vec()));
        let err = parse_bundle("s", &block, "").unwrap_err();
        assert!(matches!(err, CertError::BadCertificate { .. }), "{err:?}");
    }

    #[test]
    fn der_where_pem_was_expected_is_named() {
        let c = chain();
        let cert_der = ::pem::parse(&c.leaf).unwrap().into_contents();
        let key_der = ::pem::parse(c.key.expose()).unwrap().into_contents();
        let err = parse_bundle_bytes("cert.der", &cert_der, "key.pem", c.key.expose().as_bytes())
            .unwrap_err();
        assert_eq!(
            err,
            CertError::DerNotPem {
                what: "cert.der".to_owned()
            }
        );
        assert!(
            err.to_string().contains("openssl x509 -inform der"),
            "{err}"
        );
        let err =
            parse_bundle_bytes("cert.pem", c.leaf.as_bytes(), "key.der", &key_der).unwrap_err();
        assert_eq!(
            err,
            CertError::DerNotPem {
                what: "key.der".to_owned()
            }
        );
        // The same bytes after a lossy UTF-8 conversion by a caller.
        let lossy = String::from_utf8_lossy(&cert_der);
        let err = parse_bundle("s", &lossy, c.key.expose()).unwrap_err();
        assert!(matches!(err, CertError::DerNotPem { .. }), "{err:?}");
    }

    #[test]
    fn bare_base64_and_binary_junk_are_named() {
        let c = chain();
        let body: String = c.leaf.lines().filter(|l| !l.starts_with("-----")).collect();
        let err = parse_bundle("s", &body, c.key.expose()).unwrap_err();
        assert!(matches!(err, CertError::BareBase64 { .. }), "{err:?}");
        let err = parse_bundle_bytes("img.png", b"\x89PNG\r\n\x1a\n\0\0", "k", b"").unwrap_err();
        assert_eq!(
            err,
            CertError::NotText {
                what: "img.png".to_owned()
            }
        );
        let err = parse_bundle("s", "just some text\n", c.key.expose()).unwrap_err();
        assert!(matches!(err, CertError::NoPem { .. }), "{err:?}");
    }

    #[test]
    fn empty_inputs_are_named() {
        let c = chain();
        let err =
            parse_bundle_bytes("cert.pem", b"", "key.pem", c.key.expose().as_bytes()).unwrap_err();
        assert_eq!(
            err,
            CertError::Empty {
                what: "cert.pem".to_owned()
            }
        );
        assert_eq!(err.to_string(), "cert.pem: the input is empty");
        let err = parse_bundle_bytes("cert.pem", b" \n\t\n", "key.pem", b"").unwrap_err();
        assert_eq!(
            err,
            CertError::Empty {
                what: "cert.pem".to_owned()
            }
        );
        let err = parse_bundle_bytes("cert.pem", c.leaf.as_bytes(), "key.pem", b"\n").unwrap_err();
        assert_eq!(
            err,
            CertError::Empty {
                what: "key.pem".to_owned()
            }
        );
    }

    #[test]
    fn a_ten_megabyte_file_is_refused_before_parsing() {
        let c = chain();
        // Valid PEM repeated: refusing it proves the size check runs before the parser.
        let mut big = String::new();
        while big.len() <= 10 * 1024 * 1024 {
            big.push_str(&c.leaf);
        }
        let err = parse_bundle_bytes(
            "huge.pem",
            big.as_bytes(),
            "key.pem",
            c.key.expose().as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            CertError::TooLarge {
                what: "huge.pem".to_owned(),
                size: big.len(),
                limit: MAX_INPUT_BYTES
            }
        );
        assert!(err.to_string().contains("limit"), "{err}");
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let err = parse_bundle_bytes("c", c.leaf.as_bytes(), "key", &zeros).unwrap_err();
        assert!(matches!(err, CertError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn missing_certificate_missing_key_and_several_keys_are_named() {
        let c = chain();
        let err = parse_bundle_bytes(
            "cert.pem",
            c.key.expose().as_bytes(),
            "key.pem",
            c.key.expose().as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            CertError::NoCertificate {
                what: "cert.pem".to_owned()
            }
        );
        let err = parse_bundle_bytes("cert.pem", c.leaf.as_bytes(), "key.pem", c.leaf.as_bytes())
            .unwrap_err();
        assert_eq!(
            err,
            CertError::NoKey {
                what: "key.pem".to_owned()
            }
        );
        let two = format!(
            "{}{}",
            c.key.expose(),
            KeyType::EcdsaP256.generate().unwrap().expose()
        );
        let err = parse_bundle_bytes("cert.pem", c.leaf.as_bytes(), "key.pem", two.as_bytes())
            .unwrap_err();
        assert_eq!(
            err,
            CertError::SeveralKeys {
                what: "key.pem".to_owned(),
                count: 2
            }
        );
        let csr = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", vec![0x30, 0x00]));
        let err = parse_bundle("s", &format!("{}{csr}", c.leaf), c.key.expose()).unwrap_err();
        assert!(
            matches!(&err, CertError::UnexpectedBlock { tag, .. } if tag == "CERTIFICATE REQUEST"),
            "{err:?}"
        );
    }

    #[test]
    fn a_combined_file_supplies_the_key_when_the_key_input_is_blank() {
        let c = chain();
        let combined = format!("{}{}{}", c.key.expose(), c.intermediate, c.leaf);
        let bundle = parse_bundle("s", &combined, "").unwrap();
        assert_eq!(bundle.key_pem.expose(), c.key.expose());
        assert_eq!(bundle.chain_pem, c.intermediate);
    }

    #[test]
    fn pkcs1_and_sec1_keys_keep_their_encoding_in_the_bundle() {
        let key = KeyType::EcdsaP384.generate().unwrap();
        let sec1 = testing::sec1_pem(&key);
        let cert = testing::certificate_for_key(&key, &["a.example"]);
        let bundle = parse_bundle("s", &cert, sec1.expose()).unwrap();
        assert!(bundle
            .key_pem
            .expose()
            .starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let debug = format!("{bundle:?}");
        assert!(
            !debug.contains("PRIVATE KEY") && debug.contains("REDACTED"),
            "{debug}"
        );
    }

    #[test]
    fn certificates_sharing_a_name_are_told_apart_by_signature() {
        // rcgen gives every certificate the same default subject, so the issuer and the
        // leaf have identical names; only the signature says which issued which.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["s.example".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let input = format!("{}{}", ca.pem(), leaf.pem());
        let bundle = parse_bundle("s", &input, &leaf_key.serialize_pem()).unwrap();
        assert_eq!(bundle.leaf_pem, leaf.pem());
        assert_eq!(bundle.chain_pem, ca.pem());
    }

    #[test]
    fn files_are_read_with_the_size_limit_and_named_in_errors() {
        let c = chain();
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("fullchain.pem");
        let key = dir.path().join("privkey.pem");
        std::fs::write(&cert, format!("{}{}", c.intermediate, c.leaf)).unwrap();
        std::fs::write(&key, c.key.expose()).unwrap();
        let bundle = load_bundle_files(&cert, Some(&key)).unwrap();
        assert_eq!(bundle.chain_pem, c.intermediate);

        let combined = dir.path().join("combined.pem");
        std::fs::write(&combined, format!("{}{}", c.leaf, c.key.expose())).unwrap();
        assert_eq!(load_bundle_files(&combined, None).unwrap().leaf_pem, c.leaf);

        // A sparse 10 MB file: refused from its size alone.
        let huge = dir.path().join("huge.pem");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(10 * 1024 * 1024)
            .unwrap();
        let err = load_bundle_files(&cert, Some(&huge)).unwrap_err();
        assert!(matches!(err, CertError::TooLarge { size, .. } if size == 10 * 1024 * 1024));
        assert!(
            err.to_string().starts_with(&huge.display().to_string()),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = load_bundle_files(&empty, Some(&key)).unwrap_err();
        assert_eq!(
            err,
            CertError::Empty {
                what: empty.display().to_string()
            }
        );

        let missing = dir.path().join("missing.pem");
        let err = load_bundle_files(&missing, None).unwrap_err();
        assert!(matches!(err, CertError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
