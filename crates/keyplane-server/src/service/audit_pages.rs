//! Reading a tenant's audit log for verification: pages of [`AUDIT_PAGE`](super::AUDIT_PAGE)
//! sequence numbers are read and hashed a few ahead, on other tasks and threads, while the verifier links the
//! current one. Hashing an event needs only that event (it carries its own `prev_hash`), so it
//! can be done anywhere and in any order; linking (`seq`, `prev_hash`) is done in order by
//! [`ChainVerifier::check_hashed`](keyplane_core::audit::ChainVerifier::check_hashed).
//!
//! Pages are ranges of sequence numbers, `(after, after + page size]`, so that several can be
//! asked for at once. Together they return every event after the starting point, in order,
//! exactly as reading on from the last event seen would:
//! - a range holds at most page-size events while `(tenant_id, seq)` is unique; each page
//!   asks for one more, so that if the key were dropped and a sequence number repeated, the
//!   repeat is among the events read and breaks the chain;
//! - a range that is not full means the log ends in it or skips some of it (events deleted):
//!   the ranges read ahead are dropped and reading goes on after the last event seen, so that
//!   events a running server appends meanwhile are read in order, never past a hole that is
//!   only a moment's difference between two reads;
//! - an empty range means the log ends there or skips ahead: the next event after it, if any,
//!   is looked up, and reading goes on from it.

