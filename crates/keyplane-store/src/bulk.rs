//! Bulk writes of whole populations.
//!
//! Import: many users with their populations and credentials written in one transaction with
//! multi-row `INSERT`s, and the events that record them appended to the tenant's chain in the
//! same transaction. The rows are exactly those `create_user`, `set_user_populations` and
//! `register_credential` write one at a time; only the number of round trips differs. Used by
//! `keyplane-loadgen policy-fill` to build a large tenant quickly.

use crate::audit::{self, AuditBatch};
use crate::sql::{b, db, json, SqlStore, CREDENTIAL_COLUMNS, USER_COLUMNS};
use crate::store::{Result, StoreError};
use keyplane_core::*;
use sqlx::AssertSqlSafe;

/// A user to import, with the populations they belong to and their credentials.
#[derive(Clone, Debug)]
pub struct ImportedUser {
    pub user: User,
    pub populations: Vec<String>,
    pub credentials: Vec<Credential>,
}

/// Rows per multi-row `INSERT`: at most 19 × 100 bound parameters, well under both backends'
/// limits (32,766 for SQLite, 65,535 for PostgreSQL).
const ROWS_PER_INSERT: usize = 100;

/// `INSERT INTO table (columns) VALUES ($1, …, $n), (…), …` for `rows` rows of `columns` values.
fn insert_sql(table: &str, column_list: &str, columns: usize, rows: usize) -> String {
    let mut q = format!("INSERT INTO {table} ({column_list}) VALUES ");
    for r in 0..rows {
        q.push_str(if r == 0 { "(" } else { ", (" });
        for c in 1..=columns {
            if c > 1 {
                q.push_str(", ");
            }
            q.push('$');
            q.push_str(&(r * columns + c).to_string());
        }
        q.push(')');
    }
    q
}

impl SqlStore {
    /// Inserts `users`, their populations and credentials, and `audit`'s events, atomically.
    /// Every user and credential must belong to `tenant` (else nothing is written); a username,
    /// user handle or credential id already taken fails the whole import with `Conflict`.
    pub async fn import_users(
        &self,
        tenant: &TenantId,
        users: &[ImportedUser],
        audit: AuditBatch<'_>,
    ) -> Result<()> {
        if let Some(stray) = users.iter().find(|u| {
            u.user.tenant_id != *tenant || u.credentials.iter().any(|c| c.tenant_id != *tenant)
        }) {
            return Err(StoreError::Database(format!(
                "import into tenant {tenant}: user {} or one of its credentials belongs to another tenant",
                stray.user.id
            )));
        }
        let mut tx = self.writer.begin().await.map_err(db)?;
        for chunk in users.chunks(ROWS_PER_INSERT) {
            let q = insert_sql("users", USER_COLUMNS, 8, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(q));
            for u in chunk.iter().map(|i| &i.user) {
                query = query
                    .bind(u.id.as_str())
                    .bind(u.tenant_id.as_str())
                    .bind(&u.username)
                    .bind(&u.display_name)
                    .bind(&u.user_handle)
                    .bind(u.status.as_str())
                    .bind(u.role.clone())
                    .bind(u.created_at.0);
            }
            query.execute(&mut *tx).await.map_err(db)?;
        }
        let memberships: Vec<(&UserId, &String)> = users
            .iter()
            .flat_map(|u| u.populations.iter().map(move |p| (&u.user.id, p)))
            .collect();
        for chunk in memberships.chunks(ROWS_PER_INSERT) {
            let q = insert_sql(
                "user_populations",
                "tenant_id, user_id, population",
                3,
                chunk.len(),
            );
            let mut query = sqlx::query(AssertSqlSafe(q));
            for (user, population) in chunk {
                query = query
                    .bind(tenant.as_str())
                    .bind(user.as_str())
                    .bind(population.as_str());
            }
            query.execute(&mut *tx).await.map_err(db)?;
        }
        let credentials: Vec<&Credential> =
            users.iter().flat_map(|u| u.credentials.iter()).collect();
        for chunk in credentials.chunks(ROWS_PER_INSERT) {
            let q = insert_sql("credentials", CREDENTIAL_COLUMNS, 19, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(q));
            for c in chunk {
                query = query
                    .bind(c.id.as_str())
                    .bind(c.tenant_id.as_str())
                    .bind(c.user_id.as_str())
                    .bind(&c.credential_id)
                    .bind(&c.public_key)
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
                    .bind(&c.library_state);
            }
            query.execute(&mut *tx).await.map_err(db)?;
        }
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::insert_sql;

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(
            insert_sql("t", "a, b", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
    }
}
