//! Secrets: bearer tokens and enrolment tokens. A [`Secret`] never prints itself; what is stored is
//! its [`TokenHash`] (SHA-256), so a database dump yields no usable token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Number of random bytes in every token Keyplane issues (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// A secret value (token, code). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A fresh 256-bit random token, base64url without padding.
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rng.fill_bytes(&mut bytes);
        Secret(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A fresh token that does not begin with `prefix`: a session token never looks like a
    /// machine client's (`kpm_…`), which random base64url would, once in 2^24 tokens.
    pub fn generate_without_prefix(rng: &mut dyn RngCore, prefix: &str) -> Self {
        loop {
            let s = Self::generate(rng);
            if !s.0.starts_with(prefix) {
                return s;
            }
        }
    }

    /// A fresh token that says what it is: `prefix` then 256 random bits (an OIDC code or
    /// token, so that a leaked one is recognised by secret scanners).
    pub fn generate_with_prefix(rng: &mut dyn RngCore, prefix: &str) -> Self {
        Secret(format!("{prefix}{}", Self::generate(rng).0))
    }

    /// Wraps a secret presented by a client.
    pub fn from_presented(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must hand it out (a response body, a cookie).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.as_bytes())
    }

    /// A value derived from this secret for a different purpose (e.g. the CSRF token bound to a
    /// session token). Knowing the derived value does not reveal the secret.
    pub fn derive(&self, purpose: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"keyplane-derive\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.0.as_bytes());
        URL_SAFE_NO_PAD.encode(h.finalize())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// SHA-256 of a token: what the database keeps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenHash(pub Vec<u8>);

impl TokenHash {
    pub fn of(bytes: &[u8]) -> Self {
        TokenHash(Sha256::digest(bytes).to_vec())
    }
}

/// Constant-time comparison of two byte strings of public length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_themselves() {
        let s = Secret::from_presented("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
    }

    #[test]
    fn generated_tokens_carry_256_bits() {
        let mut rng = rand::rng();
        let s = Secret::generate(&mut rng);
        let raw = URL_SAFE_NO_PAD.decode(s.expose()).expect("base64url");
        assert_eq!(raw.len(), 32);
        assert_ne!(s, Secret::generate(&mut rng));
    }

    #[test]
    fn tokens_can_avoid_a_prefix() {
        // A one-character prefix is hit once in 64 draws: 2000 draws would all but surely hit it.
        let mut rng = rand::rng();
        for _ in 0..2000 {
            assert!(!Secret::generate_without_prefix(&mut rng, "k")
                .expose()
                .starts_with('k'));
        }
    }

    #[test]
    fn hash_is_sha256_and_differs_from_token() {
        let s = Secret::from_presented("abc");
        assert_eq!(
            hex::encode(&s.hash().0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn derived_values_depend_on_purpose() {
        let s = Secret::from_presented("abc");
        assert_ne!(s.derive("csrf"), s.derive("other"));
        assert_ne!(s.derive("csrf"), s.expose());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
