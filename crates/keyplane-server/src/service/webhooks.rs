//! Webhooks: the deployment's webhook key (signing secrets are derived from it, never stored),
//! the delivery worker (claim due outbox rows, POST them signed in the Standard Webhooks format,
//! then delivered, retried with back-off, or dead-lettered), an administrator's replay, and the
//! `client.expiring` announcements endpoints may subscribe to.

use super::App;
use keyplane_core::audit::{Actor, Caller, NewEvent};
use keyplane_core::client::EXPIRING_WITHIN_DAYS;
use keyplane_core::webhook::{self, DeliveryStatus, WebhookDelivery};
use keyplane_core::*;
use keyplane_store::{AuditBatch, DeliveryFilter, DeliveryOutcome};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Deliveries one tenant sends per pass.
const BATCH: i64 = 50;
/// How long a claim lasts: longer than an attempt can take (the timeout), so two nodes never
/// send one delivery at once.
const LEASE_EXTRA_MS: i64 = 30_000;

/// Reads the key file, creating it (32 random bytes, hex, mode 0600) when missing.
pub(crate) fn load_or_create_key(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |what: &str, e: std::io::Error| {
        Error::internal(format!("{what} the webhook key {}: {e}", path.display()))
    };
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
        }
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let mut opts = std::fs::OpenOptions::new();
        // create_new: two processes starting at once keep the first key, not two.
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(hex::encode(bytes).as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| io("cannot write", e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("cannot create", e)),
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| io("cannot read", e))?;
    let key = hex::decode(text.trim())
        .map_err(|_| Error::internal(format!("{} is not a hex key", path.display())))?;
    if key.len() < 32 {
        return Err(Error::internal(format!(
            "{} holds fewer than 32 bytes",
            path.display()
        )));
    }
    Ok(key)
}

impl App {
    /// The webhook key (read once, created on first use).
    pub(crate) fn webhook_key(&self) -> Result<Vec<u8>, Error> {
        if let Some(k) = self.webhook_key.get() {
            return Ok(k.clone());
        }
        let k = load_or_create_key(&self.settings.webhook_key_file())?;
        Ok(self.webhook_key.get_or_init(|| k).clone())
    }

