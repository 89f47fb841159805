//! Notifications end to end, on both backends, with real sinks: the file sink (the embedded
//! default), a real HTTP receiver for webhooks (signature checked, retries with back-off), a
//! real SMTP server (Python's aiosmtpd) for email to the verified contact, and two nodes on one
//! PostgreSQL delivering each notification exactly once. No notification carries a secret.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use common::{both_backends, call, member};
use hmac::{Hmac, Mac};
use keyplane_core::audit::Caller;
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, Notification};
use keyplane_core::{NotificationStatus, SystemClock};
use keyplane_store::{AuditFilter, NotificationFilter};
use keyplane_testkit::{Backend, SmtpServer, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const CODES: &str = "/api/v1/me/recovery-codes";
const SECRET: &str = "webhook-signing-secret-for-tests";

/// Settings every test here starts from: no background worker (each test drives delivery
/// with `deliver_notifications`, so nothing depends on timing).
fn manual(s: &mut keyplane_server::Settings) {
    s.notifications.interval_ms = 0;
}

async fn notifications(server: &TestServer) -> Vec<Notification> {
    let tenant = server.default_tenant().await;
    server
        .app
        .store
        .list_notifications(
            &tenant.id,
            &NotificationFilter {
                limit: 1000,
                ..NotificationFilter::default()
            },
        )
        .await
        .unwrap()
}

async fn only(server: &TestServer, kind: &str) -> Notification {
    let mut of_kind: Vec<Notification> = notifications(server)
        .await
        .into_iter()
        .filter(|n| n.kind == kind)
        .collect();
    assert_eq!(of_kind.len(), 1, "one {kind} notification");
    of_kind.remove(0)
}

fn file_lines(server: &TestServer) -> Vec<Value> {
    match std::fs::read_to_string(server.app.settings.notifications_file()) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect(),
        Err(_) => vec![],
    }
}

async fn allow_codes(server: &TestServer) {
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(
            &tenant,
            "version = 1\n[recovery]\ncodes = \"allow\"\n",
            &Caller::operator("test"),
        )
        .await
        .expect("policy applies");
}

