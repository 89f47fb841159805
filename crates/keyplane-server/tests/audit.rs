//! The audit log end to end over HTTP, on SQLite and PostgreSQL: every change writes its event
//! (with the request's id, address and user agent) in order and in an intact hash chain; failed
//! attempts are recorded and rate-limited; no secret is ever recorded; the audit API is for
//! administrators of the tenant only; checkpoints verify with the published keys; concurrent
//! writers (one node or two) never fork or gap the chain.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::both_backends;
use keyplane_core::audit::{AuditEvent, Caller, ChainVerifier};
use keyplane_core::TenantId;
use keyplane_store::{AuditFilter, Store};
use keyplane_testkit::server::Reply;
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::collections::HashSet;
use std::sync::Mutex;

const UA: &str = "keyplane-audit-test/1.0 (+https://example.test)";

/// An HTTP client for one tenant (by `Host`) that sends a known user agent and keeps every
/// secret it sees (tokens, challenges, client data) for the no-secrets check.
struct Client<'a> {
    server: &'a TestServer,
    host: Option<&'a str>,
    secrets: Mutex<Vec<String>>,
}

impl<'a> Client<'a> {
    fn new(server: &'a TestServer) -> Self {
        Client {
            server,
            host: None,
            secrets: Mutex::new(vec![]),
        }
    }

    fn at_host(server: &'a TestServer, host: &'a str) -> Self {
        Client {
            host: Some(host),
            ..Client::new(server)
        }
    }

    fn keep(&self, secret: &str) {
        assert!(!secret.is_empty(), "an empty secret");
        self.secrets.lock().unwrap().push(secret.to_string());
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.lock().unwrap().clone()
    }

    async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("response body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut req = self
            .server
            .http
            .request(method, self.server.url(path))
            .header("user-agent", UA);
        if let Some(h) = self.host {
            req = req.header("host", h);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.request(method, path, token);
        if let Some(b) = body {
            req = req.json(b);
        }
        Self::reply(req.send().await.expect("request reaches the server")).await
    }

    async fn send_raw(&self, path: &str, text: &str) -> Reply {
        let req = self
            .request(Method::POST, path, None)
            .header("content-type", "application/json")
            .body(text.to_string());
        Self::reply(req.send().await.expect("request reaches the server")).await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, None, Some(body)).await
    }

    /// Keeps the challenge of a ceremony's options.
    fn keep_options(&self, options: &Reply) {
        assert_eq!(
            options.status,
            StatusCode::OK,
            "options: {:?}",
            options.body
        );
        let challenge = options.body["publicKey"]["challenge"]
            .as_str()
            .expect("challenge");
        self.keep(challenge);
        let raw = URL_SAFE_NO_PAD
            .decode(challenge.trim_end_matches('='))
            .expect("challenge is base64url");
        self.keep(&hex::encode(raw));
    }

    /// Keeps the client data (which embeds the challenge) of a credential.
    fn keep_credential(&self, credential: &Value) {
        self.keep(
            credential["response"]["clientDataJSON"]
                .as_str()
                .expect("clientDataJSON"),
        );
    }

    /// Registers a passkey, with an enrolment token or (None) with the session `session`.
    /// Returns the verify request's reply, asserting success.
    async fn register(
        &self,
        auth: &mut SoftAuthenticator,
        enrolment_token: Option<&str>,
        session: Option<&str>,
    ) -> Reply {
        let body = match enrolment_token {
            Some(t) => {
                self.keep(t);
                json!({ "enrolment_token": t })
            }
            None => json!({}),
        };
        let options = self
            .send(
                Method::POST,
                "/api/v1/registration/options",
                session,
                Some(&body),
            )
            .await;
        self.keep_options(&options);
        let created = auth
            .register(&options.body["publicKey"])
            .await
            .expect("authenticator registers");
        self.keep_credential(&created);
        let verify = self
            .send(
                Method::POST,
                "/api/v1/registration/verify",
                session,
                Some(&json!({ "ceremony": options.body["ceremony"], "credential": created })),
            )
            .await;
        assert_eq!(
            verify.status,
            StatusCode::CREATED,
            "registration verify: {:?}",
            verify.body
        );
        verify
    }

    /// Options and the authenticator's assertion: the body for `authentication/verify`.
    async fn assertion(&self, auth: &mut SoftAuthenticator, username: Option<&str>) -> Value {
        let body = match username {
            Some(u) => json!({ "username": u }),
            None => json!({}),
        };
        let options = self.post("/api/v1/authentication/options", &body).await;
        self.keep_options(&options);
        let asserted = auth
            .authenticate(&options.body["publicKey"])
            .await
            .expect("authenticator signs");
        self.keep_credential(&asserted);
        json!({ "ceremony": options.body["ceremony"], "credential": asserted })
    }

    async fn verify(&self, body: &Value) -> Reply {
        let reply = self.post("/api/v1/authentication/verify", body).await;
        if reply.status == StatusCode::OK {
            self.keep(reply.body["token"].as_str().expect("token"));
            self.keep(reply.body["csrf_token"].as_str().expect("csrf token"));
        }
        reply
    }

    /// Signs in, asserting success.
    async fn sign_in(&self, auth: &mut SoftAuthenticator, username: Option<&str>) -> Reply {
        let body = self.assertion(auth, username).await;
        let reply = self.verify(&body).await;
        assert_eq!(reply.status, StatusCode::OK, "sign-in: {:?}", reply.body);
        reply
    }

    async fn events(&self, token: Option<&str>, query: &str) -> Reply {
        self.send(
            Method::GET,
            &format!("/api/v1/audit/events{query}"),
            token,
            None,
        )
        .await
    }

    /// Every event through the API, following `next_after_seq`.
    async fn all_events(&self, token: &str) -> Vec<Value> {
        let mut out = vec![];
        let mut after = 0;
        loop {
            let page = self
                .events(Some(token), &format!("?limit=1000&after_seq={after}"))
                .await;
            assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
            out.extend(page.body["events"].as_array().unwrap().iter().cloned());
            match page.body["next_after_seq"].as_i64() {
                Some(n) => after = n,
                None => return out,
            }
        }
    }
}

