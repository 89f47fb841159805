//! The admin API for re-enrolment campaigns (`keyplane campaign …`): start one for an
//! authenticator model, follow its progress, close it.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Principal};
use crate::service::CAMPAIGN_BATCH;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::admin::Permission;
use keyplane_core::{CampaignId, Error};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn campaign_id(raw: &str) -> Result<CampaignId, ApiError> {
    CampaignId::parse(raw)
        .ok_or_else(|| Error::not_found("campaign_not_found", "no such campaign").into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    aaguid: String,
    reason: String,
    /// `re_enrol` (the default) or `revoke`.
    action: Option<String>,
}

/// Starts a campaign and marks its users before answering (in batches, each one transaction):
/// `201` with the campaign and its progress.
pub async fn start(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<StartRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::CampaignsManage).await?;
    let c = app
        .start_campaign(
            who.tenant(),
            &req.aaguid,
            req.action.as_deref().unwrap_or("re_enrol"),
            &req.reason,
            CAMPAIGN_BATCH,
            &|_, _| {},
            &who.caller(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!(c))))
}

pub async fn list(State(app): State<Arc<App>>, who: Principal) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::CampaignsRead).await?;
    Ok(Json(
        json!({ "campaigns": app.list_campaigns(who.tenant()).await? }),
    ))
}

pub async fn get(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::CampaignsRead).await?;
    Ok(Json(json!(
        app.campaign(who.tenant(), &campaign_id(&id)?).await?
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    reason: String,
}

pub async fn close(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CloseRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::CampaignsManage).await?;
    Ok(Json(json!(
        app.close_campaign(who.tenant(), &campaign_id(&id)?, &req.reason, &who.caller())
            .await?
    )))
}
