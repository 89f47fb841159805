//! Recovery codes over HTTP, on both backends: generated only where the policy allows them,
//! shown once, kept only as Argon2id hashes, replaced together; redeemed once each for a
//! recovery session that may only register a passkey and ends when it has, with one answer for
//! every failure.

mod common;

use common::both_backends;
use keyplane_core::audit::Caller;
use keyplane_store::AuditFilter;
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

const CODES: &str = "/api/v1/me/recovery-codes";

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

    server.apply_policy("version = 1\npopulations = [\"regulated\"]\n[recovery]\ncodes = \"allow\"\n[recovery.regulated]\ncodes = \"deny\"\n",
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
    server
        .apply_policy("version = 1\n[recovery]\ncodes = \"allow\"\n")
        .await;
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

const REDEEM: &str = "/api/v1/recovery/codes/redeem";

async fn a_recovery_code_opens_one_restricted_session_that_ends_with_a_new_passkey(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    server
        .apply_policy("version = 1\n[recovery]\ncodes = \"allow\"\n")
        .await;
    let (_lost, bearer) = server.user_with_passkey("alice").await;
    let reply = server
        .request(Method::POST, CODES, None, Some(&bearer), Some(&json!({})))
        .await;
    let codes: Vec<String> = reply.body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();

    // Typed loosely (lower case, spaces instead of dashes): still the code.
    let loose = codes[3].to_lowercase().replace('-', " ");
    let opened = server
        .post(REDEEM, &json!({ "username": "Alice", "code": loose }))
        .await;
    assert_eq!(opened.status, StatusCode::OK, "{:?}", opened.body);
    assert_eq!(opened.headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(opened.body["restricted"], true);
    assert_eq!(opened.body["recovery"], true);
    assert_eq!(opened.body["aal"], "aal1");
    let recovery = opened.body["token"].as_str().unwrap().to_string();

    // The recovery session reads its account but does nothing else than register a passkey.
    let me = server
        .request(Method::GET, "/api/v1/me", None, Some(&recovery), None)
        .await;
    assert_eq!(me.status, StatusCode::OK);
    let refused = server
        .request(Method::POST, CODES, None, Some(&recovery), Some(&json!({})))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "re_enrolment_required");

    // A code is used once.
    let again = server
        .post(REDEEM, &json!({ "username": "alice", "code": codes[3] }))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(again.body["error"]["code"], "recovery_code_invalid");

    let mut fresh = SoftAuthenticator::new(&server.origin(), true, true);
    let registered = server.add_passkey(&mut fresh, &recovery).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{:?}",
        registered.body
    );
    // ... and then the recovery session is over.
    let me = server
        .request(Method::GET, "/api/v1/me", None, Some(&recovery), None)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{:?}", me.body);
    // The new passkey signs in normally; the code path kept the other passkey (a code does
    // not say the old one is lost).
    let signed_in = server.sign_in(&mut fresh, Some("alice")).await;
    assert_eq!(signed_in["restricted"], false);
    let tenant = server.default_tenant().await;
    let creds = server.store_credentials(&tenant).await;
    assert_eq!(
        creds
            .iter()
            .filter(|c| c.status == keyplane_core::CredentialStatus::Active)
            .count(),
        2
    );
    let status = server
        .request(
            Method::GET,
            CODES,
            None,
            Some(signed_in["token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status.body["remaining"], 9);

    let used = server.events("recovery.code_used").await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].actor_type, "user");
    let details: serde_json::Value = serde_json::from_str(&used[0].details).unwrap();
    assert_eq!(details["remaining"], 9);
    assert!(!used[0].details.contains(&codes[3]), "never the code");
    let failed = server.events("recovery.code_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reasons, vec!["wrong_code".to_string()]);
    server.shutdown().await;
}

async fn every_failed_redemption_gets_the_same_answer_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.apply_policy("version = 1\npopulations = [\"regulated\"]\n[recovery]\ncodes = \"allow\"\n[recovery.regulated]\ncodes = \"deny\"\n",
    )
    .await;
    let mut codes = std::collections::HashMap::new();
    for name in ["alice", "bob", "carol"] {
        let (_a, bearer) = server.user_with_passkey(name).await;
        let reply = server
            .request(Method::POST, CODES, None, Some(&bearer), Some(&json!({})))
            .await;
        codes.insert(name, reply.body["codes"][0].as_str().unwrap().to_string());
    }
    let tenant = server.default_tenant().await;
    let bob = server
        .app
        .store
        .user_by_username(&tenant.id, "bob")
        .await
        .unwrap()
        .unwrap();
    server
        .app
        .suspend_user(&tenant, &bob.id, "left", &Caller::operator("test"))
        .await
        .unwrap();
    put_in(&server, "carol", &["regulated"]).await;
    let before = common::row_counts(&server).await;
    let attempts = [
        ("nobody", codes["alice"].clone(), "unknown_account"),
        ("alice", codes["bob"].clone(), "wrong_code"),
        ("alice", "not-a-code".to_string(), "malformed_code"),
        ("bob", codes["bob"].clone(), "account_inactive"),
        ("carol", codes["carol"].clone(), "recovery_codes_denied"),
    ];
    let mut answers = Vec::new();
    for (user, code, _) in &attempts {
        let r = server
            .post(REDEEM, &json!({ "username": user, "code": code }))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{user}: {:?}", r.body);
        answers.push(r.body["error"].clone());
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer for every failure: {answers:?}"
    );
    assert_eq!(common::row_counts(&server).await, before, "nothing changed");
    let failed = server.events("recovery.code_failed").await;
    let mut reasons: Vec<String> = failed.iter().map(|e| e.reasons[0].clone()).collect();
    reasons.sort();
    let mut expected: Vec<String> = attempts.iter().map(|a| a.2.to_string()).collect();
    expected.sort();
    assert_eq!(reasons, expected, "the log keeps the real reasons");
    // Bad bodies are refused before any of that.
    for bad in [
        json!({ "username": "alice" }),
        json!({ "username": "alice", "code": "x", "extra": 1 }),
    ] {
        let r = server.post(REDEEM, &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
    server.shutdown().await;
}

async fn recovery_attempts_are_limited_per_account_and_per_address(backend: Backend) {
    let server = TestServer::builder(backend)
        .settings(|s| {
            s.rate_limits.recovery_per_account_per_hour = 2;
            s.rate_limits.recovery_per_address_per_hour = 7;
        })
        .start()
        .await;
    // Per account, whether or not it exists.
    for user in ["ghost", "alice"] {
        for _ in 0..2 {
            let r = server
                .post(REDEEM, &json!({ "username": user, "code": "x" }))
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let r = server
            .post(REDEEM, &json!({ "username": user, "code": "x" }))
            .await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{user}: {:?}",
            r.body
        );
        assert_eq!(r.body["error"]["code"], "rate_limited");
    }
    // Per address: six attempts (refused ones too) were counted above; one more, then the
    // address is done whatever the account.
    let r = server
        .post(REDEEM, &json!({ "username": "bob", "code": "x" }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = server
        .post(REDEEM, &json!({ "username": "carol", "code": "x" }))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    server.shutdown().await;
}

async fn sensitive_acts_wait_out_the_lock_after_a_recovery(backend: Backend) {
    let clock = std::sync::Arc::new(keyplane_core::time::ManualClock::new(
        keyplane_core::Clock::now(&keyplane_core::SystemClock),
    ));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    server.apply_policy("version = 1\n[[step_up]]\nid = \"codes\"\nactions = [\"recovery.codes.generate\"]\nlevel = \"aal2\"\nmax_age_secs = 900\n[recovery]\ncodes = \"allow\"\nsensitive_lock_secs = 3600\n",
    )
    .await;
    let (_lost, bearer) = server.user_with_passkey("alice").await;
    let reply = server
        .request(Method::POST, CODES, None, Some(&bearer), Some(&json!({})))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "no recovery yet: {:?}",
        reply.body
    );
    let code = reply.body["codes"][0].as_str().unwrap().to_string();
    let opened = server
        .post(REDEEM, &json!({ "username": "alice", "code": code }))
        .await;
    let mut fresh = SoftAuthenticator::new(&server.origin(), true, true);
    let registered = server
        .add_passkey(&mut fresh, opened.body["token"].as_str().unwrap())
        .await;
    assert_eq!(registered.status, StatusCode::CREATED);
    let session = server.sign_in(&mut fresh, Some("alice")).await;
    let token = session["token"].as_str().unwrap();
    let locked = server
        .request(Method::POST, CODES, None, Some(token), Some(&json!({})))
        .await;
    assert_eq!(locked.status, StatusCode::FORBIDDEN, "{:?}", locked.body);
    assert_eq!(locked.body["error"]["code"], "recently_recovered");
    assert!(locked.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("recovery.sensitive_lock_secs"));
    // Acts no step-up rule names are not locked.
    let me = server
        .request(
            Method::GET,
            "/api/v1/me/credentials",
            None,
            Some(token),
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    clock.advance_secs(3600);
    let session = server.sign_in(&mut fresh, Some("alice")).await;
    let again = server
        .request(
            Method::POST,
            CODES,
            None,
            Some(session["token"].as_str().unwrap()),
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the lock is over: {:?}",
        again.body
    );
    server.shutdown().await;
}

both_backends!(
    sensitive_acts_wait_out_the_lock_after_a_recovery,
    a_recovery_code_opens_one_restricted_session_that_ends_with_a_new_passkey,
    every_failed_redemption_gets_the_same_answer_and_changes_nothing,
    recovery_attempts_are_limited_per_account_and_per_address,
    recovery_codes_are_denied_by_the_default_policy_and_per_population,
    generated_codes_are_shown_once_kept_only_as_argon2id_hashes_and_replaced_together,
    recovery_codes_need_a_session,
);
