//! The security invariants of DESIGN.md, each tested end to end over HTTP on SQLite and
//! PostgreSQL. Test names start with the invariant they pin down.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{both_backends, row_counts};
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, SystemClock};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

fn b64_mutate(v: &mut Value, pointer: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let field = v
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing"));
    let mut bytes = URL_SAFE_NO_PAD
        .decode(field.as_str().unwrap().trim_end_matches('='))
        .unwrap();
    f(&mut bytes);
    *field = json!(URL_SAFE_NO_PAD.encode(bytes));
}

/// Options for a sign-in plus the authenticator's assertion, not yet sent.
async fn assertion(
    server: &TestServer,
    auth: &mut SoftAuthenticator,
    username: Option<&str>,
) -> (Value, Value) {
    let body = username
        .map(|u| json!({"username": u}))
        .unwrap_or(json!({}));
    let options = server.post("/api/v1/authentication/options", &body).await;
    assert_eq!(options.status, StatusCode::OK);
    let assertion = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    (options.body["ceremony"].clone(), assertion)
}

async fn verify(
    server: &TestServer,
    ceremony: &Value,
    credential: &Value,
) -> keyplane_testkit::server::Reply {
    server
        .post(
            "/api/v1/authentication/verify",
            &json!({"ceremony": ceremony, "credential": credential}),
        )
        .await
}

async fn invariant1_replayed_assertion_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("alice").await;
    let (ceremony, cred) = assertion(&server, &mut auth, Some("alice")).await;
    assert_eq!(
        verify(&server, &ceremony, &cred).await.status,
        StatusCode::OK
    );
    let before = row_counts(&server).await;
    let replay = verify(&server, &ceremony, &cred).await;
    assert_eq!(replay.status, StatusCode::NOT_FOUND, "{:?}", replay.body);
    assert_eq!(replay.code(), "ceremony_not_found");
    assert_eq!(
        row_counts(&server).await,
        before,
        "a replay changes nothing"
    );
    server.shutdown().await;
}

async fn invariant1_expired_ceremony_is_rejected(backend: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    let (mut auth, _) = server.user_with_passkey("bob").await;
    let (ceremony, cred) = assertion(&server, &mut auth, Some("bob")).await;
    clock.advance_secs(301);
    let late = verify(&server, &ceremony, &cred).await;
    assert_eq!(late.status, StatusCode::GONE, "{:?}", late.body);
    assert_eq!(late.code(), "ceremony_expired");
    // The expired ceremony is gone for good.
    assert_eq!(
        verify(&server, &ceremony, &cred).await.code(),
        "ceremony_not_found"
    );
    server.shutdown().await;
}

async fn invariant1_ceremony_is_bound_to_its_purpose(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, token) = server.user_with_passkey("carol").await;
    // A registration ceremony cannot finish a sign-in.
    let reg = server
        .request(
            Method::POST,
            "/api/v1/registration/options",
            None,
            Some(&token),
            Some(&json!({})),
        )
        .await;
    let (_, cred) = assertion(&server, &mut auth, Some("carol")).await;
    let wrong = verify(&server, &reg.body["ceremony"], &cred).await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    assert_eq!(wrong.code(), "ceremony_not_found");
    // A sign-in ceremony cannot finish a registration.
    let (signin, _) = assertion(&server, &mut auth, Some("carol")).await;
    let mut other = SoftAuthenticator::new(&server.origin(), true, true);
    let created = other.register(&reg.body["publicKey"]).await.unwrap();
    let wrong = server
        .request(
            Method::POST,
            "/api/v1/registration/verify",
            None,
            Some(&token),
            Some(&json!({"ceremony": signin, "credential": created})),
        )
        .await;
    assert_eq!(wrong.code(), "ceremony_not_found", "{:?}", wrong.body);
    server.shutdown().await;
}

async fn invariant1_and_8_ceremony_of_another_tenant_is_not_found_and_not_consumed(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    server.create_tenant("acme", "acme.test").await;
    let (mut auth, _) = server.user_with_passkey("dora").await;
    let (ceremony, cred) = assertion(&server, &mut auth, Some("dora")).await;
    let body = json!({"ceremony": ceremony, "credential": cred});
    let cross = server
        .request(
            Method::POST,
            "/api/v1/authentication/verify",
            Some("acme.test"),
            None,
            Some(&body),
        )
        .await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND, "{:?}", cross.body);
    assert_eq!(cross.code(), "ceremony_not_found");
    // The attempt did not consume the ceremony in its own tenant.
    assert_eq!(
        verify(&server, &ceremony, &cred).await.status,
        StatusCode::OK
    );
    server.shutdown().await;
}

