//! An authentication response (WebAuthn JSON: base64url fields, authenticator data, client
//! data JSON, signature, user handle): decoding never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(a) = keyplane_webauthn::ParsedAssertion::from_json(&v) {
            let _ = (a.credential_id(), a.user_handle(), a.authenticator_data());
        }
    }
});
