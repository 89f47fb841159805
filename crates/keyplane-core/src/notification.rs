//! Notifications to users: which audit actions announce themselves to the user they concern, who
//! that user is, what of the event a notification may carry (never a secret), the outbox record
//! and its statuses, the retry back-off, the plain-text message per kind, and the contact address
//! check. Pure: the store writes the outbox, the server delivers it.

use crate::{Error, TenantId, Timestamp, UserId};
use serde_json::Value;
use std::collections::BTreeMap;

/// The audit actions that notify the user they concern (documented in docs/operations.md). A
/// successful event with one of these actions, and a resolvable user, gets one outbox row in the
/// transaction that records it. Sign-ins are deliberately absent: a notification per sign-in
/// would cost a write on the hottest path and train users to ignore them.
pub const NOTIFIABLE_ACTIONS: &[&str] = &[
    "recovery.codes_generated",
    "recovery.code_used",
    "recovery.codes_revoked",
    "recovery.case_opened",
    "recovery.case_cooling_off",
    "recovery.case_ready",
    "recovery.link_requested",
    "recovery.case_cancelled",
    "recovery.case_completed",
    "credential.registered",
    "credential.revoked",
    "credential.suspended",
    "credential.lost",
    "user.re_enrolment_required",
    "user.contact_changed",
];

/// Whether an event notifies: an in-memory match on the action, no query. Refused attempts
/// (`failure`, `denied`) never notify.
pub fn is_notifiable(action: &str, outcome: crate::audit::Outcome) -> bool {
    outcome == crate::audit::Outcome::Success && NOTIFIABLE_ACTIONS.contains(&action)
}

/// The user an event concerns: its target when that is a user, else `details.user_id`, else
/// `details.user` (the key the credential events use). `None`: the event notifies nobody.
pub fn recipient(target_type: &str, target_id: &str, details: &Value) -> Option<UserId> {
    if target_type == "user" {
        return UserId::parse(target_id);
    }
    ["user_id", "user"]
        .iter()
        .find_map(|k| details.get(*k).and_then(Value::as_str))
        .and_then(UserId::parse)
}

/// Keys never copied into a notification, wherever they appear in the details: event details
/// are not meant to hold secrets at all, this is a second line.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "code",
        "password",
        "link",
        "key",
        "challenge",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The event's details as a notification may carry them: every secret-looking key removed, and
