//! The usage-retention job: a background task, beside the usage sink's writer, that removes
//! usage records older than `usage.retention_days` (of every tenant) and keeps the store ready
//! for the coming months' records (PostgreSQL's monthly partitions). It runs once at start and
//! then every `every` (the server passes [`RETENTION_EVERY`]) on every node; in PostgreSQL
//! one node at a time does the work and the others find it done.
//!
//! A failure is logged (warn) and retried at the next run: retention is never urgent, and a
//! late run only keeps records a little longer.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tollgate_types::ports::usage::UsageStore;

/// Usage records removed by retention.
pub const USAGE_RETENTION_DELETED: &str = "tollgate_usage_retention_deleted_total";

/// How often the server runs the job.
pub const RETENTION_EVERY: Duration = Duration::from_secs(60 * 60);

/// Runs the job until `shutdown`: one pass now, then one every `every`. A pass in progress
/// when `shutdown` fires is abandoned (each store step commits on its own, so nothing is left
/// half-done; the rest waits for the next start). With `retention_days: None` (keep forever)
/// a pass only prepares storage.
pub async fn run(
    store: Arc<dyn UsageStore>,
    retention_days: Option<u32>,
    every: Duration,
    shutdown: CancellationToken,
) {
    // The first tick completes at once; a pass longer than `every` delays the next one
    // instead of running several back to back.
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = pass(store.as_ref(), retention_days, OffsetDateTime::now_utc()) => {}
        }
    }
}

/// One pass: retention (when configured), then storage upkeep. Retention goes first so rows
/// older than the cutoff are gone from PostgreSQL's DEFAULT partition before upkeep moves a
/// month's rows out of it.
async fn pass(store: &dyn UsageStore, retention_days: Option<u32>, now: OffsetDateTime) {
    if let Some(days) = retention_days {
        match cutoff(now, days) {
            Some(cutoff) => match store.enforce_retention(cutoff).await {
                Ok(report) => {
                    metrics::counter!(USAGE_RETENTION_DELETED).increment(report.deleted_rows);
                    if report.deleted_rows > 0 || !report.dropped_partitions.is_empty() {
                        tracing::info!(
                            retention_days = days,
                            %cutoff,
                            deleted_rows = report.deleted_rows,
                            dropped_partitions = ?report.dropped_partitions,
                            "removed usage records past retention"
                        );
                    } else {
                        tracing::debug!(retention_days = days, %cutoff, "no usage records past retention");
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    retention_days = days,
                    "usage retention failed; retrying at the next run"
                ),
            },
            None => tracing::warn!(
                retention_days = days,
                "usage.retention_days gives no usable cutoff; no usage records removed"
            ),
        }
    }
    if let Err(e) = store.prepare_usage_storage(now).await {
        tracing::warn!(error = %e, "preparing usage storage for the coming months failed; retrying at the next run");
    }
}

/// Records with `at` before this are removed: exactly `retention_days` days of 24 hours before
/// `now` (no rounding to days or months, so a record is kept at least that long; PostgreSQL
/// drops a monthly partition only once its whole month is past the cutoff). `None` when
/// `retention_days` is 0 (the config refuses it; never read as "delete everything") or reaches
/// before the earliest representable date (nothing is that old).
fn cutoff(now: OffsetDateTime, retention_days: u32) -> Option<OffsetDateTime> {
    if retention_days == 0 {
        return None;
    }
    now.checked_sub(time::Duration::days(i64::from(retention_days)))
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use parking_lot::Mutex;
    use time::macros::datetime;
    use tollgate_types::ports::store::StoreError;
    use tollgate_types::ports::usage::{RetentionReport, UsageQuery, UsageRecord, UsageTotals};
    use tollgate_types::tenancy::{Page, PageRequest, TenantId};

    use super::*;

    #[test]
    fn the_cutoff_is_exactly_that_many_days_earlier() {
        let now = datetime!(2026-11-21 19:17:07.123456 UTC);
        assert_eq!(cutoff(now, 30), Some(datetime!(2026-10-22 19:17:07.123456 UTC)));
        assert_eq!(cutoff(now, 1), Some(datetime!(2026-11-20 19:17:07.123456 UTC)));
        // Across a leap day and a year boundary, in days of 24 hours.
        assert_eq!(cutoff(datetime!(2028-03-01 00:00 UTC), 400), Some(datetime!(2027-01-26 00:00 UTC)));
        assert_eq!(cutoff(datetime!(2028-03-01 00:00 UTC), 1), Some(datetime!(2028-02-29 00:00 UTC)));
        // The offset is kept; the instant is what counts.
        let local = datetime!(2026-11-21 20:00 +01:00);
        assert_eq!(cutoff(local, 30), Some(datetime!(2026-10-22 19:00 UTC)));
    }

    #[test]
    fn no_cutoff_for_zero_days_or_before_the_representable_range() {
        let now = datetime!(2026-11-21 19:17:07 UTC);
        assert_eq!(cutoff(now, 0), None);
        assert_eq!(cutoff(now, u32::MAX), None);
    }

    /// Remembers each call and its cutoff; can be made to fail.
    #[derive(Default)]
    struct Calls {
        log: Mutex<Vec<String>>,
        fail: bool,
    }

    #[async_trait]
    impl UsageStore for Calls {
        async fn insert_usage(&self, _: &[UsageRecord]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn list_usage(&self, _: TenantId, _: PageRequest) -> Result<Page<UsageRecord>, StoreError> {
            Ok(Page { data: Vec::new(), next: None })
        }
        async fn aggregate_usage(&self, _: TenantId, _: &UsageQuery) -> Result<Vec<UsageTotals>, StoreError> {
            Ok(Vec::new())
        }
        async fn enforce_retention(&self, cutoff: OffsetDateTime) -> Result<RetentionReport, StoreError> {
            self.log.lock().push(format!("retention {cutoff}"));
            if self.fail {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(RetentionReport { deleted_rows: 3, dropped_partitions: vec!["usage_records_2025_01".into()] })
        }
        async fn prepare_usage_storage(&self, now: OffsetDateTime) -> Result<(), StoreError> {
            self.log.lock().push(format!("prepare {now}"));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_pass_removes_then_prepares_and_only_prepares_without_retention() {
        let store = Calls::default();
        let now = datetime!(2026-11-21 19:00 UTC);
        pass(&store, Some(30), now).await;
        pass(&store, None, now).await;
        assert_eq!(
            *store.log.lock(),
            [
                "retention 2026-10-22 19:00:00.0 +00:00:00",
                "prepare 2026-11-21 19:00:00.0 +00:00:00",
                "prepare 2026-11-21 19:00:00.0 +00:00:00",
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_retention_still_prepares() {
        let store = Calls { fail: true, ..Calls::default() };
        pass(&store, Some(30), datetime!(2026-11-21 19:00 UTC)).await;
        assert_eq!(store.log.lock().len(), 2);
    }

    /// Once at start, then every period, until shutdown.
    #[tokio::test(start_paused = true)]
    async fn runs_at_start_then_every_period_until_shutdown() {
        let store = Arc::new(Calls::default());
        let shutdown = CancellationToken::new();
        let job = run(store.clone(), Some(30), Duration::from_secs(3600), shutdown.clone());
        let stop = async {
            tokio::time::sleep(Duration::from_secs(3600 * 2 + 60)).await;
            shutdown.cancel();
        };
        tokio::join!(job, stop);
        let retention_runs = store.log.lock().iter().filter(|l| l.starts_with("retention")).count();
        assert_eq!(retention_runs, 3, "at 0 h, 1 h and 2 h");
    }
}
