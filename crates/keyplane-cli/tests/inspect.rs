//! `keyplane credential inspect` end to end: the real binary over every recorded WebAuthn
//! response in `../shared/vectors/` (beside the repository root), given what the recording
//! relying party knew (challenge, origins, RP ID, roots, stored key), must reach the recorded
//! verdict — or Keyplane's listed difference — and must never panic; input it cannot use, and
//! checks that fail, are reported as such.

mod common;

use common::keyplane;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(data: &Path, args: &[String]) -> Run {
    let out = keyplane(data).args(args).output().expect("run keyplane");
    let r = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(
        !r.stderr.contains("panicked"),
        "keyplane panicked on {args:?}: {}",
        r.stderr
    );
    r
}

/// Runs `inspect FILE --format json ARGS` and returns the report.
fn inspect_json(data: &Path, file: &Path, args: &[String]) -> Value {
    let mut all: Vec<String> = vec![
        "credential".into(),
        "inspect".into(),
        file.display().to_string(),
        "--format".into(),
        "json".into(),
    ];
    all.extend_from_slice(args);
    let r = run(data, &all);
    assert!(r.ok, "inspect {all:?} failed: {}", r.stderr);
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("inspect {all:?}: output is not JSON ({e}): {}", r.stdout))
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn vectors() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for ceremony in ["registration", "authentication"] {
        let dir = vectors_dir().join(ceremony);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("vectors directory {} is missing: {e}", dir.display()))
            .map(|e| e.expect("read vectors").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "no vectors in {}", dir.display());
        for p in paths {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("read vector"))
                .expect("vector JSON");
            out.push((p, v));
        }
    }
    out
}

/// Keyplane's verdict where it differs from the recording library's (the reasons are in
/// `keyplane-webauthn/tests/vectors.rs`, `DIFFERENCES`, which pins the same verdicts through the
/// adapter): `accepted-unattested` or `rejected:<code>`.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "mldsa44-webauthnio-pywebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "mldsa65-webauthnio-pywebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "mldsa87-webauthnio-pywebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "none-mldsa65-webauthnio-pywebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "tpm-rsa-sha1-conformance-simplewebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "tpm-sha1-b-simplewebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "packed-rsapss-ps256-simplewebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "packed-okp-ed25519-pywebauthn",
        "rejected:unsupported_algorithm",
    ),
    (
        "eddsa-localhost-pywebauthn",
        "rejected:unsupported_algorithm",
    ),
    ("tpm-dell-xps13-pywebauthn", "accepted-unattested"),
    ("tpm-surface-pro4-pywebauthn", "accepted-unattested"),
    ("tpm-ecc-pubarea-pywebauthn", "accepted-unattested"),
    ("tpm-nonspec-san-simplewebauthn", "accepted-unattested"),
    (
        "tpm-spec-compliant-san-simplewebauthn",
        "accepted-unattested",
    ),
    ("tpm-sha256-b-simplewebauthn", "accepted-unattested"),
    (
        "packed-self-ec2-dontneeda-simplewebauthn",
        "rejected:malformed_base64",
    ),
    (
        "es256-android-devicepubkey-ext-simplewebauthn",
        "rejected:signature_invalid",
    ),
    (
        "android-safetynet-cts-not-enforced-simplewebauthn",
        "accepted-unattested",
    ),
    (
        "fido-u2f-tokenbinding-unused-pywebauthn",
        "rejected:malformed_client_data",
    ),
    (
        "android-safetynet-cts-fail-negative-simplewebauthn",
        "accepted-unattested",
    ),
    (
        "tpm-aaguid-ext-mismatch-negative-simplewebauthn",
        "accepted-unattested",
    ),
];

