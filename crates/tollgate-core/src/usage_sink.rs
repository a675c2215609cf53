//! The usage sink: the pipeline hands each request's [`UsageRecord`] to a bounded channel; one
//! writer task stores them in batches (every `flush_every`, or sooner when `batch_size` records
//! wait). A slow store fills the channel up to its bound (back-pressure that costs requests
//! nothing); beyond it, records are dropped and counted in `tollgate_usage_dropped_total`, never
//! silently. A failed batch is retried with back-off while the channel keeps filling. On
//! shutdown the writer drains what is queued, within a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tollgate_types::ports::usage::{UsageRecord, UsageSink, UsageStore};

/// Records dropped because the sink was full.
pub const USAGE_DROPPED: &str = "tollgate_usage_dropped_total";
/// Records written to the store.
pub const USAGE_WRITTEN: &str = "tollgate_usage_written_total";
/// Batches the store refused (they are retried).
pub const USAGE_WRITE_ERRORS: &str = "tollgate_usage_write_errors_total";

/// Sizing of the sink.
#[derive(Debug, Clone, Copy)]
pub struct SinkConfig {
    /// Records that may wait for the writer before new ones are dropped.
    pub capacity: usize,
    /// Most records per store call.
    pub batch_size: usize,
    /// Longest a record waits before its batch is written.
    pub flush_every: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self { capacity: 50_000, batch_size: 500, flush_every: Duration::from_millis(500) }
    }
}

/// The pipeline's side of the sink.
pub struct BatchingUsageSink {
    tx: mpsc::Sender<UsageRecord>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink for BatchingUsageSink {
    fn record(&self, record: UsageRecord) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(USAGE_DROPPED).increment(1);
        }
    }
}

impl BatchingUsageSink {
    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writer's side: run it on a tracked task until `shutdown`, then it drains.
pub struct UsageWriter {
    rx: mpsc::Receiver<UsageRecord>,
    store: Arc<dyn UsageStore>,
    config: SinkConfig,
}

/// Creates a sink and its writer.
pub fn usage_sink(store: Arc<dyn UsageStore>, config: SinkConfig) -> (BatchingUsageSink, UsageWriter) {
    let (tx, rx) = mpsc::channel(config.capacity.max(1));
    (BatchingUsageSink { tx, dropped: Arc::default() }, UsageWriter { rx, store, config })
}

impl UsageWriter {
    /// Writes batches until `shutdown` fires, then drains the queue, giving up after
    /// `drain_deadline` (what is left is counted as dropped and logged).
    pub async fn run(mut self, shutdown: CancellationToken, drain_deadline: Duration) {
        let mut batch = Vec::with_capacity(self.config.batch_size);
        loop {
            let deadline = Instant::now() + self.config.flush_every;
            // Collect until the batch is full, the interval ends, or shutdown.
            while batch.len() < self.config.batch_size {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(deadline) => break,
                    r = self.rx.recv() => match r {
                        Some(r) => batch.push(r),
                        None => break,
                    },
                }
            }
            if !batch.is_empty() {
                self.write_with_retry(&mut batch, &shutdown).await;
            }
            if shutdown.is_cancelled() || self.rx.is_closed() && self.rx.is_empty() {
                break;
            }
        }
        self.drain(batch, drain_deadline).await;
    }