    /// The signatures a delivery carries: one per secret in force (two during a rotation's
    /// overlap), space-separated as Standard Webhooks allows.
    fn signatures(
        &self,
        client: &MachineClient,
        id: &str,
        timestamp: i64,
        body: &str,
    ) -> Result<String, Error> {
        let key = self.webhook_key()?;
        let now = self.clock.now();
        let mut seeds = vec![];
        if let Some(h) = &client.secret_hash {
            seeds.push(h);
        }
        if let (Some(h), Some(until)) = (&client.previous_hash, client.previous_expires_at) {
            if now < until {
                seeds.push(h);
            }
        }
        Ok(seeds
            .into_iter()
            .map(|seed| webhook::sign(&webhook::signing_secret(&key, seed), id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" "))
    }

    /// One pass over every tenant's due deliveries. Returns how many were attempted.
    pub async fn deliver_webhooks(&self) -> Result<u64, Error> {
        let http = self
            .webhook_http
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .timeout(Duration::from_millis(self.settings.webhooks.timeout_ms))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| Error::internal(format!("webhook HTTP client: {e}")))
            })
            .await?;
        let mut attempted = 0;
        for tenant in self.store.list_tenants().await? {
            let now = self.clock.now();
            for d in self
                .store
                .due_webhook_deliveries(&tenant.id, now, BATCH)
                .await?
            {
                let lease = Timestamp(
                    now.0
                        + i64::try_from(self.settings.webhooks.timeout_ms).unwrap_or(i64::MAX / 2)
                        + LEASE_EXTRA_MS,
                );
                if !self
                    .store
                    .claim_webhook_delivery(&tenant.id, &d.id, now, lease)
                    .await?
                {
                    continue; // another node has it
                }
                attempted += 1;
                let outcome = self.attempt_delivery(&tenant, &d, http).await;
                if !self
                    .store
                    .finish_webhook_delivery(&tenant.id, &d.id, lease, &outcome)
                    .await?
                {
                    tracing::warn!(tenant = %tenant.name, delivery = %d.id, "a webhook delivery outlasted its claim");
                }
            }
        }
        Ok(attempted)
    }

    async fn attempt_delivery(
        &self,
        tenant: &Tenant,
        d: &WebhookDelivery,
        http: &reqwest::Client,
    ) -> DeliveryOutcome {
        let attempts = d.attempts + 1;
        let failed = |status: Option<u16>, error: String| {
            let dead = attempts >= self.settings.webhooks.max_attempts;
            DeliveryOutcome::Failed {
                status,
                error,
                next_attempt_at: self
                    .clock
                    .now()
                    .plus_secs(webhook::retry_delay_secs(attempts)),
                dead,
            }
        };
        let client = match self.store.client_by_id(&tenant.id, &d.client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return failed(None, "the endpoint no longer exists".into()),
            Err(e) => return failed(None, format!("reading the endpoint: {e}")),
        };
        if client.status_at(self.clock.now()) != ClientStatus::Active {
            // Revoked or expired: nothing more goes to it; kept as a dead letter for the record.
            return DeliveryOutcome::Failed {
                status: None,
                error: format!(
                    "the endpoint is {}",
                    client.status_at(self.clock.now()).as_str()
                ),
                next_attempt_at: self.clock.now(),
                dead: true,
            };
        }
        let endpoint = match self.store.webhook_endpoint(&tenant.id, &d.client_id).await {
            Ok(Some(e)) => e,
            Ok(None) => return failed(None, "the endpoint has no URL".into()),
            Err(e) => return failed(None, format!("reading the endpoint: {e}")),
        };
        let timestamp = self.clock.now().unix_seconds();
        let signature = match self.signatures(&client, &d.id, timestamp, &d.payload) {
            Ok(s) => s,
            Err(e) => return failed(None, format!("signing: {}", e.message)),
        };
        let sent = http
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(
                "user-agent",
                concat!("Keyplane-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .body(d.payload.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => DeliveryOutcome::Delivered {
                at: self.clock.now(),
                status: r.status().as_u16(),
            },
            Ok(r) => failed(
                Some(r.status().as_u16()),
                format!("the endpoint answered {}", r.status()),
            ),
            // The error's text names the URL, which is not a secret; never the body.
            Err(e) => failed(None, format!("not delivered: {e}")),
        }
    }

    pub async fn list_webhook_deliveries(
        &self,
        tenant: &Tenant,
        filter: &DeliveryFilter,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        Ok(self
            .store
            .list_webhook_deliveries(&tenant.id, filter)
            .await?)
    }

    pub async fn webhook_delivery(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<WebhookDelivery, Error> {
        self.store
            .webhook_delivery(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::not_found("delivery_not_found", "no such webhook delivery"))
    }

    /// Sends a dead (or delivered) delivery again, from its first attempt
    /// (`webhook.delivery_replayed`). A pending one is already on its way: `409 delivery_pending`.
    pub async fn replay_webhook_delivery(
        &self,
        tenant: &Tenant,
        id: &str,
        caller: &Caller,
    ) -> Result<WebhookDelivery, Error> {
        let d = self.webhook_delivery(tenant, id).await?;
        if d.status == DeliveryStatus::Pending {
            return Err(Error::conflict(
                "delivery_pending",
                "the delivery is still pending; it will be attempted again by itself",
            ));
        }
        let event = caller
            .event("webhook.delivery_replayed", "client", d.client_id.as_str())
            .details(json!({ "delivery": d.id, "event_type": d.event_type, "was": d.status.as_str(), "attempts": d.attempts }));
        if !self
            .store
            .replay_webhook_delivery(&tenant.id, id, AuditBatch::new(self.clock.now(), &[event]))
            .await?
        {
            return Err(Error::conflict(
                "delivery_pending",
                "the delivery was put back meanwhile",
            ));
        }
        self.webhook_delivery(tenant, id).await
    }

    /// Records `client.expiring` once for every active machine client within
    /// `EXPIRING_WITHIN_DAYS` of its expiry (what reports call `expiring`), so that webhook
    /// endpoints can hear it. Returns how many.
    pub async fn announce_expiring_clients(&self, tenant: &Tenant) -> Result<u64, Error> {
        let now = self.clock.now();
        let soon = now.plus_secs(EXPIRING_WITHIN_DAYS * 86_400);
        let mut n = 0;
        for id in self
            .store
            .clients_to_announce(&tenant.id, now, soon)
            .await?
        {
            let Some(c) = self.store.client_by_id(&tenant.id, &id).await? else {
                continue;
            };
            let event = NewEvent::new(
                Actor::system("janitor"),
                "client.expiring",
                "client",
                id.as_str(),
            )
            .details(json!({
                "kind": c.kind.as_str(),
                "name": c.name,
                "owner": c.owner,
                "expires_at": c.expires_at.to_rfc3339(),
            }));
            if self
                .store
                .announce_client_expiry(&tenant.id, &id, AuditBatch::new(now, &[event]))
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The delivery worker: every `webhooks.interval_ms` on every node (claims keep nodes apart).
pub fn spawn_webhook_worker(app: Arc<App>) -> Option<tokio::task::JoinHandle<()>> {
    let every = app.settings.webhooks.interval_ms;
    if every == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = app.deliver_webhooks().await {
                tracing::warn!(error = %e, "could not deliver webhooks");
            }
        }
    }))
}
