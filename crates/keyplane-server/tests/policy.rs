//! The tenant policy applied to real registrations and sign-ins over HTTP, on both backends:
//! refusals name their rules and are audited; the level a sign-in reaches follows the policy.

mod common;

use common::{both_backends, row_counts};
use keyplane_core::audit::Caller;
use keyplane_store::{AuditFilter, Store};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

const REGULATED: &str = r#"version = 1
populations = ["regulated"]

[enrolment]
max_passkeys = 2

[authenticators.regulated]
synced = "deny"
"#;

async fn put_in(server: &TestServer, username: &str, populations: &[&str]) {
    let tenant = server.default_tenant().await;
    let user = server
        .app
        .store
        .user_by_username(&tenant.id, username)
        .await
        .unwrap()
        .unwrap();
    let pops: Vec<String> = populations.iter().map(|p| p.to_string()).collect();
    server
        .app
        .set_populations(&tenant, &user, &pops, &Caller::operator("test"))
        .await
        .expect("set populations");
}

async fn a_denied_registration_names_its_rule_stores_nothing_and_is_audited(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.apply_policy(REGULATED).await;
    let token = server.invite("rita").await;
    put_in(&server, "rita", &["regulated"]).await;
    let mut auth = SoftAuthenticator::new(&server.origin(), true, true);
    let options = server
        .post(
            "/api/v1/registration/options",
            &json!({"enrolment_token": token}),
        )
        .await;
    let created = auth.register(&options.body["publicKey"]).await.unwrap();
    let before = row_counts(&server).await;
    let reply = server
        .post(
            "/api/v1/registration/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": created}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, "policy_denied"),
        "{:?}",
        reply.body
    );
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("authenticators.regulated.synced")
            && message.contains("synced_passkey_not_allowed"),
        "{message}"
    );
    assert_eq!(
        row_counts(&server).await.credentials,
        before.credentials,
        "nothing stored"
    );
    let tenant = server.default_tenant().await;
    let events = server
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
    let denied = events
        .iter()
        .find(|e| e.action == "registration.failed")
        .expect("audited");
    assert_eq!(
        (denied.outcome.as_str(), denied.reasons.clone()),
        ("denied", vec!["policy_denied".to_string()])
    );
    assert!(events.iter().any(|e| e.action == "policy.activated"));
    assert!(events
        .iter()
        .any(|e| e.action == "user.populations_changed"));
    server.shutdown().await;
}

async fn users_outside_the_population_follow_the_default_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.apply_policy(REGULATED).await;
    let (mut first, token) = server.user_with_passkey("walt").await;
    server.sign_in(&mut first, Some("walt")).await;
    // max_passkeys = 2: a second passkey is fine, a third is refused by name.
    for (n, expect) in [(2, StatusCode::CREATED), (3, StatusCode::FORBIDDEN)] {
        let mut extra = SoftAuthenticator::new(&server.origin(), true, false);
        let options = server
            .request(
                Method::POST,
                "/api/v1/registration/options",
                None,
                Some(&token),
                Some(&json!({})),
            )
            .await;
        let created = extra.register(&options.body["publicKey"]).await.unwrap();
        let reply = server
            .request(
                Method::POST,
                "/api/v1/registration/verify",
                None,
                Some(&token),
                Some(&json!({"ceremony": options.body["ceremony"], "credential": created})),
            )
            .await;
        assert_eq!(reply.status, expect, "passkey {n}: {:?}", reply.body);
        if expect == StatusCode::FORBIDDEN {
            assert!(reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("enrolment.max_passkeys"));
        }
    }
    server.shutdown().await;
}

