//! `keyplane doctor`: the deployment's health in plain words (keyplane_server::doctor). Exits
//! non-zero when a check fails.

use crate::commands::open;
use crate::output::Format;
use anyhow::anyhow;
use keyplane_server::Settings;
use keyplane_store::SqlStore;

pub async fn run(settings: Settings, format: Format) -> anyhow::Result<()> {
    let store = SqlStore::connect(&settings.database_url(), 2)
        .await
        .map_err(|e| {
            anyhow!(
                "database {} is not reachable: {e}",
                keyplane_store::redact_url(&settings.database_url())
            )
        })?;
    let app = open(settings).await?;
    let checks = keyplane_server::doctor::run(&app, &store).await;
    store.close().await;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&checks)?),
        Format::Table => {
            for c in &checks {
                println!("{:<5} {}: {}", c.status.to_uppercase(), c.check, c.message);
            }
        }
    }
    if keyplane_server::doctor::failed(&checks) {
        let n = checks.iter().filter(|c| c.status == "fail").count();
        return Err(anyhow!("{n} check(s) failed"));
    }
    Ok(())
}
