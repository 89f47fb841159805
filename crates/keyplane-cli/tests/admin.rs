//! Administration with the real `keyplane` binary: user lifecycle and roles (the last owner is
//! kept), credential commands and bulk actions (dry run, execute, resume, bulk revoke under dual
//! control), reports as CSV and JSON, fraud alerts, and exceptions granted only by a second
//! operator. Every run ends with an intact audit chain.

mod common;

use common::{keyplane, serve};
use serde_json::Value;
use std::path::Path;

/// A valid id that names nothing.
const UNKNOWN: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

/// Runs a command as the operator named `login` (the CLI's actor is the OS login).
fn run_as(data: &Path, login: &str, args: &[&str]) -> (bool, String, String) {
    let out = keyplane(data)
        .env("USER", login)
        .env_remove("SUDO_USER")
        .args(args)
        .output()
        .expect("run keyplane");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn run(data: &Path, args: &[&str]) -> (bool, String, String) {
    run_as(data, "operator", args)
}

/// Runs a command that must succeed; its standard output.
fn ok(data: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(data, args);
    assert!(ok, "keyplane {args:?} failed:\n{err}");
    out
}

/// Runs a command that must fail; its standard error.
fn fails(data: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(data, args);
    assert!(!ok, "keyplane {args:?} succeeded:\n{out}");
    err
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// A data directory whose database has the default tenant (a first start creates it, with the
/// bootstrap administrator `admin`, an owner).
fn bootstrapped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = serve(dir.path(), &[]);
    // The bootstrap is committed before the server listens. Killed rather than sent SIGTERM:
    // `serve` announces its address before it handles SIGTERM, so an early SIGTERM ends it by the
    // default action (graceful shutdown is tested in cli.rs).
    child.kill().expect("stop keyplane serve");
    child.wait().expect("keyplane serve exits");
    dir
}

/// The audit events with `action`, from `keyplane audit export`.
fn events(data: &Path, action: &str) -> Vec<Value> {
    ok(data, &["audit", "export", "--action", action])
        .lines()
        .map(json)
        .collect()
}

fn user(data: &Path, username: &str) -> Value {
    let users = json(&ok(data, &["user", "list", "--format", "json"]));
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("no user {username}: {users}"))
        .clone()
}

fn assert_audit_intact(data: &Path) {
    let (ok, out, err) = run(data, &["audit", "verify"]);
    assert!(ok, "the audit chain verifies:\n{out}\n{err}");
}

#[test]
fn user_lifecycle_from_the_command_line_is_audited_and_checked() {
    let dir = bootstrapped();
    let d = dir.path();
    ok(d, &["admin", "invite", "carol"]);
    assert_eq!(user(d, "carol")["status"], "active");

    let out = ok(
        d,
        &["user", "suspend", "carol", "--reason", "left the company"],
    );
    assert!(out.contains("user carol is suspended"), "{out}");
    assert_eq!(user(d, "carol")["status"], "suspended");
    let err = fails(d, &["user", "suspend", "carol", "--reason", "again"]);
    assert!(err.contains("invalid_transition"), "{err}");
    let suspended = events(d, "user.suspended");
    assert_eq!(suspended.len(), 1, "a refused move records nothing");
    assert_eq!(suspended[0]["actor"]["id"], "cli:operator");
    assert_eq!(suspended[0]["details"]["reason"], "left the company");
    assert_eq!(suspended[0]["target"]["id"], user(d, "carol")["id"]);

    let out = ok(d, &["user", "reactivate", "carol", "--reason", "came back"]);
    assert!(out.contains("user carol is active"), "{out}");
    let err = fails(d, &["user", "reactivate", "carol", "--reason", "twice"]);
    assert!(err.contains("invalid_transition"), "{err}");

    let out = ok(
        d,
        &["user", "re-enrol", "carol", "--reason", "lost her key"],
    );
    assert!(
        out.contains("user carol is active; re-enrolment required at next sign-in"),
        "{out}"
    );
    let re_enrol = events(d, "user.re_enrolment_required");
    assert_eq!(re_enrol.len(), 1);
    assert_eq!(re_enrol[0]["details"]["reason"], "lost her key");

    let out = ok(
        d,
        &["user", "deprovision", "carol", "--reason", "contract ended"],
    );
    assert!(out.contains("user carol is deprovisioned"), "{out}");
    let out = ok(d, &["user", "reactivate", "carol", "--reason", "rehired"]);
    assert!(out.contains("user carol is active"), "{out}");

    // A reason is required, and must be text; unknown users are named.
    let err = fails(d, &["user", "suspend", "carol"]);
    assert!(err.contains("--reason"), "{err}");
    let err = fails(d, &["user", "suspend", "carol", "--reason", "  "]);
    assert!(err.contains("invalid_reason"), "{err}");
    let err = fails(d, &["user", "re-enrol", "carol", "--reason", ""]);
    assert!(err.contains("invalid_reason"), "{err}");
    let err = fails(d, &["user", "suspend", "ghost", "--reason", "x"]);
    assert!(err.contains("no user \"ghost\""), "{err}");
    assert_eq!(
        events(d, "user.suspended").len(),
        1,
        "refusals record nothing"
    );
    assert_eq!(user(d, "carol")["status"], "active");
    assert_audit_intact(d);
}

