//! `keyplane audit …` end to end, on SQLite and PostgreSQL: the real binary writes events (tenant
//! and invitation commands), signs checkpoints and verifies; the tests tamper with the database
//! directly, as someone with write access to it would, and check that `keyplane audit verify`
//! fails and names the kind of problem and the event. Also: `--from-checkpoint`, trusted keys,
//! key rotation, and the exports (native JSON lines verifiable without the database, and OCSF).

use keyplane_core::audit::{canonical_json, AuditEvent, CheckpointKey};
use keyplane_core::{TenantId, Timestamp};
use keyplane_testkit::{Backend, TestDatabase};
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::{AssertSqlSafe, Row};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(keyplane_testkit::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if keyplane_testkit::database::postgres_skip_allowed()
                        && keyplane_testkit::postgres_admin_url().is_none()
                    {
                        eprintln!("PostgreSQL test skipped by KEYPLANE_TEST_SKIP_POSTGRES=1 (never allowed in CI)");
                        return;
                    }
                    super::$name(keyplane_testkit::Backend::Postgres).await
                }
            )*
        }
    };
}

both_backends!(
    an_edited_field_breaks_the_chain_at_that_event,
    a_deleted_event_breaks_the_chain_at_the_next_one,
    an_inserted_event_is_found,
    reordered_events_are_found,
    a_truncated_tail_is_revealed_by_its_checkpoint,
    a_deleted_tail_disagrees_with_the_chain_head,
    a_forged_checkpoint_is_found,
    a_consistent_rewrite_is_caught_only_by_a_checkpoint,
    an_intact_log_verifies_and_from_checkpoint_starts_after_the_checkpoint,
    trusted_keys_decide_which_checkpoints_count,
    checkpoints_signed_before_a_key_rotation_still_verify,
    export_writes_verifiable_events_and_filters_them,
);

const EVENT_COLUMNS: &str = "tenant_id, seq, id, time, actor_type, actor_id, action, target_type, \
     target_id, outcome, reasons, request_id, client_ip, user_agent, details, prev_hash, hash";

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// One database (fresh), one data directory (its own checkpoint key ring), and a direct
/// connection to the database for tampering. Tenants: `acme` (the one tampered with) and `beta`
/// (3 events, must stay intact whatever happens to acme).
struct Env {
    db: TestDatabase,
    data: tempfile::TempDir,
    pool: AnyPool,
    acme: String,
    invited: AtomicUsize,
}

impl Env {
    async fn new(backend: Backend) -> Self {
        let db = TestDatabase::new(backend).await;
        let data = tempfile::tempdir().unwrap();
        let setup = |args: &[&str]| {
            let out = command(&db.url, data.path()).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "keyplane {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for rp in ["acme.test", "beta.test"] {
            let origin = format!("https://{rp}");
            let name = rp.trim_end_matches(".test");
            setup(&["tenant", "create", name, "--rp-id", rp, "--origin", &origin]);
        }
        setup(&["admin", "invite", "bob", "--tenant", "beta"]);
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&db.url)
            .await
            .expect("connect to the test database");
        let acme: String = sqlx::query("SELECT id FROM tenants WHERE name = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("id");
        Env {
            db,
            data,
            pool,
            acme,
            invited: AtomicUsize::new(0),
        }
    }

    /// acme: 9 events (tenant.created, then 4 invitations of 2 events each), a checkpoint at
    /// event 7 signed before the last invitation; beta: 3 events, a checkpoint at 3.
    async fn standard(backend: Backend) -> Self {
        let env = Env::new(backend).await;
        env.invite(3);
        let out = env.ok(&["audit", "checkpoint"]);
        assert!(out.contains("acme: signed event 7 with key "), "{out}");
        assert!(out.contains("beta: signed event 3 with key "), "{out}");
        env.invite(1);
        env
    }

    async fn finish(self) {
        self.pool.close().await;
        self.db.drop_database().await;
    }

