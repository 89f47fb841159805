//! Moving a deployment from SQLite to PostgreSQL: every table, in the order the migrations
//! created them (so every foreign key finds its row), row by row as stored — the audit chain's
//! hashes included, so it verifies unchanged on the target. Resumable: a row whose primary key
//! the target has already is skipped, so a copy that stopped can simply be run again. Any other
//! conflict (a tenant name taken by different data) stops the copy with an error.

use crate::sql::{db, Backend, SqlStore};
use crate::store::{Result, StoreError};
use rusqlite::types::ValueRef;
use sqlx::{AssertSqlSafe, Row};
use std::path::Path;

/// Rows read and written per transaction.
const BATCH: usize = 500;

/// What one table's copy did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableCopy {
    pub table: String,
    pub rows: u64,
    /// Rows the target had already (a resumed copy).
    pub skipped: u64,
}

fn sqlite(e: rusqlite::Error) -> StoreError {
    StoreError::Database(format!("reading the SQLite database: {e}"))
}

/// A source value, converted to what the target column holds.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
}

fn convert(v: ValueRef<'_>, target_type: &str, table: &str, column: &str) -> Result<Value> {
    let bad = || {
        StoreError::Database(format!(
            "{table}.{column}: a stored value does not fit the PostgreSQL column ({target_type})"
        ))
    };
    Ok(match target_type {
        "bigint" | "integer" | "smallint" => Value::Int(match v {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i),
            ValueRef::Text(t) => Some(
                std::str::from_utf8(t)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        }),
        "boolean" => Value::Bool(match v {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i != 0),
            _ => return Err(bad()),
        }),
        "bytea" => Value::Bytes(match v {
            ValueRef::Null => None,
            ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
            _ => return Err(bad()),
        }),
        _ => Value::Text(match v {
            ValueRef::Null => None,
            ValueRef::Text(t) => Some(String::from_utf8(t.to_vec()).map_err(|_| bad())?),
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Real(r) => Some(r.to_string()),
            ValueRef::Blob(_) => return Err(bad()),
        }),
    })
}

/// A table to copy: its name, columns, and primary key columns.
struct Table {
    name: String,
    columns: Vec<String>,
    pk: Vec<String>,
}

/// The tables to copy, in creation order.
fn tables(conn: &rusqlite::Connection) -> Result<Vec<Table>> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> '_sqlx_migrations' ORDER BY rowid",
        )
        .map_err(sqlite)?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(sqlite)?
        .collect::<std::result::Result<_, _>>()
        .map_err(sqlite)?;
    let mut out = vec![];
    for name in names {
        let mut info = conn
            .prepare(&format!("PRAGMA table_info(\"{name}\")"))
            .map_err(sqlite)?;
        let cols: Vec<(String, i64)> = info
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))
            .map_err(sqlite)?
            .collect::<std::result::Result<_, _>>()
            .map_err(sqlite)?;
        let mut pk: Vec<(i64, String)> = cols
            .iter()
            .filter(|(_, k)| *k > 0)
            .map(|(c, k)| (*k, c.clone()))
            .collect();
        pk.sort();
        out.push(Table {
            name,
            columns: cols.into_iter().map(|(c, _)| c).collect(),
            pk: pk.into_iter().map(|(_, c)| c).collect(),
        });
    }
    Ok(out)
}

/// Copies the SQLite database at `source` into `target` (PostgreSQL, migrated to the same
/// schema). `progress(table, done, total)` is called as rows go.
pub async fn copy_sqlite_to_postgres(
    source: &Path,
    target: &SqlStore,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<Vec<TableCopy>> {
    if target.backend_kind() != Backend::Postgres {
        return Err(StoreError::Database(
            "the target of a migration is a PostgreSQL database".into(),
        ));
    }
    let conn = rusqlite::Connection::open_with_flags(
        source,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    let source_level: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite)?;
    if source_level != target.known_migration_level() {
        return Err(StoreError::Database(format!(
            "the SQLite database is at migration {source_level}, this build at {}: open it once with this version first (any keyplane command does)",
            target.known_migration_level()
        )));
    }
    let mut report = vec![];
    for Table {
        name: table,
        columns,
        pk,
    } in tables(&conn)?
    {
        let types: std::collections::HashMap<String, String> = sqlx::query(
            "SELECT CAST(column_name AS TEXT) AS column_name, CAST(data_type AS TEXT) AS data_type FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(&table)
        .fetch_all(target.pool())
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("column_name").map_err(db)?,
                r.try_get("data_type").map_err(db)?,
            ))
        })
        .collect::<Result<_>>()?;
        if let Some(c) = columns.iter().find(|c| !types.contains_key(c.as_str())) {
            return Err(StoreError::Database(format!(
                "{table}.{c} has no column in the PostgreSQL schema"
            )));
        }
        let total: u64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sqlite)?
            .try_into()
            .unwrap_or(0);
        let list = columns.join(", ");
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let conflict = if pk.is_empty() {
            String::new()
        } else {
            format!(" ON CONFLICT ({}) DO NOTHING", pk.join(", "))
        };
        let insert = format!(
            "INSERT INTO {table} ({list}) VALUES ({}){conflict}",
            placeholders.join(", ")
        );
        let select = format!(
            "SELECT rowid, {list} FROM \"{table}\" WHERE rowid > ?1 ORDER BY rowid LIMIT {BATCH}"
        );
        let (mut done, mut skipped, mut last_rowid) = (0u64, 0u64, i64::MIN);
        progress(&table, 0, total);
        loop {
            // Read one batch; the statement is gone before the first await.
            let batch: Vec<Vec<Value>> = {
                let mut stmt = conn.prepare(&select).map_err(sqlite)?;
                let mut rows = stmt.query([last_rowid]).map_err(sqlite)?;
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(row) = rows.next().map_err(sqlite)? {
                    last_rowid = row.get(0).map_err(sqlite)?;
                    let mut values = Vec::with_capacity(columns.len());
                    for (i, c) in columns.iter().enumerate() {
                        let v = row.get_ref(i + 1).map_err(sqlite)?;
                        values.push(convert(v, &types[c.as_str()], &table, c)?);
                    }
                    batch.push(values);
                }
                batch
            };
            if batch.is_empty() {
                break;
            }
            let mut tx = target.pool().begin().await.map_err(db)?;
            for values in &batch {
                let mut q = sqlx::query(AssertSqlSafe(insert.clone()));
                for v in values {
                    q = match v {
                        Value::Int(i) => q.bind(*i),
                        Value::Text(t) => q.bind(t.clone()),
                        Value::Bytes(b) => q.bind(b.clone()),
                        Value::Bool(b) => q.bind(*b),
                    };
                }
                let r = q
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::Database(format!("writing {table}: {e}")))?;
                if r.rows_affected() == 0 {
                    skipped += 1;
                }
            }
            tx.commit().await.map_err(db)?;
            done += batch.len() as u64;
            progress(&table, done, total);
        }
        report.push(TableCopy {
            table,
            rows: done,
            skipped,
        });
    }
    Ok(report)
}
