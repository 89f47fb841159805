//! The OpenID Connect provider's rules: what a relying party (an OIDC client) is registered with,
//! what an authorization request asks for (scopes, PKCE, the assurance: `acr_values`, `max_age`,
//! `prompt`), whether a session satisfies it, and what an ID token then says about the sign-in
//! (`acr`, `amr`, `auth_time`). Pure: the service layer stores grants and signs tokens.

use crate::assurance::Aal;
use crate::error::Error;
use crate::time::Timestamp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Scopes Keyplane answers. `openid` is required in every request.
pub const SCOPES_SUPPORTED: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// An authorization code works once, within this many seconds.
pub const CODE_TTL_SECS: i64 = 60;
/// Access and ID tokens.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 600;
/// Refresh tokens (each use rotates it; the family dies with the first reuse).
pub const REFRESH_TOKEN_TTL_SECS: i64 = 30 * 86_400;
/// How long an authorization request waits for the user to sign in.
pub const REQUEST_TTL_SECS: i64 = 600;
/// Token prefixes, so a leaked token says what it is.
pub const ACCESS_TOKEN_PREFIX: &str = "kpat_";
pub const REFRESH_TOKEN_PREFIX: &str = "kprt_";
pub const CODE_PREFIX: &str = "kpac_";
/// A pending authorization request's id (not a secret: it only resumes the request).
pub const REQUEST_PREFIX: &str = "kpaz_";

/// How a client proves itself at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

impl TokenAuthMethod {
    pub const ALL: [TokenAuthMethod; 3] = [
        TokenAuthMethod::ClientSecretBasic,
        TokenAuthMethod::ClientSecretPost,
        TokenAuthMethod::PrivateKeyJwt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenAuthMethod::ClientSecretPost => "client_secret_post",
            TokenAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What an OIDC client (a machine client of kind `oidc_client`) is registered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcClientConfig {
    /// Exact redirect URIs: https, or http on a loopback host (RFC 8252), no fragment.
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub auth_method: TokenAuthMethod,
    /// The client's public keys (a JWK Set as JSON text), for `private_key_jwt`.
    pub jwks: Option<String>,
    /// Scopes it may ask for (a subset of [`SCOPES_SUPPORTED`], always with `openid`).
    pub scopes: Vec<String>,
}

impl OidcClientConfig {
    /// Checks a registration: every URI well-formed, at least one redirect URI, known scopes,
    /// keys when the method is `private_key_jwt` (and only then).
    pub fn validate(&self) -> Result<(), Error> {
        if self.redirect_uris.is_empty() {
            return Err(Error::invalid(
                "invalid_redirect_uri",
                "an OIDC client needs at least one redirect URI",
            ));
        }
        for uri in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
        {
            check_redirect_uri(uri)?;
        }
        if let Some(s) = self
            .scopes
            .iter()
            .find(|s| !SCOPES_SUPPORTED.contains(&s.as_str()))
        {
            return Err(Error::invalid(
                "invalid_scope",
                format!(
                    "{s:?} is not a scope Keyplane offers ({})",
                    SCOPES_SUPPORTED.join(" ")
                ),
            ));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(Error::invalid(
                "invalid_scope",
                "an OIDC client's scopes include openid",
            ));
        }
        match (self.auth_method, &self.jwks) {
            (TokenAuthMethod::PrivateKeyJwt, None) => Err(Error::invalid(
                "invalid_jwks",
                "private_key_jwt needs the client's public keys (jwks)",
            )),
            (TokenAuthMethod::PrivateKeyJwt, Some(_)) | (_, None) => Ok(()),
            (_, Some(_)) => Err(Error::invalid(
                "invalid_jwks",
                "jwks is only for clients that authenticate with private_key_jwt",
            )),
        }
    }
}

/// A redirect URI Keyplane will send codes to: absolute, no fragment, https — or http only to a
/// loopback host, for native apps and development (RFC 8252 §7.3, §8.3).
pub fn check_redirect_uri(uri: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::invalid(
            "invalid_redirect_uri",
            format!("{uri:?} cannot be a redirect URI: {why}"),
        ))
    };
    if uri.len() > 2000 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("too long or contains spaces");
    }
    if uri.contains('#') {
        return bad("it has a fragment");
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return bad("it is not an absolute URL");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .trim_start_matches('[');
    let host = host.split([']']).next().unwrap_or(host);
    let host = if host.contains(':') && !host.starts_with("::") {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    if host.is_empty() {
        return bad("it has no host");
    }
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "::1") => Ok(()),
        "http" => bad("plain http is allowed only to localhost, 127.0.0.1 or [::1]"),
        _ => bad("the scheme must be https (or http to a loopback host)"),
    }
}

