//! The file sink, the embedded default: one JSON line per notification appended to a file that
//! only Keyplane's user may read (mode 0600).

use super::{Outgoing, SinkResult};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: PathBuf) -> Self {
        FileSink { path }
    }

    pub async fn deliver(&self, out: &Outgoing<'_>, now: keyplane_core::Timestamp) -> SinkResult {
        let mut line = out.document(now).to_string();
        line.push('\n');
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        options.mode(0o600);
        // One write of the whole line to a file opened for appending: lines from several
        // processes never interleave.
        let written = async {
            let mut f = options.open(&self.path).await?;
            f.write_all(line.as_bytes()).await?;
            f.flush().await
        }
        .await;
        match written {
            Ok(()) => SinkResult::Sent,
            Err(e) => SinkResult::Failed(format!("{}: {e}", self.path.display())),
        }
    }
}
