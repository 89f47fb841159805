//! Application services: the operations Keyplane offers, each a function of [`App`]. HTTP
//! handlers and CLI commands call these and nothing below them.

mod credentials;
mod registration;
mod signin;
mod tenants;

pub use registration::*;
pub use signin::*;
pub use tenants::*;

use crate::config::Settings;
use keyplane_core::{Clock, Error, Tenant};
use keyplane_store::Store;
use keyplane_webauthn::{RelyingParty, RpConfig};
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs: storage, the clock and the settings.
pub struct App {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
}

impl App {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Arc<Self> {
        Arc::new(App {
            store,
            clock,
            settings,
        })
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

/// Deletes expired ceremonies, sessions and invitations once a minute. Any node may run it; the
/// deletes are idempotent.
pub fn spawn_janitor(app: Arc<App>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = app.clock.now();
            let purged = match app.store.purge_expired_ceremonies(now).await {
                Ok(n) => app
                    .store
                    .purge_expired_sessions_and_enrolments(now)
                    .await
                    .map(|m| n + m),
                Err(e) => Err(e),
            };
            match purged {
                Ok(n) if n > 0 => tracing::debug!(
                    purged = n,
                    "expired ceremonies, sessions and invitations removed"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not purge expired rows"),
            }
        }
    })
}
