//! Lost passkeys and re-enrolment campaigns: marking a passkey lost (revoke, end its sessions,
//! maybe require re-enrolment, in one transaction), and campaigns over one authenticator model
//! whose users are marked in batches, one transaction per batch with that batch's events.

use crate::audit::{self, AuditBatch};
use crate::sql::{db, end_sessions_of_credential, end_sessions_of_user};
use crate::store::{CampaignMark, Result, StoreError};
use keyplane_core::audit::NewEvent;
use keyplane_core::*;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

const CAMPAIGN_COLUMNS: &str =
    "id, tenant_id, aaguid, action, reason, source, status, affected, marked, \
     started_by, started_at, closed_by, closed_at, close_note";

fn campaign_row(row: &AnyRow) -> Result<Campaign> {
    let action: String = row.try_get("action").map_err(db)?;
    Ok(Campaign {
        id: CampaignId::from_trusted(row.try_get("id").map_err(db)?),
        tenant_id: TenantId::from_trusted(row.try_get("tenant_id").map_err(db)?),
        aaguid: row.try_get("aaguid").map_err(db)?,
        action: CampaignAction::parse(&action)
            .ok_or_else(|| StoreError::Database("stored campaign action does not parse".into()))?,
        reason: row.try_get("reason").map_err(db)?,
        source: row.try_get("source").map_err(db)?,
        status: row.try_get("status").map_err(db)?,
        affected: row.try_get("affected").map_err(db)?,
        marked: row.try_get("marked").map_err(db)?,
        started_by: row.try_get("started_by").map_err(db)?,
        started_at: Timestamp(row.try_get("started_at").map_err(db)?),
        closed_by: row.try_get("closed_by").map_err(db)?,
        closed_at: row
            .try_get::<Option<i64>, _>("closed_at")
            .map_err(db)?
            .map(Timestamp),
        close_note: row.try_get("close_note").map_err(db)?,
    })
}

/// See [`Store::mark_credential_lost`](crate::Store::mark_credential_lost).
pub(crate) async fn mark_credential_lost(
    writer: &AnyPool,
    tenant: &TenantId,
    id: &CredentialRecordId,
    reason: &str,
    at: Timestamp,
    decide: &(dyn Fn(u64) -> (Option<String>, Vec<NewEvent>) + Sync),
) -> Result<Option<u64>> {
    let mut tx = writer.begin().await.map_err(db)?;
    // The write comes first (SQLite never upgrades a read lock); a revoked passkey is not moved.
    let row = sqlx::query(
        "UPDATE credentials SET status = 'revoked', status_reason = $1 WHERE tenant_id = $2 AND id = $3 \
         AND (status = 'active' OR status = 'suspended') RETURNING user_id",
    )
    .bind(reason)
    .bind(tenant.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        tx.rollback().await.map_err(db)?;
        return Ok(None);
    };
    let user: String = row.try_get("user_id").map_err(db)?;
    end_sessions_of_credential(&mut tx, tenant, id.as_str(), at.0).await?;
    let others: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM credentials WHERE tenant_id = $1 AND user_id = $2 AND status = 'active'",
    )
    .bind(tenant.as_str())
    .bind(&user)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?
    .try_get("n")
    .map_err(db)?;
    let others = u64::try_from(others).unwrap_or(0);
    let (re_enrol, events) = decide(others);
    if let Some(why) = re_enrol {
        sqlx::query("UPDATE users SET re_enrol_reason = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(why)
            .bind(tenant.as_str())
            .bind(&user)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        end_sessions_of_user(&mut tx, tenant, &user, at.0).await?;
    }
    audit::append(&mut tx, tenant, AuditBatch::new(at, &events)).await?;
    tx.commit().await.map_err(db)?;
    Ok(Some(others))
}

pub(crate) async fn create_campaign(
    writer: &AnyPool,
    c: &Campaign,
    audit: AuditBatch<'_>,
) -> Result<()> {
    let mut tx = writer.begin().await.map_err(db)?;
    let q = format!(
        "INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    );
    sqlx::query(AssertSqlSafe(q))
        .bind(c.id.as_str())
        .bind(c.tenant_id.as_str())
        .bind(&c.aaguid)
        .bind(c.action.as_str())
        .bind(&c.reason)
        .bind(&c.source)
        .bind(&c.status)
        .bind(c.affected)
        .bind(c.marked)
        .bind(&c.started_by)
        .bind(c.started_at.0)
        .bind(c.closed_by.clone())
        .bind(c.closed_at.map(|t| t.0))
        .bind(c.close_note.clone())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    audit::append(&mut tx, &c.tenant_id, audit).await?;
    tx.commit().await.map_err(db)
}

pub(crate) async fn campaign(
    pool: &AnyPool,
    tenant: &TenantId,
    id: &CampaignId,
) -> Result<Option<Campaign>> {
    let q = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(AssertSqlSafe(q))
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.as_ref().map(campaign_row).transpose()
}

pub(crate) async fn list_campaigns(pool: &AnyPool, tenant: &TenantId) -> Result<Vec<Campaign>> {
    let q = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 ORDER BY started_at DESC, id"
    );
    let rows = sqlx::query(AssertSqlSafe(q))
        .bind(tenant.as_str())
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter().map(campaign_row).collect()
}

