//! The subcommands. Each opens the configured database (running migrations) and calls a service.

use crate::output::{self, Format};
use crate::{config, Cli, Command};
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use keyplane_core::audit::Caller;
use keyplane_core::{SystemClock, Tenant};
use keyplane_server::api::types::{credential_json, user_json};
use keyplane_server::service::NewTenant;
use keyplane_server::{App, Settings};
use keyplane_store::SqlStore;
use serde_json::json;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides `listen`).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Short unique name (a-z, 0-9, '-').
        name: String,
        /// WebAuthn RP ID: the domain passkeys are bound to.
        #[arg(long)]
        rp_id: String,
        /// Allowed origin(s), e.g. https://login.example.com (repeatable).
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
        /// Host name(s) that route requests to this tenant (repeatable; default: the RP ID).
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
        /// Name shown by authenticators (default: the tenant name).
        #[arg(long)]
        rp_name: Option<String>,
    },
    /// List tenants.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Invite a user to enrol a passkey; prints a one-time link (creates the user if needed).
    Invite {
        username: String,
        /// Tenant name (default: the default tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Administrative role to give a new user (e.g. owner).
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// List a tenant's users.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Replace a user's populations (each must be declared by the active policy).
    SetPopulations {
        username: String,
        /// A population (repeatable; none = no population).
        #[arg(long = "population")]
        populations: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show one user and their passkeys.
    Show {
        username: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Suspend a user: every session ends at once (audited).
    Suspend(UserActionArgs),
    /// Make a suspended or deprovisioned user active again (revoked passkeys stay revoked).
    Reactivate(UserActionArgs),
    /// Deprovision a user: sessions end; passkeys are revoked or kept per governance.deprovision.
    Deprovision(UserActionArgs),
    /// End the user's sessions; their next sign-in may only register a compliant passkey.
    ReEnrol(UserActionArgs),
    /// Invalidate all of a user's unused recovery codes (audited: recovery.codes_revoked).
    RecoveryCodes {
        username: String,
        /// Required: revoking is the only action so far.
        #[arg(long, required = true)]
        revoke: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Give a user a role (owner, admin, helpdesk, auditor) or, with --none, take it away.
    SetRole {
        username: String,
        #[arg(required_unless_present = "none")]
        role: Option<String>,
        #[arg(long)]
        none: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Set the verified contact address notifications are emailed to, or with --clear remove
    /// it (audited: user.contact_changed).
    SetContact {
        username: String,
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        email: Option<String>,
        #[arg(long)]
        clear: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct UserActionArgs {
    pub username: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(clap::Args)]
pub struct CredentialActionArgs {
    /// The credential's id (`keyplane credential list`).
    pub id: String,
    /// Why (recorded on the credential and in the audit log).
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// List a tenant's passkeys, or one user's.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only this user's passkeys.
        #[arg(long)]
        user: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Suspend a passkey (its sessions end).
    Suspend(CredentialActionArgs),
    /// Make a suspended passkey usable again.
    Reactivate(CredentialActionArgs),
    /// Revoke a passkey for good (its sessions end).
    Revoke(CredentialActionArgs),
    /// Mark a passkey lost: revoked, its sessions end, the user is told; with no other active
    /// passkey left, the user must re-enrol.
    Lost(CredentialActionArgs),
    /// Bulk actions over passkeys chosen by a filter.
    #[command(subcommand)]
    Bulk(crate::manage::BulkCommand),
    /// Show what Keyplane sees in a captured registration or authentication response (WebAuthn
    /// JSON, a HAR capture or a log line): decoded fields, checks and the server's verdict.
    Inspect(Box<crate::inspect::InspectArgs>),
}

/// The stores this command opened, closed when it ends ([`close_stores`]).
static OPENED: std::sync::Mutex<Vec<SqlStore>> = std::sync::Mutex::new(Vec::new());

/// Closes every store this command opened, waiting at most 5 s. Closing the last connection to
/// a SQLite database checkpoints its write-ahead log into the database file and removes the
/// log, so a stopped Keyplane leaves one self-contained `keyplane.db` (a copy of that file alone
/// is complete). Nothing is lost without it (the next start replays the log); this is tidiness
/// for operators who copy files.
pub async fn close_stores() {
    let stores = std::mem::take(&mut *OPENED.lock().unwrap_or_else(|e| e.into_inner()));
    for store in stores {
        if tokio::time::timeout(std::time::Duration::from_secs(5), store.close())
            .await
            .is_err()
        {
            tracing::warn!("a database connection was still busy at exit; not waiting for it");
        }
    }
}

pub(crate) async fn open(settings: Settings) -> anyhow::Result<Arc<App>> {
    let url = settings.database_url();
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path
            .split('?')
            .next()
            .unwrap_or(path)
            .trim_start_matches("//");
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        }
    }
    let store =
        SqlStore::connect_with(&url, settings.max_connections(), settings.acquire_timeout())
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot open database {}: {e}",
                    keyplane_store::redact_url(&url)
                )
            })?;
    OPENED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(store.clone());
    App::new(Arc::new(store), Arc::new(SystemClock), settings).map_err(|e| anyhow!("{}", e.message))
}

/// The operator running this command, as the audit log names them (`cli:<login>`).
pub(crate) fn operator() -> Caller {
    let login = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .unwrap_or_else(|| "unknown".into());
    Caller::operator(&login)
}

pub(crate) async fn tenant_or_default(app: &App, name: Option<&str>) -> anyhow::Result<Tenant> {
    let name = name.unwrap_or(&app.settings.default_tenant.name);
    app.tenant_named(name)
        .await
        .map_err(|e| anyhow!("{}", e.message))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = config::load(&cli)?;
    match cli.command {
        Command::Serve(args) => serve(settings, args).await,
        Command::Audit(cmd) => crate::audit::run(settings, cmd).await,
        Command::Policy(cmd) => crate::policy::run(settings, cmd).await,
        Command::Mds(cmd) => crate::mds::run(settings, cmd).await,
        Command::Approval(cmd) => crate::approval::run(settings, cmd).await,
        Command::Client(cmd) => crate::clients::run(settings, cmd).await,
        Command::Oidc(cmd) => crate::oidc::run(settings, cmd).await,
        Command::Webhook(cmd) => crate::webhook::run(settings, cmd).await,
        Command::Migrate { from, to } => crate::migrate::run(settings, from, to).await,
        Command::Doctor { format } => crate::doctor::run(settings, format).await,
        Command::Backup { file } => crate::backup::backup(settings, file).await,
        Command::Restore { file, trusted_keys } => {
            crate::backup::restore(settings, file, trusted_keys).await
        }
        Command::Fraud(cmd) => crate::manage::fraud(settings, cmd).await,
        Command::Case(cmd) => crate::cases::run(settings, cmd).await,
        Command::Exception(cmd) => crate::manage::exception(settings, cmd).await,
        Command::Report {
            name,
            days,
            format,
            tenant,
        } => crate::manage::report(settings, &name, days, format, tenant.as_deref()).await,
        Command::User(UserCommand::Suspend(a)) => {
            crate::manage::user_action(
                settings,
                "suspend",
                &a.username,
                &a.reason,
                a.tenant.as_deref(),
            )
            .await
        }
        Command::User(UserCommand::Reactivate(a)) => {
            crate::manage::user_action(
                settings,
                "reactivate",
                &a.username,
                &a.reason,
                a.tenant.as_deref(),
            )
            .await
        }
        Command::User(UserCommand::Deprovision(a)) => {
            crate::manage::user_action(
                settings,
                "deprovision",
                &a.username,
                &a.reason,
                a.tenant.as_deref(),
            )
            .await
        }
        Command::User(UserCommand::ReEnrol(a)) => {
            crate::manage::user_action(
                settings,
                "re-enrol",
                &a.username,
                &a.reason,
                a.tenant.as_deref(),
            )
            .await
        }
        Command::User(UserCommand::RecoveryCodes {
            username,
            revoke: _,
            tenant,
        }) => crate::manage::revoke_recovery_codes(settings, &username, tenant.as_deref()).await,
        Command::User(UserCommand::SetRole {
            username,
            role,
            none,
            tenant,
        }) => {
            let role = if none { None } else { role };
            crate::manage::set_role(settings, &username, role.as_deref(), tenant.as_deref()).await
        }
        Command::User(UserCommand::SetContact {
            username,
            email,
            clear,
            tenant,
        }) => {
            let email = if clear { None } else { email };
            crate::manage::set_contact(settings, &username, email.as_deref(), tenant.as_deref())
                .await
        }
        Command::Notifications(cmd) => crate::manage::notifications(settings, cmd).await,
        Command::Credential(CredentialCommand::Suspend(a)) => {
            crate::manage::credential_action(
                settings,
                "suspend",
                &a.id,
                &a.reason,
                a.tenant.as_deref(),
            )
            .await
        }
        Command::Credential(CredentialCommand::Reactivate(a)) => {
            crate::manage::credential_action(
                settings,
                "reactivate",
                &a.id,
                &a.reason,
                a.tenant.as_deref(),
            )
            .await
        }
        Command::Credential(CredentialCommand::Revoke(a)) => {
            crate::manage::credential_action(
                settings,
                "revoke",
                &a.id,
                &a.reason,
                a.tenant.as_deref(),
            )
            .await
        }
        Command::Credential(CredentialCommand::Lost(a)) => {
            crate::campaign::lost(settings, &a.id, &a.reason, a.tenant.as_deref()).await
        }
        Command::Campaign(cmd) => crate::campaign::run(settings, cmd).await,
        Command::Credential(CredentialCommand::Inspect(args)) => {
            crate::inspect::run(settings, *args).await
        }
        Command::Credential(CredentialCommand::Bulk(cmd)) => {
            crate::manage::bulk(settings, cmd).await
        }
        Command::Tenant(TenantCommand::Create {
            name,
            rp_id,
            origins,
            hostnames,
            rp_name,
        }) => {
            let app = open(settings).await?;
            let hostnames = if hostnames.is_empty() {
                vec![rp_id.clone()]
            } else {
                hostnames
            };
            let t = app
                .create_tenant(
                    NewTenant {
                        rp_name: rp_name.unwrap_or_else(|| name.clone()),
                        name,
                        rp_id,
                        origins,
                        hostnames,
                    },
                    &operator(),
                )
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            println!(
                "created tenant {} (RP ID {}, origins {})",
                t.name,
                t.rp_id,
                t.origins.join(", ")
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::List { format }) => {
            let app = open(settings).await?;
            let rows: Vec<_> = app
                .store
                .list_tenants()
                .await?
                .iter()
                .map(|t| json!({"name": t.name, "rp_id": t.rp_id, "origins": t.origins, "hostnames": t.hostnames, "id": t.id, "created_at": t.created_at.to_rfc3339()}))
                .collect();
            output::print(
                format,
                &["name", "rp_id", "origins", "hostnames", "created_at"],
                &rows,
            );
            Ok(())
        }
        Command::Admin(AdminCommand::Invite {
            username,
            tenant,
            display_name,
            role,
        }) => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let inv = app
                .invite(
                    &t,
                    &username,
                    display_name.as_deref(),
                    role.as_deref(),
                    &operator(),
                )
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            println!(
                "Enrolment link for {} in tenant {} (single use, expires {}):",
                inv.user.username,
                t.name,
                inv.enrolment.expires_at.to_rfc3339()
            );
            println!("  {}", inv.link);
            println!("Token for API clients (POST /api/v1/registration/options {{\"enrolment_token\": …}}):");
            println!("  {}", inv.token.expose());
            Ok(())
        }
        Command::User(UserCommand::List { tenant, format }) => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let creds = app.store.list_credentials(&t.id, None).await?;
            let rows: Vec<_> = app
                .store
                .list_users(&t.id)
                .await?
                .iter()
                .map(|u| {
                    let mut v = user_json(u);
                    v["passkeys"] = json!(creds
                        .iter()
                        .filter(|c| c.user_id == u.id
                            && c.status == keyplane_core::CredentialStatus::Active)
                        .count());
                    v["created_at"] = json!(u.created_at.to_rfc3339());
                    v
                })
                .collect();
            output::print(
                format,
                &[
                    "username",
                    "display_name",
                    "status",
                    "role",
                    "passkeys",
                    "created_at",
                ],
                &rows,
            );
            Ok(())
        }
        Command::User(UserCommand::SetPopulations {
            username,
            populations,
            tenant,
        }) => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let u = find_user(&app, &t, &username).await?;
            app.set_populations(&t, &u, &populations, &operator())
                .await
                .map_err(|e| anyhow!("{}", e.message))?;
            println!(
                "{} is in: {}",
                u.username,
                if populations.is_empty() {
                    "no population".into()
                } else {
                    populations.join(", ")
                }
            );
            Ok(())
        }
        Command::User(UserCommand::Show {
            username,
            tenant,
            format,
        }) => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let u = find_user(&app, &t, &username).await?;
            let catalogue = app.catalogue().await?;
            let creds: Vec<_> = app
                .store
                .list_credentials(&t.id, Some(&u.id))
                .await?
                .iter()
                .map(|c| with_model(credential_json(c, &catalogue)))
                .collect();
            match format {
                Format::Json => {
                    let mut v = user_json(&u);
                    v["created_at"] = json!(u.created_at.to_rfc3339());
                    v["credentials"] = json!(creds);
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Format::Table => {
                    println!("username:     {}\ndisplay name: {}\nstatus:       {}\nrole:         {}\ncontact:      {}\ncreated:      {}\nid:           {}\n",
                        u.username, u.display_name, u.status.as_str(), u.role.as_deref().unwrap_or("-"), u.contact_email.as_deref().unwrap_or("-"), u.created_at.to_rfc3339(), u.id);
                    output::print(
                        format,
                        &[
                            "id",
                            "nickname",
                            "status",
                            "model",
                            "aaguid",
                            "backup_eligible",
                            "created_at",
                            "last_used_at",
                        ],
                        &creds,
                    );
                }
            }
            Ok(())
        }
        Command::Credential(CredentialCommand::List {
            tenant,
            user,
            format,
        }) => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let users = app.store.list_users(&t.id).await?;
            let filter = match &user {
                Some(name) => Some(find_user(&app, &t, name).await?.id),
                None => None,
            };
            let catalogue = app.catalogue().await?;
            let rows: Vec<_> = app
                .store
                .list_credentials(&t.id, filter.as_ref())
                .await?
                .iter()
                .map(|c| {
                    let mut v = with_model(credential_json(c, &catalogue));
                    v["user"] = json!(users
                        .iter()
                        .find(|u| u.id == c.user_id)
                        .map(|u| u.username.clone()));
                    v
                })
                .collect();
            output::print(
                format,
                &[
                    "id",
                    "user",
                    "nickname",
                    "status",
                    "model",
                    "aaguid",
                    "attestation_format",
                    "backup_eligible",
                    "last_used_at",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

pub(crate) async fn find_user(
    app: &App,
    t: &Tenant,
    username: &str,
) -> anyhow::Result<keyplane_core::User> {
    let name = keyplane_core::normalise_username(username).map_err(|e| anyhow!("{}", e.message))?;
    app.store
        .user_by_username(&t.id, &name)
        .await?
        .ok_or_else(|| anyhow!("no user {name:?} in tenant {}", t.name))
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYPLANE_LOG")
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "pretty" {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    }
}

async fn serve(mut settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    init_logging(&settings.log_format);
    let listen = settings.listen;
    // The notification sinks read their secrets from files: a missing one stops the start here
    // rather than failing every delivery later.
    keyplane_server::notify::Sinks::from_settings(&settings)
        .map_err(|e| anyhow!("notifications: {}", e.message))?;
    let app = open(settings).await?;
    if let Some(inv) = app
        .bootstrap()
        .await
        .map_err(|e| anyhow!("{}", e.message))?
    {
        // Printed to stdout for the operator, never logged: the link is a credential.
        println!();
        println!(
            "Keyplane is set up. Enrol the first administrator ({}) within {} hours:",
            inv.user.username,
            app.settings.enrolment_ttl_secs / 3600
        );
        println!();
        println!("    {}", inv.link);
        println!();
        println!(
            "API clients: POST /api/v1/registration/options with {{\"enrolment_token\": \"{}\"}}",
            inv.token.expose()
        );
        println!("A new link: keyplane admin invite admin");
        println!();
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let server = keyplane_server::spawn(app.clone(), listener).await?;
    let stop = shutdown_signal();
    if let Some(config) = server.tls.clone() {
        reload_tls_on_sighup(config, app.settings.tls.clone());
    }
    let scheme = if server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(addr = %server.addr, database = app.store.backend().as_str(), scheme, "keyplane listening");
    eprintln!(
        "Keyplane listening on {scheme}://{} ({} database)",
        server.addr,
        app.store.backend().as_str()
    );
    stop.await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await?;
    Ok(())
}

/// On SIGHUP, reads the TLS certificate and key again (a renewed certificate takes effect without
/// a restart; connections already open keep theirs). A file that does not load leaves the
/// served certificate as it was, and says so.
fn reload_tls_on_sighup(
    config: axum_server::tls_rustls::RustlsConfig,
    tls: keyplane_server::config::TlsSettings,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the TLS certificate reloads only on restart");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match config
                    .reload_from_pem_file(&tls.cert_file, &tls.key_file)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert_file.display(), "TLS certificate reloaded");
                        eprintln!("TLS certificate reloaded from {}", tls.cert_file.display());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; serving the previous certificate");
                        eprintln!("TLS reload failed ({e}); serving the previous certificate");
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = (config, tls);
    }
}

/// Installs the SIGTERM and SIGINT handlers now (before the server announces itself, so a signal
/// sent right after the announcement is never lost to the default action) and returns the future
/// that completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Adds a flat `model` column (the authenticator's name, or `-`) for tables.
fn with_model(mut v: serde_json::Value) -> serde_json::Value {
    let name = v["authenticator"]["name"]
        .as_str()
        .unwrap_or("-")
        .to_string();
    v["model"] = json!(name);
    v
}
