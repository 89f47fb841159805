//! Test kit: a real Keyplane server on a random loopback port over a real database (a SQLite
//! file, or a fresh PostgreSQL database), and a software authenticator that makes real
//! signatures. Every integration test and the load generator use it.

pub mod authenticator;
pub mod database;
pub mod pki;
pub mod server;
pub mod smtp;
pub mod test_data;

pub use authenticator::SoftAuthenticator;
pub use database::{postgres_admin_url, TestDatabase};
pub use server::{Reply, TestServer, TestServerBuilder};
pub use smtp::SmtpServer;

/// The backends the shared suites run against.
pub use keyplane_store::Backend;
