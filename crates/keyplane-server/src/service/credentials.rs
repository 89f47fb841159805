//! Self-service management of one's own passkeys: list, rename, remove, and the recommendation
//! to keep a second one (the recovery path that needs no one else).

use super::App;
use keyplane_core::audit::{Caller, Outcome};
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

/// Advice shown to a user with fewer than two active passkeys: a second passkey is the
/// recommended way back from a lost device (sign in with the other, remove the lost one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRecommendation {
    pub active_passkeys: usize,
    /// Whether the active policy asks for two (`enrolment.require_two`).
    pub required_by_policy: bool,
}

impl App {
    /// `Some` when the user has fewer than two active passkeys.
    pub async fn passkey_recommendation(
        &self,
        tenant: &Tenant,
        user: &UserId,
    ) -> Result<Option<PasskeyRecommendation>, Error> {
        let active = self
            .store
            .list_credentials(&tenant.id, Some(user))
            .await?
            .iter()
            .filter(|c| c.status == CredentialStatus::Active)
            .count();
        if active >= 2 {
            return Ok(None);
        }
        let required_by_policy = self
            .active_policy(tenant)
            .await?
            .policy
            .enrolment
            .require_two;
        Ok(Some(PasskeyRecommendation {
            active_passkeys: active,
            required_by_policy,
        }))
    }

    /// The user's passkeys that are not revoked, oldest first.
    pub async fn my_credentials(
        &self,
        tenant: &Tenant,
        user: &UserId,
    ) -> Result<Vec<Credential>, Error> {
        let all = self.store.list_credentials(&tenant.id, Some(user)).await?;
        Ok(all
            .into_iter()
            .filter(|c| c.status != CredentialStatus::Revoked)
            .collect())
    }

    pub async fn my_credential(
        &self,
        tenant: &Tenant,
        user: &UserId,
        id: &CredentialRecordId,
    ) -> Result<Credential, Error> {
        self.store
            .credential_by_id(&tenant.id, id)
            .await?
            .filter(|c| &c.user_id == user && c.status != CredentialStatus::Revoked)
            .ok_or_else(|| {
                Error::not_found("credential_not_found", "no such passkey on your account")
            })
    }

    pub async fn rename_my_credential(
        &self,
        tenant: &Tenant,
        user: &UserId,
        id: &CredentialRecordId,
        nickname: &str,
        caller: &Caller,
    ) -> Result<Credential, Error> {
        let nickname = normalise_nickname(nickname)?;
        let before = self.my_credential(tenant, user, id).await?;
        let event = caller
            .event("credential.renamed", "credential", id.as_str())
            .details(json!({ "user": user, "from": before.nickname, "to": nickname }));
        if !self
            .store
            .rename_credential(
                &tenant.id,
                user,
                id,
                &nickname,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::not_found(
                "credential_not_found",
                "no such passkey on your account",
            ));
        }
        self.my_credential(tenant, user, id).await
    }

    /// Removes (revokes) one of the user's passkeys. The last active passkey cannot be removed:
    /// that would lock the user out with no governed way back in.
    pub async fn remove_my_credential(
        &self,
        tenant: &Tenant,
        user: &UserId,
        id: &CredentialRecordId,
        caller: &Caller,
    ) -> Result<(), Error> {
        let target = self.my_credential(tenant, user, id).await?;
        let others_active = self
            .my_credentials(tenant, user)
            .await?
            .iter()
            .filter(|c| c.id != target.id && c.status == CredentialStatus::Active)
            .count();
        if target.status == CredentialStatus::Active && others_active == 0 {
            return Err(Error::conflict(
                "last_credential",
                "this is your only active passkey; add another before removing it",
            ));
        }
        self.store
            .set_credential_status(
                &tenant.id,
                &target.id,
                CredentialStatus::Revoked,
                "removed_by_user",
                AuditBatch::new(
                    self.clock.now(),
                    &[caller
                        .event("credential.revoked", "credential", target.id.as_str())
                        .outcome(Outcome::Success, "removed_by_user")
                        .details(json!({ "user": user, "nickname": target.nickname }))],
                ),
            )
            .await?;
        Ok(())
    }
}