/// See [`Store::campaign_mark`](crate::Store::campaign_mark).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn campaign_mark(
    writer: &AnyPool,
    tenant: &TenantId,
    campaign: &CampaignId,
    users: &[CampaignMark],
    re_enrol_reason: &str,
    revoke_reason: Option<&str>,
    extra: &[NewEvent],
    at: Timestamp,
) -> Result<u64> {
    let mut tx = writer.begin().await.map_err(db)?;
    let mut recorded: Vec<NewEvent> = Vec::new();
    let mut marked = 0u64;
    for m in users {
        let r = sqlx::query(
            "INSERT INTO campaign_users (tenant_id, campaign_id, user_id, marked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (campaign_id, user_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(campaign.as_str())
        .bind(m.user.as_str())
        .bind(at.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            continue;
        }
        marked += 1;
        // A re-enrolment already pending (another campaign, an administrator) keeps its reason.
        sqlx::query(
            "UPDATE users SET re_enrol_reason = COALESCE(re_enrol_reason, $1) WHERE tenant_id = $2 AND id = $3",
        )
        .bind(re_enrol_reason)
        .bind(tenant.as_str())
        .bind(m.user.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        end_sessions_of_user(&mut tx, tenant, m.user.as_str(), at.0).await?;
        if let Some(why) = revoke_reason {
            for c in &m.credentials {
                sqlx::query(
                    "UPDATE credentials SET status = 'revoked', status_reason = $1 WHERE tenant_id = $2 AND id = $3 \
                     AND user_id = $4 AND (status = 'active' OR status = 'suspended')",
                )
                .bind(why)
                .bind(tenant.as_str())
                .bind(c.as_str())
                .bind(m.user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        recorded.extend(m.events.iter().cloned());
    }
    sqlx::query("UPDATE campaigns SET marked = marked + $1 WHERE tenant_id = $2 AND id = $3")
        .bind(i64::try_from(marked).unwrap_or(i64::MAX))
        .bind(tenant.as_str())
        .bind(campaign.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    recorded.extend(extra.iter().cloned());
    audit::append(&mut tx, tenant, AuditBatch::new(at, &recorded)).await?;
    tx.commit().await.map_err(db)?;
    Ok(marked)
}

pub(crate) async fn close_campaign(
    writer: &AnyPool,
    tenant: &TenantId,
    id: &CampaignId,
    by: &str,
    note: &str,
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let mut tx = writer.begin().await.map_err(db)?;
    let r = sqlx::query(
        "UPDATE campaigns SET status = 'closed', closed_by = $1, closed_at = $2, close_note = $3 \
         WHERE tenant_id = $4 AND id = $5 AND status = 'open'",
    )
    .bind(by)
    .bind(audit.at.0)
    .bind(note)
    .bind(tenant.as_str())
    .bind(id.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if r.rows_affected() != 1 {
        tx.rollback().await.map_err(db)?;
        return Ok(false);
    }
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

pub(crate) async fn campaign_re_enrolled(
    pool: &AnyPool,
    tenant: &TenantId,
    campaign: &Campaign,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(DISTINCT cu.user_id) AS n FROM campaign_users cu \
         JOIN credentials c ON c.tenant_id = cu.tenant_id AND c.user_id = cu.user_id \
         WHERE cu.tenant_id = $1 AND cu.campaign_id = $2 AND c.aaguid <> $3 AND c.created_at >= $4",
    )
    .bind(tenant.as_str())
    .bind(campaign.id.as_str())
    .bind(&campaign.aaguid)
    .bind(campaign.started_at.0)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    row.try_get("n").map_err(db)
}

pub(crate) async fn open_campaign_models_of_user(
    pool: &AnyPool,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT c.aaguid FROM campaigns c JOIN campaign_users cu ON cu.campaign_id = c.id AND cu.tenant_id = c.tenant_id \
         WHERE c.tenant_id = $1 AND cu.user_id = $2 AND c.status = 'open' ORDER BY c.aaguid",
    )
    .bind(tenant.as_str())
    .bind(user.as_str())
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| r.try_get("aaguid").map_err(db))
        .collect()
}
