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
pub mod client_ip;
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

/// Reads `[tls]`'s certificate and key (PEM) into a rustls configuration, with the ring
/// provider installed as the process default (once). Also what a SIGHUP reload reads.
pub async fn load_tls(
    tls: &config::TlsSettings,
) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot load the TLS certificate {} and key {}: {e}",
                    tls.cert_file.display(),
                    tls.key_file.display()
                ),
            )
        })
}

/// A running server: its address and a handle to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The TLS configuration being served, when Keyplane terminates TLS (`[tls]`).
    pub tls: Option<axum_server::tls_rustls::RustlsConfig>,
    app: Arc<App>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Ends the server gracefully: `/readyz` turns 503 (`draining`) at once; after
    /// `shutdown_grace_ms` the server stops accepting; requests in flight get
    /// `shutdown_timeout_secs` to finish (then they are cut); last, one delivery pass empties
    /// what is due in the notification and webhook outboxes (what is not delivered stays in the
    /// outbox for the next start or another node).
    pub async fn shutdown(self) -> std::io::Result<()> {
        let settings = &self.app.settings;
        self.app
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if settings.shutdown_grace_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(settings.shutdown_grace_ms)).await;
        }
        let _ = self.shutdown.send(true);
        let limit = std::time::Duration::from_secs(settings.shutdown_timeout_secs);
        let mut task = self.task;
        let served = match tokio::time::timeout(limit, &mut task).await {
            Ok(joined) => joined.map_err(std::io::Error::other)?,
            Err(_) => {
                tracing::warn!(
                    seconds = settings.shutdown_timeout_secs,
                    "requests still in flight at the shutdown timeout were cut"
                );
                task.abort();
                Ok(())
            }
        };
        let flush = async {
            if settings.notifications.interval_ms > 0 {
                if let Err(e) = self.app.deliver_notifications().await {
                    tracing::warn!(error = %e, "last notification pass failed; the outbox keeps them");
                }
            }
            if settings.webhooks.interval_ms > 0 {
                if let Err(e) = self.app.deliver_webhooks().await {
                    tracing::warn!(error = %e, "last webhook pass failed; the outbox keeps them");
                }
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), flush)
            .await
            .is_err()
        {
            tracing::warn!(
                "the last outbox pass did not finish in 10 s; the outbox keeps the rest"
            );
        }
        served
    }
}

/// Serves `app` on an already-bound listener until [`RunningServer::shutdown`] is called:
/// plain HTTP, or HTTPS when `[tls]` names a certificate and key (see [`load_tls`]).
pub async fn spawn(app: Arc<App>, listener: TcpListener) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let tls = if app.settings.tls.enabled() {
        Some(load_tls(&app.settings.tls).await?)
    } else {
        None
    };
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let router = router(app.clone());
    let handle = app.clone();
    let janitor = service::spawn_janitor(app.clone());
    let notifier = service::spawn_notifier(app.clone());
    let webhooks = service::spawn_webhook_worker(app.clone());
    let limit = std::time::Duration::from_secs(app.settings.shutdown_timeout_secs);
    let served_tls = tls.clone();
    let task = tokio::spawn(async move {
        let make = router.into_make_service_with_connect_info::<SocketAddr>();
        let r = match served_tls {
            None => {
                axum::serve(listener, make)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await
            }
            Some(config) => {
                let server_handle = axum_server::Handle::new();
                let stopper = server_handle.clone();
                tokio::spawn(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                    stopper.graceful_shutdown(Some(limit));
                });
                match listener.into_std() {
                    Ok(std_listener) => {
                        axum_server::from_tcp_rustls(std_listener, config)
                            .handle(server_handle)
                            .serve(make)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        janitor.abort();
        for worker in [notifier, webhooks].into_iter().flatten() {
            worker.abort();
        }
        r
    });
    Ok(RunningServer {
        addr,
        tls,
        app: handle,
        shutdown: tx,
        task,
    })
}
