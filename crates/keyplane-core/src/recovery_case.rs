//! Help-desk recovery cases (issue 7, path 3): the governed way back into an account whose
//! passkeys are lost. A case is a small state machine; this module holds it as pure functions
//! (every transition checks the state it starts from and returns the changed case), the store
//! persists a case with an optimistic version check, so two agents acting at once cannot both
//! move it.
//!
//! ```text
//! requested ─▶ verifying ─▶ awaiting_approval ─▶ cooling_off ─▶ ready ─▶ completed
//!                   │               │                 │           │
//!                   └───────────────┴──── denied / cancelled / expired (from any open state)
//! ```
//! `awaiting_approval` is skipped when the policy asks for no second administrator,
//! `cooling_off` when its period is 0. A fraud hold does not change the state: it blocks the
//! recovery link (and so completion) until an administrator reviews it.

use crate::{Error, RecoveryCaseId, TenantId, Timestamp, UserId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    Requested,
    Verifying,
    AwaitingApproval,
    CoolingOff,
    Ready,
    Completed,
    Denied,
    Cancelled,
    Expired,
}

impl CaseState {
    pub const ALL: [CaseState; 9] = [
        CaseState::Requested,
        CaseState::Verifying,
        CaseState::AwaitingApproval,
        CaseState::CoolingOff,
        CaseState::Ready,
        CaseState::Completed,
        CaseState::Denied,
        CaseState::Cancelled,
        CaseState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Requested => "requested",
            CaseState::Verifying => "verifying",
            CaseState::AwaitingApproval => "awaiting_approval",
            CaseState::CoolingOff => "cooling_off",
            CaseState::Ready => "ready",
            CaseState::Completed => "completed",
            CaseState::Denied => "denied",
            CaseState::Cancelled => "cancelled",
            CaseState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<CaseState> {
        CaseState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Completed, denied, cancelled and expired cases never move again.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            CaseState::Completed | CaseState::Denied | CaseState::Cancelled | CaseState::Expired
        )
    }
}

/// One identity check as an agent recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub check: String,
    pub passed: bool,
    /// What the agent saw ("passport, number ends 4411, photo matches"): free text, 1-1000
    /// characters, kept in the case and the audit log.
    pub evidence: String,
    pub by: String,
    pub at: Timestamp,
}

/// A fraud signal that holds a case until an administrator reviews it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// `repeated_attempts`, `recent_new_device`, `admin_account`, `network_burst`,
    /// `sign_count_anomaly`.
    pub signal: String,
    pub detail: String,
}

/// The review that released a case's holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReview {
    pub by: String,
    pub note: String,
    pub at: Timestamp,
}

/// A help-desk recovery case. The policy's rules for the user's populations are copied in when
/// it opens, so a policy change does not move a case mid-way. Stored as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryCase {
    pub id: RecoveryCaseId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub state: CaseState,
    /// Who opened it: `user` (the public endpoint) or the acting administrator's actor id.
    pub opened_by: String,
    /// The client address it was opened from, for the network signal.
    pub opened_from: Option<String>,
    /// The agent verifying it.
    pub agent: Option<String>,
    pub required_checks: Vec<String>,
    pub checks: Vec<CheckRecord>,
    pub approval_required: bool,
    pub approved_by: Option<String>,
    pub cooling_off_secs: i64,
    pub cooling_off_until: Option<Timestamp>,
    pub link_ttl_secs: i64,
    /// SHA-256 of the recovery link's token, and when that link stops working.
    pub link_hash: Option<Vec<u8>>,
    pub link_expires_at: Option<Timestamp>,
    pub link_used_at: Option<Timestamp>,
    pub revoke_old_credentials: bool,
    pub holds: Vec<Hold>,
    pub hold_review: Option<HoldReview>,
    /// Why it was denied or cancelled, or how it completed.
    pub outcome: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
    /// Bumped by every change; the store writes a change only over the version it was read at.
    pub version: i64,
}

/// What a case's policy says, copied in when it opens.
pub struct CaseRules<'a> {
    pub checks: &'a [String],
    pub approval: bool,
    pub cooling_off_secs: i64,
    pub link_ttl_secs: i64,
    pub case_ttl_secs: i64,
    pub revoke_old_credentials: bool,
}

