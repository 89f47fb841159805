//! Exceptions: governed, time-boxed departures from one rule of the policy for one user or one
//! population. Requested with a reason and a duration (at most `governance.exception_max_days`);
//! granted only by a *different* administrator through the approvals mechanism; cited by every
//! decision that relies on one; announced ahead of expiry; revocable.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

/// The rule paths (after `authenticators.` / `authenticators.<population>.`) an exception may
/// waive: authenticator rules only. Enrolment limits and step-up are not waivable.
const WAIVABLE: &[&str] = &[
    "attestation",
    "formats",
    "allow_aaguids",
    "deny_aaguids",
    "allow_models",
    "deny_models",
    "allow_aaguids+allow_models",
    "deny_statuses",
    "min_certification",
    "synced",
    "user_verification",
];

/// What an exception request asks for.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRequest {
    pub subject: ExceptionSubject,
    /// A rule path as decisions name it, e.g. `authenticators.regulated.synced`.
    pub rule: String,
    pub reason: String,
    pub duration_days: i64,
}

impl App {
    /// Asks for an exception; a second administrator grants it by approving the request.
    pub async fn request_exception(
        &self,
        tenant: &Tenant,
        req: ExceptionRequest,
        caller: &Caller,
    ) -> Result<Approval, Error> {
        let reason = super::check_reason(&req.reason)?;
        let policy = self.active_policy(tenant).await?.policy;
        let g = &policy.governance;
        if !(1..=g.exception_max_days).contains(&req.duration_days) {
            return Err(Error::invalid(
                "invalid_duration",
                format!(
                    "an exception lasts 1 to {} days (governance.exception_max_days)",
                    g.exception_max_days
                ),
            ));
        }
        let rest = req.rule.strip_prefix("authenticators.").unwrap_or("");
        let known = match rest.split_once('.') {
            Some((population, rule)) => {
                policy.populations.iter().any(|p| p == population) && WAIVABLE.contains(&rule)
            }
            None => WAIVABLE.contains(&rest),
        };
        if !known {
            return Err(Error::invalid(
                "invalid_rule",
                format!(
                    "{:?} is not a waivable rule: authenticators[.<population>].{{{}}}",
                    req.rule,
                    WAIVABLE.join(",")
                ),
            ));
        }
        let subject_label = match &req.subject {
            ExceptionSubject::User(u) => {
                let user = self.user_by_id(tenant, u).await?;
                format!("user {}", user.username)
            }
            ExceptionSubject::Population(p) => {
                if !policy.populations.contains(p) {
                    return Err(Error::invalid(
                        "unknown_population",
                        format!("{p:?} is not a population of the active policy"),
                    ));
                }
                format!("population {p}")
            }
        };
        let summary = format!(
            "waive {} for {subject_label} for {} day(s): {reason}",
            req.rule, req.duration_days
        );
        let payload = json!({
            "subject": req.subject,
            "rule": req.rule,
            "reason": reason,
            "duration_days": req.duration_days,
        });
        self.request_approval(tenant, "exception.grant", payload, summary, g, caller)
            .await
    }

    /// Called when a request is approved: the exception starts now.
    pub(crate) async fn grant_exception(
        &self,
        tenant: &Tenant,
        approval: &Approval,
        approver: &Caller,
    ) -> Result<PolicyException, Error> {
        let req: ExceptionRequest = serde_json::from_value(approval.payload.clone())
            .map_err(|e| Error::internal(format!("exception approval payload: {e}")))?;
        let now = self.clock.now();
        let exception = PolicyException {
            id: ExceptionId::generate(),
            tenant_id: tenant.id.clone(),
            subject: req.subject,
            rule: req.rule,
            reason: req.reason,
            requested_by: approval.requested_by.clone(),
            approved_by: approver.actor.id.clone(),
            approval_id: approval.id.clone(),
            status: "active".into(),
            created_at: now,
            expires_at: now.plus_secs(req.duration_days * 86_400),
            announced_at: None,
            ended_by: None,
            ended_at: None,
        };
        let event = approver
            .event("exception.granted", "exception", exception.id.as_str())
            .details(json!({
                "subject": exception.subject,
                "rule": exception.rule,
                "reason": exception.reason,
                "expires_at": exception.expires_at.to_rfc3339(),
                "approval": approval.id,
                "requested_by": approval.requested_by,
            }));
        self.store
            .create_exception(&exception, AuditBatch::new(now, &[event]))
            .await?;
        Ok(exception)
    }