/// `code_challenge` (S256) matches `code_verifier` (RFC 7636 §4.6). The verifier must be 43 to
/// 128 characters of `[A-Za-z0-9-._~]`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    well_formed
        && crate::secret::constant_time_eq(
            URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()))
                .as_bytes(),
            challenge.as_bytes(),
        )
}

/// A `code_challenge` is the base64url SHA-256 of a verifier: 43 characters.
pub fn challenge_well_formed(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the relying party asked about the sign-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthRequirements {
    /// `acr_values`, in the order given (each one acceptable).
    pub acr_values: Vec<Aal>,
    /// `max_age` in seconds: the sign-in must be at most this old.
    pub max_age: Option<i64>,
    /// `prompt=login`: a sign-in after the request, whatever the session.
    pub prompt_login: bool,
}

impl AuthRequirements {
    /// Parses `acr_values` (space-separated levels); an unknown value is an error the client
    /// hears (`invalid_request`) rather than a level silently ignored.
    pub fn parse_acr_values(raw: &str) -> Result<Vec<Aal>, String> {
        raw.split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| {
                Aal::parse(s).ok_or_else(|| {
                    format!("acr_values: {s:?} is not a level Keyplane knows (aal1 aal2 aal3)")
                })
            })
            .collect()
    }

    /// The lowest level that satisfies the request (any listed value is acceptable).
    pub fn minimum(&self) -> Option<Aal> {
        self.acr_values.iter().copied().min()
    }

    /// Whether a session at `aal`, signed in at `auth_time`, satisfies the request made at
    /// `requested_at`, judged at `now`.
    pub fn check(
        &self,
        aal: Aal,
        auth_time: Timestamp,
        requested_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), Unmet> {
        if self.prompt_login && auth_time < requested_at {
            return Err(Unmet::SignInAgain);
        }
        if let Some(max) = self.max_age {
            if now.0 - auth_time.0 > max.saturating_mul(1000) {
                return Err(Unmet::SignInAgain);
            }
        }
        if let Some(min) = self.minimum() {
            if aal < min {
                return Err(Unmet::Level(min));
            }
        }
        Ok(())
    }

    /// The `acr` claim for a session at `aal` that satisfies the request: the highest requested
    /// value it reaches (so the relying party finds one of its own values), else the level itself.
    pub fn acr_claim(&self, aal: Aal) -> Aal {
        self.acr_values
            .iter()
            .copied()
            .filter(|v| *v <= aal)
            .max()
            .unwrap_or(aal)
    }
}

/// Why a session does not satisfy an authorization request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmet {
    /// The user must sign in (again): `prompt=login` or `max_age` passed.
    SignInAgain,
    /// The session's level is below the lowest acceptable one.
    Level(Aal),
}

/// Scopes granted: the requested ones the client is registered for. `openid` must be asked.
pub fn grant_scopes(requested: &str, allowed: &[String]) -> Result<Vec<String>, String> {
    let asked: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
    if !asked.contains(&"openid") {
        return Err("scope must include openid".into());
    }
    let mut granted: Vec<String> = Vec::new();
    for s in asked {
        if !SCOPES_SUPPORTED.contains(&s) {
            return Err(format!("{s:?} is not a scope Keyplane offers"));
        }
        if !allowed.iter().any(|a| a == s) {
            return Err(format!("this client is not registered for the scope {s:?}"));
        }
        if !granted.iter().any(|g| g == s) {
            granted.push(s.to_owned());
        }
    }
    Ok(granted)
}

/// What an OIDC grant row is. Every secret among them (codes, tokens) is stored only as its
/// SHA-256; requests and assertion ids are keyed the same way for one lookup path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    /// An authorization request waiting for the user to sign in (keyed by its id).
    Request,
    /// An authorization code.
    Code,
    AccessToken,
    RefreshToken,
    /// A `private_key_jwt` client assertion's `jti`, kept until it expires so it cannot be replayed.
    Assertion,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Request => "request",
            GrantKind::Code => "code",
            GrantKind::AccessToken => "access",
            GrantKind::RefreshToken => "refresh",
            GrantKind::Assertion => "assertion",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            GrantKind::Request,
            GrantKind::Code,
            GrantKind::AccessToken,
            GrantKind::RefreshToken,
            GrantKind::Assertion,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One stored grant. `body` is the service's JSON (the request's parameters, or what a code or
