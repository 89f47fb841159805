//! Reading the audit log in pages for verification, through each backend's own driver rather
//! than sqlx's `Any`: the one read path where per-row cost decides the speed of a command
//! (`keyplane audit verify` over millions of events), not the round trips.
//!
//! - PostgreSQL: sqlx's native `PgPool`, with the page's query run as a binary `COPY` and its
//!   output read in place (`pg_copy.rs`): no `PgRow`, no `AnyRow` and no `String` per field.
//! - SQLite: `rusqlite` on a blocking thread, reading columns in place from SQLite's own
//!   buffers. sqlx's SQLite driver copies every value (`sqlite3_value_dup`) and hands each row
//!   from its worker thread to the async runtime over a channel, which cost more than the rest
//!   of verification together.
//!
//! Both run the same query and fill the same [`AuditPage`].

use crate::audit_page::{AuditPage, StoredRow};
use crate::pg_copy::CopyRows;
use crate::sql::db;
use crate::store::{Result, StoreError};
use futures::TryStreamExt;
use keyplane_core::TenantId;
use rusqlite::types::ValueRef;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Events with `$2 < seq <= $3`, in order, at most `$4`. The tenant id is not selected: the
/// `WHERE` clause fixes it (text equality is bytewise on both backends). `$n` placeholders are
/// numbered in order of appearance, which SQLite reads as positions 1–4.
const PAGE_QUERY: &str = "SELECT seq, id, time, actor_type, actor_id, action, target_type, \
     target_id, outcome, reasons, request_id, client_ip, user_agent, details, prev_hash, hash \
     FROM audit_events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4";

/// The selected columns, by position, for error messages.
const COLUMNS: [&str; 16] = [
    "seq",
    "id",
    "time",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "reasons",
    "request_id",
    "client_ip",
    "user_agent",
    "details",
    "prev_hash",
    "hash",
];

/// At most this many connections read pages at once (verification keeps a few pages in
/// flight; more would only compete for the same cores).
const READERS: usize = 4;

fn column_error(i: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("column {}: {e}", COLUMNS[i]))
}

/// How a store reads audit pages.
pub(crate) enum PageReader {
    Postgres(PgPool),
    Sqlite(Arc<SqliteReaders>),
}

impl PageReader {
    /// A PostgreSQL reader connects on first use, so a store that never verifies opens no
    /// extra connection.
    pub(crate) fn postgres(url: &str, acquire_timeout: Duration) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(READERS as u32)
            .acquire_timeout(acquire_timeout)
            .connect_lazy(url)
            .map_err(db)?;
        Ok(PageReader::Postgres(pool))
    }

    /// A SQLite reader opens the database file again, read-only, on first use.
    pub(crate) fn sqlite(url: &str) -> Result<Self> {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().map_err(db)?;
        Ok(PageReader::Sqlite(Arc::new(SqliteReaders {
            path: options.get_filename().to_path_buf(),
            idle: Mutex::new(Vec::new()),
        })))
    }

    /// The tenant's events with `after < seq <= through`, in order, at most `limit`.
    pub(crate) async fn page(
        &self,
        tenant: &TenantId,
        after: i64,
        through: i64,
        limit: usize,
        mut page: AuditPage,
    ) -> Result<AuditPage> {
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        page.reset(tenant, limit.min(PAGE_RESERVE));
        match self {
            PageReader::Postgres(pool) => {
                let statement = copy_statement(tenant, after, through, sql_limit);
                let mut copy = CopyConnection {
                    conn: pool.acquire().await.map_err(db)?,
                    finished: false,
                };
                let mut chunks = copy.conn.copy_out_raw(&statement).await.map_err(db)?;
                let mut data = std::mem::take(&mut page.scratch);
                data.clear();
                data.reserve(limit.min(PAGE_RESERVE) * TEXT_PER_ROW);
                while let Some(chunk) = chunks.try_next().await.map_err(db)? {
                    data.extend_from_slice(&chunk);
                }
                drop(chunks);
                copy.finished = true;
                let mut rows = CopyRows::new(&data)?;
                let mut fields = [None; COLUMNS.len()];
                while rows.next_row(&mut fields)? {
                    page.push(copy_row(&fields)?)?;
                }
                page.scratch = data;
                Ok(page)
            }
            PageReader::Sqlite(readers) => {
                let readers = Arc::clone(readers);
                let tenant = tenant.clone();
                tokio::task::spawn_blocking(move || {
                    readers.page(&tenant, after, through, sql_limit, page)
                })
                .await
                .map_err(|e| StoreError::Database(format!("audit reader failed: {e}")))?
            }
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            PageReader::Postgres(pool) => pool.close().await,
            PageReader::Sqlite(readers) => {
                readers
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
        }
    }
}

