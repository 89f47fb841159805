//! The admin API for users, credentials, bulk actions, fraud alerts and exceptions: the same
//! operations as `keyplane user|credential|fraud|exception …`. Each handler asks the caller for one
//! permission of the matrix (`keyplane_core::admin`, docs/admin.md).

use super::admin::approval_json;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, Principal};
use super::types::{credential_json, notification_json, user_json};
use crate::service::{BulkStart, CredentialFilter, ExceptionRequest};
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyplane_core::admin::{Permission, Role};
use keyplane_core::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn parse_id<T>(raw: &str, parse: fn(&str) -> Option<T>, code: &'static str) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| Error::not_found(code, "no such id in this tenant").into())
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    parse_id(raw, UserId::parse, "user_not_found")
}

fn credential_id(raw: &str) -> Result<CredentialRecordId, ApiError> {
    parse_id(raw, CredentialRecordId::parse, "credential_not_found")
}

fn admin_user_json(u: &User) -> Value {
    let mut v = user_json(u);
    v["created_at"] = json!(u.created_at.to_rfc3339());
    v["re_enrolment_required"] = json!(u.re_enrol_reason);
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// Part of the username.
    q: Option<String>,
    status: Option<String>,
    population: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

pub async fn list_users(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiQuery(q): ApiQuery<UsersQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersRead).await?;
    let tenant = who.tenant();
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("invalid_limit", "limit must be between 1 and 1000").into());
    }
    let members: Vec<UserId> = match &q.population {
        Some(p) => app
            .store
            .all_user_populations(&tenant.id)
            .await?
            .into_iter()
            .filter(|(_, pop)| pop == p)
            .map(|(u, _)| u)
            .collect(),
        None => vec![],
    };
    let needle = q.q.as_deref().map(str::to_lowercase);
    let users: Vec<User> = app
        .store
        .list_users(&tenant.id)
        .await?
        .into_iter()
        .filter(|u| {
            needle
                .as_ref()
                .is_none_or(|n| u.username.contains(n.as_str()))
        })
        .filter(|u| q.status.as_ref().is_none_or(|s| u.status.as_str() == s))
        .filter(|u| q.population.is_none() || members.contains(&u.id))
        .collect();
    let total = users.len();
    Ok(Json(json!({
        "total": total,
        "users": users.iter().skip(q.offset).take(limit).map(admin_user_json).collect::<Vec<_>>(),
    })))
}

pub async fn get_user(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersRead).await?;
    let tenant = who.tenant();
    let u = app.user_by_id(tenant, &user_id(&id)?).await?;
    let catalogue = app.catalogue().await?;
    let creds = app.store.list_credentials(&tenant.id, Some(&u.id)).await?;
    let mut v = admin_user_json(&u);
    v["populations"] = json!(app.store.user_populations(&tenant.id, &u.id).await?);
    v["credentials"] = json!(creds
        .iter()
        .map(|c| credential_json(c, &catalogue))
        .collect::<Vec<_>>());
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    username: String,
    display_name: Option<String>,
    role: Option<String>,
}

