//! The ID-token signing key: ES256 (ECDSA P-256), the private key in
//! `<data_dir>/oidc-keys/signing.pem` (PKCS#8, mode 0600), created on first start. Its public
//! half is published in the database (`oidc_signing_keys`), so that every node's JWKS lists every
//! node's keys, and stays published for an overlap after a rotation so that tokens it signed
//! still verify. A rotated-out private key is overwritten, never kept.
//!
//! The signer re-reads the file when it changes on disk (`keyplane oidc rotate-key` run beside a
//! serving node): one `stat` per signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keyplane_core::Error;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

const KEY_FILE: &str = "signing.pem";

/// One loaded key.
struct Loaded {
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
    public_jwk: serde_json::Value,
    modified: Option<SystemTime>,
}

/// The node's signing key, reloaded when its file changes.
pub struct OidcSigner {
    path: PathBuf,
    key: RwLock<Loaded>,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what} {}: {e}", path.display()))
}

/// The public JWK of a P-256 key and its RFC 7638 thumbprint, used as `kid`.
fn public_jwk(key: &SigningKey) -> (String, serde_json::Value) {
    let point = key.verifying_key().to_encoded_point(false);
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(point.x().map(|x| x.as_slice()).unwrap_or_default()),
        URL_SAFE_NO_PAD.encode(point.y().map(|y| y.as_slice()).unwrap_or_default()),
    );
    // RFC 7638: the required members in lexicographic order, no spaces.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "use": "sig", "alg": "ES256", "kid": kid });
    (kid, jwk)
}

fn load(path: &Path) -> Result<Loaded, Error> {
    let pem = std::fs::read_to_string(path).map_err(|e| io("cannot read", path, e))?;
    let key =
        SigningKey::from_pkcs8_pem(&pem).map_err(|e| io("not a P-256 PKCS#8 key:", path, e))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| io("cannot encode", path, e))?;
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
    let (kid, public_jwk) = public_jwk(&key);
    Ok(Loaded {
        kid,
        encoding,
        public_jwk,
        modified: std::fs::metadata(path).and_then(|m| m.modified()).ok(),
    })
}

/// Writes a fresh key to `path` (mode 0600, replaced atomically).
fn generate(path: &Path) -> Result<(), Error> {
    let key = loop {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        // Fails only for a value outside the curve's order (probability ~2^-32).
        if let Ok(k) = SigningKey::from_bytes(&bytes.into()) {
            break k;
        }
    };
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| io("cannot encode a key for", path, e))?;
    crate::audit_keys::write_private(path, &pem)
}

impl OidcSigner {
    /// Loads the key in `dir`, creating the directory and a key on first use.
    pub fn open_or_create(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            generate(&path)?;
        }
        Ok(OidcSigner {
            key: RwLock::new(load(&path)?),
            path,
        })
    }

    /// Replaces the key on disk with a new one and loads it; returns the old and new `kid`.
    pub fn rotate(&self) -> Result<(String, String), Error> {
        let old = self.kid();
        generate(&self.path)?;
        let fresh = load(&self.path)?;
        let new = fresh.kid.clone();
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok((old, new))
    }

    fn refresh(&self) {
        let on_disk = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let stale = self
            .key
            .read()
            .map(|k| k.modified != on_disk)
            .unwrap_or(true);
        if stale {
            match load(&self.path) {
                Ok(fresh) => *self.key.write().unwrap_or_else(|p| p.into_inner()) = fresh,
                Err(e) => {
                    tracing::error!(error = %e.message, "cannot reload the OIDC signing key; signing with the loaded one")
                }
            }
        }
    }

    pub fn kid(&self) -> String {
        self.key.read().map(|k| k.kid.clone()).unwrap_or_default()
    }

    /// The current key's public JWK.
    pub fn public_jwk(&self) -> serde_json::Value {
        self.refresh();
        self.key
            .read()
            .map(|k| k.public_jwk.clone())
            .unwrap_or_default()
    }

    /// Signs `claims` as a compact JWS (ES256, `kid` in the header).
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, Error> {
        self.refresh();
        let key = self.key.read().unwrap_or_else(|p| p.into_inner());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| Error::internal(format!("signing a token: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_signs_verifiably_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let signer = OidcSigner::open_or_create(dir.path()).unwrap();
        let again = OidcSigner::open_or_create(dir.path()).unwrap();
        assert_eq!(signer.kid(), again.kid(), "the key on disk is reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let token = signer
            .sign(&json!({ "sub": "alice", "exp": 4_000_000_000u64 }))
            .unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(signer.public_jwk()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.header.kid.as_deref(), Some(signer.kid().as_str()));

        let (old, new) = signer.rotate().unwrap();
        assert_ne!(old, new);
        assert_eq!(
            again.public_jwk()["kid"],
            new,
            "another signer on the same directory reloads the rotated key"
        );
        let after = signer
            .sign(&json!({ "sub": "alice", "exp": 4_000_000_000u64 }))
            .unwrap();
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&after, &key, &v).is_err(),
            "the old public key does not verify the new key's tokens"
        );
    }
}
