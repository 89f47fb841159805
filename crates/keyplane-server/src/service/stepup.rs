//! Step-up: raising a signed-in session's level for actions the policy guards. A step-up is an
//! authentication ceremony bound to the session, with user verification required and only the
//! user's passkeys that can reach the level offered; the level it reaches is the policy's
//! verdict on that passkey, and it counts for the guarding rule's `max_age_secs`.

use super::registration::{b64url, CeremonyBinding};
use super::{App, StartedCeremony};
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::policy::{self, Verdict};
use keyplane_core::*;
use keyplane_store::{AssertionRecord, AuditBatch};
use keyplane_webauthn::ParsedAssertion;
use serde_json::{json, Value};

const KIND: &str = "step_up";

/// What a step-up is asked for.
pub enum StepUpTarget<'a> {
    /// The level the policy's rule for this action needs.
    Action(&'a str),
    Level(Aal),
}

impl App {
    /// Refuses with `step_up_required` (and the level, in the error's `level` member) unless the
    /// session reached what the policy's rule for `action` needs, recently enough.
    pub async fn require_step_up(
        &self,
        tenant: &Tenant,
        session: &Session,
        action: &str,
    ) -> Result<(), Error> {
        let active = self.active_policy(tenant).await?;
        let now = self.clock.now();
        self.check_recovery_lock(tenant, &active.policy, session, action, now)
            .await?;
        let base = policy::step_up(&active.policy, action, session.aal, session.auth_time, now);
        if base.verdict == Verdict::Allow {
            return Ok(());
        }
        if let Some((level, at)) = session.elevated {
            if policy::step_up(&active.policy, action, level, at, now).verdict == Verdict::Allow {
                return Ok(());
            }
        }
        let Verdict::StepUpRequired(level) = base.verdict else {
            return Err(Error::internal(
                "step-up evaluation gave neither allow nor step-up",
            ));
        };
        let why = base
            .reasons
            .first()
            .map(|r| format!("{}: {}", r.rule, r.message))
            .unwrap_or_default();
        Err(Error::forbidden(
            "step_up_required",
            format!("a recent step-up is needed ({why})"),
        )
        .with("level", level.as_str()))
    }

    /// Starts a step-up ceremony for a signed-in session.
    pub async fn start_step_up(
        &self,
        tenant: &Tenant,
        session: &Session,
        target: StepUpTarget<'_>,
    ) -> Result<StartedCeremony, Error> {
        let active = self.active_policy(tenant).await?;
        let catalogue = self.catalogue().await?;
        let level = match target {
            StepUpTarget::Level(l) => l,
            StepUpTarget::Action(action) => match policy::step_up(
                &active.policy,
                action,
                Aal::Aal1,
                Timestamp(0),
                self.clock.now(),
            )
            .verdict
            {
                Verdict::StepUpRequired(l) => l,
                _ => {
                    return Err(Error::invalid(
                        "no_step_up_needed",
                        format!("no step-up rule guards {action:?}"),
                    ))
                }
            },
        };
        let user = self.active_user(tenant, &session.user_id).await?;
        // Offer only passkeys that can reach the level; one that did not verify the user at
        // registration is taken not to be able to (a security key without a PIN).
        let able: Vec<Credential> = self
            .store
            .list_credentials(&tenant.id, Some(&user.id))
            .await?
            .into_iter()
            .filter(|c| c.status == CredentialStatus::Active)
            .filter(|c| {
                policy::assurance(&active.policy, &catalogue.facts(c, c.user_verified)).0 >= level
            })
            .collect();
        if able.is_empty() {
            return Err(Error::forbidden(
                "step_up_unreachable",
                format!(
                    "none of your passkeys can reach {} under this tenant's policy",
                    level.as_str()
                ),
            )
            .with("level", level.as_str()));
        }
        let states: Vec<String> = able.iter().map(|c| c.library_state.clone()).collect();
        let rp = self.relying_party(tenant)?;
        let (public_key, state) = rp.start_authentication(&states, &[], true)?;
        let binding = CeremonyBinding {
            user_id: Some(user.id),
            session_id: Some(session.id.clone()),
            level: Some(level),
            ..CeremonyBinding::new(CeremonyPurpose::StepUp)
        };
        self.open_ceremony(tenant, binding, state, public_key, KIND)
            .await
    }

