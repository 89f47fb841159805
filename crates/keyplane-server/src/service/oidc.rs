//! The OpenID Connect provider: authorization (code flow with PKCE S256, `acr_values`,
//! `max_age`, `prompt`), the token endpoint (codes, refresh tokens rotated with reuse
//! detection), userinfo and end-session, for one tenant at a time. Client authentication at the
//! token endpoint is in `oidc_client_auth.rs`; the signing key in `crate::oidc_keys`.
//!
//! Errors carry OAuth's codes (`invalid_grant`, `invalid_client`, …) as their code; the HTTP
//! edge turns them into the OAuth JSON shape or a redirect.

use super::App;
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::oidc::{self, AuthRequirements, GrantKind, OidcClientConfig, OidcGrant, Unmet};
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The parameters of an authorization request, as sent (unknown ones are ignored, as OAuth
/// requires).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthorizeQuery {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub acr_values: Option<String>,
    pub max_age: Option<String>,
    pub prompt: Option<String>,
    pub response_mode: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
}

/// A checked authorization request: kept (as a grant's body) while the user signs in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: MachineClientId,
    pub client_name: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub acr_values: Vec<Aal>,
    pub max_age: Option<i64>,
    pub prompt_login: bool,
    pub prompt_none: bool,
    pub requested_at: Timestamp,
}

impl AuthorizationRequest {
    fn requirements(&self) -> AuthRequirements {
        AuthRequirements {
            acr_values: self.acr_values.clone(),
            max_age: self.max_age,
            prompt_login: self.prompt_login,
        }
    }

    /// The redirect back to the client with `params` (and `state`, and `iss` per RFC 9207).
    fn redirect(&self, issuer: &str, params: &[(&str, &str)]) -> String {
        let mut url = self.redirect_uri.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = &self.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
        url + &q.finish()
    }

    fn error(&self, issuer: &str, code: &str, description: &str) -> String {
        self.redirect(
            issuer,
            &[("error", code), ("error_description", description)],
        )
    }
}

/// Where the browser goes next.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// Back to the client: a code, or an error the client must hear.
    Redirect(String),
    /// To the sign-in page, carrying this pending request's id.
    SignIn { request: String },
}

/// What a pending request shows on the sign-in page.
pub struct PendingAuthorization {
    pub client_name: String,
    pub minimum_level: Option<Aal>,
    pub sign_in_again: bool,
}

/// What a code or token stands for (its grant's body).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct GrantBody {
    scopes: Vec<String>,
    nonce: Option<String>,
    acr: Aal,
    amr: Vec<String>,
    auth_time: Timestamp,
    /// Codes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_challenge: Option<String>,
}

/// The token endpoint's answer.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub id_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// A token endpoint request's grant.
pub enum TokenGrant {
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
    },
}

pub(crate) fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn invalid_request(msg: impl Into<String>) -> Error {
    Error::invalid("invalid_request", msg)
}

fn invalid_grant(msg: impl Into<String>) -> Error {
    Error::invalid("invalid_grant", msg)
}

/// Parses a client's JWK Set (for `private_key_jwt`): an object with a non-empty `keys` list of
/// public keys jsonwebtoken can use.
pub fn parse_client_jwks(v: &Value) -> Result<jsonwebtoken::jwk::JwkSet, Error> {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(v.clone())
        .map_err(|e| Error::invalid("invalid_jwks", format!("jwks is not a JWK Set: {e}")))?;
    if set.keys.is_empty() {
        return Err(Error::invalid("invalid_jwks", "jwks has no keys"));
    }
    for k in &set.keys {
        jsonwebtoken::DecodingKey::from_jwk(k).map_err(|e| {
            Error::invalid("invalid_jwks", format!("a key in jwks is not usable: {e}"))
        })?;
    }
    Ok(set)
}

impl App {
    /// The tenant's issuer: its first origin (the URL relying parties discover it at).
    pub fn oidc_issuer(&self, tenant: &Tenant) -> String {
        tenant
            .origins
            .first()
            .cloned()
            .unwrap_or_else(|| format!("https://{}", tenant.rp_id))
    }

