//! `keyplane case …`: the help desk's recovery cases from the command line. The same service
//! calls as `/api/v1/admin/recovery-cases`; the actor is the operator's OS login (`cli:<login>`),
//! so the agent who verified a case and the administrator who approves it (with `keyplane
//! approval approve`) must be different logins.

use crate::commands::{open, operator, tenant_or_default};
use crate::output::{self, Format};
use anyhow::anyhow;
use clap::Subcommand;
use keyplane_core::recovery_case::CaseState;
use keyplane_core::RecoveryCaseId;
use keyplane_server::api::recovery::case_json;
use keyplane_server::service::CaseAction;
use keyplane_server::Settings;
use keyplane_store::CaseFilter;

#[derive(Subcommand)]
pub enum CaseCommand {
    /// List recovery cases (newest first).
    List {
        /// Only this state (requested, verifying, awaiting_approval, cooling_off, ready, ...).
        #[arg(long)]
        state: Option<String>,
        /// Only cases still open.
        #[arg(long)]
        open: bool,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one case (JSON), with the account's timeline from the audit log.
    Show {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Open a case for a user who asked the help desk.
    Open {
        username: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Take a requested case for verification (you become its agent).
    Take {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Record one identity check the policy asks for, with what you saw.
    Check {
        id: String,
        /// The check's name (see `keyplane case show`: required_checks).
        check: String,
        /// Record the check as failed.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        evidence: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Declare the identity verified: on to approval, cooling-off or ready.
    Verified {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Release a case's fraud holds after reviewing the account's timeline.
    Review {
        id: String,
        #[arg(long)]
        note: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Send a fresh recovery link to the user's verified contact.
    SendLink {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Deny a case.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Cancel a case.
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn fail(e: keyplane_core::Error) -> anyhow::Error {
    anyhow!("{} ({})", e.message, e.code)
}

fn case_id(raw: &str) -> anyhow::Result<RecoveryCaseId> {
    RecoveryCaseId::parse(raw).ok_or_else(|| anyhow!("{raw:?} is not a recovery case id"))
}

pub async fn run(settings: Settings, cmd: CaseCommand) -> anyhow::Result<()> {
    let app = open(settings).await?;
    let (id, tenant, action) = match cmd {
        CaseCommand::List {
            state,
            open,
            tenant,
            format,
        } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let state = match state {
                None => None,
                Some(s) => Some(CaseState::parse(&s).ok_or_else(|| {
                    anyhow!(
                        "unknown state {s:?}; one of: {}",
                        CaseState::ALL.map(|s| s.as_str()).join(", ")
                    )
                })?),
            };
            let cases = app
                .list_recovery_cases(
                    &t,
                    &CaseFilter {
                        state,
                        open_only: open,
                        limit: 1000,
                        ..CaseFilter::default()
                    },
                )
                .await
                .map_err(fail)?;
            let rows: Vec<_> = cases.iter().map(case_json).collect();
            output::print(
                format,
                &[
                    "id",
                    "state",
                    "user_id",
                    "agent",
                    "on_hold",
                    "missing_checks",
                    "created_at",
                ],
                &rows,
            );
            return Ok(());
        }
        CaseCommand::Show { id, tenant } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let c = app.recovery_case(&t, &case_id(&id)?).await.map_err(fail)?;
            let mut body = case_json(&c);
            body["timeline"] = serde_json::json!(app.case_timeline(&t, &c).await.map_err(fail)?);
            println!("{}", serde_json::to_string_pretty(&body)?);
            return Ok(());
        }
        CaseCommand::Open { username, tenant } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let name = keyplane_core::normalise_username(&username).map_err(fail)?;
            let user = app
                .store
                .user_by_username(&t.id, &name)
                .await?
                .ok_or_else(|| anyhow!("no user {name:?} in tenant {}", t.name))?;
            let c = app
                .open_recovery_case_for(&t, &user.id, &operator())
                .await
                .map_err(fail)?;
            println!(
                "opened recovery case {} for {name} (checks: {}{})",
                c.id,
                c.required_checks.join(", "),
                if c.on_hold() {
                    format!(
                        "; held for review: {}",
                        c.holds
                            .iter()
                            .map(|h| h.signal.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                }
            );
            return Ok(());
        }
        CaseCommand::Take { id, tenant } => (id, tenant, CaseAction::Take),
        CaseCommand::Check {
            id,
            check,
            failed,
            evidence,
            tenant,
        } => (
            id,
            tenant,
            CaseAction::Check {
                check,
                passed: !failed,
                evidence,
            },
        ),
        CaseCommand::Verified { id, tenant } => (id, tenant, CaseAction::Verified),
        CaseCommand::Review { id, note, tenant } => (id, tenant, CaseAction::Review { note }),
        CaseCommand::SendLink { id, tenant } => (id, tenant, CaseAction::SendLink),
        CaseCommand::Deny { id, reason, tenant } => (id, tenant, CaseAction::Deny { reason }),
        CaseCommand::Cancel { id, reason, tenant } => (id, tenant, CaseAction::Cancel { reason }),
    };
    let t = tenant_or_default(&app, tenant.as_deref()).await?;
    let name = action.name();
    let c = app
        .act_on_case(&t, &case_id(&id)?, action, &operator())
        .await
        .map_err(fail)?;
    println!(
        "{name}: case {} is {}{}",
        c.id,
        c.state.as_str().replace('_', " "),
        match c.state {
            CaseState::AwaitingApproval =>
                " (a second administrator approves it: keyplane approval list)".to_string(),
            CaseState::CoolingOff => format!(
                " until {}",
                c.cooling_off_until
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
            CaseState::Verifying if !c.missing_checks().is_empty() =>
                format!("; checks to go: {}", c.missing_checks().join(", ")),
            _ => String::new(),
        }
    );
    Ok(())
}
