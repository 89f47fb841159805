//! Administration end to end over HTTP on both backends: credential and user lifecycle, forced
//! re-enrolment, fraud alerts from a cloned key, exceptions granted by a second admin and cited by
//! decisions, bulk actions (dry run, execute, resume) and reports.

mod common;

use common::{both_backends, call};

async fn member(server: &TestServer, username: &str, role: &str) -> String {
    common::member(server, username, Some(role)).await
}
use keyplane_core::audit::Caller;
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, CredentialStatus, SystemClock};
use keyplane_store::{AuditFilter, Store};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

async fn events(server: &TestServer, action: &str) -> Vec<Value> {
    let tenant = server.default_tenant().await;
    server
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                action: Some(action.into()),
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(&e.details).unwrap())
        .collect()
}

/// A usernameless sign-in (the authenticator offers its discoverable passkey): the status.
async fn refused(server: &TestServer, auth: &mut SoftAuthenticator) -> (StatusCode, String) {
    let r = server.try_sign_in(auth, None).await;
    (r.status, r.code().to_string())
}

async fn me(server: &TestServer, token: &str) -> StatusCode {
    server
        .request(Method::GET, "/api/v1/me", None, Some(token), None)
        .await
        .status
}

async fn credential_and_user_lifecycle_end_sessions_and_say_why(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = member(&server, "ada", "admin").await;
    let (mut auth, session) = server.user_with_passkey("uma").await;
    let tenant = server.default_tenant().await;
    let cred = server
        .store_credentials(&tenant)
        .await
        .into_iter()
        .find(|c| c.user_id.as_str() != "")
        .unwrap();
    let uma = server
        .store
        .user_by_username(&tenant.id, "uma")
        .await
        .unwrap()
        .unwrap();
    let uma_cred = server
        .store
        .list_credentials(&tenant.id, Some(&uma.id))
        .await
        .unwrap()
        .remove(0);
    let _ = cred;
    let path = |a: &str| format!("/api/v1/admin/credentials/{}/{a}", uma_cred.id);

    // A reason is required; nothing changes without one.
    let (status, body) = call(
        &server,
        Method::POST,
        &path("suspend"),
        &admin,
        Some(json!({"reason": " "})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_reason"))
    );
    assert_eq!(me(&server, &session).await, StatusCode::OK);
    // Suspending ends the passkey's sessions and refuses sign-in.
    let (status, body) = call(
        &server,
        Method::POST,
        &path("suspend"),
        &admin,
        Some(json!({"reason": "phone lost"})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("suspended")),
        "{body}"
    );
    assert_eq!(me(&server, &session).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused(&server, &mut auth).await,
        (StatusCode::FORBIDDEN, "credential_inactive".to_string())
    );
    let (status, body) = call(
        &server,
        Method::POST,
        &path("suspend"),
        &admin,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition"))
    );
    // Reactivated, it signs in again; revoked, never again.
    let (status, _) = call(
        &server,
        Method::POST,
        &path("reactivate"),
        &admin,
        Some(json!({"reason": "found it"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let session = server.sign_in(&mut auth, Some("uma")).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(
        &server,
        Method::POST,
        &path("revoke"),
        &admin,
        Some(json!({"reason": "left the company"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me(&server, &session).await, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        &server,
        Method::POST,
        &path("reactivate"),
        &admin,
        Some(json!({"reason": "no"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition"))
    );
    let reasons: Vec<String> = events(&server, "credential.suspended")
        .await
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, vec!["phone lost"]);
    assert_eq!(events(&server, "credential.revoked").await.len(), 1);

    // Suspending a user ends every session at once; reactivating lets them back in.
    let (mut bob_key, bob) = server.user_with_passkey("bob").await;
    let bob_id = server
        .store
        .user_by_username(&tenant.id, "bob")
        .await
        .unwrap()
        .unwrap()
        .id;
    let upath = |a: &str| format!("/api/v1/admin/users/{bob_id}/{a}");
    let (status, body) = call(
        &server,
        Method::POST,
        &upath("suspend"),
        &admin,
        Some(json!({"reason": "investigation"})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    assert_eq!(me(&server, &bob).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused(&server, &mut bob_key).await,
        (StatusCode::FORBIDDEN, "user_inactive".to_string())
    );
    call(
        &server,
        Method::POST,
        &upath("reactivate"),
        &admin,
        Some(json!({"reason": "cleared"})),
    )
    .await;
    server.sign_in(&mut bob_key, Some("bob")).await;
    // Forced re-enrolment: the next session may only register a compliant passkey, which ends it.
    let (status, body) = call(
        &server,
        Method::POST,
        &upath("re-enrol"),
        &admin,
        Some(json!({"reason": "device recall"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["re_enrolment_required"], "device recall");
    let session = server.sign_in(&mut bob_key, Some("bob")).await;
    assert_eq!(
        (session["restricted"].as_bool(), session["aal"].as_str()),
        (Some(true), Some("aal1"))
    );
    assert!(session["re_enrolment_reason"]
        .as_str()
        .unwrap()
        .contains("device recall"));
    let restricted = session["token"].as_str().unwrap();
    let options = server
        .request(
            Method::POST,
            "/api/v1/registration/options",
            None,
            Some(restricted),
            Some(&json!({})),
        )
        .await;
    let mut new_key = SoftAuthenticator::new(&server.origin(), true, true);
    let created = new_key.register(&options.body["publicKey"]).await.unwrap();
    let added = server
        .request(
            Method::POST,
            "/api/v1/registration/verify",
            None,
            Some(restricted),
            Some(&json!({"ceremony": options.body["ceremony"], "credential": created})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(events(&server, "user.re_enrolled").await.len(), 1);
    let session = server.sign_in(&mut new_key, Some("bob")).await;
    assert_eq!(session["restricted"], false, "re-enrolment done");
    // Deprovisioning revokes the passkeys (built-in governance.deprovision = "revoke").
    let (status, body) = call(
        &server,
        Method::POST,
        &upath("deprovision"),
        &admin,
        Some(json!({"reason": "left"})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("deprovisioned"))
    );
    let bobs = server
        .store
        .list_credentials(&tenant.id, Some(&bob_id))
        .await
        .unwrap();
    assert!(
        bobs.iter().all(|c| c.status == CredentialStatus::Revoked),
        "{bobs:?}"
    );
    // The tenant keeps an active owner: the bootstrap owner cannot be suspended while alone.
    let owner = server
        .store
        .user_by_username(&tenant.id, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.role.as_deref(), Some("owner"));
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/users/{}/deprovision", owner.id),
        &admin,
        Some(json!({"reason": "take over"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_owner"))
    );
    // Administrators cannot lock themselves out.
    let ada = server
        .store
        .user_by_username(&tenant.id, "ada")
        .await
        .unwrap()
        .unwrap()
        .id;
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/users/{ada}/suspend"),
        &admin,
        Some(json!({"reason": "oops"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("self_lockout"))
    );
    server.shutdown().await;
}

async fn a_cloned_key_opens_a_fraud_alert_an_admin_resolves(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = member(&server, "ada", "admin").await;
    let (mut auth, _) = server.user_with_passkey("cy").await;
    let copy = auth.passkey();
    server.sign_in(&mut auth, Some("cy")).await;
    // The clone presents an older counter: suspended, alert opened.
    let mut clone = SoftAuthenticator::new(&server.origin(), true, true);
    clone.set_passkey(copy);
    let reply = server.try_sign_in(&mut clone, Some("cy")).await;
    assert_eq!(reply.code(), "sign_count_regression");
    let (status, body) = call(
        &server,
        Method::GET,
        "/api/v1/admin/fraud-alerts",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0]["kind"].as_str(), alerts[0]["status"].as_str()),
        (Some("sign_count_regression"), Some("open"))
    );
    let id = alerts[0]["id"].as_str().unwrap().to_string();
    let cred = alerts[0]["credential_id"].as_str().unwrap().to_string();
    // Bulk reactivation leaves a credential with an open alert alone.
    let (_, preview) = call(
        &server,
        Method::POST,
        "/api/v1/admin/credentials/bulk",
        &admin,
        Some(json!({"action": "reactivate", "filter": {"username": "cy"}, "reason": "x"})),
    )
    .await;
    assert_eq!(preview["preview"]["count"], 0, "{preview}");
    // Plain reactivation is refused while the alert is open.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/credentials/{cred}/reactivate"),
        &admin,
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("fraud_alert_open"))
    );
    // Resolution needs a note; a false alarm reactivates the credential, once.
    let path = format!("/api/v1/admin/fraud-alerts/{id}/resolve");
    let (status, _) = call(
        &server,
        Method::POST,
        &path,
        &admin,
        Some(json!({"resolution": "reactivate", "note": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(&server, Method::POST, &path, &admin, Some(json!({"resolution": "reactivate", "note": "restored from backup, confirmed with user"}))).await;
    assert_eq!(
        (status, body["resolution"].as_str()),
        (StatusCode::OK, Some("reactivate")),
        "{body}"
    );
    let (status, body) = call(
        &server,
        Method::POST,
        &path,
        &admin,
        Some(json!({"resolution": "revoke", "note": "again"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("fraud_alert_resolved"))
    );
    assert_eq!(events(&server, "fraud.alert_opened").await.len(), 1);
    assert_eq!(events(&server, "fraud.alert_resolved").await.len(), 1);
    server.sign_in(&mut auth, Some("cy")).await;
    server.shutdown().await;
}

const REGULATED: &str = "version = 1\npopulations = [\"regulated\"]\n[authenticators.regulated]\nsynced = \"deny\"\n[governance]\nexception_max_days = 30\nexception_notice_days = 7\n";

async fn exceptions_are_granted_by_another_admin_cited_and_expire(backend: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(&tenant, REGULATED, &Caller::operator("setup"))
        .await
        .unwrap();
    let ada = member(&server, "ada", "admin").await;
    let helper = member(&server, "hel", "helpdesk").await;
    // Rita is regulated: her synced phone passkey is refused.
    let token = server.invite("rita").await;
    let rita = server
        .store
        .user_by_username(&tenant.id, "rita")
        .await
        .unwrap()
        .unwrap();
    server
        .app
        .set_populations(
            &tenant,
            &rita,
            &["regulated".into()],
            &Caller::operator("t"),
        )
        .await
        .unwrap();
    let mut phone = SoftAuthenticator::new(&server.origin(), true, true);
    let register = |token: String| {
        let server = &server;
        async move {
            let options = server
                .post(
                    "/api/v1/registration/options",
                    &json!({"enrolment_token": token}),
                )
                .await;
            (
                options.body["ceremony"].clone(),
                options.body["publicKey"].clone(),
            )
        }
    };
    let (ceremony, pk) = register(token.clone()).await;
    let created = phone.register(&pk).await.unwrap();
    let refused = server
        .post(
            "/api/v1/registration/verify",
            &json!({"ceremony": ceremony, "credential": created}),
        )
        .await;
    assert_eq!(refused.code(), "policy_denied");

    // The help desk asks for an exception; bad requests are refused up front.
    let ask = |rule: &str, days: i64| json!({"subject": {"type": "user", "id": rita.id}, "rule": rule, "reason": "phone-only pilot", "duration_days": days});
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/exceptions",
        &helper,
        Some(ask("authenticators.regulated.synced", 31)),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_duration"))
    );
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/exceptions",
        &helper,
        Some(ask("enrolment.max_passkeys", 5)),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_rule"))
    );
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/exceptions",
        &helper,
        Some(ask("authenticators.regulated.synced", 10)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let approval = body["approval"]["id"].as_str().unwrap().to_string();
    // The help desk cannot grant it; the admin does.
    let (status, _) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/approvals/{approval}/approve"),
        &helper,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/approvals/{approval}/approve"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let exception = body["result"]["exception"].as_str().unwrap().to_string();

    // Now the same kind of passkey registers, and the decision cites the exception.
    let token = server.invite("rita").await;
    let (ceremony, pk) = register(token).await;
    let mut phone = SoftAuthenticator::new(&server.origin(), true, true);
    let created = phone.register(&pk).await.unwrap();
    let ok = server
        .post(
            "/api/v1/registration/verify",
            &json!({"ceremony": ceremony, "credential": created}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    let registered = events(&server, "credential.registered").await;
    assert_eq!(registered.last().unwrap()["exceptions"], json!([exception]));
    let session = server.sign_in(&mut phone, Some("rita")).await;
    assert_eq!(session["restricted"], false);
    assert_eq!(
        events(&server, "authentication.succeeded")
            .await
            .last()
            .unwrap()["exceptions"],
        json!([exception])
    );

    // Four days before the end it is announced once; at the end it expires and stops applying.
    clock.advance_secs(3 * 86_400 + 60);
    assert_eq!(
        server.app.exception_housekeeping(&tenant).await.unwrap(),
        (1, 0)
    );
    assert_eq!(
        server.app.exception_housekeeping(&tenant).await.unwrap(),
        (0, 0)
    );
    assert_eq!(events(&server, "exception.expiring").await.len(), 1);
    // (The admins' sessions timed out days ago; the service answers the same as the API.)
    let report = server.app.report(&tenant, "exceptions", 7).await.unwrap();
    assert_eq!(
        (report["active"].as_u64(), report["expiring"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    clock.advance_secs(7 * 86_400);
    let session = server.sign_in(&mut phone, Some("rita")).await;
    assert_eq!(
        session["restricted"], true,
        "the exception ended: {session}"
    );
    assert_eq!(
        server.app.exception_housekeeping(&tenant).await.unwrap(),
        (0, 1)
    );
    assert_eq!(events(&server, "exception.expired").await.len(), 1);
    let e = server
        .app
        .revoke_exception(
            &tenant,
            &keyplane_core::ExceptionId::parse(&exception).unwrap(),
            "done",
            &Caller::operator("t"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "exception_not_active");
    server.shutdown().await;
}

async fn bulk_actions_preview_execute_and_resume(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = member(&server, "ada", "admin").await;
    let tenant = server.default_tenant().await;
    let model = [0x42u8; 16];
    let mut keys = Vec::new();
    for i in 0..5 {
        let name = format!("u{i}");
        let mut a = SoftAuthenticator::with_aaguid(&server.origin(), true, true, model);
        let token = server.invite(&name).await;
        server.enrol(&mut a, &token).await;
        keys.push(a);
    }
    let aaguid = "42424242-4242-4242-4242-424242424242";
    let filter = json!({"aaguids": [aaguid]});
    // Dry run is the default: count and sample, nothing changed.
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/credentials/bulk",
        &admin,
        Some(json!({"action": "suspend", "filter": filter, "reason": "recall"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["dry_run"].as_bool(), body["preview"]["count"].as_u64()),
        (Some(true), Some(5))
    );
    assert_eq!(body["preview"]["sample"].as_array().unwrap().len(), 5);
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/credentials/bulk",
        &admin,
        Some(json!({"action": "explode", "filter": filter})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_action"))
    );
    let stored = server
        .store
        .list_credentials(&tenant.id, None)
        .await
        .unwrap();
    assert!(stored.iter().all(|c| c.status == CredentialStatus::Active));

    // A job interrupted after two credentials resumes with the rest, one event per credential.
    let mut ids: Vec<_> = stored
        .iter()
        .filter(|c| c.aaguid == aaguid)
        .map(|c| c.id.clone())
        .collect();
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let caller = Caller::operator("test");
    let job = match server
        .app
        .bulk_start(
            &tenant,
            "suspend",
            &serde_json::from_value(filter.clone()).unwrap(),
            "recall",
            &caller,
        )
        .await
        .unwrap()
    {
        keyplane_server::service::BulkStart::Job(j) => j,
        other => panic!("{other:?}"),
    };
    assert_eq!(job.total, 5);
    let first: Vec<_> = ids[..2]
        .iter()
        .map(|id| (id.clone(), CredentialStatus::Suspended))
        .collect();
    let first_events: Vec<_> = ids[..2]
        .iter()
        .map(|id| caller.event("credential.suspended", "credential", id.as_str()))
        .collect();
    server
        .store
        .bulk_step(
            &tenant.id,
            &job.id,
            &first,
            &first_events,
            &[],
            &[CredentialStatus::Active],
            "recall",
            &ids[1],
            false,
            server.app.clock.now(),
        )
        .await
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let done = server
        .app
        .bulk_run(
            &tenant,
            &job.id,
            2,
            &|d, t| seen.lock().unwrap().push((d, t)),
            &caller,
        )
        .await
        .unwrap();
    assert_eq!((done.status.as_str(), done.done), ("completed", 5));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(4, 5), (5, 5)],
        "resumed after the first two"
    );
    let after = server
        .store
        .list_credentials(&tenant.id, None)
        .await
        .unwrap();
    assert_eq!(
        after
            .iter()
            .filter(|c| c.status == CredentialStatus::Suspended)
            .count(),
        5
    );
    assert_eq!(events(&server, "credential.suspended").await.len(), 5);
    assert_eq!(events(&server, "bulk.completed").await.len(), 1);
    assert_eq!(
        refused(&server, &mut keys[0]).await,
        (StatusCode::FORBIDDEN, "credential_inactive".to_string())
    );

    // Executing through the API runs in the background; the job reports its progress.
    let (status, body) = call(&server, Method::POST, "/api/v1/admin/credentials/bulk", &admin, Some(json!({"action": "reactivate", "filter": filter, "reason": "recall cancelled", "dry_run": false}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = body["job"]["id"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, j) = call(
            &server,
            Method::GET,
            &format!("/api/v1/admin/bulk-jobs/{job}"),
            &admin,
            None,
        )
        .await;
        if j["status"] == "completed" {
            last = j;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last["done"], 5, "{last}");
    server.sign_in(&mut keys[0], Some("u0")).await;
    server.shutdown().await;
}

async fn reports_count_coverage_drift_and_controls(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = member(&server, "ada", "admin").await;
    let auditor = member(&server, "aud", "auditor").await;
    let tenant = server.default_tenant().await;
    server.app.apply_policy(&tenant, "version = 1\npopulations = [\"regulated\"]\n[authenticators.regulated]\nsynced = \"deny\"\n", &Caller::operator("t")).await.unwrap();
    // Two regulated users with synced passkeys (non-compliant); one has two.
    for (name, keys) in [("r1", 1), ("r2", 2)] {
        let token = server.invite(name).await;
        let mut a = SoftAuthenticator::new(&server.origin(), true, true);
        server.enrol(&mut a, &token).await;
        if keys == 2 {
            let token = server.invite(name).await;
            let mut b = SoftAuthenticator::new(&server.origin(), true, true);
            server.enrol(&mut b, &token).await;
        }
        let u = server
            .store
            .user_by_username(&tenant.id, name)
            .await
            .unwrap()
            .unwrap();
        server
            .app
            .set_populations(&tenant, &u, &["regulated".into()], &Caller::operator("t"))
            .await
            .unwrap();
    }
    let (status, cov) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/coverage",
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cov}");
    let reg = &cov["populations"]["regulated"];
    assert_eq!(
        (
            reg["users"].as_u64(),
            reg["users_without_compliant"].as_u64(),
            reg["credentials"].as_u64(),
            reg["synced"].as_u64()
        ),
        (Some(2), Some(2), Some(3), Some(3)),
        "{cov}"
    );
    let all = &cov["populations"]["(all)"];
    assert_eq!(
        all["users"].as_u64(),
        Some(5),
        "the bootstrap admin, ada, aud, r1, r2: {cov}"
    );
    assert_eq!(
        all["users_without_compliant"].as_u64(),
        Some(3),
        "the bootstrap admin has no passkey: {cov}"
    );
    assert!(
        cov["sign_ins_by_level"]["aal2"].as_u64().unwrap() >= 2,
        "{cov}"
    );
    let (_, drift) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/drift",
        &auditor,
        None,
    )
    .await;
    assert_eq!(drift["non_compliant"], 3);
    assert_eq!(
        drift["by_rule"]["authenticators.regulated.synced"], 3,
        "{drift}"
    );
    let (status, controls) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/controls",
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let row = |id: &str| {
        controls
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["control"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        row("PR.AA-01")["status"],
        "fail",
        "two users have no compliant passkey"
    );
    assert_eq!(
        row("PR.AA-03")["status"],
        "fail",
        "three credentials drifted"
    );
    assert_eq!(row("AAL2")["status"], "pass");
    assert_eq!(row("PR.AA-06")["status"], "not_applicable");
    // CSV for spreadsheets; unknown reports and formats are clear errors.
    let r = server
        .http
        .get(server.url("/api/v1/admin/reports/drift?format=csv"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("credential,username,model,rules,codes\r\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4);
    let (status, body) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/nonsense",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("report_not_found"))
    );
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/coverage?format=xml",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

both_backends!(
    credential_and_user_lifecycle_end_sessions_and_say_why,
    a_cloned_key_opens_a_fraud_alert_an_admin_resolves,
    exceptions_are_granted_by_another_admin_cited_and_expire,
    bulk_actions_preview_execute_and_resume,
    reports_count_coverage_drift_and_controls,
);
