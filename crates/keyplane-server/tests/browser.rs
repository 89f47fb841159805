//! Real-browser end-to-end test of the `/enrol` and `/signin` pages: a real server on SQLite, and
//! `ui-tests/passkey-pages.test.mjs` (node's test runner, playwright-core) driving headless
//! Debian Chromium with its DevTools virtual WebAuthn authenticator.
//!
//! Needs `node`, `ui-tests/node_modules` (`npm ci` in `ui-tests/`) and `/usr/bin/chromium`.
//! Like the PostgreSQL tests, it never skips in CI (`CI=true`): a missing piece fails it. Outside
//! CI it fails too, unless `KEYPLANE_TEST_SKIP_BROWSER=1` says the developer knows.

use keyplane_server::service::CaseAction;
use keyplane_testkit::{Backend, TestServer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
const TEST_FILE: &str = "passkey-pages.test.mjs";
/// Far above a normal run (about 4 s); only stops a hung browser from hanging `cargo test`.
const NODE_TIMEOUT: Duration = Duration::from_secs(240);

/// Whether the browser test may be skipped here (never in CI).
fn skip_allowed() -> bool {
    std::env::var("CI").map(|v| v != "true").unwrap_or(true)
        && std::env::var("KEYPLANE_TEST_SKIP_BROWSER").as_deref() == Ok("1")
}

fn repo_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is crates/keyplane-server.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/keyplane-server has a grandparent")
        .to_path_buf()
}

/// What is missing to run the browser test, each with how to get it.
async fn missing_prerequisites(ui_tests: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !matches!(node, Ok(s) if s.success()) {
        missing.push("`node` (Node.js 20 or later) is not on PATH".to_string());
    }
    if !ui_tests.join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "{} is missing: run `npm ci` in ui-tests/",
            ui_tests.join("node_modules/playwright-core").display()
        ));
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!(
            "{CHROMIUM} is missing: `apt-get install chromium` (Debian's package)"
        ));
    }
    missing
}

/// Forwards a child's output line by line, so the test harness shows it (live with
/// `--nocapture`, otherwise when the test fails).
fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    to_stderr: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if to_stderr {
                eprintln!("[ui-tests] {line}");
            } else {
                println!("[ui-tests] {line}");
            }
        }
    })
}

