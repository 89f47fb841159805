//! How an OIDC client proves itself at the token endpoint: its secret in HTTP Basic
//! (`client_secret_basic`) or in the form (`client_secret_post`), or a JWT signed with its own
//! key (`private_key_jwt`, RFC 7523), whichever it is registered for and nothing else. A client
//! assertion's `jti` is kept until the assertion expires, so it cannot be replayed.

use super::oidc::{hash, parse_client_jwks};
use super::App;
use keyplane_core::audit::{Actor, Caller, Outcome};
use keyplane_core::oidc::{GrantKind, OidcClientConfig, OidcGrant, TokenAuthMethod};
use keyplane_core::*;
use keyplane_store::{AuditBatch, StoreError};
use serde_json::{json, Value};

/// What the request presented.
#[derive(Default)]
pub struct ClientCredentials {
    /// From `Authorization: Basic`, already URL-decoded.
    pub basic: Option<(String, String)>,
    pub form_client_id: Option<String>,
    pub form_client_secret: Option<String>,
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live: it is a one-time proof, not a credential.
const MAX_ASSERTION_SECS: i64 = 600;

fn invalid_client(msg: impl Into<String>) -> Error {
    Error::unauthenticated("invalid_client", msg)
}

impl App {
    /// The OIDC client the request authenticates, by the method it is registered for. Every
    /// refusal of a known client is recorded (`oidc.client_refused`).
    pub async fn oidc_authenticate_client(
        &self,
        tenant: &Tenant,
        creds: &ClientCredentials,
        token_endpoint: &str,
        caller: &Caller,
    ) -> Result<(MachineClient, OidcClientConfig), Error> {
        let (method, client_id) = match (&creds.basic, &creds.form_client_secret, &creds.assertion)
        {
            (Some((id, _)), None, None) => (TokenAuthMethod::ClientSecretBasic, id.clone()),
            (None, Some(_), None) => (
                TokenAuthMethod::ClientSecretPost,
                creds
                    .form_client_id
                    .clone()
                    .ok_or_else(|| invalid_client("client_id is missing"))?,
            ),
            (None, None, Some(a)) => {
                if creds.assertion_type.as_deref() != Some(JWT_BEARER) {
                    return Err(invalid_client(format!(
                        "client_assertion_type must be {JWT_BEARER}"
                    )));
                }
                let iss = unverified_issuer(a)
                    .ok_or_else(|| invalid_client("client_assertion is not a JWT with iss"))?;
                (TokenAuthMethod::PrivateKeyJwt, iss)
            }
            (None, None, None) => return Err(invalid_client("the client did not authenticate")),
            _ => {
                return Err(invalid_client(
                    "use exactly one client authentication method",
                ))
            }
        };
        if let Some(form_id) = &creds.form_client_id {
            if *form_id != client_id {
                return Err(invalid_client(
                    "client_id differs from the authenticated client",
                ));
            }
        }
        let Some((client, config)) = self.oidc_client(tenant, &client_id).await? else {
            return Err(invalid_client(
                "no active OpenID Connect client has this client_id",
            ));
        };
        let refusal = if method != config.auth_method {
            Some((
                "auth_method_mismatch",
                format!(
                    "this client authenticates with {}",
                    config.auth_method.as_str()
                ),
            ))
        } else {
            let now = self.clock.now();
            match method {
                TokenAuthMethod::ClientSecretBasic | TokenAuthMethod::ClientSecretPost => {
                    let secret = match &creds.basic {
                        Some((_, s)) => s.clone(),
                        None => creds.form_client_secret.clone().unwrap_or_default(),
                    };
                    (!client.secret_matches(&Secret::from_presented(secret).hash(), now)).then(
                        || {
                            (
                                "client_secret_wrong",
                                "the client secret is wrong".to_owned(),
                            )
                        },
                    )
                }
                TokenAuthMethod::PrivateKeyJwt => self
                    .check_client_assertion(
                        tenant,
                        &client,
                        &config,
                        creds.assertion.as_deref().unwrap_or(""),
                        token_endpoint,
                    )
                    .await?
                    .map(|why| ("client_assertion_invalid", why)),
            }
        };
        if let Some((reason, message)) = refusal {
            let event = Caller::new(Actor::machine(&client.id), caller.context.clone())
                .event("oidc.client_refused", "client", client.id.as_str())
                .outcome(Outcome::Failure, reason);
            self.record_failure(tenant, event).await;
            return Err(invalid_client(message));
        }
        let now = self.clock.now();
        if client.last_used_at.is_none_or(|t| now.0 - t.0 >= 60_000) {
            self.store.touch_client(&tenant.id, &client.id, now).await?;
        }
        Ok((client, config))
    }

