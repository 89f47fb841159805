//! What arrives from clients, tidied before webauthn-rs parses it: the base64 spelling of binary
//! members, and the one clientDataJSON check (tokenBinding status) the library does not make.
//! Nothing here decides whether a signature or an attestation is valid.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use keyplane_core::Error;
use serde_json::Value;

/// The binary members of a `PublicKeyCredential` in WebAuthn's JSON serialisation.
const BINARY_MEMBERS: &[&[&str]] = &[
    &["rawId"],
    &["response", "clientDataJSON"],
    &["response", "attestationObject"],
    &["response", "authenticatorData"],
    &["response", "signature"],
    &["response", "userHandle"],
];

/// Standard-alphabet base64, padded or not. Trailing bits must be zero (canonical encoding).
const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Re-spells binary members written in the standard base64 alphabet (`+`, `/`) as unpadded
/// base64url. WebAuthn JSON is base64url, but clients that encode with `btoa` (and older RP
/// helper scripts) send the standard alphabet; the bytes are the same and are verified the same,
/// while webauthn-rs-proto accepts only base64url. A member that mixes the two alphabets, or is
/// not canonical base64 at all, is left alone for the library to reject (`malformed_base64`).
pub(crate) fn normalise_base64(credential: &Value) -> Value {
    let mut out = credential.clone();
    for path in BINARY_MEMBERS {
        let Some(slot) = member_mut(&mut out, path) else {
            continue;
        };
        let Some(text) = slot.as_str() else { continue };
        let standard_only = text.contains(['+', '/']) && !text.contains(['-', '_']);
        if standard_only {
            if let Ok(bytes) = STANDARD_ANY_PADDING.decode(text) {
                *slot = Value::from(URL_SAFE_NO_PAD.encode(bytes));
            }
        }
    }
    out
}

fn member_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |node, key| node.get_mut(*key))
}

/// Checks clientDataJSON before anything is consumed: it must be a JSON object with the string
/// members every ceremony reads (webauthn-rs checks their values), and, where present,
/// `tokenBinding.status` must be `present` or `supported` (WebAuthn Level 2 §5.8.1) — webauthn-rs
/// parses that member but never looks at it, so the draft-era `not-supported` is refused here.
pub(crate) fn check_client_data(client_data_json: &[u8]) -> Result<(), Error> {
    let client_data: Value = serde_json::from_slice(client_data_json)
        .map_err(|_| Error::invalid("malformed_client_data", "clientDataJSON is not valid JSON"))?;
    for member in ["type", "challenge", "origin"] {
        if !client_data.get(member).is_some_and(Value::is_string) {
            return Err(Error::invalid(
                "malformed_client_data",
                format!("clientDataJSON has no string member {member:?}"),
            ));
        }
    }
    let Some(token_binding) = client_data.get("tokenBinding").and_then(Value::as_object) else {
        return Ok(());
    };
    match token_binding.get("status").and_then(Value::as_str) {
        Some("present" | "supported") => Ok(()),
        other => Err(Error::invalid(
            "malformed_client_data",
            format!("clientDataJSON.tokenBinding.status must be \"present\" or \"supported\", not {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn standard(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn standard_alphabet_members_are_respelled_as_base64url() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let v = json!({ "rawId": standard(&bytes), "response": { "signature": standard(&[0xfb, 0xff]) } });
        let n = normalise_base64(&v);
        assert_eq!(n["rawId"], Value::from(URL_SAFE_NO_PAD.encode(&bytes)));
        assert_eq!(n["response"]["signature"], Value::from("-_8"));
    }

    #[test]
    fn base64url_and_unparseable_members_are_left_alone() {
        let v = json!({ "id": "a+b", "rawId": "ab-_", "response": { "signature": "a+_b", "userHandle": "a/c=x" } });
        assert_eq!(normalise_base64(&v), v);
    }

    const BASE: &str = r#""type":"webauthn.create","challenge":"AA","origin":"https://a.test""#;

    #[test]
    fn client_data_must_be_an_object_with_the_members_ceremonies_read() {
        let ok = |s: &str| check_client_data(s.as_bytes());
        assert!(ok(&format!("{{{BASE}}}")).is_ok());
        for bad in [
            "not json",
            "[]",
            r#"{"type":"webauthn.create"}"#,
            r#"{"type":1,"challenge":"AA","origin":"x"}"#,
        ] {
            assert_eq!(ok(bad).unwrap_err().code, "malformed_client_data", "{bad}");
        }
    }

    #[test]
    fn token_binding_status_must_be_a_defined_value() {
        let ok =
            |tb: &str| check_client_data(format!("{{{BASE},\"tokenBinding\":{tb}}}").as_bytes());
        assert!(ok(r#"{"status":"present","id":"AA"}"#).is_ok());
        assert!(ok(r#"{"status":"supported"}"#).is_ok());
        assert_eq!(
            ok(r#"{"status":"not-supported"}"#).unwrap_err().code,
            "malformed_client_data"
        );
        assert_eq!(ok("{}").unwrap_err().code, "malformed_client_data");
    }
}
