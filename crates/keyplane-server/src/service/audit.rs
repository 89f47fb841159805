//! Audit services: recording failed attempts (rate-limited per client address), housekeeping
//! with its events, signing checkpoints, and verifying a tenant's chain end to end.

use super::audit_pages::PageStream;
use super::App;
use ed25519_dalek::VerifyingKey;
use keyplane_core::audit::{key_id, Actor, ChainVerifier, Checkpoint, NewEvent};
use keyplane_core::{Error, Tenant};
use keyplane_store::{AuditBatch, AuditFilter};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many failure events each (tenant, client address) may write per minute.
pub(crate) struct FailureLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<(String, String), Window>>,
}

struct Window {
    started: Instant,
    recorded: u32,
    suppressed: u64,
}

/// Bound on the limiter's memory: beyond this many addresses, finished windows are dropped.
const MAX_TRACKED: usize = 10_000;

impl FailureLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        FailureLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)`: record the event, and report `n` suppressed since the last recorded one.
    /// `None`: suppress it.
    fn admit(&self, tenant: &str, address: &str) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| now.duration_since(w.started) < Duration::from_secs(60));
        }
        let w = windows
            .entry((tenant.to_string(), address.to_string()))
            .or_insert(Window {
                started: now,
                recorded: 0,
                suppressed: 0,
            });
        if now.duration_since(w.started) >= Duration::from_secs(60) {
            w.started = now;
            w.recorded = 0;
        }
        if w.recorded >= self.per_minute {
            w.suppressed += 1;
            return None;
        }
        w.recorded += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// What is wrong with a chain, at which event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditProblem {
    /// `chain_broken`, `checkpoint_forged`, `checkpoint_mismatch`, `truncated`, `head_mismatch`.
    pub kind: &'static str,
    pub seq: Option<i64>,
    pub event_id: Option<String>,
    pub message: String,
}

/// The result of verifying one tenant's log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditReport {
    pub tenant: String,
    /// The sequence number verification started after (0 = genesis).
    pub started_after: i64,
    pub events_checked: u64,
    pub last_seq: i64,
    pub checkpoints_valid: usize,
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Events are read in pages of this many during verification and export.
pub const AUDIT_PAGE: i64 = 10_000;

impl App {
    /// Records a failed or denied attempt that changed nothing else. At most
    /// `audit.failure_events_per_minute` per client address and tenant are written; the rest are
    /// counted, and the count is carried by the next event written for that address.
    pub async fn record_failure(&self, tenant: &Tenant, mut event: NewEvent) {
        let address = event
            .context
            .client_ip
            .clone()
            .unwrap_or_else(|| "-".into());
        let Some(suppressed) = self.failure_limiter.admit(tenant.id.as_str(), &address) else {
            metrics::counter!("keyplane_audit_failures_suppressed_total").increment(1);
            return;
        };
        if suppressed > 0 {
            if let Some(d) = event.details.as_object_mut() {
                d.insert("suppressed_before".into(), json!(suppressed));
            }
        }
        let at = self.clock.now();
        if let Err(e) = self
            .store
            .append_events(&tenant.id, AuditBatch::new(at, &[event]))
            .await
        {
            tracing::error!(error = %e, tenant = %tenant.name, "could not record a failed attempt in the audit log");
        }
    }

    /// Deletes expired ceremonies (transient protocol state) and, per tenant, expired or revoked
    /// sessions and expired invitations, recording `maintenance.purged` with the counts.
    pub async fn purge_expired(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        let mut total = self.store.purge_expired_ceremonies(now).await?;
        // OIDC grants a day past their expiry: until then a replayed code or refresh token is
        // still recognised as a replay (and revokes its family).
        total += self.store.purge_oidc_grants(now.plus_secs(-86_400)).await?;
        for tenant in self.store.list_tenants().await? {
            let event = |sessions: u64, invitations: u64| {
                NewEvent::new(
                    Actor::system("janitor"),
                    "maintenance.purged",
                    "tenant",
                    tenant.id.as_str(),
                )
                .details(json!({ "sessions": sessions, "invitations": invitations }))
            };
            total += self
                .store
                .purge_expired_sessions_and_enrolments(&tenant.id, now, &event)
                .await?;
        }
        Ok(total)
    }

    /// Signs the tenant's chain head with the active key, unless the log is empty or that head
    /// is already signed by it. Returns the new checkpoint.
    pub async fn checkpoint(&self, tenant: &Tenant) -> Result<Option<Checkpoint>, Error> {
        let (seq, hash) = self.store.audit_head(&tenant.id).await?;
        if seq == 0 {
            return Ok(None);
        }
        let active_id = self
            .keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .active()
            .key_id
            .clone();
        let existing = self.store.list_checkpoints(&tenant.id).await?;
        if existing
            .iter()
            .any(|c| c.seq == seq && c.key_id == active_id)
        {
            return Ok(None);
        }
        let checkpoint = {
            let ring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
            ring.active().sign(&tenant.id, seq, &hash, self.clock.now())
        };
        self.store.insert_checkpoint(&checkpoint).await?;
        Ok(Some(checkpoint))
    }

    /// Signs every tenant's head (see [`App::checkpoint`]).
    pub async fn checkpoint_all(&self) -> Result<Vec<Checkpoint>, Error> {
        let mut out = Vec::new();
        for tenant in self.store.list_tenants().await? {
            if let Some(cp) = self.checkpoint(&tenant).await? {
                out.push(cp);
            }
        }
        Ok(out)
    }

    /// Whether the chain head (read before the events were) agrees with the verified log:
    /// it names an event the log has, with that event's hash, and the log has no event past it
    /// that did not come through Keyplane (one appended since is past the head as it is now).
    async fn head_problem(
        &self,
        tenant: &Tenant,
        (head_seq, head_hash): (i64, &[u8]),
        at_head: Option<&[u8]>,
        last_seq: i64,
    ) -> Result<Option<AuditProblem>, Error> {
        let problem = |seq: i64, message: String| AuditProblem {
            kind: "head_mismatch",
            seq: Some(seq),
            event_id: None,
            message,
        };
        if head_seq > last_seq {
            return Ok(Some(problem(
                last_seq + 1,
                format!("the chain head records {head_seq} events but the log has {last_seq}: events are missing at the end"),
            )));
        }
        match at_head {
            Some(h) if h == head_hash => {}
            Some(_) => {
                return Ok(Some(problem(
                    head_seq,
                    format!("event {head_seq} is not the one the chain head records: the log was rewritten"),
                )))
            }
            // The head is before the checkpoint verification started from.
            None => {
                return Ok(Some(problem(
                    head_seq + 1,
                    format!("the chain head records {head_seq} events, fewer than a signed checkpoint attests"),
                )))
            }
        }
        if last_seq > head_seq {
            let (now, _) = self.store.audit_head(&tenant.id).await?;
            if now < last_seq {
                return Ok(Some(problem(
                    now + 1,
                    format!("the log has {last_seq} events but the chain head records {now}: events were added outside Keyplane"),
                )));
            }
        }
        Ok(None)
    }

    /// Verifies a tenant's log: every checkpoint's signature against `trusted` keys, the hash
    /// chain event by event (from genesis, or after the latest valid checkpoint), every valid
    /// checkpoint against the event it names, and that nothing a checkpoint attests is missing.
    /// Reports the first break in the chain; `progress` is told how many events were checked.
    pub async fn verify_audit(
        &self,
        tenant: &Tenant,
        trusted: &[VerifyingKey],
        from_checkpoint: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<AuditReport, Error> {
        let keys: HashMap<String, &VerifyingKey> = trusted.iter().map(|k| (key_id(k), k)).collect();
        let mut problems = Vec::new();
        let mut valid: Vec<Checkpoint> = Vec::new();
        for cp in self.store.list_checkpoints(&tenant.id).await? {
            match keys.get(&cp.key_id) {
                Some(k) if cp.verify_with(k) => valid.push(cp),
                Some(_) => problems.push(AuditProblem {
                    kind: "checkpoint_forged",
                    seq: Some(cp.seq),
                    event_id: None,
                    message: format!(
                        "checkpoint at {} signed as key {} does not verify",
                        cp.seq, cp.key_id
                    ),
                }),
                None => problems.push(AuditProblem {
                    kind: "checkpoint_forged",
                    seq: Some(cp.seq),
                    event_id: None,
                    message: format!(
                        "checkpoint at {} is signed by key {}, which is not trusted",
                        cp.seq, cp.key_id
                    ),
                }),
            }
        }
        let start = if from_checkpoint {
            valid.iter().max_by_key(|c| c.seq)
        } else {
            None
        };
        // The head is read before the events: an event appended while this runs (a live server)
        // comes after it, and is neither missed nor mistaken for tampering.
        let (head_seq, head_hash) = self.store.audit_head(&tenant.id).await?;
        let mut verifier = match start {
            Some(cp) => ChainVerifier::from_point(cp.seq, &cp.hash),
            None => ChainVerifier::from_genesis(),
        };
        let started_after = verifier.head().0;
        let mut by_seq: HashMap<i64, Vec<&Checkpoint>> = HashMap::new();
        for c in &valid {
            by_seq.entry(c.seq).or_default().push(c);
        }
        // The hash of the event at the head's seq, once seen (the starting point counts).
        let mut at_head: Option<Vec<u8>> =
            (started_after == head_seq).then(|| verifier.head().1.to_vec());
        let mut broken = false;
        if let Some(cp) = start {
            // Starting from a checkpoint takes its hash as given; the event it signed must still
            // be there and be the one it signed, or the log was cut or rewritten at that point.
            let anchor = self
                .store
                .list_audit_events(
                    &tenant.id,
                    &AuditFilter {
                        after_seq: cp.seq - 1,
                        limit: 1,
                        ..AuditFilter::default()
                    },
                )
                .await?;
            match anchor.first() {
                Some(e) if e.seq == cp.seq && e.hash == cp.hash => {}
                Some(e) if e.seq == cp.seq => {
                    problems.push(AuditProblem {
                        kind: "checkpoint_mismatch",
                        seq: Some(e.seq),
                        event_id: Some(e.id.clone()),
                        message: format!(
                            "event {} is not the one checkpoint {} signed: the log was rewritten",
                            e.seq, cp.key_id
                        ),
                    });
                    broken = true;
                }
                _ => {
                    problems.push(AuditProblem {
                        kind: "truncated",
                        seq: Some(cp.seq),
                        event_id: None,
                        message: format!(
                            "event {} is missing, but a signed checkpoint attests it",
                            cp.seq
                        ),
                    });
                    broken = true;
                }
            }
        }
        let mut pages = PageStream::new(
            Arc::clone(&self.store),
            tenant.id.clone(),
            started_after,
            AUDIT_PAGE,
        );
        'pages: while !broken {
            let Some(page) = pages.next().await? else {
                break;
            };
            for (e, computed) in page.events() {
                if let Err(b) = verifier.check_hashed(&e, computed) {
                    problems.push(AuditProblem {
                        kind: "chain_broken",
                        seq: Some(e.seq),
                        event_id: Some(e.id.to_string()),
                        message: b.to_string(),
                    });
                    broken = true;
                    break 'pages;
                }
                if e.seq == head_seq {
                    at_head = Some(e.hash.to_vec());
                }
                for cp in by_seq.get(&e.seq).into_iter().flatten() {
                    if cp.hash != e.hash {
                        problems.push(AuditProblem {
                            kind: "checkpoint_mismatch",
                            seq: Some(e.seq),
                            event_id: Some(e.id.to_string()),
                            message: format!("event {} is not the one checkpoint {} signed: the log was rewritten", e.seq, cp.key_id),
                        });
                        broken = true;
                        break 'pages;
                    }
                }
            }
            progress(verifier.checked());
            pages.recycle(page);
        }
        let (last_seq, _) = verifier.head();
        if !broken {
            if let Some(cp) = valid
                .iter()
                .filter(|c| c.seq > last_seq)
                .max_by_key(|c| c.seq)
            {
                problems.push(AuditProblem {
                    kind: "truncated",
                    seq: Some(last_seq + 1),
                    event_id: None,
                    message: format!("the log ends at event {last_seq}, but a signed checkpoint attests {} events", cp.seq),
                });
            }
            if let Some(p) = self
                .head_problem(tenant, (head_seq, &head_hash), at_head.as_deref(), last_seq)
                .await?
            {
                problems.push(p);
            }
        }
        Ok(AuditReport {
            tenant: tenant.name.clone(),
            started_after,
            events_checked: verifier.checked(),
            last_seq,
            checkpoints_valid: valid.len(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_admits_a_share_and_reports_what_it_suppressed() {
        let l = FailureLimiter::new(2);
        assert_eq!(l.admit("t", "1.2.3.4"), Some(0));
        assert_eq!(l.admit("t", "1.2.3.4"), Some(0));
        assert_eq!(l.admit("t", "1.2.3.4"), None);
        assert_eq!(l.admit("t", "1.2.3.4"), None);
        assert_eq!(l.admit("t", "5.6.7.8"), Some(0), "per address");
        assert_eq!(l.admit("u", "1.2.3.4"), Some(0), "per tenant");
        // A new window reports the two it swallowed.
        l.windows
            .lock()
            .unwrap()
            .get_mut(&("t".into(), "1.2.3.4".into()))
            .unwrap()
            .started -= Duration::from_secs(61);
        assert_eq!(l.admit("t", "1.2.3.4"), Some(2));
    }
}
