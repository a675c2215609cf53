//! Usage records in SQLite: one transaction per batch (one fsync for hundreds of rows).

use async_trait::async_trait;
use tollgate_types::ports::store::StoreError;
use tollgate_types::ports::usage::{UsageGroupBy, UsageQuery, UsageRecord, UsageStore, UsageTotals};

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
                 user_tag, metadata) ",
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
                    .push_bind(metadata);
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
}

/// SQLite stores ids as 16 bytes; groups show them as UUIDs like the rest of the API.
fn hex_to_uuid(hex: &str) -> String {
    uuid::Uuid::try_parse(hex).map_or_else(|_| hex.to_owned(), |u| u.to_string())
}

/// Rows per INSERT statement: 24 columns each stays far below SQLite's 32,766 variables.
const ROWS_PER_INSERT: usize = 200;

/// SQLite integers are signed 64-bit; counts beyond that cannot occur, but never wrap.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
