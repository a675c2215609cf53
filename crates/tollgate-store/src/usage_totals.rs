//! Usage aggregation shared by both stores: the grouping expressions differ per dialect, the
//! summed columns and their decoding do not.

use tollgate_types::ports::store::StoreError;
use tollgate_types::ports::usage::UsageTotals;

/// The aggregate columns, after the group expression aliased `grp`.
pub(crate) const SUMS: &str = "count(*) AS requests, \
    coalesce(sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS errors, \
    coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens, \
    coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens, \
    coalesce(sum(cost_nanodollars), 0) AS cost_nanodollars, \
    coalesce(sum(CASE WHEN cache_status IN ('hit', 'semantic-hit') THEN 1 ELSE 0 END), 0) AS cache_hits, \
    coalesce(sum(CASE WHEN cache_status = 'semantic-hit' THEN 1 ELSE 0 END), 0) AS semantic_hits, \
    coalesce(sum(CASE WHEN cache_status = 'miss' THEN 1 ELSE 0 END), 0) AS cache_misses, \
    coalesce(sum(cost_saved_nanodollars), 0) AS cost_saved_nanodollars";

#[derive(sqlx::FromRow)]
pub(crate) struct TotalsRow {
    grp: Option<String>,
    requests: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cost_nanodollars: i64,
    cache_hits: i64,
    semantic_hits: i64,
    cache_misses: i64,
    cost_saved_nanodollars: i64,
}

impl TotalsRow {
    pub(crate) fn into_totals(self) -> Result<UsageTotals, StoreError> {
        let n = |v: i64| u64::try_from(v).map_err(|_| StoreError::Internal(format!("negative sum {v}")));
        Ok(UsageTotals {
            group: self.grp.unwrap_or_else(|| "none".to_owned()),
            requests: n(self.requests)?,
            errors: n(self.errors)?,
            input_tokens: n(self.input_tokens)?,
            output_tokens: n(self.output_tokens)?,
            cached_input_tokens: n(self.cached_input_tokens)?,
            cost_nanodollars: n(self.cost_nanodollars)?,
            cache_hits: n(self.cache_hits)?,
            semantic_hits: n(self.semantic_hits)?,
            cache_misses: n(self.cache_misses)?,
            cost_saved_nanodollars: n(self.cost_saved_nanodollars)?,
        })
    }
}
