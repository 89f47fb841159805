//! Keyplane's HTTP server and the application services behind it.
//!
//! - [`service`]: the application services (enrol, sign in, manage credentials, administer
//!   tenants). They combine the domain (`keyplane-core`), the WebAuthn adapter and the store.
//!   The HTTP handlers and the CLI both call them; neither holds business rules of its own.
//! - [`api`]: the axum router, extractors, request/response types and the one place where errors
//!   become HTTP statuses and JSON.
//!
//! Architecture invariant: only this crate knows HTTP and JSON wire shapes; the core never sees a
//! request type.

pub mod api;
pub mod audit_export;
pub mod audit_keys;
pub mod config;
pub mod doctor;
pub mod metrics;
pub mod notify;
pub mod oidc_keys;
pub mod ratelimit;
pub mod service;

pub use api::router;
pub use config::Settings;
pub use service::App;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A running server: its address and a handle to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Serves `app` on an already-bound listener until [`RunningServer::shutdown`] is called.
pub fn spawn(app: Arc<App>, listener: TcpListener) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let router = router(app.clone());
    let janitor = service::spawn_janitor(app.clone());
    let notifier = service::spawn_notifier(app.clone());
    let webhooks = service::spawn_webhook_worker(app);
    let task = tokio::spawn(async move {
        let r = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await;
        janitor.abort();
        for worker in [notifier, webhooks].into_iter().flatten() {
            worker.abort();
        }
        r
    });
    Ok(RunningServer {
        addr,
        shutdown: tx,
        task,
    })
}
