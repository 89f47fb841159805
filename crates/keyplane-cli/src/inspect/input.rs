//! Finding the WebAuthn response in what an operator was handed: a `PublicKeyCredential.toJSON()`
//! object (alone or inside a request body), a HAR capture, or a log line with the JSON in it.

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use std::io::Read;

/// Which ceremony a response belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ceremony {
    Registration,
    Authentication,
}

impl Ceremony {
    pub fn as_str(self) -> &'static str {
        match self {
            Ceremony::Registration => "registration",
            Ceremony::Authentication => "authentication",
        }
    }
}

/// The credential found, and where.
#[derive(Debug)]
pub struct Found {
    pub credential: Value,
    pub ceremony: Ceremony,
    /// `json`, `har` (with the entry's method and URL) or `log`.
    pub source: String,
}

/// Reads `path` (`-` = standard input).
pub fn read(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
    }
}

/// Finds the first WebAuthn response in `text`.
pub fn find(text: &str) -> anyhow::Result<Found> {
    if text.trim().is_empty() {
        bail!("the input is empty");
    }
    if let Ok(whole) = serde_json::from_str::<Value>(text) {
        if let Some(entries) = whole
            .get("log")
            .and_then(|l| l.get("entries"))
            .and_then(Value::as_array)
        {
            return from_har(entries);
        }
        return match first_credential(&whole) {
            Some(c) => found(c, "json".into()),
            None => Err(anyhow!(
                "the input is JSON but holds no WebAuthn response (no object with \
                 response.clientDataJSON)"
            )),
        };
    }
    // Not one JSON document: a log. Try every `{` as the start of a JSON value.
    for (i, _) in text.match_indices('{') {
        let mut values = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = values.next() {
            if let Some(c) = first_credential(&v) {
                return found(c, "log".into());
            }
        }
    }
    Err(anyhow!(
        "no WebAuthn response found: the input is neither JSON nor a HAR capture, and holds no \
         JSON object with response.clientDataJSON"
    ))
}

fn from_har(entries: &[Value]) -> anyhow::Result<Found> {
    for entry in entries {
        let request = &entry["request"];
        let Some(body) = request["postData"]["text"].as_str() else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            continue;
        };
        if let Some(c) = first_credential(&v) {
            let source = format!(
                "har: {} {}",
                request["method"].as_str().unwrap_or("?"),
                request["url"].as_str().unwrap_or("?")
            );
            return found(c, source);
        }
    }
    Err(anyhow!(
        "the HAR capture has {} entries, and no request body holds a WebAuthn response (an \
         object with response.clientDataJSON)",
        entries.len()
    ))
}

fn found(credential: &Value, source: String) -> anyhow::Result<Found> {
    let response = &credential["response"];
    let ceremony = if response.get("attestationObject").is_some() {
        Ceremony::Registration
    } else if response.get("authenticatorData").is_some() || response.get("signature").is_some() {
        Ceremony::Authentication
    } else {
        bail!(
            "the response has clientDataJSON but neither attestationObject (registration) nor \
             authenticatorData (authentication)"
        )
    };
    Ok(Found {
        credential: credential.clone(),
        ceremony,
        source,
    })
}

/// The first object (depth first, in document order) with `response.clientDataJSON`.
fn first_credential(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(m) => {
            if m.get("response")
                .and_then(|r| r.get("clientDataJSON"))
                .is_some_and(Value::is_string)
            {
                return Some(v);
            }
            m.values().find_map(first_credential)
        }
        Value::Array(a) => a.iter().find_map(first_credential),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cred() -> Value {
        json!({"id": "AA", "rawId": "AA", "type": "public-key",
               "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"}})
    }

    #[test]
    fn a_credential_is_found_inside_a_request_body() {
        let f = find(&json!({"ceremony_id": "x", "credential": cred()}).to_string()).unwrap();
        assert_eq!(f.ceremony, Ceremony::Authentication);
        assert_eq!(f.source, "json");
    }

    #[test]
    fn a_credential_is_found_in_a_log_line() {
        let line = format!("2026-01-01T00:00:00Z INFO body={} status=400", cred());
        let f = find(&line).unwrap();
        assert_eq!(f.source, "log");
        assert_eq!(f.credential, cred());
    }

    #[test]
    fn a_har_without_a_credential_is_an_error() {
        let har =
            json!({"log": {"entries": [{"request": {"method": "GET", "url": "https://a/"}}]}});
        let e = find(&har.to_string()).unwrap_err().to_string();
        assert!(e.contains("no request body"), "{e}");
    }

    #[test]
    fn json_that_is_not_a_credential_is_an_error() {
        assert!(find(r#"{"hello": "world"}"#).is_err());
        assert!(find("not json at all").is_err());
        assert!(find("   ").is_err());
    }
}