fn request_id(r: &Reply) -> String {
    r.headers
        .get("x-request-id")
        .expect("x-request-id on every response")
        .to_str()
        .unwrap()
        .to_string()
}

fn token_of(r: &Reply) -> String {
    r.body["token"].as_str().expect("session token").to_string()
}

/// The bootstrap administrator (role owner) enrolled and signed in.
async fn admin(c: &Client<'_>) -> (SoftAuthenticator, String) {
    let mut auth = SoftAuthenticator::new(&c.server.origin(), true, true);
    let token = c.server.bootstrap_token.clone().expect("bootstrap token");
    c.register(&mut auth, Some(&token), None).await;
    let session = c.sign_in(&mut auth, Some("admin")).await;
    (auth, token_of(&session))
}

/// A user of the default tenant, invited by an operator, enrolled and signed in.
async fn user(c: &Client<'_>, username: &str) -> (SoftAuthenticator, String) {
    let mut auth = SoftAuthenticator::new(&c.server.origin(), true, true);
    let token = c.server.invite(username).await;
    c.register(&mut auth, Some(&token), None).await;
    let session = c.sign_in(&mut auth, Some(username)).await;
    (auth, token_of(&session))
}

async fn stored_events(server: &TestServer, tenant: &TenantId) -> Vec<AuditEvent> {
    server
        .store
        .list_audit_events(
            tenant,
            &AuditFilter {
                limit: 100_000,
                ..AuditFilter::default()
            },
        )
        .await
        .expect("list audit events")
}

/// The chain verifies from genesis, with sequence numbers 1..=n and no shared predecessor.
fn assert_chain(events: &[AuditEvent]) {
    let mut v = ChainVerifier::from_genesis();
    for e in events {
        v.check(e)
            .unwrap_or_else(|b| panic!("chain broken at {}: {b}", e.seq));
    }
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    let prevs: HashSet<&Vec<u8>> = events.iter().map(|e| &e.prev_hash).collect();
    assert_eq!(prevs.len(), events.len(), "two events share a predecessor");
}

async fn session_id(server: &TestServer, token: &str) -> String {
    sqlx::query("SELECT id FROM sessions WHERE token_hash = $1")
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .fetch_one(server.store.pool())
        .await
        .expect("session row")
        .try_get::<String, _>("id")
        .unwrap()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        // The janitor may purge revoked sessions if a slow run crosses its minute.
        .filter(|a| *a != "maintenance.purged")
        .collect()
}

fn find<'e>(events: &'e [Value], action: &str) -> Vec<&'e Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

/// The event was caused by the request that got `reply`, from this test's client.
fn assert_from_request(event: &Value, reply: &Reply) {
    assert_eq!(event["request_id"], json!(request_id(reply)), "{event}");
    assert_eq!(event["client_ip"], "127.0.0.1", "{event}");
    assert_eq!(event["user_agent"], UA, "{event}");
}

fn b64_mutate(v: &mut Value, pointer: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let field = v.pointer_mut(pointer).expect("field");
    let mut bytes = URL_SAFE_NO_PAD
        .decode(field.as_str().unwrap().trim_end_matches('='))
        .unwrap();
    f(&mut bytes);
    *field = json!(URL_SAFE_NO_PAD.encode(bytes));
}

