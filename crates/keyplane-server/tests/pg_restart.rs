//! PostgreSQL restarted under Keyplane: while the database is down, requests get 503 with a JSON
//! error (`storage_unavailable`) and change nothing; when it is back, Keyplane recovers by itself
//! (no restart) and nothing acknowledged before is lost. Needs `pg_ctlcluster` and the right to
//! run it (CI runs as root); the cluster is started again whatever happens.

use keyplane_testkit::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use std::process::Command;
use std::time::Duration;

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
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    let Some(version) = cluster() else {
        assert!(!in_ci, "CI has a local PostgreSQL cluster to restart");
        eprintln!("no local PostgreSQL cluster (pg_lsclusters): test skipped outside CI");
        return;
    };
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
