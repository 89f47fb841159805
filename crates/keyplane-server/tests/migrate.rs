//! Moving a deployment from SQLite to PostgreSQL (keyplane_store::copy_sqlite_to_postgres, what
//! `keyplane migrate` runs): everything arrives — tenants, users, passkeys, policy, machine
//! clients, recovery codes, the whole audit chain, which verifies unchanged — a second run
//! skips what is there (resumable), and the same passkey signs in on the PostgreSQL server.

use keyplane_store::{copy_sqlite_to_postgres, SqlStore, Store};
use keyplane_testkit::{Backend, TestDatabase, TestServer};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_moves_to_postgresql_and_its_passkeys_still_sign_in() {
    if keyplane_testkit::database::postgres_skip_allowed()
        && keyplane_testkit::postgres_admin_url().is_none()
    {
        return;
    }
    let mut old = TestServer::start(Backend::Sqlite).await;
    let (mut phone, alice) = old.user_with_passkey("alice").await;
    old.apply_policy("version = 1\n[recovery]\ncodes = \"allow\"\n")
        .await;
    let codes = old
        .request(
            Method::POST,
            "/api/v1/me/recovery-codes",
            None,
            Some(&alice),
            Some(&json!({})),
        )
        .await;
    assert!(codes.status.is_success(), "{:?}", codes.body);
    let tenant = old.default_tenant().await;
    old.app.checkpoint(&tenant).await.unwrap();
    let source_events = old.store.audit_head(&tenant.id).await.unwrap().0;
    let source_users = old.store.list_users(&tenant.id).await.unwrap().len();
    let trusted = old.app.keyring.read().unwrap().public_keys().to_vec();
    old.stop_serving().await;
    let path = old
        .database_url()
        .strip_prefix("sqlite:")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();

    let pg = TestDatabase::new(Backend::Postgres).await;
    let target = SqlStore::connect(&pg.url, 4).await.unwrap();
    let seen = std::sync::Mutex::new(vec![]);
    let report =
        copy_sqlite_to_postgres(std::path::Path::new(&path), &target, &|t, done, total| {
            seen.lock().unwrap().push((t.to_owned(), done, total));
        })
        .await
        .unwrap();
    let rows = |name: &str| report.iter().find(|t| t.table == name).unwrap().rows;
    assert_eq!(rows("audit_events") as i64, source_events);
    assert_eq!(rows("users") as usize, source_users);
    assert!(
        rows("credentials") >= 1 && rows("recovery_codes") >= 10 && rows("audit_checkpoints") >= 1
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(t, d, n)| t == "audit_events" && d == n),
        "progress reaches the end"
    );
    // Run again: nothing new, nothing duplicated.
    let again = copy_sqlite_to_postgres(std::path::Path::new(&path), &target, &|_, _, _| {})
        .await
        .unwrap();
    assert!(again.iter().all(|t| t.skipped == t.rows), "{again:?}");
    assert_eq!(
        target.audit_head(&tenant.id).await.unwrap().0,
        source_events
    );

    // The PostgreSQL server: the chain verifies with the old checkpoint keys, the passkey signs in.
    let new = TestServer::builder(Backend::Postgres)
        .database_url(&pg.url)
        .start()
        .await;
    let t = new.default_tenant().await;
    assert_eq!(t.id, tenant.id);
    let report = new
        .app
        .verify_audit(&t, &trusted, false, &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.events_checked as i64, source_events);
    let session = new.sign_in(&mut phone, Some("alice")).await;
    assert_eq!(session["user"]["username"], "alice");
    let me = new
        .request(
            Method::GET,
            "/api/v1/me/recovery-codes",
            None,
            session["token"].as_str(),
            None,
        )
        .await;
    assert_eq!(me.body["remaining"], 10, "{:?}", me.body);
    // Refusals: not a PostgreSQL target.
    let sqlite_target = SqlStore::connect(&old.database_url(), 1).await.unwrap();
    let err = copy_sqlite_to_postgres(std::path::Path::new(&path), &sqlite_target, &|_, _, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
    sqlite_target.close().await;
    target.close().await;
    new.shutdown().await;
    pg.drop_database().await;
    old.shutdown().await;
}
