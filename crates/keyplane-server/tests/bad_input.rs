//! Invariant 9: bad input of any kind gets a clear 4xx JSON error with a machine-readable code
//! and changes nothing. Each case checks the status, the code and the row counts.

mod common;

use common::{both_backends, row_counts};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    path: &'static str,
    body: Body,
    status: StatusCode,
    code: &'static str,
}

enum Body {
    Raw(&'static str, &'static str),
    Json(Value),
    Bytes(usize),
}

async fn send(server: &TestServer, path: &str, body: &Body) -> (StatusCode, Value) {
    let req = server.http.post(server.url(path));
    let req = match body {
        Body::Raw(ct, text) => req.header("content-type", *ct).body(text.to_string()),
        Body::Json(v) => req.json(v),
        Body::Bytes(n) => req
            .header("content-type", "application/json")
            .body(format!("{{\"username\":\"{}\"}}", "a".repeat(*n))),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is JSON: {text:?}"));
    (status, v)
}

async fn invariant9_malformed_requests_get_coded_4xx_and_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("alice").await;

    // A genuine registration response and assertion to corrupt.
    let token = server.invite("bob").await;
    let reg_opts = server
        .post(
            "/api/v1/registration/options",
            &json!({"enrolment_token": token}),
        )
        .await;
    let mut bob = SoftAuthenticator::new(&server.origin(), true, true);
    let created = bob.register(&reg_opts.body["publicKey"]).await.unwrap();
    let reg_ceremony = reg_opts.body["ceremony"].clone();
    let auth_opts = server
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "alice"}),
        )
        .await;
    let asserted = auth
        .authenticate(&auth_opts.body["publicKey"])
        .await
        .unwrap();
    let auth_ceremony = auth_opts.body["ceremony"].clone();

    let with = |mut v: Value, pointer: &str, new: Value| {
        *v.pointer_mut(pointer).unwrap() = new;
        v
    };
    let reg = |cred: Value| Body::Json(json!({"ceremony": reg_ceremony, "credential": cred}));
    let asr = |cred: Value| Body::Json(json!({"ceremony": auth_ceremony, "credential": cred}));

    let cases = vec![
        Case {
            name: "syntax error",
            path: "/api/v1/authentication/options",
            body: Body::Raw("application/json", "{\"username\":"),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_json",
        },
        Case {
            name: "not JSON content type",
            path: "/api/v1/authentication/options",
            body: Body::Raw("text/plain", "{}"),
            status: StatusCode::BAD_REQUEST,
            code: "unsupported_media_type",
        },
        Case {
            name: "unknown field",
            path: "/api/v1/authentication/options",
            body: Body::Json(json!({"username": "a", "admin": true})),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            name: "wrong type",
            path: "/api/v1/authentication/options",
            body: Body::Json(json!({"username": 5})),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            name: "username with spaces",
            path: "/api/v1/authentication/options",
            body: Body::Json(json!({"username": "a b"})),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_username",
        },
        Case {
            name: "oversized body",
            path: "/api/v1/authentication/options",
            body: Body::Bytes(70 * 1024),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
        },
        Case {
            name: "ceremony not a uuid",
            path: "/api/v1/authentication/verify",
            body: Body::Json(json!({"ceremony": "../../etc", "credential": asserted})),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_ceremony_id",
        },
        Case {
            name: "unknown ceremony",
            path: "/api/v1/authentication/verify",
            body: Body::Json(
                json!({"ceremony": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "credential": asserted}),
            ),
            status: StatusCode::NOT_FOUND,
            code: "ceremony_not_found",
        },
        Case {
            name: "assertion: bad base64",
            path: "/api/v1/authentication/verify",
            body: asr(with(
                asserted.clone(),
                "/response/signature",
                json!("!!not base64!!"),
            )),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_base64",
        },
        Case {
            name: "assertion: missing field",
            path: "/api/v1/authentication/verify",
            body: asr(json!({"id": "x", "rawId": "eA", "type": "public-key"})),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_credential",
        },
        Case {
            name: "assertion: not an object",
            path: "/api/v1/authentication/verify",
            body: asr(json!("credential")),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_credential",
        },
        Case {
            name: "assertion: wrong type",
            path: "/api/v1/authentication/verify",
            body: asr(with(asserted.clone(), "/type", json!("password"))),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_credential",
        },
        Case {
            name: "assertion: authenticator data too short",
            path: "/api/v1/authentication/verify",
            body: asr(with(
                asserted.clone(),
                "/response/authenticatorData",
                json!("AAAA"),
            )),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_authenticator_data",
        },
        Case {
            name: "assertion: empty signature",
            path: "/api/v1/authentication/verify",
            body: asr(with(asserted.clone(), "/response/signature", json!(""))),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_credential",
        },
        Case {
            name: "registration: bad base64",
            path: "/api/v1/registration/verify",
            body: reg(with(
                created.clone(),
                "/response/attestationObject",
                json!("%%%"),
            )),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_base64",
        },
        Case {
            name: "registration: CBOR garbage",
            path: "/api/v1/registration/verify",
            body: reg(with(
                created.clone(),
                "/response/attestationObject",
                json!("_-_-_-_-AAAA"),
            )),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_cbor",
        },
        Case {
            name: "registration: CBOR not a map",
            path: "/api/v1/registration/verify",
            body: reg(with(
                created.clone(),
                "/response/attestationObject",
                json!("gQE"),
            )),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_attestation",
        },
        Case {
            name: "registration: clientDataJSON not JSON",
            path: "/api/v1/registration/verify",
            body: reg(with(
                created.clone(),
                "/response/clientDataJSON",
                json!("bm90IGpzb24"),
            )),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_client_data",
        },
        Case {
            name: "registration: nickname too long",
            path: "/api/v1/registration/verify",
            body: Body::Json(
                json!({"ceremony": reg_ceremony, "credential": created, "nickname": "x".repeat(65)}),
            ),
            status: StatusCode::BAD_REQUEST,
            code: "invalid_nickname",
        },
        Case {
            name: "registration: no token, no session",
            path: "/api/v1/registration/options",
            body: Body::Json(json!({})),
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
        },
        Case {
            name: "registration: forged token",
            path: "/api/v1/registration/options",
            body: Body::Json(json!({"enrolment_token": "A".repeat(43)})),
            status: StatusCode::UNAUTHORIZED,
            code: "enrolment_token_invalid",
        },
    ];

    let before = row_counts(&server).await;
    for case in &cases {
        let (status, body) = send(&server, case.path, &case.body).await;
        assert_eq!(
            (status, body["error"]["code"].as_str().unwrap_or("")),
            (case.status, case.code),
            "{}: {body}",
            case.name
        );
        assert!(
            !body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{}: a message for people",
            case.name
        );
        assert_eq!(
            row_counts(&server).await,
            before,
            "{}: nothing changed",
            case.name
        );
    }

    // After all that, the genuine responses still complete: their ceremonies were untouched.
    let done = server
        .post(
            "/api/v1/registration/verify",
            &json!({"ceremony": reg_ceremony, "credential": created}),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let done = server
        .post(
            "/api/v1/authentication/verify",
            &json!({"ceremony": auth_ceremony, "credential": asserted}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    server.shutdown().await;
}

async fn unknown_routes_and_methods_answer_in_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let r = server
        .request(reqwest::Method::GET, "/api/v1/nope", None, None, None)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = server
        .request(
            reqwest::Method::GET,
            "/api/v1/authentication/verify",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let r = server
        .request(
            reqwest::Method::GET,
            "/api/v1/me",
            Some("unknown.example"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "unknown_tenant")
    );
    let r = server
        .request(
            reqwest::Method::GET,
            "/api/v1/me",
            None,
            Some("not-a-session"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    server.shutdown().await;
}

/// A user of another tenant (created for the purpose): their id is unknown to this one.
async fn stranger(server: &TestServer) -> keyplane_core::UserId {
    let other = server.create_tenant("other", "other.test").await;
    let caller = keyplane_core::audit::Caller::operator("test");
    let invited = server.app.invite(&other, "stranger", None, None, &caller);
    invited.await.unwrap().user.id
}

/// The admin API: malformed JSON, unknown or mistyped fields, malformed ids, bad filters and
/// query strings all get a coded 4xx, and nothing changes (rows and audit chain length).
async fn admin_requests_with_bad_input_get_coded_4xx_and_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = common::member(&server, "ada", Some("owner")).await;
    let tenant = server.default_tenant().await;
    let uid = keyplane_store::Store::user_by_username(&*server.app.store, &tenant.id, "ada")
        .await
        .unwrap()
        .unwrap()
        .id;
    // A user of another tenant: their id is unknown here.
    let stranger = stranger(&server).await;
    let before = (
        row_counts(&server).await,
        server.store_credentials(&tenant).await,
    );
    let events = |server: &TestServer| {
        let tenant = tenant.clone();
        let store = server.app.store.clone();
        async move {
            store
                .list_audit_events(
                    &tenant.id,
                    &keyplane_store::AuditFilter {
                        limit: 100_000,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .len()
        }
    };
    let n_events = events(&server).await;
    let cases: Vec<(reqwest::Method, String, Option<&str>, StatusCode, &str)> = vec![
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{stranger}/suspend"),
            Some(r#"{"reason": "cross-tenant"}"#),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/admin/users/{stranger}"),
            None,
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/policy/apply".into(),
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/policy/apply".into(),
            Some(r#"{"document": 5}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/policy/apply".into(),
            Some(r#"{"document": "version = 1", "force": true}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/policy/apply".into(),
            Some(r#"{"document": "version = 2"}"#),
            StatusCode::BAD_REQUEST,
            "policy_invalid",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{uid}/suspend"),
            Some(r#"{"reason": 3}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/users/not-a-uuid/suspend".into(),
            Some(r#"{"reason": "x"}"#),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/admin/users/{uid}/role"),
            Some(r#"{"role": "root"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_role",
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/admin/users/{uid}/role"),
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/credentials/bulk".into(),
            Some(r#"{"action": "suspend", "filter": {"aaguids": ["NOT-AN-AAGUID"]}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/credentials/bulk".into(),
            Some(r#"{"action": "suspend", "filter": {"created_before": "yesterday"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/credentials/bulk".into(),
            Some(r#"{"action": "suspend", "filter": {"colour": "red"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/exceptions".into(),
            Some(
                r#"{"subject": {"type": "planet", "id": "x"}, "rule": "authenticators.synced", "reason": "r", "duration_days": 1}"#,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/admin/credentials?synced=perhaps".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/admin/users?limit=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/admin/reports/coverage?days=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_days",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/admin/fraud-alerts/00000000-0000-0000-0000-000000000000/resolve".into(),
            Some(r#"{"resolution": "shrug", "note": "n"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_resolution",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let mut req = server
            .http
            .request(method.clone(), server.url(&path))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let got = resp.status();
        let text = resp.text().await.unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: error body is JSON: {text:?}"));
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body:?}: {v}"
        );
    }
    let after = (
        row_counts(&server).await,
        server.store_credentials(&tenant).await,
    );
    assert_eq!(before, after, "nothing changed");
    assert_eq!(events(&server).await, n_events, "nothing was recorded");
    server.shutdown().await;
}

/// The integration endpoints (OIDC token, SCIM, the webhook and client admin API): oversized,
/// malformed and mistyped bodies, and another tenant's ids, get a coded 4xx in each protocol's
/// own error shape, and nothing changes (rows, machine clients, the audit chain's length).
async fn integration_endpoints_refuse_bad_bodies_and_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let owner = common::member(&server, "ada", Some("owner")).await;
    let (_, me) = common::call(&server, reqwest::Method::GET, "/api/v1/me", &owner, None).await;
    let ada = me["user"]["id"].as_str().unwrap().to_owned();
    let create = |body: Value| {
        let (server, owner) = (&server, &owner);
        async move {
            let (status, body) = common::call(
                server,
                reqwest::Method::POST,
                "/api/v1/admin/clients",
                owner,
                Some(body),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            (
                body["client"]["id"].as_str().unwrap().to_owned(),
                body["secret"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (oidc_id, oidc_secret) = create(json!({
        "kind": "oidc_client", "name": "wiki", "owner": ada,
        "oidc": { "redirect_uris": ["https://wiki.example/cb"] }
    }))
    .await;
    let (_, scim_secret) = create(json!({
        "kind": "scim_token", "name": "hr", "owner": ada, "scopes": ["users.manage"]
    }))
    .await;
    // Another tenant's user and webhook delivery ids are unknown here.
    let stranger = stranger(&server).await;
    let foreign_delivery = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    let tenant = server.default_tenant().await;
    let clients = |server: &TestServer| {
        let (store, tenant) = (server.app.store.clone(), tenant.id.clone());
        // An authenticated client is "used" even when its request is refused: ignore that.
        async move {
            let mut clients = store.list_clients(&tenant).await.unwrap();
            clients.iter_mut().for_each(|c| c.last_used_at = None);
            clients
        }
    };
    let events = |server: &TestServer| {
        let (store, tenant) = (server.app.store.clone(), tenant.id.clone());
        async move { store.audit_head(&tenant).await.unwrap().0 }
    };
    let before = (row_counts(&server).await, clients(&server).await);
    let n_events = events(&server).await;
    let big = "a".repeat(70 * 1024);

    // OAuth 2.0 token endpoint: its errors are RFC 6749's `{"error": …}`.
    let token = |form: String| {
        server
            .http
            .post(server.url("/oidc/token"))
            .basic_auth(&oidc_id, Some(&oidc_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    for (name, form, status, error) in [
        (
            "oversized form",
            format!("grant_type=authorization_code&code={big}"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
        ),
        (
            "no grant type",
            "code=abc".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "bad percent-encoding and duplicate fields",
            "grant_type=authorization_code&grant_type=refresh_token&code=%zz".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown grant type",
            "grant_type=password&username=ada&password=x".to_owned(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            "a code that was never issued",
            "grant_type=authorization_code&code=nope&redirect_uri=https%3A%2F%2Fwiki.example%2Fcb&code_verifier=abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
    ] {
        let r = token(form).await.unwrap();
        let got = r.status();
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{name}: the error is JSON: {text:?}"));
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{name}: {body}");
    }

    // SCIM: RFC 7644 errors (`schemas`, `status`, `scimType`).
    let scim = |method: reqwest::Method, path: &str, ct: &str, body: String| {
        server
            .http
            .request(method, server.url(path))
            .bearer_auth(&scim_secret)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    for (name, method, path, body, status, scim_type) in [
        (
            "oversized user",
            reqwest::Method::POST,
            "/scim/v2/Users".to_owned(),
            format!(
                r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"{big}"}}"#
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "syntax error",
            reqwest::Method::POST,
            "/scim/v2/Users".to_owned(),
            r#"{"userName": "#.to_owned(),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "userName of the wrong type",
            reqwest::Method::POST,
            "/scim/v2/Users".to_owned(),
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":5}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "a patch that is not one",
            reqwest::Method::PATCH,
            format!("/scim/v2/Users/{ada}"),
            r#"{"Operations": "all"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "another tenant's user",
            reqwest::Method::PATCH,
            format!("/scim/v2/Users/{stranger}"),
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#.to_owned(),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "oversized search",
            reqwest::Method::POST,
            "/scim/v2/.search".to_owned(),
            format!(
                r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"userName eq \"{big}\""}}"#
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
    ] {
        let r = scim(method, &path, "application/scim+json", body)
            .await
            .unwrap();
        let got = r.status();
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{name}: the error is JSON: {text:?}"));
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["status"], got.as_u16().to_string(), "{name}: {body}");
        assert_eq!(body["scimType"].as_str(), scim_type, "{name}: {body}");
    }

    // The admin API for machine clients and webhook deliveries: Keyplane's own error shape.
    for (name, path, body, status, code) in [
        (
            "oversized webhook endpoint",
            "/api/v1/admin/clients".to_owned(),
            format!(
                r#"{{"kind":"webhook","name":"{big}","owner":"{ada}","webhook":{{"url":"https://siem.example/hook"}}}}"#
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "webhook endpoint: events of the wrong type",
            "/api/v1/admin/clients".to_owned(),
            format!(
                r#"{{"kind":"webhook","name":"siem","owner":"{ada}","webhook":{{"url":"https://siem.example/hook","events":"all"}}}}"#
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown client kind",
            "/api/v1/admin/clients".to_owned(),
            format!(r#"{{"kind":"root","name":"x","owner":"{ada}"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_kind",
        ),
        (
            "replay of a delivery that is not this tenant's",
            format!("/api/v1/admin/webhooks/deliveries/{foreign_delivery}/replay"),
            "{}".to_owned(),
            StatusCode::NOT_FOUND,
            "delivery_not_found",
        ),
        (
            "replay of a malformed delivery id",
            "/api/v1/admin/webhooks/deliveries/..%2F..%2Fetc/replay".to_owned(),
            "{}".to_owned(),
            StatusCode::NOT_FOUND,
            "delivery_not_found",
        ),
    ] {
        let r = server
            .http
            .post(server.url(&path))
            .bearer_auth(&owner)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let got = r.status();
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{name}: the error is JSON: {text:?}"));
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {body}"
        );
    }

    let after = (row_counts(&server).await, clients(&server).await);
    assert_eq!(before, after, "nothing changed");
    assert_eq!(events(&server).await, n_events, "nothing was recorded");
    server.shutdown().await;
}

/// Every route the OpenAPI document lists, sent a malformed query string, a malformed body and
/// an oversized body without credentials: never a 5xx, and every 4xx is JSON (Keyplane's,
/// OAuth's or SCIM's shape), not a framework's plain-text rejection.
async fn every_documented_route_answers_bad_input_in_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let spec = server
        .request(
            reqwest::Method::GET,
            "/api/v1/openapi.json",
            None,
            None,
            None,
        )
        .await
        .body;
    let paths = spec["paths"].as_object().expect("paths");
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(70 * 1024));
    // A fresh connection for each request: a server that answers without reading an unwanted
    // body closes the connection, which a pooled client might otherwise reuse.
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let http = reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut checked = 0;
    let mut wrong = vec![];
    for (template, operations) in paths {
        let path: String = template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "6f9619ff-8b86-d011-b42d-00c04fc964ff"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in operations.as_object().unwrap().keys() {
            let method: reqwest::Method = match method.to_uppercase().parse() {
                Ok(m) => m,
                Err(_) => continue,
            };
            let attempts: Vec<(String, Option<String>)> = if method == reqwest::Method::GET {
                vec![(format!("{path}?limit=abc&since=zzz&after=%zz&x=%%"), None)]
            } else {
                vec![
                    (path.clone(), Some("{not json".to_owned())),
                    (path.clone(), Some(big.clone())),
                ]
            };
            for (url, body) in attempts {
                let mut req = http.request(method.clone(), server.url(&url));
                if let Some(b) = body {
                    req = req.header("content-type", "application/json").body(b);
                }
                let r = match req.send().await {
                    Ok(r) => r,
                    Err(e) => {
                        wrong.push(format!("{method} {url:.80}: {e}"));
                        continue;
                    }
                };
                let status = r.status();
                let json = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.contains("json"));
                checked += 1;
                if status.is_server_error() || (status.is_client_error() && !json) {
                    let text = r.text().await.unwrap_or_default();
                    wrong.push(format!("{method} {url:.80}: {status} {text:.120}"));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "the spec lists the routes ({checked} requests)"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    server.shutdown().await;
}

both_backends!(
    every_documented_route_answers_bad_input_in_json,
    integration_endpoints_refuse_bad_bodies_and_change_nothing,
    admin_requests_with_bad_input_get_coded_4xx_and_change_nothing,
    invariant9_malformed_requests_get_coded_4xx_and_change_nothing,
    unknown_routes_and_methods_answer_in_json
);
