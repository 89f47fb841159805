//! Keyplane's storage: the [`Store`] trait and its SQL implementation for SQLite (embedded,
//! WAL) and PostgreSQL (scale-out), with migrations per backend.
//!
//! Architecture invariants:
//! - this is the only crate that contains SQL;
//! - every query takes the tenant id, so nothing can cross tenants;
//! - single use of ceremonies and enrolment tokens is enforced by the database (a conditional
//!   `DELETE … RETURNING` / `UPDATE … WHERE used_at IS NULL`), not by the application;
//! - multi-statement transactions begin with a write, so SQLite never has to upgrade a read lock.

mod audit;
mod audit_page;
mod audit_read;
mod bulk;
mod campaigns;
mod copy;
mod notifications;
mod oidc;
mod pg_copy;
mod rows;
mod scim;
mod sql;
mod store;
mod webhooks;

pub use audit::{AuditBatch, AuditFilter};
pub use audit_page::AuditPage;
pub use bulk::ImportedUser;
pub use copy::{copy_sqlite_to_postgres, TableCopy};
pub use notifications::{NotificationFilter, NotificationOutcome};
pub use scim::{ScimUserChange, ScimUserRow};
pub use sql::{redact as redact_url, Backend, SqlStore, DEFAULT_ACQUIRE_TIMEOUT};
pub use store::{
    AssertionRecord, CampaignMark, CaseFilter, CredentialFacts, PolicySubject, PolicyVersion,
    RecoveryCodesStatus, RecoveryFinish, Store, StoreError,
};
pub use webhooks::{DeliveryFilter, DeliveryOutcome};
