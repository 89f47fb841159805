//! PostgreSQL restarted under Keyplane: while the database is down, requests get 503 with a JSON
//! error (`storage_unavailable`) and change nothing; when it is back, Keyplane recovers by itself
//! (no restart) and nothing acknowledged before is lost. Once idle, once under a load of sign-ins
//! and registrations. Needs `pg_ctlcluster` and the right to run it (CI runs as root); the
//! cluster is started again whatever happens, and the two tests take turns.

use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One test at a time stops the cluster.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cluster `.ci/run` starts: the newest installed version's `main`.
fn cluster() -> Option<String> {
    let out = Command::new("pg_lsclusters").arg("-h").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .filter(|(_, name)| name == "main")
        .map(|(v, _)| v)
        .max()
}

/// The local cluster's version, or `None` (outside CI only) when there is none to restart.
fn cluster_or_skip() -> Option<String> {
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    let version = cluster();
    if version.is_none() {
        assert!(!in_ci, "CI has a local PostgreSQL cluster to restart");
        eprintln!("no local PostgreSQL cluster (pg_lsclusters): test skipped outside CI");
    }
    version
}

fn pg(action: &str, version: &str) {
    let status = Command::new("pg_ctlcluster")
        .args([version, "main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {version} main {action}");
}

/// Starts the cluster again when dropped, so a failing test never leaves PostgreSQL down.
struct Restart(String);

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args([self.0.as_str(), "main", "start"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_down_means_503_and_back_means_working_again() {
    let Some(version) = cluster_or_skip() else {
        return;
    };
    let _turn = CLUSTER.lock().await;
    let server = TestServer::start(Backend::Postgres).await;
    let (mut phone, token) = server.user_with_passkey("alice").await;
    let guard = Restart(version.clone());
    pg("stop", &version);

    let r = server
        .request(Method::GET, "/api/v1/me", None, Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.code(), "storage_unavailable", "{:?}", r.body);
    let ready = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let health = server
        .request(Method::GET, "/healthz", None, None, None)
        .await;
    assert_eq!(health.status, StatusCode::OK, "the process is alive");

    pg("start", &version);
    drop(guard);
    // Back by itself: the pool opens new connections.
    let mut back = false;
    for _ in 0..50 {
        let r = server
            .request(Method::GET, "/readyz", None, None, None)
            .await;
        if r.status == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "Keyplane recovered without a restart");
    let r = server
        .request(Method::GET, "/api/v1/me", None, Some(&token), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the session from before is still there: {:?}",
        r.body
    );
    let session = server.sign_in(&mut phone, Some("alice")).await;
    assert_eq!(
        session["user"]["username"], "alice",
        "the passkey from before signs in"
    );
    server.shutdown().await;
}

/// What the load saw: acknowledged registrations (credential ids) and sign-ins (username,
/// session token), how many requests were refused with `storage_unavailable`, and every other
/// answer (which must not happen).
#[derive(Default)]
struct Tally {
    registered: Vec<String>,
    sessions: Vec<(String, String)>,
    unavailable: usize,
    unavailable_since_restart: usize,
    acknowledged_since_restart: usize,
    wrong: Vec<String>,
}

struct Load {
    base: String,
    origin: String,
    http: reqwest::Client,
    tally: Mutex<Tally>,
    restarted: AtomicBool,
    stop: AtomicBool,
}

enum Step {
    Done(Value),
    Unavailable,
    Wrong,
}

impl Load {
    /// POSTs `body`; a reply with `expected` is the step done, 503 `storage_unavailable` is
    /// counted, anything else (another status, another code, no answer) is recorded as wrong.
    async fn step(&self, path: &str, body: &Value, expected: StatusCode) -> Step {
        let reply = match self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.tally
                    .lock()
                    .unwrap()
                    .wrong
                    .push(format!("{path}: {e}"));
                return Step::Wrong;
            }
        };
        let status = reply.status();
        let body: Value = reply.json().await.unwrap_or(Value::Null);
        let mut t = self.tally.lock().unwrap();
        if status == expected {
            Step::Done(body)
        } else if status == StatusCode::SERVICE_UNAVAILABLE
            && body["error"]["code"] == "storage_unavailable"
        {
            t.unavailable += 1;
            if self.restarted.load(Ordering::SeqCst) {
                t.unavailable_since_restart += 1;
            }
            Step::Unavailable
        } else {
            t.wrong.push(format!("{path}: {status} {body}"));
            Step::Wrong
        }
    }

    fn acknowledged(&self, f: impl FnOnce(&mut Tally)) {
        let mut t = self.tally.lock().unwrap();
        f(&mut t);
        if self.restarted.load(Ordering::SeqCst) {
            t.acknowledged_since_restart += 1;
        }
    }

    /// One WebAuthn ceremony (`registration` or `authentication`): options with `start`, the
    /// authenticator, verify, which must answer `acknowledged`. After a 503 it pauses briefly.
    async fn ceremony(
        &self,
        ceremony: &str,
        start: Value,
        auth: &mut SoftAuthenticator,
        acknowledged: StatusCode,
    ) -> Step {
        let options = self
            .step(
                &format!("/api/v1/{ceremony}/options"),
                &start,
                StatusCode::OK,
            )
            .await;
        let step = match options {
            Step::Done(options) => {
                let response = if ceremony == "registration" {
                    auth.register(&options["publicKey"]).await.unwrap()
                } else {
                    auth.authenticate(&options["publicKey"]).await.unwrap()
                };
                let body = json!({ "ceremony": options["ceremony"], "credential": response });
                self.step(&format!("/api/v1/{ceremony}/verify"), &body, acknowledged)
                    .await
            }
            other => other,
        };
        if let Step::Unavailable = step {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        step
    }

    /// Signs in as `username` over and over until told to stop.
    async fn sign_ins(self: Arc<Self>, username: String, mut auth: SoftAuthenticator) {
        while !self.stop.load(Ordering::SeqCst) {
            let start = json!({ "username": username });
            match self
                .ceremony("authentication", start, &mut auth, StatusCode::OK)
                .await
            {
                Step::Done(session) => {
                    let token = session["token"].as_str().unwrap().to_owned();
                    self.acknowledged(|t| t.sessions.push((username.clone(), token)));
                }
                Step::Unavailable => {}
                Step::Wrong => return,
            }
        }
    }

    /// Registers a passkey for each enrolment token in turn (a fresh token after a refusal: a
    /// refused attempt must not have used its token, but that is not what this test is about).
    async fn registrations(self: Arc<Self>, tokens: Vec<String>) {
        for token in tokens {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let mut auth = SoftAuthenticator::new(&self.origin, true, true);
            let start = json!({ "enrolment_token": token });
            match self
                .ceremony("registration", start, &mut auth, StatusCode::CREATED)
                .await
            {
                Step::Done(c) => {
                    let id = c["id"].as_str().unwrap().to_owned();
                    self.acknowledged(|t| t.registered.push(id));
                }
                Step::Unavailable => {}
                Step::Wrong => return,
            }
        }
    }

    /// Waits until `done` holds of the tally (at most `secs` seconds); whether it did.
    async fn until(&self, secs: u64, done: impl Fn(&Tally) -> bool) -> bool {
        for _ in 0..secs * 20 {
            {
                let t = self.tally.lock().unwrap();
                if done(&t) || !t.wrong.is_empty() {
                    return done(&t);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_restarted_under_load_loses_nothing_acknowledged() {
    let Some(version) = cluster_or_skip() else {
        return;
    };
    let _turn = CLUSTER.lock().await;
    // One address, a few accounts, many ceremonies a second: no rate limits for this load. A
    // request gives up waiting for a connection after 2 s (`database.acquire_timeout_secs`).
    let server = TestServer::builder(Backend::Postgres)
        .settings(|s| {
            s.rate_limits.per_address_per_minute = 0;
            s.rate_limits.per_account_per_minute = 0;
            s.database.acquire_timeout_secs = 2;
        })
        .start()
        .await;
    let mut people = vec![];
    for i in 0..4 {
        let username = format!("regular{i}");
        let (auth, _) = server.user_with_passkey(&username).await;
        people.push((username, auth));
    }
    let mut tokens = vec![];
    for i in 0..120 {
        tokens.push(server.invite(&format!("newcomer{i}")).await);
    }
    let load = Arc::new(Load {
        base: server.base.clone(),
        origin: server.origin(),
        http: server.http.clone(),
        tally: Mutex::default(),
        restarted: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let mut workers = vec![];
    for (username, auth) in people {
        workers.push(tokio::spawn(load.clone().sign_ins(username, auth)));
    }
    for chunk in tokens.chunks(30) {
        workers.push(tokio::spawn(load.clone().registrations(chunk.to_vec())));
    }

    // Under load: some of each acknowledged, then PostgreSQL goes away.
    let warmed = load
        .until(30, |t| t.sessions.len() >= 5 && t.registered.len() >= 5)
        .await;
    let guard = Restart(version.clone());
    let clock = std::time::Instant::now();
    pg("stop", &version);
    let stopped = clock.elapsed();
    let refused = load.until(30, |t| t.unavailable >= 10).await;
    let down = clock.elapsed();
    pg("start", &version);
    drop(guard);
    load.restarted.store(true, Ordering::SeqCst);
    // Back by itself: the load goes on succeeding, with no restart of Keyplane.
    let recovered = load.until(60, |t| t.acknowledged_since_restart >= 10).await;
    eprintln!(
        "stopped after {stopped:?}, 10 refusals after {down:?}, recovered after {:?}",
        clock.elapsed()
    );
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let t = std::mem::take(&mut *load.tally.lock().unwrap());
    assert!(
        t.wrong.is_empty(),
        "only 503 storage_unavailable while down: {:?}",
        t.wrong
    );
    assert!(
        warmed,
        "sign-ins and registrations acknowledged before the stop"
    );
    assert!(refused, "503 storage_unavailable while PostgreSQL was down");
    assert!(recovered, "acknowledged again after the restart");
    eprintln!(
        "{} sign-ins and {} registrations acknowledged; {} refused with 503 ({} after the restart)",
        t.sessions.len(),
        t.registered.len(),
        t.unavailable,
        t.unavailable_since_restart
    );

    // Nothing acknowledged is lost: every passkey, every session, every sign-in event.
    let tenant = server.default_tenant().await;
    let stored: Vec<String> = server
        .store_credentials(&tenant)
        .await
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    for id in &t.registered {
        assert!(stored.contains(id), "acknowledged passkey {id} is stored");
    }
    for (username, token) in &t.sessions {
        let me = server
            .request(Method::GET, "/api/v1/me", None, Some(token), None)
            .await;
        assert_eq!(me.status, StatusCode::OK, "{username}: {:?}", me.body);
        assert_eq!(me.body["user"]["username"], username.as_str());
    }
    use keyplane_store::Store;
    let events = server
        .store
        .list_audit_events(
            &tenant.id,
            &keyplane_store::AuditFilter {
                action: Some("authentication.succeeded".into()),
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        events.len() >= t.sessions.len() + 4,
        "{} sign-in events for {} acknowledged sign-ins and 4 before the load",
        events.len(),
        t.sessions.len()
    );
    let report = server
        .app
        .verify_audit(&tenant, &[], false, &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    server.shutdown().await;
}
