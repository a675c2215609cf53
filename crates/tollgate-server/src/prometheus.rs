//! The process-wide Prometheus recorder. Metrics are global by nature (the `metrics` facade has
//! one recorder per process), so it is installed once and every app shares its handle.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: fine below 100 ms (gateway overhead, first tokens), coarse above
/// (whole generations).
const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Installs the recorder on first use and returns its handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is already installed (e.g. by an embedding
            // program); then this handle renders an empty page, which is the honest answer.
            let _ = metrics::set_global_recorder(recorder);
            tollgate_core::metrics::describe();
            handle
        })
        .clone()
}
