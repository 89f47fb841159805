//! `keyplane-loadgen policy-fill`: fills a tenant with users, their populations and passkeys of
//! realistic authenticator models, to measure `keyplane policy simulate` on a large tenant.
//!
//! Everything goes through the store: [`SqlStore::import_users`] writes, per transaction, a
//! batch of users (rows as `create_user` writes them), their population memberships and
//! credentials (as `register_credential` writes them), and appends the events a server would
//! have recorded (`user.created`, `user.populations_changed`, `credential.registered`,
//! `credential.revoked`) to the tenant's chain, so `keyplane audit verify` still finds the log
//! intact. Each credential has a valid, distinct P-256 public key (COSE, ES256) and library
//! state built by the WebAuthn adapter from that key; the private keys are not kept, so nobody
//! can sign in with these passkeys.
//!
//! ```text
//! cargo run --release -p keyplane-loadgen -- policy-fill --database-url sqlite:/tmp/kp/keyplane.db \
//!   --users 100000 --credentials-per-user 2
//! ```
//!
//! The shape is fixed by `--seed`: the populations (`regulated` + `workforce` 10 %, `workforce`
//! 55 %, `contractors` 15 %, `shared-devices` 5 %, none 15 %), 1, 2, 2 or 3 passkeys per user in
//! turn with `--credentials-per-user 2` (N-1, N, N, N+1 in general), the models in [`MODELS`],
//! one security key in five without user verification, and 2 % of passkeys revoked. Ids, user
//! handles, credential ids and keys are random. The same shape is evaluated in memory by
//! `keyplane-core`'s `benches/policy.rs`.
//!
//! Only loopback PostgreSQL hosts are accepted, and at most 1,000,000 users per run.

use crate::audit_fill::local_database;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use keyplane_core::audit::{Actor, NewEvent, Outcome};
use keyplane_core::*;
use keyplane_store::{AuditBatch, ImportedUser, SqlStore, Store};
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{ProjectivePoint, Scalar};
use serde_json::json;
use std::io::Write;
use std::time::Instant;

const MAX_USERS: u64 = 1_000_000;

#[derive(Args)]
pub struct PolicyFillArgs {
    /// Database: `sqlite:PATH` (created if missing) or `postgres://…` on a loopback host.
    #[arg(long)]
    database_url: String,
    /// Users to create (at most 1,000,000).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_USERS))]
    users: u64,
    /// Mean passkeys per user: users get N-1, N, N and N+1 in turn.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=20))]
    credentials_per_user: u64,
    /// Tenant to fill; created (rp_id `localhost`) if it does not exist.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Users per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// Usernames are PREFIX0000000, PREFIX0000001, ...; the fill refuses a prefix already used.
    #[arg(long, default_value = "pf")]
    username_prefix: String,
    /// Fixes the shape (populations, models, flags); ids and keys are random regardless.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// An authenticator model and what its passkeys look like when registered with Keyplane
/// (`attestation: direct`; the TPM statements of Windows Hello are recorded as `unverifiable`).
pub struct Model {
    pub name: &'static str,
    pub aaguid: &'static str,
    /// Percent of all passkeys.
    pub share: u64,
    pub format: &'static str,
    pub attestation_type: &'static str,
    pub synced: bool,
    pub transports: &'static [&'static str],
    pub credential_id_len: usize,
}

#[rustfmt::skip]
pub const MODELS: &[Model] = &[
    Model { name: "iCloud Keychain", aaguid: "fbfc3007-154e-4ecc-8c0b-6e020557d7bd", share: 28, format: "none", attestation_type: "none", synced: true, transports: &["hybrid", "internal"], credential_id_len: 20 },
    Model { name: "Google Password Manager", aaguid: "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4", share: 22, format: "none", attestation_type: "none", synced: true, transports: &["hybrid", "internal"], credential_id_len: 16 },
    Model { name: "YubiKey 5 Series", aaguid: "ee882879-721c-4913-9775-3dfcce97072a", share: 12, format: "packed", attestation_type: "basic", synced: false, transports: &["nfc", "usb"], credential_id_len: 64 },
    Model { name: "Windows Hello", aaguid: "08987058-cadc-4b81-b6e1-30de50dcbe96", share: 12, format: "tpm", attestation_type: "unverifiable", synced: false, transports: &["internal"], credential_id_len: 32 },
    Model { name: "1Password", aaguid: "bada5566-a7aa-401f-bd96-45619a55120d", share: 8, format: "none", attestation_type: "none", synced: true, transports: &["hybrid", "internal"], credential_id_len: 16 },
    Model { name: "Passkey", aaguid: "00000000-0000-0000-0000-000000000000", share: 7, format: "none", attestation_type: "none", synced: true, transports: &["internal"], credential_id_len: 16 },
    Model { name: "Chrome on Mac", aaguid: "adce0002-35bc-c60a-648b-0b25f1f05503", share: 5, format: "none", attestation_type: "none", synced: false, transports: &["internal"], credential_id_len: 32 },
    Model { name: "YubiKey 5 Series with NFC", aaguid: "fa2b99dc-9e39-4257-8f92-4a30d23c4118", share: 4, format: "packed", attestation_type: "basic", synced: false, transports: &["nfc", "usb"], credential_id_len: 64 },
    Model { name: "YubiKey 5 Series", aaguid: "cb69481e-8ff7-4039-93ec-0a2729a154a8", share: 2, format: "packed", attestation_type: "basic", synced: false, transports: &["usb"], credential_id_len: 64 },
];

