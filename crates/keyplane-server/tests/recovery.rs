//! Recovery codes over HTTP, on both backends: generated only where the policy allows them,
//! shown once, kept only as Argon2id hashes, replaced together. (Redeeming is not offered yet.)

mod common;

use common::both_backends;
use keyplane_core::audit::Caller;
use keyplane_store::AuditFilter;
use keyplane_testkit::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

const CODES: &str = "/api/v1/me/recovery-codes";

async fn with_policy(server: &TestServer, document: &str) {
    let tenant = server.default_tenant().await;
    let applied = server
        .app
        .apply_policy(&tenant, document, &Caller::operator("test"))
        .await;
    assert!(applied.is_ok(), "policy applies");
}

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

async fn recovery_codes_are_denied_by_the_default_policy_and_per_population(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_auth, bearer) = server.user_with_passkey("alice").await;
    let reply = server
        .request(Method::POST, CODES, None, Some(&bearer), Some(&json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert_eq!(reply.body["error"]["code"], "recovery_codes_denied");

    with_policy(
        &server,
        "version = 1\npopulations = [\"regulated\"]\n[recovery]\ncodes = \"allow\"\n[recovery.regulated]\ncodes = \"deny\"\n",
    )
    .await;
    put_in(&server, "alice", &["regulated"]).await;
    let reply = server
        .request(Method::POST, CODES, None, Some(&bearer), Some(&json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recovery.regulated.codes"),
        "{:?}",
        reply.body
    );
    let status = server
        .request(Method::GET, CODES, None, Some(&bearer), None)
        .await;
    assert_eq!(status.body, json!({"remaining": 0, "generated_at": null}));
    let tenant = server.default_tenant().await;
    let events = server
        .app
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                action: Some("recovery.codes_generated".into()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(events.is_empty(), "a refusal generates nothing");
    server.shutdown().await;
}

async fn generated_codes_are_shown_once_kept_only_as_argon2id_hashes_and_replaced_together(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    with_policy(&server, "version = 1\n[recovery]\ncodes = \"allow\"\n").await;
    let (_auth, bearer) = server.user_with_passkey("alice").await;
    let reply = server
        .request(Method::POST, CODES, None, Some(&bearer), Some(&json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        reply.headers.get("cache-control").unwrap(),
        "no-store",
        "shown once: never cached"
    );
    let codes: Vec<String> = reply.body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(codes
        .iter()
        .all(|c| c.len() == 34 && c.split('-').count() == 7));

    let status = server
        .request(Method::GET, CODES, None, Some(&bearer), None)
        .await;
    assert_eq!(status.body["remaining"], 10);
    assert_eq!(status.body["generated_at"], reply.body["generated_at"]);
    assert!(status.body.get("codes").is_none(), "never shown again");

    let tenant = server.default_tenant().await;
    let user = server
        .app
        .store
        .user_by_username(&tenant.id, "alice")
        .await
        .unwrap()
        .unwrap();
    let stored = server
        .app
        .store
        .unused_recovery_codes(&tenant.id, &user.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
    let events = server
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
    let generated: Vec<_> = events
        .iter()
        .filter(|e| e.action == "recovery.codes_generated")
        .collect();
    assert_eq!(generated.len(), 1);
    let details: serde_json::Value = serde_json::from_str(&generated[0].details).unwrap();
    assert_eq!(details["count"], 10);
    let audit_text = format!("{events:?}");
    for code in &codes {
        let bare = code.replace('-', "");
        for (_, phc) in &stored {
            assert!(phc.starts_with("$argon2id$"), "{phc}");
            assert!(!phc.contains(&bare) && !phc.contains(code.as_str()));
        }
        assert!(!audit_text.contains(&bare) && !audit_text.contains(code.as_str()));
    }

    let again = server
        .request(Method::POST, CODES, None, Some(&bearer), Some(&json!({})))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let fresh = server
        .app
        .store
        .unused_recovery_codes(&tenant.id, &user.id)
        .await
        .unwrap();
    assert_eq!(
        fresh.len(),
        10,
        "the old unused codes are replaced, not added to"
    );
    assert!(
        fresh.iter().all(|f| stored.iter().all(|s| s.0 != f.0)),
        "none of the old codes is left"
    );
    let old = keyplane_core::RecoveryCode::parse(&codes[0]).unwrap();
    assert!(
        old.find(&fresh).is_none(),
        "an old code matches none of the new ones"
    );
    let new = keyplane_core::RecoveryCode::parse(again.body["codes"][0].as_str().unwrap()).unwrap();
    assert!(
        new.find(&fresh).is_some(),
        "the stored hashes are of the codes shown"
    );
    server.shutdown().await;
}

async fn recovery_codes_need_a_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    for method in [Method::GET, Method::POST] {
        let reply = server
            .request(method, CODES, None, None, Some(&json!({})))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    }
    server.shutdown().await;
}

both_backends!(
    recovery_codes_are_denied_by_the_default_policy_and_per_population,
    generated_codes_are_shown_once_kept_only_as_argon2id_hashes_and_replaced_together,
    recovery_codes_need_a_session,
);
