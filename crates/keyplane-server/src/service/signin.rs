//! Signing in: authentication ceremonies (username-first or usernameless) and the sessions they
//! open. A session token is 256 random bits, handed out once, stored as its SHA-256 hash.

use super::registration::b64url;
use super::{App, StartedCeremony};
use crate::metrics;
use keyplane_core::assurance::{assess, AssuranceFacts};
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::*;
use keyplane_store::AuditBatch;
use keyplane_webauthn::ParsedAssertion;
use serde_json::json;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A session just opened: the token is returned to the client once.
pub struct SignedIn {
    pub session: Session,
    pub token: Secret,
    pub user: User,
    pub credential: CredentialRecordId,
}

const KIND: &str = "authentication";

impl App {
    /// Starts a sign-in. With a username, the user's passkeys are listed; an unknown username
    /// gets a decoy list so that the answer does not reveal whether the account exists. Without
    /// one, the ceremony is usernameless (discoverable credentials, conditional mediation).
    pub async fn start_authentication(
        &self,
        tenant: &Tenant,
        username: Option<&str>,
    ) -> Result<StartedCeremony, Error> {
        let rp = self.relying_party(tenant)?;
        let (user_id, allowed, decoys) = match username {
            None => (None, vec![], vec![]),
            Some(raw) => {
                let username = normalise_username(raw)?;
                // Counted per username whether or not the account exists: the limit reveals nothing.
                self.account_limiter
                    .check(&format!("{}|{username}", tenant.id))?;
                let user = self
                    .store
                    .user_by_username(&tenant.id, &username)
                    .await?
                    .filter(|u| u.status == UserStatus::Active);
                let creds = match &user {
                    Some(u) => self.store.list_credentials(&tenant.id, Some(&u.id)).await?,
                    None => vec![],
                };
                let active: Vec<String> = creds
                    .into_iter()
                    .filter(|c| c.status == CredentialStatus::Active)
                    .map(|c| c.library_state)
                    .collect();
                if active.is_empty() {
                    (None, vec![], vec![decoy_credential_id(tenant, &username)])
                } else {
                    (user.map(|u| u.id), active, vec![])
                }
            }
        };
        let (public_key, state) = rp.start_authentication(&allowed, &decoys, false)?;
        let binding = super::registration::CeremonyBinding {
            user_id,
            ..super::registration::CeremonyBinding::new(CeremonyPurpose::SignIn)
        };
        self.open_ceremony(tenant, binding, state, public_key, KIND)
            .await
    }

    /// Verifies an assertion and opens a session, recording `authentication.succeeded` in the
    /// same transaction. A malformed body is refused before anything is consumed or recorded; a
    /// failed verification is recorded as `authentication.failed` (rate-limited).
    pub async fn finish_authentication(
        &self,
        tenant: &Tenant,
        ceremony_id: &CeremonyId,
        credential: &Value,
        caller: &Caller,
    ) -> Result<SignedIn, Error> {
        let result = match ParsedAssertion::from_json(credential) {
            Err(e) => Err(e),
            Ok(assertion) => {
                let result = self
                    .verify_assertion(tenant, ceremony_id, &assertion, caller)
                    .await;
                if let Err(e) = &result {
                    let event = caller
                        .event("authentication.failed", "ceremony", ceremony_id.as_str())
                        .refused(e)
                        .details(json!({ "credential_id": b64url(assertion.credential_id()) }));
                    self.record_failure(tenant, event).await;
                }
                result
            }
        };
        metrics::ceremony_finished(KIND, &result);
        result
    }

