//! `keyplane backup FILE` and `keyplane restore FILE`: an online, consistent copy of the SQLite
//! database while the server runs, and its restore into an empty data directory; both verify the
//! copy's audit chain before they call it good. PostgreSQL deployments use `pg_dump` /
//! `pg_restore` (docs/operations.md).

use anyhow::{anyhow, Context};
use keyplane_server::audit_keys::{parse_trusted_keys, read_public_keys};
use keyplane_server::{App, Settings};
use keyplane_store::SqlStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Verifies every tenant's chain in the database at `path` with the checkpoint keys of
/// `trusted_keys` (a file of hex keys, as for `keyplane audit verify --trusted-keys`) or else of
/// the data directory's key ring (read before anything could create a new one there); returns
/// (tenants, events) or what is wrong.
async fn verify_copy(
    settings: &Settings,
    path: &Path,
    trusted_keys: Option<&Path>,
) -> anyhow::Result<(usize, u64)> {
    let key_dir = settings.audit_key_dir();
    let trusted = match trusted_keys {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            parse_trusted_keys(&text).map_err(|e| anyhow!("{}: {}", file.display(), e.message))?
        }
        None if key_dir.exists() => {
            read_public_keys(&key_dir).map_err(|e| anyhow!("{}", e.message))?
        }
        None => vec![],
    };
    let url = format!("sqlite:{}", path.display());
    let store = SqlStore::connect(&url, 2)
        .await
        .map_err(|e| anyhow!("cannot open {}: {e}", path.display()))?;
    let app = App::new(
        Arc::new(store.clone()),
        Arc::new(keyplane_core::SystemClock),
        settings.clone(),
    )
    .map_err(|e| anyhow!("{}", e.message))?;
    let (mut tenants, mut events) = (0, 0);
    for t in app.store.list_tenants().await? {
        let report = app
            .verify_audit(&t, &trusted, false, &|_| {})
            .await
            .map_err(|e| anyhow!("{}", e.message))?;
        if !report.ok() {
            store.close().await;
            return Err(anyhow!(
                "the audit chain of tenant {} in {} does not verify (restore the audit-keys/ directory first, or give --trusted-keys): {}",
                t.name,
                path.display(),
                report
                    .problems
                    .iter()
                    .map(|p| p.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        tenants += 1;
        events += report.events_checked;
    }
    store.close().await;
    Ok((tenants, events))
}

/// The SQLite file the settings name, or why there is none.
fn sqlite_path(settings: &Settings) -> anyhow::Result<PathBuf> {
    let url = settings.database_url();
    let path = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| anyhow!("the database is PostgreSQL: back it up with pg_dump and restore it with pg_restore (docs/operations.md)"))?;
    Ok(PathBuf::from(
        path.split('?')
            .next()
            .unwrap_or(path)
            .trim_start_matches("//"),
    ))
}

pub async fn backup(settings: Settings, file: PathBuf) -> anyhow::Result<()> {
    let live = sqlite_path(&settings)?;
    if !live.exists() {
        return Err(anyhow!(
            "there is no database at {} to back up",
            live.display()
        ));
    }
    if file.exists() {
        return Err(anyhow!(
            "{} exists: a backup never overwrites a file (remove it or choose another name)",
            file.display()
        ));
    }
    let store = SqlStore::connect(&settings.database_url(), 2)
        .await
        .map_err(|e| anyhow!("cannot open the database: {e}"))?;
    eprintln!("copying the database (online; the server may keep running) …");
    let copied = store.backup_into(&file).await;
    store.close().await;
    copied.with_context(|| format!("cannot write the backup {}", file.display()))?;
    eprintln!("verifying the copy's audit chain …");
    match verify_copy(&settings, &file, None).await {
        Ok((tenants, events)) => {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            println!(
                "backup {} written ({size} bytes): {tenants} tenant(s), {events} audit event(s) verified",
                file.display()
            );
            println!("also keep the key files of the data directory: audit-keys/, oidc-keys/, webhook.key");
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            Err(e.context("the backup was removed"))
        }
    }
}

pub async fn restore(
    settings: Settings,
    file: PathBuf,
    trusted_keys: Option<PathBuf>,
) -> anyhow::Result<()> {
    let target = sqlite_path(&settings)?;
    if !file.is_file() {
        return Err(anyhow!("{} is not a file", file.display()));
    }
    if target.exists() {
        return Err(anyhow!(
            "{} exists: restore only into an empty data directory (stop the server and move the old database away first)",
            target.display()
        ));
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    // The copy is checked (and brought to this version's schema) under a temporary name, and
    // only then becomes the database: an interrupted restore leaves no half database behind.
    let staging = target.with_extension("restoring");
    let _ = std::fs::remove_file(&staging);
    std::fs::copy(&file, &staging)
        .with_context(|| format!("cannot copy {} into the data directory", file.display()))?;
    eprintln!("verifying the backup's audit chain …");
    match verify_copy(&settings, &staging, trusted_keys.as_deref()).await {
        Ok((tenants, events)) => {
            for suffix in ["-wal", "-shm"] {
                let side = PathBuf::from(format!("{}{suffix}", staging.display()));
                let _ = std::fs::remove_file(side);
            }
            std::fs::rename(&staging, &target).with_context(|| {
                format!("cannot move the restored database to {}", target.display())
            })?;
            println!(
                "restored {} into {}: {tenants} tenant(s), {events} audit event(s) verified",
                file.display(),
                target.display()
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            Err(e.context("nothing was restored"))
        }
    }
}
