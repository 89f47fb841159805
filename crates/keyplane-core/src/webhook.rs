//! Webhooks: which audit events an endpoint may subscribe to, the Standard Webhooks signature
//! (HMAC-SHA256 over `id.timestamp.body`, headers `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64>`), the signing secret of an endpoint, and the retry schedule
//! of its deliveries before they are dead-lettered.
//!
//! An endpoint is a machine client of kind `webhook`. Its signing secret is never stored: it is
//! derived from the deployment's webhook key and the hash of a random seed the client record
//! keeps (`secret_hash`, or `previous_hash` during a rotation's overlap). The database alone does
//! not give the secret, and a rotation needs no second copy of it.

use crate::secret::TokenHash;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The event types an endpoint may subscribe to: audit actions, spelled as in the audit log.
pub const EVENT_TYPES: [&str; 15] = [
    "credential.registered",
    "credential.revoked",
    "credential.suspended",
    "credential.lost",
    "authentication.failed",
    "recovery.case_requested",
    "recovery.case_opened",
    "recovery.case_ready",
    "recovery.case_completed",
    "recovery.code_used",
    "exception.expiring",
    "fraud.alert_opened",
    "policy.activated",
    "client.expiring",
    "webhook.test",
];

/// Whether events with this action can go to webhooks (a match, no lookup: a sign-in that
/// succeeds pays nothing).
pub fn is_webhook_event(action: &str) -> bool {
    EVENT_TYPES.contains(&action)
}

/// The prefix of a signing secret as handed out (Standard Webhooks' convention).
pub const SECRET_PREFIX: &str = "whsec_";

/// Delivery attempts before a delivery is dead-lettered, unless configured otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// The signing secret for the seed whose hash the client record keeps.
pub fn signing_secret(webhook_key: &[u8], seed: &TokenHash) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(webhook_key).expect("HMAC takes a key of any length");
    mac.update(b"keyplane-webhook-secret\0");
    mac.update(&seed.0);
    mac.finalize().into_bytes().into()
}

/// The secret as the endpoint's operator configures it: `whsec_<base64>`.
pub fn format_secret(secret: &[u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(secret))
}

/// One `v1,<base64>` signature of a message.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Seconds to wait after the `attempts`-th failed attempt: 30 s, doubling, at most six hours.
pub fn retry_delay_secs(attempts: u32) -> i64 {
    let doubled = 30i64.saturating_mul(1i64 << attempts.saturating_sub(1).min(20));
    doubled.min(6 * 3600)
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    Delivered,
    /// Gave up after the last attempt; an administrator may replay it.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One message to one endpoint, from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: String,
    pub tenant_id: crate::ids::TenantId,
    pub client_id: crate::ids::MachineClientId,
    pub event_type: String,
    pub event_id: String,
    pub event_seq: i64,
    /// The body as sent (JSON text), fixed when the event was recorded.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: crate::time::Timestamp,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: crate::time::Timestamp,
    pub delivered_at: Option<crate::time::Timestamp>,
}

/// An endpoint's subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub url: String,
    pub event_types: Vec<String>,
}

impl WebhookEndpoint {
    /// An https URL (or http to a loopback host, for development and tests), and known event
    /// types, at least one.
    pub fn validate(&self) -> Result<(), crate::Error> {
        crate::oidc::check_redirect_uri(&self.url).map_err(|_| {
            crate::Error::invalid(
                "invalid_webhook_url",
                format!(
                    "{:?} cannot receive webhooks: https, or http to localhost, without a fragment",
                    self.url
                ),
            )
        })?;
        if self.event_types.is_empty() {
            return Err(crate::Error::invalid(
                "invalid_event_type",
                "subscribe to at least one event type",
            ));
        }
        if let Some(t) = self.event_types.iter().find(|t| !is_webhook_event(t)) {
            return Err(crate::Error::invalid(
                "invalid_event_type",
                format!("{t:?} is not an event type ({})", EVENT_TYPES.join(", ")),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_depend_on_key_and_seed() {
        let a = signing_secret(b"key one", &TokenHash::of(b"seed"));
        assert_eq!(a, signing_secret(b"key one", &TokenHash::of(b"seed")));
        assert_ne!(a, signing_secret(b"key two", &TokenHash::of(b"seed")));
        assert_ne!(a, signing_secret(b"key one", &TokenHash::of(b"other")));
        assert!(format_secret(&a).starts_with("whsec_"));
    }

    #[test]
    fn retries_back_off_and_are_capped() {
        assert_eq!(retry_delay_secs(1), 30);
        assert_eq!(retry_delay_secs(2), 60);
        assert_eq!(retry_delay_secs(5), 480);
        assert_eq!(retry_delay_secs(30), 6 * 3600);
    }

    #[test]
    fn endpoints_need_a_safe_url_and_known_types() {
        let ok = WebhookEndpoint {
            url: "https://siem.example.com/hook".into(),
            event_types: vec!["credential.registered".into()],
        };
        assert!(ok.validate().is_ok());
        let bad_url = WebhookEndpoint {
            url: "http://siem.example.com/hook".into(),
            ..ok.clone()
        };
        assert_eq!(bad_url.validate().unwrap_err().code, "invalid_webhook_url");
        let bad_type = WebhookEndpoint {
            event_types: vec!["authentication.succeeded".into()],
            ..ok.clone()
        };
        assert_eq!(bad_type.validate().unwrap_err().code, "invalid_event_type");
        let none = WebhookEndpoint {
            event_types: vec![],
            ..ok
        };
        assert_eq!(none.validate().unwrap_err().code, "invalid_event_type");
    }
}
