//! Operational endpoints: health, readiness, metrics, the OpenAPI document, request ids.

mod common;

use common::both_backends;
use keyplane_testkit::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::BTreeSet;

async fn health_and_readiness(backend: Backend) {
    let server = TestServer::start(backend).await;
    let h = server
        .request(Method::GET, "/healthz", None, None, None)
        .await;
    assert_eq!(
        (h.status, h.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let r = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["database"], backend.as_str());
    assert!(r.body["migration"].as_i64().unwrap() >= 1);
    // With the database gone, the node is not ready (and says so in JSON).
    server.store.close().await;
    let r = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "storage_unavailable");
    server.shutdown().await;
}

async fn metrics_count_ceremonies_by_outcome(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut auth, _) = server.user_with_passkey("alice").await;
    // A failure with a reason: a replayed ceremony.
    let options = server
        .post(
            "/api/v1/authentication/options",
            &json!({"username": "alice"}),
        )
        .await;
    let asserted = auth.authenticate(&options.body["publicKey"]).await.unwrap();
    let body = json!({"ceremony": options.body["ceremony"], "credential": asserted});
    server.post("/api/v1/authentication/verify", &body).await;
    server.post("/api/v1/authentication/verify", &body).await;
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "keyplane_ceremonies_started_total{ceremony=\"registration\"}",
        "keyplane_ceremonies_succeeded_total{ceremony=\"authentication\"}",
        "keyplane_ceremonies_failed_total{ceremony=\"authentication\",reason=\"ceremony_not_found\"}",
        "keyplane_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/authentication/verify\",status=\"200\"",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    server.shutdown().await;
}

async fn responses_carry_a_request_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let r = server
        .request(Method::GET, "/healthz", None, None, None)
        .await;
    let id = r
        .headers
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let given = server
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        given.headers()["x-request-id"],
        "trace-123",
        "a caller's request id is kept"
    );
    server.shutdown().await;
}

