//! Administration from the command line: user and credential lifecycle, bulk actions, fraud
//! alerts, exceptions and reports. The same service calls as the admin API; the actor is the
//! operator's OS login.

use crate::commands::{open, operator, tenant_or_default};
use crate::output::{self, Format};
use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use keyplane_core::{ExceptionSubject, Tenant};
use keyplane_server::service::{self, BulkStart, CredentialFilter, ExceptionRequest};
use keyplane_server::{App, Settings};
use serde_json::json;
use std::io::IsTerminal;

fn fail(e: keyplane_core::Error) -> anyhow::Error {
    anyhow!("{} ({})", e.message, e.code)
}

async fn user_id(app: &App, t: &Tenant, username: &str) -> anyhow::Result<keyplane_core::UserId> {
    let name = keyplane_core::normalise_username(username).map_err(fail)?;
    Ok(app
        .store
        .user_by_username(&t.id, &name)
        .await?
        .ok_or_else(|| anyhow!("no user {name:?} in tenant {}", t.name))?
        .id)
}

/// `keyplane user suspend|reactivate|deprovision|re-enrol USERNAME --reason …`.
pub async fn user_action(
    settings: Settings,
    action: &str,
    username: &str,
    reason: &str,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let app = open(settings).await?;
    let t = tenant_or_default(&app, tenant).await?;
    let id = user_id(&app, &t, username).await?;
    let op = operator();
    let u = match action {
        "suspend" => app.suspend_user(&t, &id, reason, &op).await,
        "reactivate" => app.reactivate_user(&t, &id, reason, &op).await,
        "deprovision" => app.deprovision_user(&t, &id, reason, &op).await,
        _ => app.force_re_enrolment(&t, &id, reason, &op).await,
    }
    .map_err(fail)?;
    println!(
        "user {} is {}{}",
        u.username,
        u.status.as_str(),
        if u.re_enrol_reason.is_some() {
            "; re-enrolment required at next sign-in"
        } else {
            ""
        }
    );
    Ok(())
}

/// `keyplane user recovery-codes USERNAME --revoke`.
pub async fn revoke_recovery_codes(
    settings: Settings,
    username: &str,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let app = open(settings).await?;
    let t = tenant_or_default(&app, tenant).await?;
    let id = user_id(&app, &t, username).await?;
    let n = app
        .revoke_recovery_codes(&t, &id, &operator())
        .await
        .map_err(fail)?;
    println!("revoked {n} unused recovery code(s) of {username}");
    Ok(())
}

pub async fn set_role(
    settings: Settings,
    username: &str,
    role: Option<&str>,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let role = match role {
        Some(r) => Some(
            keyplane_core::admin::Role::parse(r)
                .ok_or_else(|| anyhow!("role is owner, admin, helpdesk or auditor"))?,
        ),
        None => None,
    };
    let app = open(settings).await?;
    let t = tenant_or_default(&app, tenant).await?;
    let id = user_id(&app, &t, username).await?;
    let u = app
        .set_role(&t, &id, role, &operator())
        .await
        .map_err(fail)?;
    println!(
        "user {} now has role {}",
        u.username,
        u.role.as_deref().unwrap_or("(none)")
    );
    Ok(())
}

