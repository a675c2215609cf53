//! Usage records in PostgreSQL: a batch holds many tenants' records, so it goes in through the
//! `tollgate_insert_usage` SECURITY DEFINER function as one JSON array (one round trip).
//! Retention and partition upkeep also go through SECURITY DEFINER functions (migration 0004):
//! the app role cannot drop or delete anything itself.

use async_trait::async_trait;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};
use tollgate_types::ports::store::StoreError;
use tollgate_types::ports::usage::{
    PARTITION_MONTHS_AHEAD, RetentionReport, UsageGroupBy, UsageQuery, UsageRecord, UsageStore, UsageTotals,
};

use tollgate_types::tenancy::{Page, PageRequest, TenantId};

use super::PostgresStore;
use crate::db_error;
use crate::usage_row::{self, UsageRow};
use crate::usage_totals::{self, TotalsRow};

#[async_trait]
impl UsageStore for PostgresStore {
    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // Keys match the function's column list (`user` is stored as `user_tag`).
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "request_id": r.request_id,
                    "at": crate::validate::micros(r.at).format(&Rfc3339).unwrap_or_default(),
                    "tenant_id": r.tenant_id, "project_id": r.project_id, "key_id": r.key_id,
                    "endpoint": r.endpoint, "model": r.model, "provider": r.provider, "deployment": r.deployment,
                    "status": r.status, "error_code": r.error_code, "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens, "cached_input_tokens": r.cached_input_tokens,
                    "reasoning_tokens": r.reasoning_tokens, "token_source": r.token_source.as_str(),
                    "cost_nanodollars": r.cost_nanodollars, "price_id": r.price_id, "latency_ms": r.latency_ms,
                    "ttft_ms": r.ttft_ms, "cache_status": r.cache_status, "user_tag": r.user, "metadata": r.metadata,
                    "served_model": r.served_model, "attempts": r.attempts, "hedged": r.hedged,
                    "cost_saved_nanodollars": r.cost_saved_nanodollars,
                })
            })
            .collect();
        sqlx::query("SELECT tollgate_insert_usage($1)")
            .bind(serde_json::Value::Array(rows))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn list_usage(&self, tenant: TenantId, page: PageRequest) -> Result<Page<UsageRecord>, StoreError> {
        let limit = crate::paging::page_limit(&page);
        let sql = format!(
            "SELECT {} FROM usage_records WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
            usage_row::COLUMNS
        );
        // Under the tenant's setting: row-level security shows this tenant's rows only.
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<UsageRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(page.after)
            .bind(limit as i64 + 1)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        usage_row::page(rows, limit)
    }

    async fn aggregate_usage(
        &self,
        tenant: TenantId,
        query: &UsageQuery,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let group = match query.group_by {
            UsageGroupBy::Day => "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            UsageGroupBy::Hour => "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')",
            UsageGroupBy::Model => "model",
            UsageGroupBy::Provider => "provider",
            UsageGroupBy::Project => "project_id::text",
            UsageGroupBy::Key => "key_id::text",
        };
        // `group` is one of the fixed expressions above, never input. The sums are numeric in
        // PostgreSQL; cast back to bigint for one decoder in both stores.
        let sums = usage_totals::SUMS
            .replace(", 0) AS", ", 0)::bigint AS")
            .replace("count(*) AS", "count(*)::bigint AS");
        let sql = format!(
            "SELECT {group} AS grp, {sums} FROM usage_records WHERE tenant_id = $1 AND at >= $2 AND at < $3 \
             GROUP BY grp ORDER BY grp"
        );
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<TotalsRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(query.from)
            .bind(query.to)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        rows.into_iter().map(TotalsRow::into_totals).collect()
    }

    async fn enforce_retention(&self, cutoff: OffsetDateTime) -> Result<RetentionReport, StoreError> {
        let cutoff = crate::validate::retention_cutoff(cutoff)?;
        let (deleted, dropped): (i64, Vec<String>) =
            sqlx::query_as("SELECT deleted_rows, dropped_partitions FROM tollgate_usage_retention($1)")
                .bind(cutoff)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(RetentionReport { deleted_rows: u64::try_from(deleted).unwrap_or(0), dropped_partitions: dropped })
    }

    async fn prepare_usage_storage(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        // This month plus the months ahead. Not last month: retention may have dropped it
        // (everything in it older than the cutoff), and creating it again would only have the
        // next retention run drop it again.
        sqlx::query("SELECT tollgate_ensure_usage_partitions($1, $2)")
            .bind(month_of(now))
            .bind(i32::try_from(PARTITION_MONTHS_AHEAD + 1).unwrap_or(i32::MAX))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// The first day of `now`'s month in UTC (the partitions' time zone).
fn month_of(now: OffsetDateTime) -> Date {
    let date = now.to_offset(UtcOffset::UTC).date();
    date.replace_day(1).unwrap_or(date)
}

impl PostgresStore {
    /// Keeps the monthly usage partitions of this month and the next `months` ready (the
    /// DEFAULT partition would take rows otherwise, and retention could not drop them by month).
    pub async fn ensure_usage_partitions(&self, months: i32) -> Result<(), StoreError> {
        sqlx::query("SELECT tollgate_ensure_usage_partitions(current_date, $1)")
            .bind(months)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
