//! Webhooks' storage: endpoints and their event types (beside their machine client), the outbox
//! of deliveries (written with the audit event, in its transaction), claims with a lease so that
//! nodes never send one delivery at once, outcomes, dead letters and replays.

use crate::audit::{self, AuditBatch};
use crate::sql::db;
use crate::store::{Result, StoreError};
use keyplane_core::audit::{AuditEvent, NewEvent};
use keyplane_core::webhook::{DeliveryStatus, WebhookDelivery, WebhookEndpoint};
use keyplane_core::*;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

const DELIVERY_COLUMNS: &str = "id, tenant_id, client_id, event_type, event_id, event_seq, payload, \
     status, attempts, next_attempt_at, claimed_until, last_status, last_error, created_at, delivered_at";

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        at: Timestamp,
        status: u16,
    },
    /// Try again at `next_attempt_at`, or give up (`dead`).
    Failed {
        status: Option<u16>,
        error: String,
        next_attempt_at: Timestamp,
        dead: bool,
    },
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub client: Option<MachineClientId>,
    pub limit: i64,
}

pub(crate) async fn insert_endpoint(
    tx: &mut AnyConnection,
    tenant: &TenantId,
    client: &MachineClientId,
    e: &WebhookEndpoint,
) -> Result<()> {
    sqlx::query("INSERT INTO webhook_endpoints (client_id, tenant_id, url) VALUES ($1, $2, $3)")
        .bind(client.as_str())
        .bind(tenant.as_str())
        .bind(&e.url)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    for t in &e.event_types {
        sqlx::query(
            "INSERT INTO webhook_event_types (client_id, tenant_id, event_type) VALUES ($1, $2, $3)",
        )
        .bind(client.as_str())
        .bind(tenant.as_str())
        .bind(t)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

pub(crate) async fn endpoint(
    pool: &AnyPool,
    tenant: &TenantId,
    client: &MachineClientId,
) -> Result<Option<WebhookEndpoint>> {
    let Some(row) =
        sqlx::query("SELECT url FROM webhook_endpoints WHERE tenant_id = $1 AND client_id = $2")
            .bind(tenant.as_str())
            .bind(client.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db)?
    else {
        return Ok(None);
    };
    let types = sqlx::query(
        "SELECT event_type FROM webhook_event_types WHERE tenant_id = $1 AND client_id = $2 ORDER BY event_type",
    )
    .bind(tenant.as_str())
    .bind(client.as_str())
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(Some(WebhookEndpoint {
        url: row.try_get("url").map_err(db)?,
        event_types: types
            .iter()
            .map(|r| r.try_get("event_type").map_err(db))
            .collect::<Result<_>>()?,
    }))
}

/// Writes a delivery for every active endpoint of the tenant subscribed to the event's action,
/// inside the audit append's transaction. The body is fixed now: a replay sends the same bytes.
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    event: &NewEvent,
    sealed: &AuditEvent,
) -> Result<()> {
    let endpoints = sqlx::query(
        "SELECT t.client_id FROM webhook_event_types t JOIN machine_clients c ON c.id = t.client_id \
         WHERE t.tenant_id = $1 AND t.event_type = $2 AND c.status = 'active' AND c.expires_at > $3",
    )
    .bind(tenant.as_str())
    .bind(event.action)
    .bind(sealed.time.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let details: serde_json::Value =
        serde_json::from_str(&sealed.details).unwrap_or(serde_json::Value::Null);
    let payload = serde_json::json!({
        "type": event.action,
        "timestamp": sealed.time.to_rfc3339(),
        "data": {
            "event_id": sealed.id,
            "seq": sealed.seq,
            "tenant": tenant,
            "actor": { "type": sealed.actor_type, "id": sealed.actor_id },
            "target": { "type": sealed.target_type, "id": sealed.target_id },
            "outcome": sealed.outcome,
            "reasons": sealed.reasons,
            "details": details,
        },
    })
    .to_string();
    for row in endpoints {
        let client: String = row.try_get("client_id").map_err(db)?;
        let q = format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, NULL, NULL, NULL, $8, NULL)"
        );
        sqlx::query(AssertSqlSafe(q))
            .bind(format!("msg_{}", uuid::Uuid::new_v4().simple()))
            .bind(tenant.as_str())
            .bind(client)
            .bind(event.action)
            .bind(&sealed.id)
            .bind(sealed.seq)
            .bind(&payload)
            .bind(sealed.time.0)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

fn delivery(row: &AnyRow) -> Result<WebhookDelivery> {
    let corrupt =
        |what: &str| StoreError::Database(format!("stored delivery {what} does not parse"));
    let status: String = row.try_get("status").map_err(db)?;
    let opt_ts = |name: &str| -> Result<Option<Timestamp>> {
        Ok(row
            .try_get::<Option<i64>, _>(name)
            .map_err(db)?
            .map(Timestamp))
    };
    Ok(WebhookDelivery {
        id: row.try_get("id").map_err(db)?,
        tenant_id: TenantId::from_trusted(row.try_get("tenant_id").map_err(db)?),
        client_id: MachineClientId::from_trusted(row.try_get("client_id").map_err(db)?),
        event_type: row.try_get("event_type").map_err(db)?,
        event_id: row.try_get("event_id").map_err(db)?,
        event_seq: row.try_get("event_seq").map_err(db)?,
        payload: row.try_get("payload").map_err(db)?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(db)?)
            .map_err(|_| corrupt("attempts"))?,
        next_attempt_at: Timestamp(row.try_get("next_attempt_at").map_err(db)?),
        last_status: row
            .try_get::<Option<i64>, _>("last_status")
            .map_err(db)?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error").map_err(db)?,
        created_at: Timestamp(row.try_get("created_at").map_err(db)?),
        delivered_at: opt_ts("delivered_at")?,
    })
}

/// Pending deliveries due at `now` and not claimed by a live lease, oldest first.
pub(crate) async fn due(
    pool: &AnyPool,
    tenant: &TenantId,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<WebhookDelivery>> {
    let q = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND status = 'pending' \
         AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2) \
         ORDER BY next_attempt_at, event_seq LIMIT {}",
        limit.clamp(1, 1000)
    );
    let rows = sqlx::query(AssertSqlSafe(q))
        .bind(tenant.as_str())
        .bind(now.0)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter().map(delivery).collect()
}

