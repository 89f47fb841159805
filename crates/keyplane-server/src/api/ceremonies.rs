//! Registration and authentication ceremonies over JSON.

use super::error::ApiResult;
use super::extract::{ApiJson, Ctx, MaybeAuth, TenantCtx, CSRF_COOKIE, SESSION_COOKIE};
use super::types::*;
use crate::service::{RegistrationAuth, StartedCeremony};
use crate::App;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::{CeremonyId, Error, Secret, Tenant};
use serde_json::json;
use std::sync::Arc;

fn ceremony_id(raw: &str) -> Result<CeremonyId, Error> {
    CeremonyId::parse(raw).ok_or_else(|| {
        Error::invalid(
            "invalid_ceremony_id",
            "ceremony must be the id returned by the options call",
        )
    })
}

fn started(s: StartedCeremony) -> Json<serde_json::Value> {
    Json(json!({
        "ceremony": s.ceremony.id,
        "expires_at": s.ceremony.expires_at.to_rfc3339(),
        "publicKey": s.public_key,
    }))
}

pub async fn registration_options(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    MaybeAuth(auth): MaybeAuth,
    ApiJson(req): ApiJson<RegistrationOptionsRequest>,
) -> ApiResult<impl IntoResponse> {
    let started_ceremony = match (&req.enrolment_token, auth) {
        // An invitation needs no session; a stale cookie in the browser does not get in the way.
        (Some(token), _) => {
            app.start_registration(
                &tenant,
                RegistrationAuth::Enrolment(&Secret::from_presented(token.as_str())),
            )
            .await?
        }
        (None, Some(Ok(a))) => {
            app.start_registration(&tenant, RegistrationAuth::Session(&a.session))
                .await?
        }
        (None, Some(Err(e))) => return Err(e),
        (None, None) => {
            return Err(Error::unauthenticated(
                "unauthenticated",
                "give an enrolment_token, or sign in to add another passkey",
            )
            .into())
        }
    };
    Ok(started(started_ceremony))
}

pub async fn registration_verify(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    MaybeAuth(auth): MaybeAuth,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<RegistrationVerifyRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = ceremony_id(&req.ceremony)?;
    // Finishing an invitation's ceremony needs no session; adding a passkey needs a valid one.
    let (auth, auth_error) = match auth {
        Some(Ok(a)) => (Some(a), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let session = auth.as_ref().map(|a| &a.session);
    let caller = match &auth {
        Some(a) => a.caller(),
        None => Caller::new(Actor::anonymous(), ctx),
    };
    let cred = match app
        .finish_registration(
            &tenant,
            &id,
            &req.credential,
            req.nickname.as_deref(),
            session,
            &caller,
        )
        .await
    {
        Ok(c) => c,
        // Not an invitation's ceremony, and the presented session was refused: say why.
        Err(e) if e.code == "ceremony_not_found" && auth_error.is_some() => {
            return Err(auth_error.unwrap_or_else(|| e.into()))
        }
        Err(e) => return Err(e.into()),
    };
    Ok((
        axum::http::StatusCode::CREATED,
        Json(credential_json(&cred, &*app.catalogue().await?)),
    ))
}

pub async fn authentication_options(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    ApiJson(req): ApiJson<AuthenticationOptionsRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(started(
        app.start_authentication(&tenant, req.username.as_deref())
            .await?,
    ))
}

pub async fn authentication_verify(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<AuthenticationVerifyRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = ceremony_id(&req.ceremony)?;
    let signed_in = app
        .finish_authentication(
            &tenant,
            &id,
            &req.credential,
            &Caller::new(Actor::anonymous(), ctx),
        )
        .await?;
    let (headers, mut body) = session_response(
        &tenant,
        &signed_in.session,
        &signed_in.token,
        &signed_in.user,
    );
    body["credential"] = json!(signed_in.credential);
    Ok((headers, Json(body)))
}

/// The cookies and body that hand a new session to its client: `Set-Cookie` for the session
/// and its CSRF token (living as long as the session), `no-store`, and the token once.
pub fn session_response(
    tenant: &Tenant,
    session: &keyplane_core::Session,
    token: &Secret,
    user: &keyplane_core::User,
) -> (HeaderMap, serde_json::Value) {
    let csrf = token.derive("csrf");
    let max_age = ((session.expires_at.0 - session.created_at.0) / 1000).max(0);
    let mut headers = HeaderMap::new();
    for c in [
        session_cookie(tenant, SESSION_COOKIE, token.expose(), max_age, true),
        session_cookie(tenant, CSRF_COOKIE, &csrf, max_age, false),
    ] {
        headers.append(header::SET_COOKIE, c);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let mut body = session_json(session);
    body["token"] = json!(token.expose());
    body["token_type"] = json!("Bearer");
    body["csrf_token"] = json!(csrf);
    body["user"] = user_json(user);
    (headers, body)
}

/// Cookies are `Secure` unless the tenant is served over plain HTTP, which tenant validation
/// only allows for `localhost`.
pub fn session_cookie(
    tenant: &Tenant,
    name: &str,
    value: &str,
    max_age: i64,
    http_only: bool,
) -> HeaderValue {
    let secure = !tenant.origins.iter().all(|o| o.starts_with("http://"));
    let mut c = format!("{name}={value}; Path=/; SameSite=Lax; Max-Age={max_age}");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    // Token characters are base64url, so the value is always a valid header.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}
