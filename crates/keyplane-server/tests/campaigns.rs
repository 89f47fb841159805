//! Lost passkeys and re-enrolment campaigns end to end over HTTP, on both backends: marking a
//! passkey lost (revoked, sessions ended, the event the notifications read, re-enrolment
//! recommended or required by what is left), the second-passkey recommendation, campaigns
//! started by an administrator or by an MDS import's compromise status, their progress, reports,
//! closing, and bad input that changes nothing.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{both_backends, call, row_counts};
use keyplane_core::audit::Caller;
use keyplane_store::{AuditFilter, Store};
use keyplane_testkit::pki::{Attester, MdsSigner};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const OLD: [u8; 16] = [0xaa; 16];
const OLD_ID: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const NEW: [u8; 16] = [0xbb; 16];
const NEW_ID: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";

/// Every event of `action` in the default tenant: (actor id, target id, details).
async fn events(server: &TestServer, action: &str) -> Vec<(String, String, Value)> {
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
        .map(|e| {
            (
                e.actor_id.clone(),
                e.target_id.clone(),
                serde_json::from_str(&e.details).unwrap(),
            )
        })
        .collect()
}

async fn event_count(server: &TestServer) -> usize {
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
        .len()
}

/// A user enrolled with a passkey of model `aaguid`, signed in: (authenticator, token, user id).
async fn user_with(
    server: &TestServer,
    username: &str,
    aaguid: [u8; 16],
) -> (SoftAuthenticator, String, String) {
    let mut auth = SoftAuthenticator::with_aaguid(&server.origin(), true, true, aaguid);
    let invitation = server.invite(username).await;
    let enrolled = server.enrol(&mut auth, &invitation).await;
    let session = server.sign_in(&mut auth, Some(username)).await;
    let user = session["user"]["id"].as_str().unwrap().to_string();
    assert!(enrolled["id"].is_string());
    (auth, session["token"].as_str().unwrap().to_string(), user)
}

