//! Usage records: one per request (answered, failed or rejected), written in batches by a
//! bounded background sink so metering never slows or fails a request.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::JsonMap;
use crate::ports::store::StoreError;
use crate::tenancy::{KeyId, Page, PageRequest, ProjectId, TenantId};

/// Where a record's token numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Reported by the provider.
    Provider,
    /// Counted by the gateway with a tokenizer (the provider reported none).
    Counted,
    /// The client left mid-stream: what was generated until then, counted.
    Partial,
    /// No tokens were involved (rejected before any upstream call).
    None,
}

impl std::str::FromStr for TokenSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provider" => Ok(TokenSource::Provider),
            "counted" => Ok(TokenSource::Counted),
            "partial" => Ok(TokenSource::Partial),
            "none" => Ok(TokenSource::None),
            other => Err(format!("unknown token source {other:?}")),
        }
    }
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Provider => "provider",
            TokenSource::Counted => "counted",
            TokenSource::Partial => "partial",
            TokenSource::None => "none",
        }
    }
}

/// One request's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Time-ordered id (UUIDv7).
    pub id: Uuid,
    pub request_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `None` for the bootstrap (super-admin) key.
    pub tenant_id: Option<TenantId>,
    pub project_id: Option<ProjectId>,
    pub key_id: Option<KeyId>,
    /// `chat`, `completions`, `embeddings`.
    pub endpoint: String,
    /// The model alias the client asked for (as sent, even when unknown).
    pub model: String,
    /// The provider kind and deployment that answered (or failed last).
    pub provider: Option<String>,
    pub deployment: Option<String>,
    /// The alias that served the request when it was not `model`: a fallback alias answered.
    /// `None` when the requested alias answered, or nothing did.
    pub served_model: Option<String>,
    /// Upstream attempts the request made, the answering one included (retries and fallbacks
    /// each count one). 0 when it was refused before any (invalid, unknown model, over a
    /// limit), and when its client left before any answer (the count is not known then).
    pub attempts: u32,
    /// Whether a hedged (duplicate, speculative) upstream call was started for the request
    /// (`routing.hedge_after`).
    pub hedged: bool,
    /// The HTTP status the client got (a stream broken after its start counts as 502).
    pub status: u16,
    /// The error code (`error.code`) when the request failed.
    pub error_code: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub token_source: TokenSource,
    /// Exact cost in nano-dollars and the price entry used, when priced.
    pub cost_nanodollars: Option<u64>,
    pub price_id: Option<String>,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    /// What the response cache did: `hit` (answered from it: no upstream call, no cost),
    /// `miss` (looked up, not found), `bypass` (not consulted: off by policy or header);
    /// `None` for endpoints the cache does not serve, and requests refused before the lookup.
    pub cache_status: Option<String>,
    /// On a hit, what the stored answer cost when it was made: the spend the cache saved.
    pub cost_saved_nanodollars: Option<u64>,
    /// The client's `user` tag.
    pub user: Option<String>,
    pub metadata: JsonMap,
}

#[cfg(feature = "test-util")]
impl UsageRecord {
    /// A plain answered chat record of no tenant, `n` input tokens, at `at`: the fixture the
    /// crates' tests adjust with struct-update syntax.
    pub fn sample(n: u64, at: OffsetDateTime) -> Self {
        Self {
            id: Uuid::now_v7(),
            request_id: format!("r{n}"),
            at,
            tenant_id: None,
            project_id: None,
            key_id: None,
            endpoint: "chat".into(),
            model: "m".into(),
            provider: None,
            deployment: None,
            status: 200,
            error_code: None,
            input_tokens: n,
            output_tokens: 0,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            token_source: TokenSource::Provider,
            cost_nanodollars: None,
            price_id: None,
            latency_ms: 1,
            ttft_ms: None,
            cache_status: None,
            cost_saved_nanodollars: None,
            user: None,
            metadata: JsonMap::default(),
            served_model: None,
            attempts: 1,
            hedged: false,
        }
    }
}