/// Invites a user (creating them if needed): the one-time enrolment link is in the response and
/// nowhere else.
pub async fn invite(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<InviteRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersManage).await?;
    if let Some(role) = &req.role {
        Role::parse(role).ok_or_else(|| {
            Error::invalid("invalid_role", "role is owner, admin, helpdesk or auditor")
        })?;
        who.require(&app, Permission::RolesAssign).await?;
    }
    let inv = app
        .invite(
            who.tenant(),
            &req.username,
            req.display_name.as_deref(),
            req.role.as_deref(),
            &who.caller(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "user": admin_user_json(&inv.user),
            "enrolment_link": inv.link,
            "expires_at": inv.enrolment.expires_at.to_rfc3339(),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    reason: String,
}

pub async fn user_action(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJson(req): ApiJson<ReasonRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = user_id(&id)?;
    let tenant = who.tenant();
    let caller = who.caller();
    let u = match action.as_str() {
        "suspend" | "reactivate" | "deprovision" => {
            who.require(&app, Permission::UsersSuspend).await?;
            match action.as_str() {
                "suspend" => app.suspend_user(tenant, &id, &req.reason, &caller).await?,
                "reactivate" => {
                    app.reactivate_user(tenant, &id, &req.reason, &caller)
                        .await?
                }
                _ => {
                    app.deprovision_user(tenant, &id, &req.reason, &caller)
                        .await?
                }
            }
        }
        "re-enrol" => {
            who.require(&app, Permission::UsersManage).await?;
            app.force_re_enrolment(tenant, &id, &req.reason, &caller)
                .await?
        }
        _ => return Err(Error::not_found("not_found", "no such user action").into()),
    };
    Ok(Json(admin_user_json(&u)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationsRequest {
    populations: Vec<String>,
}

pub async fn set_populations(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PopulationsRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersManage).await?;
    let tenant = who.tenant();
    let u = app.user_by_id(tenant, &user_id(&id)?).await?;
    app.set_populations(tenant, &u, &req.populations, &who.caller())
        .await?;
    Ok(Json(
        json!({ "populations": app.store.user_populations(&tenant.id, &u.id).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// A role, or `null` to take it away (the key is required: `{}` is refused).
    role: Value,
}

pub async fn set_role(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RoleRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::RolesAssign).await?;
    let invalid = || {
        Error::invalid(
            "invalid_role",
            "role is owner, admin, helpdesk, auditor or null",
        )
    };
    let role = match &req.role {
        Value::Null => None,
        Value::String(r) => Some(Role::parse(r).ok_or_else(invalid)?),
        _ => return Err(invalid().into()),
    };
    let u = app
        .set_role(who.tenant(), &user_id(&id)?, role, &who.caller())
        .await?;
    Ok(Json(admin_user_json(&u)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// An email address, or `null` to clear it (the key is required: `{}` is refused).
    contact_email: Value,
}

/// Sets or clears the user's verified contact, where notifications are emailed.
pub async fn set_contact(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ContactRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::UsersManage).await?;
    let contact = match &req.contact_email {
        Value::Null => None,
        Value::String(s) => Some(s.as_str()),
        _ => {
            return Err(Error::invalid(
                "invalid_contact",
                "contact_email is an email address or null",
            )
            .into())
        }
    };
    let u = app
        .set_contact(who.tenant(), &user_id(&id)?, contact, &who.caller())
        .await?;
    Ok(Json(admin_user_json(&u)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    status: Option<String>,
    user: Option<String>,
    limit: Option<i64>,
}

/// The notifications outbox, newest first (what was, or will be, sent to whom, and how it went).
pub async fn notifications(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiQuery(q): ApiQuery<NotificationsQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::AuditRead).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("invalid_limit", "limit must be between 1 and 1000").into());
    }
    let status = match &q.status {
        None => None,
        Some(s) => Some(NotificationStatus::parse(s).ok_or_else(|| {
            Error::invalid(
                "invalid_status",
                "status is pending, sent, failed or skipped",
            )
        })?),
    };
    let user = match &q.user {
        None => None,
        Some(u) => Some(user_id(u)?),
    };
    let list = app
        .list_notifications(
            who.tenant(),
            &keyplane_store::NotificationFilter {
                status,
                user,
                limit,
            },
        )
        .await?;
    Ok(Json(json!({
        "notifications": list.iter().map(notification_json).collect::<Vec<_>>(),
    })))
}

/// The credential filter as query parameters (lists comma-separated).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CredentialsQuery {
    aaguids: Option<String>,
    models: Option<String>,
    attestation: Option<String>,
    synced: Option<bool>,
    created_before: Option<String>,
    last_used_before: Option<String>,
    population: Option<String>,
    status: Option<String>,
    non_compliant: Option<bool>,
    username: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

fn list(raw: &Option<String>) -> Vec<String> {
    raw.as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub async fn list_credentials(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiQuery(q): ApiQuery<CredentialsQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::CredentialsRead).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("invalid_limit", "limit must be between 1 and 1000").into());
    }
    let filter = CredentialFilter {
        aaguids: list(&q.aaguids),
        models: list(&q.models),
        attestation: q.attestation,
        synced: q.synced,
        created_before: q.created_before,
        last_used_before: q.last_used_before,
        population: q.population,
        status: q.status,
        non_compliant: q.non_compliant,
        username: q.username,
    };
    let found = app.filter_credentials(who.tenant(), &filter).await?;
    let catalogue = app.catalogue().await?;
    Ok(Json(json!({
        "total": found.len(),
        "credentials": found.iter().skip(q.offset).take(limit).map(|c| {
            let mut v = credential_json(c, &catalogue);
            v["user"] = json!(c.user_id);
            v
        }).collect::<Vec<_>>(),
    })))
}

pub async fn credential_action(
    State(app): State<Arc<App>>,
    who: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJson(req): ApiJson<ReasonRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::CredentialsManage).await?;
    let id = credential_id(&id)?;
    let (tenant, caller) = (who.tenant(), who.caller());
    if action == "lost" {
        let lost = app
            .mark_credential_lost(tenant, &id, &req.reason, &caller)
            .await?;
        let mut v = credential_json(&lost.credential, &*app.catalogue().await?);
        v["user"] = json!(lost.credential.user_id);
        v["re_enrolment"] = json!(lost.re_enrolment);
        v["other_active_passkeys"] = json!(lost.other_active_passkeys);
        return Ok(Json(v));
    }
    let c = match action.as_str() {
        "suspend" => {
            app.suspend_credential(tenant, &id, &req.reason, &caller)
                .await?
        }
        "reactivate" => {
            app.reactivate_credential(tenant, &id, &req.reason, &caller)
                .await?
        }
        "revoke" => {
            app.revoke_credential(tenant, &id, &req.reason, &caller)
                .await?
        }
        _ => return Err(Error::not_found("not_found", "no such credential action").into()),
    };
    Ok(Json(credential_json(&c, &*app.catalogue().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    action: String,
    #[serde(default)]
    filter: CredentialFilter,
    #[serde(default)]
    reason: String,
    /// Only count and sample (the default: executing needs `"dry_run": false`).
    dry_run: Option<bool>,
}

/// Runs a started job in the background; its progress is at `GET /api/v1/admin/bulk-jobs/{id}`.
pub(crate) fn spawn_bulk(
    app: Arc<App>,
    tenant: Tenant,
    job: BulkJobId,
    caller: keyplane_core::audit::Caller,
) {
    tokio::spawn(async move {
        if let Err(e) = app.bulk_run(&tenant, &job, 200, &|_, _| {}, &caller).await {
            tracing::error!(job = %job, error = %e, "bulk job stopped; resume it with `keyplane credential bulk resume`");
        }
    });
}

pub async fn bulk(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<BulkRequest>,
) -> Result<Response, ApiError> {
    who.require(&app, Permission::CredentialsBulk).await?;
    let tenant = who.tenant().clone();
    if req.dry_run != Some(false) {
        let preview = app.bulk_preview(&tenant, &req.action, &req.filter).await?;
        return Ok(Json(json!({ "dry_run": true, "preview": preview })).into_response());
    }
    match app
        .bulk_start(
            &tenant,
            &req.action,
            &req.filter,
            &req.reason,
            &who.caller(),
        )
        .await?
    {
        BulkStart::Job(job) => {
            spawn_bulk(app.clone(), tenant, job.id.clone(), who.caller());
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "status": "running", "job": *job })),
            )
                .into_response())
        }
        BulkStart::AwaitingApproval(a) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "awaiting_approval", "approval": approval_json(&a) })),
        )
            .into_response()),
    }
}