async fn invariant2_wrong_origin_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("erin").await;
    // A look-alike page on another port of the same host: same RP ID, different origin.
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    auth.set_origin(&format!("http://localhost:{}", port.wrapping_add(1)));
    let before = row_counts(&server).await;
    let (ceremony, cred) = assertion(&server, &mut auth, Some("erin")).await;
    let reply = verify(&server, &ceremony, &cred).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    assert_eq!(reply.code(), "origin_mismatch");
    assert_eq!(row_counts(&server).await.sessions, before.sessions);
    server.shutdown().await;
}

async fn invariant2_wrong_rp_id_hash_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("fred").await;
    let (ceremony, mut cred) = assertion(&server, &mut auth, Some("fred")).await;
    b64_mutate(&mut cred, "/response/authenticatorData", |d| {
        d[..32].copy_from_slice(&Sha256::digest(b"evil.test"))
    });
    let reply = verify(&server, &ceremony, &cred).await;
    assert_eq!(reply.code(), "rp_id_mismatch", "{:?}", reply.body);
    server.shutdown().await;
}

async fn invariant2_user_presence_is_required(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("gina").await;
    let (ceremony, mut cred) = assertion(&server, &mut auth, Some("gina")).await;
    b64_mutate(&mut cred, "/response/authenticatorData", |d| d[32] &= !0x01);
    let reply = verify(&server, &ceremony, &cred).await;
    assert_eq!(reply.code(), "user_not_present", "{:?}", reply.body);
    server.shutdown().await;
}

async fn invariant2_wrong_challenge_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("hank").await;
    let (_, cred) = assertion(&server, &mut auth, Some("hank")).await;
    let (other_ceremony, _) = assertion(&server, &mut auth, Some("hank")).await;
    let reply = verify(&server, &other_ceremony, &cred).await;
    assert_eq!(reply.code(), "challenge_mismatch", "{:?}", reply.body);
    server.shutdown().await;
}

async fn invariant2_tampered_signature_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("ivy").await;
    let before = row_counts(&server).await;
    let (ceremony, mut cred) = assertion(&server, &mut auth, Some("ivy")).await;
    // Change the signed data (the counter), keeping the signature: it no longer verifies.
    b64_mutate(&mut cred, "/response/authenticatorData", |d| d[36] ^= 0x40);
    let reply = verify(&server, &ceremony, &cred).await;
    assert_eq!(reply.code(), "signature_invalid", "{:?}", reply.body);
    assert_eq!(
        row_counts(&server).await.sessions,
        before.sessions,
        "no session for a bad signature"
    );
    server.shutdown().await;
}

async fn unknown_credential_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.user_with_passkey("jack").await;
    // An authenticator that registered at another server.
    let other = TestServer::start(Backend::Sqlite).await;
    let mut stranger = SoftAuthenticator::new(&server.origin(), true, true);
    let token = other.invite("jack").await;
    let opts = other
        .post(
            "/api/v1/registration/options",
            &json!({"enrolment_token": token}),
        )
        .await;
    stranger.register(&opts.body["publicKey"]).await.unwrap();
    let (ceremony, cred) = assertion(&server, &mut stranger, None).await;
    let reply = verify(&server, &ceremony, &cred).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert_eq!(reply.code(), "unknown_credential");
    other.shutdown().await;
    server.shutdown().await;
}

async fn invariant3_sign_count_regression_suspends_the_credential(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("kim").await;
    let copy = auth.passkey();
    server.sign_in(&mut auth, Some("kim")).await;
    server.sign_in(&mut auth, Some("kim")).await;
    // A clone of the key made earlier signs with an older counter.
    auth.set_passkey(copy);
    let before = row_counts(&server).await;
    let reply = server.try_sign_in(&mut auth, Some("kim")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert_eq!(reply.code(), "sign_count_regression");
    assert_eq!(row_counts(&server).await.sessions, before.sessions);
    let tenant = server.default_tenant().await;
    let creds = server.store_credentials(&tenant).await;
    assert_eq!(creds[0].status, keyplane_core::CredentialStatus::Suspended);
    assert_eq!(
        creds[0].status_reason.as_deref(),
        Some("sign_count_regression")
    );
    // Suspended: the key is refused until an admin acts (usernameless, since username-first
    // options no longer list a suspended passkey).
    let reply = server.try_sign_in(&mut auth, None).await;
    assert_eq!(reply.code(), "credential_inactive");
    server.shutdown().await;
}

async fn invariant5_session_tokens_are_random_and_stored_hashed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, token) = server.user_with_passkey("lena").await;
    let second = server.sign_in(&mut auth, Some("lena")).await;
    assert_ne!(second["token"].as_str().unwrap(), token);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&token).unwrap().len(),
        32,
        "256 bits"
    );
    let hashes = common::session_token_hashes(&server).await;
    assert!(
        hashes.contains(&Sha256::digest(token.as_bytes()).to_vec()),
        "stored as SHA-256"
    );
    assert!(
        !hashes.iter().any(|h| h == token.as_bytes()),
        "never stored in plain text"
    );
    server.shutdown().await;
}

