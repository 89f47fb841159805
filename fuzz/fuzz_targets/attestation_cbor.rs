//! Raw CBOR as an attestation object: the map, `attStmt`, `x5c` and the certificates in it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keyplane_webauthn::inspect::attestation_certificates(data);
});