/// The code of each rejection that agrees with the recording library.
const REJECTION_CODES: &[(&str, &str)] = &[
    (
        "es256-counter-regression-negative-simplewebauthn",
        "sign_count_regression",
    ),
    (
        "es256-wrong-challenge-negative-simplewebauthn",
        "challenge_mismatch",
    ),
    ("es256-wrong-rpid-negative-simplewebauthn", "rp_id_mismatch"),
    (
        "rs256-wrong-public-key-negative-pywebauthn",
        "signature_invalid",
    ),
    (
        "fido-u2f-tokenbinding-not-supported-negative-pywebauthn",
        "malformed_client_data",
    ),
    (
        "none-empty-attestationobject-negative-pywebauthn",
        "malformed_cbor",
    ),
    (
        "none-wrong-challenge-negative-simplewebauthn",
        "challenge_mismatch",
    ),
    ("none-wrong-rpid-negative-simplewebauthn", "rp_id_mismatch"),
    (
        "packed-aaguid-ext-mismatch-negative-simplewebauthn",
        "attestation_aaguid_mismatch",
    ),
    // Verification accepts the registration; the chain does not reach the configured root,
    // reported as the attestation_trust check failing (the recording RP rejected then).
    (
        "packed-yubikey-wrong-root-negative-pywebauthn",
        "attestation_untrusted",
    ),
];

/// The report's verdict in the vocabulary of the tables above.
fn verdict(report: &Value) -> String {
    match report["verdict"]["status"].as_str() {
        Some("rejected") => format!(
            "rejected:{}",
            report["verdict"]["code"].as_str().unwrap_or("?")
        ),
        Some("accepted") => {
            if check_status(report, "attestation_trust") == Some("failed") {
                "rejected:attestation_untrusted".into()
            } else if report["attestation"]["attestation_type"] == "unverifiable" {
                "accepted-unattested".into()
            } else {
                "accepted".into()
            }
        }
        other => format!("{other:?}"),
    }
}

fn check_status<'a>(report: &'a Value, name: &str) -> Option<&'a str> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?["status"]
        .as_str()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The flags that give `inspect` what the recording relying party knew, for one RP ID.
fn flags_for(v: &Value, rp_id: &str, work: &Path, name: &str) -> Vec<String> {
    let mut args = vec![
        "--rp-id".to_string(),
        rp_id.to_string(),
        "--challenge".into(),
        text(&v["challenge"]),
    ];
    for o in v["expected_origins"].as_array().expect("expected_origins") {
        args.push("--origin".into());
        args.push(text(o));
    }
    if matches!(
        text(&v["require_user_verification"])
            .to_lowercase()
            .as_str(),
        "true"
    ) {
        args.push("--require-uv".into());
    }
    if let Some(at) = v["verify_at"].as_str() {
        args.push("--at".into());
        args.push(at.into());
    }
    let fmt = v["derived"]["fmt"].as_str().unwrap_or_default();
    if let Some(roots) = v["attestation_roots_pem"][fmt]
        .as_array()
        .filter(|r| !r.is_empty())
    {
        let path = work.join(format!("{name}-roots.pem"));
        let pem: Vec<String> = roots.iter().map(text).collect();
        std::fs::write(&path, pem.join("\n")).expect("write roots");
        args.push("--trust-root".into());
        args.push(path.display().to_string());
    }
    if let Some(key) = v["credential_public_key"].as_str() {
        args.push("--public-key".into());
        args.push(key.into());
        args.push("--sign-count".into());
        args.push(text(&v["prior_sign_count"]));
    }
    args
}

