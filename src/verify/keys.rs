//! The public keys digests are checked with, found by fingerprint. CloudTrail's fingerprint is
//! the hex MD5 of the DER key as `ListPublicKeys` returns it (PKCS#1 `RSAPublicKey`, some older
//! keys as X.509 `SubjectPublicKeyInfo`), so a key is filed under the MD5 of both encodings.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::PublicKey;

use super::VerifyError;

/// Public keys by fingerprint (lower-case hex MD5 of a DER encoding).
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    keys: BTreeMap<String, PublicKey>,
    /// The fingerprints of the keys as loaded (their PKCS#1 form), for messages.
    loaded: Vec<String>,
}

impl KeyRing {
    /// Loads keys from files: the JSON `aws cloudtrail list-public-keys` prints (every key in
    /// it), PEM (`RSA PUBLIC KEY` or `PUBLIC KEY`), base64 text of the DER key (a `Value`
    /// copied out of that JSON), or raw DER (PKCS#1 or SubjectPublicKeyInfo).
    pub fn load(paths: &[std::path::PathBuf]) -> Result<KeyRing, VerifyError> {
        let mut ring = KeyRing::default();
        for path in paths {
            ring.load_file(path)?;
        }
        Ok(ring)
    }

    fn load_file(&mut self, path: &Path) -> Result<(), VerifyError> {
        let display = path.display().to_string();
        let bad = |reason: String| VerifyError::Key {
            path: display.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
            path: display.clone(),
            source,
        })?;
        let text = std::str::from_utf8(&bytes).ok().map(str::trim);
        match text {
            Some(t) if t.starts_with("-----BEGIN") => {
                let key = PublicKey::from_pkcs1_pem(t)
                    .or_else(|_| PublicKey::from_public_key_pem(t))
                    .map_err(|e| bad(format!("not an RSA public key in PEM: {e}")))?;
                self.add(key, None).map_err(bad)
            }
            Some(t) if t.starts_with('{') => {
                let json: serde_json::Value =
                    serde_json::from_str(t).map_err(|e| bad(format!("not JSON: {e}")))?;
                let list = json
                    .get("PublicKeyList")
                    .or_else(|| json.get("publicKeyList"))
                    .and_then(|v| v.as_array())
                    .ok_or_else(|| {
                        bad(
                            "no PublicKeyList (expected `aws cloudtrail list-public-keys` output)"
                                .into(),
                        )
                    })?;
                for (i, entry) in list.iter().enumerate() {
                    let value = entry
                        .get("Value")
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| bad(format!("key {i}: no Value")))?;
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(value.trim())
                        .map_err(|e| bad(format!("key {i}: Value is not base64: {e}")))?;
                    let key = decode_der(&der).map_err(|e| bad(format!("key {i}: {e}")))?;
                    let stated = entry.get("Fingerprint").and_then(|v| v.as_str());
                    if let Some(stated) = stated {
                        if !stated.eq_ignore_ascii_case(&md5_hex(&der)) {
                            return Err(bad(format!(
                                "key {i}: Fingerprint {stated} is not the MD5 of its Value"
                            )));
                        }
                    }
                    self.add(key, Some(&der))
                        .map_err(|e| bad(format!("key {i}: {e}")))?;
                }
                Ok(())
            }
            Some(t) if !t.is_empty() && t.bytes().all(is_base64_byte) => {
                let compact: String = t.split_whitespace().collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| bad(format!("not base64: {e}")))?;
                let key = decode_der(&der).map_err(bad)?;
                self.add(key, Some(&der)).map_err(bad)
            }
            _ => {
                let key = decode_der(&bytes).map_err(bad)?;
                self.add(key, Some(&bytes)).map_err(bad)
            }
        }
    }

    /// Files a key under the fingerprints of its PKCS#1 and SPKI DER forms (and of the bytes it
    /// was given as, if any).
    pub fn add(&mut self, key: PublicKey, given_der: Option<&[u8]>) -> Result<(), String> {
        let pkcs1 = key
            .to_pkcs1_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        let spki = key
            .to_public_key_der()
            .map_err(|e| format!("cannot encode the key: {e}"))?;
        let mut prints = vec![md5_hex(pkcs1.as_bytes()), md5_hex(spki.as_bytes())];
        if let Some(der) = given_der {
            prints.push(md5_hex(der));
        }
        self.loaded.push(prints[0].clone());
        for print in prints {
            self.keys.insert(print, key.clone());
        }
        Ok(())
    }

    /// The key with this fingerprint (case-insensitive hex).
    pub fn get(&self, fingerprint: &str) -> Option<&PublicKey> {
        self.keys.get(&fingerprint.to_ascii_lowercase())
    }

    /// How many keys were loaded.
    pub fn len(&self) -> usize {
        self.loaded.len()
    }

    /// Whether no key was loaded.
    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty()
    }
}

/// A DER RSA public key, PKCS#1 or SubjectPublicKeyInfo.
fn decode_der(der: &[u8]) -> Result<PublicKey, String> {
    PublicKey::from_pkcs1_der(der)
        .or_else(|_| PublicKey::from_public_key_der(der))
        .map_err(|e| format!("not an RSA public key in DER (PKCS#1 or SubjectPublicKeyInfo): {e}"))
}

/// CloudTrail's key fingerprint: lower-case hex MD5 of the DER bytes.
pub fn md5_hex(der: &[u8]) -> String {
    hex::encode(Md5::digest(der))
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') || b.is_ascii_whitespace()
}
