//! `keyplane doctor`: what is wrong with a deployment, in plain words. Each check says `ok`,
//! `warn` (works, but look at it) or `fail` (something will not work), and what to do.
//!
//! It reads; it changes nothing (opening the database runs pending migrations, as every command
//! does, so the level reported is the one the binary brings).

use crate::App;
use keyplane_core::Tenant;
use keyplane_store::SqlStore;
use serde::Serialize;
use std::path::Path;

/// One finding.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `tenant default: origins`.
    pub check: String,
    /// `ok`, `warn` or `fail`.
    pub status: &'static str,
    pub message: String,
}

fn check(check: impl Into<String>, status: &'static str, message: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        status,
        message: message.into(),
    }
}

/// Clock skew (milliseconds) beyond which sessions and ceremonies go wrong.
const SKEW_WARN_MS: i64 = 2_000;
const SKEW_FAIL_MS: i64 = 30_000;
/// An MDS BLOB older than this is stale even before its `nextUpdate`.
const MDS_STALE_DAYS: i64 = 45;

/// Every check, in a stable order.
pub async fn run(app: &App, store: &SqlStore) -> Vec<Check> {
    let mut out = vec![];
    database(app, store, &mut out).await;
    match app.store.list_tenants().await {
        Ok(tenants) => {
            for t in &tenants {
                origins(t, &mut out);
                clients(app, t, &mut out).await;
            }
        }
        Err(e) => out.push(check(
            "tenants",
            "fail",
            format!("cannot list tenants: {e}"),
        )),
    }
    keys(app, &mut out);
    tls(app, &mut out);
    mds(app, &mut out).await;
    out
}

async fn database(app: &App, store: &SqlStore, out: &mut Vec<Check>) {
    let url = keyplane_store::redact_url(&app.settings.database_url());
    let known = store.known_migration_level();
    match app.store.migration_level().await {
        Ok(level) if level == known => out.push(check(
            "database",
            "ok",
            format!("{url} is reachable, at migration {level} (this build's newest)"),
        )),
        Ok(level) if level > known => out.push(check(
            "database",
            "fail",
            format!("{url} is at migration {level}, newer than this build knows ({known}): a newer Keyplane wrote it; run that version"),
        )),
        Ok(level) => out.push(check(
            "database",
            "fail",
            format!("{url} is at migration {level}, this build expects {known}"),
        )),
        Err(e) => out.push(check("database", "fail", format!("{url}: {e}"))),
    }
    match store.database_time().await {
        Ok(None) => out.push(check(
            "clock",
            "ok",
            "SQLite runs in this process: no second clock to disagree with",
        )),
        Ok(Some(db)) => {
            let skew = (app.clock.now().0 - db.0).abs();
            let status = if skew > SKEW_FAIL_MS {
                "fail"
            } else if skew > SKEW_WARN_MS {
                "warn"
            } else {
                "ok"
            };
            out.push(check(
                "clock",
                status,
                format!(
                    "this host and the database server differ by {skew} ms{}",
                    if status == "ok" {
                        ""
                    } else {
                        ": run NTP on both (ceremonies, sessions and audit times depend on it)"
                    }
                ),
            ));
        }
        Err(e) => out.push(check(
            "clock",
            "warn",
            format!("cannot read the database's clock: {e}"),
        )),
    }
}

