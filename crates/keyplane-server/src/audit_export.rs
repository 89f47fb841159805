//! Audit events on the wire: Keyplane's native JSON (one object per event, as `keyplane audit
//! export --format jsonl` writes and `GET /api/v1/audit/events` returns) and OCSF-shaped events
//! for SIEM ingestion (`--format ocsf`). The field-by-field mapping is in docs/audit.md.

use keyplane_core::audit::AuditEvent;
use serde_json::{json, Value};

/// OCSF schema version the mapping follows.
pub const OCSF_VERSION: &str = "1.3.0";

fn details(e: &AuditEvent) -> Value {
    serde_json::from_str(&e.details).unwrap_or(Value::Null)
}

/// The native shape: every recorded field, `details` as an object, hashes in hex. Re-encoding
/// `details` canonically (docs/audit.md) gives back the hashed text, so an export can be
/// verified without the database.
pub fn native(e: &AuditEvent) -> Value {
    json!({
        "tenant_id": e.tenant_id,
        "seq": e.seq,
        "id": e.id,
        "time": e.time.to_rfc3339(),
        "time_ms": e.time.0,
        "actor": { "type": e.actor_type, "id": e.actor_id },
        "action": e.action,
        "target": { "type": e.target_type, "id": e.target_id },
        "outcome": e.outcome,
        "reasons": e.reasons,
        "request_id": e.request_id,
        "client_ip": e.client_ip,
        "user_agent": e.user_agent,
        "details": details(e),
        "prev_hash": hex::encode(&e.prev_hash),
        "hash": hex::encode(&e.hash),
    })
}

/// OCSF class and activity for an action: (class_uid, class_name, category_uid, activity_id, activity_name).
fn ocsf_class(action: &str) -> (u32, &'static str, u32, u32, &'static str) {
    match action {
        "authentication.succeeded" | "authentication.failed" => {
            (3002, "Authentication", 3, 1, "Logon")
        }
        "session.ended" | "session.others_ended" => (3002, "Authentication", 3, 2, "Logoff"),
        "user.created" => (3001, "Account Change", 3, 1, "Create"),
        "credential.registered" | "registration.failed" => {
            (3001, "Account Change", 3, 10, "MFA Factor Enable")
        }
        "credential.revoked" => (3001, "Account Change", 3, 11, "MFA Factor Disable"),
        "credential.suspended" => (3001, "Account Change", 3, 9, "Lock"),
        a if a.starts_with("credential.")
            || a.starts_with("enrolment.")
            || a.starts_with("user.") =>
        {
            (3001, "Account Change", 3, 99, "Other")
        }
        _ => (6003, "API Activity", 6, 99, "Other"),
    }
}

/// An OCSF-shaped event (Authentication 3002, Account Change 3001, or API Activity 6003).
pub fn ocsf(e: &AuditEvent) -> Value {
    let (class_uid, class_name, category_uid, activity_id, activity_name) = ocsf_class(&e.action);
    let d = details(e);
    let success = e.outcome == "success";
    let user_uid = if e.target_type == "user" {
        Some(e.target_id.clone())
    } else {
        d.get("user").and_then(Value::as_str).map(str::to_string)
    };
    let mut out = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": if category_uid == 3 { "Identity & Access Management" } else { "Application Activity" },
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": e.time.0,
        "severity_id": if success { 1 } else { 3 },
        "severity": if success { "Informational" } else { "Medium" },
        "status_id": if success { 1 } else { 2 },
        "status": if success { "Success" } else { "Failure" },
        "status_code": e.reasons.first(),
        "message": e.action,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": e.id,
            "sequence": e.seq,
            "log_name": "audit",
            "tenant_uid": e.tenant_id,
            "correlation_uid": e.request_id,
            "product": { "name": "Keyplane", "vendor_name": "Keyplane", "version": env!("CARGO_PKG_VERSION") },
        },
        "actor": { "user": { "uid": e.actor_id, "type": e.actor_type } },
        "src_endpoint": { "ip": e.client_ip },
        "http_request": { "user_agent": e.user_agent, "uid": e.request_id },
        "unmapped": {
            "action": e.action,
            "outcome": e.outcome,
            "target": { "type": e.target_type, "id": e.target_id },
            "details": d,
            "hash": hex::encode(&e.hash),
            "prev_hash": hex::encode(&e.prev_hash),
        },
    });
    if let Some(uid) = user_uid {
        out["user"] = json!({ "uid": uid });
    }
    if class_uid == 3002 {
        out["auth_protocol_id"] = json!(99);
        out["auth_protocol"] = json!("WebAuthn");
        if let Some(amr) = d.get("amr").and_then(Value::as_array) {
            out["is_mfa"] = json!(amr.iter().any(|a| a == "mfa"));
        }
        if let Some(s) = d.get("session").and_then(Value::as_str) {
            out["session"] = json!({ "uid": s });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_core::audit::{Actor, NewEvent, Outcome, GENESIS};
    use keyplane_core::{TenantId, Timestamp};

    fn event(action: &'static str, outcome: Outcome) -> AuditEvent {
        let ev = NewEvent::new(Actor::anonymous(), action, "user", "u-1")
            .outcome(
                outcome,
                if outcome == Outcome::Success {
                    ""
                } else {
                    "signature_invalid"
                },
            )
            .details(json!({ "amr": ["pop", "user", "mfa"], "session": "s-1" }));
        AuditEvent::seal(
            &TenantId::generate(),
            1,
            "e-1".into(),
            Timestamp(1_700_000_000_000),
            &ev,
            &GENESIS,
        )
    }

    #[test]
    fn sign_ins_map_to_ocsf_authentication() {
        let o = ocsf(&event("authentication.succeeded", Outcome::Success));
        assert_eq!(
            (o["class_uid"].as_u64(), o["type_uid"].as_u64()),
            (Some(3002), Some(300201))
        );
        assert_eq!(o["status_id"], 1);
        assert_eq!(o["is_mfa"], true);
        assert_eq!(o["user"]["uid"], "u-1");
        assert_eq!(o["session"]["uid"], "s-1");
        let f = ocsf(&event("authentication.failed", Outcome::Failure));
        assert_eq!(
            (f["status_id"].as_u64(), f["status_code"].as_str()),
            (Some(2), Some("signature_invalid"))
        );
    }

    #[test]
    fn credential_changes_map_to_account_change() {
        assert_eq!(
            ocsf(&event("credential.registered", Outcome::Success))["type_uid"],
            300110
        );
        assert_eq!(
            ocsf(&event("credential.revoked", Outcome::Success))["type_uid"],
            300111
        );
        assert_eq!(
            ocsf(&event("tenant.created", Outcome::Success))["class_uid"],
            6003
        );
    }

    #[test]
    fn native_details_re_encode_to_the_hashed_text() {
        let e = event("authentication.succeeded", Outcome::Success);
        let n = native(&e);
        assert_eq!(
            keyplane_core::audit::canonical_json(&n["details"]),
            e.details
        );
        assert_eq!(n["hash"], hex::encode(&e.hash));
    }
}
