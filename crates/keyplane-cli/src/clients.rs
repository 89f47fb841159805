//! `keyplane client …`: machine clients (admin API tokens, SCIM tokens, OIDC clients and webhook endpoints). The same services as the admin API,
//! acting as the operator (`cli:<login>`). Secrets are printed to stdout once, never logged.

use crate::commands::{find_user, open, operator, tenant_or_default};
use crate::output::{self, Format};
use anyhow::anyhow;
use clap::Subcommand;
use keyplane_core::{Error, MachineClientId, Secret};
use keyplane_server::api::admin::approval_json;
use keyplane_server::api::clients::client_json;
use keyplane_server::service::{ClientCreation, NewClient, OidcRegistration, WebhookRegistration};
use keyplane_server::Settings;
use serde_json::json;

// Parsed once per process: the size of the largest variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Create an admin API token (with --kind scim_token, a SCIM token; with --redirect-uri, an
    /// OpenID Connect client; with --webhook-url, a webhook endpoint) owned by an administrator;
    /// prints its secret once.
    Create {
        /// `api_token` (the admin API) or `scim_token` (/scim/v2; needs --scope users.manage).
        #[arg(long, default_value = "api_token")]
        kind: String,
        /// What it is for (1-64 characters).
        #[arg(long)]
        name: String,
        /// The username of the administrator accountable for it.
        #[arg(long)]
        owner: String,
        /// A permission it may use, e.g. users.read (repeatable; at least one for an API token,
        /// none for an OIDC client).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Makes it an OIDC client: a redirect URI it may receive codes at (repeatable; exact
        /// match; https, or http to localhost).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// An OIDC client's URI to return to after signing out (repeatable).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// An OIDC client's token endpoint authentication: client_secret_basic (default),
        /// client_secret_post or private_key_jwt.
        #[arg(long)]
        auth_method: Option<String>,
        /// A file with the OIDC client's public JWK Set (for private_key_jwt).
        #[arg(long)]
        jwks_file: Option<std::path::PathBuf>,
        /// An OIDC scope it may ask for (repeatable; default openid profile email).
        #[arg(long = "oidc-scope")]
        oidc_scopes: Vec<String>,
        /// Makes it a webhook endpoint: the URL Keyplane POSTs signed events to (https, or http
        /// to localhost). Prints the signing secret (`whsec_…`) once.
        #[arg(long, conflicts_with = "redirect_uris")]
        webhook_url: Option<String>,
        /// An event type the webhook endpoint subscribes to (repeatable; see docs/webhooks.md).
        #[arg(long = "event")]
        events: Vec<String>,
        /// Lifetime in days (default 90, at most the policy's governance.client_max_days).
        #[arg(long)]
        expires_days: Option<i64>,
        #[arg(long)]
        tenant: Option<String>,
        /// `json` prints {"client", "secret"} (or {"approval"}) for scripts.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List machine clients (newest first) with their status and findings.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Issue a new secret; the previous one keeps working for the overlap.
    Rotate {
        id: String,
        /// Hours the previous secret keeps working (default 24, 0 to 168).
        #[arg(long)]
        overlap_hours: Option<i64>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a client: its secrets stop working at once.
    Revoke {
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn failed(e: Error) -> anyhow::Error {
    anyhow!("{} ({})", e.message, e.code)
}

fn client_id(raw: &str) -> anyhow::Result<MachineClientId> {
    MachineClientId::parse(raw).ok_or_else(|| anyhow!("{raw:?} is not a machine client id"))
}

fn print_secret(secret: &Secret) {
    println!("secret (shown once; store it now, Keyplane keeps only its hash):");
    println!();
    println!("    {}", secret.expose());
    println!();
}

const COLUMNS: &[&str] = &[
    "id",
    "name",
    "kind",
    "owner_username",
    "scopes",
    "status",
    "expires_at",
    "last_used_at",
    "rotated_at",
    "findings",
];

pub async fn run(settings: Settings, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Create {
            kind,
            name,
            owner,
            scopes,
            redirect_uris,
            post_logout_redirect_uris,
            auth_method,
            jwks_file,
            oidc_scopes,
            webhook_url,
            events,
            expires_days,
            tenant,
            format,
        } => {
            let webhook = match webhook_url {
                Some(url) => Some(WebhookRegistration {
                    url,
                    event_types: events,
                }),
                None if !events.is_empty() => {
                    return Err(anyhow!("--event needs --webhook-url"));
                }
                None => None,
            };
            let oidc = if redirect_uris.is_empty() {
                if auth_method.is_some()
                    || jwks_file.is_some()
                    || !oidc_scopes.is_empty()
                    || !post_logout_redirect_uris.is_empty()
                {
                    return Err(anyhow!("the OIDC options need at least one --redirect-uri"));
                }
                None
            } else {
                let jwks = match jwks_file {
                    Some(path) => Some(
                        serde_json::from_str(
                            &std::fs::read_to_string(&path)
                                .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?,
                        )
                        .map_err(|e| anyhow!("{} is not JSON: {e}", path.display()))?,
                    ),
                    None => None,
                };
                Some(OidcRegistration {
                    redirect_uris,
                    post_logout_redirect_uris,
                    token_endpoint_auth_method: auth_method,
                    jwks,
                    scopes: (!oidc_scopes.is_empty()).then_some(oidc_scopes),
                })
            };
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let owner = find_user(&app, &t, &owner).await?;
            let new = NewClient {
                kind: match (&oidc, &webhook) {
                    (Some(_), _) => "oidc_client".into(),
                    (_, Some(_)) => "webhook".into(),
                    _ => kind,
                },
                name,
                owner: owner.id,
                scopes,
                expires_days,
                oidc,
                webhook,
            };
            match app
                .create_client(&t, new, &operator())
                .await
                .map_err(failed)?
            {
                ClientCreation::Created { client, secret } => match format {
                    Format::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &json!({ "client": client_json(&client), "secret": secret.expose() })
                        )?
                    ),
                    Format::Table => {
                        let c = &client.client;
                        println!(
                            "created machine client {} ({:?}, {}) owned by {}, scopes {}, expires {}",
                            c.id,
                            c.name,
                            c.kind.as_str(),
                            owner.username,
                            c.scopes
                                .iter()
                                .map(|p| p.as_str())
                                .collect::<Vec<_>>()
                                .join(" "),
                            c.expires_at.to_rfc3339()
                        );
                        print_secret(&secret);
                    }
                },
                ClientCreation::AwaitingApproval(a) => match format {
                    Format::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&json!({ "approval": approval_json(&a) }))?
                    ),
                    Format::Table => println!(
                        "the policy puts clients.create under dual control: nothing created yet.\n\
                         Request {} waits for another administrator (keyplane approval approve {}).\n\
                         Once approved, you obtain the first secret with: keyplane client rotate <client id>",
                        a.id, a.id
                    ),
                },
            }
            Ok(())
        }
        ClientCommand::List { tenant, format } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let rows: Vec<_> = app
                .list_clients(&t)
                .await
                .map_err(failed)?
                .iter()
                .map(client_json)
                .collect();
            output::print(format, COLUMNS, &rows);
            Ok(())
        }
        ClientCommand::Rotate {
            id,
            overlap_hours,
            tenant,
            format,
        } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let (c, secret) = app
                .rotate_client(&t, &client_id(&id)?, overlap_hours, &operator())
                .await
                .map_err(failed)?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({ "client": client_json(&c), "secret": secret.expose() })
                    )?
                ),
                Format::Table => {
                    match c
                        .client
                        .previous_hash
                        .as_ref()
                        .and(c.client.previous_expires_at)
                    {
                        Some(until) => println!(
                            "rotated {}: the previous secret works until {}",
                            c.client.id,
                            until.to_rfc3339()
                        ),
                        None => println!("issued the first secret of {}", c.client.id),
                    }
                    print_secret(&secret);
                }
            }
            Ok(())
        }
        ClientCommand::Revoke { id, reason, tenant } => {
            let app = open(settings).await?;
            let t = tenant_or_default(&app, tenant.as_deref()).await?;
            let c = app
                .revoke_client(&t, &client_id(&id)?, &reason, &operator())
                .await
                .map_err(failed)?;
            println!(
                "revoked {} ({:?}): its secrets no longer work",
                c.client.id, c.client.name
            );
            Ok(())
        }
    }
}
