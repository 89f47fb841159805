//! The admin API for webhook deliveries: the outbox as it stands (`audit.read`: the payloads are
//! audit events) and an administrator's replay of a dead letter (`clients.manage`). Endpoints
//! themselves are machine clients of kind `webhook` (`/api/v1/admin/clients`).

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, Principal};
use crate::App;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use keyplane_core::admin::Permission;
use keyplane_core::webhook::{DeliveryStatus, WebhookDelivery};
use keyplane_core::{Error, MachineClientId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A delivery as the API and the CLI show it: the body as sent, never a signature or secret.
pub fn delivery_json(d: &WebhookDelivery) -> Value {
    json!({
        "id": d.id,
        "client_id": d.client_id,
        "event_type": d.event_type,
        "event_id": d.event_id,
        "event_seq": d.event_seq,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": (d.status == DeliveryStatus::Pending).then(|| d.next_attempt_at.to_rfc3339()),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at.to_rfc3339(),
        "delivered_at": d.delivered_at.map(|t| t.to_rfc3339()),
        "payload": serde_json::from_str::<Value>(&d.payload).unwrap_or(Value::Null),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    status: Option<String>,
    client: Option<String>,
    limit: Option<i64>,
}

/// Parses a `status` filter.
pub fn delivery_status(raw: &str) -> Result<DeliveryStatus, Error> {
    DeliveryStatus::parse(raw)
        .ok_or_else(|| Error::invalid("invalid_status", "status is pending, delivered or dead"))
}

/// `GET /api/v1/admin/webhooks/deliveries`, newest first.
pub async fn list(
    State(app): State<Arc<App>>,
    who: Principal,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::AuditRead).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("invalid_limit", "limit must be between 1 and 1000").into());
    }
    let status = q.status.as_deref().map(delivery_status).transpose()?;
    let client = match &q.client {
        None => None,
        Some(c) => Some(MachineClientId::parse(c).ok_or_else(|| {
            Error::invalid("invalid_client_id", "client must be a machine client id")
        })?),
    };
    let list = app
        .list_webhook_deliveries(
            who.tenant(),
            &keyplane_store::DeliveryFilter {
                status,
                client,
                limit,
            },
        )
        .await?;
    Ok(Json(
        json!({ "deliveries": list.iter().map(delivery_json).collect::<Vec<_>>() }),
    ))
}

fn delivery_id(raw: &str) -> Result<&str, ApiError> {
    // Ids are `msg_` and 32 hex digits; anything else names nothing.
    let ok = raw.len() == 36
        && raw.starts_with("msg_")
        && raw[4..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(raw)
    } else {
        Err(Error::not_found("delivery_not_found", "no such webhook delivery").into())
    }
}

/// `GET /api/v1/admin/webhooks/deliveries/{id}`.
pub async fn get(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::AuditRead).await?;
    let d = app
        .webhook_delivery(who.tenant(), delivery_id(&id)?)
        .await?;
    Ok(Json(delivery_json(&d)))
}

/// `POST /api/v1/admin/webhooks/deliveries/{id}/replay`.
pub async fn replay(
    State(app): State<Arc<App>>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    who.require(&app, Permission::ClientsManage).await?;
    let d = app
        .replay_webhook_delivery(who.tenant(), delivery_id(&id)?, &who.caller())
        .await?;
    Ok(Json(delivery_json(&d)))
}
