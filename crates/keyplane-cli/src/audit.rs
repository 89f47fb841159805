//! `keyplane audit …`: verify the chain and its checkpoints, sign checkpoints, export events
//! (native JSON lines or OCSF), list and rotate the checkpoint keys.

use crate::commands::{open, tenant_or_default};
use crate::output::{self, Format};
use anyhow::{anyhow, bail, Context};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use keyplane_core::{Tenant, Timestamp};
use keyplane_server::audit_keys::{parse_trusted_keys, read_public_keys};
use keyplane_server::service::AUDIT_PAGE;
use keyplane_server::{App, Settings};
use keyplane_store::AuditFilter;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Prove the hash chain and the checkpoint signatures; name the first bad event.
    Verify {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Start after the latest validly signed checkpoint instead of at the first event.
        #[arg(long)]
        from_checkpoint: bool,
        /// File of trusted Ed25519 public keys (hex, one per line), as published at
        /// /.well-known/keyplane-audit-keys. Default: the public keys of the local key ring.
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Sign each tenant's latest event now (the server also does this periodically).
    Checkpoint {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write events as JSON lines: Keyplane's own shape, or OCSF for a SIEM.
    Export {
        #[arg(long, value_enum, default_value_t)]
        format: ExportFormat,
        #[arg(long)]
        tenant: Option<String>,
        /// Events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Events before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Only this action (e.g. authentication.failed).
        #[arg(long)]
        action: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List the checkpoint public keys (hex), for pinning elsewhere.
    Keys,
    /// Replace the checkpoint signing key. The old public key stays trusted for old checkpoints.
    RotateKey,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum ExportFormat {
    #[default]
    Jsonl,
    Ocsf,
}

fn parse_time(name: &str, raw: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    raw.map(|r| {
        time::OffsetDateTime::parse(r, &time::format_description::well_known::Rfc3339)
            .map(|t| {
                Timestamp(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
            })
            .map_err(|_| anyhow!("--{name} must be an RFC 3339 time such as 2026-11-25T12:00:00Z"))
    })
    .transpose()
}

async fn tenants(app: &App, name: Option<&str>) -> anyhow::Result<Vec<Tenant>> {
    match name {
        Some(_) => Ok(vec![tenant_or_default(app, name).await?]),
        None => Ok(app.store.list_tenants().await?),
    }
}

/// A progress bar on standard error; drawn only when it is a terminal.
fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

pub async fn run(settings: Settings, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            tenant,
            from_checkpoint,
            trusted_keys,
            format,
        } => {
            let key_dir = settings.audit_key_dir();
            let trusted = match &trusted_keys {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    parse_trusted_keys(&text)
                        .map_err(|e| anyhow!("{}: {}", path.display(), e.message))?
                }
                None => read_public_keys(&key_dir).map_err(|e| anyhow!("{}", e.message))?,
            };
            let app = open(settings).await?;
            let mut reports = Vec::new();
            for t in tenants(&app, tenant.as_deref()).await? {
                let (head, _) = app.store.audit_head(&t.id).await?;
                let bar = progress(
                    u64::try_from(head).unwrap_or(0),
                    &format!("verifying {}", t.name),
                );
                let report = app
                    .verify_audit(&t, &trusted, from_checkpoint, &|n| bar.set_position(n))
                    .await
                    .map_err(|e| anyhow!("{}", e.message))?;
                bar.finish_and_clear();
                reports.push(report);
            }
            let failed = reports.iter().filter(|r| !r.ok()).count();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
                Format::Table => {
                    for r in &reports {
                        let from = if r.started_after > 0 {
                            format!(" (after checkpoint {})", r.started_after)
                        } else {
                            String::new()
                        };
                        if r.ok() {
                            println!(
                                "{}: OK, {} events verified{from}, chain ends at {}, {} valid checkpoint(s)",
                                r.tenant, r.events_checked, r.last_seq, r.checkpoints_valid
                            );
                        } else {
                            println!(
                                "{}: FAILED after {} good events{from}",
                                r.tenant, r.events_checked
                            );
                            for p in &r.problems {
                                let at =
                                    p.seq.map(|s| format!(" at event {s}")).unwrap_or_default();
                                let id = p
                                    .event_id
                                    .as_deref()
                                    .map(|i| format!(" ({i})"))
                                    .unwrap_or_default();
                                println!("  {}{at}{id}: {}", p.kind, p.message);
                            }
                        }
                    }
                }
            }
            if failed > 0 {
                bail!("the audit log of {failed} tenant(s) failed verification");
            }
            Ok(())
        }
        AuditCommand::Checkpoint { tenant } => {
            let app = open(settings).await?;
            for t in tenants(&app, tenant.as_deref()).await? {
                match app
                    .checkpoint(&t)
                    .await
                    .map_err(|e| anyhow!("{}", e.message))?
                {
                    Some(cp) => {
                        println!("{}: signed event {} with key {}", t.name, cp.seq, cp.key_id)
                    }
                    None => println!("{}: nothing new to sign", t.name),
                }
            }
            Ok(())
        }
        AuditCommand::Export {
            format,
            tenant,
            since,
            until,
            action,
            output,
        } => {
            let since = parse_time("since", since.as_deref())?;
            let until = parse_time("until", until.as_deref())?;
            let app = open(settings).await?;
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut written = 0u64;
            for t in tenants(&app, tenant.as_deref()).await? {
                let (head, _) = app.store.audit_head(&t.id).await?;
                let bar = progress(
                    u64::try_from(head).unwrap_or(0),
                    &format!("exporting {}", t.name),
                );
                let mut filter = AuditFilter {
                    since,
                    until,
                    action: action.clone(),
                    limit: AUDIT_PAGE,
                    ..AuditFilter::default()
                };
                // Page by sequence number: memory stays constant however long the log is.
                loop {
                    let page = app.store.list_audit_events(&t.id, &filter).await?;
                    let Some(last) = page.last() else { break };
                    filter.after_seq = last.seq;
                    for e in &page {
                        let v = match format {
                            ExportFormat::Jsonl => keyplane_server::audit_export::native(e),
                            ExportFormat::Ocsf => keyplane_server::audit_export::ocsf(e),
                        };
                        serde_json::to_writer(&mut out, &v)?;
                        out.write_all(b"\n")?;
                    }
                    written += page.len() as u64;
                    bar.set_position(u64::try_from(last.seq).unwrap_or(0));
                }
                bar.finish_and_clear();
            }
            out.flush()?;
            if output.is_some() {
                eprintln!("{written} events written");
            }
            Ok(())
        }
        AuditCommand::Keys => {
            let app = open(settings).await?;
            let ring = app
                .keyring
                .read()
                .map_err(|_| anyhow!("key ring lock poisoned"))?;
            let active = ring.active().key_id.clone();
            let rows: Vec<_> = ring
                .public_keys()
                .iter()
                .map(|k| {
                    let id = keyplane_core::audit::key_id(k);
                    json!({ "key_id": id, "public_key": hex::encode(k.as_bytes()), "active": id == active })
                })
                .collect();
            output::print(Format::Table, &["key_id", "active", "public_key"], &rows);
            Ok(())
        }
        AuditCommand::RotateKey => {
            let app = open(settings).await?;
            let mut ring = app
                .keyring
                .write()
                .map_err(|_| anyhow!("key ring lock poisoned"))?;
            let key = ring.rotate().map_err(|e| anyhow!("{}", e.message))?;
            println!(
                "new checkpoint key {} is active; restart running servers to use it",
                key.key_id
            );
            Ok(())
        }
    }
}
