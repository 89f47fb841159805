//! Recovery codes (issue 7, path 2): a user generates codes where the policy for their
//! populations allows it (shown once; only Argon2id hashes are kept), sees how many are left, and
//! an administrator can invalidate them. Redeeming one opens a *recovery session*: restricted to
//! registering a passkey, and ended by doing so.

use super::App;
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

/// A recovery session just opened: the token is returned to the client once.
pub struct RecoverySession {
    pub session: Session,
    pub token: Secret,
    pub user: User,
}

/// How long a recovery session lasts: long enough to register a passkey.
pub const RECOVERY_SESSION_SECS: i64 = 15 * 60;

/// Argon2id verifications one redemption performs at least, whether the account exists, has
/// codes or has fewer: the answer's timing says nothing about the account (the default number
/// of codes; an account holding more — the policy allows up to 20 — costs one verification per
/// code).
const VERIFICATIONS_PER_ATTEMPT: usize = 10;

/// Redemptions hashing at once (each verification holds 19 MiB): the rest wait their turn, so
/// a burst of attempts cannot exhaust memory or starve the other requests of CPU.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// One Argon2id PHC string of a code nobody holds, verified against when an attempt has fewer
/// real hashes to check, so every attempt costs the same.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| RecoveryCode::generate(&mut rand::rng()).hash(&mut rand::rng()))
}

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

    /// Counts a recovery attempt for the client address and the (normalised) username; both
    /// limits are per hour and reveal nothing about whether the account exists.
    pub(crate) fn limit_recovery(
        &self,
        tenant: &Tenant,
        username: &str,
        caller: &Caller,
    ) -> Result<(), Error> {
        let ip = caller.context.client_ip.as_deref().unwrap_or("-");
        self.recovery_address_limiter
            .check(&format!("{}|{ip}", tenant.id))?;
        self.recovery_account_limiter
            .check(&format!("{}|{username}", tenant.id))
    }

    /// Redeems a recovery code: `username` and `code` must match an active account whose policy
    /// allows codes and one of its unused codes. Every failure — unknown account, suspended
    /// account, codes not allowed, wrong or used code — is the same `401 recovery_code_invalid`
    /// after the same work; the audit log (`recovery.code_failed`) records the real reason.
    /// Success uses the code up and opens a recovery session (`recovery.code_used`).
    pub async fn redeem_recovery_code(
        &self,
        tenant: &Tenant,
        username: &str,
        code: &str,
        caller: &Caller,
    ) -> Result<RecoverySession, Error> {
        let username = normalise_username(username)?;
        self.limit_recovery(tenant, &username, caller)?;
        let invalid = || {
            Error::unauthenticated(
                "recovery_code_invalid",
                "the username or the recovery code is not valid",
            )
        };
        let (outcome, user) = self.check_recovery_code(tenant, &username, code).await?;
        let (user, code_id, remaining) = match (outcome, user) {
            (Ok((id, remaining)), Some(user)) => (user, id, remaining),
            (Err(why), user) => {
                let event = match &user {
                    Some(u) => caller.event("recovery.code_failed", "user", u.id.as_str()),
                    None => caller.event("recovery.code_failed", "username", &username),
                }
                .outcome(keyplane_core::audit::Outcome::Failure, why);
                self.record_failure(tenant, event).await;
                return Err(invalid());
            }
            (Ok(_), None) => return Err(Error::internal("a code matched without an account")),
        };
        let now = self.clock.now();
        let (session, token) = recovery_session(tenant, &user, format!("code:{code_id}"), now);
        let event = caller
            .event_as(
                Actor::user(&user.id),
                "recovery.code_used",
                "user",
                user.id.as_str(),
            )
            .details(json!({
                "user_id": user.id,
                "code": code_id,
                "session": session.id,
                "remaining": remaining,
            }));
        if !self
            .store
            .redeem_recovery_code(
                &tenant.id,
                &code_id,
                &session,
                AuditBatch::new(now, &[event]),
            )
            .await?
        {
            // Used (or replaced) between the check and now: a second use of one code.
            let event = caller
                .event("recovery.code_failed", "user", user.id.as_str())
                .outcome(
                    keyplane_core::audit::Outcome::Failure,
                    "code_used_concurrently",
                );
            self.record_failure(tenant, event).await;
            return Err(invalid());
        }
        Ok(RecoverySession {
            session,
            token,
            user,
        })
    }

    /// The account and the id of the code that matches (with how many stay unused), or why
    /// not. Always performs [`VERIFICATIONS_PER_ATTEMPT`] Argon2id verifications.
    async fn check_recovery_code(
        &self,
        tenant: &Tenant,
        username: &str,
        code: &str,
    ) -> Result<(Result<(RecoveryCodeId, u64), &'static str>, Option<User>), Error> {
        let user = self.store.user_by_username(&tenant.id, username).await?;
        let mut hashes: Vec<(RecoveryCodeId, String)> = Vec::new();
        let mut refusal: Option<&'static str> = None;
        match &user {
            None => refusal = Some("unknown_account"),
            Some(u) if u.status != UserStatus::Active => refusal = Some("account_inactive"),
            Some(u) => {
                let active = self.active_policy(tenant).await?;
                let subject = self.subject(tenant, &u.id).await?;
                let (rules, _) = active
                    .policy
                    .recovery
                    .for_populations("recovery", &subject.populations);
                if rules.codes_allowed {
                    hashes = self.store.unused_recovery_codes(&tenant.id, &u.id).await?;
                    if hashes.is_empty() {
                        refusal = Some("no_codes");
                    }
                } else {
                    refusal = Some("recovery_codes_denied");
                }
            }
        }
        let parsed = RecoveryCode::parse(code);
        if parsed.is_none() && refusal.is_none() {
            refusal = Some("malformed_code");
        }
        let candidate = parsed.unwrap_or_else(|| RecoveryCode::generate(&mut rand::rng()));
        let count = hashes.len() as u64;
        let _turn = HASHING
            .acquire()
            .await
            .map_err(|_| Error::unavailable("recovery code checks are shutting down"))?;
        let matched = tokio::task::spawn_blocking(move || {
            let mut matched = None;
            for i in 0..VERIFICATIONS_PER_ATTEMPT.max(hashes.len()) {
                let (id, phc) = match hashes.get(i) {
                    Some((id, phc)) => (Some(id), phc.as_str()),
                    None => (None, decoy_hash()),
                };
                // No early exit: every attempt does the same work.
                if candidate.verify(phc) && matched.is_none() {
                    matched = id.cloned();
                }
            }
            matched
        })
        .await
        .map_err(|e| Error::unavailable(format!("checking a recovery code: {e}")))?;
        let outcome = match (refusal, matched) {
            (Some(why), _) => Err(why),
            (None, Some(id)) => Ok((id, count - 1)),
            (None, None) => Err("wrong_code"),
        };
        Ok((outcome, user))
    }

    /// Whether the active policy lets this user hold recovery codes (`[recovery] codes` for the
    /// user's populations): the account page offers them only then.
    pub async fn recovery_codes_allowed(
        &self,
        tenant: &Tenant,
        user: &UserId,
    ) -> Result<bool, Error> {
        let active = self.active_policy(tenant).await?;
        let subject = self.subject(tenant, user).await?;
        let (rules, _) = active
            .policy
            .recovery
            .for_populations("recovery", &subject.populations);
        Ok(rules.codes_allowed)
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

/// A recovery session for `user`: restricted to registering a passkey, the lowest level, a
/// short life, and marked with the path that opened it (`code:<id>`, `case:<id>`).
pub(crate) fn recovery_session(
    tenant: &Tenant,
    user: &User,
    path: String,
    now: Timestamp,
) -> (Session, Secret) {
    let token =
        Secret::generate_without_prefix(&mut rand::rng(), keyplane_core::client::TOKEN_PREFIX);
    let session = Session {
        id: SessionId::generate(),
        tenant_id: tenant.id.clone(),
        user_id: user.id.clone(),
        token_hash: token.hash(),
        aal: Aal::Aal1,
        amr: vec![],
        auth_time: now,
        credential_id: None,
        created_at: now,
        expires_at: now.plus_secs(RECOVERY_SESSION_SECS),
        elevated: None,
        restricted: Some("account recovery: register a new passkey, then sign in with it".into()),
        idle_secs: 0,
        last_seen_at: now,
        recovery: Some(path),
    };
    (session, token)
}
