//! Machine clients: the non-human identities Keyplane itself issues secrets to: admin API tokens,
//! SCIM tokens, OpenID Connect relying parties and webhook endpoints (each a [`ClientKind`]). Every
//! client has a human owner, scopes (permission names, deny by default), an expiry, a last use and
//! a rotation date. Its secrets are stored only as SHA-256 hashes; after a rotation the previous
//! secret keeps working until its overlap ends.

use crate::admin::{allows, Permission, Role};
use crate::ids::{ApprovalId, MachineClientId, TenantId, UserId};
use crate::model::{User, UserStatus};
use crate::secret::{constant_time_eq, Secret, TokenHash};
use crate::time::Timestamp;
use crate::Error;
use rand::RngCore;

/// Every machine-client secret starts with this, so that a bearer token says what it is before
/// anything is looked up (and secret scanners can recognise a leaked one).
pub const TOKEN_PREFIX: &str = "kpm_";
/// Lifetime when none is asked for (capped by the policy's `governance.client_max_days`).
pub const DEFAULT_LIFETIME_DAYS: i64 = 90;
/// How long the previous secret keeps working after a rotation, unless asked otherwise.
pub const DEFAULT_OVERLAP_HOURS: i64 = 24;
/// Longest overlap a rotation may ask for: two secrets in force is a transition, not a state.
pub const MAX_OVERLAP_HOURS: i64 = 168;
/// A client expiring within this many days is reported as `expiring`.
pub const EXPIRING_WITHIN_DAYS: i64 = 14;
/// A client (or secret) older than this without use (or rotation) is reported.
pub const STALE_AFTER_DAYS: i64 = 30;

const DAY_MS: i64 = 86_400_000;

/// What kind of software the client is. Each kind's secret works only where that kind belongs:
/// an admin API token on the admin API, a SCIM token on `/scim/v2`, an OIDC client's at the
/// token endpoint; a webhook endpoint's signs what Keyplane sends and opens nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// A bearer token for the admin API, with admin permissions as scopes.
    ApiToken,
    /// A bearer token for SCIM 2.0 provisioning (`/scim/v2`); it needs the `users.manage` scope.
    ScimToken,
    /// An OpenID Connect relying party: its secret authenticates it at the token endpoint only;
    /// it has no admin scopes (its OIDC registration says what it may ask for).
    OidcClient,
    /// A webhook endpoint: its secret signs what Keyplane sends it and opens nothing.
    Webhook,
}

