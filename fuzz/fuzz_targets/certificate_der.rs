//! One DER certificate (attestation chains, the TLS certificate `keyplane doctor` reads).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keyplane_webauthn::inspect::certificate_view(data);
});
