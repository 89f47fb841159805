//! `keyplane campaign start|list|show|close|resume`: re-enrolment campaigns for an authenticator
//! model, and `keyplane credential lost`. The same service calls as the admin API.

use crate::commands::{open, operator, tenant_or_default};
use crate::output::{self, Format};
use anyhow::anyhow;
use clap::Subcommand;
use keyplane_core::{CampaignId, CredentialRecordId};
use keyplane_server::service::{CampaignProgress, CAMPAIGN_BATCH};
use keyplane_server::Settings;
use serde_json::{json, Value};
use std::io::IsTerminal;

fn fail(e: keyplane_core::Error) -> anyhow::Error {
    anyhow!("{} ({})", e.message, e.code)
}

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Start a campaign: every user with an active passkey of the model must re-enrol.
    Start {
        /// The authenticator model's AAGUID.
        #[arg(long)]
        aaguid: String,
        /// Why (recorded on the campaign, on each user's re-enrolment and in the audit log).
        #[arg(long)]
        reason: String,
        /// `re_enrol` (passkeys stay usable until replaced) or `revoke` (revoked at once).
        #[arg(long, default_value = "re_enrol")]
        action: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List campaigns with their progress, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// One campaign with its progress.
    Show {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Finish an interrupted start: mark the users who hold an active passkey of the model and
    /// are not marked yet (also those who registered one since the start).
    Resume {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Close an open campaign (users still marked keep their re-enrolment requirement).
    Close {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

const COLUMNS: &[&str] = &[
    "id",
    "aaguid",
    "model",
    "action",
    "status",
    "affected",
    "re_enrolled",
    "remaining",
    "started_at",
];

fn row(c: &CampaignProgress) -> Value {
    json!(c)
}

fn campaign_id(raw: &str) -> anyhow::Result<CampaignId> {
    CampaignId::parse(raw)
        .ok_or_else(|| anyhow!("{raw:?} is not a campaign id (see `keyplane campaign list`)"))
}

pub async fn run(settings: Settings, cmd: CampaignCommand) -> anyhow::Result<()> {
    let app = open(settings).await?;
    match cmd {
        CampaignCommand::Start {
            aaguid,
            reason,
            action,
            tenant,
            format,
        } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(0)
            } else {
                indicatif::ProgressBar::hidden()
            };
            let c = app
                .start_campaign(
                    &t,
                    &aaguid,
                    &action,
                    &reason,
                    CAMPAIGN_BATCH,
                    &|done, total| {
                        bar.set_length(total.max(0) as u64);
                        bar.set_position(done.max(0) as u64);
                    },
                    &operator(),
                )
                .await
                .map_err(fail)?;
            bar.finish_and_clear();
            output::print(format, COLUMNS, &[row(&c)]);
        }
        CampaignCommand::List { tenant, format } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let all = app.list_campaigns(&t).await.map_err(fail)?;
            output::print(format, COLUMNS, &all.iter().map(row).collect::<Vec<_>>());
        }
        CampaignCommand::Show { id, tenant, format } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let c = app.campaign(&t, &campaign_id(&id)?).await.map_err(fail)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&row(&c))?),
                Format::Table => print!("{}", output::table(COLUMNS, &[row(&c)])),
            }
        }
        CampaignCommand::Resume { id, tenant } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let id = campaign_id(&id)?;
            let before = app.campaign(&t, &id).await.map_err(fail)?.campaign.marked;
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(0)
            } else {
                indicatif::ProgressBar::hidden()
            };
            let c = app
                .resume_campaign(
                    &t,
                    &id,
                    CAMPAIGN_BATCH,
                    &|done, total| {
                        bar.set_length(total.max(0) as u64);
                        bar.set_position(done.max(0) as u64);
                    },
                    &operator(),
                )
                .await
                .map_err(fail)?;
            bar.finish_and_clear();
            println!(
                "campaign {}: {} more user(s) marked; {} marked in all",
                c.campaign.id,
                c.campaign.marked - before,
                c.campaign.marked
            );
        }
        CampaignCommand::Close { id, reason, tenant } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let c = app
                .close_campaign(&t, &campaign_id(&id)?, &reason, &operator())
                .await
                .map_err(fail)?;
            println!(
                "campaign {} closed: {} of {} user(s) re-enrolled, {} remaining",
                c.campaign.id, c.re_enrolled, c.campaign.marked, c.remaining
            );
        }
    }
    Ok(())
}

/// `keyplane credential lost ID --reason …`.
pub async fn lost(
    settings: Settings,
    id: &str,
    reason: &str,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let id = CredentialRecordId::parse(id)
        .ok_or_else(|| anyhow!("{id:?} is not a credential id (see `keyplane credential list`)"))?;
    let app = open(settings).await?;
    let t = tenant_or_default(&app, tenant).await?;
    let lost = app
        .mark_credential_lost(&t, &id, reason, &operator())
        .await
        .map_err(fail)?;
    println!(
        "credential {} is revoked (lost); re-enrolment {}: the user has {} other active passkey(s)",
        lost.credential.id, lost.re_enrolment, lost.other_active_passkeys
    );
    Ok(())
}
