//! Registering passkeys: from an enrolment invitation (first passkey) or from a signed-in
//! session (another passkey). Options and verify are two requests; the ceremony between them
//! lives in the database, bound to tenant, purpose and user, and is consumed exactly once.

use super::App;
use crate::metrics;
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::*;
use keyplane_store::AuditBatch;
use keyplane_webauthn::{ParsedRegistration, VerifyOptions};
use serde_json::json;
use serde_json::Value;

/// Who is asking to register.
pub enum RegistrationAuth<'a> {
    /// An enrolment invitation token.
    Enrolment(&'a Secret),
    /// A signed-in session (adding another passkey).
    Session(&'a Session),
}

/// A started ceremony: its id and the options for the browser.
/// What a new ceremony is bound to.
pub(crate) struct CeremonyBinding {
    pub purpose: CeremonyPurpose,
    pub user_id: Option<UserId>,
    pub enrolment_id: Option<EnrolmentId>,
    pub session_id: Option<SessionId>,
    pub level: Option<Aal>,
}

impl CeremonyBinding {
    pub fn new(purpose: CeremonyPurpose) -> Self {
        CeremonyBinding {
            purpose,
            user_id: None,
            enrolment_id: None,
            session_id: None,
            level: None,
        }
    }
}

pub struct StartedCeremony {
    pub ceremony: Ceremony,
    pub public_key: Value,
}

const KIND: &str = "registration";

impl App {
    pub async fn start_registration(
        &self,
        tenant: &Tenant,
        auth: RegistrationAuth<'_>,
    ) -> Result<StartedCeremony, Error> {
        let now = self.clock.now();
        let (user, purpose, enrolment_id) = match auth {
            RegistrationAuth::Enrolment(token) => {
                let enrolment = self
                    .store
                    .enrolment_by_token(&tenant.id, &token.hash())
                    .await?
                    .filter(|e| e.is_usable(now))
                    .ok_or_else(|| {
                        Error::unauthenticated(
                            "enrolment_token_invalid",
                            "the enrolment link is unknown, used or expired",
                        )
                    })?;
                let user = self.active_user(tenant, &enrolment.user_id).await?;
                (user, CeremonyPurpose::Enrolment, Some(enrolment.id))
            }
            RegistrationAuth::Session(session) => {
                let user = self.active_user(tenant, &session.user_id).await?;
                (user, CeremonyPurpose::AddCredential, None)
            }
        };
        let existing = self
            .store
            .list_credentials(&tenant.id, Some(&user.id))
            .await?;
        let exclude = existing
            .iter()
            .filter(|c| c.status != CredentialStatus::Revoked)
            .map(|c| c.credential_id.clone())
            .collect();
        let rp = self.relying_party(tenant)?;
        let (public_key, state) = rp.start_registration(
            &user.user_handle,
            &user.username,
            &user.display_name,
            exclude,
            false,
        )?;
        let binding = CeremonyBinding {
            purpose,
            user_id: Some(user.id),
            enrolment_id,
            ..CeremonyBinding::new(purpose)
        };
        self.open_ceremony(tenant, binding, state, public_key, KIND)
            .await
    }

    /// Verifies the browser's response and stores the new credential (recording
    /// `credential.registered` in the same transaction). `session` must be given for an
    /// add-credential ceremony and must belong to the ceremony's user. A malformed body is
    /// refused before anything is consumed or recorded; a failed verification is recorded as
    /// `registration.failed` (rate-limited).
    pub async fn finish_registration(
        &self,
        tenant: &Tenant,
        ceremony_id: &CeremonyId,
        credential: &Value,
        nickname: Option<&str>,
        session: Option<&Session>,
        caller: &Caller,
    ) -> Result<Credential, Error> {
        let decoded = nickname
            .map(normalise_nickname)
            .transpose()
            .and_then(|n| ParsedRegistration::from_json(credential).map(|p| (n, p)));
        let result = match decoded {
            Err(e) => Err(e),
            Ok((nickname, parsed)) => {
                let result = self
                    .verify_registration(tenant, ceremony_id, &parsed, nickname, session, caller)
                    .await;
                if let Err(e) = &result {
                    let event = caller
                        .event("registration.failed", "ceremony", ceremony_id.as_str())
                        .refused(e)
                        .details(json!({ "credential_id": b64url(parsed.facts().credential_id.as_slice()) }));
                    self.record_failure(tenant, event).await;
                }
                result
            }
        };
        metrics::ceremony_finished(KIND, &result);
        result
    }

    async fn verify_registration(
        &self,
        tenant: &Tenant,
        ceremony_id: &CeremonyId,
        parsed: &ParsedRegistration,
        nickname: Option<String>,
        session: Option<&Session>,
        caller: &Caller,
    ) -> Result<Credential, Error> {
        // An enrolment ceremony needs no session; an add-credential ceremony needs the session of
        // the user it was started for. Anything else is indistinguishable from "not found".
        let ceremony = match self
            .take_ceremony(tenant, ceremony_id, CeremonyPurpose::Enrolment)
            .await
        {
            Err(e) if e.code == "ceremony_not_found" && session.is_some() => {
                self.take_ceremony(tenant, ceremony_id, CeremonyPurpose::AddCredential)
                    .await?
            }
            other => other?,
        };
        let user_id = ceremony
            .user_id
            .clone()
            .ok_or_else(|| Error::internal("registration ceremony without a user"))?;
        if ceremony.purpose == CeremonyPurpose::AddCredential
            && session.map(|s| &s.user_id) != Some(&user_id)
        {
            return Err(Error::not_found(
                "ceremony_not_found",
                "no such ceremony for this session",
            ));
        }
        let user = self.active_user(tenant, &user_id).await?;
        let rp = self.relying_party(tenant)?;
        // The attestation is judged against the roots the user's policy trusts: the FIDO MDS
        // roots of the model it claims to be, and the policy's own.
        let active = self.active_policy(tenant).await?;
        let subject = self.subject(tenant, &user.id).await?;
        let catalogue = self.catalogue().await?;
        let (rules, _) = active
            .policy
            .authenticators
            .for_populations("authenticators", &subject.populations);
        let now = self.clock.now();
        let options = VerifyOptions {
            trust: Some(catalogue.trust_anchors(rules, &parsed.facts().aaguid_string())?),
            at: now.to_system_time(),
        };
        let registered = rp.finish_parsed_registration(&ceremony.state, parsed, &options)?;
        let existing = self
            .store
            .list_credentials(&tenant.id, Some(&user.id))
            .await?;
        let nickname = nickname.unwrap_or_else(|| format!("Passkey {}", existing.len() + 1));
        let record = Credential {
            id: CredentialRecordId::generate(),
            tenant_id: tenant.id.clone(),
            user_id: user.id.clone(),
            credential_id: registered.facts.credential_id.clone(),
            public_key: registered.facts.public_key.clone(),
            sign_count: registered.facts.sign_count,
            aaguid: registered.facts.aaguid_string(),
            transports: registered.transports.clone(),
            backup_eligible: registered.facts.backup_eligible,
            backup_state: registered.facts.backup_state,
            attestation_format: registered.facts.fmt.clone(),
            attestation_type: registered.attestation_type.to_string(),
            user_verified: registered.facts.user_verified,
            attestation_trusted: registered.attestation_trusted == Some(true),
            nickname,
            created_at: now,
            last_used_at: None,
            status: CredentialStatus::Active,
            status_reason: None,
            library_state: registered.library_state,
        };
        // A recovery session registers the passkey that ends it; a help-desk case may revoke the
        // account's other passkeys with it (so they do not count against the maximum).
        let recovery = match session.and_then(|s| s.recovery.as_deref()) {
            None => None,
            Some(path) => Some(self.recovery_completion(tenant, path, now).await?),
        };
        let revoke_others = recovery
            .as_ref()
            .and_then(|r| r.as_ref())
            .is_some_and(|c| c.revoke_old_credentials);
        // The tenant's policy decides whether this authenticator may be registered by this user.
        let active_passkeys = if revoke_others {
            0
        } else {
            existing
                .iter()
                .filter(|c| c.status == CredentialStatus::Active)
                .count() as u32
        };
        let decision = keyplane_core::policy::registration(
            &active.policy,
            &subject,
            &catalogue.facts(&record, record.user_verified),
            true,
            active_passkeys,
        );
        // Exceptions granted to this user (or their populations) waive the rules they name.
        let (decision, cited) = self
            .apply_exceptions(tenant, &user.id, &subject.populations, decision)
            .await?;
        if decision.verdict != keyplane_core::policy::Verdict::Allow {
            let reasons: Vec<String> = decision
                .reasons
                .iter()
                .map(|r| format!("{} ({}): {}", r.rule, r.code, r.message))
                .collect();
            return Err(Error::forbidden(
                "policy_denied",
                format!(
                    "the tenant's policy refuses this passkey: {}",
                    reasons.join("; ")
                ),
            ));
        }
        let event = caller
            .event_as(
                Actor::user(&user.id),
                "credential.registered",
                "credential",
                record.id.as_str(),
            )
            .details(json!({
                "user": user.id,
                "purpose": ceremony.purpose.as_str(),
                "enrolment": ceremony.enrolment_id,
                "nickname": record.nickname,
                "aaguid": record.aaguid,
                "attestation_format": record.attestation_format,
                "attestation_type": record.attestation_type,
                "attestation_trusted": record.attestation_trusted,
                "model": catalogue.name(&record.aaguid).map(|n| n.name),
                "exceptions": cited,
                "backup_eligible": record.backup_eligible,
                "backup_state": record.backup_state,
                "user_verified": record.user_verified,
                "transports": record.transports,
                "credential_id": b64url(&record.credential_id),
            }));
        if let (Some(case), Some(session)) = (recovery, session) {
            let mut events = vec![event];
            if let Some(c) = &case {
                events.push(
                    caller
                        .event_as(
                            Actor::user(&user.id),
                            "recovery.case_completed",
                            "recovery_case",
                            c.id.as_str(),
                        )
                        .details(json!({
                            "user_id": user.id,
                            "credential": record.id,
                            "old_credentials": if c.revoke_old_credentials { "revoked" } else { "kept" },
                            "revoked": if c.revoke_old_credentials {
                                existing.iter().filter(|x| x.status != CredentialStatus::Revoked).map(|x| x.id.as_str()).collect::<Vec<_>>()
                            } else { vec![] },
                        })),
                );
            }
            let finish = keyplane_store::RecoveryFinish {
                session: &session.id,
                case: case.as_ref(),
                revoke_others,
            };
            if !self
                .store
                .register_recovered_credential(&record, finish, AuditBatch::new(now, &events))
                .await?
            {
                return Err(Error::conflict(
                    "recovery_session_used",
                    "this recovery session has already registered a passkey, or its case changed meanwhile",
                ));
            }
            return Ok(record);
        }
        self.store
            .register_credential(
                &record,
                ceremony.enrolment_id.as_ref(),
                AuditBatch::new(now, &[event]),
            )
            .await
            .map_err(|e| match e {
                keyplane_store::StoreError::Conflict(what) if what.contains("enrolment") => {
                    Error::unauthenticated(
                        "enrolment_token_invalid",
                        "the enrolment link was used meanwhile",
                    )
                }
                keyplane_store::StoreError::Conflict(_) => Error::conflict(
                    "credential_already_registered",
                    "this passkey is already registered",
                ),
                other => other.into(),
            })?;
        // A compliant passkey ends a forced re-enrolment, unless it is of a model an open
        // campaign is replacing for this user.
        let replaced_model = match &user.re_enrol_reason {
            Some(_) => self
                .store
                .open_campaign_models_of_user(&tenant.id, &user.id)
                .await?
                .contains(&record.aaguid),
            None => false,
        };
        if let Some(why) = user.re_enrol_reason.as_ref().filter(|_| !replaced_model) {
            let event = caller
                .event_as(
                    Actor::user(&user.id),
                    "user.re_enrolled",
                    "user",
                    user.id.as_str(),
                )
                .details(json!({ "credential": record.id, "reason": why }));
            self.store
                .set_re_enrolment(
                    &tenant.id,
                    &user.id,
                    None,
                    AuditBatch::new(self.clock.now(), &[event]),
                )
                .await?;
        }
        Ok(record)
    }

    /// Stores a new ceremony (its webauthn state, bound to tenant, purpose and user) for
    /// `ceremony_ttl_secs`, and returns it with the options for the browser.
    pub(crate) async fn open_ceremony(
        &self,
        tenant: &Tenant,
        binding: CeremonyBinding,
        state: String,
        public_key: Value,
        kind: &'static str,
    ) -> Result<StartedCeremony, Error> {
        let now = self.clock.now();
        let ceremony = Ceremony {
            id: CeremonyId::generate(),
            tenant_id: tenant.id.clone(),
            purpose: binding.purpose,
            user_id: binding.user_id,
            enrolment_id: binding.enrolment_id,
            state,
            created_at: now,
            expires_at: now.plus_secs(self.settings.ceremony_ttl_secs),
            session_id: binding.session_id,
            level: binding.level,
        };
        self.store.insert_ceremony(&ceremony).await?;
        metrics::ceremony_started(kind);
        Ok(StartedCeremony {
            ceremony,
            public_key,
        })
    }

    /// Takes a ceremony for this tenant and purpose; a replay, another tenant's ceremony or the
    /// wrong purpose all look the same: not found. An expired one is consumed and refused.
    pub(crate) async fn take_ceremony(
        &self,
        tenant: &Tenant,
        id: &CeremonyId,
        purpose: CeremonyPurpose,
    ) -> Result<Ceremony, Error> {
        let ceremony = self
            .store
            .take_ceremony(&tenant.id, id, purpose)
            .await?
            .ok_or_else(|| {
                Error::not_found(
                    "ceremony_not_found",
                    "no such ceremony: unknown, already used, or for another purpose",
                )
            })?;
        if ceremony.is_expired(self.clock.now()) {
            return Err(Error::new(
                ErrorKind::Gone,
                "ceremony_expired",
                "the ceremony expired; start again",
            ));
        }
        Ok(ceremony)
    }

    pub(crate) async fn active_user(&self, tenant: &Tenant, id: &UserId) -> Result<User, Error> {
        let user = self
            .store
            .user_by_id(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("unknown_user", "no such user"))?;
        if user.status != UserStatus::Active {
            return Err(Error::forbidden(
                "user_inactive",
                "the account is suspended or deprovisioned",
            ));
        }
        Ok(user)
    }
}

/// A credential id as clients spell it (base64url); ids are public, not secrets.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
