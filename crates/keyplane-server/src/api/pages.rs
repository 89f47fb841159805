//! The web UI's pages: enrolment from an invitation link, sign-in, account recovery, the account
//! page and the admin console. Server-rendered templates (askama, `templates/`, checked at compile
//! time and HTML-escaped) embedded in the binary with the one script and stylesheet, served with a
//! strict Content-Security-Policy (no inline script, nothing from other origins).
//!
//! The account page is rendered here from the same services the JSON API calls; its script only
//! runs the WebAuthn ceremonies and the buttons (each an API call), then re-reads the page. The
//! console's sections are filled by the script from the admin API, so that every console action
//! is an API action under one authorization check.

use super::extract::{AuthMethod, MaybeAuth, TenantCtx};
use crate::App;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_core::{Error, Tenant, Timestamp};
use std::fmt;
use std::sync::Arc;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn with_headers(mut r: Response, content_type: &'static str) -> Response {
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

/// What every page's layout needs.
pub struct Layout {
    /// `data-page` on `<body>`: which part of the script runs.
    page: &'static str,
    tenant: String,
    /// The session's CSRF token, on pages that act for a signed-in session (`<meta name="csrf-token">`).
    csrf: Option<String>,
}

impl Layout {
    fn new(page: &'static str, tenant: &Tenant) -> Self {
        Layout {
            page,
            tenant: tenant.rp_name.clone(),
            csrf: None,
        }
    }
}

fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => {
            let mut r = with_headers(
                (StatusCode::OK, body).into_response(),
                "text/html; charset=utf-8",
            );
            // Pages may show personal data (the account page): never kept by shared caches.
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            super::error::ApiError(Error::internal("page rendering failed")).into_response()
        }
    }
}

macro_rules! static_page {
    ($fn:ident, $ty:ident, $file:literal, $page:literal) => {
        #[derive(Template)]
        #[template(path = $file)]
        struct $ty {
            layout: Layout,
        }

        pub async fn $fn(TenantCtx(tenant): TenantCtx) -> Response {
            html(&$ty {
                layout: Layout::new($page, &tenant),
            })
        }
    };
}

static_page!(enrol, EnrolPage, "enrol.html", "enrol");
static_page!(recover, RecoverPage, "recover.html", "recover");
static_page!(admin, AdminPage, "admin.html", "admin");

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    layout: Layout,
    /// Signing in for an OpenID Connect client: where to go after, and what it asks.
    pending: Option<super::oidc::Pending>,
}

#[derive(serde::Deserialize)]
pub struct SignInQuery {
    authz: Option<String>,
}

/// `GET /signin`, or `/signin?authz=…` when an application sent the user (OpenID Connect).
pub async fn signin(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    axum::extract::Query(q): axum::extract::Query<SignInQuery>,
) -> Response {
    let pending = match &q.authz {
        Some(id) => super::oidc::pending(&app, &tenant, id).await,
        None => None,
    };
    html(&SignInPage {
        layout: Layout::new("signin", &tenant),
        pending,
    })
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage {
    layout: Layout,
    signed_out: bool,
}

/// The page after RP-initiated logout without a return address.
pub fn signed_out(tenant: &Tenant, signed_out: bool) -> Response {
    html(&SignedOutPage {
        layout: Layout::new("signed-out", tenant),
        signed_out,
    })
}

/// An instant on a page: `<time datetime="RFC 3339">YYYY-MM-DD HH:MM UTC</time>` (the script
/// shows it in the reader's time zone). Both parts are made from the timestamp alone, so the
/// markup needs no escaping (the template marks it `safe`).
struct When(Timestamp);

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let iso = self.0.to_rfc3339();
        let text = match (iso.get(..10), iso.get(11..16)) {
            (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
            _ => iso.clone(),
        };
        write!(f, "<time datetime=\"{iso}\">{text}</time>")
    }
}

/// "never" for an instant that has not happened.
fn when_or_never(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "never".to_owned(), |t| When(t).to_string())
}

struct PasskeyView {
    id: String,
    nickname: String,
    kind: &'static str,
    status: &'static str,
    model: String,
    created_at: When,
    last_used_at: String,
}

struct CaseView {
    id: String,
    state: String,
    opened_at: When,
    cooling_off_until: Option<When>,
}

struct SessionView {
    current: bool,
    aal: String,
    passkey: Option<String>,
    created_at: When,
    last_seen_at: When,
}

struct SignInView {
    at: When,
    aal: String,
    passkey: String,
    client_ip: Option<String>,
    browser: Option<String>,
}

