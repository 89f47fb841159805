//! `keyplane-loadgen audit-fill`: appends realistic audit events to a tenant's chain, to measure
//! `keyplane audit verify` over a long log.
//!
//! Events go through the store's only write path for the log, [`Store::append_events`]: each
//! call is one transaction that takes the tenant's chain head, seals the events after it and
//! moves the head. Nothing is written to `audit_events` directly, so the result is a log exactly
//! as a server would have written it (and `keyplane audit verify` must find it intact).
//!
//! ```text
//! cargo run --release -p keyplane-loadgen -- audit-fill --database-url sqlite:/tmp/kp/keyplane.db --events 1000000
//! cargo run --release -p keyplane-loadgen -- audit-fill \
//!   --database-url postgres://keyplane:keyplane@localhost/kp_audit_bench --events 1000000
//! ```
//!
//! Only loopback PostgreSQL hosts are accepted (as for `signin --url`), and at most 10,000,000
//! events per run.

use anyhow::{anyhow, bail, Context};
use clap::Args;
use keyplane_core::audit::{Actor, NewEvent, RequestContext};
use keyplane_core::{Clock, SystemClock, Tenant, TenantId};
use keyplane_store::{AuditBatch, SqlStore, Store};
use serde_json::json;
use std::io::Write;
use std::net::IpAddr;
use std::time::Instant;

/// Upper bound on `--events`.
const MAX_EVENTS: u64 = 10_000_000;

#[derive(Args)]
pub struct AuditFillArgs {
    /// Database: `sqlite:PATH` (created if missing) or `postgres://…` on a loopback host.
    #[arg(long)]
    database_url: String,
    /// Events to append (at most 10,000,000).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=MAX_EVENTS))]
    events: u64,
    /// Tenant whose chain grows; created (rp_id `localhost`) if it does not exist.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Events per `append_events` call (one transaction each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// Distinct simulated users the events are spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    users: u64,
}

/// Refuses a PostgreSQL URL whose host is not loopback (`localhost`, `127.x.x.x`, `::1`), or
/// that names its host elsewhere (a `host=` parameter, a Unix socket); accepts `sqlite:` URLs.
pub fn local_database(url: &str) -> anyhow::Result<()> {
    if url.starts_with("sqlite:") {
        return Ok(());
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("--database-url must be sqlite:PATH or postgres://… (loopback host)");
    }
    let parsed = url::Url::parse(url).with_context(|| "--database-url is not a URL".to_string())?;
    if parsed
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("hostaddr"))
    {
        bail!("refusing --database-url with a host parameter: only a loopback host in the URL is accepted");
    }
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "refusing {}: audit-fill only writes to a database on a loopback host \
             (localhost, 127.x.x.x, ::1)",
            keyplane_store::redact_url(url)
        );
    }
    Ok(())
}

/// A sign-in's event, with the fields and details `finish_authentication` records (about 640
/// bytes canonical: 220-byte details, a 101-byte user agent).
fn sign_in_event(users: &[String], i: u64) -> NewEvent {
    let user = &users[(i % users.len() as u64) as usize];
    NewEvent::new(
        Actor {
            kind: keyplane_core::audit::ActorType::User,
            id: user.clone(),
        },
        "authentication.succeeded",
        "user",
        user.clone(),
    )
    .context(&RequestContext {
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        client_ip: Some(format!("127.0.{}.{}", (i >> 8) & 255, i & 255)),
        user_agent: Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
                .into(),
        ),
    })
    .details(json!({
        "session": uuid::Uuid::new_v4().to_string(),
        "credential": uuid::Uuid::new_v4().to_string(),
        "aal": "aal2",
        "amr": ["hwk", "user"],
        "user_verified": true,
        "backup_state": true,
        "backup_state_changed": false,
        "sign_count": 0,
    }))
}

