//! The OpenID Connect provider's storage: client registrations (beside their machine client),
//! grants (pending requests, codes, tokens, assertion ids — by hash, single use, revocable by
//! family) and the published halves of the ID-token signing keys.

use crate::audit::{self, AuditBatch};
use crate::sql::{db, json};
use crate::store::{Result, StoreError};
use keyplane_core::oidc::{GrantKind, OidcClientConfig, OidcGrant, TokenAuthMethod};
use keyplane_core::*;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

const GRANT_COLUMNS: &str = "hash, tenant_id, kind, client_id, user_id, session_id, family, body, \
     created_at, expires_at, used_at, revoked_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Database(format!("stored {what} does not parse"))
}

fn list(s: &str, what: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|_| corrupt(what))
}

pub(crate) async fn insert_config(
    tx: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    client: &MachineClientId,
    c: &OidcClientConfig,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO oidc_clients (client_id, tenant_id, redirect_uris, post_logout_redirect_uris, \
         auth_method, jwks, scopes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(client.as_str())
    .bind(tenant.as_str())
    .bind(json(&c.redirect_uris))
    .bind(json(&c.post_logout_redirect_uris))
    .bind(c.auth_method.as_str())
    .bind(c.jwks.clone())
    .bind(json(&c.scopes))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) async fn config(
    pool: &AnyPool,
    tenant: &TenantId,
    client: &MachineClientId,
) -> Result<Option<OidcClientConfig>> {
    let row = sqlx::query(
        "SELECT redirect_uris, post_logout_redirect_uris, auth_method, jwks, scopes \
         FROM oidc_clients WHERE tenant_id = $1 AND client_id = $2",
    )
    .bind(tenant.as_str())
    .bind(client.as_str())
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let get = |name: &str| -> Result<String> { row.try_get(name).map_err(db) };
    Ok(Some(OidcClientConfig {
        redirect_uris: list(&get("redirect_uris")?, "redirect URIs")?,
        post_logout_redirect_uris: list(&get("post_logout_redirect_uris")?, "logout URIs")?,
        auth_method: TokenAuthMethod::parse(&get("auth_method")?)
            .ok_or_else(|| corrupt("token auth method"))?,
        jwks: row.try_get("jwks").map_err(db)?,
        scopes: list(&get("scopes")?, "OIDC scopes")?,
    }))
}

fn grant(row: &AnyRow) -> Result<OidcGrant> {
    let kind: String = row.try_get("kind").map_err(db)?;
    let opt_ts = |name: &str| -> Result<Option<Timestamp>> {
        Ok(row
            .try_get::<Option<i64>, _>(name)
            .map_err(db)?
            .map(Timestamp))
    };
    Ok(OidcGrant {
        hash: row.try_get("hash").map_err(db)?,
        tenant_id: TenantId::from_trusted(row.try_get("tenant_id").map_err(db)?),
        kind: GrantKind::parse(&kind).ok_or_else(|| corrupt("grant kind"))?,
        client_id: MachineClientId::from_trusted(row.try_get("client_id").map_err(db)?),
        user_id: row
            .try_get::<Option<String>, _>("user_id")
            .map_err(db)?
            .map(UserId::from_trusted),
        session_id: row
            .try_get::<Option<String>, _>("session_id")
            .map_err(db)?
            .map(SessionId::from_trusted),
        family: row.try_get("family").map_err(db)?,
        body: row.try_get("body").map_err(db)?,
        created_at: Timestamp(row.try_get("created_at").map_err(db)?),
        expires_at: Timestamp(row.try_get("expires_at").map_err(db)?),
        used_at: opt_ts("used_at")?,
        revoked_at: opt_ts("revoked_at")?,
    })
}

async fn insert_grants(tx: &mut sqlx::AnyConnection, grants: &[OidcGrant]) -> Result<()> {
    for g in grants {
        sqlx::query(
            "INSERT INTO oidc_grants (hash, tenant_id, kind, client_id, user_id, session_id, family, \
             body, created_at, expires_at, used_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(g.hash.clone())
        .bind(g.tenant_id.as_str())
        .bind(g.kind.as_str())
        .bind(g.client_id.as_str())
        .bind(g.user_id.as_ref().map(|u| u.as_str().to_owned()))
        .bind(g.session_id.as_ref().map(|s| s.as_str().to_owned()))
        .bind(g.family.clone())
        .bind(g.body.clone())
        .bind(g.created_at.0)
        .bind(g.expires_at.0)
        .bind(g.used_at.map(|t| t.0))
        .bind(g.revoked_at.map(|t| t.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Inserts grants and their events in one transaction. A grant whose hash exists already (a
/// replayed assertion id) is a `Conflict` and nothing is written.
pub(crate) async fn add_grants(
    writer: &AnyPool,
    tenant: &TenantId,
    grants: &[OidcGrant],
    audit: AuditBatch<'_>,
) -> Result<()> {
    let mut tx = writer.begin().await.map_err(db)?;
    insert_grants(&mut tx, grants).await?;
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)
}

pub(crate) async fn find_grant(
    pool: &AnyPool,
    tenant: &TenantId,
    hash: &[u8],
) -> Result<Option<OidcGrant>> {
    let q = format!("SELECT {GRANT_COLUMNS} FROM oidc_grants WHERE tenant_id = $1 AND hash = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(tenant.as_str())
        .bind(hash.to_vec())
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.as_ref().map(grant).transpose()
}

/// Uses a grant once: marks it used if it is unused, unrevoked and unexpired at `audit.at`,
/// then inserts `successors` and the events, all in one transaction. False (nothing written)
/// when another request used it first or it no longer qualifies.
pub(crate) async fn use_grant(
    writer: &AnyPool,
    tenant: &TenantId,
    hash: &[u8],
    successors: &[OidcGrant],
    audit: AuditBatch<'_>,
) -> Result<bool> {
    let mut tx = writer.begin().await.map_err(db)?;
    let r = sqlx::query(
        "UPDATE oidc_grants SET used_at = $1 WHERE tenant_id = $2 AND hash = $3 \
         AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
    )
    .bind(audit.at.0)
    .bind(tenant.as_str())
    .bind(hash.to_vec())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    insert_grants(&mut tx, successors).await?;
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

/// Revokes every live grant of a family (a code and the tokens issued from it); returns how many.
pub(crate) async fn revoke_family(
    writer: &AnyPool,
    tenant: &TenantId,
    family: &str,
    audit: AuditBatch<'_>,
) -> Result<u64> {
    let mut tx = writer.begin().await.map_err(db)?;
    let r = sqlx::query(
        "UPDATE oidc_grants SET revoked_at = $1 WHERE tenant_id = $2 AND family = $3 \
         AND revoked_at IS NULL",
    )
    .bind(audit.at.0)
    .bind(tenant.as_str())
    .bind(family)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(r.rows_affected())
}

/// Deletes grants that expired before `before` (kept a while after expiry so that a late replay
/// is still recognised as one).
pub(crate) async fn purge_grants(writer: &AnyPool, before: Timestamp) -> Result<u64> {
    let r = sqlx::query("DELETE FROM oidc_grants WHERE expires_at < $1")
        .bind(before.0)
        .execute(writer)
        .await
        .map_err(db)?;
    Ok(r.rows_affected())
}

/// Publishes a signing key's public JWK (idempotent by `kid`).
pub(crate) async fn publish_key(
    writer: &AnyPool,
    kid: &str,
    public_jwk: &str,
    at: Timestamp,
) -> Result<()> {
    let exists = sqlx::query("SELECT kid FROM oidc_signing_keys WHERE kid = $1")
        .bind(kid)
        .fetch_optional(writer)
        .await
        .map_err(db)?;
    if exists.is_none() {
        sqlx::query(
            "INSERT INTO oidc_signing_keys (kid, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, NULL)",
        )
        .bind(kid)
        .bind(public_jwk)
        .bind(at.0)
        .execute(writer)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Marks a key retired at `at`: it stays published until then, for tokens it signed.
pub(crate) async fn retire_key(writer: &AnyPool, kid: &str, at: Timestamp) -> Result<()> {
    sqlx::query(
        "UPDATE oidc_signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
    )
    .bind(at.0)
    .bind(kid)
    .execute(writer)
    .await
    .map_err(db)?;
    Ok(())
}

/// The public JWKs to publish at `now`: every key not retired, or retired later than `now`.
pub(crate) async fn published_keys(pool: &AnyPool, now: Timestamp) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT public_jwk FROM oidc_signing_keys WHERE retired_at IS NULL OR retired_at > $1 \
         ORDER BY created_at DESC, kid",
    )
    .bind(now.0)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| r.try_get("public_jwk").map_err(db))
        .collect()
}
