//! Recovery codes (issue 7, path 2). So far only what an administrator does: invalidate a
//! user's unused codes. Generating and redeeming codes are not offered yet.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

impl App {
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
