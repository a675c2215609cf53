//! The gateway's one error type. Every failure a client can see is a [`GatewayError`] with a
//! closed [`ErrorKind`]; the server turns it into the caller's dialect (OpenAI or Anthropic JSON)
//! with the status from [`GatewayError::status`].

use std::time::Duration;

use crate::ports::{ProviderError, ProviderErrorKind};

/// Every kind of failure the gateway reports. `status`, `code` and `metric_label` are each one
/// exhaustive match, so a new kind cannot ship without deciding all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request body or a field is invalid (the message names the field).
    InvalidRequest,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// No, or an unknown, API key.
    Unauthenticated,
    /// The key is valid but may not do this.
    Forbidden,
    /// Unknown model alias.
    ModelNotFound,
    /// Unknown route or resource.
    NotFound,
    /// The change conflicts with existing state (a duplicate name, a project with live keys).
    Conflict,
    /// A gateway limit was hit.
    RateLimited,
    /// A spend cap was hit.
    BudgetExceeded,
    /// The model's provider has no credential configured (the message names the variable).
    ProviderNotConfigured,
    /// The upstream rejected the request itself; the status is the upstream's (400, 404, 422...).
    UpstreamRejected { status: u16 },
    /// The upstream rate-limited us and no other deployment could answer.
    UpstreamRateLimited,
    /// The upstream is unreachable, failing, or answering garbage.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The gateway is shedding load.
    Overloaded,
    /// A dependency of the gateway (its store) is unreachable or not configured.
    Unavailable,
    /// A bug or an unexpected state of the gateway itself.
    Internal,
}

impl ErrorKind {
    /// The HTTP status for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::ModelNotFound | ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::RateLimited | ErrorKind::BudgetExceeded | ErrorKind::UpstreamRateLimited => 429,
            ErrorKind::UpstreamRejected { status } => status,
            ErrorKind::Internal => 500,
            ErrorKind::UpstreamUnavailable => 502,
            ErrorKind::ProviderNotConfigured | ErrorKind::Overloaded | ErrorKind::Unavailable => 503,
            ErrorKind::UpstreamTimeout => 504,
        }
    }

    /// The stable, snake_case error code: part of the public API (`error.code`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Unauthenticated => "invalid_api_key",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::RateLimited => "rate_limit_exceeded",
            ErrorKind::BudgetExceeded => "insufficient_quota",
            ErrorKind::ProviderNotConfigured => "provider_not_configured",
            ErrorKind::UpstreamRejected { .. } => "upstream_rejected",
            ErrorKind::UpstreamRateLimited => "upstream_rate_limited",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "service_unavailable",
            ErrorKind::Internal => "internal_error",
        }
    }

    /// OpenAI's `error.type` for this kind.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::ModelNotFound
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::UpstreamRejected { .. } => "invalid_request_error",
            ErrorKind::Unauthenticated => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::RateLimited | ErrorKind::UpstreamRateLimited => "rate_limit_error",
            ErrorKind::BudgetExceeded => "insufficient_quota",
            ErrorKind::ProviderNotConfigured
            | ErrorKind::UpstreamUnavailable
            | ErrorKind::UpstreamTimeout
            | ErrorKind::Overloaded
            | ErrorKind::Unavailable
            | ErrorKind::Internal => "server_error",
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::ProviderNotConfigured => "provider_not_configured",
            ErrorKind::UpstreamRejected { .. } => "upstream_rejected",
            ErrorKind::UpstreamRateLimited => "upstream_rate_limited",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Who caused the error: the client's request, an upstream provider, or the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOrigin {
    Client,
    Upstream,
    Internal,
}

/// One attempt at one deployment, as recorded when the gateway tried several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub provider: String,
    pub deployment: String,
    pub error: ProviderError,
}

