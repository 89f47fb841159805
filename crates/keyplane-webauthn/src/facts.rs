//! Facts about a registration that Keyplane stores and policy reasons about: the AAGUID, the
//! flags, the exact COSE key bytes. Read from the attestation object with webauthn-rs's own
//! parsers; only the extent of the COSE key inside authenticator data is found here (by asking
//! the CBOR decoder how many bytes one item took).

use keyplane_core::Error;
use webauthn_rs_core::internals::AuthenticatorData;
use webauthn_rs_core::proto::Registration;

/// What the authenticator data of a registration says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationFacts {
    pub fmt: String,
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    /// The credential public key exactly as the authenticator encoded it (COSE_Key).
    pub public_key: Vec<u8>,
    pub user_present: bool,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub sign_count: u32,
    /// COSE algorithm of the credential key, if the key carries one.
    pub cose_alg: Option<i64>,
}

/// Length of the fixed part of authenticator data before the credential id:
/// rpIdHash (32) + flags (1) + signCount (4) + aaguid (16) + credentialIdLength (2).
const FIXED_PREFIX: usize = 32 + 1 + 4 + 16 + 2;

impl RegistrationFacts {
    /// Reads the facts from a CBOR attestation object.
    pub fn from_attestation_object(bytes: &[u8]) -> Result<Self, Error> {
        let value: serde_cbor_2::Value = serde_cbor_2::from_slice(bytes)
            .map_err(|_| Error::invalid("malformed_cbor", "attestationObject is not valid CBOR"))?;
        let map = match value {
            serde_cbor_2::Value::Map(m) => m,
            _ => return Err(Error::invalid("malformed_attestation", "attestationObject is not a CBOR map")),
        };
        let text = |k: &str| serde_cbor_2::Value::Text(k.to_string());
        let fmt = match map.get(&text("fmt")) {
            Some(serde_cbor_2::Value::Text(s)) => s.clone(),
            _ => return Err(Error::invalid("malformed_attestation", "attestationObject has no fmt")),
        };
        let auth_data = match map.get(&text("authData")) {
            Some(serde_cbor_2::Value::Bytes(b)) => b.clone(),
            _ => return Err(Error::invalid("malformed_attestation", "attestationObject has no authData")),
        };
        Self::from_auth_data(fmt, &auth_data)
    }

    fn from_auth_data(fmt: String, auth_data: &[u8]) -> Result<Self, Error> {
        let parsed = AuthenticatorData::<Registration>::try_from(auth_data).map_err(|e| crate::map_webauthn_error(&e))?;
        let acd = parsed
            .acd
            .as_ref()
            .ok_or_else(|| Error::invalid("malformed_attestation", "authenticator data carries no attested credential"))?;
        let key_start = FIXED_PREFIX + acd.credential_id.len();
        let rest = auth_data
            .get(key_start..)
            .ok_or_else(|| Error::invalid("malformed_attestation", "authenticator data is truncated"))?;
        let mut de = serde_cbor_2::Deserializer::from_slice(rest);
        let key: serde_cbor_2::Value = serde::Deserialize::deserialize(&mut de)
            .map_err(|_| Error::invalid("malformed_cbor", "credential public key is not valid CBOR"))?;
        let public_key = rest[..de.byte_offset()].to_vec();
        let cose_alg = match &key {
            serde_cbor_2::Value::Map(m) => match m.get(&serde_cbor_2::Value::Integer(3)) {
                Some(serde_cbor_2::Value::Integer(a)) => i64::try_from(*a).ok(),
                _ => None,
            },
            _ => None,
        };
        Ok(RegistrationFacts {
            fmt,
            aaguid: acd.aaguid,
            credential_id: acd.credential_id.to_vec(),
            public_key,
            user_present: parsed.user_present,
            user_verified: parsed.user_verified,
            backup_eligible: parsed.backup_eligible,
            backup_state: parsed.backup_state,
            sign_count: parsed.counter,
            cose_alg,
        })
    }

    /// The AAGUID as a lowercase hyphenated UUID.
    pub fn aaguid_string(&self) -> String {
        uuid::Uuid::from_bytes(self.aaguid).to_string()
    }
}
