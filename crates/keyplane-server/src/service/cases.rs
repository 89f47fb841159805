//! Help-desk recovery cases (issue 7, path 3): opening (publicly, without revealing whether the
//! account exists, or by an agent), fraud signals, the agent's checks, a second administrator's
//! approval through the dual-control mechanism, cooling-off (during which a holder of a working
//! passkey can cancel), the single-use recovery link and its restricted session.
//!
//! The state machine is `keyplane_core::recovery_case`; here each transition is read, applied,
//! and written over the version it was read at with its event, so two agents acting at once
//! cannot both move a case (the second gets `409 case_changed`).

use super::recovery::{recovery_session, RecoverySession};
use super::App;
use keyplane_core::audit::{Actor, AuditEvent, Caller, NewEvent};
use keyplane_core::policy::RecoveryRules;
use keyplane_core::recovery_case::{network_of, CaseRules, CaseState, Hold, RecoveryCase};
use keyplane_core::*;
use keyplane_store::{AuditBatch, AuditFilter, CaseFilter};
use serde_json::json;
use sha2::{Digest, Sha256};

/// What an administrator does to a case.
#[derive(Clone, Debug)]
pub enum CaseAction {
    /// Take the case for verification.
    Take,
    /// Record one identity check with its evidence.
    Check {
        check: String,
        passed: bool,
        evidence: String,
    },
    /// Declare the identity verified (every check passed): on to approval or cooling-off.
    Verified,
    /// Release the fraud holds after reviewing the account's timeline.
    Review {
        note: String,
    },
    /// Send a fresh recovery link (the earlier one stops working).
    SendLink,
    Deny {
        reason: String,
    },
    Cancel {
        reason: String,
    },
}

impl CaseAction {
    pub fn name(&self) -> &'static str {
        match self {
            CaseAction::Take => "take",
            CaseAction::Check { .. } => "check",
            CaseAction::Verified => "verified",
            CaseAction::Review { .. } => "review",
            CaseAction::SendLink => "send-link",
            CaseAction::Deny { .. } => "deny",
            CaseAction::Cancel { .. } => "cancel",
        }
    }
}

/// The least time a public case request takes to answer, whatever happened (see
/// [`App::request_recovery_case`]).
const CASE_REQUEST_FLOOR: std::time::Duration = std::time::Duration::from_millis(300);

/// The public answer to "open a case", the same whether or not the account exists.
pub const CASE_RECEIVED: &str = "If the account exists, a recovery case is open and the help desk will contact you through the contact details on file.";

/// A recovery link just minted, for the notification that carries it to the verified contact.
pub struct MintedLink {
    pub token: Secret,
    pub url: String,
    pub user: User,
    pub expires_at: Timestamp,
}

fn changed_elsewhere() -> Error {
    Error::conflict(
        "case_changed",
        "another administrator changed this case at the same moment; reload it and try again",
    )
}

fn link_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn rules_of(r: &RecoveryRules) -> CaseRules<'_> {
    CaseRules {
        checks: &r.case_checks,
        approval: r.case_approval,
        cooling_off_secs: r.cooling_off_secs,
        link_ttl_secs: r.link_ttl_secs,
        case_ttl_secs: r.case_ttl_secs,
        revoke_old_credentials: r.revoke_old_credentials,
    }
}

impl App {
    /// The public request to recover an account. Always the same answer ([`CASE_RECEIVED`]);
    /// rate-limited per address and per username. An unknown or inactive account records a
    /// refused `recovery.case_requested` event and opens nothing; an account that already has
    /// an open case gets no second one (the attempt is recorded on the account).
    pub async fn request_recovery_case(
        &self,
        tenant: &Tenant,
        username: &str,
        caller: &Caller,
    ) -> Result<(), Error> {
        let username = normalise_username(username)?;
        self.limit_recovery(tenant, &username, caller)?;
        // Opening a case for an existing account does more work (fraud signals, an insert)
        // than refusing an unknown one; answering no sooner than a fixed floor keeps the
        // timing from telling them apart.
        let floor = tokio::time::Instant::now() + CASE_REQUEST_FLOOR;
        let result = self.request_case_now(tenant, &username, caller).await;
        tokio::time::sleep_until(floor).await;
        result
    }

