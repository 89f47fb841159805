//! Policy evaluation, without I/O: the registration and sign-in decisions for one passkey, the
//! step-up decision, and `simulate` over an in-memory population of 100,000 users with 200,000
//! credentials, with the policies of `benches/policies/` (four populations, AAGUID allow and deny
//! lists, step-up rules; the candidate changes verdicts in three populations).
//!
//! `cargo bench -p keyplane-core --bench policy`
//!
//! The population has the same shape as what `keyplane-loadgen policy-fill` writes to a
//! database (populations, authenticator models and their shares), so `simulate` here is the
//! pure part of `keyplane policy simulate` on a filled database.

use criterion::{criterion_group, criterion_main, Criterion};
use keyplane_core::assurance::Aal;
use keyplane_core::policy::{
    self, registration, sign_in, simulate, step_up, AuthenticatorFacts, Policy, SimUser, Subject,
    Verdict,
};
use keyplane_core::Timestamp;
use std::hint::black_box;

const CURRENT: &str = include_str!("policies/current.toml");
const CANDIDATE: &str = include_str!("policies/candidate.toml");

fn parse(name: &str, text: &str) -> Policy {
    policy::parse(text).unwrap_or_else(|e| panic!("{name} does not lint: {e:?}"))
}

/// An authenticator model and its share of credentials (in percent): the models and shares of
/// `keyplane-loadgen policy-fill` (its `MODELS`).
struct Model {
    aaguid: &'static str,
    share: u64,
    format: &'static str,
    /// The attestation statement is verified (`packed` from a security key; not `none`, not
    /// Windows Hello's TPM statement, which the WebAuthn library cannot judge).
    verified: bool,
    synced: bool,
    /// A security key, which may have no PIN set (one in five here).
    security_key: bool,
}

#[rustfmt::skip]
const MODELS: &[Model] = &[
    // iCloud Keychain, Google Password Manager
    Model { aaguid: "fbfc3007-154e-4ecc-8c0b-6e020557d7bd", share: 28, format: "none", verified: false, synced: true, security_key: false },
    Model { aaguid: "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4", share: 22, format: "none", verified: false, synced: true, security_key: false },
    // YubiKey 5 Series (firmware 5.2, 5.4)
    Model { aaguid: "ee882879-721c-4913-9775-3dfcce97072a", share: 12, format: "packed", verified: true, synced: false, security_key: true },
    // Windows Hello
    Model { aaguid: "08987058-cadc-4b81-b6e1-30de50dcbe96", share: 12, format: "tpm", verified: false, synced: false, security_key: false },
    // 1Password; no AAGUID (authenticators that hide their model)
    Model { aaguid: "bada5566-a7aa-401f-bd96-45619a55120d", share: 8, format: "none", verified: false, synced: true, security_key: false },
    Model { aaguid: "00000000-0000-0000-0000-000000000000", share: 7, format: "none", verified: false, synced: true, security_key: false },
    // Chrome on Mac (profile-bound)
    Model { aaguid: "adce0002-35bc-c60a-648b-0b25f1f05503", share: 5, format: "none", verified: false, synced: false, security_key: false },
    // YubiKey 5 Series with NFC; YubiKey 5 Series (firmware 5.1)
    Model { aaguid: "fa2b99dc-9e39-4257-8f92-4a30d23c4118", share: 4, format: "packed", verified: true, synced: false, security_key: true },
    Model { aaguid: "cb69481e-8ff7-4039-93ec-0a2729a154a8", share: 2, format: "packed", verified: true, synced: false, security_key: true },
];

/// SplitMix64: a fixed, well-mixed sequence, so every run evaluates the same population.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn facts(seed: u64) -> AuthenticatorFacts {
    let mut pick = mix(seed) % 100;
    let model = MODELS
        .iter()
        .find(|m| {
            if pick < m.share {
                true
            } else {
                pick -= m.share;
                false
            }
        })
        .unwrap_or(&MODELS[0]);
    AuthenticatorFacts {
        aaguid: model.aaguid.to_string(),
        attestation_format: model.format.to_string(),
        attestation_verified: model.verified,
        // Security keys with a verified statement chain to their MDS roots, as after an import.
        attestation_trusted: model.verified && model.security_key,
        backup_eligible: model.synced,
        // One security key in five has no PIN set.
        user_verified: !model.security_key || !mix(seed ^ 0x55).is_multiple_of(5),
        // What the catalogue adds for models the FIDO MDS lists (security keys here).
        model: model.security_key.then(|| "YubiKey 5 Series".to_string()),
        mds_statuses: if model.security_key {
            vec!["FIDO_CERTIFIED_L1".into(), "FIDO_CERTIFIED".into()]
        } else {
            vec![]
        },
        certification: model
            .security_key
            .then_some(keyplane_core::mds::CertificationLevel::L1),
    }
}

