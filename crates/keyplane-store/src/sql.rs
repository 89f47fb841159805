//! The SQL implementation of [`Store`], one body of queries for both SQLite and PostgreSQL
//! through sqlx's `Any` driver. The SQL used is the common subset of both dialects (`$n`
//! placeholders, `RETURNING`, `ON CONFLICT`); the schemas differ only in type names and live in
//! `migrations/{sqlite,postgres}`.

use crate::audit::{self, AuditBatch, AuditFilter, EVENT_COLUMNS};
use crate::audit_page::AuditPage;
use crate::audit_read::PageReader;
use crate::campaigns;
use crate::notifications::{NotificationFilter, NotificationOutcome};
use crate::oidc;
use crate::rows;
use crate::store::{
    AssertionRecord, CampaignMark, CaseFilter, PolicyVersion, RecoveryCodesStatus, RecoveryFinish,
    Result, Store, StoreError,
};
use crate::webhooks;
use async_trait::async_trait;
use keyplane_core::audit::{AuditEvent, Checkpoint, NewEvent};
use keyplane_core::mds::{MdsBlobInfo, MdsEntry};
use keyplane_core::recovery_case::{self, RecoveryCase};
use keyplane_core::*;
use sqlx::any::{AnyPoolOptions, AnyRow};
// Dynamic SQL below is assembled only from the constant column lists in this file.
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::sync::Arc;
use std::time::Duration;

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A [`Store`] over a pool of SQLite or PostgreSQL connections.
#[derive(Clone)]
pub struct SqlStore {
    /// Reads (any number at once).
    pub(crate) pool: AnyPool,
    /// Writes. For SQLite a single connection: SQLite admits one writer at a time anyway, and
    /// queueing writers here (in order, without sleeping) avoids its busy-retry back-off, which
    /// otherwise adds tens of milliseconds to the tail under load. For PostgreSQL, the same
    /// pool as reads.
    pub(crate) writer: AnyPool,
    /// Audit pages for verification, through the backend's own driver.
    pages: Arc<PageReader>,
    backend: Backend,
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return StoreError::Conflict(d.message().to_string());
        }
    }
    StoreError::Database(e.to_string())
}

pub(crate) fn b(v: bool) -> i64 {
    i64::from(v)
}

pub(crate) fn json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

const FRAUD_COLUMNS: &str = "id, tenant_id, kind, user_id, credential_id, status, opened_at, details, resolved_by, resolved_at, resolution, note";
const EXCEPTION_COLUMNS: &str = "id, tenant_id, subject_type, subject, rule, reason, requested_by, approved_by, approval_id, status, \
     created_at, expires_at, announced_at, ended_by, ended_at";
const BULK_COLUMNS: &str = "id, tenant_id, action, filter, reason, total, done, last_credential, status, created_by, created_at, finished_at";
const APPROVAL_COLUMNS: &str =
    "id, tenant_id, action, payload, summary, requested_by, requested_at, expires_at, status, \
     decided_by, decided_at, note";
const CLIENT_COLUMNS: &str = "id, tenant_id, kind, name, owner_id, scopes, status, created_at, created_by, approval_id, \
     approved_by, expires_at, secret_hash, previous_hash, previous_expires_at, rotated_at, last_used_at, revoked_at, revoked_by, \
     revoke_reason";
pub(crate) const CREDENTIAL_COLUMNS: &str = "id, tenant_id, user_id, credential_id, public_key, sign_count, aaguid, transports, \
     backup_eligible, backup_state, attestation_format, attestation_type, user_verified, nickname, created_at, last_used_at, status, \
     status_reason, library_state, attestation_trusted";
pub(crate) const USER_COLUMNS: &str =
    "id, tenant_id, username, display_name, user_handle, status, role, created_at, re_enrol_reason, contact_email";

/// A query on the `Any` driver, as [`bind_user`] extends it.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds a user row's values, in [`USER_COLUMNS`] order (ten parameters).
pub(crate) fn bind_user<'q>(q: AnyQuery<'q>, u: &'q User) -> AnyQuery<'q> {
    q.bind(u.id.as_str())
        .bind(u.tenant_id.as_str())
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(&u.user_handle)
        .bind(u.status.as_str())
        .bind(u.role.clone())
        .bind(u.created_at.0)
        .bind(u.re_enrol_reason.clone())
        .bind(u.contact_email.clone())
}
const SESSION_COLUMNS: &str = "id, tenant_id, user_id, token_hash, aal, amr, auth_time, credential_id, created_at, expires_at, restricted, \
     idle_secs, last_seen_at, recovery";
const SESSION_READ_COLUMNS: &str = "id, tenant_id, user_id, token_hash, aal, amr, auth_time, credential_id, created_at, expires_at, \
     restricted, elevated_aal, elevated_at, idle_secs, last_seen_at, recovery";

/// How long a request waits for a database connection unless told otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl SqlStore {
    /// Connects, applies pending migrations, and for SQLite turns on WAL, foreign keys and a
    /// busy timeout. A `sqlite:` URL creates the file if it is missing. A request waits at most
    /// [`DEFAULT_ACQUIRE_TIMEOUT`] for a connection.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// [`SqlStore::connect`], waiting at most `acquire_timeout` for a connection (after which
    /// the call fails, and a request gets 503 `storage_unavailable`).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| {
            StoreError::Database(format!(
                "unsupported database URL (want sqlite: or postgres:): {}",
                redact(url)
            ))
        })?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            _ => url.to_string(),
        };
        let options = |max: u32| {
            let opts = AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire_timeout);
            if backend != Backend::Sqlite {
                return opts;
            }
            opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers proceed during a write; FULL makes each commit durable
                    // before the response is sent; busy_timeout covers other processes (the
                    // CLI) writing at the same time.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
        };
        let pool = options(max_connections).connect(&url).await.map_err(db)?;
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let writer = match backend {
            Backend::Sqlite => options(1).connect(&url).await.map_err(db)?,
            Backend::Postgres => pool.clone(),
        };
        let pages = match backend {
            Backend::Sqlite => PageReader::sqlite(&url)?,
            Backend::Postgres => PageReader::postgres(&url, acquire_timeout)?,
        };
        Ok(SqlStore {
            pool,
            writer,
            pages: Arc::new(pages),
            backend,
        })
    }

    /// The underlying pool, for tests that tamper with the database directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend_kind(&self) -> Backend {
        self.backend
    }

    /// The newest migration this build carries (what `migration_level` is after a connect).
    pub fn known_migration_level(&self) -> i64 {
        let m = match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        m.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The database server's clock (milliseconds since the epoch), for a skew check; `None` for
    /// SQLite, which runs in this process.
    pub async fn database_time(&self) -> Result<Option<Timestamp>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS ms",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Some(Timestamp(row.try_get("ms").map_err(db)?)))
    }

    /// An online, consistent copy of a SQLite database into `path` (`VACUUM INTO`: one read
    /// transaction, so writers go on while it runs and the copy holds every committed change up
    /// to its start, and none after). `path` must not exist. PostgreSQL has its own tools
    /// (`pg_dump`): refused here.
    pub async fn backup_into(&self, path: &std::path::Path) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Database(
                "keyplane backup copies a SQLite database; for PostgreSQL use pg_dump (docs/operations.md)".into(),
            ));
        }
        let target = path.to_str().ok_or_else(|| {
            StoreError::Database(format!("{} is not a UTF-8 path", path.display()))
        })?;
        sqlx::query("VACUUM INTO $1")
            .bind(target.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pages.close().await;
        self.writer.close().await;
        self.pool.close().await;
    }

    async fn hostnames_of(&self, tenant: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT hostname FROM tenant_hostnames WHERE tenant_id = $1 ORDER BY hostname",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("hostname").map_err(db))
            .collect()
    }

    async fn tenant_from_row(&self, row: Option<AnyRow>) -> Result<Option<Tenant>> {
        match row {
            None => Ok(None),
            Some(row) => {
                let id: String = row.try_get("id").map_err(db)?;
                let hosts = self.hostnames_of(&id).await?;
                Ok(Some(rows::tenant(&row, hosts)?))
            }
        }
    }
}

