//! PEM bundle and key parsing: `parse_bundle_bytes` (certificate input, key input),
//! `PrivateKey::from_pem` and `LeafInfo::from_pem`. Input: `certificate input NUL key input`
//! (no NUL: a combined file with the key in the certificate input).
//! Invariant: a bundle that parsed reparses from its own PEM output to the same leaf facts,
//! chain and key encoding (what the store relies on when it writes and reads bundles back).
#![no_main]

use certkeeper::cert::{parse_bundle, parse_bundle_bytes, LeafInfo, PrivateKey};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (cert, key) = common::split_nul(data);
    if let Ok(text) = std::str::from_utf8(key) {
        let _ = PrivateKey::from_pem("key", text);
    }
    if let Ok(text) = std::str::from_utf8(cert) {
        let _ = LeafInfo::from_pem("certificate", text);
    }
    let Ok(bundle) = parse_bundle_bytes("certificate", cert, "key", key) else {
        return;
    };
    let again = parse_bundle("again", &bundle.fullchain_pem(), bundle.key_pem.expose())
        .expect("a parsed bundle reparses from its own PEM");
    assert_eq!(again.info, bundle.info);
    assert_eq!(again.leaf_pem, bundle.leaf_pem);
    assert_eq!(again.chain_pem, bundle.chain_pem);
    assert_eq!(again.key_pem.expose(), bundle.key_pem.expose());
    let key = PrivateKey::from_pem("key", bundle.key_pem.expose())
        .expect("the bundle's key is a readable key");
    let _ = key.public_key("key");
});
