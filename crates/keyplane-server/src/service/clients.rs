//! Machine clients (admin API tokens, SCIM tokens, OIDC clients, webhook endpoints): created with an owner, scopes and an expiry, under
//! dual control when the policy says so; listed with what a report must say about each; rotated
//! with an overlap; revoked at once. And the check every machine client token goes through on
//! the admin API (`client_for_token`).
//!
//! A secret is shown once, to whoever the service hands it to, and stored only as its SHA-256.
//! A client created by an approval has no secret yet: its requester issues the first one with
//! `rotate_client`, so that neither the approval (readable by every auditor) nor the approver
//! ever holds it.

use super::App;
use keyplane_core::admin::{allows, Role};
use keyplane_core::audit::{Actor, Caller, Outcome, RequestContext};
use keyplane_core::client::{
    self, DEFAULT_LIFETIME_DAYS, DEFAULT_OVERLAP_HOURS, MAX_OVERLAP_HOURS,
};
use keyplane_core::oidc::{OidcClientConfig, TokenAuthMethod};
use keyplane_core::policy::Governance;
use keyplane_core::webhook::WebhookEndpoint;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What a request for a new machine client asks for. It is also the payload of the request
/// for approval under dual control, so it never holds a secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewClient {
    /// `api_token`, `scim_token`, `oidc_client` or `webhook`.
    pub kind: String,
    pub name: String,
    pub owner: UserId,
    /// Permission names (an API token's; none for an OIDC client).
    pub scopes: Vec<String>,
    /// Lifetime in days; default 90, at most `governance.client_max_days`.
    pub expires_days: Option<i64>,
    /// An OIDC client's registration (required for `oidc_client`, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcRegistration>,
    /// A webhook endpoint's URL and event types (required for `webhook`, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRegistration>,
}

/// A webhook endpoint as asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRegistration {
    pub url: String,
    /// Audit actions from [`keyplane_core::webhook::EVENT_TYPES`].
    pub event_types: Vec<String>,
}

/// What a client of a kind other than `api_token` is registered with.
#[derive(Clone, Debug)]
enum Registration {
    None,
    Oidc(OidcClientConfig),
    Webhook(WebhookEndpoint),
}

/// An OIDC client's registration as asked for (see [`keyplane_core::oidc::OidcClientConfig`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRegistration {
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// The client's JWK Set, for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// OIDC scopes it may ask for; default `openid profile email`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

impl OidcRegistration {
    fn config(&self) -> Result<OidcClientConfig, Error> {
        let method = self
            .token_endpoint_auth_method
            .as_deref()
            .unwrap_or("client_secret_basic");
        let auth_method = TokenAuthMethod::parse(method).ok_or_else(|| {
            Error::invalid(
                "invalid_auth_method",
                format!("{method:?} is not a token endpoint auth method Keyplane offers (client_secret_basic, client_secret_post, private_key_jwt)"),
            )
        })?;
        let jwks = match &self.jwks {
            None => None,
            Some(v) => {
                crate::service::oidc::parse_client_jwks(v)?;
                Some(v.to_string())
            }
        };
        let config = OidcClientConfig {
            redirect_uris: self.redirect_uris.clone(),
            post_logout_redirect_uris: self.post_logout_redirect_uris.clone(),
            auth_method,
            jwks,
            scopes: self
                .scopes
                .clone()
                .unwrap_or_else(|| ["openid", "profile", "email"].map(String::from).into()),
        };
        config.validate()?;
        Ok(config)
    }
}

/// A request checked against the tenant's users and the active policy.
struct CheckedClient {
    kind: ClientKind,
    registration: Registration,
    name: String,
    owner: User,
    scopes: Vec<admin::Permission>,
    days: i64,
}

/// What creating a client did.
#[derive(Debug)]
pub enum ClientCreation {
    /// Created, with its secret (shown once).
    Created {
        client: Box<ClientOverview>,
        secret: Secret,
    },
    /// The active policy puts `clients.create` under dual control: a different administrator
    /// must approve; the requester then issues the first secret with a rotation.
    AwaitingApproval(Box<Approval>),
}

/// A client as reports and listings show it: with its owner and its status as of now.
#[derive(Clone, Debug)]
pub struct ClientOverview {
    pub client: MachineClient,
    /// `None` when the owner no longer exists in the tenant.
    pub owner: Option<User>,
    pub status: ClientStatus,
    /// See [`MachineClient::findings`].
    pub findings: Vec<&'static str>,
}

/// The refusal every rejected machine client token gets, whatever the reason, so that a token
/// tells nothing about the client it once belonged to.
fn rejected() -> Error {
    Error::unauthenticated(
        "unauthenticated",
        "the machine client token is unknown, expired or revoked, or its owner is no longer an active administrator",
    )
}