    /// An active OIDC client of the tenant and its registration.
    pub(crate) async fn oidc_client(
        &self,
        tenant: &Tenant,
        raw_id: &str,
    ) -> Result<Option<(MachineClient, OidcClientConfig)>, Error> {
        let Some(id) = MachineClientId::parse(raw_id) else {
            return Ok(None);
        };
        let Some(c) = self.store.client_by_id(&tenant.id, &id).await? else {
            return Ok(None);
        };
        if c.kind != ClientKind::OidcClient || c.status_at(self.clock.now()) != ClientStatus::Active
        {
            return Ok(None);
        }
        let owner = self.store.user_by_id(&tenant.id, &c.owner).await?;
        if owner.as_ref().and_then(client::owner_role).is_none() {
            return Ok(None);
        }
        Ok(self
            .store
            .oidc_client_config(&tenant.id, &c.id)
            .await?
            .map(|config| (c, config)))
    }

    /// Starts an authorization. An unknown client or redirect URI is an error for the person at
    /// the browser (never a redirect to an unchecked URI); every other problem goes back to the
    /// client as an OAuth error.
    pub async fn oidc_authorize(
        &self,
        tenant: &Tenant,
        q: AuthorizeQuery,
        session: Option<&Session>,
        caller: &Caller,
    ) -> Result<AuthorizeOutcome, Error> {
        let client_id = q
            .client_id
            .as_deref()
            .ok_or_else(|| invalid_request("client_id is missing"))?;
        let (client, config) = self.oidc_client(tenant, client_id).await?.ok_or_else(|| {
            Error::invalid(
                "invalid_client",
                "no active OpenID Connect client has this client_id",
            )
        })?;
        let redirect_uri = q.redirect_uri.clone().ok_or_else(|| {
            invalid_request("redirect_uri is missing (OpenID Connect requires it)")
        })?;
        if !config.redirect_uris.contains(&redirect_uri) {
            return Err(Error::invalid(
                "invalid_redirect_uri",
                "redirect_uri is not one registered for this client (exact match)",
            ));
        }
        let issuer = self.oidc_issuer(tenant);
        let now = self.clock.now();
        // From here on the client hears about problems at its redirect URI.
        let mut req = AuthorizationRequest {
            client_id: client.id.clone(),
            client_name: client.name.clone(),
            redirect_uri,
            scopes: vec![],
            state: q.state.clone(),
            nonce: q.nonce.clone(),
            code_challenge: String::new(),
            acr_values: vec![],
            max_age: None,
            prompt_login: false,
            prompt_none: false,
            requested_at: now,
        };
        if let Err((code, description)) = Self::check_authorize(&q, &config, &mut req) {
            return Ok(AuthorizeOutcome::Redirect(req.error(
                &issuer,
                code,
                &description,
            )));
        }
        self.oidc_decide(tenant, req, None, session, false, caller)
            .await
    }

