//! A real Keyplane server for tests: bound to 127.0.0.1 on a random port, reached as
//! `http://localhost:PORT` (the default tenant's origin), with helpers for the common flows.

use crate::authenticator::SoftAuthenticator;
use crate::database::TestDatabase;
use keyplane_core::audit::Caller;
use keyplane_core::{Clock, SystemClock, Tenant};
use keyplane_server::service::NewTenant;
use keyplane_server::{App, RunningServer, Settings};
use keyplane_store::{Backend, SqlStore};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

/// Options for a test server.
pub struct TestServerBuilder {
    backend: Backend,
    database_url: Option<String>,
    public_url: Option<String>,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl TestServerBuilder {
    /// Use an existing database (e.g. a second node on the same PostgreSQL).
    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_string());
        self
    }

    /// The public URL / default tenant origin (default: `http://localhost:PORT`).
    pub fn public_url(mut self, url: &str) -> Self {
        self.public_url = Some(url.to_string());
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn settings(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    pub async fn start(self) -> TestServer {
        let database = match &self.database_url {
            Some(_) => None,
            None => Some(TestDatabase::new(self.backend).await),
        };
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(|| database.as_ref().map(|d| d.url.clone()).unwrap_or_default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let mut settings = self.settings;
        settings.public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://localhost:{}", addr.port()));
        settings.database.url = url.clone();
        let store =
            SqlStore::connect_with(&url, settings.max_connections(), settings.acquire_timeout())
                .await
                .expect("open the test database");
        let data_dir = tempfile::tempdir().expect("data directory");
        settings.data_dir = data_dir.path().to_path_buf();
        let app = App::new(Arc::new(store.clone()), self.clock, settings)
            .expect("open the audit key ring");
        let invitation = app.bootstrap().await.expect("bootstrap");
        let server = keyplane_server::spawn(app.clone(), listener)
            .await
            .expect("start server");
        let http = reqwest::Client::builder()
            .resolve("localhost", addr)
            .build()
            .expect("HTTP client");
        TestServer {
            base: format!("http://localhost:{}", addr.port()),
            app,
            store,
            http,
            server: Some(server),
            database,
            _data_dir: data_dir,
            bootstrap_token: invitation.map(|i| i.token.expose().to_string()),
        }
    }
}

/// A running server with its database.
pub struct TestServer {
    /// `http://localhost:PORT`.
    pub base: String,
    /// The data directory (audit key ring), removed with the server.
    _data_dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub store: SqlStore,
    pub http: reqwest::Client,
    server: Option<RunningServer>,
    database: Option<TestDatabase>,
    /// The enrolment token printed on first start, if this server bootstrapped the database.
    pub bootstrap_token: Option<String>,
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The stable error code, if this is an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    pub fn builder(backend: Backend) -> TestServerBuilder {
        TestServerBuilder {
            backend,
            database_url: None,
            public_url: None,
            clock: Arc::new(SystemClock),
            settings: Settings::default(),
        }
    }

    pub async fn start(backend: Backend) -> TestServer {
        Self::builder(backend).start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The default tenant's origin, for authenticators.
    pub fn origin(&self) -> String {
        self.base.clone()
    }

    pub fn database_url(&self) -> String {
        self.app.settings.database_url()
    }

    pub async fn default_tenant(&self) -> Tenant {
        self.app
            .tenant_named("default")
            .await
            .expect("default tenant")
    }

    /// A second tenant served at host `host` with origin `https://host`.
    pub async fn create_tenant(&self, name: &str, host: &str) -> Tenant {
        self.app
            .create_tenant(
                NewTenant {
                    name: name.into(),
                    rp_id: host.into(),
                    rp_name: name.into(),
                    origins: vec![format!("https://{host}")],
                    hostnames: vec![host.into()],
                },
                &Caller::operator("test"),
            )
            .await
            .expect("create tenant")
    }

    /// Sends a request with an optional Host override and bearer token; parses the JSON reply.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        host: Option<&str>,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(h) = host {
            req = req.header(reqwest::header::HOST, h);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request reaches the server");
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

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(reqwest::Method::POST, path, None, None, Some(body))
            .await
    }

    /// Invites `username` in the default tenant; returns the enrolment token.
    pub async fn invite(&self, username: &str) -> String {
        let tenant = self.default_tenant().await;
        self.app
            .invite(&tenant, username, None, None, &Caller::operator("test"))
            .await
            .expect("invite")
            .token
            .expose()
            .to_string()
    }

    /// Registers a passkey on `auth` with an enrolment token; returns the credential summary.
    pub async fn enrol(&self, auth: &mut SoftAuthenticator, token: &str) -> Value {
        let options = self
            .post(
                "/api/v1/registration/options",
                &json!({ "enrolment_token": token }),
            )
            .await;
        assert_eq!(
            options.status,
            StatusCode::OK,
            "registration options: {:?}",
            options.body
        );
        let credential = auth
            .register(&options.body["publicKey"])
            .await
            .expect("authenticator registers");
        let verify = self
            .post(
                "/api/v1/registration/verify",
                &json!({ "ceremony": options.body["ceremony"], "credential": credential }),
            )
            .await;
        assert_eq!(
            verify.status,
            StatusCode::CREATED,
            "registration verify: {:?}",
            verify.body
        );
        verify.body
    }

    /// Signs in with `auth` (username-first when `username` is given); returns the verify reply.
    pub async fn try_sign_in(&self, auth: &mut SoftAuthenticator, username: Option<&str>) -> Reply {
        let body = match username {
            Some(u) => json!({ "username": u }),
            None => json!({}),
        };
        let options = self.post("/api/v1/authentication/options", &body).await;
        assert_eq!(
            options.status,
            StatusCode::OK,
            "authentication options: {:?}",
            options.body
        );
        let assertion = auth
            .authenticate(&options.body["publicKey"])
            .await
            .expect("authenticator signs");
        self.post(
            "/api/v1/authentication/verify",
            &json!({ "ceremony": options.body["ceremony"], "credential": assertion }),
        )
        .await
    }

    /// Signs in and returns the session body (token, aal, amr, ...), asserting success.
    pub async fn sign_in(&self, auth: &mut SoftAuthenticator, username: Option<&str>) -> Value {
        let reply = self.try_sign_in(auth, username).await;
        assert_eq!(reply.status, StatusCode::OK, "sign-in: {:?}", reply.body);
        reply.body
    }

    /// Registers another passkey with `auth` on the signed-in session `bearer` (options, the
    /// authenticator, verify); the verify reply.
    pub async fn add_passkey(&self, auth: &mut SoftAuthenticator, bearer: &str) -> Reply {
        let options = self
            .request(
                reqwest::Method::POST,
                "/api/v1/registration/options",
                None,
                Some(bearer),
                Some(&json!({})),
            )
            .await;
        assert_eq!(
            options.status,
            StatusCode::OK,
            "registration options: {:?}",
            options.body
        );
        let credential = auth
            .register(&options.body["publicKey"])
            .await
            .expect("authenticator registers");
        self.request(
            reqwest::Method::POST,
            "/api/v1/registration/verify",
            None,
            Some(bearer),
            Some(&json!({ "ceremony": options.body["ceremony"], "credential": credential })),
        )
        .await
    }

    /// The default tenant's audit events of one action, oldest first (at most 100).
    pub async fn events(&self, action: &str) -> Vec<keyplane_core::audit::AuditEvent> {
        use keyplane_store::Store;
        let tenant = self.default_tenant().await;
        self.store
            .list_audit_events(
                &tenant.id,
                &keyplane_store::AuditFilter {
                    action: Some(action.into()),
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .expect("audit events")
    }

    /// Applies `document` as the default tenant's policy, as an operator would.
    pub async fn apply_policy(&self, document: &str) {
        let tenant = self.default_tenant().await;
        self.app
            .apply_policy(
                &tenant,
                document,
                &keyplane_core::audit::Caller::operator("test"),
            )
            .await
            .expect("policy applies");
    }

    /// Invites, enrols and signs in a new user; returns (authenticator, bearer token).
    pub async fn user_with_passkey(&self, username: &str) -> (SoftAuthenticator, String) {
        let mut auth = SoftAuthenticator::new(&self.origin(), true, true);
        let token = self.invite(username).await;
        self.enrol(&mut auth, &token).await;
        let session = self.sign_in(&mut auth, Some(username)).await;
        (auth, session["token"].as_str().expect("token").to_string())
    }

    /// All credentials of a tenant, straight from the store.
    pub async fn store_credentials(&self, tenant: &Tenant) -> Vec<keyplane_core::Credential> {
        use keyplane_store::Store;
        self.store
            .list_credentials(&tenant.id, None)
            .await
            .expect("list credentials")
    }

    /// Stops the server and removes its database.
    /// Stops serving (HTTP and background workers) and keeps the database, as a process that
    /// ends would: another server may then open it (`builder().database_url(…)`).
    pub async fn stop_serving(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.shutdown().await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.shutdown().await;
        }
        self.store.close().await;
        if let Some(db) = self.database.take() {
            db.drop_database().await;
        }
    }
}
