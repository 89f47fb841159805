//! Two Keyplane nodes against one PostgreSQL: stateless nodes share ceremonies through the
//! database, and a ceremony is consumed exactly once even when both nodes race for it.

use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::StatusCode;
use serde_json::json;

async fn two_nodes() -> Option<(TestServer, TestServer)> {
    if keyplane_testkit::database::postgres_skip_allowed()
        && keyplane_testkit::postgres_admin_url().is_none()
    {
        eprintln!("PostgreSQL test skipped by KEYPLANE_TEST_SKIP_POSTGRES=1 (never allowed in CI)");
        return None;
    }
    let a = TestServer::start(Backend::Postgres).await;
    // The second node serves the same tenant: its origin is the first node's public URL, as it
    // would be behind one load balancer.
    let b = TestServer::builder(Backend::Postgres)
        .database_url(&a.database_url())
        .public_url(&a.base)
        .start()
        .await;
    assert!(
        b.bootstrap_token.is_none(),
        "the second node finds the deployment already set up"
    );
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ceremony_started_on_one_node_finishes_on_the_other() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let mut auth = SoftAuthenticator::new(&a.origin(), true, true);
    let token = a.invite("alice").await;
    // Registration: options from A, verify at B.
    let options = a
        .post(
            "/api/v1/registration/options",
            &json!({"enrolment_token": token}),
        )
        .await;
    let created = auth.register(&options.body["publicKey"]).await.unwrap();
    let done = b
        .post(
            "/api/v1/registration/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": created}),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    // Sign-in: options from B, verify at A; the session then works on both nodes.
    let options = b
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "alice"}),
        )
        .await;
    let asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    let session = a
        .post(
            "/api/v1/authentication/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": asserted}),
        )
        .await;
    assert_eq!(session.status, StatusCode::OK, "{:?}", session.body);
    let token = session.body["token"].as_str().unwrap();
    for node in [&a, &b] {
        let me = node
            .request(reqwest::Method::GET, "/api/v1/me", None, Some(token), None)
            .await;
        assert_eq!(me.status, StatusCode::OK);
    }
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_assertion_sent_to_both_nodes_at_once_succeeds_exactly_once() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let (mut auth, _) = a.user_with_passkey("bob").await;
    for round in 0..20 {
        // Usernameless: twenty username-first starts for one account would meet the
        // per-account rate limit, which this test is not about.
        let options = a.post("/api/v1/authentication/options", &json!({})).await;
        let asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
        let body = json!({"ceremony": options.body["ceremony"], "credential": asserted});
        let (ra, rb) = tokio::join!(
            a.post("/api/v1/authentication/verify", &body),
            b.post("/api/v1/authentication/verify", &body)
        );
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::NOT_FOUND],
            "round {round}: {:?} / {:?}",
            ra.body,
            rb.body
        );
        let loser = if ra.status == StatusCode::OK {
            &rb
        } else {
            &ra
        };
        assert_eq!(loser.code(), "ceremony_not_found");
    }
    // Twenty sign-ins, twenty sessions (plus the one from setup): no duplicate was created.
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(a.store.pool())
        .await
        .unwrap();
    assert_eq!(count, 21);
    b.shutdown().await;
    a.shutdown().await;
}
