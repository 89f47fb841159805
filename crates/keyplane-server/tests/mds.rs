//! FIDO MDS3 end to end, on both backends: a BLOB signed under a test root (in place of the FIDO
//! Alliance's; the same verification code) is imported; registrations from a software
//! authenticator with a real `packed` attestation become trusted and named; status reports drive
//! refusals and re-enrolment; BLOBs that do not verify, or are not newer, change nothing.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::both_backends;
use keyplane_core::audit::Caller;
use keyplane_store::{AuditFilter, Store};
use keyplane_testkit::pki::{Attester, MdsSigner};
use keyplane_testkit::{Backend, SoftAuthenticator, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

const KEY_A: [u8; 16] = [0xaa; 16];
const KEY_A_ID: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const KEY_B: [u8; 16] = [0xbb; 16];
const KEY_B_ID: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
const PROVIDER: [u8; 16] = [0xcc; 16];
const PROVIDER_ID: &str = "cccccccc-cccc-cccc-cccc-cccccccccccc";

fn entry(aaguid: &str, description: &str, statuses: &[&str], roots: &[Vec<u8>]) -> Value {
    json!({
        "aaguid": aaguid,
        "metadataStatement": {
            "aaguid": aaguid,
            "description": description,
            "authenticatorVersion": 1,
            "protocolFamily": "fido2",
            "schema": 3,
            "attestationTypes": ["basic_full"],
            "keyProtection": ["hardware", "secure_element"],
            "attestationRootCertificates": roots.iter().map(|r| STANDARD.encode(r)).collect::<Vec<_>>(),
            "icon": "data:image/png;base64,iVBORw0KGgo=",
            "aFieldFromTheFuture": {"keyplane": "ignores what it does not read"}
        },
        "statusReports": statuses.iter().map(|s| json!({"status": s, "effectiveDate": "2024-05-01"})).collect::<Vec<_>>(),
        "timeOfLastStatusChange": "2024-05-01"
    })
}

fn payload(number: i64, entries: Vec<Value>) -> Value {
    let mut entries = entries;
    // A U2F entry (no AAGUID): skipped, not an error.
    entries.push(json!({
        "attestationCertificateKeyIdentifiers": ["923881fe2f214ee465484371aeb72e97f5a58e0a"],
        "metadataStatement": {"description": "Old U2F key", "attestationRootCertificates": []},
        "statusReports": [{"status": "FIDO_CERTIFIED"}],
        "timeOfLastStatusChange": "2019-01-01"
    }));
    json!({ "legalHeader": "test", "no": number, "nextUpdate": "2099-01-01", "entries": entries })
}

struct Setup {
    server: TestServer,
    signer: MdsSigner,
    attester_a: Arc<Attester>,
    attester_b: Arc<Attester>,
    _roots: tempfile::TempDir,
}

async fn setup(backend: Backend) -> Setup {
    let signer = MdsSigner::new();
    let roots = tempfile::tempdir().unwrap();
    let root_file = roots.path().join("mds-root.pem");
    std::fs::write(&root_file, signer.root.pem()).unwrap();
    let server = TestServer::builder(backend)
        .settings(|s| s.mds.root_certificates = root_file.clone())
        .start()
        .await;
    Setup {
        server,
        signer,
        attester_a: Arc::new(Attester::new(KEY_A)),
        attester_b: Arc::new(Attester::new(KEY_B)),
        _roots: roots,
    }
}

impl Setup {
    fn blob(&self, number: i64, b_statuses: &[&str]) -> String {
        self.signer.sign(&payload(
            number,
            vec![
                entry(
                    KEY_A_ID,
                    "Keyplane Test Key A",
                    &["FIDO_CERTIFIED_L1", "FIDO_CERTIFIED_L2"],
                    &[self.attester_a.root_der()],
                ),
                entry(
                    KEY_B_ID,
                    "Keyplane Test Key B",
                    b_statuses,
                    &[self.attester_b.root_der()],
                ),
            ],
        ))
    }

    async fn import(
        &self,
        blob: &str,
    ) -> Result<keyplane_server::service::MdsImport, keyplane_core::Error> {
        self.server
            .app
            .import_mds(blob, false, &Caller::operator("test"))
            .await
    }

    fn key(&self, aaguid: [u8; 16], attester: &Arc<Attester>) -> SoftAuthenticator {
        SoftAuthenticator::security_key(&self.server.origin(), aaguid, attester.clone())
    }

    async fn events(&self, action: &str) -> usize {
        let tenant = self.server.default_tenant().await;
        self.server
            .store
            .list_audit_events(
                &tenant.id,
                &AuditFilter {
                    action: Some(action.into()),
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .len()
    }
}

async fn a_verified_blob_makes_attestations_trusted_and_names_models(backend: Backend) {
    let s = setup(backend).await;
    // Before any BLOB, the attestation verifies but nothing vouches for its root.
    let mut early = s.key(KEY_A, &s.attester_a);
    let token = s.server.invite("early").await;
    let cred = s.server.enrol(&mut early, &token).await;
    assert_eq!(
        (
            cred["attestation_format"].as_str(),
            cred["attestation_type"].as_str(),
            &cred["attestation_trusted"],
            &cred["authenticator"]
        ),
        (Some("packed"), Some("basic"), &json!(false), &Value::Null)
    );
    assert_eq!(
        s.server.sign_in(&mut early, Some("early")).await["aal"],
        "aal2"
    );

    let done = s
        .import(&s.blob(1, &["FIDO_CERTIFIED_L1"]))
        .await
        .expect("BLOB verifies");
    assert_eq!(
        (done.blob.number, done.blob.entries, done.skipped.len()),
        (1, 2, 1)
    );
    assert_eq!(s.events("mds.imported").await, 1);

    let mut ada = s.key(KEY_A, &s.attester_a);
    let token = s.server.invite("ada").await;
    let cred = s.server.enrol(&mut ada, &token).await;
    assert_eq!(cred["attestation_trusted"], true, "{cred}");
    assert_eq!(cred["authenticator"]["name"], "Keyplane Test Key A");
    assert_eq!(cred["authenticator"]["source"], "mds");
    // Built-in policy: aal3 = user verified + device-bound + trusted attestation.
    assert_eq!(s.server.sign_in(&mut ada, Some("ada")).await["aal"], "aal3");
    // The earlier credential keeps its registration-time verdict; it is named now.
    let session = s.server.sign_in(&mut early, Some("early")).await;
    assert_eq!(session["aal"], "aal2");
    let listed = s
        .server
        .request(
            reqwest::Method::GET,
            "/api/v1/me/credentials",
            None,
            session["token"].as_str(),
            None,
        )
        .await;
    assert_eq!(
        listed.body["credentials"][0]["authenticator"]["name"],
        "Keyplane Test Key A"
    );

    // An attestation from a root the model's MDS entry does not list is verified, not trusted.
    let impostor = Arc::new(Attester::new(KEY_A));
    let mut eve = s.key(KEY_A, &impostor);
    let token = s.server.invite("eve").await;
    let cred = s.server.enrol(&mut eve, &token).await;
    assert_eq!(
        (
            cred["attestation_type"].as_str(),
            &cred["attestation_trusted"]
        ),
        (Some("basic"), &json!(false))
    );
    assert_eq!(s.server.sign_in(&mut eve, Some("eve")).await["aal"], "aal2");

    // Names from the unsigned list label models MDS does not know, and nothing more.
    let n = s
        .server
        .app
        .import_authenticator_names(
            &json!({ PROVIDER_ID: "iCloud Keychain", KEY_A_ID: "not used: MDS wins" }).to_string(),
            "aaguids",
            &Caller::operator("test"),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let mut phone = SoftAuthenticator::with_aaguid(&s.server.origin(), true, true, PROVIDER);
    let token = s.server.invite("pia").await;
    let cred = s.server.enrol(&mut phone, &token).await;
    assert_eq!(
        cred["authenticator"],
        json!({"name": "iCloud Keychain", "source": "aaguids"})
    );
    assert_eq!(cred["attestation_trusted"], false);
    let cred = s
        .server
        .store_credentials(&s.server.default_tenant().await)
        .await;
    assert!(cred
        .iter()
        .any(|c| c.aaguid == KEY_A_ID && c.attestation_trusted));
    s.server.shutdown().await;
}

async fn the_policy_trusts_its_own_roots_and_can_require_trust(backend: Backend) {
    let s = setup(backend).await;
    let tenant = s.server.default_tenant().await;
    let own = Arc::new(Attester::new(KEY_A));
    let policy = format!(
        "version = 1\n[authenticators]\nattestation = \"trusted\"\ntrust_mds = false\ntrusted_roots = [\"\"\"\n{}\"\"\"]\n",
        own.root_pem()
    );
    s.server
        .app
        .apply_policy(&tenant, &policy, &Caller::operator("test"))
        .await
        .map_err(|e| format!("{e:?}"))
        .expect("policy with a root applies");
    let mut good = s.key(KEY_A, &own);
    let token = s.server.invite("gus").await;
    let cred = s.server.enrol(&mut good, &token).await;
    assert_eq!(cred["attestation_trusted"], true);
    // An unattested passkey is refused by `attestation = "trusted"`, naming the rule.
    let mut plain = SoftAuthenticator::new(&s.server.origin(), true, true);
    let token = s.server.invite("pat").await;
    let options = s
        .server
        .post(
            "/api/v1/registration/options",
            &json!({"enrolment_token": token}),
        )
        .await;
    let credential = plain.register(&options.body["publicKey"]).await.unwrap();
    let reply = s
        .server
        .post(
            "/api/v1/registration/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": credential}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, "policy_denied"),
        "{:?}",
        reply.body
    );
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("authenticators.attestation"),
        "{:?}",
        reply.body
    );
    // A root that is not a certificate is refused when the policy is applied, with its line.
    let broken = "version = 1\n[authenticators]\ntrusted_roots = [\"\"\"\n-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\"\"\"]\n";
    match s
        .server
        .app
        .apply_policy(&tenant, broken, &Caller::operator("test"))
        .await
    {
        Err(keyplane_server::service::ApplyError::Lint(errors)) => {
            assert_eq!(
                (errors[0].path.as_str(), errors[0].line),
                ("authenticators.trusted_roots", 5),
                "{errors:?}"
            );
        }
        other => panic!(
            "expected a lint error, got {:?}",
            other.map(|_| ()).map_err(|e| format!("{e:?}"))
        ),
    }
    s.server.shutdown().await;
}

async fn a_compromised_model_is_refused_and_its_passkeys_must_re_enrol(backend: Backend) {
    let s = setup(backend).await;
    s.import(&s.blob(1, &["FIDO_CERTIFIED_L1"])).await.unwrap();
    let mut bob = s.key(KEY_B, &s.attester_b);
    let token = s.server.invite("bob").await;
    s.server.enrol(&mut bob, &token).await;
    assert_eq!(s.server.sign_in(&mut bob, Some("bob")).await["aal"], "aal3");

    // The next BLOB reports that the model's user verification can be bypassed.
    s.import(&s.blob(2, &["FIDO_CERTIFIED_L1", "USER_VERIFICATION_BYPASS"]))
        .await
        .unwrap();
    let session = s.server.sign_in(&mut bob, Some("bob")).await;
    assert_eq!(session["restricted"], true, "{session}");
    assert_eq!(
        session["aal"], "aal1",
        "a compromised model's session carries no assurance"
    );
    let reasons = session["re_enrolment_reason"].to_string();
    assert!(
        reasons.contains("authenticator_status_denied")
            && reasons.contains("USER_VERIFICATION_BYPASS"),
        "{session}"
    );

    let mut again = s.key(KEY_B, &s.attester_b);
    let token = s.server.invite("bea").await;
    let options = s
        .server
        .post(
            "/api/v1/registration/options",
            &json!({"enrolment_token": token}),
        )
        .await;
    let credential = again.register(&options.body["publicKey"]).await.unwrap();
    let reply = s
        .server
        .post(
            "/api/v1/registration/verify",
            &json!({"ceremony": options.body["ceremony"], "credential": credential}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, "policy_denied"),
        "{:?}",
        reply.body
    );
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("USER_VERIFICATION_BYPASS"));
    s.server.shutdown().await;
}

