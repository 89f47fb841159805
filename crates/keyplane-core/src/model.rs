//! The records Keyplane keeps: tenants, users, credentials, ceremonies, sessions, enrolments.
//! Plain data; the rules that act on them live beside them in small pure functions.

use crate::assurance::{Aal, Amr};
use crate::ids::*;
use crate::secret::TokenHash;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One authentication domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    /// Short unique name used by the CLI (`--tenant`).
    pub name: String,
    /// WebAuthn relying-party id (a registrable domain, or `localhost`).
    pub rp_id: String,
    /// Name shown by authenticators.
    pub rp_name: String,
    /// Origins accepted in `clientDataJSON.origin`.
    pub origins: Vec<String>,
    /// Host names (without port) that route HTTP requests to this tenant.
    pub hostnames: Vec<String>,
    pub created_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Suspended,
    Deprovisioned,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Deprovisioned => "deprovisioned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "suspended" => Some(UserStatus::Suspended),
            "deprovisioned" => Some(UserStatus::Deprovisioned),
            _ => None,
        }
    }
}

/// A user account. The WebAuthn user handle is random bytes, never derived from the username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub username: String,
    pub display_name: String,
    pub user_handle: Vec<u8>,
    pub status: UserStatus,
    /// Administrative role, if any (`owner` for the bootstrap administrator).
    pub role: Option<String>,
    pub created_at: Timestamp,
    /// An administrator forced re-enrolment: why. The next sign-in gives a session that may only
    /// register a compliant passkey; registering one clears it.
    pub re_enrol_reason: Option<String>,
    /// Where notifications go (issue 7): set by an administrator, who vouches for it; `None`
    /// means no email is sent (other sinks still get the notice).
    pub contact_email: Option<String>,
}

/// Length of a user handle in bytes (WebAuthn allows up to 64).
pub const USER_HANDLE_BYTES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    Active,
    Suspended,
    Revoked,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "active",
            CredentialStatus::Suspended => "suspended",
            CredentialStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(CredentialStatus::Active),
            "suspended" => Some(CredentialStatus::Suspended),
            "revoked" => Some(CredentialStatus::Revoked),
            _ => None,
        }
    }
}

/// A registered passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub id: CredentialRecordId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    /// The authenticator-chosen credential id (rawId).
    pub credential_id: Vec<u8>,
    /// The credential public key, COSE-encoded, as the authenticator sent it.
    pub public_key: Vec<u8>,
    pub sign_count: u32,
    /// AAGUID as a lowercase hyphenated UUID (all zeros when the authenticator hides it).
    pub aaguid: String,
    pub transports: Vec<String>,
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// Attestation statement format (`none`, `packed`, `tpm`, ...).
    pub attestation_format: String,
    /// What the attestation statement proved: `basic`, `self`, `attca`, `anonca`, `none`, or
    /// `unverifiable` (a format the WebAuthn library cannot judge; nothing in it is trusted).
    pub attestation_type: String,
    /// Whether the user was verified (UV flag) at registration.
    pub user_verified: bool,
    /// Whether the attestation chained to a trusted root (FIDO MDS or the policy's own roots)
    /// when it was registered.
    pub attestation_trusted: bool,
    pub nickname: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub status: CredentialStatus,
    pub status_reason: Option<String>,
    /// The WebAuthn library's own serialised view of the credential (opaque to everything but the
    /// webauthn adapter).
    pub library_state: String,
}

/// Why a ceremony was started. A ceremony can only be finished for the purpose it began with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeremonyPurpose {
    /// Registering a passkey from an enrolment invitation.
    Enrolment,
    /// Registering an additional passkey from a signed-in session.
    AddCredential,
    /// Signing in.
    SignIn,
    /// Raising a signed-in session's level.
    StepUp,
}

impl CeremonyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyPurpose::Enrolment => "enrolment",
            CeremonyPurpose::AddCredential => "add_credential",
            CeremonyPurpose::SignIn => "sign_in",
            CeremonyPurpose::StepUp => "step_up",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enrolment" => Some(CeremonyPurpose::Enrolment),
            "add_credential" => Some(CeremonyPurpose::AddCredential),
            "sign_in" => Some(CeremonyPurpose::SignIn),
            "step_up" => Some(CeremonyPurpose::StepUp),
            _ => None,
        }
    }

    pub fn is_registration(self) -> bool {
        matches!(
            self,
            CeremonyPurpose::Enrolment | CeremonyPurpose::AddCredential
        )
    }
}

