//! FIDO Metadata Service (MDS3) BLOBs: a compact JWS whose `x5c` chain must reach a configured
//! root (by default the FIDO Alliance's, GlobalSign Root R3 / R46), signed with `RS256` or `ES256`
//! by the chain's leaf. Nothing in a BLOB is believed before both checks pass.
//!
//! Written here rather than taken from `fido-mds` 0.6.2: that crate pins its roots (so a test root
//! cannot stand in for the FIDO root, and operators cannot configure one) and refuses a whole BLOB
//! when an entry has a field it does not know, which would turn a new MDS field into an outage of
//! the security feed. The X.509 path validation is `crypto-glue`'s (the same code webauthn-rs uses
//! for attestation chains); only the JWS framing and the subset of the payload Keyplane reads are
//! written here.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use crypto_glue::traits::{DecodeDer, DecodePem, EncodeDer, OwnedToRef, Verifier};
use crypto_glue::x509::{Certificate, X509Store};
use keyplane_core::mds::{MdsEntry, StatusReport};
use keyplane_core::Error;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// The FIDO Alliance's MDS3 roots (GlobalSign Root CA - R3 and GlobalSign Root R46), used when
/// no root is configured.
pub const FIDO_MDS_ROOTS_PEM: &str = include_str!("mds_roots.pem");

