//! Usage records in SQLite: one transaction per batch (one fsync for hundreds of rows).
//! Retention deletes old rows in batches, each its own short write transaction.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tollgate_types::ports::store::StoreError;
use tollgate_types::ports::usage::{
    RetentionReport, UsageGroupBy, UsageQuery, UsageRecord, UsageStore, UsageTotals,
};

use tollgate_types::tenancy::{Page, PageRequest, TenantId};

use super::SqliteStore;
use crate::db_error;
use crate::usage_row::{self, UsageRow};
use crate::usage_totals::{self, TotalsRow};

#[async_trait]
impl UsageStore for SqliteStore {
    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // Multi-row INSERTs: every sqlx SQLite statement is a round trip to the connection's
        // worker thread, so one statement per row cost more CPU than the request it records.
        let mut tx = self.write_tx().await?;
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let mut metadata = Vec::with_capacity(chunk.len());
            for r in chunk {
                metadata.push(
                    serde_json::to_string(&r.metadata).map_err(|e| StoreError::Internal(e.to_string()))?,
                );
            }
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO usage_records (id, request_id, at, tenant_id, project_id, key_id, endpoint, model, \
                 provider, deployment, status, error_code, input_tokens, output_tokens, cached_input_tokens, \
                 reasoning_tokens, token_source, cost_nanodollars, price_id, latency_ms, ttft_ms, cache_status, \
                 user_tag, metadata, served_model, attempts, hedged, cost_saved_nanodollars) ",
            );
            insert.push_values(chunk.iter().zip(metadata), |mut row, (r, metadata)| {
                row.push_bind(r.id)
                    .push_bind(r.request_id.clone())
                    .push_bind(crate::validate::micros(r.at))
                    .push_bind(r.tenant_id.map(|t| t.0))
                    .push_bind(r.project_id.map(|p| p.0))
                    .push_bind(r.key_id.map(|k| k.0))
                    .push_bind(r.endpoint.clone())
                    .push_bind(r.model.clone())
                    .push_bind(r.provider.clone())
                    .push_bind(r.deployment.clone())
                    .push_bind(i64::from(r.status))
                    .push_bind(r.error_code.clone())
                    .push_bind(saturating_i64(r.input_tokens))
                    .push_bind(saturating_i64(r.output_tokens))
                    .push_bind(saturating_i64(r.cached_input_tokens))
                    .push_bind(saturating_i64(r.reasoning_tokens))
                    .push_bind(r.token_source.as_str())
                    .push_bind(r.cost_nanodollars.map(saturating_i64))
                    .push_bind(r.price_id.clone())
                    .push_bind(saturating_i64(r.latency_ms))
                    .push_bind(r.ttft_ms.map(saturating_i64))
                    .push_bind(r.cache_status.clone())
                    .push_bind(r.user.clone())
                    .push_bind(metadata)
                    .push_bind(r.served_model.clone())
                    .push_bind(i64::from(r.attempts))
                    .push_bind(r.hedged)
                    .push_bind(r.cost_saved_nanodollars.map(saturating_i64));
            });
            insert.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn list_usage(&self, tenant: TenantId, page: PageRequest) -> Result<Page<UsageRecord>, StoreError> {
        let limit = crate::paging::page_limit(&page);
        let sql = format!(
            "SELECT {} FROM usage_records WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
            usage_row::COLUMNS
        );
        let rows: Vec<UsageRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(page.after.unwrap_or(uuid::Uuid::nil()))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        usage_row::page(rows, limit)
    }

    async fn aggregate_usage(
        &self,
        tenant: TenantId,
        query: &UsageQuery,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        // `at` is RFC 3339 UTC text, so prefixes are days and hours and text order is time order.
        let group = match query.group_by {
            UsageGroupBy::Day => "substr(at, 1, 10)",
            UsageGroupBy::Hour => "substr(at, 1, 13)",
            UsageGroupBy::Model => "model",
            UsageGroupBy::Provider => "provider",
            UsageGroupBy::Project => "lower(hex(project_id))",
            UsageGroupBy::Key => "lower(hex(key_id))",
        };
        // `group` is one of the fixed expressions above, never input.
        let sql = format!(
            "SELECT {group} AS grp, {} FROM usage_records WHERE tenant_id = ? AND at >= ? AND at < ? \
             GROUP BY grp ORDER BY grp",
            usage_totals::SUMS
        );
        let rows: Vec<TotalsRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(crate::validate::micros(query.from))
            .bind(crate::validate::micros(query.to))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut totals = rows.into_iter().map(TotalsRow::into_totals).collect::<Result<Vec<_>, _>>()?;
        if matches!(query.group_by, UsageGroupBy::Project | UsageGroupBy::Key) {
            totals.iter_mut().for_each(|t| t.group = hex_to_uuid(&t.group));
        }
        Ok(totals)
    }

    async fn enforce_retention(&self, cutoff: OffsetDateTime) -> Result<RetentionReport, StoreError> {
        let cutoff = crate::validate::retention_cutoff(cutoff)?;
        let deleted_rows = self.delete_usage_before(cutoff, RETENTION_BATCH).await?;
        Ok(RetentionReport { deleted_rows, dropped_partitions: Vec::new() })
    }
}

