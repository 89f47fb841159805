//! SCIM 2.0 (RFC 7643 / 7644) under `/scim/v2`: Users, Groups, and the discovery documents
//! (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`). A request is addressed to a tenant by
//! its `Host` like every other route and authenticated by a machine client of kind
//! `scim_token` holding `users.manage`. Every error is RFC 7644 §3.12's shape, as
//! `application/scim+json`. The rules are `service/scim.rs`; here are only the wire format
//! (`resources.rs`), filters (`filter.rs`) and PATCH (`patch.rs`).

pub mod filter;
pub mod patch;
pub mod resources;

use super::error::{status_of, ApiError};
use super::extract::{presented_token, request_context, AuthMethod, TenantCtx};
use crate::App;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use keyplane_core::admin::Permission;
use keyplane_core::audit::{Actor, Caller};
use keyplane_core::client::is_client_token;
use keyplane_core::{ClientKind, Error, ErrorKind, ScimGroupId, Tenant, UserId};
use resources::{Kind, LIST_RESPONSE, MAX_RESULTS};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const CONTENT_TYPE: &str = "application/scim+json";

/// A SCIM error on its way out: an HTTP status, a `scimType` where RFC 7644 defines one, and a
/// human-readable detail.
#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    /// 400 with a `scimType`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ScimError {
            status: StatusCode::NOT_FOUND,
            scim_type: None,
            detail: detail.into(),
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        ScimError::from(Error::internal(detail.into()))
    }
}

impl From<Error> for ScimError {
    fn from(e: Error) -> Self {
        let status = status_of(e.kind);
        let scim_type = match (e.kind, e.code) {
            (_, "username_taken" | "group_name_taken" | "conflict") => Some("uniqueness"),
            (ErrorKind::Invalid, _) => Some("invalidValue"),
            _ => None,
        };
        let detail = if status.is_server_error() {
            tracing::error!(code = e.code, error = %e.message, "SCIM request failed");
            "the server could not complete the request; see its log".to_string()
        } else {
            format!("{} ({})", e.message, e.code)
        };
        ScimError {
            status,
            scim_type,
            detail,
        }
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        e.0.into()
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [SCIM_ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut r = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keyplane-scim\""),
            );
        }
        r
    }
}

type ScimResult = Result<Response, ScimError>;

fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body.to_string(),
    )
        .into_response()
}

/// A resource with its ETag (and, when created, its Location).
fn resource_response(status: StatusCode, resource: &Value) -> Response {
    let mut r = scim_json(status, resource);
    if let Some(v) = resource["meta"]["version"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        r.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Some(v) = resource["meta"]["location"]
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }
    r
}

/// The SCIM machine client calling, the tenant it belongs to and the base URL of its resources.
pub struct ScimClient {
    pub tenant: Tenant,
    pub caller: Caller,
    pub base: String,
}

impl FromRequestParts<Arc<App>> for ScimClient {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ScimError> {
        let TenantCtx(tenant) = TenantCtx::from_request_parts(parts, app).await?;
        let token = match presented_token(parts) {
            Ok(Some((token, AuthMethod::Bearer))) if is_client_token(token.expose()) => token,
            _ => {
                return Err(Error::unauthenticated(
                    "unauthenticated",
                    "SCIM needs a SCIM token: Authorization: Bearer kpm_…",
                )
                .into())
            }
        };
        let context = request_context(parts);
        let (client, role) = app
            .client_for_token(&tenant, &token, ClientKind::ScimToken, &context)
            .await?;
        if !client.may(Permission::UsersManage, role) {
            return Err(Error::forbidden(
                "forbidden_scope",
                "this SCIM token may not users.manage (not a scope it holds, or its owner's role no longer allows it)",
            )
            .into());
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        // The tenant's origin for this host (its scheme is known there), else https.
        let origin = tenant
            .origins
            .iter()
            .find(|o| {
                o.split_once("://")
                    .is_some_and(|(_, h)| h.eq_ignore_ascii_case(host))
            })
            .cloned()
            .unwrap_or_else(|| format!("https://{host}"));
        Ok(ScimClient {
            base: format!("{}/scim/v2", origin.trim_end_matches('/')),
            caller: Caller::new(Actor::machine(&client.id), context),
            tenant,
        })
    }
}

/// Every SCIM route, relative to `/scim/v2`. Unknown paths and methods below it answer in the
/// SCIM error shape too.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route("/.search", post(search_all))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .fallback(|| async { ScimError::not_found("no such SCIM endpoint").into_response() })
        .method_not_allowed_fallback(|| async {
            ScimError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                scim_type: None,
                detail: "this SCIM endpoint does not accept that method".into(),
            }
            .into_response()
        })
}

