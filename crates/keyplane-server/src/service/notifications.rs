//! Notifications to users (issue 7): the verified contact an administrator sets, and the
//! delivery of the outbox the store fills beside notifiable audit events: claim due rows, render
//! each (never a secret), hand it to every configured sink, then mark it sent, skipped, or due
//! again with exponential back-off until `failed`. The sinks themselves are `crate::notify`.

use super::App;
use crate::notify::{Outgoing, SinkResult, Sinks};
use keyplane_core::audit::Caller;
use keyplane_core::notification::{backoff_secs, mask_email, render, validate_contact_email};
use keyplane_core::*;
use keyplane_store::{AuditBatch, NotificationFilter, NotificationOutcome};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a claimed notification stays out of other workers' reach: longer than any sink's
/// timeout, so only a worker that died leaves it to be taken again (at-least-once).
const CLAIM_LEASE_MS: i64 = 10 * 60 * 1000;
/// Rows claimed per tenant per pass.
const BATCH: i64 = 50;

impl App {
    /// Sets (`Some`) or clears a user's contact address: `user.contact_changed`, with the new
    /// address in the event's details (administrators can see it anyway; logs never get it).
    pub async fn set_contact(
        &self,
        tenant: &Tenant,
        user: &UserId,
        contact: Option<&str>,
        caller: &Caller,
    ) -> Result<User, Error> {
        let contact = contact.map(validate_contact_email).transpose()?;
        let u = self.user_by_id(tenant, user).await?;
        let event = caller
            .event("user.contact_changed", "user", u.id.as_str())
            .details(json!({
                "from": u.contact_email,
                "to": contact,
            }));
        let changed = self
            .store
            .set_user_contact(
                &tenant.id,
                &u.id,
                contact.as_deref(),
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?;
        if !changed {
            return Err(Error::not_found(
                "user_not_found",
                "no such user in this tenant",
            ));
        }
        tracing::info!(
            tenant = %tenant.name,
            user = %u.id,
            contact = %contact.as_deref().map(mask_email).unwrap_or_else(|| "none".into()),
            "contact changed"
        );
        self.user_by_id(tenant, user).await
    }

    /// The tenant's notifications, newest first.
    pub async fn list_notifications(
        &self,
        tenant: &Tenant,
        filter: &NotificationFilter,
    ) -> Result<Vec<Notification>, Error> {
        Ok(self.store.list_notifications(&tenant.id, filter).await?)
    }

    /// Puts a `failed` or `skipped` notification back in the queue, due now:
    /// `notification.retried`. Any other status is `409 invalid_transition`.
    pub async fn retry_notification(
        &self,
        tenant: &Tenant,
        id: &NotificationId,
        caller: &Caller,
    ) -> Result<Notification, Error> {
        let n = self
            .store
            .notification(&tenant.id, id)
            .await?
            .ok_or_else(|| {
                Error::not_found(
                    "notification_not_found",
                    "no such notification in this tenant",
                )
            })?;
        let event = caller
            .event("notification.retried", "notification", n.id.as_str())
            .details(json!({
                "user": n.user_id,
                "kind": n.kind,
                "from": n.status.as_str(),
            }));
        let moved = self
            .store
            .retry_notification(
                &tenant.id,
                &n.id,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?;
        if !moved {
            return Err(Error::conflict(
                "invalid_transition",
                format!(
                    "the notification is {}; only failed or skipped ones are retried",
                    n.status.as_str()
                ),
            ));
        }
        self.store
            .notification(&tenant.id, id)
            .await?
            .ok_or_else(|| Error::unavailable("notification vanished"))
    }

    /// The secret a notification carries to the user's verified contact, minted at send time so
    /// that no secret is ever stored in the outbox. Only the email sink receives it.
    ///
    /// `recovery.case_ready` and `recovery.link_requested` carry a help-desk case's recovery
    /// link, minted here (each mint replaces the case's earlier link), and only when it can reach
    /// the user: an email relay is configured and the user has a verified contact. A case that
    /// cannot have a link now (held for review, closed, expired) sends its notice without one.
    pub async fn notification_secret(
        &self,
        tenant: &Tenant,
        n: &Notification,
    ) -> Result<Option<Secret>, Error> {
        if !matches!(
            n.kind.as_str(),
            "recovery.case_ready" | "recovery.link_requested"
        ) || self.settings.notifications.smtp.host.is_empty()
        {
            return Ok(None);
        }
        let Some(id) = (n.payload.get("target_type").and_then(|v| v.as_str())
            == Some("recovery_case"))
        .then(|| n.payload.get("target_id").and_then(|v| v.as_str()))
        .flatten()
        .and_then(keyplane_core::RecoveryCaseId::parse) else {
            return Ok(None);
        };
        let has_contact = self
            .store
            .user_by_id(&tenant.id, &n.user_id)
            .await?
            .is_some_and(|u| u.contact_email.is_some());
        if !has_contact {
            return Ok(None);
        }
        match self.issue_recovery_link(tenant, &id).await {
            Ok(link) => Ok(Some(Secret::from_presented(format!(
                "Your recovery link (it works once, until {}):\n{}",
                link.expires_at.to_rfc3339(),
                link.url
            )))),
            Err(e) if e.kind == keyplane_core::ErrorKind::Conflict => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn sinks(&self) -> Result<Arc<Sinks>, Error> {
        self.sinks
            .get_or_try_init(|| async { Sinks::from_settings(&self.settings).map(Arc::new) })
            .await
            .cloned()
    }

    /// One delivery pass over every tenant: claims the due notifications and delivers each.
    /// Returns how many this node claimed. Safe on any number of nodes at once.
    pub async fn deliver_notifications(&self) -> Result<u64, Error> {
        let sinks = self.sinks().await?;
        let mut claimed = 0;
        for tenant in self.store.list_tenants().await? {
            let now = self.clock.now();
            for n in self.store.due_notifications(&tenant.id, now, BATCH).await? {
                let lease = Timestamp(self.clock.now().0 + CLAIM_LEASE_MS);
                if !self
                    .store
                    .claim_notification(&tenant.id, &n.id, n.next_attempt_at, lease)
                    .await?
                {
                    continue; // another node took it
                }
                claimed += 1;
                let outcome = self.attempt(&tenant, &n, &sinks).await;
                if !self
                    .store
                    .finish_notification(&tenant.id, &n.id, lease, &outcome)
                    .await?
                {
                    tracing::warn!(tenant = %tenant.name, notification = %n.id, "delivery outlasted its claim; another node owns the notification now");
                }
            }
        }
        Ok(claimed)
    }

    /// One attempt at one claimed notification: every sink that has not delivered it yet.
    async fn attempt(
        &self,
        tenant: &Tenant,
        n: &Notification,
        sinks: &Sinks,
    ) -> NotificationOutcome {
        let settings = &self.settings.notifications;
        let attempts = n.attempts + 1;
        let user = self.store.user_by_id(&tenant.id, &n.user_id).await;
        let (username, contact) = match &user {
            Ok(Some(u)) => (u.username.clone(), u.contact_email.clone()),
            Ok(None) => (String::new(), None),
            Err(e) => {
                return self.retry_later(
                    n,
                    attempts,
                    format!("reading the user: {e}"),
                    n.deliveries.clone(),
                )
            }
        };
        let message = render(n, &username, &tenant.rp_name);
        let mut deliveries: BTreeMap<String, String> = BTreeMap::new();
        let secret = match self.notification_secret(tenant, n).await {
            Ok(s) => s,
            Err(e) => {
                return self.retry_later(
                    n,
                    attempts,
                    format!("secret: {}", e.code),
                    n.deliveries.clone(),
                )
            }
        };
        let out = Outgoing {
            tenant,
            notification: n,
            username: &username,
            message: &message,
            contact: contact.as_deref(),
            secret: secret.as_ref(),
        };
        let mut failures = vec![];
        let mut sent_any = false;
        for name in sinks.names() {
            if n.deliveries.get(name).map(String::as_str) == Some("sent") {
                deliveries.insert(name.to_string(), "sent".into());
                sent_any = true;
                continue;
            }
            let r = sinks.deliver(name, &out, self.clock.now()).await;
            match &r {
                SinkResult::Sent => sent_any = true,
                SinkResult::Failed(why) => failures.push(format!("{name}: {why}")),
                SinkResult::Skipped(_) => {}
            }
            deliveries.insert(name.to_string(), r.record());
        }
        let now = self.clock.now();
        if !failures.is_empty() {
            let error = failures.join("; ");
            if attempts >= i64::from(settings.max_attempts) {
                tracing::warn!(tenant = %tenant.name, notification = %n.id, kind = %n.kind, error = %error, "notification failed for good");
                return NotificationOutcome {
                    status: NotificationStatus::Failed,
                    attempts,
                    next_attempt_at: now,
                    last_error: Some(error),
                    sent_at: None,
                    deliveries,
                };
            }
            return self.retry_later(n, attempts, error, deliveries);
        }
        let skipped: Vec<String> = deliveries
            .iter()
            .filter(|(_, v)| v.starts_with("skipped"))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        NotificationOutcome {
            status: if sent_any {
                NotificationStatus::Sent
            } else {
                NotificationStatus::Skipped
            },
            attempts,
            next_attempt_at: now,
            last_error: if sent_any {
                None
            } else if deliveries.is_empty() {
                Some("no sink is configured".into())
            } else {
                Some(skipped.join("; "))
            },
            sent_at: sent_any.then_some(now),
            deliveries,
        }
    }

    fn retry_later(
        &self,
        n: &Notification,
        attempts: i64,
        error: String,
        deliveries: BTreeMap<String, String>,
    ) -> NotificationOutcome {
        let s = &self.settings.notifications;
        let wait = backoff_secs(attempts, s.backoff_secs, s.backoff_max_secs);
        let wait_ms = i64::try_from(wait.saturating_mul(1000)).unwrap_or(i64::MAX);
        tracing::info!(notification = %n.id, kind = %n.kind, attempts, retry_in_secs = wait, error = %error, "notification will be retried");
        NotificationOutcome {
            status: NotificationStatus::Pending,
            attempts,
            next_attempt_at: Timestamp(self.clock.now().0.saturating_add(wait_ms)),
            last_error: Some(error),
            sent_at: None,
            deliveries,
        }
    }
}

/// The delivery worker: a pass every `notifications.interval_ms` on every node (claims keep
/// nodes from sending one notification twice). Not started when the interval is 0.
pub fn spawn_notifier(app: Arc<App>) -> Option<tokio::task::JoinHandle<()>> {
    let every = app.settings.notifications.interval_ms;
    if every == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = app.deliver_notifications().await {
                tracing::warn!(error = %e, "could not deliver notifications");
            }
        }
    }))
}
