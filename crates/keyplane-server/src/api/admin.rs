//! The admin API for policy as code and dual control: the same operations as `keyplane policy …`
//! and `keyplane approval …`. Each handler asks for one permission of the matrix in
//! `keyplane_core::admin` (docs/admin.md), which for a person includes a recent step-up.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Principal};
use crate::service::{ApplyError, PolicyChange};
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyplane_core::admin::Permission;
use keyplane_core::policy::LintError;
use keyplane_core::{Approval, ApprovalId, Error};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRequest {
    /// A policy document (TOML).
    document: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    version: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    #[serde(default)]
    note: Option<String>,
}

fn lint_json(errors: &[LintError]) -> Value {
    json!(errors
        .iter()
        .map(
            |e| json!({ "line": e.line, "column": e.column, "path": e.path, "message": e.message })
        )
        .collect::<Vec<_>>())
}

/// 400 `policy_invalid` with every lint error.
fn invalid(errors: &[LintError]) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": {
            "code": "policy_invalid",
            "message": format!("the policy document has {} problem(s)", errors.len()),
            "errors": lint_json(errors),
        }})),
    )
        .into_response()
}

fn apply_error(e: ApplyError) -> Response {
    match e {
        ApplyError::Lint(errors) => invalid(&errors),
        ApplyError::Other(e) => ApiError(e).into_response(),
    }
}

pub fn approval_json(a: &Approval) -> Value {
    json!({
        "id": a.id,
        "action": a.action,
        "summary": a.summary,
        "status": a.status.as_str(),
        "requested_by": a.requested_by,
        "requested_at": a.requested_at.to_rfc3339(),
        "expires_at": a.expires_at.to_rfc3339(),
        "decided_by": a.decided_by,
        "decided_at": a.decided_at.map(|t| t.to_rfc3339()),
        "note": a.note,
        "payload": a.payload,
    })
}

fn change(c: PolicyChange) -> Response {
    match c {
        PolicyChange::Applied { version } => {
            Json(json!({ "status": "applied", "version": version })).into_response()
        }
        PolicyChange::AwaitingApproval(a) => (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "awaiting_approval", "approval": approval_json(&a) })),
        )
            .into_response(),
    }
}

pub async fn policy(State(app): State<Arc<App>>, who: Principal) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::PolicyRead).await?;
    let active = app.active_policy_document(who.tenant()).await?;
    Ok(Json(match active {
        Some(v) => json!({
            "version": v.version, "document": v.document, "builtin": false,
            "created_at": v.created_at.to_rfc3339(), "created_by": v.created_by,
        }),
        None => json!({ "version": null, "document": null, "builtin": true }),
    }))
}

pub async fn versions(State(app): State<Arc<App>>, who: Principal) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::PolicyRead).await?;
    let versions = app.policy_history(who.tenant()).await?;
    Ok(Json(json!({ "versions": versions.iter().map(|v| json!({
        "version": v.version, "active": v.active,
        "created_at": v.created_at.to_rfc3339(), "created_by": v.created_by,
    })).collect::<Vec<_>>() })))
}

pub async fn lint(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<DocumentRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::PolicyRead).await?;
    Ok(Json(match crate::service::lint_policy(&req.document) {
        Ok(p) => json!({
            "valid": true, "errors": [],
            "populations": p.populations, "step_up_rules": p.step_up.len(),
        }),
        Err(errors) => json!({ "valid": false, "errors": lint_json(&errors) }),
    }))
}

pub async fn diff(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<DocumentRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::PolicyRead).await?;
    let active = app
        .active_policy_document(who.tenant())
        .await?
        .map(|v| v.document)
        .unwrap_or_default();
    let d = similar::TextDiff::from_lines(&active, &req.document);
    Ok(Json(json!({
        "changed": d.ratio() < 1.0,
        "diff": d.unified_diff().header("active", "candidate").to_string(),
    })))
}

pub async fn simulate(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<DocumentRequest>,
) -> Result<Response, ApiError> {
    who.require(&app, Permission::PolicyRead).await?;
    Ok(
        match app
            .simulate_policy(who.tenant(), &req.document, &|_| {})
            .await
        {
            Ok(report) => Json(json!(report)).into_response(),
            Err(e) => apply_error(e),
        },
    )
}

pub async fn apply(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<DocumentRequest>,
) -> Result<Response, ApiError> {
    who.require(&app, Permission::PolicyApply).await?;
    Ok(
        match app
            .apply_policy(who.tenant(), &req.document, &who.caller())
            .await
        {
            Ok(c) => change(c),
            Err(e) => apply_error(e),
        },
    )
}

pub async fn rollback(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> Result<Response, ApiError> {
    who.require(&app, Permission::PolicyApply).await?;
    Ok(change(
        app.rollback_policy(who.tenant(), req.version, &who.caller())
            .await?,
    ))
}

pub async fn approvals(
    State(app): State<Arc<App>>,
    who: Principal,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ApprovalsRead).await?;
    let list = app.list_approvals(who.tenant()).await?;
    Ok(Json(
        json!({ "approvals": list.iter().map(approval_json).collect::<Vec<_>>() }),
    ))
}

fn approval_id(raw: &str) -> Result<ApprovalId, ApiError> {
    ApprovalId::parse(raw)
        .ok_or_else(|| Error::not_found("approval_not_found", "no such approval").into())
}

pub async fn approve(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ApprovalsDecide).await?;
    let (a, result) = app
        .approve(who.tenant(), &approval_id(&id)?, &who.caller())
        .await?;
    // An approved bulk revoke runs in the background like any bulk job.
    if let Some(job) = result["job"]
        .as_str()
        .and_then(keyplane_core::BulkJobId::parse)
    {
        super::manage::spawn_bulk(app.clone(), who.tenant().clone(), job, who.caller());
    }
    Ok(Json(
        json!({ "approval": approval_json(&a), "result": result }),
    ))
}

pub async fn deny(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DenyRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ApprovalsDecide).await?;
    let a = app
        .deny(
            who.tenant(),
            &approval_id(&id)?,
            req.note.as_deref(),
            &who.caller(),
        )
        .await?;
    Ok(Json(json!({ "approval": approval_json(&a) })))
}
