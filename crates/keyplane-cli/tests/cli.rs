//! The `keyplane` binary end to end: first start and restart, the admin commands, configuration
//! from file and environment, and errors that say what is wrong.

mod common;

use common::{keyplane, run};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `keyplane serve` on a random port; returns the child, its address and its stdout so far.
fn serve(data: &Path) -> (Child, String, String) {
    let mut child = keyplane(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyplane serve");
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("Keyplane listening on http://") {
                let _ = tx.send(
                    addr.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server announces its address");
    // Everything printed before "listening" is on stdout already; read what is there.
    let (otx, orx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = otx.send(line);
        }
    });
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Ok(line) = orx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        printed.push_str(&line);
        printed.push('\n');
    }
    (child, addr, printed)
}

/// A minimal HTTP/1.1 GET over a plain socket (the test needs no HTTP client for one request).
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn stop(mut child: Child) {
    // SIGTERM, as an orchestrator would; the server shuts down gracefully.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("keyplane serve did not stop on SIGTERM");
}

#[test]
fn first_start_bootstraps_and_prints_a_link_restart_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, printed) = serve(dir.path());
    assert!(
        printed.contains("/enrol#token="),
        "first start prints the enrolment link:\n{printed}"
    );
    assert!(
        dir.path().join("keyplane.db").exists(),
        "SQLite database in the data directory"
    );
    let ready = http_get(&addr, "/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("\"ready\""),
        "{ready}"
    );
    assert!(
        dir.path().join("keyplane.db-wal").exists(),
        "SQLite runs in WAL mode"
    );
    stop(child);
    let (child, _, printed) = serve(dir.path());
    assert!(
        !printed.contains("/enrol#token="),
        "a second start prints no new link:\n{printed}"
    );
    stop(child);
    let (ok, out, _) = run(dir.path(), &["tenant", "list", "--format", "json"]);
    assert!(ok);
    let tenants: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tenants[0]["name"], "default");
    assert_eq!(tenants[0]["rp_id"], "localhost");
    assert_eq!(tenants[0]["origins"][0], "http://localhost:8080");
}

#[test]
fn admin_commands_create_list_and_invite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out, err) = run(
        d,
        &[
            "tenant",
            "create",
            "acme",
            "--rp-id",
            "acme.test",
            "--origin",
            "https://login.acme.test",
            "--hostname",
            "login.acme.test",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("created tenant acme"));
    let (ok, out, _) = run(d, &["tenant", "list"]);
    assert!(ok);
    assert!(out.starts_with("NAME"), "a table with a header:\n{out}");
    assert!(out.contains("acme.test"));

    let (ok, out, err) = run(
        d,
        &[
            "admin",
            "invite",
            "Alice@Example.com",
            "--tenant",
            "acme",
            "--display-name",
            "Alice",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("https://login.acme.test/enrol#token="),
        "{out}"
    );
    let (ok, out, _) = run(d, &["user", "list", "--tenant", "acme", "--format", "json"]);
    assert!(ok);
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(users[0]["username"], "alice@example.com");
    assert_eq!(users[0]["display_name"], "Alice");
    assert_eq!(users[0]["passkeys"], 0);
    let (ok, out, _) = run(
        d,
        &["user", "show", "alice@example.com", "--tenant", "acme"],
    );
    assert!(ok);
    assert!(out.contains("display name: Alice"));
    let (ok, out, _) = run(
        d,
        &["credential", "list", "--tenant", "acme", "--format", "json"],
    );
    assert!(ok);
    assert_eq!(out.trim(), "[]");
}

#[test]
fn errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, _, err) = run(
        d,
        &[
            "tenant",
            "create",
            "Bad Name",
            "--rp-id",
            "x.test",
            "--origin",
            "https://x.test",
        ],
    );
    assert!(!ok);
    assert!(err.contains("tenant name"), "{err}");
    let (ok, _, err) = run(
        d,
        &[
            "tenant",
            "create",
            "evil",
            "--rp-id",
            "bank.test",
            "--origin",
            "https://evil.test",
        ],
    );
    assert!(!ok);
    assert!(err.contains("not within RP ID"), "{err}");
    let args = [
        "tenant",
        "create",
        "twice",
        "--rp-id",
        "twice.test",
        "--origin",
        "https://twice.test",
    ];
    assert!(run(d, &args).0);
    let (ok, _, err) = run(d, &args);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = run(d, &["admin", "invite", "bob", "--tenant", "nope"]);
    assert!(!ok);
    assert!(err.contains("no tenant named"), "{err}");
    let (ok, _, err) = run(d, &["user", "show", "ghost", "--tenant", "nope"]);
    assert!(!ok, "{err}");
}

