//! The audit log in SQL: appending events to a tenant's chain inside the caller's transaction,
//! reading them back (paged, or streamed for verification and export), and checkpoints. Appending
//! also writes the notifications outbox rows its events call for (`notifications.rs`).
//!
//! Appends serialise on the tenant's row in `audit_heads`: `UPDATE … SET seq = seq + n …
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

/// Rows per multi-row `INSERT` when a batch appends many events (17 parameters each; well
/// under both backends' limits on bound parameters).
const INSERT_ROWS: usize = 64;

/// Appends `batch` to the tenant's chain on `conn`, which must be inside a transaction.
///
/// One `UPDATE … SET seq = seq + n … RETURNING` reserves the batch's sequence numbers and takes
/// the head's lock (held until the transaction ends), the events are sealed one after the other
/// from the head's hash, inserted, and the head's hash is moved to the last one. A sign-in's
/// single event is three statements, as is a batch of up to 64.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    batch: AuditBatch<'_>,
) -> Result<()> {
    if batch.events.is_empty() {
        return Ok(());
    }
    let n = i64::try_from(batch.events.len())
        .map_err(|_| StoreError::Database("audit batch too large".into()))?;
    let head = sqlx::query(
        "UPDATE audit_heads SET seq = seq + $1 WHERE tenant_id = $2 RETURNING seq, hash",
    )
    .bind(n)
    .bind(tenant.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::Database(format!("tenant {tenant} has no audit chain")))?;
    let last: i64 = head.try_get("seq").map_err(db)?;
    let mut prev: Vec<u8> = head.try_get("hash").map_err(db)?;
    let mut sealed = Vec::with_capacity(batch.events.len());
    for (i, event) in (last - n + 1..).zip(batch.events) {
        let e = AuditEvent::seal(
            tenant,
            i,
            uuid::Uuid::new_v4().to_string(),
            batch.at,
            event,
            &prev,
        );
        prev.clone_from(&e.hash);
        sealed.push(e);
    }
    for chunk in sealed.chunks(INSERT_ROWS) {
        insert_events(conn, chunk).await?;
    }
    // Notifications derive from the events, in this same transaction: one exists exactly when
    // its change does. The check is a match on the action (no query), so a sign-in pays nothing.
    for (event, e) in batch.events.iter().zip(&sealed) {
        if keyplane_core::notification::is_notifiable(event.action, event.outcome) {
            crate::notifications::enqueue(conn, tenant, event, e).await?;
        }
        // Webhook deliveries likewise (the outbox): a match on the action first, then one
        // indexed read of the endpoints subscribed to it.
        if keyplane_core::webhook::is_webhook_event(event.action) {
            crate::webhooks::enqueue(conn, tenant, event, e).await?;
        }
    }
    sqlx::query("UPDATE audit_heads SET hash = $1 WHERE tenant_id = $2")
        .bind(prev)
        .bind(tenant.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Inserts already sealed events with one multi-row `INSERT`.
async fn insert_events(conn: &mut AnyConnection, events: &[AuditEvent]) -> Result<()> {
    const COLUMNS: usize = 17;
    let mut q = format!("INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES ");
    for r in 0..events.len() {
        if r > 0 {
            q.push_str(", ");
        }
        q.push('(');
        for c in 1..=COLUMNS {
            if c > 1 {
                q.push_str(", ");
            }
            q.push('$');
            q.push_str(&(r * COLUMNS + c).to_string());
        }
        q.push(')');
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(q));
    for e in events {
        query = query
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
            .bind(e.hash.clone());
    }
    query.execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

pub(crate) fn event(row: &AnyRow) -> Result<AuditEvent> {
    rows::audit_event(row)
}

pub(crate) fn checkpoint(row: &AnyRow) -> Result<Checkpoint> {
    rows::checkpoint(row)
}