async fn every_change_writes_its_event_in_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);

    // Bootstrap, by the system.
    let boot = stored_events(&server, &tenant.id).await;
    assert_eq!(
        boot.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["tenant.created", "user.created", "enrolment.invited"]
    );
    for e in &boot {
        assert_eq!(
            (e.actor_type.as_str(), e.actor_id.as_str()),
            ("system", "bootstrap")
        );
        assert_eq!(e.outcome, "success");
        assert_eq!(
            (&e.request_id, &e.client_ip, &e.user_agent),
            (&None, &None, &None)
        );
    }

    // The administrator enrols and signs in (the session that reads the log).
    let mut admin_auth = SoftAuthenticator::new(&server.origin(), true, true);
    let admin_enrolled = c
        .register(&mut admin_auth, server.bootstrap_token.as_deref(), None)
        .await;
    let admin_signed_in = c.sign_in(&mut admin_auth, Some("admin")).await;
    let admin_token = token_of(&admin_signed_in);
    let admin_id = admin_signed_in.body["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Alice: invited by an operator, enrols, signs in, renames, adds a passkey, removes the
    // first, signs out.
    let invitation = server
        .app
        .invite(&tenant, "alice", None, None, &Caller::operator("test"))
        .await
        .unwrap();
    let alice_id = invitation.user.id.to_string();
    let mut phone = SoftAuthenticator::new(&server.origin(), true, true);
    let enrolled = c
        .register(&mut phone, Some(invitation.token.expose()), None)
        .await;
    let first_id = enrolled.body["id"].as_str().unwrap().to_string();
    let signed_in = c.sign_in(&mut phone, Some("alice")).await;
    let token = token_of(&signed_in);
    let session = session_id(&server, &token).await;
    let renamed = c
        .send(
            Method::PATCH,
            &format!("/api/v1/me/credentials/{first_id}"),
            Some(&token),
            Some(&json!({ "nickname": "Work phone" })),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    let mut key = SoftAuthenticator::new(&server.origin(), true, true);
    let added = c.register(&mut key, None, Some(&token)).await;
    let second_id = added.body["id"].as_str().unwrap().to_string();
    let removed = c
        .send(
            Method::DELETE,
            &format!("/api/v1/me/credentials/{first_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    let logout = c
        .send(Method::POST, "/api/v1/logout", Some(&token), None)
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{:?}", logout.body);

    let events = c.all_events(&admin_token).await;
    assert_eq!(
        actions(&events),
        [
            "tenant.created",
            "user.created",
            "enrolment.invited",
            "credential.registered",
            "authentication.succeeded",
            "user.created",
            "enrolment.invited",
            "credential.registered",
            "authentication.succeeded",
            "credential.renamed",
            "credential.registered",
            "credential.revoked",
            "session.ended",
        ]
    );
    let e = |i: usize| &events[i];
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev["seq"], json!(i as i64 + 1));
        assert_eq!(ev["tenant_id"], json!(tenant.id));
        if i > 0 {
            assert_eq!(ev["prev_hash"], events[i - 1]["hash"]);
            assert!(ev["time_ms"].as_i64() >= events[i - 1]["time_ms"].as_i64());
        }
    }

    // Bootstrap: the tenant, its owner, the owner's invitation.
    assert_eq!(e(0)["target"], json!({"type": "tenant", "id": tenant.id}));
    assert_eq!(e(0)["details"]["name"], "default");
    assert_eq!(e(1)["target"], json!({"type": "user", "id": admin_id}));
    assert_eq!(
        e(1)["details"],
        json!({"username": "admin", "role": "owner"})
    );
    assert_eq!(e(2)["target"], json!({"type": "user", "id": admin_id}));
    assert!(e(2)["details"]["enrolment"].is_string());
    assert!(e(2)["request_id"].is_null() && e(2)["client_ip"].is_null());

    // The administrator's enrolment and sign-in.
    assert_eq!(e(3)["actor"], json!({"type": "user", "id": admin_id}));
    assert_eq!(e(3)["target"]["id"], admin_enrolled.body["id"]);
    assert_from_request(e(3), &admin_enrolled);
    assert_eq!(e(4)["actor"], json!({"type": "user", "id": admin_id}));
    assert_from_request(e(4), &admin_signed_in);

    // The operator's invitation: an admin actor without request context.
    for ev in [e(5), e(6)] {
        assert_eq!(ev["actor"], json!({"type": "admin", "id": "cli:test"}));
        assert_eq!(ev["target"], json!({"type": "user", "id": alice_id}));
        assert!(ev["request_id"].is_null());
    }
    assert_eq!(e(5)["details"], json!({"username": "alice", "role": null}));
    assert_eq!(e(6)["details"]["enrolment"], json!(invitation.enrolment.id));

    // Enrolment: the new credential with its facts.
    let reg = e(7);
    assert_eq!(reg["actor"], json!({"type": "user", "id": alice_id}));
    assert_eq!(reg["target"], json!({"type": "credential", "id": first_id}));
    assert_eq!(reg["outcome"], "success");
    assert_eq!(reg["reasons"], json!([]));
    assert_from_request(reg, &enrolled);
    let d = &reg["details"];
    assert_eq!(d["user"], json!(alice_id));
    assert_eq!(d["purpose"], "enrolment");
    assert_eq!(d["enrolment"], json!(invitation.enrolment.id));
    assert_eq!(d["nickname"], "Passkey 1");
    for field in [
        "aaguid",
        "attestation_format",
        "attestation_type",
        "backup_eligible",
        "backup_state",
        "user_verified",
        "transports",
    ] {
        assert_eq!(d[field], enrolled.body[field], "details.{field}");
    }
    assert!(d["aaguid"].is_string() && d["backup_eligible"].is_boolean());
    let stored = server.store_credentials(&tenant).await;
    let first = stored.iter().find(|c| c.id.as_str() == first_id).unwrap();
    assert_eq!(
        d["credential_id"],
        json!(URL_SAFE_NO_PAD.encode(&first.credential_id))
    );

    // Sign-in: the session, credential and assurance.
    let auth_ev = e(8);
    assert_eq!(auth_ev["actor"], json!({"type": "user", "id": alice_id}));
    assert_eq!(auth_ev["target"], json!({"type": "user", "id": alice_id}));
    assert_from_request(auth_ev, &signed_in);
    let d = &auth_ev["details"];
    assert_eq!(d["session"], json!(session));
    assert_eq!(d["credential"], json!(first_id));
    assert_eq!(d["credential"], signed_in.body["credential"]);
    assert_eq!(d["aal"], signed_in.body["aal"]);
    assert_eq!(d["amr"], signed_in.body["amr"]);
    assert_eq!(d["user_verified"], true);

    // Rename: from → to.
    assert_eq!(e(9)["actor"], json!({"type": "user", "id": alice_id}));
    assert_eq!(
        e(9)["target"],
        json!({"type": "credential", "id": first_id})
    );
    assert_eq!(
        e(9)["details"],
        json!({"user": alice_id, "from": "Passkey 1", "to": "Work phone"})
    );
    assert_from_request(e(9), &renamed);

    // Another passkey, from the session.
    assert_eq!(
        e(10)["target"],
        json!({"type": "credential", "id": second_id})
    );
    assert_eq!(e(10)["details"]["purpose"], "add_credential");
    assert!(e(10)["details"]["enrolment"].is_null());
    assert_from_request(e(10), &added);

    // Removal.
    assert_eq!(
        e(11)["target"],
        json!({"type": "credential", "id": first_id})
    );
    assert_eq!(e(11)["reasons"], json!(["removed_by_user"]));
    assert_eq!(e(11)["details"]["nickname"], "Work phone");
    assert_from_request(e(11), &removed);

    // Sign-out.
    assert_eq!(e(12)["actor"], json!({"type": "user", "id": alice_id}));
    assert_eq!(e(12)["target"], json!({"type": "session", "id": session}));
    assert_from_request(e(12), &logout);

    // The API shows exactly what is stored, and the stored chain verifies.
    let stored = stored_events(&server, &tenant.id).await;
    assert_chain(&stored);
    assert_eq!(stored.len(), events.len());
    for (s, a) in stored.iter().zip(&events) {
        assert_eq!(&keyplane_server::audit_export::native(s), a);
    }
    let report = server
        .app
        .verify_audit(&tenant, &[], false, &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.last_seq, 13);

    // Reading changes nothing.
    c.all_events(&admin_token).await;
    c.send(Method::GET, "/api/v1/me", Some(&admin_token), None)
        .await;
    assert_eq!(server.store.audit_head(&tenant.id).await.unwrap().0, 13);
    server.shutdown().await;
}

async fn client_request_ids_are_recorded_only_when_short_and_printable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    let (mut auth, _) = user(&c, "alice").await;
    let body = c.assertion(&mut auth, Some("alice")).await;
    assert_eq!(c.verify(&body).await.status, StatusCode::OK);
    // Each replay is a recorded failure carrying the request id the response names.
    let replay = |ids: &[&str]| {
        let mut req = c.request(Method::POST, "/api/v1/authentication/verify", None);
        for id in ids {
            req = req.header("x-request-id", *id);
        }
        let req = req.json(&body);
        async move { Client::reply(req.send().await.unwrap()).await }
    };
    let proxy_id = "lb-7f3a:req/00042";
    let kept = replay(&[proxy_id]).await;
    assert_eq!(request_id(&kept), proxy_id, "a proxy's id is kept");
    let huge = "x".repeat(60_000);
    let exact = "y".repeat(128);
    let too_long = "z".repeat(129);
    let kept_128 = replay(&[&exact]).await;
    assert_eq!(request_id(&kept_128), exact);
    for ids in [
        vec![huge.as_str()],
        vec![too_long.as_str()],
        vec!["two words"],
        vec!["tab\there"],
        vec!["a", "b"],
    ] {
        let r = replay(&ids).await;
        assert_eq!(r.code(), "ceremony_not_found");
        let id = request_id(&r);
        let short = |s: &str| s.chars().take(40).collect::<String>();
        assert!(
            uuid_like(&id),
            "{:?} should be replaced by a fresh id, not kept as {:?} ({} chars)",
            ids.iter().map(|i| short(i)).collect::<Vec<_>>(),
            short(&id),
            id.len()
        );
        let last = stored_events(&server, &tenant.id).await.pop().unwrap();
        assert_eq!(last.action, "authentication.failed");
        assert_eq!(last.request_id.as_deref(), Some(id.as_str()));
    }
    let events = stored_events(&server, &tenant.id).await;
    assert!(events
        .iter()
        .any(|e| e.request_id.as_deref() == Some(proxy_id)));
    assert!(events
        .iter()
        .all(|e| e.request_id.as_ref().is_none_or(|r| r.len() <= 128)));
    assert_chain(&events);
    server.shutdown().await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

async fn failed_attempts_are_recorded_and_malformed_bodies_are_not(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    let (_, admin_token) = admin(&c).await;
    let (mut auth, _) = user(&c, "alice").await;
    let raw_id = |body: &Value| body["credential"]["rawId"].as_str().unwrap().to_string();

    // A replayed assertion.
    let body = c.assertion(&mut auth, Some("alice")).await;
    assert_eq!(c.verify(&body).await.status, StatusCode::OK);
    let replay = c.verify(&body).await;
    assert_eq!(replay.code(), "ceremony_not_found", "{:?}", replay.body);

    // A look-alike origin.
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    auth.set_origin(&format!("http://localhost:{}", port.wrapping_add(1)));
    let phish_body = c.assertion(&mut auth, Some("alice")).await;
    let phished = c.verify(&phish_body).await;
    assert_eq!(phished.code(), "origin_mismatch", "{:?}", phished.body);
    auth.set_origin(&server.origin());

    // A tampered signature.
    let mut tampered_body = c.assertion(&mut auth, Some("alice")).await;
    b64_mutate(
        &mut tampered_body,
        "/credential/response/authenticatorData",
        |d| d[36] ^= 0x40,
    );
    let tampered = c.verify(&tampered_body).await;
    assert_eq!(tampered.code(), "signature_invalid", "{:?}", tampered.body);

    // A registration from the wrong origin.
    let mut stranger = SoftAuthenticator::new(
        &format!("http://localhost:{}", port.wrapping_add(1)),
        true,
        true,
    );
    let bob = server.invite("bob").await;
    let options = c
        .post(
            "/api/v1/registration/options",
            &json!({ "enrolment_token": bob }),
        )
        .await;
    let created = stranger.register(&options.body["publicKey"]).await.unwrap();
    let bad_reg = c
        .post(
            "/api/v1/registration/verify",
            &json!({ "ceremony": options.body["ceremony"], "credential": created }),
        )
        .await;
    assert_eq!(bad_reg.code(), "origin_mismatch", "{:?}", bad_reg.body);

    let events = c.all_events(&admin_token).await;
    let failed = find(&events, "authentication.failed");
    assert_eq!(failed.len(), 3, "{failed:?}");
    for ((ev, reply), (code, body)) in failed.iter().zip([&replay, &phished, &tampered]).zip([
        ("ceremony_not_found", &body),
        ("origin_mismatch", &phish_body),
        ("signature_invalid", &tampered_body),
    ]) {
        assert_eq!(ev["outcome"], "failure");
        assert_eq!(ev["reasons"], json!([code]));
        assert_eq!(ev["actor"], json!({"type": "user", "id": "anonymous"}));
        assert_eq!(
            ev["target"],
            json!({"type": "ceremony", "id": body["ceremony"]})
        );
        assert_eq!(ev["details"]["credential_id"], json!(raw_id(body)));
        assert_from_request(ev, reply);
    }
    let reg_failed = find(&events, "registration.failed");
    assert_eq!(reg_failed.len(), 1);
    assert_eq!(reg_failed[0]["outcome"], "failure");
    assert_eq!(reg_failed[0]["reasons"], json!(["origin_mismatch"]));
    assert_eq!(
        reg_failed[0]["target"],
        json!({"type": "ceremony", "id": options.body["ceremony"]})
    );
    assert_from_request(reg_failed[0], &bad_reg);
    let outcome_failures = c.events(Some(&admin_token), "?outcome=failure").await;
    assert_eq!(outcome_failures.body["events"].as_array().unwrap().len(), 4);

    // Malformed bodies are refused before anything is consumed or recorded.
    let head = server.store.audit_head(&tenant.id).await.unwrap();
    let good = c.assertion(&mut auth, Some("alice")).await;
    let syntax = c
        .send_raw("/api/v1/authentication/verify", "{\"ceremony\": ")
        .await;
    assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
    assert_eq!(syntax.code(), "invalid_json");
    let mut bad_b64 = good.clone();
    bad_b64["credential"]["response"]["signature"] = json!("%%% not base64 %%%");
    let r = c.verify(&bad_b64).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let mut bad_cdj = good.clone();
    bad_cdj["credential"]["response"]["clientDataJSON"] = json!("e30"); // "{}"
    let r = c.verify(&bad_cdj).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let mut no_response = good.clone();
    no_response["credential"]
        .as_object_mut()
        .unwrap()
        .remove("response");
    let r = c.verify(&no_response).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = c
        .verify(&json!({ "ceremony": "not-a-ceremony", "credential": good["credential"] }))
        .await;
    assert_eq!(r.code(), "invalid_ceremony_id");
    let r = c
        .post(
            "/api/v1/registration/verify",
            &json!({ "ceremony": good["ceremony"], "credential": {"id": "!!", "rawId": "!!", "type": "public-key", "response": {}} }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(
        server.store.audit_head(&tenant.id).await.unwrap(),
        head,
        "malformed bodies record nothing"
    );
    // ... and consumed nothing: the genuine assertion still finishes the ceremony.
    let ok = c.verify(&good).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_chain(&stored_events(&server, &tenant.id).await);
    server.shutdown().await;
}

async fn failure_events_are_rate_limited_per_address(backend: Backend) {
    let server = TestServer::builder(backend)
        .settings(|s| s.audit.failure_events_per_minute = 3)
        .start()
        .await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    let (_, admin_token) = admin(&c).await;
    let (mut auth, _) = user(&c, "alice").await;
    let body = c.assertion(&mut auth, Some("alice")).await;
    assert_eq!(c.verify(&body).await.status, StatusCode::OK);
    let mut replies = vec![];
    for _ in 0..8 {
        let r = c.verify(&body).await;
        assert_eq!(r.code(), "ceremony_not_found");
        replies.push(r);
    }
    let events = c.all_events(&admin_token).await;
    let failed = find(&events, "authentication.failed");
    assert_eq!(failed.len(), 3, "only the first 3 per minute are recorded");
    for (ev, reply) in failed.iter().zip(&replies) {
        assert_from_request(ev, reply);
        assert!(ev["details"].get("suppressed_before").is_none());
    }
    // Successes are never suppressed.
    c.sign_in(&mut auth, Some("alice")).await;
    let events = c.all_events(&admin_token).await;
    assert_eq!(actions(&events).last(), Some(&"authentication.succeeded"));
    assert_eq!(find(&events, "authentication.failed").len(), 3);
    assert_chain(&stored_events(&server, &tenant.id).await);

    let metrics = c.send(Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().expect("metrics text");
    let suppressed: f64 = text
        .lines()
        .find(|l| l.starts_with("keyplane_audit_failures_suppressed_total"))
        .unwrap_or_else(|| panic!("no suppressed-failures metric in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(suppressed >= 5.0, "{suppressed}");
    server.shutdown().await;
}

async fn sign_count_regression_records_suspension_and_failure(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    let (_, admin_token) = admin(&c).await;
    let (mut auth, _) = user(&c, "kim").await;
    let copy = auth.passkey();
    c.sign_in(&mut auth, Some("kim")).await;
    c.sign_in(&mut auth, Some("kim")).await;
    auth.set_passkey(copy);
    let body = c.assertion(&mut auth, Some("kim")).await;
    let reply = c.verify(&body).await;
    assert_eq!(reply.code(), "sign_count_regression", "{:?}", reply.body);

    let cred = server
        .store_credentials(&tenant)
        .await
        .into_iter()
        .find(|c| c.status == keyplane_core::CredentialStatus::Suspended)
        .expect("kim's passkey is suspended");
    let events = c.all_events(&admin_token).await;
    let n = events.len();
    assert_eq!(
        actions(&events[n - 3..]),
        [
            "credential.suspended",
            "fraud.alert_opened",
            "authentication.failed"
        ]
    );
    let suspended = &events[n - 3];
    assert_eq!(suspended["actor"], json!({"type": "system", "id": "fraud"}));
    let alert = &events[n - 2];
    assert_eq!(alert["target"]["id"], suspended["details"]["alert"]);
    assert_eq!(alert["details"]["credential"], json!(cred.id));
    assert_eq!(
        suspended["target"],
        json!({"type": "credential", "id": cred.id})
    );
    assert_eq!(suspended["reasons"], json!(["sign_count_regression"]));
    assert_eq!(suspended["details"]["user"], json!(cred.user_id));
    assert_eq!(
        suspended["details"]["signal"]["stored_sign_count"],
        json!(cred.sign_count)
    );
    assert_from_request(suspended, &reply);
    let failed = &events[n - 1];
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["reasons"], json!(["sign_count_regression"]));
    assert_eq!(
        failed["target"],
        json!({"type": "ceremony", "id": body["ceremony"]})
    );
    assert_from_request(failed, &reply);
    assert_eq!(cred.status_reason.as_deref(), Some("sign_count_regression"));

    // The suspended passkey's next attempt is a recorded failure too.
    let body = c.assertion(&mut auth, None).await;
    let again = c.verify(&body).await;
    assert_eq!(again.code(), "credential_inactive");
    let events = c.all_events(&admin_token).await;
    let last = events.last().unwrap();
    assert_eq!(last["action"], "authentication.failed");
    assert_eq!(last["reasons"], json!(["credential_inactive"]));
    assert_eq!(find(&events, "credential.suspended").len(), 1);
    assert_chain(&stored_events(&server, &tenant.id).await);
    server.shutdown().await;
}

async fn no_secret_ever_lands_in_the_audit_log(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    let (_, admin_token) = admin(&c).await;
    let (mut phone, token) = user(&c, "alice").await;
    // Cookie sign-in: the session and CSRF tokens travel as cookies and headers.
    let body = c.assertion(&mut phone, Some("alice")).await;
    let cookie_session = c.verify(&body).await;
    let cookies: Vec<String> = cookie_session
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let csrf = cookie_session.body["csrf_token"].as_str().unwrap();
    let creds = c
        .send(Method::GET, "/api/v1/me/credentials", Some(&token), None)
        .await;
    let first = creds.body["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let renamed = c
        .request(
            Method::PATCH,
            &format!("/api/v1/me/credentials/{first}"),
            None,
        )
        .header("cookie", cookies.join("; "))
        .header("x-csrf-token", csrf)
        .json(&json!({ "nickname": "Phone" }))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), StatusCode::OK);
    let mut key = SoftAuthenticator::new(&server.origin(), true, true);
    let added = c.register(&mut key, None, Some(&token)).await;
    let second = added.body["id"].as_str().unwrap().to_string();
    c.sign_in(&mut key, None).await;
    let removed = c
        .send(
            Method::DELETE,
            &format!("/api/v1/me/credentials/{second}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    // Failures, which record what was presented.
    let replay = c.verify(&body).await;
    assert_eq!(replay.code(), "ceremony_not_found");
    let mut tampered = c.assertion(&mut phone, Some("alice")).await;
    b64_mutate(
        &mut tampered,
        "/credential/response/authenticatorData",
        |d| d[36] ^= 0x40,
    );
    assert_eq!(c.verify(&tampered).await.code(), "signature_invalid");
    let bad_token = c
        .post(
            "/api/v1/registration/options",
            &json!({ "enrolment_token": "guessed-enrolment-token-aaaaaaaaaaaaaaaaaaaaaa" }),
        )
        .await;
    assert_eq!(bad_token.code(), "enrolment_token_invalid");
    c.keep("guessed-enrolment-token-aaaaaaaaaaaaaaaaaaaaaa");
    for t in [&token, &admin_token] {
        let r = c.send(Method::POST, "/api/v1/logout", Some(t), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        c.send(Method::POST, "/api/v1/logout", Some(&token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    server.app.checkpoint(&tenant).await.unwrap();

    let mut secrets = c.secrets();
    // Each session token's stored hash (hex and base64url) is not to be recorded either.
    for s in secrets.clone() {
        let h = Sha256::digest(s.as_bytes());
        secrets.push(hex::encode(h));
        secrets.push(URL_SAFE_NO_PAD.encode(h));
    }
    // Nor the checkpoint signing key.
    let seed =
        std::fs::read_to_string(server.app.settings.audit_key_dir().join("signing.key")).unwrap();
    secrets.push(seed.trim().to_string());
    assert!(secrets.len() > 40, "collected {} secrets", secrets.len());

    let rows = sqlx::query(
        "SELECT tenant_id, id, actor_type, actor_id, action, target_type, target_id, outcome, \
         reasons, request_id, client_ip, user_agent, details FROM audit_events ORDER BY seq",
    )
    .fetch_all(server.store.pool())
    .await
    .unwrap();
    assert!(rows.len() >= 15, "{} events", rows.len());
    let mut text = String::new();
    for row in &rows {
        for i in 0..13 {
            if let Some(v) = row.try_get::<Option<String>, _>(i).unwrap() {
                text.push_str(&v);
                text.push('\n');
            }
        }
    }
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the audit log: {secret}"
        );
    }
    // The exported form (what leaves the database) is free of them too.
    let exported = stored_events(&server, &tenant.id)
        .await
        .iter()
        .map(|e| keyplane_server::audit_export::native(e).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for secret in &secrets {
        assert!(!exported.contains(secret.as_str()), "exported: {secret}");
    }
    server.shutdown().await;
}

async fn the_audit_api_is_for_the_tenants_administrators_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    let (_, admin_token) = admin(&c).await;
    let (mut alice, alice_token) = user(&c, "alice").await;
    // A failure, for the outcome filter.
    let body = c.assertion(&mut alice, Some("alice")).await;
    c.verify(&body).await;
    assert_eq!(c.verify(&body).await.code(), "ceremony_not_found");

    // A user without a reading role; no session at all.
    let r = c.events(Some(&alice_token), "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.code(), "forbidden_role");
    let r = c.events(None, "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "unauthenticated");
    let r = c.events(Some("not-a-session"), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // An auditor may read.
    let inv = server
        .app
        .invite(
            &tenant,
            "audrey",
            None,
            Some("auditor"),
            &Caller::operator("test"),
        )
        .await
        .unwrap();
    let mut audrey = SoftAuthenticator::new(&server.origin(), true, true);
    c.register(&mut audrey, Some(inv.token.expose()), None)
        .await;
    let auditor_token = token_of(&c.sign_in(&mut audrey, Some("audrey")).await);
    let r = c.events(Some(&auditor_token), "?limit=1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Paging: pages of 2 in order, ending with next_after_seq null.
    let stored = stored_events(&server, &tenant.id).await;
    let total = stored.len() as i64;
    assert!(total > 10);
    let mut seqs = vec![];
    let mut after = 0;
    let mut pages = 0;
    loop {
        let r = c
            .events(Some(&admin_token), &format!("?limit=2&after_seq={after}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let page = r.body["events"].as_array().unwrap();
        assert!(page.len() <= 2);
        seqs.extend(page.iter().map(|e| e["seq"].as_i64().unwrap()));
        pages += 1;
        match r.body["next_after_seq"].as_i64() {
            Some(n) => {
                assert_eq!(Some(n), page.last().and_then(|e| e["seq"].as_i64()));
                after = n;
            }
            None => break,
        }
    }
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert!(pages >= total / 2);
    let r = c.events(Some(&admin_token), "").await;
    assert_eq!(r.body["events"].as_array().unwrap().len() as i64, total);
    assert!(r.body["next_after_seq"].is_null());

    // Filters.
    let r = c
        .events(Some(&admin_token), "?action=credential.registered")
        .await;
    let regs = r.body["events"].as_array().unwrap();
    assert_eq!(regs.len(), 3, "admin, alice, audrey");
    assert!(regs.iter().all(|e| e["action"] == "credential.registered"));
    let r = c.events(Some(&admin_token), "?outcome=failure").await;
    let fails = r.body["events"].as_array().unwrap();
    assert_eq!(fails.len(), 1);
    assert_eq!(fails[0]["reasons"], json!(["ceremony_not_found"]));
    let r = c
        .events(
            Some(&admin_token),
            "?action=authentication.succeeded&outcome=success&limit=1",
        )
        .await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
    assert!(r.body["next_after_seq"].is_i64());
    let pivot = &stored[stored.len() / 2];
    let since = pivot.time.to_rfc3339();
    let r = c
        .events(Some(&admin_token), &format!("?since={}", urlencode(&since)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let expected: Vec<i64> = stored
        .iter()
        .filter(|e| e.time >= pivot.time)
        .map(|e| e.seq)
        .collect();
    let got: Vec<i64> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(got, expected, "since {since}");
    let r = c
        .events(Some(&admin_token), &format!("?until={}", urlencode(&since)))
        .await;
    let got: Vec<i64> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = stored
        .iter()
        .filter(|e| e.time < pivot.time)
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, expected, "until {since}");
    for q in ["?since=2100-01-01T00:00:00Z", "?until=2000-01-01T00:00:00Z"] {
        let r = c.events(Some(&admin_token), q).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["events"], json!([]), "{q}");
        assert!(r.body["next_after_seq"].is_null());
    }

    // Bad queries: 400 with a JSON error code.
    for (q, code) in [
        ("?limit=0", "invalid_limit"),
        ("?limit=5000", "invalid_limit"),
        ("?limit=-1", "invalid_limit"),
        ("?after_seq=-1", "invalid_after_seq"),
        ("?after_seq=abc", "invalid_query"),
        ("?limit=ten", "invalid_query"),
        ("?since=yesterday", "invalid_time"),
        ("?until=2026-13-01T00:00:00Z", "invalid_time"),
        ("?tenant=other", "invalid_query"),
    ] {
        let r = c.events(Some(&admin_token), q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {:?}", r.body);
        assert_eq!(r.code(), code, "{q}: {:?}", r.body);
        assert!(r.body["error"]["message"].is_string());
        assert_eq!(
            r.headers["content-type"].to_str().unwrap(),
            "application/json",
            "{q}"
        );
    }

    // Tenant B, with its own owner: each administrator sees only their own tenant's log.
    let acme = server.create_tenant("acme", "acme.test").await;
    let inv = server
        .app
        .invite(
            &acme,
            "boss",
            None,
            Some("owner"),
            &Caller::operator("test"),
        )
        .await
        .unwrap();
    let b = Client::at_host(&server, "acme.test");
    let mut boss = SoftAuthenticator::new("https://acme.test", true, true);
    b.register(&mut boss, Some(inv.token.expose()), None).await;
    let boss_token = token_of(&b.sign_in(&mut boss, None).await);
    let b_events = b.all_events(&boss_token).await;
    assert_eq!(
        actions(&b_events),
        [
            "tenant.created",
            "user.created",
            "enrolment.invited",
            "credential.registered",
            "authentication.succeeded"
        ]
    );
    assert!(b_events.iter().all(|e| e["tenant_id"] == json!(acme.id)));
    let a_events = c.all_events(&admin_token).await;
    assert!(a_events.iter().all(|e| e["tenant_id"] == json!(tenant.id)));
    // A's owner at B's host, and B's owner at A's host: not signed in there.
    let r = b.events(Some(&admin_token), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = c.events(Some(&boss_token), "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert_chain(&stored_events(&server, &acme.id).await);
    assert_chain(&stored_events(&server, &tenant.id).await);
    server.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn checkpoints_verify_with_the_published_keys(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    admin(&c).await;
    let r = c
        .send(Method::GET, "/.well-known/keyplane-audit-keys", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let listed = r.body["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["active"], true);
    assert_eq!(listed[0]["algorithm"], "Ed25519");
    let keys: Vec<ed25519_dalek::VerifyingKey> = listed
        .iter()
        .map(|k| {
            let bytes: [u8; 32] = hex::decode(k["public_key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).unwrap();
            assert_eq!(k["key_id"], json!(keyplane_core::audit::key_id(&key)));
            key
        })
        .collect();

    let checkpoint = server
        .app
        .checkpoint(&tenant)
        .await
        .unwrap()
        .expect("a new checkpoint");
    assert_eq!(checkpoint.key_id, listed[0]["key_id"].as_str().unwrap());
    assert!(keys.iter().any(|k| checkpoint.verify_with(k)));
    let events = stored_events(&server, &tenant.id).await;
    let last = events.last().unwrap();
    assert_eq!((checkpoint.seq, &checkpoint.hash), (last.seq, &last.hash));
    // The same head is not signed twice; the stored checkpoint is the one returned.
    assert!(server.app.checkpoint(&tenant).await.unwrap().is_none());
    assert_eq!(
        server.store.list_checkpoints(&tenant.id).await.unwrap(),
        std::slice::from_ref(&checkpoint)
    );
    // A forged checkpoint does not verify with the published key.
    let mut forged = checkpoint.clone();
    forged.seq += 1;
    assert!(!keys.iter().any(|k| forged.verify_with(k)));
    let report = server
        .app
        .verify_audit(&tenant, &keys, true, &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints_valid, 1);
    assert_eq!(report.started_after, checkpoint.seq);
    server.shutdown().await;
}

/// `n` users of the default tenant with one passkey each, not yet signed in.
async fn enrolled_users(c: &Client<'_>, n: usize) -> Vec<(String, SoftAuthenticator)> {
    let mut out = vec![];
    for i in 0..n {
        let name = format!("user{i:02}");
        let mut auth = SoftAuthenticator::new(&c.server.origin(), true, true);
        let token = c.server.invite(&name).await;
        c.register(&mut auth, Some(&token), None).await;
        out.push((name, auth));
    }
    out
}

async fn concurrent_sign_ins_keep_the_chain_intact(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.default_tenant().await;
    let c = Client::new(&server);
    let mut users = enrolled_users(&c, 16).await;
    let mut bodies = vec![];
    for (name, auth) in users.iter_mut() {
        bodies.push(c.assertion(auth, Some(name)).await);
    }
    let before = server.store.audit_head(&tenant.id).await.unwrap().0;
    let replies = futures::future::join_all(bodies.iter().map(|b| c.verify(b))).await;
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    // And the same assertions again, all at once: sixteen recorded failures.
    let replays = futures::future::join_all(bodies.iter().map(|b| c.verify(b))).await;
    for r in &replays {
        assert_eq!(r.code(), "ceremony_not_found", "{:?}", r.body);
    }
    let events = stored_events(&server, &tenant.id).await;
    assert_chain(&events);
    let new = &events[before as usize..];
    assert_eq!(new.len(), 32);
    assert_eq!(
        new.iter()
            .filter(|e| e.action == "authentication.succeeded")
            .count(),
        16
    );
    assert_eq!(
        new.iter()
            .filter(|e| e.action == "authentication.failed")
            .count(),
        16
    );
    // Every request's event carries that request's id.
    let ids: HashSet<String> = replies.iter().chain(&replays).map(request_id).collect();
    let recorded: HashSet<String> = new.iter().filter_map(|e| e.request_id.clone()).collect();
    assert_eq!(ids, recorded);
    let report = server
        .app
        .verify_audit(&tenant, &[], false, &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_postgres_keep_one_chain() {
    if keyplane_testkit::database::postgres_skip_allowed()
        && keyplane_testkit::postgres_admin_url().is_none()
    {
        eprintln!("PostgreSQL test skipped by KEYPLANE_TEST_SKIP_POSTGRES=1 (never allowed in CI)");
        return;
    }
    let a = TestServer::start(Backend::Postgres).await;
    let b = TestServer::builder(Backend::Postgres)
        .database_url(&a.database_url())
        .public_url(&a.base)
        .start()
        .await;
    assert!(b.bootstrap_token.is_none());
    let tenant = a.default_tenant().await;
    let ca = Client::new(&a);
    let cb = Client::new(&b);
    let mut users = enrolled_users(&ca, 16).await;
    let mut bodies = vec![];
    for (i, (name, auth)) in users.iter_mut().enumerate() {
        let c = if i.is_multiple_of(2) { &ca } else { &cb };
        bodies.push(c.assertion(auth, Some(name)).await);
    }
    let node = |i: usize| if i.is_multiple_of(2) { &cb } else { &ca };
    let replies =
        futures::future::join_all(bodies.iter().enumerate().map(|(i, b)| node(i).verify(b))).await;
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    // Replays on both nodes at once: failures interleave on both nodes.
    let replays = futures::future::join_all(
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| node(i + 1).verify(b)),
    )
    .await;
    for r in &replays {
        assert_eq!(r.code(), "ceremony_not_found", "{:?}", r.body);
    }
    let events = stored_events(&a, &tenant.id).await;
    assert_chain(&events);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "authentication.succeeded")
            .count(),
        16
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "authentication.failed")
            .count(),
        16
    );
    let (head_seq, head_hash) = a.store.audit_head(&tenant.id).await.unwrap();
    assert_eq!(head_seq, events.len() as i64);
    assert_eq!(&head_hash, &events.last().unwrap().hash);
    b.shutdown().await;
    a.shutdown().await;
}

async fn the_admin_api_reports_the_chain_intact_and_names_the_first_tampered_event(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let admin = common::member(&server, "ada", Some("admin")).await;
    server.user_with_passkey("alice").await;
    let (s, body) = common::call(
        &server,
        Method::GET,
        "/api/v1/audit/verify?full=true",
        &admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    assert_eq!(body["ok"], true, "{body:?}");
    assert!(body["events_checked"].as_u64().unwrap() >= 6);
    let tenant = server.default_tenant().await;
    // An edited field: verification names the event.
    sqlx::query("UPDATE audit_events SET action = 'user.created' WHERE tenant_id = $1 AND seq = 3")
        .bind(tenant.id.as_str())
        .execute(server.store.pool())
        .await
        .unwrap();
    let (_, body) = common::call(
        &server,
        Method::GET,
        "/api/v1/audit/verify?full=true",
        &admin,
        None,
    )
    .await;
    assert_eq!(body["ok"], false, "{body:?}");
    assert_eq!(body["problems"][0]["seq"], 3, "{body:?}");
    let (s, body) = common::call(
        &server,
        Method::GET,
        "/api/v1/audit/verify?fast=1",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let plain = common::member(&server, "pat", None).await;
    let (s, _) = common::call(&server, Method::GET, "/api/v1/audit/verify", &plain, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    server.shutdown().await;
}

both_backends!(
    the_admin_api_reports_the_chain_intact_and_names_the_first_tampered_event,
    every_change_writes_its_event_in_order,
    client_request_ids_are_recorded_only_when_short_and_printable,
    failed_attempts_are_recorded_and_malformed_bodies_are_not,
    failure_events_are_rate_limited_per_address,
    sign_count_regression_records_suspension_and_failure,
    no_secret_ever_lands_in_the_audit_log,
    the_audit_api_is_for_the_tenants_administrators_only,
    checkpoints_verify_with_the_published_keys,
    concurrent_sign_ins_keep_the_chain_intact,
);