#[test]
fn configuration_comes_from_file_and_environment_and_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("keyplane.toml");
    std::fs::write(
        &cfg,
        "[default_tenant]\nname = \"main\"\nrp_name = \"Example\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(
        d,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "admin",
            "invite",
            "carol",
        ],
    );
    assert!(!ok, "no tenant yet: {out}");
    assert!(
        err.contains("no tenant named \"main\""),
        "the file's default tenant name is used: {err}"
    );

    std::fs::write(&cfg, "ceremony_ttl_secs = 0\nsession_ttl_secs = -5\n").unwrap();
    let (ok, _, err) = run(d, &["--config", cfg.to_str().unwrap(), "tenant", "list"]);
    assert!(!ok);
    assert!(
        err.contains("ceremony_ttl_secs") && err.contains("session_ttl_secs"),
        "every problem is reported: {err}"
    );

    std::fs::write(&cfg, "no_such_setting = 1\n").unwrap();
    let (ok, _, err) = run(d, &["--config", cfg.to_str().unwrap(), "tenant", "list"]);
    assert!(!ok);
    assert!(
        err.contains("no_such_setting"),
        "unknown keys are refused by name: {err}"
    );

    // The log filter and the test suite's variables are not settings; a misspelt setting is
    // refused rather than ignored.
    let out = keyplane(d)
        .args(["tenant", "list"])
        .env("KEYPLANE_LOG", "debug")
        .env("KEYPLANE_TEST_POSTGRES_URL", "postgres://x")
        .env("KEYPLANE_TEST_SKIP_BROWSER", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = keyplane(d)
        .args(["tenant", "list"])
        .env("KEYPLANE_LISTNE", "x")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt setting is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("listne"));

    let out = keyplane(d)
        .args(["tenant", "list"])
        .env("KEYPLANE_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_format"));

    let (ok, _, err) = run(
        d,
        &[
            "--config",
            d.join("missing.toml").to_str().unwrap(),
            "tenant",
            "list",
        ],
    );
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["tenant", "--help"],
        vec!["tenant", "create", "--help"],
        vec!["tenant", "list", "--help"],
        vec!["admin", "invite", "--help"],
        vec!["user", "list", "--help"],
        vec!["user", "show", "--help"],
        vec!["credential", "list", "--help"],
        vec!["policy", "lint", "--help"],
        vec!["policy", "apply", "--help"],
        vec!["user", "set-populations", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
        vec!["approval", "list", "--help"],
        vec!["approval", "approve", "--help"],
        vec!["approval", "deny", "--help"],
        vec!["client", "create", "--help"],
        vec!["client", "list", "--help"],
        vec!["client", "rotate", "--help"],
        vec!["client", "revoke", "--help"],
        vec!["oidc", "keys", "--help"],
        vec!["oidc", "rotate-key", "--help"],
        vec!["mds", "import", "--help"],
        vec!["mds", "import-names", "--help"],
        vec!["mds", "status", "--help"],
        vec!["mds", "list", "--help"],
        vec!["mds", "show", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_keyplane"))
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
}

#[test]
fn policy_commands_lint_apply_show_history_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A first start creates the default tenant.
    let (child, _, _) = serve(d);
    stop(child);
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\ncolour = \"blue\"\n[authenticators]\nsynced = \"sometimes\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(d, &["policy", "lint", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.toml:2:") && err.contains("colour"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:4:") && err.contains("authenticators.synced"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
    let (ok, _, _) = run(d, &["policy", "apply", bad.to_str().unwrap()]);
    assert!(!ok, "a document with problems is not applied");

    let good = d.join("good.toml");
    std::fs::write(&good, "version = 1\npopulations = [\"regulated\"]\n[authenticators.regulated]\nsynced = \"deny\"\n").unwrap();
    let (ok, out, err) = run(d, &["policy", "lint", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("OK"));
    let (ok, out, _) = run(d, &["policy", "show"]);
    assert!(ok && out.contains("built-in policy"), "{out}");
    let (ok, out, err) = run(d, &["policy", "apply", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("version 1 is active"), "{out}");
    let (ok, out, _) = run(d, &["policy", "show"]);
    assert!(ok && out.contains("synced = \"deny\""), "{out}");
    run(d, &["admin", "invite", "rita"]);
    let (ok, _, err) = run(
        d,
        &[
            "user",
            "set-populations",
            "rita",
            "--population",
            "martians",
        ],
    );
    assert!(!ok && err.contains("not a population"), "{err}");
    let (ok, out, err) = run(
        d,
        &[
            "user",
            "set-populations",
            "rita",
            "--population",
            "regulated",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("regulated"));
    let (ok, _, _) = run(d, &["policy", "apply", good.to_str().unwrap()]);
    assert!(ok);
    let (ok, out, _) = run(d, &["policy", "history", "--format", "json"]);
    assert!(ok);
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["active"], true);
    let stricter = d.join("stricter.toml");
    std::fs::write(&stricter, "version = 1\npopulations = [\"regulated\"]\n[authenticators.regulated]\nsynced = \"deny\"\nuser_verification = \"required\"\n").unwrap();
    let (ok, out, err) = run(d, &["policy", "diff", stricter.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("+user_verification = \"required\""), "{out}");
    let (ok, out, _) = run(d, &["policy", "diff", good.to_str().unwrap()]);
    assert!(ok && out.contains("no differences"), "{out}");
    let (ok, out, err) = run(
        d,
        &[
            "policy",
            "simulate",
            stricter.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let sim: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sim["populations"]["regulated"]["users"], 1, "{sim}");
    let (ok, _, err) = run(d, &["policy", "simulate", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("problem(s)"), "{err}");
    let (ok, _, _) = run(d, &["policy", "rollback", "1"]);
    assert!(ok);
    let (ok, out, _) = run(d, &["policy", "history", "--format", "json"]);
    assert!(ok);
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            history[0]["active"].as_bool(),
            history[1]["active"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let (ok, _, err) = run(d, &["policy", "rollback", "7"]);
    assert!(!ok && err.contains("no policy version 7"), "{err}");
    let (ok, out, _) = run(d, &["audit", "verify"]);
    assert!(ok, "every policy change is in an intact audit chain: {out}");
}

/// The same, as the operator named `login` (the CLI's actor is the OS login).
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

#[test]
fn dual_control_from_the_command_line_needs_a_second_operator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (child, _, _) = serve(d);
    stop(child);
    let dual = d.join("dual.toml");
    std::fs::write(
        &dual,
        "version = 1\n[governance]\ndual_control = [\"policy.apply\"]\n",
    )
    .unwrap();
    let next = d.join("next.toml");
    std::fs::write(
        &next,
        "version = 1\n[governance]\ndual_control = [\"policy.apply\"]\n[enrolment]\nmax_passkeys = 4\n",
    )
    .unwrap();
    let (ok, _, err) = run_as(d, "alice", &["policy", "apply", dual.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = run_as(d, "alice", &["policy", "apply", next.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing changed yet"), "{out}");
    let (ok, out, _) = run_as(
        d,
        "alice",
        &["approval", "list", "--open", "--format", "json"],
    );
    assert!(ok);
    let open: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(open.as_array().unwrap().len(), 1, "{out}");
    let id = open[0]["id"].as_str().unwrap().to_string();
    assert_eq!(open[0]["requested_by"], "cli:alice");
    let (ok, _, err) = run_as(d, "alice", &["approval", "approve", &id]);
    assert!(!ok && err.contains("approver_is_requester"), "{err}");
    let (ok, out, _) = run_as(d, "alice", &["policy", "show"]);
    assert!(ok && !out.contains("max_passkeys = 4"), "{out}");
    let (ok, out, err) = run_as(d, "bob", &["approval", "approve", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("\"version\":2"), "{out}");
    let (ok, out, _) = run_as(d, "bob", &["policy", "show"]);
    assert!(ok && out.contains("max_passkeys = 4"), "{out}");
    let (ok, _, err) = run_as(d, "carol", &["approval", "deny", &id]);
    assert!(!ok && err.contains("approval_decided"), "{err}");
    let (ok, _, err) = run_as(d, "carol", &["approval", "approve", "nonsense"]);
    assert!(!ok && err.contains("not an approval id"), "{err}");
    let (ok, out, _) = run(d, &["audit", "verify"]);
    assert!(ok, "{out}");
}

/// `keyplane serve` with debug logs, all of stderr kept: (child, address, the log so far).
fn serve_logged(data: &Path) -> (Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = keyplane(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KEYPLANE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyplane serve");
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("Keyplane listening on http://") {
                let _ = tx.send(
                    addr.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            let mut log = kept.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server announces its address");
    (child, addr, log)
}

/// A GET with a bearer token over a plain socket: the status code.
fn get_with_token(addr: &str, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn client_commands_create_list_rotate_and_revoke_and_no_secret_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (child, addr, log) = serve_logged(d);
    // The first start made `admin` an owner; a client for the SIEM, owned by them.
    let (ok, out, err) = run_as(
        d,
        "alice",
        &[
            "client",
            "create",
            "--name",
            "siem",
            "--owner",
            "admin",
            "--scope",
            "users.read",
            "--scope",
            "audit.read",
            "--format",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let created = json_of(&out);
    let id = created["client"]["id"].as_str().unwrap().to_string();
    let first = created["secret"].as_str().unwrap().to_string();
    assert!(first.starts_with("kpm_"), "{out}");
    assert_eq!(created["client"]["created_by"], "cli:alice");
    assert_eq!(get_with_token(&addr, "/api/v1/admin/users", &first), 200);
    assert_eq!(
        get_with_token(&addr, "/api/v1/admin/credentials", &first),
        403
    );
    assert_eq!(get_with_token(&addr, "/api/v1/me", &first), 401);
    let (ok, out, _) = run(d, &["client", "list"]);
    assert!(ok);
    assert!(
        out.starts_with("ID") && out.contains("siem") && out.contains("users.read,audit.read"),
        "{out}"
    );
    assert!(
        !out.contains(&first[4..]),
        "a listing shows no secret:\n{out}"
    );
    let (ok, out, _) = run(d, &["client", "list", "--format", "json"]);
    assert!(ok);
    let listed = json_of(&out);
    assert_eq!(listed[0]["owner_username"], "admin");
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");

    // Rotation without overlap: the old secret stops, the new one works.
    let (ok, out, err) = run(d, &["client", "rotate", &id, "--overlap-hours", "0"]);
    assert!(ok, "{err}");
    let second = out
        .split_whitespace()
        .find(|w| w.starts_with("kpm_"))
        .unwrap_or_else(|| panic!("the new secret is printed: {out}"))
        .to_string();
    assert_eq!(get_with_token(&addr, "/api/v1/admin/users", &first), 401);
    assert_eq!(get_with_token(&addr, "/api/v1/admin/users", &second), 200);
    let (ok, _, err) = run(d, &["client", "rotate", &id, "--overlap-hours", "500"]);
    assert!(!ok && err.contains("invalid_overlap"), "{err}");
    let (ok, out, err) = run(
        d,
        &["client", "revoke", &id, "--reason", "pipeline retired"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(get_with_token(&addr, "/api/v1/admin/users", &second), 401);

    // What software may not hold, and a client without a fit owner, are refused.
    let (ok, _, err) = run(
        d,
        &[
            "client",
            "create",
            "--name",
            "x",
            "--owner",
            "admin",
            "--scope",
            "clients.manage",
        ],
    );
    assert!(!ok && err.contains("scope_not_delegable"), "{err}");
    let (ok, _, err) = run(
        d,
        &[
            "client",
            "create",
            "--name",
            "x",
            "--owner",
            "nobody",
            "--scope",
            "users.read",
        ],
    );
    assert!(!ok && err.contains("no user"), "{err}");
    let (ok, _, err) = run(
        d,
        &["client", "create", "--name", "x", "--scope", "users.read"],
    );
    assert!(!ok && err.contains("--owner"), "{err}");

    // Under dual control a second operator approves, and the first secret goes to the requester.
    let dual = d.join("dual.toml");
    std::fs::write(
        &dual,
        "version = 1\n[governance]\ndual_control = [\"clients.create\"]\n",
    )
    .unwrap();
    let (ok, _, err) = run_as(d, "alice", &["policy", "apply", dual.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = run_as(
        d,
        "alice",
        &[
            "client",
            "create",
            "--name",
            "export",
            "--owner",
            "admin",
            "--scope",
            "users.read",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("dual control") && !out.contains("kpm_"),
        "{out}"
    );
    let (ok, out, _) = run(d, &["approval", "list", "--open", "--format", "json"]);
    assert!(ok);
    let approval = json_of(&out)[0]["id"].as_str().unwrap().to_string();
    let (ok, _, err) = run_as(d, "alice", &["approval", "approve", &approval]);
    assert!(!ok && err.contains("approver_is_requester"), "{err}");
    let (ok, out, err) = run_as(d, "bob", &["approval", "approve", &approval]);
    assert!(ok, "{err}");
    assert!(!out.contains("kpm_"), "the approver sees no secret: {out}");
    let (ok, out, _) = run(d, &["client", "list", "--format", "json"]);
    assert!(ok);
    let approved = json_of(&out)[0]["id"].as_str().unwrap().to_string();
    assert_ne!(approved, id);
    let (ok, _, err) = run_as(d, "bob", &["client", "rotate", &approved]);
    assert!(!ok && err.contains("first_secret_for_requester"), "{err}");
    let (ok, out, err) = run_as(
        d,
        "alice",
        &["client", "rotate", &approved, "--format", "json"],
    );
    assert!(ok, "{err}");
    let third = json_of(&out)["secret"].as_str().unwrap().to_string();
    assert_eq!(get_with_token(&addr, "/api/v1/admin/users", &third), 200);

    stop(child);
    // No secret in the server's log (at debug level) or in the audit log.
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("/api/v1/admin/users"),
        "the log has the requests:\n{log}"
    );
    let (ok, audit, _) = run(d, &["audit", "export"]);
    assert!(ok);
    assert!(
        audit.contains("client.created") && audit.contains("client.revoked"),
        "{audit}"
    );
    for secret in [&first, &second, &third] {
        assert!(!log.contains(&secret[4..]), "a secret is in the server log");
        assert!(
            !audit.contains(&secret[4..]),
            "a secret is in the audit log"
        );
    }
    let (ok, out, _) = run(d, &["audit", "verify"]);
    assert!(ok, "{out}");
}

/// A GET over a plain socket: (status code, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn oidc_clients_are_created_and_signing_keys_rotated_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut child, addr, log) = serve_logged(d);
    let (ok, out, err) = run_as(
        d,
        "alice",
        &[
            "client",
            "create",
            "--name",
            "wiki",
            "--owner",
            "admin",
            "--redirect-uri",
            "https://wiki.example.com/callback",
            "--auth-method",
            "client_secret_post",
            "--oidc-scope",
            "openid",
            "--format",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let created = json_of(&out);
    assert_eq!(created["client"]["kind"], "oidc_client");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        get_with_token(&addr, "/api/v1/admin/users", &secret),
        403,
        "an OIDC client's secret is no admin API token (client_kind_not_accepted)"
    );
    for (args, error) in [
        (
            vec!["--redirect-uri", "http://wiki.example.com/cb"],
            "invalid_redirect_uri",
        ),
        (
            vec![
                "--redirect-uri",
                "https://wiki.example.com/cb",
                "--scope",
                "users.read",
            ],
            "invalid_scope",
        ),
        (
            vec![
                "--redirect-uri",
                "https://wiki.example.com/cb",
                "--auth-method",
                "private_key_jwt",
            ],
            "invalid_jwks",
        ),
        (
            vec!["--auth-method", "client_secret_post"],
            "need at least one --redirect-uri",
        ),
    ] {
        let mut full = vec!["client", "create", "--name", "bad", "--owner", "admin"];
        full.extend(args.iter().copied());
        let (ok, _, err) = run(d, &full);
        assert!(!ok && err.contains(error), "{args:?}: {err}");
    }

    let (status, body) = get(&addr, "/oidc/jwks");
    assert_eq!(status, 200, "{body}");
    let before = json_of(&body)["keys"].as_array().unwrap().len();
    let (ok, out, err) = run(d, &["oidc", "rotate-key", "--overlap-hours", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("stays published for 2 hour(s)"), "{out}");
    let (ok, out, _) = run(d, &["oidc", "keys", "--format", "json"]);
    assert!(ok);
    let keys = json_of(&out);
    assert_eq!(keys.as_array().unwrap().len(), before + 1, "{keys}");
    assert_eq!(
        keys[0]["this_node"], true,
        "the newest is this node's: {keys}"
    );
    let (_, body) = get(&addr, "/oidc/jwks");
    assert_eq!(json_of(&body)["keys"].as_array().unwrap().len(), before + 1);
    let (ok, _, err) = run(d, &["oidc", "rotate-key", "--overlap-hours", "500"]);
    assert!(!ok && err.contains("invalid_overlap"), "{err}");

    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.lock().unwrap();
    assert!(!log.contains(&secret[4..]), "no secret in the server's log");
}
