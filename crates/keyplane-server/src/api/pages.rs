//! The pages the quickstart needs before the full web UI: enrolment from an invitation link,
//! sign-in, and account recovery. Static files embedded in the binary, served with a strict Content-Security-Policy
//! (no inline script, nothing from other origins).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

pub async fn enrol() -> Response {
    page(
        include_str!("../../assets/enrol.html"),
        "text/html; charset=utf-8",
    )
}

pub async fn signin() -> Response {
    page(
        include_str!("../../assets/signin.html"),
        "text/html; charset=utf-8",
    )
}

pub async fn admin() -> Response {
    page(
        include_str!("../../assets/admin.html"),
        "text/html; charset=utf-8",
    )
}

pub async fn account() -> Response {
    page(
        include_str!("../../assets/account.html"),
        "text/html; charset=utf-8",
    )
}

pub async fn recover() -> Response {
    page(
        include_str!("../../assets/recover.html"),
        "text/html; charset=utf-8",
    )
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "keyplane.js" => page(
            include_str!("../../assets/keyplane.js"),
            "text/javascript; charset=utf-8",
        ),
        "keyplane.css" => page(
            include_str!("../../assets/keyplane.css"),
            "text/css; charset=utf-8",
        ),
        _ => super::error::ApiError(keyplane_core::Error::not_found(
            "not_found",
            "no such asset",
        ))
        .into_response(),
    }
}
