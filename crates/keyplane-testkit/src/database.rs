//! Test databases: a SQLite file in a temporary directory, or a fresh PostgreSQL database
//! created for the test on the server named by `KEYPLANE_TEST_POSTGRES_URL`.
//!
//! PostgreSQL tests never skip in CI: when `CI=true` and the server is unreachable, they fail.
//! Outside CI they fail too, unless `KEYPLANE_TEST_SKIP_POSTGRES=1` says the developer knows.

use keyplane_store::Backend;
use sqlx::any::AnyPoolOptions;
use sqlx::AssertSqlSafe;

/// A database for one test.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

/// The PostgreSQL server tests use (a database on it that the role may create databases from).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("KEYPLANE_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Whether PostgreSQL tests may be skipped here (never in CI).
pub fn postgres_skip_allowed() -> bool {
    std::env::var("CI").map(|v| v != "true").unwrap_or(true)
        && std::env::var("KEYPLANE_TEST_SKIP_POSTGRES").as_deref() == Ok("1")
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite:{}", dir.path().join("keyplane.db").display());
        TestDatabase {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
            pg_name: None,
        }
    }

    /// A fresh, empty PostgreSQL database. Panics (failing the test) when PostgreSQL is not
    /// reachable, naming the variable to set.
    pub async fn postgres() -> Self {
        let admin = postgres_admin_url().unwrap_or_else(|| {
            panic!("KEYPLANE_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server (.ci/run starts one; see DEVELOPERS.md)")
        });
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at KEYPLANE_TEST_POSTGRES_URL is unreachable: {e}")
            });
        let name = format!("kp_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot create test database (does the role have CREATEDB?): {e}")
            });
        pool.close().await;
        let mut url = url::Url::parse(&admin).expect("KEYPLANE_TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        TestDatabase {
            url: url.to_string(),
            backend: Backend::Postgres,
            _dir: None,
            pg_name: Some(name),
        }
    }

    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// Drops a PostgreSQL test database (SQLite files go with their temporary directory).
    pub async fn drop_database(&self) {
        if let (Some(name), Some(admin)) = (&self.pg_name, postgres_admin_url()) {
            if let Ok(pool) = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&admin)
                .await
            {
                let _ = sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&pool)
                .await;
                pool.close().await;
            }
        }
    }
}
