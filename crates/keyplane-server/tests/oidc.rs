//! The OpenID Connect provider over HTTP, on both backends, driven by a real relying party (the
//! `openidconnect` crate) with the software authenticator signing the user in: discovery, the
//! code flow with PKCE, ID tokens with acr/amr/auth_time verified against the JWKS, userinfo,
//! refresh rotation with reuse detection, `private_key_jwt`, step-up through `acr_values`, and
//! the refusals (wrong redirect URI, PKCE mismatch, code reuse, expired code, wrong secret,
//! another kind's secret, `acr_values` not met).

mod common;

use common::{both_backends, call, member};
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, SystemClock};
use keyplane_testkit::{Backend, TestServer};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const REDIRECT: &str = "http://localhost:7777/callback";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The relying party's HTTP client (openidconnect re-exports its reqwest).
fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Registers an OIDC client through the admin API; returns (client id, secret, the response).
async fn register(server: &TestServer, admin: &str, oidc: Value) -> (String, String) {
    let owner = call(server, Method::GET, "/api/v1/me", admin, None).await.1["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, body) = call(
        server,
        Method::POST,
        "/api/v1/admin/clients",
        admin,
        Some(json!({ "kind": "oidc_client", "name": "wiki", "owner": owner, "oidc": oidc })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["client"]["kind"], "oidc_client");
    assert_eq!(body["client"]["scopes"], json!([]), "no admin scopes");
    (
        body["client"]["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// Follows an authorization URL as the signed-in user (`session` as bearer, as a browser's
/// cookie would be); returns the Location it answers with.
async fn authorize(session: Option<&str>, url: &str) -> String {
    let mut req = no_redirects().get(url);
    if let Some(t) = session {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert!(
        r.status().is_redirection(),
        "{} {:?}",
        r.status(),
        r.text().await
    );
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn query(location: &str) -> std::collections::HashMap<String, String> {
    let url = url::Url::parse(location)
        .or_else(|_| url::Url::parse(&format!("http://x{location}")))
        .unwrap();
    url.query_pairs().into_owned().collect()
}

async fn a_relying_party_signs_a_user_in_and_refreshes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = member(&server, "ada", Some("admin")).await;
    let (_, alice) = server.user_with_passkey("alice").await;
    let (client_id, secret) = register(
        &server,
        &admin,
        json!({ "redirect_uris": [REDIRECT], "scopes": ["openid", "profile", "email", "offline_access"] }),
    )
    .await;

    let http = rp_http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.origin()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .add_auth_context_value(AuthenticationContextClass::new("aal2".into()))
        .set_pkce_challenge(challenge)
        .url();

    let location = authorize(Some(&alice), url.as_str()).await;
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query(&location);
    assert_eq!(q["state"], *csrf.secret());
    assert_eq!(q["iss"], server.origin(), "RFC 9207");
    let code = q["code"].clone();
    assert!(code.starts_with("kpac_"), "{code}");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    assert!(tokens.access_token().secret().starts_with("kpat_"));
    assert!(tokens
        .refresh_token()
        .unwrap()
        .secret()
        .starts_with("kprt_"));
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("the ID token verifies against the JWKS");
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("aal2"));
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert!(
        amr.contains(&"pop".into()) && amr.contains(&"mfa".into()),
        "{amr:?}"
    );
    assert!(
        amr.contains(&"hwk".into()) ^ amr.contains(&"swk".into()),
        "{amr:?}"
    );
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().to_owned(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));

    // Refresh: rotated; the old refresh token replayed revokes the whole family.
    let first_refresh = tokens
        .refresh_token()
        .expect("offline_access gives one")
        .clone();
    let refreshed = client
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let second_refresh = refreshed.refresh_token().unwrap().clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret(), "rotated");
    let replay = client
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(
        format!("{replay:?}").contains("invalid_grant"),
        "{replay:?}"
    );
    let after = client
        .exchange_refresh_token(&RefreshToken::new(second_refresh.secret().clone()))
        .unwrap()
        .request_async(&http)
        .await;
    assert!(after.is_err(), "the family is revoked after a reuse");
    let userinfo = no_redirects()
        .get(server.url("/oidc/userinfo"))
        .bearer_auth(refreshed.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    assert!(userinfo.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));

    // The code once more: refused.
    let again = token_request(
        &server,
        &client_id,
        &secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", "x"),
        ],
    )
    .await;
    assert_eq!(again.0, StatusCode::BAD_REQUEST);
    assert_eq!(again.1["error"], "invalid_grant", "{}", again.1);

    for action in [
        "oidc.authorized",
        "oidc.tokens_issued",
        "oidc.tokens_refreshed",
        "oidc.refresh_token_replayed",
        "oidc.code_replayed",
    ] {
        assert!(
            !server.events(action).await.is_empty(),
            "{action} is audited"
        );
    }
    let log = serde_json::to_string(&server.events("oidc.tokens_issued").await[0]).unwrap();
    assert!(
        !log.contains(&code) && !log.contains(tokens.access_token().secret()),
        "no secret in the audit log"
    );
    server.shutdown().await;
}

/// A token endpoint request with client_secret_basic: (status, JSON).
async fn token_request(
    server: &TestServer,
    client_id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = no_redirects()
        .post(server.url("/oidc/token"))
        .basic_auth(client_id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    (r.status(), r.json().await.unwrap())
}

fn authorize_url(server: &TestServer, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid")
        .append_pair("state", "st4te");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    server.url(&format!("/oidc/authorize?{}", q.finish()))
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn bad_requests_are_refused_and_change_nothing(backend: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    let admin = member(&server, "ada", Some("admin")).await;
    let (_, alice) = server.user_with_passkey("alice").await;
    let (client_id, secret) =
        register(&server, &admin, json!({ "redirect_uris": [REDIRECT] })).await;
    let pkce = [
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];

    // Unknown client or redirect URI: an error for the person, never a redirect.
    for url in [
        authorize_url(&server, "8d1f2c7e-0000-4000-8000-000000000000", &pkce),
        authorize_url(&server, &client_id, &pkce).replace("7777", "7778"),
    ] {
        let r = no_redirects()
            .get(&url)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = r.json().await.unwrap();
        assert!(
            ["invalid_client", "invalid_redirect_uri"]
                .contains(&body["error"]["code"].as_str().unwrap()),
            "{body}"
        );
    }
    // Problems after the redirect URI is known go back to the client.
    for (extra, error) in [
        (vec![], "invalid_request"), // no PKCE
        (
            vec![
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("scope", "openid admin"),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("acr_values", "gold"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
                ("request", "x.y.z"),
            ],
            "request_not_supported",
        ),
    ] {
        let mut url = authorize_url(&server, &client_id, &extra);
        if extra.iter().any(|(k, _)| *k == "scope") {
            url = url.replacen("scope=openid&", "", 1);
        }
        let q = query(&authorize(Some(&alice), &url).await);
        assert_eq!(
            q.get("error").map(String::as_str),
            Some(error),
            "{extra:?}: {q:?}"
        );
        assert_eq!(q["state"], "st4te");
    }
    // prompt=none without a session: login_required, no page.
    let q = query(
        &authorize(
            None,
            &authorize_url(&server, &client_id, &[pkce[0], pkce[1], ("prompt", "none")]),
        )
        .await,
    );
    assert_eq!(q["error"], "login_required");
    // Without a session: to the sign-in page, which names the application.
    let to_signin = authorize(None, &authorize_url(&server, &client_id, &pkce)).await;
    assert!(to_signin.starts_with("/signin?authz="), "{to_signin}");
    let page = server
        .request(Method::GET, &to_signin, None, None, None)
        .await;
    assert!(page
        .body
        .as_str()
        .unwrap()
        .contains("<strong>wiki</strong> asks you to sign in"));

    let code = |extra: Vec<(&'static str, &'static str)>| {
        let url = authorize_url(
            &server,
            &client_id,
            &[pkce[0], pkce[1]]
                .into_iter()
                .chain(extra)
                .collect::<Vec<_>>(),
        );
        let alice = alice.clone();
        async move { query(&authorize(Some(&alice), &url).await)["code"].clone() }
    };
    let form = |c: &str, verifier: &str| {
        vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".into(), c.to_owned()),
            ("redirect_uri".into(), REDIRECT.to_owned()),
            ("code_verifier".into(), verifier.to_owned()),
        ]
    };
    let exchange = |f: Vec<(String, String)>, secret: String| {
        let server = &server;
        let client_id = client_id.clone();
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            token_request(server, &client_id, &secret, &f).await
        }
    };

    // PKCE mismatch, wrong secret, wrong redirect URI: refused (and the code still works after
    // a wrong secret, which proves nothing about the code).
    let c = code(vec![]).await;
    let (s, body) = exchange(
        form(&c, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"),
        secret.clone(),
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    let c = code(vec![]).await;
    let (s, body) = exchange(form(&c, VERIFIER), format!("{secret}x")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
    assert!(!server.events("oidc.client_refused").await.is_empty());
    let mut wrong_uri = form(&c, VERIFIER);
    wrong_uri[2].1 = "http://localhost:7777/other".into();
    let (s, body) = exchange(wrong_uri, secret.clone()).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    let (s, body) = exchange(form(&c, VERIFIER), secret.clone()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        body["refresh_token"].is_null(),
        "no offline_access, no refresh token"
    );
    // Expired code.
    let c = code(vec![]).await;
    clock.advance_secs(61);
    let (s, body) = exchange(form(&c, VERIFIER), secret.clone()).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    // Malformed requests.
    let r = no_redirects()
        .post(server.url("/oidc/token"))
        .basic_auth(&client_id, Some(&secret))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let (s, body) = exchange(
        vec![("grant_type".into(), "password".into())],
        secret.clone(),
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (s, body) = exchange(
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("grant_type".into(), "refresh_token".into()),
        ],
        secret.clone(),
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "repeated parameter"
    );

    // An admin API token is no OIDC client, and an OIDC client's secret is no API token.
    let (s, _) = call(&server, Method::GET, "/api/v1/admin/users", &secret, None).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the OIDC client's secret on the admin API: client_kind_not_accepted"
    );

    // acr_values the session does not reach: the user is asked to sign in with a stronger
    // passkey; signed in again at aal2, the client hears unmet_authentication_requirements.
    let url = authorize_url(
        &server,
        &client_id,
        &[pkce[0], pkce[1], ("acr_values", "aal3")],
    );
    let to_signin = authorize(Some(&alice), &url).await;
    assert!(to_signin.starts_with("/signin?authz="), "{to_signin}");
    let page = server
        .request(Method::GET, &to_signin, None, None, None)
        .await;
    assert!(
        page.body.as_str().unwrap().contains("assurance level AAL3"),
        "{:?}",
        page.body
    );
    let authz = query(&to_signin)["authz"].clone();
    let cont = server.url(&format!("/oidc/authorize/continue?authz={authz}"));
    let q = query(&authorize(Some(&alice), &cont).await);
    assert_eq!(q["error"], "unmet_authentication_requirements", "{q:?}");
    assert_eq!(q["state"], "st4te");
    let r = no_redirects()
        .get(&cont)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the request is over");
    // prompt=login: a session from before the request does not do.
    let url = authorize_url(
        &server,
        &client_id,
        &[pkce[0], pkce[1], ("prompt", "login")],
    );
    assert!(authorize(Some(&alice), &url)
        .await
        .starts_with("/signin?authz="));
    // Cancel from the sign-in page.
    let authz =
        query(&authorize(None, &authorize_url(&server, &client_id, &pkce)).await)["authz"].clone();
    let q = query(
        &authorize(
            None,
            &server.url(&format!("/oidc/authorize/continue?authz={authz}&cancel=1")),
        )
        .await,
    );
    assert_eq!(q["error"], "access_denied");
    server.shutdown().await;
}

async fn private_key_jwt_clients_sign_their_assertions_once(backend: Backend) {
    use base64::Engine;
    use p256::pkcs8::EncodePrivateKey;
    let server = TestServer::start(backend).await;
    let admin = member(&server, "ada", Some("admin")).await;
    let (_, alice) = server.user_with_passkey("alice").await;
    let key = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()) }] });
    let (client_id, _) = register(
        &server,
        &admin,
        json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks }),
    )
    .await;
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes());
    let assertion = |jti: &str, aud: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("k1".into());
        let now = SystemClock.now().unix_seconds();
        jsonwebtoken::encode(&h, &json!({ "iss": client_id, "sub": client_id, "aud": aud, "jti": jti, "iat": now, "exp": now + 60 }), &encoding).unwrap()
    };
    let endpoint = server.url("/oidc/token");
    let exchange = |assertion: String| {
        let alice = alice.clone();
        let url = authorize_url(
            &server,
            &client_id,
            &[
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
        );
        let endpoint = endpoint.clone();
        async move {
            let code = query(&authorize(Some(&alice), &url).await)["code"].clone();
            let r = no_redirects()
                .post(&endpoint)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let first = assertion("one", &endpoint);
    let (s, body) = exchange(first.clone()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body["id_token"].is_string());
    let (s, body) = exchange(first).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "a replayed assertion: {body}"
    );
    let (s, body) = exchange(assertion("two", "https://elsewhere.example/token")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "another audience: {body}"
    );
    // A secret is not how this client authenticates.
    let other = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
    let forged = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("k1".into());
        let now = SystemClock.now().unix_seconds();
        jsonwebtoken::encode(&h, &json!({ "iss": client_id, "sub": client_id, "aud": endpoint, "jti": "three", "exp": now + 60 }),
            &jsonwebtoken::EncodingKey::from_ec_der(other.to_pkcs8_der().unwrap().as_bytes())).unwrap()
    };
    let (s, _) = exchange(forged).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "signed with another key");
    server.shutdown().await;
}