/// SplitMix64: the fill's shape as a pure function of the seed and an index.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The model of the `n`th passkey.
pub fn model(seed: u64, n: u64) -> &'static Model {
    let mut pick = mix(seed ^ n.wrapping_mul(0x0001_0000_0001)) % 100;
    for m in MODELS {
        if pick < m.share {
            return m;
        }
        pick -= m.share;
    }
    // The shares add up to 100 (tested), so the loop always returns.
    &MODELS[0]
}

/// The populations of the `i`th user.
pub fn populations(seed: u64, i: u64) -> &'static [&'static str] {
    match mix(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xabcd) % 100 {
        0..=9 => &["regulated", "workforce"],
        10..=64 => &["workforce"],
        65..=79 => &["contractors"],
        80..=84 => &["shared-devices"],
        _ => &[],
    }
}

/// Passkeys of the `i`th user: N-1, N, N, N+1 in turn.
pub fn passkeys_of(mean: u64, i: u64) -> u64 {
    match i % 4 {
        0 => mean - 1,
        3 => mean + 1,
        _ => mean,
    }
}

/// Distinct valid P-256 public keys: a random start point, then one addition of the generator
/// per key (much cheaper than a scalar multiplication each; the private keys are not kept).
struct Keys(ProjectivePoint);

impl Keys {
    fn new() -> Self {
        let start = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([7; 8]),
        );
        Keys(ProjectivePoint::GENERATOR * Scalar::from(start | 1))
    }

    /// The next key, COSE-encoded as authenticators send ES256 keys (77 bytes).
    fn next_cose(&mut self) -> Vec<u8> {
        self.0 += ProjectivePoint::GENERATOR;
        let point = self.0.to_affine().to_sec1_point(false);
        let (x, y) = (point.x(), point.y());
        let mut cose = Vec::with_capacity(77);
        // {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
        cose.extend_from_slice(&[0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20]);
        cose.extend_from_slice(x.map(|x| x.as_slice()).unwrap_or(&[0; 32]));
        cose.extend_from_slice(&[0x22, 0x58, 0x20]);
        cose.extend_from_slice(y.map(|y| y.as_slice()).unwrap_or(&[0; 32]));
        cose
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(len);
    out
}

/// One batch of users `from..to`, with the events a server would have recorded for them.
struct Batch {
    users: Vec<ImportedUser>,
    events: Vec<NewEvent>,
    credentials: u64,
    revoked: u64,
}

struct Shape<'a> {
    tenant: &'a TenantId,
    seed: u64,
    mean: u64,
    prefix: &'a str,
    now: Timestamp,
}