    async fn request_case_now(
        &self,
        tenant: &Tenant,
        username: &str,
        caller: &Caller,
    ) -> Result<(), Error> {
        let username = username.to_string();
        let user = self
            .store
            .user_by_username(&tenant.id, &username)
            .await?
            .filter(|u| u.status == UserStatus::Active);
        let Some(user) = user else {
            let event = caller
                .event("recovery.case_requested", "username", &username)
                .outcome(keyplane_core::audit::Outcome::Failure, "unknown_account");
            self.record_failure(tenant, event).await;
            return Ok(());
        };
        self.open_case(tenant, &user, "user", caller).await?;
        Ok(())
    }

    /// A help-desk agent opens a case for a user (who called in, say).
    pub async fn open_recovery_case_for(
        &self,
        tenant: &Tenant,
        user: &UserId,
        caller: &Caller,
    ) -> Result<RecoveryCase, Error> {
        let user = self.user_by_id(tenant, user).await?;
        if user.status != UserStatus::Active {
            return Err(Error::conflict(
                "user_inactive",
                "the account is suspended or deprovisioned; reactivate it first",
            ));
        }
        match self
            .open_case(tenant, &user, &caller.actor.id, caller)
            .await?
        {
            Some(c) => Ok(c),
            None => Err(Error::conflict(
                "case_open",
                "this account already has an open recovery case",
            )),
        }
    }

    /// Opens a case with the fraud signals the policy asks for; `None` when the user already
    /// has an open one (the repeated attempt is recorded, and counts as a signal).
    async fn open_case(
        &self,
        tenant: &Tenant,
        user: &User,
        opened_by: &str,
        caller: &Caller,
    ) -> Result<Option<RecoveryCase>, Error> {
        let now = self.clock.now();
        let open = self
            .store
            .list_recovery_cases(
                &tenant.id,
                &CaseFilter {
                    user: Some(user.id.clone()),
                    open_only: true,
                    limit: 1,
                    ..CaseFilter::default()
                },
            )
            .await?;
        if let Some(existing) = open.first() {
            let event = caller
                .event(
                    "recovery.case_requested",
                    "recovery_case",
                    existing.id.as_str(),
                )
                .outcome(keyplane_core::audit::Outcome::Failure, "case_open")
                .details(json!({ "user_id": user.id }));
            self.record_failure(tenant, event).await;
            return Ok(None);
        }
        let active = self.active_policy(tenant).await?;
        let subject = self.subject(tenant, &user.id).await?;
        let (rules, path) = active
            .policy
            .recovery
            .for_populations("recovery", &subject.populations);
        // The network signal is about who asks: a public request's address, not the help
        // desk's own when an agent opens a case for a caller.
        let from = if opened_by == "user" {
            caller.context.client_ip.clone()
        } else {
            None
        };
        let holds = self
            .fraud_signals(tenant, user, from.as_deref(), rules, now)
            .await?;
        let case = RecoveryCase::open(
            &tenant.id,
            &user.id,
            opened_by,
            from,
            &rules_of(rules),
            holds,
            now,
        );
        let event = caller
            .event("recovery.case_opened", "recovery_case", case.id.as_str())
            .details(json!({
                "user_id": user.id,
                "opened_by": opened_by,
                "rule": path,
                "checks": case.required_checks,
                "approval_required": case.approval_required,
                "cooling_off_secs": case.cooling_off_secs,
                "holds": case.holds.iter().map(|h| &h.signal).collect::<Vec<_>>(),
                "expires_at": case.expires_at.to_rfc3339(),
            }));
        self.store
            .insert_recovery_case(&case, AuditBatch::new(now, &[event]))
            .await?;
        if !case.holds.is_empty() {
            tracing::warn!(tenant = %tenant.name, case = %case.id, holds = case.holds.len(), "recovery case held for fraud review");
        }
        Ok(Some(case))
    }

