//! The storage interface the services use. One trait; the SQL implementation serves both
//! backends, and the shared test suite (`tests/store_suite.rs`) runs against both.

use crate::audit::{AuditBatch, AuditFilter};
use async_trait::async_trait;
use keyplane_core::audit::{AuditEvent, Checkpoint, NewEvent};
use keyplane_core::*;

/// Storage failures. Constraint violations are reported as such so the services can answer 409.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Error::conflict("conflict", what),
            StoreError::Database(msg) => Error::unavailable(msg),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything a successful assertion changes, written in one transaction.
#[derive(Clone, Debug)]
pub struct AssertionRecord<'a> {
    pub credential: &'a CredentialRecordId,
    /// The new counter; the update only applies if it moves forward (or both are zero).
    pub sign_count: u32,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub library_state: &'a str,
    pub used_at: Timestamp,
    /// The session opened by a sign-in; for a step-up, the existing session to elevate.
    pub session: &'a Session,
    /// `Some(level)`: a step-up of `session` to `level` (at `used_at`) instead of a new session.
    pub step_up: Option<Aal>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> crate::Backend;

    /// A round trip to the database.
    async fn ping(&self) -> Result<()>;
    /// Highest applied migration version.
    async fn migration_level(&self) -> Result<i64>;

    // Tenants
    async fn create_tenant(&self, tenant: &Tenant, audit: AuditBatch<'_>) -> Result<()>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;
    async fn tenant_by_hostname(&self, hostname: &str) -> Result<Option<Tenant>>;

    // Users
    async fn create_user(&self, user: &User, audit: AuditBatch<'_>) -> Result<()>;
    async fn user_by_id(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>>;
    async fn user_by_username(&self, tenant: &TenantId, username: &str) -> Result<Option<User>>;
    async fn user_by_handle(&self, tenant: &TenantId, handle: &[u8]) -> Result<Option<User>>;
    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>>;

    // Enrolment invitations
    async fn create_enrolment(&self, enrolment: &Enrolment, audit: AuditBatch<'_>) -> Result<()>;
    async fn enrolment_by_token(
        &self,
        tenant: &TenantId,
        hash: &TokenHash,
    ) -> Result<Option<Enrolment>>;

    // Ceremonies
    async fn insert_ceremony(&self, ceremony: &Ceremony) -> Result<()>;
    /// Removes and returns the ceremony if it exists for this tenant and purpose. Exactly one of
    /// any number of concurrent callers gets it.
    async fn take_ceremony(
        &self,
        tenant: &TenantId,
        id: &CeremonyId,
        purpose: CeremonyPurpose,
    ) -> Result<Option<Ceremony>>;
    /// Deletes ceremonies that expired before `now`; returns how many.
    async fn purge_expired_ceremonies(&self, now: Timestamp) -> Result<u64>;
    /// Deletes one tenant's sessions that expired or were revoked and its invitations past their
    /// expiry; when anything went, records `event(sessions, invitations)` in the same
    /// transaction. Returns how many rows went.
    async fn purge_expired_sessions_and_enrolments(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        event: &(dyn Fn(u64, u64) -> NewEvent + Sync),
    ) -> Result<u64>;

    // Every method below that changes something takes the audit events that record the change
    // and appends them to the tenant's chain in the same transaction. When the change does not
    // apply (`false`), neither do the events.

    // Credentials
    /// Stores a new credential; with an enrolment, marks it used (at `audit.at`) in the same
    /// transaction and fails with `Conflict` if it was already used.
    async fn register_credential(
        &self,
        credential: &Credential,
        enrolment: Option<&EnrolmentId>,
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    async fn credential_by_credential_id(
        &self,
        tenant: &TenantId,
        credential_id: &[u8],
    ) -> Result<Option<Credential>>;
    async fn credential_by_id(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
    ) -> Result<Option<Credential>>;
    /// Credentials of a tenant, or of one user, oldest first.
    async fn list_credentials(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
    ) -> Result<Vec<Credential>>;
    /// Renames a user's credential; false if no such credential of that user.
    async fn rename_credential(
        &self,
        tenant: &TenantId,
        user: &UserId,
        id: &CredentialRecordId,
        nickname: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Sets a credential's status and reason; false if no such credential.
    async fn set_credential_status(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
        status: CredentialStatus,
        reason: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Applies a verified assertion: moves the counter forward and opens the session, atomically.
    /// Returns false (and changes nothing) if the credential is no longer active or its counter
    /// moved past `sign_count` concurrently.
    async fn record_assertion(
        &self,
        tenant: &TenantId,
        record: &AssertionRecord<'_>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;

    // Sessions
    async fn session_by_token(
        &self,
        tenant: &TenantId,
        hash: &TokenHash,
    ) -> Result<Option<Session>>;
    /// Ends a session; false if it was already ended.
    async fn revoke_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;

    // Audit log
    /// Records events that go with no other change (failed and denied attempts).
    async fn append_events(&self, tenant: &TenantId, audit: AuditBatch<'_>) -> Result<()>;
    /// The tenant's chain head: the last sequence number and hash.
    async fn audit_head(&self, tenant: &TenantId) -> Result<(i64, Vec<u8>)>;
    /// Events in sequence order after `filter.after_seq`, at most `filter.limit`.
    async fn list_audit_events(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>>;
    /// Stores a signed checkpoint (idempotent).
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;
    async fn list_checkpoints(&self, tenant: &TenantId) -> Result<Vec<Checkpoint>>;

    // Policy
    /// The active policy version number alone (cheap; documents are immutable per version).
    async fn active_policy_version(&self, tenant: &TenantId) -> Result<Option<i64>>;
    /// The active policy version and document, if the tenant ever activated one.
    async fn active_policy(&self, tenant: &TenantId) -> Result<Option<PolicyVersion>>;
    /// Stores `document` as the next version and makes it active, with its events.
    async fn activate_policy(
        &self,
        tenant: &TenantId,
        document: &str,
        created_by: &str,
        audit: AuditBatch<'_>,
    ) -> Result<i64>;
    /// Makes an earlier version active again (a rollback); false if there is no such version.
    async fn reactivate_policy(
        &self,
        tenant: &TenantId,
        version: i64,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Every version, oldest first.
    async fn list_policies(&self, tenant: &TenantId) -> Result<Vec<PolicyVersion>>;
    async fn user_populations(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<String>>;
    /// Every (user, population) pair of the tenant.
    async fn all_user_populations(&self, tenant: &TenantId) -> Result<Vec<(UserId, String)>>;
    /// Every active user of the tenant with their populations (in name order) and the facts of
    /// their active credentials: what a policy simulation evaluates, read in bulk (three narrow
    /// queries, rows decoded as they arrive). `progress` is told the rows read so far.
    async fn policy_subjects(
        &self,
        tenant: &TenantId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<PolicySubject>>;
    /// Replaces a user's populations, with its events.
    async fn set_user_populations(
        &self,
        tenant: &TenantId,
        user: &UserId,
        populations: &[String],
        audit: AuditBatch<'_>,
    ) -> Result<()>;
}

/// One stored version of a tenant's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: i64,
    pub document: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub active: bool,
}

/// An active user as a policy simulation sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySubject {
    pub user_id: UserId,
    /// In name order, as `user_populations` returns them.
    pub populations: Vec<String>,
    /// The user's active credentials.
    pub credentials: Vec<CredentialFacts>,
}

/// The stored facts of a credential that policy evaluation reads (the columns of
/// [`Credential`] with these names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFacts {
    pub aaguid: String,
    pub attestation_format: String,
    pub attestation_type: String,
    pub backup_eligible: bool,
    pub user_verified: bool,
}
