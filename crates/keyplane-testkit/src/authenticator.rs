//! A software authenticator (1Password's `passkey` crate) holding one discoverable passkey, as a
//! phone or security key would. It speaks WebAuthn JSON: options in, `toJSON()`-shaped
//! credentials out.

use async_trait::async_trait;
use passkey::authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{Client, DefaultClientData};
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use passkey::types::Passkey;
use serde_json::{json, Value};
use url::Url;

/// Answers every presence check, and verification checks when configured to.
pub struct User {
    pub verifies: bool,
}

#[async_trait]
impl UserValidationMethod for User {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence,
            verification: verification && self.verifies,
        })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        // `None`: not capable of verification at all (a plain security key), rather than
        // capable-but-unconfigured, which makes clients refuse "preferred" requests.
        self.verifies.then_some(true)
    }
}

type Inner = Client<
    Option<Passkey>,
    User,
    passkey::crypto::AvailableBackend,
    public_suffix::PublicSuffixList,
    (),
>;

/// One authenticator holding at most one passkey.
pub struct SoftAuthenticator {
    client: Inner,
    origin: Url,
    /// Signs a `packed` attestation over each registration (a "certified" model).
    attester: Option<std::sync::Arc<crate::pki::Attester>>,
    /// Reports its passkeys as device-bound (BE and BS clear), as a security key does. The
    /// `passkey` crate always sets both, so authenticator data is rewritten and re-signed.
    device_bound: bool,
}

impl SoftAuthenticator {
    /// An authenticator used from `origin` (e.g. `http://localhost:8080`), performing user
    /// verification when `verifies`, keeping a signature counter when `counts`.
    pub fn new(origin: &str, verifies: bool, counts: bool) -> Self {
        Self::with_aaguid(origin, verifies, counts, [0; 16])
    }

    /// The same, reporting `aaguid` as its model (an authenticator "made by" someone else).
    pub fn with_aaguid(origin: &str, verifies: bool, counts: bool, aaguid: [u8; 16]) -> Self {
        let mut auth = Authenticator::new(
            Aaguid(aaguid),
            None,
            User { verifies },
            passkey::crypto::AvailableBackend,
        );
        auth.set_make_credentials_with_signature_counter(counts);
        let client = Client::new(auth)
            .allows_insecure_localhost(true)
            .user_verification_when_preferred(verifies);
        SoftAuthenticator {
            client,
            origin: Url::parse(origin).expect("test origin is a URL"),
            attester: None,
            device_bound: false,
        }
    }

    /// A security key: device-bound passkeys (BE and BS clear), attested by `attester` (whose
    /// certificate names `aaguid`), verifying the user.
    pub fn security_key(
        origin: &str,
        aaguid: [u8; 16],
        attester: std::sync::Arc<crate::pki::Attester>,
    ) -> Self {
        let mut auth = Self::attested(origin, true, true, aaguid, attester);
        auth.device_bound = true;
        auth
    }

    /// The same, attesting its registrations with `attester` (whose certificate names `aaguid`).
    pub fn attested(
        origin: &str,
        verifies: bool,
        counts: bool,
        aaguid: [u8; 16],
        attester: std::sync::Arc<crate::pki::Attester>,
    ) -> Self {
        let mut auth = Self::with_aaguid(origin, verifies, counts, aaguid);
        auth.attester = Some(attester);
        auth
    }

    /// The origin the browser would report.
    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// Pretends to be used from another origin (a phishing page, another tenant).
    pub fn set_origin(&mut self, origin: &str) {
        self.origin = Url::parse(origin).expect("test origin is a URL");
    }

    /// `navigator.credentials.create({publicKey})` then `toJSON()`.
    pub async fn register(&mut self, public_key: &Value) -> anyhow::Result<Value> {
        let options: CredentialCreationOptions =
            serde_json::from_value(json!({ "publicKey": public_key }))?;
        let created = self
            .client
            .register(&self.origin, options, DefaultClientData)
            .await
            .map_err(|e| anyhow::anyhow!("authenticator refused to register: {e:?}"))?;
        let mut response = serde_json::to_value(created)?;
        if self.device_bound {
            device_bound_registration(&mut response)?;
        }
        if let Some(attester) = &self.attester {
            attester.attest(&mut response);
        }
        Ok(response)
    }

