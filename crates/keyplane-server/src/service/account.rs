//! The signed-in user's own sessions: which are live, and signing out everywhere else.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

impl App {
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