/// A connection running a `COPY`. One whose `COPY` did not finish (an error, or a read given
/// up: verification stops reading ahead when it finds the end of the log) is closed rather
/// than returned to the pool, where the rest of the `COPY`'s output would await its next user.
struct CopyConnection {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    finished: bool,
}

impl Drop for CopyConnection {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// [`PAGE_QUERY`] as a `COPY … TO STDOUT (FORMAT binary)` statement. `COPY` takes no bound
/// parameters, so the values are written in: integers, and the tenant id as an escaped string
/// constant (`E'…'`, which means the same whatever `standard_conforming_strings` says).
fn copy_statement(tenant: &TenantId, after: i64, through: i64, limit: i64) -> String {
    let tenant = tenant.as_str().replace('\\', "\\\\").replace('\'', "''");
    // The tenant id last, so that nothing in it is taken for a placeholder.
    let query = PAGE_QUERY
        .replace("$2", &after.to_string())
        .replace("$3", &through.to_string())
        .replace("$4", &limit.to_string())
        .replace("$1", &format!("E'{tenant}'"));
    format!("COPY ({query}) TO STDOUT (FORMAT binary)")
}

/// A [`StoredRow`] from one row of binary `COPY` data: `bigint` as 8 bytes big-endian, `text`
/// as its UTF-8 bytes, `bytea` as its bytes.
fn copy_row<'a>(fields: &[Option<&'a [u8]>; COLUMNS.len()]) -> Result<StoredRow<'a>> {
    let value = |i: usize| fields[i].ok_or_else(|| column_error(i, "unexpected NULL"));
    stored_row(
        |i| {
            let b: [u8; 8] = value(i)?
                .try_into()
                .map_err(|_| column_error(i, "not a bigint"))?;
            Ok(i64::from_be_bytes(b))
        },
        |i| std::str::from_utf8(value(i)?).map_err(|e| column_error(i, e)),
        |i| {
            fields[i]
                .map(|b| std::str::from_utf8(b).map_err(|e| column_error(i, e)))
                .transpose()
        },
        value,
    )
}

/// A [`StoredRow`] from column getters by position: integer, text, optional text, bytes.
fn stored_row<'r>(
    int: impl Fn(usize) -> Result<i64>,
    text: impl Fn(usize) -> Result<&'r str>,
    opt: impl Fn(usize) -> Result<Option<&'r str>>,
    bytes: impl Fn(usize) -> Result<&'r [u8]>,
) -> Result<StoredRow<'r>> {
    Ok(StoredRow {
        seq: int(0)?,
        id: text(1)?,
        time: int(2)?,
        actor_type: text(3)?,
        actor_id: text(4)?,
        action: text(5)?,
        target_type: text(6)?,
        target_id: text(7)?,
        outcome: text(8)?,
        reasons: text(9)?,
        request_id: opt(10)?,
        client_ip: opt(11)?,
        user_agent: opt(12)?,
        details: text(13)?,
        prev_hash: bytes(14)?,
        hash: bytes(15)?,
    })
}

/// Read-only `rusqlite` connections to the store's SQLite file, kept for the next page.
pub(crate) struct SqliteReaders {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

fn sqlite(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteReaders {
    fn open(&self) -> Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        // As the store's own connections: wait for another process's write to finish.
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        Ok(conn)
    }

    /// Runs on a blocking thread.
    fn page(
        &self,
        tenant: &TenantId,
        after: i64,
        through: i64,
        sql_limit: i64,
        page: AuditPage,
    ) -> Result<AuditPage> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let page = read_sqlite(&conn, tenant, after, through, sql_limit, page)?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READERS {
            idle.push(conn);
        }
        Ok(page)
    }
}

