//! `keyplane oidc …`: the OpenID Connect provider's signing keys. OIDC clients themselves are
//! machine clients (`keyplane client create --redirect-uri …`).

use crate::commands::open;
use crate::output::{self, Format};
use anyhow::anyhow;
use clap::Subcommand;
use keyplane_server::Settings;

#[derive(Subcommand)]
pub enum OidcCommand {
    /// List the published ID-token signing keys (every node's, until retired).
    Keys {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Replace this node's signing key. The old public key stays published for the overlap,
    /// so tokens it signed keep verifying; a serving node on this data directory picks the new
    /// key up at its next signature.
    RotateKey {
        /// Hours the old public key stays in the JWKS (default 24, 0 to 168).
        #[arg(long, default_value_t = 24)]
        overlap_hours: i64,
    },
}

pub async fn run(settings: Settings, cmd: OidcCommand) -> anyhow::Result<()> {
    let app = open(settings).await?;
    match cmd {
        OidcCommand::Keys { format } => {
            let jwks = app
                .oidc_jwks()
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            let active = app.oidc_signer.kid();
            let rows: Vec<serde_json::Value> = jwks["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    serde_json::json!({
                        "kid": k["kid"],
                        "alg": k["alg"],
                        "this_node": k["kid"].as_str() == Some(active.as_str()),
                    })
                })
                .collect();
            output::print(format, &["kid", "alg", "this_node"], &rows);
            Ok(())
        }
        OidcCommand::RotateKey { overlap_hours } => {
            let (old, new) = app
                .rotate_oidc_key(overlap_hours)
                .await
                .map_err(|e| anyhow!("{} ({})", e.message, e.code))?;
            println!(
                "new ID-token signing key {new} is active; {old} stays published for {overlap_hours} hour(s)"
            );
            Ok(())
        }
    }
}