async fn invariant5_cookies_are_httponly_samesite_and_csrf_protected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("mia").await;
    let (ceremony, cred) = assertion(&server, &mut auth, Some("mia")).await;
    let reply = verify(&server, &ceremony, &cred).await;
    let cookies: Vec<String> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("keyplane_session="))
        .expect("session cookie");
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );
    assert!(
        !session_cookie.contains("Secure"),
        "plain-HTTP localhost cannot use Secure cookies"
    );
    let cookie_value = session_cookie.split(';').next().unwrap().to_string();
    let csrf = reply.body["csrf_token"].as_str().unwrap().to_string();

    let creds = server
        .request(
            Method::GET,
            "/api/v1/me/credentials",
            None,
            Some(reply.body["token"].as_str().unwrap()),
            None,
        )
        .await;
    let path = format!(
        "/api/v1/me/credentials/{}",
        creds.body["credentials"][0]["id"].as_str().unwrap()
    );
    let send = |csrf: Option<String>| {
        let mut req = server
            .http
            .patch(server.url(&path))
            .header("cookie", cookie_value.clone())
            .json(&json!({"nickname": "renamed"}));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.send()
    };
    let without = send(None).await.unwrap();
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        without.json::<Value>().await.unwrap()["error"]["code"],
        "csrf_failed"
    );
    let wrong = send(Some("x".repeat(43))).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let with = send(Some(csrf)).await.unwrap();
    assert_eq!(with.status(), StatusCode::OK);
    // Reading with the cookie needs no CSRF token.
    let me = server
        .http
        .get(server.url("/api/v1/me"))
        .header("cookie", cookie_value.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    server.shutdown().await;
}

async fn invariant5_https_tenants_get_secure_cookies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.create_tenant("acme", "acme.test").await;
    let invitation = server
        .app
        .invite(
            &tenant,
            "nina",
            None,
            None,
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .unwrap();
    let mut auth = SoftAuthenticator::new("https://acme.test", true, true);
    let host = Some("acme.test");
    let opts = server
        .request(
            Method::POST,
            "/api/v1/registration/options",
            host,
            None,
            Some(&json!({"enrolment_token": invitation.token.expose()})),
        )
        .await;
    assert_eq!(opts.status, StatusCode::OK, "{:?}", opts.body);
    let created = auth.register(&opts.body["publicKey"]).await.unwrap();
    let done = server
        .request(
            Method::POST,
            "/api/v1/registration/verify",
            host,
            None,
            Some(&json!({"ceremony": opts.body["ceremony"], "credential": created})),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let opts = server
        .request(
            Method::POST,
            "/api/v1/authentication/options",
            host,
            None,
            Some(&json!({})),
        )
        .await;
    let asserted = auth.authenticate(&opts.body["publicKey"]).await.unwrap();
    let reply = server
        .request(
            Method::POST,
            "/api/v1/authentication/verify",
            host,
            None,
            Some(&json!({"ceremony": opts.body["ceremony"], "credential": asserted})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let cookie = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("keyplane_session="))
        .unwrap()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    server.shutdown().await;
}

async fn invariant7_unknown_usernames_look_like_known_ones(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.user_with_passkey("olga").await;
    let known = server
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "olga"}),
        )
        .await;
    let unknown = server
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "nobody"}),
        )
        .await;
    assert_eq!(known.status, unknown.status);
    let keys = |v: &Value| {
        v["publicKey"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&known.body), keys(&unknown.body));
    let ids = |v: &Value| v["publicKey"]["allowCredentials"].as_array().unwrap().len();
    assert_eq!(ids(&known.body), ids(&unknown.body));
    // The decoy is stable, like a real credential id.
    let again = server
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "nobody"}),
        )
        .await;
    assert_eq!(
        again.body["publicKey"]["allowCredentials"][0]["id"],
        unknown.body["publicKey"]["allowCredentials"][0]["id"]
    );
    server.shutdown().await;
}