/// token stands for: scopes, nonce, acr, amr, auth time); `family` ties a code to every token
/// issued from it, so that a replay revokes them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcGrant {
    pub tenant_id: crate::ids::TenantId,
    pub hash: Vec<u8>,
    pub kind: GrantKind,
    pub client_id: crate::ids::MachineClientId,
    pub user_id: Option<crate::ids::UserId>,
    pub session_id: Option<crate::ids::SessionId>,
    pub family: Option<String>,
    pub body: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragments() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?x=1",
            "http://localhost:3000/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "/relative",
            "javascript:alert(1)",
            "ftp://example.com/",
            "https:///nohost",
            "https://exa mple.com/",
            "http://localhost.evil.com/cb",
            "http://127.0.0.1.evil.com/cb",
        ] {
            let e = check_redirect_uri(bad).unwrap_err();
            assert_eq!(e.code, "invalid_redirect_uri", "{bad}");
        }
    }

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636, Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(challenge_well_formed(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(
            !pkce_matches("short", challenge),
            "a verifier under 43 characters"
        );
        assert!(!pkce_matches(&format!("{verifier}!"), challenge));
        assert!(!challenge_well_formed("plain-challenge"));
    }

    #[test]
    fn acr_values_max_age_and_prompt_login_are_judged() {
        let t = |s: i64| Timestamp(s * 1000);
        let req = AuthRequirements {
            acr_values: vec![Aal::Aal3, Aal::Aal2],
            max_age: Some(300),
            prompt_login: false,
        };
        assert_eq!(req.minimum(), Some(Aal::Aal2));
        assert_eq!(req.check(Aal::Aal2, t(1000), t(1100), t(1200)), Ok(()));
        assert_eq!(
            req.check(Aal::Aal1, t(1000), t(1100), t(1200)),
            Err(Unmet::Level(Aal::Aal2))
        );
        assert_eq!(
            req.check(Aal::Aal3, t(1000), t(1100), t(1301)),
            Err(Unmet::SignInAgain)
        );
        assert_eq!(req.acr_claim(Aal::Aal3), Aal::Aal3);
        assert_eq!(req.acr_claim(Aal::Aal2), Aal::Aal2);
        let login = AuthRequirements {
            prompt_login: true,
            ..AuthRequirements::default()
        };
        assert_eq!(
            login.check(Aal::Aal2, t(1000), t(1100), t(1200)),
            Err(Unmet::SignInAgain)
        );
        assert_eq!(login.check(Aal::Aal2, t(1150), t(1100), t(1200)), Ok(()));
        assert_eq!(
            login.acr_claim(Aal::Aal2),
            Aal::Aal2,
            "nothing asked: the level reached"
        );
        assert!(AuthRequirements::parse_acr_values("aal2 urn:mace:incommon:iap:silver").is_err());
        assert_eq!(
            AuthRequirements::parse_acr_values("aal3  aal1").unwrap(),
            vec![Aal::Aal3, Aal::Aal1]
        );
    }

    #[test]
    fn scopes_are_granted_only_as_registered() {
        let allowed: Vec<String> = ["openid", "profile"].map(String::from).into();
        assert_eq!(
            grant_scopes("openid profile openid", &allowed).unwrap(),
            ["openid", "profile"]
        );
        assert!(
            grant_scopes("profile", &allowed).is_err(),
            "openid is required"
        );
        assert!(
            grant_scopes("openid email", &allowed).is_err(),
            "not registered"
        );
        assert!(grant_scopes("openid admin", &allowed).is_err(), "unknown");
    }

    #[test]
    fn a_registration_is_checked_whole() {
        let mut c = OidcClientConfig {
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: vec![],
            auth_method: TokenAuthMethod::ClientSecretBasic,
            jwks: None,
            scopes: vec!["openid".into()],
        };
        assert!(c.validate().is_ok());
        c.auth_method = TokenAuthMethod::PrivateKeyJwt;
        assert_eq!(c.validate().unwrap_err().code, "invalid_jwks");
        c.jwks = Some("{\"keys\":[]}".into());
        assert!(c.validate().is_ok());
        c.scopes = vec!["profile".into()];
        assert_eq!(c.validate().unwrap_err().code, "invalid_scope");
        c.scopes = vec!["openid".into()];
        c.redirect_uris.clear();
        assert_eq!(c.validate().unwrap_err().code, "invalid_redirect_uri");
    }

    proptest! {
        #[test]
        fn redirect_uri_checking_never_panics(s in "\\PC{0,80}") {
            let _ = check_redirect_uri(&s);
        }

        #[test]
        fn pkce_checking_never_panics(v in "\\PC{0,140}", c in "\\PC{0,60}") {
            let _ = pkce_matches(&v, &c);
            let _ = challenge_well_formed(&c);
            let _ = AuthRequirements::parse_acr_values(&v);
        }
    }
}
