//! `keyplane policy …`: lint a policy file, show the active policy, apply a new version, list
//! versions, roll back. `keyplane user set-populations` lives beside the other user commands.

use crate::commands::{open, operator, tenant_or_default};
use crate::output::{self, Format};
use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use keyplane_server::service::{ApplyError, PolicyChange, SimulationProgress};
use keyplane_server::Settings;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file; report every problem with its line and column.
    Lint { file: PathBuf },
    /// Print the active policy document (or say that the built-in policy is in force).
    Show {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Lint a policy file and activate it as the tenant's next version (audited).
    Apply {
        file: PathBuf,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show what would change for the tenant's live users and credentials if FILE were applied
    /// (per population: credentials becoming non-compliant, users losing every compliant
    /// credential or their level). Changes nothing.
    Simulate {
        file: PathBuf,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show the differences between the active policy and FILE.
    Diff {
        file: PathBuf,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List the tenant's policy versions.
    History {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Make an earlier version active again (audited).
    Rollback {
        version: i64,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn report_lint(file: &Path, errors: &[keyplane_core::policy::LintError]) -> anyhow::Error {
    for e in errors {
        eprintln!(
            "{}:{}:{}: {}: {}",
            file.display(),
            e.line,
            e.column,
            if e.path.is_empty() {
                "document"
            } else {
                &e.path
            },
            e.message
        );
    }
    anyhow!("{} problem(s) in {}", errors.len(), file.display())
}

pub async fn run(settings: Settings, cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Lint { file } => {
            match keyplane_server::service::lint_policy(&read(&file)?) {
                Ok(p) => {
                    println!(
                        "{}: OK ({} population(s), {} step-up rule(s))",
                        file.display(),
                        p.populations.len(),
                        p.step_up.len()
                    );
                    Ok(())
                }
                Err(errors) => Err(report_lint(&file, &errors)),
            }
        }
        PolicyCommand::Show { tenant } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            match app.active_policy_document(&t).await.map_err(|e| anyhow!("{}", e.message))? {
                Some(v) => {
                    println!("# tenant {}, policy version {}", t.name, v.version);
                    print!("{}", v.document);
                }
                None => println!("# tenant {}: the built-in policy is in force (docs/policy.md); no version applied yet", t.name),
            }
            Ok(())
        }
        PolicyCommand::Apply { file, tenant } => {
            let text = read(&file)?;
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            match app.apply_policy(&t, &text, &operator()).await {
                Ok(PolicyChange::Applied { version }) => {
                    println!("tenant {}: policy version {version} is active", t.name);
                    Ok(())
                }
                Ok(PolicyChange::AwaitingApproval(a)) => {
                    print_awaiting(&t.name, &a);
                    Ok(())
                }
                Err(ApplyError::Lint(errors)) => Err(report_lint(&file, &errors)),
                Err(ApplyError::Other(e)) => bail!("{}", e.message),
            }
        }
        PolicyCommand::Simulate {
            file,
            tenant,
            format,
        } => {
            let text = read(&file)?;
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            // On stderr, and only when it is a terminal.
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            let what = format!("simulating {} on tenant {}", file.display(), t.name);
            bar.set_message(format!("{what}: loading"));
            let progress = |p: SimulationProgress| match p {
                SimulationProgress::Loading { rows } => {
                    bar.set_message(format!("{what}: loading, {rows} rows read"))
                }
                SimulationProgress::Evaluating { users, of } => {
                    if bar.length() != Some(of) {
                        bar.set_message(what.clone());
                        bar.set_length(of);
                        bar.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{msg} [{bar:30}] {pos}/{len} users",
                            )
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                        );
                    }
                    bar.set_position(users)
                }
            };
            let report = match app.simulate_policy(&t, &text, &progress).await {
                Ok(r) => r,
                Err(ApplyError::Lint(errors)) => return Err(report_lint(&file, &errors)),
                Err(ApplyError::Other(e)) => bail!("{}", e.message),
            };
            bar.finish_and_clear();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => {
                    let rows: Vec<_> = report
                        .populations
                        .iter()
                        .map(|(p, i)| {
                            json!({
                                "population": p, "users": i.users, "credentials": i.credentials,
                                "non_compliant": i.credentials_becoming_non_compliant,
                                "newly_compliant": i.credentials_becoming_compliant,
                                "users_locked_to_re_enrol": i.users_losing_every_compliant_credential,
                                "users_losing_level": i.users_losing_level,
                                "users_without_aal3": i.users_without_aal3,
                            })
                        })
                        .collect();
                    output::print(
                        Format::Table,
                        &[
                            "population",
                            "users",
                            "credentials",
                            "non_compliant",
                            "newly_compliant",
                            "users_locked_to_re_enrol",
                            "users_losing_level",
                            "users_without_aal3",
                        ],
                        &rows,
                    );
                    for (p, i) in &report.populations {
                        for (rule, n) in &i.rules {
                            println!("  {p}: {n} credential(s) break {rule}");
                        }
                    }
                }
            }
            Ok(())
        }
        PolicyCommand::Diff { file, tenant } => {
            let text = read(&file)?;
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let (label, active) = match app
                .active_policy_document(&t)
                .await
                .map_err(|e| anyhow!("{}", e.message))?
            {
                Some(v) => (
                    format!("{} (active version {})", t.name, v.version),
                    v.document,
                ),
                None => (
                    format!("{} (built-in policy)", t.name),
                    "version = 1\n".to_string(),
                ),
            };
            let diff = similar::TextDiff::from_lines(&active, &text);
            if diff.ratio() == 1.0 {
                println!("no differences");
            } else {
                print!(
                    "{}",
                    diff.unified_diff()
                        .context_radius(3)
                        .header(&label, &file.display().to_string())
                );
            }
            Ok(())
        }
        PolicyCommand::History { tenant, format } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let rows: Vec<_> = app
                .policy_history(&t)
                .await
                .map_err(|e| anyhow!("{}", e.message))?
                .iter()
                .map(|v| json!({ "version": v.version, "active": v.active, "created_at": v.created_at.to_rfc3339(), "created_by": v.created_by }))
                .collect();
            output::print(
                format,
                &["version", "active", "created_at", "created_by"],
                &rows,
            );
            Ok(())
        }
        PolicyCommand::Rollback { version, tenant } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            match app
                .rollback_policy(&t, version, &operator())
                .await
                .map_err(|e| anyhow!("{}", e.message))?
            {
                PolicyChange::Applied { .. } => println!(
                    "tenant {}: policy version {version} is active again",
                    t.name
                ),
                PolicyChange::AwaitingApproval(a) => print_awaiting(&t.name, &a),
            }
            Ok(())
        }
    }
}

fn print_awaiting(tenant: &str, a: &keyplane_core::Approval) {
    println!(
        "tenant {tenant}: the active policy puts {} under dual control; nothing changed yet.\n\
         approval {} requested by {}: {}\n\
         another administrator approves with `keyplane approval approve {}` (or in the admin API) before {}",
        a.action,
        a.id,
        a.requested_by,
        a.summary,
        a.id,
        a.expires_at.to_rfc3339()
    );
}