/// The OpenAPI document is valid JSON, served, and documents exactly the routes the router has.
async fn openapi_documents_every_route(backend: Backend) {
    let server = TestServer::start(backend).await;
    let r = server
        .request(Method::GET, "/api/v1/openapi.json", None, None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = r.body["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| *m != "parameters")
                .map(move |m| (path.clone(), m.to_uppercase()))
        })
        .collect();
    // Every documented operation exists (is not the JSON 404 fallback) ...
    for (path, method) in &documented {
        let concrete = path.replace("{id}", "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        let reply = server
            .request(
                method.parse().unwrap(),
                &concrete,
                None,
                None,
                Some(&json!({})),
            )
            .await;
        assert!(
            !(reply.status == StatusCode::NOT_FOUND && reply.code() == "not_found")
                && reply.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but not routed ({})",
            reply.status
        );
    }
    // ... and every routed API operation is documented.
    let routed = [
        ("/api/v1/registration/options", "POST"),
        ("/api/v1/registration/verify", "POST"),
        ("/api/v1/authentication/options", "POST"),
        ("/api/v1/authentication/verify", "POST"),
        ("/api/v1/me", "GET"),
        ("/api/v1/me/credentials", "GET"),
        ("/api/v1/me/recovery-codes", "GET"),
        ("/api/v1/me/recovery-codes", "POST"),
        ("/api/v1/me/recovery-cases", "GET"),
        ("/api/v1/me/sessions", "GET"),
        ("/api/v1/me/sessions/end-others", "POST"),
        ("/api/v1/me/sign-ins", "GET"),
        ("/api/v1/me/recovery-cases/{id}/cancel", "POST"),
        ("/api/v1/recovery/codes/redeem", "POST"),
        ("/api/v1/recovery/links/redeem", "POST"),
        ("/api/v1/recovery/cases", "POST"),
        ("/api/v1/admin/recovery-cases", "GET"),
        ("/api/v1/admin/recovery-cases", "POST"),
        ("/api/v1/admin/recovery-cases/{id}", "GET"),
        // `/api/v1/admin/recovery-cases/{id}/{action}`, one path per action.
        ("/api/v1/admin/recovery-cases/{id}/take", "POST"),
        ("/api/v1/admin/recovery-cases/{id}/check", "POST"),
        ("/api/v1/admin/recovery-cases/{id}/verified", "POST"),
        ("/api/v1/admin/recovery-cases/{id}/review", "POST"),
        ("/api/v1/admin/recovery-cases/{id}/send-link", "POST"),
        ("/api/v1/admin/recovery-cases/{id}/deny", "POST"),
        ("/api/v1/admin/recovery-cases/{id}/cancel", "POST"),
        ("/api/v1/me/credentials/{id}", "GET"),
        ("/api/v1/me/credentials/{id}", "PATCH"),
        ("/api/v1/me/credentials/{id}", "DELETE"),
        ("/api/v1/logout", "POST"),
        ("/api/v1/audit/events", "GET"),
        ("/api/v1/audit/verify", "GET"),
        ("/api/v1/admin/policy", "GET"),
        ("/api/v1/admin/policy/versions", "GET"),
        ("/api/v1/admin/policy/lint", "POST"),
        ("/api/v1/admin/policy/diff", "POST"),
        ("/api/v1/admin/policy/simulate", "POST"),
        ("/api/v1/admin/policy/apply", "POST"),
        ("/api/v1/admin/policy/rollback", "POST"),
        ("/api/v1/admin/approvals", "GET"),
        ("/api/v1/admin/approvals/{id}/approve", "POST"),
        ("/api/v1/admin/approvals/{id}/deny", "POST"),
        ("/api/v1/admin/users", "GET"),
        ("/api/v1/admin/users", "POST"),
        ("/api/v1/admin/users/{id}", "GET"),
        ("/api/v1/admin/users/{id}/populations", "PUT"),
        ("/api/v1/admin/users/{id}/role", "PUT"),
        // The router has `/api/v1/admin/users/{id}/{action}`; each action is documented (and
        // checked here) as its own path.
        ("/api/v1/admin/users/{id}/suspend", "POST"),
        ("/api/v1/admin/users/{id}/reactivate", "POST"),
        ("/api/v1/admin/users/{id}/deprovision", "POST"),
        ("/api/v1/admin/users/{id}/re-enrol", "POST"),
        ("/api/v1/admin/users/{id}/contact", "PUT"),
        ("/api/v1/admin/notifications", "GET"),
        ("/api/v1/admin/credentials", "GET"),
        ("/api/v1/admin/credentials/bulk", "POST"),
        ("/api/v1/admin/credentials/{id}/suspend", "POST"),
        ("/api/v1/admin/credentials/{id}/reactivate", "POST"),
        ("/api/v1/admin/credentials/{id}/revoke", "POST"),
        ("/api/v1/admin/credentials/{id}/lost", "POST"),
        ("/api/v1/admin/bulk-jobs/{id}", "GET"),
        ("/api/v1/admin/fraud-alerts", "GET"),
        ("/api/v1/admin/fraud-alerts/{id}/resolve", "POST"),
        ("/api/v1/admin/exceptions", "GET"),
        ("/api/v1/admin/exceptions", "POST"),
        ("/api/v1/admin/exceptions/{id}/revoke", "POST"),
        // `/api/v1/admin/reports/{name}`, one path per report.
        ("/api/v1/admin/reports/coverage", "GET"),
        ("/api/v1/admin/reports/drift", "GET"),
        ("/api/v1/admin/reports/exceptions", "GET"),
        ("/api/v1/admin/reports/fraud", "GET"),
        ("/api/v1/admin/reports/clients", "GET"),
        ("/api/v1/admin/reports/controls", "GET"),
        ("/api/v1/admin/reports/campaigns", "GET"),
        ("/api/v1/admin/campaigns", "GET"),
        ("/api/v1/admin/campaigns", "POST"),
        ("/api/v1/admin/campaigns/{id}", "GET"),
        ("/api/v1/admin/campaigns/{id}/close", "POST"),
        ("/api/v1/admin/clients", "GET"),
        ("/api/v1/admin/clients", "POST"),
        ("/api/v1/admin/clients/{id}", "GET"),
        ("/api/v1/admin/clients/{id}/rotate", "POST"),
        ("/api/v1/admin/clients/{id}/revoke", "POST"),
        ("/api/v1/admin/webhooks/deliveries", "GET"),
        ("/api/v1/admin/webhooks/deliveries/{id}", "GET"),
        ("/api/v1/admin/webhooks/deliveries/{id}/replay", "POST"),
        ("/api/v1/step-up/options", "POST"),
        ("/api/v1/step-up/verify", "POST"),
        ("/.well-known/keyplane-audit-keys", "GET"),
        ("/api/v1/openapi.json", "GET"),
        ("/.well-known/openid-configuration", "GET"),
        ("/oidc/jwks", "GET"),
        ("/oidc/authorize", "GET"),
        ("/oidc/authorize/continue", "GET"),
        ("/oidc/token", "POST"),
        ("/oidc/userinfo", "GET"),
        ("/oidc/userinfo", "POST"),
        ("/oidc/end-session", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
        ("/scim/v2/ServiceProviderConfig", "GET"),
        ("/scim/v2/ResourceTypes", "GET"),
        ("/scim/v2/ResourceTypes/{name}", "GET"),
        ("/scim/v2/Schemas", "GET"),
        ("/scim/v2/Schemas/{id}", "GET"),
        ("/scim/v2/.search", "POST"),
        ("/scim/v2/Users", "GET"),
        ("/scim/v2/Users", "POST"),
        ("/scim/v2/Users/.search", "POST"),
        ("/scim/v2/Users/{id}", "GET"),
        ("/scim/v2/Users/{id}", "PUT"),
        ("/scim/v2/Users/{id}", "PATCH"),
        ("/scim/v2/Users/{id}", "DELETE"),
        ("/scim/v2/Groups", "GET"),
        ("/scim/v2/Groups", "POST"),
        ("/scim/v2/Groups/.search", "POST"),
        ("/scim/v2/Groups/{id}", "GET"),
        ("/scim/v2/Groups/{id}", "PUT"),
        ("/scim/v2/Groups/{id}", "PATCH"),
        ("/scim/v2/Groups/{id}", "DELETE"),
    ];
    let routed: BTreeSet<(String, String)> = routed
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(documented, routed);
    server.shutdown().await;
}

both_backends!(
    health_and_readiness,
    metrics_count_ceremonies_by_outcome,
    responses_carry_a_request_id,
    openapi_documents_every_route
);
