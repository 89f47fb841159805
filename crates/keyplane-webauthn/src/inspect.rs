//! What a captured response says about itself, decoded for people (`keyplane credential
//! inspect`): the client data, the authenticator data's header (RP ID hash, flags, counter) and
//! the attestation statement's certificates. Decoding only: whether any of it is valid is decided
//! by `RelyingParty`, which the inspection also runs.

use crypto_glue::traits::DecodeDer;
use crypto_glue::x509::Certificate;
use keyplane_core::Error;
use serde_cbor_2::Value as Cbor;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// `clientDataJSON` as the client wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientDataView {
    pub type_: Option<String>,
    pub origin: Option<String>,
    /// The challenge exactly as spelled in clientDataJSON (base64url).
    pub challenge: Option<String>,
    pub cross_origin: Option<bool>,
    pub top_origin: Option<String>,
}

impl ClientDataView {
    /// Reads clientDataJSON; a body that is not a JSON object gives `malformed_client_data`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| {
            Error::invalid("malformed_client_data", "clientDataJSON is not valid JSON")
        })?;
        if !v.is_object() {
            return Err(Error::invalid(
                "malformed_client_data",
                "clientDataJSON is not a JSON object",
            ));
        }
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Ok(ClientDataView {
            type_: text("type"),
            origin: text("origin"),
            challenge: text("challenge"),
            cross_origin: v.get("crossOrigin").and_then(|x| x.as_bool()),
            top_origin: text("topOrigin"),
        })
    }
}

/// The fixed header of authenticator data: what every ceremony carries before the optional
/// attested credential and extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthDataHeader {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
}

impl AuthDataHeader {
    pub const UP: u8 = 0x01;
    pub const UV: u8 = 0x04;
    pub const BE: u8 = 0x08;
    pub const BS: u8 = 0x10;
    pub const AT: u8 = 0x40;
    pub const ED: u8 = 0x80;

    /// The header of raw authenticator data (37 bytes or more).
    pub fn from_auth_data(bytes: &[u8]) -> Result<Self, Error> {
        let short = || {
            Error::invalid(
                "malformed_authenticator_data",
                "authenticator data is shorter than its 37-byte header",
            )
        };
        let rp_id_hash: [u8; 32] = bytes
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(short)?;
        let flags = *bytes.get(32).ok_or_else(short)?;
        let count: [u8; 4] = bytes
            .get(33..37)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(short)?;
        Ok(AuthDataHeader {
            rp_id_hash,
            flags,
            sign_count: u32::from_be_bytes(count),
        })
    }

    /// The header of the authenticator data inside a CBOR attestation object.
    pub fn from_attestation_object(bytes: &[u8]) -> Result<Self, Error> {
        let map = attestation_map(bytes)?;
        match map.get(&Cbor::Text("authData".into())) {
            Some(Cbor::Bytes(b)) => Self::from_auth_data(b),
            _ => Err(Error::invalid(
                "malformed_attestation",
                "attestationObject has no authData",
            )),
        }
    }

    pub fn flag(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    /// Whether the authenticator scoped the credential to `rp_id` (its hash is SHA-256 of the
    /// RP ID). Shown beside the verdict; the verdict's own check is webauthn-rs-core's.
    pub fn rp_id_matches(&self, rp_id: &str) -> bool {
        Sha256::digest(rp_id.as_bytes()).as_slice() == self.rp_id_hash
    }
}

/// One certificate of an attestation statement's `x5c`, leaf first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateView {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertificateView {
    /// Whether `at` falls within the certificate's validity period.
    pub fn valid_at(&self, at: SystemTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }
}

