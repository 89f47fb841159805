//! Bulk actions over credentials chosen by a filter: always previewable (count and a sample),
//! executed as a job that records its place (credentials are visited in id order), so an
//! interrupted job resumes where it stopped; every credential changed gets its own event.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::policy::{self, model_matches};
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Which credentials a bulk action (or a listing) covers. Every given field must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialFilter {
    /// AAGUIDs (lowercase, hyphenated).
    pub aaguids: Vec<String>,
    /// Authenticator model names (MDS description or imported name): exact or `prefix*`.
    pub models: Vec<String>,
    /// `trusted`, `verified` (a verified statement, trusted or not) or `none` (no verified
    /// attestation).
    pub attestation: Option<String>,
    /// `true`: synced (backup-eligible); `false`: device-bound.
    pub synced: Option<bool>,
    /// RFC 3339: registered before this instant.
    pub created_before: Option<String>,
    /// RFC 3339: last used before this instant (never used counts).
    pub last_used_before: Option<String>,
    /// Users in this population.
    pub population: Option<String>,
    /// `active`, `suspended` or `revoked`.
    pub status: Option<String>,
    /// Only credentials the active policy no longer accepts (drift).
    pub non_compliant: Option<bool>,
    /// One user, by username.
    pub username: Option<String>,
}

fn rfc3339(name: &str, raw: &Option<String>) -> Result<Option<Timestamp>, Error> {
    let Some(raw) = raw else { return Ok(None) };
    let t = ::time::OffsetDateTime::parse(raw, &::time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            Error::invalid(
                "invalid_filter",
                format!("{name} must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z"),
            )
        })?;
    Ok(Some(Timestamp(
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    )))
}

/// A filter checked once and ready to match.
struct Matcher {
    f: CredentialFilter,
    created_before: Option<Timestamp>,
    last_used_before: Option<Timestamp>,
    status: Option<CredentialStatus>,
    user: Option<UserId>,
}

impl Matcher {
    fn matches(
        &self,
        c: &Credential,
        name: Option<&str>,
        populations: &[String],
        non_compliant: impl FnOnce() -> bool,
    ) -> bool {
        let f = &self.f;
        (f.aaguids.is_empty() || f.aaguids.contains(&c.aaguid))
            && (f.models.is_empty()
                || name.is_some_and(|n| f.models.iter().any(|p| model_matches(p, n))))
            && match f.attestation.as_deref() {
                Some("trusted") => c.attestation_trusted,
                Some("verified") => !matches!(
                    c.attestation_type.as_str(),
                    "none" | "unverifiable" | "uncertain"
                ),
                Some(_) => matches!(
                    c.attestation_type.as_str(),
                    "none" | "unverifiable" | "uncertain"
                ),
                None => true,
            }
            && f.synced.is_none_or(|s| s == c.backup_eligible)
            && self.created_before.is_none_or(|t| c.created_at < t)
            && self
                .last_used_before
                .is_none_or(|t| c.last_used_at.is_none_or(|u| u < t))
            && f.population
                .as_ref()
                .is_none_or(|p| populations.contains(p))
            && self.status.is_none_or(|s| s == c.status)
            && self.user.as_ref().is_none_or(|u| *u == c.user_id)
            && (f.non_compliant != Some(true) || non_compliant())
    }
}

/// What a bulk action would do.
#[derive(Clone, Debug, Serialize)]
pub struct BulkPreview {
    pub action: String,
    pub count: usize,
    /// Up to ten of the credentials, as the admin API shows them.
    pub sample: Vec<Value>,
}

/// A started bulk action, or (bulk revoke under dual control) the request for approval.
#[derive(Clone, Debug)]
pub enum BulkStart {
    Job(Box<BulkJob>),
    AwaitingApproval(Box<Approval>),
}

/// The statuses an action moves credentials from, and to.
fn transition(
    action: &str,
) -> Result<(&'static [CredentialStatus], CredentialStatus, &'static str), Error> {
    use CredentialStatus::*;
    match action {
        "suspend" => Ok((&[Active], Suspended, "credential.suspended")),
        "revoke" => Ok((&[Active, Suspended], Revoked, "credential.revoked")),
        "reactivate" => Ok((&[Suspended], Active, "credential.reactivated")),
        _ => Err(Error::invalid(
            "invalid_action",
            "action is suspend, revoke or reactivate",
        )),
    }
}