/// Registers a new passkey of model `aaguid` with a (possibly restricted) session.
async fn add_passkey(
    server: &TestServer,
    token: &str,
    aaguid: [u8; 16],
) -> (SoftAuthenticator, reqwest::StatusCode, Value) {
    let options = server
        .request(
            Method::POST,
            "/api/v1/registration/options",
            None,
            Some(token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let mut auth = SoftAuthenticator::with_aaguid(&server.origin(), true, true, aaguid);
    let created = auth.register(&options.body["publicKey"]).await.unwrap();
    let added = server
        .request(
            Method::POST,
            "/api/v1/registration/verify",
            None,
            Some(token),
            Some(&json!({"ceremony": options.body["ceremony"], "credential": created})),
        )
        .await;
    (auth, added.status, added.body)
}

async fn me(server: &TestServer, token: &str) -> (StatusCode, Value) {
    call(server, Method::GET, "/api/v1/me", token, None).await
}

async fn a_lost_passkey_is_revoked_its_sessions_end_and_the_user_is_told(backend: Backend) {
    let server = TestServer::start(backend).await;
    let desk = common::member(&server, "dana", Some("helpdesk")).await;
    let (mut first, token, uma) = user_with(&server, "uma", OLD).await;

    // One passkey: the account recommends a second as the way back from a lost device.
    let (status, body) = me(&server, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["recommendation"]["code"], "add_second_passkey",
        "{body}"
    );
    assert_eq!(body["recommendation"]["active_passkeys"], 1);
    assert_eq!(body["recommendation"]["policy"], Value::Null);
    let (_, listed) = call(&server, Method::GET, "/api/v1/me/credentials", &token, None).await;
    assert_eq!(listed["recommendation"]["code"], "add_second_passkey");
    let (mut second, status, _) = add_passkey(&server, &token, NEW).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = me(&server, &token).await;
    assert!(body.get("recommendation").is_none(), "{body}");

    // The help desk marks the first one lost: revoked, its session ended, the user still in.
    let tenant = server.default_tenant().await;
    let lost_id = server
        .store_credentials(&tenant)
        .await
        .into_iter()
        .find(|c| c.user_id.as_str() == uma && c.aaguid == OLD_ID)
        .unwrap()
        .id;
    let path = format!("/api/v1/admin/credentials/{lost_id}/lost");
    let (status, body) = call(
        &server,
        Method::POST,
        &path,
        &desk,
        Some(json!({"reason": "left on the train"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "revoked");
    assert_eq!(body["user"], uma.as_str());
    assert_eq!(body["re_enrolment"], "recommended");
    assert_eq!(body["other_active_passkeys"], 1);
    assert_eq!(me(&server, &token).await.0, StatusCode::UNAUTHORIZED);
    let lost = events(&server, "credential.lost").await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].1, lost_id.as_str());
    assert_eq!(
        lost[0].2["user_id"],
        uma.as_str(),
        "the outbox reads user_id"
    );
    assert_eq!(lost[0].2["reason"], "left on the train");
    assert_eq!(lost[0].2["re_enrolment"], "recommended");
    assert!(events(&server, "user.re_enrolment_required")
        .await
        .is_empty());
    assert_eq!(
        server.try_sign_in(&mut first, None).await.code(),
        "credential_inactive",
        "the lost passkey no longer signs in"
    );
    let session = server.sign_in(&mut second, Some("uma")).await;
    assert_eq!(
        session["restricted"], false,
        "another passkey is not restricted"
    );
    let token = session["token"].as_str().unwrap();
    assert_eq!(
        me(&server, token).await.1["recommendation"]["active_passkeys"],
        1
    );

    // Again: 409, nothing recorded or changed.
    let before = (row_counts(&server).await, event_count(&server).await);
    let (status, body) = call(
        &server,
        Method::POST,
        &path,
        &desk,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_transition")),
        "{body}"
    );
    assert_eq!(
        (row_counts(&server).await, event_count(&server).await),
        before
    );

    // The last passkey: re-enrolment required, announced, and shown to administrators.
    let (_, bob_token, bob) = user_with(&server, "bob", OLD).await;
    let bob_key = server
        .store_credentials(&tenant)
        .await
        .into_iter()
        .find(|c| c.user_id.as_str() == bob)
        .unwrap()
        .id;
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/v1/admin/credentials/{bob_key}/lost"),
        &desk,
        Some(json!({"reason": "stolen"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["re_enrolment"].as_str(),
            body["other_active_passkeys"].as_i64()
        ),
        (Some("required"), Some(0))
    );
    assert_eq!(me(&server, &bob_token).await.0, StatusCode::UNAUTHORIZED);
    let required = events(&server, "user.re_enrolment_required").await;
    assert_eq!(required.len(), 1);
    assert_eq!(required[0].1, bob);
    assert_eq!(required[0].2["credential_lost"], bob_key.as_str());
    let (_, shown) = call(
        &server,
        Method::GET,
        &format!("/api/v1/admin/users/{bob}"),
        &desk,
        None,
    )
    .await;
    assert!(shown["re_enrolment_required"]
        .as_str()
        .unwrap()
        .contains("marked lost: stolen"));
    server.shutdown().await;
}

async fn marking_lost_refuses_bad_input_and_other_tenants_credentials(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = common::member(&server, "ada", Some("admin")).await;
    let auditor = common::member(&server, "otto", Some("auditor")).await;
    let (_, _, uma) = user_with(&server, "uma", OLD).await;
    let tenant = server.default_tenant().await;
    let mine = server
        .store_credentials(&tenant)
        .await
        .into_iter()
        .find(|c| c.user_id.as_str() == uma)
        .unwrap();
    // A passkey of another tenant, stored there: its id is unknown here.
    let other = server.create_tenant("other", "other.test").await;
    let stranger = server
        .app
        .invite(&other, "stranger", None, None, &Caller::operator("test"))
        .await
        .unwrap()
        .user;
    let foreign = keyplane_core::Credential {
        id: keyplane_core::CredentialRecordId::generate(),
        tenant_id: other.id.clone(),
        user_id: stranger.id.clone(),
        credential_id: b"foreign-credential".to_vec(),
        ..mine.clone()
    };
    server
        .store
        .register_credential(
            &foreign,
            None,
            keyplane_store::AuditBatch::new(keyplane_core::Timestamp(0), &[]),
        )
        .await
        .unwrap();
    let before = (
        row_counts(&server).await,
        event_count(&server).await,
        server.store_credentials(&tenant).await,
        server.store_credentials(&other).await,
    );
    let lost = |id: &str| format!("/api/v1/admin/credentials/{id}/lost");
    let cases: Vec<(String, &str, Value, StatusCode, &str)> = vec![
        (
            lost(foreign.id.as_str()),
            &admin,
            json!({"reason": "cross-tenant"}),
            StatusCode::NOT_FOUND,
            "credential_not_found",
        ),
        (
            lost("not-a-uuid"),
            &admin,
            json!({"reason": "x"}),
            StatusCode::NOT_FOUND,
            "credential_not_found",
        ),
        (
            lost(mine.id.as_str()),
            &admin,
            json!({"reason": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            lost(mine.id.as_str()),
            &admin,
            json!({"reason": "x", "notify": false}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            lost(mine.id.as_str()),
            &admin,
            json!({}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            lost(mine.id.as_str()),
            &auditor,
            json!({"reason": "x"}),
            StatusCode::FORBIDDEN,
            "forbidden_role",
        ),
    ];
    for (path, token, body, status, code) in cases {
        let (got, reply) = call(&server, Method::POST, &path, token, Some(body.clone())).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str().unwrap_or_default()),
            (status, code),
            "{path} {body}: {reply}"
        );
    }
    assert_eq!(
        (
            row_counts(&server).await,
            event_count(&server).await,
            server.store_credentials(&tenant).await,
            server.store_credentials(&other).await,
        ),
        before
    );
    server.shutdown().await;
}

async fn a_campaign_restricts_the_models_users_until_they_enrol_another_model(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = common::member(&server, "ada", Some("admin")).await;
    let desk = common::member(&server, "dana", Some("helpdesk")).await;
    let (mut ann_key, ann_token, ann) = user_with(&server, "ann", OLD).await;
    let (_, _, ben) = user_with(&server, "ben", OLD).await;
    let (mut cy_key, _, _) = user_with(&server, "cy", NEW).await;

    // The help desk follows campaigns but does not start them.
    let start = json!({"aaguid": OLD_ID.to_uppercase(), "reason": "vendor recall"});
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/campaigns",
        &desk,
        Some(start.clone()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden_role"))
    );
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/campaigns",
        &admin,
        Some(start.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["aaguid"], OLD_ID);
    assert_eq!(body["action"], "re_enrol");
    assert_eq!(body["source"], "admin");
    assert_eq!(body["status"], "open");
    assert_eq!(
        (
            body["affected"].as_i64(),
            body["marked"].as_i64(),
            body["re_enrolled"].as_i64(),
            body["remaining"].as_i64()
        ),
        (Some(2), Some(2), Some(0), Some(2))
    );
    let id = body["id"].as_str().unwrap().to_string();
    let started = events(&server, "campaign.started").await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].2["affected_users"], 2);
    let marked = events(&server, "user.re_enrolment_required").await;
    let mut who: Vec<&str> = marked.iter().map(|e| e.1.as_str()).collect();
    who.sort();
    let mut expected = vec![ann.as_str(), ben.as_str()];
    expected.sort();
    assert_eq!(who, expected);
    assert!(marked.iter().all(|e| e.2["campaign"] == id.as_str()));
    // Their sessions ended; the next sign-in may only enrol.
    assert_eq!(me(&server, &ann_token).await.0, StatusCode::UNAUTHORIZED);
    let session = server.sign_in(&mut ann_key, Some("ann")).await;
    assert_eq!(session["restricted"], true, "{session}");
    assert!(session["re_enrolment_reason"]
        .as_str()
        .unwrap()
        .contains(&id));
    let restricted = session["token"].as_str().unwrap().to_string();
    // Another passkey of the replaced model does not end it.
    let (mut same, status, body) = add_passkey(&server, &restricted, OLD).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        server.sign_in(&mut same, Some("ann")).await["restricted"],
        true
    );
    // A passkey of another model does, and counts as re-enrolled.
    let (mut fresh, status, body) = add_passkey(&server, &restricted, NEW).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        server.sign_in(&mut fresh, Some("ann")).await["restricted"],
        false
    );
    assert_eq!(events(&server, "user.re_enrolled").await.len(), 1);
    // Users of other models are not touched.
    assert_eq!(
        server.sign_in(&mut cy_key, Some("cy")).await["restricted"],
        false
    );

    // Progress: the campaign, the list and the report agree.
    let (status, one) = call(
        &server,
        Method::GET,
        &format!("/api/v1/admin/campaigns/{id}"),
        &desk,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        (one["re_enrolled"].as_i64(), one["remaining"].as_i64()),
        (Some(1), Some(1))
    );
    let (_, list) = call(&server, Method::GET, "/api/v1/admin/campaigns", &desk, None).await;
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 1);
    assert_eq!(list["campaigns"][0]["id"], id.as_str());
    let (status, report) = call(
        &server,
        Method::GET,
        "/api/v1/admin/reports/campaigns",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["open"].as_i64(),
            report["open_affected_users"].as_i64(),
            report["open_re_enrolled"].as_i64(),
            report["open_remaining"].as_i64()
        ),
        (Some(1), Some(2), Some(1), Some(1))
    );
    let csv = server
        .request(
            Method::GET,
            "/api/v1/admin/reports/campaigns?format=csv",
            None,
            Some(&admin),
            None,
        )
        .await;
    let text = csv.body.as_str().unwrap().to_string();
    assert!(
        text.starts_with(
            "id,aaguid,model,action,source,status,affected,marked,re_enrolled,remaining,"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("{id},{OLD_ID},,re_enrol,admin,open,2,2,1,1,")),
        "{text}"
    );

    // A second open campaign for the model: 409, nothing recorded.
    let before = event_count(&server).await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/campaigns",
        &admin,
        Some(json!({"aaguid": OLD_ID, "reason": "twice", "action": "revoke"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_already_open")),
        "{body}"
    );
    assert_eq!(event_count(&server).await, before);

    // Closing is audited, once; the model may then have a new campaign.
    let close = format!("/api/v1/admin/campaigns/{id}/close");
    let (status, closed) = call(
        &server,
        Method::POST,
        &close,
        &admin,
        Some(json!({"reason": "recall done"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["close_note"], "recall done");
    let closes = events(&server, "campaign.closed").await;
    assert_eq!(closes.len(), 1);
    assert_eq!(
        (
            closes[0].2["re_enrolled"].as_i64(),
            closes[0].2["remaining"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let before = event_count(&server).await;
    let (status, body) = call(
        &server,
        Method::POST,
        &close,
        &admin,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_closed"))
    );
    assert_eq!(event_count(&server).await, before);

    // The revoke action: the model's passkeys go at once.
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/campaigns",
        &admin,
        Some(json!({"aaguid": NEW_ID, "reason": "key extraction", "action": "revoke"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["action"].as_str(), body["affected"].as_i64()),
        (Some("revoke"), Some(2))
    );
    assert_eq!(
        server.try_sign_in(&mut cy_key, None).await.code(),
        "credential_inactive"
    );
    let revoked = events(&server, "credential.revoked").await;
    assert_eq!(revoked.len(), 2);
    assert!(revoked.iter().all(|e| e.2["campaign"] == body["id"]));
    server.shutdown().await;
}

async fn campaign_requests_with_bad_input_get_coded_4xx_and_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = common::member(&server, "ada", Some("admin")).await;
    user_with(&server, "ann", OLD).await;
    let (_, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/campaigns",
        &admin,
        Some(json!({"aaguid": OLD_ID, "reason": "recall"})),
    )
    .await;
    let id = body["id"].as_str().unwrap().to_string();
    let tenant = server.default_tenant().await;
    let before = (
        row_counts(&server).await,
        event_count(&server).await,
        server.store.list_campaigns(&tenant.id).await.unwrap(),
    );
    let unknown = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/api/v1/admin/campaigns".into(),
            Some(json!({"aaguid": "yubikey", "reason": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_aaguid",
        ),
        (
            Method::POST,
            "/api/v1/admin/campaigns".into(),
            Some(json!({"aaguid": NEW_ID, "reason": "x", "action": "suspend"})),
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        (
            Method::POST,
            "/api/v1/admin/campaigns".into(),
            Some(json!({"aaguid": NEW_ID, "reason": " "})),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            Method::POST,
            "/api/v1/admin/campaigns".into(),
            Some(json!({"aaguid": NEW_ID, "reason": "x", "users": []})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/api/v1/admin/campaigns".into(),
            Some(json!({"reason": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::GET,
            format!("/api/v1/admin/campaigns/{unknown}"),
            None,
            StatusCode::NOT_FOUND,
            "campaign_not_found",
        ),
        (
            Method::GET,
            "/api/v1/admin/campaigns/not-a-uuid".into(),
            None,
            StatusCode::NOT_FOUND,
            "campaign_not_found",
        ),
        (
            Method::POST,
            format!("/api/v1/admin/campaigns/{unknown}/close"),
            Some(json!({"reason": "x"})),
            StatusCode::NOT_FOUND,
            "campaign_not_found",
        ),
        (
            Method::POST,
            format!("/api/v1/admin/campaigns/{id}/close"),
            Some(json!({"reason": ""})),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            Method::POST,
            format!("/api/v1/admin/campaigns/{id}/close"),
            Some(json!({"note": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::GET,
            "/api/v1/admin/reports/campaigns?format=xml".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_format",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, reply) = call(&server, method.clone(), &path, &admin, body.clone()).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str().unwrap_or_default()),
            (status, code),
            "{method} {path} {body:?}: {reply}"
        );
    }
    // Another tenant's administrator does not see the campaign.
    let other = server.create_tenant("other", "other.test").await;
    assert!(server
        .store
        .campaign(&other.id, &keyplane_core::CampaignId::parse(&id).unwrap())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        (
            row_counts(&server).await,
            event_count(&server).await,
            server.store.list_campaigns(&tenant.id).await.unwrap()
        ),
        before
    );
    server.shutdown().await;
}

/// An interrupted start is finished by `resume` (the CLI's `keyplane campaign resume`): users
/// already marked are skipped without an event, users who got a passkey of the model since are
/// marked, and a closed campaign is not resumed.
async fn resuming_a_campaign_marks_each_user_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with(&server, "ann", OLD).await;
    let tenant = server.default_tenant().await;
    let op = Caller::operator("test");
    let c = server
        .app
        .start_campaign(&tenant, OLD_ID, "re_enrol", "recall", 1, &|_, _| {}, &op)
        .await
        .unwrap();
    let id = c.campaign.id.clone();
    let resumed = server
        .app
        .resume_campaign(&tenant, &id, 1, &|_, _| {}, &op)
        .await
        .unwrap();
    assert_eq!(resumed.campaign.marked, 1);
    assert_eq!(events(&server, "user.re_enrolment_required").await.len(), 1);
    user_with(&server, "ben", OLD).await;
    user_with(&server, "cy", NEW).await;
    let seen = std::sync::Mutex::new(Vec::new());
    let resumed = server
        .app
        .resume_campaign(
            &tenant,
            &id,
            1,
            &|d, t| seen.lock().unwrap().push((d, t)),
            &op,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            resumed.campaign.affected,
            resumed.campaign.marked,
            resumed.remaining
        ),
        (1, 2, 2)
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(1, 2), (2, 2)],
        "one batch per user"
    );
    assert_eq!(events(&server, "user.re_enrolment_required").await.len(), 2);
    server
        .app
        .close_campaign(&tenant, &id, "done", &op)
        .await
        .unwrap();
    let before = event_count(&server).await;
    let err = server
        .app
        .resume_campaign(&tenant, &id, 1, &|_, _| {}, &op)
        .await
        .unwrap_err();
    assert_eq!(err.code, "campaign_closed");
    assert_eq!(event_count(&server).await, before);
    server.shutdown().await;
}

fn mds_entry(aaguid: &str, description: &str, statuses: &[&str], root: &[u8]) -> Value {
    json!({
        "aaguid": aaguid,
        "metadataStatement": {
            "aaguid": aaguid,
            "description": description,
            "authenticatorVersion": 1,
            "protocolFamily": "fido2",
            "schema": 3,
            "attestationTypes": ["basic_full"],
            "keyProtection": ["hardware"],
            "attestationRootCertificates": [STANDARD.encode(root)],
        },
        "statusReports": statuses.iter().map(|s| json!({"status": s, "effectiveDate": "2026-01-01"})).collect::<Vec<_>>(),
        "timeOfLastStatusChange": "2026-01-01"
    })
}

async fn an_mds_compromise_status_starts_a_campaign_where_the_model_is_used(backend: Backend) {
    let signer = MdsSigner::new();
    let roots = tempfile::tempdir().unwrap();
    let root_file = roots.path().join("mds-root.pem");
    std::fs::write(&root_file, signer.root.pem()).unwrap();
    let server = TestServer::builder(backend)
        .settings(|s| s.mds.root_certificates = root_file.clone())
        .start()
        .await;
    let (old, new) = (Arc::new(Attester::new(OLD)), Arc::new(Attester::new(NEW)));
    let blob = |number: i64, old_statuses: &[&str], new_statuses: &[&str]| {
        signer.sign(&json!({
            "legalHeader": "test", "no": number, "nextUpdate": "2099-01-01",
            "entries": [
                mds_entry(OLD_ID, "Keyplane Test Key Old", old_statuses, &old.root_der()),
                mds_entry(NEW_ID, "Keyplane Test Key New", new_statuses, &new.root_der()),
            ],
        }))
    };
    let import = |text: String| {
        let app = server.app.clone();
        async move {
            app.import_mds(&text, false, &Caller::operator("test"))
                .await
                .unwrap()
        }
    };
    assert!(
        import(blob(1, &["FIDO_CERTIFIED_L1"], &["FIDO_CERTIFIED_L1"]))
            .await
            .campaigns
            .is_empty()
    );
    let mut bob = SoftAuthenticator::security_key(&server.origin(), OLD, old.clone());
    let invitation = server.invite("bob").await;
    server.enrol(&mut bob, &invitation).await;
    let (_, bob_token, bob_id) = {
        let s = server.sign_in(&mut bob, Some("bob")).await;
        (
            0,
            s["token"].as_str().unwrap().to_string(),
            s["user"]["id"].as_str().unwrap().to_string(),
        )
    };
    // A tenant without the model gets no campaign.
    let other = server.create_tenant("other", "other.test").await;

    // The next BLOB reports the old model's keys can be extracted (and the unused new model's
    // attestation key leaked: nobody uses it, so no campaign for it).
    let done = import(blob(
        2,
        &["FIDO_CERTIFIED_L1", "USER_KEY_PHYSICAL_COMPROMISE"],
        &["ATTESTATION_KEY_COMPROMISE"],
    ))
    .await;
    assert_eq!(done.campaigns.len(), 1, "{:?}", done.campaigns);
    assert_eq!(
        (
            done.campaigns[0].tenant.as_str(),
            done.campaigns[0].aaguid.as_str(),
            done.campaigns[0].affected
        ),
        ("default", OLD_ID, 1)
    );
    assert!(server
        .store
        .list_campaigns(&other.id)
        .await
        .unwrap()
        .is_empty());
    let tenant = server.default_tenant().await;
    let campaigns = server.app.list_campaigns(&tenant).await.unwrap();
    assert_eq!(campaigns.len(), 1);
    let c = &campaigns[0].campaign;
    assert_eq!(
        (c.source.as_str(), c.started_by.as_str(), c.marked),
        ("mds", "system:mds", 1)
    );
    assert!(
        c.reason.contains("BLOB 2")
            && c.reason.contains("USER_KEY_PHYSICAL_COMPROMISE")
            && c.reason.contains("Keyplane Test Key Old"),
        "{}",
        c.reason
    );
    assert_eq!(campaigns[0].model.as_deref(), Some("Keyplane Test Key Old"));
    let started = events(&server, "campaign.started").await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].0, "mds");
    assert_eq!(
        me(&server, &bob_token).await.0,
        StatusCode::UNAUTHORIZED,
        "bob's sessions ended"
    );
    let marked = events(&server, "user.re_enrolment_required").await;
    assert_eq!((marked.len(), marked[0].1.as_str()), (1, bob_id.as_str()));

    // The same statuses in the next BLOB are not news: no second campaign, even once closed.
    server
        .app
        .close_campaign(&tenant, &c.id, "handled", &Caller::operator("test"))
        .await
        .unwrap();
    assert!(import(blob(
        3,
        &["FIDO_CERTIFIED_L1", "USER_KEY_PHYSICAL_COMPROMISE"],
        &["ATTESTATION_KEY_COMPROMISE"]
    ))
    .await
    .campaigns
    .is_empty());
    // A new one is: REVOKED.
    let done = import(blob(
        4,
        &[
            "FIDO_CERTIFIED_L1",
            "USER_KEY_PHYSICAL_COMPROMISE",
            "REVOKED",
        ],
        &["ATTESTATION_KEY_COMPROMISE"],
    ))
    .await;
    assert_eq!(done.campaigns.len(), 1);
    assert_eq!(server.app.list_campaigns(&tenant).await.unwrap().len(), 2);
    server.shutdown().await;
}

both_backends!(
    a_lost_passkey_is_revoked_its_sessions_end_and_the_user_is_told,
    marking_lost_refuses_bad_input_and_other_tenants_credentials,
    a_campaign_restricts_the_models_users_until_they_enrol_another_model,
    campaign_requests_with_bad_input_get_coded_4xx_and_change_nothing,
    an_mds_compromise_status_starts_a_campaign_where_the_model_is_used,
    resuming_a_campaign_marks_each_user_once,
);
