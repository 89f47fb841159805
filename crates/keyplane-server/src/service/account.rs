//! The signed-in user's own sessions: which are live, their recent sign-ins, and signing out
//! everywhere else.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

/// One successful sign-in, as the account page lists it (read from the audit log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInRecord {
    pub at: Timestamp,
    pub aal: Option<Aal>,
    pub credential: Option<CredentialRecordId>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SignInRecord {
    fn from_event(e: &keyplane_core::audit::AuditEvent) -> Self {
        // The details were written by the sign-in service (service/signin.rs); a field that does
        // not parse is shown as unknown rather than failing the page.
        let details: serde_json::Value = serde_json::from_str(&e.details).unwrap_or_default();
        SignInRecord {
            at: e.time,
            aal: details["aal"].as_str().and_then(Aal::parse),
            credential: details["credential"]
                .as_str()
                .and_then(CredentialRecordId::parse),
            client_ip: e.client_ip.clone(),
            user_agent: e.user_agent.clone(),
        }
    }
}

impl App {
    /// The user's latest successful sign-ins (`authentication.succeeded`), newest first.
    pub async fn my_recent_sign_ins(
        &self,
        tenant: &Tenant,
        user: &UserId,
        limit: i64,
    ) -> Result<Vec<SignInRecord>, Error> {
        let events = self
            .store
            .latest_events_about(
                &tenant.id,
                "user",
                user.as_str(),
                "authentication.succeeded",
                limit,
            )
            .await?;
        Ok(events.iter().map(SignInRecord::from_event).collect())
    }

    /// The user's live sessions (within their lifetime and idle timeout), newest first.
    pub async fn my_sessions(&self, tenant: &Tenant, user: &UserId) -> Result<Vec<Session>, Error> {
        let now = self.clock.now();
        Ok(self
            .store
            .user_sessions(&tenant.id, user, now)
            .await?
            .into_iter()
            .filter(|s| !s.is_expired(now))
            .collect())
    }

    /// Ends every other session of the user (`session.others_ended`, with how many). The policy
    /// may guard the action `session.end_others` with a step-up. Returns the count.
    pub async fn end_other_sessions(
        &self,
        tenant: &Tenant,
        session: &Session,
        caller: &Caller,
    ) -> Result<u64, Error> {
        self.require_step_up(tenant, session, "session.end_others")
            .await?;
        let live = self.my_sessions(tenant, &session.user_id).await?.len() as u64;
        let event = caller
            .event("session.others_ended", "user", session.user_id.as_str())
            .details(json!({ "kept": session.id, "live_before": live }));
        Ok(self
            .store
            .end_other_sessions(
                &tenant.id,
                &session.user_id,
                &session.id,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?)
    }
}
