//! The policy document: what a tenant's policy says, after parsing. `Policy::default()` is the
//! built-in policy, safe for a quickstart.

use crate::assurance::Aal;
use crate::mds::{CertificationLevel, COMPROMISE_STATUSES};

/// Rules that apply to everyone, with optional overrides per population.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scoped<T> {
    pub default: T,
    /// Population name → the rules for its members (complete: defaults with overrides applied).
    pub by_population: Vec<(String, T)>,
}

impl<T> Scoped<T> {
    /// The rules for a user in `populations`, and the rule path that names them
    /// (`authenticators` or `authenticators.regulated`). When several of the user's populations
    /// have their own rules, the first in the policy's order wins: order them from strictest.
    pub fn for_populations<'a>(&'a self, section: &str, populations: &[String]) -> (&'a T, String) {
        for (name, rules) in &self.by_population {
            if populations.iter().any(|p| p == name) {
                return (rules, format!("{section}.{name}"));
            }
        }
        (&self.default, section.to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationRequirement {
    /// Any attestation, or none.
    Any,
    /// An attestation statement the WebAuthn library verified (not `none`, not unverifiable).
    Verified,
    /// A verified attestation that chains to a trusted root.
    Trusted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// The authenticator verified the user (PIN, biometric).
    UserVerified,
    /// Not backup-eligible, shown by a trusted attestation (flags alone are self-reported).
    DeviceBound,
    /// The attestation chains to a trusted root.
    TrustedAttestation,
}

impl Requirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::UserVerified => "user_verified",
            Requirement::DeviceBound => "device_bound",
            Requirement::TrustedAttestation => "trusted_attestation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user_verified" => Some(Requirement::UserVerified),
            "device_bound" => Some(Requirement::DeviceBound),
            "trusted_attestation" => Some(Requirement::TrustedAttestation),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolmentRules {
    /// Registration needs an invitation (or a signed-in session adding a passkey).
    pub invite_required: bool,
    /// Most active passkeys a user may hold.
    pub max_passkeys: u32,
    /// Users should keep two passkeys (reported as a recommendation, never blocks sign-in).
    pub require_two: bool,
    /// Populations allowed to register; empty = everyone.
    pub populations: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatorRules {
    pub attestation: AttestationRequirement,
    /// Accepted attestation formats; empty = any.
    pub formats: Vec<String>,
    /// AAGUIDs allowed (lowercase hyphenated); empty = any not denied.
    pub allow_aaguids: Vec<String>,
    pub deny_aaguids: Vec<String>,
    /// Authenticator models allowed, by MDS description: exact, or a prefix ending in `*`
    /// (case-insensitive). With `allow_aaguids`, a model on either list is allowed.
    pub allow_models: Vec<String>,
    pub deny_models: Vec<String>,
    /// MDS status codes that refuse a model (`REVOKED`, `USER_VERIFICATION_BYPASS`, ...).
    pub deny_statuses: Vec<String>,
    /// Lowest FIDO certification level accepted (judged only with a trusted attestation).
    pub min_certification: Option<CertificationLevel>,
    /// Trust the attestation roots the FIDO MDS lists for the authenticator's AAGUID.
    pub trust_mds: bool,
    /// Further attestation roots (PEM certificates) trusted for any authenticator model.
    pub trusted_roots: Vec<String>,
    /// Synced (backup-eligible) passkeys allowed.
    pub synced_allowed: bool,
    pub user_verification_required: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssuranceRules {
    pub aal2: Vec<Requirement>,
    pub aal3: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepUpRule {
    pub id: String,
    /// Action patterns: exact (`credential.revoke`) or a prefix ending in `*` (`admin.*`).
    pub actions: Vec<String>,
    pub level: Aal,
    /// How long after reaching `level` it still counts.
    pub max_age_secs: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRules {
    pub lifetime_secs: i64,
    pub idle_secs: i64,
}

/// Account recovery (issue 7) for a population: recovery codes (path 2) and help-desk cases
/// (path 3, always available; how strict is policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryRules {
    /// Denied by default: a code is a bearer secret, weaker than a passkey, so a population gets
    /// them only when its policy says so.
    pub codes_allowed: bool,
    pub codes_count: u32,
    /// The identity checks a help-desk agent must record as passed (with evidence) before a
    /// case can move on.
    pub case_checks: Vec<String>,
    /// A second administrator (not the agent who verified) must approve the case.
    pub case_approval: bool,
    /// After verification (and approval), the account's holders may cancel for this long.
    pub cooling_off_secs: i64,
    /// How long a recovery link works once sent.
    pub link_ttl_secs: i64,
    /// A case not completed within this long of opening expires.
    pub case_ttl_secs: i64,
    /// What happens to the account's other passkeys when the recovery completes.
    pub revoke_old_credentials: bool,
    /// For this long after a recovery (a code used, a case completed), the account's sensitive
    /// acts — those a step-up rule names — are refused: re-verification by time, so that whoever
    /// recovered cannot at once change what protects the account. 0 = off.
    pub sensitive_lock_secs: i64,
    /// Fraud signals: more than this many cases for one account within `fraud_window_secs`
    /// raise a hold.
    pub fraud_max_cases: u32,
    pub fraud_window_secs: i64,
    /// A case opened within this long of a sign-in with a passkey registered in that same
    /// window (a new device elsewhere) raises a hold; 0 = off.
    pub fraud_new_device_secs: i64,
    /// More than this many cases opened from one network (IPv4 /24, IPv6 /48) within
    /// `fraud_window_secs` raise a hold on each further one.
    pub fraud_max_per_network: u32,
    /// A case for an account holding an administrative role always needs a fraud review.
    pub fraud_hold_admins: bool,
}

impl Default for RecoveryRules {
    fn default() -> Self {
        RecoveryRules {
            codes_allowed: false,
            codes_count: 10,
            case_checks: vec!["identity_document".into()],
            case_approval: false,
            cooling_off_secs: 24 * 3600,
            link_ttl_secs: 15 * 60,
            case_ttl_secs: 7 * 24 * 3600,
            revoke_old_credentials: true,
            sensitive_lock_secs: 0,
            fraud_max_cases: 2,
            fraud_window_secs: 7 * 24 * 3600,
            fraud_new_device_secs: 24 * 3600,
            fraud_max_per_network: 5,
            fraud_hold_admins: true,
        }
    }
}

/// A tenant's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub version: u32,
    /// Populations the policy knows (overrides may only name these).
    pub populations: Vec<String>,
    pub enrolment: EnrolmentRules,
    pub authenticators: Scoped<AuthenticatorRules>,
    pub assurance: AssuranceRules,
    pub step_up: Vec<StepUpRule>,
    pub sessions: Scoped<SessionRules>,
    pub recovery: Scoped<RecoveryRules>,
    pub governance: Governance,
}

/// Acts that may be put under dual control (a second administrator approves).
pub const DUAL_CONTROL_ACTS: &[&str] = &[
    "policy.apply",
    "policy.rollback",
    "credentials.bulk_revoke",
    "clients.create",
];

/// How the policy itself, and other sensitive acts, are governed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Governance {
    /// Acts (from [`DUAL_CONTROL_ACTS`]) that need a second administrator's approval.
    pub dual_control: Vec<String>,
    /// How long a request for approval stays open.
    pub approval_ttl_secs: i64,
    /// Longest exception that may be granted, days.
    pub exception_max_days: i64,
    /// How many days ahead an expiring exception is announced (`exception.expiring`).
    pub exception_notice_days: i64,
    /// What deprovisioning a user does to their passkeys: revoke them (default) or keep them
    /// (suspended with the user, usable again if the account is reactivated).
    pub deprovision_revokes_credentials: bool,
    /// Longest lifetime of a machine client, days; also caps the default lifetime (90 days).
    pub client_max_days: i64,
}

impl Governance {
    pub fn needs_approval(&self, act: &str) -> bool {
        self.dual_control.iter().any(|a| a == act)
    }
}

impl Default for Governance {
    fn default() -> Self {
        Governance {
            dual_control: vec![],
            approval_ttl_secs: 24 * 3600,
            exception_max_days: 90,
            exception_notice_days: 7,
            deprovision_revokes_credentials: true,
            client_max_days: crate::client::DEFAULT_LIFETIME_DAYS,
        }
    }
}

impl Default for AuthenticatorRules {
    fn default() -> Self {
        AuthenticatorRules {
            attestation: AttestationRequirement::Any,
            formats: vec![],
            allow_aaguids: vec![],
            deny_aaguids: vec![],
            allow_models: vec![],
            deny_models: vec![],
            deny_statuses: COMPROMISE_STATUSES.iter().map(|s| s.to_string()).collect(),
            min_certification: None,
            trust_mds: true,
            trusted_roots: vec![],
            synced_allowed: true,
            user_verification_required: false,
        }
    }
}

impl Default for SessionRules {
    fn default() -> Self {
        SessionRules {
            lifetime_secs: 12 * 3600,
            idle_secs: 3600,
        }
    }
}

impl Default for Policy {
    /// Invitations required, up to 10 passkeys, any authenticator; `aal2` = user verified,
    /// `aal3` = user verified on a device-bound key with trusted attestation; administrative
    /// actions need `aal2` reached within 15 minutes.
    fn default() -> Self {
        Policy {
            version: 1,
            populations: vec![],
            enrolment: EnrolmentRules {
                invite_required: true,
                max_passkeys: 10,
                require_two: false,
                populations: vec![],
            },
            authenticators: Scoped {
                default: AuthenticatorRules::default(),
                by_population: vec![],
            },
            assurance: AssuranceRules {
                aal2: vec![Requirement::UserVerified],
                aal3: vec![
                    Requirement::UserVerified,
                    Requirement::DeviceBound,
                    Requirement::TrustedAttestation,
                ],
            },
            step_up: vec![StepUpRule {
                id: "admin".into(),
                actions: vec!["admin.*".into()],
                level: Aal::Aal2,
                max_age_secs: 900,
            }],
            sessions: Scoped {
                default: SessionRules::default(),
                by_population: vec![],
            },
            recovery: Scoped {
                default: RecoveryRules::default(),
                by_population: vec![],
            },
            governance: Governance::default(),
        }
    }
}