fn illegal(case: &RecoveryCase, what: &str) -> Error {
    Error::conflict(
        "case_state",
        format!(
            "a case that is {} cannot be {what}",
            case.state.as_str().replace('_', " ")
        ),
    )
    .with("state", case.state.as_str())
}

impl RecoveryCase {
    /// A new case in `requested`.
    pub fn open(
        tenant: &TenantId,
        user: &UserId,
        opened_by: &str,
        opened_from: Option<String>,
        rules: &CaseRules<'_>,
        holds: Vec<Hold>,
        now: Timestamp,
    ) -> RecoveryCase {
        RecoveryCase {
            id: RecoveryCaseId::generate(),
            tenant_id: tenant.clone(),
            user_id: user.clone(),
            state: CaseState::Requested,
            opened_by: opened_by.to_string(),
            opened_from,
            agent: None,
            required_checks: rules.checks.to_vec(),
            checks: vec![],
            approval_required: rules.approval,
            approved_by: None,
            cooling_off_secs: rules.cooling_off_secs,
            cooling_off_until: None,
            link_ttl_secs: rules.link_ttl_secs,
            link_hash: None,
            link_expires_at: None,
            link_used_at: None,
            revoke_old_credentials: rules.revoke_old_credentials,
            holds,
            hold_review: None,
            outcome: None,
            created_at: now,
            updated_at: now,
            expires_at: now.plus_secs(rules.case_ttl_secs),
            version: 0,
        }
    }