impl ClientKind {
    pub const ALL: [ClientKind; 4] = [
        ClientKind::ApiToken,
        ClientKind::ScimToken,
        ClientKind::OidcClient,
        ClientKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::ApiToken => "api_token",
            ClientKind::ScimToken => "scim_token",
            ClientKind::OidcClient => "oidc_client",
            ClientKind::Webhook => "webhook",
        }
    }

    /// The scopes a client of this kind must hold to be of any use.
    pub fn required_scopes(self) -> &'static [Permission] {
        match self {
            ClientKind::ApiToken => &[],
            ClientKind::ScimToken => &[Permission::UsersManage],
            ClientKind::OidcClient | ClientKind::Webhook => &[],
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a client stands. Only `active` and `revoked` are stored; `expired` is an active client
/// past its `expires_at` (see [`MachineClient::status_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientStatus {
    Active,
    Expired,
    Revoked,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Active => "active",
            ClientStatus::Expired => "expired",
            ClientStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ClientStatus::Active,
            ClientStatus::Expired,
            ClientStatus::Revoked,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A machine client and its secrets' hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineClient {
    pub id: MachineClientId,
    pub tenant_id: TenantId,
    pub kind: ClientKind,
    pub name: String,
    /// The person accountable for it: a user with an administrative role. The client works only
    /// while its owner is active and holds a role, and never beyond what that role allows.
    pub owner: UserId,
    /// What it may do in the admin API: delegable permissions, sorted; never empty for an API
    /// token, always empty for the other kinds.
    pub scopes: Vec<Permission>,
    /// `Active` or `Revoked` as stored.
    pub status: ClientStatus,
    pub created_at: Timestamp,
    /// Actor id of whoever asked for it.
    pub created_by: String,
    /// When it was created through dual control: the request and its approver.
    pub approval_id: Option<ApprovalId>,
    pub approved_by: Option<String>,
    pub expires_at: Timestamp,
    /// The current secret's hash; `None` until the first secret is issued (a client created by
    /// an approval gets its first secret from its requester, see `App::rotate_client`).
    pub secret_hash: Option<TokenHash>,
    /// The secret before the last rotation, accepted until `previous_expires_at`.
    pub previous_hash: Option<TokenHash>,
    pub previous_expires_at: Option<Timestamp>,
    /// When the current secret was issued by a rotation; `None`: it is the one from creation.
    pub rotated_at: Option<Timestamp>,
    /// Last successful use, kept to the minute.
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

impl MachineClient {
    /// How the audit log names it as an actor (`client:<id>`).
    pub fn actor_id(&self) -> String {
        format!("client:{}", self.id)
    }

    pub fn status_at(&self, now: Timestamp) -> ClientStatus {
        match self.status {
            ClientStatus::Active if now >= self.expires_at => ClientStatus::Expired,
            s => s,
        }
    }

    /// Whether a presented secret (by its hash) is this client's current secret, or its previous
    /// one within the overlap. Says nothing of the client's status.
    pub fn secret_matches(&self, hash: &TokenHash, now: Timestamp) -> bool {
        let same =
            |h: &Option<TokenHash>| h.as_ref().is_some_and(|h| constant_time_eq(&h.0, &hash.0));
        same(&self.secret_hash)
            || (same(&self.previous_hash) && self.previous_expires_at.is_some_and(|t| now < t))
    }

    /// Whether it holds `permission`, given its owner's role now: a scope it was given, and
    /// still allowed to the owner (a client never does more than the person accountable for it).
    pub fn may(&self, permission: Permission, owner_role: Role) -> bool {
        self.scopes.contains(&permission) && allows(owner_role, permission)
    }

    /// What a report should say about it (`docs/api.md`, machine clients): `expired`,
    /// `expiring` (within [`EXPIRING_WITHIN_DAYS`]), `no_secret` (approved, first secret not yet
    /// issued), `never_rotated` (its secret is the one from creation and older than
    /// [`STALE_AFTER_DAYS`]), `unused` (not used for [`STALE_AFTER_DAYS`], or never since
    /// creation that long ago), `owner_inactive` (the owner is suspended, deprovisioned, gone or
    /// without a role: the client does not work). A revoked client has none.
    pub fn findings(&self, now: Timestamp, owner_ok: bool) -> Vec<&'static str> {
        let mut found = vec![];
        match self.status_at(now) {
            ClientStatus::Revoked => return found,
            ClientStatus::Expired => found.push("expired"),
            ClientStatus::Active => {
                if self.expires_at.0 - now.0 <= EXPIRING_WITHIN_DAYS * DAY_MS {
                    found.push("expiring");
                }
                let stale = STALE_AFTER_DAYS * DAY_MS;
                if self.secret_hash.is_none() {
                    found.push("no_secret");
                } else if self.rotated_at.is_none() && now.0 - self.created_at.0 >= stale {
                    found.push("never_rotated");
                }
                if now.0 - self.last_used_at.unwrap_or(self.created_at).0 >= stale {
                    found.push("unused");
                }
            }
        }
        if !owner_ok {
            found.push("owner_inactive");
        }
        found
    }
}

/// The role that lets `user` own a machine client: an active user's administrative role.
pub fn owner_role(user: &User) -> Option<Role> {
    if user.status != UserStatus::Active {
        return None;
    }
    user.role.as_deref().and_then(Role::parse)
}

/// A fresh client secret: [`TOKEN_PREFIX`] and 256 random bits, base64url.
pub fn generate_secret(rng: &mut dyn RngCore) -> Secret {
    Secret::from_presented(format!("{TOKEN_PREFIX}{}", Secret::generate(rng).expose()))
}

/// Whether a bearer token is (meant as) a machine client's.
pub fn is_client_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

/// A client's name: 1-64 printable characters, trimmed.
pub fn normalise_client_name(raw: &str) -> Result<String, Error> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 64 || trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_client_name",
            "a client name is 1 to 64 printable characters",
        ));
    }
    Ok(trimmed.to_string())
}

