//! The admin API for machine clients: the same operations as `keyplane client …`. Reading needs
//! `clients.read`, creating, rotating and revoking `clients.manage` (which no machine client can
//! hold). A secret is in the one response that issues it, never stored by the caller's proxy
//! (`Cache-Control: no-store`).

use super::admin::approval_json;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Principal};
use crate::service::{
    ClientCreation, ClientOverview, NewClient, OidcRegistration, WebhookRegistration,
};
use crate::App;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyplane_core::admin::Permission;
use keyplane_core::{Error, MachineClientId, Secret, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A machine client as the API and the CLI show it: never a secret or its hash.
pub fn client_json(o: &ClientOverview) -> Value {
    let c = &o.client;
    json!({
        "id": c.id,
        "kind": c.kind.as_str(),
        "name": c.name,
        "owner": c.owner,
        "owner_username": o.owner.as_ref().map(|u| &u.username),
        "scopes": c.scopes.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "status": o.status.as_str(),
        "findings": o.findings,
        "created_at": c.created_at.to_rfc3339(),
        "created_by": c.created_by,
        "approval": c.approval_id,
        "approved_by": c.approved_by,
        "expires_at": c.expires_at.to_rfc3339(),
        "has_secret": c.secret_hash.is_some(),
        "rotated_at": c.rotated_at.map(|t| t.to_rfc3339()),
        "previous_secret_expires_at": c
            .previous_hash
            .as_ref()
            .and(c.previous_expires_at)
            .map(|t| t.to_rfc3339()),
        "last_used_at": c.last_used_at.map(|t| t.to_rfc3339()),
        "revoked_at": c.revoked_at.map(|t| t.to_rfc3339()),
        "revoked_by": c.revoked_by,
        "revoke_reason": c.revoke_reason,
    })
}

fn client_id(raw: &str) -> Result<MachineClientId, ApiError> {
    MachineClientId::parse(raw)
        .ok_or_else(|| Error::not_found("client_not_found", "no such machine client").into())
}

/// A response that hands out a secret: not to be cached anywhere.
fn with_secret(status: StatusCode, mut body: Value, secret: &Secret) -> Response {
    body["secret"] = json!(secret.expose());
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

pub async fn list(State(app): State<Arc<App>>, who: Principal) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ClientsRead).await?;
    let clients = app.list_clients(who.tenant()).await?;
    Ok(Json(
        json!({ "clients": clients.iter().map(client_json).collect::<Vec<_>>() }),
    ))
}

pub async fn get(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ClientsRead).await?;
    let c = app.client(who.tenant(), &client_id(&id)?).await?;
    let mut body = client_json(&c);
    let (oidc, webhook) = app.client_registration(who.tenant(), &c.client).await?;
    if let Some(o) = oidc {
        body["oidc"] = json!({
            "redirect_uris": o.redirect_uris,
            "post_logout_redirect_uris": o.post_logout_redirect_uris,
            "token_endpoint_auth_method": o.auth_method.as_str(),
            "scopes": o.scopes,
            "has_jwks": o.jwks.is_some(),
        });
    }
    if let Some(w) = webhook {
        body["webhook"] = json!({ "url": w.url, "event_types": w.event_types });
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// `api_token` (the default), `scim_token` (for `/scim/v2`; needs `users.manage`),
    /// `oidc_client` or `webhook`.
    kind: Option<String>,
    name: String,
    /// The owner's user id.
    owner: String,
    /// Admin permissions (an API token's; none for an OIDC client).
    #[serde(default)]
    scopes: Vec<String>,
    expires_days: Option<i64>,
    /// An OIDC client's registration.
    oidc: Option<OidcRegistration>,
    /// A webhook endpoint's URL and event types.
    webhook: Option<WebhookRegistration>,
}

pub async fn create(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<Response, ApiError> {
    who.require(&app, Permission::ClientsManage).await?;
    let owner = UserId::parse(&req.owner).ok_or_else(|| {
        Error::invalid(
            "invalid_owner",
            "owner must be the id of a user of this tenant",
        )
    })?;
    let tenant = who.tenant();
    let new = NewClient {
        kind: req.kind.unwrap_or_else(|| "api_token".into()),
        name: req.name,
        owner,
        scopes: req.scopes,
        expires_days: req.expires_days,
        oidc: req.oidc,
        webhook: req.webhook,
    };
    Ok(match app.create_client(tenant, new, &who.caller()).await? {
        ClientCreation::Created { client, secret } => with_secret(
            StatusCode::CREATED,
            json!({ "status": "created", "client": client_json(&client) }),
            &secret,
        ),
        ClientCreation::AwaitingApproval(a) => (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "awaiting_approval", "approval": approval_json(&a) })),
        )
            .into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the previous secret keeps working (default 24, 0 to 168).
    overlap_hours: Option<i64>,
}

pub async fn rotate(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RotateRequest>,
) -> Result<Response, ApiError> {
    who.require(&app, Permission::ClientsManage).await?;
    let (c, secret) = app
        .rotate_client(
            who.tenant(),
            &client_id(&id)?,
            req.overlap_hours,
            &who.caller(),
        )
        .await?;
    Ok(with_secret(
        StatusCode::OK,
        json!({ "client": client_json(&c) }),
        &secret,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    reason: String,
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ClientsManage).await?;
    let c = app
        .revoke_client(who.tenant(), &client_id(&id)?, &req.reason, &who.caller())
        .await?;
    Ok(Json(json!({ "client": client_json(&c) })))
}