    fn changed(&self, now: Timestamp) -> RecoveryCase {
        RecoveryCase {
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// Fraud holds raised and not yet reviewed.
    pub fn on_hold(&self) -> bool {
        !self.holds.is_empty() && self.hold_review.is_none()
    }

    /// Past its deadline and still open: the next look at it expires it.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        !self.state.is_closed() && now >= self.expires_at
    }

    fn check_open(&self, now: Timestamp, what: &str) -> Result<(), Error> {
        if self.state.is_closed() {
            return Err(illegal(self, what));
        }
        if self.is_overdue(now) {
            return Err(Error::conflict(
                "case_expired",
                "the case passed its deadline and has expired",
            ));
        }
        Ok(())
    }

    /// An agent takes the case: `requested` → `verifying`.
    pub fn start_verification(&self, agent: &str, now: Timestamp) -> Result<Self, Error> {
        self.check_open(now, "taken for verification")?;
        if self.state != CaseState::Requested {
            return Err(illegal(self, "taken for verification"));
        }
        let mut c = self.changed(now);
        c.state = CaseState::Verifying;
        c.agent = Some(agent.to_string());
        Ok(c)
    }

    /// Records one identity check (a later record of the same check replaces the earlier one).
    /// Only the verifying agent may record checks.
    pub fn record_check(
        &self,
        agent: &str,
        check: &str,
        passed: bool,
        evidence: &str,
        now: Timestamp,
    ) -> Result<Self, Error> {
        self.check_open(now, "given checks")?;
        if self.state != CaseState::Verifying {
            return Err(illegal(self, "given checks"));
        }
        self.require_agent(agent)?;
        if !self.required_checks.iter().any(|c| c == check) {
            return Err(Error::invalid(
                "unknown_check",
                format!(
                    "the policy for this account asks for these checks: {}",
                    self.required_checks.join(", ")
                ),
            ));
        }
        let evidence = evidence.trim();
        if evidence.is_empty() || evidence.chars().count() > 1000 {
            return Err(Error::invalid(
                "invalid_evidence",
                "describe the evidence in 1-1000 characters",
            ));
        }
        let mut c = self.changed(now);
        c.checks.retain(|r| r.check != check);
        c.checks.push(CheckRecord {
            check: check.to_string(),
            passed,
            evidence: evidence.to_string(),
            by: agent.to_string(),
            at: now,
        });
        Ok(c)
    }

    fn require_agent(&self, agent: &str) -> Result<(), Error> {
        if self.agent.as_deref() != Some(agent) {
            return Err(Error::forbidden(
                "not_case_agent",
                "another agent is verifying this case",
            ));
        }
        Ok(())
    }

    /// The checks the policy asks for that are not recorded as passed.
    pub fn missing_checks(&self) -> Vec<String> {
        self.required_checks
            .iter()
            .filter(|req| !self.checks.iter().any(|c| &c.check == *req && c.passed))
            .cloned()
            .collect()
    }

    /// The agent declares the identity verified: every check passed. On to a second
    /// administrator's approval, the cooling-off period, or straight to `ready`.
    pub fn verified(&self, agent: &str, now: Timestamp) -> Result<Self, Error> {
        self.check_open(now, "declared verified")?;
        if self.state != CaseState::Verifying {
            return Err(illegal(self, "declared verified"));
        }
        self.require_agent(agent)?;
        let missing = self.missing_checks();
        if !missing.is_empty() {
            return Err(Error::conflict(
                "checks_incomplete",
                format!("these checks have not passed: {}", missing.join(", ")),
            ));
        }
        let c = self.changed(now);
        Ok(if self.approval_required {
            RecoveryCase {
                state: CaseState::AwaitingApproval,
                ..c
            }
        } else {
            c.after_approval(now)
        })
    }

    fn after_approval(mut self, now: Timestamp) -> Self {
        if self.cooling_off_secs > 0 {
            self.state = CaseState::CoolingOff;
            self.cooling_off_until = Some(now.plus_secs(self.cooling_off_secs));
        } else {
            self.state = CaseState::Ready;
        }
        self
    }

    /// A second administrator approves: `awaiting_approval` → `cooling_off` (or `ready`). The
    /// agent who verified may not approve their own case.
    pub fn approve(&self, approver: &str, now: Timestamp) -> Result<Self, Error> {
        self.check_open(now, "approved")?;
        if self.state != CaseState::AwaitingApproval {
            return Err(illegal(self, "approved"));
        }
        if self.agent.as_deref() == Some(approver) {
            return Err(Error::forbidden(
                "same_administrator",
                "the agent who verified the case cannot also approve it",
            ));
        }
        let mut c = self.changed(now);
        c.approved_by = Some(approver.to_string());
        Ok(c.after_approval(now))
    }

    /// The cooling-off period has passed: `cooling_off` → `ready`.
    pub fn mature(&self, now: Timestamp) -> Result<Self, Error> {
        self.check_open(now, "made ready")?;
        match (self.state, self.cooling_off_until) {
            (CaseState::CoolingOff, Some(until)) if now >= until => {
                let mut c = self.changed(now);
                c.state = CaseState::Ready;
                Ok(c)
            }
            (CaseState::CoolingOff, _) => Err(Error::conflict(
                "cooling_off",
                "the cooling-off period has not passed yet",
            )),
            _ => Err(illegal(self, "made ready")),
        }
    }

    /// An administrator reviews the fraud holds and releases them.
    pub fn review_holds(&self, reviewer: &str, note: &str, now: Timestamp) -> Result<Self, Error> {
        self.check_open(now, "reviewed")?;
        if !self.on_hold() {
            return Err(Error::conflict(
                "no_hold",
                "this case has no fraud hold waiting for review",
            ));
        }
        let note = note.trim();
        if note.is_empty() || note.chars().count() > 1000 {
            return Err(Error::invalid(
                "invalid_note",
                "give a review note of 1-1000 characters",
            ));
        }
        let mut c = self.changed(now);
        c.hold_review = Some(HoldReview {
            by: reviewer.to_string(),
            note: note.to_string(),
            at: now,
        });
        Ok(c)
    }

    /// A fresh recovery link (its token's hash) for a `ready` case without a hold; any earlier
    /// link stops working.
    pub fn issue_link(&self, token_hash: Vec<u8>, now: Timestamp) -> Result<Self, Error> {
        self.check_open(now, "given a recovery link")?;
        if self.state != CaseState::Ready {
            return Err(illegal(self, "given a recovery link"));
        }
        if self.on_hold() {
            return Err(Error::conflict(
                "case_on_hold",
                "a fraud hold blocks this case until an administrator reviews it",
            ));
        }
        let mut c = self.changed(now);
        c.link_hash = Some(token_hash);
        c.link_expires_at = Some(now.plus_secs(self.link_ttl_secs));
        c.link_used_at = None;
        Ok(c)
    }

    /// The recovery link is used (it opens a restricted session): single use, before it expires.
    pub fn use_link(&self, now: Timestamp) -> Result<Self, Error> {
        let invalid = || {
            Error::unauthenticated(
                "recovery_link_invalid",
                "this recovery link is not valid (used, expired or replaced)",
            )
        };
        if self.state != CaseState::Ready || self.is_overdue(now) || self.on_hold() {
            return Err(invalid());
        }
        match self.link_expires_at {
            Some(until) if now < until && self.link_used_at.is_none() => {
                let mut c = self.changed(now);
                c.link_used_at = Some(now);
                Ok(c)
            }
            _ => Err(invalid()),
        }
    }

    /// The restricted session registered a new passkey: `ready` → `completed`.
    pub fn complete(&self, now: Timestamp) -> Result<Self, Error> {
        if self.state != CaseState::Ready || self.link_used_at.is_none() {
            return Err(illegal(self, "completed"));
        }
        let mut c = self.changed(now);
        c.state = CaseState::Completed;
        c.outcome = Some(if self.revoke_old_credentials {
            "new passkey registered; the account's other passkeys revoked".into()
        } else {
            "new passkey registered; the account's other passkeys kept".into()
        });
        Ok(c)
    }

    /// An administrator refuses the case (from any open state).
    pub fn deny(&self, reason: &str, now: Timestamp) -> Result<Self, Error> {
        if self.state.is_closed() {
            return Err(illegal(self, "denied"));
        }
        let mut c = self.changed(now);
        c.state = CaseState::Denied;
        c.outcome = Some(reason.to_string());
        Ok(c)
    }

    /// The account's holder (signed in with a passkey) or an administrator calls it off.
    pub fn cancel(&self, reason: &str, now: Timestamp) -> Result<Self, Error> {
        if self.state.is_closed() {
            return Err(illegal(self, "cancelled"));
        }
        let mut c = self.changed(now);
        c.state = CaseState::Cancelled;
        c.outcome = Some(reason.to_string());
        Ok(c)
    }

    /// Past its deadline: any open state → `expired`.
    pub fn expire(&self, now: Timestamp) -> Result<Self, Error> {
        if !self.is_overdue(now) {
            return Err(illegal(self, "expired"));
        }
        let mut c = self.changed(now);
        c.state = CaseState::Expired;
        c.outcome = Some("not completed before its deadline".into());
        Ok(c)
    }
}

/// The network a client address belongs to, for the "many cases from one network" signal:
/// the /24 of an IPv4 address, the /48 of an IPv6 one.
pub fn network_of(ip: &str) -> Option<String> {
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return network_of(&v4.to_string());
            }
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn rules(approval: bool, cooling: i64) -> (Vec<String>, bool, i64) {
        (
            vec!["identity_document".into(), "callback".into()],
            approval,
            cooling,
        )
    }