fn not_found() -> Error {
    Error::not_found("client_not_found", "no such machine client in this tenant")
}

impl App {
    async fn check_new_client(
        &self,
        tenant: &Tenant,
        req: &NewClient,
        governance: &Governance,
    ) -> Result<CheckedClient, Error> {
        let kind = ClientKind::parse(&req.kind).ok_or_else(|| {
            Error::invalid(
                "invalid_kind",
                format!(
                    "{:?} is not a machine client kind Keyplane issues (api_token, scim_token, oidc_client, webhook)",
                    req.kind
                ),
            )
        })?;
        let name = client::normalise_client_name(&req.name)?;
        let no_scopes = || {
            if req.scopes.is_empty() {
                Ok(vec![])
            } else {
                Err(Error::invalid(
                    "invalid_scope",
                    format!(
                        "a machine client of kind {} has no admin API scopes",
                        kind.as_str()
                    ),
                ))
            }
        };
        let (scopes, registration) = match (kind, &req.oidc, &req.webhook) {
            (ClientKind::ApiToken | ClientKind::ScimToken, None, None) => {
                let scopes = client::parse_scopes(&req.scopes)?;
                if let Some(p) = kind.required_scopes().iter().find(|p| !scopes.contains(p)) {
                    return Err(Error::invalid(
                        "invalid_scope",
                        format!("a {} client needs the scope {}", kind.as_str(), p.as_str()),
                    ));
                }
                (scopes, Registration::None)
            }
            (ClientKind::OidcClient, Some(r), None) => {
                (no_scopes()?, Registration::Oidc(r.config()?))
            }
            (ClientKind::Webhook, None, Some(w)) => {
                let mut event_types = w.event_types.clone();
                event_types.sort();
                event_types.dedup();
                let endpoint = WebhookEndpoint {
                    url: w.url.clone(),
                    event_types,
                };
                endpoint.validate()?;
                (no_scopes()?, Registration::Webhook(endpoint))
            }
            (ClientKind::OidcClient, None, _) => {
                return Err(Error::invalid(
                    "invalid_oidc",
                    "an OIDC client needs its registration: oidc.redirect_uris at least",
                ))
            }
            (ClientKind::Webhook, _, None) => {
                return Err(Error::invalid(
                    "invalid_webhook",
                    "a webhook endpoint needs webhook.url and webhook.event_types",
                ))
            }
            (_, Some(_), _) => {
                return Err(Error::invalid(
                    "invalid_oidc",
                    "an OIDC registration is only for kind oidc_client",
                ))
            }
            (_, _, Some(_)) => {
                return Err(Error::invalid(
                    "invalid_webhook",
                    "a webhook registration is only for kind webhook",
                ))
            }
        };
        let owner = self
            .store
            .user_by_id(&tenant.id, &req.owner)
            .await?
            .ok_or_else(|| {
                Error::invalid("invalid_owner", "the owner is not a user of this tenant")
            })?;
        let role = client::owner_role(&owner).ok_or_else(|| {
            Error::invalid(
                "invalid_owner",
                format!(
                    "{} cannot own a machine client: the owner must be an active user with an administrative role",
                    owner.username
                ),
            )
        })?;
        if let Some(p) = scopes.iter().find(|p| !allows(role, **p)) {
            return Err(Error::invalid(
                "scope_exceeds_owner",
                format!(
                    "{} is not allowed to {} ({}), so a client they own may not be either",
                    owner.username,
                    p.as_str(),
                    role.as_str()
                ),
            ));
        }
        let max = governance.client_max_days;
        let days = req.expires_days.unwrap_or(DEFAULT_LIFETIME_DAYS.min(max));
        if !(1..=max).contains(&days) {
            return Err(Error::invalid(
                "invalid_expiry",
                format!("a machine client lives 1 to {max} days (governance.client_max_days)"),
            ));
        }
        Ok(CheckedClient {
            kind,
            registration,
            name,
            owner,
            scopes,
            days,
        })
    }

    fn new_client_record(
        tenant: &Tenant,
        c: CheckedClient,
        created_by: &str,
        now: Timestamp,
    ) -> MachineClient {
        MachineClient {
            id: MachineClientId::generate(),
            tenant_id: tenant.id.clone(),
            kind: c.kind,
            name: c.name,
            owner: c.owner.id,
            scopes: c.scopes,
            status: ClientStatus::Active,
            created_at: now,
            created_by: created_by.to_string(),
            approval_id: None,
            approved_by: None,
            expires_at: now.plus_secs(c.days * 86_400),
            secret_hash: None,
            previous_hash: None,
            previous_expires_at: None,
            rotated_at: None,
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        }
    }

