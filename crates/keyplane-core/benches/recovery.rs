//! The cost of a recovery code: hashing one (Argon2id, default parameters: 19 MiB, 2 passes) when
//! codes are generated, and verifying one against a stored hash — a redemption does at least ten
//! such verifications whatever the account (so that its timing says nothing), so its CPU cost is
//! ten times the second figure.
//!
//! `cargo bench -p keyplane-core --bench recovery`

use criterion::{criterion_group, criterion_main, Criterion};
use keyplane_core::RecoveryCode;

fn recovery(c: &mut Criterion) {
    let mut rng = rand::rng();
    let code = RecoveryCode::generate(&mut rng);
    let phc = code.hash(&mut rng);
    let mut g = c.benchmark_group("recovery_code");
    g.sample_size(20);
    g.bench_function("hash", |b| b.iter(|| code.hash(&mut rand::rng())));
    g.bench_function("verify", |b| b.iter(|| assert!(code.verify(&phc))));
    g.finish();
}

criterion_group!(benches, recovery);
criterion_main!(benches);
