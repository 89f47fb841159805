//! `keyplane approval …`: the dual-control queue. Requests come from acts the policy puts under
//! dual control (`governance.dual_control`); a different administrator (here: a different login
//! on this host) approves or denies.

use crate::commands::{open, operator, tenant_or_default};
use crate::output::{self, Format};
use anyhow::anyhow;
use clap::Subcommand;
use keyplane_core::ApprovalId;
use keyplane_server::Settings;
use serde_json::json;

#[derive(Subcommand)]
pub enum ApprovalCommand {
    /// List requests for approval (newest first), with their status.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only open requests.
        #[arg(long)]
        open: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Approve a request made by someone else, and carry out its act.
    Approve {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Deny a request made by someone else.
    Deny {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Why (shown to the requester, recorded in the audit log).
        #[arg(long)]
        note: Option<String>,
    },
}

fn approval_id(raw: &str) -> anyhow::Result<ApprovalId> {
    ApprovalId::parse(raw).ok_or_else(|| anyhow!("{raw:?} is not an approval id"))
}

pub async fn run(settings: Settings, cmd: ApprovalCommand) -> anyhow::Result<()> {
    match cmd {
        ApprovalCommand::List {
            tenant,
            open: only_open,
            format,
        } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let rows: Vec<_> = app
                .list_approvals(&t)
                .await
                .map_err(|e| anyhow!("{}", e.message))?
                .into_iter()
                .filter(|a| !only_open || a.status == keyplane_core::ApprovalStatus::Requested)
                .map(|a| {
                    json!({
                        "id": a.id, "action": a.action, "status": a.status.as_str(),
                        "summary": a.summary, "requested_by": a.requested_by,
                        "requested_at": a.requested_at.to_rfc3339(),
                        "expires_at": a.expires_at.to_rfc3339(),
                        "decided_by": a.decided_by, "note": a.note,
                    })
                })
                .collect();
            output::print(
                format,
                &[
                    "id",
                    "action",
                    "status",
                    "requested_by",
                    "expires_at",
                    "summary",
                ],
                &rows,
            );
            Ok(())
        }
        ApprovalCommand::Approve { id, tenant } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let (a, result) = app
                .approve(&t, &approval_id(&id)?, &operator())
                .await
                .map_err(|e| anyhow!("{} ({})", e.message, e.code))?;
            println!(
                "approved {} ({}): done, {}",
                a.id,
                a.action,
                serde_json::to_string(&result)?
            );
            Ok(())
        }
        ApprovalCommand::Deny { id, tenant, note } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let a = app
                .deny(&t, &approval_id(&id)?, note.as_deref(), &operator())
                .await
                .map_err(|e| anyhow!("{} ({})", e.message, e.code))?;
            println!("denied {} ({})", a.id, a.action);
            Ok(())
        }
    }
}
