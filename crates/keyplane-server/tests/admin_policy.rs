//! The admin API for policy as code and dual control, over HTTP on both backends: roles and
//! step-up guard every operation; apply under dual control waits for a *different* admin, whose
//! approval activates it exactly once; denial, expiry and lint errors change nothing.

mod common;

use common::{both_backends, call, member};
use keyplane_core::audit::Caller;
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, SystemClock};
use keyplane_store::Store;
use keyplane_testkit::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const DUAL: &str = "version = 1\npopulations = [\"regulated\"]\n[governance]\ndual_control = [\"policy.apply\", \"policy.rollback\"]\napproval_ttl_secs = 3600\n";
const STRICT: &str = "version = 1\npopulations = [\"regulated\"]\n[governance]\ndual_control = [\"policy.apply\", \"policy.rollback\"]\n[authenticators.regulated]\nsynced = \"deny\"\n";

async fn active_version(server: &TestServer) -> Option<i64> {
    let tenant = server.default_tenant().await;
    server
        .store
        .active_policy_version(&tenant.id)
        .await
        .unwrap()
}

async fn roles_and_step_up_guard_every_policy_operation(backend: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    let admin = member(&server, "ada", Some("admin")).await;
    let auditor = member(&server, "aud", Some("auditor")).await;
    let plain = member(&server, "pat", None).await;
    let doc = json!({ "document": "version = 1\n[enrolment]\nmax_passkeys = 3\n" });

    // Nobody without a role gets anything.
    for (m, path, body) in [
        (Method::GET, "/api/v1/admin/policy", None),
        (Method::POST, "/api/v1/admin/policy/lint", Some(doc.clone())),
        (
            Method::POST,
            "/api/v1/admin/policy/apply",
            Some(doc.clone()),
        ),
        (Method::GET, "/api/v1/admin/approvals", None),
    ] {
        let (status, body) = call(&server, m, path, &plain, body).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden_role")),
            "{path}"
        );
    }
    // The auditor reads, lints, diffs and simulates, but cannot apply.
    let (status, body) = call(&server, Method::GET, "/api/v1/admin/policy", &auditor, None).await;
    assert_eq!((status, &body["builtin"]), (StatusCode::OK, &json!(true)));
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/diff",
        &auditor,
        Some(doc.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["diff"].as_str().unwrap().contains("+max_passkeys = 3"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/simulate",
        &auditor,
        Some(doc.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["populations"]["(none)"]["users"].as_u64().unwrap() >= 3,
        "{body}"
    );
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/apply",
        &auditor,
        Some(doc.clone()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden_role"))
    );
    assert_eq!(active_version(&server).await, None);

    // Lint reports every problem with its line; apply refuses the same document, changing nothing.
    let bad = json!({ "document": "version = 1\n[enrolment]\nmax_passkeys = 0\ncolour = 1\n" });
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/lint",
        &admin,
        Some(bad.clone()),
    )
    .await;
    assert_eq!((status, &body["valid"]), (StatusCode::OK, &json!(false)));
    let lines: Vec<i64> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4], "{body}");
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/apply",
        &admin,
        Some(bad),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("policy_invalid"))
    );
    assert_eq!(body["error"]["errors"].as_array().unwrap().len(), 2);
    assert_eq!(active_version(&server).await, None);

    // The admin applies (no dual control in force): version 1, audited.
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/apply",
        &admin,
        Some(doc.clone()),
    )
    .await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"status": "applied", "version": 1}))
    );
    assert_eq!(active_version(&server).await, Some(1));

    // Sixteen minutes later the built-in step-up rule (admin.*: aal2 within 15 minutes) bites.
    clock.advance_secs(16 * 60);
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/apply",
        &admin,
        Some(doc.clone()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step_up_required")),
        "{body}"
    );
    assert_eq!(active_version(&server).await, Some(1));
    let (status, body) = call(
        &server,
        Method::GET,
        "/api/v1/admin/policy/versions",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step_up_required"))
    );
    server.shutdown().await;
}