    async fn insert_client(
        &self,
        c: &MachineClient,
        registration: &Registration,
        audit: AuditBatch<'_>,
    ) -> Result<(), Error> {
        match registration {
            Registration::Oidc(config) => self.store.create_oidc_client(c, config, audit).await?,
            Registration::Webhook(e) => self.store.create_webhook_client(c, e, audit).await?,
            Registration::None => self.store.create_client(c, audit).await?,
        }
        Ok(())
    }

    /// The secret as its holder receives it: the random one, or for a webhook endpoint the
    /// signing secret derived from it (`whsec_…`), which Keyplane does not store.
    fn handed_out(&self, c: &MachineClient, seed: Secret) -> Result<Secret, Error> {
        if c.kind != ClientKind::Webhook {
            return Ok(seed);
        }
        let key = self.webhook_key()?;
        Ok(Secret::from_presented(
            keyplane_core::webhook::format_secret(&keyplane_core::webhook::signing_secret(
                &key,
                &seed.hash(),
            )),
        ))
    }

    fn created_event(
        caller: &Caller,
        c: &MachineClient,
        registration: &Registration,
    ) -> keyplane_core::audit::NewEvent {
        let oidc = match registration {
            Registration::Oidc(o) => Some(o),
            _ => None,
        };
        let webhook = match registration {
            Registration::Webhook(w) => Some(w),
            _ => None,
        };
        caller
            .event("client.created", "client", c.id.as_str())
            .details(json!({
                "webhook": webhook.map(|w| json!({ "url": w.url, "event_types": w.event_types })),
                "oidc": oidc.map(|o| json!({
                    "redirect_uris": o.redirect_uris,
                    "post_logout_redirect_uris": o.post_logout_redirect_uris,
                    "token_endpoint_auth_method": o.auth_method.as_str(),
                    "scopes": o.scopes,
                })),
                "kind": c.kind.as_str(),
                "name": c.name,
                "owner": c.owner,
                "scopes": c.scopes.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "expires_at": c.expires_at.to_rfc3339(),
                "approval": c.approval_id,
                "requested_by": c.approval_id.as_ref().map(|_| &c.created_by),
            }))
    }

    /// Creates a machine client (`client.created`) and returns it with its secret, or, when the
    /// active policy puts `clients.create` under dual control, opens a request for approval.
    pub async fn create_client(
        &self,
        tenant: &Tenant,
        req: NewClient,
        caller: &Caller,
    ) -> Result<ClientCreation, Error> {
        let governance = self.active_policy(tenant).await?.policy.governance.clone();
        let checked = self.check_new_client(tenant, &req, &governance).await?;
        if governance.needs_approval("clients.create") {
            let summary = format!(
                "create machine client {:?} ({}) owned by {} with scopes {} for {} day(s)",
                checked.name,
                checked.kind.as_str(),
                checked.owner.username,
                checked
                    .scopes
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                checked.days
            );
            let payload = serde_json::to_value(NewClient {
                kind: checked.kind.as_str().into(),
                name: checked.name,
                owner: checked.owner.id,
                scopes: checked
                    .scopes
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect(),
                expires_days: Some(checked.days),
                oidc: req.oidc.clone(),
                webhook: req.webhook.clone(),
            })
            .map_err(|e| Error::internal(format!("client request payload: {e}")))?;
            let approval = self
                .request_approval(
                    tenant,
                    "clients.create",
                    payload,
                    summary,
                    &governance,
                    caller,
                )
                .await?;
            return Ok(ClientCreation::AwaitingApproval(Box::new(approval)));
        }
        let now = self.clock.now();
        let secret = client::generate_secret(&mut rand::rng());
        let owner = checked.owner.clone();
        let registration = checked.registration.clone();
        let mut c = Self::new_client_record(tenant, checked, &caller.actor.id, now);
        c.secret_hash = Some(secret.hash());
        let event = Self::created_event(caller, &c, &registration);
        self.insert_client(&c, &registration, AuditBatch::new(now, &[event]))
            .await?;
        let secret = self.handed_out(&c, secret)?;
        Ok(ClientCreation::Created {
            client: Box::new(Self::overview(c, Some(owner), now)),
            secret,
        })
    }