    fn run(&self, args: &[&str]) -> Out {
        let out = command(&self.db.url, self.data.path())
            .args(args)
            .output()
            .expect("run keyplane");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.ok, "keyplane {args:?} failed: {}", out.stderr);
        out.stdout
    }

    /// `n` more invitations in acme: 2 events each (user.created, enrolment.invited).
    fn invite(&self, n: usize) {
        for _ in 0..n {
            let i = self.invited.fetch_add(1, Ordering::SeqCst);
            self.ok(&["admin", "invite", &format!("user{i}"), "--tenant", "acme"]);
        }
    }

    /// `keyplane audit verify --format json [extra]`: whether it passed, and the reports.
    fn verify(&self, extra: &[&str]) -> (bool, Vec<Value>) {
        let mut args = vec!["audit", "verify", "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let reports: Vec<Value> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify prints JSON ({e}):\n{}\nstderr: {}",
                out.stdout, out.stderr
            )
        });
        if out.ok {
            assert!(
                out.stderr.is_empty(),
                "nothing on stderr when OK: {}",
                out.stderr
            );
        } else {
            assert!(
                out.stderr.contains("failed verification"),
                "the failure is stated: {}",
                out.stderr
            );
        }
        (out.ok, reports)
    }

    /// Verifies; it must fail, with exactly `expected` problems (kind, seq) in acme, and beta
    /// intact. Returns acme's report.
    fn expect_problems(&self, extra: &[&str], expected: &[(&str, i64)]) -> Value {
        let (ok, reports) = self.verify(extra);
        let acme = report(&reports, "acme");
        assert_eq!(problems(&acme), expected, "{acme:#}");
        assert!(!ok, "verify exits non-zero: {acme:#}");
        // (Under other trusted keys beta's checkpoint is as untrusted as acme's.)
        if !extra.contains(&"--trusted-keys") {
            if let Some(beta) = reports.iter().find(|r| r["tenant"] == "beta") {
                assert_eq!(problems(beta), [], "beta is untouched: {beta:#}");
            }
        }
        acme
    }

    /// Verifies; it must pass.
    fn expect_ok(&self, extra: &[&str]) -> Value {
        let (ok, reports) = self.verify(extra);
        let acme = report(&reports, "acme");
        assert!(ok, "verify passes: {reports:#?}");
        assert_eq!(problems(&acme), [], "{acme:#}");
        acme
    }

    /// Executes tampering SQL with acme's tenant id as `$1`.
    async fn exec(&self, sql: &str) -> u64 {
        sqlx::query(AssertSqlSafe(sql.to_string()))
            .bind(self.acme.clone())
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// Adds `delta` to the seq of acme's events from `from` on (through negative numbers, so
    /// that the primary key holds after every row whatever order the rows are updated in).
    async fn renumber(&self, from: i64, delta: i64) {
        self.exec(&format!(
            "UPDATE audit_events SET seq = -seq WHERE tenant_id = $1 AND seq >= {from}"
        ))
        .await;
        self.exec(&format!(
            "UPDATE audit_events SET seq = -seq + ({delta}) WHERE tenant_id = $1 AND seq < 0"
        ))
        .await;
    }

    /// acme's events as stored, in order.
    async fn events(&self) -> Vec<AuditEvent> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1 ORDER BY seq"
        )))
        .bind(self.acme.clone())
        .fetch_all(&self.pool)
        .await
        .unwrap();
        rows.iter()
            .map(|r| AuditEvent {
                tenant_id: TenantId::from_trusted(r.get("tenant_id")),
                seq: r.get("seq"),
                id: r.get("id"),
                time: Timestamp(r.get("time")),
                actor_type: r.get("actor_type"),
                actor_id: r.get("actor_id"),
                action: r.get("action"),
                target_type: r.get("target_type"),
                target_id: r.get("target_id"),
                outcome: r.get("outcome"),
                reasons: serde_json::from_str(&r.get::<String, _>("reasons")).unwrap(),
                request_id: r.get("request_id"),
                client_ip: r.get("client_ip"),
                user_agent: r.get("user_agent"),
                details: r.get("details"),
                prev_hash: r.get("prev_hash"),
                hash: r.get("hash"),
            })
            .collect()
    }

    /// Overwrites the stored event at `e.seq` with `e`'s content and hashes.
    async fn rewrite(&self, e: &AuditEvent) {
        let n = sqlx::query(
            "UPDATE audit_events SET actor_id = $1, details = $2, prev_hash = $3, hash = $4 \
             WHERE tenant_id = $5 AND seq = $6",
        )
        .bind(e.actor_id.clone())
        .bind(e.details.clone())
        .bind(e.prev_hash.clone())
        .bind(e.hash.clone())
        .bind(self.acme.clone())
        .bind(e.seq)
        .execute(&self.pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(n, 1);
    }

    async fn insert(&self, e: &AuditEvent) {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        )))
        .bind(e.tenant_id.as_str().to_string())
        .bind(e.seq)
        .bind(e.id.clone())
        .bind(e.time.0)
        .bind(e.actor_type.clone())
        .bind(e.actor_id.clone())
        .bind(e.action.clone())
        .bind(e.target_type.clone())
        .bind(e.target_id.clone())
        .bind(e.outcome.clone())
        .bind(serde_json::to_string(&e.reasons).unwrap())
        .bind(e.request_id.clone())
        .bind(e.client_ip.clone())
        .bind(e.user_agent.clone())
        .bind(e.details.clone())
        .bind(e.prev_hash.clone())
        .bind(e.hash.clone())
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn set_head(&self, seq: i64, hash: &[u8]) {
        sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE tenant_id = $3")
            .bind(seq)
            .bind(hash.to_vec())
            .bind(self.acme.clone())
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn head(&self) -> (i64, Vec<u8>) {
        let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
            .bind(self.acme.clone())
            .fetch_one(&self.pool)
            .await
            .unwrap();
        (row.get("seq"), row.get("hash"))
    }

    /// acme's checkpoints: (seq, hash, key_id).
    async fn checkpoints(&self) -> Vec<(i64, Vec<u8>, String)> {
        sqlx::query(
            "SELECT seq, hash, key_id FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq",
        )
        .bind(self.acme.clone())
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("seq"), r.get("hash"), r.get("key_id")))
        .collect()
    }

    async fn insert_checkpoint(&self, cp: &keyplane_core::audit::Checkpoint) {
        sqlx::query(
            "INSERT INTO audit_checkpoints (tenant_id, seq, hash, signed_at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(cp.tenant_id.as_str().to_string())
        .bind(cp.seq)
        .bind(cp.hash.clone())
        .bind(cp.signed_at.0)
        .bind(cp.key_id.clone())
        .bind(cp.signature.clone())
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// `keyplane audit keys`: (key_id, active, public key hex) per row.
    fn keys(&self) -> Vec<(String, bool, String)> {
        let out = self.ok(&["audit", "keys"]);
        let mut lines = out.lines();
        assert!(lines.next().unwrap().starts_with("KEY_ID"), "{out}");
        lines
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 3, "{l}");
                (f[0].to_string(), f[1] == "true", f[2].to_string())
            })
            .collect()
    }

    /// Writes a trusted-keys file into the data directory.
    fn key_file(&self, name: &str, text: &str) -> String {
        let path = self.data.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `keyplane audit export` lines, parsed.
    fn export(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["audit", "export"];
        all.extend_from_slice(args);
        self.ok(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// The `keyplane` binary on this database and data directory, without the environment's
/// KEYPLANE_* settings.
fn command(url: &str, data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyplane"));
    c.arg("--data-dir").arg(data).arg("--database-url").arg(url);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYPLANE_") {
            c.env_remove(k);
        }
    }
    c
}

fn report(reports: &[Value], tenant: &str) -> Value {
    reports
        .iter()
        .find(|r| r["tenant"] == tenant)
        .unwrap_or_else(|| panic!("a report for {tenant}: {reports:#?}"))
        .clone()
}

fn problems(report: &Value) -> Vec<(&str, i64)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["seq"].as_i64().unwrap()))
        .collect()
}

