//! The webhook sink: the notification's JSON document POSTed to one URL, signed with
//! HMAC-SHA256 in `X-Keyplane-Signature: t=<unix seconds>,v1=<hex of HMAC(secret, "t.body")>`.
//! A 2xx answer is a delivery; anything else, or no answer within the timeout, is retried.

use super::{Outgoing, SinkResult};
use crate::config::WebhookSinkSettings;
use hmac::{Hmac, Mac};
use keyplane_core::{Error, Secret};
use sha2::Sha256;
use std::time::Duration;

pub struct WebhookSink {
    url: String,
    secret: Secret,
    client: reqwest::Client,
}

/// The signature header's value for `body` sent at `unix` seconds.
pub fn signature(secret: &[u8], unix: i64, body: &str) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("{unix}.{body}").as_bytes());
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookSink {
    pub fn new(s: &WebhookSinkSettings) -> Result<Self, Error> {
        let secret = std::fs::read_to_string(&s.secret_file).map_err(|e| {
            Error::unavailable(format!(
                "notifications.webhook.secret_file {}: {e}",
                s.secret_file.display()
            ))
        })?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(Error::unavailable(
                "notifications.webhook.secret_file is empty",
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(s.timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::unavailable(format!("webhook client: {e}")))?;
        Ok(WebhookSink {
            url: s.url.clone(),
            secret: Secret::from_presented(secret),
            client,
        })
    }

    pub async fn deliver(&self, out: &Outgoing<'_>, now: keyplane_core::Timestamp) -> SinkResult {
        let body = out.document(now).to_string();
        let unix = now.0.div_euclid(1000);
        let sig = signature(self.secret.expose().as_bytes(), unix, &body);
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-keyplane-signature", sig)
            .header("x-keyplane-delivery", out.notification.id.as_str())
            .header("x-keyplane-event", out.notification.kind.as_str())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => SinkResult::Sent,
            Ok(r) => SinkResult::Failed(format!("webhook answered {}", r.status().as_u16())),
            // Without the URL: it may carry credentials.
            Err(e) => SinkResult::Failed(format!("webhook: {}", e.without_url())),
        }
    }
}
