//! Server settings. Loaded by the CLI from defaults, a TOML file and `KEYPLANE_*` environment
//! variables (see `docs/configuration.md`); every field has a safe default so `keyplane serve`
//! runs with no configuration at all.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL users reach Keyplane at. On first start it becomes the default tenant's origin
    /// (unless `default_tenant.origins` is set); links are built from each tenant's first origin.
    pub public_url: String,
    /// Where the SQLite database (and later, keys) live.
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    /// Lifetime of a WebAuthn ceremony (challenge), seconds.
    pub ceremony_ttl_secs: i64,
    /// Lifetime of a session, seconds.
    pub session_ttl_secs: i64,
    /// Lifetime of an enrolment invitation, seconds.
    pub enrolment_ttl_secs: i64,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges). A request from
    /// one of them is attributed to the rightmost address in that header that is not itself a
    /// trusted proxy; from anywhere else, to its peer address. Empty: the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// On SIGTERM, how long `/readyz` answers 503 `draining` before the server stops accepting
    /// (time for a load balancer to take this node out), milliseconds.
    pub shutdown_grace_ms: u64,
    /// How long requests in flight may take to finish after that, seconds; then they are cut.
    pub shutdown_timeout_secs: u64,
    /// `json` (default) or `pretty`.
    pub log_format: String,
    /// The tenant created on first start.
    pub default_tenant: TenantSettings,
    pub audit: AuditSettings,
    pub rate_limits: RateLimitSettings,
    pub mds: MdsSettings,
    pub notifications: NotificationSettings,
    pub webhooks: WebhookSettings,
    pub tls: TlsSettings,
}

/// TLS terminated by Keyplane itself (`[tls]`), for deployments without a proxy. Both files or
/// neither; PEM. Reloaded on SIGHUP.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

/// Delivery of webhook endpoints' outbox (docs/configuration.md, `[webhooks]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// How often each node looks for due deliveries, milliseconds; 0 = no delivery worker on
    /// this node (the outbox still fills).
    pub interval_ms: u64,
    /// Attempts before a delivery is dead-lettered (1-100).
    pub max_attempts: u32,
    /// How long one attempt may take, milliseconds.
    pub timeout_ms: u64,
    /// The key signing secrets are derived from (32 random bytes, hex, created with mode 0600
    /// on first use). Empty = `<data_dir>/webhook.key`. Nodes sharing a database share it.
    pub key_file: PathBuf,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            interval_ms: 1000,
            max_attempts: keyplane_core::webhook::DEFAULT_MAX_ATTEMPTS,
            timeout_ms: 10_000,
            key_file: PathBuf::new(),
        }
    }
}

/// Delivery of the notifications outbox (docs/configuration.md, `[notifications]`). Every
/// enabled sink gets every notification; email goes only to the user's verified contact.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// How often each node looks for due notifications, milliseconds; 0 = no delivery worker
    /// on this node (the outbox still fills).
    pub interval_ms: u64,
    /// Attempts before a notification is `failed`.
    pub max_attempts: u32,
    /// Wait before the second attempt, seconds; doubled each time up to `backoff_max_secs`.
    pub backoff_secs: u64,
    pub backoff_max_secs: u64,
    pub file: FileSinkSettings,
    pub webhook: WebhookSinkSettings,
    pub smtp: SmtpSinkSettings,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            interval_ms: 5000,
            max_attempts: 8,
            backoff_secs: 30,
            backoff_max_secs: 3600,
            file: FileSinkSettings::default(),
            webhook: WebhookSinkSettings::default(),
            smtp: SmtpSinkSettings::default(),
        }
    }
}

/// JSON lines appended to a file: the embedded default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkSettings {
    pub enabled: bool,
    /// Empty = `<data_dir>/notifications.log`.
    pub path: PathBuf,
}

impl Default for FileSinkSettings {
    fn default() -> Self {
        FileSinkSettings {
            enabled: true,
            path: PathBuf::new(),
        }
    }
}

