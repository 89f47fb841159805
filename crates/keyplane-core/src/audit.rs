//! The audit log's domain: events, their canonical encoding and hash chain, chain verification,
//! and signed checkpoints. Pure: storage appends and reads, this module decides what is valid.
//!
//! Each tenant's events form a chain: `hash = SHA-256(prev_hash ‖ canonical_bytes(event))`, the
//! first event's `prev_hash` being 32 zero bytes. The canonical encoding is documented in
//! `docs/audit.md` and is what an independent verifier re-implements.

use crate::ids::TenantId;
use crate::time::Timestamp;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of every tenant's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Who did it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    /// A signed-in user acting on their own account (or an anonymous client before sign-in).
    User,
    /// An administrator or operator (the CLI, the admin API).
    Admin,
    /// A machine client (API token, OIDC client, SCIM token).
    Machine,
    /// Keyplane itself (bootstrap, housekeeping).
    System,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::Admin => "admin",
            ActorType::Machine => "machine",
            ActorType::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(ActorType::User),
            "admin" => Some(ActorType::Admin),
            "machine" => Some(ActorType::Machine),
            "system" => Some(ActorType::System),
            _ => None,
        }
    }
}

/// The actor of an event: a type and an id (a user id, `cli:<os user>`, `bootstrap`, ...).
/// Anonymous clients (before sign-in) are `user` with id `anonymous`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorType,
    pub id: String,
}

impl Actor {
    pub fn user(id: &crate::UserId) -> Self {
        Actor {
            kind: ActorType::User,
            id: id.to_string(),
        }
    }
    pub fn anonymous() -> Self {
        Actor {
            kind: ActorType::User,
            id: "anonymous".into(),
        }
    }
    pub fn admin(id: impl Into<String>) -> Self {
        Actor {
            kind: ActorType::Admin,
            id: id.into(),
        }
    }
    /// A machine client, named `client:<id>` so that an actor id alone (as approvals keep it)
    /// tells it from a user's id.
    pub fn machine(id: &crate::MachineClientId) -> Self {
        Actor {
            kind: ActorType::Machine,
            id: format!("client:{id}"),
        }
    }
    pub fn system(id: impl Into<String>) -> Self {
        Actor {
            kind: ActorType::System,
            id: id.into(),
        }
    }
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// Verification or input failed (bad signature, replay, wrong origin, ...).
    Failure,
    /// Refused by a rule (policy, status).
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Where a request came from; recorded with every event it causes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Who is asking, and from where: what every service that changes something is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    pub context: RequestContext,
}

impl Caller {
    pub fn new(actor: Actor, context: RequestContext) -> Self {
        Caller { actor, context }
    }

    /// Keyplane itself (bootstrap, housekeeping).
    pub fn system(id: &str) -> Self {
        Caller {
            actor: Actor::system(id),
            context: RequestContext::default(),
        }
    }

    /// An operator at the command line.
    pub fn operator(name: &str) -> Self {
        Caller {
            actor: Actor::admin(format!("cli:{name}")),
            context: RequestContext::default(),
        }
    }

    /// An event by this caller.
    pub fn event(
        &self,
        action: &'static str,
        target_type: &'static str,
        target_id: impl Into<String>,
    ) -> NewEvent {
        NewEvent::new(self.actor.clone(), action, target_type, target_id).context(&self.context)
    }

    /// An event by `actor`, from this caller's request (e.g. the user a ceremony signed in).
    pub fn event_as(
        &self,
        actor: Actor,
        action: &'static str,
        target_type: &'static str,
        target_id: impl Into<String>,
    ) -> NewEvent {
        NewEvent::new(actor, action, target_type, target_id).context(&self.context)
    }
}

/// An event as the services describe it, before the store gives it a place in the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub actor: Actor,
    /// Stable dotted name, e.g. `credential.registered`.
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    pub outcome: Outcome,
    /// Stable reason codes (the error codes of a failure).
    pub reasons: Vec<String>,
    pub context: RequestContext,
    /// Further facts. Never a secret: no tokens, codes, keys or challenges.
    pub details: serde_json::Value,
}

impl NewEvent {
    pub fn new(
        actor: Actor,
        action: &'static str,
        target_type: &'static str,
        target_id: impl Into<String>,
    ) -> Self {
        NewEvent {
            actor,
            action,
            target_type,
            target_id: target_id.into(),
            outcome: Outcome::Success,
            reasons: vec![],
            context: RequestContext::default(),
            details: serde_json::Value::Object(Default::default()),
        }
    }