/// Creates the directory of a `sqlite:` database file if it is missing.
pub fn create_sqlite_dir(url: &str) -> anyhow::Result<()> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path
            .split('?')
            .next()
            .unwrap_or(path)
            .trim_start_matches("//");
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The tenant named `name`, created (with its `tenant.created` event) if it does not exist;
/// `true` if it was created.
pub async fn tenant(store: &SqlStore, name: &str) -> anyhow::Result<(Tenant, bool)> {
    if let Some(t) = store.tenant_by_name(name).await? {
        return Ok((t, false));
    }
    let now = SystemClock.now();
    let t = Tenant {
        id: TenantId::generate(),
        name: name.to_string(),
        rp_id: "localhost".into(),
        rp_name: format!("audit-fill {name}"),
        origins: vec!["http://localhost:8080".into()],
        hostnames: vec![format!("{name}.audit-fill.localhost")],
        created_at: now,
    };
    let created = NewEvent::new(
        Actor::admin("cli:keyplane-loadgen"),
        "tenant.created",
        "tenant",
        t.id.as_str(),
    )
    .details(json!({
        "name": t.name, "rp_id": t.rp_id, "origins": t.origins, "hostnames": t.hostnames,
    }));
    store
        .create_tenant(&t, AuditBatch::new(now, &[created]))
        .await?;
    Ok((t, true))
}

pub async fn run(args: AuditFillArgs) -> anyhow::Result<()> {
    local_database(&args.database_url)?;
    create_sqlite_dir(&args.database_url)?;
    let store = SqlStore::connect(&args.database_url, 4)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot open {}: {e}",
                keyplane_store::redact_url(&args.database_url)
            )
        })?;
    let (t, created) = tenant(&store, &args.tenant).await?;
    let (head0, _) = store.audit_head(&t.id).await?;
    eprintln!(
        "audit-fill: tenant {} ({}{}), chain at {head0}; appending {} events in batches of {}",
        t.name,
        t.id,
        if created { ", created" } else { "" },
        args.events,
        args.batch
    );
    let users: Vec<String> = (0..args.users)
        .map(|_| keyplane_core::UserId::generate().to_string())
        .collect();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut done = 0u64;
    let mut batch = Vec::with_capacity(args.batch as usize);
    while done < args.events {
        let n = args.batch.min(args.events - done);
        batch.clear();
        batch.extend((0..n).map(|k| sign_in_event(&users, done + k)));
        store
            .append_events(&t.id, AuditBatch::new(SystemClock.now(), &batch))
            .await
            .with_context(|| format!("append failed after {done} events"))?;
        done += n;
        if last_report.elapsed().as_secs_f64() >= 2.0 || done == args.events {
            last_report = Instant::now();
            let s = started.elapsed().as_secs_f64();
            eprint!(
                "\raudit-fill: {done}/{} events, {s:.1} s, {:.0} events/s   ",
                args.events,
                done as f64 / s
            );
            let _ = std::io::stderr().flush();
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let (head, _) = store.audit_head(&t.id).await?;
    eprintln!();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "tenant": t.name,
            "backend": store.backend().as_str(),
            "appended": done,
            "chain_head": head,
            "batch": args.batch,
            "wall_s": wall,
            "events_per_s": done as f64 / wall,
        }))?
    );
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_databases_are_accepted() {
        for ok in [
            "sqlite:/tmp/x.db",
            "postgres://u:p@localhost/db",
            "postgresql://u:p@127.0.0.1:5432/db",
            "postgres://u@[::1]/db",
        ] {
            assert!(local_database(ok).is_ok(), "{ok}");
        }
        for bad in [
            "postgres://u:p@db.example.com/db",
            "postgres://u:p@10.0.0.1/db",
            "postgres://u:p@localhost.example.com/db",
            "postgres://u:p@localhost/db?host=db.example.com",
            "postgres:///db?host=/var/run/postgresql",
            "mysql://localhost/db",
        ] {
            assert!(local_database(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fill_event_is_about_the_size_of_a_sign_in() {
        let users = vec![keyplane_core::UserId::generate().to_string()];
        let e = keyplane_core::audit::AuditEvent::seal(
            &TenantId::generate(),
            1,
            uuid::Uuid::new_v4().to_string(),
            keyplane_core::Timestamp(1),
            &sign_in_event(&users, 7),
            &keyplane_core::audit::GENESIS,
        );
        let n = e.canonical_bytes().len();
        assert!((500..=800).contains(&n), "{n} bytes");
    }
}
