//! The HTTP API: routes, middleware (request ids, logs, metrics, body limits) and handlers.

pub mod admin;
pub mod audit;
pub mod campaigns;
pub mod ceremonies;
pub mod clients;
pub mod error;
pub mod extract;
pub mod manage;
pub mod me;
pub mod oidc;
pub mod ops;
pub mod pages;
pub mod recovery;
pub mod scim;
pub mod stepup;
pub mod types;
pub mod webhooks;

use crate::App;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use error::ApiError;
use keyplane_core::Error;
use std::sync::Arc;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of the server. `openapi.json` documents exactly these (a test holds them equal).
pub fn router(app: Arc<App>) -> Router {
    let limit = app.settings.max_body_bytes;
    let trusted: Vec<ipnet::IpNet> = app
        .settings
        .trusted_proxies
        .iter()
        .filter_map(|p| crate::client_ip::parse_range(p))
        .collect();
    crate::metrics::handle();
    // Ceremony endpoints are reachable without a session: they are limited per client address.
    let ceremonies = Router::new()
        .route(
            "/api/v1/registration/options",
            post(ceremonies::registration_options),
        )
        .route(
            "/api/v1/registration/verify",
            post(ceremonies::registration_verify),
        )
        .route(
            "/api/v1/authentication/options",
            post(ceremonies::authentication_options),
        )
        .route(
            "/api/v1/authentication/verify",
            post(ceremonies::authentication_verify),
        )
        .route("/api/v1/step-up/options", post(stepup::options))
        .route("/api/v1/step-up/verify", post(stepup::verify))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            limit_by_address,
        ));
    Router::new()
        .merge(ceremonies)
        .route("/api/v1/me", get(me::me))
        .route("/api/v1/me/credentials", get(me::list_credentials))
        .route(
            "/api/v1/me/recovery-codes",
            get(me::recovery_codes_status).post(me::generate_recovery_codes),
        )
        .route(
            "/api/v1/me/credentials/{id}",
            get(me::get_credential).patch(me::rename_credential).delete(me::delete_credential),
        )
        .route("/api/v1/me/sessions", get(me::sessions))
        .route("/api/v1/me/sign-ins", get(me::sign_ins))
        .route(
            "/api/v1/me/sessions/end-others",
            post(me::end_other_sessions),
        )
        .route("/api/v1/logout", post(me::logout))
        .route(
            "/api/v1/recovery/codes/redeem",
            post(recovery::redeem_code),
        )
        .route(
            "/api/v1/recovery/links/redeem",
            post(recovery::redeem_link),
        )
        .route("/api/v1/recovery/cases", post(recovery::request_case))
        .route("/api/v1/me/recovery-cases", get(recovery::my_cases))
        .route(
            "/api/v1/me/recovery-cases/{id}/cancel",
            post(recovery::cancel_my_case),
        )
        .route(
            "/api/v1/admin/recovery-cases",
            get(recovery::list_cases).post(recovery::open_case),
        )
        .route("/api/v1/admin/recovery-cases/{id}", get(recovery::get_case))
        .route(
            "/api/v1/admin/recovery-cases/{id}/{action}",
            post(recovery::case_action),
        )
        .route("/api/v1/audit/events", get(audit::events))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/admin/policy", get(admin::policy))
        .route("/api/v1/admin/policy/versions", get(admin::versions))
        .route("/api/v1/admin/policy/lint", post(admin::lint))
        .route("/api/v1/admin/policy/diff", post(admin::diff))
        .route("/api/v1/admin/policy/simulate", post(admin::simulate))
        .route("/api/v1/admin/policy/apply", post(admin::apply))
        .route("/api/v1/admin/policy/rollback", post(admin::rollback))
        .route("/api/v1/admin/approvals", get(admin::approvals))
        .route(
            "/api/v1/admin/approvals/{id}/approve",
            post(admin::approve),
        )
        .route("/api/v1/admin/approvals/{id}/deny", post(admin::deny))
        .route(
            "/api/v1/admin/users",
            get(manage::list_users).post(manage::invite),
        )
        .route("/api/v1/admin/users/{id}", get(manage::get_user))
        .route(
            "/api/v1/admin/users/{id}/populations",
            put(manage::set_populations),
        )
        .route("/api/v1/admin/users/{id}/role", put(manage::set_role))
        .route("/api/v1/admin/users/{id}/contact", put(manage::set_contact))
        .route("/api/v1/admin/notifications", get(manage::notifications))
        .route(
            "/api/v1/admin/users/{id}/{action}",
            post(manage::user_action),
        )
        .route("/api/v1/admin/credentials", get(manage::list_credentials))
        .route("/api/v1/admin/credentials/bulk", post(manage::bulk))
        .route(
            "/api/v1/admin/credentials/{id}/{action}",
            post(manage::credential_action),
        )
        .route("/api/v1/admin/bulk-jobs/{id}", get(manage::bulk_job))
        .route("/api/v1/admin/fraud-alerts", get(manage::fraud_alerts))
        .route(
            "/api/v1/admin/fraud-alerts/{id}/resolve",
            post(manage::resolve_fraud_alert),
        )
        .route(
            "/api/v1/admin/exceptions",
            get(manage::exceptions).post(manage::request_exception),
        )
        .route(
            "/api/v1/admin/exceptions/{id}/revoke",
            post(manage::revoke_exception),
        )
        .route("/api/v1/admin/reports/{name}", get(manage::report))
        .route(
            "/api/v1/admin/campaigns",
            get(campaigns::list).post(campaigns::start),
        )
        .route("/api/v1/admin/campaigns/{id}", get(campaigns::get))
        .route("/api/v1/admin/campaigns/{id}/close", post(campaigns::close))
        .route(
            "/api/v1/admin/clients",
            get(clients::list).post(clients::create),
        )
        .route("/api/v1/admin/clients/{id}", get(clients::get))
        .route("/api/v1/admin/clients/{id}/rotate", post(clients::rotate))
        .route("/api/v1/admin/clients/{id}/revoke", post(clients::revoke))
        .route("/api/v1/admin/webhooks/deliveries", get(webhooks::list))
        .route("/api/v1/admin/webhooks/deliveries/{id}", get(webhooks::get))
        .route(
            "/api/v1/admin/webhooks/deliveries/{id}/replay",
            post(webhooks::replay),
        )
        .route("/.well-known/keyplane-audit-keys", get(audit::keys))
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route(
            "/.well-known/openid-configuration",
            get(oidc::discovery),
        )
        .route(oidc::JWKS, get(oidc::jwks))
        .route(oidc::AUTHORIZE, get(oidc::authorize))
        .route(oidc::CONTINUE, get(oidc::continue_authorization))
        .route(oidc::TOKEN, post(oidc::token))
        .route(oidc::USERINFO, get(oidc::userinfo).post(oidc::userinfo))
        .route(oidc::END_SESSION, get(oidc::end_session))
        .route("/enrol", get(pages::enrol))
        .route("/signin", get(pages::signin))
        .route("/recover", get(pages::recover))
        .route("/account", get(pages::account))
        .route("/admin", get(pages::admin))
        .route("/assets/{name}", get(pages::asset))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/scim/v2", scim::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(screen_request_id))
        .layer(middleware::from_fn_with_state(
            Arc::new(trusted),
            client_address,
        ))
        .with_state(app)
}