/// `keyplane user set-contact USERNAME EMAIL|--clear`.
pub async fn set_contact(
    settings: Settings,
    username: &str,
    email: Option<&str>,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let app = open(settings).await?;
    let t = tenant_or_default(&app, tenant).await?;
    let id = user_id(&app, &t, username).await?;
    let u = app
        .set_contact(&t, &id, email, &operator())
        .await
        .map_err(fail)?;
    match &u.contact_email {
        Some(c) => println!("user {} now has contact {c}", u.username),
        None => println!(
            "user {} has no contact: email notifications are skipped",
            u.username
        ),
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum NotificationsCommand {
    /// List notifications, newest first.
    List {
        /// pending, sent, failed or skipped.
        #[arg(long)]
        status: Option<String>,
        /// Only this user's (username).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Put a failed or skipped notification back in the queue (audited: notification.retried);
    /// a running server's delivery worker sends it.
    Retry {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub async fn notifications(settings: Settings, cmd: NotificationsCommand) -> anyhow::Result<()> {
    match cmd {
        NotificationsCommand::List {
            status,
            user,
            limit,
            tenant,
            format,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(
                    keyplane_core::NotificationStatus::parse(s)
                        .ok_or_else(|| anyhow!("status is pending, sent, failed or skipped"))?,
                ),
            };
            if !(1..=1000).contains(&limit) {
                bail!("--limit must be between 1 and 1000");
            }
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let user = match user.as_deref() {
                None => None,
                Some(u) => Some(user_id(&app, &t, u).await?),
            };
            let list = app
                .list_notifications(
                    &t,
                    &keyplane_store::NotificationFilter {
                        status,
                        user,
                        limit,
                    },
                )
                .await
                .map_err(fail)?;
            let rows: Vec<_> = list
                .iter()
                .map(|n| {
                    json!({
                        "id": n.id,
                        "kind": n.kind,
                        "user_id": n.user_id,
                        "status": n.status.as_str(),
                        "attempts": n.attempts,
                        "created_at": n.created_at.to_rfc3339(),
                        "next_attempt_at": n.next_attempt_at.to_rfc3339(),
                        "sent_at": n.sent_at.map(|t| t.to_rfc3339()),
                        "last_error": n.last_error,
                        "deliveries": n.deliveries,
                    })
                })
                .collect();
            output::print(
                format,
                &[
                    "id",
                    "kind",
                    "user_id",
                    "status",
                    "attempts",
                    "created_at",
                    "last_error",
                ],
                &rows,
            );
            Ok(())
        }
        NotificationsCommand::Retry { id, tenant } => {
            let id = keyplane_core::NotificationId::parse(&id)
                .ok_or_else(|| anyhow!("{id:?} is not a notification id"))?;
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let n = app
                .retry_notification(&t, &id, &operator())
                .await
                .map_err(fail)?;
            println!("notification {} is pending again", n.id);
            Ok(())
        }
    }
}

/// `keyplane credential suspend|reactivate|revoke ID --reason …`.
pub async fn credential_action(
    settings: Settings,
    action: &str,
    id: &str,
    reason: &str,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let id = keyplane_core::CredentialRecordId::parse(id)
        .ok_or_else(|| anyhow!("{id:?} is not a credential id (see `keyplane credential list`)"))?;
    let app = open(settings).await?;
    let t = tenant_or_default(&app, tenant).await?;
    let op = operator();
    let c = match action {
        "suspend" => app.suspend_credential(&t, &id, reason, &op).await,
        "reactivate" => app.reactivate_credential(&t, &id, reason, &op).await,
        _ => app.revoke_credential(&t, &id, reason, &op).await,
    }
    .map_err(fail)?;
    println!("credential {} is {}", c.id, c.status.as_str());
    Ok(())
}

/// Which credentials a bulk action covers (every option given must match).
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// An AAGUID (repeatable).
    #[arg(long = "aaguid")]
    aaguids: Vec<String>,
    /// An authenticator model name, exact or `prefix*` (repeatable).
    #[arg(long = "model")]
    models: Vec<String>,
    /// `trusted`, `verified` or `none`.
    #[arg(long)]
    attestation: Option<String>,
    /// Only synced (backup-eligible) passkeys.
    #[arg(long, conflicts_with = "device_bound")]
    synced: bool,
    /// Only device-bound passkeys.
    #[arg(long)]
    device_bound: bool,
    /// Registered before this RFC 3339 time.
    #[arg(long)]
    created_before: Option<String>,
    /// Last used before this RFC 3339 time (never used counts).
    #[arg(long)]
    last_used_before: Option<String>,
    #[arg(long)]
    population: Option<String>,
    /// Only credentials the active policy no longer accepts.
    #[arg(long)]
    non_compliant: bool,
    /// One user's passkeys.
    #[arg(long)]
    user: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> CredentialFilter {
        CredentialFilter {
            aaguids: self.aaguids.clone(),
            models: self.models.clone(),
            attestation: self.attestation.clone(),
            synced: if self.synced {
                Some(true)
            } else if self.device_bound {
                Some(false)
            } else {
                None
            },
            created_before: self.created_before.clone(),
            last_used_before: self.last_used_before.clone(),
            population: self.population.clone(),
            status: None,
            non_compliant: self.non_compliant.then_some(true),
            username: self.user.clone(),
        }
    }
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum BulkCommand {
    /// Suspend, revoke or reactivate every matching passkey: first run with --dry-run (count
    /// and sample), then with --execute. Each credential is audited; an interrupted job resumes
    /// with `bulk resume`.
    Run {
        /// `suspend`, `revoke` or `reactivate`.
        action: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Why (recorded on every credential and in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
        /// Only count and show a sample.
        #[arg(long, conflicts_with = "execute")]
        dry_run: bool,
        /// Carry it out.
        #[arg(long)]
        execute: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Continue an interrupted job where it stopped.
    Resume {
        job: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List bulk jobs.
    Jobs {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

async fn run_job(app: &App, t: &Tenant, job: &keyplane_core::BulkJob) -> anyhow::Result<()> {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(job.total.max(0) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position(job.done.max(0) as u64);
    let done = app
        .bulk_run(
            t,
            &job.id,
            200,
            &|d, _| bar.set_position(d.max(0) as u64),
            &operator(),
        )
        .await
        .map_err(fail)?;
    bar.finish_and_clear();
    println!(
        "bulk job {} {}: {} credential(s) {}",
        done.id,
        done.status,
        done.done,
        match done.action.as_str() {
            "suspend" => "suspended",
            "revoke" => "revoked",
            _ => "reactivated",
        }
    );
    Ok(())
}

pub async fn bulk(settings: Settings, cmd: BulkCommand) -> anyhow::Result<()> {
    match cmd {
        BulkCommand::Run {
            action,
            filter,
            reason,
            dry_run,
            execute,
            tenant,
        } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let f = filter.filter();
            if dry_run || !execute {
                let p = app.bulk_preview(&t, &action, &f).await.map_err(fail)?;
                let done = match action.as_str() {
                    "suspend" => "suspended",
                    "revoke" => "revoked",
                    _ => "reactivated",
                };
                println!(
                    "dry run: {} credential(s) would be {done}{}",
                    p.count,
                    if p.count > 10 { "; a sample:" } else { ":" }
                );
                let rows: Vec<_> = p.sample.clone();
                output::print(
                    Format::Table,
                    &[
                        "id",
                        "nickname",
                        "status",
                        "aaguid",
                        "backup_eligible",
                        "created_at",
                    ],
                    &rows,
                );
                if !dry_run {
                    println!(
                        "nothing changed: run again with --execute (and --reason) to carry it out"
                    );
                }
                return Ok(());
            }
            match app
                .bulk_start(&t, &action, &f, &reason, &operator())
                .await
                .map_err(fail)?
            {
                BulkStart::Job(job) => run_job(&app, &t, &job).await,
                BulkStart::AwaitingApproval(a) => {
                    println!(
                        "bulk revoke is under dual control: approval {} requested ({}); another administrator approves with `keyplane approval approve {}`, then `keyplane credential bulk resume JOB` runs it",
                        a.id, a.summary, a.id
                    );
                    Ok(())
                }
            }
        }
        BulkCommand::Resume { job, tenant } => {
            let id = keyplane_core::BulkJobId::parse(&job)
                .ok_or_else(|| anyhow!("{job:?} is not a bulk job id"))?;
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let job = app.bulk_job(&t, &id).await.map_err(fail)?;
            run_job(&app, &t, &job).await
        }
        BulkCommand::Jobs { tenant, format } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let rows: Vec<_> = app
                .store
                .list_bulk_jobs(&t.id)
                .await?
                .iter()
                .map(|j| json!(j))
                .collect();
            output::print(
                format,
                &[
                    "id",
                    "action",
                    "status",
                    "done",
                    "total",
                    "reason",
                    "created_by",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum FraudCommand {
    /// List fraud alerts (newest first).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Resolve an open alert: revoke the credential, or reactivate it (a false alarm).
    Resolve {
        id: String,
        /// `revoke` or `reactivate`.
        #[arg(long)]
        resolution: String,
        #[arg(long)]
        note: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub async fn fraud(settings: Settings, cmd: FraudCommand) -> anyhow::Result<()> {
    match cmd {
        FraudCommand::List { tenant, format } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let rows: Vec<_> = app
                .list_fraud_alerts(&t)
                .await
                .map_err(fail)?
                .iter()
                .map(|a| json!(a))
                .collect();
            output::print(
                format,
                &[
                    "id",
                    "kind",
                    "status",
                    "user_id",
                    "credential_id",
                    "opened_at",
                    "resolution",
                ],
                &rows,
            );
            Ok(())
        }
        FraudCommand::Resolve {
            id,
            resolution,
            note,
            tenant,
        } => {
            let id = keyplane_core::FraudAlertId::parse(&id)
                .ok_or_else(|| anyhow!("{id:?} is not a fraud alert id"))?;
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let a = app
                .resolve_fraud_alert(&t, &id, &resolution, &note, &operator())
                .await
                .map_err(fail)?;
            println!("fraud alert {} resolved: {}", a.id, resolution);
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum ExceptionCommand {
    /// Ask for an exception to one rule; another administrator grants it with `keyplane
    /// approval approve`.
    Request {
        /// For this user...
        #[arg(
            long,
            conflicts_with = "population",
            required_unless_present = "population"
        )]
        user: Option<String>,
        /// ... or for this population.
        #[arg(long)]
        population: Option<String>,
        /// The rule path to waive, as decisions name it (e.g. authenticators.regulated.synced).
        #[arg(long)]
        rule: String,
        #[arg(long)]
        reason: String,
        /// How long, at most the policy's governance.exception_max_days.
        #[arg(long)]
        days: i64,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List exceptions (newest first).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// End an active exception now.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub async fn exception(settings: Settings, cmd: ExceptionCommand) -> anyhow::Result<()> {
    match cmd {
        ExceptionCommand::Request {
            user,
            population,
            rule,
            reason,
            days,
            tenant,
        } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let subject = match (user, population) {
                (Some(u), _) => ExceptionSubject::User(user_id(&app, &t, &u).await?),
                (None, Some(p)) => ExceptionSubject::Population(p),
                (None, None) => bail!("give --user or --population"),
            };
            let a = app
                .request_exception(
                    &t,
                    ExceptionRequest {
                        subject,
                        rule,
                        reason,
                        duration_days: days,
                    },
                    &operator(),
                )
                .await
                .map_err(fail)?;
            println!(
                "exception requested: approval {} ({}); another administrator grants it with `keyplane approval approve {}`",
                a.id, a.summary, a.id
            );
            Ok(())
        }
        ExceptionCommand::List { tenant, format } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let rows: Vec<_> = app
                .list_exceptions(&t)
                .await
                .map_err(fail)?
                .iter()
                .map(|e| {
                    let mut v = json!(e);
                    v["subject"] = json!(match &e.subject {
                        ExceptionSubject::User(u) => format!("user:{u}"),
                        ExceptionSubject::Population(p) => format!("population:{p}"),
                    });
                    v
                })
                .collect();
            output::print(
                format,
                &[
                    "id",
                    "subject",
                    "rule",
                    "status",
                    "expires_at",
                    "approved_by",
                    "reason",
                ],
                &rows,
            );
            Ok(())
        }
        ExceptionCommand::Revoke { id, reason, tenant } => {
            let id = keyplane_core::ExceptionId::parse(&id)
                .ok_or_else(|| anyhow!("{id:?} is not an exception id"))?;
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            app.revoke_exception(&t, &id, &reason, &operator())
                .await
                .map_err(fail)?;
            println!("exception {id} revoked");
            Ok(())
        }
    }
}

/// `keyplane report NAME [--days N] [--format table|json|csv]`.
pub async fn report(
    settings: Settings,
    name: &str,
    days: i64,
    format: ReportFormat,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let app = open(settings).await?;
    let t = tenant_or_default(&app, tenant).await?;
    let value = app.report(&t, name, days).await.map_err(fail)?;
    let (columns, rows) = service::report_rows(name, &value);
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        ReportFormat::Csv => print!("{}", service::csv(&columns, &rows)),
        ReportFormat::Table => print!("{}", output::table(&columns, &rows)),
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum ReportFormat {
    #[default]
    Table,
    Json,
    Csv,
}