fn list_response(resources: Vec<Value>, total: usize, start: usize) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

async fn service_provider_config(who: ScimClient) -> ScimResult {
    Ok(scim_json(
        StatusCode::OK,
        &resources::service_provider_config(&who.base),
    ))
}

async fn resource_types(who: ScimClient) -> ScimResult {
    let all: Vec<Value> = [Kind::User, Kind::Group]
        .into_iter()
        .map(|k| resources::resource_type(k, &who.base))
        .collect();
    Ok(list_response(all, 2, 1))
}

async fn resource_type(who: ScimClient, Path(name): Path<String>) -> ScimResult {
    let kind = match name.as_str() {
        "User" => Kind::User,
        "Group" => Kind::Group,
        _ => return Err(ScimError::not_found("no such resource type")),
    };
    Ok(scim_json(
        StatusCode::OK,
        &resources::resource_type(kind, &who.base),
    ))
}

async fn schemas(who: ScimClient) -> ScimResult {
    let all: Vec<Value> = [Kind::User, Kind::Group]
        .into_iter()
        .map(|k| resources::schema(k, &who.base))
        .collect();
    Ok(list_response(all, 2, 1))
}

async fn schema(who: ScimClient, Path(id): Path<String>) -> ScimResult {
    let kind = [Kind::User, Kind::Group]
        .into_iter()
        .find(|k| k.schema() == id)
        .ok_or_else(|| ScimError::not_found("no such schema"))?;
    Ok(scim_json(
        StatusCode::OK,
        &resources::schema(kind, &who.base),
    ))
}

/// A JSON body; anything else is 400 `invalidSyntax` (413 when too large).
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ScimError> {
    let bytes = body.map_err(|r| ScimError {
        status: r.status(),
        scim_type: (r.status() == StatusCode::BAD_REQUEST).then_some("invalidSyntax"),
        detail: r.body_text(),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))
}

/// `If-Match` (on PUT, PATCH and DELETE): `*` or a list of ETags, one of which must be the
/// resource's current one; else 412. Weak and strong spellings of the same tag match.
fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), ScimError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let current = current["meta"]["version"].as_str().unwrap_or_default();
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let raw = raw.to_str().unwrap_or_default();
    if raw.trim() == "*" || raw.split(',').any(|t| bare(t) == bare(current)) {
        return Ok(());
    }
    Err(ScimError {
        status: StatusCode::PRECONDITION_FAILED,
        scim_type: None,
        detail: format!("If-Match does not match the resource's version {current}"),
    })
}

/// `If-None-Match` on GET: 304 when the resource has not changed.
fn not_modified(headers: &HeaderMap, current: &Value) -> bool {
    let current = current["meta"]["version"].as_str().unwrap_or_default();
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == current || t.trim() == "*"))
}

fn user_id(raw: &str) -> Result<UserId, ScimError> {
    UserId::parse(raw).ok_or_else(|| ScimError::not_found("no such user in this tenant"))
}

fn group_id(raw: &str) -> Result<ScimGroupId, ScimError> {
    ScimGroupId::parse(raw).ok_or_else(|| ScimError::not_found("no such group in this tenant"))
}

/// The query of a list: filter, page, and which attributes to return.
struct ListQuery {
    filter: Option<filter::Filter>,
    start: usize,
    count: usize,
    attributes: Vec<(String, Option<String>)>,
    excluded: Vec<(String, Option<String>)>,
}

fn list_query(kind: Kind, q: &HashMap<String, String>) -> Result<ListQuery, ScimError> {
    let param = |name: &str| {
        q.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &str, default: i64| -> Result<i64, ScimError> {
        param(name).map_or(Ok(default), |v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| ScimError::bad("invalidValue", format!("{name} must be an integer")))
        })
    };
    let filter = match param("filter") {
        None => None,
        Some(raw) => {
            let f = filter::parse(raw).map_err(|e| ScimError::bad("invalidFilter", e.0))?;
            for (attr, sub) in f.paths() {
                if !kind.knows(&attr, sub.as_deref()) {
                    return Err(ScimError::bad(
                        "invalidFilter",
                        format!(
                            "{} has no attribute {attr}{}",
                            kind.endpoint(),
                            sub.map(|s| format!(".{s}")).unwrap_or_default()
                        ),
                    ));
                }
            }
            Some(f)
        }
    };
    let names = |name: &str| -> Vec<(String, Option<String>)> {
        param(name)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .filter_map(|s| filter::parse_attr_path(s.trim()).ok())
            .map(|p| (p.attr, p.sub))
            .collect()
    };
    Ok(ListQuery {
        filter,
        // RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a negative count is 0.
        start: usize::try_from(number("startIndex", 1)?.max(1)).unwrap_or(1),
        count: usize::try_from(number("count", MAX_RESULTS as i64)?.clamp(0, MAX_RESULTS as i64))
            .unwrap_or(MAX_RESULTS),
        attributes: names("attributes"),
        excluded: names("excludedAttributes"),
    })
}