async fn blobs_that_do_not_verify_or_are_not_newer_change_nothing(backend: Backend) {
    let s = setup(backend).await;
    let good = s.blob(5, &["FIDO_CERTIFIED_L1"]);
    s.import(&good).await.unwrap();
    let before = (
        s.server.store.mds_blob().await.unwrap(),
        s.server.store.mds_entries().await.unwrap(),
        s.events("mds.imported").await,
    );

    let stranger = MdsSigner::new();
    let [h, p, sig]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let other_payload = s.blob(6, &["REVOKED"]);
    let swapped_payload = format!("{h}.{}.{sig}", other_payload.split('.').nth(1).unwrap());
    let mut flipped_sig = sig.as_bytes().to_vec();
    flipped_sig[5] = if flipped_sig[5] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{h}.{p}.{}", String::from_utf8(flipped_sig).unwrap());
    let alg_none = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        header["alg"] = json!("none");
        format!("{}.{p}.", URL_SAFE_NO_PAD.encode(header.to_string()))
    };
    let cases = [
        (
            "another root",
            stranger.sign(&payload(7, vec![])),
            "mds_untrusted",
        ),
        (
            "an expired signing certificate",
            MdsSigner::expired().sign(&payload(7, vec![])),
            "mds_untrusted",
        ),
        (
            "a payload swapped under the signature",
            swapped_payload,
            "mds_bad_signature",
        ),
        ("a damaged signature", flipped, "mds_bad_signature"),
        ("alg none", alg_none, "mds_bad_signature"),
        ("not a JWT", "hello".into(), "mds_malformed"),
        ("not base64", "a.b.c!".into(), "mds_malformed"),
        ("the same BLOB again", good.clone(), "mds_already_imported"),
        (
            "an older BLOB",
            s.blob(4, &["FIDO_CERTIFIED_L1"]),
            "mds_not_newer",
        ),
    ];
    for (what, blob, code) in cases {
        let e = s
            .import(&blob)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert_eq!(e.code, code, "{what}: {}", e.message);
    }
    // The stranger's root would have to be configured: an expired one is refused even then.
    let after = (
        s.server.store.mds_blob().await.unwrap(),
        s.server.store.mds_entries().await.unwrap(),
        s.events("mds.imported").await,
    );
    assert_eq!(before, after, "refused BLOBs change nothing");
    // --allow-older lets an operator go back on purpose.
    let older = s
        .server
        .app
        .import_mds(
            &s.blob(4, &["FIDO_CERTIFIED_L1"]),
            true,
            &Caller::operator("test"),
        )
        .await
        .unwrap();
    assert_eq!(older.blob.number, 4);
    s.server.shutdown().await;
}