    /// Carries out an approved `clients.create`, checked again against the policy and users as
    /// they are now. The client has no secret: its requester issues the first one.
    pub(crate) async fn create_approved_client(
        &self,
        tenant: &Tenant,
        approval: &Approval,
        approver: &Caller,
    ) -> Result<MachineClient, Error> {
        let req: NewClient = serde_json::from_value(approval.payload.clone())
            .map_err(|e| Error::internal(format!("client approval payload: {e}")))?;
        let governance = self.active_policy(tenant).await?.policy.governance.clone();
        let checked = self.check_new_client(tenant, &req, &governance).await?;
        let now = self.clock.now();
        let registration = checked.registration.clone();
        let mut c = Self::new_client_record(tenant, checked, &approval.requested_by, now);
        c.approval_id = Some(approval.id.clone());
        c.approved_by = Some(approver.actor.id.clone());
        let event = Self::created_event(approver, &c, &registration);
        self.insert_client(&c, &registration, AuditBatch::new(now, &[event]))
            .await?;
        Ok(c)
    }

    fn overview(c: MachineClient, owner: Option<User>, now: Timestamp) -> ClientOverview {
        let owner_ok = owner.as_ref().and_then(client::owner_role).is_some();
        ClientOverview {
            status: c.status_at(now),
            findings: c.findings(now, owner_ok),
            client: c,
            owner,
        }
    }

    /// What a client of kind `oidc_client` or `webhook` is registered with.
    pub async fn client_registration(
        &self,
        tenant: &Tenant,
        c: &MachineClient,
    ) -> Result<(Option<OidcClientConfig>, Option<WebhookEndpoint>), Error> {
        Ok(match c.kind {
            ClientKind::OidcClient => (
                self.store.oidc_client_config(&tenant.id, &c.id).await?,
                None,
            ),
            ClientKind::Webhook => (None, self.store.webhook_endpoint(&tenant.id, &c.id).await?),
            ClientKind::ApiToken | ClientKind::ScimToken => (None, None),
        })
    }

    /// Every machine client of the tenant, newest first, as of now.
    pub async fn list_clients(&self, tenant: &Tenant) -> Result<Vec<ClientOverview>, Error> {
        let now = self.clock.now();
        // Owners are looked up one by one (a tenant has few clients and may have many users).
        let mut owners: std::collections::HashMap<UserId, Option<User>> = Default::default();
        let mut out = vec![];
        for c in self.store.list_clients(&tenant.id).await? {
            if !owners.contains_key(&c.owner) {
                let u = self.store.user_by_id(&tenant.id, &c.owner).await?;
                owners.insert(c.owner.clone(), u);
            }
            let owner = owners[&c.owner].clone();
            out.push(Self::overview(c, owner, now));
        }
        Ok(out)
    }

    /// One machine client, as of now.
    pub async fn client(
        &self,
        tenant: &Tenant,
        id: &MachineClientId,
    ) -> Result<ClientOverview, Error> {
        let c = self
            .store
            .client_by_id(&tenant.id, id)
            .await?
            .ok_or_else(not_found)?;
        let owner = self.store.user_by_id(&tenant.id, &c.owner).await?;
        Ok(Self::overview(c, owner, self.clock.now()))
    }

