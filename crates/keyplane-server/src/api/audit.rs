//! The audit log over HTTP: events for administrators and auditors (paged, filtered), and the
//! checkpoint public keys at a well-known URL so that auditors can pin them.

use super::error::ApiResult;
use super::extract::{ApiQuery, Principal};
use crate::App;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::admin::Permission;
use keyplane_core::{Error, Timestamp};
use keyplane_store::AuditFilter;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events after this sequence number (for paging: the previous page's `next_after_seq`).
    #[serde(default)]
    after_seq: i64,
    /// Page size, 1-1000 (default 100).
    limit: Option<i64>,
    action: Option<String>,
    outcome: Option<String>,
    /// RFC 3339 times: events at or after `since`, before `until`.
    since: Option<String>,
    until: Option<String>,
}

fn parse_time(name: &str, raw: &Option<String>) -> Result<Option<Timestamp>, Error> {
    let Some(raw) = raw else { return Ok(None) };
    let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            Error::invalid(
                "invalid_time",
                format!("{name} must be an RFC 3339 time, e.g. 2026-11-25T12:00:00Z"),
            )
        })?;
    Ok(Some(Timestamp(
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    )))
}

pub async fn events(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::AuditRead).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("invalid_limit", "limit must be between 1 and 1000").into());
    }
    if q.after_seq < 0 {
        return Err(Error::invalid("invalid_after_seq", "after_seq must not be negative").into());
    }
    let filter = AuditFilter {
        after_seq: q.after_seq,
        limit,
        action: q.action,
        outcome: q.outcome,
        since: parse_time("since", &q.since)?,
        until: parse_time("until", &q.until)?,
    };
    let events = app
        .store
        .list_audit_events(&who.tenant().id, &filter)
        .await
        .map_err(Error::from)?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "events": events.iter().map(crate::audit_export::native).collect::<Vec<_>>(),
            "next_after_seq": next,
        })),
    ))
}

/// The public keys that verify checkpoints made by this node: the active key and every earlier
/// one. Pin them outside Keyplane and give them to `keyplane audit verify --trusted-keys`.
pub async fn keys(State(app): State<Arc<App>>) -> impl IntoResponse {
    let ring = app.keyring.read().unwrap_or_else(|p| p.into_inner());
    let active = ring.active().key_id.clone();
    let keys: Vec<_> = ring
        .public_keys()
        .iter()
        .map(|k| {
            let id = keyplane_core::audit::key_id(k);
            json!({ "key_id": id, "algorithm": "Ed25519", "public_key": hex::encode(k.as_bytes()), "active": id == active })
        })
        .collect();
    Json(json!({ "keys": keys }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// From genesis instead of from the latest valid checkpoint.
    full: Option<bool>,
}

/// `GET /api/v1/audit/verify`: the tenant's chain checked now — every checkpoint's signature
/// against this node's checkpoint keys, the hash chain from the latest valid checkpoint (or from
/// genesis with `full=true`), and the head. The console's "verify status"; an auditor who wants
/// an independent check runs `keyplane audit verify --trusted-keys` with pinned keys.
pub async fn verify(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::AuditRead).await?;
    let keys = crate::audit_keys::read_public_keys(&app.settings.audit_key_dir())?;
    let report = app
        .verify_audit(who.tenant(), &keys, !q.full.unwrap_or(false), &|_| {})
        .await?;
    let mut body = json!(report);
    body["ok"] = json!(report.ok());
    Ok(Json(body))
}
