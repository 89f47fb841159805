//! Account recovery over HTTP (issue 7): redeeming a recovery code or a recovery link (public,
//! rate-limited, one answer for every failure), opening a help-desk case (public, the same
//! answer whether the account exists), a signed-in holder cancelling a case, and the help desk's
//! case handling.

use super::ceremonies::session_response;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, Auth, Ctx, Principal, TenantCtx};
use crate::service::{CaseAction, CASE_RECEIVED};
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::admin::Permission;
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::recovery_case::{CaseState, RecoveryCase};
use keyplane_core::{Error, RecoveryCaseId, UserId};
use keyplane_store::CaseFilter;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemCodeRequest {
    pub username: String,
    pub code: String,
}

/// `POST /api/v1/recovery/codes/redeem`: a recovery session (restricted to registering a
/// passkey) for a valid username and unused code; `401 recovery_code_invalid` otherwise.
pub async fn redeem_code(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<RedeemCodeRequest>,
) -> ApiResult<impl IntoResponse> {
    let opened = app
        .redeem_recovery_code(
            &tenant,
            &req.username,
            &req.code,
            &Caller::new(Actor::anonymous(), ctx),
        )
        .await?;
    let (headers, body) = session_response(&tenant, &opened.session, &opened.token, &opened.user);
    Ok((headers, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemLinkRequest {
    pub token: String,
}

/// `POST /api/v1/recovery/links/redeem`: a recovery session for a help-desk case's link;
/// `401 recovery_link_invalid` for any link that is not valid now.
pub async fn redeem_link(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<RedeemLinkRequest>,
) -> ApiResult<impl IntoResponse> {
    let opened = app
        .redeem_recovery_link(&tenant, &req.token, &Caller::new(Actor::anonymous(), ctx))
        .await?;
    let (headers, body) = session_response(&tenant, &opened.session, &opened.token, &opened.user);
    Ok((headers, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    pub username: String,
}

/// `POST /api/v1/recovery/cases`: asks the help desk to recover an account. `202` with the same
/// body whether or not the account exists.
pub async fn request_case(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<CaseRequest>,
) -> ApiResult<impl IntoResponse> {
    app.request_recovery_case(
        &tenant,
        &req.username,
        &Caller::new(Actor::anonymous(), ctx),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "received", "message": CASE_RECEIVED })),
    ))
}

/// A case as its account holder may see it: no checks, evidence, holds or agents.
fn holder_case_json(c: &RecoveryCase) -> Value {
    json!({
        "id": c.id,
        "state": c.state.as_str(),
        "opened_at": c.created_at.to_rfc3339(),
        "cooling_off_until": c.cooling_off_until.map(|t| t.to_rfc3339()),
        "expires_at": c.expires_at.to_rfc3339(),
    })
}

/// A case as the help desk sees it.
pub fn case_json(c: &RecoveryCase) -> Value {
    json!({
        "id": c.id,
        "user_id": c.user_id,
        "state": c.state.as_str(),
        "opened_by": c.opened_by,
        "opened_from": c.opened_from,
        "agent": c.agent,
        "required_checks": c.required_checks,
        "missing_checks": c.missing_checks(),
        "checks": c.checks.iter().map(|k| json!({
            "check": k.check, "passed": k.passed, "evidence": k.evidence, "by": k.by,
            "at": k.at.to_rfc3339(),
        })).collect::<Vec<_>>(),
        "approval_required": c.approval_required,
        "approved_by": c.approved_by,
        "cooling_off_secs": c.cooling_off_secs,
        "cooling_off_until": c.cooling_off_until.map(|t| t.to_rfc3339()),
        "on_hold": c.on_hold(),
        "holds": c.holds,
        "hold_review": c.hold_review.as_ref().map(|r| json!({
            "by": r.by, "note": r.note, "at": r.at.to_rfc3339(),
        })),
        "link_sent": c.link_hash.is_some(),
        "link_expires_at": c.link_expires_at.map(|t| t.to_rfc3339()),
        "link_used_at": c.link_used_at.map(|t| t.to_rfc3339()),
        "old_credentials": if c.revoke_old_credentials { "revoke" } else { "keep" },
        "outcome": c.outcome,
        "created_at": c.created_at.to_rfc3339(),
        "updated_at": c.updated_at.to_rfc3339(),
        "expires_at": c.expires_at.to_rfc3339(),
        "version": c.version,
    })
}

fn case_id(raw: &str) -> Result<RecoveryCaseId, ApiError> {
    RecoveryCaseId::parse(raw)
        .ok_or_else(|| Error::not_found("case_not_found", "no such recovery case").into())
}

/// `GET /api/v1/me/recovery-cases`: open cases for the signed-in account — the holder's cue
/// to cancel one they did not ask for.
pub async fn my_cases(State(app): State<Arc<App>>, auth: Auth) -> ApiResult<impl IntoResponse> {
    let cases = app.my_recovery_cases(&auth.tenant, &auth.user.id).await?;
    Ok(Json(
        json!({ "cases": cases.iter().map(holder_case_json).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/me/recovery-cases/{id}/cancel`.
pub async fn cancel_my_case(
    State(app): State<Arc<App>>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = case_id(&id)?;
    let c = app
        .cancel_my_case(&auth.tenant, &auth.session, &id, &auth.caller())
        .await?;
    Ok(Json(holder_case_json(&c)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesQuery {
    pub state: Option<String>,
    pub user: Option<String>,
    pub open: Option<bool>,
    pub limit: Option<i64>,
}

/// `GET /api/v1/admin/recovery-cases` (users.read).
pub async fn list_cases(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiQuery(q): ApiQuery<CasesQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersRead).await?;
    let state = match &q.state {
        None => None,
        Some(s) => Some(CaseState::parse(s).ok_or_else(|| {
            Error::invalid(
                "invalid_state",
                format!(
                    "state must be one of: {}",
                    CaseState::ALL.map(|s| s.as_str()).join(", ")
                ),
            )
        })?),
    };
    let user = match &q.user {
        None => None,
        Some(u) => Some(
            UserId::parse(u)
                .ok_or_else(|| Error::invalid("invalid_user", "user must be a user id"))?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("invalid_limit", "limit must be between 1 and 1000").into());
    }
    let cases = app
        .list_recovery_cases(
            who.tenant(),
            &CaseFilter {
                user,
                state,
                open_only: q.open.unwrap_or(false),
                limit,
            },
        )
        .await?;
    Ok(Json(
        json!({ "cases": cases.iter().map(case_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenCaseRequest {
    pub user_id: String,
}

/// `POST /api/v1/admin/recovery-cases` (users.manage): an agent opens a case for a user.
pub async fn open_case(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<OpenCaseRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersManage).await?;
    let user = UserId::parse(&req.user_id)
        .ok_or_else(|| Error::not_found("user_not_found", "no such user in this tenant"))?;
    let c = app
        .open_recovery_case_for(who.tenant(), &user, &who.caller())
        .await?;
    Ok((StatusCode::CREATED, Json(case_json(&c))))
}

/// `GET /api/v1/admin/recovery-cases/{id}` (users.read): the case, and for those who may read
/// fraud alerts, the account's timeline from the audit log.
pub async fn get_case(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersRead).await?;
    let id = case_id(&id)?;
    let c = app.recovery_case(who.tenant(), &id).await?;
    let mut body = case_json(&c);
    if who.require(&app, Permission::FraudRead).await.is_ok() {
        body["timeline"] = json!(app.case_timeline(who.tenant(), &c).await?);
    }
    Ok(Json(body))
}

/// The body of a case action (`{}` when the action needs nothing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseActionRequest {
    pub check: Option<String>,
    pub passed: Option<bool>,
    pub evidence: Option<String>,
    pub note: Option<String>,
    pub reason: Option<String>,
}

/// `POST /api/v1/admin/recovery-cases/{id}/{action}`: `take`, `check`, `verified`,
/// `send-link`, `deny`, `cancel` (users.manage) and `review` (fraud.resolve).
pub async fn case_action(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJson(req): ApiJson<CaseActionRequest>,
) -> ApiResult<impl IntoResponse> {
    // The permission first: a caller without it learns nothing from the body's checks.
    let permission = match action.as_str() {
        "take" | "check" | "verified" | "send-link" | "deny" | "cancel" => Permission::UsersManage,
        "review" => Permission::FraudResolve,
        _ => {
            return Err(Error::not_found(
                "unknown_action",
                "actions: take, check, verified, review, send-link, deny, cancel",
            )
            .into())
        }
    };
    who.require(&app, permission).await?;
    let missing = |field: &str| {
        Error::invalid(
            "missing_field",
            format!("the {action} action needs `{field}`"),
        )
    };
    let act = match action.as_str() {
        "take" => CaseAction::Take,
        "check" => CaseAction::Check {
            check: req.check.ok_or_else(|| missing("check"))?,
            passed: req.passed.ok_or_else(|| missing("passed"))?,
            evidence: req.evidence.ok_or_else(|| missing("evidence"))?,
        },
        "verified" => CaseAction::Verified,
        "send-link" => CaseAction::SendLink,
        "deny" => CaseAction::Deny {
            reason: req.reason.ok_or_else(|| missing("reason"))?,
        },
        "cancel" => CaseAction::Cancel {
            reason: req.reason.ok_or_else(|| missing("reason"))?,
        },
        _ => CaseAction::Review {
            note: req.note.ok_or_else(|| missing("note"))?,
        },
    };
    let id = case_id(&id)?;
    let c = app
        .act_on_case(who.tenant(), &id, act, &who.caller())
        .await?;
    Ok(Json(case_json(&c)))
}
