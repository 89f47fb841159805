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
            _ => {
                return Err(Error::invalid(
                    "malformed_attestation",
                    "attestationObject is not a CBOR map",
                ))
            }
        };
        let text = |k: &str| serde_cbor_2::Value::Text(k.to_string());
        let fmt = match map.get(&text("fmt")) {
            Some(serde_cbor_2::Value::Text(s)) => s.clone(),
            _ => {
                return Err(Error::invalid(
                    "malformed_attestation",
                    "attestationObject has no fmt",
                ))
            }
        };
        let auth_data = match map.get(&text("authData")) {
            Some(serde_cbor_2::Value::Bytes(b)) => b.clone(),
            _ => {
                return Err(Error::invalid(
                    "malformed_attestation",
                    "attestationObject has no authData",
                ))
            }
        };
        Self::from_auth_data(fmt, &auth_data)
    }

    fn from_auth_data(fmt: String, auth_data: &[u8]) -> Result<Self, Error> {
        let parsed = AuthenticatorData::<Registration>::try_from(auth_data)
            .map_err(|e| crate::map_webauthn_error(&e))?;
        let acd = parsed.acd.as_ref().ok_or_else(|| {
            Error::invalid(
                "malformed_attestation",
                "authenticator data carries no attested credential",
            )
        })?;
        let key_start = FIXED_PREFIX + acd.credential_id.len();
        let rest = auth_data.get(key_start..).ok_or_else(|| {
            Error::invalid("malformed_attestation", "authenticator data is truncated")
        })?;
        let mut de = serde_cbor_2::Deserializer::from_slice(rest);
        let key: serde_cbor_2::Value = serde::Deserialize::deserialize(&mut de).map_err(|_| {
            Error::invalid("malformed_cbor", "credential public key is not valid CBOR")
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_core::ErrorKind;
    use serde_cbor_2::Value;
    use std::collections::BTreeMap;

    fn cbor(v: &Value) -> Vec<u8> {
        serde_cbor_2::to_vec(v).expect("encode test CBOR")
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn es256_key() -> Vec<u8> {
        let mut m = BTreeMap::new();
        m.insert(Value::Integer(1), Value::Integer(2));
        m.insert(Value::Integer(3), Value::Integer(-7));
        m.insert(Value::Integer(-1), Value::Integer(1));
        m.insert(Value::Integer(-2), Value::Bytes(vec![0x11; 32]));
        m.insert(Value::Integer(-3), Value::Bytes(vec![0x22; 32]));
        cbor(&Value::Map(m))
    }

    /// Authenticator data with an attested credential (and, when `extensions`, an extension map
    /// after the key, which must not end up in the key bytes).
    fn auth_data(extensions: bool) -> Vec<u8> {
        let mut d = vec![0xab; 32];
        d.push(if extensions { 0x41 | 0x80 } else { 0x41 });
        d.extend_from_slice(&7u32.to_be_bytes());
        d.extend_from_slice(&[0x5a; 16]);
        d.extend_from_slice(&4u16.to_be_bytes());
        d.extend_from_slice(&[1, 2, 3, 4]);
        d.extend_from_slice(&es256_key());
        if extensions {
            let mut ext = BTreeMap::new();
            ext.insert(text("credProtect"), Value::Integer(1));
            d.extend_from_slice(&cbor(&Value::Map(ext)));
        }
        d
    }

    fn attestation_object(fmt: Option<Value>, auth_data: Option<Value>) -> Vec<u8> {
        let mut m = BTreeMap::new();
        if let Some(f) = fmt {
            m.insert(text("fmt"), f);
        }
        m.insert(text("attStmt"), Value::Map(BTreeMap::new()));
        if let Some(a) = auth_data {
            m.insert(text("authData"), a);
        }
        cbor(&Value::Map(m))
    }

    fn code(bytes: &[u8]) -> &'static str {
        let e = RegistrationFacts::from_attestation_object(bytes)
            .expect_err("malformed input must be refused");
        assert_eq!(
            e.kind,
            ErrorKind::Invalid,
            "malformed input is a client error: {e:?}"
        );
        e.code
    }

    #[test]
    fn well_formed_attestation_object_gives_its_facts() {
        let bytes = attestation_object(Some(text("none")), Some(Value::Bytes(auth_data(true))));
        let f = RegistrationFacts::from_attestation_object(&bytes).expect("parses");
        assert_eq!(f.fmt, "none");
        assert_eq!(f.aaguid, [0x5a; 16]);
        assert_eq!(f.credential_id, vec![1, 2, 3, 4]);
        assert_eq!(
            f.public_key,
            es256_key(),
            "exactly the key, without the extensions after it"
        );
        assert_eq!(f.cose_alg, Some(-7));
        assert_eq!(f.sign_count, 7);
        assert!(f.user_present && !f.user_verified && !f.backup_eligible && !f.backup_state);
    }

    #[test]
    fn garbage_is_malformed_cbor() {
        assert_eq!(code(b"\xff\xfe not cbor"), "malformed_cbor");
        assert_eq!(code(&[]), "malformed_cbor");
        assert_eq!(code(&[0xa3, 0x63]), "malformed_cbor", "a map cut short");
    }

    #[test]
    fn cbor_that_is_not_a_map_is_malformed_attestation() {
        assert_eq!(
            code(&cbor(&Value::Array(vec![text("fmt"), text("none")]))),
            "malformed_attestation"
        );
        assert_eq!(code(&cbor(&text("none"))), "malformed_attestation");
    }

    #[test]
    fn missing_or_mistyped_members_are_malformed_attestation() {
        let ad = || Some(Value::Bytes(auth_data(false)));
        assert_eq!(
            code(&attestation_object(None, ad())),
            "malformed_attestation"
        );
        assert_eq!(
            code(&attestation_object(Some(Value::Integer(1)), ad())),
            "malformed_attestation"
        );
        assert_eq!(
            code(&attestation_object(Some(text("none")), None)),
            "malformed_attestation"
        );
        assert_eq!(
            code(&attestation_object(
                Some(text("none")),
                Some(text("authData"))
            )),
            "malformed_attestation"
        );
    }

    #[test]
    fn truncated_auth_data_is_refused_with_a_4xx_code() {
        let full = auth_data(false);
        // Inside the fixed header, inside the credential id, and inside the COSE key.
        for cut in [0, 10, 36, 37 + 16 + 2 + 2, full.len() - 5] {
            let bytes =
                attestation_object(Some(text("none")), Some(Value::Bytes(full[..cut].to_vec())));
            let c = code(&bytes);
            assert!(
                c == "malformed_cbor" || c == "malformed_attestation",
                "cut at {cut}: {c}"
            );
        }
    }

    #[test]
    fn auth_data_without_attested_credential_is_malformed_attestation() {
        let mut d = vec![0xab; 32];
        d.push(0x01);
        d.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            code(&attestation_object(
                Some(text("none")),
                Some(Value::Bytes(d))
            )),
            "malformed_attestation"
        );
    }
}
