//! Application services: the operations Keyplane offers, each a function of [`App`]. HTTP
//! handlers and CLI commands call these and nothing below them.

mod account;
mod approvals;
mod audit;
mod audit_pages;
mod bulk;
mod campaigns;
mod cases;
mod catalogue;
mod clients;
mod credentials;
mod exceptions;
mod lifecycle;
mod lost;
mod notifications;
pub mod oidc;
mod oidc_client_auth;
mod policy;
mod recovery;
mod registration;
mod reports;
mod scim;
mod signin;
mod stepup;
mod tenants;
mod webhooks;

pub use account::*;
pub use approvals::*;
pub use audit::*;
pub use bulk::*;
pub use campaigns::*;
pub use cases::*;
pub use catalogue::*;
pub use clients::*;
pub use credentials::PasskeyRecommendation;
pub use exceptions::*;
pub use lifecycle::*;
pub use lost::*;
pub use notifications::*;
pub use oidc::{AuthorizeOutcome, AuthorizeQuery, TokenGrant, TokenResponse};
pub use oidc_client_auth::ClientCredentials;
pub use policy::*;
pub use recovery::*;
pub use registration::*;
pub use reports::*;
pub use scim::*;
pub use signin::*;
pub use stepup::*;
pub use tenants::*;
pub use webhooks::spawn_webhook_worker;

use crate::config::Settings;
use keyplane_core::{Clock, Error, Tenant};
use keyplane_store::Store;
use keyplane_webauthn::{RelyingParty, RpConfig};
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs: storage, the clock, the settings and the audit signing keys.
pub struct App {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub keyring: std::sync::RwLock<crate::audit_keys::Keyring>,
    /// This node's ID-token signing key (the OpenID Connect provider).
    pub oidc_signer: crate::oidc_keys::OidcSigner,
    /// The signing key's `kid` this process last published to the database.
    oidc_published: std::sync::Mutex<Option<String>>,
    /// The webhook key, read (or created) on first use.
    webhook_key: std::sync::OnceLock<Vec<u8>>,
    /// Set when the node is shutting down: `/readyz` answers 503 from then on.
    pub draining: std::sync::atomic::AtomicBool,
    failure_limiter: audit::FailureLimiter,
    policy_cache: policy::PolicyCache,
    catalogue_cache: catalogue::CatalogueCache,
    /// Ceremony requests per client address (`rate_limits.per_address_per_minute`).
    pub address_limiter: crate::ratelimit::RateLimiter,
    /// Username-first sign-in starts per username (`rate_limits.per_account_per_minute`).
    account_limiter: crate::ratelimit::RateLimiter,
    /// Recovery attempts per client address and per username (per hour).
    recovery_address_limiter: crate::ratelimit::RateLimiter,
    recovery_account_limiter: crate::ratelimit::RateLimiter,
    /// The notification sinks, built on first delivery (their secrets are read from files then,
    /// so commands that never deliver do not need them).
    sinks: tokio::sync::OnceCell<Arc<crate::notify::Sinks>>,
    /// The HTTP client of webhook deliveries, built on first delivery and kept, so that its
    /// connections are reused from one pass to the next.
    webhook_http: tokio::sync::OnceCell<reqwest::Client>,
}

impl App {
    /// Opens (on first use, creates) the checkpoint key ring in the configured directory.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Result<Arc<Self>, Error> {
        let keyring = crate::audit_keys::Keyring::open_or_create(&settings.audit_key_dir())?;
        let oidc_signer = crate::oidc_keys::OidcSigner::open_or_create(&settings.oidc_key_dir())?;
        let failure_limiter = audit::FailureLimiter::new(settings.audit.failure_events_per_minute);
        let address_limiter = crate::ratelimit::RateLimiter::new(
            settings.rate_limits.per_address_per_minute,
            "requests from this address",
        );
        let account_limiter = crate::ratelimit::RateLimiter::new(
            settings.rate_limits.per_account_per_minute,
            "sign-in attempts for this account",
        );
        let hour = Duration::from_secs(3600);
        let recovery_address_limiter = crate::ratelimit::RateLimiter::per_window(
            settings.rate_limits.recovery_per_address_per_hour,
            hour,
            "recovery attempts from this address",
        );
        let recovery_account_limiter = crate::ratelimit::RateLimiter::per_window(
            settings.rate_limits.recovery_per_account_per_hour,
            hour,
            "recovery attempts for this account",
        );
        Ok(Arc::new(App {
            store,
            clock,
            settings,
            keyring: std::sync::RwLock::new(keyring),
            oidc_signer,
            oidc_published: std::sync::Mutex::new(None),
            webhook_key: std::sync::OnceLock::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            failure_limiter,
            policy_cache: policy::PolicyCache::default(),
            catalogue_cache: catalogue::CatalogueCache::default(),
            address_limiter,
            account_limiter,
            recovery_address_limiter,
            recovery_account_limiter,
            sinks: tokio::sync::OnceCell::new(),
            webhook_http: tokio::sync::OnceCell::new(),
        }))
    }

    /// The relying party of a tenant. Cheap to build; built per ceremony so that a tenant's
    /// settings changed on another node take effect at once.
    pub(crate) fn relying_party(&self, tenant: &Tenant) -> Result<RelyingParty, Error> {
        RelyingParty::new(&RpConfig {
            rp_id: tenant.rp_id.clone(),
            rp_name: tenant.rp_name.clone(),
            origins: tenant.origins.clone(),
            timeout: Duration::from_secs(
                u64::try_from(self.settings.ceremony_ttl_secs).unwrap_or(300),
            ),
        })
    }
}

/// Housekeeping, once a minute on every node: deletes expired ceremonies and OIDC grants, and per
/// tenant expired sessions and invitations (recording `maintenance.purged`); signs each tenant's
/// chain head every `audit.checkpoint_interval_secs`. Every step is idempotent, so nodes need not agree.
pub fn spawn_janitor(app: Arc<App>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        let mut last_checkpoint = std::time::Instant::now();
        loop {
            tick.tick().await;
            if let Err(e) = app.purge_expired().await {
                tracing::warn!(error = %e, "could not purge expired rows");
            }
            match app.store.list_tenants().await {
                Ok(tenants) => {
                    for t in tenants {
                        if let Err(e) = app.exception_housekeeping(&t).await {
                            tracing::warn!(tenant = %t.name, error = %e, "could not announce or expire exceptions");
                        }
                        if let Err(e) = app.advance_recovery_cases(&t).await {
                            tracing::warn!(tenant = %t.name, error = %e, "could not move recovery cases on");
                        }
                        if let Err(e) = app.announce_expiring_clients(&t).await {
                            tracing::warn!(tenant = %t.name, error = %e, "could not announce expiring machine clients");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not list tenants"),
            }
            let every = app.settings.audit.checkpoint_interval_secs;
            if every > 0 && last_checkpoint.elapsed() >= Duration::from_secs(every) {
                last_checkpoint = std::time::Instant::now();
                if let Err(e) = app.checkpoint_all().await {
                    tracing::warn!(error = %e, "could not sign audit checkpoints");
                }
            }
        }
    })
}
