//! Row ↔ domain conversions. Values read back were written by this crate, so a row that does
//! not parse means a corrupted database and is reported as a database error, not a panic.

use crate::store::{Result, StoreError};
use keyplane_core::*;
use sqlx::any::AnyRow;
use sqlx::Row;

fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(name)
        .map_err(|e| StoreError::Database(format!("column {name}: {e}")))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("stored {what} does not parse"))
}

fn json_list(s: &str, what: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|_| corrupt(what))
}

pub fn tenant(row: &AnyRow, hostnames: Vec<String>) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_trusted(col(row, "id")?),
        name: col(row, "name")?,
        rp_id: col(row, "rp_id")?,
        rp_name: col(row, "rp_name")?,
        origins: json_list(&col::<String>(row, "origins")?, "origins")?,
        hostnames,
        created_at: Timestamp(col(row, "created_at")?),
    })
}

pub fn user(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: UserId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        username: col(row, "username")?,
        display_name: col(row, "display_name")?,
        user_handle: col(row, "user_handle")?,
        status: UserStatus::parse(&col::<String>(row, "status")?)
            .ok_or_else(|| corrupt("user status"))?,
        role: col(row, "role")?,
        created_at: Timestamp(col(row, "created_at")?),
        re_enrol_reason: col(row, "re_enrol_reason")?,
        contact_email: col(row, "contact_email")?,
    })
}

pub fn enrolment(row: &AnyRow) -> Result<Enrolment> {
    Ok(Enrolment {
        id: EnrolmentId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        token_hash: TokenHash(col(row, "token_hash")?),
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
        used_at: col::<Option<i64>>(row, "used_at")?.map(Timestamp),
    })
}

pub fn credential(row: &AnyRow) -> Result<Credential> {
    Ok(Credential {
        id: CredentialRecordId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        credential_id: col(row, "credential_id")?,
        public_key: col(row, "public_key")?,
        sign_count: u32::try_from(col::<i64>(row, "sign_count")?)
            .map_err(|_| corrupt("sign count"))?,
        aaguid: col(row, "aaguid")?,
        transports: json_list(&col::<String>(row, "transports")?, "transports")?,
        backup_eligible: col::<i64>(row, "backup_eligible")? != 0,
        backup_state: col::<i64>(row, "backup_state")? != 0,
        attestation_format: col(row, "attestation_format")?,
        attestation_type: col(row, "attestation_type")?,
        user_verified: col::<i64>(row, "user_verified")? != 0,
        nickname: col(row, "nickname")?,
        created_at: Timestamp(col(row, "created_at")?),
        last_used_at: col::<Option<i64>>(row, "last_used_at")?.map(Timestamp),
        status: CredentialStatus::parse(&col::<String>(row, "status")?)
            .ok_or_else(|| corrupt("credential status"))?,
        status_reason: col(row, "status_reason")?,
        library_state: col(row, "library_state")?,
        attestation_trusted: col::<i64>(row, "attestation_trusted")? != 0,
    })
}

pub fn ceremony(row: &AnyRow) -> Result<Ceremony> {
    Ok(Ceremony {
        id: CeremonyId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        purpose: CeremonyPurpose::parse(&col::<String>(row, "purpose")?)
            .ok_or_else(|| corrupt("ceremony purpose"))?,
        user_id: col::<Option<String>>(row, "user_id")?.map(UserId::from_trusted),
        enrolment_id: col::<Option<String>>(row, "enrolment_id")?.map(EnrolmentId::from_trusted),
        state: col(row, "state")?,
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
        session_id: col::<Option<String>>(row, "session_id")?.map(SessionId::from_trusted),
        level: match col::<Option<String>>(row, "level")? {
            Some(l) => Some(Aal::parse(&l).ok_or_else(|| corrupt("ceremony level"))?),
            None => None,
        },
    })
}

