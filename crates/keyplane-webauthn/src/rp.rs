//! One tenant's relying party: starts and finishes registration and authentication ceremonies
//! with webauthn-rs-core, and moves ceremony state in and out as JSON so that it can be stored
//! in the database between the two requests of a ceremony.

use crate::facts::RegistrationFacts;
use crate::map_webauthn_error;
use crate::wire;
use keyplane_core::Error;
use serde_json::Value;
use std::time::{Duration, SystemTime};
use url::Url;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationCaList, AttestationCaListBuilder, AttestationConveyancePreference,
    AttestationFormat, AttestationMetadata, AuthenticationState, COSEAlgorithm, COSEKey,
    COSEKeyType, Credential, ECDSACurve, ParsedAttestation, ParsedAttestationData,
    PublicKeyCredential, RegisterPublicKeyCredential, RegisteredExtensions, RegistrationState,
    UserVerificationPolicy,
};
use webauthn_rs_core::WebauthnCore;

/// The relying-party settings of one tenant.
#[derive(Clone, Debug)]
pub struct RpConfig {
    pub rp_id: String,
    pub rp_name: String,
    pub origins: Vec<String>,
    /// How long the browser may wait for the user; also the ceremony lifetime.
    pub timeout: Duration,
}

/// Trust anchors (root certificates, DER) against which attestation chains are judged.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    pub roots_der: Vec<Vec<u8>>,
}

impl TrustAnchors {
    /// Anchors from PEM texts (each may hold several certificates); every one must parse.
    pub fn from_pem<S: AsRef<str>>(pems: &[S]) -> Result<Self, Error> {
        let mut roots_der = Vec::new();
        for pem in pems {
            roots_der.extend(crate::mds::pem_to_der(pem.as_ref())?);
        }
        Ok(TrustAnchors { roots_der })
    }
}

/// How a registration response is judged beyond the ceremony state.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Roots to judge the attestation chain against; `None` = do not judge trust.
    pub trust: Option<TrustAnchors>,
    /// The instant at which certificate validity is judged (normally now; earlier for captures).
    pub at: SystemTime,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            trust: None,
            at: SystemTime::now(),
        }
    }
}

/// A verified registration, ready to store.
#[derive(Clone, Debug)]
pub struct RegisteredCredential {
    pub facts: RegistrationFacts,
    pub transports: Vec<String>,
    /// `basic`, `self`, `attca`, `anonca`, `none` or `uncertain`.
    pub attestation_type: &'static str,
    /// Whether the attestation chained to a trust anchor (`None` when trust was not judged).
    pub attestation_trusted: Option<bool>,
    /// webauthn-rs's serialised credential, needed to verify later assertions.
    pub library_state: String,
}

/// A client's assertion, decoded but not yet verified.
#[derive(Clone, Debug)]
pub struct ParsedAssertion {
    inner: PublicKeyCredential,
}

impl ParsedAssertion {
    /// Decodes an assertion in WebAuthn JSON. Malformed input gives a stable 4xx code.
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        let inner: PublicKeyCredential =
            serde_json::from_value(wire::normalise_base64(v)).map_err(|e| decode_error(&e))?;
        if inner.type_ != "public-key" {
            return Err(Error::invalid(
                "invalid_credential",
                "credential.type must be \"public-key\"",
            ));
        }
        if inner.raw_id.is_empty() {
            return Err(Error::invalid(
                "invalid_credential",
                "credential.rawId is empty",
            ));
        }
        wire::check_client_data(&inner.response.client_data_json)?;
        // Authenticator data must parse (and carry no attested credential) before anything is
        // consumed; webauthn-rs parses it again when it verifies.
        webauthn_rs_core::internals::AuthenticatorData::<webauthn_rs_core::proto::Authentication>::try_from(
            inner.response.authenticator_data.as_slice(),
        )
        .map_err(|_| Error::invalid("malformed_authenticator_data", "authenticatorData is not valid authenticator data"))?;
        if inner.response.signature.is_empty() {
            return Err(Error::invalid(
                "invalid_credential",
                "response.signature is empty",
            ));
        }
        Ok(ParsedAssertion { inner })
    }

    pub fn credential_id(&self) -> &[u8] {
        &self.inner.raw_id
    }

    pub fn user_handle(&self) -> Option<&[u8]> {
        self.inner.get_user_unique_id()
    }

    pub fn client_data_json(&self) -> &[u8] {
        &self.inner.response.client_data_json
    }

    pub fn authenticator_data(&self) -> &[u8] {
        &self.inner.response.authenticator_data
    }
}

