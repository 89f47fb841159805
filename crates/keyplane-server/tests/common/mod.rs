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