    /// Records a refusal: `denied` when a rule or a status refused it (403), `failure` when
    /// verification or input failed.
    pub fn refused(self, e: &crate::Error) -> Self {
        let outcome = if e.kind == crate::ErrorKind::Forbidden {
            Outcome::Denied
        } else {
            Outcome::Failure
        };
        self.outcome(outcome, e.code)
    }

    pub fn outcome(mut self, outcome: Outcome, reason: &str) -> Self {
        self.outcome = outcome;
        self.reasons = vec![reason.to_string()];
        self
    }

    pub fn context(mut self, ctx: &RequestContext) -> Self {
        self.context = ctx.clone();
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A recorded event: its place in the tenant's chain and its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub tenant_id: TenantId,
    pub seq: i64,
    pub id: String,
    pub time: Timestamp,
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub outcome: String,
    pub reasons: Vec<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The details object as JSON text, exactly as hashed.
    pub details: String,
    #[serde(with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

const MAGIC: &[u8] = b"KPAUDIT1";

/// JSON with object keys sorted (by UTF-8 bytes) at every level and no whitespace: RFC 8785
/// (JCS) for the values Keyplane records (strings, integers, booleans, null, arrays, objects).
/// Written out here because serde_json keeps insertion order when any crate in the build enables
/// its `preserve_order` feature.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn put(out: &mut Vec<u8>, field: Option<&str>) {
    match field {
        // u32 big-endian length, then the UTF-8 bytes; absent = length 0xFFFFFFFF, no bytes.
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// Writes a field whose text is produced by `write`, then fills in its length (no temporary
/// string).
fn put_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// An integer in decimal, as `i64::to_string` writes it.
fn put_decimal(out: &mut Vec<u8>, n: i64) {
    put_with(out, |out| {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            out.push(b'-');
        }
        out.extend_from_slice(&digits[i..]);
    });
}

impl AuditEvent {
    /// Places a new event in a chain after `prev_hash`, computing its hash.
    pub fn seal(
        tenant: &TenantId,
        seq: i64,
        id: String,
        time: Timestamp,
        new: &NewEvent,
        prev_hash: &[u8],
    ) -> Self {
        let mut e = AuditEvent {
            tenant_id: tenant.clone(),
            seq,
            id,
            time,
            actor_type: new.actor.kind.as_str().into(),
            actor_id: new.actor.id.clone(),
            action: new.action.into(),
            target_type: new.target_type.into(),
            target_id: new.target_id.clone(),
            outcome: new.outcome.as_str().into(),
            reasons: new.reasons.clone(),
            request_id: new.context.request_id.clone(),
            client_ip: new.context.client_ip.clone(),
            user_agent: new.context.user_agent.clone(),
            // The stored text is what is hashed; it is canonical (sorted keys, no whitespace) so
            // that an independent verifier can rebuild it from the parsed object.
            details: canonical_json(&new.details),
            prev_hash: prev_hash.to_vec(),
            hash: vec![],
        };
        e.hash = e.computed_hash().to_vec();
        e
    }

    /// The event's fields, borrowed: what the encoding and the chain checks read.
    pub fn view(&self) -> AuditEventRef<'_> {
        AuditEventRef {
            tenant_id: self.tenant_id.as_str(),
            seq: self.seq,
            id: &self.id,
            time: self.time.0,
            actor_type: &self.actor_type,
            actor_id: &self.actor_id,
            action: &self.action,
            target_type: &self.target_type,
            target_id: &self.target_id,
            outcome: &self.outcome,
            reasons: Reasons::List(&self.reasons),
            request_id: self.request_id.as_deref(),
            client_ip: self.client_ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            details: &self.details,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }

    /// The canonical encoding (docs/audit.md): magic, then each field as a u32 big-endian length
    /// and its UTF-8 bytes, in a fixed order; numbers in decimal; reasons joined by `,`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.details.len());
        self.write_canonical(&mut out);
        out
    }

    /// Appends [`AuditEvent::canonical_bytes`] to `out`, without allocating (beyond growing
    /// `out`).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        self.view().write_canonical(out)
    }

    /// `SHA-256(prev_hash ‖ canonical_bytes)`.
    pub fn computed_hash(&self) -> [u8; 32] {
        self.hash_with(&mut Vec::with_capacity(256 + self.details.len()))
    }

    /// [`AuditEvent::computed_hash`], encoding into `buf` (cleared first) so that a loop over
    /// many events reuses one allocation.
    pub fn hash_with(&self, buf: &mut Vec<u8>) -> [u8; 32] {
        self.view().hash_with(buf)
    }
}

