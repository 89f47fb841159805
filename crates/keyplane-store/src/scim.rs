//! SCIM 2.0 provisioning: the provisioned attributes kept beside a user (`scim_users`), SCIM's
//! deletion mark, and groups (`scim_groups`), whose members are the rows of `user_populations`
//! that name the group. Every change appends its events in its own transaction.

use crate::audit::{self, AuditBatch};
use crate::sql::db;
use crate::store::{Result, StoreError};
use keyplane_core::scim::{ScimGroup, ScimProfile};
use keyplane_core::*;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

/// A user's provisioned attributes as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimUserRow {
    pub user_id: UserId,
    pub profile: ScimProfile,
    /// When SCIM last changed the user.
    pub updated_at: Timestamp,
    /// Deleted through SCIM: the user stays (deprovisioned) but is no SCIM resource any more.
    pub deleted: bool,
}

/// What a SCIM replace writes to a user: the users row's columns SCIM owns, and the profile.
#[derive(Clone, Debug)]
pub struct ScimUserChange<'a> {
    pub user: &'a UserId,
    pub username: &'a str,
    pub display_name: &'a str,
    pub contact_email: Option<&'a str>,
    pub profile: &'a ScimProfile,
}

fn profile_json(p: &ScimProfile) -> Result<String> {
    serde_json::to_string(p).map_err(|e| StoreError::Database(format!("scim profile: {e}")))
}

fn user_row(row: &AnyRow) -> Result<ScimUserRow> {
    let profile: String = row.try_get("profile").map_err(db)?;
    Ok(ScimUserRow {
        user_id: UserId::from_trusted(row.try_get("user_id").map_err(db)?),
        profile: serde_json::from_str(&profile)
            .map_err(|e| StoreError::Database(format!("stored scim profile: {e}")))?,
        updated_at: Timestamp(row.try_get("updated_at").map_err(db)?),
        deleted: row
            .try_get::<Option<i64>, _>("deleted_at")
            .map_err(db)?
            .is_some(),
    })
}

fn group_row(row: &AnyRow) -> Result<ScimGroup> {
    Ok(ScimGroup {
        id: ScimGroupId::from_trusted(row.try_get("id").map_err(db)?),
        tenant_id: TenantId::from_trusted(row.try_get("tenant_id").map_err(db)?),
        display_name: row.try_get("display_name").map_err(db)?,
        external_id: row.try_get("external_id").map_err(db)?,
        created_at: Timestamp(row.try_get("created_at").map_err(db)?),
        updated_at: Timestamp(row.try_get("updated_at").map_err(db)?),
    })
}