    /// The fraud signals the policy watches, as holds.
    async fn fraud_signals(
        &self,
        tenant: &Tenant,
        user: &User,
        from: Option<&str>,
        rules: &RecoveryRules,
        now: Timestamp,
    ) -> Result<Vec<Hold>, Error> {
        let mut holds = Vec::new();
        let since = now.plus_secs(-rules.fraud_window_secs);
        let earlier = self
            .store
            .count_recovery_cases(&tenant.id, Some(&user.id), None, since)
            .await?;
        if earlier + 1 > u64::from(rules.fraud_max_cases) {
            holds.push(Hold {
                signal: "repeated_attempts".into(),
                detail: format!(
                    "{} recovery cases for this account within {} h (the policy allows {})",
                    earlier + 1,
                    rules.fraud_window_secs / 3600,
                    rules.fraud_max_cases
                ),
            });
        }
        if let Some(net) = from.and_then(network_of) {
            let n = self
                .store
                .count_recovery_cases(&tenant.id, None, Some(&net), since)
                .await?;
            if n + 1 > u64::from(rules.fraud_max_per_network) {
                holds.push(Hold {
                    signal: "network_burst".into(),
                    detail: format!(
                        "{} recovery cases from {net} within {} h (the policy allows {})",
                        n + 1,
                        rules.fraud_window_secs / 3600,
                        rules.fraud_max_per_network
                    ),
                });
            }
        }
        if rules.fraud_hold_admins {
            if let Some(role) = &user.role {
                holds.push(Hold {
                    signal: "admin_account".into(),
                    detail: format!("the account holds the {role} role"),
                });
            }
        }
        let creds = self
            .store
            .list_credentials(&tenant.id, Some(&user.id))
            .await?;
        if rules.fraud_new_device_secs > 0 {
            let window = now.plus_secs(-rules.fraud_new_device_secs);
            // A passkey added recently (not the account's first) that has signed in recently:
            // someone may have a foothold on a new device while "recovering" the account.
            if let Some(c) = creds.iter().find(|c| {
                c.status == CredentialStatus::Active
                    && creds
                        .iter()
                        .any(|o| o.id != c.id && o.created_at <= c.created_at)
                    && c.created_at >= window
                    && c.last_used_at.is_some_and(|t| t >= window)
            }) {
                holds.push(Hold {
                    signal: "recent_new_device".into(),
                    detail: format!(
                        "passkey {:?} was registered and used to sign in within the last {} h",
                        c.nickname,
                        rules.fraud_new_device_secs / 3600
                    ),
                });
            }
        }
        let alerts = self.store.list_fraud_alerts(&tenant.id).await?;
        if let Some(a) = alerts
            .iter()
            .find(|a| a.user_id == user.id && a.status == "open")
        {
            holds.push(Hold {
                signal: "sign_count_anomaly".into(),
                detail: format!("open fraud alert {} ({})", a.id, a.kind),
            });
        }
        Ok(holds)
    }

    /// A case of this tenant, moved on first if time alone moves it (cooling-off over,
    /// deadline passed).
    pub async fn recovery_case(
        &self,
        tenant: &Tenant,
        id: &RecoveryCaseId,
    ) -> Result<RecoveryCase, Error> {
        let case = self
            .store
            .recovery_case(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("case_not_found", "no such recovery case"))?;
        self.advance_case(tenant, case).await
    }

    pub async fn list_recovery_cases(
        &self,
        tenant: &Tenant,
        filter: &CaseFilter,
    ) -> Result<Vec<RecoveryCase>, Error> {
        let mut out = Vec::new();
        for c in self.store.list_recovery_cases(&tenant.id, filter).await? {
            out.push(self.advance_case(tenant, c).await?);
        }
        Ok(out)
    }

    /// Applies what time alone does to a case: expiry at its deadline, `cooling_off` → `ready`
    /// when the period has passed (which sends the recovery link, unless a hold blocks it).
    async fn advance_case(
        &self,
        tenant: &Tenant,
        case: RecoveryCase,
    ) -> Result<RecoveryCase, Error> {
        let now = self.clock.now();
        let system = Caller::system("recovery");
        let (next, action) = if case.is_overdue(now) {
            (case.expire(now)?, "recovery.case_expired")
        } else if case.state == CaseState::CoolingOff
            && case.cooling_off_until.is_some_and(|t| now >= t)
        {
            (case.mature(now)?, "recovery.case_ready")
        } else {
            return Ok(case);
        };
        let event = self.case_event(&system, action, &case, &next);
        if self
            .store
            .update_recovery_case(&next, None, AuditBatch::new(now, &[event]))
            .await?
        {
            Ok(next)
        } else {
            // Another node (or request) moved it first: read what it wrote.
            self.store
                .recovery_case(&tenant.id, &case.id)
                .await?
                .ok_or_else(|| Error::not_found("case_not_found", "no such recovery case"))
        }
    }