/// An event's reasons as the encoding needs them: the list, or the list already joined by `,`
/// (field 11 of the encoding), as a store may hand it over without an allocation per event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reasons<'a> {
    List(&'a [String]),
    Joined(&'a str),
}

/// A recorded event with borrowed fields: an [`AuditEvent`] as [`AuditEvent::view`] lends it,
/// or a row as a store reads it, without copying every field into a `String` of its own. The
/// canonical encoding and the chain checks are defined on this view, so an owned event and a
/// borrowed row are hashed by one piece of code.
#[derive(Clone, Copy, Debug)]
pub struct AuditEventRef<'a> {
    pub tenant_id: &'a str,
    pub seq: i64,
    pub id: &'a str,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    pub actor_type: &'a str,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub outcome: &'a str,
    pub reasons: Reasons<'a>,
    pub request_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub details: &'a str,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

impl AuditEventRef<'_> {
    /// Appends the canonical encoding (docs/audit.md) to `out`, without allocating (beyond
    /// growing `out`).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        put(out, Some(self.tenant_id));
        put_decimal(out, self.seq);
        put(out, Some(self.id));
        put_decimal(out, self.time);
        for f in [
            self.actor_type,
            self.actor_id,
            self.action,
            self.target_type,
            self.target_id,
            self.outcome,
        ] {
            put(out, Some(f));
        }
        match self.reasons {
            Reasons::Joined(joined) => put(out, Some(joined)),
            Reasons::List(list) => put_with(out, |out| {
                for (i, r) in list.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(r.as_bytes());
                }
            }),
        }
        put(out, self.request_id);
        put(out, self.client_ip);
        put(out, self.user_agent);
        put(out, Some(self.details));
    }

    /// `SHA-256(prev_hash ‖ canonical encoding)`, with this event's own `prev_hash`, encoding
    /// into `buf` (cleared first) so that a loop over many events reuses one allocation.
    pub fn hash_with(&self, buf: &mut Vec<u8>) -> [u8; 32] {
        buf.clear();
        buf.extend_from_slice(self.prev_hash);
        self.write_canonical(buf);
        Sha256::digest(buf.as_slice()).into()
    }
}

/// Where and how a chain is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainBreak {
    /// The sequence skips or repeats: an event was deleted or inserted.
    SequenceGap { expected: i64, found: i64 },
    /// The event does not point at its predecessor's hash: an event was removed, inserted or
    /// moved before it.
    WrongPredecessor { seq: i64 },
    /// The event's content does not match its hash: a field was edited.
    ContentAltered { seq: i64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::SequenceGap { expected, found } => {
                write!(
                    f,
                    "sequence jumps from {} to {found}: events deleted, inserted or reordered",
                    expected - 1
                )
            }
            ChainBreak::WrongPredecessor { seq } => {
                write!(f, "event {seq} does not follow its predecessor: events deleted, inserted or reordered before it")
            }
            ChainBreak::ContentAltered { seq } => {
                write!(f, "event {seq} was altered after it was written")
            }
        }
    }
}

/// Checks events one by one, in sequence order.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    next_seq: i64,
    prev_hash: Vec<u8>,
    checked: u64,
    /// Encoding buffer, reused from event to event.
    buf: Vec<u8>,
}

impl ChainVerifier {
    /// From the start of a tenant's log.
    pub fn from_genesis() -> Self {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS.to_vec(),
            checked: 0,
            buf: Vec::new(),
        }
    }

    /// From a trusted point (a verified checkpoint): the next event is `seq + 1`.
    pub fn from_point(seq: i64, hash: &[u8]) -> Self {
        ChainVerifier {
            next_seq: seq + 1,
            prev_hash: hash.to_vec(),
            checked: 0,
            buf: Vec::new(),
        }
    }

    pub fn check(&mut self, e: &AuditEvent) -> Result<(), ChainBreak> {
        let e = e.view();
        let computed = e.hash_with(&mut self.buf);
        self.check_hashed(&e, &computed)
    }

    /// [`ChainVerifier::check`] for an event whose hash was computed beforehand
    /// ([`AuditEventRef::hash_with`], possibly on another thread: each event carries its own
    /// `prev_hash`, so its content can be checked apart from its neighbours). `computed` must be
    /// that hash of `e`; the checks and their order are those of `check`: sequence, then link to
    /// the predecessor, then content.
    pub fn check_hashed(
        &mut self,
        e: &AuditEventRef<'_>,
        computed: &[u8; 32],
    ) -> Result<(), ChainBreak> {
        if e.seq != self.next_seq {
            return Err(ChainBreak::SequenceGap {
                expected: self.next_seq,
                found: e.seq,
            });
        }
        if e.prev_hash != self.prev_hash.as_slice() {
            return Err(ChainBreak::WrongPredecessor { seq: e.seq });
        }
        if computed.as_slice() != e.hash {
            return Err(ChainBreak::ContentAltered { seq: e.seq });
        }
        self.next_seq += 1;
        self.prev_hash.clear();
        self.prev_hash.extend_from_slice(e.hash);
        self.checked += 1;
        Ok(())
    }

    /// The last verified sequence number and hash.
    pub fn head(&self) -> (i64, &[u8]) {
        (self.next_seq - 1, &self.prev_hash)
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }
}