impl App {
    async fn matcher(&self, tenant: &Tenant, f: &CredentialFilter) -> Result<Matcher, Error> {
        for a in &f.aaguids {
            if uuid::Uuid::parse_str(a).map(|u| u.to_string()).as_deref() != Ok(a.as_str()) {
                return Err(Error::invalid(
                    "invalid_filter",
                    format!("{a:?} is not a lowercase hyphenated AAGUID"),
                ));
            }
        }
        if let Some(a) = &f.attestation {
            if !["trusted", "verified", "none"].contains(&a.as_str()) {
                return Err(Error::invalid(
                    "invalid_filter",
                    "attestation is trusted, verified or none",
                ));
            }
        }
        let status = match &f.status {
            Some(s) => Some(CredentialStatus::parse(s).ok_or_else(|| {
                Error::invalid("invalid_filter", "status is active, suspended or revoked")
            })?),
            None => None,
        };
        let user = match &f.username {
            Some(name) => Some(
                self.store
                    .user_by_username(&tenant.id, &name.to_lowercase())
                    .await?
                    .ok_or_else(|| {
                        Error::invalid("invalid_filter", format!("no user named {name:?}"))
                    })?
                    .id,
            ),
            None => None,
        };
        Ok(Matcher {
            created_before: rfc3339("created_before", &f.created_before)?,
            last_used_before: rfc3339("last_used_before", &f.last_used_before)?,
            status,
            user,
            f: f.clone(),
        })
    }