/// A BLOB whose signature chain was verified, with the entries Keyplane uses.
#[derive(Clone, Debug)]
pub struct VerifiedBlob {
    /// The BLOB's serial number (`no`).
    pub number: i64,
    pub next_update: String,
    pub legal_header: String,
    /// FIDO2 entries (those with an AAGUID), in BLOB order.
    pub entries: Vec<MdsEntry>,
    /// Entries skipped: U2F/UAF entries (no AAGUID) and malformed ones, with why.
    pub skipped: Vec<String>,
    /// Subject of the leaf certificate that signed the BLOB.
    pub signer: String,
    /// SHA-256 of the BLOB text (hex).
    pub sha256: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> Error {
    Error::invalid(code, message)
}

/// Splits PEM text into certificates; every block must parse.
pub fn certificates_from_pem(pem: &str) -> Result<Vec<Certificate>, Error> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let Some(end) = rest[start..].find(end_marker) else {
            return Err(bad(
                "invalid_trust_anchor",
                "a PEM certificate has no END line",
            ));
        };
        let block = &rest[start..start + end + end_marker.len()];
        let cert = Certificate::from_pem(block.as_bytes()).map_err(|e| {
            bad(
                "invalid_trust_anchor",
                format!("a PEM certificate does not parse: {e}"),
            )
        })?;
        out.push(cert);
        rest = &rest[start + end + end_marker.len()..];
    }
    if out.is_empty() {
        return Err(bad(
            "invalid_trust_anchor",
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found",
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    no: i64,
    next_update: String,
    #[serde(default)]
    legal_header: String,
    entries: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    aaguid: Option<String>,
    metadata_statement: RawStatement,
    #[serde(default)]
    status_reports: Vec<RawStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    description: String,
    icon: Option<String>,
    #[serde(default)]
    attestation_root_certificates: Vec<String>,
    #[serde(default)]
    attestation_types: Vec<String>,
    #[serde(default)]
    key_protection: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    status: String,
    effective_date: Option<String>,
}

fn b64url(part: &str, what: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| {
            bad(
                "mds_malformed",
                format!("the BLOB's {what} is not base64url"),
            )
        })
}

/// Verifies a BLOB against `roots` (PEM certificates) at instant `at`, then reads its entries.
pub fn verify_blob(blob: &str, roots_pem: &str, at: SystemTime) -> Result<VerifiedBlob, Error> {
    let text = blob.trim();
    let parts: Vec<&str> = text.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(bad(
            "mds_malformed",
            "an MDS3 BLOB is a JWT: three base64url parts separated by dots",
        ));
    };
    let header: Header = serde_json::from_slice(&b64url(header_b64, "header")?).map_err(|e| {
        bad(
            "mds_malformed",
            format!("the BLOB's header is not JSON: {e}"),
        )
    })?;
    if header.x5c.is_empty() {
        return Err(bad(
            "mds_malformed",
            "the BLOB's header has no x5c certificate chain (x5u is not fetched: Keyplane works offline)",
        ));
    }
    let chain = header
        .x5c
        .iter()
        .map(|c| {
            STANDARD
                .decode(c)
                .ok()
                .and_then(|der| Certificate::from_der(&der).ok())
                .ok_or_else(|| {
                    bad(
                        "mds_malformed",
                        "a certificate in the BLOB's x5c does not parse",
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let roots = certificates_from_pem(roots_pem)?;
    let (leaf, intermediates) = chain.split_first().expect("x5c is not empty");
    X509Store::new(&roots)
        .verify(leaf, intermediates, at)
        .map_err(|e| {
            bad(
                "mds_untrusted",
                format!("the BLOB's certificate chain does not reach a configured MDS root: {e:?}"),
            )
        })?;
    let signature = b64url(signature_b64, "signature")?;
    let signed = format!("{header_b64}.{payload_b64}");
    verify_jws_signature(&header.alg, leaf, signed.as_bytes(), &signature)?;

    let payload: Payload =
        serde_json::from_slice(&b64url(payload_b64, "payload")?).map_err(|e| {
            bad(
                "mds_malformed",
                format!("the BLOB's payload is not an MDS3 payload: {e}"),
            )
        })?;
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for (i, value) in payload.entries.into_iter().enumerate() {
        match entry(value) {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => skipped.push(format!("entry {i}: no AAGUID (U2F or UAF authenticator)")),
            Err(why) => skipped.push(format!("entry {i}: {why}")),
        }
    }
    Ok(VerifiedBlob {
        number: payload.no,
        next_update: payload.next_update,
        legal_header: payload.legal_header,
        entries,
        skipped,
        signer: leaf.tbs_certificate().subject().to_string(),
        sha256: hex_sha256(text.as_bytes()),
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn entry(value: serde_json::Value) -> Result<Option<MdsEntry>, String> {
    let raw: RawEntry = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let Some(aaguid) = raw.aaguid else {
        return Ok(None);
    };
    let aaguid = uuid::Uuid::parse_str(&aaguid)
        .map_err(|_| format!("AAGUID {aaguid:?} is not a UUID"))?
        .to_string();
    let attestation_roots = raw
        .metadata_statement
        .attestation_root_certificates
        .iter()
        .map(|c| {
            STANDARD
                .decode(c)
                .map_err(|_| format!("{aaguid}: an attestation root is not base64"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(MdsEntry {
        aaguid,
        description: raw.metadata_statement.description,
        icon: raw.metadata_statement.icon,
        status_reports: raw
            .status_reports
            .into_iter()
            .map(|s| StatusReport {
                status: s.status,
                effective_date: s.effective_date,
            })
            .collect(),
        attestation_roots,
        attestation_types: raw.metadata_statement.attestation_types,
        key_protection: raw.metadata_statement.key_protection,
    }))
}

/// JWS signature check (RFC 7515/7518): `RS256` is PKCS#1 v1.5 with SHA-256; `ES256` is P-256
/// with SHA-256 and the signature as the raw 64-byte `r || s`.
fn verify_jws_signature(
    alg: &str,
    leaf: &Certificate,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let spki = leaf
        .tbs_certificate()
        .subject_public_key_info()
        .owned_to_ref();
    let invalid = || bad("mds_bad_signature", "the BLOB's signature does not verify");
    match alg {
        "RS256" => {
            use crypto_glue::rsa::{RS256PublicKey, RS256Signature, RS256VerifyingKey};
            let key = RS256PublicKey::try_from(spki).map_err(|_| {
                bad(
                    "mds_bad_signature",
                    "alg is RS256 but the signing certificate's key is not RSA",
                )
            })?;
            let sig = RS256Signature::try_from(signature).map_err(|_| invalid())?;
            RS256VerifyingKey::new(key)
                .verify(signed, &sig)
                .map_err(|_| invalid())
        }
        "ES256" => {
            use crypto_glue::ecdsa_p256::{
                EcdsaP256PublicKey, EcdsaP256Signature, EcdsaP256VerifyingKey,
            };
            let key = EcdsaP256PublicKey::try_from(spki).map_err(|_| {
                bad(
                    "mds_bad_signature",
                    "alg is ES256 but the signing certificate's key is not P-256",
                )
            })?;
            let sig = EcdsaP256Signature::from_slice(signature).map_err(|_| invalid())?;
            EcdsaP256VerifyingKey::from(key)
                .verify(signed, &sig)
                .map_err(|_| invalid())
        }
        other => Err(bad(
            "mds_bad_signature",
            format!("unsupported JWS algorithm {other:?} (RS256 or ES256 expected)"),
        )),
    }
}

/// DER of each certificate in `pem` (for trust anchors configured as PEM).
pub fn pem_to_der(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    certificates_from_pem(pem)?
        .iter()
        .map(|c| {
            c.to_der().map_err(|e| {
                bad(
                    "invalid_trust_anchor",
                    format!("re-encoding a certificate: {e}"),
                )
            })
        })
        .collect()
}