fn page(all: Vec<Value>, q: &ListQuery) -> Response {
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|r| {
            q.filter
                .as_ref()
                .is_none_or(|f| f.matches(r, &Kind::case_exact))
        })
        .collect();
    let total = matching.len();
    let items = matching
        .into_iter()
        .skip(q.start - 1)
        .take(q.count)
        .map(|r| resources::project(r, &q.attributes, &q.excluded))
        .collect();
    list_response(items, total, q.start)
}

fn one(status: StatusCode, resource: Value, q: &HashMap<String, String>, kind: Kind) -> ScimResult {
    let lq = list_query(kind, q)?;
    let etag_source = resource.clone();
    let mut r = resource_response(
        status,
        &resources::project(resource, &lq.attributes, &lq.excluded),
    );
    // The ETag is the whole resource's, whatever the projection shows.
    if let Some(v) = etag_source["meta"]["version"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

async fn list_users(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Query(q): Query<HashMap<String, String>>,
) -> ScimResult {
    let lq = list_query(Kind::User, &q)?;
    let all = app.scim_users(&who.tenant).await?;
    let rendered = all
        .iter()
        .map(|u| resources::user_json(u, &who.base))
        .collect();
    Ok(page(rendered, &lq))
}

/// A SearchRequest body (RFC 7644 §3.4.3) as the query parameters of a list.
fn search_query(body: Result<Bytes, BytesRejection>) -> Result<HashMap<String, String>, ScimError> {
    let body = json_body(body)?;
    match filter::get(&body, "schemas") {
        Some(Value::Array(s))
            if s.iter().any(|x| {
                x.as_str() == Some("urn:ietf:params:scim:api:messages:2.0:SearchRequest")
            }) => {}
        _ => return Err(ScimError::bad(
            "invalidSyntax",
            "a search body's schemas must hold urn:ietf:params:scim:api:messages:2.0:SearchRequest",
        )),
    }
    let mut q = HashMap::new();
    for name in [
        "filter",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
    ] {
        match filter::get(&body, name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                q.insert(name.to_string(), s.clone());
            }
            Some(Value::Number(n)) => {
                q.insert(name.to_string(), n.to_string());
            }
            Some(Value::Array(items)) => {
                let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                let names = names.ok_or_else(|| {
                    ScimError::bad(
                        "invalidValue",
                        format!("{name} must be a list of attribute names"),
                    )
                })?;
                q.insert(name.to_string(), names.join(","));
            }
            Some(_) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("{name} has the wrong type"),
                ))
            }
        }
    }
    Ok(q)
}

async fn search_users(
    State(app): State<Arc<App>>,
    who: ScimClient,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let lq = list_query(Kind::User, &search_query(body)?)?;
    let all = app.scim_users(&who.tenant).await?;
    let rendered = all
        .iter()
        .map(|u| resources::user_json(u, &who.base))
        .collect();
    Ok(page(rendered, &lq))
}

/// `POST /.search`: users, then groups. A filter must name attributes of one of them.
async fn search_all(
    State(app): State<Arc<App>>,
    who: ScimClient,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let q = search_query(body)?;
    let lq = list_query(Kind::User, &q).or_else(|_| list_query(Kind::Group, &q))?;
    let users = app.scim_users(&who.tenant).await?;
    let groups = app.scim_groups(&who.tenant).await?;
    let rendered = users
        .iter()
        .map(|u| resources::user_json(u, &who.base))
        .chain(groups.iter().map(|g| resources::group_json(g, &who.base)))
        .collect();
    Ok(page(rendered, &lq))
}

async fn search_groups(
    State(app): State<Arc<App>>,
    who: ScimClient,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let lq = list_query(Kind::Group, &search_query(body)?)?;
    let all = app.scim_groups(&who.tenant).await?;
    let rendered = all
        .iter()
        .map(|g| resources::group_json(g, &who.base))
        .collect();
    Ok(page(rendered, &lq))
}

