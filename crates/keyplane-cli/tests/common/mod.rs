//! What the CLI's integration tests share: the real `keyplane` binary on a data directory, kept
//! apart from the developer's or CI's own settings, and `keyplane serve` on a random loopback
//! port.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `keyplane --data-dir DATA`, without any `KEYPLANE_*` variable of the environment.
pub fn keyplane(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyplane"));
    c.arg("--data-dir").arg(data);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYPLANE_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs a command: whether it succeeded, its standard output and its standard error.
pub fn run(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = keyplane(data).args(args).output().expect("run keyplane");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs a command that must succeed; its standard output.
pub fn ok(data: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(data, args);
    assert!(ok, "keyplane {args:?} failed:\n{err}");
    out
}

/// Runs a command that must fail; its standard error.
pub fn fails(data: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(data, args);
    assert!(!ok, "keyplane {args:?} succeeded:\n{out}");
    err
}

/// Starts `keyplane [GLOBAL…] serve` on a random loopback port and waits until it listens (over
/// plain HTTP); the child and its port.
pub fn serve(data: &Path, global: &[&str]) -> (Child, u16) {
    let mut child = keyplane(data)
        .args(global)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyplane serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Keyplane listening on http://") {
                let port = rest
                    .split([' ', ':'])
                    .nth(1)
                    .and_then(|p| p.parse::<u16>().ok());
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server announces its address")
        .expect("a port");
    (child, port)
}
