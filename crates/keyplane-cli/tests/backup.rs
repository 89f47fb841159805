//! `keyplane backup` and `keyplane restore` with the real binary: an online copy while the server
//! runs, verified; a restore only into an empty data directory, only of a chain that verifies
//! (with the deployment's checkpoint keys, or keys given), after which the data is all there.

mod common;

use common::{fails, keyplane, ok, run, serve};
use std::path::Path;
use std::process::Command;

/// A server stopped with SIGTERM leaves one self-contained SQLite file: the write-ahead log is
/// checkpointed into it and removed, so copying `keyplane.db` alone copies everything.
#[test]
fn a_stopped_server_leaves_a_self_contained_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = serve(d, &[]).0;
    for i in 0..20 {
        ok(d, &["admin", "invite", &format!("person{i}")]);
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a graceful stop: {status}");
    let wal = d.join("keyplane.db-wal");
    assert!(
        !wal.exists(),
        "the write-ahead log was checkpointed and removed ({} bytes left)",
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
    );
    // The database file alone, elsewhere: every invitation is in it, and the chain verifies.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("keyplane.db"), copy.path().join("keyplane.db")).unwrap();
    let users = ok(copy.path(), &["user", "list"]);
    for i in 0..20 {
        assert!(
            users.contains(&format!("person{i}")),
            "person{i} in {users}"
        );
    }
    ok(copy.path(), &["audit", "verify"]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn a_backup_is_taken_online_verified_and_restored_only_where_it_belongs() {
    let live = tempfile::tempdir().unwrap();
    let d = live.path();
    let mut server = serve(d, &[]).0;
    // Something to keep: a user, and a signed checkpoint over the chain.
    ok(d, &["admin", "invite", "carol"]);
    ok(d, &["audit", "checkpoint"]);
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("keyplane.backup");
    let f = file.to_str().unwrap();
    let out = ok(d, &["backup", f]);
    assert!(out.contains("audit event(s) verified"), "{out}");
    assert!(file.is_file());
    let err = fails(d, &["backup", f]);
    assert!(err.contains("never overwrites"), "{err}");
    server.kill().unwrap();
    server.wait().unwrap();

    // Not over a database that exists.
    let err = fails(d, &["restore", f]);
    assert!(
        err.contains("restore only into an empty data directory"),
        "{err}"
    );

    // Into an empty data directory without the checkpoint keys: refused, nothing left behind.
    let bare = tempfile::tempdir().unwrap();
    let err = fails(bare.path(), &["restore", f]);
    assert!(
        err.contains("does not verify") && err.contains("audit-keys"),
        "{err}"
    );
    assert!(!bare.path().join("keyplane.db").exists());
    assert!(!bare.path().join("keyplane.restoring").exists());

    // With the keys given: restored.
    let keys = backups.path().join("trusted.txt");
    let pubs: Vec<String> = std::fs::read_dir(d.join("audit-keys"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pub"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    std::fs::write(&keys, pubs.join("\n")).unwrap();
    let out = ok(
        bare.path(),
        &["restore", f, "--trusted-keys", keys.to_str().unwrap()],
    );
    assert!(out.contains("restored"), "{out}");

    // The usual way: the key directory first, then the database.
    let fresh = tempfile::tempdir().unwrap();
    copy_dir(&d.join("audit-keys"), &fresh.path().join("audit-keys"));
    ok(fresh.path(), &["restore", f]);
    let users = ok(fresh.path(), &["user", "list", "--format", "json"]);
    assert!(users.contains("\"carol\""), "{users}");
    ok(fresh.path(), &["audit", "verify"]);

    // A tampered backup is refused.
    let url = format!("sqlite:{}", file.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_events SET actor_id = 'cli:mallory' WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let other = tempfile::tempdir().unwrap();
    copy_dir(&d.join("audit-keys"), &other.path().join("audit-keys"));
    let err = fails(other.path(), &["restore", f]);
    assert!(err.contains("does not verify"), "{err}");
    assert!(!other.path().join("keyplane.db").exists());

    // PostgreSQL has its own tools.
    let (okay, _, err) = {
        let out = keyplane(d)
            .args([
                "--database-url",
                "postgres://nobody@127.0.0.1:1/none",
                "backup",
                "x.db",
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            (),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert!(!okay && err.contains("pg_dump"), "{err}");
}

#[test]
fn doctor_says_what_is_wrong_in_plain_words() {
    let live = tempfile::tempdir().unwrap();
    let d = live.path();
    let mut server = serve(d, &[]).0;
    server.kill().unwrap();
    server.wait().unwrap();
    // A fresh quickstart: plain http on localhost, no MDS BLOB, keys present.
    let out = ok(d, &["doctor", "--format", "json"]);
    let checks: serde_json::Value = serde_json::from_str(&out).unwrap();
    let status = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks}"))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status("database"), "ok");
    assert_eq!(status("clock"), "ok");
    assert_eq!(
        status("tenant default: origins"),
        "warn",
        "plain http on localhost"
    );
    assert_eq!(status("audit checkpoint key"), "ok");
    assert_eq!(status("OpenID Connect signing key"), "ok");
    assert_eq!(status("authenticator metadata"), "warn");
    // A key others can read, and a public URL that is not https: failures, non-zero exit.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = d.join("oidc-keys/signing.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let config = d.join("keyplane.toml");
    std::fs::write(&config, "public_url = \"http://keyplane.example\"\n").unwrap();
    let (okay, out, err) = run(d, &["--config", config.to_str().unwrap(), "doctor"]);
    assert!(!okay, "{out}");
    assert!(err.contains("2 check(s) failed"), "{err}");
    assert!(
        out.contains("FAIL  OpenID Connect signing key") && out.contains("chmod 600"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  tls") && out.contains("not https"),
        "{out}"
    );
}

#[tokio::test]
async fn migrate_moves_a_sqlite_deployment_to_postgresql_from_the_command_line() {
    if keyplane_testkit::database::postgres_skip_allowed()
        && keyplane_testkit::postgres_admin_url().is_none()
    {
        return;
    }
    let live = tempfile::tempdir().unwrap();
    let d = live.path();
    let mut server = serve(d, &[]).0;
    ok(d, &["admin", "invite", "carol"]);
    ok(d, &["audit", "checkpoint"]);
    server.kill().unwrap();
    server.wait().unwrap();
    let pg = keyplane_testkit::TestDatabase::new(keyplane_testkit::Backend::Postgres).await;
    let from = format!("sqlite:{}", d.join("keyplane.db").display());
    let out = ok(d, &["migrate", "--from", &from, "--to", &pg.url]);
    assert!(out.contains("audit event(s) verified"), "{out}");
    // Resumable: again, nothing new.
    let (okay, _, err) = run(d, &["migrate", "--from", &from, "--to", &pg.url]);
    assert!(okay && err.contains("already there"), "{err}");
    let users = ok(
        d,
        &[
            "--database-url",
            &pg.url,
            "user",
            "list",
            "--format",
            "json",
        ],
    );
    assert!(users.contains("\"carol\""), "{users}");
    ok(d, &["--database-url", &pg.url, "audit", "verify"]);
    let err = fails(
        d,
        &[
            "migrate",
            "--from",
            "postgres://x@localhost/y",
            "--to",
            &pg.url,
        ],
    );
    assert!(err.contains("--from must be sqlite:PATH"), "{err}");
    pg.drop_database().await;
}
