//! SCIM 2.0 provisioning over HTTP on both backends: users and groups created, read, filtered,
//! paged, replaced and patched; deactivation and deletion deprovision (sessions end, passkeys
//! revoked per policy) and are audited with the SCIM client as the actor; groups are
//! populations. And what is refused: tokens of the wrong kind, bad JSON, bad filters, unknown
//! paths, duplicates, stale ETags, other tenants' ids — each in RFC 7644's error shape,
//! changing nothing.

mod common;

use common::{both_backends, call, row_counts};
use keyplane_store::Store;
use keyplane_testkit::{Backend, Reply, TestServer};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// One SCIM request with optional extra headers and a host override.
async fn scim(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&'static str, &str)],
) -> Reply {
    let mut req = server.http.request(method, server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    req = req.headers(h);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

/// Asserts an RFC 7644 §3.12 error: status, `scimType`, content type.
fn assert_scim_error(r: &Reply, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR]), "{:?}", r.body);
    assert_eq!(r.body["status"], json!(status.as_u16().to_string()));
    assert_eq!(r.body["scimType"].as_str(), scim_type, "{:?}", r.body);
    assert_eq!(
        r.headers["content-type"], "application/scim+json",
        "{:?}",
        r.body
    );
}

/// An owner signed in, and a machine client of `kind` with `scopes` they create through the
/// admin API: (owner's bearer token, client secret).
async fn client(server: &TestServer, kind: &str, scopes: &[&str]) -> (String, String) {
    let owner = common::member(server, "owner-of-scim", Some("owner")).await;
    let secret = client_as(server, &owner, kind, scopes).await;
    (owner, secret)
}

