//! Dual control: one mechanism for every sensitive act the policy puts under it. An administrator
//! asks (`approval.requested`); a *different* administrator approves (`approval.approved`, then
//! the act runs with both names on it) or denies (`approval.denied`); nobody deciding in time
//! expires it. Each move is a conditional update, so two administrators deciding at once cannot
//! both win, and an act never runs twice.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::policy::Governance;
use keyplane_core::{Approval, ApprovalId, ApprovalStatus, Error, Tenant};
use keyplane_store::AuditBatch;
use serde_json::{json, Value};

/// The acts approvals know how to carry out: those the policy may put under dual control, and
/// exceptions, which always need a second administrator.
pub const APPROVABLE: &[&str] = &[
    "policy.apply",
    "policy.rollback",
    "credentials.bulk_revoke",
    "exception.grant",
    "clients.create",
    "recovery.approve",
];

impl App {
    /// Opens a request for approval of `action` (described by `payload`), open for the
    /// governance's `approval_ttl_secs`.
    pub async fn request_approval(
        &self,
        tenant: &Tenant,
        action: &str,
        payload: Value,
        summary: String,
        governance: &Governance,
        caller: &Caller,
    ) -> Result<Approval, Error> {
        if !APPROVABLE.contains(&action) {
            return Err(Error::invalid(
                "unknown_action",
                format!("{action:?} cannot be put under dual control"),
            ));
        }
        let now = self.clock.now();
        let approval = Approval {
            id: ApprovalId::generate(),
            tenant_id: tenant.id.clone(),
            action: action.to_string(),
            payload,
            summary,
            requested_by: caller.actor.id.clone(),
            requested_at: now,
            expires_at: now.plus_secs(governance.approval_ttl_secs),
            status: ApprovalStatus::Requested,
            decided_by: None,
            decided_at: None,
            note: None,
        };
        let event = caller
            .event("approval.requested", "approval", approval.id.as_str())
            .details(json!({
                "action": approval.action,
                "summary": approval.summary,
                "expires_at": approval.expires_at.to_rfc3339(),
            }));
        self.store
            .create_approval(&approval, AuditBatch::new(now, &[event]))
            .await?;
        Ok(approval)
    }

    /// Every approval of the tenant, newest first, with statuses as of now.
    pub async fn list_approvals(&self, tenant: &Tenant) -> Result<Vec<Approval>, Error> {
        let now = self.clock.now();
        Ok(self
            .store
            .list_approvals(&tenant.id)
            .await?
            .into_iter()
            .map(|mut a| {
                a.status = a.status_at(now);
                a
            })
            .collect())
    }

    /// Loads a request that is still open for a decision by `caller`.
    async fn open_approval(
        &self,
        tenant: &Tenant,
        id: &ApprovalId,
        caller: &Caller,
    ) -> Result<Approval, Error> {
        let approval = self
            .store
            .approval(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("approval_not_found", "no such approval"))?;
        let now = self.clock.now();
        match approval.status_at(now) {
            ApprovalStatus::Requested => {}
            ApprovalStatus::Expired => {
                if approval.status == ApprovalStatus::Requested {
                    let event = Caller::system("approvals")
                        .event("approval.expired", "approval", approval.id.as_str())
                        .details(json!({ "action": approval.action }));
                    self.store
                        .decide_approval(
                            &tenant.id,
                            id,
                            ApprovalStatus::Requested,
                            ApprovalStatus::Expired,
                            "system:approvals",
                            None,
                            AuditBatch::new(now, &[event]),
                        )
                        .await?;
                }
                return Err(Error::conflict(
                    "approval_expired",
                    format!(
                        "this request expired at {}; ask again",
                        approval.expires_at.to_rfc3339()
                    ),
                ));
            }
            other => {
                return Err(Error::conflict(
                    "approval_decided",
                    format!("this request is already {}", other.as_str()),
                ))
            }
        }
        if approval.requested_by == caller.actor.id
            || self
                .acts_for(tenant, &approval.requested_by, &caller.actor.id)
                .await?
        {
            return Err(Error::forbidden(
                "approver_is_requester",
                "dual control: a different administrator must decide this request (the owner of a machine client counts as its requester)",
            ));
        }
        Ok(approval)
    }

