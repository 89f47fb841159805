//! Keyplane's domain: tenants, users, credentials, ceremonies, sessions and assurance.
//!
//! Architecture invariant: nothing here performs I/O, reads the clock or draws randomness on its
//! own. Time arrives as [`Timestamp`] values, randomness through a `rand` RNG handed in.

pub mod admin;
pub mod assurance;
pub mod audit;
pub mod campaign;
pub mod client;
pub mod error;
pub mod ids;
pub mod mds;
pub mod model;
pub mod notification;
pub mod oidc;
pub mod policy;
pub mod recovery_case;
pub mod recovery_code;
pub mod scim;
pub mod secret;
pub mod time;
pub mod webhook;

pub use assurance::{Aal, Amr, AssuranceFacts};
pub use campaign::{Campaign, CampaignAction};
pub use client::{ClientKind, ClientStatus, MachineClient};
pub use error::{Error, ErrorKind};
pub use ids::{
    ApprovalId, BulkJobId, CampaignId, CeremonyId, CredentialRecordId, EnrolmentId, ExceptionId,
    FraudAlertId, MachineClientId, NotificationId, RecoveryCaseId, RecoveryCodeId, ScimGroupId,
    SessionId, TenantId, UserId,
};
pub use model::*;
pub use notification::{Notification, NotificationStatus};
pub use recovery_code::RecoveryCode;
pub use secret::{Secret, TokenHash};
pub use time::{Clock, SystemClock, Timestamp};
