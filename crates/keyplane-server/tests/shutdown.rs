//! Serving, on both backends: graceful shutdown (readiness turns 503 `draining` first while
//! requests are still served; then the server stops, and a last pass empties the notification
//! outbox, so what was due is delivered before the process ends), and the client address behind
//! trusted proxies.

mod common;

use common::both_backends;
use keyplane_testkit::{Backend, TestServer};
use reqwest::StatusCode;
use std::time::Duration;

async fn shutdown_drains_readiness_first_and_flushes_the_outbox(backend: Backend) {
    let mut server = TestServer::builder(backend)
        .settings(|s| {
            s.shutdown_grace_ms = 600;
            // The worker's first tick is at start; the next would be in an hour: only the
            // shutdown's last pass can deliver what is recorded below.
            s.notifications.interval_ms = 3_600_000;
        })
        .start()
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.user_with_passkey("alice").await; // credential.registered: a notification for alice
    let log = server.app.settings.notifications_file();
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !before.contains("credential.registered"),
        "not delivered yet: {before}"
    );
    assert_eq!(
        server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let (http, ready, health) = (
        server.http.clone(),
        server.url("/readyz"),
        server.url("/healthz"),
    );
    let probe = async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = http.get(&ready).send().await.unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        let h = http.get(&health).send().await.unwrap().status();
        (status, body, h)
    };
    let ((), (status, body, health)) = tokio::join!(server.stop_serving(), probe);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "draining");
    assert_eq!(
        health,
        StatusCode::OK,
        "still alive and serving while draining"
    );
    let after = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        after.contains("credential.registered"),
        "flushed at shutdown: {after}"
    );
    server.shutdown().await;
}

/// Behind a trusted proxy, the audit log records the client's address from X-Forwarded-For;
/// from anywhere else, the header is ignored (a client cannot choose its own address).
async fn the_client_address_comes_from_trusted_proxies_only(backend: Backend) {
    for (trusted, expected) in [
        (vec![], "127.0.0.1"),
        (vec!["127.0.0.0/8".to_owned()], "198.51.100.4"),
    ] {
        let server = TestServer::builder(backend)
            .settings(move |s| s.trusted_proxies = trusted)
            .start()
            .await;
        let (_, token) = server.user_with_passkey("alice").await;
        let r = server
            .http
            .post(server.url("/api/v1/logout"))
            .bearer_auth(&token)
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.4")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let ended = server.events("session.ended").await;
        assert_eq!(ended.last().unwrap().client_ip.as_deref(), Some(expected));
        server.shutdown().await;
    }
}

both_backends!(
    shutdown_drains_readiness_first_and_flushes_the_outbox,
    the_client_address_comes_from_trusted_proxies_only,
);
