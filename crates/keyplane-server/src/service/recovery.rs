//! Recovery codes (issue 7, path 2): a user generates codes where the policy for their
//! populations allows it (shown once; only Argon2id hashes are kept), sees how many are left, and
//! an administrator can invalidate them. Redeeming a code is not offered yet.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

/// Codes just generated, to be shown to their owner once.
pub struct GeneratedRecoveryCodes {
    pub codes: Vec<RecoveryCode>,
    pub generated_at: Timestamp,
}

impl App {
    /// Replaces the user's unused codes with `codes_count` fresh ones (`recovery.codes_generated`,
    /// with the count only). Needs a full (not restricted) session, a policy that allows codes
    /// for the user's populations (else `403 recovery_codes_denied`), and any step-up the policy
    /// asks for the action `recovery.codes.generate`.
    pub async fn generate_recovery_codes(
        &self,
        tenant: &Tenant,
        session: &Session,
        caller: &Caller,
    ) -> Result<GeneratedRecoveryCodes, Error> {
        if session.restricted.is_some() {
            return Err(Error::forbidden(
                "re_enrolment_required",
                "a restricted session cannot generate recovery codes",
            ));
        }
        let active = self.active_policy(tenant).await?;
        let subject = self.subject(tenant, &session.user_id).await?;
        let (rules, path) = active
            .policy
            .recovery
            .for_populations("recovery", &subject.populations);
        if !rules.codes_allowed {
            return Err(Error::forbidden(
                "recovery_codes_denied",
                format!("the policy does not allow recovery codes for your account ({path}.codes)"),
            ));
        }
        let count = rules.codes_count;
        self.require_step_up(tenant, session, "recovery.codes.generate")
            .await?;
        let codes: Vec<RecoveryCode> = {
            // ThreadRng is not Send: keep it out of the awaits below.
            let mut rng = rand::rng();
            (0..count)
                .map(|_| RecoveryCode::generate(&mut rng))
                .collect()
        };
        // Hashing is deliberately slow (Argon2id): off the async workers.
        let hashed = {
            let codes = codes.clone();
            tokio::task::spawn_blocking(move || {
                let mut rng = rand::rng();
                codes
                    .iter()
                    .map(|c| (RecoveryCodeId::generate(), c.hash(&mut rng)))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| Error::unavailable(format!("hashing recovery codes: {e}")))?
        };
        let now = self.clock.now();
        let event = caller
            .event("recovery.codes_generated", "user", session.user_id.as_str())
            .details(json!({ "count": count, "rule": path }));
        self.store
            .replace_recovery_codes(
                &tenant.id,
                &session.user_id,
                &hashed,
                AuditBatch::new(now, &[event]),
            )
            .await?;
        Ok(GeneratedRecoveryCodes {
            codes,
            generated_at: now,
        })
    }

    /// How many unused codes the user has, and when they were generated (never the codes).
    pub async fn recovery_codes_status(
        &self,
        tenant: &Tenant,
        user: &UserId,
    ) -> Result<keyplane_store::RecoveryCodesStatus, Error> {
        Ok(self.store.recovery_codes_status(&tenant.id, user).await?)
    }

    /// Invalidates all of the user's unused recovery codes: `recovery.codes_revoked`, with how
    /// many (never the codes, which Keyplane does not have). Returns that count.
    pub async fn revoke_recovery_codes(
        &self,
        tenant: &Tenant,
        user: &UserId,
        caller: &Caller,
    ) -> Result<u64, Error> {
        let u = self.user_by_id(tenant, user).await?;
        let unused = self
            .store
            .recovery_codes_status(&tenant.id, &u.id)
            .await?
            .remaining;
        let event = caller
            .event("recovery.codes_revoked", "user", u.id.as_str())
            .details(json!({ "count": unused }));
        Ok(self
            .store
            .replace_recovery_codes(
                &tenant.id,
                &u.id,
                &[],
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?)
    }
}