/// A client's registration response, decoded but not yet verified.
#[derive(Clone, Debug)]
pub struct ParsedRegistration {
    inner: RegisterPublicKeyCredential,
    facts: RegistrationFacts,
}

impl ParsedRegistration {
    /// Decodes a registration response in WebAuthn JSON, including its attestation object.
    /// Malformed input and credential keys Keyplane cannot verify get a stable 4xx code here.
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        let inner: RegisterPublicKeyCredential =
            serde_json::from_value(wire::normalise_base64(v)).map_err(|e| decode_error(&e))?;
        if inner.type_ != "public-key" {
            return Err(Error::invalid(
                "invalid_credential",
                "credential.type must be \"public-key\"",
            ));
        }
        let facts = RegistrationFacts::from_attestation_object(&inner.response.attestation_object)?;
        if let Some(alg) = facts.cose_alg {
            if COSEAlgorithm::try_from(alg as i128).is_err() {
                return Err(Error::invalid(
                    "unsupported_algorithm",
                    format!("COSE algorithm {alg} is not supported"),
                ));
            }
        }
        verifiable_cose_key(&facts.public_key)?;
        wire::check_client_data(&inner.response.client_data_json)?;
        Ok(ParsedRegistration { inner, facts })
    }

    pub fn facts(&self) -> &RegistrationFacts {
        &self.facts
    }

    pub fn client_data_json(&self) -> &[u8] {
        &self.inner.response.client_data_json
    }

    pub fn attestation_object(&self) -> &[u8] {
        &self.inner.response.attestation_object
    }
}

/// Parses a COSE key and makes sure webauthn-rs-core can verify signatures made with it.
///
/// webauthn-rs-core 0.6.2 parses Ed25519/Ed448 (OKP) and P-521 keys but cannot verify their
/// signatures (`COSEKey::verify_signature` gives `SshPublicKeyEDUnsupported` for OKP keys and
/// always `false` for P-521). Accepting such a key would store a passkey that can never sign in.
fn verifiable_cose_key(bytes: &[u8]) -> Result<COSEKey, Error> {
    let value: serde_cbor_2::Value = serde_cbor_2::from_slice(bytes)
        .map_err(|_| Error::invalid("malformed_cbor", "the COSE key is not valid CBOR"))?;
    let key = COSEKey::try_from(&value).map_err(|e| map_webauthn_error(&e))?;
    let unverifiable = match &key.key {
        COSEKeyType::EC_OKP(_) => Some("EdDSA (OKP)"),
        COSEKeyType::EC_EC2(k) if k.curve == ECDSACurve::SECP521R1 => Some("P-521"),
        _ => None,
    };
    match unverifiable {
        Some(what) => Err(Error::invalid(
            "unsupported_algorithm",
            format!(
                "{what} credential keys are not accepted: Keyplane cannot verify their signatures"
            ),
        )),
        None => Ok(key),
    }
}

/// What a verified assertion proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionOutcome {
    pub sign_count: u32,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// The credential's library state with counter and backup flags brought up to date.
    pub library_state: String,
}

fn decode_error(e: &serde_json::Error) -> Error {
    let text = e.to_string();
    let code = if text.contains("base64")
        || text.contains("Base64")
        || text.contains("Invalid symbol")
        || text.contains("Invalid last symbol")
        || text.contains("Invalid padding")
        || text.contains("Invalid byte")
    {
        "malformed_base64"
    } else {
        "invalid_credential"
    };
    Error::invalid(
        code,
        format!("credential is not a valid WebAuthn JSON response: {text}"),
    )
}

/// The COSE numbers of the algorithms Keyplane offers for new credentials (what a registration
/// whose challenge was issued elsewhere is judged against).
pub fn offered_algorithm_ids() -> Vec<i64> {
    offered_algorithms().into_iter().map(|a| a as i64).collect()
}

/// The algorithms Keyplane offers for new credentials, in order of preference: those whose
/// signatures webauthn-rs-core can verify, so not EdDSA (see `verifiable_cose_key`).
fn offered_algorithms() -> Vec<COSEAlgorithm> {
    vec![
        COSEAlgorithm::ES256,
        COSEAlgorithm::ES384,
        COSEAlgorithm::RS256,
    ]
}

fn uv_policy(require_uv: bool) -> UserVerificationPolicy {
    if require_uv {
        UserVerificationPolicy::Required
    } else {
        UserVerificationPolicy::Preferred
    }
}

/// Removes `null` members so the options parse with `PublicKeyCredential.parse*OptionsFromJSON`,
/// which rejects `null` where it expects a value or absence.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

