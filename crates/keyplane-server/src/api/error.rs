//! The one place where errors become HTTP: status from the error's kind, and the JSON body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplane_core::{Error, ErrorKind};

/// An error on its way out as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<keyplane_store::StoreError> for ApiError {
    fn from(e: keyplane_store::StoreError) -> Self {
        ApiError(e.into())
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        // Server-side failures keep their detail in the log, not in the response.
        let message = if status.is_server_error() {
            tracing::error!(code = self.0.code, error = %self.0.message, "request failed");
            "the server could not complete the request; see its log".to_string()
        } else {
            self.0.message
        };
        let mut error = serde_json::json!({ "code": self.0.code, "message": message });
        for (key, value) in &self.0.extra {
            error[*key] = serde_json::Value::String(value.clone());
        }
        let body = serde_json::json!({ "error": error });
        if let Some((_, secs)) = self.0.extra.iter().find(|(k, _)| *k == "retry_after_secs") {
            if let Ok(v) = axum::http::HeaderValue::from_str(secs) {
                return (
                    status,
                    [(axum::http::header::RETRY_AFTER, v)],
                    axum::Json(body),
                )
                    .into_response();
            }
        }
        (status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