#[test]
fn roles_are_given_and_taken_and_the_last_owner_keeps_the_role() {
    let dir = bootstrapped();
    let d = dir.path();
    // The first start made `admin` the tenant's only owner.
    assert_eq!(user(d, "admin")["role"], "owner");
    ok(d, &["admin", "invite", "carol"]);
    assert_eq!(user(d, "carol")["role"], Value::Null);

    let out = ok(d, &["user", "set-role", "carol", "helpdesk"]);
    assert!(out.contains("user carol now has role helpdesk"), "{out}");
    assert_eq!(user(d, "carol")["role"], "helpdesk");
    let out = ok(d, &["user", "set-role", "carol", "--none"]);
    assert!(out.contains("user carol now has role (none)"), "{out}");
    assert_eq!(user(d, "carol")["role"], Value::Null);
    let err = fails(d, &["user", "set-role", "carol", "root"]);
    assert!(
        err.contains("role is owner, admin, helpdesk or auditor"),
        "{err}"
    );
    let err = fails(d, &["user", "set-role", "carol"]);
    assert!(err.contains("<ROLE>") || err.contains("--none"), "{err}");

    // The last owner can neither lose the role nor be given another.
    let err = fails(d, &["user", "set-role", "admin", "--none"]);
    assert!(err.contains("last_owner"), "{err}");
    let err = fails(d, &["user", "set-role", "admin", "auditor"]);
    assert!(err.contains("last_owner"), "{err}");
    assert_eq!(user(d, "admin")["role"], "owner");
    // With a second owner, the first may step down; then the second is the last.
    ok(d, &["user", "set-role", "carol", "owner"]);
    let out = ok(d, &["user", "set-role", "admin", "admin"]);
    assert!(out.contains("user admin now has role admin"), "{out}");
    let err = fails(d, &["user", "set-role", "carol", "--none"]);
    assert!(err.contains("last_owner"), "{err}");
    assert_eq!(user(d, "carol")["role"], "owner");

    let changes = events(d, "user.role_changed");
    let moves: Vec<(Value, Value)> = changes
        .iter()
        .map(|e| (e["details"]["from"].clone(), e["details"]["to"].clone()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (Value::Null, "helpdesk".into()),
            ("helpdesk".into(), Value::Null),
            (Value::Null, "owner".into()),
            ("owner".into(), "admin".into()),
        ],
        "one event per change, none for refusals"
    );
    assert_audit_intact(d);
}

#[test]
fn credential_commands_check_the_id_and_bulk_actions_dry_run_first() {
    let dir = bootstrapped();
    let d = dir.path();
    for action in ["suspend", "reactivate", "revoke"] {
        let err = fails(d, &["credential", action, "not-an-id", "--reason", "x"]);
        assert!(err.contains("is not a credential id"), "{action}: {err}");
        let err = fails(d, &["credential", action, UNKNOWN, "--reason", "x"]);
        assert!(err.contains("credential_not_found"), "{action}: {err}");
    }

    // Bulk: a dry run counts and changes nothing; without --execute it is a dry run too.
    let out = ok(d, &["credential", "bulk", "run", "suspend", "--dry-run"]);
    assert!(out.contains("dry run: 0 credential(s) would be"), "{out}");
    assert!(!out.contains("nothing changed"), "{out}");
    let out = ok(d, &["credential", "bulk", "run", "suspend", "--synced"]);
    assert!(out.contains("dry run: 0 credential(s)"), "{out}");
    assert!(
        out.contains("nothing changed: run again with --execute"),
        "{out}"
    );
    let err = fails(d, &["credential", "bulk", "run", "explode", "--dry-run"]);
    assert!(err.contains("invalid_action"), "{err}");
    let err = fails(
        d,
        &[
            "credential",
            "bulk",
            "run",
            "suspend",
            "--attestation",
            "maybe",
            "--dry-run",
        ],
    );
    assert!(err.contains("invalid_filter"), "{err}");
    let err = fails(
        d,
        &[
            "credential",
            "bulk",
            "run",
            "suspend",
            "--dry-run",
            "--execute",
        ],
    );
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(
        events(d, "bulk.started").is_empty(),
        "dry runs start nothing"
    );

    // Executing needs a reason; then the (empty) job completes, audited.
    let err = fails(d, &["credential", "bulk", "run", "suspend", "--execute"]);
    assert!(err.contains("invalid_reason"), "{err}");
    let out = ok(
        d,
        &[
            "credential",
            "bulk",
            "run",
            "suspend",
            "--execute",
            "--reason",
            "recall",
        ],
    );
    assert!(
        out.contains("completed: 0 credential(s) suspended"),
        "{out}"
    );
    let jobs = json(&ok(d, &["credential", "bulk", "jobs", "--format", "json"]));
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["status"], "completed");
    assert_eq!(jobs[0]["reason"], "recall");
    let job = jobs[0]["id"].as_str().unwrap().to_string();
    // Resuming a completed job does nothing more.
    let out = ok(d, &["credential", "bulk", "resume", &job]);
    assert!(out.contains(&format!("bulk job {job} completed")), "{out}");
    assert_eq!(events(d, "bulk.started").len(), 1);
    assert_eq!(events(d, "bulk.completed").len(), 1);
    let err = fails(d, &["credential", "bulk", "resume", "nonsense"]);
    assert!(err.contains("is not a bulk job id"), "{err}");
    let err = fails(d, &["credential", "bulk", "resume", UNKNOWN]);
    assert!(err.contains("bulk_job_not_found"), "{err}");
    assert_audit_intact(d);
}

