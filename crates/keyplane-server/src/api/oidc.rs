//! The OpenID Connect provider's HTTP edge, per tenant (by `Host`): discovery, JWKS, the
//! authorization endpoint and its continuation after sign-in, the token endpoint (form-encoded,
//! answers and errors in OAuth's JSON shape), userinfo and RP-initiated logout.

use super::error::ApiError;
use super::extract::{Ctx, MaybeAuth, TenantCtx};
use crate::service::{AuthorizeOutcome, AuthorizeQuery, ClientCredentials, TokenGrant};
use crate::App;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const AUTHORIZE: &str = "/oidc/authorize";
pub const CONTINUE: &str = "/oidc/authorize/continue";
pub const TOKEN: &str = "/oidc/token";
pub const USERINFO: &str = "/oidc/userinfo";
pub const JWKS: &str = "/oidc/jwks";
pub const END_SESSION: &str = "/oidc/end-session";

/// `GET /.well-known/openid-configuration`.
pub async fn discovery(State(app): State<Arc<App>>, TenantCtx(tenant): TenantCtx) -> Response {
    let issuer = app.oidc_issuer(&tenant);
    let at = |path: &str| format!("{issuer}{path}");
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": at(AUTHORIZE),
        "token_endpoint": at(TOKEN),
        "userinfo_endpoint": at(USERINFO),
        "jwks_uri": at(JWKS),
        "end_session_endpoint": at(END_SESSION),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": keyplane_core::oidc::SCOPES_SUPPORTED,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "preferred_username", "name", "email", "email_verified"],
        "acr_values_supported": ["aal1", "aal2", "aal3"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

/// `GET /oidc/jwks`.
pub async fn jwks(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let keys = app.oidc_jwks().await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(keys)).into_response())
}

fn caller_for(ctx: Ctx) -> Caller {
    Caller::new(Actor::anonymous(), ctx.0)
}

fn outcome_response(o: AuthorizeOutcome) -> Response {
    match o {
        AuthorizeOutcome::Redirect(url) => Redirect::to(&url).into_response(),
        AuthorizeOutcome::SignIn { request } => {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("authz", &request)
                .finish();
            Redirect::to(&format!("/signin?{q}")).into_response()
        }
    }
}

/// `GET /oidc/authorize`.
pub async fn authorize(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    MaybeAuth(auth): MaybeAuth,
    ctx: Ctx,
    Query(q): Query<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let session = auth.and_then(Result::ok).map(|a| a.session);
    let outcome = app
        .oidc_authorize(&tenant, q, session.as_ref(), &caller_for(ctx))
        .await?;
    Ok(outcome_response(outcome))
}

#[derive(Deserialize)]
pub struct ContinueQuery {
    #[serde(default)]
    authz: Option<String>,
    #[serde(default)]
    cancel: Option<String>,
}

/// `GET /oidc/authorize/continue?authz=…[&cancel=1]`: where the sign-in page sends the browser
/// after signing in (or when the user cancels).
pub async fn continue_authorization(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    MaybeAuth(auth): MaybeAuth,
    ctx: Ctx,
    Query(q): Query<ContinueQuery>,
) -> Result<Response, ApiError> {
    let session = auth.and_then(Result::ok).map(|a| a.session);
    let authz = q
        .authz
        .ok_or_else(|| Error::invalid("invalid_request", "authz is missing"))?;
    let outcome = app
        .oidc_continue(
            &tenant,
            &authz,
            session.as_ref(),
            q.cancel.is_some(),
            &caller_for(ctx),
        )
        .await?;
    Ok(outcome_response(outcome))
}

/// An OAuth error answer (RFC 6749 §5.2): `{"error", "error_description"}`, 401 with a
/// `WWW-Authenticate` challenge for a client that failed to authenticate, never cached.
fn oauth_error(e: Error) -> Response {
    let status = match e.kind {
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Internal | ErrorKind::Unavailable => return ApiError(e).into_response(),
        _ => StatusCode::BAD_REQUEST,
    };
    let mut r = (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({ "error": e.code, "error_description": e.message })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"keyplane\""),
        );
    }
    r
}

/// The form's parameters; a repeated one is refused (RFC 6749 §3.2).
fn form(headers: &HeaderMap, body: &Bytes) -> Result<BTreeMap<String, String>, Error> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(Error::invalid(
            "invalid_request",
            "the token endpoint takes application/x-www-form-urlencoded",
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Error::invalid(
                "invalid_request",
                format!("the parameter {k} is repeated"),
            ));
        }
    }
    Ok(out)
}

