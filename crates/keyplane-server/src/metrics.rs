//! Prometheus metrics: ceremonies started / succeeded / failed (by reason), request latency and
//! notifications per sink and outcome.
//! One process-wide recorder; every server in the process (tests start several) renders it.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once; later calls return the same handle.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

pub fn ceremony_started(kind: &'static str) {
    metrics::counter!("keyplane_ceremonies_started_total", "ceremony" => kind).increment(1);
}

/// Counts a finished ceremony: succeeded, or failed with its error code as the reason.
pub fn ceremony_finished<T>(kind: &'static str, result: &Result<T, keyplane_core::Error>) {
    match result {
        Ok(_) => metrics::counter!("keyplane_ceremonies_succeeded_total", "ceremony" => kind)
            .increment(1),
        Err(e) => metrics::counter!(
            "keyplane_ceremonies_failed_total", "ceremony" => kind, "reason" => e.code
        )
        .increment(1),
    }
}

pub fn request_finished(method: String, route: String, status: u16, seconds: f64) {
    metrics::histogram!(
        "keyplane_http_request_duration_seconds",
        "method" => method, "route" => route, "status" => status.to_string()
    )
    .record(seconds);
}

/// Counts one sink's handling of one notification: `sent`, `skipped` or `failed`.
pub fn notification_delivered(sink: &str, outcome: &'static str) {
    metrics::counter!(
        "keyplane_notifications_total", "sink" => sink.to_string(), "outcome" => outcome
    )
    .increment(1);
}