/// An in-flight ceremony, as stored between its options and its verify request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ceremony {
    pub id: CeremonyId,
    pub tenant_id: TenantId,
    pub purpose: CeremonyPurpose,
    /// The user the ceremony is bound to, when known at start.
    pub user_id: Option<UserId>,
    /// The enrolment invitation that authorised a registration ceremony.
    pub enrolment_id: Option<EnrolmentId>,
    /// The webauthn library's serialised state (challenge, policy, allowed credentials).
    pub state: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// For a step-up: the session it elevates and the level it is for.
    pub session_id: Option<SessionId>,
    pub level: Option<Aal>,
}

impl Ceremony {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

/// A signed-in session. Only the hash of its token is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub token_hash: TokenHash,
    pub aal: Aal,
    pub amr: Vec<Amr>,
    pub auth_time: Timestamp,
    /// The credential the user signed in with.
    pub credential_id: Option<CredentialRecordId>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// A higher level reached later by step-up, and when.
    pub elevated: Option<(Aal, Timestamp)>,
    /// Set when the passkey used no longer complies with the policy: why. Such a session may
    /// only register a compliant passkey (and read its account, and sign out).
    pub restricted: Option<String>,
    /// Idle timeout (from the policy at sign-in), seconds; 0 = none.
    pub idle_secs: i64,
    /// When the session was last used (kept to the minute).
    pub last_seen_at: Timestamp,
    /// Opened by a recovery path (`code:<id>`, `case:<id>`) rather than a passkey: it is also
    /// `restricted`, and it ends when it has registered a passkey.
    pub recovery: Option<String>,
}

impl Session {
    /// Past its lifetime, or unused for longer than its idle timeout.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
            || (self.idle_secs > 0 && now.0 - self.last_seen_at.0 >= self.idle_secs * 1000)
    }
}

/// A single-use invitation to register a first passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolment {
    pub id: EnrolmentId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub token_hash: TokenHash,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

impl Enrolment {
    /// An invitation can start a ceremony while it is unused and unexpired.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

/// What a nickname may be: what people type, trimmed, without control characters.
pub fn normalise_nickname(raw: &str) -> Result<String, crate::Error> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 64 || trimmed.chars().any(char::is_control) {
        return Err(crate::Error::invalid(
            "invalid_nickname",
            "a nickname is 1 to 64 printable characters",
        ));
    }
    Ok(trimmed.to_string())
}

