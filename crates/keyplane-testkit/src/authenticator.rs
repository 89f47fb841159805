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
        }
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
        Ok(serde_json::to_value(created)?)
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
        Ok(serde_json::to_value(asserted)?)
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