fn populations(i: u64) -> Vec<String> {
    let names: &[&str] = match mix(i ^ 0xabcd) % 100 {
        0..=9 => &["regulated", "workforce"],
        10..=64 => &["workforce"],
        65..=79 => &["contractors"],
        80..=84 => &["shared-devices"],
        _ => &[],
    };
    names.iter().map(|s| s.to_string()).collect()
}

/// `users` users with 1, 2, 2 or 3 credentials in turn (two on average).
fn population(users: u64) -> Vec<SimUser> {
    let mut seed = 0;
    (0..users)
        .map(|i| SimUser {
            populations: populations(i),
            credentials: (0..[1, 2, 2, 3][(i % 4) as usize])
                .map(|_| {
                    seed += 1;
                    facts(seed)
                })
                .collect(),
        })
        .collect()
}

fn decisions(c: &mut Criterion) {
    let current = parse("current.toml", CURRENT);
    let regulated = Subject {
        populations: vec!["regulated".into(), "workforce".into()],
    };
    let workforce = Subject {
        populations: vec!["workforce".into()],
    };
    let icloud = AuthenticatorFacts {
        aaguid: MODELS[0].aaguid.into(),
        attestation_format: "none".into(),
        attestation_verified: false,
        attestation_trusted: false,
        backup_eligible: true,
        user_verified: true,
        ..Default::default()
    };
    let yubikey = AuthenticatorFacts {
        aaguid: MODELS[2].aaguid.into(),
        attestation_format: "packed".into(),
        attestation_verified: true,
        attestation_trusted: true,
        backup_eligible: false,
        user_verified: true,
        model: Some("YubiKey 5 Series".into()),
        mds_statuses: vec!["FIDO_CERTIFIED_L1".into()],
        certification: Some(keyplane_core::mds::CertificationLevel::L1),
    };
    // Fail loudly rather than measure a path other than the one named.
    assert_eq!(
        registration(&current, &workforce, &icloud, true, 1).verdict,
        Verdict::Allow
    );
    assert_eq!(
        registration(&current, &regulated, &icloud, true, 1).verdict,
        Verdict::Deny
    );
    assert_eq!(
        sign_in(&current, &regulated, &yubikey).verdict,
        Verdict::Allow
    );
    assert_eq!(
        sign_in(&current, &regulated, &icloud).verdict,
        Verdict::ReEnrolmentRequired
    );
    let (t0, now) = (Timestamp(1_000_000), Timestamp(1_100_000));
    assert_eq!(
        step_up(&current, "payments.transfer", Aal::Aal2, t0, now).verdict,
        Verdict::Allow
    );

    let mut g = c.benchmark_group("registration");
    g.bench_function("allowed", |b| {
        b.iter(|| registration(black_box(&current), &workforce, black_box(&icloud), true, 1))
    });
    g.bench_function("denied", |b| {
        b.iter(|| registration(black_box(&current), &regulated, black_box(&icloud), true, 1))
    });
    g.finish();
    let mut g = c.benchmark_group("sign_in");
    g.bench_function("allowed", |b| {
        b.iter(|| sign_in(black_box(&current), &regulated, black_box(&yubikey)))
    });
    g.bench_function("re_enrolment_required", |b| {
        b.iter(|| sign_in(black_box(&current), &regulated, black_box(&icloud)))
    });
    g.finish();
    c.bench_function("step_up/third_rule", |b| {
        b.iter(|| step_up(black_box(&current), "payments.transfer", Aal::Aal2, t0, now))
    });
}

fn simulation(c: &mut Criterion) {
    let current = parse("current.toml", CURRENT);
    let candidate = parse("candidate.toml", CANDIDATE);
    let users = population(100_000);
    let credentials: usize = users.iter().map(|u| u.credentials.len()).sum();
    assert_eq!(credentials, 200_000);
    let report = simulate(&current, &candidate, &users, &|_| {});
    let changed: u64 = report
        .populations
        .values()
        .map(|p| p.credentials_becoming_non_compliant)
        .sum();
    assert!(changed > 0, "the candidate changes verdicts");
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10);
    g.bench_function("100k_users_200k_credentials", |b| {
        b.iter(|| simulate(black_box(&current), black_box(&candidate), &users, &|_| {}))
    });
    g.finish();
}

criterion_group!(benches, decisions, simulation);
criterion_main!(benches);
