//! The provider port: send one canonical request to one upstream deployment.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

use crate::{ChatChunk, ChatRequest, ChatResponse, CompletionRequest, CompletionResponse};
use crate::{EmbeddingsRequest, EmbeddingsResponse};

use super::QuotaCell;

/// A stream of canonical chunks. It ends after the last chunk (usage included); an `Err` item is
/// the last item and means the upstream failed mid-stream.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

/// A stream of legacy completion chunks, passed through from an OpenAI-compatible upstream.
pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<CompletionResponse, ProviderError>> + Send>>;

/// What one attempt needs beyond the request: which upstream model, its deadlines, and where to
/// report the upstream's quota.
#[derive(Debug, Clone)]
pub struct CallCtx {
    /// The model name the upstream knows (the deployment's `model`, not the client's alias).
    pub upstream_model: String,
    /// The gateway's request id, sent upstream for correlation where the provider allows it.
    pub request_id: String,
    /// Deadline for the upstream's first byte of answer: its response headers (non-stream:
    /// the whole body follows within the total deadline), and for a stream its first chunk.
    pub first_byte_timeout: Duration,
    /// Deadline for the whole call, body or stream included.
    pub total_timeout: Duration,
    /// Always ask the upstream for token usage, even when the client did not ask for it in the
    /// stream; the adapter reports it as the final chunk.
    pub include_usage: bool,
    /// Where the adapter leaves what the upstream's rate-limit response headers said (on
    /// success and on error), for the router to read after the attempt. A fresh
    /// `QuotaCell::default()` per call; clones of the context share it.
    pub quota: QuotaCell,
}

/// One configured upstream (a provider entry of the config: kind, base URL, credentials).
///
/// Implementations do the HTTP call only; they never retry (the router owns retries and
/// fallbacks) and never log request or response bodies.
#[async_trait]
pub trait ProviderAdapter: Send + Sync + 'static {
    /// The provider kind, as it appears in metrics and errors (`openai`, `anthropic`, ...).
    fn kind(&self) -> &'static str;

    /// Non-streaming chat completion. Errors are classified (see [`ProviderError::retryable`]).
    /// Cancel-safe: dropping the future aborts the upstream request.
    async fn chat(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChatResponse, ProviderError>;

    /// Streaming chat completion. Returns once the upstream accepted the request (status and
    /// headers seen); errors before that are returned here, later ones as the stream's last item.
    /// Dropping the stream aborts the upstream request.
    async fn chat_stream(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChunkStream, ProviderError>;

    /// Embeddings. Providers without an embeddings API answer [`ProviderErrorKind::Unsupported`].
    async fn embeddings(
        &self,
        _req: &EmbeddingsRequest,
        _call: &CallCtx,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        Err(ProviderError::unsupported(self.kind(), "embeddings"))
    }

    /// Legacy text completions (OpenAI-compatible upstreams only).
    async fn completions(
        &self,
        _req: &CompletionRequest,
        _call: &CallCtx,
    ) -> Result<CompletionResponse, ProviderError> {
        Err(ProviderError::unsupported(self.kind(), "the legacy completions API"))
    }

    /// Streamed legacy text completions (OpenAI-compatible upstreams only).
    async fn completions_stream(
        &self,
        _req: &CompletionRequest,
        _call: &CallCtx,
    ) -> Result<CompletionStream, ProviderError> {
        Err(ProviderError::unsupported(self.kind(), "the legacy completions API"))
    }
}

/// What went wrong talking to a provider, classified so the router can decide on retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// No usable credential: the named environment variable is not set.
    MissingCredential { env_var: String },
    /// TCP/TLS connect failed or the connection broke before an answer.
    Connect,
    /// No answer (headers, or the whole body for non-streaming calls) within the deadline.
    Timeout,
    /// 429 from the upstream.
    RateLimited,
    /// The upstream says it is overloaded (503, Anthropic 529, ...).
    Overloaded,
    /// 5xx other than overload.
    Server,
    /// The upstream rejected the request itself (400, 404, 413, 422): retrying will not help.
    BadRequest,
    /// The upstream rejected the gateway's credentials (401, 403).
    Auth,
    /// The upstream refused the content (safety filters).
    ContentFilter,
    /// The upstream answered something that is not its documented format.
    InvalidResponse,
    /// This provider kind cannot do what was asked.
    Unsupported,
}

/// An error from one upstream call. `message` is safe to show a client: it never contains
/// credentials, and contains the upstream's own error message only as the upstream phrased it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    /// The provider kind (`openai`, `anthropic`, ...).
    pub provider: &'static str,
    /// The upstream's HTTP status, when one was received.
    pub status: Option<u16>,
    pub message: String,
    /// From the upstream's `Retry-After` (or equivalent) header.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(provider: &'static str, kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self { kind, provider, status: None, message: message.into(), retry_after: None }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub fn unsupported(provider: &'static str, what: &str) -> Self {
        Self::new(
            provider,
            ProviderErrorKind::Unsupported,
            format!("provider kind {provider} does not support {what}"),
        )
    }

    pub fn invalid_response(provider: &'static str, what: impl std::fmt::Display) -> Self {
        Self::new(
            provider,
            ProviderErrorKind::InvalidResponse,
            format!("upstream answered an invalid response: {what}"),
        )
    }

    /// Classifies an upstream HTTP error status; `message` is the upstream's own error text.
    pub fn from_status(provider: &'static str, status: u16, message: impl Into<String>) -> Self {
        let kind = match status {
            429 => ProviderErrorKind::RateLimited,
            503 | 529 => ProviderErrorKind::Overloaded,
            401 | 403 => ProviderErrorKind::Auth,
            500..=599 => ProviderErrorKind::Server,
            _ => ProviderErrorKind::BadRequest,
        };
        Self::new(provider, kind, message).with_status(status)
    }

    /// Whether another attempt (same or another deployment) may succeed.
    pub fn retryable(&self) -> bool {
        match self.kind {
            ProviderErrorKind::Connect
            | ProviderErrorKind::Timeout
            | ProviderErrorKind::RateLimited
            | ProviderErrorKind::Overloaded
            | ProviderErrorKind::Server
            | ProviderErrorKind::InvalidResponse
            // Another deployment may hold a credential that this one lacks.
            | ProviderErrorKind::MissingCredential { .. }
            | ProviderErrorKind::Auth => true,
            ProviderErrorKind::BadRequest | ProviderErrorKind::ContentFilter | ProviderErrorKind::Unsupported => false,
        }
    }
}

/// Parses a `Retry-After` header value given in seconds (the HTTP-date form is rare for APIs and
/// is ignored). Fractions are accepted because some providers send them.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify_into_retryable_and_not() {
        assert!(ProviderError::from_status("openai", 429, "slow down").retryable());
        assert!(ProviderError::from_status("anthropic", 529, "overloaded").retryable());
        assert_eq!(ProviderError::from_status("openai", 502, "x").kind, ProviderErrorKind::Server);
        assert!(!ProviderError::from_status("openai", 400, "bad").retryable());
        assert!(!ProviderError::from_status("openai", 404, "no model").retryable());
    }

    #[test]
    fn retry_after_accepts_seconds_only() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