    /// Moves every case that time has moved, in every tenant (the janitor's round).
    pub async fn advance_recovery_cases(&self, tenant: &Tenant) -> Result<usize, Error> {
        let open = self
            .store
            .list_recovery_cases(
                &tenant.id,
                &CaseFilter {
                    open_only: true,
                    limit: 1000,
                    ..CaseFilter::default()
                },
            )
            .await?;
        let mut moved = 0;
        for c in open {
            let (before, v) = (c.state, c.version);
            let after = self.advance_case(tenant, c).await?;
            if after.state != before || after.version != v {
                moved += 1;
            }
        }
        Ok(moved)
    }

    fn case_event(
        &self,
        caller: &Caller,
        action: &'static str,
        before: &RecoveryCase,
        after: &RecoveryCase,
    ) -> NewEvent {
        caller
            .event(action, "recovery_case", after.id.as_str())
            .details(json!({
                "user_id": after.user_id,
                "from": before.state.as_str(),
                "to": after.state.as_str(),
                "version": after.version,
            }))
    }

    /// An administrator's action on a case. Illegal moves are `409 case_state` (naming the
    /// state met); a change written by someone else first is `409 case_changed`.
    pub async fn act_on_case(
        &self,
        tenant: &Tenant,
        id: &RecoveryCaseId,
        action: CaseAction,
        caller: &Caller,
    ) -> Result<RecoveryCase, Error> {
        let case = self.recovery_case(tenant, id).await?;
        let now = self.clock.now();
        let me = caller.actor.id.as_str();
        let (next, event) = match &action {
            CaseAction::Take => {
                let next = case.start_verification(me, now)?;
                let e = self.case_event(caller, "recovery.case_verifying", &case, &next);
                (next, e)
            }
            CaseAction::Check {
                check,
                passed,
                evidence,
            } => {
                let next = case.record_check(me, check, *passed, evidence, now)?;
                let mut e = self.case_event(caller, "recovery.check_recorded", &case, &next);
                e.details["check"] = json!(check);
                e.details["passed"] = json!(passed);
                e.details["evidence"] = json!(evidence.trim());
                (next, e)
            }
            CaseAction::Verified => {
                let next = case.verified(me, now)?;
                let action = match next.state {
                    CaseState::AwaitingApproval => "recovery.case_verified",
                    CaseState::CoolingOff => "recovery.case_cooling_off",
                    _ => "recovery.case_ready",
                };
                let mut e = self.case_event(caller, action, &case, &next);
                e.details["cooling_off_until"] =
                    json!(next.cooling_off_until.map(|t| t.to_rfc3339()));
                (next, e)
            }
            CaseAction::Review { note } => {
                let next = case.review_holds(me, note, now)?;
                let mut e = self.case_event(caller, "recovery.hold_reviewed", &case, &next);
                e.details["note"] = json!(note.trim());
                e.details["holds"] =
                    json!(case.holds.iter().map(|h| &h.signal).collect::<Vec<_>>());
                (next, e)
            }
            CaseAction::SendLink => {
                // Checked here so that a refusal is immediate; the link itself is minted when
                // the notification carrying it is delivered (never stored in plain text).
                case.issue_link(vec![0; 32], now)?;
                let e = self.case_event(caller, "recovery.link_requested", &case, &case);
                self.store
                    .append_events(&tenant.id, AuditBatch::new(now, &[e]))
                    .await?;
                return Ok(case);
            }
            CaseAction::Deny { reason } => {
                let reason = super::lifecycle::check_reason(reason)?;
                let next = case.deny(&reason, now)?;
                let mut e = self.case_event(caller, "recovery.case_denied", &case, &next);
                e.details["reason"] = json!(reason);
                (next, e)
            }
            CaseAction::Cancel { reason } => {
                let reason = super::lifecycle::check_reason(reason)?;
                let next = case.cancel(&reason, now)?;
                let mut e = self.case_event(caller, "recovery.case_cancelled", &case, &next);
                e.details["reason"] = json!(reason);
                (next, e)
            }
        };
        let mut events = vec![event];
        // Releasing the holds of a ready case lets its link go out now: the notification of
        // `recovery.link_requested` carries it to the verified contact.
        if matches!(action, CaseAction::Review { .. }) && next.state == CaseState::Ready {
            events.push(
                Caller::system("recovery")
                    .event("recovery.link_requested", "recovery_case", next.id.as_str())
                    .details(json!({ "user_id": next.user_id })),
            );
        }
        self.write_case(&next, &events).await?;
        // Dual control: the request for a second administrator is made in the same step.
        if next.state == CaseState::AwaitingApproval && case.state != CaseState::AwaitingApproval {
            let active = self.active_policy(tenant).await?;
            self.request_approval(
                tenant,
                "recovery.approve",
                json!({ "case": next.id, "user": next.user_id }),
                format!(
                    "approve recovery case {} for user {} (verified by {me})",
                    next.id, next.user_id
                ),
                &active.policy.governance,
                caller,
            )
            .await?;
        }
        Ok(next)
    }