async fn step_up_to_aal3_offers_only_credentials_that_reach_it(backend: Backend) {
    let s = setup(backend).await;
    s.import(&s.blob(1, &["FIDO_CERTIFIED_L2"])).await.unwrap();
    // A synced phone passkey (aal2 at best) and, added later, a certified security key.
    let mut phone = SoftAuthenticator::new(&s.server.origin(), true, true);
    let token = s.server.invite("sam").await;
    s.server.enrol(&mut phone, &token).await;
    let session = s.server.sign_in(&mut phone, Some("sam")).await;
    assert_eq!(session["aal"], "aal2");
    let bearer = session["token"].as_str().unwrap().to_string();
    let mut key = s.key(KEY_A, &s.attester_a);
    let options = s
        .server
        .request(
            reqwest::Method::POST,
            "/api/v1/registration/options",
            None,
            Some(&bearer),
            Some(&json!({})),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let credential = key.register(&options.body["publicKey"]).await.unwrap();
    let added = s
        .server
        .request(
            reqwest::Method::POST,
            "/api/v1/registration/verify",
            None,
            Some(&bearer),
            Some(&json!({"ceremony": options.body["ceremony"], "credential": credential})),
        )
        .await;
    assert_eq!(
        (added.status, &added.body["attestation_trusted"]),
        (StatusCode::CREATED, &json!(true))
    );
    let key_id = added.body["id"].as_str().unwrap().to_string();

    let options = s
        .server
        .request(
            reqwest::Method::POST,
            "/api/v1/step-up/options",
            None,
            Some(&bearer),
            Some(&json!({"level": "aal3"})),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{:?}", options.body);
    let allowed = options.body["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap();
    assert_eq!(
        allowed.len(),
        1,
        "only the security key can reach aal3: {allowed:?}"
    );
    // The phone cannot answer it; the key can.
    assert!(phone
        .authenticate(&options.body["publicKey"])
        .await
        .is_err());
    let asserted = key.authenticate(&options.body["publicKey"]).await.unwrap();
    let verified = s
        .server
        .request(
            reqwest::Method::POST,
            "/api/v1/step-up/verify",
            None,
            Some(&bearer),
            Some(&json!({"ceremony": options.body["ceremony"], "credential": asserted})),
        )
        .await;
    assert_eq!(
        (verified.status, verified.body["aal"].as_str()),
        (StatusCode::OK, Some("aal3")),
        "{:?}",
        verified.body
    );
    let me = s
        .server
        .request(
            reqwest::Method::GET,
            "/api/v1/me",
            None,
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!(me.body["session"]["elevated"]["aal"], "aal3");
    let stored = s
        .server
        .store_credentials(&s.server.default_tenant().await)
        .await;
    assert!(stored
        .iter()
        .any(|c| c.id.as_str() == key_id && c.attestation_trusted));
    s.server.shutdown().await;
}

both_backends!(
    step_up_to_aal3_offers_only_credentials_that_reach_it,
    a_verified_blob_makes_attestations_trusted_and_names_models,
    the_policy_trusts_its_own_roots_and_can_require_trust,
    a_compromised_model_is_refused_and_its_passkeys_must_re_enrol,
    blobs_that_do_not_verify_or_are_not_newer_change_nothing,
);