/// `Authorization: Basic` with the client id and secret, each form-URL-encoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Error> {
    use base64::Engine;
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || Error::unauthenticated("invalid_client", "malformed Basic credentials");
    let raw = v
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(bad)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// `POST /oidc/token`.
pub async fn token(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    ctx: Ctx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = caller_for(ctx);
    let result = async {
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(
                    ErrorKind::TooLarge,
                    "invalid_request",
                    "the request body is larger than this server accepts",
                )
            } else {
                Error::invalid("invalid_request", rejection.body_text())
            }
        })?;
        let mut f = form(&headers, &body)?;
        let creds = ClientCredentials {
            basic: basic_credentials(&headers)?,
            form_client_id: f.remove("client_id"),
            form_client_secret: f.remove("client_secret"),
            assertion_type: f.remove("client_assertion_type"),
            assertion: f.remove("client_assertion"),
        };
        let endpoint = format!("{}{TOKEN}", app.oidc_issuer(&tenant));
        let (client, _) = app
            .oidc_authenticate_client(&tenant, &creds, &endpoint, &caller)
            .await?;
        let grant = match f.remove("grant_type").as_deref() {
            Some("authorization_code") => TokenGrant::AuthorizationCode {
                code: f
                    .remove("code")
                    .ok_or_else(|| Error::invalid("invalid_request", "code is missing"))?,
                redirect_uri: f.remove("redirect_uri"),
                code_verifier: f.remove("code_verifier"),
            },
            Some("refresh_token") => TokenGrant::RefreshToken {
                refresh_token: f
                    .remove("refresh_token")
                    .ok_or_else(|| Error::invalid("invalid_request", "refresh_token is missing"))?,
            },
            Some(other) => {
                return Err(Error::invalid(
                    "unsupported_grant_type",
                    format!("{other} is not a grant type Keyplane offers"),
                ))
            }
            None => return Err(Error::invalid("invalid_request", "grant_type is missing")),
        };
        let caller = Caller::new(Actor::machine(&client.id), caller.context.clone());
        app.oidc_token(&tenant, &client, grant, &caller).await
    }
    .await;
    match result {
        Ok(t) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            Json(t),
        )
            .into_response(),
        Err(e) => oauth_error(e),
    }
}

/// `GET` or `POST /oidc/userinfo` with the access token as a bearer token.
pub async fn userinfo(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty());
    let result = match token {
        Some(t) => app.oidc_userinfo(&tenant, t).await,
        None => Err(Error::unauthenticated(
            "invalid_token",
            "send the access token as Authorization: Bearer",
        )),
    };
    match result {
        Ok(claims) => ([(header::CACHE_CONTROL, "no-store")], Json(claims)).into_response(),
        Err(e) if e.kind == ErrorKind::Unauthenticated => {
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                e.message.replace('"', "'")
            );
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": e.code, "error_description": e.message })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r
        }
        Err(e) => ApiError(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct EndSessionQuery {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

/// `GET /oidc/end-session` (RP-initiated logout). Ends the browser's Keyplane session when the
/// `id_token_hint` is one of ours for the signed-in user (a bare link cannot sign anyone out),
/// then returns to `post_logout_redirect_uri` when it is registered for that client; otherwise
/// the page says what happened.
pub async fn end_session(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    MaybeAuth(auth): MaybeAuth,
    Query(q): Query<EndSessionQuery>,
) -> Result<Response, ApiError> {
    let hinted = match &q.id_token_hint {
        Some(t) => Some(app.oidc_id_token_client(&tenant, t).await?),
        None => None,
    };
    let client = match (&hinted, &q.client_id) {
        (Some((c, _)), Some(raw)) if c.as_str() != raw => {
            return Err(Error::invalid(
                "invalid_request",
                "client_id differs from the id_token_hint's audience",
            )
            .into())
        }
        (Some((c, _)), _) => Some(c.to_string()),
        (None, Some(raw)) => Some(raw.clone()),
        (None, None) => None,
    };
    let mut signed_out = false;
    if let (Some(Ok(auth)), Some((_, sub))) = (auth, &hinted) {
        if auth.user.id.as_str() == sub {
            app.logout(&auth.tenant, &auth.session, &auth.caller())
                .await?;
            signed_out = true;
        }
    }
    let mut response = match (&q.post_logout_redirect_uri, client) {
        (Some(uri), Some(client_id)) => {
            let registered = app
                .oidc_client(&tenant, &client_id)
                .await?
                .is_some_and(|(_, config)| config.post_logout_redirect_uris.contains(uri));
            if !registered {
                return Err(Error::invalid(
                    "invalid_request",
                    "post_logout_redirect_uri is not registered for this client",
                )
                .into());
            }
            let mut url = uri.clone();
            if let Some(s) = &q.state {
                url.push(if url.contains('?') { '&' } else { '?' });
                url += &url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", s)
                    .finish();
            }
            Redirect::to(&url).into_response()
        }
        (Some(_), None) => {
            return Err(Error::invalid(
                "invalid_request",
                "post_logout_redirect_uri needs id_token_hint or client_id",
            )
            .into())
        }
        (None, _) => super::pages::signed_out(&tenant, signed_out),
    };
    if signed_out {
        for c in super::me::cleared_cookies(&tenant) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(response)
}

/// What the sign-in page needs to know about a pending authorization (none for a bad id: the
/// continuation explains).
pub async fn pending(app: &App, tenant: &keyplane_core::Tenant, id: &str) -> Option<Pending> {
    app.oidc_pending(tenant, id).await.ok().map(|p| Pending {
        continue_url: format!(
            "{CONTINUE}?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("authz", id)
                .finish()
        ),
        client_name: p.client_name,
        level: p.minimum_level.map(|a| a.as_str().to_uppercase()),
        sign_in_again: p.sign_in_again,
    })
}

/// A pending authorization as the sign-in page shows it.
pub struct Pending {
    pub continue_url: String,
    pub client_name: String,
    pub level: Option<String>,
    pub sign_in_again: bool,
}
