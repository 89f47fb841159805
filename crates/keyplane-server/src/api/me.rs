//! The signed-in user's own account: who am I, my passkeys, sign out.

use super::ceremonies::session_cookie;
use super::error::ApiResult;
use super::extract::{ApiJson, ApiQuery, Auth, AuthMethod, CSRF_COOKIE, SESSION_COOKIE};
use super::types::*;
use crate::App;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::{CredentialRecordId, Error};
use serde_json::json;
use std::sync::Arc;

fn credential_id(raw: &str) -> Result<CredentialRecordId, Error> {
    CredentialRecordId::parse(raw)
        .ok_or_else(|| Error::not_found("credential_not_found", "no such passkey on your account"))
}

/// `recommendation` (present when the user has fewer than two active passkeys): a second
/// passkey is the recovery path that needs no one else.
fn recommendation_json(r: &crate::service::PasskeyRecommendation) -> serde_json::Value {
    json!({
        "code": "add_second_passkey",
        "message": "Add a second passkey (another device or a security key). If you lose one, sign in with the other and remove the lost one here: no recovery case, no waiting.",
        "active_passkeys": r.active_passkeys,
        "policy": r.required_by_policy.then_some("enrolment.require_two"),
    })
}

pub async fn me(State(app): State<Arc<App>>, auth: Auth) -> ApiResult<impl IntoResponse> {
    let mut body = json!({ "user": user_json(&auth.user), "session": session_json(&auth.session) });
    if let Some(r) = app
        .passkey_recommendation(&auth.tenant, &auth.user.id)
        .await?
    {
        body["recommendation"] = recommendation_json(&r);
    }
    // What the user's role allows, so that a console shows only the actions it may take (the
    // server checks each request regardless).
    if let Some(role) = auth
        .user
        .role
        .as_deref()
        .and_then(keyplane_core::admin::Role::parse)
    {
        body["permissions"] = json!(keyplane_core::admin::Permission::ALL
            .into_iter()
            .filter(|p| keyplane_core::admin::allows(role, *p))
            .map(|p| p.as_str())
            .collect::<Vec<_>>());
    }
    if auth.method == AuthMethod::Cookie {
        body["csrf_token"] = json!(auth.token.derive("csrf"));
    }
    Ok(Json(body))
}

pub async fn list_credentials(
    State(app): State<Arc<App>>,
    auth: Auth,
) -> ApiResult<impl IntoResponse> {
    let creds = app.my_credentials(&auth.tenant, &auth.user.id).await?;
    let catalogue = app.catalogue().await?;
    let mut body = json!({ "credentials": creds.iter().map(|c| credential_json(c, &catalogue)).collect::<Vec<_>>() });
    if let Some(r) = app
        .passkey_recommendation(&auth.tenant, &auth.user.id)
        .await?
    {
        body["recommendation"] = recommendation_json(&r);
    }
    Ok(Json(body))
}

pub async fn get_credential(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let c = app
        .my_credential(&auth.tenant, &auth.user.id, &credential_id(&id)?)
        .await?;
    Ok(Json(credential_json(&c, &*app.catalogue().await?)))
}

pub async fn rename_credential(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameCredentialRequest>,
) -> ApiResult<impl IntoResponse> {
    let c = app
        .rename_my_credential(
            &auth.tenant,
            &auth.user.id,
            &credential_id(&id)?,
            &req.nickname,
            &auth.caller(),
        )
        .await?;
    Ok(Json(credential_json(&c, &*app.catalogue().await?)))
}

