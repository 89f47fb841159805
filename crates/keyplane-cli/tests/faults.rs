//! Fault tests with the real binary: `kill -9` of `keyplane serve` in the middle of a burst of
//! registrations and sign-ins, then a restart on the same database. Every registration the
//! server acknowledged (201) is there, every acknowledged sign-in's session still works and its
//! event is recorded, nothing is half-written, each passkey still signs in (its stored counter
//! is consistent), and the audit chain verifies — on SQLite and on PostgreSQL. Bounded: 60
//! registrations and ten people signing in over and over, the kill after 15 registrations and
//! 8 sign-ins were acknowledged.

mod common;

use common::{keyplane, ok, serve};
use keyplane_testkit::{Backend, SoftAuthenticator, TestDatabase};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ORIGIN: &str = "http://localhost:8080"; // the default tenant's origin (default public_url)

/// `args` against `database` (the data directory's SQLite database when `None`).
fn on<'a>(database: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let url = database.map(|url| ["--database-url", url]);
    url.iter().flatten().chain(args).copied().collect()
}

/// A WebAuthn ceremony over HTTP: `{ceremony}/options` with `start`, the authenticator's
/// response, `{ceremony}/verify`; the verify reply when it has status `acknowledged`.
async fn ceremony(
    http: &reqwest::Client,
    base: &str,
    ceremony: &str,
    start: Value,
    auth: &mut SoftAuthenticator,
    acknowledged: reqwest::StatusCode,
) -> Option<Value> {
    let options: Value = http
        .post(format!("{base}/api/v1/{ceremony}/options"))
        .json(&start)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let response = if ceremony == "registration" {
        auth.register(&options["publicKey"]).await.ok()?
    } else {
        auth.authenticate(&options["publicKey"]).await.ok()?
    };
    let r = http
        .post(format!("{base}/api/v1/{ceremony}/verify"))
        .json(&json!({ "ceremony": options["ceremony"], "credential": response }))
        .send()
        .await
        .ok()?;
    if r.status() != acknowledged {
        return None;
    }
    r.json().await.ok()
}

/// A registration with an enrolment token; the new passkey's id once acknowledged (201).
async fn register(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    auth: &mut SoftAuthenticator,
) -> Option<String> {
    let start = json!({ "enrolment_token": token });
    let body = ceremony(
        http,
        base,
        "registration",
        start,
        auth,
        reqwest::StatusCode::CREATED,
    );
    body.await?["id"].as_str().map(str::to_owned)
}

/// A username-first sign-in; the session token once acknowledged (200).
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    auth: &mut SoftAuthenticator,
) -> Option<String> {
    let start = json!({ "username": username });
    let body = ceremony(
        http,
        base,
        "authentication",
        start,
        auth,
        reqwest::StatusCode::OK,
    );
    body.await?["token"].as_str().map(str::to_owned)
}