    fn case(approval: bool, cooling: i64, holds: Vec<Hold>) -> RecoveryCase {
        let (checks, approval, cooling_off_secs) = rules(approval, cooling);
        RecoveryCase::open(
            &TenantId::generate(),
            &UserId::generate(),
            "user",
            Some("192.0.2.7".into()),
            &CaseRules {
                checks: &checks,
                approval,
                cooling_off_secs,
                link_ttl_secs: 900,
                case_ttl_secs: 7 * 86_400,
                revoke_old_credentials: true,
            },
            holds,
            T0,
        )
    }

    fn at(secs: i64) -> Timestamp {
        T0.plus_secs(secs)
    }

    fn verified(c: &RecoveryCase) -> RecoveryCase {
        let c = c.start_verification("agent-a", at(1)).unwrap();
        let c = c
            .record_check("agent-a", "identity_document", true, "passport", at(2))
            .unwrap();
        let c = c
            .record_check("agent-a", "callback", true, "called +44…", at(3))
            .unwrap();
        c.verified("agent-a", at(4)).unwrap()
    }

    #[test]
    fn the_full_path_with_approval_and_cooling_off() {
        let c = case(true, 3600, vec![]);
        assert_eq!(c.state, CaseState::Requested);
        let c = verified(&c);
        assert_eq!(c.state, CaseState::AwaitingApproval);
        let c = c.approve("admin-b", at(5)).unwrap();
        assert_eq!(c.state, CaseState::CoolingOff);
        assert_eq!(c.cooling_off_until, Some(at(3605)));
        assert_eq!(c.mature(at(100)).unwrap_err().code, "cooling_off");
        let c = c.mature(at(3605)).unwrap();
        assert_eq!(c.state, CaseState::Ready);
        let c = c.issue_link(vec![1; 32], at(3606)).unwrap();
        assert_eq!(c.link_expires_at, Some(at(3606 + 900)));
        let c = c.use_link(at(3607)).unwrap();
        assert_eq!(
            c.use_link(at(3608)).unwrap_err().code,
            "recovery_link_invalid",
            "single use"
        );
        let c = c.complete(at(3610)).unwrap();
        assert_eq!(c.state, CaseState::Completed);
        assert_eq!(c.version, 9, "every change bumps the version");
    }