#[test]
fn every_vector_reaches_its_recorded_verdict_and_none_panics() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let mut failures = Vec::new();
    let all = vectors();
    for (path, v) in &all {
        let name = v["name"].as_str().expect("name").to_string();
        let file = work.path().join(format!("{name}.json"));
        std::fs::write(&file, v["credential"].to_string()).expect("write credential");

        // With nothing but the file: never a panic; a report or a clear error.
        let bare = run(
            &data,
            &[
                "credential".into(),
                "inspect".into(),
                file.display().to_string(),
            ],
        );
        if !bare.ok && bare.stderr.trim().is_empty() {
            failures.push(format!("{name}: failed without saying why"));
        }

        // With what the recording RP knew: the recorded verdict (first RP ID that accepts).
        let rp_ids: Vec<String> = match v["allowed_rp_ids"].as_array() {
            Some(ids) if !ids.is_empty() => ids.iter().map(text).collect(),
            _ => vec![text(&v["rp_id"])],
        };
        let mut ours = String::new();
        for rp_id in &rp_ids {
            let report = inspect_json(&data, &file, &flags_for(v, rp_id, work.path(), &name));
            let this = verdict(&report);
            if ours.is_empty() || ours == "rejected:rp_id_mismatch" || this.starts_with("accepted")
            {
                ours = this;
            }
            if ours.starts_with("accepted") {
                break;
            }
        }
        let source_ok = v["expected"]["ok"].as_bool().expect("expected.ok");
        let want = if let Some((_, d)) = DIFFERENCES.iter().find(|d| d.0 == name) {
            d.to_string()
        } else if source_ok {
            "accepted".to_string()
        } else {
            match REJECTION_CODES.iter().find(|r| r.0 == name) {
                Some((_, code)) => format!("rejected:{code}"),
                None => {
                    failures.push(format!(
                        "{name}: rejected by its source, but no code listed"
                    ));
                    continue;
                }
            }
        };
        if ours != want {
            failures.push(format!(
                "{name} ({}): inspect says {ours}, expected {want}",
                path.display()
            ));
        }
    }
    assert!(all.len() >= 40, "only {} vectors", all.len());
    assert!(
        failures.is_empty(),
        "{} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A recorded registration its source accepted, and the flags that make it pass.
fn good_registration() -> (Value, Vec<String>) {
    // An https origin whose host is the RP ID, `none` attestation, accepted by its source.
    let (_, v) = vectors()
        .into_iter()
        .find(|(_, v)| v["name"] == "none-dontneeda-simplewebauthn")
        .expect("a plain accepted registration vector");
    let mut args = vec![
        "--rp-id".to_string(),
        text(&v["rp_id"]),
        "--challenge".into(),
        text(&v["challenge"]),
        "--origin".into(),
        text(&v["expected_origins"][0]),
    ];
    if let Some(at) = v["verify_at"].as_str() {
        args.extend(["--at".to_string(), at.to_string()]);
    }
    (v, args)
}

#[test]
fn the_good_registration_passes_every_given_check() {
    let work = tempfile::tempdir().unwrap();
    let (v, args) = good_registration();
    let file = work.path().join("reg.json");
    std::fs::write(&file, v["credential"].to_string()).unwrap();
    let report = inspect_json(&work.path().join("data"), &file, &args);
    assert_eq!(report["verdict"]["status"], "accepted", "{report:#}");
    assert_eq!(report["type"], "registration");
    for name in ["challenge", "origin", "rp_id", "decode"] {
        assert_eq!(
            check_status(&report, name),
            Some("passed"),
            "{name}: {report:#}"
        );
    }
    assert_eq!(
        check_status(&report, "attestation_trust"),
        Some("not_checked")
    );
    assert_eq!(report["attestation"]["format"], "none");
    assert!(report["aaguid"].is_string());
    assert!(report["authenticator_data"]["flags"]["up"].is_boolean());
    assert!(report["client_data"]["origin"].is_string());
    assert!(report["policy"].is_null(), "no tenant, no policy decision");
    // The documented shape (docs/support.md): every field, always present.
    let keys: Vec<&str> = report
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut documented = vec![
        "type",
        "source",
        "credential_id",
        "client_data",
        "authenticator_data",
        "aaguid",
        "authenticator",
        "algorithm",
        "attestation",
        "stored_credential",
        "at",
        "checks",
        "verdict",
        "policy",
    ];
    documented.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, documented);
}