fn invite(d: &Path, database: Option<&str>, username: &str) -> String {
    let out = ok(d, &on(database, &["admin", "invite", username]));
    out.split("token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("an invitation link")
        .to_owned()
}

fn client(port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Signs in with every passkey in `users` until the server stops answering, recording each
/// acknowledged session as `(username, token)`.
fn sign_in_until_killed(
    http: &reqwest::Client,
    base: &str,
    users: Vec<(String, SoftAuthenticator)>,
    acked: &Arc<Mutex<Vec<(String, String)>>>,
    answered: &Arc<tokio::sync::Notify>,
) -> Vec<tokio::task::JoinHandle<(String, SoftAuthenticator)>> {
    users
        .into_iter()
        .map(|(username, mut auth)| {
            let (http, base, acked, answered) = (
                http.clone(),
                base.to_owned(),
                acked.clone(),
                answered.clone(),
            );
            tokio::spawn(async move {
                while let Some(token) = sign_in(&http, &base, &username, &mut auth).await {
                    acked.lock().unwrap().push((username.clone(), token));
                    answered.notify_one();
                }
                (username, auth)
            })
        })
        .collect()
}

const REGISTRATIONS: usize = 60;

async fn killed_mid_burst_loses_nothing_acknowledged(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut child, port) = serve(d, &on(database, &[]));
    let http = client(port);
    let base = format!("http://localhost:{port}");
    // Ten people with a passkey already, who keep signing in during the burst.
    let mut regulars = vec![];
    for i in 0..10 {
        let username = format!("regular{i}");
        let mut auth = SoftAuthenticator::new(ORIGIN, true, true);
        let token = invite(d, database, &username);
        register(&http, &base, &token, &mut auth)
            .await
            .expect("a passkey before the burst");
        regulars.push((username, auth));
    }
    let tokens: Vec<String> = (0..REGISTRATIONS)
        .map(|i| invite(d, database, &format!("user{i}")))
        .collect();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sessions: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let answered = Arc::new(tokio::sync::Notify::new());
    let mut tasks = vec![];
    for token in tokens {
        let (http, base, acked, answered) =
            (http.clone(), base.clone(), acked.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut auth = SoftAuthenticator::new(ORIGIN, true, true);
            if let Some(id) = register(&http, &base, &token, &mut auth).await {
                acked.lock().unwrap().push(id);
                answered.notify_one();
            }
        }));
    }
    let signing_in = sign_in_until_killed(&http, &base, regulars, &sessions, &answered);
    // Kill -9 once 15 registrations and 8 sign-ins were acknowledged (or after 30 s at most),
    // while both are still going on.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while acked.lock().unwrap().len() < 15 || sessions.lock().unwrap().len() < 8 {
            answered.notified().await;
        }
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no shutdown of any kind
    child.wait().unwrap();
    assert!(
        waited.is_ok(),
        "15 registrations and 8 sign-ins in 30 s (got {} and {})",
        acked.lock().unwrap().len(),
        sessions.lock().unwrap().len()
    );
    for t in tasks {
        let _ = t.await;
    }
    let mut regulars = vec![];
    for t in signing_in {
        regulars.push(t.await.unwrap());
    }
    let acked = acked.lock().unwrap().clone();
    let sessions = sessions.lock().unwrap().clone();
    assert!(acked.len() >= 15 && acked.len() <= REGISTRATIONS);
    eprintln!(
        "killed after {} registrations and {} sign-ins were acknowledged",
        acked.len(),
        sessions.len()
    );

    // Restart on the same database: every acknowledged passkey is there, the chain verifies.
    let (mut again, port) = serve(d, &on(database, &[]));
    let creds: Value = serde_json::from_str(&ok(
        d,
        &on(database, &["credential", "list", "--format", "json"]),
    ))
    .unwrap();
    let stored: Vec<&str> = creds
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in &acked {
        assert!(
            stored.contains(&id.as_str()),
            "acknowledged passkey {id} survived the kill"
        );
    }
    // No half-written registration: each stored passkey has its audit event.
    let registered = ok(
        d,
        &on(
            database,
            &["audit", "export", "--action", "credential.registered"],
        ),
    );
    for id in &stored {
        assert!(
            registered.contains(id),
            "the registration of {id} is in the audit log"
        );
    }
    // Every acknowledged sign-in: its session is still good, and its event was recorded.
    let http = client(port);
    let base = format!("http://localhost:{port}");
    for (username, token) in &sessions {
        let me = http
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            me.status(),
            200,
            "{username}'s acknowledged session survived"
        );
        let me: Value = me.json().await.unwrap();
        assert_eq!(me["user"]["username"], username.as_str(), "{me}");
    }
    let signed_in = ok(
        d,
        &on(
            database,
            &["audit", "export", "--action", "authentication.succeeded"],
        ),
    );
    let recorded = signed_in.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        recorded >= sessions.len(),
        "{recorded} sign-in events for {} acknowledged sign-ins",
        sessions.len()
    );
    // The stored signature counters are consistent: each passkey signs in again.
    for (username, mut auth) in regulars {
        assert!(
            sign_in(&http, &base, &username, &mut auth).await.is_some(),
            "{username} signs in after the restart"
        );
    }
    ok(d, &on(database, &["audit", "verify"]));
    again.kill().unwrap();
    again.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_kill_9_under_load_loses_no_acknowledged_registration_or_sign_in() {
    killed_mid_burst_loses_nothing_acknowledged(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_kill_9_under_load_loses_no_acknowledged_registration_or_sign_in() {
    if keyplane_testkit::database::postgres_skip_allowed()
        && keyplane_testkit::postgres_admin_url().is_none()
    {
        return;
    }
    let pg = TestDatabase::new(Backend::Postgres).await;
    killed_mid_burst_loses_nothing_acknowledged(Some(&pg.url)).await;
    pg.drop_database().await;
}

/// Writes a fresh self-signed certificate for localhost; returns its PEM.
fn new_certificate(cert: &Path, key: &Path) -> String {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(cert, c.cert.pem()).unwrap();
    std::fs::write(key, c.signing_key.serialize_pem()).unwrap();
    c.cert.pem()
}

fn trusting(pem: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_from_the_files_and_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key) = (d.join("tls.crt"), d.join("tls.key"));
    let first = new_certificate(&cert, &key);
    let config = d.join("keyplane.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.to_str().unwrap(),
            key.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = keyplane(d)
        .args([
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let port: u16 = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server starts");
        if let Some(rest) = line.strip_prefix("Keyplane listening on https://") {
            break rest.split([' ', ':']).nth(1).unwrap().parse().unwrap();
        }
    };
    let url = format!("https://localhost:{port}/healthz");
    assert_eq!(
        trusting(&first, port)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        reqwest::Client::builder()
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .is_err(),
        "a client that does not trust the certificate is refused"
    );

    // A renewed certificate, then SIGHUP: served without a restart.
    let second = new_certificate(&cert, &key);
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloaded = (0..50).find(|_| {
        rx.try_iter()
            .any(|l| l.starts_with("TLS certificate reloaded"))
            || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
    });
    assert!(reloaded.is_some(), "the server says it reloaded");
    assert_eq!(
        trusting(&second, port)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        trusting(&first, port).get(&url).send().await.is_err(),
        "the old certificate is gone"
    );

    // The doctor reads the certificate's expiry.
    let doctor = keyplane(d)
        .args([
            "--config",
            config.to_str().unwrap(),
            "doctor",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let checks: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let tls = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "tls")
        .unwrap()
        .clone();
    assert_eq!(tls["status"], "ok", "{tls}");
    assert!(
        tls["message"].as_str().unwrap().contains("expires in"),
        "{tls}"
    );

    // A broken file on SIGHUP keeps the served certificate.
    std::fs::write(&cert, "not a certificate").unwrap();
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let failed = (0..50).find(|_| {
        rx.try_iter().any(|l| l.starts_with("TLS reload failed")) || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(failed.is_some(), "the failure is reported");
    assert_eq!(
        trusting(&second, port)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A small tmpfs for the data directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// `None` where mounting is not allowed (outside CI, not root): the test says so and stops.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("keyplane-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI can mount a tmpfs (root)"
            );
            eprintln!("cannot mount a tmpfs here: test skipped outside CI");
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(SmallDisk(dir))
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_data_directory_gives_clear_errors_and_no_corruption() {
    let Some(disk) = SmallDisk::mount("8m") else {
        return;
    };
    let d = disk.0.clone();
    let (mut child, port) = serve(&d, &[]);
    let tokens: Vec<String> = (0..6)
        .map(|i| invite(&d, None, &format!("user{i}")))
        .collect();
    let http = client(port);
    let base = format!("http://localhost:{port}");
    assert!(
        register(
            &http,
            &base,
            &tokens[0],
            &mut SoftAuthenticator::new(ORIGIN, true, true)
        )
        .await
        .is_some(),
        "works while there is room"
    );

    // Full: fill what is left, then a registration is refused with a JSON error.
    let filler = d.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let refused = attempt(&http, &base, &tokens[1]).await;
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_eq!(
        refused.1["error"]["code"], "storage_unavailable",
        "{}",
        refused.1
    );
    std::fs::remove_file(&filler).unwrap();
    assert!(
        register(
            &http,
            &base,
            &tokens[2],
            &mut SoftAuthenticator::new(ORIGIN, true, true)
        )
        .await
        .is_some(),
        "room again: works without a restart"
    );

    child.kill().unwrap();
    child.wait().unwrap();

    // A read-only data directory (remounted so while nothing writes to it): the server still
    // serves what only reads, and refuses every change with a clear error.
    disk.remount("ro");
    let (mut reader, port) = serve(&d, &[]);
    let http = reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("http://localhost:{port}");
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let refused = attempt(&http, &base, &tokens[3]).await;
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_eq!(
        refused.1["error"]["code"], "storage_unavailable",
        "{}",
        refused.1
    );
    reader.kill().unwrap();
    reader.wait().unwrap();
    disk.remount("rw");

    // Nothing corrupted: the chain verifies, and the refused registration left no passkey.
    ok(&d, &["audit", "verify"]);
    let creds: Value =
        serde_json::from_str(&ok(&d, &["credential", "list", "--format", "json"])).unwrap();
    assert_eq!(creds.as_array().unwrap().len(), 2, "{creds}");
    drop(disk);
}

/// One registration: (status of the verify step, its body), or of the options step if that failed.
async fn attempt(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    let mut auth = SoftAuthenticator::new(ORIGIN, true, true);
    let r = http
        .post(format!("{base}/api/v1/registration/options"))
        .json(&json!({ "enrolment_token": token }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let options: Value = r.json().await.unwrap();
    if status != 200 {
        return (status, options);
    }
    let credential = auth.register(&options["publicKey"]).await.unwrap();
    let r = http
        .post(format!("{base}/api/v1/registration/verify"))
        .json(&json!({ "ceremony": options["ceremony"], "credential": credential }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}
