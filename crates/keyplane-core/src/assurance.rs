//! Assurance: which level (`aal1`/`aal2`/`aal3`) a sign-in reached and which authentication
//! methods (`amr`, RFC 8176) it used. Until policy lands, the rules are the built-in ones:
//! user verified → aal2, user present only → aal1. aal3 needs trusted attestation (policy).

use serde::{Deserialize, Serialize};

/// Authenticator assurance level, after NIST SP 800-63B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aal {
    Aal1,
    Aal2,
    Aal3,
}

impl Aal {
    pub fn as_str(self) -> &'static str {
        match self {
            Aal::Aal1 => "aal1",
            Aal::Aal2 => "aal2",
            Aal::Aal3 => "aal3",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aal1" => Some(Aal::Aal1),
            "aal2" => Some(Aal::Aal2),
            "aal3" => Some(Aal::Aal3),
            _ => None,
        }
    }
}

/// Authentication method reference values (RFC 8176) Keyplane reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Amr {
    /// Proof of possession of a key.
    Pop,
    /// A user presence test.
    User,
    /// Multiple factors: the key plus user verification (PIN or biometric) on the authenticator.
    Mfa,
    /// A hardware-secured key: the passkey cannot leave its authenticator (not backup eligible).
    Hwk,
    /// A software-secured key: a synced passkey (backup eligible), copied by its provider.
    Swk,
}

impl Amr {
    pub fn as_str(self) -> &'static str {
        match self {
            Amr::Pop => "pop",
            Amr::User => "user",
            Amr::Mfa => "mfa",
            Amr::Hwk => "hwk",
            Amr::Swk => "swk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pop" => Some(Amr::Pop),
            "user" => Some(Amr::User),
            "mfa" => Some(Amr::Mfa),
            "hwk" => Some(Amr::Hwk),
            "swk" => Some(Amr::Swk),
            _ => None,
        }
    }
}

/// What a verified assertion proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssuranceFacts {
    pub user_present: bool,
    pub user_verified: bool,
    /// The credential may be synced (the BE flag): a software-secured key, else a hardware one.
    pub backup_eligible: bool,
}

/// The level and methods a verified assertion reaches under the built-in rules.
pub fn assess(facts: AssuranceFacts) -> (Aal, Vec<Amr>) {
    let mut amr = vec![
        Amr::Pop,
        if facts.backup_eligible {
            Amr::Swk
        } else {
            Amr::Hwk
        },
    ];
    if facts.user_present {
        amr.push(Amr::User);
    }
    if facts.user_verified {
        amr.push(Amr::Mfa);
        (Aal::Aal2, amr)
    } else {
        (Aal::Aal1, amr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_verification_reaches_aal2() {
        let (aal, amr) = assess(AssuranceFacts {
            user_present: true,
            user_verified: true,
            backup_eligible: false,
        });
        assert_eq!(aal, Aal::Aal2);
        assert_eq!(amr, vec![Amr::Pop, Amr::Hwk, Amr::User, Amr::Mfa]);
    }

    #[test]
    fn presence_alone_is_aal1() {
        let (aal, amr) = assess(AssuranceFacts {
            user_present: true,
            user_verified: false,
            backup_eligible: true,
        });
        assert_eq!(aal, Aal::Aal1);
        assert!(!amr.contains(&Amr::Mfa));
        assert!(
            amr.contains(&Amr::Swk),
            "a synced passkey is a software-secured key"
        );
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Aal::Aal1 < Aal::Aal2 && Aal::Aal2 < Aal::Aal3);
        assert_eq!(Aal::parse("aal2"), Some(Aal::Aal2));
        assert_eq!(Aal::parse("AAL2"), None);
    }
}