/// The tenant's policy during the browser run: recovery codes allowed, no cooling-off.
/// `admin.approvals.decide` needs a passkey confirmation within 2 s, so that the console's
/// approval exercises the step-up prompt; every other admin act keeps the built-in rule.
const POLICY: &str = "version = 1\n[[step_up]]\nid = \"decide\"\nactions = [\"admin.approvals.decide\"]\nlevel = \"aal2\"\nmax_age_secs = 2\n[[step_up]]\nid = \"admin\"\nactions = [\"admin.*\"]\nlevel = \"aal2\"\nmax_age_secs = 900\n[recovery]\ncodes = \"allow\"\ncooling_off_secs = 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_and_sign_in_pages_work_in_chromium() {
    let root = repo_root();
    let ui_tests = root.join("ui-tests");
    let missing = missing_prerequisites(&ui_tests).await;
    if !missing.is_empty() {
        if skip_allowed() {
            eprintln!(
                "browser test skipped by KEYPLANE_TEST_SKIP_BROWSER=1 (never allowed in CI); missing: {}",
                missing.join("; ")
            );
            return;
        }
        panic!(
            "the browser test cannot run (see DEVELOPERS.md, \"Browser tests\"; outside CI, \
             KEYPLANE_TEST_SKIP_BROWSER=1 skips it):\n  - {}",
            missing.join("\n  - ")
        );
    }

    // A real SMTP server (aiosmtpd, from PyPI) receives the recovery link the console's case
    // sends; the page test reads it from the mailbox, as the user would from their inbox.
    let smtp = keyplane_testkit::SmtpServer::start()
        .await
        .expect("aiosmtpd (pip install --no-deps --target .test-data/pypi aiosmtpd==1.4.6 atpublic==9.0.0 attrs==26.1.0)");
    let (smtp_port, maildir) = (smtp.port, smtp.maildir());
    let server = TestServer::builder(Backend::Sqlite)
        .settings(|s| {
            s.notifications.smtp.host = "127.0.0.1".into();
            s.notifications.smtp.port = smtp_port;
            s.notifications.smtp.security = "none".into();
            s.notifications.smtp.from = "keyplane@example.com".into();
            s.notifications.interval_ms = 200;
        })
        .start()
        .await;
    let username = "alice";
    let token = server.invite(username).await;
    // Recovery on the /recover page: rita holds a recovery code, rob a help-desk case whose link
    // the page opens (minted here as the notification's delivery does).
    let tenant = server.default_tenant().await;
    server
        .app
        .apply_policy(
            &tenant,
            POLICY,
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .expect("policy");
    // alice administers: the console shows her the dashboard, a request another administrator
    // made (re-applying the same policy) to approve, and rob's recovery case.
    let alice_id = server
        .app
        .store
        .user_by_username(&tenant.id, username)
        .await
        .unwrap()
        .unwrap()
        .id;
    server
        .app
        .set_role(
            &tenant,
            &alice_id,
            Some(keyplane_core::admin::Role::Admin),
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .expect("role");
    // An application (OpenID Connect client) that sends alice to sign in, owned by her. Its
    // callback is a free loopback port the browser test listens on.
    let callback_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let oidc_redirect = format!("http://127.0.0.1:{callback_port}/wiki/callback");
    let oidc = match server
        .app
        .create_client(
            &tenant,
            keyplane_server::service::NewClient {
                kind: "oidc_client".into(),
                name: "Team wiki".into(),
                owner: alice_id.clone(),
                scopes: vec![],
                expires_days: Some(30),
                oidc: Some(keyplane_server::service::OidcRegistration {
                    redirect_uris: vec![oidc_redirect.clone()],
                    post_logout_redirect_uris: vec![],
                    token_endpoint_auth_method: None,
                    jwks: None,
                    scopes: None,
                }),
                webhook: None,
            },
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .expect("OIDC client")
    {
        keyplane_server::service::ClientCreation::Created { client, .. } => {
            client.client.id.to_string()
        }
        _ => panic!("created without approval"),
    };
    let (_rita_device, rita) = server.user_with_passkey("rita").await;
    let codes = server
        .request(
            reqwest::Method::POST,
            "/api/v1/me/recovery-codes",
            None,
            Some(&rita),
            Some(&json!({})),
        )
        .await;
    let recovery_code = codes.body["codes"][0].as_str().expect("a code").to_string();
    server.user_with_passkey("rob").await;
    // cara lost her device; the console takes her case to ready and the link reaches her inbox.
    server.user_with_passkey("cara").await;
    let cara_id = server
        .app
        .store
        .user_by_username(&tenant.id, "cara")
        .await
        .unwrap()
        .unwrap()
        .id;
    server
        .app
        .set_contact(
            &tenant,
            &cara_id,
            Some("cara@example.com"),
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .expect("contact");
    // An exception another administrator asked for, for alice to approve in the console.
    let rob_id = server
        .app
        .store
        .user_by_username(&tenant.id, "rob")
        .await
        .unwrap()
        .unwrap()
        .id;
    server
        .app
        .request_exception(
            &tenant,
            keyplane_server::service::ExceptionRequest {
                subject: keyplane_core::ExceptionSubject::User(rob_id),
                rule: "authenticators.synced".into(),
                reason: "a synced passkey until his security key arrives".into(),
                duration_days: 7,
            },
            &keyplane_core::audit::Caller::operator("olga"),
        )
        .await
        .expect("exception request");
    let rob = server
        .app
        .store
        .user_by_username(&tenant.id, "rob")
        .await
        .unwrap()
        .unwrap();
    let agent = keyplane_core::audit::Caller::operator("agent");
    let case = server
        .app
        .open_recovery_case_for(&tenant, &rob.id, &agent)
        .await
        .expect("case");
    for action in [
        CaseAction::Take,
        CaseAction::Check {
            check: "identity_document".into(),
            passed: true,
            evidence: "video call".into(),
        },
        CaseAction::Verified,
    ] {
        server
            .app
            .act_on_case(&tenant, &case.id, action, &agent)
            .await
            .expect("case action");
    }
    let link = server
        .app
        .issue_recovery_link(&tenant, &case.id)
        .await
        .expect("link");
    let link_token = link.token.expose().to_string();

    let started = Instant::now();
    let mut child = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            TEST_FILE,
        ])
        .current_dir(&ui_tests)
        // Chromium resolves `localhost` to the loopback address itself.
        .env("KEYPLANE_UI_BASE", &server.base)
        .env("KEYPLANE_UI_TOKEN", &token)
        .env("KEYPLANE_UI_USERNAME", username)
        .env("KEYPLANE_UI_RECOVERY_USERNAME", "rita")
        .env("KEYPLANE_UI_RECOVERY_CODE", &recovery_code)
        .env("KEYPLANE_UI_RECOVERY_LINK", &link_token)
        .env("KEYPLANE_UI_CASE_USERNAME", "cara")
        .env("KEYPLANE_UI_MAILDIR", &maildir)
        .env("KEYPLANE_UI_OIDC_CLIENT", &oidc)
        .env("KEYPLANE_UI_OIDC_REDIRECT", &oidc_redirect)
        .env("KEYPLANE_UI_CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = forward(child.stdout.take().expect("piped stdout"), false);
    let err = forward(child.stderr.take().expect("piped stderr"), true);
    let status = match tokio::time::timeout(NODE_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("wait for node"),
        Err(_) => {
            let _ = child.kill().await;
            panic!("ui-tests did not finish within {NODE_TIMEOUT:?}");
        }
    };
    let _ = out.await;
    let _ = err.await;
    println!("ui-tests finished in {:.1?}", started.elapsed());
    assert!(
        status.success(),
        "ui-tests failed ({status}); their output is above"
    );

    // What the browser did, seen from the server: the invitation is spent, and alice has the
    // passkey with the nickname typed on the page.
    let again = server
        .post(
            "/api/v1/registration/options",
            &json!({ "enrolment_token": token }),
        )
        .await;
    assert_eq!(again.status.as_u16(), 401, "spent token: {:?}", again.body);
    assert_eq!(again.code(), "enrolment_token_invalid");
    let credentials = server.store_credentials(&tenant).await;
    let of = |id: &keyplane_core::UserId| {
        credentials
            .iter()
            .filter(|c| &c.user_id == id)
            .collect::<Vec<_>>()
    };
    let alice = server
        .app
        .store
        .user_by_username(&tenant.id, "alice")
        .await
        .unwrap()
        .unwrap();
    let alices = of(&alice.id);
    // Enrolled from the invitation (and renamed back), then a second one added on the account
    // page from another authenticator and removed there.
    let status = |nickname: &str| {
        alices
            .iter()
            .find(|c| c.nickname == nickname)
            .map(|c| c.status)
    };
    assert_eq!(alices.len(), 2, "two passkeys registered by the browser");
    assert_eq!(
        status("Browser passkey"),
        Some(keyplane_core::CredentialStatus::Active)
    );
    assert_eq!(
        status("Passkey 2"),
        Some(keyplane_core::CredentialStatus::Revoked)
    );
    // The recovery code gave rita a second passkey (her first is kept); the link gave rob a new
    // one, completed his case and revoked the old one.
    let rita_id = server
        .app
        .store
        .user_by_username(&tenant.id, "rita")
        .await
        .unwrap()
        .unwrap()
        .id;
    let ritas = of(&rita_id);
    assert_eq!(ritas.len(), 2);
    assert!(ritas.iter().any(|c| c.nickname == "Recovered passkey"));
    let robs = of(&rob.id);
    assert_eq!(robs.len(), 2);
    assert!(robs.iter().any(|c| c.nickname == "Recovered passkey"
        && c.status == keyplane_core::CredentialStatus::Active));
    assert!(robs
        .iter()
        .any(|c| c.status == keyplane_core::CredentialStatus::Revoked));
    // olga's exception request, approved by alice in the console; alice's own request waits.
    let approvals = server.app.list_approvals(&tenant).await.unwrap();
    assert_eq!(approvals.len(), 2);
    let olgas = approvals
        .iter()
        .find(|a| a.requested_by == "cli:olga")
        .expect("olga's request");
    let alices_own = approvals
        .iter()
        .find(|a| a.requested_by == alice_id.as_str())
        .expect("alice's request");
    assert_eq!(olgas.action, "exception.grant");
    assert_eq!(alices_own.status, keyplane_core::ApprovalStatus::Requested);
    let exceptions = server.app.list_exceptions(&tenant).await.unwrap();
    assert_eq!(exceptions.len(), 1, "the approval granted the exception");
    assert_eq!(olgas.status, keyplane_core::ApprovalStatus::Approved);
    assert_eq!(
        olgas.decided_by.as_deref(),
        Some(alice_id.as_str()),
        "approved from the console by alice"
    );
    // cara's case: taken to ready in the console, its link read from her inbox, her new passkey
    // registered with it — completed, the lost one revoked.
    let caras = of(&cara_id);
    assert_eq!(caras.len(), 2);
    assert!(caras.iter().any(|c| c.nickname == "Recovered passkey"
        && c.status == keyplane_core::CredentialStatus::Active));
    assert!(caras
        .iter()
        .any(|c| c.status == keyplane_core::CredentialStatus::Revoked));
    let caras_cases = server
        .app
        .list_recovery_cases(
            &tenant,
            &keyplane_store::CaseFilter {
                user: Some(cara_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(caras_cases.len(), 1);
    assert_eq!(
        caras_cases[0].state,
        keyplane_core::recovery_case::CaseState::Completed
    );
    assert_eq!(caras_cases[0].agent.as_deref(), Some(alice_id.as_str()));
    assert_eq!(
        caras_cases[0].checks[0].evidence,
        "video call, passport shown"
    );
    // The machine client created, rotated and revoked in the console (beside the OIDC client
    // made above).
    let clients = server.app.list_clients(&tenant).await.unwrap();
    let api_tokens: Vec<_> = clients
        .iter()
        .filter(|c| c.client.kind == keyplane_core::ClientKind::ApiToken)
        .collect();
    assert_eq!(api_tokens.len(), 1);
    let c = &api_tokens[0].client;
    assert_eq!(c.name, "siem-export");
    assert_eq!(c.owner, alice_id);
    assert!(c.revoked_at.is_some() && c.rotated_at.is_some());
    // The application's sign-in, as the audit log saw it: alice, at aal2, for the wiki.
    let authorized = server.events("oidc.authorized").await;
    assert_eq!(authorized.len(), 1);
    assert_eq!(authorized[0].actor_id, alice_id.as_str());
    assert_eq!(authorized[0].target_id, oidc);
    assert!(
        authorized[0].details.contains("\"acr\":\"aal2\""),
        "{}",
        authorized[0].details
    );
    // The console's lifecycle actions, as the audit log saw them.
    for action in ["user.suspended", "user.reactivated"] {
        let events = server
            .app
            .store
            .list_audit_events(
                &tenant.id,
                &keyplane_store::AuditFilter {
                    action: Some(action.into()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{action}");
        assert_eq!(events[0].actor_id, alice_id.as_str(), "{action} by alice");
    }
    let case = server.app.recovery_case(&tenant, &case.id).await.unwrap();
    assert_eq!(
        case.state,
        keyplane_core::recovery_case::CaseState::Completed
    );

    server.shutdown().await;
}