#[test]
fn bulk_revoke_under_dual_control_waits_for_a_second_operator() {
    let dir = bootstrapped();
    let d = dir.path();
    let policy = d.join("dual.toml");
    std::fs::write(
        &policy,
        "version = 1\n[governance]\ndual_control = [\"credentials.bulk_revoke\"]\n",
    )
    .unwrap();
    ok(d, &["policy", "apply", policy.to_str().unwrap()]);
    let (ok_, out, err) = run_as(
        d,
        "alice",
        &[
            "credential",
            "bulk",
            "run",
            "revoke",
            "--execute",
            "--reason",
            "lost batch",
        ],
    );
    assert!(ok_, "{err}");
    assert!(out.contains("bulk revoke is under dual control"), "{out}");
    assert!(events(d, "bulk.started").is_empty(), "nothing ran yet");
    let open = json(&ok(d, &["approval", "list", "--open", "--format", "json"]));
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["action"], "credentials.bulk_revoke");
    assert_eq!(open[0]["requested_by"], "cli:alice");
    let id = open[0]["id"].as_str().unwrap().to_string();
    let (ok_, _, err) = run_as(d, "alice", &["approval", "approve", &id]);
    assert!(!ok_ && err.contains("approver_is_requester"), "{err}");
    let (ok_, out, err) = run_as(d, "bob", &["approval", "approve", &id]);
    assert!(ok_, "{err}");
    assert!(
        out.contains("\"job\""),
        "the approval creates the job: {out}"
    );
    let jobs = json(&ok(d, &["credential", "bulk", "jobs", "--format", "json"]));
    assert_eq!(jobs[0]["action"], "revoke", "{jobs}");
    assert_eq!(jobs[0]["created_by"], "cli:bob");
    let job = jobs[0]["id"].as_str().unwrap().to_string();
    let out = ok(d, &["credential", "bulk", "resume", &job]);
    assert!(out.contains("completed: 0 credential(s) revoked"), "{out}");
    assert_audit_intact(d);
}