pub fn session(row: &AnyRow) -> Result<Session> {
    let amr: Vec<String> = json_list(&col::<String>(row, "amr")?, "amr")?;
    Ok(Session {
        id: SessionId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        token_hash: TokenHash(col(row, "token_hash")?),
        aal: Aal::parse(&col::<String>(row, "aal")?).ok_or_else(|| corrupt("aal"))?,
        amr: amr
            .iter()
            .map(|a| Amr::parse(a).ok_or_else(|| corrupt("amr")))
            .collect::<Result<_>>()?,
        auth_time: Timestamp(col(row, "auth_time")?),
        credential_id: col::<Option<String>>(row, "credential_id")?
            .map(CredentialRecordId::from_trusted),
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
        restricted: col(row, "restricted")?,
        recovery: col(row, "recovery")?,
        idle_secs: col(row, "idle_secs")?,
        last_seen_at: Timestamp(col(row, "last_seen_at")?),
        elevated: match (
            col::<Option<String>>(row, "elevated_aal")?,
            col::<Option<i64>>(row, "elevated_at")?,
        ) {
            (Some(l), Some(t)) => Some((
                Aal::parse(&l).ok_or_else(|| corrupt("elevated level"))?,
                Timestamp(t),
            )),
            _ => None,
        },
    })
}

