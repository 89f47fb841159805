//! Where notifications go: the sinks (`file.rs`, `webhook.rs`, `smtp.rs`) built from the
//! `[notifications]` settings, and the one JSON document the file and webhook sinks carry. What
//! to send and when is `service/notifications.rs`; this module only delivers.
//!
//! Only the email sink, and only to the user's verified contact, may carry the notification's
//! secret (a recovery link minted at send time); the JSON document never does.

mod file;
mod smtp;
mod webhook;

use crate::config::Settings;
use keyplane_core::notification::Message;
use keyplane_core::{Error, Notification, Secret, Tenant};
use serde_json::{json, Value};

/// One notification as the sinks see it.
pub struct Outgoing<'a> {
    pub tenant: &'a Tenant,
    pub notification: &'a Notification,
    pub username: &'a str,
    pub message: &'a Message,
    /// The user's verified contact; `None`: email is skipped.
    pub contact: Option<&'a str>,
    /// For the email body only (see `App::notification_secret`).
    pub secret: Option<&'a Secret>,
}

impl Outgoing<'_> {
    /// The JSON document of the file and webhook sinks: facts and the rendered text, never the
    /// secret and never the contact address.
    pub fn document(&self, sent_at: keyplane_core::Timestamp) -> Value {
        let n = self.notification;
        json!({
            "id": n.id,
            "tenant": self.tenant.name,
            "tenant_id": n.tenant_id,
            "user_id": n.user_id,
            "username": self.username,
            "kind": n.kind,
            "event_seq": n.event_seq,
            "event_id": n.event_id,
            "created_at": n.created_at.to_rfc3339(),
            "sent_at": sent_at.to_rfc3339(),
            "subject": self.message.subject,
            "body": self.message.body,
            "payload": n.payload,
        })
    }
}

/// What one sink made of one notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkResult {
    Sent,
    /// Not for this sink (e.g. email without a contact); not retried on its own.
    Skipped(String),
    /// Retried with back-off.
    Failed(String),
}

impl SinkResult {
    /// As stored in the outbox row's `deliveries`.
    pub fn record(&self) -> String {
        match self {
            SinkResult::Sent => "sent".into(),
            SinkResult::Skipped(why) => format!("skipped: {why}"),
            SinkResult::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// The configured sinks. Built once per process from the settings (secrets read from their
/// files then).
pub struct Sinks {
    file: Option<file::FileSink>,
    webhook: Option<webhook::WebhookSink>,
    smtp: Option<smtp::SmtpSink>,
}

impl Sinks {
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let n = &settings.notifications;
        Ok(Sinks {
            file: n
                .file
                .enabled
                .then(|| file::FileSink::new(settings.notifications_file())),
            webhook: if n.webhook.url.is_empty() {
                None
            } else {
                Some(webhook::WebhookSink::new(&n.webhook)?)
            },
            smtp: if n.smtp.host.is_empty() {
                None
            } else {
                Some(smtp::SmtpSink::new(&n.smtp)?)
            },
        })
    }

    /// The enabled sinks' names, in delivery order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = vec![];
        if self.file.is_some() {
            v.push("file");
        }
        if self.webhook.is_some() {
            v.push("webhook");
        }
        if self.smtp.is_some() {
            v.push("email");
        }
        v
    }

    /// Delivers through the sink called `name` (one of [`Sinks::names`]).
    pub async fn deliver(
        &self,
        name: &str,
        out: &Outgoing<'_>,
        now: keyplane_core::Timestamp,
    ) -> SinkResult {
        let result = match name {
            "file" => match &self.file {
                Some(s) => s.deliver(out, now).await,
                None => SinkResult::Skipped("not configured".into()),
            },
            "webhook" => match &self.webhook {
                Some(s) => s.deliver(out, now).await,
                None => SinkResult::Skipped("not configured".into()),
            },
            "email" => match &self.smtp {
                Some(s) => s.deliver(out).await,
                None => SinkResult::Skipped("not configured".into()),
            },
            _ => SinkResult::Skipped("unknown sink".into()),
        };
        crate::metrics::notification_delivered(
            name,
            match &result {
                SinkResult::Sent => "sent",
                SinkResult::Skipped(_) => "skipped",
                SinkResult::Failed(_) => "failed",
            },
        );
        result
    }
}
