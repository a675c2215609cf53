//! Anthropic's error body `{"type":"error","error":{"type","message"}}` → [`ProviderError`]:
//! the message for HTTP errors, the classification of the `type` for stream `error` events, and
//! the special cases the HTTP status alone does not tell.

use bytes::Bytes;
use tollgate_types::ports::{ProviderError, ProviderErrorKind};

use super::PROVIDER_ID;
use super::wire::{ErrorBody, ErrorDetail};

/// The upstream's own message from an error body (for [`crate::http::send`]).
pub fn error_message(body: &Bytes) -> Option<String> {
    let body: ErrorBody = serde_json::from_slice(body).ok()?;
    (!body.error.message.is_empty()).then_some(body.error.message)
}

/// Refines what the status classified: Anthropic rejects filtered output with a plain 400, which
/// must not look like a malformed request to the router.
pub fn refine(err: ProviderError) -> ProviderError {
    if err.kind == ProviderErrorKind::BadRequest && is_content_filter(&err.message) {
        return ProviderError { kind: ProviderErrorKind::ContentFilter, ..err };
    }
    err
}

fn is_content_filter(message: &str) -> bool {
    message.to_ascii_lowercase().contains("content filtering policy")
}

/// A stream `error` event. The stream already had status 200, so the `type` decides the kind.
pub fn stream_error(detail: &ErrorDetail) -> ProviderError {
    let kind = match detail.kind.as_str() {
        "overloaded_error" => ProviderErrorKind::Overloaded,
        "rate_limit_error" => ProviderErrorKind::RateLimited,
        "invalid_request_error" | "not_found_error" | "request_too_large"
            if is_content_filter(&detail.message) =>
        {
            ProviderErrorKind::ContentFilter
        }
        "invalid_request_error" | "not_found_error" | "request_too_large" => ProviderErrorKind::BadRequest,
        "authentication_error" | "permission_error" => ProviderErrorKind::Auth,
        _ => ProviderErrorKind::Server,
    };
    let message = if detail.message.is_empty() {
        format!("the upstream sent an error event ({})", detail.kind)
    } else {
        detail.message.clone()
    };
    ProviderError::new(PROVIDER_ID, kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(kind: &str, message: &str) -> ErrorDetail {
        ErrorDetail { kind: kind.to_owned(), message: message.to_owned() }
    }

    #[test]
    fn message_comes_from_the_documented_error_shape() {
        let body = Bytes::from_static(
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
        );
        assert_eq!(error_message(&body).as_deref(), Some("max_tokens: Field required"));
        assert_eq!(error_message(&Bytes::from_static(b"<html>bad gateway</html>")), None);
        assert_eq!(
            error_message(&Bytes::from_static(br#"{"type":"error","error":{"type":"api_error"}}"#)),
            None
        );
    }

    #[test]
    fn stream_error_types_classify() {
        let e = stream_error(&detail("overloaded_error", "Overloaded"));
        assert_eq!((e.kind, e.message.as_str()), (ProviderErrorKind::Overloaded, "Overloaded"));
        assert_eq!(
            stream_error(&detail("api_error", "Internal server error")).kind,
            ProviderErrorKind::Server
        );
        assert_eq!(
            stream_error(&detail("rate_limit_error", "slow down")).kind,
            ProviderErrorKind::RateLimited
        );
        assert_eq!(stream_error(&detail("something_new", "")).kind, ProviderErrorKind::Server);
        assert!(stream_error(&detail("something_new", "")).message.contains("something_new"));
    }

    #[test]
    fn filtered_output_is_a_content_filter_error_and_long_prompts_stay_bad_requests() {
        let filtered =
            ProviderError::from_status(PROVIDER_ID, 400, "Output blocked by content filtering policy");
        assert_eq!(refine(filtered).kind, ProviderErrorKind::ContentFilter);
        let too_long = ProviderError::from_status(
            PROVIDER_ID,
            400,
            "prompt is too long: 215713 tokens > 200000 maximum",
        );
        assert_eq!(refine(too_long).kind, ProviderErrorKind::BadRequest);
        let overloaded = ProviderError::from_status(PROVIDER_ID, 529, "Overloaded");
        assert_eq!(refine(overloaded).kind, ProviderErrorKind::Overloaded);
        let filtered_event =
            stream_error(&detail("invalid_request_error", "Output blocked by content filtering policy"));
        assert_eq!(filtered_event.kind, ProviderErrorKind::ContentFilter);
    }
}