async fn generate_codes(server: &TestServer, bearer: &str) -> Vec<String> {
    let reply = server
        .request(Method::POST, CODES, None, Some(bearer), Some(&json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// No recovery code, with or without its dashes, appears in `text`.
fn assert_no_code(text: &str, codes: &[String]) {
    for c in codes {
        assert!(!text.contains(c.as_str()), "a code leaked");
        assert!(!text.contains(&c.replace('-', "")), "a code leaked");
    }
}

async fn set_contact(server: &TestServer, username: &str, contact: Option<&str>) {
    let tenant = server.default_tenant().await;
    let u = server
        .app
        .store
        .user_by_username(&tenant.id, username)
        .await
        .unwrap()
        .unwrap();
    server
        .app
        .set_contact(&tenant, &u.id, contact, &Caller::operator("test"))
        .await
        .expect("contact set");
}

async fn recovery_codes_are_announced_in_the_file_sink_without_the_codes(backend: Backend) {
    let server = TestServer::builder(backend).settings(manual).start().await;
    allow_codes(&server).await;
    let (_auth, bearer) = server.user_with_passkey("alice").await;
    let codes = generate_codes(&server, &bearer).await;
    let pending = only(&server, "recovery.codes_generated").await;
    assert_eq!(pending.status, NotificationStatus::Pending);
    assert_eq!(pending.payload["count"], 10);
    assert_no_code(&pending.payload.to_string(), &codes);

    let claimed = server.app.deliver_notifications().await.unwrap();
    assert_eq!(
        claimed, 2,
        "credential.registered and recovery.codes_generated"
    );
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 0);
    let sent = only(&server, "recovery.codes_generated").await;
    assert_eq!(sent.status, NotificationStatus::Sent);
    assert_eq!(sent.attempts, 1);
    assert!(sent.sent_at.is_some());
    assert_eq!(
        sent.deliveries,
        BTreeMap::from([("file".to_string(), "sent".to_string())])
    );

    let path = server.app.settings.notifications_file();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_no_code(&text, &codes);
    let lines = file_lines(&server);
    let line = lines
        .iter()
        .find(|l| l["kind"] == "recovery.codes_generated")
        .expect("a line for the codes");
    assert_eq!(line["id"], sent.id.as_str());
    assert_eq!(line["username"], "alice");
    assert_eq!(line["user_id"], sent.user_id.as_str());
    let rp = server.default_tenant().await.rp_name;
    assert_eq!(
        line["subject"],
        format!("{rp}: New recovery codes were generated")
    );
    assert!(line["body"]
        .as_str()
        .unwrap()
        .contains("10 new recovery codes"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only Keyplane's user may read it");
    }
    server.shutdown().await;
}

async fn signing_in_notifies_nobody(backend: Backend) {
    let server = TestServer::builder(backend).settings(manual).start().await;
    let (mut auth, _bearer) = server.user_with_passkey("alice").await;
    let before = notifications(&server).await.len();
    for _ in 0..3 {
        server.sign_in(&mut auth, Some("alice")).await;
    }
    server.sign_in(&mut auth, None).await;
    assert_eq!(notifications(&server).await.len(), before);
    server.shutdown().await;
}

async fn contact_addresses_are_validated_audited_and_shown(backend: Backend) {
    let server = TestServer::builder(backend).settings(manual).start().await;
    let admin = member(&server, "root", Some("owner")).await;
    let (_auth, alice) = server.user_with_passkey("alice").await;
    let tenant = server.default_tenant().await;
    let user = server
        .app
        .store
        .user_by_username(&tenant.id, "alice")
        .await
        .unwrap()
        .unwrap();
    let path = format!("/api/v1/admin/users/{}/contact", user.id);
    let long = format!("{}@example.com", "a".repeat(250));
    for bad in [
        json!({"contact_email": "alice"}),
        json!({"contact_email": "alice@"}),
        json!({"contact_email": "a@b@example.com"}),
        json!({"contact_email": "al ice@example.com"}),
        json!({"contact_email": "alice@example.com\r\nBcc: x@example.com"}),
        json!({"contact_email": long}),
        json!({"contact_email": 42}),
    ] {
        let (status, body) = call(&server, Method::PUT, &path, &admin, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_contact", "{bad}");
    }
    let (status, _) = call(&server, Method::PUT, &path, &admin, Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the key is required");
    let nobody = format!(
        "/api/v1/admin/users/{}/contact",
        keyplane_core::UserId::generate()
    );
    let (status, body) = call(
        &server,
        Method::PUT,
        &nobody,
        &admin,
        Some(json!({"contact_email": "x@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "user_not_found");
    // Nothing was recorded by the refusals.
    let changed = |server: &TestServer| {
        let id = tenant.id.clone();
        let store = server.app.store.clone();
        async move {
            store
                .list_audit_events(
                    &id,
                    &AuditFilter {
                        action: Some("user.contact_changed".into()),
                        limit: 10,
                        ..AuditFilter::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    assert!(changed(&server).await.is_empty());
    // A user cannot set it for themselves through the admin API.
    let (status, _) = call(
        &server,
        Method::PUT,
        &path,
        &alice,
        Some(json!({"contact_email": "evil@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = call(
        &server,
        Method::PUT,
        &path,
        &admin,
        Some(json!({"contact_email": "alice@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["contact_email"], "alice@example.com");
    let (_, me) = call(&server, Method::GET, "/api/v1/me", &alice, None).await;
    assert_eq!(me["user"]["contact_email"], "alice@example.com");
    let (_, shown) = call(
        &server,
        Method::GET,
        &format!("/api/v1/admin/users/{}", user.id),
        &admin,
        None,
    )
    .await;
    assert_eq!(shown["contact_email"], "alice@example.com");
    let events = changed(&server).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target_id, user.id.as_str());
    // The change itself is announced to the user.
    assert_eq!(only(&server, "user.contact_changed").await.user_id, user.id);

    let (status, body) = call(
        &server,
        Method::PUT,
        &path,
        &admin,
        Some(json!({"contact_email": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["contact_email"], Value::Null);
    assert_eq!(changed(&server).await.len(), 2);
    server.shutdown().await;
}

/// A real HTTP server on a loopback port that records every POST and answers 500 to the first
/// `fail_first` of them.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    fail_first: Arc<AtomicUsize>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> AxumStatus {
    r.got.lock().unwrap().push((headers, body));
    let failing = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        AxumStatus::INTERNAL_SERVER_ERROR
    } else {
        AxumStatus::NO_CONTENT
    }
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        let r = Receiver {
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            ..Receiver::default()
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn requests(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().unwrap().clone()
    }
}

fn webhook_settings(
    url: String,
    dir: &std::path::Path,
) -> impl FnOnce(&mut keyplane_server::Settings) {
    let secret_file = dir.join("webhook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    move |s| {
        manual(s);
        s.notifications.webhook.url = url;
        s.notifications.webhook.secret_file = secret_file;
        s.notifications.webhook.timeout_secs = 5;
    }
}

/// Checks `X-Keyplane-Signature: t=…,v1=…` over "t.body" with the shared secret.
fn assert_signed(headers: &HeaderMap, body: &str) {
    let header = headers
        .get("x-keyplane-signature")
        .expect("signed")
        .to_str()
        .unwrap();
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|r| r.split_once(",v1="))
        .expect("t=…,v1=…");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies");
    let mut tampered = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    tampered.update(format!("{t}.{body} ").as_bytes());
    assert!(tampered.verify_slice(&hex::decode(v1).unwrap()).is_err());
}

async fn webhook_deliveries_are_signed_and_retried_with_backoff(backend: Backend) {
    let (receiver, url) = Receiver::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .settings(webhook_settings(url, dir.path()))
        .start()
        .await;
    server.user_with_passkey("alice").await;
    let n = only(&server, "credential.registered").await;

    // First attempt: the file takes it, the webhook answers 500.
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 1);
    let after_first = only(&server, "credential.registered").await;
    assert_eq!(after_first.status, NotificationStatus::Pending);
    assert_eq!(after_first.attempts, 1);
    assert_eq!(after_first.deliveries["file"], "sent");
    assert!(after_first.deliveries["webhook"].starts_with("failed"));
    assert!(after_first.last_error.as_deref().unwrap().contains("500"));
    assert_eq!(
        after_first.next_attempt_at.0,
        clock.now().0 + 30_000,
        "first back-off: backoff_secs"
    );
    // Not due yet: nothing is sent.
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 0);
    clock.advance_secs(29);
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 0);
    clock.advance_secs(1);
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 1);
    let sent = only(&server, "credential.registered").await;
    assert_eq!(sent.status, NotificationStatus::Sent);
    assert_eq!(sent.attempts, 2);
    assert_eq!(sent.last_error, None);
    assert_eq!(sent.deliveries["webhook"], "sent");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "one failed POST, one delivered");
    for (headers, body) in &requests {
        assert_signed(headers, body);
        assert_eq!(headers["x-keyplane-delivery"], n.id.as_str());
        assert_eq!(headers["x-keyplane-event"], "credential.registered");
        let doc: Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["kind"], "credential.registered");
        assert_eq!(doc["username"], "alice");
        assert!(doc.get("contact_email").is_none());
    }
    // The retry did not write the file sink again.
    assert_eq!(
        file_lines(&server)
            .iter()
            .filter(|l| l["id"] == n.id.as_str())
            .count(),
        1
    );
    server.shutdown().await;
}

async fn a_notification_that_keeps_failing_is_failed_then_retried_by_an_operator(backend: Backend) {
    let (receiver, url) = Receiver::start(usize::MAX).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let settings = webhook_settings(url, dir.path());
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .settings(|s| {
            settings(s);
            s.notifications.max_attempts = 3;
            s.notifications.file.enabled = false;
        })
        .start()
        .await;
    let admin = member(&server, "root", Some("owner")).await;
    let n = only(&server, "credential.registered").await;
    server.app.deliver_notifications().await.unwrap();
    clock.advance_secs(30);
    server.app.deliver_notifications().await.unwrap();
    let second = only(&server, "credential.registered").await;
    assert_eq!(second.status, NotificationStatus::Pending);
    assert_eq!(
        second.next_attempt_at.0,
        clock.now().0 + 60_000,
        "the back-off doubles"
    );
    clock.advance_secs(60);
    server.app.deliver_notifications().await.unwrap();
    let failed = only(&server, "credential.registered").await;
    assert_eq!(failed.status, NotificationStatus::Failed);
    assert_eq!(failed.attempts, 3);
    assert!(failed.last_error.as_deref().unwrap().contains("500"));
    assert_eq!(receiver.requests().len(), 3);
    // Operators see it over the API.
    let (status, body) = call(
        &server,
        Method::GET,
        "/api/v1/admin/notifications?status=failed",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["notifications"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], n.id.as_str());
    assert_eq!(listed[0]["attempts"], 3);
    assert!(listed[0]["deliveries"]["webhook"]
        .as_str()
        .unwrap()
        .starts_with("failed"));
    for bad in ["?status=lost", "?limit=0", "?colour=red"] {
        let (status, _) = call(
            &server,
            Method::GET,
            &format!("/api/v1/admin/notifications{bad}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (_, body) = call(
        &server,
        Method::GET,
        "/api/v1/admin/notifications?status=lost",
        &admin,
        None,
    )
    .await;
    assert_eq!(body["error"]["code"], "invalid_status");
    clock.advance_secs(3600);
    assert_eq!(
        server.app.deliver_notifications().await.unwrap(),
        0,
        "failed for good"
    );

    // A retry (what `keyplane notifications retry` calls) puts it back once, audited.
    let tenant = server.default_tenant().await;
    let again = server
        .app
        .retry_notification(&tenant, &n.id, &Caller::operator("test"))
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.attempts),
        (NotificationStatus::Pending, 0)
    );
    let twice = server
        .app
        .retry_notification(&tenant, &n.id, &Caller::operator("test"))
        .await
        .unwrap_err();
    assert_eq!(twice.code, "invalid_transition");
    receiver.fail_first.store(0, Ordering::SeqCst);
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 1);
    assert_eq!(
        only(&server, "credential.registered").await.status,
        NotificationStatus::Sent
    );
    let retried = server
        .app
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                action: Some("notification.retried".into()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    server.shutdown().await;
}

/// A real SMTP server: `python3 -m aiosmtpd` with the Mailbox handler, writing each message it
/// accepts into a Maildir. `None` when the package is missing and skipping is allowed.
fn smtp_settings(port: u16) -> impl FnOnce(&mut keyplane_server::Settings) {
    move |s| {
        manual(s);
        s.notifications.smtp.host = "127.0.0.1".into();
        s.notifications.smtp.port = port;
        s.notifications.smtp.security = "none".into();
        s.notifications.smtp.from = "keyplane@example.com".into();
        s.notifications.smtp.timeout_secs = 10;
    }
}

async fn email_goes_to_the_verified_contact_through_a_real_smtp_server(backend: Backend) {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let server = TestServer::builder(backend)
        .settings(smtp_settings(smtp.port))
        .start()
        .await;
    allow_codes(&server).await;
    let (_auth, bearer) = server.user_with_passkey("alice").await;
    server.user_with_passkey("bob").await;
    set_contact(&server, "alice", Some("alice@example.com")).await;
    let codes = generate_codes(&server, &bearer).await;
    // alice: registered, contact_changed, codes_generated; bob: registered (no contact).
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 4);
    let codes_sent = only(&server, "recovery.codes_generated").await;
    assert_eq!(codes_sent.status, NotificationStatus::Sent);
    assert_eq!(codes_sent.deliveries["email"], "sent");
    assert_eq!(codes_sent.deliveries["file"], "sent");

    let messages = smtp.messages();
    assert_eq!(messages.len(), 3, "only alice has a contact");
    let rp = server.default_tenant().await.rp_name;
    for m in &messages {
        assert!(m.contains("To: alice@example.com"), "{m}");
        assert!(m.contains("From: keyplane@example.com"), "{m}");
        assert!(m.contains("Hello alice"), "{m}");
        assert_no_code(m, &codes);
    }
    let subject = format!("Subject: {rp}: New recovery codes were generated");
    assert_eq!(
        messages.iter().filter(|m| m.contains(&subject)).count(),
        1,
        "{messages:?}"
    );
    server.shutdown().await;
}

async fn without_a_contact_email_is_skipped_and_the_file_still_written(backend: Backend) {
    // Nothing listens on this port: a user without a contact must not even be tried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::builder(backend)
        .settings(smtp_settings(closed))
        .start()
        .await;
    server.user_with_passkey("alice").await;
    assert_eq!(server.app.deliver_notifications().await.unwrap(), 1);
    let n = only(&server, "credential.registered").await;
    assert_eq!(n.status, NotificationStatus::Sent);
    assert_eq!(n.deliveries["email"], "skipped: no contact");
    assert_eq!(n.deliveries["file"], "sent");
    assert_eq!(file_lines(&server).len(), 1);
    server.shutdown().await;

    // With email the only sink, the notification is skipped (nothing to retry) …
    let server = TestServer::builder(backend)
        .settings(|s| {
            smtp_settings(closed)(s);
            s.notifications.file.enabled = false;
        })
        .start()
        .await;
    server.user_with_passkey("alice").await;
    server.app.deliver_notifications().await.unwrap();
    let n = only(&server, "credential.registered").await;
    assert_eq!(n.status, NotificationStatus::Skipped);
    assert!(n.last_error.as_deref().unwrap().contains("no contact"));
    assert!(file_lines(&server).is_empty());
    // … and a contact set later, then a retry, sends it (here: the relay is down, so it fails
    // and waits, rather than vanishing).
    set_contact(&server, "alice", Some("alice@example.com")).await;
    let tenant = server.default_tenant().await;
    server
        .app
        .retry_notification(&tenant, &n.id, &Caller::operator("test"))
        .await
        .unwrap();
    server.app.deliver_notifications().await.unwrap();
    let n = server
        .app
        .store
        .notification(&tenant.id, &n.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Pending);
    assert!(
        n.deliveries["email"].starts_with("failed"),
        "{:?}",
        n.deliveries
    );
    server.shutdown().await;
}

/// The hook for secrets minted at send time (the recovery link): the sinks themselves put it in
/// the email to the verified contact and nowhere else. Driven through the real sinks, with a
/// real SMTP server and a real webhook receiver.
async fn only_the_email_to_the_verified_contact_carries_a_notification_secret(backend: Backend) {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let (receiver, url) = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let webhook = webhook_settings(url, dir.path());
    let server = TestServer::builder(backend)
        .settings(|s| {
            smtp_settings(smtp.port)(s);
            webhook(s);
        })
        .start()
        .await;
    server.user_with_passkey("alice").await;
    let n = only(&server, "credential.registered").await;
    let tenant = server.default_tenant().await;
    let sinks = keyplane_server::notify::Sinks::from_settings(&server.app.settings).unwrap();
    assert_eq!(sinks.names(), vec!["file", "webhook", "email"]);
    let secret = keyplane_core::Secret::from_presented("https://example.com/recover#s3cr3t-link");
    let message = keyplane_core::notification::render(&n, "alice", &tenant.rp_name);
    let out = keyplane_server::notify::Outgoing {
        tenant: &tenant,
        notification: &n,
        username: "alice",
        message: &message,
        contact: Some("alice@example.com"),
        secret: Some(&secret),
    };
    for name in sinks.names() {
        assert_eq!(
            sinks.deliver(name, &out, SystemClock.now()).await,
            keyplane_server::notify::SinkResult::Sent,
            "{name}"
        );
    }
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("s3cr3t-link"), "the email carries it");
    assert!(mails[0].contains("To: alice@example.com"));
    let file = std::fs::read_to_string(server.app.settings.notifications_file()).unwrap();
    assert!(!file.contains("s3cr3t"), "the file sink never does");
    let posted = receiver.requests();
    assert_eq!(posted.len(), 1);
    assert!(!posted[0].1.contains("s3cr3t"), "the webhook never does");
    // Without a contact, the email (and so the secret) goes nowhere.
    let out = keyplane_server::notify::Outgoing {
        contact: None,
        ..out
    };
    assert_eq!(
        sinks.deliver("email", &out, SystemClock.now()).await,
        keyplane_server::notify::SinkResult::Skipped("no contact".into())
    );
    assert_eq!(smtp.messages().len(), 1);
    // And the service's hook mints nothing yet: no stored or rendered notification has one.
    assert_eq!(
        server
            .app
            .notification_secret(&tenant, &n)
            .await
            .unwrap()
            .map(|s| s.expose().to_string()),
        None
    );
    server.shutdown().await;
}

/// Takes a case for `username` through verification to `ready` (no approval, no cooling-off).
async fn ready_case(server: &TestServer, username: &str) -> keyplane_core::RecoveryCaseId {
    use keyplane_server::service::CaseAction;
    let tenant = server.default_tenant().await;
    let user = server
        .app
        .store
        .user_by_username(&tenant.id, username)
        .await
        .unwrap()
        .unwrap();
    let agent = Caller::operator("agent");
    let case = server
        .app
        .open_recovery_case_for(&tenant, &user.id, &agent)
        .await
        .unwrap();
    for action in [
        CaseAction::Take,
        CaseAction::Check {
            check: "identity_document".into(),
            passed: true,
            evidence: "video call".into(),
        },
        CaseAction::Verified,
    ] {
        server
            .app
            .act_on_case(&tenant, &case.id, action, &agent)
            .await
            .unwrap();
    }
    case.id
}

async fn a_ready_cases_link_goes_only_by_email_to_the_verified_contact_and_works_once(
    backend: Backend,
) {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let server = TestServer::builder(backend)
        .settings(smtp_settings(smtp.port))
        .start()
        .await;
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(
            &tenant,
            "version = 1\n[recovery]\ncooling_off_secs = 0\n",
            &Caller::operator("test"),
        )
        .await
        .unwrap();
    server.user_with_passkey("alice").await;
    server.user_with_passkey("bob").await;
    set_contact(&server, "alice", Some("alice@example.com")).await;
    let alices = ready_case(&server, "alice").await;
    let bobs = ready_case(&server, "bob").await;
    server.app.deliver_notifications().await.unwrap();

    let mails: Vec<String> = smtp
        .messages()
        .into_iter()
        .filter(|m| m.contains("Your account recovery is ready"))
        .collect();
    assert_eq!(mails.len(), 1, "only alice has a contact: {mails:?}");
    // Quoted-printable: undo soft line breaks and the encoded `=` (the token is base64url).
    let mail = mails[0]
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(mail.contains("To: alice@example.com"));
    let token = mail
        .split("/recover#token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the email carries the link")
        .to_string();
    // The link is nowhere else: not in the outbox, the file sink or the audit log.
    let outbox = serde_json::to_string(
        &notifications(&server)
            .await
            .iter()
            .map(|n| n.payload.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!outbox.contains(&token));
    let file = std::fs::read_to_string(server.app.settings.notifications_file()).unwrap();
    assert!(!file.contains(&token));
    let log = server
        .app
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                limit: 1000,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(log.iter().all(|e| !e.details.contains(&token)));
    let issued: Vec<&str> = log
        .iter()
        .filter(|e| e.action == "recovery.link_issued")
        .map(|e| e.target_id.as_str())
        .collect();
    assert_eq!(
        issued,
        vec![alices.as_str()],
        "no link minted for bob (no contact): {bobs}"
    );

    let used = server
        .post("/api/v1/recovery/links/redeem", &json!({ "token": token }))
        .await;
    assert_eq!(used.status, StatusCode::OK, "{:?}", used.body);
    assert_eq!(used.body["recovery"], true);
    let again = server
        .post("/api/v1/recovery/links/redeem", &json!({ "token": token }))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    server.shutdown().await;
}

both_backends!(
    a_ready_cases_link_goes_only_by_email_to_the_verified_contact_and_works_once,
    only_the_email_to_the_verified_contact_carries_a_notification_secret,
    recovery_codes_are_announced_in_the_file_sink_without_the_codes,
    signing_in_notifies_nobody,
    contact_addresses_are_validated_audited_and_shown,
    webhook_deliveries_are_signed_and_retried_with_backoff,
    a_notification_that_keeps_failing_is_failed_then_retried_by_an_operator,
    email_goes_to_the_verified_contact_through_a_real_smtp_server,
    without_a_contact_email_is_skipped_and_the_file_still_written,
);

/// Two nodes on one PostgreSQL, both running the delivery worker and both asked to deliver at
/// once as well: every notification reaches the webhook exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_each_notification_exactly_once() {
    if keyplane_testkit::database::postgres_skip_allowed()
        && keyplane_testkit::postgres_admin_url().is_none()
    {
        eprintln!("PostgreSQL test skipped by KEYPLANE_TEST_SKIP_POSTGRES=1 (never allowed in CI)");
        return;
    }
    let (receiver, url) = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let worker = |s: &mut keyplane_server::Settings| {
        s.notifications.interval_ms = 20;
        s.notifications.webhook.url = url.clone();
        s.notifications.webhook.secret_file = secret_file.clone();
    };
    let a = TestServer::builder(Backend::Postgres)
        .settings(worker)
        .start()
        .await;
    let b = TestServer::builder(Backend::Postgres)
        .database_url(&a.database_url())
        .public_url(&a.base)
        .settings(worker)
        .start()
        .await;
    let tenant = a.default_tenant().await;
    for i in 0..12 {
        let name = format!("user{i}");
        let inv = a
            .app
            .invite(&tenant, &name, None, None, &Caller::operator("test"))
            .await
            .unwrap();
        a.app
            .set_contact(
                &tenant,
                &inv.user.id,
                Some(&format!("{name}@example.com")),
                &Caller::operator("test"),
            )
            .await
            .unwrap();
        // Both nodes race for what is due, besides their workers.
        let (x, y) = tokio::join!(a.app.deliver_notifications(), b.app.deliver_notifications());
        x.unwrap();
        y.unwrap();
    }
    let total = notifications(&a).await.len();
    assert_eq!(total, 12);
    let mut settled = false;
    for _ in 0..400 {
        if notifications(&a)
            .await
            .iter()
            .all(|n| n.status == NotificationStatus::Sent)
        {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(settled, "every notification is delivered");
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for (headers, body) in receiver.requests() {
        assert_signed(&headers, &body);
        *per_id
            .entry(headers["x-keyplane-delivery"].to_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), total);
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
    // Each node wrote its own file; together they hold each notification once.
    assert_eq!(file_lines(&a).len() + file_lines(&b).len(), total);
    b.shutdown().await;
    a.shutdown().await;
}