async fn the_level_a_sign_in_reaches_follows_the_policy(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("lena").await;
    assert_eq!(
        server.sign_in(&mut auth, Some("lena")).await["aal"],
        "aal2",
        "built-in: user verified is aal2"
    );
    // A stricter policy: aal2 also needs a trusted attestation, which a software passkey lacks.
    server.apply_policy("version = 1\n[assurance]\naal2 = [\"user_verified\", \"trusted_attestation\"]\naal3 = [\"user_verified\", \"trusted_attestation\", \"device_bound\"]\n",
    )
    .await;
    let session = server.sign_in(&mut auth, Some("lena")).await;
    assert_eq!(session["aal"], "aal1");
    let tenant = server.default_tenant().await;
    let events = server
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                action: Some("authentication.succeeded".into()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    let last: serde_json::Value = serde_json::from_str(&events.last().unwrap().details).unwrap();
    assert_eq!(
        (last["aal"].as_str(), last["policy_version"].as_i64()),
        (Some("aal1"), Some(1))
    );
    // Rolling back to the built-in rules is not possible (there is no version 0), but a new
    // version restores aal2.
    server.apply_policy("version = 1\n").await;
    assert_eq!(server.sign_in(&mut auth, Some("lena")).await["aal"], "aal2");
    assert_eq!(server.app.policy_history(&tenant).await.unwrap().len(), 2);
    server.shutdown().await;
}

async fn populations_must_be_declared_by_the_policy(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.invite("otto").await;
    let tenant = server.default_tenant().await;
    let user = server
        .app
        .store
        .user_by_username(&tenant.id, "otto")
        .await
        .unwrap()
        .unwrap();
    let err = server
        .app
        .set_populations(
            &tenant,
            &user,
            &["regulated".into()],
            &Caller::operator("test"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "unknown_population");
    let bad = server
        .app
        .apply_policy(&tenant, "version = 2\n", &Caller::operator("test"))
        .await;
    assert!(
        matches!(bad, Err(keyplane_server::service::ApplyError::Lint(_))),
        "a document with problems is never stored"
    );
    assert!(server.app.policy_history(&tenant).await.unwrap().is_empty());
    server.shutdown().await;
}

async fn simulation_counts_what_a_candidate_would_break_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .apply_policy("version = 1\npopulations = [\"regulated\"]\n")
        .await;
    server.user_with_passkey("ann").await;
    server.user_with_passkey("bea").await;
    server.user_with_passkey("cid").await;
    put_in(&server, "ann", &["regulated"]).await;
    put_in(&server, "bea", &["regulated"]).await;
    let tenant = server.default_tenant().await;
    let before = row_counts(&server).await;
    let report = server
        .app
        .simulate_policy(&tenant, REGULATED, &|_| {})
        .await
        .expect("simulates");
    let reg = &report.populations["regulated"];
    assert_eq!(
        (
            reg.users,
            reg.credentials,
            reg.credentials_becoming_non_compliant,
            reg.users_losing_every_compliant_credential
        ),
        (2, 2, 2, 2)
    );
    assert_eq!(reg.rules.get("authenticators.regulated.synced"), Some(&2));
    let none = &report.populations["(none)"];
    assert_eq!(
        (none.users, none.credentials_becoming_non_compliant),
        (2, 0),
        "cid and the bootstrap admin (no passkey)"
    );
    assert_eq!(
        row_counts(&server).await,
        before,
        "a simulation changes nothing"
    );
    assert_eq!(server.app.policy_history(&tenant).await.unwrap().len(), 1);
    server.shutdown().await;
}

async fn a_passkey_that_stops_complying_may_only_re_enrol(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut old, _) = server.user_with_passkey("nora").await;
    // The policy changes after enrolment: the all-zero AAGUID (this software authenticator's
    // model) is denied from now on.
    server.apply_policy("version = 1\n[authenticators]\ndeny_aaguids = [\"00000000-0000-0000-0000-000000000000\"]\n").await;
    let session = server.sign_in(&mut old, Some("nora")).await;
    assert_eq!(session["restricted"], true, "{session}");
    assert!(session["re_enrolment_reason"]
        .as_str()
        .unwrap()
        .contains("authenticators.deny_aaguids"));
    let token = session["token"].as_str().unwrap();
    // It may read its account and passkeys ...
    let me = server
        .request(Method::GET, "/api/v1/me", None, Some(token), None)
        .await;
    assert_eq!(
        (me.status, me.body["session"]["restricted"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_eq!(
        server
            .request(
                Method::GET,
                "/api/v1/me/credentials",
                None,
                Some(token),
                None
            )
            .await
            .status,
        StatusCode::OK
    );
    // ... but nothing else.
    let mine = server
        .request(
            Method::GET,
            "/api/v1/me/credentials",
            None,
            Some(token),
            None,
        )
        .await;
    let path = format!(
        "/api/v1/me/credentials/{}",
        mine.body["credentials"][0]["id"].as_str().unwrap()
    );
    for (method, path) in [
        (Method::PATCH, path.as_str()),
        (Method::POST, "/api/v1/step-up/options"),
    ] {
        let r = server
            .request(
                method.clone(),
                path,
                None,
                Some(token),
                Some(&json!({"nickname": "x", "level": "aal2"})),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "re_enrolment_required"),
            "{method} {path}"
        );
    }
    // It registers a compliant passkey (another model) ...
    let mut new = SoftAuthenticator::with_aaguid(&server.origin(), true, true, [0x22; 16]);
    let options = server
        .request(
            Method::POST,
            "/api/v1/registration/options",
            None,
            Some(token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let created = new.register(&options.body["publicKey"]).await.unwrap();
    let done = server
        .request(
            Method::POST,
            "/api/v1/registration/verify",
            None,
            Some(token),
            Some(&json!({"ceremony": options.body["ceremony"], "credential": created})),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    assert_eq!(done.body["aaguid"], "22222222-2222-2222-2222-222222222222");
    // ... and signing in with it gives a normal session.
    let fresh = server.sign_in(&mut new, Some("nora")).await;
    assert_eq!(fresh["restricted"], false);
    let tenant = server.default_tenant().await;
    let events = server
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                action: Some("authentication.succeeded".into()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    let restricted_event: serde_json::Value =
        serde_json::from_str(&events[events.len() - 2].details).unwrap();
    assert!(restricted_event["re_enrolment_required"]
        .as_str()
        .unwrap()
        .contains("authenticator_denied"));
    server.shutdown().await;
}

async fn status(server: &TestServer, bearer: &str) -> StatusCode {
    server
        .request(Method::GET, "/api/v1/me", None, Some(bearer), None)
        .await
        .status
}

async fn sessions_follow_the_policy_lifetime_and_idle_timeout(backend: Backend) {
    use keyplane_core::time::ManualClock;
    use keyplane_core::{Clock, SystemClock};
    let clock = std::sync::Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    server.apply_policy("version = 1\npopulations = [\"regulated\"]\n[sessions]\nlifetime_secs = 7200\nidle_secs = 3600\n[sessions.regulated]\nlifetime_secs = 900\nidle_secs = 300\n",
    )
    .await;
    let mut auth = SoftAuthenticator::new(&server.origin(), true, true);
    let token = server.invite("reg").await;
    server.enrol(&mut auth, &token).await;
    put_in(&server, "reg", &["regulated"]).await;
    let options = server
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "reg"}),
        )
        .await;
    let assertion = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    let reply = server
        .post(
            "/api/v1/authentication/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": assertion}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("__Host-") || c.contains("session"))
        .expect("session cookie");
    assert!(cookie.contains("Max-Age=900"), "{cookie}");
    let bearer = reply.body["token"].as_str().unwrap().to_string();
    // Used every 250 s, it outlives the 300 s idle timeout, but not its 900 s lifetime.
    for _ in 0..3 {
        clock.advance_secs(250);
        assert_eq!(status(&server, &bearer).await, StatusCode::OK);
    }
    clock.advance_secs(160); // 910 s after sign-in
    assert_eq!(
        status(&server, &bearer).await,
        StatusCode::UNAUTHORIZED,
        "lifetime"
    );
    // A fresh session left alone for 300 s times out.
    let session = server.sign_in(&mut auth, Some("reg")).await;
    let fresh = session["token"].as_str().unwrap();
    clock.advance_secs(299);
    assert_eq!(
        server
            .request(Method::GET, "/api/v1/me", None, Some(fresh), None)
            .await
            .status,
        StatusCode::OK
    );
    clock.advance_secs(300);
    assert_eq!(
        server
            .request(Method::GET, "/api/v1/me", None, Some(fresh), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "idle timeout"
    );
    // Users outside the population get the default rules.
    let (_, other) = server.user_with_passkey("def").await;
    clock.advance_secs(3000);
    assert_eq!(
        server
            .request(Method::GET, "/api/v1/me", None, Some(&other), None)
            .await
            .status,
        StatusCode::OK
    );
    server.shutdown().await;
}

both_backends!(
    sessions_follow_the_policy_lifetime_and_idle_timeout,
    a_passkey_that_stops_complying_may_only_re_enrol,
    simulation_counts_what_a_candidate_would_break_and_changes_nothing,
    a_denied_registration_names_its_rule_stores_nothing_and_is_audited,
    users_outside_the_population_follow_the_default_rules,
    the_level_a_sign_in_reaches_follows_the_policy,
    populations_must_be_declared_by_the_policy,
);