async fn dual_control_needs_a_second_admin_and_acts_exactly_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(&tenant, DUAL, &Caller::operator("setup"))
        .await
        .unwrap();
    let ada = member(&server, "ada", Some("admin")).await;
    let bea = member(&server, "bea", Some("owner")).await;
    let aud = member(&server, "aud", Some("auditor")).await;

    // Under dual control, apply only asks.
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/apply",
        &ada,
        Some(json!({"document": STRICT})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("awaiting_approval")),
        "{body}"
    );
    let id = body["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["approval"]["action"], "policy.apply");
    assert_eq!(
        active_version(&server).await,
        Some(1),
        "nothing changed yet"
    );
    // The requester cannot approve their own request, nor can an auditor.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/approvals/{id}/approve"),
        &ada,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("approver_is_requester"))
    );
    let (status, _) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/approvals/{id}/approve"),
        &aud,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(active_version(&server).await, Some(1));

    // Two decisions at once by the second admin: exactly one wins, the policy is applied once.
    let path = format!("/api/v1/admin/approvals/{id}/approve");
    let (a, b) = tokio::join!(
        call(&server, Method::POST, &path, &bea, None),
        call(&server, Method::POST, &path, &bea, None)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    let won = if a.0 == StatusCode::OK { &a.1 } else { &b.1 };
    assert_eq!(won["result"]["version"], 2);
    assert_eq!(won["approval"]["status"], "approved");
    assert!(won["approval"]["decided_by"].as_str().is_some());
    assert_eq!(active_version(&server).await, Some(2));
    let activated = server.events("policy.activated").await;
    assert_eq!(activated.len(), 2, "setup + the approved one");
    let last = activated.last().unwrap();
    let details: Value = serde_json::from_str(&last.details).unwrap();
    assert_eq!(details["approval"], id.as_str());
    assert_eq!(server.events("approval.requested").await.len(), 1);
    assert_eq!(server.events("approval.approved").await.len(), 1);

    // A rollback is governed too; a denial leaves everything as it was.
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/policy/rollback",
        &bea,
        Some(json!({"version": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let rid = body["approval"]["id"].as_str().unwrap().to_string();
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/approvals/{rid}/deny"),
        &ada,
        Some(json!({"note": "not during the audit"})),
    )
    .await;
    assert_eq!(
        (status, body["approval"]["status"].as_str()),
        (StatusCode::OK, Some("denied"))
    );
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/approvals/{rid}/approve"),
        &ada,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("approval_decided"))
    );
    assert_eq!(active_version(&server).await, Some(2));
    let (status, body) = call(&server, Method::GET, "/api/v1/admin/approvals", &aud, None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(&str, &str)> = body["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        vec![("policy.rollback", "denied"), ("policy.apply", "approved")]
    );
    // Unknown and malformed ids are 404s.
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/admin/approvals/6f9619ff-8b86-d011-b42d-00c04fc964ff/approve",
        &bea,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/admin/approvals/not-an-id/approve",
        &bea,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

async fn an_unanswered_request_expires_and_changes_nothing(backend: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(&tenant, DUAL, &Caller::operator("setup"))
        .await
        .unwrap();
    let requested = match server
        .app
        .apply_policy(&tenant, STRICT, &Caller::operator("alice"))
        .await
        .unwrap()
    {
        keyplane_server::service::PolicyChange::AwaitingApproval(a) => a,
        other => panic!("expected a request for approval, got {other:?}"),
    };
    clock.advance_secs(3601);
    let e = server
        .app
        .approve(&tenant, &requested.id, &Caller::operator("bob"))
        .await
        .unwrap_err();
    assert_eq!(e.code, "approval_expired");
    assert_eq!(active_version(&server).await, Some(1));
    let listed = server.app.list_approvals(&tenant).await.unwrap();
    assert_eq!(listed[0].status, keyplane_core::ApprovalStatus::Expired);
    assert_eq!(server.events("approval.expired").await.len(), 1);
    server.shutdown().await;
}

both_backends!(
    roles_and_step_up_guard_every_policy_operation,
    dual_control_needs_a_second_admin_and_acts_exactly_once,
    an_unanswered_request_expires_and_changes_nothing,
);