impl SqliteStore {
    /// Deletes the records older than `cutoff`, at most `batch` rows per write transaction,
    /// pausing between batches so the usage sink's and the admin API's writes get the lock.
    async fn delete_usage_before(&self, cutoff: OffsetDateTime, batch: u32) -> Result<u64, StoreError> {
        let bound = sqlite_cutoff_text(cutoff)?;
        let mut deleted = 0;
        loop {
            // The subquery walks `usage_records_at_idx`; DELETE ... LIMIT needs a compile option.
            let mut tx = self.write_tx().await?;
            let n = sqlx::query(
                "DELETE FROM usage_records WHERE rowid IN \
                 (SELECT rowid FROM usage_records WHERE at < ? LIMIT ?)",
            )
            .bind(&bound)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            tx.commit().await.map_err(db_error)?;
            deleted += n;
            if n < u64::from(batch) {
                return Ok(deleted);
            }
            tokio::time::sleep(RETENTION_PAUSE).await;
        }
    }
}

/// Rows per retention DELETE: a few tens of milliseconds of writer lock.
const RETENTION_BATCH: u32 = 10_000;
/// Pause between retention batches, so waiting writers get the lock.
const RETENTION_PAUSE: Duration = Duration::from_millis(20);

/// The text that `at < ?` compares with to find rows older than `cutoff`.
///
/// `at` is RFC 3339 text in UTC whose fraction has no trailing zeros and is left out when zero
/// (`…:56Z`, `…:56.5Z`, `…:56.123456Z`), so text order is time order only between whole
/// seconds: `…:56.5Z` sorts before `…:56Z`. The bound is therefore the whole second before
/// the cutoff's second, without a fraction: every row of an earlier second sorts before it, and
/// so does every row of that second with a fraction, all of them older than the cutoff; rows of
/// the cutoff's second or later sort after it. A row never goes early; at most one second of
/// old rows waits for the next run.
fn sqlite_cutoff_text(cutoff: OffsetDateTime) -> Result<String, StoreError> {
    let whole = cutoff.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(cutoff);
    let bound = whole - time::Duration::SECOND;
    bound
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .map_err(|e| StoreError::Internal(format!("formatting the retention cutoff: {e}")))
}

/// SQLite stores ids as 16 bytes; groups show them as UUIDs like the rest of the API.
fn hex_to_uuid(hex: &str) -> String {
    uuid::Uuid::try_parse(hex).map_or_else(|_| hex.to_owned(), |u| u.to_string())
}

/// Rows per INSERT statement: 27 columns each stays far below SQLite's 32,766 variables.
const ROWS_PER_INSERT: usize = 200;

/// SQLite integers are signed 64-bit; counts beyond that cannot occur, but never wrap.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;
    use time::macros::datetime;

    use super::*;

    /// The stored form of `at` (sqlx encodes `OffsetDateTime` as RFC 3339).
    fn stored(at: OffsetDateTime) -> String {
        at.format(&Rfc3339).unwrap()
    }

    #[test]
    fn the_cutoff_text_never_selects_a_row_at_or_after_the_cutoff() {
        let cutoffs = [
            datetime!(2026-10-22 19:17:07 UTC),
            datetime!(2026-10-22 19:17:07.5 UTC),
            datetime!(2026-10-22 19:17:07.000001 UTC),
            datetime!(2026-10-22 19:17:07.999999 UTC),
            datetime!(2026-12-31 23:59:59.25 UTC),
            datetime!(2026-10-22 21:17:07.5 +02:00),
        ];
        let offsets_ms =
            [-3_000, -2_000, -1_500, -1_001, -1_000, -999, -500, -1, 0, 1, 500, 999, 1_000, 60_000];
        for cutoff in cutoffs {
            let bound = sqlite_cutoff_text(cutoff).unwrap();
            for ms in offsets_ms {
                for extra_us in [0, 1, 250] {
                    let at = micros_utc(
                        cutoff + time::Duration::milliseconds(ms) + time::Duration::microseconds(extra_us),
                    );
                    if stored(at) < bound {
                        assert!(at < cutoff, "{} would be deleted with cutoff {cutoff}", stored(at));
                    }
                    if at < cutoff - time::Duration::seconds(2) {
                        assert!(
                            stored(at) < bound,
                            "{} is old enough to be deleted (cutoff {cutoff})",
                            stored(at)
                        );
                    }
                }
            }
        }
        assert_eq!(sqlite_cutoff_text(datetime!(2026-10-22 19:17:07.5 UTC)).unwrap(), "2026-10-22T19:17:06Z");
        assert_eq!(sqlite_cutoff_text(datetime!(2026-01-01 00:00:00 UTC)).unwrap(), "2025-12-31T23:59:59Z");
    }

    fn micros_utc(t: OffsetDateTime) -> OffsetDateTime {
        crate::validate::micros(t.to_offset(time::UtcOffset::UTC))
    }

    /// Deletion goes in batches until nothing older is left; newer rows stay.
    #[tokio::test]
    async fn retention_deletes_in_batches() {
        let path = std::env::temp_dir().join(format!("tollgate-retention-{}.db", uuid::Uuid::now_v7()));
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        store.migrate().await.unwrap();
        let now = OffsetDateTime::now_utc();
        let record = |n: u64, at: OffsetDateTime| UsageRecord::sample(n, at);
        let old: Vec<_> = (0..10).map(|n| record(n, now - time::Duration::days(40 + n as i64))).collect();
        let new: Vec<_> = (0..2).map(|n| record(n, now - time::Duration::days(n as i64))).collect();
        store.insert_usage(&old).await.unwrap();
        store.insert_usage(&new).await.unwrap();

        let cutoff = now - time::Duration::days(30);
        assert_eq!(store.delete_usage_before(cutoff, 3).await.unwrap(), 10);
        assert_eq!(store.delete_usage_before(cutoff, 3).await.unwrap(), 0);
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM usage_records").fetch_one(&store.pool).await.unwrap();
        assert_eq!(left, 2);

        store.pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}