/// Puts the request's client address ([`crate::client_ip::ClientIp`]) on it: the peer's, or for
/// a trusted proxy the address it forwards (`trusted_proxies`).
async fn client_address(
    State(trusted): State<Arc<Vec<ipnet::IpNet>>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(peer) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let ip = crate::client_ip::client_ip(peer, &forwarded, &trusted);
        req.extensions_mut().insert(crate::client_ip::ClientIp(ip));
    }
    next.run(req).await
}

/// Refuses a ceremony request with 429 `rate_limited` once its client address (per tenant host)
/// has used `rate_limits.per_address_per_minute`.
async fn limit_by_address(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<crate::client_ip::ClientIp>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = crate::service::host_without_port(host).to_ascii_lowercase();
    if let Err(e) = app.address_limiter.check(&format!("{host}|{ip}")) {
        return ApiError(e).into_response();
    }
    next.run(req).await
}

/// Longest client-chosen request id that is kept.
const MAX_REQUEST_ID: usize = 128;

/// A client's `x-request-id` is kept (so that a request can be followed from a proxy's log), but
/// only when it is 1-128 visible ASCII characters: the id is recorded in the audit log, which an
/// unauthenticated client must not be able to fill with arbitrary text. Any other value (or
/// several) is dropped here, before the request-id layer, which then makes a UUID.
async fn screen_request_id(mut req: Request) -> Request {
    let headers = req.headers_mut();
    let mut values = headers.get_all(&REQUEST_ID).iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => return req,
        (Some(v), None) => {
            (1..=MAX_REQUEST_ID).contains(&v.len())
                && v.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b))
        }
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove(&REQUEST_ID);
    }
    req
}

async fn not_found() -> Response {
    ApiError(Error::not_found("not_found", "no such endpoint")).into_response()
}

async fn method_not_allowed() -> Response {
    let body = serde_json::json!({ "error": { "code": "method_not_allowed", "message": "this endpoint does not accept that method" } });
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    crate::metrics::request_finished(
        method,
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}
