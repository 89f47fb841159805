//! End-to-end flows over real HTTP with a software authenticator, on SQLite and PostgreSQL:
//! enrol, sign in username-first and usernameless, add a second passkey, rename, remove, sign out.

mod common;

use common::both_backends;
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn enrol_then_sign_in_username_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut auth = SoftAuthenticator::new(&server.origin(), true, true);
    let token = server
        .bootstrap_token
        .clone()
        .expect("first start prints a bootstrap token");
    let cred = server.enrol(&mut auth, &token).await;
    assert_eq!(cred["status"], "active");
    assert_eq!(cred["attestation_format"], "none");
    assert_eq!(cred["user_verified"], true);
    assert_eq!(cred["nickname"], "Passkey 1");

    let session = server.sign_in(&mut auth, Some("admin")).await;
    assert_eq!(session["aal"], "aal2", "UV sign-in reaches aal2");
    // The software authenticator's passkeys are backup eligible: a software-secured key (swk).
    assert_eq!(session["amr"], json!(["pop", "swk", "user", "mfa"]));
    assert_eq!(session["user"]["username"], "admin");
    assert!(session["auth_time"].as_i64().unwrap() > 1_700_000_000);
    let token = session["token"].as_str().unwrap();
    assert_eq!(token.len(), 43, "256-bit token, base64url");

    let me = server
        .request(Method::GET, "/api/v1/me", None, Some(token), None)
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["username"], "admin");
    assert_eq!(me.body["user"]["role"], "owner");
    assert_eq!(me.body["session"]["aal"], "aal2");
    server.shutdown().await;
}

async fn usernameless_sign_in_finds_the_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("alice@example.com").await;
    let options = server
        .post("/api/v1/authentication/options", &json!({}))
        .await;
    assert_eq!(options.status, StatusCode::OK);
    assert!(
        options.body["publicKey"]
            .get("allowCredentials")
            .map(|a| a.as_array().unwrap().is_empty())
            .unwrap_or(true),
        "usernameless options list no credentials: {:?}",
        options.body
    );
    let session = server.sign_in(&mut auth, None).await;
    assert_eq!(session["user"]["username"], "alice@example.com");
    server.shutdown().await;
}

async fn presence_only_sign_in_is_aal1(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut auth = SoftAuthenticator::new(&server.origin(), false, true);
    let token = server.invite("bob").await;
    let cred = server.enrol(&mut auth, &token).await;
    assert_eq!(cred["user_verified"], false);
    let session = server.sign_in(&mut auth, Some("bob")).await;
    assert_eq!(session["aal"], "aal1");
    assert_eq!(session["amr"], json!(["pop", "swk", "user"]));
    server.shutdown().await;
}

async fn second_passkey_rename_and_remove(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut first, token) = server.user_with_passkey("carol").await;

    // Add a second passkey from the signed-in session.
    let mut second = SoftAuthenticator::new(&server.origin(), true, false);
    let options = server
        .request(
            Method::POST,
            "/api/v1/registration/options",
            None,
            Some(&token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let excluded = options.body["publicKey"]["excludeCredentials"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(excluded, 1, "the existing passkey is excluded");
    let credential = second.register(&options.body["publicKey"]).await.unwrap();
    let added = server
        .request(Method::POST, "/api/v1/registration/verify", None, Some(&token), Some(&json!({"ceremony": options.body["ceremony"], "credential": credential, "nickname": "Backup key"})))
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(added.body["nickname"], "Backup key");

    let list = server
        .request(
            Method::GET,
            "/api/v1/me/credentials",
            None,
            Some(&token),
            None,
        )
        .await;
    let creds = list.body["credentials"].as_array().unwrap().clone();
    assert_eq!(creds.len(), 2);

    // Both passkeys sign in.
    server.sign_in(&mut second, Some("carol")).await;
    server.sign_in(&mut first, None).await;

    // Rename.
    let id = creds[0]["id"].as_str().unwrap();
    let path = format!("/api/v1/me/credentials/{id}");
    let renamed = server
        .request(
            Method::PATCH,
            &path,
            None,
            Some(&token),
            Some(&json!({"nickname": "  Work laptop "})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(renamed.body["nickname"], "Work laptop");
    let got = server
        .request(Method::GET, &path, None, Some(&token), None)
        .await;
    assert_eq!(got.body["nickname"], "Work laptop");

    // Remove the first; the second remains and cannot be removed (it is the last).
    let removed = server
        .request(Method::DELETE, &path, None, Some(&token), None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    let list = server
        .request(
            Method::GET,
            "/api/v1/me/credentials",
            None,
            Some(&token),
            None,
        )
        .await;
    let remaining = list.body["credentials"].as_array().unwrap().clone();
    assert_eq!(remaining.len(), 1);
    let last = format!(
        "/api/v1/me/credentials/{}",
        remaining[0]["id"].as_str().unwrap()
    );
    let refused = server
        .request(Method::DELETE, &last, None, Some(&token), None)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "last_credential");

    // The removed passkey no longer signs in.
    let reply = server.try_sign_in(&mut first, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert_eq!(reply.code(), "credential_inactive");
    server.shutdown().await;
}

async fn logout_ends_the_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_auth, token) = server.user_with_passkey("dave").await;
    let out = server
        .request(Method::POST, "/api/v1/logout", None, Some(&token), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let me = server
        .request(Method::GET, "/api/v1/me", None, Some(&token), None)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "unauthenticated");
    server.shutdown().await;
}

async fn enrolment_token_is_single_use(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.invite("erin").await;
    let mut a = SoftAuthenticator::new(&server.origin(), true, true);
    server.enrol(&mut a, &token).await;
    let again = server
        .post(
            "/api/v1/registration/options",
            &json!({"enrolment_token": token}),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(again.code(), "enrolment_token_invalid");
    server.shutdown().await;
}

both_backends!(
    enrol_then_sign_in_username_first,
    usernameless_sign_in_finds_the_user,
    presence_only_sign_in_is_aal1,
    second_passkey_rename_and_remove,
    logout_ends_the_session,
    enrolment_token_is_single_use,
);
