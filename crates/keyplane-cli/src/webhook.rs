//! `keyplane webhook …`: the webhook outbox. Endpoints are machine clients
//! (`keyplane client create --webhook-url … --event …`).

use crate::commands::{open, operator, tenant_or_default};
use crate::output::{self, Format};
use anyhow::anyhow;
use clap::Subcommand;
use keyplane_core::MachineClientId;
use keyplane_server::api::webhooks::{delivery_json, delivery_status};
use keyplane_server::Settings;

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// List deliveries, newest first: pending, delivered or dead (dead letters).
    Deliveries {
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        /// Only this endpoint's (a machine client id).
        #[arg(long)]
        client: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Send a dead (or delivered) delivery again, from its first attempt.
    Replay {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn failed(e: keyplane_core::Error) -> anyhow::Error {
    anyhow!("{} ({})", e.message, e.code)
}

pub async fn run(settings: Settings, cmd: WebhookCommand) -> anyhow::Result<()> {
    let app = open(settings).await?;
    match cmd {
        WebhookCommand::Deliveries {
            status,
            client,
            limit,
            tenant,
            format,
        } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            if !(1..=1000).contains(&limit) {
                return Err(anyhow!("--limit must be 1 to 1000"));
            }
            let status = status
                .as_deref()
                .map(delivery_status)
                .transpose()
                .map_err(failed)?;
            let client = client
                .map(|c| {
                    MachineClientId::parse(&c)
                        .ok_or_else(|| anyhow!("{c:?} is not a machine client id"))
                })
                .transpose()?;
            let list = app
                .list_webhook_deliveries(
                    &t,
                    &keyplane_store::DeliveryFilter {
                        status,
                        client,
                        limit,
                    },
                )
                .await
                .map_err(failed)?;
            let rows: Vec<serde_json::Value> = list.iter().map(delivery_json).collect();
            output::print(
                format,
                &[
                    "id",
                    "event_type",
                    "status",
                    "attempts",
                    "last_status",
                    "last_error",
                    "created_at",
                    "client_id",
                ],
                &rows,
            );
            Ok(())
        }
        WebhookCommand::Replay { id, tenant } => {
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let d = app
                .replay_webhook_delivery(&t, &id, &operator())
                .await
                .map_err(failed)?;
            println!("delivery {} ({}) is pending again", d.id, d.event_type);
            Ok(())
        }
    }
}
