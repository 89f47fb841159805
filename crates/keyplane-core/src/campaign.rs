//! Re-enrolment campaigns: every user holding an active passkey of one authenticator model
//! (an AAGUID) is asked to register a passkey of another model, because the model was
//! compromised (a FIDO MDS status) or an administrator decided so. One open campaign per model
//! and tenant.

use crate::ids::{CampaignId, TenantId};
use crate::time::Timestamp;
use serde::Serialize;

/// What starting a campaign does to the model's passkeys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignAction {
    /// The passkeys stay usable; their users must register a passkey of another model at their
    /// next sign-in (a restricted session).
    ReEnrol,
    /// The passkeys are revoked at once (their sessions end); their users re-enrol with another
    /// passkey or through recovery.
    Revoke,
}

impl CampaignAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignAction::ReEnrol => "re_enrol",
            CampaignAction::Revoke => "revoke",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "re_enrol" => Some(CampaignAction::ReEnrol),
            "revoke" => Some(CampaignAction::Revoke),
            _ => None,
        }
    }
}

/// A campaign as stored. Progress beyond `marked` (who re-enrolled) is computed from the live
/// credentials when asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub tenant_id: TenantId,
    /// Lowercase hyphenated AAGUID of the model.
    pub aaguid: String,
    pub action: CampaignAction,
    pub reason: String,
    /// `admin` (started by an administrator) or `mds` (by an MDS import's compromise status).
    pub source: String,
    /// `open` or `closed`.
    pub status: String,
    /// Users holding an active passkey of the model when the campaign started.
    pub affected: i64,
    /// Users marked for re-enrolment so far (equal to `affected` once the start has finished).
    pub marked: i64,
    pub started_by: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub started_at: Timestamp,
    pub closed_by: Option<String>,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub closed_at: Option<Timestamp>,
    pub close_note: Option<String>,
}

impl Campaign {
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }
}

/// The re-enrolment reason a campaign sets on its users: names the campaign, so that a user's
/// restricted session (and the admin API) says why.
pub fn re_enrol_reason(id: &CampaignId, reason: &str) -> String {
    format!("campaign {id}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_unknown_ones_are_refused() {
        for a in [CampaignAction::ReEnrol, CampaignAction::Revoke] {
            assert_eq!(CampaignAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(CampaignAction::parse("suspend"), None);
        assert_eq!(CampaignAction::parse("RE_ENROL"), None);
    }
}