async fn client_as(server: &TestServer, admin: &str, kind: &str, scopes: &[&str]) -> String {
    let (_, me) = call(server, Method::GET, "/api/v1/me", admin, None).await;
    let (status, body) = call(
        server,
        Method::POST,
        "/api/v1/admin/clients",
        admin,
        Some(json!({ "kind": kind, "name": format!("{kind} client"), "owner": me["user"]["id"], "scopes": scopes })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["client"]["kind"], kind);
    body["secret"].as_str().unwrap().to_string()
}

async fn scim_token(server: &TestServer) -> String {
    client(server, "scim_token", &["users.manage"]).await.1
}

async fn create_user(server: &TestServer, token: &str, body: Value) -> Value {
    let r = scim(
        server,
        Method::POST,
        "/scim/v2/Users",
        Some(token),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

fn ada() -> Value {
    json!({
        "schemas": [USER],
        "userName": "Ada@Example.com",
        "externalId": "okta-00u1",
        "name": { "givenName": "Ada", "familyName": "Lovelace" },
        "emails": [{ "value": "ada@example.com", "type": "work", "primary": true }],
        "active": true
    })
}

/// How many audit events the default tenant has: equal before and after means nothing recorded.
async fn audit_len(server: &TestServer) -> i64 {
    let tenant = server.default_tenant().await;
    server.store.audit_head(&tenant.id).await.unwrap().0
}

async fn users_are_provisioned_read_filtered_paged_and_replaced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = scim_token(&server).await;

    let created = create_user(&server, &token, ada()).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["userName"], "ada@example.com",
        "usernames are kept in lower case"
    );
    assert!(
        created.get("displayName").is_none(),
        "none was provisioned: {created}"
    );
    assert_eq!(created["externalId"], "okta-00u1");
    assert_eq!(created["active"], true);
    assert_eq!(created["meta"]["resourceType"], "User");
    assert!(created["meta"]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/scim/v2/Users/{id}")));
    let tenant = server.default_tenant().await;
    let user = server
        .app
        .user_by_id(&tenant, &keyplane_core::UserId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(user.contact_email.as_deref(), Some("ada@example.com"));
    assert_eq!(
        user.display_name, "Ada Lovelace",
        "derived from the name for Keyplane's pages"
    );
    let created_events = server.events("user.created").await;
    let ev = created_events.last().unwrap();
    assert!(ev.actor_id.starts_with("client:"), "{}", ev.actor_id);
    assert_eq!(
        serde_json::from_str::<Value>(&ev.details).unwrap()["source"],
        "scim"
    );

    for (name, given) in [("grace", "Grace"), ("alan", "Alan")] {
        create_user(
            &server,
            &token,
            json!({ "schemas": [USER], "userName": name, "name": { "givenName": given } }),
        )
        .await;
    }

    let r = scim(
        &server,
        Method::GET,
        &format!("/scim/v2/Users/{id}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/scim+json");
    assert_eq!(
        r.headers["etag"].to_str().unwrap(),
        r.body["meta"]["version"].as_str().unwrap()
    );

    let list = |q: &'static str| {
        let server = &server;
        let token = token.clone();
        async move {
            let r = scim(
                server,
                Method::GET,
                &format!("/scim/v2/Users?{q}"),
                Some(&token),
                None,
                &[],
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.body);
            r.body
        }
    };
    let names = |body: &Value| -> Vec<String> {
        body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_string())
            .collect()
    };
    let all = list("").await;
    assert_eq!(
        all["totalResults"], 5,
        "three provisioned, the owner and the bootstrap admin: {all}"
    );
    let b = list("filter=userName%20eq%20%22ADA%40example.com%22").await;
    assert_eq!(names(&b), vec!["ada@example.com"]);
    let b = list("filter=userName%20sw%20%22a%22").await;
    assert_eq!(names(&b), vec!["ada@example.com", "admin", "alan"]);
    let b = list("filter=name.givenName%20co%20%22ra%22%20or%20externalId%20eq%20%22okta-00u1%22")
        .await;
    assert_eq!(names(&b), vec!["ada@example.com", "grace"]);
    let b = list("filter=userName%20sw%20%22a%22%20and%20emails%5Btype%20eq%20%22work%22%5D").await;
    assert_eq!(names(&b), vec!["ada@example.com"]);
    let b = list("startIndex=2&count=2").await;
    assert_eq!(
        (
            b["totalResults"].as_u64(),
            b["startIndex"].as_u64(),
            b["itemsPerPage"].as_u64()
        ),
        (Some(5), Some(2), Some(2))
    );
    assert_eq!(names(&b), vec!["admin", "alan"], "in username order");
    let b = list("startIndex=9").await;
    assert_eq!(b["Resources"], json!([]));
    let b = list("filter=userName%20eq%20%22alan%22&attributes=userName").await;
    let only = &b["Resources"][0];
    assert!(
        only.get("id").is_some() && only.get("userName").is_some() && only.get("name").is_none(),
        "{only}"
    );
    let r = scim(
        &server,
        Method::POST,
        "/scim/v2/Users/.search",
        Some(&token),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "userName sw \"a\"", "startIndex": 2, "count": 1, "attributes": ["userName"]
        })),
        &[],
    )
    .await;
    assert_eq!(
        (r.body["totalResults"].as_u64(), names(&r.body)),
        (Some(3), vec!["admin".to_string()]),
        "{:?}",
        r.body
    );
    let b = list("filter=userName%20eq%20%22alan%22&excludedAttributes=name,meta").await;
    assert!(b["Resources"][0].get("name").is_none() && b["Resources"][0].get("userName").is_some());

    // A replace changes what SCIM owns; the contact follows the primary email.
    let mut replaced = ada();
    replaced["displayName"] = json!("Countess Lovelace");
    replaced["emails"] = json!([{ "value": "ada@lovelace.example", "primary": true }]);
    let r = scim(
        &server,
        Method::PUT,
        &format!("/scim/v2/Users/{id}"),
        Some(&token),
        Some(replaced),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["displayName"], "Countess Lovelace");
    assert_ne!(r.body["meta"]["version"], created["meta"]["version"]);
    let user = server
        .app
        .user_by_id(&tenant, &keyplane_core::UserId::parse(&id).unwrap())
        .await
        .unwrap();
    assert_eq!(user.contact_email.as_deref(), Some("ada@lovelace.example"));
    assert_eq!(server.events("scim.user_updated").await.len(), 1);
    assert_eq!(server.events("user.contact_changed").await.len(), 1);

    let r = scim(
        &server,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        Some(&token),
        Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "replace", "path": "name.givenName", "value": "Augusta Ada" },
            { "op": "Add", "value": { "externalId": "okta-00u2" } }
        ]})),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Augusta Ada");
    assert_eq!(r.body["externalId"], "okta-00u2");
    assert_eq!(r.body["displayName"], "Countess Lovelace", "kept");

    // A replace that changes nothing records nothing.
    let before = audit_len(&server).await;
    let same = r.body.clone();
    let r = scim(
        &server,
        Method::PUT,
        &format!("/scim/v2/Users/{id}"),
        Some(&token),
        Some(same),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(audit_len(&server).await, before);
    server.shutdown().await;
}