/// An error on its way to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub origin: ErrorOrigin,
    /// A safe, actionable message for the client.
    pub message: String,
    /// The request field at fault (`error.param`), when there is one.
    pub param: Option<String>,
    /// Passed on to the client as `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The upstream attempts that failed, oldest first (for logs; clients get the message).
    pub attempts: Vec<Attempt>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let origin = match kind {
            ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden
            | ErrorKind::ModelNotFound
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::RateLimited
            | ErrorKind::BudgetExceeded => ErrorOrigin::Client,
            ErrorKind::UpstreamRejected { .. }
            | ErrorKind::UpstreamRateLimited
            | ErrorKind::UpstreamUnavailable
            | ErrorKind::UpstreamTimeout => ErrorOrigin::Upstream,
            ErrorKind::ProviderNotConfigured
            | ErrorKind::Overloaded
            | ErrorKind::Unavailable
            | ErrorKind::Internal => ErrorOrigin::Internal,
        };
        Self { kind, origin, message: message.into(), param: None, retry_after: None, attempts: Vec::new() }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// An invalid field: the message and `param` both name it.
    pub fn invalid_field(param: &str, message: impl std::fmt::Display) -> Self {
        let mut err = Self::new(ErrorKind::InvalidRequest, format!("{param}: {message}"));
        err.param = Some(param.to_owned());
        err
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The error a client sees after every attempt failed: its kind follows the last attempt.
    pub fn from_attempts(attempts: Vec<Attempt>) -> Self {
        let Some(last) = attempts.last() else {
            return Self::internal("no deployment was attempted");
        };
        let mut err = GatewayError::from_provider(last.error.clone(), &last.provider);
        if attempts.len() > 1 {
            err.message = format!("all {} deployments failed; last: {}", attempts.len(), err.message);
        }
        err.attempts = attempts;
        err
    }
}

impl From<ProviderError> for GatewayError {
    fn from(e: ProviderError) -> Self {
        let provider = e.provider;
        Self::from_provider(e, provider)
    }
}

impl GatewayError {
    /// Classifies a provider error; `provider` is the provider's configured name, which the
    /// message names so operators know which entry of the config to look at.
    pub fn from_provider(e: ProviderError, provider: &str) -> Self {
        let (kind, message) = match &e.kind {
            ProviderErrorKind::MissingCredential { env_var } => (
                ErrorKind::ProviderNotConfigured,
                format!(
                    "provider {provider} has no API key: set the environment variable {env_var} and restart the gateway"
                ),
            ),
            ProviderErrorKind::Connect => {
                (ErrorKind::UpstreamUnavailable, format!("provider {provider} is unreachable: {}", e.message))
            }
            ProviderErrorKind::Timeout => (
                ErrorKind::UpstreamTimeout,
                format!("provider {provider} did not answer in time: {}", e.message),
            ),
            ProviderErrorKind::RateLimited => (
                ErrorKind::UpstreamRateLimited,
                format!("provider {provider} rate-limited the request: {}", e.message),
            ),
            ProviderErrorKind::Overloaded | ProviderErrorKind::Server => {
                (ErrorKind::UpstreamUnavailable, format!("provider {provider} failed: {}", e.message))
            }
            ProviderErrorKind::BadRequest | ProviderErrorKind::ContentFilter => (
                ErrorKind::UpstreamRejected {
                    status: e.status.filter(|s| (400..500).contains(s)).unwrap_or(400),
                },
                format!("provider {provider} rejected the request: {}", e.message),
            ),
            ProviderErrorKind::Auth => (
                ErrorKind::UpstreamUnavailable,
                format!("provider {provider} rejected the gateway's credentials: {}", e.message),
            ),
            ProviderErrorKind::InvalidResponse => {
                (ErrorKind::UpstreamUnavailable, format!("provider {provider}: {}", e.message))
            }
            ProviderErrorKind::Unsupported => (ErrorKind::InvalidRequest, e.message.clone()),
        };
        GatewayError::new(kind, message).with_retry_after(e.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_attempt_decides_the_status() {
        let a = |status| Attempt {
            provider: "openai".into(),
            deployment: "d".into(),
            error: ProviderError::from_status("openai", status, "x"),
        };
        assert_eq!(GatewayError::from_attempts(vec![a(500), a(429)]).status(), 429);
        assert_eq!(GatewayError::from_attempts(vec![a(429), a(503)]).status(), 502);
        assert_eq!(GatewayError::from_attempts(vec![a(404)]).status(), 404);
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let e = ProviderError::new(
            "anthropic",
            ProviderErrorKind::MissingCredential { env_var: "ANTHROPIC_API_KEY".into() },
            "no key",
        );
        let g = GatewayError::from(e);
        assert_eq!(g.status(), 503);
        assert!(g.message.contains("ANTHROPIC_API_KEY"), "{}", g.message);
    }
}
