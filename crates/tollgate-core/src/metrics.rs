//! Metric names and the helpers that record them. Labels stay low-cardinality: model labels are
//! configured aliases only (unknown models are `unknown`), providers are kinds, statuses are
//! HTTP codes.

use std::time::Duration;

/// Requests answered, by `endpoint`, `model`, `provider`, `status`.
pub const REQUESTS: &str = "tollgate_requests_total";
/// Seconds from request to the last byte (streams: to the end of the stream).
pub const REQUEST_DURATION: &str = "tollgate_request_duration_seconds";
/// Seconds from request to the first streamed token.
pub const TIME_TO_FIRST_TOKEN: &str = "tollgate_time_to_first_token_seconds";
/// Tokens by `model`, `provider`, `direction` (`input`, `output`, `cached_input`).
pub const TOKENS: &str = "tollgate_tokens_total";
/// Failed upstream attempts by `provider`, `kind` (the error class).
pub const UPSTREAM_ERRORS: &str = "tollgate_upstream_errors_total";
/// Requests being handled now.
pub const IN_FLIGHT: &str = "tollgate_requests_in_flight";

/// Registers descriptions (shown as `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Requests answered, by endpoint, model alias, provider and HTTP status"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Request latency to the last byte"
    );
    metrics::describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        metrics::Unit::Seconds,
        "Time to the first streamed token"
    );
    metrics::describe_counter!(TOKENS, "Tokens by model alias, provider and direction");
    metrics::describe_counter!(UPSTREAM_ERRORS, "Failed upstream attempts by provider and error class");
    metrics::describe_gauge!(IN_FLIGHT, "Requests being handled");
    metrics::describe_counter!(
        crate::limits::policy::LIMITER_UNAVAILABLE,
        "Limiter calls that failed (Redis unreachable or slow), by operation and fail-open/closed policy"
    );
    metrics::describe_counter!(
        crate::usage_sink::USAGE_DROPPED,
        "Usage records dropped because the sink was full"
    );
    metrics::describe_counter!(crate::usage_sink::USAGE_WRITTEN, "Usage records written to the store");
    metrics::describe_counter!(
        crate::limits::enforcer::LIMIT_REFUSALS,
        "Requests refused by a gateway limit, by limit (requests, tokens, concurrency, budget)"
    );
    metrics::describe_counter!(
        crate::limits::enforcer::SETTLE_DROPPED,
        "Limit settlements dropped because the settle queue was full"
    );
    metrics::describe_counter!(
        crate::alerts::ALERTS_SENT,
        "Budget alerts whose webhook delivery ended, by outcome (delivered, failed)"
    );
    metrics::describe_counter!(
        crate::alerts::ALERTS_DROPPED,
        "Budget alerts dropped: queue full, or still queued at the end of the shutdown drain"
    );
    metrics::describe_counter!(
        crate::retention::USAGE_RETENTION_DELETED,
        "Usage records removed past usage.retention_days (deleted, or in a dropped partition)"
    );
    metrics::describe_counter!(
        crate::cache::service::CACHE_REQUESTS,
        "Chat requests by what the response cache did (hit, miss, bypass) and model alias"
    );
    metrics::describe_counter!(
        crate::cache::service::CACHE_COST_SAVED,
        "Upstream cost the response cache saved (the original cost of answers served from it), in nano-dollars, by model alias"
    );
    metrics::describe_counter!(
        crate::cache::service::CACHE_ERRORS,
        "Response cache calls that failed (treated as misses / not stored), by operation"
    );
    metrics::describe_gauge!(
        crate::cache::service::CACHE_ENTRIES,
        "Entries in the in-process response cache"
    );
    metrics::describe_gauge!(
        crate::cache::service::CACHE_BYTES,
        metrics::Unit::Bytes,
        "Approximate bytes of answers in the in-process response cache"
    );
    metrics::describe_counter!(
        crate::cache::service::CACHE_WRITES_DROPPED,
        "Answers not stored because a response-cache write queue was full, by cache (exact, semantic)"
    );
    metrics::describe_counter!(
        crate::usage_sink::USAGE_WRITE_ERRORS,
        "Usage batches the store refused (retried)"
    );
}

/// Labels of one finished request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLabels<'a> {
    pub endpoint: &'static str,
    pub model: &'a str,
    pub provider: &'a str,
}

pub fn record_request(l: RequestLabels<'_>, status: u16, elapsed: Duration) {
    let (model, provider) = (l.model.to_owned(), l.provider.to_owned());
    metrics::histogram!(REQUEST_DURATION, "endpoint" => l.endpoint, "model" => model.clone(), "provider" => provider.clone())
        .record(elapsed.as_secs_f64());
    metrics::counter!(REQUESTS, "endpoint" => l.endpoint, "model" => model, "provider" => provider, "status" => status.to_string())
        .increment(1);
}

pub fn record_ttft(model: &str, provider: &str, ttft: Duration) {
    metrics::histogram!(TIME_TO_FIRST_TOKEN, "model" => model.to_owned(), "provider" => provider.to_owned())
        .record(ttft.as_secs_f64());
}

pub fn record_tokens(model: &str, provider: &str, usage: &tollgate_types::Usage) {
    for (direction, n) in [
        ("input", usage.prompt_tokens),
        ("output", usage.completion_tokens),
        ("cached_input", usage.cached_tokens()),
    ] {
        if n > 0 {
            metrics::counter!(TOKENS, "model" => model.to_owned(), "provider" => provider.to_owned(), "direction" => direction)
                .increment(n);
        }
    }
}

pub fn record_upstream_error(provider: &str, kind: &tollgate_types::ports::ProviderErrorKind) {
    use tollgate_types::ports::ProviderErrorKind as K;
    let class = match kind {
        K::MissingCredential { .. } => "missing_credential",
        K::Connect => "connect",
        K::Timeout => "timeout",
        K::RateLimited => "rate_limited",
        K::Overloaded => "overloaded",
        K::Server => "server",
        K::BadRequest => "bad_request",
        K::Auth => "auth",
        K::ContentFilter => "content_filter",
        K::InvalidResponse => "invalid_response",
        K::Unsupported => "unsupported",
    };
    metrics::counter!(UPSTREAM_ERRORS, "provider" => provider.to_owned(), "kind" => class).increment(1);
}