/// every email address masked (`a***@example.com`: notification sinks are logs, and addresses do
/// not belong in logs), at every level.
pub fn public_payload(details: &Value) -> Value {
    match details {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !secret_key(k))
                .map(|(k, v)| (k.clone(), public_payload(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(public_payload).collect()),
        Value::String(s) if validate_contact_email(s).is_ok() => Value::String(mask_email(s)),
        v => v.clone(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Waiting for (another) delivery attempt at `next_attempt_at`.
    Pending,
    /// Delivered through at least one sink; every other sink delivered or skipped it.
    Sent,
    /// Gave up after the last attempt; `last_error` says why.
    Failed,
    /// No sink could take it (e.g. only email is configured and the user has no contact).
    Skipped,
}

impl NotificationStatus {
    pub const ALL: [NotificationStatus; 4] = [
        NotificationStatus::Pending,
        NotificationStatus::Sent,
        NotificationStatus::Failed,
        NotificationStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
            NotificationStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One outbox row.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub id: crate::NotificationId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    /// The audit action it announces.
    pub kind: String,
    pub event_seq: i64,
    pub event_id: String,
    pub created_at: Timestamp,
    /// [`public_payload`] of the event's details, with `target_type` and `target_id` added.
    pub payload: Value,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub sent_at: Option<Timestamp>,
    /// Per sink: `sent`, `skipped: <why>` or `failed: <why>`. A retry skips sinks already `sent`.
    pub deliveries: BTreeMap<String, String>,
}

/// Seconds to wait before attempt `attempts + 1`: `base · 2^(attempts − 1)`, at most `cap`.
pub fn backoff_secs(attempts: i64, base: u64, cap: u64) -> u64 {
    let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1u64 << shift).min(cap)
}

/// A rendered notification: plain text, no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

/// The message for a notification, addressed to `username` of the relying party `service`.
/// Only facts from the payload that help the user recognise the event (a passkey's nickname, a
/// count, a reason) are used; unknown kinds get a generic text.
pub fn render(n: &Notification, username: &str, service: &str) -> Message {
    let p = &n.payload;
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let passkey = s("nickname")
        .map(|n| format!("the passkey \"{n}\""))
        .unwrap_or_else(|| "a passkey".into());
    let (subject, what) = match n.kind.as_str() {
        "recovery.codes_generated" => (
            "New recovery codes were generated".to_string(),
            format!(
                "{} new recovery codes were generated for your account. Any earlier unused codes no longer work.",
                p.get("count").and_then(Value::as_u64).unwrap_or(0)
            ),
        ),
        "recovery.code_used" => (
            "A recovery code was used".into(),
            "A recovery code was used to sign in to your account, to register a new passkey.".into(),
        ),
        "recovery.codes_revoked" => (
            "Your recovery codes were revoked".into(),
            "An administrator invalidated your unused recovery codes.".into(),
        ),
        "recovery.case_opened" => (
            "A recovery request was opened for your account".into(),
            "A request to recover access to your account was opened.".into(),
        ),
        "recovery.case_cooling_off" => (
            "Your account recovery is waiting".into(),
            "A request to recover access to your account was approved and is in its waiting period. If you still have a passkey, signing in with it cancels the request.".into(),
        ),
        "recovery.case_ready" => (
            "Your account recovery is ready".into(),
            "Your account recovery is ready: you can now register a new passkey.".into(),
        ),
        "recovery.link_requested" => (
            "A new recovery link for your account".into(),
            "The help desk sent a new recovery link; any earlier one no longer works.".into(),
        ),
        "recovery.case_cancelled" => (
            "A recovery request was cancelled".into(),
            "A request to recover access to your account was cancelled.".into(),
        ),
        "recovery.case_completed" => (
            "Your account recovery is complete".into(),
            "A new passkey was registered through account recovery.".into(),
        ),
        "credential.registered" => (
            "A new passkey was added".into(),
            format!("{} was added to your account.", capitalise(&passkey)),
        ),
        "credential.revoked" => (
            "A passkey was removed".into(),
            format!("{} was removed from your account.", capitalise(&passkey)),
        ),
        "credential.suspended" => (
            "A passkey was suspended".into(),
            format!("{} of your account was suspended.", capitalise(&passkey)),
        ),
        "credential.lost" => (
            "A passkey was marked lost".into(),
            format!(
                "{} was marked lost and no longer works. Register a new passkey.",
                capitalise(&passkey)
            ),
        ),
        "user.re_enrolment_required" => (
            "You need to register a new passkey".into(),
            "An administrator asked you to register a new passkey at your next sign-in.".into(),
        ),
        "user.contact_changed" => (
            "Your contact address was changed".into(),
            "The address Keyplane sends account notices to was changed.".into(),
        ),
        other => ("Account notice".into(), format!("Account event: {other}.")),
    };
    let mut body = format!("Hello {username},\n\n{what}\n");
    if let Some(reason) = s("reason") {
        body.push_str(&format!("\nReason: {reason}\n"));
    }
    body.push_str(&format!(
        "\nWhen: {}\n\nIf this was not you or someone you expect, contact your administrator.\n\n-- {service}\n",
        n.created_at.to_rfc3339()
    ));
    Message {
        subject: format!("{service}: {subject}"),
        body,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Checks a contact address as an administrator typed it: one `@` with text on both sides, no
/// whitespace or control characters, at most 254 characters. Returns it unchanged (the address is
/// not reformatted: the mail system owns its syntax).
pub fn validate_contact_email(raw: &str) -> Result<String, Error> {
    let invalid = |why: &str| {
        Error::invalid(
            "invalid_contact",
            format!("the contact address is not usable: {why}"),
        )
    };
    if raw.is_empty() || raw.len() > 254 {
        return Err(invalid("it must be 1 to 254 characters"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains spaces or control characters"));
    }
    match raw.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(raw.to_string())
        }
        _ => Err(invalid("it needs exactly one @ with text on both sides")),
    }
}

/// An address for logs: the first character of the local part and the domain (`a***@example.com`).
pub fn mask_email(addr: &str) -> String {
    match addr.split_once('@') {
        Some((local, domain)) => format!(
            "{}***@{domain}",
            local.chars().next().map(String::from).unwrap_or_default()
        ),
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Outcome;
    use serde_json::json;

    #[test]
    fn only_successful_notifiable_actions_notify() {
        assert!(is_notifiable("recovery.codes_generated", Outcome::Success));
        assert!(!is_notifiable("recovery.codes_generated", Outcome::Failure));
        assert!(!is_notifiable("authentication.succeeded", Outcome::Success));
        assert!(!is_notifiable("session.ended", Outcome::Success));
    }

    #[test]
    fn the_recipient_is_the_target_user_or_the_details_user() {
        let u = UserId::generate();
        assert_eq!(recipient("user", u.as_str(), &json!({})), Some(u.clone()));
        assert_eq!(
            recipient("credential", "c", &json!({ "user": u })),
            Some(u.clone())
        );
        assert_eq!(
            recipient("case", "c", &json!({ "user_id": u })),
            Some(u.clone())
        );
        assert_eq!(recipient("credential", "c", &json!({})), None);
        assert_eq!(recipient("user", "not-a-uuid", &json!({})), None);
    }

    #[test]
    fn payloads_never_carry_secret_looking_keys() {
        let p = public_payload(&json!({
            "count": 10, "token": "t", "recovery_link": "https://x", "nested": {"secret": 1, "n": 2},
            "codes": ["a"], "credential_id": "abc", "api_key": "k"
        }));
        assert_eq!(
            p,
            json!({ "count": 10, "nested": {"n": 2}, "credential_id": "abc" })
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_secs(1, 30, 3600), 30);
        assert_eq!(backoff_secs(2, 30, 3600), 60);
        assert_eq!(backoff_secs(4, 30, 3600), 240);
        assert_eq!(backoff_secs(20, 30, 3600), 3600);
        assert_eq!(backoff_secs(i64::MAX, 30, 3600), 3600);
    }

    #[test]
    fn contact_addresses_are_checked() {
        assert!(validate_contact_email("alice@example.com").is_ok());
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a@b@c",
            "al ice@example.com",
            "alice@example.com\n",
            &format!("{}@example.com", "a".repeat(250)),
        ] {
            assert_eq!(
                validate_contact_email(bad).unwrap_err().code,
                "invalid_contact",
                "{bad:?}"
            );
        }
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
    }

    #[test]
    fn messages_name_the_event_and_never_the_payload_wholesale() {
        let n = Notification {
            id: crate::NotificationId::generate(),
            tenant_id: TenantId::generate(),
            user_id: UserId::generate(),
            kind: "recovery.codes_generated".into(),
            event_seq: 1,
            event_id: "e".into(),
            created_at: Timestamp(0),
            payload: json!({ "count": 10, "rule": "recovery" }),
            status: NotificationStatus::Pending,
            attempts: 0,
            next_attempt_at: Timestamp(0),
            last_error: None,
            sent_at: None,
            deliveries: BTreeMap::new(),
        };
        let m = render(&n, "alice", "Keyplane");
        assert_eq!(m.subject, "Keyplane: New recovery codes were generated");
        assert!(m.body.contains("Hello alice"));
        assert!(m.body.contains("10 new recovery codes"));
    }
}