/// A signed statement that a tenant's log had `seq` events ending in `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub tenant_id: TenantId,
    pub seq: i64,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
    pub signed_at: Timestamp,
    pub key_id: String,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The bytes that are signed (docs/audit.md).
    pub fn message(
        tenant: &TenantId,
        seq: i64,
        hash: &[u8],
        signed_at: Timestamp,
        key_id: &str,
    ) -> Vec<u8> {
        format!(
            "keyplane-audit-checkpoint-v1\n{}\n{}\n{}\n{}\n{}\n",
            tenant,
            seq,
            hex::encode(hash),
            signed_at.0,
            key_id
        )
        .into_bytes()
    }

    /// Whether the signature verifies with `key`.
    pub fn verify_with(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify(
            &Checkpoint::message(
                &self.tenant_id,
                self.seq,
                &self.hash,
                self.signed_at,
                &self.key_id,
            ),
            &sig,
        )
        .is_ok()
    }
}

/// An Ed25519 key that signs checkpoints, with its id (first 16 hex digits of the SHA-256 of the
/// public key).
pub struct CheckpointKey {
    pub key_id: String,
    signing: SigningKey,
}

impl CheckpointKey {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        CheckpointKey {
            key_id: key_id(&signing.verifying_key()),
            signing,
        }
    }

    pub fn generate(rng: &mut dyn rand::RngCore) -> ([u8; 32], Self) {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        (seed, Self::from_seed(&seed))
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn sign(
        &self,
        tenant: &TenantId,
        seq: i64,
        hash: &[u8],
        signed_at: Timestamp,
    ) -> Checkpoint {
        let msg = Checkpoint::message(tenant, seq, hash, signed_at, &self.key_id);
        Checkpoint {
            tenant_id: tenant.clone(),
            seq,
            hash: hash.to_vec(),
            signed_at,
            key_id: self.key_id.clone(),
            signature: self.signing.sign(&msg).to_bytes().to_vec(),
        }
    }
}