/// Each origin must lie within the RP ID (the same host or a subdomain), over https except on
/// localhost. An origin outside it works only through WebAuthn Related Origin Requests, which
/// the RP ID's site must publish — Keyplane cannot check that from here.
fn origins(t: &Tenant, out: &mut Vec<Check>) {
    let name = format!("tenant {}: origins", t.name);
    if t.origins.is_empty() {
        out.push(check(
            name,
            "fail",
            "no origin: no browser can register or sign in",
        ));
        return;
    }
    let mut problems = vec![];
    let mut warnings = vec![];
    for o in &t.origins {
        let Ok(url) = url::Url::parse(o) else {
            problems.push(format!("{o} is not a URL"));
            continue;
        };
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let within = host == t.rp_id || host.ends_with(&format!(".{}", t.rp_id));
        if !within {
            warnings.push(format!(
                "{o} is outside the RP ID {}: browsers accept it only if https://{}/.well-known/webauthn lists it (Related Origin Requests); Keyplane cannot check that offline",
                t.rp_id, t.rp_id
            ));
        }
        match url.scheme() {
            "https" => {}
            "http" if host == "localhost" => warnings.push(format!(
                "{o} is plain http: fine on localhost for development, not for users"
            )),
            _ => problems.push(format!(
                "{o} must be https (browsers refuse passkeys elsewhere, except on localhost)"
            )),
        }
    }
    if !problems.is_empty() {
        out.push(check(name, "fail", problems.join("; ")));
    } else if !warnings.is_empty() {
        out.push(check(name, "warn", warnings.join("; ")));
    } else {
        out.push(check(
            name,
            "ok",
            format!(
                "{} origin(s), all within the RP ID {}",
                t.origins.len(),
                t.rp_id
            ),
        ));
    }
}

async fn clients(app: &App, t: &Tenant, out: &mut Vec<Check>) {
    let name = format!("tenant {}: machine clients", t.name);
    match app.list_clients(t).await {
        Err(e) => out.push(check(name, "fail", e.message)),
        Ok(list) => {
            let mut notes = vec![];
            let mut worst = "ok";
            for c in &list {
                for f in &c.findings {
                    let (level, what) = match *f {
                        "expired" => ("fail", "has expired"),
                        "owner_inactive" => {
                            ("fail", "has no active owner with a role: it is refused")
                        }
                        "expiring" => ("warn", "expires within 14 days"),
                        "no_secret" => ("warn", "has no secret yet"),
                        "never_rotated" => ("warn", "was never rotated"),
                        "unused" => ("warn", "was not used for 30 days"),
                        _ => ("warn", "needs a look"),
                    };
                    if level == "fail" || worst == "ok" {
                        worst = level;
                    }
                    notes.push(format!(
                        "{} ({}) {what}",
                        c.client.name,
                        c.client.kind.as_str()
                    ));
                }
            }
            if notes.is_empty() {
                out.push(check(
                    name,
                    "ok",
                    format!("{} client(s), nothing to report", list.len()),
                ));
            } else {
                out.push(check(name, worst, notes.join("; ")));
            }
        }
    }
}

#[cfg(unix)]
fn private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
}

#[cfg(not(unix))]
fn private(_: &Path) -> bool {
    true
}

fn keys(app: &App, out: &mut Vec<Check>) {
    let s = &app.settings;
    for (what, path, missing) in [
        (
            "audit checkpoint key",
            s.audit_key_dir().join("signing.key"),
            "fail",
        ),
        (
            "OpenID Connect signing key",
            s.oidc_key_dir().join("signing.pem"),
            "fail",
        ),
        // Created on first use: its absence only means no webhook endpoint has had a secret.
        ("webhook key", s.webhook_key_file(), "ok"),
    ] {
        let status = if !path.exists() {
            missing
        } else if !private(&path) {
            "fail"
        } else {
            "ok"
        };
        let message = match status {
            "ok" if !path.exists() => {
                format!("{} not created yet (made on first use)", path.display())
            }
            "ok" => format!(
                "{} is present and readable by its owner only",
                path.display()
            ),
            _ if !path.exists() => format!("{} is missing", path.display()),
            _ => format!("{} is readable by others: chmod 600 it", path.display()),
        };
        out.push(check(what, status, message));
    }
}

/// A certificate expiring within this many days is reported.
const CERT_WARN_DAYS: u64 = 14;