/// Takes a delivery for an attempt until `lease`: false when another node holds a live claim.
pub(crate) async fn claim(
    writer: &AnyPool,
    tenant: &TenantId,
    id: &str,
    now: Timestamp,
    lease: Timestamp,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET claimed_until = $1 WHERE tenant_id = $2 AND id = $3 \
         AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < $4)",
    )
    .bind(lease.0)
    .bind(tenant.as_str())
    .bind(id)
    .bind(now.0)
    .execute(writer)
    .await
    .map_err(db)?;
    Ok(r.rows_affected() == 1)
}

/// Records an attempt's outcome, if the claim `lease` is still this node's.
pub(crate) async fn finish(
    writer: &AnyPool,
    tenant: &TenantId,
    id: &str,
    lease: Timestamp,
    outcome: &DeliveryOutcome,
) -> Result<bool> {
    let r = match outcome {
        DeliveryOutcome::Delivered { at, status } => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
             delivered_at = $1, last_status = $2, last_error = NULL, claimed_until = NULL \
             WHERE tenant_id = $3 AND id = $4 AND claimed_until = $5",
        )
        .bind(at.0)
        .bind(i64::from(*status))
        .bind(tenant.as_str())
        .bind(id)
        .bind(lease.0),
        DeliveryOutcome::Failed {
            status,
            error,
            next_attempt_at,
            dead,
        } => sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, \
             last_error = $3, next_attempt_at = $4, claimed_until = NULL \
             WHERE tenant_id = $5 AND id = $6 AND claimed_until = $7",
        )
        .bind(if *dead { "dead" } else { "pending" })
        .bind(status.map(i64::from))
        .bind(error.clone())
        .bind(next_attempt_at.0)
        .bind(tenant.as_str())
        .bind(id)
        .bind(lease.0),
    }
    .execute(writer)
    .await
    .map_err(db)?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn list(
    pool: &AnyPool,
    tenant: &TenantId,
    f: &DeliveryFilter,
) -> Result<Vec<WebhookDelivery>> {
    let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1");
    let mut n = 1;
    if f.status.is_some() {
        n += 1;
        sql += &format!(" AND status = ${n}");
    }
    if f.client.is_some() {
        n += 1;
        sql += &format!(" AND client_id = ${n}");
    }
    sql += &format!(
        " ORDER BY created_at DESC, event_seq DESC LIMIT {}",
        f.limit.clamp(1, 1000)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant.as_str());
    if let Some(s) = f.status {
        q = q.bind(s.as_str());
    }
    if let Some(c) = &f.client {
        q = q.bind(c.as_str().to_owned());
    }
    let rows = q.fetch_all(pool).await.map_err(db)?;
    rows.iter().map(delivery).collect()
}

pub(crate) async fn find(
    pool: &AnyPool,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<WebhookDelivery>> {
    let q = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2"
    );
    let row = sqlx::query(AssertSqlSafe(q))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.as_ref().map(delivery).transpose()
}

/// Puts a dead (or delivered) delivery back to pending, due at `audit.at`, attempts reset, with
/// the replay's event. False (nothing written) for a pending one.
pub(crate) async fn replay(
    writer: &AnyPool,
    tenant: &TenantId,
    id: &str,
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let mut tx = writer.begin().await.map_err(db)?;
    let r = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
         claimed_until = NULL, delivered_at = NULL WHERE tenant_id = $2 AND id = $3 AND status <> 'pending'",
    )
    .bind(audit.at.0)
    .bind(tenant.as_str())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

/// Active clients expiring before `before` whose expiry was not announced yet.
pub(crate) async fn clients_to_announce(
    pool: &AnyPool,
    tenant: &TenantId,
    now: Timestamp,
    before: Timestamp,
) -> Result<Vec<MachineClientId>> {
    let rows = sqlx::query(
        "SELECT id FROM machine_clients WHERE tenant_id = $1 AND status = 'active' \
         AND expires_at > $2 AND expires_at <= $3 AND expiry_announced_at IS NULL ORDER BY expires_at",
    )
    .bind(tenant.as_str())
    .bind(now.0)
    .bind(before.0)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| Ok(MachineClientId::from_trusted(r.try_get("id").map_err(db)?)))
        .collect()
}

/// Marks the expiry announced, once, with its event; false when it already was.
pub(crate) async fn announce_expiry(
    writer: &AnyPool,
    tenant: &TenantId,
    client: &MachineClientId,
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let mut tx = writer.begin().await.map_err(db)?;
    let r = sqlx::query(
        "UPDATE machine_clients SET expiry_announced_at = $1 WHERE tenant_id = $2 AND id = $3 \
         AND expiry_announced_at IS NULL",
    )
    .bind(audit.at.0)
    .bind(tenant.as_str())
    .bind(client.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}