#[test]
fn without_a_challenge_the_report_says_it_was_not_checked() {
    let work = tempfile::tempdir().unwrap();
    let (v, _) = good_registration();
    let file = work.path().join("reg.json");
    std::fs::write(&file, v["credential"].to_string()).unwrap();
    let report = inspect_json(&work.path().join("data"), &file, &[]);
    assert_eq!(check_status(&report, "challenge"), Some("not_checked"));
    assert_eq!(check_status(&report, "origin"), Some("not_checked"));
    assert_eq!(check_status(&report, "rp_id"), Some("not_checked"));
    assert!(text(&check(&report, "challenge")["detail"]).contains("no --challenge"));
    // The rest is still verified: the RP ID is found from the origin.
    assert_eq!(report["verdict"]["status"], "accepted", "{report:#}");
    // The readable report says so too.
    let r = run(
        &work.path().join("data"),
        &[
            "credential".into(),
            "inspect".into(),
            file.display().to_string(),
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("Verdict:         ACCEPTED"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("challenge") && r.stdout.contains("not checked"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_wrong_challenge_origin_or_rp_id_is_a_failed_check_and_a_rejection() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let (v, args) = good_registration();
    let file = work.path().join("reg.json");
    std::fs::write(&file, v["credential"].to_string()).unwrap();
    let replace = |flag: &str, value: &str| -> Vec<String> {
        let mut out = args.clone();
        let i = out.iter().position(|a| a == flag).expect("flag");
        out[i + 1] = value.to_string();
        out
    };
    for (flag, value, name, code) in [
        (
            "--challenge",
            "AAAAAAAAAAAAAAAAAAAAAA",
            "challenge",
            "challenge_mismatch",
        ),
        (
            "--origin",
            "https://evil.example",
            "origin",
            "origin_mismatch",
        ),
        ("--rp-id", "evil.example", "rp_id", "rp_id_mismatch"),
    ] {
        let report = inspect_json(&data, &file, &replace(flag, value));
        assert_eq!(
            check_status(&report, name),
            Some("failed"),
            "{flag}: {report:#}"
        );
        assert_eq!(
            report["verdict"]["status"], "rejected",
            "{flag}: {report:#}"
        );
        assert_eq!(report["verdict"]["code"], code, "{flag}: {report:#}");
    }
}

#[test]
fn an_assertion_without_a_key_is_undecided_and_says_why() {
    let work = tempfile::tempdir().unwrap();
    let (_, v) = vectors()
        .into_iter()
        .find(|(_, v)| v["ceremony"] == "authentication" && v["expected"]["ok"] == true)
        .expect("an accepted authentication vector");
    let file = work.path().join("auth.json");
    std::fs::write(&file, v["credential"].to_string()).unwrap();
    let report = inspect_json(&work.path().join("data"), &file, &[]);
    assert_eq!(report["type"], "authentication");
    assert_eq!(report["verdict"]["status"], "undecided", "{report:#}");
    assert_eq!(check_status(&report, "signature"), Some("not_checked"));
    assert!(text(&check(&report, "signature")["detail"]).contains("--public-key"));
}

fn har_with(body: Option<&Value>) -> Value {
    let mut entries = vec![json!({
        "request": {"method": "GET", "url": "https://login.example/api/v1/me", "headers": []},
        "response": {"status": 200, "content": {"text": "{}"}}
    })];
    if let Some(body) = body {
        entries.push(json!({
            "request": {
                "method": "POST",
                "url": "https://login.example/api/v1/registration/finish",
                "postData": {"mimeType": "application/json", "text": body.to_string()}
            },
            "response": {"status": 400}
        }));
    }
    json!({"log": {"version": "1.2", "entries": entries}})
}

#[test]
fn a_har_capture_a_log_line_and_stdin_are_read() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let (v, args) = good_registration();
    let body = json!({"ceremony_id": "abc", "credential": v["credential"]});

    let har = work.path().join("capture.har");
    std::fs::write(&har, har_with(Some(&body)).to_string()).unwrap();
    let report = inspect_json(&data, &har, &args);
    assert_eq!(report["verdict"]["status"], "accepted", "{report:#}");
    assert_eq!(
        report["source"],
        "har: POST https://login.example/api/v1/registration/finish"
    );

    let log = work.path().join("server.log");
    std::fs::write(
        &log,
        format!("2026-11-26T01:00:00Z WARN request rejected body={body} took=3ms\n"),
    )
    .unwrap();
    let report = inspect_json(&data, &log, &args);
    assert_eq!(report["source"], "log");
    assert_eq!(report["verdict"]["status"], "accepted", "{report:#}");

    let mut child = keyplane(&data)
        .args(["credential", "inspect", "-", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(v["credential"].to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["type"], "registration");
}

#[test]
fn input_that_holds_no_credential_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed.json",
            "{\"id\": \"abc\", \"response\": {".into(),
            "no WebAuthn response",
        ),
        (
            "other.json",
            json!({"hello": "world"}).to_string(),
            "holds no WebAuthn response",
        ),
        ("empty.json", String::new(), "empty"),
        ("capture.har", har_with(None).to_string(), "no request body"),
        (
            "neither.json",
            json!({"response": {"clientDataJSON": "e30"}}).to_string(),
            "neither attestationObject",
        ),
    ];
    for (name, content, says) in cases {
        let file = work.path().join(name);
        std::fs::write(&file, content).unwrap();
        let r = run(
            &data,
            &[
                "credential".into(),
                "inspect".into(),
                file.display().to_string(),
            ],
        );
        assert!(!r.ok, "{name}: should fail");
        assert!(r.stderr.contains(says), "{name}: {}", r.stderr);
    }
    let r = run(
        &data,
        &[
            "credential".into(),
            "inspect".into(),
            work.path().join("absent.json").display().to_string(),
        ],
    );
    assert!(!r.ok && r.stderr.contains("cannot read"), "{}", r.stderr);
}

#[test]
fn a_tenant_supplies_rp_id_origins_and_the_policy_decision() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let (v, _) = good_registration();
    let origin = text(&v["expected_origins"][0]);
    let created = run(
        &data,
        &[
            "tenant".into(),
            "create".into(),
            "captured".into(),
            "--rp-id".into(),
            text(&v["rp_id"]),
            "--origin".into(),
            origin.clone(),
        ],
    );
    assert!(created.ok, "{}", created.stderr);
    let file = work.path().join("reg.json");
    std::fs::write(&file, v["credential"].to_string()).unwrap();
    let mut args = vec![
        "--tenant".to_string(),
        "captured".into(),
        "--challenge".into(),
        text(&v["challenge"]),
    ];
    if let Some(at) = v["verify_at"].as_str() {
        args.extend(["--at".to_string(), at.to_string()]);
    }
    let report = inspect_json(&data, &file, &args);
    assert_eq!(report["verdict"]["status"], "accepted", "{report:#}");
    assert_eq!(check_status(&report, "origin"), Some("passed"));
    assert_eq!(check_status(&report, "rp_id"), Some("passed"));
    // The tenant's roots were consulted (none match an unattested `none` registration).
    assert_ne!(check_status(&report, "attestation_trust"), Some("passed"));
    let policy = &report["policy"];
    assert_eq!(policy["tenant"], "captured", "{report:#}");
    assert!(
        matches!(policy["verdict"].as_str(), Some("allow" | "deny")),
        "{policy:#}"
    );
    assert!(policy["reasons"].is_array() && policy["assumptions"].is_array());

    // A tenant with another origin: the origin check fails, as the server's would.
    let other = run(
        &data,
        &[
            "tenant".into(),
            "create".into(),
            "elsewhere".into(),
            "--rp-id".into(),
            text(&v["rp_id"]),
            "--origin".into(),
            "https://other.dev.dontneeda.pw".into(),
            "--hostname".into(),
            "other.dev.dontneeda.pw".into(),
        ],
    );
    assert!(other.ok, "{}", other.stderr);
    args[1] = "elsewhere".into();
    let report = inspect_json(&data, &file, &args);
    assert_eq!(
        check_status(&report, "origin"),
        Some("failed"),
        "{report:#}"
    );
    assert_eq!(report["verdict"]["code"], "origin_mismatch");
    assert!(
        report["policy"].is_null(),
        "no policy decision for a rejected response"
    );
}
