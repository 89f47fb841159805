//! Bulk writes and reads of whole populations.
//!
//! Import: many users with their populations and credentials written in one transaction with
//! multi-row `INSERT`s, and the events that record them appended to the tenant's chain in the
//! same transaction. The rows are exactly those `create_user`, `set_user_populations` and
//! `register_credential` write one at a time; only the number of round trips differs. Used by
//! `keyplane-loadgen policy-fill` to build a large tenant quickly.
//!
//! Read: [`Store::policy_subjects`](crate::Store::policy_subjects), every active user with
//! their populations and active credentials' policy facts, for `keyplane policy simulate`. Only
//! the columns policy evaluation reads are selected (not the keys and library state), and rows
//! are decoded as they arrive rather than collected first: on 100,000 users and 200,000
//! credentials, loading whole records took seconds and most of a gigabyte.

use crate::audit::{self, AuditBatch};
use crate::sql::{b, bind_user, db, json, SqlStore, CREDENTIAL_COLUMNS, USER_COLUMNS};
use crate::store::{CredentialFacts, PolicySubject, Result, StoreError};
use futures::TryStreamExt;
use keyplane_core::*;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::collections::HashMap;

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
            let q = insert_sql("users", USER_COLUMNS, 10, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(q));
            for u in chunk.iter().map(|i| &i.user) {
                query = bind_user(query, u);
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
            let q = insert_sql("credentials", CREDENTIAL_COLUMNS, 20, chunk.len());
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
                    .bind(&c.library_state)
                    .bind(b(c.attestation_trusted));
            }
            query.execute(&mut *tx).await.map_err(db)?;
        }
        audit::append(&mut tx, tenant, audit).await?;
        tx.commit().await.map_err(db)
    }
}

/// Rows between two calls of a read's `progress`.
const PROGRESS_EVERY: u64 = 10_000;

pub(crate) async fn policy_subjects(
    pool: &AnyPool,
    tenant: &TenantId,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<PolicySubject>> {
    let mut read = 0u64;
    let mut tick = || {
        read += 1;
        if read.is_multiple_of(PROGRESS_EVERY) {
            progress(read);
        }
    };
    let mut subjects: Vec<PolicySubject> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // `CAST(tenant_id AS TEXT)` keeps SQLite, which has no table statistics, from walking the
    // `(tenant_id, …)` index and fetching every row by its rowid: reading a whole tenant that
    // way took about twice as long as scanning the table. PostgreSQL removes a cast of a column
    // to its own type and plans with its statistics as usual.
    let mut rows = sqlx::query(
        "SELECT id, username FROM users WHERE CAST(tenant_id AS TEXT) = $1 AND status = 'active'",
    )
    .bind(tenant.as_str())
    .fetch(pool);
    while let Some(row) = rows.try_next().await.map_err(db)? {
        let id: String = row.try_get(0).map_err(db)?;
        index.insert(id.clone(), subjects.len());
        subjects.push(PolicySubject {
            user_id: UserId::from_trusted(id),
            username: row.try_get(1).map_err(db)?,
            populations: Vec::new(),
            credentials: Vec::new(),
        });
        tick();
    }
    drop(rows);
    // Population order matters (a user counts in their first population the candidate lists),
    // so it is the order `user_populations` gives.
    let mut rows = sqlx::query(
        "SELECT user_id, population FROM user_populations WHERE tenant_id = $1 ORDER BY population",
    )
    .bind(tenant.as_str())
    .fetch(pool);
    while let Some(row) = rows.try_next().await.map_err(db)? {
        let user: &str = row.try_get(0).map_err(db)?;
        if let Some(&i) = index.get(user) {
            subjects[i].populations.push(row.try_get(1).map_err(db)?);
        }
        tick();
    }
    drop(rows);
    let mut rows = sqlx::query(
        "SELECT user_id, aaguid, attestation_format, attestation_type, backup_eligible, user_verified, attestation_trusted, id \
         FROM credentials WHERE CAST(tenant_id AS TEXT) = $1 AND status = 'active'",
    )
    .bind(tenant.as_str())
    .fetch(pool);
    while let Some(row) = rows.try_next().await.map_err(db)? {
        let user: &str = row.try_get(0).map_err(db)?;
        // Credentials of users who are not active are not evaluated.
        if let Some(&i) = index.get(user) {
            subjects[i].credentials.push(CredentialFacts {
                id: CredentialRecordId::from_trusted(row.try_get(7).map_err(db)?),
                aaguid: row.try_get(1).map_err(db)?,
                attestation_format: row.try_get(2).map_err(db)?,
                attestation_type: row.try_get(3).map_err(db)?,
                backup_eligible: row.try_get::<i64, _>(4).map_err(db)? != 0,
                user_verified: row.try_get::<i64, _>(5).map_err(db)? != 0,
                attestation_trusted: row.try_get::<i64, _>(6).map_err(db)? != 0,
            });
        }
        tick();
    }
    drop(rows);
    progress(read);
    Ok(subjects)
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
