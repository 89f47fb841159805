//! Shared test scaffolding: run one async test body against every storage backend.

/// `both_backends!(a, b)` defines `sqlite::a`, `postgres::a`, … calling `a(Backend::…)`.
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
                    if keyplane_testkit::database::postgres_skip_allowed() && keyplane_testkit::postgres_admin_url().is_none() {
                        eprintln!("PostgreSQL test skipped by KEYPLANE_TEST_SKIP_POSTGRES=1 (never allowed in CI)");
                        return;
                    }
                    super::$name(keyplane_testkit::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use both_backends;

use keyplane_testkit::TestServer;
use sqlx::Row;

/// How many rows each table holds: "nothing changed" means these are equal.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RowCounts {
    pub users: i64,
    pub credentials: i64,
    pub ceremonies: i64,
    pub sessions: i64,
    pub enrolments_used: i64,
}

#[allow(dead_code)]
pub async fn row_counts(server: &TestServer) -> RowCounts {
    let pool = server.store.pool();
    let count = |sql: &'static str| async move {
        let row = sqlx::query(sql).fetch_one(pool).await.expect("count query");
        row.try_get::<i64, _>(0).expect("count")
    };
    RowCounts {
        users: count("SELECT COUNT(*) FROM users").await,
        credentials: count("SELECT COUNT(*) FROM credentials").await,
        ceremonies: count("SELECT COUNT(*) FROM ceremonies").await,
        sessions: count("SELECT COUNT(*) FROM sessions").await,
        enrolments_used: count("SELECT COUNT(*) FROM enrolments WHERE used_at IS NOT NULL").await,
    }
}

#[allow(dead_code)]
pub async fn session_token_hashes(server: &TestServer) -> Vec<Vec<u8>> {
    sqlx::query("SELECT token_hash FROM sessions")
        .fetch_all(server.store.pool())
        .await
        .expect("sessions")
        .iter()
        .map(|r| r.try_get::<Vec<u8>, _>("token_hash").expect("hash"))
        .collect()
}

/// Invites `username` with `role`, enrols a passkey and signs in: the bearer token.
#[allow(dead_code)]
pub async fn member(server: &TestServer, username: &str, role: Option<&str>) -> String {
    let tenant = server.default_tenant().await;
    let invitation = server
        .app
        .invite(
            &tenant,
            username,
            None,
            role,
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .unwrap();
    let mut auth = keyplane_testkit::SoftAuthenticator::new(&server.origin(), true, true);
    server.enrol(&mut auth, invitation.token.expose()).await;
    server.sign_in(&mut auth, Some(username)).await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One request with a bearer token: (status, JSON body).
#[allow(dead_code)]
pub async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let r = server
        .request(method, path, None, Some(token), body.as_ref())
        .await;
    (r.status, r.body)
}
