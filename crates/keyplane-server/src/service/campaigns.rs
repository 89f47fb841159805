//! Re-enrolment campaigns (issue 7).
//!
//! A campaign covers one authenticator model (an AAGUID): every user holding an active passkey of
//! it is marked for re-enrolment (their next sign-in is restricted to registering a passkey the
//! policy accepts), in batches of one transaction each, every user's mark audited; with the
//! `revoke` action their passkeys of the model are revoked in the same batch. Progress (who
//! registered a passkey of another model since the start) is computed from the live credentials.
//! An MDS import that brings a new compromise status for a model starts a campaign in each tenant
//! where the model has active passkeys, as `system:mds`.

use super::{check_reason, App};
use keyplane_core::audit::Caller;
use keyplane_core::campaign::re_enrol_reason;
use keyplane_core::mds::{MdsBlobInfo, MdsEntry, COMPROMISE_STATUSES};
use keyplane_core::*;
use keyplane_store::{AuditBatch, CampaignMark, StoreError};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Users marked per transaction when a campaign starts.
pub const CAMPAIGN_BATCH: usize = 200;

/// A campaign with its progress, as the API and reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignProgress {
    #[serde(flatten)]
    pub campaign: Campaign,
    /// The model's name from the catalogue, when known.
    pub model: Option<String>,
    /// Marked users who registered a passkey of another model since the start.
    pub re_enrolled: i64,
    /// Marked users who have not (yet).
    pub remaining: i64,
}

/// A campaign an MDS import started.
#[derive(Clone, Debug, Serialize)]
pub struct StartedCampaign {
    pub tenant: String,
    pub campaign: CampaignId,
    pub aaguid: String,
    pub affected: i64,
}

fn parse_aaguid(raw: &str) -> Result<String, Error> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.to_string())
        .map_err(|_| {
            Error::invalid(
                "invalid_aaguid",
                format!("{raw:?} is not an AAGUID (a UUID such as 2fc0579f-8113-47ea-b116-bb5a8db9202a)"),
            )
        })
}

