//! Fixed-window rate limits kept in memory, per node: ceremony requests per client address, and
//! username-first sign-in starts per username (existing or not, so the limit reveals nothing).
//! Several nodes each count on their own; the effective limit is the sum over nodes.

use keyplane_core::{Error, ErrorKind};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);
/// Bound on memory: beyond this many keys, finished windows are dropped.
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    per_minute: u32,
    window: Duration,
    what: &'static str,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    /// `what` names the limit in the error message ("requests from this address").
    pub fn new(per_minute: u32, what: &'static str) -> Self {
        Self::per_window(per_minute, MINUTE, what)
    }

    /// `limit` requests per `window` (recovery attempts are counted per hour).
    pub fn per_window(limit: u32, window: Duration, what: &'static str) -> Self {
        RateLimiter {
            per_minute: limit,
            window,
            what,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request for `key`; refuses with 429 `rate_limited` (and `retry_after_secs`)
    /// once the window's share is used.
    pub fn check(&self, key: &str) -> Result<(), Error> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let (start, count) = windows.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_minute {
            let retry = self
                .window
                .saturating_sub(now.duration_since(*start))
                .as_secs()
                .max(1);
            metrics::counter!("keyplane_rate_limited_total", "limit" => self.what).increment(1);
            return Err(Error::new(
                ErrorKind::RateLimited,
                "rate_limited",
                format!("too many {}; try again in {retry} s", self.what),
            )
            .with("retry_after_secs", retry.to_string()));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_share_then_waits() {
        let l = RateLimiter::new(2, "tries");
        assert!(l.check("a").is_ok() && l.check("a").is_ok());
        let e = l.check("a").unwrap_err();
        assert_eq!((e.code, e.kind), ("rate_limited", ErrorKind::RateLimited));
        assert!(e.extra.iter().any(|(k, _)| *k == "retry_after_secs"));
        assert!(l.check("b").is_ok(), "per key");
        assert!(RateLimiter::new(0, "x").check("a").is_ok(), "0 = no limit");
    }
}
