//! Extractors: the tenant (from `Host`), the signed-in session (bearer token or cookie, with
//! CSRF protection for cookie-authenticated changes), the caller of an admin endpoint (a person
//! or a machine client) and JSON bodies with JSON errors.

use super::error::ApiError;
use crate::App;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method};
use keyplane_core::audit::{Actor, Caller, RequestContext};
use keyplane_core::client::is_client_token;
use keyplane_core::ClientKind;
use keyplane_core::{Error, ErrorKind, Secret, Session, Tenant, User};
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "keyplane_session";
pub const CSRF_COOKIE: &str = "keyplane_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The tenant the request is addressed to.
pub struct TenantCtx(pub Tenant);

impl FromRequestParts<Arc<App>> for TenantCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.host())
            .ok_or_else(|| Error::invalid("missing_host", "the request has no Host header"))?;
        Ok(TenantCtx(app.tenant_for_host(host).await?))
    }
}

/// Where the request came from, for the audit log: its request id (set by the request-id
/// layer), the peer address and the user agent (truncated).
pub struct Ctx(pub RequestContext);

pub(crate) fn request_context(parts: &Parts) -> RequestContext {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    RequestContext {
        request_id: header("x-request-id"),
        client_ip: parts
            .extensions
            .get::<crate::client_ip::ClientIp>()
            .map(|c| c.0.to_string()),
        user_agent: header("user-agent").map(|ua| ua.chars().take(256).collect()),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx(request_context(parts)))
    }
}

/// How the client proved its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Bearer,
    Cookie,
}

/// A signed-in user.
pub struct Auth {
    pub tenant: Tenant,
    pub session: Session,
    pub user: User,
    pub token: Secret,
    pub method: AuthMethod,
    pub context: RequestContext,
}

impl Auth {
    /// The signed-in user as the actor of what this request changes.
    pub fn caller(&self) -> Caller {
        Caller::new(Actor::user(&self.user.id), self.context.clone())
    }
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn presented_token(parts: &Parts) -> Result<Option<(Secret, AuthMethod)>, Error> {
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let v = h.to_str().map_err(|_| {
            Error::unauthenticated("unauthenticated", "malformed Authorization header")
        })?;
        let token = v
            .strip_prefix("Bearer ")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::unauthenticated(
                    "unauthenticated",
                    "Authorization must be \"Bearer <token>\"",
                )
            })?;
        return Ok(Some((Secret::from_presented(token), AuthMethod::Bearer)));
    }
    Ok(cookie(parts, SESSION_COOKIE)
        .filter(|t| !t.is_empty())
        .map(|t| (Secret::from_presented(t), AuthMethod::Cookie)))
}

/// Cookie-authenticated requests that change state must carry the session's CSRF token in a
/// header, which a cross-site form or image cannot set.
fn check_csrf(parts: &Parts, token: &Secret) -> Result<(), Error> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let expected = token.derive("csrf");
    let presented = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if keyplane_core::secret::constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Error::forbidden(
            "csrf_failed",
            "missing or wrong X-CSRF-Token header for a cookie-authenticated change",
        ))
    }
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let TenantCtx(tenant) = TenantCtx::from_request_parts(parts, app).await?;
        let (token, method) = presented_token(parts)?.ok_or_else(|| {
            Error::unauthenticated(
                "unauthenticated",
                "sign in first: no session token or cookie",
            )
        })?;
        if method == AuthMethod::Bearer && is_client_token(token.expose()) {
            return Err(Error::unauthenticated(
                "machine_token_not_accepted",
                "this endpoint needs a person's session; machine client tokens work only on the admin API",
            )
            .into());
        }
        let (session, user) = app.session_for_token(&tenant, &token).await?;
        if method == AuthMethod::Cookie {
            check_csrf(parts, &token)?;
        }
        if let Some(reason) = &session.restricted {
            if !allowed_while_restricted(parts) {
                return Err(Error::forbidden(
                    "re_enrolment_required",
                    format!("this session may only register a passkey that complies with the policy ({reason})"),
                )
                .into());
            }
        }
        Ok(Auth {
            tenant,
            session,
            user,
            token,
            method,
            context: request_context(parts),
        })
    }
}

/// What a restricted session (signed in with a passkey the policy no longer accepts) may do:
/// read its account and passkeys, register a compliant passkey, sign out.
fn allowed_while_restricted(parts: &Parts) -> bool {
    let path = parts.uri.path();
    match parts.method {
        Method::GET => matches!(path, "/api/v1/me" | "/api/v1/me/credentials"),
        Method::POST => matches!(
            path,
            "/api/v1/registration/options" | "/api/v1/registration/verify" | "/api/v1/logout"
        ),
        _ => false,
    }
}