    /// `navigator.credentials.get({publicKey})` then `toJSON()`.
    pub async fn authenticate(&mut self, public_key: &Value) -> anyhow::Result<Value> {
        let options: CredentialRequestOptions =
            serde_json::from_value(json!({ "publicKey": public_key }))?;
        let asserted = self
            .client
            .authenticate(&self.origin, options, DefaultClientData)
            .await
            .map_err(|e| anyhow::anyhow!("authenticator refused to sign: {e:?}"))?;
        let mut response = serde_json::to_value(asserted)?;
        if self.device_bound {
            let passkey = self
                .passkey()
                .ok_or_else(|| anyhow::anyhow!("no passkey to sign with"))?;
            device_bound_assertion(&mut response, &passkey)?;
        }
        Ok(response)
    }

    /// The stored passkey (to clone the authenticator, e.g. to simulate a cloned key).
    pub fn passkey(&self) -> Option<Passkey> {
        self.client.authenticator().store().clone()
    }

    /// Replaces the stored passkey (restoring an older copy rolls its counter back).
    pub fn set_passkey(&mut self, passkey: Option<Passkey>) {
        *self.client.authenticator_mut().store_mut() = passkey;
    }
}

const BACKUP_FLAGS: u8 = 0x08 | 0x10;

fn b64(v: &Value) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(
        v.as_str()
            .ok_or_else(|| anyhow::anyhow!("expected base64url"))?,
    )?)
}

fn encode(bytes: &[u8]) -> Value {
    use base64::Engine;
    Value::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Clears BE and BS in a registration's authenticator data (attestation object and JSON copy).
fn device_bound_registration(response: &mut Value) -> anyhow::Result<()> {
    use serde_cbor_2::Value as Cbor;
    let object = b64(&response["response"]["attestationObject"])?;
    let Cbor::Map(mut map) = serde_cbor_2::from_slice::<Cbor>(&object)? else {
        anyhow::bail!("attestationObject is not a map")
    };
    let key = Cbor::Text("authData".into());
    let Some(Cbor::Bytes(mut auth_data)) = map.get(&key).cloned() else {
        anyhow::bail!("attestationObject has no authData")
    };
    auth_data[32] &= !BACKUP_FLAGS;
    map.insert(key, Cbor::Bytes(auth_data.clone()));
    response["response"]["attestationObject"] = encode(&serde_cbor_2::to_vec(&Cbor::Map(map))?);
    if response["response"].get("authenticatorData").is_some() {
        response["response"]["authenticatorData"] = encode(&auth_data);
    }
    Ok(())
}

/// Clears BE and BS in an assertion's authenticator data and signs it again with the passkey.
fn device_bound_assertion(response: &mut Value, passkey: &Passkey) -> anyhow::Result<()> {
    use crypto_glue::ecdsa_p256::{EcdsaP256Signature, EcdsaP256SigningKey};
    use crypto_glue::traits::Signer;
    use passkey::crypto::coset::{iana, Label};
    use sha2::Digest;
    let mut auth_data = b64(&response["response"]["authenticatorData"])?;
    let client_data = b64(&response["response"]["clientDataJSON"])?;
    auth_data[32] &= !BACKUP_FLAGS;
    let d = passkey
        .key
        .params
        .iter()
        .find(|(l, _)| *l == Label::Int(iana::Ec2KeyParameter::D as i64))
        .and_then(|(_, v)| v.as_bytes().cloned())
        .ok_or_else(|| anyhow::anyhow!("the passkey is not an EC2 private key"))?;
    let key = EcdsaP256SigningKey::from_slice(&d)?;
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&sha2::Sha256::digest(&client_data));
    let sig: EcdsaP256Signature = key.sign(&signed);
    response["response"]["authenticatorData"] = encode(&auth_data);
    response["response"]["signature"] = encode(sig.to_der().as_bytes());
    Ok(())
}