/// Compromise statuses `entry` reports that `before` (the model's entry in the previous BLOB,
/// if any) did not.
pub fn new_compromise_statuses(before: Option<&MdsEntry>, entry: &MdsEntry) -> Vec<String> {
    let mut out: Vec<String> = entry
        .statuses()
        .filter(|s| COMPROMISE_STATUSES.contains(s))
        .filter(|s| before.is_none_or(|b| !b.statuses().any(|o| o == *s)))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

impl App {
    /// Starts a campaign for a model (`campaign.started`) and marks its users in batches of
    /// `batch`, telling `progress(users visited, users to visit)` after each. A second open campaign for the
    /// model is `409 campaign_already_open`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_campaign(
        &self,
        tenant: &Tenant,
        aaguid: &str,
        action: &str,
        reason: &str,
        batch: usize,
        progress: &(dyn Fn(i64, i64) + Sync),
        caller: &Caller,
    ) -> Result<CampaignProgress, Error> {
        let aaguid = parse_aaguid(aaguid)?;
        let action = CampaignAction::parse(action).ok_or_else(|| {
            Error::invalid("invalid_action", "action is \"re_enrol\" or \"revoke\"")
        })?;
        let reason = check_reason(reason)?;
        self.start_campaign_from(
            tenant, &aaguid, action, &reason, "admin", batch, progress, caller,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_campaign_from(
        &self,
        tenant: &Tenant,
        aaguid: &str,
        action: CampaignAction,
        reason: &str,
        source: &str,
        batch: usize,
        progress: &(dyn Fn(i64, i64) + Sync),
        caller: &Caller,
    ) -> Result<CampaignProgress, Error> {
        let affected = self.holders(tenant, aaguid).await?;
        let now = self.clock.now();
        let campaign = Campaign {
            id: CampaignId::generate(),
            tenant_id: tenant.id.clone(),
            aaguid: aaguid.to_string(),
            action,
            reason: reason.to_string(),
            source: source.to_string(),
            status: "open".into(),
            affected: affected.len() as i64,
            marked: 0,
            // Named as the documentation names system actors (`system:mds`).
            started_by: match caller.actor.kind {
                keyplane_core::audit::ActorType::System => format!("system:{}", caller.actor.id),
                _ => caller.actor.id.clone(),
            },
            started_at: now,
            closed_by: None,
            closed_at: None,
            close_note: None,
        };
        let model = self.catalogue().await?.name(aaguid).map(|n| n.name);
        let event = caller
            .event("campaign.started", "campaign", campaign.id.as_str())
            .details(json!({
                "aaguid": aaguid,
                "model": model,
                "action": action.as_str(),
                "reason": reason,
                "source": source,
                "affected_users": campaign.affected,
                "credentials": affected.values().map(Vec::len).sum::<usize>(),
            }));
        self.store
            .create_campaign(&campaign, AuditBatch::new(now, &[event]))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => Error::conflict(
                    "campaign_already_open",
                    format!(
                        "a campaign for {aaguid} is already open in this tenant: close it first"
                    ),
                ),
                other => other.into(),
            })?;
        self.mark_users(tenant, &campaign, affected, batch, progress, caller)
            .await?;
        self.campaign(tenant, &campaign.id).await
    }

    /// The users holding an active passkey of the model, with those passkeys.
    async fn holders(
        &self,
        tenant: &Tenant,
        aaguid: &str,
    ) -> Result<BTreeMap<UserId, Vec<CredentialRecordId>>, Error> {
        let mut out: BTreeMap<UserId, Vec<CredentialRecordId>> = BTreeMap::new();
        for c in self.store.list_credentials(&tenant.id, None).await? {
            if c.aaguid == aaguid && c.status == CredentialStatus::Active {
                out.entry(c.user_id.clone()).or_default().push(c.id);
            }
        }
        Ok(out)
    }

    /// Finishes an interrupted start: marks, in batches as at the start, every user who now holds
    /// an active passkey of the model and whom the campaign has not marked (including users who
    /// registered one since). Users already marked are skipped without an event. Only for an open
    /// campaign (`409 campaign_closed`).
    pub async fn resume_campaign(
        &self,
        tenant: &Tenant,
        id: &CampaignId,
        batch: usize,
        progress: &(dyn Fn(i64, i64) + Sync),
        caller: &Caller,
    ) -> Result<CampaignProgress, Error> {
        let current = self.campaign(tenant, id).await?;
        if !current.campaign.is_open() {
            return Err(Error::conflict(
                "campaign_closed",
                "this campaign is closed; start a new one",
            ));
        }
        let holders = self.holders(tenant, &current.campaign.aaguid).await?;
        self.mark_users(tenant, &current.campaign, holders, batch, progress, caller)
            .await?;
        self.campaign(tenant, id).await
    }

    /// Marks `holders` for the campaign, `batch` users per transaction.
    async fn mark_users(
        &self,
        tenant: &Tenant,
        campaign: &Campaign,
        holders: BTreeMap<UserId, Vec<CredentialRecordId>>,
        batch: usize,
        progress: &(dyn Fn(i64, i64) + Sync),
        caller: &Caller,
    ) -> Result<(), Error> {
        let (aaguid, reason) = (campaign.aaguid.as_str(), campaign.reason.as_str());
        let why = re_enrol_reason(&campaign.id, reason);
        let revoke = (campaign.action == CampaignAction::Revoke)
            .then(|| format!("campaign {}: {reason}", campaign.id));
        let users: Vec<(UserId, Vec<CredentialRecordId>)> = holders.into_iter().collect();
        let total = users.len() as i64;
        let mut visited = 0i64;
        for chunk in users.chunks(batch.max(1)) {
            let marks: Vec<CampaignMark> = chunk
                .iter()
                .map(|(user, credentials)| {
                    let mut events = vec![caller
                        .event("user.re_enrolment_required", "user", user.as_str())
                        .details(json!({
                            "reason": why,
                            "campaign": campaign.id,
                            "aaguid": aaguid,
                        }))];
                    if revoke.is_some() {
                        events.extend(credentials.iter().map(|c| {
                            caller
                                .event("credential.revoked", "credential", c.as_str())
                                .details(json!({
                                    "user": user,
                                    "from": "active",
                                    "reason": reason,
                                    "campaign": campaign.id,
                                }))
                        }));
                    }
                    CampaignMark {
                        user: user.clone(),
                        credentials: credentials.clone(),
                        events,
                    }
                })
                .collect();
            self.store
                .campaign_mark(
                    &tenant.id,
                    &campaign.id,
                    &marks,
                    &why,
                    revoke.as_deref(),
                    &[],
                    self.clock.now(),
                )
                .await?;
            visited += chunk.len() as i64;
            progress(visited, total);
        }
        Ok(())
    }

    async fn progress_of(&self, c: Campaign) -> Result<CampaignProgress, Error> {
        let re_enrolled = self.store.campaign_re_enrolled(&c.tenant_id, &c).await?;
        let model = self.catalogue().await?.name(&c.aaguid).map(|n| n.name);
        Ok(CampaignProgress {
            remaining: (c.marked - re_enrolled).max(0),
            re_enrolled,
            model,
            campaign: c,
        })
    }

    pub async fn campaign(
        &self,
        tenant: &Tenant,
        id: &CampaignId,
    ) -> Result<CampaignProgress, Error> {
        let c = self
            .store
            .campaign(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("campaign_not_found", "no such campaign"))?;
        self.progress_of(c).await
    }

    /// Newest first, each with its progress.
    pub async fn list_campaigns(&self, tenant: &Tenant) -> Result<Vec<CampaignProgress>, Error> {
        let mut out = Vec::new();
        for c in self.store.list_campaigns(&tenant.id).await? {
            out.push(self.progress_of(c).await?);
        }
        Ok(out)
    }

    /// The `campaigns` report: every campaign with its progress, newest first, and totals over
    /// the open ones.
    pub async fn campaigns_report(&self, tenant: &Tenant) -> Result<serde_json::Value, Error> {
        let all = self.list_campaigns(tenant).await?;
        let open: Vec<&CampaignProgress> = all.iter().filter(|c| c.campaign.is_open()).collect();
        Ok(json!({
            "open": open.len(),
            "closed": all.len() - open.len(),
            "open_affected_users": open.iter().map(|c| c.campaign.affected).sum::<i64>(),
            "open_re_enrolled": open.iter().map(|c| c.re_enrolled).sum::<i64>(),
            "open_remaining": open.iter().map(|c| c.remaining).sum::<i64>(),
            "campaigns": all,
        }))
    }

    /// Closes an open campaign with a note: `campaign.closed` with the progress at that moment.
    /// Users still marked keep their re-enrolment requirement (an administrator can see them in
    /// `keyplane user list`); closing only ends the tracking. A closed campaign is
    /// `409 campaign_closed`.
    pub async fn close_campaign(
        &self,
        tenant: &Tenant,
        id: &CampaignId,
        note: &str,
        caller: &Caller,
    ) -> Result<CampaignProgress, Error> {
        let note = check_reason(note)?;
        let current = self.campaign(tenant, id).await?;
        let event = caller
            .event("campaign.closed", "campaign", id.as_str())
            .details(json!({
                "note": note,
                "aaguid": current.campaign.aaguid,
                "affected_users": current.campaign.affected,
                "marked": current.campaign.marked,
                "re_enrolled": current.re_enrolled,
                "remaining": current.remaining,
            }));
        if !self
            .store
            .close_campaign(
                &tenant.id,
                id,
                &caller.actor.id,
                &note,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "campaign_closed",
                "this campaign is already closed",
            ));
        }
        self.campaign(tenant, id).await
    }

    /// After an MDS import: for every model whose entry brings a compromise status the previous
    /// BLOB did not report, a `re_enrol` campaign in each tenant where the model has active
    /// passkeys and no open campaign, by `system:mds`. A failure is logged and skipped: the
    /// import itself is already committed.
    pub(crate) async fn start_mds_campaigns(
        &self,
        blob: &MdsBlobInfo,
        triggers: &[(MdsEntry, Vec<String>)],
    ) -> Result<Vec<StartedCampaign>, Error> {
        let mut started = Vec::new();
        if triggers.is_empty() {
            return Ok(started);
        }
        let system = Caller::system("mds");
        for tenant in self.store.list_tenants().await? {
            let credentials = self.store.list_credentials(&tenant.id, None).await?;
            let open: Vec<String> = self
                .store
                .list_campaigns(&tenant.id)
                .await?
                .into_iter()
                .filter(Campaign::is_open)
                .map(|c| c.aaguid)
                .collect();
            for (entry, statuses) in triggers {
                let used = credentials
                    .iter()
                    .any(|c| c.aaguid == entry.aaguid && c.status == CredentialStatus::Active);
                if !used || open.contains(&entry.aaguid) {
                    continue;
                }
                let reason = format!(
                    "FIDO MDS BLOB {} reports {} for {}",
                    blob.number,
                    statuses.join(", "),
                    entry.description
                );
                match self
                    .start_campaign_from(
                        &tenant,
                        &entry.aaguid,
                        CampaignAction::ReEnrol,
                        &reason,
                        "mds",
                        CAMPAIGN_BATCH,
                        &|_, _| {},
                        &system,
                    )
                    .await
                {
                    Ok(c) => started.push(StartedCampaign {
                        tenant: tenant.name.clone(),
                        campaign: c.campaign.id,
                        aaguid: entry.aaguid.clone(),
                        affected: c.campaign.affected,
                    }),
                    Err(e) => tracing::error!(
                        tenant = %tenant.name, aaguid = %entry.aaguid, error = %e,
                        "could not start the re-enrolment campaign for a compromised model; start it with `keyplane campaign start`"
                    ),
                }
            }
        }
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_core::mds::StatusReport;

    fn entry(statuses: &[&str]) -> MdsEntry {
        MdsEntry {
            aaguid: "2fc0579f-8113-47ea-b116-bb5a8db9202a".into(),
            description: "Model".into(),
            icon: None,
            status_reports: statuses
                .iter()
                .map(|s| StatusReport {
                    status: s.to_string(),
                    effective_date: None,
                })
                .collect(),
            attestation_roots: vec![],
            attestation_types: vec![],
            key_protection: vec![],
        }
    }

    #[test]
    fn only_compromise_statuses_the_previous_blob_did_not_report_start_a_campaign() {
        let certified = entry(&["FIDO_CERTIFIED_L1"]);
        let compromised = entry(&["FIDO_CERTIFIED_L1", "USER_KEY_PHYSICAL_COMPROMISE"]);
        assert_eq!(
            new_compromise_statuses(Some(&certified), &compromised),
            vec!["USER_KEY_PHYSICAL_COMPROMISE"]
        );
        assert_eq!(
            new_compromise_statuses(None, &compromised),
            vec!["USER_KEY_PHYSICAL_COMPROMISE"]
        );
        assert!(new_compromise_statuses(Some(&compromised), &compromised).is_empty());
        assert!(new_compromise_statuses(None, &entry(&["UPDATE_AVAILABLE"])).is_empty());
        let revoked = entry(&["USER_KEY_PHYSICAL_COMPROMISE", "REVOKED"]);
        assert_eq!(
            new_compromise_statuses(Some(&compromised), &revoked),
            vec!["REVOKED"]
        );
    }

    #[test]
    fn aaguids_are_normalised_and_garbage_is_refused() {
        assert_eq!(
            parse_aaguid("2FC0579F-8113-47EA-B116-BB5A8DB9202A").unwrap(),
            "2fc0579f-8113-47ea-b116-bb5a8db9202a"
        );
        assert_eq!(parse_aaguid("yubikey").unwrap_err().code, "invalid_aaguid");
    }
}
