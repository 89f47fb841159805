//! The OpenID Connect provider with a second, independent relying party: Authlib (Python), the
//! script in `tests/oidc_rp/authlib_rp.py`, against a real server on both backends. It validates
//! the ID token with Authlib's own OpenID Connect rules (iss, aud, nonce, acr, exp, iat,
//! auth_time) against the JWKS, and exercises userinfo and refresh rotation with reuse detection.

mod common;

use common::both_backends;
use keyplane_core::audit::Caller;
use keyplane_server::service::{ClientCreation, NewClient, OidcRegistration};
use keyplane_testkit::{test_data, Backend, TestServer};
use serde_json::Value;

const REDIRECT: &str = "http://127.0.0.1:7777/authlib/callback";

async fn authlib_signs_a_user_in_validates_the_id_token_and_refreshes(backend: Backend) {
    let Some(pythonpath) = test_data::authlib_pythonpath() else {
        return;
    };
    let server = TestServer::start(backend).await;
    let (_, alice) = server.user_with_passkey("alice").await;
    let tenant = server.default_tenant().await;
    // The first start made `admin` the owner; the application is theirs.
    let user = |name: &'static str| {
        let (server, tenant) = (&server, &tenant);
        async move {
            server
                .app
                .store
                .user_by_username(&tenant.id, name)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let owner = user("admin").await;
    let created = server
        .app
        .create_client(
            &tenant,
            NewClient {
                kind: "oidc_client".into(),
                name: "python app".into(),
                owner: owner.id,
                scopes: vec![],
                expires_days: Some(30),
                oidc: Some(OidcRegistration {
                    redirect_uris: vec![REDIRECT.into()],
                    post_logout_redirect_uris: vec![],
                    token_endpoint_auth_method: None,
                    jwks: None,
                    scopes: Some(vec![
                        "openid".into(),
                        "profile".into(),
                        "offline_access".into(),
                    ]),
                }),
                webhook: None,
            },
            &Caller::operator("test"),
        )
        .await
        .unwrap();
    let ClientCreation::Created { client, secret } = created else {
        panic!("created without approval");
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc_rp/authlib_rp.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .env("PYTHONPATH", &pythonpath)
        .env("ISSUER", server.origin())
        .env("CLIENT_ID", client.client.id.as_str())
        .env("CLIENT_SECRET", secret.expose())
        .env("REDIRECT_URI", REDIRECT)
        .env("BROWSER_SESSION", &alice)
        .output()
        .await
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Authlib relying party failed:\n{stderr}"
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let alice_id = user("alice").await.id;
    assert_eq!(seen["sub"], alice_id.as_str());
    assert_eq!(seen["acr"], "aal2");
    assert!(
        seen["amr"].as_array().unwrap().contains(&"mfa".into()),
        "{seen}"
    );
    assert_eq!(seen["preferred_username"], "alice");
    assert_eq!(seen["userinfo"]["sub"], alice_id.as_str());
    assert_eq!(seen["refresh_rotated"], true);
    assert_eq!(seen["replay_error"], "invalid_grant", "{seen}");
    server.shutdown().await;
}

both_backends!(authlib_signs_a_user_in_validates_the_id_token_and_refreshes);
