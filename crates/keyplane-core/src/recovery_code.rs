//! Recovery codes (issue 7, path 2): single-use bearer secrets a user may hold where policy
//! (`[recovery] codes = "allow"`) lets them. What is stored is an Argon2id PHC string per code,
//! each with its own salt, so a database dump yields no usable code and no two codes share work.

use crate::secret::Secret;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use std::fmt;

/// Crockford's base32: no `I`, `L`, `O` or `U`, so a code read aloud or typed is unambiguous.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Seven groups of four symbols: 28 × 5 = 140 random bits (at least the 128 asked for).
const GROUPS: usize = 7;
const GROUP_LEN: usize = 4;
const SYMBOLS: usize = GROUPS * GROUP_LEN;

/// A recovery code, normalised (upper case, no separators). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(Secret);

impl RecoveryCode {
    /// A fresh code: each symbol drawn uniformly (5 bits of a random byte) from `rng`.
    pub fn generate(rng: &mut dyn RngCore) -> Self {
        let mut bytes = [0u8; SYMBOLS];
        rng.fill_bytes(&mut bytes);
        let s: String = bytes
            .iter()
            .map(|b| ALPHABET[usize::from(b & 31)] as char)
            .collect();
        RecoveryCode(Secret::from_presented(s))
    }

    /// A code as a person typed it: case, dashes and spaces do not matter, and the look-alikes
    /// `I`/`L` (read as `1`) and `O` (read as `0`) are accepted. `None` when it cannot be a code.
    pub fn parse(input: &str) -> Option<Self> {
        let mut s = String::with_capacity(SYMBOLS);
        for c in input.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return None,
            };
            if s.len() == SYMBOLS {
                return None;
            }
            s.push(c);
        }
        (s.len() == SYMBOLS).then(|| RecoveryCode(Secret::from_presented(s)))
    }

    /// The code in groups (`XXXX-XXXX-…`), for the one answer that shows it to its owner.
    pub fn expose_grouped(&self) -> String {
        let s = self.0.expose();
        (0..GROUPS)
            .map(|g| &s[g * GROUP_LEN..(g + 1) * GROUP_LEN])
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The Argon2id PHC string to store, with a fresh 16-byte salt from `rng`.
    pub fn hash(&self, rng: &mut dyn RngCore) -> String {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        // Encoding 16 bytes is within SaltString's 4..=64 byte bounds, and hashing a 28-byte
        // password with the default Argon2id parameters cannot fail: neither error is reachable.
        let salt = SaltString::encode_b64(&salt).expect("16-byte salt is in bounds");
        Argon2::default()
            .hash_password(self.0.expose().as_bytes(), &salt)
            .expect("default Argon2id parameters accept a 28-byte password")
            .to_string()
    }

    /// Whether this code is the one `phc` was made from. A malformed stored string matches nothing.
    pub fn verify(&self, phc: &str) -> bool {
        PasswordHash::new(phc).is_ok_and(|h| {
            Argon2::default()
                .verify_password(self.0.expose().as_bytes(), &h)
                .is_ok()
        })
    }

    /// The first of `stored` (id, PHC string) this code matches. Every entry is tried, matched or
    /// not, so the time taken depends on how many codes the user holds, not on which one matched.
    pub fn find<'a, T>(&self, stored: &'a [(T, String)]) -> Option<&'a T> {
        let mut found = None;
        for (id, phc) in stored {
            if self.verify(phc) && found.is_none() {
                found = Some(id);
            }
        }
        found
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn a_code_is_typable_in_seven_groups_and_parses_back_however_it_is_typed() {
        let mut rng = StdRng::seed_from_u64(7);
        let code = RecoveryCode::generate(&mut rng);
        let shown = code.expose_grouped();
        assert_eq!(shown.len(), 7 * 4 + 6);
        assert_eq!(shown.split('-').count(), 7);
        assert_eq!(RecoveryCode::parse(&shown), Some(code.clone()));
        let typed = format!(" {} ", shown.to_lowercase().replace('-', " "));
        assert_eq!(RecoveryCode::parse(&typed), Some(code.clone()));
        assert_eq!(RecoveryCode::parse(&shown.replace('-', "")), Some(code));
    }

    #[test]
    fn look_alike_letters_are_read_as_digits() {
        let ones = RecoveryCode::parse(&"1".repeat(28)).unwrap();
        assert_eq!(RecoveryCode::parse(&"iIlL".repeat(7)), Some(ones));
        let zeros = RecoveryCode::parse(&"0".repeat(28)).unwrap();
        assert_eq!(RecoveryCode::parse(&"oO".repeat(14)), Some(zeros));
    }

    #[test]
    fn malformed_codes_do_not_parse() {
        for bad in [
            "",
            "ABCD",
            &"A".repeat(27),
            &"A".repeat(29),
            &format!("{}U", "A".repeat(27)),
            &format!("{}é", "A".repeat(27)),
            &format!("{}_", "A".repeat(28)),
        ] {
            assert_eq!(RecoveryCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn codes_are_distinct_and_never_print_themselves() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = RecoveryCode::generate(&mut rng);
        let b = RecoveryCode::generate(&mut rng);
        assert_ne!(a, b);
        assert_eq!(format!("{a:?} {a}"), "*** ***");
    }

    #[test]
    fn a_stored_hash_is_argon2id_with_its_own_salt_and_matches_only_its_code() {
        let mut rng = StdRng::seed_from_u64(2);
        let code = RecoveryCode::generate(&mut rng);
        let other = RecoveryCode::generate(&mut rng);
        let h1 = code.hash(&mut rng);
        let h2 = code.hash(&mut rng);
        assert!(h1.starts_with("$argon2id$"), "{h1}");
        assert_ne!(h1, h2, "a fresh salt per hash");
        assert!(!h1.contains(code.0.expose()));
        assert!(code.verify(&h1) && code.verify(&h2));
        assert!(!other.verify(&h1));
        assert!(!code.verify("not a phc string"));
        let stored = vec![(1, other.hash(&mut rng)), (2, h1)];
        assert_eq!(code.find(&stored), Some(&2));
        assert_eq!(other.find(&stored), Some(&1));
        let stranger = RecoveryCode::generate(&mut rng);
        assert_eq!(stranger.find(&stored), None);
    }
}
