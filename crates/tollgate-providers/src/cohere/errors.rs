//! Cohere's errors → [`ProviderError`]: the `{"message": ...}` body, the statuses Cohere uses
//! beyond the common ones (402, 498, 499), and failures reported inside a 200 answer
//! (`finish_reason: ERROR` / `TIMEOUT`).

use bytes::Bytes;
use tollgate_types::ports::{ProviderError, ProviderErrorKind};

use super::PROVIDER_ID;
use super::wire::CohereErrorBody;
use crate::http::common_error_message;

/// Cohere's error body `{"message": "..."}` (sometimes with an `id`); proxies in front of it
/// may answer the common `{"error": {...}}` shape instead.
pub fn error_message(body: &Bytes) -> Option<String> {
    serde_json::from_slice::<CohereErrorBody>(body)
        .ok()
        .and_then(|b| b.message)
        .or_else(|| common_error_message(body))
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

/// Re-classifies the statuses the shared status mapping does not know the Cohere meaning of.
pub fn classify(mut e: ProviderError) -> ProviderError {
    e.kind = match e.status {
        // 498: "invalid token" (Cohere's own status for a bad or revoked key). 402: the
        // account's billing blocks calls; another deployment (another account) may still work.
        Some(498 | 402) => ProviderErrorKind::Auth,
        // 499: the request was cancelled on Cohere's side; a new attempt may succeed.
        Some(499) => ProviderErrorKind::Server,
        _ => return e,
    };
    e
}

/// A generation that failed after Cohere accepted the request: `finish_reason` `ERROR` or
/// `TIMEOUT` in a 200 answer or in the stream's `message-end`.
pub fn generation_failed(finish_reason: &str, message: Option<&str>) -> ProviderError {
    let message = message.map(str::trim).filter(|m| !m.is_empty());
    if finish_reason.eq_ignore_ascii_case("TIMEOUT") {
        let message = message.unwrap_or("the generation timed out on Cohere's side");
        return ProviderError::new(PROVIDER_ID, ProviderErrorKind::Timeout, message);
    }
    let message = message.unwrap_or("the generation failed on Cohere's side");
    ProviderError::new(PROVIDER_ID, ProviderErrorKind::Server, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, body: &str) -> ProviderError {
        let message = error_message(&Bytes::copy_from_slice(body.as_bytes())).unwrap_or_default();
        classify(ProviderError::from_status(PROVIDER_ID, status, message))
    }

    #[test]
    fn the_message_comes_from_coheres_body() {
        let e = status(
            400,
            r#"{"id":"2f5e1a0c-6d0b-4c1e-9a55-0c3c2b8e2d11","message":"invalid request: message must not be empty in a turn"}"#,
        );
        assert_eq!(e.kind, ProviderErrorKind::BadRequest);
        assert_eq!(e.message, "invalid request: message must not be empty in a turn");
        assert!(!e.retryable());
    }

    #[test]
    fn a_too_long_prompt_is_a_bad_request() {
        let e = status(
            400,
            r#"{"message":"too many tokens: size limit exceeded by 11326 tokens. Try using shorter or fewer inputs."}"#,
        );
        assert_eq!(e.kind, ProviderErrorKind::BadRequest);
        assert!(e.message.starts_with("too many tokens"));
    }

    #[test]
    fn coheres_own_statuses_are_classified() {
        assert_eq!(status(498, r#"{"message":"invalid api token"}"#).kind, ProviderErrorKind::Auth);
        assert_eq!(status(401, r#"{"message":"invalid api token"}"#).kind, ProviderErrorKind::Auth);
        assert_eq!(status(402, r#"{"message":"Please add a payment method"}"#).kind, ProviderErrorKind::Auth);
        let cancelled = status(499, r#"{"message":"request cancelled"}"#);
        assert_eq!(cancelled.kind, ProviderErrorKind::Server);
        assert!(cancelled.retryable());
        let limited = status(
            429,
            r#"{"message":"You are using a Trial key, which is limited to 20 API calls / minute."}"#,
        );
        assert_eq!(limited.kind, ProviderErrorKind::RateLimited);
        assert_eq!(status(503, r#"{"message":"service unavailable"}"#).kind, ProviderErrorKind::Overloaded);
        assert_eq!(status(500, r#"{"message":"internal server error"}"#).kind, ProviderErrorKind::Server);
    }

    #[test]
    fn other_error_shapes_and_garbage_still_give_a_message_or_none() {
        let proxy = Bytes::from_static(br#"{"error":{"message":"upstream connect error"}}"#);
        assert_eq!(error_message(&proxy).as_deref(), Some("upstream connect error"));
        assert_eq!(error_message(&Bytes::from_static(b"<html>bad gateway</html>")), None);
        assert_eq!(error_message(&Bytes::from_static(br#"{"message":"  "}"#)), None);
        assert_eq!(error_message(&Bytes::new()), None);
    }

    #[test]
    fn failed_generations_are_retryable_errors() {
        let e = generation_failed("ERROR", Some("internal error while generating"));
        assert_eq!(e.kind, ProviderErrorKind::Server);
        assert_eq!(e.message, "internal error while generating");
        assert_eq!(generation_failed("TIMEOUT", None).kind, ProviderErrorKind::Timeout);
        assert!(generation_failed("error", None).retryable());
    }
}