    #[test]
    fn without_approval_or_cooling_off_a_verified_case_is_ready() {
        let c = verified(&case(false, 0, vec![]));
        assert_eq!(c.state, CaseState::Ready);
        let c = verified(&case(false, 60, vec![]));
        assert_eq!(c.state, CaseState::CoolingOff);
    }

    #[test]
    fn verification_needs_every_check_passed_by_the_agent_who_took_the_case() {
        let c = case(false, 0, vec![])
            .start_verification("agent-a", at(1))
            .unwrap();
        let e = c
            .record_check("agent-b", "callback", true, "x", at(2))
            .unwrap_err();
        assert_eq!(e.code, "not_case_agent");
        let e = c
            .record_check("agent-a", "dna_test", true, "x", at(2))
            .unwrap_err();
        assert_eq!(e.code, "unknown_check");
        let e = c
            .record_check("agent-a", "callback", true, "  ", at(2))
            .unwrap_err();
        assert_eq!(e.code, "invalid_evidence");
        let c = c
            .record_check("agent-a", "identity_document", true, "passport", at(2))
            .unwrap();
        let c = c
            .record_check("agent-a", "callback", false, "no answer", at(3))
            .unwrap();
        let e = c.verified("agent-a", at(4)).unwrap_err();
        assert_eq!(e.code, "checks_incomplete");
        assert!(e.message.contains("callback"), "{}", e.message);
        // A later record replaces the failed one.
        let c = c
            .record_check("agent-a", "callback", true, "answered", at(5))
            .unwrap();
        assert_eq!(c.checks.len(), 2);
        assert_eq!(
            c.verified("agent-b", at(6)).unwrap_err().code,
            "not_case_agent"
        );
        assert_eq!(
            c.verified("agent-a", at(6)).unwrap().state,
            CaseState::Ready
        );
    }

    #[test]
    fn the_verifying_agent_cannot_approve_their_own_case() {
        let c = verified(&case(true, 0, vec![]));
        assert_eq!(
            c.approve("agent-a", at(5)).unwrap_err().code,
            "same_administrator"
        );
        assert_eq!(c.approve("admin-b", at(5)).unwrap().state, CaseState::Ready);
    }

