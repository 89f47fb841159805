//! Marking a passkey lost (issue 7): it is revoked, its sessions end and `credential.lost` is
//! recorded (the event the notifications outbox turns into a message to the user, through
//! `details.user_id`). Whether the user must re-enrol depends on what they still hold: with
//! another active passkey they sign in with it as usual and adding a new one is *recommended*
//! (the self-service path, policy `enrolment.require_two`); with none left, re-enrolment is
//! *required*, and their way back is a recovery path whose restricted session may only enrol.

use super::{check_reason, App};
use keyplane_core::audit::Caller;
use keyplane_core::*;
use serde_json::json;

/// What marking a passkey lost did.
#[derive(Clone, Debug)]
pub struct LostCredential {
    pub credential: Credential,
    /// `recommended` (the user still has an active passkey) or `required` (none left).
    pub re_enrolment: &'static str,
    /// The user's active passkeys after the revocation.
    pub other_active_passkeys: u64,
}

impl App {
    /// Marks a passkey lost: revokes it (from active or suspended), ends its sessions and records
    /// `credential.lost` with `details.user_id`; when the user has no active passkey left, also
    /// requires re-enrolment (`user.re_enrolment_required`), all in one transaction. A revoked
    /// passkey is `409 invalid_transition` and nothing is recorded.
    pub async fn mark_credential_lost(
        &self,
        tenant: &Tenant,
        id: &CredentialRecordId,
        reason: &str,
        caller: &Caller,
    ) -> Result<LostCredential, Error> {
        let reason = check_reason(reason)?;
        let current = self.credential_by_id(tenant, id).await?;
        let catalogue = self.catalogue().await?;
        let model = catalogue.name(&current.aaguid).map(|n| n.name);
        let why = format!("passkey {id} was marked lost: {reason}");
        let decide = |others: u64| {
            let required = others == 0;
            let mut events = vec![caller
                .event("credential.lost", "credential", id.as_str())
                .details(json!({
                    "user_id": current.user_id,
                    "from": current.status.as_str(),
                    "reason": reason,
                    "nickname": current.nickname,
                    "aaguid": current.aaguid,
                    "model": model,
                    "other_active_passkeys": others,
                    "re_enrolment": if required { "required" } else { "recommended" },
                }))];
            if required {
                events.push(
                    caller
                        .event(
                            "user.re_enrolment_required",
                            "user",
                            current.user_id.as_str(),
                        )
                        .details(json!({ "reason": why, "credential_lost": id })),
                );
            }
            (required.then(|| why.clone()), events)
        };
        let Some(others) = self
            .store
            .mark_credential_lost(
                &tenant.id,
                id,
                &format!("lost: {reason}"),
                self.clock.now(),
                &decide,
            )
            .await?
        else {
            return Err(Error::conflict(
                "invalid_transition",
                "the credential is revoked; it cannot be marked lost",
            ));
        };
        Ok(LostCredential {
            credential: self.credential_by_id(tenant, id).await?,
            re_enrolment: if others == 0 {
                "required"
            } else {
                "recommended"
            },
            other_active_passkeys: others,
        })
    }
}