fn read_sqlite(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    after: i64,
    through: i64,
    sql_limit: i64,
    mut page: AuditPage,
) -> Result<AuditPage> {
    let mut stmt = conn.prepare_cached(PAGE_QUERY).map_err(sqlite)?;
    let mut rows = stmt
        .query(rusqlite::params![
            tenant.as_str(),
            after,
            through,
            sql_limit
        ])
        .map_err(sqlite)?;
    // Exactly the storage class the schema gives each column; SQLite would otherwise convert
    // (an integer column read as text, a real read as an integer), and what is hashed must be
    // what is stored.
    while let Some(row) = rows.next().map_err(sqlite)? {
        let value = |i: usize| row.get_ref(i).map_err(sqlite);
        page.push(stored_row(
            |i| value(i)?.as_i64().map_err(|e| column_error(i, e)),
            |i| value(i)?.as_str().map_err(|e| column_error(i, e)),
            |i| match value(i)? {
                ValueRef::Null => Ok(None),
                v => v.as_str().map(Some).map_err(|e| column_error(i, e)),
            },
            |i| value(i)?.as_blob().map_err(|e| column_error(i, e)),
        )?)?;
    }
    Ok(page)
}

/// Rows reserved ahead in a page.
const PAGE_RESERVE: usize = 10_000;

/// Bytes of `COPY` data reserved per row (a sign-in's event is about 650).
const TEXT_PER_ROW: usize = 700;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg_copy::tests::encode;

    #[test]
    fn the_copy_statement_quotes_the_tenant_id_and_nothing_else() {
        let t = TenantId::from_trusted("6f9619ff-8b86-d011-b42d-00c04fc964ff".into());
        assert_eq!(
            copy_statement(&t, 10, 20, 11),
            format!(
                "COPY ({}) TO STDOUT (FORMAT binary)",
                PAGE_QUERY
                    .replace("$1", "E'6f9619ff-8b86-d011-b42d-00c04fc964ff'")
                    .replace("$2", "10")
                    .replace("$3", "20")
                    .replace("$4", "11")
            )
        );
        let odd = TenantId::from_trusted(r"a'b\c$2".into());
        let sql = copy_statement(&odd, -1, i64::MAX, 1);
        assert!(
            sql.contains(r"tenant_id = E'a''b\\c$2' AND seq > -1 AND seq <= 9223372036854775807"),
            "{sql}"
        );
    }

    #[test]
    fn copy_rows_decode_by_column_type() {
        let seq = 7i64.to_be_bytes();
        let time = (-5i64).to_be_bytes();
        let mut row: Vec<Option<&[u8]>> = vec![
            Some(&seq),
            Some(b"id"),
            Some(&time),
            Some(b"user"),
            Some(b"u1"),
            Some(b"a.b"),
            Some(b"user"),
            Some(b"u1"),
            Some(b"success"),
            Some(b"[]"),
            None,
            Some(b"127.0.0.1"),
            None,
            Some(b"{}"),
            Some(&[0; 32]),
            Some(&[1; 32]),
        ];
        let read = |row: &[Option<&[u8]>]| -> Result<(i64, i64, Option<String>, Option<String>)> {
            let data = encode(&[row.to_vec()]);
            let mut rows = CopyRows::new(&data)?;
            let mut fields = [None; COLUMNS.len()];
            assert!(rows.next_row(&mut fields)?);
            let r = copy_row(&fields)?;
            Ok((
                r.seq,
                r.time,
                r.request_id.map(str::to_string),
                r.client_ip.map(str::to_string),
            ))
        };
        assert_eq!(
            read(&row).unwrap(),
            (7, -5, None, Some("127.0.0.1".to_string()))
        );
        row[1] = None;
        assert!(read(&row).unwrap_err().to_string().contains("column id"));
        row[1] = Some(br"\xff");
        assert!(read(&row).is_ok());
        row[1] = Some(&[0xff]);
        assert!(read(&row).unwrap_err().to_string().contains("column id"));
        row[1] = Some(b"id");
        row[2] = Some(&[0; 4]);
        assert!(read(&row).unwrap_err().to_string().contains("column time"));
    }
}
