//! A third-party SCIM 2.0 compliance checker, PyPI's `scim2-tester`, run against a real server
//! on both backends with a SCIM token created through the admin API. It discovers the server
//! (ServiceProviderConfig, ResourceTypes, Schemas), then creates, reads, replaces, patches and
//! deletes users and groups with values it makes up from the published schemas. Every check
//! must pass but those listed in `KNOWN`, each with its reason; a known failure that starts
//! passing fails the test too, so the list stays true. In CI a missing package fails the test;
//! outside CI, `KEYPLANE_TEST_SKIP_DATA=1` skips it.

mod common;

use common::{both_backends, call};
use keyplane_testkit::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Statuses that are failures (scim2-tester's `Status`): a MUST broken, a security risk.
const FAILING: &[&str] = &["ERROR", "CRITICAL"];

/// Checks known to fail: (resource type, check, text in its reason, why).
const KNOWN: &[(&str, &str, &str, &str)] = &[(
    "User",
    "check_remove_attribute",
    "'active'",
    "every Keyplane user has a status, so `active` cannot be absent: removing it leaves the \
     user as it is (true unless deprovisioned); deactivation is `active: false`",
)];

async fn scim2_tester_finds_no_failure(backend: Backend) {
    let Some(pythonpath) = keyplane_testkit::test_data::scim2_tester_pythonpath() else {
        return;
    };
    let server = TestServer::start(backend).await;
    let owner = common::member(&server, "scim-owner", Some("owner")).await;
    let (_, me) = call(&server, Method::GET, "/api/v1/me", &owner, None).await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/clients",
        &owner,
        Some(json!({ "kind": "scim_token", "name": "compliance", "owner": me["user"]["id"], "scopes": ["users.manage"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["secret"].as_str().unwrap().to_string();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scim_compliance.py");
    let base = server.url("/scim/v2");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&base)
        .arg(&token)
        .env("PYTHONPATH", &pythonpath)
        .output()
        .await
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scim2-tester failed to run: {stderr}"
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("scim2-tester printed no JSON ({e}): {stderr}"));
    for r in &results {
        eprintln!(
            "{:<10} {:<6} {} {}",
            r["status"].as_str().unwrap_or("?"),
            r["resource_type"].as_str().unwrap_or("-"),
            r["title"].as_str().unwrap_or("?"),
            r["reason"].as_str().unwrap_or("")
        );
    }
    let is_known = |r: &Value, k: &(&str, &str, &str, &str)| {
        r["resource_type"] == k.0
            && r["title"] == k.1
            && r["reason"].as_str().unwrap_or("").contains(k.2)
    };
    let failures: Vec<&Value> = results
        .iter()
        .filter(|r| FAILING.contains(&r["status"].as_str().unwrap_or("")))
        .filter(|r| !KNOWN.iter().any(|k| is_known(r, k)))
        .collect();
    for k in KNOWN {
        let still = results
            .iter()
            .any(|r| FAILING.contains(&r["status"].as_str().unwrap_or("")) && is_known(r, k));
        assert!(
            still,
            "{}/{} ({}) now passes: remove it from KNOWN",
            k.0, k.1, k.2
        );
    }
    let succeeded = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    // Guard against a run that checked nothing (e.g. discovery failing silently).
    assert!(
        succeeded >= 20,
        "only {succeeded} checks succeeded: {results:#?}"
    );
    assert!(failures.is_empty(), "scim2-tester failures: {failures:#?}");
    server.shutdown().await;
}

both_backends!(scim2_tester_finds_no_failure);