/// A signed JSON POST per notification.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSinkSettings {
    /// Empty = no webhook.
    pub url: String,
    /// File holding the HMAC-SHA256 signing secret (required with `url`).
    pub secret_file: PathBuf,
    pub timeout_secs: u64,
}

impl Default for WebhookSinkSettings {
    fn default() -> Self {
        WebhookSinkSettings {
            url: String::new(),
            secret_file: PathBuf::new(),
            timeout_secs: 10,
        }
    }
}

/// Email through an SMTP relay.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSinkSettings {
    /// Relay host name; empty = no email.
    pub host: String,
    /// 0 = the usual port for `security` (587 for `starttls`, 465 for `tls`, 25 for `none`).
    pub port: u16,
    /// `starttls` (default), `tls` (implicit TLS) or `none` (plain text: loopback relays only).
    pub security: String,
    /// Relay user name; empty = no authentication.
    pub username: String,
    /// File holding the relay password (required with `username`).
    pub password_file: PathBuf,
    /// The From address.
    pub from: String,
    pub timeout_secs: u64,
}

impl Default for SmtpSinkSettings {
    fn default() -> Self {
        SmtpSinkSettings {
            host: String::new(),
            port: 0,
            security: "starttls".into(),
            username: String::new(),
            password_file: PathBuf::new(),
            from: String::new(),
            timeout_secs: 30,
        }
    }
}

/// The FIDO Metadata Service BLOBs `keyplane mds import` accepts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MdsSettings {
    /// PEM file of the roots a BLOB's signing chain must reach; empty = the FIDO Alliance's
    /// (GlobalSign Root CA - R3 and Root R46, built in).
    pub root_certificates: PathBuf,
}

/// Limits on unauthenticated ceremony traffic, per node (each node counts on its own).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Ceremony requests (options and verify, sign-in, registration, step-up) per client address
    /// and tenant per minute; 0 = no limit.
    pub per_address_per_minute: u32,
    /// Username-first sign-in starts per username and tenant per minute, whether or not the
    /// account exists; 0 = no limit.
    pub per_account_per_minute: u32,
    /// Recovery attempts (redeeming a recovery code or a recovery link, opening a help-desk
    /// case) per client address and tenant per hour; 0 = no limit.
    pub recovery_per_address_per_hour: u32,
    /// Recovery attempts per username and tenant per hour, whether or not the account exists;
    /// 0 = no limit.
    pub recovery_per_account_per_hour: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            per_address_per_minute: 300,
            per_account_per_minute: 20,
            recovery_per_address_per_hour: 30,
            recovery_per_account_per_hour: 10,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Directory of the checkpoint signing keys; empty = `<data_dir>/audit-keys`.
    pub key_dir: PathBuf,
    /// How often each tenant's chain head is signed, seconds (0 = only on demand).
    pub checkpoint_interval_secs: u64,
    /// Failed or denied attempts recorded per client address and tenant per minute; the rest
    /// are counted and reported in the next event recorded for that address.
    pub failure_events_per_minute: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            key_dir: PathBuf::new(),
            checkpoint_interval_secs: 3600,
            failure_events_per_minute: 30,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite:PATH` or `postgres://…`; empty = `sqlite:<data_dir>/keyplane.db`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long a request waits for a database connection before it gets 503
    /// `storage_unavailable`, seconds; 0 = 10. Also how long a request takes to fail while the
    /// database is unreachable.
    pub acquire_timeout_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    pub name: String,
    pub rp_id: String,
    pub rp_name: String,
    /// Empty = the public URL's origin.
    pub origins: Vec<String>,
    /// Empty = the RP ID.
    pub hostnames: Vec<String>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            name: "default".into(),
            rp_id: "localhost".into(),
            rp_name: "Keyplane".into(),
            origins: vec![],
            hostnames: vec![],
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://localhost:8080".into(),
            data_dir: PathBuf::from("keyplane-data"),
            database: DatabaseSettings {
                url: String::new(),
                max_connections: 0,
                acquire_timeout_secs: 0,
            },
            ceremony_ttl_secs: 300,
            session_ttl_secs: 12 * 3600,
            enrolment_ttl_secs: 7 * 24 * 3600,
            max_body_bytes: 64 * 1024,
            trusted_proxies: vec![],
            shutdown_grace_ms: 0,
            shutdown_timeout_secs: 30,
            log_format: "json".into(),
            default_tenant: TenantSettings::default(),
            audit: AuditSettings::default(),
            rate_limits: RateLimitSettings::default(),
            mds: MdsSettings::default(),
            notifications: NotificationSettings::default(),
            webhooks: WebhookSettings::default(),
            tls: TlsSettings::default(),
        }
    }
}

