//! A usage record as both databases return it (the column types decode alike in SQLite and
//! PostgreSQL), and its conversion to the port's record.

use sqlx::types::Json;
use time::OffsetDateTime;
use tollgate_types::JsonMap;
use tollgate_types::ports::store::StoreError;
use tollgate_types::ports::usage::UsageRecord;
use tollgate_types::tenancy::{KeyId, Page, ProjectId, TenantId};
use uuid::Uuid;

/// The columns of `usage_records`, in the order the stores select them.
pub(crate) const COLUMNS: &str = "id, request_id, at, tenant_id, project_id, key_id, endpoint, model, provider, \
    deployment, status, error_code, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, \
    token_source, cost_nanodollars, price_id, latency_ms, ttft_ms, cache_status, user_tag, metadata, \
    served_model, attempts, hedged, cost_saved_nanodollars";

#[derive(sqlx::FromRow)]
pub(crate) struct UsageRow {
    id: Uuid,
    request_id: String,
    at: OffsetDateTime,
    tenant_id: Option<Uuid>,
    project_id: Option<Uuid>,
    key_id: Option<Uuid>,
    endpoint: String,
    model: String,
    provider: Option<String>,
    deployment: Option<String>,
    status: i32,
    error_code: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    reasoning_tokens: i64,
    token_source: String,
    cost_nanodollars: Option<i64>,
    price_id: Option<String>,
    latency_ms: i64,
    ttft_ms: Option<i64>,
    cache_status: Option<String>,
    user_tag: Option<String>,
    metadata: Json<JsonMap>,
    served_model: Option<String>,
    attempts: i32,
    hedged: bool,
    cost_saved_nanodollars: Option<i64>,
}

impl TryFrom<UsageRow> for UsageRecord {
    type Error = StoreError;

    fn try_from(r: UsageRow) -> Result<Self, StoreError> {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(UsageRecord {
            id: r.id,
            request_id: r.request_id,
            at: r.at,
            tenant_id: r.tenant_id.map(TenantId),
            project_id: r.project_id.map(ProjectId),
            key_id: r.key_id.map(KeyId),
            endpoint: r.endpoint,
            model: r.model,
            provider: r.provider,
            deployment: r.deployment,
            status: u16::try_from(r.status)
                .map_err(|_| StoreError::Internal(format!("bad status {}", r.status)))?,
            error_code: r.error_code,
            input_tokens: n(r.input_tokens),
            output_tokens: n(r.output_tokens),
            cached_input_tokens: n(r.cached_input_tokens),
            reasoning_tokens: n(r.reasoning_tokens),
            token_source: r.token_source.parse().map_err(StoreError::Internal)?,
            cost_nanodollars: r.cost_nanodollars.map(n),
            price_id: r.price_id,
            latency_ms: n(r.latency_ms),
            ttft_ms: r.ttft_ms.map(n),
            cache_status: r.cache_status,
            cost_saved_nanodollars: r.cost_saved_nanodollars.map(n),
            user: r.user_tag,
            metadata: r.metadata.0,
            served_model: r.served_model,
            attempts: u32::try_from(r.attempts).unwrap_or(0),
            hedged: r.hedged,
        })
    }
}

/// Converts a fetched page of rows (fetched with `LIMIT limit + 1`).
pub(crate) fn page(rows: Vec<UsageRow>, limit: usize) -> Result<Page<UsageRecord>, StoreError> {
    let records = rows.into_iter().map(UsageRecord::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(crate::paging::finish_page(records, limit, |r| r.id))
}
