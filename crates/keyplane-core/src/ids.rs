//! Typed identifiers. Every id is a random UUID rendered as text; the types keep a tenant id from
//! ever being passed where a user id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// Parses an id that came from outside (a URL, a request body, the database).
            pub fn parse(s: &str) -> Option<Self> {
                uuid::Uuid::parse_str(s).ok().map(|u| Self(u.to_string()))
            }

            /// Wraps a value read back from our own storage, which only ever holds valid ids.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// One authentication domain.
    TenantId
);
id_type!(
    /// One recovery code (its stored hash), never the code itself.
    RecoveryCodeId
);
id_type!(
    /// One row of the notifications outbox.
    NotificationId
);
id_type!(
    /// A user account inside a tenant.
    UserId
);
id_type!(
    /// Keyplane's own id of a stored passkey (not the WebAuthn credential id, which is
    /// authenticator-chosen bytes).
    CredentialRecordId
);
id_type!(
    /// An in-flight WebAuthn ceremony.
    CeremonyId
);
id_type!(
    /// A signed-in session (the row, not its token).
    SessionId
);
id_type!(
    /// An enrolment invitation.
    EnrolmentId
);
id_type!(
    /// A request for a second administrator's approval.
    ApprovalId
);
id_type!(
    /// A fraud alert (e.g. a cloned authenticator).
    FraudAlertId
);
id_type!(
    /// A time-boxed exception to the policy.
    ExceptionId
);
id_type!(
    /// A bulk action over credentials.
    BulkJobId
);
id_type!(
    /// A machine client: a non-human identity Keyplane issues secrets to (an admin API token).
    MachineClientId
);
id_type!(
    /// A re-enrolment campaign for one authenticator model.
    CampaignId
);
id_type!(
    /// A SCIM group (a population as an identity provider provisions it).
    ScimGroupId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_non_uuid_input() {
        assert!(TenantId::parse("not-a-uuid").is_none());
        assert!(TenantId::parse("").is_none());
        assert!(TenantId::parse("'; DROP TABLE users; --").is_none());
    }

    #[test]
    fn parse_normalises_case() {
        let id = UserId::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").expect("valid uuid");
        assert_eq!(id.as_str(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    }
}
id_type!(
    /// A help-desk recovery case (issue 7, path 3).
    RecoveryCaseId
);