use keyplane_core::audit::AuditEventRef;
use keyplane_core::{Error, TenantId};
use keyplane_store::{AuditPage, Store};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Pages in flight: enough to keep both cores (and PostgreSQL's own processes) busy while the
/// verifier links the page before them.
const PAGES_AHEAD: usize = 3;

/// A page and the hash computed from each of its events' content.
#[derive(Default)]
pub(crate) struct HashedPage {
    pub page: AuditPage,
    /// `hashes[i]` is `page.event(i).hash_with(..)`.
    pub hashes: Vec<[u8; 32]>,
}

impl HashedPage {
    pub fn events(&self) -> impl Iterator<Item = (AuditEventRef<'_>, &[u8; 32])> {
        self.page.events().zip(&self.hashes)
    }
}

/// A tenant's events after a starting point, page by page, in order.
pub(crate) struct PageStream {
    store: Arc<dyn Store>,
    tenant: TenantId,
    /// Sequence numbers per range ([`AUDIT_PAGE`](super::AUDIT_PAGE) when verifying).
    page_size: i64,
    /// The start of the next range to ask for.
    next_after: i64,
    /// Ranges asked for, in order.
    ahead: VecDeque<Ahead>,
    /// Pages linked and given back, to be filled again.
    spare: Vec<HashedPage>,
}

/// A range `(after, through]` being read and hashed.
struct Ahead {
    after: i64,
    through: i64,
    task: JoinHandle<Result<HashedPage, Error>>,
}

impl PageStream {
    /// Events with `seq > after`, in ranges of `page_size` (at least 1) sequence numbers.
    pub fn new(store: Arc<dyn Store>, tenant: TenantId, after: i64, page_size: i64) -> Self {
        PageStream {
            store,
            tenant,
            page_size: page_size.max(1),
            next_after: after,
            ahead: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// The next non-empty page, or `None` at the end of the log.
    pub async fn next(&mut self) -> Result<Option<HashedPage>, Error> {
        loop {
            self.fill();
            let Some(Ahead {
                after,
                through,
                task,
            }) = self.ahead.pop_front()
            else {
                return Ok(None);
            };
            let page = task
                .await
                .map_err(|e| Error::internal(format!("audit page reader failed: {e}")))??;
            match page.page.last_seq() {
                Some(last) => {
                    if last != through {
                        // The range is not full: the log ends in it (or skips some of it).
                        // The ranges after it may have been read at another moment than this
                        // one, with a running server appending in between, so they are read
                        // again from the last event seen, as reading on from it would.
                        self.abort_ahead();
                        self.next_after = last;
                    }
                    return Ok(Some(page));
                }
                None => {
                    // Nothing in this range: find the next event after it, if any.
                    self.abort_ahead();
                    let next = self
                        .store
                        .audit_page(&self.tenant, after, i64::MAX, 1, AuditPage::new())
                        .await?;
                    match next.last_seq() {
                        None => return Ok(None),
                        Some(seq) => self.next_after = seq.saturating_sub(1),
                    }
                }
            }
        }
    }

    fn fill(&mut self) {
        while self.ahead.len() < PAGES_AHEAD {
            let after = self.next_after;
            let through = after.saturating_add(self.page_size);
            // One more than the range can hold: see the module's comment.
            let limit = usize::try_from(self.page_size.saturating_add(1)).unwrap_or(usize::MAX);
            let store = Arc::clone(&self.store);
            let tenant = self.tenant.clone();
            let HashedPage { page, hashes } = self.spare.pop().unwrap_or_default();
            let task = tokio::spawn(async move {
                let page = store
                    .audit_page(&tenant, after, through, limit, page)
                    .await?;
                tokio::task::spawn_blocking(move || hash(page, hashes))
                    .await
                    .map_err(|e| Error::internal(format!("audit page hashing failed: {e}")))
            });
            self.ahead.push_back(Ahead {
                after,
                through,
                task,
            });
            if through == after {
                // The end of the sequence numbers: nothing can follow.
                break;
            }
            self.next_after = through;
        }
    }

    /// Gives a page back once its events are linked: its buffers are reused.
    pub fn recycle(&mut self, page: HashedPage) {
        if self.spare.len() < PAGES_AHEAD {
            self.spare.push(page);
        }
    }

    fn abort_ahead(&mut self) {
        for ahead in self.ahead.drain(..) {
            ahead.task.abort();
        }
    }
}

impl Drop for PageStream {
    fn drop(&mut self) {
        self.abort_ahead();
    }
}

fn hash(page: AuditPage, mut hashes: Vec<[u8; 32]>) -> HashedPage {
    let mut buf = Vec::with_capacity(1024);
    hashes.clear();
    hashes.extend(page.events().map(|e| e.hash_with(&mut buf)));
    HashedPage { page, hashes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_core::audit::{Actor, NewEvent};
    use keyplane_core::{Tenant, Timestamp};
    use keyplane_store::{AuditBatch, SqlStore};

    struct Log {
        store: SqlStore,
        tenant: TenantId,
        _dir: tempfile::TempDir,
    }

    /// A SQLite store whose tenant has events 1..=n.
    async fn log_of(n: u32) -> Log {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("k.db").display());
        let store = SqlStore::connect(&url, 2).await.unwrap();
        let tenant = Tenant {
            id: TenantId::generate(),
            name: "t".into(),
            rp_id: "t.test".into(),
            rp_name: "t".into(),
            origins: vec![],
            hostnames: vec![],
            created_at: Timestamp(0),
        };
        let events: Vec<NewEvent> = (0..n).map(|_| event()).collect();
        store
            .create_tenant(&tenant, AuditBatch::new(Timestamp(1), &events))
            .await
            .unwrap();
        Log {
            store,
            tenant: tenant.id,
            _dir: dir,
        }
    }

    fn event() -> NewEvent {
        NewEvent::new(Actor::system("test"), "test.event", "tenant", "t")
    }

    impl Log {
        fn stream(&self, after: i64, page_size: i64) -> PageStream {
            PageStream::new(
                Arc::new(self.store.clone()),
                self.tenant.clone(),
                after,
                page_size,
            )
        }

        async fn delete(&self, seqs: &[i64]) {
            for seq in seqs {
                sqlx::query("DELETE FROM audit_events WHERE tenant_id = $1 AND seq = $2")
                    .bind(self.tenant.as_str())
                    .bind(seq)
                    .execute(self.store.pool())
                    .await
                    .unwrap();
            }
        }

        async fn append(&self, n: u32) {
            let events: Vec<NewEvent> = (0..n).map(|_| event()).collect();
            self.store
                .append_events(&self.tenant, AuditBatch::new(Timestamp(2), &events))
                .await
                .unwrap();
        }
    }

    /// Every page's sequence numbers, checking that each hash is its event's.
    async fn read(mut pages: PageStream) -> Vec<Vec<i64>> {
        let mut out = vec![];
        while let Some(p) = pages.next().await.unwrap() {
            for (e, h) in p.events() {
                assert_eq!(h, &e.hash_with(&mut Vec::new()));
            }
            out.push(p.page.events().map(|e| e.seq).collect());
            pages.recycle(p);
        }
        out
    }

    #[tokio::test]
    async fn pages_cover_the_log_in_order() {
        let log = log_of(10).await;
        assert_eq!(
            read(log.stream(0, 3)).await,
            [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
        );
        assert_eq!(
            read(log.stream(4, 5)).await,
            [vec![5, 6, 7, 8, 9], vec![10]]
        );
        assert_eq!(
            read(log.stream(0, 100)).await,
            [(1..=10).collect::<Vec<_>>()]
        );
        assert!(read(log.stream(10, 3)).await.is_empty());
    }

    #[tokio::test]
    async fn pages_go_on_past_deleted_events_as_reading_one_by_one_would() {
        let log = log_of(14).await;
        // A whole range (4..=6), the end of a range (9) and the start of one (10).
        log.delete(&[4, 5, 6, 9, 10]).await;
        let seqs: Vec<i64> = read(log.stream(0, 3)).await.concat();
        assert_eq!(seqs, [1, 2, 3, 7, 8, 11, 12, 13, 14]);
        // Only far-away events after a long gap.
        let far = log_of(3).await;
        far.append(20).await;
        far.delete(&(2..=20).collect::<Vec<_>>()).await;
        assert_eq!(read(far.stream(0, 3)).await.concat(), [1, 21, 22, 23]);
    }

    #[tokio::test]
    async fn events_appended_while_reading_are_read_in_order() {
        let log = log_of(4).await;
        let mut pages = log.stream(0, 3);
        let first = pages.next().await.unwrap().unwrap();
        assert_eq!(
            first.page.events().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        // The ranges after it were being read while these are appended.
        log.append(8).await;
        let mut seqs = vec![];
        while let Some(p) = pages.next().await.unwrap() {
            seqs.extend(p.page.events().map(|e| e.seq));
        }
        // A prefix of 4..=12 without a hole: whatever was appended in time is read in order.
        assert!(!seqs.is_empty() && seqs[0] == 4, "{seqs:?}");
        assert_eq!(seqs, (4..4 + seqs.len() as i64).collect::<Vec<_>>());
    }
}
