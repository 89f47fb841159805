//! The storage interface the services use. One trait; the SQL implementation serves both
//! backends, and the shared test suite (`tests/store_suite.rs`) runs against both.

use crate::audit::{AuditBatch, AuditFilter};
use crate::audit_page::AuditPage;
use crate::notifications::{NotificationFilter, NotificationOutcome};
use crate::scim::{ScimUserChange, ScimUserRow};
use async_trait::async_trait;
use keyplane_core::audit::{AuditEvent, Checkpoint, NewEvent};
use keyplane_core::mds::{MdsBlobInfo, MdsEntry};
use keyplane_core::scim::{ScimGroup, ScimProfile};
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

/// A user's recovery codes as the API may show them: how many are left, and when they were made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryCodesStatus {
    pub remaining: u64,
    /// When the unused codes were generated; `None` when none are left.
    pub generated_at: Option<Timestamp>,
}

/// Which recovery cases to list.
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    pub user: Option<UserId>,
    pub state: Option<keyplane_core::recovery_case::CaseState>,
    /// Only cases not completed, denied, cancelled or expired.
    pub open_only: bool,
    pub limit: i64,
}

/// What registering a passkey from a recovery session also does, in the same transaction.
#[derive(Clone, Copy, Debug)]
pub struct RecoveryFinish<'a> {
    /// The recovery session, which ends.
    pub session: &'a SessionId,
    /// The case that completes with this registration (written over its previous version).
    pub case: Option<&'a keyplane_core::recovery_case::RecoveryCase>,
    /// Revoke every other passkey of the user (and end their sessions).
    pub revoke_others: bool,
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

    // Recovery codes
    /// Replaces all of the user's unused recovery codes with `codes` (id, Argon2id PHC string),
    /// with `audit`, in one transaction. Empty `codes` invalidates them. Returns how many unused
    /// codes were invalidated.
    async fn replace_recovery_codes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        codes: &[(RecoveryCodeId, String)],
        audit: AuditBatch<'_>,
    ) -> Result<u64>;
    /// The user's unused codes (id, PHC string), to verify a presented code against.
    async fn unused_recovery_codes(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Vec<(RecoveryCodeId, String)>>;
    async fn recovery_codes_status(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<RecoveryCodesStatus>;
    /// Uses one code and opens `session` (restricted), with `audit`, atomically. False (nothing
    /// changed) if the code was used, or replaced, concurrently.
    async fn redeem_recovery_code(
        &self,
        tenant: &TenantId,
        code: &RecoveryCodeId,
        session: &Session,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;

    // Recovery cases
    async fn insert_recovery_case(
        &self,
        case: &keyplane_core::recovery_case::RecoveryCase,
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    async fn recovery_case(
        &self,
        tenant: &TenantId,
        id: &RecoveryCaseId,
    ) -> Result<Option<keyplane_core::recovery_case::RecoveryCase>>;
    /// The case whose current recovery link has this token hash.
    async fn recovery_case_by_link(
        &self,
        tenant: &TenantId,
        link_hash: &[u8],
    ) -> Result<Option<keyplane_core::recovery_case::RecoveryCase>>;
    /// Newest first.
    async fn list_recovery_cases(
        &self,
        tenant: &TenantId,
        filter: &CaseFilter,
    ) -> Result<Vec<keyplane_core::recovery_case::RecoveryCase>>;
    /// How many cases were opened since `since` for `user`, or from `network` (at least one of
    /// the two), for the fraud signals.
    async fn count_recovery_cases(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
        network: Option<&str>,
        since: Timestamp,
    ) -> Result<u64>;
    /// Writes `case` over the stored version `case.version - 1`, with `session` opened (a used
    /// recovery link) and `audit`, in one transaction. False, and nothing changed, when another
    /// change was written first.
    async fn update_recovery_case(
        &self,
        case: &keyplane_core::recovery_case::RecoveryCase,
        session: Option<&Session>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Registers a passkey from a recovery session: the credential, the session's end, the
    /// case's completion and the other passkeys' revocation, with `audit`, in one transaction.
    /// False (nothing changed) when the case moved meanwhile or the session already ended.
    async fn register_recovered_credential(
        &self,
        credential: &Credential,
        finish: RecoveryFinish<'_>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;

    /// When the user last recovered the account: the latest recovery code used or recovery
    /// case completed.
    async fn last_recovery(&self, tenant: &TenantId, user: &UserId) -> Result<Option<Timestamp>>;

    // Sessions
    /// The user's sessions not ended and not past their lifetime at `now` (idle ones included:
    /// the caller applies the idle timeout), newest first.
    async fn user_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>>;
    /// Ends every session of the user but `keep`, with `audit` (only if any ended). How many.
    async fn end_other_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        keep: &SessionId,
        audit: AuditBatch<'_>,
    ) -> Result<u64>;
    async fn session_by_token(
        &self,
        tenant: &TenantId,
        hash: &TokenHash,
    ) -> Result<Option<Session>>;
    /// Ends a session; false if it was already ended.
    /// Records that a session was used at `at` (never moves it back).
    async fn touch_session(&self, tenant: &TenantId, id: &SessionId, at: Timestamp) -> Result<()>;
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
    /// The newest events with this `action` about one target (`target_type`, `target_id`),
    /// newest first, at most `limit` (the account page's recent sign-ins).
    async fn latest_events_about(
        &self,
        tenant: &TenantId,
        target_type: &str,
        target_id: &str,
        action: &str,
        limit: i64,
    ) -> Result<Vec<AuditEvent>>;
    /// Events with `after < seq <= through`, in sequence order, at most `limit`, for
    /// verification: filled into `into` (emptied first, its buffers reused), without an
    /// allocation per event.
    async fn audit_page(
        &self,
        tenant: &TenantId,
        after: i64,
        through: i64,
        limit: usize,
        into: AuditPage,
    ) -> Result<AuditPage>;
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

    // Administration: lifecycle, fraud alerts, exceptions, bulk actions
    /// Moves a credential from one of `from` to `to`, ending its sessions if asked; false (and
    /// nothing recorded) when it was in none of `from`.
    #[allow(clippy::too_many_arguments)]
    async fn change_credential_status(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
        from: &[CredentialStatus],
        to: CredentialStatus,
        reason: &str,
        end_sessions: bool,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Moves a user from one of `from` to `to`; any status but active ends every session;
    /// `revoke_credentials` revokes all of the user's credentials in the same transaction.
    async fn change_user_status(
        &self,
        tenant: &TenantId,
        user: &UserId,
        from: &[UserStatus],
        to: UserStatus,
        revoke_credentials: bool,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    async fn set_user_role(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Sets (ending the user's sessions) or clears a forced re-enrolment.
    async fn set_re_enrolment(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Suspends an active credential, ends its sessions and opens `alert`, atomically; false
    /// when the credential was not active (no alert opened).
    async fn suspend_with_alert(
        &self,
        tenant: &TenantId,
        credential: &CredentialRecordId,
        alert: &FraudAlert,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    async fn list_fraud_alerts(&self, tenant: &TenantId) -> Result<Vec<FraudAlert>>;
    async fn fraud_alert(&self, tenant: &TenantId, id: &FraudAlertId)
        -> Result<Option<FraudAlert>>;
    /// Resolves an open alert, moving its credential to the given status in the same
    /// transaction (never out of `revoked`); false when it was not open.
    #[allow(clippy::too_many_arguments)]
    async fn resolve_fraud_alert(
        &self,
        tenant: &TenantId,
        id: &FraudAlertId,
        resolution: &str,
        note: &str,
        by: &str,
        credential_to: Option<(CredentialRecordId, CredentialStatus)>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    async fn create_exception(&self, e: &PolicyException, audit: AuditBatch<'_>) -> Result<()>;
    /// Newest first.
    async fn list_exceptions(&self, tenant: &TenantId) -> Result<Vec<PolicyException>>;
    /// Active and not yet expired at `now`.
    async fn active_exceptions(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<Vec<PolicyException>>;
    /// Ends an active exception (`revoked` or `expired`); false when it was not active.
    async fn end_exception(
        &self,
        tenant: &TenantId,
        id: &ExceptionId,
        to: &str,
        by: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Records (once) that an exception's expiry was announced.
    async fn announce_exception(
        &self,
        tenant: &TenantId,
        id: &ExceptionId,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    async fn create_bulk_job(&self, job: &BulkJob, audit: AuditBatch<'_>) -> Result<()>;
    async fn bulk_job(&self, tenant: &TenantId, id: &BulkJobId) -> Result<Option<BulkJob>>;
    async fn list_bulk_jobs(&self, tenant: &TenantId) -> Result<Vec<BulkJob>>;
    /// One batch of a bulk job: moves each credential (if still in one of `from`), ending the
    /// sessions of those no longer active, records `events[i]` only for the credentials that
    /// moved, then `extra`, and advances the job to `last`, all in one transaction. Returns how
    /// many credentials changed.
    #[allow(clippy::too_many_arguments)]
    async fn bulk_step(
        &self,
        tenant: &TenantId,
        job: &BulkJobId,
        changes: &[(CredentialRecordId, CredentialStatus)],
        events: &[NewEvent],
        extra: &[NewEvent],
        from: &[CredentialStatus],
        reason: &str,
        last: &CredentialRecordId,
        finished: bool,
        at: Timestamp,
    ) -> Result<u64>;

    // Lost passkeys and re-enrolment campaigns (`campaigns.rs`)
    /// Revokes a credential that is active or suspended and ends its sessions; then `decide` is
    /// told how many active passkeys its user still has and returns the re-enrolment reason to
    /// set on the user (ending their sessions; `None` leaves the user alone) and the events to
    /// record, all in one transaction. `None` (nothing changed, nothing recorded) when the
    /// credential does not exist in the tenant or is already revoked; else the count `decide` saw.
    async fn mark_credential_lost(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
        reason: &str,
        at: Timestamp,
        decide: &(dyn Fn(u64) -> (Option<String>, Vec<NewEvent>) + Sync),
    ) -> Result<Option<u64>>;
    /// Stores a new campaign with its events. An open campaign for the same model in the tenant
    /// is a `Conflict` (a unique index), and nothing is recorded.
    async fn create_campaign(&self, campaign: &Campaign, audit: AuditBatch<'_>) -> Result<()>;
    async fn campaign(&self, tenant: &TenantId, id: &CampaignId) -> Result<Option<Campaign>>;
    /// Newest first.
    async fn list_campaigns(&self, tenant: &TenantId) -> Result<Vec<Campaign>>;
    /// One batch of a campaign's start, in one transaction: each user the campaign has not
    /// marked yet is marked, gets `re_enrol_reason` (unless a re-enrolment is already pending),
    /// has every session ended, with `revoke_reason` has the listed credentials revoked (those
    /// still active or suspended), and has their events recorded; users already marked are
    /// skipped without an event. `marked` advances, `extra` is recorded. Returns the users newly
    /// marked.
    #[allow(clippy::too_many_arguments)]
    async fn campaign_mark(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        users: &[CampaignMark],
        re_enrol_reason: &str,
        revoke_reason: Option<&str>,
        extra: &[NewEvent],
        at: Timestamp,
    ) -> Result<u64>;
    /// Closes an open campaign (who, when, a note) with its events; false (nothing recorded)
    /// when it was not open.
    async fn close_campaign(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
        by: &str,
        note: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// How many of the users a campaign marked registered a passkey of another model since it
    /// started.
    async fn campaign_re_enrolled(&self, tenant: &TenantId, campaign: &Campaign) -> Result<i64>;
    /// The models (AAGUIDs) of the open campaigns that marked this user.
    async fn open_campaign_models_of_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Vec<String>>;

    // Approvals (dual control)
    async fn create_approval(&self, approval: &Approval, audit: AuditBatch<'_>) -> Result<()>;
    async fn approval(&self, tenant: &TenantId, id: &ApprovalId) -> Result<Option<Approval>>;
    /// Newest first.
    async fn list_approvals(&self, tenant: &TenantId) -> Result<Vec<Approval>>;
    /// Moves an approval from `from` to `to` (recording who and why), with its events; false
    /// (and nothing recorded) when it was not in `from` any more, e.g. another admin was first.
    #[allow(clippy::too_many_arguments)]
    async fn decide_approval(
        &self,
        tenant: &TenantId,
        id: &ApprovalId,
        from: ApprovalStatus,
        to: ApprovalStatus,
        decided_by: &str,
        note: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;

    // Machine clients
    async fn create_client(&self, client: &MachineClient, audit: AuditBatch<'_>) -> Result<()>;
    /// An OIDC client: the machine client and its registration, in one transaction.
    async fn create_oidc_client(
        &self,
        client: &MachineClient,
        config: &keyplane_core::oidc::OidcClientConfig,
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    async fn oidc_client_config(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
    ) -> Result<Option<keyplane_core::oidc::OidcClientConfig>>;

    /// A webhook endpoint: the machine client and its URL and event types, in one transaction.
    async fn create_webhook_client(
        &self,
        client: &MachineClient,
        endpoint: &keyplane_core::webhook::WebhookEndpoint,
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    async fn webhook_endpoint(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
    ) -> Result<Option<keyplane_core::webhook::WebhookEndpoint>>;

    // Webhook deliveries (keyplane-store/src/webhooks.rs)
    /// Pending deliveries due at `now` without a live claim, oldest first.
    async fn due_webhook_deliveries(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<keyplane_core::webhook::WebhookDelivery>>;
    /// Claims a pending delivery until `lease`; false when another node holds a live claim.
    async fn claim_webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        now: Timestamp,
        lease: Timestamp,
    ) -> Result<bool>;
    /// Records an attempt, if the claim is still `lease`.
    async fn finish_webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        lease: Timestamp,
        outcome: &crate::webhooks::DeliveryOutcome,
    ) -> Result<bool>;
    /// Newest first.
    async fn list_webhook_deliveries(
        &self,
        tenant: &TenantId,
        filter: &crate::webhooks::DeliveryFilter,
    ) -> Result<Vec<keyplane_core::webhook::WebhookDelivery>>;
    async fn webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<keyplane_core::webhook::WebhookDelivery>>;
    /// A dead or delivered delivery back to pending (attempts reset), with its event; false
    /// for a pending one.
    async fn replay_webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Active clients expiring in `(now, before]` whose expiry was not announced.
    async fn clients_to_announce(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        before: Timestamp,
    ) -> Result<Vec<MachineClientId>>;
    /// Marks a client's expiry announced, once, with the event.
    async fn announce_client_expiry(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;

    // The OpenID Connect provider's grants and keys (keyplane-store/src/oidc.rs)
    /// Inserts grants with their events; a hash that exists already is a `Conflict`.
    async fn add_oidc_grants(
        &self,
        tenant: &TenantId,
        grants: &[keyplane_core::oidc::OidcGrant],
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    async fn oidc_grant(
        &self,
        tenant: &TenantId,
        hash: &[u8],
    ) -> Result<Option<keyplane_core::oidc::OidcGrant>>;
    /// Uses a grant once (unused, unrevoked, unexpired at `audit.at`) and inserts its successors
    /// with the events, in one transaction; false and nothing written otherwise.
    async fn use_oidc_grant(
        &self,
        tenant: &TenantId,
        hash: &[u8],
        successors: &[keyplane_core::oidc::OidcGrant],
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Revokes every live grant of a family; returns how many.
    async fn revoke_oidc_family(
        &self,
        tenant: &TenantId,
        family: &str,
        audit: AuditBatch<'_>,
    ) -> Result<u64>;
    /// Deletes grants that expired before `before`.
    async fn purge_oidc_grants(&self, before: Timestamp) -> Result<u64>;
    async fn publish_oidc_key(&self, kid: &str, public_jwk: &str, at: Timestamp) -> Result<()>;
    async fn retire_oidc_key(&self, kid: &str, at: Timestamp) -> Result<()>;
    /// Public JWKs of the keys not retired at `now`, newest first.
    async fn published_oidc_keys(&self, now: Timestamp) -> Result<Vec<String>>;
    async fn client_by_id(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
    ) -> Result<Option<MachineClient>>;
    /// The client whose current or previous secret has this hash. Whether that secret is still
    /// accepted (overlap, status, expiry, owner) is for the caller to decide.
    async fn client_by_secret(
        &self,
        tenant: &TenantId,
        hash: &TokenHash,
    ) -> Result<Option<MachineClient>>;
    /// Newest first.
    async fn list_clients(&self, tenant: &TenantId) -> Result<Vec<MachineClient>>;
    /// Makes `secret` the client's current secret and its current one (if any) the previous
    /// one, accepted until `previous_until`; `rotated_at` becomes `audit.at`. Only for a client
    /// that is active and unexpired at `audit.at`; false (and nothing recorded) otherwise.
    async fn rotate_client(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        secret: &TokenHash,
        previous_until: Timestamp,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Revokes a client that is not revoked yet: both its secrets stop at once. False (and
    /// nothing recorded) when it was already revoked.
    async fn revoke_client(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        by: &str,
        reason: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Records that a client was used at `at` (never moves it back). Not audited.
    async fn touch_client(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        at: Timestamp,
    ) -> Result<()>;

    // Authenticator catalogue (FIDO MDS and display names; shared by every tenant)
    /// Replaces the MDS entries with a verified BLOB's, recording `audit` in each of `tenants`'
    /// chains in the same transaction. A BLOB number already imported is a `Conflict`.
    async fn import_mds(
        &self,
        blob: &MdsBlobInfo,
        entries: &[MdsEntry],
        tenants: &[TenantId],
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    /// The most recently imported BLOB.
    async fn mds_blob(&self) -> Result<Option<MdsBlobInfo>>;
    async fn mds_entries(&self) -> Result<Vec<MdsEntry>>;
    /// Replaces the names from `source` (e.g. `aaguids`), with events as for `import_mds`.
    async fn import_authenticator_names(
        &self,
        source: &str,
        names: &[(String, String)],
        tenants: &[TenantId],
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    /// (AAGUID, name, source) from unsigned sources.
    async fn authenticator_names(&self) -> Result<Vec<(String, String, String)>>;
    /// Changes whenever either import runs: the latest import time (milliseconds), or 0.
    async fn catalogue_stamp(&self) -> Result<i64>;

    // Notifications: the verified contact and the outbox (rows are written by the audit append
    // of notifiable events, never directly).
    /// Sets or clears a user's contact address; false (nothing recorded) if no such user.
    async fn set_user_contact(
        &self,
        tenant: &TenantId,
        user: &UserId,
        contact: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Newest first, at most `filter.limit`.
    async fn list_notifications(
        &self,
        tenant: &TenantId,
        filter: &NotificationFilter,
    ) -> Result<Vec<Notification>>;
    async fn notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
    ) -> Result<Option<Notification>>;
    /// Pending rows whose `next_attempt_at` has come, oldest first.
    async fn due_notifications(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<Notification>>;
    /// Claims a due row for one attempt by moving its `next_attempt_at` from the value read to
    /// `lease_until` (conditional UPDATE): exactly one of any number of concurrent claimers, on
    /// any node, gets `true`. A claimer that dies leaves the row to be retried after the lease.
    async fn claim_notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        seen_next_attempt_at: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool>;
    /// Records an attempt's outcome, only while the claim holds (the row is still pending at
    /// the claimer's `claimed_until`); false when the lease ran out and another claimer took it.
    /// Not audited: delivery is not a change of Keyplane's state but of a message's, like a
    /// session's last use.
    async fn finish_notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        claimed_until: Timestamp,
        outcome: &NotificationOutcome,
    ) -> Result<bool>;
    /// Puts a `failed` or `skipped` notification back to `pending`, due at `audit.at`, with
    /// attempts reset; false (nothing recorded) for any other status.
    async fn retry_notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;

    // --- SCIM provisioning (`scim.rs`) ---
    /// Every user's provisioned attributes (users never provisioned have no row).
    async fn scim_user_rows(&self, tenant: &TenantId) -> Result<Vec<ScimUserRow>>;
    async fn scim_user_row(&self, tenant: &TenantId, user: &UserId) -> Result<Option<ScimUserRow>>;
    /// Creates a user with its provisioned attributes. A taken username is a `Conflict`.
    async fn scim_create_user(
        &self,
        user: &User,
        profile: &ScimProfile,
        audit: AuditBatch<'_>,
    ) -> Result<()>;
    /// Writes a SCIM replace of a user; false (nothing written) when the user is not in the
    /// tenant or was deleted through SCIM. A taken username is a `Conflict`.
    async fn scim_update_user(
        &self,
        tenant: &TenantId,
        change: &ScimUserChange<'_>,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Marks a user deleted through SCIM and takes it out of every population; false when it
    /// already was (or is not in the tenant).
    async fn scim_delete_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    async fn scim_groups(&self, tenant: &TenantId) -> Result<Vec<ScimGroup>>;
    async fn scim_group(&self, tenant: &TenantId, id: &ScimGroupId) -> Result<Option<ScimGroup>>;
    /// Creates (`previous_name` `None`) or replaces a group and sets its population's members
    /// to exactly `members`. A name another group holds is a `Conflict`; false when the group
    /// to replace is gone.
    async fn scim_write_group(
        &self,
        group: &ScimGroup,
        previous_name: Option<&str>,
        members: &[UserId],
        audit: AuditBatch<'_>,
    ) -> Result<bool>;
    /// Deletes a group and empties its population; false when it is not there.
    async fn scim_delete_group(&self, group: &ScimGroup, audit: AuditBatch<'_>) -> Result<bool>;
}

/// A user a campaign batch marks: their credentials of the campaign's model (revoked when the
/// campaign revokes) and the events that record it for them.
#[derive(Clone, Debug)]
pub struct CampaignMark {
    pub user: UserId,
    pub credentials: Vec<CredentialRecordId>,
    pub events: Vec<NewEvent>,
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
    pub username: String,
    /// In name order, as `user_populations` returns them.
    pub populations: Vec<String>,
    /// The user's active credentials.
    pub credentials: Vec<CredentialFacts>,
}

/// The stored facts of a credential that policy evaluation reads (the columns of
/// [`Credential`] with these names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFacts {
    pub id: CredentialRecordId,
    pub aaguid: String,
    pub attestation_format: String,
    pub attestation_type: String,
    pub attestation_trusted: bool,
    pub backup_eligible: bool,
    pub user_verified: bool,
}
