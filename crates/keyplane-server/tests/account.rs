//! The signed-in user's sessions over HTTP, on both backends: listed with the current one
//! marked, and "sign out everywhere else" ending exactly the others, audited once.

mod common;

use common::{both_backends, call};
use keyplane_store::AuditFilter;
use keyplane_testkit::{Backend, TestServer};
use reqwest::{Method, StatusCode};

async fn a_user_sees_their_sessions_and_signs_out_everywhere_else(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut phone, first) = server.user_with_passkey("alice").await;
    let second = server.sign_in(&mut phone, Some("alice")).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_b, bob) = server.user_with_passkey("bob").await;

    let (s, body) = call(&server, Method::GET, "/api/v1/me/sessions", &second, None).await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "bob's session is not alice's: {body:?}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(sessions
        .iter()
        .all(|s| s["passkey"] == "Passkey 1" && s["aal"] == "aal2"));

    let (s, body) = call(
        &server,
        Method::POST,
        "/api/v1/me/sessions/end-others",
        &second,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!((s, body["ended"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, _) = call(&server, Method::GET, "/api/v1/me", &first, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the other session is over");
    let (s, _) = call(&server, Method::GET, "/api/v1/me", &second, None).await;
    assert_eq!(s, StatusCode::OK, "this one goes on");
    let (s, _) = call(&server, Method::GET, "/api/v1/me", &bob, None).await;
    assert_eq!(s, StatusCode::OK, "another user's sessions are untouched");
    // Nothing left to end: no event.
    let (_, body) = call(
        &server,
        Method::POST,
        "/api/v1/me/sessions/end-others",
        &second,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(body["ended"], 0);
    let tenant = server.default_tenant().await;
    let events = server
        .app
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                action: Some("session.others_ended".into()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    for path in ["/api/v1/me/sessions"] {
        let r = server.request(Method::GET, path, None, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    server.shutdown().await;
}

async fn an_administrator_sees_what_their_role_allows(backend: Backend) {
    let server = TestServer::start(backend).await;
    let helpdesk = common::member(&server, "hannah", Some("helpdesk")).await;
    let (_, plain) = server.user_with_passkey("pat").await;
    let (_, me) = call(&server, Method::GET, "/api/v1/me", &helpdesk, None).await;
    let perms: Vec<&str> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        perms.contains(&"users.manage") && perms.contains(&"fraud.read"),
        "{perms:?}"
    );
    assert!(
        !perms.contains(&"fraud.resolve") && !perms.contains(&"policy.apply"),
        "{perms:?}"
    );
    let (_, me) = call(&server, Method::GET, "/api/v1/me", &plain, None).await;
    assert!(me.get("permissions").is_none(), "{me:?}");
    server.shutdown().await;
}

both_backends!(
    a_user_sees_their_sessions_and_signs_out_everywhere_else,
    an_administrator_sees_what_their_role_allows
);
