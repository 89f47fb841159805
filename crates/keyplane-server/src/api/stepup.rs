//! Step-up over HTTP: start and finish a step-up ceremony for the signed-in session.

use super::error::ApiResult;
use super::extract::{ApiJson, Auth};
use crate::service::StepUpTarget;
use crate::App;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::{Aal, CeremonyId, Error};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpOptionsRequest {
    /// The action to be allowed (the policy's step-up rule for it decides the level) ...
    action: Option<String>,
    /// ... or the level wanted.
    level: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpVerifyRequest {
    ceremony: String,
    credential: serde_json::Value,
}

pub async fn options(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiJson(req): ApiJson<StepUpOptionsRequest>,
) -> ApiResult<impl IntoResponse> {
    let target = match (&req.action, &req.level) {
        (Some(a), None) => StepUpTarget::Action(a),
        (None, Some(l)) => {
            StepUpTarget::Level(Aal::parse(l).ok_or_else(|| {
                Error::invalid("invalid_level", "level must be aal1, aal2 or aal3")
            })?)
        }
        _ => {
            return Err(
                Error::invalid("invalid_request", "give exactly one of action or level").into(),
            )
        }
    };
    let s = app
        .start_step_up(&auth.tenant, &auth.session, target)
        .await?;
    Ok(Json(json!({
        "ceremony": s.ceremony.id,
        "expires_at": s.ceremony.expires_at.to_rfc3339(),
        "level": s.ceremony.level.map(|l| l.as_str()),
        "publicKey": s.public_key,
    })))
}

pub async fn verify(
    State(app): State<Arc<App>>,
    auth: Auth,
    ApiJson(req): ApiJson<StepUpVerifyRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = CeremonyId::parse(&req.ceremony).ok_or_else(|| {
        Error::invalid(
            "invalid_ceremony_id",
            "ceremony must be the id returned by the options call",
        )
    })?;
    let level = app
        .finish_step_up(
            &auth.tenant,
            &auth.session,
            &id,
            &req.credential,
            &auth.caller(),
        )
        .await?;
    Ok(Json(
        json!({ "aal": level.as_str(), "stepped_up_at": app.clock.now().to_rfc3339() }),
    ))
}
