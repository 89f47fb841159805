//! Credential and user lifecycle for administrators: suspend, reactivate and revoke passkeys
//! with a reason; force re-enrolment; suspend, reactivate and deprovision users; roles; fraud
//! alerts. Every change is one conditional store call with its event, so a change that does not
//! apply (already revoked, another admin first) records nothing and says so.

use super::App;
use keyplane_core::admin::Role;
use keyplane_core::audit::Caller;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

/// A reason an administrator gives: 1–500 characters, no control characters.
pub fn check_reason(reason: &str) -> Result<String, Error> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > 500 || r.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_reason",
            "give a reason of 1-500 characters (no control characters)",
        ));
    }
    Ok(r.to_string())
}

impl App {
    pub async fn user_by_id(&self, tenant: &Tenant, id: &UserId) -> Result<User, Error> {
        self.store
            .user_by_id(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("user_not_found", "no such user in this tenant"))
    }

    pub async fn credential_by_id(
        &self,
        tenant: &Tenant,
        id: &CredentialRecordId,
    ) -> Result<Credential, Error> {
        self.store
            .credential_by_id(&tenant.id, id)
            .await?
            .ok_or_else(|| {
                Error::not_found("credential_not_found", "no such credential in this tenant")
            })
    }

    #[allow(clippy::too_many_arguments)]
    async fn move_credential(
        &self,
        tenant: &Tenant,
        id: &CredentialRecordId,
        from: &[CredentialStatus],
        to: CredentialStatus,
        action: &'static str,
        reason: &str,
        caller: &Caller,
    ) -> Result<Credential, Error> {
        let reason = check_reason(reason)?;
        let current = self.credential_by_id(tenant, id).await?;
        let event = caller
            .event(action, "credential", id.as_str())
            .details(json!({
                "user": current.user_id,
                "from": current.status.as_str(),
                "reason": reason,
            }));
        let moved = self
            .store
            .change_credential_status(
                &tenant.id,
                id,
                from,
                to,
                &reason,
                to != CredentialStatus::Active,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?;
        if !moved {
            return Err(Error::conflict(
                "invalid_transition",
                format!(
                    "the credential is {}; it cannot be {}",
                    current.status.as_str(),
                    action.trim_start_matches("credential.")
                ),
            ));
        }
        self.credential_by_id(tenant, id).await
    }

    /// Suspends an active credential (ending its sessions): `credential.suspended`.
    pub async fn suspend_credential(
        &self,
        tenant: &Tenant,
        id: &CredentialRecordId,
        reason: &str,
        caller: &Caller,
    ) -> Result<Credential, Error> {
        self.move_credential(
            tenant,
            id,
            &[CredentialStatus::Active],
            CredentialStatus::Suspended,
            "credential.suspended",
            reason,
            caller,
        )
        .await
    }

    /// Makes a suspended credential usable again: `credential.reactivated`. A credential with an
    /// open fraud alert is reactivated by resolving the alert instead.
    pub async fn reactivate_credential(
        &self,
        tenant: &Tenant,
        id: &CredentialRecordId,
        reason: &str,
        caller: &Caller,
    ) -> Result<Credential, Error> {
        let open_alert = self
            .store
            .list_fraud_alerts(&tenant.id)
            .await?
            .into_iter()
            .find(|a| a.status == "open" && a.credential_id.as_ref() == Some(id));
        if let Some(a) = open_alert {
            return Err(Error::conflict(
                "fraud_alert_open",
                format!(
                    "fraud alert {} is open for this credential: resolve it",
                    a.id
                ),
            ));
        }
        self.move_credential(
            tenant,
            id,
            &[CredentialStatus::Suspended],
            CredentialStatus::Active,
            "credential.reactivated",
            reason,
            caller,
        )
        .await
    }

    /// Revokes a credential for good (ending its sessions): `credential.revoked`.
    pub async fn revoke_credential(
        &self,
        tenant: &Tenant,
        id: &CredentialRecordId,
        reason: &str,
        caller: &Caller,
    ) -> Result<Credential, Error> {
        self.move_credential(
            tenant,
            id,
            &[CredentialStatus::Active, CredentialStatus::Suspended],
            CredentialStatus::Revoked,
            "credential.revoked",
            reason,
            caller,
        )
        .await
    }

    /// Ends the user's sessions; their next sign-in may only register a compliant passkey.
    pub async fn force_re_enrolment(
        &self,
        tenant: &Tenant,
        user: &UserId,
        reason: &str,
        caller: &Caller,
    ) -> Result<User, Error> {
        let reason = check_reason(reason)?;
        let u = self.user_by_id(tenant, user).await?;
        let event = caller
            .event("user.re_enrolment_required", "user", u.id.as_str())
            .details(json!({ "reason": reason }));
        self.store
            .set_re_enrolment(
                &tenant.id,
                &u.id,
                Some(&reason),
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?;
        self.user_by_id(tenant, user).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn move_user(
        &self,
        tenant: &Tenant,
        user: &UserId,
        from: &[UserStatus],
        to: UserStatus,
        action: &'static str,
        reason: &str,
        caller: &Caller,
    ) -> Result<User, Error> {
        let reason = check_reason(reason)?;
        let u = self.user_by_id(tenant, user).await?;
        if caller.actor.id == u.id.as_str() && to != UserStatus::Active {
            return Err(Error::forbidden(
                "self_lockout",
                "administrators cannot suspend or deprovision themselves",
            ));
        }
        if to != UserStatus::Active && u.role.as_deref() == Some("owner") {
            self.keep_an_owner(tenant, &u.id).await?;
        }
        let revoke = to == UserStatus::Deprovisioned
            && self
                .active_policy(tenant)
                .await?
                .policy
                .governance
                .deprovision_revokes_credentials;
        let event = caller.event(action, "user", u.id.as_str()).details(json!({
            "from": u.status.as_str(),
            "reason": reason,
            "credentials_revoked": revoke,
        }));
        if !self
            .store
            .change_user_status(
                &tenant.id,
                &u.id,
                from,
                to,
                revoke,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "invalid_transition",
                format!(
                    "the user is {}; it cannot be {}",
                    u.status.as_str(),
                    action.trim_start_matches("user.")
                ),
            ));
        }
        self.user_by_id(tenant, user).await
    }

    /// Suspends a user, ending every session at once: `user.suspended`.
    pub async fn suspend_user(
        &self,
        tenant: &Tenant,
        user: &UserId,
        reason: &str,
        caller: &Caller,
    ) -> Result<User, Error> {
        self.move_user(
            tenant,
            user,
            &[UserStatus::Active],
            UserStatus::Suspended,
            "user.suspended",
            reason,
            caller,
        )
        .await
    }

    /// `user.reactivated` (from suspended or deprovisioned; revoked passkeys stay revoked).
    pub async fn reactivate_user(
        &self,
        tenant: &Tenant,
        user: &UserId,
        reason: &str,
        caller: &Caller,
    ) -> Result<User, Error> {
        self.move_user(
            tenant,
            user,
            &[UserStatus::Suspended, UserStatus::Deprovisioned],
            UserStatus::Active,
            "user.reactivated",
            reason,
            caller,
        )
        .await
    }

    /// Deprovisions a user: sessions end; passkeys are revoked or kept per the policy's
    /// `governance.deprovision`: `user.deprovisioned`.
    pub async fn deprovision_user(
        &self,
        tenant: &Tenant,
        user: &UserId,
        reason: &str,
        caller: &Caller,
    ) -> Result<User, Error> {
        self.move_user(
            tenant,
            user,
            &[UserStatus::Active, UserStatus::Suspended],
            UserStatus::Deprovisioned,
            "user.deprovisioned",
            reason,
            caller,
        )
        .await
    }

    /// Refuses a change that would leave the tenant without another active owner.
    async fn keep_an_owner(&self, tenant: &Tenant, leaving: &UserId) -> Result<(), Error> {
        let others = self
            .store
            .list_users(&tenant.id)
            .await?
            .iter()
            .filter(|o| {
                &o.id != leaving
                    && o.role.as_deref() == Some("owner")
                    && o.status == UserStatus::Active
            })
            .count();
        if others == 0 {
            return Err(Error::conflict(
                "last_owner",
                "a tenant keeps at least one active owner: make another user owner first",
            ));
        }
        Ok(())
    }

    /// Gives (or with `None` takes away) a user's role: `user.role_changed`. The last owner
    /// keeps the role.
    pub async fn set_role(
        &self,
        tenant: &Tenant,
        user: &UserId,
        role: Option<Role>,
        caller: &Caller,
    ) -> Result<User, Error> {
        let u = self.user_by_id(tenant, user).await?;
        if u.role.as_deref() == Some("owner") && role != Some(Role::Owner) {
            self.keep_an_owner(tenant, &u.id).await?;
        }
        let event = caller
            .event("user.role_changed", "user", u.id.as_str())
            .details(json!({ "from": u.role, "to": role.map(|r| r.as_str()) }));
        self.store
            .set_user_role(
                &tenant.id,
                &u.id,
                role.map(|r| r.as_str()),
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?;
        self.user_by_id(tenant, user).await
    }

    /// Opens a fraud alert and suspends the credential (ending its sessions), atomically:
    /// `credential.suspended` and `fraud.alert_opened`.
    pub(crate) async fn open_fraud_alert(
        &self,
        tenant: &Tenant,
        credential: &Credential,
        kind: &str,
        details: serde_json::Value,
        caller: &Caller,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let alert = FraudAlert {
            id: FraudAlertId::generate(),
            tenant_id: tenant.id.clone(),
            kind: kind.to_string(),
            user_id: credential.user_id.clone(),
            credential_id: Some(credential.id.clone()),
            status: "open".into(),
            opened_at: now,
            details: details.clone(),
            resolved_by: None,
            resolved_at: None,
            resolution: None,
            note: None,
        };
        let events = [
            caller
                .event_as(
                    keyplane_core::audit::Actor::system("fraud"),
                    "credential.suspended",
                    "credential",
                    credential.id.as_str(),
                )
                .outcome(keyplane_core::audit::Outcome::Success, kind)
                .details(json!({
                    "user": credential.user_id,
                    "reason": kind,
                    "alert": alert.id,
                    "signal": details,
                })),
            caller
                .event_as(
                    keyplane_core::audit::Actor::system("fraud"),
                    "fraud.alert_opened",
                    "fraud_alert",
                    alert.id.as_str(),
                )
                .details(json!({
                    "kind": kind,
                    "user": credential.user_id,
                    "credential": credential.id,
                    "signal": details,
                })),
        ];
        self.store
            .suspend_with_alert(
                &tenant.id,
                &credential.id,
                &alert,
                AuditBatch::new(now, &events),
            )
            .await?;
        Ok(())
    }

    /// Resolves an open fraud alert: `revoke` the credential, or `reactivate` it (a false
    /// alarm); a note is required. `fraud.alert_resolved`.
    pub async fn resolve_fraud_alert(
        &self,
        tenant: &Tenant,
        id: &FraudAlertId,
        resolution: &str,
        note: &str,
        caller: &Caller,
    ) -> Result<FraudAlert, Error> {
        let note = check_reason(note)?;
        let to = match resolution {
            "revoke" => CredentialStatus::Revoked,
            "reactivate" => CredentialStatus::Active,
            _ => {
                return Err(Error::invalid(
                    "invalid_resolution",
                    "resolution is \"revoke\" or \"reactivate\"",
                ))
            }
        };
        let alert = self
            .store
            .fraud_alert(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("fraud_alert_not_found", "no such fraud alert"))?;
        let event = caller
            .event("fraud.alert_resolved", "fraud_alert", alert.id.as_str())
            .details(json!({
                "resolution": resolution,
                "note": note,
                "credential": alert.credential_id,
                "user": alert.user_id,
            }));
        if !self
            .store
            .resolve_fraud_alert(
                &tenant.id,
                id,
                resolution,
                &note,
                &caller.actor.id,
                alert.credential_id.clone().map(|c| (c, to)),
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "fraud_alert_resolved",
                "this alert is already resolved",
            ));
        }
        self.store
            .fraud_alert(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::internal("resolved alert vanished"))
    }

    pub async fn list_fraud_alerts(&self, tenant: &Tenant) -> Result<Vec<FraudAlert>, Error> {
        Ok(self.store.list_fraud_alerts(&tenant.id).await?)
    }
}
