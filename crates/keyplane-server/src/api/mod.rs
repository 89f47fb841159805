//! The HTTP API: routes, middleware (request ids, logs, metrics, body limits) and handlers.

pub mod audit;
pub mod ceremonies;
pub mod error;
pub mod extract;
pub mod me;
pub mod ops;
pub mod pages;
pub mod types;

use crate::App;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    crate::metrics::handle();
    Router::new()
        .route("/api/v1/registration/options", post(ceremonies::registration_options))
        .route("/api/v1/registration/verify", post(ceremonies::registration_verify))
        .route("/api/v1/authentication/options", post(ceremonies::authentication_options))
        .route("/api/v1/authentication/verify", post(ceremonies::authentication_verify))
        .route("/api/v1/me", get(me::me))
        .route("/api/v1/me/credentials", get(me::list_credentials))
        .route(
            "/api/v1/me/credentials/{id}",
            get(me::get_credential).patch(me::rename_credential).delete(me::delete_credential),
        )
        .route("/api/v1/logout", post(me::logout))
        .route("/api/v1/audit/events", get(audit::events))
        .route("/.well-known/keyplane-audit-keys", get(audit::keys))
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route("/enrol", get(pages::enrol))
        .route("/signin", get(pages::signin))
        .route("/assets/{name}", get(pages::asset))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
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
        .with_state(app)
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