/// The certificates of the attestation statement (`attStmt.x5c`), leaf first; empty when the
/// statement carries none (`none`, self attestation). A certificate that does not parse is an
/// error (`malformed_attestation`).
pub fn attestation_certificates(attestation_object: &[u8]) -> Result<Vec<CertificateView>, Error> {
    let map = attestation_map(attestation_object)?;
    let Some(Cbor::Map(stmt)) = map.get(&Cbor::Text("attStmt".into())) else {
        return Ok(Vec::new());
    };
    let Some(Cbor::Array(x5c)) = stmt.get(&Cbor::Text("x5c".into())) else {
        return Ok(Vec::new());
    };
    x5c.iter()
        .map(|item| {
            let Cbor::Bytes(der) = item else {
                return Err(Error::invalid(
                    "malformed_attestation",
                    "attStmt.x5c holds something other than a certificate",
                ));
            };
            certificate_view(der).map_err(|e| {
                Error::invalid(
                    "malformed_attestation",
                    format!("a certificate in attStmt.x5c does not parse: {}", e.message),
                )
            })
        })
        .collect()
}

/// Subject, issuer, serial and validity of one DER certificate (also what `keyplane doctor`
/// reads from the TLS certificate file).
pub fn certificate_view(der: &[u8]) -> Result<CertificateView, Error> {
    let cert = Certificate::from_der(der).map_err(|e| {
        Error::invalid(
            "malformed_certificate",
            format!("the certificate does not parse: {e}"),
        )
    })?;
    let tbs = cert.tbs_certificate();
    Ok(CertificateView {
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        serial: tbs.serial_number().to_string(),
        not_before: tbs.validity().not_before.to_system_time(),
        not_after: tbs.validity().not_after.to_system_time(),
    })
}

fn attestation_map(bytes: &[u8]) -> Result<std::collections::BTreeMap<Cbor, Cbor>, Error> {
    match serde_cbor_2::from_slice::<Cbor>(bytes) {
        Ok(Cbor::Map(m)) => Ok(m),
        Ok(_) => Err(Error::invalid(
            "malformed_attestation",
            "attestationObject is not a CBOR map",
        )),
        Err(_) => Err(Error::invalid(
            "malformed_cbor",
            "attestationObject is not valid CBOR",
        )),
    }
}

/// The name of a COSE algorithm number (IANA COSE Algorithms registry), for display.
pub fn cose_algorithm_name(alg: i64) -> Option<&'static str> {
    Some(match alg {
        -7 => "ES256",
        -35 => "ES384",
        -36 => "ES512",
        -8 => "EdDSA",
        -37 => "PS256",
        -38 => "PS384",
        -39 => "PS512",
        -257 => "RS256",
        -258 => "RS384",
        -259 => "RS512",
        -65535 => "RS1",
        -48 => "ML-DSA-44",
        -49 => "ML-DSA-65",
        -50 => "ML-DSA-87",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reads_hash_flags_and_counter() {
        let mut d = Sha256::digest(b"example.com").to_vec();
        d.push(AuthDataHeader::UP | AuthDataHeader::UV | AuthDataHeader::BE);
        d.extend_from_slice(&9u32.to_be_bytes());
        let h = AuthDataHeader::from_auth_data(&d).expect("header");
        assert!(h.rp_id_matches("example.com"));
        assert!(!h.rp_id_matches("example.org"));
        assert!(h.flag(AuthDataHeader::UV) && !h.flag(AuthDataHeader::BS));
        assert_eq!(h.sign_count, 9);
        assert_eq!(
            AuthDataHeader::from_auth_data(&d[..36]).unwrap_err().code,
            "malformed_authenticator_data"
        );
    }

    #[test]
    fn client_data_that_is_not_an_object_is_malformed() {
        assert_eq!(
            ClientDataView::from_json_bytes(b"[1]").unwrap_err().code,
            "malformed_client_data"
        );
        let v = ClientDataView::from_json_bytes(
            br#"{"type":"webauthn.get","origin":"https://a.example","challenge":"AA","crossOrigin":false}"#,
        )
        .expect("client data");
        assert_eq!(v.type_.as_deref(), Some("webauthn.get"));
        assert_eq!(v.cross_origin, Some(false));
        assert_eq!(v.top_origin, None);
    }
}