/// Scopes as asked for: at least one, each a permission name that may be delegated to software.
/// Sorted and without duplicates.
pub fn parse_scopes(raw: &[String]) -> Result<Vec<Permission>, Error> {
    if raw.is_empty() {
        return Err(Error::invalid(
            "invalid_scope",
            "give a machine client at least one scope: it may do nothing else",
        ));
    }
    let mut scopes = Vec::with_capacity(raw.len());
    for s in raw {
        let p = Permission::parse(s.trim()).ok_or_else(|| {
            Error::invalid(
                "invalid_scope",
                format!(
                    "{s:?} is not a scope; scopes are permission names: {}",
                    delegable_names().join(", ")
                ),
            )
        })?;
        if !p.delegable() {
            return Err(Error::invalid(
                "scope_not_delegable",
                format!(
                    "{} needs a person's judgement and cannot be given to a machine client",
                    p.as_str()
                ),
            ));
        }
        scopes.push(p);
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

fn delegable_names() -> Vec<&'static str> {
    Permission::ALL
        .into_iter()
        .filter(|p| p.delegable())
        .map(Permission::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(now: Timestamp) -> MachineClient {
        MachineClient {
            id: MachineClientId::generate(),
            tenant_id: TenantId::generate(),
            kind: ClientKind::ApiToken,
            name: "exporter".into(),
            owner: UserId::generate(),
            scopes: vec![Permission::UsersRead],
            status: ClientStatus::Active,
            created_at: now,
            created_by: "cli:alice".into(),
            approval_id: None,
            approved_by: None,
            expires_at: now.plus_secs(90 * 86_400),
            secret_hash: Some(TokenHash::of(b"current")),
            previous_hash: Some(TokenHash::of(b"previous")),
            previous_expires_at: Some(now.plus_secs(3600)),
            rotated_at: None,
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        }
    }

    #[test]
    fn the_previous_secret_works_only_within_its_overlap() {
        let now = Timestamp(1_000_000);
        let c = client(now);
        assert!(c.secret_matches(&TokenHash::of(b"current"), now));
        assert!(c.secret_matches(&TokenHash::of(b"previous"), now.plus_secs(3599)));
        assert!(!c.secret_matches(&TokenHash::of(b"previous"), now.plus_secs(3600)));
        assert!(!c.secret_matches(&TokenHash::of(b"other"), now));
        let mut fresh = c.clone();
        fresh.secret_hash = None;
        fresh.previous_hash = None;
        assert!(!fresh.secret_matches(&TokenHash::of(b""), now));
    }

    #[test]
    fn scopes_are_checked_deduplicated_and_deny_by_default() {
        let s = |v: &[&str]| parse_scopes(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            s(&["users.read", "audit.read", "users.read"]).unwrap(),
            vec![Permission::UsersRead, Permission::AuditRead]
        );
        assert_eq!(s(&[]).unwrap_err().code, "invalid_scope");
        assert_eq!(s(&["users.everything"]).unwrap_err().code, "invalid_scope");
        for p in ["clients.manage", "approvals.decide", "roles.assign"] {
            assert_eq!(s(&[p]).unwrap_err().code, "scope_not_delegable", "{p}");
        }
    }

    #[test]
    fn a_client_never_does_more_than_its_owners_role() {
        let c = MachineClient {
            scopes: vec![Permission::AuditRead, Permission::UsersSuspend],
            ..client(Timestamp(0))
        };
        assert!(c.may(Permission::AuditRead, Role::Auditor));
        assert!(!c.may(Permission::UsersSuspend, Role::Auditor));
        assert!(c.may(Permission::UsersSuspend, Role::Admin));
        assert!(
            !c.may(Permission::UsersRead, Role::Owner),
            "not a scope it holds"
        );
    }

    #[test]
    fn findings_name_what_a_report_must_show() {
        let now = Timestamp(10_000 * DAY_MS);
        let c = client(now);
        assert_eq!(c.findings(now, true), Vec::<&str>::new());
        assert_eq!(c.findings(now, false), vec!["owner_inactive"]);
        let later = now.plus_secs(80 * 86_400);
        assert_eq!(
            c.findings(later, true),
            vec!["expiring", "never_rotated", "unused"]
        );
        let mut used = c.clone();
        used.last_used_at = Some(later);
        used.rotated_at = Some(later);
        assert_eq!(used.findings(later, true), vec!["expiring"]);
        assert_eq!(
            c.findings(now.plus_secs(90 * 86_400), true),
            vec!["expired"]
        );
        let mut revoked = c.clone();
        revoked.status = ClientStatus::Revoked;
        assert!(revoked.findings(later, false).is_empty());
        let mut unissued = c;
        unissued.secret_hash = None;
        assert_eq!(unissued.findings(now, true), vec!["no_secret"]);
    }

    #[test]
    fn secrets_carry_the_prefix_and_256_bits() {
        let s = generate_secret(&mut rand::rng());
        assert!(is_client_token(s.expose()));
        assert_eq!(s.expose().len(), TOKEN_PREFIX.len() + 43);
        assert!(!is_client_token("abc"));
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(
            normalise_client_name("  SIEM export ").unwrap(),
            "SIEM export"
        );
        assert!(normalise_client_name(" ").is_err());
        assert!(normalise_client_name(&"x".repeat(65)).is_err());
        assert_eq!(ClientKind::parse("api_token"), Some(ClientKind::ApiToken));
        assert_eq!(ClientKind::parse("scim_token"), Some(ClientKind::ScimToken));
        assert_eq!(ClientKind::parse("oidc"), None);
        assert_eq!(
            ClientKind::ScimToken.required_scopes(),
            &[Permission::UsersManage]
        );
        for s in ["active", "expired", "revoked"] {
            assert_eq!(ClientStatus::parse(s).unwrap().as_str(), s);
        }
    }
}
