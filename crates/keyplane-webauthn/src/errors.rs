//! Maps webauthn-rs errors onto Keyplane's stable error codes. The codes are part of the HTTP
//! API: clients and the UI switch on them, so they never change meaning.

use keyplane_core::Error;
use webauthn_rs_core::error::WebauthnError;

/// The stable code and message for a verification failure.
pub fn map_webauthn_error(e: &WebauthnError) -> Error {
    use WebauthnError as W;
    let (code, msg): (&'static str, &str) = match e {
        W::InvalidClientDataType => (
            "client_data_type_mismatch",
            "clientDataJSON.type is not the one this ceremony expects",
        ),
        W::MismatchedChallenge => (
            "challenge_mismatch",
            "the response answers a different challenge",
        ),
        W::InvalidRPOrigin => (
            "origin_mismatch",
            "the response comes from an origin this tenant does not accept",
        ),
        W::CredentialCrossOrigin => (
            "cross_origin_not_allowed",
            "cross-origin ceremonies are not accepted",
        ),
        W::InvalidRPIDHash => (
            "rp_id_mismatch",
            "the authenticator signed for a different relying party id",
        ),
        W::UserNotPresent => (
            "user_not_present",
            "the authenticator did not report user presence",
        ),
        W::UserNotVerified => (
            "user_not_verified",
            "user verification was required but not performed",
        ),
        W::ParseCBORFailure(_) | W::ParseNOMFailure | W::ParseInsufficientBytesAvailable => (
            "malformed_cbor",
            "the authenticator data or attestation object is not valid CBOR/binary",
        ),
        W::ParseBase64Failure(_) => ("malformed_base64", "a field is not valid base64url"),
        W::ParseJSONFailure(_) => (
            "malformed_client_data",
            "clientDataJSON is not valid JSON of the expected shape",
        ),
        W::MissingAttestationCredentialData => (
            "malformed_attestation",
            "the attestation carries no credential data",
        ),
        W::AttestationNotSupported => (
            "attestation_format_unsupported",
            "this attestation statement format is not supported",
        ),
        W::AuthenticationFailure => (
            "signature_invalid",
            "the signature does not verify with the credential's public key",
        ),
        W::CredentialPossibleCompromise => (
            "sign_count_regression",
            "the signature counter went backwards; the credential may be cloned",
        ),
        W::CredentialNotFound => (
            "unknown_credential",
            "the credential is not one this ceremony allows",
        ),
        W::CredentialExcludedFromRequest => (
            "credential_excluded",
            "this authenticator already holds a passkey for the account",
        ),
        W::SignatureInvalid => (
            "signature_invalid",
            "the signature does not verify with the credential's public key",
        ),
        W::AttestationCertificateAAGUIDMismatch => (
            "attestation_aaguid_mismatch",
            "the attestation certificate names a different AAGUID than the authenticator data",
        ),
        W::CredentialAlteredAlgFromRequest => (
            "algorithm_not_allowed",
            "the credential uses an algorithm that was not offered, or is excluded",
        ),
        W::CredentialInsecureCryptography => (
            "unsupported_algorithm",
            "the attestation is signed with SHA-1, which Keyplane does not accept",
        ),
        W::COSEKeyInvalidType
        | W::COSEKeyInvalidAlgorithm
        | W::COSEKeyEDUnsupported
        | W::COSEKeyInvalidCBORValue
        | W::COSEKeyECDSAXYInvalid
        | W::COSEKeyRSANEInvalid
        | W::COSEKeyEDDSAXInvalid
        | W::COSEKeyECDSAInvalidCurve
        | W::COSEKeyEDDSAInvalidCurve
        | W::SshPublicKeyEDUnsupported => (
            "unsupported_algorithm",
            "the credential public key uses an algorithm or key type Keyplane does not accept",
        ),
        W::AttestationNotVerifiable
        | W::AttestationCertificateTrustStoreEmpty
        | W::AttestationUntrustedAaguid
        | W::AttestationChainNotTrusted(_)
        | W::AttestationTrustFailure
        | W::TrustFailure
        | W::AttestationFormatMissingAaguid => (
            "attestation_untrusted",
            "the attestation does not chain to a trusted root",
        ),
        W::CredentialMayNotBeHardwareBound => (
            "credential_flags_invalid",
            "backup state is set without backup eligibility",
        ),
        _ => (
            "invalid_attestation",
            "the response failed WebAuthn verification",
        ),
    };
    Error::invalid(code, format!("{msg} ({e:?})"))
}