async fn invariant8_sessions_and_credentials_do_not_cross_tenants(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.create_tenant("acme", "acme.test").await;
    let (mut auth, token) = server.user_with_passkey("paul").await;
    let host = Some("acme.test");
    let me = server
        .request(Method::GET, "/api/v1/me", host, Some(&token), None)
        .await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "a session is only valid in its tenant"
    );
    let mine = server
        .request(
            Method::GET,
            "/api/v1/me/credentials",
            None,
            Some(&token),
            None,
        )
        .await;
    let id = mine.body["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = server
        .request(
            Method::GET,
            &format!("/api/v1/me/credentials/{id}"),
            host,
            Some(&token),
            None,
        )
        .await;
    assert_eq!(get.status, StatusCode::UNAUTHORIZED);
    // The passkey itself is unknown to the other tenant.
    auth.set_origin("https://acme.test");
    let opts = server
        .request(
            Method::POST,
            "/api/v1/authentication/options",
            host,
            None,
            Some(&json!({})),
        )
        .await;
    let mut opts_pk = opts.body["publicKey"].clone();
    opts_pk["rpId"] = json!("acme.test");
    // Even if an authenticator presents tenant A's passkey to tenant B, B does not know it.
    let asserted = auth.authenticate(&opts_pk).await.unwrap();
    let reply = server
        .request(
            Method::POST,
            "/api/v1/authentication/verify",
            host,
            None,
            Some(&json!({"ceremony": opts.body["ceremony"], "credential": asserted})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert_eq!(reply.code(), "unknown_credential");
    server.shutdown().await;
}

async fn user_handles_are_random_not_usernames(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.invite("quinn@example.com").await;
    let tenant = server.default_tenant().await;
    let user = server
        .app
        .store
        .user_by_username(&tenant.id, "quinn@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.user_handle.len(), 32);
    assert!(!user.user_handle.windows(5).any(|w| w == b"quinn"));
    let other = server.invite("quinn2@example.com").await;
    assert!(!other.is_empty());
    let user2 = server
        .app
        .store
        .user_by_username(&tenant.id, "quinn2@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(user.user_handle, user2.user_handle);
    server.shutdown().await;
}

async fn invariant7_ceremonies_are_rate_limited_per_address_and_per_account(backend: Backend) {
    let server = TestServer::builder(backend)
        .settings(|s| {
            s.rate_limits.per_address_per_minute = 8;
            s.rate_limits.per_account_per_minute = 3;
        })
        .start()
        .await;
    let options = |u: &'static str| {
        let body = json!({ "username": u });
        let server = &server;
        async move { server.post("/api/v1/authentication/options", &body).await }
    };
    // Per account, whether it exists or not: the fourth start for "victim" is refused.
    for _ in 0..3 {
        assert_eq!(options("victim").await.status, StatusCode::OK);
    }
    let refused = options("victim").await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{:?}",
        refused.body
    );
    assert!(refused.headers.get("retry-after").is_some());
    assert!(refused.body["error"]["retry_after_secs"].as_str().is_some());
    // Another account is unaffected (until the address's share is used up) ...
    assert_eq!(options("someone-else").await.status, StatusCode::OK);
    // ... which happens at the eighth ceremony request from this address, on any endpoint.
    for _ in 0..3 {
        server
            .post("/api/v1/authentication/options", &json!({}))
            .await;
    }
    let refused = server
        .post("/api/v1/authentication/options", &json!({}))
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let verify = server
        .post("/api/v1/authentication/verify", &json!({}))
        .await;
    assert_eq!(verify.code(), "rate_limited", "verify counts too");
    // Non-ceremony endpoints are not limited by it.
    assert_eq!(
        server
            .request(reqwest::Method::GET, "/healthz", None, None, None)
            .await
            .status,
        StatusCode::OK
    );
    server.shutdown().await;
}

both_backends!(
    invariant7_ceremonies_are_rate_limited_per_address_and_per_account,
    invariant1_replayed_assertion_is_rejected,
    invariant1_expired_ceremony_is_rejected,
    invariant1_ceremony_is_bound_to_its_purpose,
    invariant1_and_8_ceremony_of_another_tenant_is_not_found_and_not_consumed,
    invariant2_wrong_origin_is_rejected,
    invariant2_wrong_rp_id_hash_is_rejected,
    invariant2_user_presence_is_required,
    invariant2_wrong_challenge_is_rejected,
    invariant2_tampered_signature_is_rejected,
    unknown_credential_is_rejected,
    invariant3_sign_count_regression_suspends_the_credential,
    invariant5_session_tokens_are_random_and_stored_hashed,
    invariant5_cookies_are_httponly_samesite_and_csrf_protected,
    invariant5_https_tenants_get_secure_cookies,
    invariant7_unknown_usernames_look_like_known_ones,
    invariant8_sessions_and_credentials_do_not_cross_tenants,
    user_handles_are_random_not_usernames,
);
