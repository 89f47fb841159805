//! A policy document (TOML) as an administrator or the admin API submits it: parsing and
//! linting never panic, and every problem comes back as a lint error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keyplane_core::policy::parse(text);
    }
});