pub async fn bulk_job(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::CredentialsRead).await?;
    let id = parse_id(&id, BulkJobId::parse, "bulk_job_not_found")?;
    Ok(Json(json!(app.bulk_job(who.tenant(), &id).await?)))
}

pub async fn fraud_alerts(
    State(app): State<Arc<App>>,
    who: Principal,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::FraudRead).await?;
    Ok(Json(
        json!({ "alerts": app.list_fraud_alerts(who.tenant()).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    resolution: String,
    note: String,
}

pub async fn resolve_fraud_alert(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ResolveRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::FraudResolve).await?;
    let id = parse_id(&id, FraudAlertId::parse, "fraud_alert_not_found")?;
    let a = app
        .resolve_fraud_alert(who.tenant(), &id, &req.resolution, &req.note, &who.caller())
        .await?;
    Ok(Json(json!(a)))
}

pub async fn exceptions(
    State(app): State<Arc<App>>,
    who: Principal,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ExceptionsRead).await?;
    Ok(Json(
        json!({ "exceptions": app.list_exceptions(who.tenant()).await? }),
    ))
}

/// Asks for an exception: 202 with the request a different administrator must approve.
pub async fn request_exception(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiJson(req): ApiJson<ExceptionRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ExceptionsRequest).await?;
    let a = app
        .request_exception(who.tenant(), req, &who.caller())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "awaiting_approval", "approval": approval_json(&a) })),
    ))
}

pub async fn revoke_exception(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReasonRequest>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ExceptionsRequest).await?;
    let id = parse_id(&id, ExceptionId::parse, "exception_not_found")?;
    app.revoke_exception(who.tenant(), &id, &req.reason, &who.caller())
        .await?;
    Ok(Json(json!({ "status": "revoked" })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Window in days (coverage sign-ins, exceptions expiring within); default 30.
    days: Option<i64>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

pub async fn report(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    who.require(&app, Permission::ReportsRead).await?;
    let value = app
        .report(who.tenant(), &name, q.days.unwrap_or(30))
        .await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(value).into_response()),
        Some("csv") => {
            let (columns, rows) = crate::service::report_rows(&name, &value);
            Ok((
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "text/csv; charset=utf-8".to_string(),
                    ),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.csv\""),
                    ),
                ],
                crate::service::csv(&columns, &rows),
            )
                .into_response())
        }
        Some(_) => Err(Error::invalid("invalid_format", "format is json or csv").into()),
    }
}
