//! Pages of a tenant's audit log as verification reads them: every event's text in one buffer
//! and its hashes in another, lent out as [`AuditEventRef`] views. Reading a page costs a
//! handful of allocations rather than some fifty per event (a `String` per field, a `Vec` per
//! hash, the reasons list), which is most of what a long log's verification used to spend.

use crate::store::{Result, StoreError};
use keyplane_core::audit::{AuditEventRef, Reasons};
use keyplane_core::TenantId;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use std::ops::Range;

/// Text bytes reserved per expected event (a sign-in's event is about 600).
const TEXT_PER_EVENT: usize = 640;

/// Consecutive events of one tenant's log, in `seq` order, as stored. A page given back to
/// [`Store::audit_page`](crate::Store::audit_page) is refilled in its buffers, so that a long
/// read does not ask the allocator (and the kernel) for fresh memory for every page.
#[derive(Debug)]
pub struct AuditPage {
    tenant_id: TenantId,
    text: String,
    bytes: Vec<u8>,
    rows: Vec<PageRow>,
    /// A reader's own buffer (PostgreSQL's `COPY` output), kept for the next fill.
    pub(crate) scratch: Vec<u8>,
}

impl Default for AuditPage {
    fn default() -> Self {
        AuditPage {
            // Lent out with events only, and set with the first.
            tenant_id: TenantId::from_trusted(String::new()),
            text: String::new(),
            bytes: Vec::new(),
            rows: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

/// Where one event's fields are in the page's buffers.
#[derive(Debug)]
struct PageRow {
    seq: i64,
    time: i64,
    id: Range<usize>,
    actor_type: Range<usize>,
    actor_id: Range<usize>,
    action: Range<usize>,
    target_type: Range<usize>,
    target_id: Range<usize>,
    outcome: Range<usize>,
    /// The reasons joined by `,`, as the canonical encoding writes them.
    reasons: Range<usize>,
    request_id: Option<Range<usize>>,
    client_ip: Option<Range<usize>>,
    user_agent: Option<Range<usize>>,
    details: Range<usize>,
    prev_hash: Range<usize>,
    hash: Range<usize>,
}

/// One row of `audit_events` as a backend reads it, borrowed from the driver's buffers. The
/// tenant id is not among the columns: every query selects by it, so each row's is the page's.
pub(crate) struct StoredRow<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub time: i64,
    pub actor_type: &'a str,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub outcome: &'a str,
    /// As stored: a JSON array of strings.
    pub reasons: &'a str,
    pub request_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub details: &'a str,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

impl AuditPage {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the page for events of `tenant`, with room for about `expected` of them.
    pub(crate) fn reset(&mut self, tenant: &TenantId, expected: usize) {
        self.tenant_id.clone_from(tenant);
        self.text.clear();
        self.bytes.clear();
        self.rows.clear();
        self.text.reserve(expected.saturating_mul(TEXT_PER_EVENT));
        self.bytes.reserve(expected.saturating_mul(64));
        self.rows.reserve(expected);
    }

    /// Appends a row read from the database. Fails, as reading an [`AuditEvent`] would, when the
    /// stored reasons are not a JSON array of strings.
    ///
    /// [`AuditEvent`]: keyplane_core::audit::AuditEvent
    pub(crate) fn push(&mut self, r: StoredRow<'_>) -> Result<()> {
        let reasons_at = self.text.len();
        if push_joined_reasons(r.reasons, &mut self.text).is_err() {
            self.text.truncate(reasons_at);
            return Err(StoreError::Database("stored reasons does not parse".into()));
        }
        let reasons = reasons_at..self.text.len();
        let row = PageRow {
            seq: r.seq,
            time: r.time,
            id: self.put(r.id),
            actor_type: self.put(r.actor_type),
            actor_id: self.put(r.actor_id),
            action: self.put(r.action),
            target_type: self.put(r.target_type),
            target_id: self.put(r.target_id),
            outcome: self.put(r.outcome),
            reasons,
            request_id: r.request_id.map(|s| self.put(s)),
            client_ip: r.client_ip.map(|s| self.put(s)),
            user_agent: r.user_agent.map(|s| self.put(s)),
            details: self.put(r.details),
            prev_hash: self.put_bytes(r.prev_hash),
            hash: self.put_bytes(r.hash),
        };
        self.rows.push(row);
        Ok(())
    }

    fn put(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    fn put_bytes(&mut self, b: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        start..self.bytes.len()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The `seq` of the last event, if any.
    pub fn last_seq(&self) -> Option<i64> {
        self.rows.last().map(|r| r.seq)
    }

    /// The `i`th event (`i < len()`).
    pub fn event(&self, i: usize) -> AuditEventRef<'_> {
        // The ranges were taken around whole `&str`s appended to `text`, so they lie on
        // character boundaries and within the buffers.
        let r = &self.rows[i];
        let text = |range: &Range<usize>| &self.text[range.clone()];
        AuditEventRef {
            tenant_id: self.tenant_id.as_str(),
            seq: r.seq,
            id: text(&r.id),
            time: r.time,
            actor_type: text(&r.actor_type),
            actor_id: text(&r.actor_id),
            action: text(&r.action),
            target_type: text(&r.target_type),
            target_id: text(&r.target_id),
            outcome: text(&r.outcome),
            reasons: Reasons::Joined(text(&r.reasons)),
            request_id: r.request_id.as_ref().map(text),
            client_ip: r.client_ip.as_ref().map(text),
            user_agent: r.user_agent.as_ref().map(text),
            details: text(&r.details),
            prev_hash: &self.bytes[r.prev_hash.clone()],
            hash: &self.bytes[r.hash.clone()],
        }
    }

    /// Every event, in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = AuditEventRef<'_>> + '_ {
        (0..self.rows.len()).map(|i| self.event(i))
    }
}

/// Decodes a stored reasons list (a JSON array of strings) and appends its strings to `out`
/// joined by `,`, without a `String` per reason. Accepts and refuses exactly what
/// `serde_json::from_str::<Vec<String>>` does (the test below holds it to that).
fn push_joined_reasons(json: &str, out: &mut String) -> serde_json::Result<()> {
    struct List<'o>(&'o mut String);
    struct Item<'o> {
        out: &'o mut String,
        first: bool,
    }

    impl<'de> Visitor<'de> for List<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of reason codes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            let mut first = true;
            while seq
                .next_element_seed(Item {
                    out: &mut *self.0,
                    first,
                })?
                .is_some()
            {
                first = false;
            }
            Ok(())
        }
    }

    impl<'de> DeserializeSeed<'de> for Item<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            d.deserialize_string(self)
        }
    }

    impl<'de> Visitor<'de> for Item<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a reason code")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<(), E> {
            if !self.first {
                self.out.push(',');
            }
            self.out.push_str(s);
            Ok(())
        }
    }

    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_seq(List(out))?;
    de.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_core::audit::{Actor, AuditEvent, NewEvent, GENESIS};
    use keyplane_core::Timestamp;
    use proptest::prelude::*;

    fn joined(json: &str) -> Option<String> {
        let mut out = "kept".to_string();
        push_joined_reasons(json, &mut out).ok()?;
        Some(out.strip_prefix("kept")?.to_string())
    }

    #[test]
    fn reasons_are_joined_as_the_encoding_writes_them() {
        assert_eq!(joined("[]").as_deref(), Some(""));
        assert_eq!(joined(r#"["a"]"#).as_deref(), Some("a"));
        assert_eq!(
            joined(r#" ["a", "", "c\n\u00e9"] "#).as_deref(),
            Some("a,,c\né")
        );
        assert_eq!(joined(r#"[""]"#).as_deref(), Some(""));
        for bad in [
            "",
            "null",
            "{}",
            r#"["a", 1]"#,
            r#"["a"] x"#,
            r#"["a""#,
            "[null]",
        ] {
            assert_eq!(joined(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn reasons_decode_like_a_list_of_strings(list in proptest::collection::vec(".*", 0..4)) {
            let json = serde_json::to_string(&list).unwrap();
            prop_assert_eq!(joined(&json), Some(list.join(",")));
        }

        #[test]
        fn reasons_accept_exactly_what_serde_accepts(json in r#"[\[\]", a-z0-9\\{}:nul]{0,12}"#) {
            let serde: Option<Vec<String>> = serde_json::from_str(&json).ok();
            prop_assert_eq!(joined(&json), serde.map(|l| l.join(",")));
        }
    }

    #[test]
    fn a_page_lends_back_what_was_pushed_and_hashes_like_the_event() {
        let t = TenantId::generate();
        let new = NewEvent::new(Actor::system("test"), "test.event", "tenant", t.as_str())
            .outcome(keyplane_core::audit::Outcome::Failure, "why");
        let mut e = AuditEvent::seal(&t, 1, "id-1".into(), Timestamp(7), &new, &GENESIS);
        e.reasons.push("and,why".into());
        e.client_ip = Some(String::new());
        e.hash = e.computed_hash().to_vec();
        let reasons = serde_json::to_string(&e.reasons).unwrap();
        let mut page = AuditPage::new();
        page.reset(&t, 0);
        for _ in 0..2 {
            page.push(stored(&e, &reasons)).unwrap();
        }
        assert_eq!((page.len(), page.last_seq()), (2, Some(1)));
        for v in page.events() {
            assert_eq!(v.reasons, Reasons::Joined("why,and,why"));
            assert_eq!((v.request_id, v.client_ip), (None, Some("")));
            assert_eq!(v.hash_with(&mut Vec::new()).as_slice(), e.hash.as_slice());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            v.write_canonical(&mut a);
            e.write_canonical(&mut b);
            assert_eq!(a, b);
        }
        assert!(page.push(stored(&e, "[1]")).is_err());
        assert_eq!(page.len(), 2);
    }

    fn stored<'a>(e: &'a AuditEvent, reasons: &'a str) -> StoredRow<'a> {
        StoredRow {
            seq: e.seq,
            id: &e.id,
            time: e.time.0,
            actor_type: &e.actor_type,
            actor_id: &e.actor_id,
            action: &e.action,
            target_type: &e.target_type,
            target_id: &e.target_id,
            outcome: &e.outcome,
            reasons,
            request_id: e.request_id.as_deref(),
            client_ip: e.client_ip.as_deref(),
            user_agent: e.user_agent.as_deref(),
            details: &e.details,
            prev_hash: &e.prev_hash,
            hash: &e.hash,
        }
    }
}