    fn check_authorize(
        q: &AuthorizeQuery,
        config: &OidcClientConfig,
        req: &mut AuthorizationRequest,
    ) -> Result<(), (&'static str, String)> {
        if q.request.is_some() {
            return Err((
                "request_not_supported",
                "request objects are not supported".into(),
            ));
        }
        if q.request_uri.is_some() {
            return Err((
                "request_uri_not_supported",
                "request_uri is not supported".into(),
            ));
        }
        match q.response_type.as_deref() {
            Some("code") => {}
            Some(_) => {
                return Err((
                    "unsupported_response_type",
                    "only the authorization code flow (response_type=code) is offered".into(),
                ))
            }
            None => return Err(("invalid_request", "response_type is missing".into())),
        }
        if q.response_mode.as_deref().is_some_and(|m| m != "query") {
            return Err((
                "invalid_request",
                "only response_mode=query is offered".into(),
            ));
        }
        req.scopes = oidc::grant_scopes(q.scope.as_deref().unwrap_or(""), &config.scopes)
            .map_err(|e| ("invalid_scope", e))?;
        match (
            q.code_challenge.as_deref(),
            q.code_challenge_method.as_deref(),
        ) {
            (Some(c), Some("S256")) if oidc::challenge_well_formed(c) => {
                req.code_challenge = c.to_owned();
            }
            (Some(_), Some("S256")) => {
                return Err((
                    "invalid_request",
                    "code_challenge is not a base64url SHA-256 (43 characters)".into(),
                ))
            }
            (None, _) => {
                return Err((
                    "invalid_request",
                    "PKCE is required: send code_challenge with code_challenge_method=S256".into(),
                ))
            }
            (Some(_), _) => {
                return Err((
                    "invalid_request",
                    "code_challenge_method must be S256".into(),
                ))
            }
        }
        if let Some(raw) = &q.acr_values {
            req.acr_values =
                AuthRequirements::parse_acr_values(raw).map_err(|e| ("invalid_request", e))?;
        }
        if let Some(raw) = &q.max_age {
            let secs: i64 = raw.parse().ok().filter(|s| *s >= 0).ok_or((
                "invalid_request",
                "max_age must be a number of seconds".to_string(),
            ))?;
            req.max_age = Some(secs);
        }
        let prompts: Vec<&str> = q
            .prompt
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|p| !p.is_empty())
            .collect();
        for p in &prompts {
            match *p {
                "none" => req.prompt_none = true,
                "login" => req.prompt_login = true,
                // No consent screen: clients are registered by administrators.
                "consent" | "select_account" => {}
                other => return Err(("invalid_request", format!("prompt={other} is not known"))),
            }
        }
        if req.prompt_none && prompts.len() > 1 {
            return Err(("invalid_request", "prompt=none cannot be combined".into()));
        }
        Ok(())
    }

    /// Issues a code when `session` satisfies the request, else sends the user to sign in (or,
    /// after a sign-in or with `prompt=none`, tells the client why not).
    async fn oidc_decide(
        &self,
        tenant: &Tenant,
        req: AuthorizationRequest,
        pending: Option<&OidcGrant>,
        session: Option<&Session>,
        after_sign_in: bool,
        caller: &Caller,
    ) -> Result<AuthorizeOutcome, Error> {
        let issuer = self.oidc_issuer(tenant);
        let now = self.clock.now();
        let usable = session.filter(|s| s.restricted.is_none() && s.recovery.is_none());
        let verdict = usable.map(|s| {
            req.requirements()
                .check(s.aal, s.auth_time, req.requested_at, now)
        });
        let refuse = |code: &str, description: &str| {
            Ok(AuthorizeOutcome::Redirect(req.error(
                &issuer,
                code,
                description,
            )))
        };
        match (usable, verdict) {
            (Some(s), Some(Ok(()))) => {
                let user = self.user_by_id(tenant, &s.user_id).await?;
                if user.status != UserStatus::Active {
                    return refuse("access_denied", "the account is not active");
                }
                self.issue_code(tenant, &req, pending, s, caller).await
            }
            (_, Some(Err(Unmet::Level(min)))) if req.prompt_none || after_sign_in => refuse(
                "unmet_authentication_requirements",
                &format!(
                    "the sign-in reached {} and the client asked for at least {}",
                    usable.map(|s| s.aal.as_str()).unwrap_or("none"),
                    min.as_str()
                ),
            ),
            _ if req.prompt_none => refuse("login_required", "the user must sign in"),
            _ => {
                let id = match pending {
                    Some(_) => {
                        return Ok(AuthorizeOutcome::SignIn {
                            request: String::new(),
                        })
                    }
                    None => Secret::generate_with_prefix(&mut rand::rng(), oidc::REQUEST_PREFIX),
                };
                let grant = OidcGrant {
                    tenant_id: tenant.id.clone(),
                    hash: hash(id.expose()),
                    kind: GrantKind::Request,
                    client_id: req.client_id.clone(),
                    user_id: None,
                    session_id: None,
                    family: None,
                    body: serde_json::to_string(&req)
                        .map_err(|e| Error::internal(format!("authorization request: {e}")))?,
                    created_at: now,
                    expires_at: now.plus_secs(oidc::REQUEST_TTL_SECS),
                    used_at: None,
                    revoked_at: None,
                };
                self.store
                    .add_oidc_grants(&tenant.id, &[grant], AuditBatch::new(now, &[]))
                    .await?;
                Ok(AuthorizeOutcome::SignIn {
                    request: id.expose().to_owned(),
                })
            }
        }
    }

    async fn issue_code(
        &self,
        tenant: &Tenant,
        req: &AuthorizationRequest,
        pending: Option<&OidcGrant>,
        session: &Session,
        caller: &Caller,
    ) -> Result<AuthorizeOutcome, Error> {
        let now = self.clock.now();
        let code = Secret::generate_with_prefix(&mut rand::rng(), oidc::CODE_PREFIX);
        let acr = req.requirements().acr_claim(session.aal);
        let body = GrantBody {
            scopes: req.scopes.clone(),
            nonce: req.nonce.clone(),
            acr,
            amr: session.amr.iter().map(|a| a.as_str().to_owned()).collect(),
            auth_time: session.auth_time,
            redirect_uri: Some(req.redirect_uri.clone()),
            code_challenge: Some(req.code_challenge.clone()),
        };
        let grant = OidcGrant {
            tenant_id: tenant.id.clone(),
            hash: hash(code.expose()),
            kind: GrantKind::Code,
            client_id: req.client_id.clone(),
            user_id: Some(session.user_id.clone()),
            session_id: Some(session.id.clone()),
            family: Some(uuid::Uuid::new_v4().to_string()),
            body: serde_json::to_string(&body)
                .map_err(|e| Error::internal(format!("code grant: {e}")))?,
            created_at: now,
            expires_at: now.plus_secs(oidc::CODE_TTL_SECS),
            used_at: None,
            revoked_at: None,
        };
        let event = caller
            .event_as(
                Actor::user(&session.user_id),
                "oidc.authorized",
                "client",
                req.client_id.as_str(),
            )
            .details(json!({
                "session": session.id,
                "scopes": req.scopes,
                "acr": acr.as_str(),
                "acr_values": req.acr_values.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                "amr": body.amr,
            }));
        let batch = AuditBatch::new(now, std::slice::from_ref(&event));
        match pending {
            // The pending request is used up by this code, once.
            Some(p) => {
                if !self
                    .store
                    .use_oidc_grant(&tenant.id, &p.hash, std::slice::from_ref(&grant), batch)
                    .await?
                {
                    return Err(invalid_request(
                        "this sign-in request was already completed; start again from the application",
                    ));
                }
            }
            None => {
                self.store
                    .add_oidc_grants(&tenant.id, std::slice::from_ref(&grant), batch)
                    .await?
            }
        }
        let issuer = self.oidc_issuer(tenant);
        Ok(AuthorizeOutcome::Redirect(
            req.redirect(&issuer, &[("code", code.expose())]),
        ))
    }

    async fn pending_request(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<(OidcGrant, AuthorizationRequest), Error> {
        let expired = || {
            Error::invalid(
                "authorization_request_expired",
                "this sign-in request is unknown, finished or expired; start again from the application",
            )
        };
        let g = self
            .store
            .oidc_grant(&tenant.id, &hash(id))
            .await?
            .filter(|g| {
                g.kind == GrantKind::Request
                    && g.used_at.is_none()
                    && g.expires_at > self.clock.now()
            })
            .ok_or_else(expired)?;
        let req: AuthorizationRequest = serde_json::from_str(&g.body)
            .map_err(|e| Error::internal(format!("stored authorization request: {e}")))?;
        Ok((g, req))
    }

    /// What the sign-in page says about a pending request.
    pub async fn oidc_pending(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<PendingAuthorization, Error> {
        let (_, req) = self.pending_request(tenant, id).await?;
        Ok(PendingAuthorization {
            minimum_level: req.requirements().minimum(),
            sign_in_again: req.prompt_login || req.max_age.is_some(),
            client_name: req.client_name,
        })
    }

    /// After the user signed in (or gave up: `cancel`), finishes a pending request.
    pub async fn oidc_continue(
        &self,
        tenant: &Tenant,
        id: &str,
        session: Option<&Session>,
        cancel: bool,
        caller: &Caller,
    ) -> Result<AuthorizeOutcome, Error> {
        let (grant, req) = self.pending_request(tenant, id).await?;
        if cancel {
            let now = self.clock.now();
            self.store
                .use_oidc_grant(&tenant.id, &grant.hash, &[], AuditBatch::new(now, &[]))
                .await?;
            let issuer = self.oidc_issuer(tenant);
            return Ok(AuthorizeOutcome::Redirect(req.error(
                &issuer,
                "access_denied",
                "the user cancelled the sign-in",
            )));
        }
        match self
            .oidc_decide(
                tenant,
                req,
                Some(&grant),
                session,
                session.is_some(),
                caller,
            )
            .await?
        {
            // Still not signed in: back to the sign-in page with the same request.
            AuthorizeOutcome::SignIn { .. } => Ok(AuthorizeOutcome::SignIn {
                request: id.to_owned(),
            }),
            other => {
                if let (AuthorizeOutcome::Redirect(url), Some(_)) = (&other, session) {
                    if url.contains("error=") {
                        // An error for the client also ends the pending request.
                        let now = self.clock.now();
                        self.store
                            .use_oidc_grant(&tenant.id, &grant.hash, &[], AuditBatch::new(now, &[]))
                            .await?;
                    }
                }
                Ok(other)
            }
        }
    }

    /// The token endpoint, for an authenticated client.
    pub async fn oidc_token(
        &self,
        tenant: &Tenant,
        client: &MachineClient,
        grant: TokenGrant,
        caller: &Caller,
    ) -> Result<TokenResponse, Error> {
        match grant {
            TokenGrant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                self.exchange_code(tenant, client, &code, redirect_uri, code_verifier, caller)
                    .await
            }
            TokenGrant::RefreshToken { refresh_token } => {
                self.refresh(tenant, client, &refresh_token, caller).await
            }
        }
    }

    /// A replayed code or refresh token: every token of its family stops working.
    async fn replayed(
        &self,
        tenant: &Tenant,
        g: &OidcGrant,
        action: &'static str,
        caller: &Caller,
    ) {
        let event = caller
            .event(action, "client", g.client_id.as_str())
            .outcome(keyplane_core::audit::Outcome::Denied, "grant_replayed")
            .details(json!({ "user": g.user_id, "family": g.family }));
        let now = self.clock.now();
        if let Some(family) = &g.family {
            if let Err(e) = self
                .store
                .revoke_oidc_family(&tenant.id, family, AuditBatch::new(now, &[event]))
                .await
            {
                tracing::error!(error = %e, "revoking a replayed OIDC grant's family");
            }
        }
    }

    async fn exchange_code(
        &self,
        tenant: &Tenant,
        client: &MachineClient,
        code: &str,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
        caller: &Caller,
    ) -> Result<TokenResponse, Error> {
        let now = self.clock.now();
        let g = self
            .store
            .oidc_grant(&tenant.id, &hash(code))
            .await?
            .filter(|g| g.kind == GrantKind::Code && g.client_id == client.id)
            .ok_or_else(|| invalid_grant("the code is unknown or was issued to another client"))?;
        if g.used_at.is_some() || g.revoked_at.is_some() {
            self.replayed(tenant, &g, "oidc.code_replayed", caller)
                .await;
            return Err(invalid_grant(
                "the code was already used: the tokens issued for it are revoked",
            ));
        }
        if g.expires_at <= now {
            return Err(invalid_grant("the code expired"));
        }
        let body: GrantBody = serde_json::from_str(&g.body)
            .map_err(|e| Error::internal(format!("stored code: {e}")))?;
        if redirect_uri.as_deref() != body.redirect_uri.as_deref() {
            return Err(invalid_grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        let verifier =
            code_verifier.ok_or_else(|| invalid_request("code_verifier is missing (PKCE)"))?;
        if !oidc::pkce_matches(&verifier, body.code_challenge.as_deref().unwrap_or("")) {
            return Err(invalid_grant("code_verifier does not match code_challenge"));
        }
        self.issue_tokens(tenant, client, &g, body, "oidc.tokens_issued", caller)
            .await
    }

    async fn refresh(
        &self,
        tenant: &Tenant,
        client: &MachineClient,
        token: &str,
        caller: &Caller,
    ) -> Result<TokenResponse, Error> {
        let g = self
            .store
            .oidc_grant(&tenant.id, &hash(token))
            .await?
            .filter(|g| g.kind == GrantKind::RefreshToken && g.client_id == client.id)
            .ok_or_else(|| {
                invalid_grant("the refresh token is unknown or was issued to another client")
            })?;
        if g.used_at.is_some() || g.revoked_at.is_some() {
            self.replayed(tenant, &g, "oidc.refresh_token_replayed", caller)
                .await;
            return Err(invalid_grant(
                "the refresh token was already used or revoked: its whole family is revoked",
            ));
        }
        if g.expires_at <= self.clock.now() {
            return Err(invalid_grant("the refresh token expired"));
        }
        let body: GrantBody = serde_json::from_str(&g.body)
            .map_err(|e| Error::internal(format!("stored refresh token: {e}")))?;
        self.issue_tokens(tenant, client, &g, body, "oidc.tokens_refreshed", caller)
            .await
    }

    /// Uses `from` (a code or a refresh token) once and issues an access token, an ID token and,
    /// with `offline_access`, a new refresh token of the same family.
    async fn issue_tokens(
        &self,
        tenant: &Tenant,
        client: &MachineClient,
        from: &OidcGrant,
        body: GrantBody,
        action: &'static str,
        caller: &Caller,
    ) -> Result<TokenResponse, Error> {
        let now = self.clock.now();
        let user_id = from
            .user_id
            .clone()
            .ok_or_else(|| Error::internal("a code without a user"))?;
        let user = self.user_by_id(tenant, &user_id).await?;
        if user.status != UserStatus::Active {
            return Err(invalid_grant("the account is not active"));
        }
        let access = Secret::generate_with_prefix(&mut rand::rng(), oidc::ACCESS_TOKEN_PREFIX);
        let refresh =
            body.scopes.iter().any(|s| s == "offline_access").then(|| {
                Secret::generate_with_prefix(&mut rand::rng(), oidc::REFRESH_TOKEN_PREFIX)
            });
        let stored = GrantBody {
            redirect_uri: None,
            code_challenge: None,
            ..body.clone()
        };
        let stored = serde_json::to_string(&stored)
            .map_err(|e| Error::internal(format!("token grant: {e}")))?;
        let grant = |kind: GrantKind, secret: &Secret, ttl: i64| OidcGrant {
            tenant_id: tenant.id.clone(),
            hash: hash(secret.expose()),
            kind,
            client_id: client.id.clone(),
            user_id: Some(user_id.clone()),
            session_id: from.session_id.clone(),
            family: from.family.clone(),
            body: stored.clone(),
            created_at: now,
            expires_at: now.plus_secs(ttl),
            used_at: None,
            revoked_at: None,
        };
        let mut successors = vec![grant(
            GrantKind::AccessToken,
            &access,
            oidc::ACCESS_TOKEN_TTL_SECS,
        )];
        if let Some(r) = &refresh {
            successors.push(grant(
                GrantKind::RefreshToken,
                r,
                oidc::REFRESH_TOKEN_TTL_SECS,
            ));
        }
        let event = caller
            .event(action, "client", client.id.as_str())
            .details(json!({
                "user": user_id,
                "scopes": body.scopes,
                "acr": body.acr.as_str(),
                "refresh_token": refresh.is_some(),
                "family": from.family,
            }));
        if !self
            .store
            .use_oidc_grant(
                &tenant.id,
                &from.hash,
                &successors,
                AuditBatch::new(now, &[event]),
            )
            .await?
        {
            // Another request used it between our read and our write: a replay all the same.
            self.replayed(tenant, from, "oidc.code_replayed", caller)
                .await;
            return Err(invalid_grant("the grant was already used"));
        }
        self.publish_oidc_key().await?;
        let id_token =
            self.id_token(tenant, client, &user, &body, from.session_id.as_ref(), now)?;
        Ok(TokenResponse {
            access_token: access.expose().to_owned(),
            token_type: "Bearer",
            expires_in: oidc::ACCESS_TOKEN_TTL_SECS,
            id_token,
            refresh_token: refresh.map(|r| r.expose().to_owned()),
            scope: body.scopes.join(" "),
        })
    }

    fn id_token(
        &self,
        tenant: &Tenant,
        client: &MachineClient,
        user: &User,
        body: &GrantBody,
        session: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<String, Error> {
        let mut claims = json!({
            "iss": self.oidc_issuer(tenant),
            "sub": user.id,
            "aud": client.id,
            "azp": client.id,
            "iat": now.unix_seconds(),
            "exp": now.plus_secs(oidc::ACCESS_TOKEN_TTL_SECS).unix_seconds(),
            "auth_time": body.auth_time.unix_seconds(),
            "acr": body.acr.as_str(),
            "amr": body.amr,
        });
        if let Some(n) = &body.nonce {
            claims["nonce"] = json!(n);
        }
        if let Some(s) = session {
            claims["sid"] = json!(s);
        }
        add_profile_claims(&mut claims, user, &body.scopes);
        self.oidc_signer.sign(&claims)
    }

    /// The userinfo endpoint: the claims an access token's scopes allow.
    pub async fn oidc_userinfo(&self, tenant: &Tenant, access_token: &str) -> Result<Value, Error> {
        let refused = || {
            Error::unauthenticated(
                "invalid_token",
                "the access token is unknown, expired or revoked",
            )
        };
        let g = self
            .store
            .oidc_grant(&tenant.id, &hash(access_token))
            .await?
            .filter(|g| {
                g.kind == GrantKind::AccessToken
                    && g.revoked_at.is_none()
                    && g.expires_at > self.clock.now()
            })
            .ok_or_else(refused)?;
        let user_id = g.user_id.clone().ok_or_else(refused)?;
        let user = self.user_by_id(tenant, &user_id).await?;
        if user.status != UserStatus::Active {
            return Err(refused());
        }
        let body: GrantBody = serde_json::from_str(&g.body)
            .map_err(|e| Error::internal(format!("stored access token: {e}")))?;
        let mut claims = json!({ "sub": user.id });
        add_profile_claims(&mut claims, &user, &body.scopes);
        Ok(claims)
    }

    /// The tenant's JWKS: every published signing key not yet retired.
    pub async fn oidc_jwks(&self) -> Result<Value, Error> {
        self.publish_oidc_key().await?;
        let keys: Vec<Value> = self
            .store
            .published_oidc_keys(self.clock.now())
            .await?
            .iter()
            .filter_map(|k| serde_json::from_str(k).ok())
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Publishes this node's current signing key unless this process already did (the first
    /// JWKS or token after start, and after a rotation, also one made by the CLI on disk).
    pub async fn publish_oidc_key(&self) -> Result<(), Error> {
        let jwk = self.oidc_signer.public_jwk();
        let kid = jwk["kid"].as_str().unwrap_or_default().to_owned();
        let done = self
            .oidc_published
            .lock()
            .map(|p| p.as_deref() == Some(kid.as_str()))
            .unwrap_or(false);
        if !done {
            self.store
                .publish_oidc_key(&kid, &jwk.to_string(), self.clock.now())
                .await?;
            if let Ok(mut p) = self.oidc_published.lock() {
                *p = Some(kid);
            }
        }
        Ok(())
    }

    /// Replaces this node's signing key; the old public key stays published for
    /// `overlap_hours` (ID tokens it signed live at most ten minutes). Returns (old, new) kids.
    pub async fn rotate_oidc_key(&self, overlap_hours: i64) -> Result<(String, String), Error> {
        if !(0..=168).contains(&overlap_hours) {
            return Err(Error::invalid(
                "invalid_overlap",
                "the overlap is 0 to 168 hours",
            ));
        }
        let (old, new) = self.oidc_signer.rotate()?;
        self.publish_oidc_key().await?;
        self.store
            .retire_oidc_key(&old, self.clock.now().plus_secs(overlap_hours * 3600))
            .await?;
        Ok((old, new))
    }

    /// Checks an `id_token_hint` (ours; expiry ignored, as the spec allows) and returns the
    /// client it was issued to and its subject.
    pub async fn oidc_id_token_client(
        &self,
        tenant: &Tenant,
        id_token: &str,
    ) -> Result<(MachineClientId, String), Error> {
        let bad = || invalid_request("id_token_hint is not an ID token Keyplane issued");
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| bad())?;
        let jwks = self.oidc_jwks().await?;
        let key = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["kid"].as_str() == header.kid.as_deref())
            .ok_or_else(bad)?;
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).map_err(|_| bad())?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|_| bad())?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_issuer(&[self.oidc_issuer(tenant)]);
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(id_token, &key, &v).map_err(|_| bad())?;
        let client = data.claims["aud"]
            .as_str()
            .and_then(MachineClientId::parse)
            .ok_or_else(bad)?;
        let sub = data.claims["sub"].as_str().ok_or_else(bad)?.to_owned();
        Ok((client, sub))
    }
}

fn add_profile_claims(claims: &mut Value, user: &User, scopes: &[String]) {
    if scopes.iter().any(|s| s == "profile") {
        claims["preferred_username"] = json!(user.username);
        claims["name"] = json!(user.display_name);
    }
    if scopes.iter().any(|s| s == "email") {
        if let Some(e) = &user.contact_email {
            claims["email"] = json!(e);
            // Set by an administrator as the verified contact (docs/recovery.md).
            claims["email_verified"] = json!(true);
        }
    }
}
