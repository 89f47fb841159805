//! Webhooks on both backends, delivered to a real HTTP receiver on loopback that verifies every
//! request with the Standard Webhooks reference library (tests/webhook_receiver/receiver.py):
//! events reach subscribed endpoints only, signed, at least once with one id; a failing receiver
//! gets retries with back-off until it recovers; a delivery that keeps failing is dead-lettered
//! and an administrator replays it; a restart (even one that died holding a claim) loses nothing.
//!
//! Delivery passes are run by the test (`deliver_webhooks`) under a manual clock, exactly what
//! the worker does every `webhooks.interval_ms`.

mod common;

use common::{both_backends, call, member};
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, SystemClock, Timestamp};
use keyplane_store::Store;
use keyplane_testkit::{test_data, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The receiver process, killed when dropped.
struct Receiver {
    child: std::process::Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(pythonpath: &Path, port: u16, secret: &str, fail_first: u32) -> Receiver {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let mut child = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/webhook_receiver/receiver.py"
            ))
            .env("PYTHONPATH", pythonpath)
            .env("PORT", port.to_string())
            .env("SECRET", secret)
            .env("OUT", &out)
            .env("FAIL_FIRST", fail_first.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the receiver");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
        Receiver {
            child,
            out,
            _dir: dir,
        }
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Setup {
    server: TestServer,
    clock: Arc<ManualClock>,
    admin: String,
    client: String,
    secret: String,
    port: u16,
    key_file: PathBuf,
    _key_dir: tempfile::TempDir,
}

async fn setup(backend: Backend, max_attempts: u32, events: &[&str]) -> Setup {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("webhook.key");
    let server = server_on(backend, None, &clock, &key_file, max_attempts).await;
    let admin = member(&server, "ada", Some("admin")).await;
    let owner = call(&server, Method::GET, "/api/v1/me", &admin, None)
        .await
        .1["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let port = free_port();
    let (s, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/clients",
        &admin,
        Some(json!({ "kind": "webhook", "name": "siem", "owner": owner,
            "webhook": { "url": format!("http://127.0.0.1:{port}/hook"), "event_types": events } })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    Setup {
        client: body["client"]["id"].as_str().unwrap().to_owned(),
        server,
        clock,
        admin,
        secret,
        port,
        key_file,
        _key_dir: key_dir,
    }
}

async fn server_on(
    backend: Backend,
    database: Option<&str>,
    clock: &Arc<ManualClock>,
    key_file: &Path,
    max_attempts: u32,
) -> TestServer {
    let key_file = key_file.to_path_buf();
    let mut b = TestServer::builder(backend)
        .clock(clock.clone())
        .settings(move |s| {
            s.webhooks.interval_ms = 0; // the test runs the passes
            s.webhooks.max_attempts = max_attempts;
            s.webhooks.key_file = key_file;
        });
    if let Some(url) = database {
        b = b.database_url(url);
    }
    b.start().await
}

async fn deliveries(server: &TestServer, admin: &str, query: &str) -> Vec<Value> {
    let (s, body) = call(
        server,
        Method::GET,
        &format!("/api/v1/admin/webhooks/deliveries{query}"),
        admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

async fn events_reach_a_verifying_receiver_and_are_retried_until_it_recovers(backend: Backend) {
    let Some(pythonpath) = test_data::standardwebhooks_pythonpath() else {
        return;
    };
    let t = setup(backend, 8, &["credential.registered", "credential.revoked"]).await;
    let receiver = Receiver::start(&pythonpath, t.port, &t.secret, 2);
    // A subscribed event (bob's passkey) and others that are not (sign-ins, invitations).
    server_user(&t.server, "bob").await;
    let pending = deliveries(&t.server, &t.admin, "?status=pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["event_type"], "credential.registered");

    for (pass, wait) in [(1, 0), (2, 30), (3, 60)] {
        t.clock.advance_secs(wait);
        assert_eq!(
            t.server.app.deliver_webhooks().await.unwrap(),
            1,
            "pass {pass}"
        );
        // Not due again before its back-off.
        assert_eq!(
            t.server.app.deliver_webhooks().await.unwrap(),
            0,
            "pass {pass}"
        );
    }
    let got = receiver.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().all(|r| r["verified"] == true),
        "every request verifies: {got:?}"
    );
    assert!(
        got.iter().all(|r| r["id"] == got[0]["id"]),
        "one id for every attempt: {got:?}"
    );
    assert_eq!(
        got.iter()
            .map(|r| r["status"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [503, 503, 204]
    );
    let body = &got[2]["body"];
    assert_eq!(body["type"], "credential.registered");
    assert_eq!(body["data"]["target"]["type"], "credential");
    assert_eq!(body["data"]["outcome"], "success");
    let delivered = deliveries(&t.server, &t.admin, "?status=delivered").await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["attempts"], 3);
    assert_eq!(delivered[0]["last_status"], 204);
    assert_eq!(delivered[0]["payload"], *body, "the body as sent");

    // A rotation: during the overlap both secrets sign, so a receiver on either verifies.
    let (s, rotated) = call(
        &t.server,
        Method::POST,
        &format!("/api/v1/admin/clients/{}/rotate", t.client),
        &t.admin,
        Some(json!({ "overlap_hours": 1 })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != t.secret);
    let revoke = server_user(&t.server, "carl").await;
    revoke_passkey(&t.server, &t.admin, &revoke).await;
    assert_eq!(
        t.server.app.deliver_webhooks().await.unwrap(),
        2,
        "carl's registration and revocation"
    );
    let got = receiver.received();
    assert_eq!(got.len(), 5);
    assert!(
        got[3..]
            .iter()
            .all(|r| r["verified"] == true && r["signatures"] == 2),
        "{got:?}"
    );
    assert_eq!(got[4]["body"]["type"], "credential.revoked");
    drop(receiver);
    let newer = Receiver::start(&pythonpath, t.port, &new_secret, 0);
    server_user(&t.server, "dora").await;
    t.server.app.deliver_webhooks().await.unwrap();
    assert_eq!(
        newer.received()[0]["verified"],
        true,
        "the new secret verifies"
    );

    // Nothing of a webhook's secret in the audit log.
    let log = serde_json::to_string(&t.server.events("client.rotated").await).unwrap()
        + &serde_json::to_string(&t.server.events("client.created").await).unwrap();
    assert!(!log.contains(&t.secret[6..]) && !log.contains(&new_secret[6..]));
    t.server.shutdown().await;
}

/// A user with a passkey; returns the passkey's id.
async fn server_user(server: &TestServer, name: &str) -> String {
    let (_, token) = server.user_with_passkey(name).await;
    let (_, body) = call(server, Method::GET, "/api/v1/me/credentials", &token, None).await;
    body["credentials"][0]["id"].as_str().unwrap().to_owned()
}

async fn revoke_passkey(server: &TestServer, admin: &str, id: &str) {
    let (s, body) = call(
        server,
        Method::POST,
        &format!("/api/v1/admin/credentials/{id}/revoke"),
        admin,
        Some(json!({ "reason": "left the company" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

async fn dead_letters_are_kept_and_replayed_by_an_administrator(backend: Backend) {
    let Some(pythonpath) = test_data::standardwebhooks_pythonpath() else {
        return;
    };
    let t = setup(backend, 2, &["credential.registered"]).await;
    let receiver = Receiver::start(&pythonpath, t.port, &t.secret, 2);
    server_user(&t.server, "bob").await;
    t.server.app.deliver_webhooks().await.unwrap();
    t.clock.advance_secs(30);
    t.server.app.deliver_webhooks().await.unwrap();
    // (The receiver checks webhook-timestamp against its own clock, within five minutes: the
    // manual clock stays close to it.)
    t.clock.advance_secs(120);
    assert_eq!(
        t.server.app.deliver_webhooks().await.unwrap(),
        0,
        "dead: not attempted again"
    );
    let dead = deliveries(&t.server, &t.admin, "?status=dead").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(dead[0]["last_status"], 503);
    let id = dead[0]["id"].as_str().unwrap().to_owned();

    // Refusals change nothing.
    for (path, code, status) in [
        (
            "/api/v1/admin/webhooks/deliveries/msg_nope/replay".to_owned(),
            "delivery_not_found",
            StatusCode::NOT_FOUND,
        ),
        (
            format!(
                "/api/v1/admin/webhooks/deliveries/msg_{}/replay",
                "0".repeat(32)
            ),
            "delivery_not_found",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, body) = call(&t.server, Method::POST, &path, &t.admin, Some(json!({}))).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    for q in ["?status=lost", "?limit=0", "?client=x", "?other=1"] {
        let (s, body) = call(
            &t.server,
            Method::GET,
            &format!("/api/v1/admin/webhooks/deliveries{q}"),
            &t.admin,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {body}");
    }
    let viewer = member(&t.server, "victor", Some("helpdesk")).await;
    let (s, _) = call(
        &t.server,
        Method::POST,
        &format!("/api/v1/admin/webhooks/deliveries/{id}/replay"),
        &viewer,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "replaying needs clients.manage");

    let (s, body) = call(
        &t.server,
        Method::POST,
        &format!("/api/v1/admin/webhooks/deliveries/{id}/replay"),
        &t.admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    let (s, body) = call(
        &t.server,
        Method::POST,
        &format!("/api/v1/admin/webhooks/deliveries/{id}/replay"),
        &t.admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("delivery_pending"))
    );
    // The replay, and victor's new passkey (he enrolled above), go out now.
    assert_eq!(t.server.app.deliver_webhooks().await.unwrap(), 2);
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    let replayed: Vec<_> = got.iter().filter(|r| r["id"] == id.as_str()).collect();
    assert_eq!(
        replayed.len(),
        3,
        "two failed attempts and the replay, one id: {got:?}"
    );
    assert_eq!(replayed[2]["status"], 204);
    assert_eq!(replayed[2]["verified"], true);
    assert_eq!(t.server.events("webhook.delivery_replayed").await.len(), 1);
    t.server.shutdown().await;
}

async fn a_restart_loses_nothing_even_mid_delivery(backend: Backend) {
    let Some(pythonpath) = test_data::standardwebhooks_pythonpath() else {
        return;
    };
    let mut t = setup(backend, 8, &["credential.registered", "policy.activated"]).await;
    // Events recorded while the receiver is down: attempted, failed, still pending.
    for name in ["bob", "carl", "dora"] {
        server_user(&t.server, name).await;
    }
    assert_eq!(t.server.app.deliver_webhooks().await.unwrap(), 3);
    // This node then claims one more (as if mid-delivery) and dies.
    server_user(&t.server, "erin").await;
    let tenant = t.server.default_tenant().await;
    let now = t.clock.now();
    let held = t
        .server
        .store
        .due_webhook_deliveries(&tenant.id, now, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "the three are waiting for their back-off");
    assert!(t
        .server
        .store
        .claim_webhook_delivery(&tenant.id, &held[0].id, now, Timestamp(now.0 + 60_000))
        .await
        .unwrap());
    t.server.stop_serving().await;

    // Another process on the same database and webhook key.
    let url = t.server.database_url();
    let second = server_on(backend, Some(&url), &t.clock, &t.key_file, 8).await;
    let receiver = Receiver::start(&pythonpath, t.port, &t.secret, 0);
    t.clock.advance_secs(30);
    assert_eq!(
        second.app.deliver_webhooks().await.unwrap(),
        3,
        "the claimed one waits for its lease"
    );
    t.clock.advance_secs(31);
    assert_eq!(
        second.app.deliver_webhooks().await.unwrap(),
        1,
        "then it is delivered too"
    );
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    assert!(
        got.iter().all(|r| r["verified"] == true),
        "signed with the shared key: {got:?}"
    );
    let mut users: Vec<String> = got
        .iter()
        .map(|r| {
            r["body"]["data"]["details"]["user_id"]
                .as_str()
                .or(r["body"]["data"]["actor"]["id"].as_str())
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    users.sort();
    users.dedup();
    assert_eq!(users.len(), 4, "four different passkeys' events: {got:?}");
    assert!(deliveries(&second, &t.admin, "?status=pending")
        .await
        .is_empty());
    second.shutdown().await;
    t.server.shutdown().await;
}

async fn expiring_machine_clients_are_announced_once(backend: Backend) {
    let Some(pythonpath) = test_data::standardwebhooks_pythonpath() else {
        return;
    };
    let t = setup(backend, 8, &["client.expiring"]).await;
    let receiver = Receiver::start(&pythonpath, t.port, &t.secret, 0);
    let owner = call(&t.server, Method::GET, "/api/v1/me", &t.admin, None)
        .await
        .1["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, body) = call(
        &t.server,
        Method::POST,
        "/api/v1/admin/clients",
        &t.admin,
        Some(json!({ "name": "nightly export", "owner": owner, "scopes": ["users.read"], "expires_days": 7 })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let token = body["client"]["id"].as_str().unwrap().to_owned();
    let tenant = t.server.default_tenant().await;
    assert_eq!(
        t.server
            .app
            .announce_expiring_clients(&tenant)
            .await
            .unwrap(),
        1,
        "the 7-day token, not the 90-day endpoint"
    );
    assert_eq!(
        t.server
            .app
            .announce_expiring_clients(&tenant)
            .await
            .unwrap(),
        0,
        "once"
    );
    assert_eq!(t.server.app.deliver_webhooks().await.unwrap(), 1);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["verified"], true);
    assert_eq!(got[0]["body"]["type"], "client.expiring");
    assert_eq!(got[0]["body"]["data"]["target"]["id"], token.as_str());
    assert_eq!(got[0]["body"]["data"]["details"]["name"], "nightly export");
    t.server.shutdown().await;
}

both_backends!(
    expiring_machine_clients_are_announced_once,
    events_reach_a_verifying_receiver_and_are_retried_until_it_recovers,
    dead_letters_are_kept_and_replayed_by_an_administrator,
    a_restart_loses_nothing_even_mid_delivery,
);