    /// Writes the batch, retrying with back-off (up to 5 s between tries) until it is stored
    /// or shutdown starts (then the drain takes over).
    async fn write_with_retry(&self, batch: &mut Vec<UsageRecord>, shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.insert_usage(batch).await {
                Ok(()) => {
                    metrics::counter!(USAGE_WRITTEN).increment(batch.len() as u64);
                    batch.clear();
                    return;
                }
                Err(e) => {
                    metrics::counter!(USAGE_WRITE_ERRORS).increment(1);
                    tracing::warn!(error = %e, records = batch.len(), "writing usage records failed; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn drain(mut self, mut batch: Vec<UsageRecord>, deadline: Duration) {
        self.rx.close();
        let until = Instant::now() + deadline;
        loop {
            while batch.len() < self.config.batch_size {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            match tokio::time::timeout_at(until, self.store.insert_usage(&batch)).await {
                Ok(Ok(())) => {
                    metrics::counter!(USAGE_WRITTEN).increment(batch.len() as u64);
                    batch.clear();
                }
                Ok(Err(_)) | Err(_) => {
                    let lost = batch.len() as u64 + self.rx.len() as u64;
                    metrics::counter!(USAGE_DROPPED).increment(lost);
                    tracing::error!(records = lost, "usage records could not be written before shutdown");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use parking_lot::Mutex;
    use tollgate_types::ports::store::StoreError;

    use super::*;

    /// A store that keeps batches in memory and can be made to fail or stall; the sink's own
    /// logic (batching, back-pressure, retry, drain) is what these tests exercise. The real
    /// stores are tested against the same port in tollgate-store.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<usize>>,
        fail_next: AtomicU64,
        stall: Mutex<Option<Duration>>,
    }

    #[async_trait]
    impl UsageStore for Recorder {
        async fn insert_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
            let stall = *self.stall.lock();
            if let Some(d) = stall {
                tokio::time::sleep(d).await;
            }
            if self.fail_next.load(Ordering::SeqCst) > 0 {
                self.fail_next.fetch_sub(1, Ordering::SeqCst);
                return Err(StoreError::Unavailable("down".into()));
            }
            self.batches.lock().push(records.len());
            Ok(())
        }

        async fn list_usage(
            &self,
            _: tollgate_types::tenancy::TenantId,
            _: tollgate_types::tenancy::PageRequest,
        ) -> Result<tollgate_types::tenancy::Page<UsageRecord>, StoreError> {
            Err(StoreError::Internal("not used by the sink".into()))
        }

        async fn aggregate_usage(
            &self,
            _: tollgate_types::tenancy::TenantId,
            _: &tollgate_types::ports::usage::UsageQuery,
        ) -> Result<Vec<tollgate_types::ports::usage::UsageTotals>, StoreError> {
            Err(StoreError::Internal("not used by the sink".into()))
        }

        async fn enforce_retention(
            &self,
            _: time::OffsetDateTime,
        ) -> Result<tollgate_types::ports::usage::RetentionReport, StoreError> {
            Err(StoreError::Internal("not used by the sink".into()))
        }
    }

    fn rec(n: u64) -> UsageRecord {
        UsageRecord::sample(n, time::OffsetDateTime::now_utc())
    }

    fn written(store: &Recorder) -> usize {
        store.batches.lock().iter().sum()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_by_size_and_by_interval_and_drains_on_shutdown() {
        let store = Arc::new(Recorder::default());
        let config = SinkConfig { capacity: 100, batch_size: 10, flush_every: Duration::from_millis(200) };
        let (sink, writer) = usage_sink(store.clone(), config);
        let stop = CancellationToken::new();
        #[expect(clippy::disallowed_methods, reason = "a test's own task, awaited below")]
        let task = tokio::spawn(writer.run(stop.clone(), Duration::from_secs(1)));
        for i in 0..25 {
            sink.record(rec(i));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*store.batches.lock(), vec![10, 10], "full batches go at once");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(written(&store), 25, "the rest goes when the interval ends");
        sink.record(rec(99));
        stop.cancel();
        task.await.unwrap();
        assert_eq!(written(&store), 26, "shutdown drains what is queued");
        assert_eq!(sink.dropped(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_is_retried_and_nothing_is_lost() {
        let store = Arc::new(Recorder::default());
        store.fail_next.store(3, Ordering::SeqCst);
        let (sink, writer) = usage_sink(store.clone(), SinkConfig::default());
        let stop = CancellationToken::new();
        #[expect(clippy::disallowed_methods, reason = "a test's own task, awaited below")]
        let task = tokio::spawn(writer.run(stop.clone(), Duration::from_secs(1)));
        for i in 0..5 {
            sink.record(rec(i));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(written(&store), 5);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_sink_drops_and_counts_instead_of_blocking() {
        let store = Arc::new(Recorder::default());
        *store.stall.lock() = Some(Duration::from_secs(3600));
        let config = SinkConfig { capacity: 4, batch_size: 2, flush_every: Duration::from_millis(10) };
        let (sink, writer) = usage_sink(store.clone(), config);
        let stop = CancellationToken::new();
        #[expect(clippy::disallowed_methods, reason = "a test's own task, awaited below")]
        let task = tokio::spawn(writer.run(stop.clone(), Duration::from_millis(100)));
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..20 {
            sink.record(rec(i)); // never blocks
        }
        // The writer holds one batch of 2 (stalled); the channel holds 4; the rest is dropped.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(sink.dropped() >= 14, "dropped {}", sink.dropped());
        stop.cancel();
        task.await.unwrap();
    }
}