    /// Every exception, newest first, with statuses as of now.
    pub async fn list_exceptions(&self, tenant: &Tenant) -> Result<Vec<PolicyException>, Error> {
        let now = self.clock.now();
        Ok(self
            .store
            .list_exceptions(&tenant.id)
            .await?
            .into_iter()
            .map(|mut e| {
                e.status = e.status_at(now).to_string();
                e
            })
            .collect())
    }

    /// Ends an active exception early: `exception.revoked`.
    pub async fn revoke_exception(
        &self,
        tenant: &Tenant,
        id: &ExceptionId,
        reason: &str,
        caller: &Caller,
    ) -> Result<(), Error> {
        let reason = super::check_reason(reason)?;
        if !self
            .store
            .list_exceptions(&tenant.id)
            .await?
            .iter()
            .any(|e| &e.id == id)
        {
            return Err(Error::not_found(
                "exception_not_found",
                "no such exception in this tenant",
            ));
        }
        let event = caller
            .event("exception.revoked", "exception", id.as_str())
            .details(json!({ "reason": reason }));
        if !self
            .store
            .end_exception(
                &tenant.id,
                id,
                "revoked",
                &caller.actor.id,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "exception_not_active",
                "no active exception with this id",
            ));
        }
        Ok(())
    }

    /// Applies the exceptions in force for this user (or their populations) to a decision:
    /// the rules they name are waived, and the ids relied on are returned to be cited. An
    /// allowed decision needs no exception, so the common case reads nothing.
    pub(crate) async fn apply_exceptions(
        &self,
        tenant: &Tenant,
        user: &UserId,
        populations: &[String],
        decision: keyplane_core::policy::Decision,
    ) -> Result<(keyplane_core::policy::Decision, Vec<String>), Error> {
        if decision.verdict == keyplane_core::policy::Verdict::Allow {
            return Ok((decision, vec![]));
        }
        let waivers: Vec<(String, String)> = self
            .store
            .active_exceptions(&tenant.id, self.clock.now())
            .await?
            .into_iter()
            .filter(|e| e.covers(user, populations))
            .map(|e| (e.id.as_str().to_string(), e.rule))
            .collect();
        Ok(keyplane_core::policy::waive(decision, &waivers))
    }

    /// Housekeeping: announces exceptions expiring within `governance.exception_notice_days`
    /// (`exception.expiring`, once) and ends those past their expiry (`exception.expired`).
    pub async fn exception_housekeeping(&self, tenant: &Tenant) -> Result<(u64, u64), Error> {
        let now = self.clock.now();
        let notice = self
            .active_policy(tenant)
            .await?
            .policy
            .governance
            .exception_notice_days;
        let system = Caller::system("exceptions");
        let (mut announced, mut expired) = (0, 0);
        for e in self.store.list_exceptions(&tenant.id).await? {
            if e.status != "active" {
                continue;
            }
            if now >= e.expires_at {
                let event = system
                    .event("exception.expired", "exception", e.id.as_str())
                    .details(json!({ "rule": e.rule, "subject": e.subject }));
                if self
                    .store
                    .end_exception(
                        &tenant.id,
                        &e.id,
                        "expired",
                        "system:exceptions",
                        AuditBatch::new(now, &[event]),
                    )
                    .await?
                {
                    expired += 1;
                }
            } else if e.announced_at.is_none() && e.expires_at.0 - now.0 <= notice * 86_400_000 {
                let event = system
                    .event("exception.expiring", "exception", e.id.as_str())
                    .details(json!({
                        "rule": e.rule,
                        "subject": e.subject,
                        "expires_at": e.expires_at.to_rfc3339(),
                    }));
                if self
                    .store
                    .announce_exception(&tenant.id, &e.id, AuditBatch::new(now, &[event]))
                    .await?
                {
                    announced += 1;
                }
            }
        }
        Ok((announced, expired))
    }
}