fn batch(shape: &Shape, keys: &mut Keys, from: u64, to: u64) -> anyhow::Result<Batch> {
    let admin = Actor::admin("cli:keyplane-loadgen");
    let mut b = Batch {
        users: Vec::with_capacity((to - from) as usize),
        events: Vec::new(),
        credentials: 0,
        revoked: 0,
    };
    const DAY_MS: u64 = 86_400_000;
    for i in from..to {
        let r = mix(shape.seed ^ i.wrapping_mul(0x9e37_79b9));
        let created = Timestamp(shape.now.0 - ((r % (365 * DAY_MS)) as i64) - DAY_MS as i64);
        let user = User {
            id: UserId::generate(),
            tenant_id: shape.tenant.clone(),
            username: format!("{}{i:07}", shape.prefix),
            display_name: format!("User {i:07}"),
            user_handle: random_bytes(USER_HANDLE_BYTES),
            status: UserStatus::Active,
            role: None,
            created_at: created,
            re_enrol_reason: None,
            contact_email: None,
        };
        b.events.push(
            NewEvent::new(admin.clone(), "user.created", "user", user.id.as_str())
                .details(json!({ "username": user.username, "role": null })),
        );
        let populations: Vec<String> = populations(shape.seed, i)
            .iter()
            .map(|p| p.to_string())
            .collect();
        if !populations.is_empty() {
            b.events.push(
                NewEvent::new(
                    admin.clone(),
                    "user.populations_changed",
                    "user",
                    user.id.as_str(),
                )
                .details(json!({ "from": [], "to": populations })),
            );
        }
        let mut credentials = Vec::new();
        for k in 0..passkeys_of(shape.mean, i) {
            let n = i * (shape.mean + 1) + k;
            let m = model(shape.seed, n);
            let flags = mix(shape.seed ^ n ^ 0x5555);
            // One security key in five has no PIN; platform authenticators always verify.
            let user_verified =
                m.synced || m.transports[0] == "internal" || !flags.is_multiple_of(5);
            let revoked = (flags >> 8).is_multiple_of(50);
            let sign_count = if m.synced {
                0
            } else {
                ((flags >> 16) % 500) as u32
            };
            let credential_id = random_bytes(m.credential_id_len);
            let public_key = keys.next_cose();
            let library_state = keyplane_webauthn::RelyingParty::library_state_from_cose(
                &credential_id,
                &public_key,
                sign_count,
                user_verified,
            )
            .map_err(|e| anyhow!("library state: {}", e.message))?;
            let registered = Timestamp(created.0 + ((flags >> 24) % DAY_MS) as i64);
            let c = Credential {
                id: CredentialRecordId::generate(),
                tenant_id: shape.tenant.clone(),
                user_id: user.id.clone(),
                credential_id,
                public_key,
                sign_count,
                aaguid: m.aaguid.to_string(),
                transports: m.transports.iter().map(|t| t.to_string()).collect(),
                backup_eligible: m.synced,
                backup_state: m.synced,
                attestation_format: m.format.to_string(),
                attestation_type: m.attestation_type.to_string(),
                user_verified,
                nickname: m.name.to_string(),
                created_at: registered,
                last_used_at: (!flags.is_multiple_of(3))
                    .then(|| Timestamp(shape.now.0 - ((flags >> 32) % (30 * DAY_MS)) as i64)),
                status: if revoked {
                    CredentialStatus::Revoked
                } else {
                    CredentialStatus::Active
                },
                status_reason: None,
                library_state,
                // Security keys with a verified statement: trusted, as after an MDS import.
                attestation_trusted: m.attestation_type == "basic" && !m.synced,
            };
            b.events.push(
                NewEvent::new(
                    Actor::user(&user.id),
                    "credential.registered",
                    "credential",
                    c.id.as_str(),
                )
                .details(json!({
                    "user": user.id,
                    "purpose": "enrolment",
                    "enrolment": null,
                    "nickname": c.nickname,
                    "aaguid": c.aaguid,
                    "attestation_format": c.attestation_format,
                    "attestation_type": c.attestation_type,
                    "backup_eligible": c.backup_eligible,
                    "backup_state": c.backup_state,
                    "user_verified": c.user_verified,
                    "transports": c.transports,
                })),
            );
            if revoked {
                b.revoked += 1;
                b.events.push(
                    NewEvent::new(
                        Actor::user(&user.id),
                        "credential.revoked",
                        "credential",
                        c.id.as_str(),
                    )
                    .outcome(Outcome::Success, "removed_by_user")
                    .details(json!({ "user": user.id, "nickname": c.nickname })),
                );
            }
            b.credentials += 1;
            credentials.push(c);
        }
        b.users.push(ImportedUser {
            user,
            populations,
            credentials,
        });
    }
    Ok(b)
}

