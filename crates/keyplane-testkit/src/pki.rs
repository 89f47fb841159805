//! A throwaway PKI for tests: a root CA that signs FIDO MDS3 BLOBs in place of the FIDO
//! Alliance's, and attestation CAs whose certificates make the software authenticator's
//! registrations carry a real `packed` attestation. Everything goes through the same
//! verification code as production; only the roots differ.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use crypto_glue::ecdsa_p256::{
    EcdsaP256DerSignature, EcdsaP256Signature, EcdsaP256SigningKey, EcdsaP256VerifyingKey,
};
use crypto_glue::traits::{EncodeDer, EncodePem, Generate, Signer};
use crypto_glue::x509::{
    profile, uuid_to_serial, BasicConstraints, Builder, Certificate, CertificateBuilder, Extension,
    Name, OctetString, Profile, SubjectPublicKeyInfoOwned, TbsCertificate, Validity,
};
use serde_json::Value;
use std::str::FromStr;
use std::time::Duration;

/// A certificate authority (P-256).
pub struct TestCa {
    key: EcdsaP256SigningKey,
    pub cert: Certificate,
}

/// A leaf profile: not a CA, with the subject and extensions given.
struct Leaf {
    issuer: Name,
    subject: Name,
    extensions: Vec<Extension>,
}

impl Profile for Leaf {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: crypto_glue::x509::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: crypto_glue::x509::SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> Result<Vec<Extension>, crypto_glue::x509::CertBuilderError> {
        let mut out = vec![crypto_glue::traits::ToExtension::to_extension(
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            &self.subject,
            &[],
        )
        .map_err(crypto_glue::x509::CertBuilderError::from)?];
        out.extend(self.extensions.iter().cloned());
        Ok(out)
    }
}

fn validity(from: Duration, to: Duration) -> Validity {
    use crypto_glue::x509::Time;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    Validity::new(
        Time::try_from(std::time::UNIX_EPOCH + (now - from)).expect("valid time"),
        Time::try_from(std::time::UNIX_EPOCH + (now + to)).expect("valid time"),
    )
}

fn spki(key: &EcdsaP256SigningKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_key(&EcdsaP256VerifyingKey::from(key)).expect("P-256 SPKI")
}

const DAY: Duration = Duration::from_secs(86_400);

impl TestCa {
    /// A self-signed root valid from yesterday for ten years.
    pub fn root(subject: &str) -> Self {
        let key = EcdsaP256SigningKey::generate();
        let name = Name::from_str(subject).expect("valid subject");
        let builder = CertificateBuilder::new(
            profile::cabf::Root::new(false, name).expect("root profile"),
            uuid_to_serial(uuid::Uuid::new_v4()),
            validity(DAY, 3650 * DAY),
            spki(&key),
        )
        .expect("root builder");
        let cert = builder
            .build::<_, EcdsaP256DerSignature>(&key)
            .expect("self-signed root");
        TestCa { key, cert }
    }

    pub fn pem(&self) -> String {
        self.cert
            .to_pem(crypto_glue::der::pem::LineEnding::LF)
            .expect("PEM encoding")
    }

    pub fn der(&self) -> Vec<u8> {
        self.cert.to_der().expect("DER encoding")
    }

    /// Issues a leaf certificate for a new key, valid `from` ago until `to` from now.
    pub fn issue(
        &self,
        subject: &str,
        extensions: Vec<Extension>,
        from: Duration,
        to: Duration,
    ) -> (EcdsaP256SigningKey, Certificate) {
        let key = EcdsaP256SigningKey::generate();
        let leaf = Leaf {
            issuer: self.cert.tbs_certificate().subject().clone(),
            subject: Name::from_str(subject).expect("valid subject"),
            extensions,
        };
        let builder = CertificateBuilder::new(
            leaf,
            uuid_to_serial(uuid::Uuid::new_v4()),
            validity(from, to),
            spki(&key),
        )
        .expect("leaf builder");
        let cert = builder
            .build::<_, EcdsaP256DerSignature>(&self.key)
            .expect("leaf certificate");
        (key, cert)
    }
}

/// Signs FIDO MDS3 BLOBs (ES256 JWS with an `x5c` chain) under a test root.
pub struct MdsSigner {
    pub root: TestCa,
    key: EcdsaP256SigningKey,
    cert: Certificate,
}

