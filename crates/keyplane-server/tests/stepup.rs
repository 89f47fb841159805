//! Step-up over HTTP on both backends: a guarded action needs the policy's level reached
//! recently; a step-up ceremony raises it; it expires; unreachable levels and other sessions are
//! refused.

mod common;

use common::both_backends;
use keyplane_core::audit::Caller;
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, SystemClock};
use keyplane_store::Store;
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const POLICY: &str = "version = 1\n[[step_up]]\nid = \"admin\"\nactions = [\"admin.*\"]\nlevel = \"aal2\"\nmax_age_secs = 600\n";

/// The bootstrap administrator, enrolled and signed in: (authenticator, bearer token).
async fn admin(server: &TestServer) -> (SoftAuthenticator, String) {
    let mut auth = SoftAuthenticator::new(&server.origin(), true, true);
    server
        .enrol(
            &mut auth,
            server.bootstrap_token.as_deref().expect("bootstrap token"),
        )
        .await;
    let session = server.sign_in(&mut auth, Some("admin")).await;
    (auth, session["token"].as_str().unwrap().to_string())
}

async fn read_audit(server: &TestServer, token: &str) -> (StatusCode, Value) {
    let r = server
        .request(
            Method::GET,
            "/api/v1/audit/events?limit=1",
            None,
            Some(token),
            None,
        )
        .await;
    (r.status, r.body)
}

async fn step_up(
    server: &TestServer,
    auth: &mut SoftAuthenticator,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let options = server
        .request(
            Method::POST,
            "/api/v1/step-up/options",
            None,
            Some(token),
            Some(&body),
        )
        .await;
    if options.status != StatusCode::OK {
        return (options.status, options.body);
    }
    let asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    let r = server
        .request(
            Method::POST,
            "/api/v1/step-up/verify",
            None,
            Some(token),
            Some(&json!({"ceremony": options.body["ceremony"], "credential": asserted})),
        )
        .await;
    (r.status, r.body)
}

async fn a_guarded_action_needs_a_recent_level_and_step_up_restores_it(backend: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    let tenant = server.default_tenant().await;
    assert!(
        server
            .app
            .apply_policy(&tenant, POLICY, &Caller::operator("test"))
            .await
            .is_ok(),
        "policy applies"
    );
    let (mut auth, token) = admin(&server).await;
    assert_eq!(
        read_audit(&server, &token).await.0,
        StatusCode::OK,
        "aal2 just reached at sign-in"
    );
    clock.advance_secs(601);
    let (status, body) = read_audit(&server, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["level"].as_str()
        ),
        (Some("step_up_required"), Some("aal2")),
        "{body}"
    );
    let (status, body) = step_up(
        &server,
        &mut auth,
        &token,
        json!({"action": "admin.audit.read"}),
    )
    .await;
    assert_eq!(
        (status, body["aal"].as_str()),
        (StatusCode::OK, Some("aal2")),
        "{body}"
    );
    assert_eq!(
        read_audit(&server, &token).await.0,
        StatusCode::OK,
        "stepped up"
    );
    let me = server
        .request(Method::GET, "/api/v1/me", None, Some(&token), None)
        .await;
    assert_eq!(me.body["session"]["elevated"]["aal"], "aal2");
    clock.advance_secs(601);
    assert_eq!(
        read_audit(&server, &token).await.0,
        StatusCode::FORBIDDEN,
        "the step-up expired too"
    );
    // The step-up is in the audit log.
    let events = server
        .store
        .list_audit_events(
            &tenant.id,
            &keyplane_store::AuditFilter {
                action: Some("session.stepped_up".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    server.shutdown().await;
}

async fn a_level_no_passkey_can_reach_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, token) = admin(&server).await;
    // Built-in policy: aal3 needs a trusted attestation, which no passkey has yet.
    let (status, body) = step_up(&server, &mut auth, &token, json!({"level": "aal3"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["level"].as_str()
        ),
        (Some("step_up_unreachable"), Some("aal3"))
    );
    let (status, body) = step_up(
        &server,
        &mut auth,
        &token,
        json!({"action": "me.profile.read"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("no_step_up_needed"))
    );
    let (status, body) = step_up(
        &server,
        &mut auth,
        &token,
        json!({"level": "aal2", "action": "admin.x"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    server.shutdown().await;
}

async fn a_passkey_without_user_verification_cannot_step_up(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut auth = SoftAuthenticator::new(&server.origin(), false, true);
    let token = server.invite("pat").await;
    server.enrol(&mut auth, &token).await;
    let session = server.sign_in(&mut auth, Some("pat")).await;
    assert_eq!(session["aal"], "aal1");
    let token = session["token"].as_str().unwrap();
    // It did not verify the user at registration, so it is not offered for aal2: refused up front.
    let (status, body) = step_up(&server, &mut auth, token, json!({"level": "aal2"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step_up_unreachable")),
        "{body}"
    );
    server.shutdown().await;
}

async fn a_step_up_ceremony_belongs_to_its_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, first) = admin(&server).await;
    let second = server.sign_in(&mut auth, Some("admin")).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let options = server
        .request(
            Method::POST,
            "/api/v1/step-up/options",
            None,
            Some(&first),
            Some(&json!({"level": "aal2"})),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    let body = json!({"ceremony": options.body["ceremony"], "credential": asserted});
    let other = server
        .request(
            Method::POST,
            "/api/v1/step-up/verify",
            None,
            Some(&second),
            Some(&body),
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::NOT_FOUND, "ceremony_not_found")
    );
    // A sign-in ceremony cannot be used for a step-up either.
    let signin = server
        .post("/api/v1/authentication/options", &json!({}))
        .await;
    let asserted = auth.authenticate(&signin.body["publicKey"]).await.unwrap();
    let wrong = server
        .request(
            Method::POST,
            "/api/v1/step-up/verify",
            None,
            Some(&first),
            Some(&json!({"ceremony": signin.body["ceremony"], "credential": asserted})),
        )
        .await;
    assert_eq!(wrong.code(), "ceremony_not_found");
    let unauth = server
        .request(
            Method::POST,
            "/api/v1/step-up/options",
            None,
            None,
            Some(&json!({"level": "aal2"})),
        )
        .await;
    assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
    server.shutdown().await;
}

async fn a_cloned_key_used_for_step_up_is_suspended(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, token) = admin(&server).await;
    let copy = auth.passkey();
    server.sign_in(&mut auth, Some("admin")).await;
    auth.set_passkey(copy);
    let (status, body) = step_up(&server, &mut auth, &token, json!({"level": "aal2"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("sign_count_regression")),
        "{body}"
    );
    let tenant = server.default_tenant().await;
    let creds = server.store_credentials(&tenant).await;
    assert_eq!(creds[0].status, keyplane_core::CredentialStatus::Suspended);
    server.shutdown().await;
}

both_backends!(
    a_cloned_key_used_for_step_up_is_suspended,
    a_guarded_action_needs_a_recent_level_and_step_up_restores_it,
    a_level_no_passkey_can_reach_is_refused,
    a_passkey_without_user_verification_cannot_step_up,
    a_step_up_ceremony_belongs_to_its_session,
);