/// What a username may be: 1-128 characters, no control characters or surrounding spaces;
/// compared case-insensitively (stored lowercased).
pub fn normalise_username(raw: &str) -> Result<String, crate::Error> {
    let trimmed = raw.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > 128
        || trimmed.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(crate::Error::invalid(
            "invalid_username",
            "a username is 1 to 128 characters without spaces or control characters",
        ));
    }
    Ok(trimmed.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_is_usable_once_and_before_expiry() {
        let mut e = Enrolment {
            id: EnrolmentId::generate(),
            tenant_id: TenantId::generate(),
            user_id: UserId::generate(),
            token_hash: TokenHash(vec![1]),
            created_at: Timestamp(0),
            expires_at: Timestamp(1000),
            used_at: None,
        };
        assert!(e.is_usable(Timestamp(999)));
        assert!(!e.is_usable(Timestamp(1000)));
        e.used_at = Some(Timestamp(5));
        assert!(!e.is_usable(Timestamp(10)));
    }

    #[test]
    fn usernames_are_normalised_and_checked() {
        assert_eq!(
            normalise_username("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert!(normalise_username("").is_err());
        assert!(normalise_username("a b").is_err());
        assert!(normalise_username("a\u{0}").is_err());
        assert!(normalise_username(&"x".repeat(129)).is_err());
    }

    #[test]
    fn nicknames_are_bounded() {
        assert_eq!(normalise_nickname(" Work laptop ").unwrap(), "Work laptop");
        assert!(normalise_nickname("   ").is_err());
        assert!(normalise_nickname(&"x".repeat(65)).is_err());
        assert!(normalise_nickname("a\nb").is_err());
    }

    #[test]
    fn purposes_round_trip() {
        for p in [
            CeremonyPurpose::Enrolment,
            CeremonyPurpose::AddCredential,
            CeremonyPurpose::SignIn,
        ] {
            assert_eq!(CeremonyPurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(CeremonyPurpose::parse("step_up_admin"), None);
    }
}

/// Where a request for approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a second administrator.
    Requested,
    /// Approved, and the act was carried out.
    Approved,
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Approved, but the act could not be carried out (the note says why).
    Failed,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Requested => "requested",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ApprovalStatus::Requested,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::Expired,
            ApprovalStatus::Failed,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// Dual control: a sensitive act one administrator asked for, waiting for (or decided by)
/// another. The act is described by `action` and carried out from `payload` once approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub tenant_id: TenantId,
    /// The act (`policy.apply`, `policy.rollback`, ...).
    pub action: String,
    /// What the act needs to run (JSON; never a secret).
    pub payload: serde_json::Value,
    /// One line for the approver.
    pub summary: String,
    /// Actor id of the requester.
    pub requested_by: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub requested_at: Timestamp,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub decided_at: Option<Timestamp>,
    pub note: Option<String>,
}

impl Approval {
    /// The status as of `now` (a request past its expiry is expired whether or not the row says so).
    pub fn status_at(&self, now: Timestamp) -> ApprovalStatus {
        if self.status == ApprovalStatus::Requested && now >= self.expires_at {
            ApprovalStatus::Expired
        } else {
            self.status
        }
    }
}

/// A signal that an authenticator may be cloned or misused, opened with the credential's
/// suspension and resolved by an administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FraudAlert {
    pub id: FraudAlertId,
    pub tenant_id: TenantId,
    /// `sign_count_regression`, ...
    pub kind: String,
    pub user_id: UserId,
    pub credential_id: Option<CredentialRecordId>,
    /// `open` or `resolved`.
    pub status: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub opened_at: Timestamp,
    pub details: serde_json::Value,
    pub resolved_by: Option<String>,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub resolved_at: Option<Timestamp>,
    /// `revoke` (the credential is revoked) or `reactivate` (a false alarm).
    pub resolution: Option<String>,
    pub note: Option<String>,
}

/// Who an exception covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum ExceptionSubject {
    User(UserId),
    Population(String),
}

/// A governed, time-boxed departure from one rule of the policy, granted by a second
/// administrator's approval. Decisions that rely on it cite its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyException {
    pub id: ExceptionId,
    pub tenant_id: TenantId,
    pub subject: ExceptionSubject,
    /// The rule path it waives (`authenticators.regulated.synced`), as decisions name it.
    pub rule: String,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
    pub approval_id: ApprovalId,
    /// `active`, `revoked` or `expired` (see [`PolicyException::status_at`]).
    pub status: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
    /// When its coming expiry was announced (`exception.expiring`).
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub announced_at: Option<Timestamp>,
    pub ended_by: Option<String>,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub ended_at: Option<Timestamp>,
}

impl PolicyException {
    pub fn status_at(&self, now: Timestamp) -> &str {
        if self.status == "active" && now >= self.expires_at {
            "expired"
        } else {
            &self.status
        }
    }

    pub fn is_active(&self, now: Timestamp) -> bool {
        self.status_at(now) == "active"
    }

    /// Whether it covers a user with these populations.
    pub fn covers(&self, user: &UserId, populations: &[String]) -> bool {
        match &self.subject {
            ExceptionSubject::User(u) => u == user,
            ExceptionSubject::Population(p) => populations.contains(p),
        }
    }
}

/// A bulk action's progress: credentials are visited in id order, so `last_credential` is
/// where an interrupted job resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BulkJob {
    pub id: BulkJobId,
    pub tenant_id: TenantId,
    /// `suspend`, `revoke` or `reactivate`.
    pub action: String,
    pub filter: serde_json::Value,
    pub reason: String,
    /// Matching credentials when the job started.
    pub total: i64,
    pub done: i64,
    pub last_credential: Option<CredentialRecordId>,
    /// `running`, `completed`.
    pub status: String,
    pub created_by: String,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub finished_at: Option<Timestamp>,
}
