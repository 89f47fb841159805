//! A real SMTP server for tests: Python's `aiosmtpd` (from PyPI, installed by `.ci/run` into
//! `.test-data/pypi`) on a random loopback port, delivering into a Maildir.

use std::path::PathBuf;

pub struct SmtpServer {
    pub port: u16,
    maildir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl SmtpServer {
    /// Starts it and waits until it listens. `None` only where a missing `aiosmtpd` may be
    /// skipped (outside CI, `KEYPLANE_TEST_SKIP_DATA=1`); otherwise a missing one fails.
    pub async fn start() -> Option<SmtpServer> {
        let pythonpath = crate::test_data::aiosmtpd_pythonpath()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("Maildir"))
            .env("PYTHONPATH", pythonpath)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs aiosmtpd");
        // Wait for it to listen (a start-up, not a timing assertion).
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(SmtpServer {
                    port,
                    maildir,
                    _child: child,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd did not start listening on port {port}");
    }

    /// The Maildir messages are delivered into (new ones land in `new/`).
    pub fn maildir(&self) -> PathBuf {
        self.maildir.path().join("Maildir")
    }

    /// Every message received so far, as raw text, sorted.
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.maildir().join("new"))
            .map(|d| {
                d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}
