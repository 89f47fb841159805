//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use super::error::ApiResult;
use crate::App;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::Error;
use serde_json::json;
use std::sync::Arc;

/// The OpenAPI document of the JSON API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers and is migrated.
pub async fn readyz(State(app): State<Arc<App>>) -> ApiResult<impl IntoResponse> {
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::new(
            keyplane_core::ErrorKind::Unavailable,
            "draining",
            "this node is shutting down; send new requests elsewhere",
        )
        .into());
    }
    app.store.ping().await.map_err(Error::from)?;
    let level = app.store.migration_level().await.map_err(Error::from)?;
    Ok(Json(
        json!({ "status": "ready", "database": app.store.backend().as_str(), "migration": level }),
    ))
}

pub async fn metrics() -> impl IntoResponse {
    match crate::metrics::handle() {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics recorder unavailable\n".into(),
        ),
    }
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
