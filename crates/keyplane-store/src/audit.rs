//! The audit log in SQL: appending events to a tenant's chain inside the caller's transaction,
//! reading them back (paged, or streamed for verification and export), and checkpoints.
//!
//! Appends serialise on the tenant's row in `audit_heads`: `UPDATE … SET seq = seq + 1 …
//! RETURNING seq, hash` takes the row lock in PostgreSQL (a concurrent appender waits, then sees
//! the new head) and the write lock in SQLite, so two events never share a predecessor.

use crate::rows;
use crate::store::{Result, StoreError};
use keyplane_core::audit::{AuditEvent, Checkpoint, NewEvent};
use keyplane_core::{TenantId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Events to record with a change, and the time they happened.
#[derive(Clone, Copy, Debug)]
pub struct AuditBatch<'a> {
    pub at: Timestamp,
    pub events: &'a [NewEvent],
}

impl<'a> AuditBatch<'a> {
    pub fn new(at: Timestamp, events: &'a [NewEvent]) -> Self {
        AuditBatch { at, events }
    }
}

/// Filters for reading events back.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only events with `seq` greater than this.
    pub after_seq: i64,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub limit: i64,
}

pub(crate) const EVENT_COLUMNS: &str =
    "tenant_id, seq, id, time, actor_type, actor_id, action, target_type, target_id, \
     outcome, reasons, request_id, client_ip, user_agent, details, prev_hash, hash";

fn db(e: sqlx::Error) -> StoreError {
    crate::sql::db(e)
}

/// Appends `batch` to the tenant's chain on `conn`, which must be inside a transaction.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    batch: AuditBatch<'_>,
) -> Result<()> {
    for event in batch.events {
        let head = sqlx::query(
            "UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = $1 RETURNING seq, hash",
        )
        .bind(tenant.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::Database(format!("tenant {tenant} has no audit chain")))?;
        let seq: i64 = head.try_get("seq").map_err(db)?;
        let prev: Vec<u8> = head.try_get("hash").map_err(db)?;
        let sealed = AuditEvent::seal(
            tenant,
            seq,
            uuid::Uuid::new_v4().to_string(),
            batch.at,
            event,
            &prev,
        );
        sqlx::query("UPDATE audit_heads SET hash = $1 WHERE tenant_id = $2")
            .bind(sealed.hash.clone())
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        insert_event(conn, &sealed).await?;
    }
    Ok(())
}

pub(crate) async fn insert_event(conn: &mut AnyConnection, e: &AuditEvent) -> Result<()> {
    let q = format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    );
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(e.tenant_id.as_str())
        .bind(e.seq)
        .bind(&e.id)
        .bind(e.time.0)
        .bind(&e.actor_type)
        .bind(&e.actor_id)
        .bind(&e.action)
        .bind(&e.target_type)
        .bind(&e.target_id)
        .bind(&e.outcome)
        .bind(serde_json::to_string(&e.reasons).unwrap_or_else(|_| "[]".into()))
        .bind(e.request_id.clone())
        .bind(e.client_ip.clone())
        .bind(e.user_agent.clone())
        .bind(&e.details)
        .bind(e.prev_hash.clone())
        .bind(e.hash.clone())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) fn event(row: &AnyRow) -> Result<AuditEvent> {
    rows::audit_event(row)
}

pub(crate) fn checkpoint(row: &AnyRow) -> Result<Checkpoint> {
    rows::checkpoint(row)
}