    async fn verify_assertion(
        &self,
        tenant: &Tenant,
        ceremony_id: &CeremonyId,
        assertion: &ParsedAssertion,
        caller: &Caller,
    ) -> Result<SignedIn, Error> {
        let ceremony = self
            .take_ceremony(tenant, ceremony_id, CeremonyPurpose::SignIn)
            .await?;
        let unknown =
            || Error::unauthenticated("unknown_credential", "this passkey is not registered here");
        let stored = self
            .store
            .credential_by_credential_id(&tenant.id, assertion.credential_id())
            .await?
            .ok_or_else(unknown)?;
        // Username-first: the passkey must be one of that user's. Usernameless: the user handle
        // the authenticator returns must be the owner's.
        if let Some(expected) = &ceremony.user_id {
            if &stored.user_id != expected {
                return Err(unknown());
            }
        }
        let user = self
            .store
            .user_by_id(&tenant.id, &stored.user_id)
            .await?
            .ok_or_else(unknown)?;
        match assertion.user_handle() {
            Some(h) if h != user.user_handle.as_slice() => return Err(unknown()),
            None if ceremony.user_id.is_none() => {
                return Err(Error::invalid(
                    "user_handle_missing",
                    "a usernameless sign-in needs the user handle",
                ))
            }
            _ => {}
        }
        if stored.status != CredentialStatus::Active {
            return Err(Error::forbidden(
                "credential_inactive",
                "this passkey is suspended or revoked",
            ));
        }
        if user.status != UserStatus::Active {
            return Err(Error::forbidden(
                "user_inactive",
                "the account is suspended or deprovisioned",
            ));
        }
        let outcome = self
            .check_assertion(tenant, &ceremony.state, assertion, &stored, caller)
            .await?;
        let now = self.clock.now();
        // The methods follow from the flags; the level is the tenant policy's verdict.
        let (_, amr) = assess(AssuranceFacts {
            user_present: true,
            user_verified: outcome.user_verified,
            backup_eligible: outcome.backup_eligible,
        });
        let active = self.active_policy(tenant).await?;
        let facts = self
            .catalogue()
            .await?
            .facts(&stored, outcome.user_verified);
        let (aal, level_reason) = keyplane_core::policy::assurance(&active.policy, &facts);
        // A passkey that no longer complies (the policy changed since it was registered) still
        // signs in, but only to register a compliant one: flagged, not silently broken.
        let subject = self.subject(tenant, &user.id).await?;
        let compliance = keyplane_core::policy::sign_in(&active.policy, &subject, &facts);
        // Exceptions granted to this user (or their populations) waive the rules they name.
        let (compliance, cited) = self
            .apply_exceptions(tenant, &user.id, &subject.populations, compliance)
            .await?;
        let restricted = (compliance.verdict
            == keyplane_core::policy::Verdict::ReEnrolmentRequired)
            .then(|| {
                compliance
                    .reasons
                    .iter()
                    .map(|r| format!("{} ({}): {}", r.rule, r.code, r.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .or_else(|| {
                user.re_enrol_reason
                    .as_ref()
                    .map(|why| format!("re-enrolment required by an administrator: {why}"))
            });
        // A non-compliant passkey proves nothing the policy accepts: its restricted session
        // carries the lowest level whatever the flags say.
        let aal = if restricted.is_some() {
            keyplane_core::Aal::Aal1
        } else {
            aal
        };
        // Lifetime and idle timeout follow the policy for the user's populations; the
        // `session_ttl_secs` setting caps the lifetime for the whole deployment.
        let (session_rules, _) = active
            .policy
            .sessions
            .for_populations("sessions", &subject.populations);
        let lifetime = session_rules
            .lifetime_secs
            .min(self.settings.session_ttl_secs);
        let token =
            Secret::generate_without_prefix(&mut rand::rng(), keyplane_core::client::TOKEN_PREFIX);
        let session = Session {
            id: SessionId::generate(),
            tenant_id: tenant.id.clone(),
            user_id: user.id.clone(),
            token_hash: token.hash(),
            aal,
            amr,
            auth_time: now,
            credential_id: Some(stored.id.clone()),
            created_at: now,
            expires_at: now.plus_secs(lifetime),
            elevated: None,
            restricted: restricted.clone(),
            idle_secs: session_rules.idle_secs,
            last_seen_at: now,
            recovery: None,
        };
        let event = caller
            .event_as(
                Actor::user(&user.id),
                "authentication.succeeded",
                "user",
                user.id.as_str(),
            )
            .details(json!({
                "session": session.id,
                "credential": stored.id,
                "aal": session.aal.as_str(),
                "assurance_rule": level_reason.rule,
                "re_enrolment_required": restricted,
                "exceptions": cited,
                "policy_version": active.version,
                "amr": session.amr.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                "user_verified": outcome.user_verified,
                "backup_state": outcome.backup_state,
                "backup_state_changed": outcome.backup_state != stored.backup_state,
                "sign_count": outcome.sign_count,
            }));
        let applied = self
            .store
            .record_assertion(
                &tenant.id,
                &keyplane_store::AssertionRecord {
                    credential: &stored.id,
                    sign_count: outcome.sign_count,
                    backup_eligible: outcome.backup_eligible,
                    backup_state: outcome.backup_state,
                    library_state: &outcome.library_state,
                    used_at: now,
                    session: &session,
                    step_up: None,
                },
                AuditBatch::new(now, &[event]),
            )
            .await?;
        if !applied {
            // The assertion passed the counter check against the value read above, so either
            // another sign-in with this passkey committed a higher counter meanwhile (two tabs,
            // a retry) or the passkey was suspended. Neither opens a session; a race is not
            // treated as a clone (a clone shows up as a regression on the next sequential use).
            let current = self.store.credential_by_id(&tenant.id, &stored.id).await?;
            if current.as_ref().map(|c| c.status) == Some(CredentialStatus::Active) {
                return Err(Error::conflict(
                    "concurrent_sign_in",
                    "another sign-in with this passkey completed at the same moment; try again",
                ));
            }
            return Err(Error::forbidden(
                "credential_inactive",
                "this passkey is suspended or revoked",
            ));
        }
        Ok(SignedIn {
            session,
            token,
            user,
            credential: stored.id,
        })
    }

    /// Verifies an assertion with a stored passkey against a ceremony's state. A counter that
    /// went backwards suspends the passkey (DESIGN invariant 3), whatever the ceremony was for.
    pub(crate) async fn check_assertion(
        &self,
        tenant: &Tenant,
        state: &str,
        assertion: &ParsedAssertion,
        stored: &Credential,
        caller: &Caller,
    ) -> Result<keyplane_webauthn::AssertionOutcome, Error> {
        let rp = self.relying_party(tenant)?;
        match rp.finish_authentication(state, assertion, &stored.library_state, stored.sign_count) {
            Err(e) if e.code == "sign_count_regression" => {
                self.suspend_for_regression(tenant, stored, caller).await?;
                Err(Error::unauthenticated(
                    "sign_count_regression",
                    "the signature counter went backwards, which suggests a cloned authenticator; the passkey is suspended",
                ))
            }
            other => other,
        }
    }

    async fn suspend_for_regression(
        &self,
        tenant: &Tenant,
        credential: &Credential,
        caller: &Caller,
    ) -> Result<(), Error> {
        tracing::warn!(tenant = %tenant.name, credential = %credential.id, "sign-count regression: credential suspended, fraud alert opened");
        self.open_fraud_alert(
            tenant,
            credential,
            "sign_count_regression",
            json!({ "stored_sign_count": credential.sign_count }),
            caller,
        )
        .await
    }

    /// The session a bearer token or cookie stands for, with its user, if still valid.
    pub async fn session_for_token(
        &self,
        tenant: &Tenant,
        token: &Secret,
    ) -> Result<(Session, User), Error> {
        let invalid =
            || Error::unauthenticated("unauthenticated", "sign in first: no valid session");
        let session = self
            .store
            .session_by_token(&tenant.id, &token.hash())
            .await?
            .ok_or_else(invalid)?;
        let now = self.clock.now();
        if session.is_expired(now) {
            return Err(invalid());
        }
        // Idle time is kept to the minute: at most one write per session per minute.
        if session.idle_secs > 0 && now.0 - session.last_seen_at.0 >= 60_000 {
            self.store
                .touch_session(&tenant.id, &session.id, now)
                .await?;
        }
        let user = self
            .store
            .user_by_id(&tenant.id, &session.user_id)
            .await?
            .ok_or_else(invalid)?;
        if user.status != UserStatus::Active {
            return Err(invalid());
        }
        Ok((session, user))
    }

    /// Ends a session, recording `session.ended`.
    pub async fn logout(
        &self,
        tenant: &Tenant,
        session: &Session,
        caller: &Caller,
    ) -> Result<(), Error> {
        let event = caller
            .event("session.ended", "session", session.id.as_str())
            .details(json!({ "user": session.user_id }));
        self.store
            .revoke_session(
                &tenant.id,
                &session.id,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?;
        Ok(())
    }
}

/// A stable, plausible credential id for a username that has no passkeys, so that
/// username-first options look the same for existing and non-existing accounts.
fn decoy_credential_id(tenant: &Tenant, username: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"keyplane-decoy-credential\0");
    h.update(tenant.id.as_str().as_bytes());
    h.update(tenant.created_at.0.to_be_bytes());
    h.update(username.as_bytes());
    h.finalize().to_vec()
}