async fn deactivating_and_deleting_deprovision_and_are_audited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = scim_token(&server).await;
    let (_phone, session) = server.user_with_passkey("dana").await;
    let tenant = server.default_tenant().await;
    let dana = server
        .store
        .user_by_username(&tenant.id, "dana")
        .await
        .unwrap()
        .unwrap();
    let path = format!("/scim/v2/Users/{}", dana.id);

    let r = scim(
        &server,
        Method::PATCH,
        &path,
        Some(&token),
        Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "replace", "value": { "active": "False" } }
        ]})),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["active"], false);
    let (s, _) = call(&server, Method::GET, "/api/v1/me", &session, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the session ended");
    let creds = server.store_credentials(&tenant).await;
    assert!(creds
        .iter()
        .filter(|c| c.user_id == dana.id)
        .all(|c| c.status == keyplane_core::CredentialStatus::Revoked));
    let ev = server.events("user.deprovisioned").await;
    assert_eq!(ev.len(), 1);
    assert!(ev[0].actor_id.starts_with("client:"));
    assert_eq!(
        serde_json::from_str::<Value>(&ev[0].details).unwrap()["credentials_revoked"],
        true
    );

    let r = scim(
        &server,
        Method::PATCH,
        &path,
        Some(&token),
        Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "replace", "path": "active", "value": true }
        ]})),
        &[],
    )
    .await;
    assert_eq!(r.body["active"], true, "{:?}", r.body);
    assert_eq!(server.events("user.reactivated").await.len(), 1);

    // An administrator's suspension is not lifted by the identity provider.
    server
        .app
        .suspend_user(
            &tenant,
            &dana.id,
            "fraud review",
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .unwrap();
    let r = scim(
        &server,
        Method::PATCH,
        &path,
        Some(&token),
        Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "replace", "path": "displayName", "value": "Dana D" }
        ]})),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.body["active"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_eq!(server.events("user.reactivated").await.len(), 1);

    let r = scim(&server, Method::DELETE, &path, Some(&token), None, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let after = server
        .store
        .user_by_id(&tenant.id, &dana.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.status,
        keyplane_core::UserStatus::Deprovisioned,
        "kept for the audit trail"
    );
    let r = scim(&server, Method::GET, &path, Some(&token), None, &[]).await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    let r = scim(&server, Method::DELETE, &path, Some(&token), None, &[]).await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    let ev = server.events("scim.user_deleted").await;
    assert_eq!(ev.len(), 1);
    assert!(ev[0].actor_id.starts_with("client:"));
    assert_eq!(server.events("user.deprovisioned").await.len(), 2);
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/Users?filter=userName%20eq%20%22dana%22",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["totalResults"], 0);
    server.shutdown().await;
}

async fn groups_are_populations(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = scim_token(&server).await;
    let tenant = server.default_tenant().await;
    let a = create_user(
        &server,
        &token,
        json!({ "schemas": [USER], "userName": "ann" }),
    )
    .await;
    let b = create_user(
        &server,
        &token,
        json!({ "schemas": [USER], "userName": "bob" }),
    )
    .await;
    let (aid, bid) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let pops = |id: &str| {
        let server = &server;
        let tenant = tenant.clone();
        let id = keyplane_core::UserId::parse(id).unwrap();
        async move {
            server
                .store
                .user_populations(&tenant.id, &id)
                .await
                .unwrap()
        }
    };

    let r = scim(&server, Method::POST, "/scim/v2/Groups", Some(&token), Some(json!({
        "schemas": [GROUP], "displayName": "Engineering", "externalId": "g1", "members": [{ "value": aid }]
    })), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["members"][0]["value"], aid);
    assert_eq!(pops(aid).await, vec!["Engineering"]);
    let r = scim(
        &server,
        Method::GET,
        &format!("/scim/v2/Users/{aid}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["groups"][0]["value"], gid.as_str());

    let gpath = format!("/scim/v2/Groups/{gid}");
    let r = scim(
        &server,
        Method::PATCH,
        &gpath,
        Some(&token),
        Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "add", "path": "members", "value": [{ "value": bid }] },
            { "op": "remove", "path": format!("members[value eq \"{aid}\"]") }
        ]})),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(pops(aid).await, Vec::<String>::new());
    assert_eq!(pops(bid).await, vec!["Engineering"]);

    // Renaming the group renames the population; an administrator may assign it too.
    let r = scim(
        &server,
        Method::PUT,
        &gpath,
        Some(&token),
        Some(json!({
            "schemas": [GROUP], "displayName": "R&D", "members": [{ "value": bid }]
        })),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(pops(bid).await, vec!["R&D"]);
    let ann = server
        .app
        .user_by_id(&tenant, &keyplane_core::UserId::parse(aid).unwrap())
        .await
        .unwrap();
    server
        .app
        .set_populations(
            &tenant,
            &ann,
            &["R&D".to_string()],
            &keyplane_core::audit::Caller::operator("test"),
        )
        .await
        .unwrap();
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/Groups?filter=displayName%20eq%20%22r%26d%22",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["totalResults"], 1, "{:?}", r.body);
    assert_eq!(
        r.body["Resources"][0]["members"].as_array().unwrap().len(),
        2
    );

    let changes = server.events("user.populations_changed").await;
    assert!(changes.len() >= 4, "{changes:?}");
    assert_eq!(server.events("scim.group_created").await.len(), 1);
    assert_eq!(server.events("scim.group_updated").await.len(), 2);

    let r = scim(&server, Method::DELETE, &gpath, Some(&token), None, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(pops(aid).await, Vec::<String>::new());
    assert_eq!(pops(bid).await, Vec::<String>::new());
    assert_eq!(server.events("scim.group_deleted").await.len(), 1);
    let r = scim(&server, Method::GET, &gpath, Some(&token), None, &[]).await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    server.shutdown().await;
}

async fn tokens_of_the_wrong_kind_or_none_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (owner, api_token) = client(&server, "api_token", &["users.read"]).await;
    let scim_secret = client_as(&server, &owner, "scim_token", &["users.manage"]).await;

    for token in [
        None,
        Some("kpm_unknown"),
        Some("not-a-machine-token"),
        Some(owner.as_str()),
    ] {
        let r = scim(&server, Method::GET, "/scim/v2/Users", token, None, &[]).await;
        assert_scim_error(&r, StatusCode::UNAUTHORIZED, None);
        assert!(r.headers.contains_key("www-authenticate"));
    }
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/ServiceProviderConfig",
        None,
        None,
        &[],
    )
    .await;
    assert_scim_error(&r, StatusCode::UNAUTHORIZED, None);
    // An admin API token is refused by SCIM, a SCIM token by the admin API.
    let r = scim(
        &server,
        Method::POST,
        "/scim/v2/Users",
        Some(&api_token),
        Some(ada()),
        &[],
    )
    .await;
    assert_scim_error(&r, StatusCode::FORBIDDEN, None);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("client_kind_not_accepted"));
    let (s, body) = call(
        &server,
        Method::GET,
        "/api/v1/admin/users",
        &scim_secret,
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("client_kind_not_accepted"))
    );
    let (s, _) = call(&server, Method::GET, "/api/v1/me", &scim_secret, None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "no machine token on self-service"
    );
    assert_eq!(server.events("client.refused").await.len(), 2);

    // A SCIM token must hold users.manage, within its owner's role.
    let (_, me) = call(&server, Method::GET, "/api/v1/me", &owner, None).await;
    let (s, body) = call(&server, Method::POST, "/api/v1/admin/clients", &owner, Some(json!({
        "kind": "scim_token", "name": "weak", "owner": me["user"]["id"], "scopes": ["users.read"]
    }))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (s, body) = call(
        &server,
        Method::POST,
        "/api/v1/admin/clients",
        &owner,
        Some(json!({
            "kind": "ldap_token", "name": "x", "owner": me["user"]["id"], "scopes": ["users.manage"]
        })),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_kind"))
    );
    let auditor = common::member(&server, "audrey", Some("auditor")).await;
    let (_, aud) = call(&server, Method::GET, "/api/v1/me", &auditor, None).await;
    let (s, body) = call(&server, Method::POST, "/api/v1/admin/clients", &owner, Some(json!({
        "kind": "scim_token", "name": "x", "owner": aud["user"]["id"], "scopes": ["users.manage"]
    }))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scope_exceeds_owner"))
    );

    // Nothing was provisioned by any of it.
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/Users?filter=userName%20eq%20%22ada%40example.com%22",
        Some(&scim_secret),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["totalResults"], 0);
    server.shutdown().await;
}