    /// Writes a case over the version it was read at, with its events.
    async fn write_case(&self, next: &RecoveryCase, events: &[NewEvent]) -> Result<(), Error> {
        if !self
            .store
            .update_recovery_case(next, None, AuditBatch::new(self.clock.now(), events))
            .await?
        {
            return Err(changed_elsewhere());
        }
        Ok(())
    }

    /// Carries out an approved `recovery.approve` request: the approver is a different
    /// administrator from the agent (the approvals mechanism and the case both check).
    pub(crate) async fn approve_case(
        &self,
        tenant: &Tenant,
        id: &RecoveryCaseId,
        approver: &Caller,
    ) -> Result<RecoveryCase, Error> {
        let case = self.recovery_case(tenant, id).await?;
        let now = self.clock.now();
        let next = case.approve(&approver.actor.id, now)?;
        let action = if next.state == CaseState::CoolingOff {
            "recovery.case_cooling_off"
        } else {
            "recovery.case_ready"
        };
        let mut event = self.case_event(approver, action, &case, &next);
        event.details["approved_by"] = json!(approver.actor.id);
        event.details["cooling_off_until"] = json!(next.cooling_off_until.map(|t| t.to_rfc3339()));
        self.write_case(&next, &[event]).await?;
        Ok(next)
    }

    /// A signed-in holder of the account (a full session from a working passkey) cancels a
    /// case opened for it: the defence against someone else recovering the account.
    pub async fn cancel_my_case(
        &self,
        tenant: &Tenant,
        session: &Session,
        id: &RecoveryCaseId,
        caller: &Caller,
    ) -> Result<RecoveryCase, Error> {
        if session.restricted.is_some() || session.recovery.is_some() {
            return Err(Error::forbidden(
                "re_enrolment_required",
                "only a session from a working passkey can cancel a recovery case",
            ));
        }
        let case = self.recovery_case(tenant, id).await?;
        if case.user_id != session.user_id {
            return Err(Error::not_found("case_not_found", "no such recovery case"));
        }
        let now = self.clock.now();
        let next = case.cancel(
            "cancelled by the account holder, signed in with a passkey",
            now,
        )?;
        let event = self.case_event(caller, "recovery.case_cancelled", &case, &next);
        self.write_case(&next, &[event]).await?;
        Ok(next)
    }

    /// The open cases for the signed-in user's account.
    pub async fn my_recovery_cases(
        &self,
        tenant: &Tenant,
        user: &UserId,
    ) -> Result<Vec<RecoveryCase>, Error> {
        self.list_recovery_cases(
            tenant,
            &CaseFilter {
                user: Some(user.clone()),
                open_only: true,
                limit: 20,
                ..CaseFilter::default()
            },
        )
        .await
    }

    /// Mints a fresh recovery link for a `ready` case without an open hold, replacing any
    /// earlier one (`recovery.link_issued`, never the token). Called when the notification that
    /// carries it to the verified contact is delivered: the token exists only in that message.
    pub async fn issue_recovery_link(
        &self,
        tenant: &Tenant,
        id: &RecoveryCaseId,
    ) -> Result<MintedLink, Error> {
        let case = self.recovery_case(tenant, id).await?;
        let user = self.user_by_id(tenant, &case.user_id).await?;
        let token = Secret::generate_without_prefix(&mut rand::rng(), "kpr_");
        let now = self.clock.now();
        let next = case.issue_link(link_hash(token.expose()), now)?;
        let event = self
            .case_event(
                &Caller::system("recovery"),
                "recovery.link_issued",
                &case,
                &next,
            )
            .details(json!({
                "user_id": next.user_id,
                "expires_at": next.link_expires_at.map(|t| t.to_rfc3339()),
            }));
        self.write_case(&next, &[event]).await?;
        let origin = tenant
            .origins
            .first()
            .cloned()
            .unwrap_or_else(|| self.settings.public_url.clone());
        Ok(MintedLink {
            url: format!("{origin}/recover#token={}", token.expose()),
            token,
            user,
            expires_at: next.link_expires_at.unwrap_or(now),
        })
    }