pub fn audit_event(row: &AnyRow) -> Result<keyplane_core::audit::AuditEvent> {
    Ok(keyplane_core::audit::AuditEvent {
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        seq: col(row, "seq")?,
        id: col(row, "id")?,
        time: Timestamp(col(row, "time")?),
        actor_type: col(row, "actor_type")?,
        actor_id: col(row, "actor_id")?,
        action: col(row, "action")?,
        target_type: col(row, "target_type")?,
        target_id: col(row, "target_id")?,
        outcome: col(row, "outcome")?,
        reasons: json_list(&col::<String>(row, "reasons")?, "reasons")?,
        request_id: col(row, "request_id")?,
        client_ip: col(row, "client_ip")?,
        user_agent: col(row, "user_agent")?,
        details: col(row, "details")?,
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

pub fn checkpoint(row: &AnyRow) -> Result<keyplane_core::audit::Checkpoint> {
    Ok(keyplane_core::audit::Checkpoint {
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        seq: col(row, "seq")?,
        hash: col(row, "hash")?,
        signed_at: Timestamp(col(row, "signed_at")?),
        key_id: col(row, "key_id")?,
        signature: col(row, "signature")?,
    })
}

pub fn approval(row: &AnyRow) -> Result<Approval> {
    Ok(Approval {
        id: ApprovalId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        action: col(row, "action")?,
        payload: serde_json::from_str(&col::<String>(row, "payload")?)
            .map_err(|_| corrupt("approval payload"))?,
        summary: col(row, "summary")?,
        requested_by: col(row, "requested_by")?,
        requested_at: Timestamp(col(row, "requested_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
        status: ApprovalStatus::parse(&col::<String>(row, "status")?)
            .ok_or_else(|| corrupt("approval status"))?,
        decided_by: col(row, "decided_by")?,
        decided_at: col::<Option<i64>>(row, "decided_at")?.map(Timestamp),
        note: col(row, "note")?,
    })
}

pub fn machine_client(row: &AnyRow) -> Result<MachineClient> {
    let scopes = json_list(&col::<String>(row, "scopes")?, "client scopes")?
        .iter()
        .map(|s| keyplane_core::admin::Permission::parse(s).ok_or_else(|| corrupt("client scope")))
        .collect::<Result<Vec<_>>>()?;
    Ok(MachineClient {
        id: MachineClientId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        kind: ClientKind::parse(&col::<String>(row, "kind")?)
            .ok_or_else(|| corrupt("client kind"))?,
        name: col(row, "name")?,
        owner: UserId::from_trusted(col(row, "owner_id")?),
        scopes,
        status: ClientStatus::parse(&col::<String>(row, "status")?)
            .ok_or_else(|| corrupt("client status"))?,
        created_at: Timestamp(col(row, "created_at")?),
        created_by: col(row, "created_by")?,
        approval_id: col::<Option<String>>(row, "approval_id")?.map(ApprovalId::from_trusted),
        approved_by: col(row, "approved_by")?,
        expires_at: Timestamp(col(row, "expires_at")?),
        secret_hash: col::<Option<Vec<u8>>>(row, "secret_hash")?.map(TokenHash),
        previous_hash: col::<Option<Vec<u8>>>(row, "previous_hash")?.map(TokenHash),
        previous_expires_at: col::<Option<i64>>(row, "previous_expires_at")?.map(Timestamp),
        rotated_at: col::<Option<i64>>(row, "rotated_at")?.map(Timestamp),
        last_used_at: col::<Option<i64>>(row, "last_used_at")?.map(Timestamp),
        revoked_at: col::<Option<i64>>(row, "revoked_at")?.map(Timestamp),
        revoked_by: col(row, "revoked_by")?,
        revoke_reason: col(row, "revoke_reason")?,
    })
}

fn json_value(row: &AnyRow, name: &str) -> Result<serde_json::Value> {
    serde_json::from_str(&col::<String>(row, name)?).map_err(|_| corrupt(name))
}

pub fn fraud_alert(row: &AnyRow) -> Result<FraudAlert> {
    Ok(FraudAlert {
        id: FraudAlertId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        kind: col(row, "kind")?,
        user_id: UserId::from_trusted(col(row, "user_id")?),
        credential_id: col::<Option<String>>(row, "credential_id")?
            .map(CredentialRecordId::from_trusted),
        status: col(row, "status")?,
        opened_at: Timestamp(col(row, "opened_at")?),
        details: json_value(row, "details")?,
        resolved_by: col(row, "resolved_by")?,
        resolved_at: col::<Option<i64>>(row, "resolved_at")?.map(Timestamp),
        resolution: col(row, "resolution")?,
        note: col(row, "note")?,
    })
}

pub fn exception(row: &AnyRow) -> Result<PolicyException> {
    let subject: String = col(row, "subject")?;
    Ok(PolicyException {
        id: ExceptionId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        subject: match col::<String>(row, "subject_type")?.as_str() {
            "user" => ExceptionSubject::User(UserId::from_trusted(subject)),
            "population" => ExceptionSubject::Population(subject),
            _ => return Err(corrupt("exception subject")),
        },
        rule: col(row, "rule")?,
        reason: col(row, "reason")?,
        requested_by: col(row, "requested_by")?,
        approved_by: col(row, "approved_by")?,
        approval_id: ApprovalId::from_trusted(col(row, "approval_id")?),
        status: col(row, "status")?,
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
        announced_at: col::<Option<i64>>(row, "announced_at")?.map(Timestamp),
        ended_by: col(row, "ended_by")?,
        ended_at: col::<Option<i64>>(row, "ended_at")?.map(Timestamp),
    })
}

pub fn bulk_job(row: &AnyRow) -> Result<BulkJob> {
    Ok(BulkJob {
        id: BulkJobId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        action: col(row, "action")?,
        filter: json_value(row, "filter")?,
        reason: col(row, "reason")?,
        total: col(row, "total")?,
        done: col(row, "done")?,
        last_credential: col::<Option<String>>(row, "last_credential")?
            .map(CredentialRecordId::from_trusted),
        status: col(row, "status")?,
        created_by: col(row, "created_by")?,
        created_at: Timestamp(col(row, "created_at")?),
        finished_at: col::<Option<i64>>(row, "finished_at")?.map(Timestamp),
    })
}

pub fn recovery_case(row: &AnyRow) -> Result<keyplane_core::recovery_case::RecoveryCase> {
    serde_json::from_str(&col::<String>(row, "body")?).map_err(|_| corrupt("recovery case"))
}
