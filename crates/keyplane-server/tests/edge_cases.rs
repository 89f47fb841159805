//! Error paths that are not malformed input: suspended users, missing user handles, the wrong
//! ceremony type, stale cookies during enrolment, unknown passkey ids.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::both_backends;
use keyplane_core::UserStatus;
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn suspended_users_cannot_sign_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, token) = server.user_with_passkey("alice").await;
    let tenant = server.default_tenant().await;
    sqlx::query("UPDATE users SET status = $1 WHERE username = $2")
        .bind(UserStatus::Suspended.as_str())
        .bind("alice")
        .execute(server.store.pool())
        .await
        .unwrap();
    let reply = server.try_sign_in(&mut auth, None).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, "user_inactive"),
        "{:?}",
        reply.body
    );
    // Existing sessions stop working too.
    let me = server
        .request(Method::GET, "/api/v1/me", None, Some(&token), None)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    // And an invitation for a suspended user is refused.
    let err = server
        .app
        .invite(
            &tenant,
            "alice",
            None,
            None,
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code, "user_inactive");
    server.shutdown().await;
}

async fn usernameless_assertions_need_the_user_handle(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("bob").await;
    let options = server
        .post("/api/v1/authentication/options", &json!({}))
        .await;
    let mut asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    asserted["response"]
        .as_object_mut()
        .unwrap()
        .remove("userHandle");
    let reply = server
        .post(
            "/api/v1/authentication/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": asserted}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::BAD_REQUEST, "user_handle_missing"),
        "{:?}",
        reply.body
    );
    server.shutdown().await;
}

async fn a_user_handle_of_someone_else_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("carol").await;
    server.user_with_passkey("dave").await;
    let options = server
        .post("/api/v1/authentication/options", &json!({}))
        .await;
    let mut asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    asserted["response"]["userHandle"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let reply = server
        .post(
            "/api/v1/authentication/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": asserted}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::UNAUTHORIZED, "unknown_credential"),
        "{:?}",
        reply.body
    );
    server.shutdown().await;
}

async fn a_registration_response_is_not_an_assertion(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("erin").await;
    let options = server
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "erin"}),
        )
        .await;
    let mut asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    let cd = URL_SAFE_NO_PAD
        .decode(asserted["response"]["clientDataJSON"].as_str().unwrap())
        .unwrap();
    let mut cd: Value = serde_json::from_slice(&cd).unwrap();
    cd["type"] = json!("webauthn.create");
    asserted["response"]["clientDataJSON"] =
        json!(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cd).unwrap()));
    let reply = server
        .post(
            "/api/v1/authentication/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": asserted}),
        )
        .await;
    assert_eq!(
        reply.code(),
        "client_data_type_mismatch",
        "{:?}",
        reply.body
    );
    server.shutdown().await;
}

async fn a_stale_cookie_does_not_block_enrolment(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.invite("fay").await;
    let mut auth = SoftAuthenticator::new(&server.origin(), true, true);
    let stale = "keyplane_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let options: Value = server
        .http
        .post(server.url("/api/v1/registration/options"))
        .header("cookie", stale)
        .json(&json!({"enrolment_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(options["ceremony"].is_string(), "{options}");
    let created = auth.register(&options["publicKey"]).await.unwrap();
    let done = server
        .http
        .post(server.url("/api/v1/registration/verify"))
        .header("cookie", stale)
        .json(&json!({"ceremony": options["ceremony"], "credential": created}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    server.shutdown().await;
}

async fn adding_a_passkey_with_a_cookie_needs_the_csrf_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("gail").await;
    let session = server.sign_in(&mut auth, Some("gail")).await;
    let cookie = format!("keyplane_session={}", session["token"].as_str().unwrap());
    let post = |path: &str, body: Value, csrf: Option<&str>| {
        let mut r = server
            .http
            .post(server.url(path))
            .header("cookie", cookie.clone())
            .json(&body);
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    let refused = post("/api/v1/registration/options", json!({}), None)
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let csrf = session["csrf_token"].as_str().unwrap();
    let options: Value = post("/api/v1/registration/options", json!({}), Some(csrf))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut second = SoftAuthenticator::new(&server.origin(), true, false);
    let created = second.register(&options["publicKey"]).await.unwrap();
    let body = json!({"ceremony": options["ceremony"], "credential": created});
    let refused = post("/api/v1/registration/verify", body.clone(), None)
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "csrf_failed"
    );
    let done = post("/api/v1/registration/verify", body, Some(csrf))
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    server.shutdown().await;
}

async fn unknown_passkey_ids_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, token) = server.user_with_passkey("hope").await;
    for id in ["6f9619ff-8b86-d011-b42d-00c04fc964ff", "not-a-uuid"] {
        let path = format!("/api/v1/me/credentials/{id}");
        for method in [Method::GET, Method::DELETE] {
            let r = server
                .request(method.clone(), &path, None, Some(&token), None)
                .await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::NOT_FOUND, "credential_not_found"),
                "{method} {id}"
            );
        }
    }
    server.shutdown().await;
}

async fn another_users_passkey_cannot_be_managed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, ivy) = server.user_with_passkey("ivy").await;
    let (_, jon) = server.user_with_passkey("jon").await;
    let mine = server
        .request(
            Method::GET,
            "/api/v1/me/credentials",
            None,
            Some(&ivy),
            None,
        )
        .await;
    let path = format!(
        "/api/v1/me/credentials/{}",
        mine.body["credentials"][0]["id"].as_str().unwrap()
    );
    let r = server
        .request(
            Method::PATCH,
            &path,
            None,
            Some(&jon),
            Some(&json!({"nickname": "mine now"})),
        )
        .await;
    assert_eq!(r.code(), "credential_not_found");
    let r = server
        .request(Method::DELETE, &path, None, Some(&jon), None)
        .await;
    assert_eq!(r.code(), "credential_not_found");
    let still = server
        .request(Method::GET, &path, None, Some(&ivy), None)
        .await;
    assert_eq!(
        still.body["nickname"], "Passkey 1",
        "no side effects on the owner's passkey"
    );
    server.shutdown().await;
}

both_backends!(
    suspended_users_cannot_sign_in,
    usernameless_assertions_need_the_user_handle,
    a_user_handle_of_someone_else_is_refused,
    a_registration_response_is_not_an_assertion,
    a_stale_cookie_does_not_block_enrolment,
    adding_a_passkey_with_a_cookie_needs_the_csrf_token,
    unknown_passkey_ids_are_not_found,
    another_users_passkey_cannot_be_managed,
);