async fn bad_input_is_refused_in_scim_shape_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = scim_token(&server).await;
    let ada_id = create_user(&server, &token, ada()).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    create_user(
        &server,
        &token,
        json!({ "schemas": [USER], "userName": "grace" }),
    )
    .await;
    let g = scim(
        &server,
        Method::POST,
        "/scim/v2/Groups",
        Some(&token),
        Some(json!({ "schemas": [GROUP], "displayName": "ops" })),
        &[],
    )
    .await;
    let gid = g.body["id"].as_str().unwrap().to_string();
    let counts = row_counts(&server).await;
    let events = audit_len(&server).await;
    let upath = format!("/scim/v2/Users/{ada_id}");
    let gpath = format!("/scim/v2/Groups/{gid}");
    let before = scim(&server, Method::GET, &upath, Some(&token), None, &[])
        .await
        .body;

    let raw = |method: Method, path: &str, body: &'static str| {
        let server = &server;
        let token = token.clone();
        let path = path.to_string();
        async move {
            let resp = server
                .http
                .request(method, server.url(&path))
                .bearer_auth(&token)
                .header("content-type", "application/scim+json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
            Reply {
                status,
                body,
                headers,
            }
        }
    };
    let cases: Vec<(Reply, StatusCode, Option<&str>)> = vec![
        (raw(Method::POST, "/scim/v2/Users", "{not json").await, StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::PUT, &upath, "[1, 2]").await, StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (raw(Method::PATCH, &upath, "").await, StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (scim(&server, Method::POST, "/scim/v2/Users", Some(&token), Some(json!({ "schemas": [GROUP], "userName": "x" })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (scim(&server, Method::POST, "/scim/v2/Users", Some(&token), Some(json!({ "schemas": [USER], "displayName": "no name" })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::POST, "/scim/v2/Users", Some(&token), Some(json!({ "schemas": [USER], "userName": "has space" })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::POST, "/scim/v2/Users", Some(&token), Some(json!({ "schemas": [USER], "userName": "x", "emails": [{ "value": "not-an-address" }] })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::POST, "/scim/v2/Users", Some(&token), Some(json!({ "schemas": [USER], "userName": "x", "active": 3 })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::POST, "/scim/v2/Users", Some(&token), Some(json!({ "schemas": [USER], "userName": "ADA@example.com" })), &[]).await, StatusCode::CONFLICT, Some("uniqueness")),
        (scim(&server, Method::PUT, &upath, Some(&token), Some(json!({ "schemas": [USER], "userName": "grace" })), &[]).await, StatusCode::CONFLICT, Some("uniqueness")),
        (scim(&server, Method::POST, "/scim/v2/Groups", Some(&token), Some(json!({ "schemas": [GROUP], "displayName": "ops" })), &[]).await, StatusCode::CONFLICT, Some("uniqueness")),
        (scim(&server, Method::POST, "/scim/v2/Groups", Some(&token), Some(json!({ "schemas": [GROUP], "displayName": "new", "members": [{ "value": "0b5c2d6e-0000-4000-8000-000000000000" }] })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::GET, "/scim/v2/Users?filter=userName%20eq", Some(&token), None, &[]).await, StatusCode::BAD_REQUEST, Some("invalidFilter")),
        (scim(&server, Method::GET, "/scim/v2/Users?filter=userName%20eq%20%22a%22%20and%20(", Some(&token), None, &[]).await, StatusCode::BAD_REQUEST, Some("invalidFilter")),
        (scim(&server, Method::GET, "/scim/v2/Users?filter=nickName%20eq%20%22a%22", Some(&token), None, &[]).await, StatusCode::BAD_REQUEST, Some("invalidFilter")),
        (scim(&server, Method::GET, "/scim/v2/Groups?filter=userName%20pr", Some(&token), None, &[]).await, StatusCode::BAD_REQUEST, Some("invalidFilter")),
        (scim(&server, Method::GET, "/scim/v2/Users?count=ten", Some(&token), None, &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::PATCH, &upath, Some(&token), Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "nickName", "value": "x" }] })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidPath")),
        (scim(&server, Method::PATCH, &upath, Some(&token), Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "emails[type eq \"work\"", "value": "x" }] })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidPath")),
        (scim(&server, Method::PATCH, &upath, Some(&token), Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "id", "value": "x" }] })), &[]).await, StatusCode::BAD_REQUEST, Some("mutability")),
        (scim(&server, Method::PATCH, &upath, Some(&token), Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "remove" }] })), &[]).await, StatusCode::BAD_REQUEST, Some("noTarget")),
        (scim(&server, Method::PATCH, &upath, Some(&token), Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "remove", "path": "emails[type eq \"home\"]" }] })), &[]).await, StatusCode::BAD_REQUEST, Some("noTarget")),
        // The first operation is valid; the second fails: neither is written.
        (scim(&server, Method::PATCH, &upath, Some(&token), Some(json!({ "schemas": [PATCH], "Operations": [
            { "op": "replace", "path": "displayName", "value": "changed" },
            { "op": "remove", "path": "userName" }
        ] })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::PATCH, &upath, Some(&token), Some(json!({ "Operations": [] })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidSyntax")),
        (scim(&server, Method::PATCH, &gpath, Some(&token), Some(json!({ "schemas": [PATCH], "Operations": [{ "op": "add", "path": "members", "value": [{ "value": "nobody" }] }] })), &[]).await, StatusCode::BAD_REQUEST, Some("invalidValue")),
        (scim(&server, Method::GET, "/scim/v2/Users/not-a-uuid", Some(&token), None, &[]).await, StatusCode::NOT_FOUND, None),
        (scim(&server, Method::GET, "/scim/v2/Bogus", Some(&token), None, &[]).await, StatusCode::NOT_FOUND, None),
        (scim(&server, Method::POST, &upath, Some(&token), Some(ada()), &[]).await, StatusCode::METHOD_NOT_ALLOWED, None),
    ];
    for (i, (reply, status, scim_type)) in cases.iter().enumerate() {
        eprintln!("case {i}");
        assert_scim_error(reply, *status, *scim_type);
    }
    assert_eq!(row_counts(&server).await, counts);
    assert_eq!(audit_len(&server).await, events, "nothing recorded");
    let after = scim(&server, Method::GET, &upath, Some(&token), None, &[])
        .await
        .body;
    assert_eq!(after, before, "the user is unchanged");
    let group = scim(&server, Method::GET, &gpath, Some(&token), None, &[])
        .await
        .body;
    assert_eq!(group["members"], json!([]));
    server.shutdown().await;
}

async fn etags_guard_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = scim_token(&server).await;
    let created = create_user(&server, &token, ada()).await;
    let path = format!("/scim/v2/Users/{}", created["id"].as_str().unwrap());
    let etag = created["meta"]["version"].as_str().unwrap().to_string();
    assert!(etag.starts_with("W/\""));
    let events = audit_len(&server).await;

    let stale = "W/\"0000\"";
    let patch = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "displayName", "value": "x" }] });
    for r in [
        scim(
            &server,
            Method::PUT,
            &path,
            Some(&token),
            Some(ada()),
            &[("if-match", stale)],
        )
        .await,
        scim(
            &server,
            Method::PATCH,
            &path,
            Some(&token),
            Some(patch.clone()),
            &[("if-match", stale)],
        )
        .await,
        scim(
            &server,
            Method::DELETE,
            &path,
            Some(&token),
            None,
            &[("if-match", stale)],
        )
        .await,
    ] {
        assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);
    }
    assert_eq!(audit_len(&server).await, events, "nothing changed");

    let r = scim(
        &server,
        Method::GET,
        &path,
        Some(&token),
        None,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = scim(
        &server,
        Method::PATCH,
        &path,
        Some(&token),
        Some(patch),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let newer = r.headers["etag"].to_str().unwrap().to_string();
    assert_ne!(newer, etag);
    let r = scim(
        &server,
        Method::DELETE,
        &path,
        Some(&token),
        None,
        &[("if-match", &etag)],
    )
    .await;
    assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);
    let r = scim(
        &server,
        Method::DELETE,
        &path,
        Some(&token),
        None,
        &[("if-match", &newer)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    server.shutdown().await;
}

async fn another_tenants_resources_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = scim_token(&server).await;
    let other = server.create_tenant("other", "other.example").await;
    let op = keyplane_core::audit::Caller::operator("test");
    let invitation = server
        .app
        .invite(&other, "otto", None, Some("owner"), &op)
        .await
        .unwrap();
    let outsider = server
        .app
        .scim_create_group(
            &other,
            keyplane_server::service::ScimGroupInput {
                display_name: "theirs".into(),
                external_id: None,
                members: vec![invitation.user.id.to_string()],
            },
            &op,
        )
        .await
        .unwrap();
    let counts = row_counts(&server).await;
    let upath = format!("/scim/v2/Users/{}", invitation.user.id);
    let gpath = format!("/scim/v2/Groups/{}", outsider.group.id);
    let patch = json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "displayName", "value": "x" }] });
    for r in [
        scim(&server, Method::GET, &upath, Some(&token), None, &[]).await,
        scim(
            &server,
            Method::PUT,
            &upath,
            Some(&token),
            Some(json!({ "schemas": [USER], "userName": "otto" })),
            &[],
        )
        .await,
        scim(
            &server,
            Method::PATCH,
            &upath,
            Some(&token),
            Some(patch.clone()),
            &[],
        )
        .await,
        scim(&server, Method::DELETE, &upath, Some(&token), None, &[]).await,
        scim(&server, Method::GET, &gpath, Some(&token), None, &[]).await,
        scim(
            &server,
            Method::PATCH,
            &gpath,
            Some(&token),
            Some(patch),
            &[],
        )
        .await,
        scim(&server, Method::DELETE, &gpath, Some(&token), None, &[]).await,
    ] {
        assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    }
    // A member from another tenant is no user of this one.
    let r = scim(
        &server,
        Method::POST,
        "/scim/v2/Groups",
        Some(&token),
        Some(json!({
            "schemas": [GROUP], "displayName": "mixed", "members": [{ "value": invitation.user.id }]
        })),
        &[],
    )
    .await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/Groups",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["totalResults"], 0);
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/Users?filter=userName%20eq%20%22otto%22",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["totalResults"], 0);
    // This tenant's token means nothing at the other tenant's host.
    let r = server
        .request(
            Method::GET,
            "/scim/v2/Users",
            Some("other.example"),
            Some(&token),
            None,
        )
        .await;
    assert_scim_error(&r, StatusCode::UNAUTHORIZED, None);
    assert_eq!(row_counts(&server).await, counts);
    let otto = server
        .store
        .user_by_id(&other.id, &invitation.user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(otto.status, keyplane_core::UserStatus::Active);
    server.shutdown().await;
}