    #[test]
    fn every_illegal_transition_is_refused_with_the_state_it_met() {
        let requested = case(true, 60, vec![]);
        let verifying = requested.start_verification("agent-a", at(1)).unwrap();
        let awaiting = verified(&requested);
        let cooling = awaiting.approve("admin-b", at(5)).unwrap();
        let ready = cooling.mature(at(70)).unwrap();
        let completed = ready
            .issue_link(vec![0; 32], at(71))
            .unwrap()
            .use_link(at(72))
            .unwrap()
            .complete(at(73))
            .unwrap();
        let denied = requested.deny("no", at(1)).unwrap();
        let cancelled = requested.cancel("mine", at(1)).unwrap();
        let expired = requested.expire(at(8 * 86_400)).unwrap();
        let all = [
            &requested, &verifying, &awaiting, &cooling, &ready, &completed, &denied, &cancelled,
            &expired,
        ];
        type Move = fn(&RecoveryCase) -> Result<RecoveryCase, Error>;
        let moves: [(&str, Move, CaseState); 7] = [
            (
                "start",
                |c| c.start_verification("agent-a", at(80)),
                CaseState::Requested,
            ),
            (
                "verified",
                |c| c.verified("agent-a", at(80)),
                CaseState::Verifying,
            ),
            (
                "approve",
                |c| c.approve("admin-b", at(80)),
                CaseState::AwaitingApproval,
            ),
            ("mature", |c| c.mature(at(80)), CaseState::CoolingOff),
            (
                "issue_link",
                |c| c.issue_link(vec![2; 32], at(80)),
                CaseState::Ready,
            ),
            (
                "check",
                |c| c.record_check("agent-a", "callback", true, "x", at(80)),
                CaseState::Verifying,
            ),
            ("complete", |c| c.complete(at(80)), CaseState::Ready),
        ];
        for (name, step, from) in moves {
            for c in all {
                let r = step(c);
                if c.state == from {
                    // `complete` from a ready case also needs its link used first.
                    if name == "complete" {
                        assert_eq!(r.unwrap_err().code, "case_state");
                    } else if name != "verified" {
                        assert!(r.is_ok(), "{name} from {:?}: {r:?}", c.state);
                    }
                } else {
                    let e = r.expect_err(name);
                    assert_eq!(e.code, "case_state", "{name} from {:?}", c.state);
                    assert!(
                        e.extra.contains(&("state", c.state.as_str().to_string())),
                        "{name}: {e:?}"
                    );
                }
            }
        }
        for c in [&completed, &denied, &cancelled, &expired] {
            assert_eq!(c.deny("x", at(80)).unwrap_err().code, "case_state");
            assert_eq!(c.cancel("x", at(80)).unwrap_err().code, "case_state");
        }
        for c in [&requested, &verifying, &awaiting, &cooling, &ready] {
            assert_eq!(c.deny("x", at(80)).unwrap().state, CaseState::Denied);
            assert_eq!(c.cancel("x", at(80)).unwrap().state, CaseState::Cancelled);
        }
    }

    #[test]
    fn an_overdue_case_only_expires() {
        let c = case(false, 0, vec![]);
        let late = at(7 * 86_400);
        assert!(c.is_overdue(late));
        assert_eq!(
            c.start_verification("a", late).unwrap_err().code,
            "case_expired"
        );
        assert_eq!(
            c.expire(at(10)).unwrap_err().code,
            "case_state",
            "not yet due"
        );
        let e = c.expire(late).unwrap();
        assert_eq!(e.state, CaseState::Expired);
        assert_eq!(e.expire(late).unwrap_err().code, "case_state");
        let ready = verified(&c).issue_link(vec![1; 32], at(10)).unwrap();
        assert_eq!(
            ready.use_link(late).unwrap_err().code,
            "recovery_link_invalid"
        );
    }

    #[test]
    fn a_link_expires_and_a_new_one_replaces_it() {
        let ready = verified(&case(false, 0, vec![]));
        let l1 = ready.issue_link(vec![1; 32], at(10)).unwrap();
        assert_eq!(
            l1.use_link(at(10 + 900)).unwrap_err().code,
            "recovery_link_invalid"
        );
        let l2 = l1.issue_link(vec![2; 32], at(2000)).unwrap();
        assert_eq!(l2.link_hash, Some(vec![2; 32]));
        assert!(l2.use_link(at(2001)).is_ok());
    }

    #[test]
    fn a_hold_blocks_the_link_until_reviewed() {
        let hold = Hold {
            signal: "admin_account".into(),
            detail: "the account holds the owner role".into(),
        };
        let c = verified(&case(false, 0, vec![hold]));
        assert!(c.on_hold());
        assert_eq!(
            c.issue_link(vec![1; 32], at(5)).unwrap_err().code,
            "case_on_hold"
        );
        assert_eq!(
            c.review_holds("admin-b", " ", at(5)).unwrap_err().code,
            "invalid_note"
        );
        let c = c
            .review_holds("admin-b", "called the manager", at(5))
            .unwrap();
        assert!(!c.on_hold());
        assert_eq!(
            c.review_holds("admin-b", "again", at(6)).unwrap_err().code,
            "no_hold"
        );
        assert!(c.issue_link(vec![1; 32], at(6)).is_ok());
    }

    #[test]
    fn networks_group_addresses() {
        assert_eq!(network_of("192.0.2.77").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(
            network_of("::ffff:192.0.2.1").as_deref(),
            Some("192.0.2.0/24")
        );
        assert_eq!(
            network_of("2001:db8:abcd:12::1").as_deref(),
            Some("2001:db8:abcd::/48")
        );
        assert_eq!(network_of("nonsense"), None);
    }
}
