//! Latency samples, error tallies and process CPU time.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Samples in microseconds; summarised by nearest-rank percentiles.
#[derive(Default, Clone)]
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.0.clone();
        v.sort_unstable();
        let pct = |p: f64| -> u64 {
            if v.is_empty() {
                return 0;
            }
            // Nearest rank: the smallest sample with at least p% of the samples at or below it.
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        let sum: u64 = v.iter().sum();
        Summary {
            n: v.len(),
            mean_us: if v.is_empty() {
                0.0
            } else {
                sum as f64 / v.len() as f64
            },
            sum_us: sum,
            p50_us: pct(50.0),
            p90_us: pct(90.0),
            p99_us: pct(99.0),
            max_us: v.last().copied().unwrap_or(0),
        }
    }
}

/// Percentiles of one series, in microseconds.
pub struct Summary {
    pub n: usize,
    pub mean_us: f64,
    pub sum_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Summary {
    pub fn json(&self) -> Value {
        json!({
            "n": self.n,
            "mean_us": (self.mean_us * 10.0).round() / 10.0,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
        })
    }

    /// One table row: `name  n  mean  p50  p90  p99  max` (milliseconds).
    pub fn row(&self, name: &str) -> String {
        let ms = |us: f64| format!("{:.2}", us / 1000.0);
        format!(
            "  {name:<22} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            self.n,
            ms(self.mean_us),
            ms(self.p50_us as f64),
            ms(self.p90_us as f64),
            ms(self.p99_us as f64),
            ms(self.max_us as f64),
        )
    }

    pub fn header() -> String {
        format!(
            "  {:<22} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "n", "mean", "p50", "p90", "p99", "max"
        )
    }
}

/// Failures by kind: `"401 unknown_credential"`, `"transport: timeout"`, `"authenticator"`.
#[derive(Default, Clone)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, key: String) {
        *self.0.entry(key).or_default() += 1;
    }

    pub fn merge(&mut self, other: Errors) {
        for (k, n) in other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn json(&self) -> Value {
        json!(self.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.0.iter()
    }
}

/// CPU time (user + system) consumed by this process so far, all threads. Linux only
/// (`/proc/self/stat`, in USER_HZ = 100 ticks per second); `None` elsewhere.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after its closing parenthesis are
    // whitespace-separated, starting at field 3. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for us in 1..=100 {
            s.push(Duration::from_micros(us));
        }
        let sum = s.summary();
        assert_eq!(sum.n, 100);
        assert_eq!(sum.p50_us, 50);
        assert_eq!(sum.p90_us, 90);
        assert_eq!(sum.p99_us, 99);
        assert_eq!(sum.max_us, 100);
        assert_eq!(Samples::default().summary().p99_us, 0);
    }

    #[test]
    fn errors_merge_and_count() {
        let mut a = Errors::default();
        a.add("401 unknown_credential".into());
        let mut b = Errors::default();
        b.add("401 unknown_credential".into());
        b.add("transport: timeout".into());
        a.merge(b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.json()["401 unknown_credential"], 2);
    }

    #[test]
    fn cpu_time_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu().is_some());
        }
    }
}