fn message(report: &Value, i: usize) -> String {
    report["problems"][i]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A key no one trusts.
fn stranger() -> CheckpointKey {
    CheckpointKey::from_seed(&[7; 32])
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------

async fn an_edited_field_breaks_the_chain_at_that_event(backend: Backend) {
    let env = Env::standard(backend).await;
    let events = env.events().await;
    // After the checkpoint: the details of event 8.
    env.exec(
        "UPDATE audit_events SET details = '{\"role\":\"owner\",\"username\":\"user3\"}' \
         WHERE tenant_id = $1 AND seq = 8",
    )
    .await;
    let acme = env.expect_problems(&[], &[("chain_broken", 8)]);
    assert_eq!(acme["problems"][0]["event_id"], events[7].id.as_str());
    assert!(message(&acme, 0).contains("altered"), "{acme:#}");
    assert_eq!(acme["events_checked"], 7);

    // Before it: who did event 4. The first break is the one reported.
    env.exec("UPDATE audit_events SET actor_id = 'cli:mallory' WHERE tenant_id = $1 AND seq = 4")
        .await;
    let acme = env.expect_problems(&[], &[("chain_broken", 4)]);
    assert_eq!(acme["problems"][0]["event_id"], events[3].id.as_str());

    // The table names the tenant, the kind, the event and its id; beta is fine.
    let out = env.run(&["audit", "verify"]);
    assert!(!out.ok);
    assert!(
        out.stdout.contains("acme: FAILED after 3 good events"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("chain_broken at event 4 ({})", events[3].id)),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("beta: OK, 3 events verified"));
    assert!(
        out.stderr
            .contains("the audit log of 1 tenant(s) failed verification"),
        "{}",
        out.stderr
    );
    // --tenant beta alone passes.
    assert!(env.run(&["audit", "verify", "--tenant", "beta"]).ok);
    env.finish().await;
}

async fn a_deleted_event_breaks_the_chain_at_the_next_one(backend: Backend) {
    let env = Env::standard(backend).await;
    assert_eq!(
        env.exec("DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 5")
            .await,
        1
    );
    let acme = env.expect_problems(&[], &[("chain_broken", 6)]);
    assert!(
        message(&acme, 0).contains("sequence jumps from 4 to 6"),
        "{acme:#}"
    );

    // Closing the gap by renumbering breaks the link instead, at the same place.
    env.renumber(6, -1).await;
    env.set_head(8, &env.events().await[7].hash).await;
    let acme = env.expect_problems(&[], &[("chain_broken", 5)]);
    assert!(message(&acme, 0).contains("does not follow"), "{acme:#}");
    env.finish().await;
}

async fn an_inserted_event_is_found(backend: Backend) {
    let env = Env::standard(backend).await;
    let events = env.events().await;
    // A copy of event 4 slipped in after it, the rest moved up.
    env.renumber(5, 1).await;
    let mut copy = events[3].clone();
    copy.seq = 5;
    copy.id = uuid::Uuid::new_v4().to_string();
    env.insert(&copy).await;
    env.expect_problems(&[], &[("chain_broken", 5)]);

    // Sealed properly after event 4, it is the next event that no longer follows.
    copy.prev_hash = events[3].hash.clone();
    copy.hash = copy.computed_hash().to_vec();
    env.rewrite(&copy).await;
    env.expect_problems(&[], &[("chain_broken", 6)]);

    // Undone, the log verifies again.
    env.exec(&format!(
        "DELETE FROM audit_events WHERE tenant_id = $1 AND id = '{}'",
        copy.id
    ))
    .await;
    env.renumber(6, -1).await;
    env.expect_ok(&[]);

    // A well-formed event appended past the head, not through Keyplane.
    let last = &events[8];
    let mut extra = last.clone();
    extra.seq = 10;
    extra.id = uuid::Uuid::new_v4().to_string();
    extra.prev_hash = last.hash.clone();
    extra.hash = extra.computed_hash().to_vec();
    env.insert(&extra).await;
    let acme = env.expect_problems(&[], &[("head_mismatch", 10)]);
    assert!(message(&acme, 0).contains("added outside"), "{acme:#}");
    assert_eq!(acme["events_checked"], 10, "the chain itself holds");
    env.finish().await;
}

async fn reordered_events_are_found(backend: Backend) {
    let env = Env::standard(backend).await;
    let events = env.events().await;
    env.exec("UPDATE audit_events SET seq = -1 WHERE tenant_id = $1 AND seq = 4")
        .await;
    env.exec("UPDATE audit_events SET seq = 4 WHERE tenant_id = $1 AND seq = 5")
        .await;
    env.exec("UPDATE audit_events SET seq = 5 WHERE tenant_id = $1 AND seq = -1")
        .await;
    let acme = env.expect_problems(&[], &[("chain_broken", 4)]);
    assert_eq!(
        acme["problems"][0]["event_id"],
        events[4].id.as_str(),
        "the event now at 4 is the one that was at 5"
    );
    env.finish().await;
}

async fn a_truncated_tail_is_revealed_by_its_checkpoint(backend: Backend) {
    let env = Env::standard(backend).await;
    let out = env.ok(&["audit", "checkpoint"]);
    assert!(out.contains("acme: signed event 9 with key"), "{out}");
    assert!(out.contains("beta: nothing new to sign"), "{out}");
    env.invite(1);
    let acme = env.expect_ok(&[]);
    assert_eq!(acme["checkpoints_valid"], 2);
    assert_eq!(acme["last_seq"], 11);

    // Events 9–11 deleted and the head rolled back to match: the chain is whole, and only the
    // checkpoint at 9 says that it was longer.
    let events = env.events().await;
    assert_eq!(
        env.exec("DELETE FROM audit_events WHERE tenant_id = $1 AND seq > 8")
            .await,
        3
    );
    env.set_head(8, &events[7].hash).await;
    let acme = env.expect_problems(&[], &[("truncated", 9)]);
    assert!(message(&acme, 0).contains("attests 9 events"), "{acme:#}");
    assert_eq!(acme["events_checked"], 8);
    // Starting from that checkpoint finds its event missing.
    env.expect_problems(&["--from-checkpoint"], &[("truncated", 9)]);
    env.finish().await;
}

async fn a_deleted_tail_disagrees_with_the_chain_head(backend: Backend) {
    let env = Env::standard(backend).await;
    let events = env.events().await;
    // Events 8 and 9 (after the last checkpoint, at 7) deleted; the head still says 9.
    env.exec("DELETE FROM audit_events WHERE tenant_id = $1 AND seq > 7")
        .await;
    let acme = env.expect_problems(&[], &[("head_mismatch", 8)]);
    assert!(message(&acme, 0).contains("missing at the end"), "{acme:#}");
    env.expect_problems(&["--from-checkpoint"], &[("head_mismatch", 8)]);

    // The head's count rolled back but not its hash: it names another event 7.
    env.set_head(7, &events[8].hash).await;
    let acme = env.expect_problems(&[], &[("head_mismatch", 7)]);
    assert!(
        message(&acme, 0).contains("not the one the chain head records"),
        "{acme:#}"
    );

    // Rolled back consistently, after the last checkpoint: what the chain alone cannot prove
    // (docs/audit.md). This is why checkpoints are signed regularly.
    env.set_head(7, &events[6].hash).await;
    env.expect_ok(&[]);
    env.finish().await;
}

async fn a_forged_checkpoint_is_found(backend: Backend) {
    let env = Env::standard(backend).await;
    let cps = env.checkpoints().await;
    assert_eq!(cps.len(), 1);
    let (_, signed_hash, key_id) = cps[0].clone();

    // Moved to another event.
    env.exec("UPDATE audit_checkpoints SET seq = 5 WHERE tenant_id = $1")
        .await;
    let acme = env.expect_problems(&[], &[("checkpoint_forged", 5)]);
    assert!(message(&acme, 0).contains("does not verify"), "{acme:#}");
    assert_eq!(acme["checkpoints_valid"], 0);
    assert_eq!(acme["events_checked"], 9, "the chain is still checked");
    env.exec("UPDATE audit_checkpoints SET seq = 7 WHERE tenant_id = $1")
        .await;
    env.expect_ok(&[]);

    // Attesting another hash.
    sqlx::query("UPDATE audit_checkpoints SET hash = $1 WHERE tenant_id = $2")
        .bind(vec![0xabu8; 32])
        .bind(env.acme.clone())
        .execute(&env.pool)
        .await
        .unwrap();
    env.expect_problems(&[], &[("checkpoint_forged", 7)]);
    sqlx::query("UPDATE audit_checkpoints SET hash = $1 WHERE tenant_id = $2")
        .bind(signed_hash)
        .bind(env.acme.clone())
        .execute(&env.pool)
        .await
        .unwrap();
    env.expect_ok(&[]);

    // Signed by a key that is not in the ring.
    let events = env.events().await;
    let tenant = TenantId::from_trusted(env.acme.clone());
    let foreign = stranger().sign(&tenant, 9, &events[8].hash, Timestamp(events[8].time.0));
    env.insert_checkpoint(&foreign).await;
    let acme = env.expect_problems(&[], &[("checkpoint_forged", 9)]);
    assert!(message(&acme, 0).contains("not trusted"), "{acme:#}");
    assert_eq!(acme["checkpoints_valid"], 1);

    // Signed by that key but claiming the trusted key's id.
    env.exec("DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND seq = 9")
        .await;
    let mut impostor = foreign.clone();
    impostor.key_id = key_id;
    env.insert_checkpoint(&impostor).await;
    let acme = env.expect_problems(&[], &[("checkpoint_forged", 9)]);
    assert!(message(&acme, 0).contains("does not verify"), "{acme:#}");
    env.finish().await;
}

async fn a_consistent_rewrite_is_caught_only_by_a_checkpoint(backend: Backend) {
    let env = Env::standard(backend).await;
    let original = env.events().await;
    // Event 3 edited, then every event from it re-hashed so that the chain holds.
    let mut events = original.clone();
    events[2].actor_id = "cli:mallory".into();
    events[2].details = canonical_json(&serde_json::json!({"enrolment": "forged"}));
    for i in 2..events.len() {
        events[i].prev_hash = events[i - 1].hash.clone();
        events[i].hash = events[i].computed_hash().to_vec();
        env.rewrite(&events[i]).await;
    }
    let wrong = env.key_file(
        "stranger.keys",
        &format!("{}\n", hex_of(stranger().public().as_bytes())),
    );
    // The chain head still has the old last hash: that alone gives it away...
    env.expect_problems(
        &["--trusted-keys", &wrong],
        &[("checkpoint_forged", 7), ("head_mismatch", 9)],
    );
    // ...so the head is rewritten too. Without a trusted checkpoint nothing is wrong.
    env.set_head(9, &events[8].hash).await;
    assert_eq!(env.head().await.1, events[8].hash);
    let acme = env.expect_problems(&["--trusted-keys", &wrong], &[("checkpoint_forged", 7)]);
    assert_eq!(acme["events_checked"], 9, "the rewritten chain holds");

    // The checkpoint at 7 signed the original event 7.
    let acme = env.expect_problems(&[], &[("checkpoint_mismatch", 7)]);
    assert_eq!(acme["problems"][0]["event_id"], original[6].id.as_str());
    assert!(message(&acme, 0).contains("rewritten"), "{acme:#}");
    assert_eq!(acme["events_checked"], 7);
    env.expect_problems(&["--from-checkpoint"], &[("checkpoint_mismatch", 7)]);
    env.finish().await;
}

async fn an_intact_log_verifies_and_from_checkpoint_starts_after_the_checkpoint(backend: Backend) {
    let env = Env::standard(backend).await;
    let out = env.run(&["audit", "verify"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("acme: OK, 9 events verified, chain ends at 9, 1 valid checkpoint(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("beta: OK, 3 events verified, chain ends at 3, 1 valid checkpoint(s)"),
        "{}",
        out.stdout
    );

    let acme = env.expect_ok(&[]);
    assert_eq!(acme["started_after"], 0);
    assert_eq!(acme["events_checked"], 9);
    assert_eq!(acme["last_seq"], 9);
    assert_eq!(acme["checkpoints_valid"], 1);
    let (_, reports) = env.verify(&["--tenant", "acme"]);
    assert_eq!(reports.len(), 1, "--tenant verifies that tenant only");

    let acme = env.expect_ok(&["--from-checkpoint"]);
    assert_eq!(acme["started_after"], 7);
    assert_eq!(acme["events_checked"], 2);
    assert_eq!(acme["last_seq"], 9);
    let out = env.run(&["audit", "verify", "--from-checkpoint", "--tenant", "acme"]);
    assert!(out.ok);
    assert!(
        out.stdout
            .contains("acme: OK, 2 events verified (after checkpoint 7), chain ends at 9"),
        "{}",
        out.stdout
    );

    // An edit before the checkpoint: found from genesis, not looked for from the checkpoint
    // (the documented trade-off).
    env.exec("UPDATE audit_events SET actor_id = 'cli:mallory' WHERE tenant_id = $1 AND seq = 4")
        .await;
    env.expect_problems(&[], &[("chain_broken", 4)]);
    let acme = env.expect_ok(&["--from-checkpoint"]);
    assert_eq!(acme["events_checked"], 2);
    // One after it is found either way.
    env.exec("UPDATE audit_events SET actor_id = 'cli:mallory' WHERE tenant_id = $1 AND seq = 8")
        .await;
    env.expect_problems(&["--from-checkpoint"], &[("chain_broken", 8)]);
    env.finish().await;
}

async fn trusted_keys_decide_which_checkpoints_count(backend: Backend) {
    let env = Env::standard(backend).await;
    let out = env.ok(&["audit", "checkpoint", "--tenant", "acme"]);
    assert_eq!(
        out.trim(),
        format!("acme: signed event 9 with key {}", env.keys()[0].0)
    );
    let out = env.ok(&["audit", "checkpoint", "--tenant", "acme"]);
    assert_eq!(out.trim(), "acme: nothing new to sign");

    let keys = env.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].1, "the only key is active");
    let right = env.key_file("pinned.keys", &format!("# pinned\n\n{}\n", keys[0].2));
    let acme = env.expect_ok(&["--trusted-keys", &right]);
    assert_eq!(acme["checkpoints_valid"], 2);

    // A key that signed nothing here: every checkpoint of every tenant is forged.
    let wrong = env.key_file(
        "stranger.keys",
        &format!("{}\n", hex_of(stranger().public().as_bytes())),
    );
    let (ok, reports) = env.verify(&["--trusted-keys", &wrong]);
    assert!(!ok);
    let acme = report(&reports, "acme");
    assert_eq!(
        problems(&acme),
        [("checkpoint_forged", 7), ("checkpoint_forged", 9)]
    );
    assert!(message(&acme, 0).contains("not trusted"), "{acme:#}");
    assert_eq!(acme["checkpoints_valid"], 0);
    assert_eq!(
        problems(&report(&reports, "beta")),
        [("checkpoint_forged", 3)]
    );

    // Unusable key files are refused with the reason.
    let bad = env.key_file("bad.keys", "not-a-key\n");
    let out = env.run(&["audit", "verify", "--trusted-keys", &bad]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("is not a hex Ed25519 public key"),
        "{}",
        out.stderr
    );
    let out = env.run(&["audit", "verify", "--trusted-keys", "/nonexistent/keys"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("cannot read /nonexistent/keys"),
        "{}",
        out.stderr
    );
    env.finish().await;
}

async fn checkpoints_signed_before_a_key_rotation_still_verify(backend: Backend) {
    let env = Env::standard(backend).await;
    let old = env.keys();
    assert_eq!(old.len(), 1);
    let old_id = old[0].0.clone();

    let out = env.ok(&["audit", "rotate-key"]);
    let keys = env.keys();
    assert_eq!(keys.len(), 2, "the old public key stays: {keys:?}");
    let new = keys.iter().find(|k| k.1).expect("an active key").clone();
    assert_ne!(new.0, old_id);
    assert!(
        keys.iter().any(|k| k.0 == old_id && !k.1),
        "the old key is no longer active: {keys:?}"
    );
    assert!(
        out.contains(&format!("new checkpoint key {} is active", new.0)),
        "{out}"
    );

    // New checkpoints are signed with the new key (also the heads the old key signed).
    let out = env.ok(&["audit", "checkpoint"]);
    assert!(
        out.contains(&format!("acme: signed event 9 with key {}", new.0)),
        "{out}"
    );
    assert!(
        out.contains(&format!("beta: signed event 3 with key {}", new.0)),
        "{out}"
    );
    let by_key: Vec<(i64, String)> = env
        .checkpoints()
        .await
        .into_iter()
        .map(|(s, _, k)| (s, k))
        .collect();
    assert_eq!(by_key, [(7, old_id.clone()), (9, new.0.clone())]);

    let (ok, reports) = env.verify(&[]);
    assert!(ok, "{reports:#?}");
    assert_eq!(report(&reports, "acme")["checkpoints_valid"], 2);
    assert_eq!(report(&reports, "beta")["checkpoints_valid"], 2);

    // Pinning only the new key leaves the old checkpoints untrusted.
    let only_new = env.key_file("new.keys", &format!("{}\n", new.2));
    env.expect_problems(&["--trusted-keys", &only_new], &[("checkpoint_forged", 7)]);
    // Both keys pinned: everything verifies.
    let both = env.key_file("both.keys", &format!("{}\n{}\n", old[0].2, new.2));
    env.expect_ok(&["--trusted-keys", &both]);
    env.finish().await;
}

async fn export_writes_verifiable_events_and_filters_them(backend: Backend) {
    let env = Env::standard(backend).await;
    let native = env.export(&["--format", "jsonl", "--tenant", "acme"]);
    assert_eq!(native.len(), 9);
    let mut prev = "00".repeat(32);
    for (i, v) in native.iter().enumerate() {
        assert_eq!(v["seq"], i as i64 + 1);
        assert_eq!(v["tenant_id"], env.acme.as_str());
        assert_eq!(
            v["prev_hash"],
            prev.as_str(),
            "event {} follows its predecessor",
            i + 1
        );
        // The hash recomputed from the exported fields alone: an export verifies without the
        // database.
        let e = from_export(v);
        assert_eq!(
            hex_of(&e.computed_hash()),
            v["hash"].as_str().unwrap(),
            "event {}",
            i + 1
        );
        prev = v["hash"].as_str().unwrap().to_string();
    }
    let actions: Vec<&str> = native
        .iter()
        .map(|v| v["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..3],
        ["tenant.created", "user.created", "enrolment.invited"]
    );
    // The export agrees with the database, and an edited line no longer matches its hash.
    let stored = env.events().await;
    assert_eq!(native[8]["hash"], hex_of(&stored[8].hash).as_str());
    let mut edited = native[4].clone();
    edited["actor"]["id"] = "cli:mallory".into();
    assert_ne!(
        hex_of(&from_export(&edited).computed_hash()),
        edited["hash"].as_str().unwrap()
    );

    // Every tenant by default.
    let all = env.export(&[]);
    assert_eq!(all.len(), 12);
    assert_eq!(
        all.iter()
            .filter(|v| v["tenant_id"] != env.acme.as_str())
            .count(),
        3
    );

    // OCSF: one per event, with class, type, uid and time.
    let ocsf = env.export(&["--format", "ocsf", "--tenant", "acme"]);
    assert_eq!(ocsf.len(), 9);
    for (o, n) in ocsf.iter().zip(&native) {
        let class = o["class_uid"].as_u64().unwrap();
        assert_eq!(
            o["type_uid"].as_u64().unwrap(),
            class * 100 + o["activity_id"].as_u64().unwrap()
        );
        assert_eq!(o["metadata"]["uid"], n["id"]);
        assert_eq!(o["metadata"]["sequence"], n["seq"]);
        assert_eq!(o["time"], n["time_ms"]);
        let expected = match n["action"].as_str().unwrap() {
            "tenant.created" => (6003, 600399),
            "user.created" => (3001, 300101),
            "enrolment.invited" => (3001, 300199),
            other => panic!("unexpected action {other}"),
        };
        assert_eq!((class, o["type_uid"].as_u64().unwrap()), expected, "{o:#}");
    }

    // By action.
    let invited = env.export(&["--tenant", "acme", "--action", "enrolment.invited"]);
    assert_eq!(invited.len(), 4);
    assert!(invited.iter().all(|v| v["action"] == "enrolment.invited"));
    assert!(env
        .export(&["--tenant", "acme", "--action", "no.such.action"])
        .is_empty());

    // By time: --since is inclusive, --until exclusive.
    let time = |i: usize| native[i]["time"].as_str().unwrap().to_string();
    let ms = |i: usize| native[i]["time_ms"].as_i64().unwrap();
    let seqs = |vs: &[Value]| {
        vs.iter()
            .map(|v| v["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let expect = |f: &dyn Fn(i64) -> bool| {
        native
            .iter()
            .filter(|v| f(v["time_ms"].as_i64().unwrap()))
            .map(|v| v["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let (from, to) = (ms(3), ms(7));
    assert!(from < to, "invitations are written at different times");
    let since = env.export(&["--tenant", "acme", "--since", &time(3)]);
    assert_eq!(seqs(&since), expect(&|t| t >= from));
    assert!(seqs(&since).contains(&4) && !seqs(&since).contains(&3));
    let until = env.export(&["--tenant", "acme", "--until", &time(7)]);
    assert_eq!(seqs(&until), expect(&|t| t < to));
    assert!(!seqs(&until).contains(&8));
    let between = env.export(&["--tenant", "acme", "--since", &time(3), "--until", &time(7)]);
    assert_eq!(seqs(&between), expect(&|t| t >= from && t < to));
    assert!(!between.is_empty());

    // To a file: the same lines, and the count on stderr.
    let file = env.data.path().join("audit.jsonl");
    let out = env.run(&[
        "audit",
        "export",
        "--tenant",
        "acme",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("9 events written"), "{}", out.stderr);
    let written: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written, native);

    // A time that is not RFC 3339 is refused, saying what is expected.
    for (flag, value) in [("--since", "yesterday"), ("--until", "2026-13-01")] {
        let out = env.run(&["audit", "export", flag, value]);
        assert!(!out.ok);
        assert!(
            out.stderr
                .contains(&format!("{flag} must be an RFC 3339 time")),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    env.finish().await;
}

/// An event rebuilt from its native export line (docs/audit.md): `details` re-encoded
/// canonically, `time_ms` as the time.
fn from_export(v: &Value) -> AuditEvent {
    let s = |v: &Value| v.as_str().unwrap().to_string();
    let opt = |v: &Value| v.as_str().map(str::to_string);
    let bytes = |v: &Value| {
        let h = v.as_str().unwrap();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    AuditEvent {
        tenant_id: TenantId::parse(v["tenant_id"].as_str().unwrap()).unwrap(),
        seq: v["seq"].as_i64().unwrap(),
        id: s(&v["id"]),
        time: Timestamp(v["time_ms"].as_i64().unwrap()),
        actor_type: s(&v["actor"]["type"]),
        actor_id: s(&v["actor"]["id"]),
        action: s(&v["action"]),
        target_type: s(&v["target"]["type"]),
        target_id: s(&v["target"]["id"]),
        outcome: s(&v["outcome"]),
        reasons: v["reasons"].as_array().unwrap().iter().map(s).collect(),
        request_id: opt(&v["request_id"]),
        client_ip: opt(&v["client_ip"]),
        user_agent: opt(&v["user_agent"]),
        details: canonical_json(&v["details"]),
        prev_hash: bytes(&v["prev_hash"]),
        hash: bytes(&v["hash"]),
    }
}