/// The session presented, if any: `None` when no token or cookie came with the request, else
/// the outcome of checking it. Handlers that can proceed without a session (registration from an
/// invitation) ignore a stale cookie instead of failing on it.
pub struct MaybeAuth(pub Option<Result<Auth, ApiError>>);

impl FromRequestParts<Arc<App>> for MaybeAuth {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeAuth(match presented_token(parts) {
            Ok(None) => None,
            Ok(Some(_)) => Some(Auth::from_request_parts(parts, app).await),
            Err(e) => Some(Err(e.into())),
        }))
    }
}

/// A JSON body whose every failure is a JSON error with a stable code.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError(match rejection {
                JsonRejection::JsonDataError(e) => Error::invalid("invalid_request", e.body_text()),
                JsonRejection::JsonSyntaxError(e) => Error::invalid("invalid_json", e.body_text()),
                JsonRejection::MissingJsonContentType(_) => Error::invalid(
                    "unsupported_media_type",
                    "send the body as Content-Type: application/json",
                ),
                other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Error::new(
                    ErrorKind::TooLarge,
                    "payload_too_large",
                    "the request body is larger than this server accepts",
                ),
                other => Error::invalid("invalid_request", other.body_text()),
            })),
        }
    }
}

/// Query parameters whose every failure is a JSON error with a stable code.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r| ApiError(Error::invalid("invalid_query", r.body_text())))
    }
}

/// A machine client authenticated by its bearer token (`kpm_…`): what it may do is its scopes,
/// within its owner's role.
pub struct MachineAuth {
    pub tenant: Tenant,
    pub client: keyplane_core::MachineClient,
    /// The owner's role now (the client works only while its owner holds one).
    pub owner_role: keyplane_core::admin::Role,
    pub context: RequestContext,
}

/// Who is calling an admin endpoint: a person (a session whose user has a role) or a machine
/// client (a `kpm_` bearer token, with scopes). Every admin handler asks [`Principal::require`]
/// for one permission.
pub enum Principal {
    Person(Auth),
    Machine(MachineAuth),
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        // Only an Authorization header carries a machine token: a cookie is a person's session.
        if let Ok(Some((token, AuthMethod::Bearer))) = presented_token(parts) {
            if is_client_token(token.expose()) {
                let TenantCtx(tenant) = TenantCtx::from_request_parts(parts, app).await?;
                let context = request_context(parts);
                let (client, owner_role) = app
                    .client_for_token(&tenant, &token, ClientKind::ApiToken, &context)
                    .await?;
                return Ok(Principal::Machine(MachineAuth {
                    tenant,
                    client,
                    owner_role,
                    context,
                }));
            }
        }
        Ok(Principal::Person(
            Auth::from_request_parts(parts, app).await?,
        ))
    }
}

impl Principal {
    pub fn tenant(&self) -> &Tenant {
        match self {
            Principal::Person(a) => &a.tenant,
            Principal::Machine(m) => &m.tenant,
        }
    }

    pub fn caller(&self) -> Caller {
        match self {
            Principal::Person(a) => a.caller(),
            Principal::Machine(m) => Caller::new(Actor::machine(&m.client.id), m.context.clone()),
        }
    }

    /// For a person: the role's permission and a recent enough step-up for
    /// `admin.<permission>` (the policy's `step_up` rules). For a machine client: a scope it
    /// holds that its owner's role still allows (deny by default; software does not step up).
    pub async fn require(
        &self,
        app: &App,
        permission: keyplane_core::admin::Permission,
    ) -> Result<(), ApiError> {
        use keyplane_core::admin::{allows, Role};
        match self {
            Principal::Person(a) => {
                let role = a.user.role.as_deref().and_then(Role::parse);
                if !role.is_some_and(|r| allows(r, permission)) {
                    let may: Vec<&str> = Role::ALL
                        .iter()
                        .filter(|r| allows(**r, permission))
                        .map(|r| r.as_str())
                        .collect();
                    return Err(Error::forbidden(
                        "forbidden_role",
                        format!(
                            "{} needs one of the roles: {}",
                            permission.as_str(),
                            may.join(", ")
                        ),
                    )
                    .into());
                }
                app.require_step_up(&a.tenant, &a.session, &permission.step_up_action())
                    .await?;
                Ok(())
            }
            Principal::Machine(m) => {
                if m.client.may(permission, m.owner_role) {
                    return Ok(());
                }
                let why = if m.client.scopes.contains(&permission) {
                    "its owner's role no longer allows it"
                } else {
                    "it is not one of the client's scopes"
                };
                Err(Error::forbidden(
                    "forbidden_scope",
                    format!("this machine client may not {}: {why}", permission.as_str()),
                )
                .into())
            }
        }
    }
}
