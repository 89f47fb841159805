//! `keyplane`: the command-line entry point. `serve` runs the server; the other commands act on
//! the same database through the same services the HTTP API uses.

mod approval;
mod audit;
mod backup;
mod campaign;
mod cases;
mod clients;
mod commands;
mod config;
mod doctor;
mod inspect;
mod manage;
mod mds;
mod migrate;
mod oidc;
mod output;
mod policy;
mod webhook;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keyplane",
    version,
    about = "Keyplane: a self-hosted passkey control plane"
)]
pub struct Cli {
    /// TOML configuration file (settings in docs/configuration.md). KEYPLANE_* environment
    /// variables override it.
    #[arg(long, global = true, env = "KEYPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (default ./keyplane-data). Same as KEYPLANE_DATA_DIR.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite:PATH or postgres://… Same as KEYPLANE_DATABASE__URL.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (creates the database and a default tenant on first start).
    Serve(commands::ServeArgs),
    /// Manage tenants (authentication domains).
    #[command(subcommand)]
    Tenant(commands::TenantCommand),
    /// Administrative actions: invitations.
    #[command(subcommand)]
    Admin(commands::AdminCommand),
    /// Look at users.
    #[command(subcommand)]
    User(commands::UserCommand),
    /// Look at credentials (passkeys).
    #[command(subcommand)]
    Credential(commands::CredentialCommand),
    /// Policy as code: lint, show, apply, history, rollback.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The tamper-evident audit log: verify, checkpoint, export, keys.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Help-desk recovery cases: list, show, open, take, check, verified, review, send-link,
    /// deny, cancel.
    #[command(subcommand)]
    Case(cases::CaseCommand),
    /// Fraud alerts (e.g. cloned authenticators): list, resolve.
    #[command(subcommand)]
    Fraud(manage::FraudCommand),
    /// The notifications outbox: list, retry.
    #[command(subcommand)]
    Notifications(manage::NotificationsCommand),
    /// Exceptions to the policy: request (granted by a second administrator), list, revoke.
    #[command(subcommand)]
    Exception(manage::ExceptionCommand),
    /// Re-enrolment campaigns for an authenticator model: start, list, show, close.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// Reports: coverage, drift, exceptions, fraud, clients, controls, campaigns.
    Report {
        /// coverage, drift, exceptions, fraud, clients, controls or campaigns.
        name: String,
        /// Window in days (coverage sign-ins; exceptions expiring within).
        #[arg(long, default_value_t = 30)]
        days: i64,
        #[arg(long, value_enum, default_value_t)]
        format: manage::ReportFormat,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Dual control: list, approve or deny requests for a second administrator's approval.
    #[command(subcommand)]
    Approval(approval::ApprovalCommand),
    /// Machine clients (admin API tokens, OpenID Connect clients, webhook endpoints): create,
    /// list, rotate, revoke.
    #[command(subcommand)]
    Client(clients::ClientCommand),
    /// The OpenID Connect provider's signing keys: list, rotate.
    #[command(subcommand)]
    Oidc(oidc::OidcCommand),
    /// Check the deployment and say what is wrong: database and migrations, clock skew, each
    /// tenant's origins against its RP ID, keys, TLS, machine clients, MDS data age.
    Doctor {
        #[arg(long, value_enum, default_value_t)]
        format: output::Format,
    },
    /// Copy the SQLite database while the server runs (consistent, verified); PostgreSQL uses
    /// pg_dump.
    Backup {
        /// The backup file to write (must not exist).
        file: PathBuf,
    },
    /// Restore a backup into an empty data directory, after verifying its audit chain.
    Restore {
        file: PathBuf,
        /// Checkpoint public keys (hex, one per line) when the data directory has no
        /// audit-keys/ yet.
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
    },
    /// Move a deployment from SQLite to PostgreSQL: every tenant, user, passkey, policy, case,
    /// client and the whole audit chain; resumable; verified on the target.
    Migrate {
        /// The SQLite database: sqlite:PATH.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres://USER:PASSWORD@HOST/DB (created empty).
        #[arg(long)]
        to: String,
    },
    /// Webhook deliveries: list (pending, delivered, dead), replay a dead letter.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Authenticator metadata: import a FIDO MDS3 BLOB and passkey-provider names; show them.
    #[command(subcommand)]
    Mds(mds::MdsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let result = commands::run(cli).await;
        commands::close_stores().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
