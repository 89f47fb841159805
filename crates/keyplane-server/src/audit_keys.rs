//! The checkpoint signing keys: an Ed25519 key ring in a directory (by default
//! `<data_dir>/audit-keys`). `signing.key` holds the active key's 32-byte seed (hex, mode 0600);
//! `<key_id>.pub` holds the public key of every key that was ever active, so checkpoints signed
//! before a rotation still verify. A rotated-out private key is overwritten, never kept.
//!
//! Several nodes on one database should share the directory (a mounted secret), or each node's
//! public keys must be given to `keyplane audit verify --trusted-keys`.

use ed25519_dalek::VerifyingKey;
use keyplane_core::audit::{key_id, CheckpointKey};
use keyplane_core::Error;
use std::path::{Path, PathBuf};

const SIGNING_FILE: &str = "signing.key";

/// The active signing key and every public key of the ring.
pub struct Keyring {
    dir: PathBuf,
    active: CheckpointKey,
    public: Vec<VerifyingKey>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("{what} {}: {e}", path.display()))
}

/// Replaces `path` with `contents`, readable by the owner only (mode 0600): written to a
/// temporary file, synced, then renamed, so a reader never sees half a key. Also used for the
/// OpenID Connect signing key (`oidc_keys.rs`).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| io("cannot write", &tmp, e))?;
        f.write_all(contents.as_bytes())
            .map_err(|e| io("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("cannot replace", path, e))
}

fn parse_public(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

impl Keyring {
    /// Opens the ring in `dir`, creating the directory and a first key if there is none.
    pub fn open_or_create(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let signing = dir.join(SIGNING_FILE);
        let active = if signing.exists() {
            let text =
                std::fs::read_to_string(&signing).map_err(|e| io("cannot read", &signing, e))?;
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    Error::internal(format!("{} is not a 32-byte hex seed", signing.display()))
                })?;
            CheckpointKey::from_seed(&seed)
        } else {
            let (seed, key) = CheckpointKey::generate(&mut rand::rng());
            write_private(&signing, &hex::encode(seed))?;
            key
        };
        let pub_file = dir.join(format!("{}.pub", active.key_id));
        if !pub_file.exists() {
            std::fs::write(&pub_file, hex::encode(active.public().as_bytes()))
                .map_err(|e| io("cannot write", &pub_file, e))?;
        }
        let public = read_public_keys(dir)?;
        Ok(Keyring {
            dir: dir.to_path_buf(),
            active,
            public,
        })
    }

    /// Replaces the active key with a new one; the old public key stays in the ring.
    pub fn rotate(&mut self) -> Result<&CheckpointKey, Error> {
        let (seed, key) = CheckpointKey::generate(&mut rand::rng());
        let pub_file = self.dir.join(format!("{}.pub", key.key_id));
        std::fs::write(&pub_file, hex::encode(key.public().as_bytes()))
            .map_err(|e| io("cannot write", &pub_file, e))?;
        write_private(&self.dir.join(SIGNING_FILE), &hex::encode(seed))?;
        self.active = key;
        self.public = read_public_keys(&self.dir)?;
        Ok(&self.active)
    }

    pub fn active(&self) -> &CheckpointKey {
        &self.active
    }

    /// Every public key of the ring (the active one included).
    pub fn public_keys(&self) -> &[VerifyingKey] {
        &self.public
    }
}

/// The `*.pub` files of a directory.
pub fn read_public_keys(dir: &Path) -> Result<Vec<VerifyingKey>, Error> {
    let mut keys = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io("cannot list", dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("pub") {
            let text = std::fs::read_to_string(&path).map_err(|e| io("cannot read", &path, e))?;
            let key = parse_public(&text).ok_or_else(|| {
                Error::internal(format!("{} is not an Ed25519 public key", path.display()))
            })?;
            keys.push(key);
        }
    }
    keys.sort_by_key(key_id);
    Ok(keys)
}

/// Public keys from a file of hex keys, one per line (what `/.well-known/keyplane-audit-keys`
/// lists, for pinning elsewhere). Blank lines and `#` comments are skipped.
pub fn parse_trusted_keys(text: &str) -> Result<Vec<VerifyingKey>, Error> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            parse_public(l).ok_or_else(|| {
                Error::invalid(
                    "invalid_trusted_key",
                    format!("{l:?} is not a hex Ed25519 public key"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_is_created_reopened_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keyring::open_or_create(dir.path()).unwrap();
        let id = first.active().key_id.clone();
        let again = Keyring::open_or_create(dir.path()).unwrap();
        assert_eq!(again.active().key_id, id, "reopening keeps the key");
        let mut ring = again;
        let new_id = ring.rotate().unwrap().key_id.clone();
        assert_ne!(new_id, id);
        assert_eq!(
            ring.public_keys().len(),
            2,
            "the old public key stays trusted"
        );
        let reopened = Keyring::open_or_create(dir.path()).unwrap();
        assert_eq!(reopened.active().key_id, new_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SIGNING_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the private key is readable by its owner only"
            );
        }
    }

    #[test]
    fn trusted_key_files_are_parsed_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open_or_create(dir.path()).unwrap();
        let line = hex::encode(ring.active().public().as_bytes());
        assert_eq!(
            parse_trusted_keys(&format!("# pinned\n\n{line}\n"))
                .unwrap()
                .len(),
            1
        );
        assert!(parse_trusted_keys("nothex").is_err());
    }
}