    /// Approves a request and carries out its act. Returns the act's result.
    pub async fn approve(
        &self,
        tenant: &Tenant,
        id: &ApprovalId,
        caller: &Caller,
    ) -> Result<(Approval, Value), Error> {
        let approval = self.open_approval(tenant, id, caller).await?;
        let now = self.clock.now();
        let event = caller
            .event("approval.approved", "approval", approval.id.as_str())
            .details(json!({ "action": approval.action, "requested_by": approval.requested_by }));
        if !self
            .store
            .decide_approval(
                &tenant.id,
                id,
                ApprovalStatus::Requested,
                ApprovalStatus::Approved,
                &caller.actor.id,
                None,
                AuditBatch::new(now, &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "approval_decided",
                "another administrator decided this request first",
            ));
        }
        match self.carry_out(tenant, &approval, caller).await {
            Ok(result) => {
                let decided = self
                    .store
                    .approval(&tenant.id, id)
                    .await?
                    .unwrap_or(approval);
                Ok((decided, result))
            }
            Err(e) => {
                let event = caller
                    .event("approval.failed", "approval", approval.id.as_str())
                    .outcome(keyplane_core::audit::Outcome::Failure, e.code)
                    .details(json!({ "action": approval.action }));
                self.store
                    .decide_approval(
                        &tenant.id,
                        id,
                        ApprovalStatus::Approved,
                        ApprovalStatus::Failed,
                        &caller.actor.id,
                        Some(&e.message),
                        AuditBatch::new(self.clock.now(), &[event]),
                    )
                    .await?;
                Err(Error::conflict(
                    "approval_failed",
                    format!("approved, but the act failed: {}", e.message),
                ))
            }
        }
    }

    /// Denies a request, with an optional note for the requester.
    pub async fn deny(
        &self,
        tenant: &Tenant,
        id: &ApprovalId,
        note: Option<&str>,
        caller: &Caller,
    ) -> Result<Approval, Error> {
        let approval = self.open_approval(tenant, id, caller).await?;
        let event = caller
            .event("approval.denied", "approval", approval.id.as_str())
            .details(json!({ "action": approval.action, "note": note }));
        if !self
            .store
            .decide_approval(
                &tenant.id,
                id,
                ApprovalStatus::Requested,
                ApprovalStatus::Denied,
                &caller.actor.id,
                note,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "approval_decided",
                "another administrator decided this request first",
            ));
        }
        Ok(self
            .store
            .approval(&tenant.id, id)
            .await?
            .unwrap_or(approval))
    }

    async fn carry_out(
        &self,
        tenant: &Tenant,
        approval: &Approval,
        approver: &Caller,
    ) -> Result<Value, Error> {
        match approval.action.as_str() {
            "policy.apply" => {
                let document = approval.payload["document"]
                    .as_str()
                    .ok_or_else(|| Error::internal("policy.apply approval without a document"))?;
                let version = self
                    .activate_policy_now(tenant, document, approver, Some(approval))
                    .await
                    .map_err(|e| match e {
                        super::ApplyError::Lint(errors) => Error::invalid(
                            "policy_invalid",
                            format!("the document no longer lints: {}", errors[0]),
                        ),
                        super::ApplyError::Other(e) => e,
                    })?;
                Ok(json!({ "version": version }))
            }
            "policy.rollback" => {
                let version = approval.payload["version"]
                    .as_i64()
                    .ok_or_else(|| Error::internal("policy.rollback approval without a version"))?;
                self.reactivate_policy_now(tenant, version, approver, Some(approval))
                    .await?;
                Ok(json!({ "version": version }))
            }
            "recovery.approve" => {
                let id = approval.payload["case"]
                    .as_str()
                    .and_then(keyplane_core::RecoveryCaseId::parse)
                    .ok_or_else(|| Error::internal("recovery.approve approval without a case"))?;
                let case = self.approve_case(tenant, &id, approver).await?;
                Ok(json!({ "case": case.id, "state": case.state.as_str() }))
            }
            "exception.grant" => {
                let e = self.grant_exception(tenant, approval, approver).await?;
                Ok(json!({ "exception": e.id, "expires_at": e.expires_at.to_rfc3339() }))
            }
            "credentials.bulk_revoke" => {
                let job = self.start_approved_bulk(tenant, approval, approver).await?;
                Ok(json!({ "job": job.id, "total": job.total }))
            }
            "clients.create" => {
                let c = self
                    .create_approved_client(tenant, approval, approver)
                    .await?;
                // No secret here: the requester obtains the first one by rotating the client.
                Ok(json!({
                    "client": c.id,
                    "expires_at": c.expires_at.to_rfc3339(),
                    "has_secret": false,
                }))
            }
            other => Err(Error::internal(format!(
                "approval for an unknown act {other:?}"
            ))),
        }
    }
}
