//! Wire shapes of the JSON API. Requests are strict (unknown fields are refused); responses are
//! built from domain values here and nowhere else.

use crate::service::Catalogue;
use keyplane_core::{Credential, Session, User};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationOptionsRequest {
    /// The token from an enrolment link; absent = add a passkey to the signed-in account.
    pub enrolment_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationVerifyRequest {
    pub ceremony: String,
    /// `PublicKeyCredential.toJSON()` of the created credential.
    pub credential: Value,
    pub nickname: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationOptionsRequest {
    /// Absent = usernameless (discoverable credentials, conditional mediation).
    pub username: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationVerifyRequest {
    pub ceremony: String,
    /// `PublicKeyCredential.toJSON()` of the assertion.
    pub credential: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameCredentialRequest {
    pub nickname: String,
}

/// A credential as the API shows it, with its authenticator model's name when the catalogue
/// knows it (FIDO MDS, else the unsigned name list).
pub fn credential_json(c: &Credential, catalogue: &Catalogue) -> Value {
    json!({
        "id": c.id,
        "nickname": c.nickname,
        "aaguid": c.aaguid,
        "authenticator": catalogue.name(&c.aaguid),
        "attestation_trusted": c.attestation_trusted,
        "attestation_format": c.attestation_format,
        "attestation_type": c.attestation_type,
        "transports": c.transports,
        "backup_eligible": c.backup_eligible,
        "backup_state": c.backup_state,
        "user_verified": c.user_verified,
        "sign_count": c.sign_count,
        "status": c.status.as_str(),
        "status_reason": c.status_reason,
        "created_at": c.created_at.to_rfc3339(),
        "last_used_at": c.last_used_at.map(|t| t.to_rfc3339()),
    })
}

/// The nickname of passkey `id` among a user's own `creds`, if it is still there (sessions and
/// sign-ins name the passkey they were opened with).
pub fn passkey_nickname(
    creds: &[Credential],
    id: Option<&keyplane_core::CredentialRecordId>,
) -> Option<String> {
    id.and_then(|id| creds.iter().find(|c| &c.id == id))
        .map(|c| c.nickname.clone())
}

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "status": u.status.as_str(),
        "role": u.role,
        "contact_email": u.contact_email,
    })
}

/// An outbox row as operators see it (never a secret: the outbox holds none).
pub fn notification_json(n: &keyplane_core::Notification) -> Value {
    json!({
        "id": n.id,
        "user_id": n.user_id,
        "kind": n.kind,
        "event_seq": n.event_seq,
        "event_id": n.event_id,
        "created_at": n.created_at.to_rfc3339(),
        "status": n.status.as_str(),
        "attempts": n.attempts,
        "next_attempt_at": n.next_attempt_at.to_rfc3339(),
        "last_error": n.last_error,
        "sent_at": n.sent_at.map(|t| t.to_rfc3339()),
        "deliveries": n.deliveries,
        "payload": n.payload,
    })
}

pub fn session_json(s: &Session) -> Value {
    json!({
        "aal": s.aal.as_str(),
        "amr": s.amr.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "auth_time": s.auth_time.unix_seconds(),
        "expires_at": s.expires_at.to_rfc3339(),
        "elevated": s.elevated.map(|(aal, at)| json!({ "aal": aal.as_str(), "at": at.to_rfc3339() })),
        "restricted": s.restricted.is_some(),
        "re_enrolment_reason": s.restricted,
        "recovery": s.recovery.is_some(),
    })
}