    /// Uses a recovery link: a recovery session for the case's account, restricted to
    /// registering a passkey (which completes the case). Any failure is the same
    /// `401 recovery_link_invalid`.
    pub async fn redeem_recovery_link(
        &self,
        tenant: &Tenant,
        token: &str,
        caller: &Caller,
    ) -> Result<RecoverySession, Error> {
        let ip = caller.context.client_ip.as_deref().unwrap_or("-");
        // Links carry no username: the address limit is what counts.
        self.limit_recovery(tenant, &format!("link|{ip}"), caller)?;
        let invalid = || {
            Error::unauthenticated(
                "recovery_link_invalid",
                "this recovery link is not valid (used, expired or replaced)",
            )
        };
        let token = token.trim();
        if token.is_empty() || token.len() > 200 {
            return Err(invalid());
        }
        let Some(case) = self
            .store
            .recovery_case_by_link(&tenant.id, &link_hash(token))
            .await?
        else {
            let event = caller
                .event("recovery.link_failed", "tenant", tenant.id.as_str())
                .outcome(keyplane_core::audit::Outcome::Failure, "unknown_link");
            self.record_failure(tenant, event).await;
            return Err(invalid());
        };
        let now = self.clock.now();
        let user = self.user_by_id(tenant, &case.user_id).await?;
        let used = match case.use_link(now) {
            Ok(used) if user.status == UserStatus::Active => used,
            other => {
                let why = match other {
                    Err(e) => e.code,
                    Ok(_) => "account_inactive",
                };
                let event = caller
                    .event("recovery.link_failed", "recovery_case", case.id.as_str())
                    .outcome(keyplane_core::audit::Outcome::Failure, why)
                    .details(json!({ "user_id": case.user_id, "state": case.state.as_str() }));
                self.record_failure(tenant, event).await;
                return Err(invalid());
            }
        };
        let (session, token) = recovery_session(tenant, &user, format!("case:{}", case.id), now);
        let event = caller
            .event_as(
                Actor::user(&user.id),
                "recovery.link_used",
                "recovery_case",
                case.id.as_str(),
            )
            .details(json!({ "user_id": user.id, "session": session.id }));
        if !self
            .store
            .update_recovery_case(&used, Some(&session), AuditBatch::new(now, &[event]))
            .await?
        {
            return Err(invalid());
        }
        Ok(RecoverySession {
            session,
            token,
            user,
        })
    }

    /// For a passkey registered from a recovery session: the case it completes (`None` for a
    /// recovery code's session).
    pub(crate) async fn recovery_completion(
        &self,
        tenant: &Tenant,
        path: &str,
        now: Timestamp,
    ) -> Result<Option<RecoveryCase>, Error> {
        let Some(id) = path.strip_prefix("case:") else {
            return Ok(None);
        };
        let id = RecoveryCaseId::parse(id)
            .ok_or_else(|| Error::internal("a recovery session names a malformed case"))?;
        let case = self.recovery_case(tenant, &id).await?;
        case.complete(now).map(Some).map_err(|_| {
            Error::conflict(
                "case_state",
                format!(
                    "the recovery case is {} and cannot complete",
                    case.state.as_str().replace('_', " ")
                ),
            )
        })
    }

    /// The account's recent history from the audit log, for reviewers: every event about the
    /// user or naming them, from a week before the case opened, oldest first (at most 500).
    pub async fn case_timeline(
        &self,
        tenant: &Tenant,
        case: &RecoveryCase,
    ) -> Result<Vec<AuditEvent>, Error> {
        let user = case.user_id.as_str();
        let mut out = Vec::new();
        let mut after_seq = 0;
        loop {
            let page = self
                .store
                .list_audit_events(
                    &tenant.id,
                    &AuditFilter {
                        after_seq,
                        since: Some(case.created_at.plus_secs(-7 * 24 * 3600)),
                        until: None,
                        action: None,
                        outcome: None,
                        limit: 1000,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after_seq = last.seq;
            out.extend(page.into_iter().filter(|e| {
                e.target_id == user || e.actor_id == user || {
                    let d: serde_json::Value = serde_json::from_str(&e.details).unwrap_or_default();
                    d.get("user_id").and_then(|v| v.as_str()) == Some(user)
                        || d.get("user").and_then(|v| v.as_str()) == Some(user)
                }
            }));
            if out.len() >= 500 {
                out.truncate(500);
                break;
            }
        }
        Ok(out)
    }
}