    /// Checks a `private_key_jwt` assertion; `Some(reason)` when it is refused.
    async fn check_client_assertion(
        &self,
        tenant: &Tenant,
        client: &MachineClient,
        config: &OidcClientConfig,
        assertion: &str,
        token_endpoint: &str,
    ) -> Result<Option<String>, Error> {
        let jwks: Value = match config.jwks.as_deref().map(serde_json::from_str) {
            Some(Ok(v)) => v,
            _ => return Ok(Some("the client has no usable jwks".into())),
        };
        let set = parse_client_jwks(&jwks)?;
        let Ok(header) = jsonwebtoken::decode_header(assertion) else {
            return Ok(Some("client_assertion is not a JWT".into()));
        };
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
            Some(kid) => set
                .keys
                .iter()
                .filter(|k| k.common.key_id.as_deref() == Some(kid))
                .collect(),
            None => set.keys.iter().collect(),
        };
        if matches!(
            header.alg,
            jsonwebtoken::Algorithm::HS256
                | jsonwebtoken::Algorithm::HS384
                | jsonwebtoken::Algorithm::HS512
        ) {
            return Ok(Some(
                "client_assertion must be signed with the client's private key".into(),
            ));
        }
        let issuer = self.oidc_issuer(tenant);
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&[token_endpoint, issuer.as_str()]);
        v.set_issuer(&[client.id.as_str()]);
        v.sub = Some(client.id.to_string());
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        v.leeway = 30;
        let mut claims = None;
        for k in candidates {
            let Ok(key) = jsonwebtoken::DecodingKey::from_jwk(k) else {
                continue;
            };
            if let Ok(data) = jsonwebtoken::decode::<Value>(assertion, &key, &v) {
                claims = Some(data.claims);
                break;
            }
        }
        let Some(claims) = claims else {
            return Ok(Some(
                "client_assertion's signature, iss, sub, aud or exp is not valid".into(),
            ));
        };
        let now = self.clock.now();
        let exp = claims["exp"].as_i64().unwrap_or(0);
        if exp > now.unix_seconds() + MAX_ASSERTION_SECS {
            return Ok(Some(format!(
                "client_assertion lives longer than {MAX_ASSERTION_SECS} seconds"
            )));
        }
        let Some(jti) = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty() && j.len() <= 256)
        else {
            return Ok(Some("client_assertion needs a jti".into()));
        };
        let grant = OidcGrant {
            tenant_id: tenant.id.clone(),
            hash: hash(&format!("{}\0{jti}", client.id)),
            kind: GrantKind::Assertion,
            client_id: client.id.clone(),
            user_id: None,
            session_id: None,
            family: None,
            body: json!({}).to_string(),
            created_at: now,
            expires_at: Timestamp(exp.saturating_mul(1000)).max(now.plus_secs(60)),
            used_at: None,
            revoked_at: None,
        };
        match self
            .store
            .add_oidc_grants(&tenant.id, &[grant], AuditBatch::new(now, &[]))
            .await
        {
            Ok(()) => Ok(None),
            Err(StoreError::Conflict(_)) => {
                Ok(Some("client_assertion was already used (jti)".into()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The `iss` of a JWT, read before its signature is checked: only to find whose key checks it.
fn unverified_issuer(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["iss"].as_str().map(str::to_owned)
}