/// The id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let t = TenantId::parse("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let ev = NewEvent::new(Actor::system("test"), "test.event", "tenant", t.as_str())
                    .details(serde_json::json!({"n": seq, "b": "x", "a": [1, 2]}));
                let e = AuditEvent::seal(
                    &t,
                    seq,
                    format!("id-{seq}"),
                    Timestamp(seq * 1000),
                    &ev,
                    &prev,
                );
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(events: &[AuditEvent]) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::from_genesis();
        for e in events {
            v.check(e)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn details_are_encoded_with_sorted_keys() {
        assert_eq!(chain(1)[0].details, r#"{"a":[1,2],"b":"x","n":1}"#);
        let nested =
            serde_json::json!({"z": {"b": 1, "a": [{"d": true, "c": null}]}, "é": "\n\"", "a": -5});
        assert_eq!(
            canonical_json(&nested),
            r#"{"a":-5,"z":{"a":[{"c":null,"d":true}],"b":1},"é":"\n\""}"#
        );
        // Parsing and re-encoding gives the same text: what an independent verifier does.
        let text = canonical_json(&nested);
        assert_eq!(canonical_json(&serde_json::from_str(&text).unwrap()), text);
    }

    #[test]
    fn an_edited_field_is_found() {
        let mut c = chain(5);
        c[2].actor_id = "someone-else".into();
        assert_eq!(verify(&c), Err(ChainBreak::ContentAltered { seq: 3 }));
        let mut c = chain(5);
        c[3].details = r#"{"a":[1,2],"b":"y","n":4}"#.into();
        assert_eq!(verify(&c), Err(ChainBreak::ContentAltered { seq: 4 }));
    }

    #[test]
    fn a_deleted_event_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(
            verify(&c),
            Err(ChainBreak::SequenceGap {
                expected: 2,
                found: 3
            })
        );
        // Renumbering to hide the gap breaks the link instead.
        for (i, e) in c.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
        }
        assert!(matches!(
            verify(&c),
            Err(ChainBreak::WrongPredecessor { seq: 2 })
        ));
    }

    #[test]
    fn reordered_events_are_found() {
        let mut c = chain(5);
        c.swap(1, 2);
        let (a, b) = (c[1].seq, c[2].seq);
        c[1].seq = b;
        c[2].seq = a;
        assert!(verify(&c).is_err());
    }

    #[test]
    fn the_hash_is_sha256_of_the_previous_hash_and_the_documented_encoding() {
        // The allocation-free encoder against a plain rendering of docs/audit.md.
        fn reference(e: &AuditEvent) -> Vec<u8> {
            let mut out = b"KPAUDIT1".to_vec();
            let field = |out: &mut Vec<u8>, f: Option<String>| match f {
                Some(s) => {
                    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                None => out.extend_from_slice(&[0xFF; 4]),
            };
            for f in [
                Some(e.tenant_id.to_string()),
                Some(e.seq.to_string()),
                Some(e.id.clone()),
                Some(e.time.0.to_string()),
                Some(e.actor_type.clone()),
                Some(e.actor_id.clone()),
                Some(e.action.clone()),
                Some(e.target_type.clone()),
                Some(e.target_id.clone()),
                Some(e.outcome.clone()),
                Some(e.reasons.join(",")),
                e.request_id.clone(),
                e.client_ip.clone(),
                e.user_agent.clone(),
                Some(e.details.clone()),
            ] {
                field(&mut out, f);
            }
            out
        }
        let mut e = chain(3).pop().unwrap();
        for (seq, time, reasons, rid) in [
            (3, 3000, vec![], None),
            (0, 0, vec!["a".to_string()], Some(String::new())),
            (
                i64::MAX,
                i64::MIN,
                vec!["a".into(), "".into(), "c".into()],
                Some("r".into()),
            ),
            (-7, 1_764_000_000_000, vec![String::new()], None),
        ] {
            e.seq = seq;
            e.time = Timestamp(time);
            e.reasons = reasons;
            e.request_id = rid;
            assert_eq!(e.canonical_bytes(), reference(&e));
            // A store's view, with the reasons already joined, encodes the same bytes.
            let joined = e.reasons.join(",");
            let mut view = e.view();
            view.reasons = Reasons::Joined(&joined);
            let mut buf = Vec::new();
            view.write_canonical(&mut buf);
            assert_eq!(buf, reference(&e));
            let mut h = Sha256::new();
            h.update(&e.prev_hash);
            h.update(reference(&e));
            let want: [u8; 32] = h.finalize().into();
            assert_eq!(e.computed_hash(), want);
            assert_eq!(e.hash_with(&mut b"stale".to_vec()), want);
        }
    }

    #[test]
    fn checking_a_hash_computed_beforehand_finds_the_same_breaks() {
        fn verify_hashed(events: &[AuditEvent]) -> Result<u64, ChainBreak> {
            // Hashed first, all of them, as a verifier spreading the work over threads does.
            let mut buf = Vec::new();
            let hashes: Vec<[u8; 32]> = events.iter().map(|e| e.hash_with(&mut buf)).collect();
            let mut v = ChainVerifier::from_genesis();
            for (e, h) in events.iter().zip(&hashes) {
                v.check_hashed(&e.view(), h)?;
            }
            Ok(v.checked())
        }
        let intact = chain(6);
        let mut edited = chain(6);
        edited[3].actor_id = "mallory".into();
        let mut deleted = chain(6);
        deleted.remove(2);
        let mut relinked = chain(6);
        relinked[4].prev_hash = relinked[2].hash.clone();
        let mut rehashed = chain(6);
        rehashed[1].details = "{}".into();
        rehashed[1].hash = rehashed[1].computed_hash().to_vec();
        for c in [intact, edited, deleted, relinked, rehashed] {
            assert_eq!(verify_hashed(&c), verify(&c));
        }
        assert_eq!(verify_hashed(&chain(6)), Ok(6));
    }

    #[test]
    fn absent_and_empty_optional_fields_differ() {
        let mut c = chain(1);
        let before = c[0].canonical_bytes();
        c[0].request_id = Some(String::new());
        assert_ne!(before, c[0].canonical_bytes());
    }

    #[test]
    fn checkpoints_verify_only_with_their_key_and_content() {
        let t = TenantId::generate();
        let (_, key) = CheckpointKey::generate(&mut rand::rng());
        let (_, other) = CheckpointKey::generate(&mut rand::rng());
        let cp = key.sign(&t, 7, &[1; 32], Timestamp(5));
        assert!(cp.verify_with(&key.public()));
        assert!(!cp.verify_with(&other.public()));
        let mut forged = cp.clone();
        forged.seq = 8;
        assert!(!forged.verify_with(&key.public()));
        assert_eq!(key.key_id.len(), 16);
    }
}