/// A relying party for one tenant.
pub struct RelyingParty {
    core: WebauthnCore,
}

impl RelyingParty {
    pub fn new(cfg: &RpConfig) -> Result<Self, Error> {
        let origins = cfg
            .origins
            .iter()
            .map(|o| {
                Url::parse(o).map_err(|_| {
                    Error::invalid("invalid_origin", format!("{o} is not a valid origin URL"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if origins.is_empty() {
            return Err(Error::invalid(
                "invalid_origin",
                "a tenant needs at least one origin",
            ));
        }
        Ok(RelyingParty {
            core: WebauthnCore::new_unsafe_experts_only(
                &cfg.rp_name,
                &cfg.rp_id,
                origins,
                cfg.timeout,
                Some(false),
                Some(false),
            ),
        })
    }

    /// Starts a registration: returns the `publicKey` creation options (WebAuthn JSON) and the
    /// state to store. Always asks for a discoverable credential (usernameless sign-in and
    /// autofill need one) and for direct attestation (so the authenticator model is known).
    pub fn start_registration(
        &self,
        user_handle: &[u8],
        username: &str,
        display_name: &str,
        exclude_credentials: Vec<Vec<u8>>,
        require_uv: bool,
    ) -> Result<(Value, String), Error> {
        let builder = self
            .core
            .new_challenge_register_builder(user_handle, username, display_name)
            .map_err(|e| map_webauthn_error(&e))?
            .attestation(AttestationConveyancePreference::Direct)
            .user_verification_policy(uv_policy(require_uv))
            .exclude_credentials(if exclude_credentials.is_empty() {
                None
            } else {
                Some(exclude_credentials)
            })
            .credential_algorithms(offered_algorithms())
            .require_resident_key(true);
        let (ccr, state) = self
            .core
            .generate_challenge_register(builder)
            .map_err(|e| map_webauthn_error(&e))?;
        let mut options =
            serde_json::to_value(&ccr.public_key).map_err(|e| internal("encode options", e))?;
        if let Some(sel) = options
            .get_mut("authenticatorSelection")
            .and_then(Value::as_object_mut)
        {
            sel.insert("residentKey".into(), Value::from("required"));
        }
        strip_nulls(&mut options);
        let state = serde_json::to_string(&state).map_err(|e| internal("encode state", e))?;
        Ok((options, state))
    }

    /// Finishes a registration against the stored state.
    pub fn finish_registration(
        &self,
        state: &str,
        response: &Value,
        opts: &VerifyOptions,
    ) -> Result<RegisteredCredential, Error> {
        self.finish_parsed_registration(state, &ParsedRegistration::from_json(response)?, opts)
    }

    /// Finishes a registration whose response was decoded earlier (so that a malformed response
    /// can be refused before the ceremony is consumed).
    pub fn finish_parsed_registration(
        &self,
        state: &str,
        parsed: &ParsedRegistration,
        opts: &VerifyOptions,
    ) -> Result<RegisteredCredential, Error> {
        let state: RegistrationState =
            serde_json::from_str(state).map_err(|e| internal("decode state", e))?;
        let reg = &parsed.inner;
        let facts = parsed.facts.clone();
        let (cred, attestation_verified) = match self.core.register_credential(reg, &state, None) {
            Ok(cred) => (cred, true),
            Err(e) if attestation_unverifiable(&e, &facts.fmt) => {
                // webauthn-rs-core cannot judge this attestation statement (TPM: no attestation
                // hash implemented; android-safetynet: unsupported; SHA-1 signed statements).
                // The registration itself does not rest on attestation: verify everything else
                // (challenge, origin, RP ID, flags, key) by presenting the same authenticator
                // data without a statement, and record the attestation as unverifiable, for
                // policy to weigh. Nothing in it is trusted.
                tracing::info!(fmt = %facts.fmt, error = ?e, "attestation statement unverifiable; registering as unattested");
                let stripped = without_attestation_statement(reg)?;
                let cred = self
                    .core
                    .register_credential(&stripped, &state, None)
                    .map_err(|e| map_webauthn_error(&e))?;
                (cred, false)
            }
            Err(e) => return Err(map_webauthn_error(&e)),
        };
        let attestation_trusted = match &opts.trust {
            None => None,
            Some(_) if !attestation_verified => Some(false),
            Some(anchors) => Some(judge_trust(&cred, &facts, anchors, opts.at)?),
        };
        let attestation_type = match &cred.attestation.data {
            _ if !attestation_verified => "unverifiable",
            ParsedAttestationData::Basic(_) => "basic",
            ParsedAttestationData::Self_ => "self",
            ParsedAttestationData::AttCa(_) => "attca",
            ParsedAttestationData::AnonCa(_) => "anonca",
            ParsedAttestationData::ECDAA => "ecdaa",
            ParsedAttestationData::None => "none",
            ParsedAttestationData::Uncertain => "uncertain",
        };
        let transports = cred
            .transports
            .iter()
            .flatten()
            .map(|t| {
                serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .filter(|t| !t.is_empty())
            .collect();
        let library_state =
            serde_json::to_string(&cred).map_err(|e| internal("encode credential", e))?;
        Ok(RegisteredCredential {
            facts,
            transports,
            attestation_type,
            attestation_trusted,
            library_state,
        })
    }

    /// Starts an authentication. `allowed` are the library states of the user's credentials, or
    /// empty for a usernameless (discoverable) ceremony. `decoy_ids` are credential ids to list
    /// when the username is unknown, so that the answer looks like a real user's.
    pub fn start_authentication(
        &self,
        allowed: &[String],
        decoy_ids: &[Vec<u8>],
        require_uv: bool,
    ) -> Result<(Value, String), Error> {
        let creds = allowed
            .iter()
            .map(|s| {
                serde_json::from_str::<Credential>(s).map_err(|e| internal("decode credential", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let builder = self
            .core
            .new_challenge_authenticate_builder(creds, Some(uv_policy(require_uv)))
            .map_err(|e| map_webauthn_error(&e))?;
        let (rcr, state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(|e| map_webauthn_error(&e))?;
        let mut options =
            serde_json::to_value(&rcr.public_key).map_err(|e| internal("encode options", e))?;
        if !decoy_ids.is_empty() {
            let list: Vec<Value> = decoy_ids
                .iter()
                .map(|id| serde_json::json!({ "type": "public-key", "id": b64url(id) }))
                .collect();
            options["allowCredentials"] = Value::Array(list);
        }
        strip_nulls(&mut options);
        let state = serde_json::to_string(&state).map_err(|e| internal("encode state", e))?;
        Ok((options, state))
    }

    /// Verifies an assertion with the stored credential (whose current counter is
    /// `stored_sign_count`) against the ceremony state.
    pub fn finish_authentication(
        &self,
        state: &str,
        assertion: &ParsedAssertion,
        stored_library_state: &str,
        stored_sign_count: u32,
    ) -> Result<AssertionOutcome, Error> {
        let state: AuthenticationState =
            serde_json::from_str(state).map_err(|e| internal("decode state", e))?;
        let mut cred: Credential = serde_json::from_str(stored_library_state)
            .map_err(|e| internal("decode credential", e))?;
        cred.counter = stored_sign_count;
        let result = self
            .core
            .authenticate_single_credential(&assertion.inner, &state, &cred)
            .map_err(|e| map_webauthn_error(&e))?;
        cred.counter = result.counter();
        cred.backup_state = result.backup_state();
        cred.backup_eligible = result.backup_eligible();
        let library_state =
            serde_json::to_string(&cred).map_err(|e| internal("encode credential", e))?;
        Ok(AssertionOutcome {
            sign_count: result.counter(),
            user_verified: result.user_verified(),
            backup_eligible: result.backup_eligible(),
            backup_state: result.backup_state(),
            library_state,
        })
    }

    /// Ceremony state for a registration whose challenge was issued elsewhere (a capture being
    /// inspected, or a recorded test vector). `algorithms` are COSE algorithm numbers.
    pub fn registration_state_for(
        challenge: &[u8],
        algorithms: &[i64],
        require_uv: bool,
    ) -> Result<String, Error> {
        let algs: Vec<COSEAlgorithm> = algorithms
            .iter()
            .map(|a| {
                COSEAlgorithm::try_from(*a as i128).map_err(|_| {
                    Error::invalid(
                        "unsupported_algorithm",
                        format!("COSE algorithm {a} is not supported"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let state = serde_json::json!({
            "policy": if require_uv { "required" } else { "preferred" },
            "exclude_credentials": [],
            "challenge": b64url(challenge),
            "credential_algorithms": algs,
            "require_resident_key": false,
            "authenticator_attachment": null,
            "extensions": {},
            "allow_synchronised_authenticators": true,
        });
        // Round-trip through the library type so a shape change upstream fails here, loudly.
        let parsed: RegistrationState =
            serde_json::from_value(state).map_err(|e| internal("build registration state", e))?;
        serde_json::to_string(&parsed).map_err(|e| internal("encode state", e))
    }

    /// Ceremony state for an authentication whose challenge was issued elsewhere.
    pub fn authentication_state_for(challenge: &[u8], require_uv: bool) -> Result<String, Error> {
        let state = serde_json::json!({
            "credentials": [],
            "policy": if require_uv { "required" } else { "preferred" },
            "challenge": b64url(challenge),
            "appid": null,
            "allow_backup_eligible_upgrade": true,
        });
        let parsed: AuthenticationState =
            serde_json::from_value(state).map_err(|e| internal("build authentication state", e))?;
        serde_json::to_string(&parsed).map_err(|e| internal("encode state", e))
    }

    /// Library state for a credential known only by its id, COSE key and counter (a recorded
    /// vector, or a credential imported from elsewhere).
    pub fn library_state_from_cose(
        credential_id: &[u8],
        cose_key: &[u8],
        sign_count: u32,
        user_verified: bool,
    ) -> Result<String, Error> {
        let key = verifiable_cose_key(cose_key)?;
        let cred = Credential {
            cred_id: credential_id.to_vec(),
            cred: key,
            counter: sign_count,
            transports: None,
            user_verified,
            backup_eligible: false,
            backup_state: false,
            registration_policy: UserVerificationPolicy::Preferred,
            extensions: RegisteredExtensions::none(),
            attestation: ParsedAttestation {
                data: ParsedAttestationData::None,
                metadata: AttestationMetadata::None,
            },
            attestation_format: AttestationFormat::None,
        };
        serde_json::to_string(&cred).map_err(|e| internal("encode credential", e))
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether the attestation chain of `cred` reaches one of the anchors at instant `at`.
fn judge_trust(
    cred: &Credential,
    facts: &RegistrationFacts,
    anchors: &TrustAnchors,
    at: SystemTime,
) -> Result<bool, Error> {
    if anchors.roots_der.is_empty() {
        return Ok(false);
    }
    let mut builder = AttestationCaListBuilder::new();
    for der in &anchors.roots_der {
        builder
            .insert_device_der(
                der,
                uuid::Uuid::from_bytes(facts.aaguid),
                String::new(),
                Default::default(),
            )
            .map_err(|e| {
                Error::invalid(
                    "invalid_trust_anchor",
                    format!("a trust anchor is not a valid certificate: {e:?}"),
                )
            })?;
    }
    let list: AttestationCaList = builder.build();
    match webauthn_rs_core::attestation::verify_attestation_ca_chain(
        &cred.attestation.data,
        &list,
        at,
    ) {
        Ok(Some(_)) => Ok(true),
        Ok(None) | Err(_) => Ok(false),
    }
}

/// Errors by which webauthn-rs-core says it cannot judge an attestation statement at all, as
/// opposed to having judged it invalid.
fn attestation_unverifiable(e: &WebauthnError, fmt: &str) -> bool {
    match e {
        WebauthnError::AttestationNotSupported => true,
        // SHA-1 signed statements (old TPMs, U2F-era certificates): refused by design.
        WebauthnError::CredentialInsecureCryptography => true,
        // webauthn-rs-core 0.6.2 implements no TPM attestation hash and reports it as a key
        // type error; the credential key itself already parsed in `ParsedRegistration`.
        WebauthnError::COSEKeyInvalidType => fmt == "tpm",
        _ => false,
    }
}

/// The same response with its attestation object re-encoded as `fmt: "none"`, `attStmt: {}` and
/// the identical authenticator data bytes.
fn without_attestation_statement(
    reg: &RegisterPublicKeyCredential,
) -> Result<RegisterPublicKeyCredential, Error> {
    use serde_cbor_2::Value as Cbor;
    let malformed = || {
        Error::invalid(
            "malformed_attestation",
            "attestationObject is not a CBOR map with authData",
        )
    };
    let Cbor::Map(map) = serde_cbor_2::from_slice::<Cbor>(&reg.response.attestation_object)
        .map_err(|_| malformed())?
    else {
        return Err(malformed());
    };
    let auth_data = map
        .get(&Cbor::Text("authData".into()))
        .cloned()
        .ok_or_else(malformed)?;
    let stripped = Cbor::Map(
        [
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(Default::default())),
            (Cbor::Text("authData".into()), auth_data),
        ]
        .into_iter()
        .collect(),
    );
    let mut out = reg.clone();
    out.response.attestation_object =
        serde_cbor_2::to_vec(&stripped).map_err(|e| internal("re-encode attestation", e))?;
    Ok(out)
}