    /// Issues a new secret (`client.rotated`); the previous one keeps working for
    /// `overlap_hours` (default 24, at most 168; 0 ends it now). A client created by an approval
    /// gets its first secret this way, from its requester only.
    pub async fn rotate_client(
        &self,
        tenant: &Tenant,
        id: &MachineClientId,
        overlap_hours: Option<i64>,
        caller: &Caller,
    ) -> Result<(ClientOverview, Secret), Error> {
        let overlap = overlap_hours.unwrap_or(DEFAULT_OVERLAP_HOURS);
        if !(0..=MAX_OVERLAP_HOURS).contains(&overlap) {
            return Err(Error::invalid(
                "invalid_overlap",
                format!("the overlap is 0 to {MAX_OVERLAP_HOURS} hours"),
            ));
        }
        let c = self
            .store
            .client_by_id(&tenant.id, id)
            .await?
            .ok_or_else(not_found)?;
        let now = self.clock.now();
        let status = c.status_at(now);
        if status != ClientStatus::Active {
            return Err(Error::conflict(
                "client_not_active",
                format!(
                    "the machine client is {}; create a new one",
                    status.as_str()
                ),
            ));
        }
        let first = c.secret_hash.is_none();
        if first && caller.actor.id != c.created_by {
            return Err(Error::forbidden(
                "first_secret_for_requester",
                "this client was created through an approval: its first secret is issued to the administrator who asked for it",
            ));
        }
        let secret = client::generate_secret(&mut rand::rng());
        let previous_until = now.plus_secs(overlap * 3600);
        let event = caller
            .event("client.rotated", "client", c.id.as_str())
            .details(json!({
                "first_secret": first,
                "previous_expires_at": (!first).then(|| previous_until.to_rfc3339()),
            }));
        if !self
            .store
            .rotate_client(
                &tenant.id,
                id,
                &secret.hash(),
                previous_until,
                AuditBatch::new(now, &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "client_not_active",
                "the machine client was revoked or expired meanwhile",
            ));
        }
        let secret = self.handed_out(&c, secret)?;
        Ok((self.client(tenant, id).await?, secret))
    }

    /// Revokes a machine client: both its secrets stop working at once (`client.revoked`).
    pub async fn revoke_client(
        &self,
        tenant: &Tenant,
        id: &MachineClientId,
        reason: &str,
        caller: &Caller,
    ) -> Result<ClientOverview, Error> {
        let reason = super::check_reason(reason)?;
        let c = self
            .store
            .client_by_id(&tenant.id, id)
            .await?
            .ok_or_else(not_found)?;
        let event = caller
            .event("client.revoked", "client", c.id.as_str())
            .details(json!({ "name": c.name, "reason": reason }));
        if !self
            .store
            .revoke_client(
                &tenant.id,
                id,
                &caller.actor.id,
                &reason,
                AuditBatch::new(self.clock.now(), &[event]),
            )
            .await?
        {
            return Err(Error::conflict(
                "client_revoked",
                "the machine client is already revoked",
            ));
        }
        self.client(tenant, id).await
    }

    /// The machine client a bearer token belongs to, and its owner's role, if the token is
    /// accepted now: the client's current secret (or its previous one within the overlap), the
    /// client active and unexpired, its owner an active user with an administrative role. A
    /// refused token of a known client is recorded (`client.refused`); use is not an event, only
    /// `last_used_at`, written at most once a minute.
    ///
    /// A client of another `kind` than the API asks for (a SCIM token, an OIDC client's or a
    /// webhook endpoint's secret on the admin API, an admin API token on `/scim/v2`) is refused with 403 `client_kind_not_accepted`, and
    /// recorded: the holder has a valid secret, so saying why tells them nothing new.
    pub async fn client_for_token(
        &self,
        tenant: &Tenant,
        token: &Secret,
        kind: ClientKind,
        context: &RequestContext,
    ) -> Result<(MachineClient, Role), Error> {
        let c = self
            .store
            .client_by_secret(&tenant.id, &token.hash())
            .await?
            .ok_or_else(rejected)?;
        let now = self.clock.now();
        let owner = self.store.user_by_id(&tenant.id, &c.owner).await?;
        let role = owner.as_ref().and_then(client::owner_role);
        let refusal = match (c.status_at(now), role) {
            _ if !c.secret_matches(&token.hash(), now) => Some("client_secret_superseded"),
            (ClientStatus::Revoked, _) => Some("client_revoked"),
            (ClientStatus::Expired, _) => Some("client_expired"),
            (ClientStatus::Active, None) => Some("client_owner_inactive"),
            (ClientStatus::Active, Some(_)) => None,
        };
        let Some(role) = role.filter(|_| refusal.is_none()) else {
            let event = Caller::new(Actor::machine(&c.id), context.clone())
                .event("client.refused", "client", c.id.as_str())
                .outcome(Outcome::Denied, refusal.unwrap_or("client_refused"));
            self.record_failure(tenant, event).await;
            return Err(rejected());
        };
        if c.kind != kind {
            let event = Caller::new(Actor::machine(&c.id), context.clone())
                .event("client.refused", "client", c.id.as_str())
                .outcome(Outcome::Denied, "client_kind_not_accepted");
            self.record_failure(tenant, event).await;
            return Err(Error::forbidden(
                "client_kind_not_accepted",
                format!(
                    "a {} client's token is not accepted here; this API takes {} clients",
                    c.kind.as_str(),
                    kind.as_str()
                ),
            ));
        }
        if c.last_used_at.is_none_or(|t| now.0 - t.0 >= 60_000) {
            self.store.touch_client(&tenant.id, &c.id, now).await?;
        }
        Ok((c, role))
    }

    /// Whether `approver` may not decide a request made by `requested_by` although the two ids
    /// differ: a machine client's request is its owner's, so its owner cannot approve it.
    pub(crate) async fn acts_for(
        &self,
        tenant: &Tenant,
        requested_by: &str,
        approver: &str,
    ) -> Result<bool, Error> {
        let Some(id) = requested_by
            .strip_prefix("client:")
            .and_then(MachineClientId::parse)
        else {
            return Ok(false);
        };
        Ok(self
            .store
            .client_by_id(&tenant.id, &id)
            .await?
            .is_some_and(|c| c.owner.as_str() == approver))
    }
}
