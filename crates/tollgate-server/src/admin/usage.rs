//! A tenant's usage report: requests, errors, tokens, cost and what the response cache answered
//! and saved over a time range, grouped by day, hour, model, project, key or provider; JSON or
//! CSV. Every member may read it.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_core::admin::UsageReport;
use tollgate_types::GatewayError;
use tollgate_types::ports::usage::{UsageGroupBy, UsageQuery, UsageTotals};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Admin, Ids, ListQuery, TenantPath};
use crate::errors::ApiError;

/// The report's range and grouping.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Start, RFC 3339, inclusive (default: 30 days before `to`).
    pub from: Option<String>,
    /// End, RFC 3339, exclusive (default: now).
    pub to: Option<String>,
    /// `day` (default), `hour`, `model`, `project`, `key` or `provider`.
    pub group_by: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// One group's (or the range's) totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    pub group: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Exact cost, as a decimal string of US dollars.
    pub cost_usd: String,
    /// Requests answered from the response cache (exact and semantic hits).
    pub cache_hits: u64,
    /// Of those, the ones matched by meaning (semantic hits).
    pub semantic_hits: u64,
    /// Requests the cache was consulted for and could not answer; the hit rate is
    /// `cache_hits / (cache_hits + cache_misses)`.
    pub cache_misses: u64,
    /// What the cache hits' answers cost when they were first made (the spend the cache saved),
    /// as a decimal string of US dollars.
    pub cost_saved_usd: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReportView {
    pub object: &'static str,
    pub from: String,
    pub to: String,
    pub group_by: String,
    pub totals: UsageRow,
    pub data: Vec<UsageRow>,
}

#[utoipa::path(operation_id = "usage_report", get, path = "/admin/v1/tenants/{tenant_id}/usage", tag = "usage",
    params(TenantPath, UsageParams), responses((status = 200, body = UsageReportView)))]
pub async fn report(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    ListQuery(q): ListQuery<UsageParams>,
) -> Result<Response, ApiError> {
    let (query, csv) = parse(&q)?;
    let report = admin.service.usage_report(&admin.caller, p.tenant_id, query).await?;
    Ok(if csv { csv_response(&report) } else { axum::Json(view(&report)).into_response() })
}

fn parse(q: &UsageParams) -> Result<(UsageQuery, bool), GatewayError> {
    let time = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| {
                OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                    GatewayError::invalid_field(field, "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z")
                })
            })
            .transpose()
    };
    let to = time("to", &q.to)?.unwrap_or_else(OffsetDateTime::now_utc);
    let from = time("from", &q.from)?.unwrap_or(to - time::Duration::days(30));
    let group_by = match q.group_by.as_deref().unwrap_or("day") {
        "day" => UsageGroupBy::Day,
        "hour" => UsageGroupBy::Hour,
        "model" => UsageGroupBy::Model,
        "project" => UsageGroupBy::Project,
        "key" => UsageGroupBy::Key,
        "provider" => UsageGroupBy::Provider,
        other => {
            return Err(GatewayError::invalid_field(
                "group_by",
                format!("{other:?} is not one of day, hour, model, project, key, provider"),
            ));
        }
    };
    let csv = match q.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => return Err(GatewayError::invalid_field("format", format!("{other:?} is not json or csv"))),
    };
    Ok((UsageQuery { from, to, group_by }, csv))
}

/// Nano-dollars as an exact decimal string of dollars (`1234567890` → `1.234567890`).
fn usd(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

fn row(t: &UsageTotals) -> UsageRow {
    UsageRow {
        group: t.group.clone(),
        requests: t.requests,
        errors: t.errors,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cached_input_tokens: t.cached_input_tokens,
        cost_usd: usd(t.cost_nanodollars),
        cache_hits: t.cache_hits,
        semantic_hits: t.semantic_hits,
        cache_misses: t.cache_misses,
        cost_saved_usd: usd(t.cost_saved_nanodollars),
    }
}

fn group_name(g: UsageGroupBy) -> &'static str {
    match g {
        UsageGroupBy::Day => "day",
        UsageGroupBy::Hour => "hour",
        UsageGroupBy::Model => "model",
        UsageGroupBy::Project => "project",
        UsageGroupBy::Key => "key",
        UsageGroupBy::Provider => "provider",
    }
}

fn view(r: &UsageReport) -> UsageReportView {
    UsageReportView {
        object: "usage_report",
        from: r.query.from.format(&Rfc3339).unwrap_or_default(),
        to: r.query.to.format(&Rfc3339).unwrap_or_default(),
        group_by: group_name(r.query.group_by).to_owned(),
        totals: row(&r.totals),
        data: r.groups.iter().map(row).collect(),
    }
}

fn csv_response(r: &UsageReport) -> Response {
    let mut out = String::from(
        "group,requests,errors,input_tokens,output_tokens,cached_input_tokens,cost_usd,cache_hits,semantic_hits,\
         cache_misses,cost_saved_usd\n",
    );
    for t in
        r.groups.iter().chain(std::iter::once(&UsageTotals { group: "total".into(), ..r.totals.clone() }))
    {
        let u = row(t);
        // Groups are days, hours, ids, or model/provider names from the config; quote anyway.
        out.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},{},{},{},{}\n",
            u.group.replace('"', "\"\""),
            u.requests,
            u.errors,
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cost_usd,
            u.cache_hits,
            u.semantic_hits,
            u.cache_misses,
            u.cost_saved_usd
        ));
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanodollars_print_as_exact_dollars() {
        assert_eq!(usd(0), "0.000000000");
        assert_eq!(usd(1_234_567_890), "1.234567890");
        assert_eq!(usd(15), "0.000000015");
    }
}
