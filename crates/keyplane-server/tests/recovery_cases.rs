//! Help-desk recovery cases over HTTP, on both backends: the public request answers the same
//! whether the account exists; every transition, each illegal one, dual control, cooling-off and
//! the holder's cancel, expiry, fraud holds and their review, two agents acting at once, and the
//! single-use link whose restricted session completes the case.

mod common;

use common::{both_backends, call, member};
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, CredentialStatus, RecoveryCaseId, SystemClock};
use keyplane_store::AuditFilter;
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

const CASES: &str = "/api/v1/admin/recovery-cases";

async fn start(backend: Backend, policy: &str) -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    server.apply_policy(policy).await;
    (server, clock)
}

async fn act(
    server: &TestServer,
    token: &str,
    case: &str,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    call(
        server,
        Method::POST,
        &format!("{CASES}/{case}/{action}"),
        token,
        Some(body),
    )
    .await
}

async fn open_case_for(server: &TestServer, agent: &str, username: &str) -> String {
    let tenant = server.default_tenant().await;
    let user = server
        .app
        .store
        .user_by_username(&tenant.id, username)
        .await
        .unwrap()
        .unwrap();
    let (status, body) = call(
        server,
        Method::POST,
        CASES,
        agent,
        Some(json!({ "user_id": user.id })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    body["id"].as_str().unwrap().to_string()
}

async fn actions(server: &TestServer, prefix: &str) -> Vec<String> {
    let tenant = server.default_tenant().await;
    server
        .app
        .store
        .list_audit_events(
            &tenant.id,
            &AuditFilter {
                limit: 1000,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with(prefix))
        .map(|e| e.action)
        .collect()
}

/// The link the notification would carry to the verified contact, minted as its delivery does.
async fn link_token(server: &TestServer, case: &str) -> Result<String, keyplane_core::Error> {
    let tenant = server.default_tenant().await;
    let id = RecoveryCaseId::parse(case).unwrap();
    server
        .app
        .issue_recovery_link(&tenant, &id)
        .await
        .map(|l| l.token.expose().to_string())
}

async fn the_governed_path_verifies_approves_cools_off_and_completes_with_a_new_passkey(
    backend: Backend,
) {
    let (server, clock) = start(
        backend,
        "version = 1\n[recovery]\ncase_checks = [\"identity_document\", \"manager_callback\"]\ncase_approval = true\ncooling_off_secs = 3600\n",
    )
    .await;
    let agent = member(&server, "hannah", Some("helpdesk")).await;
    let boss = member(&server, "bea", Some("admin")).await;
    let (mut lost, _) = server.user_with_passkey("alice").await;

    // The public request: the same answer for an account that exists and one that does not.
    let known = server
        .post("/api/v1/recovery/cases", &json!({ "username": "alice" }))
        .await;
    let unknown = server
        .post("/api/v1/recovery/cases", &json!({ "username": "nobody" }))
        .await;
    assert_eq!(known.status, StatusCode::ACCEPTED);
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    // A second request while one is open opens nothing more (and answers the same).
    let again = server
        .post("/api/v1/recovery/cases", &json!({ "username": "alice" }))
        .await;
    assert_eq!((again.status, &again.body), (known.status, &known.body));
    let (_, listed) = call(
        &server,
        Method::GET,
        &format!("{CASES}?open=true"),
        &agent,
        None,
    )
    .await;
    let cases = listed["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{listed:?}");
    assert_eq!(cases[0]["state"], "requested");
    assert_eq!(cases[0]["opened_by"], "user");
    assert_eq!(cases[0]["holds"], json!([]));
    let case = cases[0]["id"].as_str().unwrap().to_string();

    let (s, c) = act(&server, &agent, &case, "take", json!({})).await;
    assert_eq!(
        (s, c["state"].as_str()),
        (StatusCode::OK, Some("verifying"))
    );
    // Only the agent who took it records checks.
    let (s, c) = act(
        &server,
        &boss,
        &case,
        "check",
        json!({ "check": "identity_document", "passed": true, "evidence": "passport" }),
    )
    .await;
    assert_eq!(
        (s, c["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_case_agent"))
    );
    let (s, c) = act(
        &server,
        &agent,
        &case,
        "check",
        json!({ "check": "identity_document", "passed": true, "evidence": "passport, photo matches" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c:?}");
    assert_eq!(c["missing_checks"], json!(["manager_callback"]));
    let (s, c) = act(&server, &agent, &case, "verified", json!({})).await;
    assert_eq!(
        (s, c["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("checks_incomplete"))
    );
    act(
        &server,
        &agent,
        &case,
        "check",
        json!({ "check": "manager_callback", "passed": true, "evidence": "called the manager on the directory number" }),
    )
    .await;
    let (s, c) = act(&server, &agent, &case, "verified", json!({})).await;
    assert_eq!(
        (s, c["state"].as_str()),
        (StatusCode::OK, Some("awaiting_approval")),
        "{c:?}"
    );

    // Dual control: the request goes to the approvals queue; the agent cannot approve it.
    let (_, approvals) = call(&server, Method::GET, "/api/v1/admin/approvals", &boss, None).await;
    let approval = approvals["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "recovery.approve")
        .expect("a recovery.approve request")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let approve = format!("/api/v1/admin/approvals/{approval}/approve");
    let (s, _) = call(&server, Method::POST, &approve, &agent, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = call(&server, Method::POST, &approve, &boss, None).await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    let (_, c) = call(
        &server,
        Method::GET,
        &format!("{CASES}/{case}"),
        &boss,
        None,
    )
    .await;
    assert_eq!(c["state"], "cooling_off");
    assert!(c["approved_by"].is_string());
    assert!(
        c["timeline"].as_array().is_some_and(|t| !t.is_empty()),
        "reviewers see the account's history"
    );

    // Cooling off: no link yet.
    let (s, c) = act(&server, &agent, &case, "send-link", json!({})).await;
    assert_eq!(
        (s, c["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("case_state"))
    );
    assert_eq!(c["error"]["state"], "cooling_off");
    assert_eq!(
        link_token(&server, &case).await.unwrap_err().code,
        "case_state"
    );
    clock.advance_secs(3601);
    let agent = member(&server, "hank", Some("helpdesk")).await;
    let (_, c) = call(
        &server,
        Method::GET,
        &format!("{CASES}/{case}"),
        &agent,
        None,
    )
    .await;
    assert_eq!(c["state"], "ready", "time alone moves it on");

    // The link: single use, one restricted session.
    let token = link_token(&server, &case).await.unwrap();
    let opened = server
        .post("/api/v1/recovery/links/redeem", &json!({ "token": token }))
        .await;
    assert_eq!(opened.status, StatusCode::OK, "{:?}", opened.body);
    assert_eq!(
        (
            opened.body["restricted"].as_bool(),
            opened.body["recovery"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let replay = server
        .post("/api/v1/recovery/links/redeem", &json!({ "token": token }))
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.body["error"]["code"], "recovery_link_invalid");
    let recovery = opened.body["token"].as_str().unwrap();
    let mut fresh = SoftAuthenticator::new(&server.origin(), true, true);
    let registered = server.add_passkey(&mut fresh, recovery).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{:?}",
        registered.body
    );

    let (_, c) = call(
        &server,
        Method::GET,
        &format!("{CASES}/{case}"),
        &agent,
        None,
    )
    .await;
    assert_eq!(c["state"], "completed");
    // The policy's default: the old passkeys are revoked, the new one signs in.
    let old = server.try_sign_in(&mut lost, None).await;
    assert_eq!(old.status, StatusCode::FORBIDDEN, "{:?}", old.body);
    assert_eq!(old.body["error"]["code"], "credential_inactive");
    let signed_in = server.sign_in(&mut fresh, Some("alice")).await;
    assert_eq!(signed_in["restricted"], false);
    let tenant = server.default_tenant().await;
    let alice_creds: Vec<_> = server
        .store_credentials(&tenant)
        .await
        .into_iter()
        .filter(|c| c.user_id.as_str() == signed_in["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(alice_creds.len(), 2);
    assert_eq!(
        alice_creds
            .iter()
            .filter(|c| c.status == CredentialStatus::Active)
            .count(),
        1
    );

    assert_eq!(
        actions(&server, "recovery.").await,
        vec![
            "recovery.case_opened",
            // The unknown account, then the second request while the case was open.
            "recovery.case_requested",
            "recovery.case_requested",
            "recovery.case_verifying",
            "recovery.check_recorded",
            "recovery.check_recorded",
            "recovery.case_verified",
            "recovery.case_cooling_off",
            "recovery.case_ready",
            "recovery.link_issued",
            "recovery.link_used",
            "recovery.link_failed",
            "recovery.case_completed",
        ]
    );
    server.shutdown().await;
}

async fn a_holder_with_a_working_passkey_cancels_during_cooling_off(backend: Backend) {
    let (server, _clock) = start(
        backend,
        "version = 1\n[recovery]\ncooling_off_secs = 86400\n",
    )
    .await;
    let agent = member(&server, "hannah", Some("helpdesk")).await;
    let (mut holder, _) = server.user_with_passkey("alice").await;
    let (_b, bob) = server.user_with_passkey("bob").await;
    let case = open_case_for(&server, &agent, "alice").await;
    act(&server, &agent, &case, "take", json!({})).await;
    act(
        &server,
        &agent,
        &case,
        "check",
        json!({ "check": "identity_document", "passed": true, "evidence": "video call, ID shown" }),
    )
    .await;
    let (_, c) = act(&server, &agent, &case, "verified", json!({})).await;
    assert_eq!(c["state"], "cooling_off");

    let me = server.sign_in(&mut holder, Some("alice")).await;
    let alice = me["token"].as_str().unwrap();
    let (s, mine) = call(
        &server,
        Method::GET,
        "/api/v1/me/recovery-cases",
        alice,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(mine["cases"].as_array().unwrap().len(), 1);
    assert_eq!(mine["cases"][0]["state"], "cooling_off");
    assert!(
        mine["cases"][0].get("checks").is_none(),
        "the holder sees no evidence"
    );
    // Another account's case is not there to cancel.
    let cancel = format!("/api/v1/me/recovery-cases/{case}/cancel");
    let (s, body) = call(&server, Method::POST, &cancel, &bob, None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("case_not_found"))
    );
    let (s, body) = call(&server, Method::POST, &cancel, alice, None).await;
    assert_eq!(
        (s, body["state"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{body:?}"
    );
    // Closed: nothing moves it again.
    let (s, body) = call(&server, Method::POST, &cancel, alice, None).await;
    assert_eq!(
        (s, body["error"]["state"].as_str()),
        (StatusCode::CONFLICT, Some("cancelled"))
    );
    for (action, body) in [
        ("take", json!({})),
        ("deny", json!({ "reason": "x" })),
        ("send-link", json!({})),
    ] {
        let (s, b) = act(&server, &agent, &case, action, body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("case_state")),
            "{action}"
        );
    }
    assert_eq!(
        link_token(&server, &case).await.unwrap_err().code,
        "case_state"
    );
    server.shutdown().await;
}

async fn two_agents_acting_at_once_move_a_case_once(backend: Backend) {
    let (server, _clock) = start(backend, "version = 1\n").await;
    let a = member(&server, "hannah", Some("helpdesk")).await;
    let b = member(&server, "hank", Some("helpdesk")).await;
    server.user_with_passkey("alice").await;
    let case = open_case_for(&server, &a, "alice").await;
    let (ra, rb) = tokio::join!(
        act(&server, &a, &case, "take", json!({})),
        act(&server, &b, &case, "take", json!({}))
    );
    let wins = [&ra, &rb].iter().filter(|r| r.0 == StatusCode::OK).count();
    assert_eq!(wins, 1, "{ra:?} {rb:?}");
    let loser = if ra.0 == StatusCode::OK { &rb } else { &ra };
    assert_eq!(loser.0, StatusCode::CONFLICT);
    assert!(
        matches!(
            loser.1["error"]["code"].as_str(),
            Some("case_changed" | "case_state")
        ),
        "{loser:?}"
    );
    assert_eq!(
        actions(&server, "recovery.case_verifying").await.len(),
        1,
        "one transition recorded"
    );
    server.shutdown().await;
}

async fn fraud_signals_hold_a_case_until_an_administrator_reviews_it(backend: Backend) {
    let (server, _clock) = start(
        backend,
        "version = 1\n[recovery]\ncooling_off_secs = 0\nfraud_max_cases = 1\nfraud_max_per_network = 2\n",
    )
    .await;
    let agent = member(&server, "hannah", Some("helpdesk")).await;
    let boss = member(&server, "bea", Some("admin")).await;
    member(&server, "ada", Some("admin")).await;
    server.user_with_passkey("alice").await;

    // An administrator's account is always reviewed.
    let case = open_case_for(&server, &agent, "ada").await;
    let (_, c) = call(
        &server,
        Method::GET,
        &format!("{CASES}/{case}"),
        &agent,
        None,
    )
    .await;
    assert_eq!(c["on_hold"], true);
    assert_eq!(c["holds"][0]["signal"], "admin_account");
    act(&server, &agent, &case, "take", json!({})).await;
    act(
        &server,
        &agent,
        &case,
        "check",
        json!({ "check": "identity_document", "passed": true, "evidence": "in person" }),
    )
    .await;
    let (_, c) = act(&server, &agent, &case, "verified", json!({})).await;
    assert_eq!(c["state"], "ready");
    let (s, c) = act(&server, &agent, &case, "send-link", json!({})).await;
    assert_eq!(
        (s, c["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("case_on_hold"))
    );
    assert_eq!(
        link_token(&server, &case).await.unwrap_err().code,
        "case_on_hold"
    );
    // The help desk cannot release its own hold; an administrator can, with a note.
    let (s, c) = act(&server, &agent, &case, "review", json!({ "note": "fine" })).await;
    assert_eq!(
        (s, c["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden_role"))
    );
    let (s, c) = act(&server, &boss, &case, "review", json!({ "note": "" })).await;
    assert_eq!(
        (s, c["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_note"))
    );
    let (s, c) = act(
        &server,
        &boss,
        &case,
        "review",
        json!({ "note": "called Ada's manager; she is on site" }),
    )
    .await;
    assert_eq!(
        (s, c["on_hold"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{c:?}"
    );
    assert!(link_token(&server, &case).await.is_ok());
    assert!(
        actions(&server, "recovery.link_requested").await.len() == 1,
        "the release asks for the link"
    );

    // Repeated attempts for one account: the second case within the window is held.
    let first = open_case_for(&server, &agent, "alice").await;
    act(
        &server,
        &agent,
        &first,
        "cancel",
        json!({ "reason": "duplicate" }),
    )
    .await;
    let second = open_case_for(&server, &agent, "alice").await;
    let (_, c) = call(
        &server,
        Method::GET,
        &format!("{CASES}/{second}"),
        &agent,
        None,
    )
    .await;
    assert_eq!(c["holds"].as_array().unwrap().len(), 1, "{c:?}");
    assert_eq!(c["holds"][0]["signal"], "repeated_attempts");

    // A recently added passkey that signed in (a new device) before the recovery is a signal.
    let (_, carol) = server.user_with_passkey("carol").await;
    let mut second_device = SoftAuthenticator::new(&server.origin(), true, true);
    let added = server.add_passkey(&mut second_device, &carol).await;
    assert_eq!(added.status, StatusCode::CREATED);
    server.sign_in(&mut second_device, Some("carol")).await;
    let case = open_case_for(&server, &agent, "carol").await;
    let (_, c) = call(
        &server,
        Method::GET,
        &format!("{CASES}/{case}"),
        &agent,
        None,
    )
    .await;
    assert_eq!(
        c["holds"][0]["signal"], "recent_new_device",
        "{}",
        c["holds"]
    );

    // Many public requests from one network (127.0.0.0/24 here): past two, each is held.
    for name in ["dave", "erin", "finn"] {
        server.invite(name).await;
        let r = server
            .post("/api/v1/recovery/cases", &json!({ "username": name }))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let (_, listed) = call(
        &server,
        Method::GET,
        &format!("{CASES}?state=requested"),
        &agent,
        None,
    )
    .await;
    let tenant = server.default_tenant().await;
    let finn = server
        .app
        .store
        .user_by_username(&tenant.id, "finn")
        .await
        .unwrap()
        .unwrap();
    let held: Vec<&str> = listed["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["opened_by"] == "user"
                && c["holds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|h| h["signal"] == "network_burst")
        })
        .map(|c| c["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        held,
        vec![finn.id.as_str()],
        "only the third request is held"
    );
    server.shutdown().await;
}

async fn a_case_expires_at_its_deadline(backend: Backend) {
    let (server, clock) = start(backend, "version = 1\n[recovery]\ncase_ttl_secs = 3600\n").await;
    let agent = member(&server, "hannah", Some("helpdesk")).await;
    server.user_with_passkey("alice").await;
    let case = open_case_for(&server, &agent, "alice").await;
    act(&server, &agent, &case, "take", json!({})).await;
    clock.advance_secs(3600);
    let agent = member(&server, "hank", Some("helpdesk")).await;
    let (_, c) = call(
        &server,
        Method::GET,
        &format!("{CASES}/{case}"),
        &agent,
        None,
    )
    .await;
    assert_eq!(c["state"], "expired");
    let (s, c) = act(&server, &agent, &case, "deny", json!({ "reason": "late" })).await;
    assert_eq!(
        (s, c["error"]["state"].as_str()),
        (StatusCode::CONFLICT, Some("expired"))
    );
    assert_eq!(actions(&server, "recovery.case_expired").await.len(), 1);
    // The janitor's round finds nothing more to do.
    let tenant = server.default_tenant().await;
    assert_eq!(server.app.advance_recovery_cases(&tenant).await.unwrap(), 0);
    server.shutdown().await;
}

async fn bad_case_requests_are_refused_with_codes_and_change_nothing(backend: Backend) {
    let (server, _clock) = start(backend, "version = 1\n").await;
    let agent = member(&server, "hannah", Some("helpdesk")).await;
    let plain = member(&server, "pat", None).await;
    server.user_with_passkey("alice").await;
    let case = open_case_for(&server, &agent, "alice").await;
    let other = server.create_tenant("other", "other.localhost").await;
    let foreign = keyplane_core::recovery_case::RecoveryCase::open(
        &other.id,
        &keyplane_core::UserId::generate(),
        "user",
        None,
        &keyplane_core::recovery_case::CaseRules {
            checks: &["identity_document".into()],
            approval: false,
            cooling_off_secs: 0,
            link_ttl_secs: 900,
            case_ttl_secs: 3600,
            revoke_old_credentials: true,
        },
        vec![],
        server.app.clock.now(),
    );
    use keyplane_store::Store;
    server
        .store
        .insert_recovery_case(
            &foreign,
            keyplane_store::AuditBatch::new(foreign.created_at, &[]),
        )
        .await
        .unwrap();
    let before = actions(&server, "recovery.").await.len();
    let cases = [
        (
            agent.as_str(),
            "take",
            case.clone(),
            json!({ "extra": 1 }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            agent.as_str(),
            "check",
            case.clone(),
            json!({ "check": "identity_document" }),
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
        (
            agent.as_str(),
            "teleport",
            case.clone(),
            json!({}),
            StatusCode::NOT_FOUND,
            "unknown_action",
        ),
        (
            agent.as_str(),
            "take",
            "not-a-uuid".into(),
            json!({}),
            StatusCode::NOT_FOUND,
            "case_not_found",
        ),
        (
            agent.as_str(),
            "take",
            foreign.id.to_string(),
            json!({}),
            StatusCode::NOT_FOUND,
            "case_not_found",
        ),
        (
            plain.as_str(),
            "take",
            case.clone(),
            json!({}),
            StatusCode::FORBIDDEN,
            "forbidden_role",
        ),
    ];
    for (token, action, id, body, status, code) in cases {
        let (s, b) = act(&server, token, &id, action, body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{action} {id}: {b:?}"
        );
    }
    let (s, _) = act(&server, &agent, &case, "take", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = act(&server, &agent, &case, "take", json!({})).await;
    assert_eq!(
        (s, b["error"]["state"].as_str()),
        (StatusCode::CONFLICT, Some("verifying"))
    );
    let (s, b) = act(
        &server,
        &agent,
        &case,
        "check",
        json!({ "check": "dna", "passed": true, "evidence": "x" }),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_check"))
    );
    assert_eq!(
        actions(&server, "recovery.").await.len(),
        before + 1,
        "only the take was recorded"
    );
    for bad in ["", "garbage", &"x".repeat(300)] {
        let r = server
            .post("/api/v1/recovery/links/redeem", &json!({ "token": bad }))
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("recovery_link_invalid"))
        );
    }
    let r = server
        .post("/api/v1/recovery/cases", &json!({ "username": 7 }))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

both_backends!(
    the_governed_path_verifies_approves_cools_off_and_completes_with_a_new_passkey,
    a_holder_with_a_working_passkey_cancels_during_cooling_off,
    two_agents_acting_at_once_move_a_case_once,
    fraud_signals_hold_a_case_until_an_administrator_reviews_it,
    a_case_expires_at_its_deadline,
    bad_case_requests_are_refused_with_codes_and_change_nothing,
);