pub async fn delete_credential(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    app.remove_my_credential(
        &auth.tenant,
        &auth.user.id,
        &credential_id(&id)?,
        &auth.caller(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The cookies that end a browser's session.
pub fn cleared_cookies(tenant: &keyplane_core::Tenant) -> [axum::http::HeaderValue; 2] {
    [
        session_cookie(tenant, SESSION_COOKIE, "", 0, true),
        session_cookie(tenant, CSRF_COOKIE, "", 0, false),
    ]
}

pub async fn logout(State(app): State<Arc<App>>, auth: Auth) -> ApiResult<impl IntoResponse> {
    app.logout(&auth.tenant, &auth.session, &auth.caller())
        .await?;
    let mut headers = HeaderMap::new();
    for c in cleared_cookies(&auth.tenant) {
        headers.append(header::SET_COOKIE, c);
    }
    Ok((StatusCode::NO_CONTENT, headers))
}

/// `GET /api/v1/me/sessions`: the user's live sessions, the current one marked.
pub async fn sessions(State(app): State<Arc<App>>, auth: Auth) -> ApiResult<impl IntoResponse> {
    let sessions = app.my_sessions(&auth.tenant, &auth.user.id).await?;
    let creds = app.my_credentials(&auth.tenant, &auth.user.id).await?;
    let list: Vec<_> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "current": s.id == auth.session.id,
                "aal": s.aal.as_str(),
                "created_at": s.created_at.to_rfc3339(),
                "last_seen_at": s.last_seen_at.to_rfc3339(),
                "expires_at": s.expires_at.to_rfc3339(),
                "credential": s.credential_id,
                "passkey": passkey_nickname(&creds, s.credential_id.as_ref()),
                "restricted": s.restricted.is_some(),
                "recovery": s.recovery.is_some(),
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": list })))
}

/// `POST /api/v1/me/sessions/end-others`: signs out everywhere else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInsQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/me/sign-ins`: the user's latest successful sign-ins, newest first.
pub async fn sign_ins(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiQuery(q): ApiQuery<SignInsQuery>,
) -> ApiResult<impl IntoResponse> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid("invalid_request", "limit must be 1 to 100").into());
    }
    let records = app
        .my_recent_sign_ins(&auth.tenant, &auth.user.id, limit)
        .await?;
    let creds = app.my_credentials(&auth.tenant, &auth.user.id).await?;
    let list: Vec<_> = records
        .iter()
        .map(|r| {
            let passkey = passkey_nickname(&creds, r.credential.as_ref());
            json!({
                "at": r.at.to_rfc3339(),
                "aal": r.aal.map(|a| a.as_str()),
                "credential": r.credential,
                "passkey": passkey,
                "client_ip": r.client_ip,
                "user_agent": r.user_agent,
            })
        })
        .collect();
    Ok(Json(json!({ "sign_ins": list })))
}

pub async fn end_other_sessions(
    State(app): State<Arc<App>>,
    auth: Auth,
) -> ApiResult<impl IntoResponse> {
    let ended = app
        .end_other_sessions(&auth.tenant, &auth.session, &auth.caller())
        .await?;
    Ok(Json(json!({ "ended": ended })))
}

/// `POST /api/v1/me/recovery-codes`: fresh codes, shown this once (`Cache-Control: no-store`).
pub async fn generate_recovery_codes(
    State(app): State<Arc<App>>,
    auth: Auth,
) -> ApiResult<impl IntoResponse> {
    let g = app
        .generate_recovery_codes(&auth.tenant, &auth.session, &auth.caller())
        .await?;
    let codes: Vec<String> = g.codes.iter().map(|c| c.expose_grouped()).collect();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "codes": codes, "generated_at": g.generated_at.to_rfc3339() })),
    ))
}

/// `GET /api/v1/me/recovery-codes`: how many are left, never the codes.
pub async fn recovery_codes_status(
    State(app): State<Arc<App>>,
    auth: Auth,
) -> ApiResult<impl IntoResponse> {
    let s = app
        .recovery_codes_status(&auth.tenant, &auth.user.id)
        .await?;
    Ok(Json(json!({
        "remaining": s.remaining,
        "generated_at": s.generated_at.map(|t| t.to_rfc3339()),
    })))
}