    /// Verifies a step-up assertion for the same session and records the level reached
    /// (`session.stepped_up`). Returns the level.
    pub async fn finish_step_up(
        &self,
        tenant: &Tenant,
        session: &Session,
        ceremony_id: &CeremonyId,
        credential: &Value,
        caller: &Caller,
    ) -> Result<Aal, Error> {
        let assertion = ParsedAssertion::from_json(credential)?;
        let result = self
            .verify_step_up(tenant, session, ceremony_id, &assertion, caller)
            .await;
        if let Err(e) = &result {
            let event = caller
                .event("step_up.failed", "session", session.id.as_str())
                .refused(e)
                .details(json!({ "credential_id": b64url(assertion.credential_id()) }));
            self.record_failure(tenant, event).await;
        }
        crate::metrics::ceremony_finished(KIND, &result);
        result
    }

    async fn verify_step_up(
        &self,
        tenant: &Tenant,
        session: &Session,
        ceremony_id: &CeremonyId,
        assertion: &ParsedAssertion,
        caller: &Caller,
    ) -> Result<Aal, Error> {
        let ceremony = self
            .take_ceremony(tenant, ceremony_id, CeremonyPurpose::StepUp)
            .await?;
        if ceremony.session_id.as_ref() != Some(&session.id) {
            return Err(Error::not_found(
                "ceremony_not_found",
                "no such step-up ceremony for this session",
            ));
        }
        let needed = ceremony
            .level
            .ok_or_else(|| Error::internal("step-up ceremony without a level"))?;
        let unknown =
            || Error::unauthenticated("unknown_credential", "this passkey is not one of yours");
        let stored = self
            .store
            .credential_by_credential_id(&tenant.id, assertion.credential_id())
            .await?
            .ok_or_else(unknown)?;
        if stored.user_id != session.user_id {
            return Err(unknown());
        }
        if stored.status != CredentialStatus::Active {
            return Err(Error::forbidden(
                "credential_inactive",
                "this passkey is suspended or revoked",
            ));
        }
        let outcome = self
            .check_assertion(tenant, &ceremony.state, assertion, &stored, caller)
            .await?;
        let active = self.active_policy(tenant).await?;
        let catalogue = self.catalogue().await?;
        let (level, why) = policy::assurance(
            &active.policy,
            &catalogue.facts(&stored, outcome.user_verified),
        );
        if level < needed {
            return Err(Error::forbidden(
                "step_up_insufficient",
                format!(
                    "this passkey reached {}, {} is needed ({})",
                    level.as_str(),
                    needed.as_str(),
                    why.message
                ),
            )
            .with("level", needed.as_str()));
        }
        let now = self.clock.now();
        let event = caller
            .event_as(Actor::user(&session.user_id), "session.stepped_up", "session", session.id.as_str())
            .details(json!({ "level": level.as_str(), "credential": stored.id, "assurance_rule": why.rule, "policy_version": active.version }));
        let applied = self
            .store
            .record_assertion(
                &tenant.id,
                &AssertionRecord {
                    credential: &stored.id,
                    sign_count: outcome.sign_count,
                    backup_eligible: outcome.backup_eligible,
                    backup_state: outcome.backup_state,
                    library_state: &outcome.library_state,
                    used_at: now,
                    session,
                    step_up: Some(level),
                },
                AuditBatch::new(now, &[event]),
            )
            .await?;
        if !applied {
            return Err(Error::conflict(
                "concurrent_sign_in",
                "the passkey or the session changed meanwhile; try again",
            ));
        }
        Ok(level)
    }
}

impl App {
    /// Refuses a sensitive act (one a step-up rule names) while the account is within the
    /// policy's `sensitive_lock_secs` of a recovery: `403 recently_recovered` with the time the
    /// lock ends. One query, only for sensitive acts, only when the policy sets a lock.
    async fn check_recovery_lock(
        &self,
        tenant: &Tenant,
        p: &keyplane_core::policy::Policy,
        session: &Session,
        action: &str,
        now: Timestamp,
    ) -> Result<(), Error> {
        let locks = std::iter::once(&p.recovery.default)
            .chain(p.recovery.by_population.iter().map(|(_, r)| r));
        if locks.into_iter().all(|r| r.sensitive_lock_secs == 0) || !policy::is_sensitive(p, action)
        {
            return Ok(());
        }
        let subject = self.subject(tenant, &session.user_id).await?;
        let (rules, path) = p.recovery.for_populations("recovery", &subject.populations);
        if rules.sensitive_lock_secs == 0 {
            return Ok(());
        }
        let Some(at) = self
            .store
            .last_recovery(&tenant.id, &session.user_id)
            .await?
        else {
            return Ok(());
        };
        let until = at.plus_secs(rules.sensitive_lock_secs);
        if now < until {
            return Err(Error::forbidden(
                "recently_recovered",
                format!(
                    "the account was recovered at {}; {action} is possible again from {} ({path}.sensitive_lock_secs)",
                    at.to_rfc3339(),
                    until.to_rfc3339()
                ),
            )
            .with("until", until.to_rfc3339()));
        }
        Ok(())
    }
}