impl Default for MdsSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl MdsSigner {
    pub fn new() -> Self {
        let root = TestCa::root("CN=Keyplane Test MDS Root,O=Keyplane Tests,C=NL");
        let (key, cert) = root.issue(
            "CN=mds.test.keyplane,O=Keyplane Tests,C=NL",
            vec![],
            DAY,
            365 * DAY,
        );
        MdsSigner { root, key, cert }
    }

    /// A signer whose leaf certificate expired yesterday.
    pub fn expired() -> Self {
        let root = TestCa::root("CN=Keyplane Test MDS Root,O=Keyplane Tests,C=NL");
        let (key, cert) = root.issue(
            "CN=mds.test.keyplane,O=Keyplane Tests,C=NL",
            vec![],
            30 * DAY,
            Duration::ZERO,
        );
        MdsSigner { root, key, cert }
    }

    /// The compact JWS of `payload`.
    pub fn sign(&self, payload: &Value) -> String {
        let x5c = STANDARD.encode(self.cert.to_der().expect("DER"));
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "x5c": [x5c] });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let sig: EcdsaP256Signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }
}

/// An attestation CA for one authenticator model: registrations re-signed by it carry a
/// `packed` attestation whose certificate chains to [`Attester::root_pem`].
pub struct Attester {
    pub ca: TestCa,
    key: EcdsaP256SigningKey,
    cert: Certificate,
}

impl Attester {
    /// The FIDO "id-fido-gen-ce-aaguid" extension OID.
    const AAGUID_OID: &'static str = "1.3.6.1.4.1.45724.1.1.4";

    pub fn new(aaguid: [u8; 16]) -> Self {
        let ca = TestCa::root("CN=Keyplane Test Attestation Root,O=Keyplane Tests,C=NL");
        let ext = Extension {
            extn_id: crypto_glue::x509::ObjectIdentifier::new_unwrap(Self::AAGUID_OID),
            critical: false,
            extn_value: OctetString::new(
                OctetString::new(aaguid.to_vec())
                    .expect("octet string")
                    .to_der()
                    .expect("DER"),
            )
            .expect("octet string"),
        };
        let (key, cert) = ca.issue(
            "C=NL,O=Keyplane Tests,OU=Authenticator Attestation,CN=Keyplane Test Key",
            vec![ext],
            DAY,
            365 * DAY,
        );
        Attester { ca, key, cert }
    }

    pub fn root_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn root_der(&self) -> Vec<u8> {
        self.ca.der()
    }

    /// Replaces the attestation of a registration response (WebAuthn JSON) with a `packed`
    /// statement signed by this attester over the same authenticator data and client data.
    pub fn attest(&self, response: &mut Value) {
        use serde_cbor_2::Value as Cbor;
        use sha2::Digest;
        let field = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(
                    response["response"][name]
                        .as_str()
                        .expect("registration response field"),
                )
                .expect("base64url")
        };
        let client_data = field("clientDataJSON");
        let Cbor::Map(mut object) =
            serde_cbor_2::from_slice::<Cbor>(&field("attestationObject")).expect("CBOR")
        else {
            panic!("attestationObject is not a map")
        };
        let Some(Cbor::Bytes(auth_data)) = object.get(&Cbor::Text("authData".into())).cloned()
        else {
            panic!("attestationObject has no authData")
        };
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha2::Sha256::digest(&client_data));
        let sig: EcdsaP256Signature = self.key.sign(&signed);
        let statement = Cbor::Map(
            [
                (Cbor::Text("alg".into()), Cbor::Integer(-7)),
                (
                    Cbor::Text("sig".into()),
                    Cbor::Bytes(sig.to_der().as_bytes().to_vec()),
                ),
                (
                    Cbor::Text("x5c".into()),
                    Cbor::Array(vec![Cbor::Bytes(self.cert.to_der().expect("DER"))]),
                ),
            ]
            .into_iter()
            .collect(),
        );
        object.insert(Cbor::Text("fmt".into()), Cbor::Text("packed".into()));
        object.insert(Cbor::Text("attStmt".into()), statement);
        let encoded = serde_cbor_2::to_vec(&Cbor::Map(object)).expect("CBOR encoding");
        response["response"]["attestationObject"] = Value::from(URL_SAFE_NO_PAD.encode(encoded));
    }
}