struct CodesView {
    remaining: u64,
    generated_at: String,
}

struct AccountView {
    display_name: String,
    username: String,
    recommend_second: bool,
    passkeys: Vec<PasskeyView>,
    cases: Vec<CaseView>,
    sessions: Vec<SessionView>,
    sign_ins: Vec<SignInView>,
    /// None when the policy gives this user no recovery codes.
    codes: Option<CodesView>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    account: Option<AccountView>,
}

/// How many sign-ins the account page lists.
const RECENT_SIGN_INS: i64 = 10;

/// `GET /account`: the signed-in user's passkeys, recovery requests, sessions, recent sign-ins
/// and recovery codes; a link to sign in without a (valid) session cookie.
pub async fn account(
    State(app): State<Arc<App>>,
    TenantCtx(tenant): TenantCtx,
    MaybeAuth(auth): MaybeAuth,
) -> Response {
    let mut layout = Layout::new("account", &tenant);
    let Some(Ok(auth)) = auth else {
        return html(&AccountPage {
            layout,
            account: None,
        });
    };
    if auth.method == AuthMethod::Cookie {
        layout.csrf = Some(auth.token.derive("csrf"));
    }
    match account_view(&app, &auth).await {
        Ok(view) => html(&AccountPage {
            layout,
            account: Some(view),
        }),
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

async fn account_view(app: &App, auth: &super::extract::Auth) -> Result<AccountView, Error> {
    let (tenant, user) = (&auth.tenant, &auth.user.id);
    let credentials = app.my_credentials(tenant, user).await?;
    let catalogue = app.catalogue().await?;
    let nickname = |id: Option<&keyplane_core::CredentialRecordId>| {
        super::types::passkey_nickname(&credentials, id)
    };
    let passkeys = credentials
        .iter()
        .map(|c| PasskeyView {
            id: c.id.to_string(),
            nickname: c.nickname.clone(),
            kind: match (c.backup_state, c.backup_eligible) {
                (true, _) => "Synced",
                (false, true) => "Can sync",
                (false, false) => "Device-bound",
            },
            status: c.status.as_str(),
            model: catalogue
                .name(&c.aaguid)
                .map_or_else(|| "Unknown authenticator model".to_owned(), |n| n.name),
            created_at: When(c.created_at),
            last_used_at: when_or_never(c.last_used_at),
        })
        .collect();
    let cases = app
        .my_recovery_cases(tenant, user)
        .await?
        .into_iter()
        .map(|c| CaseView {
            id: c.id.to_string(),
            state: c.state.as_str().replace('_', " "),
            opened_at: When(c.created_at),
            cooling_off_until: c.cooling_off_until.map(When),
        })
        .collect();
    let sessions = app
        .my_sessions(tenant, user)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: s.id == auth.session.id,
            aal: s.aal.as_str().to_uppercase(),
            passkey: nickname(s.credential_id.as_ref()),
            created_at: When(s.created_at),
            last_seen_at: When(s.last_seen_at),
        })
        .collect();
    let sign_ins = app
        .my_recent_sign_ins(tenant, user, RECENT_SIGN_INS)
        .await?
        .into_iter()
        .map(|s| SignInView {
            at: When(s.at),
            aal: s
                .aal
                .map_or_else(|| "?".to_owned(), |a| a.as_str().to_uppercase()),
            passkey: nickname(s.credential.as_ref()).map_or_else(
                || "a passkey since removed".to_owned(),
                |n| format!("\"{n}\""),
            ),
            client_ip: s.client_ip,
            browser: s.user_agent,
        })
        .collect();
    let codes = if app.recovery_codes_allowed(tenant, user).await? {
        let s = app.recovery_codes_status(tenant, user).await?;
        Some(CodesView {
            remaining: s.remaining,
            generated_at: when_or_never(s.generated_at),
        })
    } else {
        None
    };
    Ok(AccountView {
        display_name: auth.user.display_name.clone(),
        username: auth.user.username.clone(),
        recommend_second: app.passkey_recommendation(tenant, user).await?.is_some(),
        passkeys,
        cases,
        sessions,
        sign_ins,
        codes,
    })
}

pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "keyplane.js" => (
            include_str!("../../assets/keyplane.js"),
            "text/javascript; charset=utf-8",
        ),
        "keyplane.css" => (
            include_str!("../../assets/keyplane.css"),
            "text/css; charset=utf-8",
        ),
        _ => {
            return super::error::ApiError(Error::not_found("not_found", "no such asset"))
                .into_response()
        }
    };
    with_headers((StatusCode::OK, body).into_response(), content_type)
}
