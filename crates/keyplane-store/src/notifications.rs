//! The notifications outbox in SQL: rows written beside the audit events that call for them
//! (`enqueue`, inside `audit::append`'s transaction), read back for operators, claimed by a
//! delivery worker with a conditional UPDATE (a lease on `next_attempt_at`), and finished.

use crate::store::{Result, StoreError};
use keyplane_core::audit::{AuditEvent, NewEvent};
use keyplane_core::notification::{public_payload, recipient};
use keyplane_core::*;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;

pub(crate) const NOTIFICATION_COLUMNS: &str =
    "id, tenant_id, user_id, kind, event_seq, event_id, created_at, payload, status, \
     attempts, next_attempt_at, last_error, sent_at, deliveries";

fn db(e: sqlx::Error) -> StoreError {
    crate::sql::db(e)
}

/// Which notifications to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct NotificationFilter {
    pub status: Option<NotificationStatus>,
    pub user: Option<UserId>,
    pub limit: i64,
}

/// What a delivery attempt leaves behind.
#[derive(Clone, Debug)]
pub struct NotificationOutcome {
    pub status: NotificationStatus,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
    pub deliveries: BTreeMap<String, String>,
}

/// Inserts the outbox row for one just-sealed event, on the caller's transaction. Events without
/// a resolvable user notify nobody and write nothing.
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    event: &NewEvent,
    sealed: &AuditEvent,
) -> Result<()> {
    let Some(user) = recipient(event.target_type, &event.target_id, &event.details) else {
        return Ok(());
    };
    let mut payload = public_payload(&event.details);
    if let serde_json::Value::Object(m) = &mut payload {
        m.insert("target_type".into(), event.target_type.into());
        m.insert("target_id".into(), event.target_id.clone().into());
    }
    let q = format!(
        "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, NULL, NULL, '{{}}')"
    );
    sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(NotificationId::generate().as_str().to_string())
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(event.action)
        .bind(sealed.seq)
        .bind(&sealed.id)
        .bind(sealed.time.0)
        .bind(payload.to_string())
        .bind(NotificationStatus::Pending.as_str())
        .bind(sealed.time.0)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(crate) fn notification(row: &AnyRow) -> Result<Notification> {
    fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        row.try_get::<T, _>(name)
            .map_err(|e| StoreError::Database(format!("column {name}: {e}")))
    }
    let corrupt =
        |what: &str| StoreError::Database(format!("stored notification {what} does not parse"));
    Ok(Notification {
        id: NotificationId::from_trusted(col(row, "id")?),
        tenant_id: TenantId::from_trusted(col(row, "tenant_id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        kind: col(row, "kind")?,
        event_seq: col(row, "event_seq")?,
        event_id: col(row, "event_id")?,
        created_at: Timestamp(col(row, "created_at")?),
        payload: serde_json::from_str(&col::<String>(row, "payload")?)
            .map_err(|_| corrupt("payload"))?,
        status: NotificationStatus::parse(&col::<String>(row, "status")?)
            .ok_or_else(|| corrupt("status"))?,
        attempts: col(row, "attempts")?,
        next_attempt_at: Timestamp(col(row, "next_attempt_at")?),
        last_error: col(row, "last_error")?,
        sent_at: col::<Option<i64>>(row, "sent_at")?.map(Timestamp),
        deliveries: serde_json::from_str(&col::<String>(row, "deliveries")?)
            .map_err(|_| corrupt("deliveries"))?,
    })
}

impl crate::SqlStore {
    pub(crate) async fn notifications_list(
        &self,
        tenant: &TenantId,
        filter: &NotificationFilter,
    ) -> Result<Vec<Notification>> {
        let mut q =
            format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE tenant_id = $1");
        let mut n = 1;
        if filter.status.is_some() {
            n += 1;
            q.push_str(&format!(" AND status = ${n}"));
        }
        if filter.user.is_some() {
            n += 1;
            q.push_str(&format!(" AND user_id = ${n}"));
        }
        q.push_str(&format!(" ORDER BY created_at DESC, id LIMIT ${}", n + 1));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(q)).bind(tenant.as_str());
        if let Some(s) = filter.status {
            query = query.bind(s.as_str());
        }
        if let Some(u) = &filter.user {
            query = query.bind(u.as_str().to_string());
        }
        let rows = query
            .bind(filter.limit.max(1))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(notification).collect()
    }

    pub(crate) async fn notification_by_id(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
    ) -> Result<Option<Notification>> {
        let q = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE tenant_id = $1 AND id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(notification).transpose()
    }

    pub(crate) async fn notifications_due(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        let q = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
             WHERE tenant_id = $1 AND status = 'pending' AND next_attempt_at <= $2 \
             ORDER BY next_attempt_at, id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(now.0)
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(notification).collect()
    }

    /// Takes a due row for one attempt: moves `next_attempt_at` from the value the caller saw to
    /// `lease_until`, only if it is still pending and still at that value. Of any number of
    /// concurrent claimers (on any node) exactly one sees `true`.
    pub(crate) async fn notification_claim(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        seen_next_attempt_at: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE notifications SET next_attempt_at = $1 \
             WHERE tenant_id = $2 AND id = $3 AND status = 'pending' AND next_attempt_at = $4",
        )
        .bind(lease_until.0)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(seen_next_attempt_at.0)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn notification_finish(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        claimed_until: Timestamp,
        outcome: &NotificationOutcome,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE notifications SET status = $1, attempts = $2, next_attempt_at = $3, \
             last_error = $4, sent_at = $5, deliveries = $6 \
             WHERE tenant_id = $7 AND id = $8 AND status = 'pending' AND next_attempt_at = $9",
        )
        .bind(outcome.status.as_str())
        .bind(outcome.attempts)
        .bind(outcome.next_attempt_at.0)
        .bind(outcome.last_error.clone())
        .bind(outcome.sent_at.map(|t| t.0))
        .bind(serde_json::to_string(&outcome.deliveries).unwrap_or_else(|_| "{}".into()))
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(claimed_until.0)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }
}
