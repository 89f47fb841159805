//! Authenticator metadata from the FIDO Metadata Service (MDS3), after its BLOB's signature chain
//! was verified (`keyplane-webauthn`'s `mds` module), and what the policy reads from it.

use serde::{Deserialize, Serialize};

/// One authenticator model's entry in a verified MDS3 BLOB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdsEntry {
    /// Lowercase hyphenated AAGUID.
    pub aaguid: String,
    /// The metadata statement's `description` ("YubiKey 5 Series with NFC").
    pub description: String,
    /// `data:` URL of the vendor's icon, when the statement has one.
    pub icon: Option<String>,
    /// The status reports, oldest first, as the BLOB lists them.
    pub status_reports: Vec<StatusReport>,
    /// The statement's attestation root certificates (DER).
    #[serde(with = "der_list")]
    pub attestation_roots: Vec<Vec<u8>>,
    /// `attestationTypes` (`basic_full`, `attca`, `self_attestation`, ...).
    pub attestation_types: Vec<String>,
    /// `keyProtection` (`hardware`, `secure_element`, `software`, ...).
    pub key_protection: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `FIDO_CERTIFIED_L1`, `REVOKED`, `USER_VERIFICATION_BYPASS`, ...
    pub status: String,
    /// ISO 8601 date from which the status holds, when the report gives one.
    pub effective_date: Option<String>,
}

/// Status codes whose presence makes an authenticator model untrustworthy; the built-in policy
/// denies them all.
pub const COMPROMISE_STATUSES: &[&str] = &[
    "REVOKED",
    "USER_VERIFICATION_BYPASS",
    "ATTESTATION_KEY_COMPROMISE",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_KEY_PHYSICAL_COMPROMISE",
];

/// Every status code MDS3 defines.
pub const STATUSES: &[&str] = &[
    "NOT_FIDO_CERTIFIED",
    "FIDO_CERTIFIED",
    "USER_VERIFICATION_BYPASS",
    "ATTESTATION_KEY_COMPROMISE",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_KEY_PHYSICAL_COMPROMISE",
    "UPDATE_AVAILABLE",
    "REVOKED",
    "SELF_ASSERTION_SUBMITTED",
    "FIDO_CERTIFIED_L1",
    "FIDO_CERTIFIED_L1plus",
    "FIDO_CERTIFIED_L2",
    "FIDO_CERTIFIED_L2plus",
    "FIDO_CERTIFIED_L3",
    "FIDO_CERTIFIED_L3plus",
];

/// FIDO authenticator certification levels, in increasing strength.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CertificationLevel {
    L1,
    L1Plus,
    L2,
    L2Plus,
    L3,
    L3Plus,
}

impl CertificationLevel {
    pub const ALL: [CertificationLevel; 6] = [
        CertificationLevel::L1,
        CertificationLevel::L1Plus,
        CertificationLevel::L2,
        CertificationLevel::L2Plus,
        CertificationLevel::L3,
        CertificationLevel::L3Plus,
    ];

    /// `L1`, `L1plus`, ... as MDS spells them after `FIDO_CERTIFIED_`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificationLevel::L1 => "L1",
            CertificationLevel::L1Plus => "L1plus",
            CertificationLevel::L2 => "L2",
            CertificationLevel::L2Plus => "L2plus",
            CertificationLevel::L3 => "L3",
            CertificationLevel::L3Plus => "L3plus",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The level a status code certifies (`FIDO_CERTIFIED` is the old name of L1).
    pub fn of_status(status: &str) -> Option<Self> {
        match status {
            "FIDO_CERTIFIED" => Some(CertificationLevel::L1),
            s => s.strip_prefix("FIDO_CERTIFIED_").and_then(Self::parse),
        }
    }
}

impl MdsEntry {
    /// Every status the reports carry. Keyplane does not let a later `UPDATE_AVAILABLE` or
    /// certification clear an earlier compromise: it cannot see which firmware an authenticator
    /// runs, so a model that was once compromised stays suspect.
    pub fn statuses(&self) -> impl Iterator<Item = &str> {
        self.status_reports.iter().map(|r| r.status.as_str())
    }

    /// The highest certification level any report grants, unless the model was revoked.
    pub fn certification(&self) -> Option<CertificationLevel> {
        if self.statuses().any(|s| s == "REVOKED") {
            return None;
        }
        self.statuses()
            .filter_map(CertificationLevel::of_status)
            .max()
    }
}

/// A verified BLOB's header facts, kept with each import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdsBlobInfo {
    /// The BLOB's serial number (`no`); each update increments it.
    pub number: i64,
    /// `nextUpdate` (ISO 8601 date).
    pub next_update: String,
    pub entries: i64,
    /// SHA-256 of the BLOB as imported (hex).
    pub sha256: String,
    /// Subject of the certificate that signed the BLOB.
    pub signer: String,
    pub imported_at: crate::time::Timestamp,
}

mod der_list {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| STANDARD.encode(d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(statuses: &[&str]) -> MdsEntry {
        MdsEntry {
            aaguid: "ee882879-721c-4913-9775-3dfcce97072a".into(),
            description: "YubiKey 5".into(),
            icon: None,
            status_reports: statuses
                .iter()
                .map(|s| StatusReport {
                    status: s.to_string(),
                    effective_date: None,
                })
                .collect(),
            attestation_roots: vec![vec![0x30, 0x00]],
            attestation_types: vec!["basic_full".into()],
            key_protection: vec!["hardware".into()],
        }
    }

    #[test]
    fn certification_is_the_highest_level_granted() {
        assert_eq!(entry(&[]).certification(), None);
        assert_eq!(
            entry(&["FIDO_CERTIFIED"]).certification(),
            Some(CertificationLevel::L1)
        );
        assert_eq!(
            entry(&[
                "FIDO_CERTIFIED_L1",
                "FIDO_CERTIFIED_L2plus",
                "UPDATE_AVAILABLE"
            ])
            .certification(),
            Some(CertificationLevel::L2Plus)
        );
        assert_eq!(
            entry(&["FIDO_CERTIFIED_L3", "REVOKED"]).certification(),
            None
        );
        assert!(CertificationLevel::L1Plus < CertificationLevel::L2);
        assert_eq!(CertificationLevel::of_status("FIDO_CERTIFIED_L9"), None);
    }

    #[test]
    fn entries_round_trip_through_json() {
        let e = entry(&["FIDO_CERTIFIED_L1"]);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["attestation_roots"][0], "MAA=");
        assert_eq!(serde_json::from_value::<MdsEntry>(v).unwrap(), e);
    }
}