#[test]
fn reports_come_as_csv_and_json() {
    let dir = bootstrapped();
    let d = dir.path();
    // Coverage: the bootstrap owner is an active user with no passkey yet.
    let csv = ok(d, &["report", "coverage", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("population,users,users_without_compliant,users_with_one_compliant,users_with_two_or_more_compliant,credentials,synced,device_bound"),
        "{csv}"
    );
    assert_eq!(lines.next(), Some("(all),1,1,0,0,0,0,0"), "{csv}");
    assert_eq!(lines.next(), None, "{csv}");
    assert!(csv.ends_with("\r\n"), "RFC 4180 line ends");

    let controls = json(&ok(d, &["report", "controls", "--format", "json"]));
    let rows = controls.as_array().unwrap();
    assert!(rows.len() >= 11, "{controls}");
    for r in rows {
        assert!(
            ["pass", "fail", "not_applicable"].contains(&r["status"].as_str().unwrap()),
            "{r}"
        );
        assert!(!r["evidence"].as_str().unwrap().is_empty(), "{r}");
    }
    let status = |control: &str| -> String {
        rows.iter()
            .find(|r| r["control"] == control)
            .unwrap_or_else(|| panic!("no row {control}: {controls}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("PR.AA-01"), "fail", "a user without a passkey");
    assert_eq!(status("PR.AA-02"), "pass", "invitations are required");
    assert_eq!(status("PR.AA-04"), "not_applicable");
    assert_eq!(status("PR.AA-05"), "fail", "only the built-in policy");
    assert_eq!(status("PR.AA-06"), "not_applicable");
    assert_eq!(status("AAL2"), "pass");
    assert_eq!(status("NHI-10"), "pass", "no open fraud alerts");
    // An applied policy with an admin.* step-up rule passes PR.AA-05.
    let policy = d.join("policy.toml");
    std::fs::write(&policy, "version = 1\n").unwrap();
    ok(d, &["policy", "apply", policy.to_str().unwrap()]);
    let controls = json(&ok(d, &["report", "controls", "--format", "json"]));
    let aa05 = controls
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["control"] == "PR.AA-05")
        .unwrap()
        .clone();
    assert_eq!(aa05["status"], "pass", "{aa05}");

    let csv = ok(d, &["report", "controls", "--format", "csv"]);
    assert!(
        csv.starts_with("framework,control,status,title,evidence\r\n"),
        "{csv}"
    );
    let table = ok(d, &["report", "drift"]);
    assert!(table.starts_with("CREDENTIAL"), "{table}");
    let drift = json(&ok(d, &["report", "drift", "--format", "json"]));
    assert_eq!(drift["non_compliant"], 0, "{drift}");
    let fraud = json(&ok(d, &["report", "fraud", "--format", "json"]));
    assert_eq!(fraud["alerts"], serde_json::json!([]), "{fraud}");
    let err = fails(d, &["report", "nope"]);
    assert!(err.contains("report_not_found"), "{err}");
    let err = fails(d, &["report", "coverage", "--days", "0"]);
    assert!(err.contains("invalid_days"), "{err}");
    let err = fails(d, &["report", "coverage", "--format", "xml"]);
    assert!(err.contains("xml"), "{err}");
}

#[test]
fn fraud_alerts_list_and_refuse_unknown_ids() {
    let dir = bootstrapped();
    let d = dir.path();
    let alerts = json(&ok(d, &["fraud", "list", "--format", "json"]));
    assert_eq!(alerts, serde_json::json!([]));
    let table = ok(d, &["fraud", "list"]);
    assert!(table.starts_with("ID"), "a table with a header: {table}");
    let err = fails(
        d,
        &[
            "fraud",
            "resolve",
            "nonsense",
            "--resolution",
            "revoke",
            "--note",
            "x",
        ],
    );
    assert!(err.contains("is not a fraud alert id"), "{err}");
    let err = fails(
        d,
        &[
            "fraud",
            "resolve",
            UNKNOWN,
            "--resolution",
            "revoke",
            "--note",
            "x",
        ],
    );
    assert!(err.contains("fraud_alert_not_found"), "{err}");
    let err = fails(
        d,
        &[
            "fraud",
            "resolve",
            UNKNOWN,
            "--resolution",
            "ignore",
            "--note",
            "x",
        ],
    );
    assert!(err.contains("invalid_resolution"), "{err}");
    let err = fails(
        d,
        &[
            "fraud",
            "resolve",
            UNKNOWN,
            "--resolution",
            "revoke",
            "--note",
            "",
        ],
    );
    assert!(err.contains("invalid_reason"), "{err}");
    assert!(events(d, "fraud.alert_resolved").is_empty());
}

#[test]
fn an_exception_needs_a_second_operator_and_can_be_revoked() {
    let dir = bootstrapped();
    let d = dir.path();
    ok(d, &["admin", "invite", "uma"]);
    let request = [
        "exception",
        "request",
        "--user",
        "uma",
        "--rule",
        "authenticators.synced",
        "--reason",
        "travelling without her key",
        "--days",
        "5",
    ];
    let (ok_, out, err) = run_as(d, "alice", &request);
    assert!(ok_, "{err}");
    assert!(out.contains("exception requested: approval"), "{out}");
    let open = json(&ok(d, &["approval", "list", "--open", "--format", "json"]));
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["action"], "exception.grant");
    assert_eq!(open[0]["requested_by"], "cli:alice");
    let approval = open[0]["id"].as_str().unwrap().to_string();
    assert!(out.contains(&approval), "{out}");

    // The requester cannot grant it; nothing is in force until someone else does.
    let (ok_, _, err) = run_as(d, "alice", &["approval", "approve", &approval]);
    assert!(!ok_ && err.contains("approver_is_requester"), "{err}");
    let list = json(&ok(d, &["exception", "list", "--format", "json"]));
    assert_eq!(list, serde_json::json!([]), "not granted yet");
    let (ok_, out, err) = run_as(d, "bob", &["approval", "approve", &approval]);
    assert!(ok_, "{err}");
    assert!(out.contains("\"exception\""), "{out}");

    let list = json(&ok(d, &["exception", "list", "--format", "json"]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    assert_eq!(e["status"], "active", "{e}");
    assert_eq!(e["rule"], "authenticators.synced");
    assert_eq!(
        e["subject"],
        format!("user:{}", user(d, "uma")["id"].as_str().unwrap())
    );
    assert_eq!(e["requested_by"], "cli:alice");
    assert_eq!(e["approved_by"], "cli:bob");
    assert_eq!(e["approval_id"], approval.as_str());
    let at = |k: &str| {
        time::OffsetDateTime::parse(
            e[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(at("expires_at") - at("created_at"), time::Duration::days(5));
    let report = json(&ok(
        d,
        &["report", "exceptions", "--days", "7", "--format", "json"],
    ));
    assert_eq!(
        (&report["active"], &report["expiring"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "{report}"
    );
    let granted = events(d, "exception.granted");
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["actor"]["id"], "cli:bob");
    assert_eq!(granted[0]["details"]["requested_by"], "cli:alice");

    // Revoked early, once.
    let id = e["id"].as_str().unwrap().to_string();
    let err = fails(d, &["exception", "revoke", &id, "--reason", ""]);
    assert!(err.contains("invalid_reason"), "{err}");
    let out = ok(d, &["exception", "revoke", &id, "--reason", "back home"]);
    assert!(out.contains(&format!("exception {id} revoked")), "{out}");
    let list = json(&ok(d, &["exception", "list", "--format", "json"]));
    assert_eq!(list[0]["status"], "revoked", "{list}");
    let err = fails(d, &["exception", "revoke", &id, "--reason", "again"]);
    assert!(err.contains("exception_not_active"), "{err}");
    let err = fails(d, &["exception", "revoke", "nonsense", "--reason", "x"]);
    assert!(err.contains("is not an exception id"), "{err}");
    assert_eq!(events(d, "exception.revoked").len(), 1);

    // Requests that the policy does not allow.
    for (args, code) in [
        (
            vec![
                "--user",
                "uma",
                "--rule",
                "authenticators.synced",
                "--days",
                "0",
            ],
            "invalid_duration",
        ),
        (
            vec![
                "--user",
                "uma",
                "--rule",
                "authenticators.synced",
                "--days",
                "91",
            ],
            "invalid_duration",
        ),
        (
            vec![
                "--user",
                "uma",
                "--rule",
                "enrolment.max_passkeys",
                "--days",
                "5",
            ],
            "invalid_rule",
        ),
        (
            vec![
                "--population",
                "martians",
                "--rule",
                "authenticators.synced",
                "--days",
                "5",
            ],
            "unknown_population",
        ),
        (
            vec![
                "--user",
                "ghost",
                "--rule",
                "authenticators.synced",
                "--days",
                "5",
            ],
            "no user \"ghost\"",
        ),
    ] {
        let mut full = vec!["exception", "request", "--reason", "r"];
        full.extend(args.iter().copied());
        let err = fails(d, &full);
        assert!(err.contains(code), "{args:?}: {err}");
    }
    let err = fails(
        d,
        &[
            "exception",
            "request",
            "--rule",
            "authenticators.synced",
            "--reason",
            "r",
            "--days",
            "5",
        ],
    );
    assert!(
        err.contains("--user") || err.contains("--population"),
        "{err}"
    );
    let open = json(&ok(d, &["approval", "list", "--open", "--format", "json"]));
    assert_eq!(open, serde_json::json!([]), "refused requests open nothing");
    assert_audit_intact(d);
}

/// Puts `n` unused stand-in recovery codes (and one used one) for `username` straight into the
/// database: nothing in Keyplane generates them yet.
fn seed_recovery_codes(data: &Path, username: &str, n: usize) {
    let url = format!("sqlite://{}", data.join("keyplane.db").display());
    let username = username.to_string();
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let row = sqlx::query("SELECT id, tenant_id FROM users WHERE username = $1")
            .bind(&username)
            .fetch_one(&pool)
            .await
            .unwrap();
        let (user, tenant): (String, String) = (
            sqlx::Row::get(&row, "id"),
            sqlx::Row::get(&row, "tenant_id"),
        );
        for i in 0..=n {
            sqlx::query("INSERT INTO recovery_codes (id, tenant_id, user_id, hash, created_at, used_at) VALUES ($1, $2, $3, $4, 1, $5)")
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&tenant)
                .bind(&user)
                .bind(format!("$argon2id$stand-in-{i}"))
                .bind(if i == n { Some(2_i64) } else { None })
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    });
}

#[test]
fn an_operator_revokes_a_users_unused_recovery_codes_and_it_is_audited() {
    let dir = bootstrapped();
    let d = dir.path();
    ok(d, &["admin", "invite", "carol"]);
    seed_recovery_codes(d, "carol", 3);
    let out = ok(d, &["user", "recovery-codes", "carol", "--revoke"]);
    assert!(
        out.contains("revoked 3 unused recovery code(s) of carol"),
        "{out}"
    );
    let out = ok(d, &["user", "recovery-codes", "carol", "--revoke"]);
    assert!(
        out.contains("revoked 0 unused"),
        "the used one is history: {out}"
    );
    let revoked = events(d, "recovery.codes_revoked");
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[0]["details"]["count"], 3);
    assert_eq!(revoked[1]["details"]["count"], 0);
    assert_eq!(revoked[0]["actor"]["id"], "cli:operator");
    assert_eq!(revoked[0]["target"]["id"], user(d, "carol")["id"]);
    let err = fails(d, &["user", "recovery-codes", "carol"]);
    assert!(err.contains("--revoke"), "{err}");
    let err = fails(d, &["user", "recovery-codes", "nobody", "--revoke"]);
    assert!(err.contains("no user"), "{err}");
    assert_audit_intact(d);
}

#[test]
fn a_recovery_case_is_handled_from_the_command_line_under_dual_control() {
    let dir = bootstrapped();
    let d = dir.path();
    ok(d, &["admin", "invite", "carol"]);
    let policy = d.join("recovery.toml");
    std::fs::write(
        &policy,
        "version = 1\n[recovery]\ncase_checks = [\"identity_document\", \"manager_callback\"]\ncase_approval = true\ncooling_off_secs = 0\n",
    )
    .unwrap();
    ok(d, &["policy", "apply", policy.to_str().unwrap()]);
    let out = ok(d, &["case", "open", "carol"]);
    assert!(
        out.contains("checks: identity_document, manager_callback"),
        "{out}"
    );
    let listed = json(&ok(d, &["case", "list", "--open", "--format", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let err = fails(d, &["case", "open", "carol"]);
    assert!(err.contains("case_open"), "{err}");

    let (ok_, out, err) = run_as(d, "alice", &["case", "take", &id]);
    assert!(ok_, "{err}");
    assert!(out.contains("is verifying"), "{out}");
    let (ok_, _, err) = run_as(
        d,
        "bob",
        &[
            "case",
            "check",
            &id,
            "identity_document",
            "--evidence",
            "passport",
        ],
    );
    assert!(!ok_ && err.contains("not_case_agent"), "{err}");
    let (ok_, out, err) = run_as(
        d,
        "alice",
        &[
            "case",
            "check",
            &id,
            "identity_document",
            "--evidence",
            "passport seen",
        ],
    );
    assert!(ok_, "{err}");
    assert!(out.contains("checks to go: manager_callback"), "{out}");
    let (ok_, _, err) = run_as(d, "alice", &["case", "verified", &id]);
    assert!(!ok_ && err.contains("checks_incomplete"), "{err}");
    run_as(
        d,
        "alice",
        &[
            "case",
            "check",
            &id,
            "manager_callback",
            "--evidence",
            "called on the directory number",
        ],
    );
    let (ok_, out, err) = run_as(d, "alice", &["case", "verified", &id]);
    assert!(ok_, "{err}");
    assert!(out.contains("awaiting approval"), "{out}");
    let open = json(&ok(d, &["approval", "list", "--open", "--format", "json"]));
    assert_eq!(open[0]["action"], "recovery.approve", "{open}");
    let approval = open[0]["id"].as_str().unwrap().to_string();
    let (ok_, _, err) = run_as(d, "alice", &["approval", "approve", &approval]);
    assert!(!ok_ && err.contains("approver_is_requester"), "{err}");
    let (ok_, _, err) = run_as(d, "bob", &["approval", "approve", &approval]);
    assert!(ok_, "{err}");
    let shown = json(&ok(d, &["case", "show", &id]));
    assert_eq!(shown["state"], "ready");
    assert_eq!(shown["approved_by"], "cli:bob");
    assert!(shown["timeline"].as_array().is_some_and(|t| !t.is_empty()));
    let out = ok(
        d,
        &[
            "case",
            "deny",
            &id,
            "--reason",
            "caller hung up before the link",
        ],
    );
    assert!(out.contains("is denied"), "{out}");
    let err = fails(d, &["case", "cancel", &id, "--reason", "x"]);
    assert!(err.contains("case_state"), "{err}");
    let err = fails(d, &["case", "take", "not-an-id"]);
    assert!(err.contains("not a recovery case id"), "{err}");
    let err = fails(d, &["case", "list", "--state", "lost"]);
    assert!(err.contains("unknown state"), "{err}");
    assert_eq!(events(d, "recovery.case_denied").len(), 1);
    assert_audit_intact(d);
}
#[test]
fn contacts_are_set_checked_and_notifications_listed_from_the_command_line() {
    let dir = bootstrapped();
    let d = dir.path();
    ok(d, &["admin", "invite", "carol"]);
    let err = fails(d, &["user", "set-contact", "carol", "carol"]);
    assert!(err.contains("invalid_contact"), "{err}");
    let err = fails(d, &["user", "set-contact", "carol"]);
    assert!(err.contains("<EMAIL>"), "{err}");
    let err = fails(d, &["user", "set-contact", "ghost", "g@example.com"]);
    assert!(err.contains("no user \"ghost\""), "{err}");
    assert!(
        events(d, "user.contact_changed").is_empty(),
        "refusals record nothing"
    );

    let out = ok(d, &["user", "set-contact", "carol", "carol@example.com"]);
    assert!(
        out.contains("user carol now has contact carol@example.com"),
        "{out}"
    );
    let out = ok(d, &["user", "show", "carol"]);
    assert!(out.contains("contact:      carol@example.com"), "{out}");
    let changed = events(d, "user.contact_changed");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["actor"]["id"], "cli:operator");
    assert_eq!(changed[0]["details"]["to"], "carol@example.com");

    // The change is announced to carol: a pending notification (no server runs to send it).
    let carol = user(d, "carol")["id"].clone();
    let listed = json(&ok(
        d,
        &[
            "notifications",
            "list",
            "--user",
            "carol",
            "--format",
            "json",
        ],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["kind"], "user.contact_changed");
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(listed[0]["user_id"], carol);
    let pending = json(&ok(
        d,
        &[
            "notifications",
            "list",
            "--status",
            "sent",
            "--format",
            "json",
        ],
    ));
    assert_eq!(pending.as_array().unwrap().len(), 0);
    let err = fails(d, &["notifications", "list", "--status", "lost"]);
    assert!(err.contains("pending, sent, failed or skipped"), "{err}");
    let id = listed[0]["id"].as_str().unwrap();
    let err = fails(d, &["notifications", "retry", id]);
    assert!(
        err.contains("invalid_transition"),
        "only failed or skipped: {err}"
    );
    let err = fails(d, &["notifications", "retry", UNKNOWN]);
    assert!(err.contains("notification_not_found"), "{err}");
    let err = fails(d, &["notifications", "retry", "nope"]);
    assert!(err.contains("not a notification id"), "{err}");

    let out = ok(d, &["user", "set-contact", "carol", "--clear"]);
    assert!(out.contains("no contact"), "{out}");
    assert_eq!(events(d, "user.contact_changed").len(), 2);
    assert_audit_intact(d);
}

#[test]
fn serve_refuses_to_start_without_the_webhook_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyplane(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "KEYPLANE_NOTIFICATIONS__WEBHOOK__URL",
            "https://hooks.example.com/keyplane",
        )
        .env(
            "KEYPLANE_NOTIFICATIONS__WEBHOOK__SECRET_FILE",
            dir.path().join("missing.secret"),
        )
        .output()
        .expect("run keyplane serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notifications.webhook.secret_file"), "{err}");
}

const OLD_MODEL: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const NEW_MODEL: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";

/// Stores an active passkey of model `aaguid` for `username` straight into the database (the
/// command line has no ceremonies): its record id.
fn seed_passkey(data: &Path, username: &str, aaguid: &str) -> String {
    let url = format!("sqlite://{}", data.join("keyplane.db").display());
    let username = username.to_string();
    let aaguid = aaguid.to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let record = id.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let row = sqlx::query("SELECT id, tenant_id FROM users WHERE username = $1")
            .bind(&username)
            .fetch_one(&pool)
            .await
            .unwrap();
        let (user, tenant): (String, String) = (
            sqlx::Row::get(&row, "id"),
            sqlx::Row::get(&row, "tenant_id"),
        );
        sqlx::query(
            "INSERT INTO credentials (id, tenant_id, user_id, credential_id, public_key, sign_count, aaguid, transports, \
             backup_eligible, backup_state, attestation_format, attestation_type, user_verified, nickname, created_at, \
             last_used_at, status, status_reason, library_state, attestation_trusted) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, '[]', 0, 0, 'none', 'none', 1, 'Key', 1, NULL, 'active', NULL, '{}', 0)",
        )
        .bind(&record)
        .bind(&tenant)
        .bind(&user)
        .bind(record.as_bytes().to_vec())
        .bind(vec![0xa5_u8])
        .bind(&aaguid)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    id
}

#[test]
fn lost_passkeys_and_campaigns_from_the_command_line() {
    let dir = bootstrapped();
    let d = dir.path();
    ok(d, &["admin", "invite", "ann"]);
    ok(d, &["admin", "invite", "ben"]);
    let ann_old = seed_passkey(d, "ann", OLD_MODEL);
    seed_passkey(d, "ann", NEW_MODEL);
    let ben_old = seed_passkey(d, "ben", OLD_MODEL);

    // Marking lost checks the id and the reason, revokes once and says what the user must do.
    let err = fails(d, &["credential", "lost", "not-an-id", "--reason", "x"]);
    assert!(err.contains("is not a credential id"), "{err}");
    let err = fails(d, &["credential", "lost", UNKNOWN, "--reason", "x"]);
    assert!(err.contains("credential_not_found"), "{err}");
    let err = fails(d, &["credential", "lost", &ann_old, "--reason", ""]);
    assert!(err.contains("invalid_reason"), "{err}");
    let out = ok(
        d,
        &["credential", "lost", &ann_old, "--reason", "phone stolen"],
    );
    assert!(
        out.contains("re-enrolment recommended") && out.contains("1 other active passkey"),
        "{out}"
    );
    let err = fails(d, &["credential", "lost", &ann_old, "--reason", "again"]);
    assert!(err.contains("invalid_transition"), "{err}");
    let lost = events(d, "credential.lost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["details"]["user_id"], user(d, "ann")["id"]);
    assert_eq!(lost[0]["actor"]["id"], "cli:operator");
    let out = ok(d, &["credential", "lost", &ben_old, "--reason", "lost"]);
    assert!(out.contains("re-enrolment required"), "{out}");

    // A campaign: bad input first, then one open campaign per model.
    let err = fails(
        d,
        &["campaign", "start", "--aaguid", "yubikey", "--reason", "x"],
    );
    assert!(err.contains("invalid_aaguid"), "{err}");
    let err = fails(
        d,
        &[
            "campaign", "start", "--aaguid", NEW_MODEL, "--reason", "x", "--action", "explode",
        ],
    );
    assert!(err.contains("invalid_action"), "{err}");
    assert!(events(d, "campaign.started").is_empty());
    let started = json(&ok(
        d,
        &[
            "campaign", "start", "--aaguid", NEW_MODEL, "--reason", "recall", "--format", "json",
        ],
    ));
    let c = &started[0];
    assert_eq!(
        (c["affected"].as_i64(), c["remaining"].as_i64()),
        (Some(1), Some(1)),
        "{c}"
    );
    let id = c["id"].as_str().unwrap().to_string();
    let err = fails(
        d,
        &[
            "campaign", "start", "--aaguid", NEW_MODEL, "--reason", "again",
        ],
    );
    assert!(err.contains("campaign_already_open"), "{err}");
    let listed = json(&ok(d, &["campaign", "list", "--format", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let shown = json(&ok(d, &["campaign", "show", &id, "--format", "json"]));
    assert_eq!(
        (shown["status"].as_str(), shown["marked"].as_i64()),
        (Some("open"), Some(1))
    );
    let err = fails(d, &["campaign", "show", "nonsense"]);
    assert!(err.contains("is not a campaign id"), "{err}");
    let err = fails(d, &["campaign", "show", UNKNOWN]);
    assert!(err.contains("campaign_not_found"), "{err}");
    let marked = events(d, "user.re_enrolment_required");
    assert!(
        marked
            .iter()
            .any(|e| e["details"]["campaign"] == id.as_str()),
        "{marked:?}"
    );
    // Resuming marks whoever holds the model now and is not marked yet, and no one twice.
    let out = ok(d, &["campaign", "resume", &id]);
    assert!(
        out.contains("0 more user(s) marked; 1 marked in all"),
        "{out}"
    );
    seed_passkey(d, "ben", NEW_MODEL);
    let out = ok(d, &["campaign", "resume", &id]);
    assert!(
        out.contains("1 more user(s) marked; 2 marked in all"),
        "{out}"
    );
    let shown = json(&ok(d, &["campaign", "show", &id, "--format", "json"]));
    assert_eq!(
        (shown["affected"].as_i64(), shown["marked"].as_i64()),
        (Some(1), Some(2))
    );
    let csv = ok(d, &["report", "campaigns", "--format", "csv"]);
    assert!(csv.starts_with("id,aaguid,model,action,"), "{csv}");
    assert!(
        csv.contains(&format!("{id},{NEW_MODEL},,re_enrol,admin,open,1,2,0,2,")),
        "{csv}"
    );
    let err = fails(d, &["campaign", "close", &id, "--reason", ""]);
    assert!(err.contains("invalid_reason"), "{err}");
    let out = ok(d, &["campaign", "close", &id, "--reason", "done"]);
    assert!(
        out.contains("closed: 0 of 2 user(s) re-enrolled, 2 remaining"),
        "{out}"
    );
    let err = fails(d, &["campaign", "resume", &id]);
    assert!(err.contains("campaign_closed"), "{err}");
    let err = fails(d, &["campaign", "close", &id, "--reason", "again"]);
    assert!(err.contains("campaign_closed"), "{err}");
    assert_eq!(events(d, "campaign.started").len(), 1);
    assert_eq!(events(d, "campaign.closed").len(), 1);
    assert_audit_intact(d);
}

#[test]
fn webhook_endpoints_and_their_outbox_from_the_command_line() {
    let dir = bootstrapped();
    let d = dir.path();
    let created = json(&ok(
        d,
        &[
            "client",
            "create",
            "--name",
            "siem",
            "--owner",
            "admin",
            "--webhook-url",
            "https://siem.example.com/keyplane",
            "--event",
            "policy.activated",
            "--event",
            "credential.revoked",
            "--format",
            "json",
        ],
    ));
    assert_eq!(created["client"]["kind"], "webhook");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{created}");
    for (args, error) in [
        (
            vec![
                "--webhook-url",
                "https://siem.example.com/k",
                "--event",
                "authentication.succeeded",
            ],
            "invalid_event_type",
        ),
        (
            vec![
                "--webhook-url",
                "http://siem.example.com/k",
                "--event",
                "policy.activated",
            ],
            "invalid_webhook_url",
        ),
        (
            vec!["--webhook-url", "https://siem.example.com/k"],
            "invalid_event_type",
        ),
        (
            vec!["--event", "policy.activated"],
            "--event needs --webhook-url",
        ),
        (
            vec![
                "--webhook-url",
                "https://siem.example.com/k",
                "--event",
                "policy.activated",
                "--scope",
                "users.read",
            ],
            "invalid_scope",
        ),
    ] {
        let mut full = vec!["client", "create", "--name", "bad", "--owner", "admin"];
        full.extend(args.iter().copied());
        let err = fails(d, &full);
        assert!(err.contains(error), "{args:?}: {err}");
    }
    // A policy applied: its event waits in the outbox for the endpoint.
    let policy = d.join("policy.toml");
    std::fs::write(&policy, "version = 1\n[assurance]\n").unwrap();
    ok(d, &["policy", "apply", policy.to_str().unwrap()]);
    let pending = json(&ok(
        d,
        &[
            "webhook",
            "deliveries",
            "--status",
            "pending",
            "--format",
            "json",
        ],
    ));
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending[0]["event_type"], "policy.activated");
    assert_eq!(pending[0]["payload"]["type"], "policy.activated");
    assert!(
        !pending.to_string().contains(&secret[6..]),
        "no secret in the outbox"
    );
    let id = pending[0]["id"].as_str().unwrap();
    let err = fails(d, &["webhook", "replay", id]);
    assert!(err.contains("delivery_pending"), "{err}");
    let err = fails(d, &["webhook", "replay", "msg_nope"]);
    assert!(err.contains("delivery_not_found"), "{err}");
    let err = fails(d, &["webhook", "deliveries", "--status", "lost"]);
    assert!(err.contains("invalid_status"), "{err}");
    assert_audit_intact(d);
}