impl Settings {
    /// The database URL actually used.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite:{}", self.data_dir.join("keyplane.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// The checkpoint key directory actually used.
    /// The webhook key file (`webhooks.key_file`, default `<data_dir>/webhook.key`).
    pub fn webhook_key_file(&self) -> PathBuf {
        if self.webhooks.key_file.as_os_str().is_empty() {
            self.data_dir.join("webhook.key")
        } else {
            self.webhooks.key_file.clone()
        }
    }

    /// Where this node's OpenID Connect signing key lives (`<data_dir>/oidc-keys`).
    pub fn oidc_key_dir(&self) -> PathBuf {
        self.data_dir.join("oidc-keys")
    }

    pub fn audit_key_dir(&self) -> PathBuf {
        if self.audit.key_dir.as_os_str().is_empty() {
            self.data_dir.join("audit-keys")
        } else {
            self.audit.key_dir.clone()
        }
    }

    /// The notifications file sink's path actually used.
    pub fn notifications_file(&self) -> PathBuf {
        if self.notifications.file.path.as_os_str().is_empty() {
            self.data_dir.join("notifications.log")
        } else {
            self.notifications.file.path.clone()
        }
    }

    /// Pool size: the setting, or a default suited to the backend.
    pub fn max_connections(&self) -> u32 {
        match self.database.max_connections {
            0 if self.database_url().starts_with("sqlite:") => 8,
            0 => 16,
            n => n,
        }
    }

    /// How long a request waits for a database connection: the setting, or 10 seconds.
    pub fn acquire_timeout(&self) -> std::time::Duration {
        match self.database.acquire_timeout_secs {
            0 => keyplane_store::DEFAULT_ACQUIRE_TIMEOUT,
            n => std::time::Duration::from_secs(n),
        }
    }

