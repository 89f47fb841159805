//! The adapter over webauthn-rs-core: the only code in Keyplane that touches WebAuthn
//! cryptography or its wire structures. Everything it returns is plain data the rest of Keyplane
//! can store and reason about; everything it takes from clients arrives as JSON in WebAuthn's
//! JSON serialisation (what `PublicKeyCredential.toJSON()` produces).
//!
//! Architecture invariant: no signature, hash-of-client-data, attestation or certificate check is
//! written here; they are all webauthn-rs-core's. This crate decodes, maps errors to stable codes,
//! and extracts facts (AAGUID, flags, COSE key bytes) for storage and policy.

mod errors;
mod facts;
pub mod inspect;
pub mod mds;
mod rp;
mod wire;

pub use errors::map_webauthn_error;
pub use facts::RegistrationFacts;
pub use rp::{
    offered_algorithm_ids, AssertionOutcome, ParsedAssertion, ParsedRegistration,
    RegisteredCredential, RelyingParty, RpConfig, TrustAnchors, VerifyOptions,
};
