//! The verify path, on recorded vectors from `../shared/vectors` (beside the repository root):
//! `finish_authentication` on an ES256 assertion (stateless: the same stored counter every
//! iteration, so every iteration does the full verification) and `finish_registration` on a
//! `none` attestation.
//!
//! `cargo bench -p keyplane-webauthn --bench verify -- --quick`

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use keyplane_webauthn::{ParsedAssertion, RelyingParty, RpConfig, VerifyOptions};
use serde_json::Value;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn vector(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn b64url(s: &str) -> Vec<u8> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(s).expect("vector field is base64url")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector has no string {key}"))
}

/// Some vectors record numbers as strings ("77"); both mean the same.
fn u32_of(v: &Value, key: &str) -> u32 {
    let n = v[key]
        .as_u64()
        .or_else(|| v[key].as_str().and_then(|s| s.parse().ok()));
    n.and_then(|n| u32::try_from(n).ok())
        .unwrap_or_else(|| panic!("vector has no counter {key}"))
}

fn relying_party(v: &Value) -> RelyingParty {
    let origins = v["expected_origins"]
        .as_array()
        .expect("expected_origins")
        .iter()
        .map(|o| o.as_str().expect("origin").to_string())
        .collect();
    RelyingParty::new(&RpConfig {
        rp_id: str_of(v, "rp_id").to_string(),
        rp_name: "bench".into(),
        origins,
        timeout: Duration::from_secs(300),
    })
    .expect("relying party")
}

fn finish_authentication(c: &mut Criterion) {
    let v = vector("authentication/es256-localhost-pywebauthn.json");
    let rp = relying_party(&v);
    let state = RelyingParty::authentication_state_for(&b64url(str_of(&v, "challenge")), false)
        .expect("state");
    let assertion = ParsedAssertion::from_json(&v["credential"]).expect("assertion");
    let prior = u32_of(&v, "prior_sign_count");
    let key = b64url(str_of(&v, "credential_public_key"));
    let stored =
        RelyingParty::library_state_from_cose(assertion.credential_id(), &key, prior, false)
            .expect("library state");
    // Fail loudly rather than measure an error path.
    let once = rp
        .finish_authentication(&state, &assertion, &stored, prior)
        .expect("the vector verifies");
    assert_eq!(once.sign_count, prior + 1);

    c.bench_function("finish_authentication/es256", |b| {
        b.iter(|| {
            rp.finish_authentication(
                black_box(&state),
                black_box(&assertion),
                black_box(&stored),
                prior,
            )
        })
    });
    c.bench_function("parse_and_finish_authentication/es256", |b| {
        b.iter(|| {
            let a = ParsedAssertion::from_json(black_box(&v["credential"])).expect("assertion");
            rp.finish_authentication(&state, &a, &stored, prior)
        })
    });
}

fn finish_registration(c: &mut Criterion) {
    let v = vector("registration/none-localhost-pywebauthn.json");
    let rp = relying_party(&v);
    let state =
        RelyingParty::registration_state_for(&b64url(str_of(&v, "challenge")), &[-7, -257], false)
            .expect("state");
    let opts = VerifyOptions::default();
    rp.finish_registration(&state, &v["credential"], &opts)
        .expect("the vector verifies");

    c.bench_function("finish_registration/none-es256", |b| {
        b.iter(|| rp.finish_registration(black_box(&state), black_box(&v["credential"]), &opts))
    });
}

criterion_group!(benches, finish_authentication, finish_registration);
criterion_main!(benches);
