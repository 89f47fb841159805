//! A SCIM filter (RFC 7644 §3.4.2.2) as an identity provider sends it in `?filter=`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keyplane_server::api::scim::filter::parse(text);
    }
});