/// Persists usage records.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Inserts a batch (records of many tenants). Called by the sink's writer task only.
    async fn insert_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;

    /// One tenant's records, oldest first (keyset pagination on the time-ordered id). Only
    /// that tenant's rows are visible (in PostgreSQL, through row-level security).
    async fn list_usage(&self, tenant: TenantId, page: PageRequest) -> Result<Page<UsageRecord>, StoreError>;

    /// One tenant's usage in `query.from..query.to`, grouped, groups in ascending order.
    async fn aggregate_usage(
        &self,
        tenant: TenantId,
        query: &UsageQuery,
    ) -> Result<Vec<UsageTotals>, StoreError>;

    /// Removes every record with `at` before `cutoff`, of every tenant (retention is
    /// gateway-wide): PostgreSQL drops the monthly partitions that end at or before `cutoff`
    /// and deletes the older rows of the partition straddling it and of the DEFAULT partition;
    /// SQLite deletes in batches, so its writer lock is never held long. Called by the
    /// retention job (`tollgate_core::retention`) at start-up and then hourly, on every node
    /// (in PostgreSQL one node at a time does the work; the others find nothing left).
    ///
    /// Errors: `Invalid` when `cutoff` is less than [`MIN_RETENTION_AGE`] in the past (nothing
    /// is removed: a guard against a clock or configuration mistake wiping current usage);
    /// `Unavailable` or `Internal` when the database fails (the next run retries).
    ///
    /// Cancel-safety: the work is committed in steps (SQLite: each batch; PostgreSQL: the one
    /// function call), so a cancelled call keeps what it removed and leaves the rest for the
    /// next call.
    async fn enforce_retention(&self, cutoff: OffsetDateTime) -> Result<RetentionReport, StoreError>;

    /// Keeps storage ready for the coming months' records so they never land where retention
    /// cannot drop them by month: PostgreSQL creates the monthly partitions of `now`'s month
    /// and the next [`PARTITION_MONTHS_AHEAD`] months if missing. Nothing to do in SQLite (the
    /// default). Called by the retention job with [`Self::enforce_retention`], also when
    /// retention is off. Idempotent and cancel-safe (one statement).
    ///
    /// Errors: `Unavailable` or `Internal` when the database fails (the next run retries;
    /// meanwhile new rows land in the DEFAULT partition, and the next successful run moves
    /// them into their month's partition).
    async fn prepare_usage_storage(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        let _ = now;
        Ok(())
    }
}

/// The youngest cutoff [`UsageStore::enforce_retention`] accepts: records of the last day are
/// never removed. The PostgreSQL function `tollgate_usage_retention` enforces the same bound.
pub const MIN_RETENTION_AGE: time::Duration = time::Duration::DAY;

/// Months after the current one whose usage partitions [`UsageStore::prepare_usage_storage`]
/// keeps ready (PostgreSQL).
pub const PARTITION_MONTHS_AHEAD: u32 = 13;

/// What one [`UsageStore::enforce_retention`] call removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Records removed: deleted one by one, or counted in a partition before it was dropped.
    pub deleted_rows: u64,
    /// The monthly partitions dropped whole (PostgreSQL; always empty in SQLite), oldest first.
    pub dropped_partitions: Vec<String>,
}

/// How `aggregate_usage` groups records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroupBy {
    /// UTC day, `2026-11-21`.
    Day,
    /// UTC hour, `2026-11-21T13`.
    Hour,
    Model,
    Project,
    Key,
    Provider,
}

/// A time range and a grouping of one tenant's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    /// Inclusive start.
    pub from: OffsetDateTime,
    /// Exclusive end.
    pub to: OffsetDateTime,
    pub group_by: UsageGroupBy,
}

/// Totals of one group (or of the whole range).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// The group's key (a day, an hour, a model...); empty for the overall totals; `none` for
    /// records without the grouped field (e.g. requests of the bootstrap key have no project).
    pub group: String,
    pub requests: u64,
    /// Requests answered with a status of 400 or more.
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cost_nanodollars: u64,
    /// Requests answered from the response cache (`cache_status` `hit` or `semantic-hit`).
    #[serde(default)]
    pub cache_hits: u64,
    /// Of those, the ones matched by meaning (`semantic-hit`).
    #[serde(default)]
    pub semantic_hits: u64,
    /// Requests the cache was consulted for and could not answer (`cache_status = miss`); the
    /// hit rate is `cache_hits / (cache_hits + cache_misses)`.
    #[serde(default)]
    pub cache_misses: u64,
    /// What the hits' answers cost when they were first made: the spend the cache saved.
    #[serde(default)]
    pub cost_saved_nanodollars: u64,
}

impl UsageTotals {
    /// Adds `other`'s counts to these (saturating); the group name stays.
    pub fn add(&mut self, other: &UsageTotals) {
        // No `..`: a new counter must be summed here too.
        let UsageTotals {
            group: _,
            requests,
            errors,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cost_nanodollars,
            cache_hits,
            semantic_hits,
            cache_misses,
            cost_saved_nanodollars,
        } = other;
        for (sum, n) in [
            (&mut self.requests, requests),
            (&mut self.errors, errors),
            (&mut self.input_tokens, input_tokens),
            (&mut self.output_tokens, output_tokens),
            (&mut self.cached_input_tokens, cached_input_tokens),
            (&mut self.cost_nanodollars, cost_nanodollars),
            (&mut self.cache_hits, cache_hits),
            (&mut self.semantic_hits, semantic_hits),
            (&mut self.cache_misses, cache_misses),
            (&mut self.cost_saved_nanodollars, cost_saved_nanodollars),
        ] {
            *sum = sum.saturating_add(*n);
        }
    }
}

/// Where the pipeline hands records. Never blocks, never fails a request: a full sink counts
/// the record as dropped (a metric), it is never lost silently.
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, record: UsageRecord);
}