fn tls(app: &App, out: &mut Vec<Check>) {
    let public = &app.settings.public_url;
    let tls = &app.settings.tls;
    if tls.enabled() {
        use rustls::pki_types::pem::PemObject;
        let read = rustls::pki_types::CertificateDer::from_pem_file(&tls.cert_file)
            .map_err(|e| e.to_string())
            .and_then(|der| {
                keyplane_webauthn::inspect::certificate_view(&der).map_err(|e| e.message)
            });
        let now = std::time::SystemTime::now();
        out.push(match read {
            Err(e) => check("tls", "fail", format!("{}: {e}", tls.cert_file.display())),
            Ok(c) if now > c.not_after => check(
                "tls",
                "fail",
                format!(
                    "the certificate {} ({}) has expired",
                    tls.cert_file.display(),
                    c.subject
                ),
            ),
            Ok(c) => {
                let days = c
                    .not_after
                    .duration_since(now)
                    .map(|d| d.as_secs() / 86_400)
                    .unwrap_or(0);
                let status = if days < CERT_WARN_DAYS { "warn" } else { "ok" };
                check(
                    "tls",
                    status,
                    format!(
                        "Keyplane serves TLS with {} ({}), which expires in {days} day(s){}",
                        tls.cert_file.display(),
                        c.subject,
                        if status == "warn" {
                            ": renew it, then send SIGHUP"
                        } else {
                            ""
                        }
                    ),
                )
            }
        });
        return;
    }
    if public.starts_with("https://") {
        out.push(check(
            "tls",
            "ok",
            format!("{public} is https; Keyplane speaks plain HTTP behind the proxy that terminates TLS: check that certificate's expiry there"),
        ));
    } else if public.contains("://localhost") {
        out.push(check(
            "tls",
            "ok",
            format!("{public}: development on localhost"),
        ));
    } else {
        out.push(check(
            "tls",
            "fail",
            format!("public_url {public} is not https: browsers refuse passkeys there"),
        ));
    }
}

async fn mds(app: &App, out: &mut Vec<Check>) {
    match app.catalogue().await {
        Err(e) => out.push(check("authenticator metadata", "fail", e.message)),
        Ok(c) => match &c.blob {
            None => out.push(check(
                "authenticator metadata",
                "warn",
                "no FIDO MDS BLOB imported: models are unnamed and attestation is trusted only through the policy's trusted_roots (keyplane mds import)",
            )),
            Some(b) => {
                let today = time::OffsetDateTime::now_utc().date().to_string();
                let age_days = (app.clock.now().0 - b.imported_at.0) / 86_400_000;
                let (status, message) = if b.next_update < today {
                    ("warn", format!("BLOB {} was due for an update on {}: import a newer one", b.number, b.next_update))
                } else if age_days > MDS_STALE_DAYS {
                    ("warn", format!("BLOB {} was imported {age_days} days ago: import the current one", b.number))
                } else {
                    ("ok", format!("BLOB {} imported {age_days} day(s) ago, next update {}", b.number, b.next_update))
                };
                out.push(check("authenticator metadata", status, message));
            }
        },
    }
}

/// Whether any check failed.
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == "fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(rp_id: &str, origins: &[&str]) -> Tenant {
        Tenant {
            id: keyplane_core::TenantId::generate(),
            name: "t".into(),
            rp_id: rp_id.into(),
            rp_name: "T".into(),
            origins: origins.iter().map(|o| o.to_string()).collect(),
            hostnames: vec![],
            created_at: keyplane_core::Timestamp(0),
        }
    }

    fn status(rp_id: &str, list: &[&str]) -> (&'static str, String) {
        let mut out = vec![];
        origins(&tenant(rp_id, list), &mut out);
        (out[0].status, out[0].message.clone())
    }

    #[test]
    fn origins_are_judged_against_the_rp_id() {
        assert_eq!(
            status(
                "example.com",
                &["https://example.com", "https://login.example.com"]
            )
            .0,
            "ok"
        );
        assert_eq!(status("localhost", &["http://localhost:8080"]).0, "warn");
        let (s, m) = status("example.com", &["https://example.org"]);
        assert_eq!(s, "warn");
        assert!(m.contains("Related Origin Requests"), "{m}");
        assert_eq!(
            status("example.com", &["http://login.example.com"]).0,
            "fail"
        );
        assert_eq!(status("example.com", &["not a url"]).0, "fail");
        assert_eq!(status("example.com", &[]).0, "fail");
        assert_eq!(
            status("example.com", &["https://notexample.com"]).0,
            "warn",
            "a suffix is not a subdomain"
        );
    }
}
