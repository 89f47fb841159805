//! The server-rendered pages over HTTP, on both backends: the account page shows the signed-in
//! user's own passkeys, sessions and recent sign-ins (escaped, never another user's), a visitor
//! without a session gets a link to sign in, and every page carries its security headers.
//! (What the pages do in a browser is tests/browser.rs.)

mod common;

use common::{both_backends, call};
use keyplane_testkit::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn page(server: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let r = server.request(Method::GET, path, None, token, None).await;
    for (name, want) in [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(
            r.headers.get(name).and_then(|v| v.to_str().ok()),
            Some(want),
            "{path}: {name}"
        );
    }
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
    let body = r.body.as_str().expect("an HTML page").to_owned();
    (r.status, body)
}

async fn the_account_page_shows_the_users_own_passkeys_sessions_and_sign_ins(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut phone, first) = server.user_with_passkey("alice").await;
    let latest = server.sign_in(&mut phone, Some("alice")).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, bob) = server.user_with_passkey("bob").await;
    let (s, creds) = call(&server, Method::GET, "/api/v1/me/credentials", &first, None).await;
    assert_eq!(s, StatusCode::OK);
    let id = creds["credentials"][0]["id"].as_str().unwrap().to_owned();
    // A nickname that would be markup if the page did not escape it.
    let (s, _) = call(
        &server,
        Method::PATCH,
        &format!("/api/v1/me/credentials/{id}"),
        &first,
        Some(json!({ "nickname": "<img src=x onerror=alert(1)>" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let (s, html) = page(&server, "/account", Some(&latest)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Signed in as alice (alice)."), "{html}");
    assert!(
        !html.contains("<img src=x"),
        "the nickname is escaped: {html}"
    );
    assert!(
        html.contains("&#60;img src=x onerror=alert(1)&#62;")
            || html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert_eq!(
        html.matches("data-action=\"rename\"").count(),
        1,
        "alice's one passkey"
    );
    let kind = match (
        creds["credentials"][0]["backup_state"].as_bool(),
        creds["credentials"][0]["backup_eligible"].as_bool(),
    ) {
        (Some(true), _) => "Synced",
        (_, Some(true)) => "Can sync",
        _ => "Device-bound",
    };
    assert!(
        html.contains(&format!("<span class=\"badge\">{kind}</span>")),
        "{kind}: {html}"
    );
    let sign_ins = html
        .split("id=\"sign-ins\"")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .expect("a list of sign-ins");
    assert_eq!(
        sign_ins.matches("<li>").count(),
        2,
        "two sign-ins: {sign_ins}"
    );
    assert_eq!(sign_ins.matches("AAL2").count(), 2, "{sign_ins}");
    assert!(sign_ins.contains("<time datetime=\""), "{sign_ins}");
    let sessions = html
        .split("id=\"sessions\"")
        .nth(1)
        .unwrap()
        .split("</ul>")
        .next()
        .unwrap();
    assert_eq!(sessions.matches("This browser").count(), 1, "{sessions}");
    assert_eq!(
        sessions.matches("Another browser or app").count(),
        1,
        "{sessions}"
    );
    assert!(!html.contains("bob"), "nothing of bob's: {html}");
    assert!(
        !html.contains("name=\"csrf-token\""),
        "a bearer token needs no CSRF token; only a cookie session gets one"
    );

    // The same sign-ins from the API, newest first; bob's are his own.
    let (s, body) = call(&server, Method::GET, "/api/v1/me/sign-ins", &latest, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let list = body["sign_ins"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    assert!(list[0]["at"].as_str() >= list[1]["at"].as_str(), "{body}");
    assert!(list
        .iter()
        .all(|s| s["aal"] == "aal2" && s["credential"] == id.as_str()));
    assert_eq!(
        list[0]["passkey"], "<img src=x onerror=alert(1)>",
        "JSON carries it as is"
    );
    let (_, body) = call(&server, Method::GET, "/api/v1/me/sign-ins", &bob, None).await;
    assert_eq!(body["sign_ins"].as_array().unwrap().len(), 1, "{body}");
    let (_, body) = call(
        &server,
        Method::GET,
        "/api/v1/me/sign-ins?limit=1",
        &latest,
        None,
    )
    .await;
    assert_eq!(body["sign_ins"].as_array().unwrap().len(), 1, "{body}");
    for bad in ["limit=0", "limit=101", "limit=x", "other=1"] {
        let (s, body) = call(
            &server,
            Method::GET,
            &format!("/api/v1/me/sign-ins?{bad}"),
            &latest,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
    let (s, body) = call(
        &server,
        Method::GET,
        "/api/v1/me/sign-ins",
        "kps_not-a-token",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    server.shutdown().await;
}

async fn without_a_session_the_account_page_links_to_sign_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    for token in [None, Some("kps_expired-or-made-up")] {
        let (s, html) = page(&server, "/account", token).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            html.contains("You are not signed in. <a href=\"/signin\">Sign in</a>"),
            "{html}"
        );
        assert!(!html.contains("data-action"), "no account actions: {html}");
    }
    for path in ["/signin", "/enrol", "/recover", "/admin"] {
        let (s, html) = page(&server, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_eq!(html.matches("<h1>").count(), 1, "{path}");
        assert!(
            html.contains("<script src=\"/assets/keyplane.js\" defer></script>"),
            "{path}"
        );
        assert!(!html.contains("<script>"), "{path}: no inline script");
    }
    server.shutdown().await;
}

both_backends!(
    the_account_page_shows_the_users_own_passkeys_sessions_and_sign_ins,
    without_a_session_the_account_page_links_to_sign_in,
);