    /// The tenant's credentials matching `filter`, in id order (the order jobs visit them).
    pub async fn filter_credentials(
        &self,
        tenant: &Tenant,
        filter: &CredentialFilter,
    ) -> Result<Vec<Credential>, Error> {
        let m = self.matcher(tenant, filter).await?;
        let catalogue = self.catalogue().await?;
        let active = self.active_policy(tenant).await?;
        let mut populations: HashMap<UserId, Vec<String>> = HashMap::new();
        for (u, p) in self.store.all_user_populations(&tenant.id).await? {
            populations.entry(u).or_default().push(p);
        }
        let none = Vec::new();
        let mut out: Vec<Credential> = self
            .store
            .list_credentials(&tenant.id, None)
            .await?
            .into_iter()
            .filter(|c| {
                let pops = populations.get(&c.user_id).unwrap_or(&none);
                let name = catalogue.name(&c.aaguid).map(|n| n.name);
                m.matches(c, name.as_deref(), pops, || {
                    !policy::authenticator_violations(
                        &active.policy,
                        &policy::Subject {
                            populations: pops.clone(),
                        },
                        &catalogue.facts(c, c.user_verified),
                    )
                    .is_empty()
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok(out)
    }

    /// The credentials an action would move, after `after` in id order. Reactivation leaves out
    /// credentials with an open fraud alert: those are resolved one by one.
    async fn pending(
        &self,
        tenant: &Tenant,
        action: &str,
        filter: &CredentialFilter,
        after: Option<&CredentialRecordId>,
    ) -> Result<Vec<Credential>, Error> {
        let (from, to, _) = transition(action)?;
        let held: Vec<CredentialRecordId> = if to == CredentialStatus::Active {
            self.store
                .list_fraud_alerts(&tenant.id)
                .await?
                .into_iter()
                .filter(|a| a.status == "open")
                .filter_map(|a| a.credential_id)
                .collect()
        } else {
            vec![]
        };
        Ok(self
            .filter_credentials(tenant, filter)
            .await?
            .into_iter()
            .filter(|c| from.contains(&c.status) && !held.contains(&c.id))
            .filter(|c| after.is_none_or(|a| c.id.as_str() > a.as_str()))
            .collect())
    }

    /// How many credentials an action would change, and a sample. Changes nothing.
    pub async fn bulk_preview(
        &self,
        tenant: &Tenant,
        action: &str,
        filter: &CredentialFilter,
    ) -> Result<BulkPreview, Error> {
        let catalogue = self.catalogue().await?;
        let hits = self.pending(tenant, action, filter, None).await?;
        Ok(BulkPreview {
            action: action.to_string(),
            count: hits.len(),
            sample: hits
                .iter()
                .take(10)
                .map(|c| crate::api::types::credential_json(c, &catalogue))
                .collect(),
        })
    }

    /// Starts a bulk action (`bulk.started`), or under dual control for
    /// `credentials.bulk_revoke` asks a second administrator first. Run it with [`App::bulk_run`].
    pub async fn bulk_start(
        &self,
        tenant: &Tenant,
        action: &str,
        filter: &CredentialFilter,
        reason: &str,
        caller: &Caller,
    ) -> Result<BulkStart, Error> {
        let reason = super::check_reason(reason)?;
        let preview = self.bulk_preview(tenant, action, filter).await?;
        let governance = self.active_policy(tenant).await?.policy.governance.clone();
        if action == "revoke" && governance.needs_approval("credentials.bulk_revoke") {
            let approval = self
                .request_approval(
                    tenant,
                    "credentials.bulk_revoke",
                    json!({ "filter": filter, "reason": reason }),
                    format!("revoke {} credential(s): {reason}", preview.count),
                    &governance,
                    caller,
                )
                .await?;
            return Ok(BulkStart::AwaitingApproval(Box::new(approval)));
        }
        Ok(BulkStart::Job(Box::new(
            self.create_job(tenant, action, filter, &reason, preview.count, caller)
                .await?,
        )))
    }

    async fn create_job(
        &self,
        tenant: &Tenant,
        action: &str,
        filter: &CredentialFilter,
        reason: &str,
        total: usize,
        caller: &Caller,
    ) -> Result<BulkJob, Error> {
        let now = self.clock.now();
        let job = BulkJob {
            id: BulkJobId::generate(),
            tenant_id: tenant.id.clone(),
            action: action.to_string(),
            filter: serde_json::to_value(filter).map_err(|e| Error::internal(e.to_string()))?,
            reason: reason.to_string(),
            total: total as i64,
            done: 0,
            last_credential: None,
            status: "running".into(),
            created_by: caller.actor.id.clone(),
            created_at: now,
            finished_at: None,
        };
        let event = caller
            .event("bulk.started", "bulk_job", job.id.as_str())
            .details(json!({
                "action": job.action, "filter": job.filter, "reason": job.reason, "total": job.total,
            }));
        self.store
            .create_bulk_job(&job, AuditBatch::new(now, &[event]))
            .await?;
        Ok(job)
    }

    /// An approved bulk revoke: the job, ready to run.
    pub(crate) async fn start_approved_bulk(
        &self,
        tenant: &Tenant,
        approval: &Approval,
        approver: &Caller,
    ) -> Result<BulkJob, Error> {
        let filter: CredentialFilter =
            serde_json::from_value(approval.payload["filter"].clone())
                .map_err(|e| Error::internal(format!("bulk approval payload: {e}")))?;
        let reason = approval.payload["reason"].as_str().unwrap_or_default();
        let preview = self.bulk_preview(tenant, "revoke", &filter).await?;
        self.create_job(tenant, "revoke", &filter, reason, preview.count, approver)
            .await
    }

    pub async fn bulk_job(&self, tenant: &Tenant, id: &BulkJobId) -> Result<BulkJob, Error> {
        self.store
            .bulk_job(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("bulk_job_not_found", "no such bulk job"))
    }

    /// Runs (or resumes) a job to the end, in batches of `batch` credentials, each batch one
    /// transaction with one event per credential. `progress(done, total)` after each batch.
    pub async fn bulk_run(
        &self,
        tenant: &Tenant,
        id: &BulkJobId,
        batch: usize,
        progress: &(dyn Fn(i64, i64) + Sync),
        caller: &Caller,
    ) -> Result<BulkJob, Error> {
        let job = self.bulk_job(tenant, id).await?;
        if job.status == "completed" {
            return Ok(job);
        }
        let filter: CredentialFilter = serde_json::from_value(job.filter.clone())
            .map_err(|e| Error::internal(format!("stored bulk filter: {e}")))?;
        let (from, to, action) = transition(&job.action)?;
        let pending = self
            .pending(tenant, &job.action, &filter, job.last_credential.as_ref())
            .await?;
        let mut done = job.done;
        if pending.is_empty() {
            let event = caller
                .event("bulk.completed", "bulk_job", job.id.as_str())
                .details(json!({ "done": done }));
            let last = job
                .last_credential
                .clone()
                .unwrap_or_else(|| CredentialRecordId::from_trusted(String::new()));
            self.store
                .bulk_step(
                    &tenant.id,
                    id,
                    &[],
                    &[],
                    &[event],
                    from,
                    &job.reason,
                    &last,
                    true,
                    self.clock.now(),
                )
                .await?;
            return self.bulk_job(tenant, id).await;
        }
        let chunks: Vec<&[Credential]> = pending.chunks(batch.max(1)).collect();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let finished = i + 1 == n;
            let events: Vec<_> = chunk
                .iter()
                .map(|c| {
                    caller
                        .event(action, "credential", c.id.as_str())
                        .details(json!({
                            "user": c.user_id,
                            "from": c.status.as_str(),
                            "reason": job.reason,
                            "job": job.id,
                        }))
                })
                .collect();
            let changes: Vec<(CredentialRecordId, CredentialStatus)> =
                chunk.iter().map(|c| (c.id.clone(), to)).collect();
            let last = chunk.last().expect("chunks are not empty").id.clone();
            let extra: Vec<_> = if finished {
                vec![caller
                    .event("bulk.completed", "bulk_job", job.id.as_str())
                    .details(json!({ "visited": done + chunk.len() as i64 }))]
            } else {
                vec![]
            };
            self.store
                .bulk_step(
                    &tenant.id,
                    id,
                    &changes,
                    &events,
                    &extra,
                    from,
                    &job.reason,
                    &last,
                    finished,
                    self.clock.now(),
                )
                .await?;
            done += chunk.len() as i64;
            progress(done, job.total);
        }
        self.bulk_job(tenant, id).await
    }
}