async fn a_rotated_signing_key_stays_published_for_the_overlap(backend: Backend) {
    let server = TestServer::start(backend).await;
    let jwks = |server: &TestServer| {
        let url = server.url("/oidc/jwks");
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let before = jwks(&server).await;
    assert_eq!(before["keys"].as_array().unwrap().len(), 1, "{before}");
    assert_eq!(before["keys"][0]["alg"], "ES256");
    assert!(before["keys"][0]["d"].is_null(), "no private part");
    let (old, new) = server.app.rotate_oidc_key(24).await.unwrap();
    let after = jwks(&server).await;
    let kids: Vec<&str> = after["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        [new.as_str(), old.as_str()],
        "newest first, the old one kept"
    );
    server.app.rotate_oidc_key(0).await.unwrap();
    let kids = jwks(&server).await["keys"].as_array().unwrap().len();
    assert_eq!(
        kids, 2,
        "a zero overlap retires the previous key at once; the one before stays for its day"
    );
    let disco = reqwest::get(server.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], server.origin());
    assert_eq!(disco["code_challenge_methods_supported"], json!(["S256"]));
    server.shutdown().await;
}

both_backends!(
    a_relying_party_signs_a_user_in_and_refreshes,
    bad_requests_are_refused_and_change_nothing,
    private_key_jwt_clients_sign_their_assertions_once,
    a_rotated_signing_key_stays_published_for_the_overlap,
);