pub async fn run(args: PolicyFillArgs) -> anyhow::Result<()> {
    local_database(&args.database_url)?;
    if args.username_prefix.is_empty() || args.username_prefix.len() > 32 {
        bail!("--username-prefix must be 1 to 32 characters");
    }
    crate::audit_fill::create_sqlite_dir(&args.database_url)?;
    let store = SqlStore::connect(&args.database_url, 4)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot open {}: {e}",
                keyplane_store::redact_url(&args.database_url)
            )
        })?;
    let (t, created) = crate::audit_fill::tenant(&store, &args.tenant).await?;
    let first = format!("{}{:07}", args.username_prefix, 0);
    if store.user_by_username(&t.id, &first).await?.is_some() {
        bail!(
            "tenant {} already has user {first}: choose another --username-prefix or a fresh database",
            t.name
        );
    }
    eprintln!(
        "policy-fill: tenant {} ({}{}); {} users, {} passkeys each on average, {} users per transaction",
        t.name,
        t.id,
        if created { ", created" } else { "" },
        args.users,
        args.credentials_per_user,
        args.batch
    );
    // Batches are built on a blocking thread (key arithmetic, library state) while the
    // previous one is written.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Batch>>(2);
    let (tenant_id, users, per_batch) = (t.id.clone(), args.users, args.batch);
    let (seed, mean, prefix) = (
        args.seed,
        args.credentials_per_user,
        args.username_prefix.clone(),
    );
    let producer = tokio::task::spawn_blocking(move || {
        let shape = Shape {
            tenant: &tenant_id,
            seed,
            mean,
            prefix: &prefix,
            now: SystemClock.now(),
        };
        let mut keys = Keys::new();
        let mut from = 0;
        while from < users {
            let to = (from + per_batch).min(users);
            if tx
                .blocking_send(batch(&shape, &mut keys, from, to))
                .is_err()
            {
                return;
            }
            from = to;
        }
    });
    let started = Instant::now();
    let mut last_report = Instant::now();
    let (mut done, mut credentials, mut revoked, mut events) = (0u64, 0u64, 0u64, 0u64);
    while let Some(b) = rx.recv().await {
        let b = b?;
        store
            .import_users(
                &t.id,
                &b.users,
                AuditBatch::new(SystemClock.now(), &b.events),
            )
            .await
            .with_context(|| format!("import failed after {done} users"))?;
        done += b.users.len() as u64;
        credentials += b.credentials;
        revoked += b.revoked;
        events += b.events.len() as u64;
        if last_report.elapsed().as_secs_f64() >= 2.0 || done == args.users {
            last_report = Instant::now();
            let s = started.elapsed().as_secs_f64();
            eprint!(
                "\rpolicy-fill: {done}/{} users, {credentials} passkeys, {s:.1} s, {:.0} users/s   ",
                args.users,
                done as f64 / s
            );
            let _ = std::io::stderr().flush();
        }
    }
    producer.await.context("batch builder")?;
    let wall = started.elapsed().as_secs_f64();
    eprintln!();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "tenant": t.name,
            "backend": store.backend().as_str(),
            "users": done,
            "credentials": credentials,
            "credentials_active": credentials - revoked,
            "credentials_revoked": revoked,
            "events": events,
            "batch": args.batch,
            "seed": args.seed,
            "wall_s": wall,
            "users_per_s": done as f64 / wall,
        }))?
    );
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_shares_add_up_and_every_model_is_drawn() {
        assert_eq!(MODELS.iter().map(|m| m.share).sum::<u64>(), 100);
        let mut seen = std::collections::HashMap::new();
        for n in 0..20_000 {
            *seen.entry(model(1, n).aaguid).or_insert(0u64) += 1;
        }
        for m in MODELS {
            let got = seen.get(m.aaguid).copied().unwrap_or(0) as f64 / 20_000.0 * 100.0;
            assert!(
                (got - m.share as f64).abs() < 1.5 + m.share as f64 * 0.1,
                "{}: {got:.1} % drawn, {} % wanted",
                m.name,
                m.share
            );
        }
    }

    #[test]
    fn passkeys_average_the_mean() {
        for mean in 1..=5 {
            let total: u64 = (0..1000).map(|i| passkeys_of(mean, i)).sum();
            assert_eq!(total, 1000 * mean);
        }
    }

    #[test]
    fn populations_are_those_the_benchmark_policies_declare() {
        let declared = ["regulated", "contractors", "shared-devices", "workforce"];
        for i in 0..1000 {
            for p in populations(7, i) {
                assert!(declared.contains(p), "{p}");
            }
        }
        let none = (0..10_000)
            .filter(|i| populations(7, *i).is_empty())
            .count();
        assert!(
            (1200..1800).contains(&none),
            "{none} of 10,000 in no population"
        );
    }

    #[test]
    fn keys_are_distinct_and_the_webauthn_adapter_accepts_them() {
        let mut keys = Keys::new();
        let (a, b) = (keys.next_cose(), keys.next_cose());
        assert_ne!(a, b);
        assert_eq!(a.len(), 77);
        for key in [&a, &b] {
            keyplane_webauthn::RelyingParty::library_state_from_cose(b"id", key, 0, true)
                .expect("a valid ES256 key");
        }
        let mut broken = a.clone();
        broken[76] ^= 1;
        assert!(
            keyplane_webauthn::RelyingParty::library_state_from_cose(b"id", &broken, 0, true)
                .is_err(),
            "a point off the curve is refused, so the check above means something"
        );
    }
}
