//! Machine clients (admin API tokens) over HTTP on both backends: a token does what its scopes
//! (within its owner's role) allow and nothing else, on the admin API only; expired, revoked and
//! orphaned tokens are refused; a rotation keeps the previous secret for its overlap only; no
//! secret reaches the audit log; creation refuses what software must not hold, and obeys dual
//! control, whose approver never sees the secret.

mod common;

use common::{both_backends, call};
use keyplane_core::admin::Role;
use keyplane_core::audit::{AuditEvent, Caller};
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, SystemClock, TokenHash, UserId};
use keyplane_store::{AuditFilter, Store};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

/// A signed-in user with `role`: (bearer token, user id).
async fn member(server: &TestServer, username: &str, role: Option<&str>) -> (String, String) {
    let tenant = server.default_tenant().await;
    let invitation = server
        .app
        .invite(&tenant, username, None, role, &Caller::operator("test"))
        .await
        .unwrap();
    let mut auth = SoftAuthenticator::new(&server.origin(), true, true);
    server.enrol(&mut auth, invitation.token.expose()).await;
    let session = server.sign_in(&mut auth, Some(username)).await;
    (
        session["token"].as_str().unwrap().to_string(),
        invitation.user.id.to_string(),
    )
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

/// Creates a client through the API as `admin`; returns (client id, secret).
async fn create(
    server: &TestServer,
    admin: &str,
    owner: &str,
    scopes: &[&str],
    expires_days: Option<i64>,
) -> (String, String) {
    let (status, body) = call(
        server,
        Method::POST,
        "/api/v1/admin/clients",
        admin,
        Some(json!({ "name": "exporter", "owner": owner, "scopes": scopes, "expires_days": expires_days })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["client"]["id"].as_str().unwrap().to_string(),
        body["secret"].as_str().unwrap().to_string(),
    )
}

async fn all_events(server: &TestServer) -> Vec<AuditEvent> {
    let tenant = server.default_tenant().await;
    server
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

async fn events(server: &TestServer, action: &str) -> Vec<AuditEvent> {
    all_events(server)
        .await
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

async fn manual_server(backend: Backend) -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    (server, clock)
}

async fn a_client_token_works_within_its_scopes_on_the_admin_api_only(backend: Backend) {
    let (server, clock) = manual_server(backend).await;
    let (ada, ada_id) = member(&server, "ada", Some("admin")).await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/clients",
        &ada,
        Some(json!({ "name": " HR sync ", "owner": ada_id, "scopes": ["users.read"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let reply = server
        .request(
            Method::GET,
            &format!(
                "/api/v1/admin/clients/{}",
                body["client"]["id"].as_str().unwrap()
            ),
            None,
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let client = &body["client"];
    assert_eq!(client["name"], "HR sync");
    assert_eq!(client["kind"], "api_token");
    assert_eq!(client["owner_username"], "ada");
    assert_eq!(client["scopes"], json!(["users.read"]));
    assert_eq!(client["status"], "active");
    assert_eq!(client["created_by"], ada_id.as_str());
    assert_eq!(client["has_secret"], true);
    assert_eq!(client["last_used_at"], Value::Null);
    assert_eq!(reply.body, *client, "GET shows what POST returned");
    let secret = body["secret"].as_str().unwrap();
    assert!(secret.starts_with("kpm_") && secret.len() == 47, "{secret}");
    assert!(body.get("secret_hash").is_none() && client.get("secret_hash").is_none());
    let id = client["id"].as_str().unwrap();
    let expires = &client["expires_at"];
    let in_90_days = keyplane_core::Timestamp(clock.now().0 + 90 * 86_400_000).to_rfc3339();
    assert_eq!(expires, &json!(in_90_days), "default lifetime 90 days");

    // Reads users with users.read; anything else is 403 forbidden_scope (deny by default).
    let (status, body) = call(&server, Method::GET, "/api/v1/admin/users", secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["username"] == "ada"));
    for (m, path, body) in [
        (Method::GET, "/api/v1/admin/credentials", None),
        (Method::GET, "/api/v1/admin/clients", None),
        (Method::GET, "/api/v1/audit/events", None),
        (
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"username": "eve"})),
        ),
        (
            Method::POST,
            "/api/v1/admin/clients",
            Some(json!({"name": "more", "owner": ada_id, "scopes": ["users.read"]})),
        ),
        (
            Method::POST,
            &format!("/api/v1/admin/clients/{id}/rotate"),
            Some(json!({})),
        ),
    ] {
        let (status, body) = call(&server, m.clone(), path, secret, body).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, Some("forbidden_scope")),
            "{m} {path}: {body}"
        );
    }
    // Not on the self-service API or the ceremonies: those need a person.
    for (m, path, body) in [
        (Method::GET, "/api/v1/me", None),
        (Method::GET, "/api/v1/me/credentials", None),
        (Method::POST, "/api/v1/logout", Some(json!({}))),
        (
            Method::POST,
            "/api/v1/registration/options",
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v1/step-up/options",
            Some(json!({"action": "admin.users.read"})),
        ),
    ] {
        let (status, body) = call(&server, m.clone(), path, secret, body).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, Some("machine_token_not_accepted")),
            "{m} {path}: {body}"
        );
    }
    // Another tenant does not know the token.
    server.create_tenant("other", "other.test").await;
    let r = server
        .request(
            Method::GET,
            "/api/v1/admin/users",
            Some("other.test"),
            Some(secret),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    // Last use is kept to the minute, without an event.
    let first_use = clock.now();
    let c = server
        .app
        .client(
            &server.default_tenant().await,
            &keyplane_core::MachineClientId::parse(id).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(c.client.last_used_at, Some(first_use));
    clock.advance_secs(30);
    call(&server, Method::GET, "/api/v1/admin/users", secret, None).await;
    let c = server
        .app
        .client(&server.default_tenant().await, &c.client.id)
        .await
        .unwrap();
    assert_eq!(
        c.client.last_used_at,
        Some(first_use),
        "not written again within a minute"
    );
    // Software does not step up: 16 minutes later the person needs a step-up, the client not.
    clock.advance_secs(16 * 60);
    let (status, _) = call(&server, Method::GET, "/api/v1/admin/users", secret, None).await;
    assert_eq!(status, StatusCode::OK);
    let c = server
        .app
        .client(&server.default_tenant().await, &c.client.id)
        .await
        .unwrap();
    assert_eq!(c.client.last_used_at, Some(clock.now()));
    let (status, body) = call(&server, Method::GET, "/api/v1/admin/users", &ada, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("step_up_required"))
    );
    assert!(events(&server, "client.used").await.is_empty());

    // What a client changes is recorded with the client as its actor.
    let tenant = server.default_tenant().await;
    let writer = match server
        .app
        .create_client(
            &tenant,
            keyplane_server::service::NewClient {
                kind: "api_token".into(),
                name: "onboarding".into(),
                owner: UserId::parse(&ada_id).unwrap(),
                scopes: vec!["users.manage".into()],
                expires_days: Some(7),
                oidc: None,
                webhook: None,
            },
            &Caller::operator("alice"),
        )
        .await
        .unwrap()
    {
        keyplane_server::service::ClientCreation::Created { client, secret } => (client, secret),
        other => panic!("{other:?}"),
    };
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/users",
        writer.1.expose(),
        Some(json!({"username": "newhire"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let invited = events(&server, "enrolment.invited").await;
    let last = invited.last().unwrap();
    assert_eq!(
        (last.actor_type.as_str(), last.actor_id.clone()),
        ("machine", format!("client:{}", writer.0.client.id))
    );
    assert_eq!(
        writer.0.client.expires_at,
        keyplane_core::Timestamp(clock.now().0 + 7 * 86_400_000)
    );
    server.shutdown().await;
}

async fn expired_revoked_and_orphaned_client_tokens_get_401(backend: Backend) {
    let (server, clock) = manual_server(backend).await;
    let tenant = server.default_tenant().await;
    let (ada, ada_id) = member(&server, "ada", Some("admin")).await;
    let (_, bob_id) = member(&server, "bob", Some("admin")).await;
    let (short, short_secret) = create(&server, &ada, &ada_id, &["users.read"], Some(1)).await;
    let (revoked, revoked_secret) = create(&server, &ada, &ada_id, &["users.read"], None).await;
    let (orphan, orphan_secret) = create(
        &server,
        &ada,
        &bob_id,
        &["users.read", "users.suspend"],
        None,
    )
    .await;
    let ok = |secret: String| {
        let server = &server;
        async move {
            call(server, Method::GET, "/api/v1/admin/users", &secret, None)
                .await
                .0
        }
    };
    for s in [&short_secret, &revoked_secret, &orphan_secret] {
        assert_eq!(ok(s.clone()).await, StatusCode::OK);
    }

    // Revocation is immediate and ends the previous secret (within its overlap) as well.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{revoked}/rotate"),
        &ada,
        Some(json!({ "overlap_hours": 24 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated_secret = body["secret"].as_str().unwrap().to_string();
    assert_eq!(
        ok(revoked_secret.clone()).await,
        StatusCode::OK,
        "in the overlap"
    );
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{revoked}/revoke"),
        &ada,
        Some(json!({ "reason": "leaked in a build log" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client"]["status"], "revoked");
    assert_eq!(body["client"]["revoke_reason"], "leaked in a build log");
    assert_eq!(body["client"]["revoked_by"], ada_id.as_str());
    for s in [&revoked_secret, &rotated_secret] {
        let (status, body) = call(&server, Method::GET, "/api/v1/admin/users", s, None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
        );
    }
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{revoked}/revoke"),
        &ada,
        Some(json!({ "reason": "again" })),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, Some("client_revoked"))
    );
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{revoked}/rotate"),
        &ada,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, Some("client_not_active"))
    );
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{revoked}/revoke"),
        &ada,
        Some(json!({ "reason": "" })),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, Some("invalid_reason"))
    );

    // The owner suspended: the client stops at once, and works again when they come back.
    let bob = UserId::parse(&bob_id).unwrap();
    let op = Caller::operator("hr");
    server
        .app
        .suspend_user(&tenant, &bob, "leave", &op)
        .await
        .unwrap();
    assert_eq!(ok(orphan_secret.clone()).await, StatusCode::UNAUTHORIZED);
    let (_, list) = call(&server, Method::GET, "/api/v1/admin/clients", &ada, None).await;
    let shown = |list: &Value, id: &str| {
        list["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(shown(&list, &orphan)["findings"], json!(["owner_inactive"]));
    assert_eq!(shown(&list, &orphan)["status"], "active");
    server
        .app
        .reactivate_user(&tenant, &bob, "back", &op)
        .await
        .unwrap();
    assert_eq!(ok(orphan_secret.clone()).await, StatusCode::OK);
    // An owner who loses their administrative role takes their clients with them.
    server.app.set_role(&tenant, &bob, None, &op).await.unwrap();
    assert_eq!(ok(orphan_secret.clone()).await, StatusCode::UNAUTHORIZED);
    server
        .app
        .set_role(&tenant, &bob, Some(Role::Auditor), &op)
        .await
        .unwrap();
    assert_eq!(ok(orphan_secret.clone()).await, StatusCode::OK);
    // As an auditor's client it still reads, but what an auditor may not do, it may not either.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/users/{ada_id}/suspend"),
        &orphan_secret,
        Some(json!({ "reason": "test" })),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("forbidden_scope")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("owner's role"));
    let deprovisioned = server
        .app
        .deprovision_user(&tenant, &bob, "left", &op)
        .await;
    assert!(deprovisioned.is_ok(), "{deprovisioned:?}");
    assert_eq!(ok(orphan_secret.clone()).await, StatusCode::UNAUTHORIZED);

    // Expiry: a day and a second later the one-day client is refused, and listed as expired.
    clock.advance_secs(86_401);
    let (status, body) = call(
        &server,
        Method::GET,
        "/api/v1/admin/users",
        &short_secret,
        None,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let c = server
        .app
        .client(
            &tenant,
            &keyplane_core::MachineClientId::parse(&short).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.findings.clone()),
        ("expired", vec!["expired"])
    );
    let e = server
        .app
        .rotate_client(&tenant, &c.client.id, None, &op)
        .await
        .unwrap_err();
    assert_eq!(e.code, "client_not_active");

    // Every refusal of a known client is recorded, with why; the token itself is not.
    let refused: Vec<(String, String)> = events(&server, "client.refused")
        .await
        .into_iter()
        .map(|e| (e.target_id, e.reasons[0].clone()))
        .collect();
    for expected in [
        (revoked.clone(), "client_revoked"),
        (orphan.clone(), "client_owner_inactive"),
        (short.clone(), "client_expired"),
    ] {
        assert!(
            refused
                .iter()
                .any(|(id, r)| *id == expected.0 && r == expected.1),
            "{expected:?} in {refused:?}"
        );
    }
    server.shutdown().await;
}

async fn rotation_keeps_the_previous_secret_for_its_overlap_only(backend: Backend) {
    let (server, clock) = manual_server(backend).await;
    let tenant = server.default_tenant().await;
    let (ada, ada_id) = member(&server, "ada", Some("admin")).await;
    let (id, first) = create(&server, &ada, &ada_id, &["users.read"], None).await;
    let status_of = |secret: String| {
        let server = &server;
        async move {
            call(server, Method::GET, "/api/v1/admin/users", &secret, None)
                .await
                .0
        }
    };
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{id}/rotate"),
        &ada,
        Some(json!({ "overlap_hours": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.get("secret_hash"), None);
    let second = body["secret"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let rotated_at = clock.now();
    assert_eq!(body["client"]["rotated_at"], json!(rotated_at.to_rfc3339()));
    assert_eq!(
        body["client"]["previous_secret_expires_at"],
        json!(rotated_at.plus_secs(7200).to_rfc3339())
    );
    assert_eq!(status_of(first.clone()).await, StatusCode::OK);
    assert_eq!(status_of(second.clone()).await, StatusCode::OK);
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/clients/not-a-uuid/rotate",
        &ada,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, Some("client_not_found"))
    );
    clock.advance_secs(7199);
    assert_eq!(
        status_of(first.clone()).await,
        StatusCode::OK,
        "just inside"
    );
    clock.advance_secs(1);
    assert_eq!(
        status_of(first.clone()).await,
        StatusCode::UNAUTHORIZED,
        "overlap over"
    );
    assert_eq!(status_of(second.clone()).await, StatusCode::OK);
    let superseded = events(&server, "client.refused").await;
    assert_eq!(
        superseded.last().unwrap().reasons,
        vec!["client_secret_superseded"]
    );

    // Overlap 0 ends the previous secret at once; the rotation is recorded.
    let op = Caller::operator("alice");
    let cid = keyplane_core::MachineClientId::parse(&id).unwrap();
    let (_, third) = server
        .app
        .rotate_client(&tenant, &cid, Some(0), &op)
        .await
        .unwrap();
    assert_eq!(status_of(second.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(third.expose().to_string()).await, StatusCode::OK);
    let rotated = events(&server, "client.rotated").await;
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[1].actor_id, "cli:alice");
    // The overlap is bounded.
    for hours in [-1, 169] {
        let e = server
            .app
            .rotate_client(&tenant, &cid, Some(hours), &op)
            .await
            .unwrap_err();
        assert_eq!(e.code, "invalid_overlap", "{hours}");
    }
    let e = server
        .app
        .rotate_client(
            &tenant,
            &keyplane_core::MachineClientId::generate(),
            None,
            &op,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "client_not_found");
    server.shutdown().await;
}

async fn client_secrets_never_reach_the_audit_log_or_the_database(backend: Backend) {
    let (server, _clock) = manual_server(backend).await;
    let (ada, ada_id) = member(&server, "ada", Some("admin")).await;
    let (id, first) = create(&server, &ada, &ada_id, &["users.read", "audit.read"], None).await;
    let (_, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{id}/rotate"),
        &ada,
        Some(json!({})),
    )
    .await;
    let second = body["secret"].as_str().unwrap().to_string();
    // Used, refused (a wrong scope, then after revocation), read back through the audit API.
    call(&server, Method::GET, "/api/v1/admin/users", &second, None).await;
    call(
        &server,
        Method::GET,
        "/api/v1/admin/credentials",
        &second,
        None,
    )
    .await;
    let (status, page) = call(
        &server,
        Method::GET,
        "/api/v1/audit/events?limit=1000",
        &second,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/clients/{id}/revoke"),
        &ada,
        Some(json!({"reason": "test"})),
    )
    .await;
    call(&server, Method::GET, "/api/v1/admin/users", &first, None).await;
    let events = all_events(&server).await;
    assert!(events.iter().any(|e| e.action == "client.created"));
    assert!(events.iter().any(|e| e.action == "client.refused"));
    let log = serde_json::to_string(&events).unwrap() + &page.to_string();
    for secret in [&first, &second] {
        let random = &secret["kpm_".len()..];
        assert!(!log.contains(random), "a secret is in the audit log");
        let hash = hex::encode(TokenHash::of(secret.as_bytes()).0);
        assert!(!log.contains(&hash), "a secret's hash is in the audit log");
    }
    // The database keeps only the SHA-256 of each.
    use sqlx::Row;
    let row = sqlx::query("SELECT secret_hash, previous_hash, name, scopes FROM machine_clients")
        .fetch_one(server.store.pool())
        .await
        .unwrap();
    assert_eq!(
        row.try_get::<Vec<u8>, _>("secret_hash").unwrap(),
        TokenHash::of(second.as_bytes()).0
    );
    assert_eq!(
        row.try_get::<Vec<u8>, _>("previous_hash").unwrap(),
        TokenHash::of(first.as_bytes()).0
    );
    server.shutdown().await;
}

async fn creation_refuses_unfit_scopes_owners_and_lifetimes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let (ada, ada_id) = member(&server, "ada", Some("admin")).await;
    let (aud, aud_id) = member(&server, "aud", Some("auditor")).await;
    let (desk, _) = member(&server, "desk", Some("helpdesk")).await;
    let (_, pat_id) = member(&server, "pat", None).await;
    let post = |token: String, body: Value| {
        let server = &server;
        async move {
            call(
                server,
                Method::POST,
                "/api/v1/admin/clients",
                &token,
                Some(body),
            )
            .await
        }
    };
    let with =
        |owner: &str, scopes: Value| json!({ "name": "x", "owner": owner, "scopes": scopes });
    for (body, status, expected) in [
        (
            with(&ada_id, json!(["clients.manage"])),
            StatusCode::BAD_REQUEST,
            "scope_not_delegable",
        ),
        (
            with(&ada_id, json!(["approvals.decide"])),
            StatusCode::BAD_REQUEST,
            "scope_not_delegable",
        ),
        (
            with(&ada_id, json!(["roles.assign"])),
            StatusCode::BAD_REQUEST,
            "scope_not_delegable",
        ),
        (
            with(&ada_id, json!([])),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            with(&ada_id, json!(["users.everything"])),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            json!({ "name": "x", "scopes": ["users.read"] }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("ada", json!(["users.read"])),
            StatusCode::BAD_REQUEST,
            "invalid_owner",
        ),
        (
            with(&UserId::generate().to_string(), json!(["users.read"])),
            StatusCode::BAD_REQUEST,
            "invalid_owner",
        ),
        (
            with(&pat_id, json!(["users.read"])),
            StatusCode::BAD_REQUEST,
            "invalid_owner",
        ),
        (
            with(&aud_id, json!(["users.suspend"])),
            StatusCode::BAD_REQUEST,
            "scope_exceeds_owner",
        ),
        (
            json!({ "name": "x", "owner": ada_id, "scopes": ["users.read"], "expires_days": 91 }),
            StatusCode::BAD_REQUEST,
            "invalid_expiry",
        ),
        (
            json!({ "name": "x", "owner": ada_id, "scopes": ["users.read"], "expires_days": 0 }),
            StatusCode::BAD_REQUEST,
            "invalid_expiry",
        ),
        (
            json!({ "name": "x", "owner": ada_id, "scopes": ["users.read"], "kind": "saml_sp" }),
            StatusCode::BAD_REQUEST,
            "invalid_kind",
        ),
        (
            json!({ "name": "x", "owner": ada_id, "scopes": ["users.read"], "kind": "scim_token" }),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            json!({ "name": "  ", "owner": ada_id, "scopes": ["users.read"] }),
            StatusCode::BAD_REQUEST,
            "invalid_client_name",
        ),
        (
            json!({ "name": "x", "owner": ada_id, "scopes": ["users.read"], "secret": "mine" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ] {
        let (got, reply) = post(ada.clone(), body.clone()).await;
        assert_eq!(
            (got, code(&reply)),
            (status, Some(expected)),
            "{body}: {reply}"
        );
    }
    // Only owners and admins create; auditors read; the help desk does neither.
    let ok = with(&aud_id, json!(["audit.read"]));
    let (got, reply) = post(aud.clone(), ok.clone()).await;
    assert_eq!(
        (got, code(&reply)),
        (StatusCode::FORBIDDEN, Some("forbidden_role"))
    );
    let (got, reply) = post(desk.clone(), ok.clone()).await;
    assert_eq!(
        (got, code(&reply)),
        (StatusCode::FORBIDDEN, Some("forbidden_role"))
    );
    let (got, reply) = call(&server, Method::GET, "/api/v1/admin/clients", &desk, None).await;
    assert_eq!(
        (got, code(&reply)),
        (StatusCode::FORBIDDEN, Some("forbidden_role"))
    );
    // Nothing of the above was created or recorded.
    let (got, reply) = call(&server, Method::GET, "/api/v1/admin/clients", &aud, None).await;
    assert_eq!((got, reply), (StatusCode::OK, json!({ "clients": [] })));
    assert!(events(&server, "client.created").await.is_empty());
    // An auditor may own a client with an auditor's scopes.
    let (got, reply) = post(ada.clone(), ok).await;
    assert_eq!(got, StatusCode::CREATED, "{reply}");

    // The policy bounds the lifetime, and its maximum is also the default when lower than 90.
    server
        .app
        .apply_policy(
            &tenant,
            "version = 1\n[governance]\nclient_max_days = 30\n",
            &Caller::operator("setup"),
        )
        .await
        .unwrap();
    let (got, reply) = post(
        ada.clone(),
        json!({ "name": "x", "owner": ada_id, "scopes": ["users.read"], "expires_days": 31 }),
    )
    .await;
    assert_eq!(
        (got, code(&reply)),
        (StatusCode::BAD_REQUEST, Some("invalid_expiry"))
    );
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1 to 30 days"));
    let (got, reply) = post(ada.clone(), with(&ada_id, json!(["users.read"]))).await;
    assert_eq!(got, StatusCode::CREATED);
    let created =
        keyplane_core::MachineClientId::parse(reply["client"]["id"].as_str().unwrap()).unwrap();
    let c = server.app.client(&tenant, &created).await.unwrap().client;
    assert_eq!(c.expires_at.0 - c.created_at.0, 30 * 86_400_000);
    server.shutdown().await;
}

const DUAL_CLIENTS: &str = "version = 1\n[governance]\ndual_control = [\"clients.create\"]\n";

async fn dual_control_on_creation_gives_the_first_secret_to_the_requester(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(&tenant, DUAL_CLIENTS, &Caller::operator("setup"))
        .await
        .unwrap();
    let (ada, ada_id) = member(&server, "ada", Some("admin")).await;
    let (bea, bea_id) = member(&server, "bea", Some("owner")).await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/clients",
        &ada,
        Some(json!({ "name": "siem", "owner": ada_id, "scopes": ["audit.read"], "expires_days": 30 })),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("awaiting_approval")),
        "{body}"
    );
    assert!(body.get("secret").is_none());
    let approval = body["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["approval"]["action"], "clients.create");
    assert!(
        body["approval"]["summary"]
            .as_str()
            .unwrap()
            .contains("audit.read"),
        "{body}"
    );
    let (_, list) = call(&server, Method::GET, "/api/v1/admin/clients", &ada, None).await;
    assert_eq!(list, json!({ "clients": [] }), "nothing created yet");
    // The requester cannot approve it.
    let approve = format!("/api/v1/admin/approvals/{approval}/approve");
    let (status, body) = call(&server, Method::POST, &approve, &ada, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("approver_is_requester"))
    );
    // A second administrator approves: the client exists, without a secret in anyone's hands.
    let (status, body) = call(&server, Method::POST, &approve, &bea, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.to_string().contains("kpm_"), "{body}");
    let id = body["result"]["client"].as_str().unwrap().to_string();
    let (_, client) = call(
        &server,
        Method::GET,
        &format!("/api/v1/admin/clients/{id}"),
        &bea,
        None,
    )
    .await;
    assert_eq!(client["has_secret"], false);
    assert_eq!(client["findings"], json!(["no_secret"]));
    assert_eq!(client["created_by"], ada_id.as_str());
    assert_eq!(client["approved_by"], bea_id.as_str());
    assert_eq!(client["approval"], approval.as_str());
    let created = events(&server, "client.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor_id, bea_id);
    // The approver cannot take the first secret; the requester does.
    let rotate = format!("/api/v1/admin/clients/{id}/rotate");
    let (status, body) = call(&server, Method::POST, &rotate, &bea, Some(json!({}))).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("first_secret_for_requester"))
    );
    let (status, body) = call(&server, Method::POST, &rotate, &ada, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client"]["previous_secret_expires_at"], Value::Null);
    let secret = body["secret"].as_str().unwrap().to_string();
    let (status, body) = call(&server, Method::GET, "/api/v1/audit/events", &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated = events(&server, "client.rotated").await;
    let details: Value = serde_json::from_str(&rotated[0].details).unwrap();
    assert_eq!(details["first_secret"], true);
    // From then on, any administrator may rotate it.
    let (status, _) = call(&server, Method::POST, &rotate, &bea, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}

async fn a_machine_clients_request_is_not_approved_by_its_owner(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(
            &tenant,
            "version = 1\n[governance]\ndual_control = [\"policy.apply\"]\n",
            &Caller::operator("setup"),
        )
        .await
        .unwrap();
    let (ada, ada_id) = member(&server, "ada", Some("admin")).await;
    let (bea, _) = member(&server, "bea", Some("owner")).await;
    let (_, secret) = create(
        &server,
        &ada,
        &ada_id,
        &["policy.apply", "policy.read"],
        None,
    )
    .await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/apply",
        &secret,
        Some(json!({ "document": "version = 1\n[governance]\ndual_control = [\"policy.apply\"]\n[enrolment]\nmax_passkeys = 4\n" })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let approval = body["approval"]["id"].as_str().unwrap().to_string();
    assert!(body["approval"]["requested_by"]
        .as_str()
        .unwrap()
        .starts_with("client:"));
    let approve = format!("/api/v1/admin/approvals/{approval}/approve");
    let (status, body) = call(&server, Method::POST, &approve, &ada, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("approver_is_requester")),
        "the owner answers for the client's request"
    );
    let (status, body) = call(&server, Method::POST, &approve, &bea, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["version"], 2);
    server.shutdown().await;
}

/// The NHI-01 and NHI-07 rows of the controls report.
async fn nhi_rows(server: &TestServer, tenant: &keyplane_core::Tenant) -> (Value, Value) {
    let rows = server.app.report(tenant, "controls", 30).await.unwrap();
    let row = |c: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["control"] == c)
            .cloned()
            .unwrap_or_else(|| panic!("no {c} in {rows}"))
    };
    (row("NHI-01"), row("NHI-07"))
}

async fn reports_show_expiring_stale_and_orphaned_clients(backend: Backend) {
    let (server, clock) = manual_server(backend).await;
    let tenant = server.default_tenant().await;
    let (_, ada_id) = member(&server, "ada", Some("admin")).await;
    let (_, bob_id) = member(&server, "bob", Some("admin")).await;
    let op = Caller::operator("alice");
    let (nhi01, nhi07) = nhi_rows(&server, &tenant).await;
    assert_eq!(
        (nhi01["status"].as_str(), nhi07["status"].as_str()),
        (Some("not_applicable"), Some("pass"))
    );
    let new = |owner: &str, scopes: &[&str], days: i64| keyplane_server::service::NewClient {
        kind: "api_token".into(),
        name: format!("client of {owner}"),
        owner: UserId::parse(owner).unwrap(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_days: Some(days),
        oidc: None,
        webhook: None,
    };
    let make = |n: keyplane_server::service::NewClient| {
        let (server, tenant, op) = (&server, &tenant, &op);
        async move {
            match server.app.create_client(tenant, n, op).await.unwrap() {
                keyplane_server::service::ClientCreation::Created { client, secret } => {
                    (client.client.id.clone(), secret.expose().to_string())
                }
                other => panic!("{other:?}"),
            }
        }
    };
    let (a, a_secret) = make(new(&ada_id, &["reports.read"], 90)).await;
    let (b, _) = make(new(&bob_id, &["users.read"], 40)).await;
    let (c, _) = make(new(&ada_id, &["users.read"], 90)).await;
    let (d, _) = make(new(&ada_id, &["users.read"], 90)).await;
    server
        .app
        .revoke_client(&tenant, &c, "not needed", &op)
        .await
        .unwrap();
    // Day 20: A is used, D rotated. Day 35: B's owner leaves.
    clock.advance_secs(20 * 86_400);
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/fraud",
        &a_secret,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    server
        .app
        .rotate_client(&tenant, &d, Some(0), &op)
        .await
        .unwrap();
    clock.advance_secs(15 * 86_400);
    server
        .app
        .suspend_user(&tenant, &UserId::parse(&bob_id).unwrap(), "left", &op)
        .await
        .unwrap();

    // Over HTTP, with a machine client that holds reports.read.
    let (status, report) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/clients",
        &a_secret,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let findings = |id: &keyplane_core::MachineClientId| {
        report["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .map(|r| r["findings"].clone())
    };
    assert_eq!(findings(&a), Some(json!(["never_rotated"])));
    assert_eq!(
        findings(&b),
        Some(json!([
            "expiring",
            "never_rotated",
            "unused",
            "owner_inactive"
        ]))
    );
    assert_eq!(findings(&c), None, "a revoked client is not reported");
    assert_eq!(findings(&d), Some(json!(["unused"])));
    assert_eq!(
        report["findings"],
        json!({"expiring": 1, "never_rotated": 2, "unused": 2, "owner_inactive": 1})
    );
    let csv = server
        .http
        .get(server.url("/api/v1/admin/reports/clients?format=csv"))
        .bearer_auth(&a_secret)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("id,name,owner_username,scopes,status,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "a header and three clients: {csv}");

    // Controls: an orphaned and unused clients fail NHI-01; secrets are within 90 days (NHI-07)
    // until the policy asks for 30.
    let (nhi01, nhi07) = nhi_rows(&server, &tenant).await;
    assert_eq!(nhi01["status"], "fail", "{nhi01}");
    assert!(
        nhi01["evidence"]
            .as_str()
            .unwrap()
            .contains("1 whose owner"),
        "{nhi01}"
    );
    assert_eq!(nhi07["status"], "pass", "{nhi07}");
    assert!(
        nhi07["evidence"]
            .as_str()
            .unwrap()
            .contains("oldest secret 35 days"),
        "{nhi07}"
    );
    server
        .app
        .apply_policy(
            &tenant,
            "version = 1\n[governance]\nclient_max_days = 30\n",
            &op,
        )
        .await
        .unwrap();
    let (_, nhi07) = nhi_rows(&server, &tenant).await;
    assert_eq!(nhi07["status"], "fail", "{nhi07}");
    server.shutdown().await;
}

both_backends!(
    a_client_token_works_within_its_scopes_on_the_admin_api_only,
    expired_revoked_and_orphaned_client_tokens_get_401,
    rotation_keeps_the_previous_secret_for_its_overlap_only,
    client_secrets_never_reach_the_audit_log_or_the_database,
    creation_refuses_unfit_scopes_owners_and_lifetimes,
    dual_control_on_creation_gives_the_first_secret_to_the_requester,
    a_machine_clients_request_is_not_approved_by_its_owner,
    reports_show_expiring_stale_and_orphaned_clients,
);