async fn upsert_profile(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    user: &UserId,
    profile: &ScimProfile,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO scim_users (tenant_id, user_id, profile, updated_at, deleted_at) VALUES ($1, $2, $3, $4, NULL) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at",
    )
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(profile_json(profile)?)
    .bind(at.0)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn user_rows(pool: &AnyPool, tenant: &TenantId) -> Result<Vec<ScimUserRow>> {
    sqlx::query(
        "SELECT user_id, profile, updated_at, deleted_at FROM scim_users WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await
    .map_err(db)?
    .iter()
    .map(user_row)
    .collect()
}

pub(crate) async fn user_row_of(
    pool: &AnyPool,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<ScimUserRow>> {
    sqlx::query(
        "SELECT user_id, profile, updated_at, deleted_at FROM scim_users WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant.as_str())
    .bind(user.as_str())
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .as_ref()
    .map(user_row)
    .transpose()
}

pub(crate) async fn create_user(
    writer: &AnyPool,
    u: &User,
    profile: &ScimProfile,
    audit: AuditBatch<'_>,
) -> Result<()> {
    let mut tx = writer.begin().await.map_err(db)?;
    crate::sql::insert_user(&mut tx, u).await?;
    upsert_profile(&mut tx, &u.tenant_id, &u.id, profile, audit.at).await?;
    audit::append(&mut tx, &u.tenant_id, audit).await?;
    tx.commit().await.map_err(db)
}

/// False (nothing written) when the user is not in the tenant or was deleted through SCIM.
pub(crate) async fn update_user(
    writer: &AnyPool,
    tenant: &TenantId,
    change: &ScimUserChange<'_>,
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let mut tx = writer.begin().await.map_err(db)?;
    let updated = sqlx::query(
        "UPDATE users SET username = $1, display_name = $2, contact_email = $3 WHERE tenant_id = $4 AND id = $5 \
         AND NOT EXISTS (SELECT 1 FROM scim_users s WHERE s.tenant_id = $4 AND s.user_id = $5 AND s.deleted_at IS NOT NULL)",
    )
    .bind(change.username)
    .bind(change.display_name)
    .bind(change.contact_email)
    .bind(tenant.as_str())
    .bind(change.user.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    if updated == 0 {
        tx.rollback().await.map_err(db)?;
        return Ok(false);
    }
    upsert_profile(&mut tx, tenant, change.user, change.profile, audit.at).await?;
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

/// Marks a user deleted through SCIM and takes it out of every population; false (nothing
/// written) when it already was.
pub(crate) async fn delete_user(
    writer: &AnyPool,
    tenant: &TenantId,
    user: &UserId,
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let mut tx = writer.begin().await.map_err(db)?;
    let marked = sqlx::query(
        "INSERT INTO scim_users (tenant_id, user_id, profile, updated_at, deleted_at) \
         SELECT tenant_id, id, '{}', $3, $3 FROM users WHERE tenant_id = $1 AND id = $2 \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET deleted_at = excluded.deleted_at, updated_at = excluded.updated_at \
         WHERE scim_users.deleted_at IS NULL",
    )
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(audit.at.0)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    if marked == 0 {
        tx.rollback().await.map_err(db)?;
        return Ok(false);
    }
    sqlx::query("DELETE FROM user_populations WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

pub(crate) async fn groups(pool: &AnyPool, tenant: &TenantId) -> Result<Vec<ScimGroup>> {
    sqlx::query(
        "SELECT id, tenant_id, display_name, external_id, created_at, updated_at FROM scim_groups \
         WHERE tenant_id = $1 ORDER BY display_name",
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await
    .map_err(db)?
    .iter()
    .map(group_row)
    .collect()
}

pub(crate) async fn group(
    pool: &AnyPool,
    tenant: &TenantId,
    id: &ScimGroupId,
) -> Result<Option<ScimGroup>> {
    sqlx::query(
        "SELECT id, tenant_id, display_name, external_id, created_at, updated_at FROM scim_groups \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .as_ref()
    .map(group_row)
    .transpose()
}

/// Creates the group (`previous_name` `None`) or replaces it (renaming its population from
/// `previous_name`), and makes `members` exactly the users in its population. A name another
/// group holds is a `Conflict`; a group that vanished meanwhile is `Ok(false)`.
pub(crate) async fn write_group(
    writer: &AnyPool,
    g: &ScimGroup,
    previous_name: Option<&str>,
    members: &[UserId],
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let tenant = &g.tenant_id;
    let mut tx = writer.begin().await.map_err(db)?;
    match previous_name {
        None => {
            sqlx::query(
                "INSERT INTO scim_groups (id, tenant_id, display_name, external_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(g.id.as_str())
            .bind(tenant.as_str())
            .bind(&g.display_name)
            .bind(g.external_id.clone())
            .bind(g.created_at.0)
            .bind(g.updated_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        Some(previous) => {
            let n = sqlx::query(
                "UPDATE scim_groups SET display_name = $1, external_id = $2, updated_at = $3 \
                 WHERE tenant_id = $4 AND id = $5",
            )
            .bind(&g.display_name)
            .bind(g.external_id.clone())
            .bind(g.updated_at.0)
            .bind(tenant.as_str())
            .bind(g.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if n == 0 {
                tx.rollback().await.map_err(db)?;
                return Ok(false);
            }
            if previous != g.display_name {
                sqlx::query(
                    "DELETE FROM user_populations WHERE tenant_id = $1 AND population = $2",
                )
                .bind(tenant.as_str())
                .bind(previous)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
    }
    sqlx::query("DELETE FROM user_populations WHERE tenant_id = $1 AND population = $2")
        .bind(tenant.as_str())
        .bind(&g.display_name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    for m in members {
        sqlx::query(
            "INSERT INTO user_populations (tenant_id, user_id, population) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(m.as_str())
        .bind(&g.display_name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

/// Deletes the group and empties its population; false (nothing written) when it is not there.
pub(crate) async fn delete_group(
    writer: &AnyPool,
    g: &ScimGroup,
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let tenant = &g.tenant_id;
    let mut tx = writer.begin().await.map_err(db)?;
    let n = sqlx::query("DELETE FROM scim_groups WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(g.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    if n == 0 {
        tx.rollback().await.map_err(db)?;
        return Ok(false);
    }
    sqlx::query("DELETE FROM user_populations WHERE tenant_id = $1 AND population = $2")
        .bind(tenant.as_str())
        .bind(&g.display_name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}
