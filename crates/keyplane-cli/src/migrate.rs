//! `keyplane migrate --from sqlite:PATH --to postgres://…`: moves a deployment from SQLite to
//! PostgreSQL (keyplane_store::copy_sqlite_to_postgres), with a progress bar per table, then
//! verifies every tenant's audit chain on the target. Resumable: run it again after an
//! interruption and the rows already copied are skipped.

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};
use keyplane_server::audit_keys::read_public_keys;
use keyplane_server::{App, Settings};
use keyplane_store::SqlStore;
use std::sync::{Arc, Mutex};

pub async fn run(settings: Settings, from: String, to: String) -> anyhow::Result<()> {
    let source = from
        .strip_prefix("sqlite:")
        .map(|p| {
            p.trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or(p)
                .to_owned()
        })
        .ok_or_else(|| anyhow!("--from must be sqlite:PATH (the database to move)"))?;
    let source = std::path::PathBuf::from(source);
    if !source.is_file() {
        return Err(anyhow!(
            "{} is not a SQLite database file",
            source.display()
        ));
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        return Err(anyhow!("--to must be postgres://USER:PASSWORD@HOST/DB"));
    }
    // Bring the source to this build's schema first (as any command would), then read it.
    let src = SqlStore::connect(&format!("sqlite:{}", source.display()), 1)
        .await
        .map_err(|e| anyhow!("cannot open {}: {e}", source.display()))?;
    src.close().await;
    let target = SqlStore::connect(&to, settings.max_connections())
        .await
        .map_err(|e| anyhow!("cannot open {}: {e}", keyplane_store::redact_url(&to)))?;
    eprintln!(
        "copying {} into {} (stop the servers using the SQLite database first; run again to resume)",
        source.display(),
        keyplane_store::redact_url(&to)
    );
    let bar: Mutex<Option<(String, ProgressBar)>> = Mutex::new(None);
    let style = ProgressStyle::with_template("{msg:24} [{bar:30}] {pos}/{len} rows ({per_sec})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let report =
        keyplane_store::copy_sqlite_to_postgres(&source, &target, &|table, done, total| {
            let Ok(mut current) = bar.lock() else { return };
            if current.as_ref().map(|(t, _)| t.as_str()) != Some(table) {
                if let Some((_, b)) = current.take() {
                    b.finish_and_clear();
                }
                let b = ProgressBar::new(total).with_style(style.clone());
                b.set_message(table.to_owned());
                *current = Some((table.to_owned(), b));
            }
            if let Some((_, b)) = current.as_ref() {
                b.set_position(done);
            }
        })
        .await
        .context("the copy stopped (run the same command again to resume)")?;
    if let Ok(mut current) = bar.lock() {
        if let Some((_, b)) = current.take() {
            b.finish_and_clear();
        }
    }
    let rows: u64 = report.iter().map(|t| t.rows).sum();
    let skipped: u64 = report.iter().map(|t| t.skipped).sum();
    eprintln!(
        "copied {} table(s), {rows} row(s) ({skipped} already there)",
        report.len()
    );

    eprintln!("verifying the audit chain on the target …");
    let key_dir = settings.audit_key_dir();
    let trusted = if key_dir.exists() {
        read_public_keys(&key_dir).map_err(|e| anyhow!("{}", e.message))?
    } else {
        vec![]
    };
    let mut target_settings = settings.clone();
    target_settings.database.url = to.clone();
    let app = App::new(
        Arc::new(target.clone()),
        Arc::new(keyplane_core::SystemClock),
        target_settings,
    )
    .map_err(|e| anyhow!("{}", e.message))?;
    let mut events = 0;
    for t in app.store.list_tenants().await? {
        let r = app
            .verify_audit(&t, &trusted, false, &|_| {})
            .await
            .map_err(|e| anyhow!("{}", e.message))?;
        if !r.ok() {
            return Err(anyhow!(
                "the audit chain of tenant {} does not verify on the target: {}",
                t.name,
                r.problems
                    .iter()
                    .map(|p| p.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        events += r.events_checked;
    }
    target.close().await;
    println!(
        "migrated {rows} row(s) to {}; {events} audit event(s) verified. Point database.url at it and start the servers.",
        keyplane_store::redact_url(&to)
    );
    Ok(())
}