    /// Checks values that serde cannot; every problem is reported, not just the first.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if url::Url::parse(&self.public_url).is_err() {
            problems.push(format!("public_url {:?} is not a URL", self.public_url));
        }
        for (name, v) in [
            ("ceremony_ttl_secs", self.ceremony_ttl_secs),
            ("session_ttl_secs", self.session_ttl_secs),
            ("enrolment_ttl_secs", self.enrolment_ttl_secs),
        ] {
            if v <= 0 {
                problems.push(format!("{name} must be positive (got {v})"));
            }
        }
        if self.database.acquire_timeout_secs > 300 {
            problems.push(format!(
                "database.acquire_timeout_secs must be at most 300 (got {})",
                self.database.acquire_timeout_secs
            ));
        }
        if self.max_body_bytes < 1024 {
            problems.push("max_body_bytes must be at least 1024".into());
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            problems.push(format!(
                "log_format must be \"json\" or \"pretty\" (got {:?})",
                self.log_format
            ));
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            problems.push("database.url must start with sqlite: or postgres://".into());
        }
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            problems.push("tls.cert_file and tls.key_file go together".into());
        }
        for p in &self.trusted_proxies {
            if crate::client_ip::parse_range(p).is_none() {
                problems.push(format!(
                    "trusted_proxies: {p:?} is neither an IP address nor a CIDR range"
                ));
            }
        }
        if !(1..=100).contains(&self.webhooks.max_attempts) {
            problems.push("webhooks.max_attempts must be 1 to 100".into());
        }
        if self.webhooks.timeout_ms == 0 {
            problems.push("webhooks.timeout_ms must be positive".into());
        }
        let n = &self.notifications;
        if n.max_attempts == 0 {
            problems.push("notifications.max_attempts must be at least 1".into());
        }
        if n.backoff_secs == 0 || n.backoff_max_secs < n.backoff_secs {
            problems.push(
                "notifications.backoff_secs must be positive and at most backoff_max_secs".into(),
            );
        }
        if !n.webhook.url.is_empty() {
            match url::Url::parse(&n.webhook.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => problems.push(format!(
                    "notifications.webhook.url {:?} is not an http(s) URL",
                    n.webhook.url
                )),
            }
            if n.webhook.secret_file.as_os_str().is_empty() {
                problems.push("notifications.webhook.secret_file is required with a url".into());
            }
        }
        if !n.smtp.host.is_empty() {
            if !matches!(n.smtp.security.as_str(), "starttls" | "tls" | "none") {
                problems.push(format!(
                    "notifications.smtp.security must be \"starttls\", \"tls\" or \"none\" (got {:?})",
                    n.smtp.security
                ));
            }
            if keyplane_core::notification::validate_contact_email(&n.smtp.from).is_err() {
                problems.push("notifications.smtp.from must be an email address".into());
            }
            if !n.smtp.username.is_empty() && n.smtp.password_file.as_os_str().is_empty() {
                problems
                    .push("notifications.smtp.password_file is required with a username".into());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The default tenant's origins: configured, or the public URL's origin.
    pub fn default_tenant_origins(&self) -> Vec<String> {
        if !self.default_tenant.origins.is_empty() {
            return self.default_tenant.origins.clone();
        }
        match url::Url::parse(&self.public_url) {
            Ok(u) => vec![u.origin().ascii_serialization()],
            Err(_) => vec![],
        }
    }

    pub fn default_tenant_hostnames(&self) -> Vec<String> {
        if self.default_tenant.hostnames.is_empty() {
            vec![self.default_tenant.rp_id.clone()]
        } else {
            self.default_tenant.hostnames.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let s = Settings::default();
        assert!(s.validate().is_ok());
        assert!(s.listen.ip().is_loopback());
        assert_eq!(
            s.default_tenant_origins(),
            vec!["http://localhost:8080".to_string()]
        );
        assert!(s.database_url().starts_with("sqlite:keyplane-data"));
        assert_eq!(s.acquire_timeout(), std::time::Duration::from_secs(10));
    }

    #[test]
    fn the_connection_wait_is_bounded() {
        let mut s = Settings::default();
        s.database.acquire_timeout_secs = 2;
        assert!(s.validate().is_ok());
        assert_eq!(s.acquire_timeout(), std::time::Duration::from_secs(2));
        s.database.acquire_timeout_secs = 301;
        let problems = s.validate().unwrap_err();
        assert!(problems[0].contains("acquire_timeout_secs"), "{problems:?}");
    }

    #[test]
    fn validation_reports_every_problem() {
        let s = Settings {
            ceremony_ttl_secs: 0,
            session_ttl_secs: -1,
            public_url: "nope".into(),
            ..Settings::default()
        };
        let problems = s.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn notification_sinks_are_checked_together() {
        let mut s = Settings::default();
        assert!(s.notifications.file.enabled, "the file sink is the default");
        assert_eq!(
            s.notifications_file(),
            PathBuf::from("keyplane-data/notifications.log")
        );
        s.notifications.webhook.url = "ftp://example.com/hook".into();
        s.notifications.smtp.host = "relay.example.com".into();
        s.notifications.smtp.security = "ssl".into();
        s.notifications.smtp.from = "keyplane".into();
        s.notifications.smtp.username = "keyplane".into();
        s.notifications.max_attempts = 0;
        s.notifications.backoff_max_secs = 1;
        let problems = s.validate().unwrap_err();
        assert_eq!(problems.len(), 7, "{problems:?}");
        for p in [
            "webhook.url",
            "webhook.secret_file",
            "smtp.security",
            "smtp.from",
            "smtp.password_file",
            "max_attempts",
            "backoff_secs",
        ] {
            assert!(problems.iter().any(|x| x.contains(p)), "{p}: {problems:?}");
        }
    }
}
