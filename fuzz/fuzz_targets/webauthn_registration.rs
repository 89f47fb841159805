//! A registration response as a browser would send it (WebAuthn JSON: base64url fields, the
//! CBOR attestation object, client data JSON): decoding never panics, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(r) = keyplane_webauthn::ParsedRegistration::from_json(&v) {
            let _ = r.facts();
            let _ = keyplane_webauthn::inspect::attestation_certificates(r.attestation_object());
        }
    }
});