async fn get_user(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ScimResult {
    let u = app.scim_user(&who.tenant, &user_id(&id)?).await?;
    let r = resources::user_json(&u, &who.base);
    if not_modified(&headers, &r) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    one(StatusCode::OK, r, &q, Kind::User)
}

async fn create_user(
    State(app): State<Arc<App>>,
    who: ScimClient,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let input = resources::user_input(&json_body(body)?)?;
    let u = app
        .scim_create_user(&who.tenant, input, &who.caller)
        .await?;
    Ok(resource_response(
        StatusCode::CREATED,
        &resources::user_json(&u, &who.base),
    ))
}

async fn replace_user(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let id = user_id(&id)?;
    let body = json_body(body)?;
    let current = resources::user_json(&app.scim_user(&who.tenant, &id).await?, &who.base);
    check_if_match(&headers, &current)?;
    let input = resources::user_input(&body)?;
    let u = app
        .scim_replace_user(&who.tenant, &id, input, &who.caller)
        .await?;
    Ok(resource_response(
        StatusCode::OK,
        &resources::user_json(&u, &who.base),
    ))
}

async fn patch_user(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let id = user_id(&id)?;
    let body = json_body(body)?;
    let current = resources::user_json(&app.scim_user(&who.tenant, &id).await?, &who.base);
    check_if_match(&headers, &current)?;
    let mut patched = current;
    patch::apply(&mut patched, Kind::User, &body)?;
    let input = resources::user_input(&patched)?;
    let u = app
        .scim_replace_user(&who.tenant, &id, input, &who.caller)
        .await?;
    Ok(resource_response(
        StatusCode::OK,
        &resources::user_json(&u, &who.base),
    ))
}

async fn delete_user(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult {
    let id = user_id(&id)?;
    let current = resources::user_json(&app.scim_user(&who.tenant, &id).await?, &who.base);
    check_if_match(&headers, &current)?;
    app.scim_delete_user(&who.tenant, &id, &who.caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_groups(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Query(q): Query<HashMap<String, String>>,
) -> ScimResult {
    let lq = list_query(Kind::Group, &q)?;
    let all = app.scim_groups(&who.tenant).await?;
    let rendered = all
        .iter()
        .map(|g| resources::group_json(g, &who.base))
        .collect();
    Ok(page(rendered, &lq))
}

async fn get_group(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ScimResult {
    let g = app.scim_group(&who.tenant, &group_id(&id)?).await?;
    let r = resources::group_json(&g, &who.base);
    if not_modified(&headers, &r) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    one(StatusCode::OK, r, &q, Kind::Group)
}

async fn create_group(
    State(app): State<Arc<App>>,
    who: ScimClient,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let input = resources::group_input(&json_body(body)?)?;
    let g = app
        .scim_create_group(&who.tenant, input, &who.caller)
        .await?;
    Ok(resource_response(
        StatusCode::CREATED,
        &resources::group_json(&g, &who.base),
    ))
}

async fn replace_group(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let id = group_id(&id)?;
    let body = json_body(body)?;
    let current = resources::group_json(&app.scim_group(&who.tenant, &id).await?, &who.base);
    check_if_match(&headers, &current)?;
    let input = resources::group_input(&body)?;
    let g = app
        .scim_replace_group(&who.tenant, &id, input, &who.caller)
        .await?;
    Ok(resource_response(
        StatusCode::OK,
        &resources::group_json(&g, &who.base),
    ))
}

async fn patch_group(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ScimResult {
    let id = group_id(&id)?;
    let body = json_body(body)?;
    let current = resources::group_json(&app.scim_group(&who.tenant, &id).await?, &who.base);
    check_if_match(&headers, &current)?;
    let mut patched = current;
    patch::apply(&mut patched, Kind::Group, &body)?;
    let input = resources::group_input(&patched)?;
    let g = app
        .scim_replace_group(&who.tenant, &id, input, &who.caller)
        .await?;
    Ok(resource_response(
        StatusCode::OK,
        &resources::group_json(&g, &who.base),
    ))
}

async fn delete_group(
    State(app): State<Arc<App>>,
    who: ScimClient,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult {
    let id = group_id(&id)?;
    let current = resources::group_json(&app.scim_group(&who.tenant, &id).await?, &who.base);
    check_if_match(&headers, &current)?;
    app.scim_delete_group(&who.tenant, &id, &who.caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
