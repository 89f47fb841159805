//! The permission matrix over HTTP on both backends: each role (and a user with no role) can do
//! exactly its rows of `keyplane_core::admin::allows`, on every admin endpoint; the role is
//! checked before the step-up; an old sign-in gets `step_up_required` until a step-up; and the
//! matrix in docs/admin.md and the permissions named in openapi.json are the code's.

mod common;

use common::both_backends;
use keyplane_core::admin::{allows, Permission, Role};
use keyplane_core::audit::Caller;
use keyplane_core::time::ManualClock;
use keyplane_core::{Clock, SystemClock};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An id that is a valid UUID but names nothing in the tenant.
const UNKNOWN: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

/// One request to an admin endpoint, chosen so that it changes nothing: a read, or a change whose
/// body or target is refused *after* the handler has asked for its permission.
struct Probe {
    method: Method,
    /// As documented in openapi.json (`{id}` is replaced by [`UNKNOWN`]).
    path: &'static str,
    permission: Permission,
    body: Option<Value>,
    /// What a role holding the permission gets (status, error code or "" for success).
    allowed: (StatusCode, &'static str),
}

impl Probe {
    fn url(&self) -> String {
        self.path.replace("{id}", UNKNOWN)
    }

    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn probe(
    method: Method,
    path: &'static str,
    permission: Permission,
    body: Option<Value>,
    allowed: (StatusCode, &'static str),
) -> Probe {
    Probe {
        method,
        path,
        permission,
        body,
        allowed,
    }
}

const OK: (StatusCode, &str) = (StatusCode::OK, "");
const BAD_REASON: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "invalid_reason");

fn empty_reason() -> Option<Value> {
    Some(json!({ "reason": "" }))
}

/// Every documented operation that asks for a permission, with a harmless request for it.
fn endpoints() -> Vec<Probe> {
    use Method as M;
    use Permission as P;
    let doc = || Some(json!({ "document": "version = 1\n" }));
    let mut all = vec![
        probe(M::GET, "/api/v1/audit/events", P::AuditRead, None, OK),
        probe(M::GET, "/api/v1/audit/verify", P::AuditRead, None, OK),
        probe(
            M::GET,
            "/api/v1/admin/recovery-cases",
            P::UsersRead,
            None,
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases",
            P::UsersManage,
            Some(json!({ "user_id": UNKNOWN })),
            (StatusCode::NOT_FOUND, "user_not_found"),
        ),
        probe(
            M::GET,
            "/api/v1/admin/recovery-cases/{id}",
            P::UsersRead,
            None,
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases/{id}/take",
            P::UsersManage,
            Some(json!({})),
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases/{id}/check",
            P::UsersManage,
            Some(json!({ "check": "identity_document", "passed": true, "evidence": "x" })),
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases/{id}/verified",
            P::UsersManage,
            Some(json!({})),
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases/{id}/send-link",
            P::UsersManage,
            Some(json!({})),
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases/{id}/deny",
            P::UsersManage,
            Some(json!({ "reason": "x" })),
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases/{id}/cancel",
            P::UsersManage,
            Some(json!({ "reason": "x" })),
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/recovery-cases/{id}/review",
            P::FraudResolve,
            Some(json!({ "note": "x" })),
            (StatusCode::NOT_FOUND, "case_not_found"),
        ),
        probe(M::GET, "/api/v1/admin/policy", P::PolicyRead, None, OK),
        probe(
            M::GET,
            "/api/v1/admin/policy/versions",
            P::PolicyRead,
            None,
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/policy/lint",
            P::PolicyRead,
            doc(),
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/policy/diff",
            P::PolicyRead,
            doc(),
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/policy/simulate",
            P::PolicyRead,
            doc(),
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/policy/apply",
            P::PolicyApply,
            Some(json!({ "document": "version = 1\ncolour = 1\n" })),
            (StatusCode::BAD_REQUEST, "policy_invalid"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/policy/rollback",
            P::PolicyApply,
            Some(json!({ "version": 99 })),
            (StatusCode::NOT_FOUND, "policy_version_not_found"),
        ),
        probe(
            M::GET,
            "/api/v1/admin/approvals",
            P::ApprovalsRead,
            None,
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/approvals/{id}/approve",
            P::ApprovalsDecide,
            None,
            (StatusCode::NOT_FOUND, "approval_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/approvals/{id}/deny",
            P::ApprovalsDecide,
            Some(json!({})),
            (StatusCode::NOT_FOUND, "approval_not_found"),
        ),
        probe(M::GET, "/api/v1/admin/users", P::UsersRead, None, OK),
        // The role is checked after users.manage (and refused as a name before roles.assign).
        probe(
            M::POST,
            "/api/v1/admin/users",
            P::UsersManage,
            Some(json!({ "username": "newcomer", "role": "root" })),
            (StatusCode::BAD_REQUEST, "invalid_role"),
        ),
        probe(
            M::GET,
            "/api/v1/admin/users/{id}",
            P::UsersRead,
            None,
            (StatusCode::NOT_FOUND, "user_not_found"),
        ),
        probe(
            M::PUT,
            "/api/v1/admin/users/{id}/populations",
            P::UsersManage,
            Some(json!({ "populations": [] })),
            (StatusCode::NOT_FOUND, "user_not_found"),
        ),
        probe(
            M::PUT,
            "/api/v1/admin/users/{id}/contact",
            P::UsersManage,
            Some(json!({ "contact_email": "not an address" })),
            (StatusCode::BAD_REQUEST, "invalid_contact"),
        ),
        probe(
            M::GET,
            "/api/v1/admin/notifications",
            P::AuditRead,
            None,
            OK,
        ),
        probe(
            M::GET,
            "/api/v1/admin/webhooks/deliveries",
            P::AuditRead,
            None,
            OK,
        ),
        probe(
            M::GET,
            "/api/v1/admin/webhooks/deliveries/{id}",
            P::AuditRead,
            None,
            (StatusCode::NOT_FOUND, "delivery_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/webhooks/deliveries/{id}/replay",
            P::ClientsManage,
            Some(json!({})),
            (StatusCode::NOT_FOUND, "delivery_not_found"),
        ),
        probe(
            M::PUT,
            "/api/v1/admin/users/{id}/role",
            P::RolesAssign,
            Some(json!({ "role": "root" })),
            (StatusCode::BAD_REQUEST, "invalid_role"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/users/{id}/suspend",
            P::UsersSuspend,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::POST,
            "/api/v1/admin/users/{id}/reactivate",
            P::UsersSuspend,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::POST,
            "/api/v1/admin/users/{id}/deprovision",
            P::UsersSuspend,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::POST,
            "/api/v1/admin/users/{id}/re-enrol",
            P::UsersManage,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::GET,
            "/api/v1/admin/credentials",
            P::CredentialsRead,
            None,
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/credentials/bulk",
            P::CredentialsBulk,
            Some(json!({ "action": "explode" })),
            (StatusCode::BAD_REQUEST, "invalid_action"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/credentials/{id}/suspend",
            P::CredentialsManage,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::POST,
            "/api/v1/admin/credentials/{id}/reactivate",
            P::CredentialsManage,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::POST,
            "/api/v1/admin/credentials/{id}/revoke",
            P::CredentialsManage,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::POST,
            "/api/v1/admin/credentials/{id}/lost",
            P::CredentialsManage,
            empty_reason(),
            BAD_REASON,
        ),
        probe(
            M::GET,
            "/api/v1/admin/bulk-jobs/{id}",
            P::CredentialsRead,
            None,
            (StatusCode::NOT_FOUND, "bulk_job_not_found"),
        ),
        probe(M::GET, "/api/v1/admin/fraud-alerts", P::FraudRead, None, OK),
        probe(
            M::POST,
            "/api/v1/admin/fraud-alerts/{id}/resolve",
            P::FraudResolve,
            Some(json!({ "resolution": "revoke", "note": "" })),
            BAD_REASON,
        ),
        probe(
            M::GET,
            "/api/v1/admin/exceptions",
            P::ExceptionsRead,
            None,
            OK,
        ),
        probe(
            M::POST,
            "/api/v1/admin/exceptions",
            P::ExceptionsRequest,
            Some(json!({
                "subject": { "type": "user", "id": UNKNOWN },
                "rule": "authenticators.synced",
                "reason": "",
                "duration_days": 1,
            })),
            BAD_REASON,
        ),
        probe(
            M::POST,
            "/api/v1/admin/exceptions/{id}/revoke",
            P::ExceptionsRequest,
            empty_reason(),
            BAD_REASON,
        ),
    ];
    all.extend([
        probe(M::GET, "/api/v1/admin/clients", P::ClientsRead, None, OK),
        probe(
            M::GET,
            "/api/v1/admin/clients/{id}",
            P::ClientsRead,
            None,
            (StatusCode::NOT_FOUND, "client_not_found"),
        ),
        // The owner is checked after clients.manage: nobody owns a client for an unknown user.
        probe(
            M::POST,
            "/api/v1/admin/clients",
            P::ClientsManage,
            Some(json!({ "name": "probe", "owner": UNKNOWN, "scopes": ["users.read"] })),
            (StatusCode::BAD_REQUEST, "invalid_owner"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/clients/{id}/rotate",
            P::ClientsManage,
            Some(json!({})),
            (StatusCode::NOT_FOUND, "client_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/clients/{id}/revoke",
            P::ClientsManage,
            empty_reason(),
            BAD_REASON,
        ),
    ]);
    all.extend([
        probe(
            M::GET,
            "/api/v1/admin/campaigns",
            P::CampaignsRead,
            None,
            OK,
        ),
        // The AAGUID is checked after campaigns.manage.
        probe(
            M::POST,
            "/api/v1/admin/campaigns",
            P::CampaignsManage,
            Some(json!({ "aaguid": "probe", "reason": "" })),
            (StatusCode::BAD_REQUEST, "invalid_aaguid"),
        ),
        probe(
            M::GET,
            "/api/v1/admin/campaigns/{id}",
            P::CampaignsRead,
            None,
            (StatusCode::NOT_FOUND, "campaign_not_found"),
        ),
        probe(
            M::POST,
            "/api/v1/admin/campaigns/{id}/close",
            P::CampaignsManage,
            empty_reason(),
            BAD_REASON,
        ),
    ]);
    for report in [
        "/api/v1/admin/reports/coverage",
        "/api/v1/admin/reports/drift",
        "/api/v1/admin/reports/exceptions",
        "/api/v1/admin/reports/fraud",
        "/api/v1/admin/reports/clients",
        "/api/v1/admin/reports/controls",
        "/api/v1/admin/reports/campaigns",
    ] {
        all.push(probe(M::GET, report, P::ReportsRead, None, OK));
    }
    all
}

/// The one request that stands for a permission in the matrix test: its handler asks for that
/// permission before anything else. Exhaustive, so that a new permission needs a decision here.
fn representative(p: Permission) -> Option<(Method, &'static str)> {
    use Permission as P;
    Some(match p {
        P::UsersRead => (Method::GET, "/api/v1/admin/users"),
        P::UsersManage => (Method::POST, "/api/v1/admin/users/{id}/re-enrol"),
        P::UsersSuspend => (Method::POST, "/api/v1/admin/users/{id}/suspend"),
        P::RolesAssign => (Method::PUT, "/api/v1/admin/users/{id}/role"),
        P::CredentialsRead => (Method::GET, "/api/v1/admin/credentials"),
        P::CredentialsManage => (Method::POST, "/api/v1/admin/credentials/{id}/suspend"),
        P::CredentialsBulk => (Method::POST, "/api/v1/admin/credentials/bulk"),
        P::PolicyRead => (Method::GET, "/api/v1/admin/policy"),
        P::PolicyApply => (Method::POST, "/api/v1/admin/policy/apply"),
        P::ExceptionsRead => (Method::GET, "/api/v1/admin/exceptions"),
        P::ExceptionsRequest => (Method::POST, "/api/v1/admin/exceptions"),
        P::ApprovalsDecide => (Method::POST, "/api/v1/admin/approvals/{id}/deny"),
        P::ApprovalsRead => (Method::GET, "/api/v1/admin/approvals"),
        P::FraudRead => (Method::GET, "/api/v1/admin/fraud-alerts"),
        P::FraudResolve => (Method::POST, "/api/v1/admin/fraud-alerts/{id}/resolve"),
        P::AuditRead => (Method::GET, "/api/v1/audit/events"),
        P::ReportsRead => (Method::GET, "/api/v1/admin/reports/coverage"),
        P::ClientsRead => (Method::GET, "/api/v1/admin/clients"),
        P::ClientsManage => (Method::POST, "/api/v1/admin/clients/{id}/revoke"),
        P::CampaignsRead => (Method::GET, "/api/v1/admin/campaigns"),
        P::CampaignsManage => (Method::POST, "/api/v1/admin/campaigns/{id}/close"),
    })
}

fn representative_probe(p: Permission) -> Option<Probe> {
    let (method, path) = representative(p)?;
    let found = endpoints()
        .into_iter()
        .find(|e| e.method == method && e.path == path)
        .unwrap_or_else(|| panic!("no probe for {method} {path}"));
    assert_eq!(
        found.permission,
        p,
        "{} stands for {} but asks for {}",
        found.name(),
        p.as_str(),
        found.permission.as_str()
    );
    Some(found)
}

/// A signed-in member of the default tenant with `role`.
struct Member {
    role: Option<Role>,
    auth: SoftAuthenticator,
    token: String,
}

impl Member {
    fn label(&self) -> &'static str {
        self.role.map(Role::as_str).unwrap_or("(no role)")
    }
}

async fn member(server: &TestServer, username: &str, role: Option<Role>) -> Member {
    let tenant = server.default_tenant().await;
    let invitation = server
        .app
        .invite(
            &tenant,
            username,
            None,
            role.map(Role::as_str),
            &Caller::operator("test"),
        )
        .await
        .unwrap();
    let mut auth = SoftAuthenticator::new(&server.origin(), true, true);
    server.enrol(&mut auth, invitation.token.expose()).await;
    let token = server.sign_in(&mut auth, Some(username)).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    Member { role, auth, token }
}

/// One member per role, and one without a role.
async fn members(server: &TestServer) -> Vec<Member> {
    let mut all = Vec::new();
    for role in Role::ALL {
        all.push(member(server, &format!("{}-member", role.as_str()), Some(role)).await);
    }
    all.push(member(server, "no-role-member", None).await);
    all
}

async fn send(server: &TestServer, p: &Probe, token: &str) -> (StatusCode, String, Value) {
    let r = server
        .request(
            p.method.clone(),
            &p.url(),
            None,
            Some(token),
            p.body.as_ref(),
        )
        .await;
    (r.status, r.code().to_string(), r.body)
}

/// The matrix says `role` may use `p`: the answer is the probe's harmless outcome. Otherwise:
/// 403 `forbidden_role`.
async fn assert_matrix(server: &TestServer, m: &Member, p: &Probe) {
    let (status, code, body) = send(server, p, &m.token).await;
    let permitted = m.role.is_some_and(|r| allows(r, p.permission));
    let expected = if permitted {
        (p.allowed.0, p.allowed.1.to_string())
    } else {
        (StatusCode::FORBIDDEN, "forbidden_role".to_string())
    };
    assert_eq!(
        (status, code),
        expected,
        "{} as {} ({}): {body}",
        p.name(),
        m.label(),
        p.permission.as_str()
    );
    if permitted {
        assert_ne!(status, StatusCode::UNAUTHORIZED);
    }
}

async fn each_role_can_do_exactly_its_rows_of_the_matrix(backend: Backend) {
    let server = TestServer::start(backend).await;
    let members = members(&server).await;
    let mut covered = BTreeSet::new();
    for p in Permission::ALL {
        let Some(probe) = representative_probe(p) else {
            continue;
        };
        covered.insert(p);
        for m in &members {
            assert_matrix(&server, m, &probe).await;
        }
    }
    let missing: Vec<&str> = Permission::ALL
        .into_iter()
        .filter(|p| !covered.contains(p))
        .map(Permission::as_str)
        .collect();
    assert!(
        missing.is_empty(),
        "permissions without an endpoint: {missing:?}"
    );
    server.shutdown().await;
}

/// "Permission users.read (roles owner, admin, helpdesk, auditor)" in an operation's description.
fn documented_permission(description: &str) -> Option<(String, Vec<String>)> {
    let rest = &description[description.find("Permission ")? + "Permission ".len()..];
    let (name, rest) = rest.split_once(" (roles ")?;
    let (roles, _) = rest.split_once(')')?;
    Some((
        name.to_string(),
        roles.split(", ").map(str::to_string).collect(),
    ))
}

async fn every_admin_endpoint_is_guarded_as_documented_and_as_the_matrix_says(backend: Backend) {
    let server = TestServer::start(backend).await;
    let members = members(&server).await;
    let probes = endpoints();

    // The probes are exactly the documented operations that need a permission, and each asks for
    // the permission (and roles) its documentation names.
    let doc = server
        .request(Method::GET, "/api/v1/openapi.json", None, None, None)
        .await
        .body;
    let mut documented = BTreeMap::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !(path.starts_with("/api/v1/admin/") || path.starts_with("/api/v1/audit/")) {
            continue;
        }
        for (method, op) in ops.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let description = op["description"].as_str().unwrap_or_default();
            documented.insert(
                format!("{} {path}", method.to_uppercase()),
                documented_permission(description)
                    .unwrap_or_else(|| panic!("{method} {path} names no permission")),
            );
            assert!(
                op["tags"] == json!(["admin"]) || path.starts_with("/api/v1/audit/"),
                "{method} {path} is tagged admin"
            );
        }
    }
    let probed: BTreeMap<String, (String, Vec<String>)> = probes
        .iter()
        .map(|p| {
            let roles = Role::ALL
                .into_iter()
                .filter(|r| allows(*r, p.permission))
                .map(|r| r.as_str().to_string())
                .collect();
            (p.name(), (p.permission.as_str().to_string(), roles))
        })
        .collect();
    assert_eq!(documented, probed);
    for p in &probes {
        let step_up = p.permission.step_up_action();
        let path = &doc["paths"][p.path][p.method.as_str().to_lowercase()];
        assert!(
            path["description"].as_str().unwrap().contains(&step_up),
            "{} names its step-up action {step_up}",
            p.name()
        );
    }

    // Every role, and no role, on every endpoint.
    for p in &probes {
        for m in &members {
            assert_matrix(&server, m, p).await;
        }
    }
    server.shutdown().await;
}

async fn the_role_comes_first_then_a_recent_step_up(backend: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let server = TestServer::builder(backend)
        .clock(clock.clone())
        .start()
        .await;
    let mut members = members(&server).await;
    // Sixteen minutes after sign-in the built-in rule (admin.*: aal2 within 15 minutes) bites:
    // an allowed request needs a step-up; a forbidden one is still refused for the role.
    clock.advance_secs(16 * 60);
    for p in Permission::ALL {
        let Some(probe) = representative_probe(p) else {
            continue;
        };
        for m in &members {
            let (status, code, body) = send(&server, &probe, &m.token).await;
            let expected = if m.role.is_some_and(|r| allows(r, p)) {
                "step_up_required"
            } else {
                "forbidden_role"
            };
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::FORBIDDEN, expected),
                "{} as {}: {body}",
                probe.name(),
                m.label()
            );
            if expected == "step_up_required" {
                assert_eq!(body["error"]["level"], "aal2", "{body}");
            }
        }
    }
    // A step-up restores what the role allows, and nothing more.
    let helpdesk = members
        .iter_mut()
        .find(|m| m.role == Some(Role::Helpdesk))
        .unwrap();
    let options = server
        .request(
            Method::POST,
            "/api/v1/step-up/options",
            None,
            Some(&helpdesk.token),
            Some(&json!({ "action": "admin.users.read" })),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let asserted = helpdesk
        .auth
        .authenticate(&options.body["publicKey"])
        .await
        .unwrap();
    let verified = server
        .request(
            Method::POST,
            "/api/v1/step-up/verify",
            None,
            Some(&helpdesk.token),
            Some(&json!({ "ceremony": options.body["ceremony"], "credential": asserted })),
        )
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{:?}", verified.body);
    for p in Permission::ALL {
        let Some(probe) = representative_probe(p) else {
            continue;
        };
        assert_matrix(&server, helpdesk, &probe).await;
    }
    server.shutdown().await;
}

/// Giving a role at invitation needs roles.assign on top of users.manage: the help desk invites
/// people, but not administrators.
async fn inviting_with_a_role_needs_roles_assign(backend: Backend) {
    let server = TestServer::start(backend).await;
    let members = members(&server).await;
    for m in &members {
        let r = server
            .request(
                Method::POST,
                "/api/v1/admin/users",
                None,
                Some(&m.token),
                Some(&json!({ "username": format!("made-by-{}", m.label().replace(['(', ')', ' '], "")), "role": "admin" })),
            )
            .await;
        let expected = match m.role {
            Some(Role::Owner) => (StatusCode::CREATED, ""),
            _ => (StatusCode::FORBIDDEN, "forbidden_role"),
        };
        assert_eq!(
            (r.status, r.code()),
            expected,
            "as {}: {:?}",
            m.label(),
            r.body
        );
        if r.status == StatusCode::CREATED {
            assert_eq!(r.body["user"]["role"], "admin");
        }
    }
    let users = server
        .request(
            Method::GET,
            "/api/v1/admin/users?q=made-by",
            None,
            Some(&members[0].token),
            None,
        )
        .await;
    assert_eq!(
        users.body["total"], 1,
        "only the owner's invitation exists: {:?}",
        users.body
    );
    server.shutdown().await;
}

/// The matrix table of docs/admin.md: permission (in backticks) → (roles marked ✓, step-up action).
fn docs_matrix() -> BTreeMap<String, (BTreeSet<String>, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/admin.md");
    let text = std::fs::read_to_string(path).expect("docs/admin.md");
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("| permission |"));
    let cells = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let header = cells(
        lines
            .next()
            .expect("docs/admin.md has a `| permission |` table"),
    );
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("the matrix has a {name} column"))
    };
    let roles: Vec<(usize, &str)> = Role::ALL
        .iter()
        .map(|r| (column(r.as_str()), r.as_str()))
        .collect();
    let step_up = column("step-up action");
    let mut matrix = BTreeMap::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let row = cells(line);
        let permission = row[0].trim_matches('`').to_string();
        let mut may = BTreeSet::new();
        for (i, role) in &roles {
            match row[*i].as_str() {
                "✓" => {
                    may.insert(role.to_string());
                }
                "–" => {}
                other => panic!("{permission} / {role}: {other:?} is neither ✓ nor –"),
            }
        }
        let action = row[step_up].trim_matches('`').to_string();
        assert!(
            matrix.insert(permission.clone(), (may, action)).is_none(),
            "{permission} twice"
        );
    }
    matrix
}

#[test]
fn the_documented_matrix_is_the_one_enforced() {
    let documented = docs_matrix();
    let enforced: BTreeMap<String, (BTreeSet<String>, String)> = Permission::ALL
        .into_iter()
        .map(|p| {
            let roles = Role::ALL
                .into_iter()
                .filter(|r| allows(*r, p))
                .map(|r| r.as_str().to_string())
                .collect();
            (p.as_str().to_string(), (roles, p.step_up_action()))
        })
        .collect();
    assert_eq!(documented, enforced);
}

both_backends!(
    each_role_can_do_exactly_its_rows_of_the_matrix,
    every_admin_endpoint_is_guarded_as_documented_and_as_the_matrix_says,
    the_role_comes_first_then_a_recent_step_up,
    inviting_with_a_role_needs_roles_assign,
);