/// A database URL with any password removed, for error messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Inserts a user's row (its caller owns the transaction and the audit event); also SCIM's
/// provisioning (`scim.rs`), which adds the SCIM profile in the same transaction.
pub(crate) async fn insert_user(tx: &mut sqlx::AnyConnection, u: &User) -> Result<()> {
    let q = format!(
        "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    );
    bind_user(sqlx::query(AssertSqlSafe(q)), u)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Inserts a machine client's row (its caller owns the transaction and the audit event).
async fn insert_client(tx: &mut sqlx::AnyConnection, c: &MachineClient) -> Result<()> {
    let scopes: Vec<String> = c.scopes.iter().map(|p| p.as_str().to_string()).collect();
    let q = format!("INSERT INTO machine_clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)");
    sqlx::query(AssertSqlSafe(q))
        .bind(c.id.as_str())
        .bind(c.tenant_id.as_str())
        .bind(c.kind.as_str())
        .bind(&c.name)
        .bind(c.owner.as_str())
        .bind(json(&scopes))
        .bind(c.status.as_str())
        .bind(c.created_at.0)
        .bind(&c.created_by)
        .bind(c.approval_id.as_ref().map(|a| a.as_str().to_string()))
        .bind(c.approved_by.clone())
        .bind(c.expires_at.0)
        .bind(c.secret_hash.as_ref().map(|h| h.0.clone()))
        .bind(c.previous_hash.as_ref().map(|h| h.0.clone()))
        .bind(c.previous_expires_at.map(|t| t.0))
        .bind(c.rotated_at.map(|t| t.0))
        .bind(c.last_used_at.map(|t| t.0))
        .bind(c.revoked_at.map(|t| t.0))
        .bind(c.revoked_by.clone())
        .bind(c.revoke_reason.clone())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn migration_level(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok(row.try_get::<Option<i64>, _>("v").map_err(db)?.unwrap_or(0))
    }

    async fn create_tenant(&self, t: &Tenant, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query("INSERT INTO tenants (id, name, rp_id, rp_name, origins, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(t.id.as_str())
            .bind(&t.name)
            .bind(&t.rp_id)
            .bind(&t.rp_name)
            .bind(json(&t.origins))
            .bind(t.created_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for h in &t.hostnames {
            sqlx::query("INSERT INTO tenant_hostnames (hostname, tenant_id) VALUES ($1, $2)")
                .bind(h)
                .bind(t.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2)")
            .bind(t.id.as_str())
            .bind(keyplane_core::audit::GENESIS.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        audit::append(&mut tx, &t.id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, rp_id, rp_name, origins, created_at FROM tenants ORDER BY created_at, name")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(t) = self.tenant_from_row(Some(row)).await? {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(
            "SELECT id, name, rp_id, rp_name, origins, created_at FROM tenants WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        self.tenant_from_row(row).await
    }

    async fn tenant_by_hostname(&self, hostname: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.rp_id, t.rp_name, t.origins, t.created_at FROM tenants t \
             JOIN tenant_hostnames h ON h.tenant_id = t.id WHERE h.hostname = $1",
        )
        .bind(hostname)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        self.tenant_from_row(row).await
    }

    async fn create_user(&self, u: &User, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        insert_user(&mut tx, u).await?;
        audit::append(&mut tx, &u.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn user_by_id(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>> {
        let q = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn user_by_username(&self, tenant: &TenantId, username: &str) -> Result<Option<User>> {
        let q = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND username = $2");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn user_by_handle(&self, tenant: &TenantId, handle: &[u8]) -> Result<Option<User>> {
        let q =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND user_handle = $2");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(handle.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>> {
        let q = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY username");
        let rows = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::user).collect()
    }

    async fn create_enrolment(&self, e: &Enrolment, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO enrolments (id, tenant_id, user_id, token_hash, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.as_str())
        .bind(e.tenant_id.as_str())
        .bind(e.user_id.as_str())
        .bind(e.token_hash.0.clone())
        .bind(e.created_at.0)
        .bind(e.expires_at.0)
        .bind(e.used_at.map(|t| t.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        audit::append(&mut tx, &e.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn enrolment_by_token(
        &self,
        tenant: &TenantId,
        hash: &TokenHash,
    ) -> Result<Option<Enrolment>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, user_id, token_hash, created_at, expires_at, used_at FROM enrolments \
             WHERE tenant_id = $1 AND token_hash = $2",
        )
        .bind(tenant.as_str())
        .bind(hash.0.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::enrolment).transpose()
    }

    async fn insert_ceremony(&self, c: &Ceremony) -> Result<()> {
        sqlx::query(
            "INSERT INTO ceremonies (id, tenant_id, purpose, user_id, enrolment_id, state, created_at, expires_at, session_id, level) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.id.as_str())
        .bind(c.tenant_id.as_str())
        .bind(c.purpose.as_str())
        .bind(c.user_id.as_ref().map(|u| u.as_str().to_string()))
        .bind(c.enrolment_id.as_ref().map(|e| e.as_str().to_string()))
        .bind(&c.state)
        .bind(c.created_at.0)
        .bind(c.expires_at.0)
        .bind(c.session_id.as_ref().map(|s| s.as_str().to_string()))
        .bind(c.level.map(|l| l.as_str().to_string()))
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        tenant: &TenantId,
        id: &CeremonyId,
        purpose: CeremonyPurpose,
    ) -> Result<Option<Ceremony>> {
        let row = sqlx::query(
            "DELETE FROM ceremonies WHERE id = $1 AND tenant_id = $2 AND purpose = $3 \
             RETURNING id, tenant_id, purpose, user_id, enrolment_id, state, created_at, expires_at, session_id, level",
        )
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(purpose.as_str())
        .fetch_optional(&self.writer)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::ceremony).transpose()
    }

    async fn purge_expired_ceremonies(&self, now: Timestamp) -> Result<u64> {
        let r = sqlx::query("DELETE FROM ceremonies WHERE expires_at <= $1")
            .bind(now.0)
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(r.rows_affected())
    }

    async fn purge_expired_sessions_and_enrolments(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        event: &(dyn Fn(u64, u64) -> NewEvent + Sync),
    ) -> Result<u64> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE tenant_id = $1 AND (expires_at <= $2 OR revoked_at IS NOT NULL)",
        )
        .bind(tenant.as_str())
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let enrolments =
            sqlx::query("DELETE FROM enrolments WHERE tenant_id = $1 AND expires_at <= $2")
                .bind(tenant.as_str())
                .bind(now.0)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        if sessions + enrolments == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(0);
        }
        let ev = [event(sessions, enrolments)];
        audit::append(&mut tx, tenant, AuditBatch::new(now, &ev)).await?;
        tx.commit().await.map_err(db)?;
        Ok(sessions + enrolments)
    }

    async fn register_credential(
        &self,
        c: &Credential,
        enrolment: Option<&EnrolmentId>,
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let at = audit.at;
        if let Some(eid) = enrolment {
            let r = sqlx::query("UPDATE enrolments SET used_at = $1 WHERE id = $2 AND tenant_id = $3 AND used_at IS NULL")
                .bind(at.0)
                .bind(eid.as_str())
                .bind(c.tenant_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if r.rows_affected() != 1 {
                return Err(StoreError::Conflict("enrolment already used".into()));
            }
        }
        insert_credential(&mut tx, c).await?;
        audit::append(&mut tx, &c.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn credential_by_credential_id(
        &self,
        tenant: &TenantId,
        credential_id: &[u8],
    ) -> Result<Option<Credential>> {
        let q = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = $1 AND credential_id = $2");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(credential_id.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::credential).transpose()
    }

    async fn credential_by_id(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
    ) -> Result<Option<Credential>> {
        let q = format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = $1 AND id = $2"
        );
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::credential).transpose()
    }

    async fn list_credentials(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
    ) -> Result<Vec<Credential>> {
        let rows = match user {
            Some(u) => {
                let q = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id");
                sqlx::query(AssertSqlSafe(q)).bind(tenant.as_str()).bind(u.as_str()).fetch_all(&self.pool).await
            }
            None => {
                let q = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE tenant_id = $1 ORDER BY created_at, id");
                sqlx::query(AssertSqlSafe(q)).bind(tenant.as_str()).fetch_all(&self.pool).await
            }
        }
        .map_err(db)?;
        rows.iter().map(rows::credential).collect()
    }

    async fn rename_credential(
        &self,
        tenant: &TenantId,
        user: &UserId,
        id: &CredentialRecordId,
        nickname: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE credentials SET nickname = $1 WHERE tenant_id = $2 AND user_id = $3 AND id = $4 AND status <> 'revoked'")
            .bind(nickname)
            .bind(tenant.as_str())
            .bind(user.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn set_credential_status(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
        status: CredentialStatus,
        reason: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE credentials SET status = $1, status_reason = $2 WHERE tenant_id = $3 AND id = $4")
            .bind(status.as_str())
            .bind(reason)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn record_assertion(
        &self,
        tenant: &TenantId,
        r: &AssertionRecord<'_>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let updated = sqlx::query(
            "UPDATE credentials SET sign_count = $1, backup_eligible = $2, backup_state = $3, library_state = $4, last_used_at = $5 \
             WHERE tenant_id = $6 AND id = $7 AND status = 'active' AND (sign_count < $1 OR ($1 = 0 AND sign_count = 0))",
        )
        .bind(i64::from(r.sign_count))
        .bind(b(r.backup_eligible))
        .bind(b(r.backup_state))
        .bind(r.library_state)
        .bind(r.used_at.0)
        .bind(tenant.as_str())
        .bind(r.credential.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        if let Some(level) = r.step_up {
            let elevated = sqlx::query(
                "UPDATE sessions SET elevated_aal = $1, elevated_at = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL",
            )
            .bind(level.as_str())
            .bind(r.used_at.0)
            .bind(tenant.as_str())
            .bind(r.session.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            return finish(tx, tenant, elevated.rows_affected() == 1, audit).await;
        }
        insert_session(&mut tx, r.session).await?;
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn session_by_token(
        &self,
        tenant: &TenantId,
        hash: &TokenHash,
    ) -> Result<Option<Session>> {
        let q = format!("SELECT {SESSION_READ_COLUMNS} FROM sessions WHERE tenant_id = $1 AND token_hash = $2 AND revoked_at IS NULL");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(hash.0.clone())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::session).transpose()
    }

    async fn user_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>> {
        let q = format!(
            "SELECT {SESSION_READ_COLUMNS} FROM sessions WHERE tenant_id = $1 AND user_id = $2 \
             AND revoked_at IS NULL AND expires_at > $3 ORDER BY created_at DESC, id LIMIT 100"
        );
        sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(user.as_str())
            .bind(now.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rows::session)
            .collect()
    }

    async fn end_other_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        keep: &SessionId,
        audit: AuditBatch<'_>,
    ) -> Result<u64> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE tenant_id = $2 AND user_id = $3 AND id <> $4 \
             AND revoked_at IS NULL",
        )
        .bind(audit.at.0)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(keep.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let n = r.rows_affected();
        finish(tx, tenant, n > 0, audit).await?;
        Ok(n)
    }

    async fn touch_session(&self, tenant: &TenantId, id: &SessionId, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE tenant_id = $2 AND id = $3 AND last_seen_at < $1")
            .bind(at.0)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn revoke_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(audit.at.0)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn replace_recovery_codes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        codes: &[(RecoveryCodeId, String)],
        audit: AuditBatch<'_>,
    ) -> Result<u64> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let removed = sqlx::query(
            "DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        for (id, hash) in codes {
            sqlx::query(
                "INSERT INTO recovery_codes (id, tenant_id, user_id, hash, created_at, used_at) VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(user.as_str())
            .bind(hash.as_str())
            .bind(audit.at.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    async fn unused_recovery_codes(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Vec<(RecoveryCodeId, String)>> {
        let rows = sqlx::query(
            "SELECT id, hash FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL ORDER BY id",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    RecoveryCodeId::from_trusted(r.try_get("id").map_err(db)?),
                    r.try_get("hash").map_err(db)?,
                ))
            })
            .collect()
    }

    async fn recovery_codes_status(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<RecoveryCodesStatus> {
        let r = sqlx::query(
            "SELECT COUNT(*) - COUNT(used_at) AS remaining, MAX(CASE WHEN used_at IS NULL THEN created_at END) AS generated_at FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let remaining: i64 = r.try_get("remaining").map_err(db)?;
        let generated_at: Option<i64> = r.try_get("generated_at").map_err(db)?;
        Ok(RecoveryCodesStatus {
            remaining: u64::try_from(remaining).unwrap_or(0),
            generated_at: generated_at.map(Timestamp),
        })
    }

    async fn redeem_recovery_code(
        &self,
        tenant: &TenantId,
        code: &RecoveryCodeId,
        session: &Session,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let used = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE tenant_id = $2 AND id = $3 AND user_id = $4 AND used_at IS NULL",
        )
        .bind(audit.at.0)
        .bind(tenant.as_str())
        .bind(code.as_str())
        .bind(session.user_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if used.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        insert_session(&mut tx, session).await?;
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn insert_recovery_case(&self, c: &RecoveryCase, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO recovery_cases (id, tenant_id, user_id, state, network, link_hash, created_at, expires_at, version, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.id.as_str())
        .bind(c.tenant_id.as_str())
        .bind(c.user_id.as_str())
        .bind(c.state.as_str())
        .bind(c.opened_from.as_deref().and_then(recovery_case::network_of))
        .bind(c.link_hash.clone())
        .bind(c.created_at.0)
        .bind(c.expires_at.0)
        .bind(c.version)
        .bind(case_json(c)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        audit::append(&mut tx, &c.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn recovery_case(
        &self,
        tenant: &TenantId,
        id: &RecoveryCaseId,
    ) -> Result<Option<RecoveryCase>> {
        sqlx::query("SELECT body FROM recovery_cases WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(rows::recovery_case)
            .transpose()
    }

    async fn recovery_case_by_link(
        &self,
        tenant: &TenantId,
        link_hash: &[u8],
    ) -> Result<Option<RecoveryCase>> {
        sqlx::query("SELECT body FROM recovery_cases WHERE tenant_id = $1 AND link_hash = $2")
            .bind(tenant.as_str())
            .bind(link_hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(rows::recovery_case)
            .transpose()
    }

    async fn list_recovery_cases(
        &self,
        tenant: &TenantId,
        f: &CaseFilter,
    ) -> Result<Vec<RecoveryCase>> {
        // Placeholders are numbered in the order the optional filters are added.
        let mut sql = String::from("SELECT body FROM recovery_cases WHERE tenant_id = $1");
        let mut n = 1;
        if f.user.is_some() {
            n += 1;
            sql.push_str(&format!(" AND user_id = ${n}"));
        }
        if f.state.is_some() {
            n += 1;
            sql.push_str(&format!(" AND state = ${n}"));
        }
        if f.open_only {
            sql.push_str(" AND state NOT IN ('completed', 'denied', 'cancelled', 'expired')");
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id LIMIT ${}", n + 1));
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant.as_str());
        if let Some(u) = &f.user {
            q = q.bind(u.as_str());
        }
        if let Some(st) = f.state {
            q = q.bind(st.as_str());
        }
        q.bind(if f.limit > 0 { f.limit } else { 100 })
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(rows::recovery_case)
            .collect()
    }

    async fn count_recovery_cases(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
        network: Option<&str>,
        since: Timestamp,
    ) -> Result<u64> {
        let (column, value) = match (user, network) {
            (Some(u), _) => ("user_id", u.as_str()),
            (None, Some(n)) => ("network", n),
            (None, None) => return Ok(0),
        };
        let q = format!(
            "SELECT COUNT(*) AS n FROM recovery_cases WHERE tenant_id = $1 AND {column} = $2 AND created_at >= $3"
        );
        let n: i64 = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(value)
            .bind(since.0)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
            .try_get("n")
            .map_err(db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn update_recovery_case(
        &self,
        c: &RecoveryCase,
        session: Option<&Session>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let applied = write_case(&mut tx, c).await?;
        if applied {
            if let Some(s) = session {
                insert_session(&mut tx, s).await?;
            }
        }
        finish(tx, &c.tenant_id, applied, audit).await
    }

    async fn last_recovery(&self, tenant: &TenantId, user: &UserId) -> Result<Option<Timestamp>> {
        let code: Option<i64> = sqlx::query(
            "SELECT MAX(used_at) AS at FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?
        .try_get("at")
        .map_err(db)?;
        let case = sqlx::query(
            "SELECT body FROM recovery_cases WHERE tenant_id = $1 AND user_id = $2 AND state = 'completed' \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::recovery_case)
        .transpose()?
        .map(|c| c.updated_at);
        Ok(code.map(Timestamp).max(case))
    }

    async fn register_recovered_credential(
        &self,
        c: &Credential,
        r: RecoveryFinish<'_>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let at = audit.at.0;
        let tenant = &c.tenant_id;
        // The recovery session ends with this registration; one that already ended (or is
        // another user's) registers nothing.
        let ended = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND user_id = $4 \
             AND recovery IS NOT NULL AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(tenant.as_str())
        .bind(r.session.as_str())
        .bind(c.user_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if ended.rows_affected() != 1 {
            return finish(tx, tenant, false, audit).await;
        }
        if let Some(case) = r.case {
            if !write_case(&mut tx, case).await? {
                return finish(tx, tenant, false, audit).await;
            }
        }
        if r.revoke_others {
            sqlx::query(
                "UPDATE credentials SET status = 'revoked', status_reason = 'replaced_by_recovery' \
                 WHERE tenant_id = $1 AND user_id = $2 AND status <> 'revoked'",
            )
            .bind(tenant.as_str())
            .bind(c.user_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            end_sessions_of_user(&mut tx, tenant, c.user_id.as_str(), at).await?;
        }
        insert_credential(&mut tx, c).await?;
        // Whatever re-enrolment an administrator asked for is met by the new passkey.
        sqlx::query("UPDATE users SET re_enrol_reason = NULL WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(c.user_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, true, audit).await
    }

    async fn append_events(&self, tenant: &TenantId, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn audit_head(&self, tenant: &TenantId) -> Result<(i64, Vec<u8>)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::Database(format!("tenant {tenant} has no audit chain")))?;
        Ok((
            row.try_get("seq").map_err(db)?,
            row.try_get("hash").map_err(db)?,
        ))
    }

    async fn list_audit_events(
        &self,
        tenant: &TenantId,
        f: &AuditFilter,
    ) -> Result<Vec<AuditEvent>> {
        // Placeholders are numbered in the order the optional filters are added.
        let mut sql =
            format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1 AND seq > $2");
        let mut n = 2;
        let mut next = |clause: &str| {
            n += 1;
            format!(" AND {clause} ${n}")
        };
        if f.since.is_some() {
            sql += &next("time >=");
        }
        if f.until.is_some() {
            sql += &next("time <");
        }
        if f.action.is_some() {
            sql += &next("action =");
        }
        if f.outcome.is_some() {
            sql += &next("outcome =");
        }
        sql += &format!(" ORDER BY seq LIMIT {}", f.limit.clamp(1, 100_000));
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(f.after_seq);
        if let Some(t) = f.since {
            q = q.bind(t.0);
        }
        if let Some(t) = f.until {
            q = q.bind(t.0);
        }
        if let Some(a) = &f.action {
            q = q.bind(a.clone());
        }
        if let Some(o) = &f.outcome {
            q = q.bind(o.clone());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(audit::event).collect()
    }

    async fn latest_events_about(
        &self,
        tenant: &TenantId,
        target_type: &str,
        target_id: &str,
        action: &str,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1 AND target_type = $2 \
             AND target_id = $3 AND action = $4 ORDER BY seq DESC LIMIT {}",
            limit.clamp(1, 1000)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(target_type)
            .bind(target_id)
            .bind(action)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(audit::event).collect()
    }

    async fn audit_page(
        &self,
        tenant: &TenantId,
        after: i64,
        through: i64,
        limit: usize,
        into: AuditPage,
    ) -> Result<AuditPage> {
        self.pages.page(tenant, after, through, limit, into).await
    }

    async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (tenant_id, seq, hash, signed_at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(cp.tenant_id.as_str())
        .bind(cp.seq)
        .bind(cp.hash.clone())
        .bind(cp.signed_at.0)
        .bind(&cp.key_id)
        .bind(cp.signature.clone())
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn list_checkpoints(&self, tenant: &TenantId) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query(
            "SELECT tenant_id, seq, hash, signed_at, key_id, signature FROM audit_checkpoints \
             WHERE tenant_id = $1 ORDER BY seq, key_id",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(audit::checkpoint).collect()
    }

    async fn active_policy_version(&self, tenant: &TenantId) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT version FROM active_policies WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| r.try_get::<i64, _>("version").map_err(db))
            .transpose()
    }

    async fn active_policy(&self, tenant: &TenantId) -> Result<Option<PolicyVersion>> {
        let row = sqlx::query(
            "SELECT p.version, p.document, p.created_at, p.created_by FROM policies p \
             JOIN active_policies a ON a.tenant_id = p.tenant_id AND a.version = p.version WHERE p.tenant_id = $1",
        )
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| policy_version(&r, true)).transpose()
    }

    async fn activate_policy(
        &self,
        tenant: &TenantId,
        document: &str,
        created_by: &str,
        audit: AuditBatch<'_>,
    ) -> Result<i64> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        // The insert's own SELECT takes the next number; the primary key makes two concurrent
        // activations of the same number impossible (one fails with Conflict).
        let row = sqlx::query(
            "INSERT INTO policies (tenant_id, version, document, created_at, created_by) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4 FROM policies WHERE tenant_id = $1 RETURNING version",
        )
        .bind(tenant.as_str())
        .bind(document)
        .bind(audit.at.0)
        .bind(created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let version: i64 = row.try_get("version").map_err(db)?;
        sqlx::query(
            "INSERT INTO active_policies (tenant_id, version) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version",
        )
        .bind(tenant.as_str())
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(version)
    }

    async fn reactivate_policy(
        &self,
        tenant: &TenantId,
        version: i64,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query(
            "INSERT INTO active_policies (tenant_id, version) SELECT tenant_id, version FROM policies \
             WHERE tenant_id = $1 AND version = $2 ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version",
        )
        .bind(tenant.as_str())
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn list_policies(&self, tenant: &TenantId) -> Result<Vec<PolicyVersion>> {
        let active = self.active_policy(tenant).await?.map(|p| p.version);
        let rows = sqlx::query("SELECT version, document, created_at, created_by FROM policies WHERE tenant_id = $1 ORDER BY version")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let v: i64 = r.try_get("version").map_err(db)?;
                policy_version(r, Some(v) == active)
            })
            .collect()
    }

    async fn user_populations(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT population FROM user_populations WHERE tenant_id = $1 AND user_id = $2 ORDER BY population")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("population").map_err(db))
            .collect()
    }

    async fn all_user_populations(&self, tenant: &TenantId) -> Result<Vec<(UserId, String)>> {
        let rows = sqlx::query("SELECT user_id, population FROM user_populations WHERE tenant_id = $1 ORDER BY user_id, population")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    UserId::from_trusted(r.try_get("user_id").map_err(db)?),
                    r.try_get("population").map_err(db)?,
                ))
            })
            .collect()
    }

    async fn policy_subjects(
        &self,
        tenant: &TenantId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<crate::PolicySubject>> {
        crate::bulk::policy_subjects(&self.pool, tenant, progress).await
    }

    async fn set_user_populations(
        &self,
        tenant: &TenantId,
        user: &UserId,
        populations: &[String],
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM user_populations WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for p in populations {
            sqlx::query("INSERT INTO user_populations (tenant_id, user_id, population) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(tenant.as_str())
                .bind(user.as_str())
                .bind(p)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn change_credential_status(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
        from: &[CredentialStatus],
        to: CredentialStatus,
        reason: &str,
        end_sessions: bool,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let allowed = one_of(from.iter().map(|s| s.as_str()));
        let r = sqlx::query(
            "UPDATE credentials SET status = $1, status_reason = $2 WHERE tenant_id = $3 AND id = $4 \
             AND (status = $5 OR status = $6 OR status = $7)",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(allowed[0])
        .bind(allowed[1])
        .bind(allowed[2])
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() == 1 && end_sessions {
            end_sessions_of_credential(&mut tx, tenant, id.as_str(), audit.at.0).await?;
        }
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn change_user_status(
        &self,
        tenant: &TenantId,
        user: &UserId,
        from: &[UserStatus],
        to: UserStatus,
        revoke_credentials: bool,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let allowed = one_of(from.iter().map(|s| s.as_str()));
        let r = sqlx::query(
            "UPDATE users SET status = $1 WHERE tenant_id = $2 AND id = $3 AND (status = $4 OR status = $5 OR status = $6)",
        )
        .bind(to.as_str())
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(allowed[0])
        .bind(allowed[1])
        .bind(allowed[2])
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() == 1 {
            if to != UserStatus::Active {
                end_sessions_of_user(&mut tx, tenant, user.as_str(), audit.at.0).await?;
            }
            if revoke_credentials {
                sqlx::query("UPDATE credentials SET status = 'revoked', status_reason = 'user_deprovisioned' WHERE tenant_id = $1 AND user_id = $2 AND status <> 'revoked'")
                    .bind(tenant.as_str())
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn set_user_role(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE users SET role = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(role)
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn set_re_enrolment(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r =
            sqlx::query("UPDATE users SET re_enrol_reason = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(reason)
                .bind(tenant.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        if r.rows_affected() == 1 && reason.is_some() {
            end_sessions_of_user(&mut tx, tenant, user.as_str(), audit.at.0).await?;
        }
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn suspend_with_alert(
        &self,
        tenant: &TenantId,
        credential: &CredentialRecordId,
        alert: &FraudAlert,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE credentials SET status = 'suspended', status_reason = $1 WHERE tenant_id = $2 AND id = $3 AND status = 'active'")
            .bind(&alert.kind)
            .bind(tenant.as_str())
            .bind(credential.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 1 {
            end_sessions_of_credential(&mut tx, tenant, credential.as_str(), audit.at.0).await?;
            let q = format!("INSERT INTO fraud_alerts ({FRAUD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
            sqlx::query(AssertSqlSafe(q))
                .bind(alert.id.as_str())
                .bind(alert.tenant_id.as_str())
                .bind(&alert.kind)
                .bind(alert.user_id.as_str())
                .bind(alert.credential_id.as_ref().map(|c| c.as_str().to_string()))
                .bind(&alert.status)
                .bind(alert.opened_at.0)
                .bind(alert.details.to_string())
                .bind(alert.resolved_by.clone())
                .bind(alert.resolved_at.map(|t| t.0))
                .bind(alert.resolution.clone())
                .bind(alert.note.clone())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn list_fraud_alerts(&self, tenant: &TenantId) -> Result<Vec<FraudAlert>> {
        let q = format!("SELECT {FRAUD_COLUMNS} FROM fraud_alerts WHERE tenant_id = $1 ORDER BY opened_at DESC, id");
        let rows = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::fraud_alert).collect()
    }

    async fn fraud_alert(
        &self,
        tenant: &TenantId,
        id: &FraudAlertId,
    ) -> Result<Option<FraudAlert>> {
        let q =
            format!("SELECT {FRAUD_COLUMNS} FROM fraud_alerts WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::fraud_alert).transpose()
    }

    async fn resolve_fraud_alert(
        &self,
        tenant: &TenantId,
        id: &FraudAlertId,
        resolution: &str,
        note: &str,
        by: &str,
        credential_to: Option<(CredentialRecordId, CredentialStatus)>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE fraud_alerts SET status = 'resolved', resolution = $1, note = $2, resolved_by = $3, resolved_at = $4 \
             WHERE tenant_id = $5 AND id = $6 AND status = 'open'",
        )
        .bind(resolution)
        .bind(note)
        .bind(by)
        .bind(audit.at.0)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() == 1 {
            if let Some((cred, status)) = credential_to {
                sqlx::query("UPDATE credentials SET status = $1, status_reason = $2 WHERE tenant_id = $3 AND id = $4 AND status <> 'revoked'")
                    .bind(status.as_str())
                    .bind(format!("fraud_alert_{resolution}"))
                    .bind(tenant.as_str())
                    .bind(cred.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn create_exception(&self, e: &PolicyException, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let (subject_type, subject) = match &e.subject {
            ExceptionSubject::User(u) => ("user", u.as_str().to_string()),
            ExceptionSubject::Population(p) => ("population", p.clone()),
        };
        let q = format!("INSERT INTO exceptions ({EXCEPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)");
        sqlx::query(AssertSqlSafe(q))
            .bind(e.id.as_str())
            .bind(e.tenant_id.as_str())
            .bind(subject_type)
            .bind(subject)
            .bind(&e.rule)
            .bind(&e.reason)
            .bind(&e.requested_by)
            .bind(&e.approved_by)
            .bind(e.approval_id.as_str())
            .bind(&e.status)
            .bind(e.created_at.0)
            .bind(e.expires_at.0)
            .bind(e.announced_at.map(|t| t.0))
            .bind(e.ended_by.clone())
            .bind(e.ended_at.map(|t| t.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        audit::append(&mut tx, &e.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn list_exceptions(&self, tenant: &TenantId) -> Result<Vec<PolicyException>> {
        let q = format!("SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE tenant_id = $1 ORDER BY created_at DESC, id");
        let rows = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::exception).collect()
    }

    async fn active_exceptions(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<Vec<PolicyException>> {
        let q = format!("SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE tenant_id = $1 AND status = 'active' AND expires_at > $2 ORDER BY created_at, id");
        let rows = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(now.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::exception).collect()
    }

    async fn end_exception(
        &self,
        tenant: &TenantId,
        id: &ExceptionId,
        to: &str,
        by: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE exceptions SET status = $1, ended_by = $2, ended_at = $3 WHERE tenant_id = $4 AND id = $5 AND status = 'active'")
            .bind(to)
            .bind(by)
            .bind(audit.at.0)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn announce_exception(
        &self,
        tenant: &TenantId,
        id: &ExceptionId,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE exceptions SET announced_at = $1 WHERE tenant_id = $2 AND id = $3 AND announced_at IS NULL AND status = 'active'")
            .bind(audit.at.0)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn create_bulk_job(&self, j: &BulkJob, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let q = format!("INSERT INTO bulk_jobs ({BULK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
        sqlx::query(AssertSqlSafe(q))
            .bind(j.id.as_str())
            .bind(j.tenant_id.as_str())
            .bind(&j.action)
            .bind(j.filter.to_string())
            .bind(&j.reason)
            .bind(j.total)
            .bind(j.done)
            .bind(j.last_credential.as_ref().map(|c| c.as_str().to_string()))
            .bind(&j.status)
            .bind(&j.created_by)
            .bind(j.created_at.0)
            .bind(j.finished_at.map(|t| t.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        audit::append(&mut tx, &j.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn bulk_job(&self, tenant: &TenantId, id: &BulkJobId) -> Result<Option<BulkJob>> {
        let q = format!("SELECT {BULK_COLUMNS} FROM bulk_jobs WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::bulk_job).transpose()
    }

    async fn list_bulk_jobs(&self, tenant: &TenantId) -> Result<Vec<BulkJob>> {
        let q = format!("SELECT {BULK_COLUMNS} FROM bulk_jobs WHERE tenant_id = $1 ORDER BY created_at DESC, id");
        let rows = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::bulk_job).collect()
    }

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
    ) -> Result<u64> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let allowed = one_of(from.iter().map(|s| s.as_str()));
        let mut recorded: Vec<NewEvent> = Vec::with_capacity(changes.len() + extra.len());
        for (i, (id, to)) in changes.iter().enumerate() {
            let r = sqlx::query(
                "UPDATE credentials SET status = $1, status_reason = $2 WHERE tenant_id = $3 AND id = $4 \
                 AND (status = $5 OR status = $6 OR status = $7)",
            )
            .bind(to.as_str())
            .bind(reason)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(allowed[0])
            .bind(allowed[1])
            .bind(allowed[2])
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if r.rows_affected() == 1 {
                if *to != CredentialStatus::Active {
                    end_sessions_of_credential(&mut tx, tenant, id.as_str(), at.0).await?;
                }
                if let Some(e) = events.get(i) {
                    recorded.push(e.clone());
                }
            }
        }
        let changed = recorded.len() as u64;
        recorded.extend(extra.iter().cloned());
        sqlx::query(
            "UPDATE bulk_jobs SET done = done + $1, last_credential = $2, status = $3, finished_at = $4 WHERE tenant_id = $5 AND id = $6",
        )
        .bind(changed as i64)
        .bind(last.as_str())
        .bind(if finished { "completed" } else { "running" })
        .bind(finished.then_some(at.0))
        .bind(tenant.as_str())
        .bind(job.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        audit::append(&mut tx, tenant, AuditBatch::new(at, &recorded)).await?;
        tx.commit().await.map_err(db)?;
        Ok(changed)
    }

    async fn mark_credential_lost(
        &self,
        tenant: &TenantId,
        id: &CredentialRecordId,
        reason: &str,
        at: Timestamp,
        decide: &(dyn Fn(u64) -> (Option<String>, Vec<NewEvent>) + Sync),
    ) -> Result<Option<u64>> {
        campaigns::mark_credential_lost(&self.writer, tenant, id, reason, at, decide).await
    }

    async fn create_campaign(&self, c: &Campaign, audit: AuditBatch<'_>) -> Result<()> {
        campaigns::create_campaign(&self.writer, c, audit).await
    }

    async fn campaign(&self, tenant: &TenantId, id: &CampaignId) -> Result<Option<Campaign>> {
        campaigns::campaign(&self.pool, tenant, id).await
    }

    async fn list_campaigns(&self, tenant: &TenantId) -> Result<Vec<Campaign>> {
        campaigns::list_campaigns(&self.pool, tenant).await
    }

    async fn campaign_mark(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        users: &[CampaignMark],
        re_enrol_reason: &str,
        revoke_reason: Option<&str>,
        extra: &[NewEvent],
        at: Timestamp,
    ) -> Result<u64> {
        campaigns::campaign_mark(
            &self.writer,
            tenant,
            campaign,
            users,
            re_enrol_reason,
            revoke_reason,
            extra,
            at,
        )
        .await
    }

    async fn close_campaign(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
        by: &str,
        note: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        campaigns::close_campaign(&self.writer, tenant, id, by, note, audit).await
    }

    async fn campaign_re_enrolled(&self, tenant: &TenantId, campaign: &Campaign) -> Result<i64> {
        campaigns::campaign_re_enrolled(&self.pool, tenant, campaign).await
    }

    async fn open_campaign_models_of_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Vec<String>> {
        campaigns::open_campaign_models_of_user(&self.pool, tenant, user).await
    }

    async fn create_approval(&self, a: &Approval, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let q = format!("INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
        sqlx::query(AssertSqlSafe(q))
            .bind(a.id.as_str())
            .bind(a.tenant_id.as_str())
            .bind(&a.action)
            .bind(a.payload.to_string())
            .bind(&a.summary)
            .bind(&a.requested_by)
            .bind(a.requested_at.0)
            .bind(a.expires_at.0)
            .bind(a.status.as_str())
            .bind(a.decided_by.clone())
            .bind(a.decided_at.map(|t| t.0))
            .bind(a.note.clone())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        audit::append(&mut tx, &a.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn approval(&self, tenant: &TenantId, id: &ApprovalId) -> Result<Option<Approval>> {
        let q =
            format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::approval).transpose()
    }

    async fn list_approvals(&self, tenant: &TenantId) -> Result<Vec<Approval>> {
        let q = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE tenant_id = $1 ORDER BY requested_at DESC, id");
        let rows = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::approval).collect()
    }

    async fn decide_approval(
        &self,
        tenant: &TenantId,
        id: &ApprovalId,
        from: ApprovalStatus,
        to: ApprovalStatus,
        decided_by: &str,
        note: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, note = $4 \
             WHERE tenant_id = $5 AND id = $6 AND status = $7",
        )
        .bind(to.as_str())
        .bind(decided_by)
        .bind(audit.at.0)
        .bind(note)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn create_client(&self, c: &MachineClient, audit: AuditBatch<'_>) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        insert_client(&mut tx, c).await?;
        audit::append(&mut tx, &c.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn create_oidc_client(
        &self,
        c: &MachineClient,
        config: &keyplane_core::oidc::OidcClientConfig,
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        insert_client(&mut tx, c).await?;
        oidc::insert_config(&mut tx, &c.tenant_id, &c.id, config).await?;
        audit::append(&mut tx, &c.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn create_webhook_client(
        &self,
        c: &MachineClient,
        endpoint: &keyplane_core::webhook::WebhookEndpoint,
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        insert_client(&mut tx, c).await?;
        webhooks::insert_endpoint(&mut tx, &c.tenant_id, &c.id, endpoint).await?;
        audit::append(&mut tx, &c.tenant_id, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn webhook_endpoint(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
    ) -> Result<Option<keyplane_core::webhook::WebhookEndpoint>> {
        webhooks::endpoint(&self.pool, tenant, id).await
    }

    async fn due_webhook_deliveries(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<keyplane_core::webhook::WebhookDelivery>> {
        webhooks::due(&self.pool, tenant, now, limit).await
    }

    async fn claim_webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        now: Timestamp,
        lease: Timestamp,
    ) -> Result<bool> {
        webhooks::claim(&self.writer, tenant, id, now, lease).await
    }

    async fn finish_webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        lease: Timestamp,
        outcome: &webhooks::DeliveryOutcome,
    ) -> Result<bool> {
        webhooks::finish(&self.writer, tenant, id, lease, outcome).await
    }

    async fn list_webhook_deliveries(
        &self,
        tenant: &TenantId,
        filter: &webhooks::DeliveryFilter,
    ) -> Result<Vec<keyplane_core::webhook::WebhookDelivery>> {
        webhooks::list(&self.pool, tenant, filter).await
    }

    async fn webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<keyplane_core::webhook::WebhookDelivery>> {
        webhooks::find(&self.pool, tenant, id).await
    }

    async fn replay_webhook_delivery(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        webhooks::replay(&self.writer, tenant, id, audit).await
    }

    async fn clients_to_announce(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        before: Timestamp,
    ) -> Result<Vec<MachineClientId>> {
        webhooks::clients_to_announce(&self.pool, tenant, now, before).await
    }

    async fn announce_client_expiry(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        webhooks::announce_expiry(&self.writer, tenant, id, audit).await
    }

    async fn oidc_client_config(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
    ) -> Result<Option<keyplane_core::oidc::OidcClientConfig>> {
        oidc::config(&self.pool, tenant, id).await
    }

    async fn add_oidc_grants(
        &self,
        tenant: &TenantId,
        grants: &[keyplane_core::oidc::OidcGrant],
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        oidc::add_grants(&self.writer, tenant, grants, audit).await
    }

    async fn oidc_grant(
        &self,
        tenant: &TenantId,
        hash: &[u8],
    ) -> Result<Option<keyplane_core::oidc::OidcGrant>> {
        oidc::find_grant(&self.pool, tenant, hash).await
    }

    async fn use_oidc_grant(
        &self,
        tenant: &TenantId,
        hash: &[u8],
        successors: &[keyplane_core::oidc::OidcGrant],
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        oidc::use_grant(&self.writer, tenant, hash, successors, audit).await
    }

    async fn revoke_oidc_family(
        &self,
        tenant: &TenantId,
        family: &str,
        audit: AuditBatch<'_>,
    ) -> Result<u64> {
        oidc::revoke_family(&self.writer, tenant, family, audit).await
    }

    async fn purge_oidc_grants(&self, before: Timestamp) -> Result<u64> {
        oidc::purge_grants(&self.writer, before).await
    }

    async fn publish_oidc_key(&self, kid: &str, public_jwk: &str, at: Timestamp) -> Result<()> {
        oidc::publish_key(&self.writer, kid, public_jwk, at).await
    }

    async fn retire_oidc_key(&self, kid: &str, at: Timestamp) -> Result<()> {
        oidc::retire_key(&self.writer, kid, at).await
    }

    async fn published_oidc_keys(&self, now: Timestamp) -> Result<Vec<String>> {
        oidc::published_keys(&self.pool, now).await
    }

    async fn client_by_id(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
    ) -> Result<Option<MachineClient>> {
        let q = format!(
            "SELECT {CLIENT_COLUMNS} FROM machine_clients WHERE tenant_id = $1 AND id = $2"
        );
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::machine_client).transpose()
    }

    async fn client_by_secret(
        &self,
        tenant: &TenantId,
        hash: &TokenHash,
    ) -> Result<Option<MachineClient>> {
        let q = format!("SELECT {CLIENT_COLUMNS} FROM machine_clients WHERE tenant_id = $1 AND (secret_hash = $2 OR previous_hash = $2)");
        let row = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .bind(hash.0.clone())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::machine_client).transpose()
    }

    async fn list_clients(&self, tenant: &TenantId) -> Result<Vec<MachineClient>> {
        let q = format!("SELECT {CLIENT_COLUMNS} FROM machine_clients WHERE tenant_id = $1 ORDER BY created_at DESC, id");
        let rows = sqlx::query(AssertSqlSafe(q))
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::machine_client).collect()
    }

    async fn rotate_client(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        secret: &TokenHash,
        previous_until: Timestamp,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        // Every right-hand side reads the row as it was: the current secret becomes the previous.
        let r = sqlx::query(
            "UPDATE machine_clients SET previous_hash = secret_hash, previous_expires_at = $1, \
             secret_hash = $2, rotated_at = $3 \
             WHERE tenant_id = $4 AND id = $5 AND status = 'active' AND expires_at > $3",
        )
        .bind(previous_until.0)
        .bind(secret.0.clone())
        .bind(audit.at.0)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn revoke_client(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        by: &str,
        reason: &str,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE machine_clients SET status = 'revoked', revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE tenant_id = $4 AND id = $5 AND status = 'active'",
        )
        .bind(audit.at.0)
        .bind(by)
        .bind(reason)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn touch_client(
        &self,
        tenant: &TenantId,
        id: &MachineClientId,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query("UPDATE machine_clients SET last_used_at = $1 WHERE tenant_id = $2 AND id = $3 AND (last_used_at IS NULL OR last_used_at < $1)")
            .bind(at.0)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn import_mds(
        &self,
        blob: &MdsBlobInfo,
        entries: &[MdsEntry],
        tenants: &[TenantId],
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO mds_blobs (number, next_update, entries, sha256, signer, imported_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(blob.number)
        .bind(&blob.next_update)
        .bind(blob.entries)
        .bind(&blob.sha256)
        .bind(&blob.signer)
        .bind(blob.imported_at.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM mds_entries")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for e in entries {
            sqlx::query(
                "INSERT INTO mds_entries (aaguid, blob_number, description, entry) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (aaguid) DO UPDATE SET blob_number = excluded.blob_number, description = excluded.description, entry = excluded.entry",
            )
            .bind(&e.aaguid)
            .bind(blob.number)
            .bind(&e.description)
            .bind(serde_json::to_string(e).map_err(|e| StoreError::Database(e.to_string()))?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for t in tenants {
            audit::append(&mut tx, t, audit).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn mds_blob(&self) -> Result<Option<MdsBlobInfo>> {
        let row = sqlx::query(
            "SELECT number, next_update, entries, sha256, signer, imported_at FROM mds_blobs ORDER BY imported_at DESC, number DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok(MdsBlobInfo {
                number: r.try_get("number").map_err(db)?,
                next_update: r.try_get("next_update").map_err(db)?,
                entries: r.try_get("entries").map_err(db)?,
                sha256: r.try_get("sha256").map_err(db)?,
                signer: r.try_get("signer").map_err(db)?,
                imported_at: Timestamp(r.try_get("imported_at").map_err(db)?),
            })
        })
        .transpose()
    }

    async fn mds_entries(&self) -> Result<Vec<MdsEntry>> {
        let rows = sqlx::query("SELECT entry FROM mds_entries ORDER BY aaguid")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("entry").map_err(db)?;
                serde_json::from_str(&text).map_err(|e| {
                    StoreError::Database(format!("a stored MDS entry does not parse: {e}"))
                })
            })
            .collect()
    }

    async fn import_authenticator_names(
        &self,
        source: &str,
        names: &[(String, String)],
        tenants: &[TenantId],
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM authenticator_names WHERE source = $1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for (aaguid, name) in names {
            sqlx::query(
                "INSERT INTO authenticator_names (aaguid, name, source, imported_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (aaguid) DO UPDATE SET name = excluded.name, source = excluded.source, imported_at = excluded.imported_at",
            )
            .bind(aaguid)
            .bind(name)
            .bind(source)
            .bind(audit.at.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for t in tenants {
            audit::append(&mut tx, t, audit).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn authenticator_names(&self) -> Result<Vec<(String, String, String)>> {
        let rows =
            sqlx::query("SELECT aaguid, name, source FROM authenticator_names ORDER BY aaguid")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("aaguid").map_err(db)?,
                    r.try_get("name").map_err(db)?,
                    r.try_get("source").map_err(db)?,
                ))
            })
            .collect()
    }

    async fn set_user_contact(
        &self,
        tenant: &TenantId,
        user: &UserId,
        contact: Option<&str>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query("UPDATE users SET contact_email = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(contact)
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn list_notifications(
        &self,
        tenant: &TenantId,
        filter: &NotificationFilter,
    ) -> Result<Vec<Notification>> {
        self.notifications_list(tenant, filter).await
    }

    async fn notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
    ) -> Result<Option<Notification>> {
        self.notification_by_id(tenant, id).await
    }

    async fn due_notifications(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        self.notifications_due(tenant, now, limit).await
    }

    async fn claim_notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        seen_next_attempt_at: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool> {
        self.notification_claim(tenant, id, seen_next_attempt_at, lease_until)
            .await
    }

    async fn finish_notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        claimed_until: Timestamp,
        outcome: &NotificationOutcome,
    ) -> Result<bool> {
        self.notification_finish(tenant, id, claimed_until, outcome)
            .await
    }

    async fn retry_notification(
        &self,
        tenant: &TenantId,
        id: &NotificationId,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL \
             WHERE tenant_id = $2 AND id = $3 AND status IN ('failed', 'skipped')",
        )
        .bind(audit.at.0)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        finish(tx, tenant, r.rows_affected() == 1, audit).await
    }

    async fn scim_user_rows(&self, tenant: &TenantId) -> Result<Vec<crate::ScimUserRow>> {
        crate::scim::user_rows(&self.pool, tenant).await
    }

    async fn scim_user_row(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<crate::ScimUserRow>> {
        crate::scim::user_row_of(&self.pool, tenant, user).await
    }

    async fn scim_create_user(
        &self,
        user: &User,
        profile: &keyplane_core::scim::ScimProfile,
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        crate::scim::create_user(&self.writer, user, profile, audit).await
    }

    async fn scim_update_user(
        &self,
        tenant: &TenantId,
        change: &crate::ScimUserChange<'_>,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        crate::scim::update_user(&self.writer, tenant, change, audit).await
    }

    async fn scim_delete_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        crate::scim::delete_user(&self.writer, tenant, user, audit).await
    }

    async fn scim_groups(&self, tenant: &TenantId) -> Result<Vec<keyplane_core::scim::ScimGroup>> {
        crate::scim::groups(&self.pool, tenant).await
    }

    async fn scim_group(
        &self,
        tenant: &TenantId,
        id: &ScimGroupId,
    ) -> Result<Option<keyplane_core::scim::ScimGroup>> {
        crate::scim::group(&self.pool, tenant, id).await
    }

    async fn scim_write_group(
        &self,
        group: &keyplane_core::scim::ScimGroup,
        previous_name: Option<&str>,
        members: &[UserId],
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        crate::scim::write_group(&self.writer, group, previous_name, members, audit).await
    }

    async fn scim_delete_group(
        &self,
        group: &keyplane_core::scim::ScimGroup,
        audit: AuditBatch<'_>,
    ) -> Result<bool> {
        crate::scim::delete_group(&self.writer, group, audit).await
    }

    async fn catalogue_stamp(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE((SELECT MAX(imported_at) FROM mds_blobs), 0) AS a, \
                    COALESCE((SELECT MAX(imported_at) FROM authenticator_names), 0) AS b",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let a: i64 = row.try_get("a").map_err(db)?;
        let b: i64 = row.try_get("b").map_err(db)?;
        Ok(a.max(b))
    }
}

/// The statuses a conditional move accepts, for `(status = $a OR status = $b OR status = $c)`:
/// every status type has at most three values; unused places hold a value no row has.
fn one_of<'a>(statuses: impl Iterator<Item = &'a str>) -> [&'a str; 3] {
    let mut out = [""; 3];
    for (i, s) in statuses.enumerate() {
        assert!(i < 3, "a conditional move names at most three statuses");
        out[i] = s;
    }
    out
}

/// Ends (revokes) every live session opened with a credential, inside the caller's transaction.
pub(crate) async fn end_sessions_of_credential(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    credential: &str,
    at: i64,
) -> Result<()> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE tenant_id = $2 AND credential_id = $3 AND revoked_at IS NULL")
        .bind(at)
        .bind(tenant.as_str())
        .bind(credential)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Ends every live session of a user, inside the caller's transaction.
pub(crate) async fn end_sessions_of_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    user: &str,
    at: i64,
) -> Result<()> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE tenant_id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(at)
        .bind(tenant.as_str())
        .bind(user)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Inserts a passkey, inside the caller's transaction.
async fn insert_credential(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    c: &Credential,
) -> Result<()> {
    let q = format!("INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)");
    sqlx::query(AssertSqlSafe(q))
        .bind(c.id.as_str())
        .bind(c.tenant_id.as_str())
        .bind(c.user_id.as_str())
        .bind(c.credential_id.clone())
        .bind(c.public_key.clone())
        .bind(i64::from(c.sign_count))
        .bind(&c.aaguid)
        .bind(json(&c.transports))
        .bind(b(c.backup_eligible))
        .bind(b(c.backup_state))
        .bind(&c.attestation_format)
        .bind(&c.attestation_type)
        .bind(b(c.user_verified))
        .bind(&c.nickname)
        .bind(c.created_at.0)
        .bind(c.last_used_at.map(|t| t.0))
        .bind(c.status.as_str())
        .bind(c.status_reason.clone())
        .bind(&c.library_state)
        .bind(b(c.attestation_trusted))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

fn case_json(c: &RecoveryCase) -> Result<String> {
    serde_json::to_string(c).map_err(|e| StoreError::Database(format!("recovery case: {e}")))
}

/// Writes a recovery case over its previous version, inside the caller's transaction: false
/// when another change came first.
async fn write_case(tx: &mut sqlx::Transaction<'_, sqlx::Any>, c: &RecoveryCase) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE recovery_cases SET state = $1, link_hash = $2, version = $3, body = $4 \
         WHERE tenant_id = $5 AND id = $6 AND version = $7",
    )
    .bind(c.state.as_str())
    .bind(c.link_hash.clone())
    .bind(c.version)
    .bind(case_json(c)?)
    .bind(c.tenant_id.as_str())
    .bind(c.id.as_str())
    .bind(c.version - 1)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(r.rows_affected() == 1)
}

/// Commits the change with its events if it applied, or rolls it back (writing no event).
async fn insert_session(tx: &mut sqlx::Transaction<'_, sqlx::Any>, s: &Session) -> Result<()> {
    let amr: Vec<String> = s.amr.iter().map(|a| a.as_str().to_string()).collect();
    let q = format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)");
    sqlx::query(AssertSqlSafe(q))
        .bind(s.id.as_str())
        .bind(s.tenant_id.as_str())
        .bind(s.user_id.as_str())
        .bind(s.token_hash.0.clone())
        .bind(s.aal.as_str())
        .bind(json(&amr))
        .bind(s.auth_time.0)
        .bind(s.credential_id.as_ref().map(|c| c.as_str().to_string()))
        .bind(s.created_at.0)
        .bind(s.expires_at.0)
        .bind(s.restricted.clone())
        .bind(s.idle_secs)
        .bind(s.last_seen_at.0)
        .bind(s.recovery.clone())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn finish(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    applied: bool,
    audit: AuditBatch<'_>,
) -> Result<bool> {
    if !applied {
        tx.rollback().await.map_err(db)?;
        return Ok(false);
    }
    audit::append(&mut tx, tenant, audit).await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

fn policy_version(r: &AnyRow, active: bool) -> Result<PolicyVersion> {
    Ok(PolicyVersion {
        version: r.try_get("version").map_err(db)?,
        document: r.try_get("document").map_err(db)?,
        created_at: Timestamp(r.try_get("created_at").map_err(db)?),
        created_by: r.try_get("created_by").map_err(db)?,
        active,
    })
}