async fn discovery_documents_describe_what_is_served(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = scim_token(&server).await;
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/ServiceProviderConfig",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (
            r.body["patch"]["supported"].as_bool(),
            r.body["filter"]["supported"].as_bool(),
            r.body["etag"]["supported"].as_bool(),
            r.body["bulk"]["supported"].as_bool()
        ),
        (Some(true), Some(true), Some(true), Some(false))
    );
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/ResourceTypes",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["totalResults"], 2);
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/ResourceTypes/User",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (r.body["endpoint"].as_str(), r.body["schema"].as_str()),
        (Some("/Users"), Some(USER))
    );
    let r = scim(
        &server,
        Method::GET,
        &format!("/scim/v2/Schemas/{GROUP}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["attributes"][0]["name"], "displayName");
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/Schemas/urn:nothing",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    let r = scim(
        &server,
        Method::GET,
        "/scim/v2/ResourceTypes/Device",
        Some(&token),
        None,
        &[],
    )
    .await;
    assert_scim_error(&r, StatusCode::NOT_FOUND, None);
    server.shutdown().await;
}

both_backends!(
    users_are_provisioned_read_filtered_paged_and_replaced,
    deactivating_and_deleting_deprovision_and_are_audited,
    groups_are_populations,
    tokens_of_the_wrong_kind_or_none_are_refused,
    bad_input_is_refused_in_scim_shape_and_changes_nothing,
    etags_guard_changes,
    another_tenants_resources_are_not_found,
    discovery_documents_describe_what_is_served,
);
