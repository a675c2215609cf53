//! Gemini's error body (`{"error":{"code","message","status"}}`, Google's RPC status) to a
//! message, and the cases where Gemini's status code alone misleads the classification.

use std::time::Duration;

use bytes::Bytes;
use tollgate_types::ports::{ProviderError, ProviderErrorKind};

use super::PROVIDER_ID;
use super::wire::{ApiError, ErrorBody};

/// The message of an error body. The non-SSE stream endpoint wraps it in a one-element array.
pub fn error_message(body: &Bytes) -> Option<String> {
    let body: ErrorBody = match serde_json::from_slice::<Vec<ErrorBody>>(body) {
        Ok(list) => list.into_iter().next()?,
        Err(_) => serde_json::from_slice(body).ok()?,
    };
    let error = body.error?;
    error.message.or(error.status)
}

/// Corrects the status-based classification of [`ProviderError::from_status`] for Gemini.
pub fn refine(mut e: ProviderError) -> ProviderError {
    match e.status {
        // A wrong key is a 400 INVALID_ARGUMENT on Gemini, not a 401.
        Some(400) if e.message.contains("API key not valid") || e.message.contains("API_KEY_INVALID") => {
            e.kind = ProviderErrorKind::Auth;
        }
        Some(504) => e.kind = ProviderErrorKind::Timeout,
        // Quota errors carry the delay in the text ("Please retry in 41.13s.") when the
        // Retry-After header is absent.
        Some(429) if e.retry_after.is_none() => e.retry_after = retry_delay(&e.message),
        _ => {}
    }
    e
}

/// An error object sent inside a 200 stream: classified as if it had been the HTTP status.
pub fn from_api_error(error: ApiError) -> ProviderError {
    let code = error.code.unwrap_or_else(|| status_code(error.status.as_deref().unwrap_or("")));
    let message = error.message.or(error.status).unwrap_or_else(|| "the upstream sent an error".to_owned());
    refine(ProviderError::from_status(PROVIDER_ID, code, message))
}

/// The prompt itself was blocked (`promptFeedback.blockReason`): no candidate was generated.
pub fn prompt_blocked(reason: &str) -> ProviderError {
    ProviderError::new(
        PROVIDER_ID,
        ProviderErrorKind::ContentFilter,
        format!("the prompt was blocked by Gemini's safety filters ({reason})"),
    )
}

/// The HTTP status Google maps each RPC status to.
fn status_code(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

fn retry_delay(message: &str) -> Option<Duration> {
    let (_, rest) = message.split_once("retry in ")?;
    let secs = rest.split_once('s')?.0;
    tollgate_types::ports::parse_retry_after(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn messages_come_from_the_rpc_status_body_or_its_array_form() {
        let b = r#"{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified\n","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            error_message(&body(b)).as_deref(),
            Some("* GenerateContentRequest.contents: contents is not specified\n")
        );
        let b = r#"[{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}]"#;
        assert_eq!(
            error_message(&body(b)).as_deref(),
            Some("The model is overloaded. Please try again later.")
        );
        assert_eq!(
            error_message(&body(r#"{"error":{"code":500,"status":"INTERNAL"}}"#)).as_deref(),
            Some("INTERNAL")
        );
        assert_eq!(error_message(&body("<html>bad gateway")), None);
        assert_eq!(error_message(&body("[]")), None);
    }

    #[test]
    fn an_invalid_key_is_auth_even_though_gemini_answers_400() {
        let e = refine(ProviderError::from_status(
            PROVIDER_ID,
            400,
            "API key not valid. Please pass a valid API key.",
        ));
        assert_eq!(e.kind, ProviderErrorKind::Auth);
        let e = refine(ProviderError::from_status(PROVIDER_ID, 400, "Invalid value at 'contents[0].role'"));
        assert_eq!(e.kind, ProviderErrorKind::BadRequest);
        let e = refine(ProviderError::from_status(
            PROVIDER_ID,
            504,
            "Deadline expired before operation could complete.",
        ));
        assert_eq!(e.kind, ProviderErrorKind::Timeout);
    }

    #[test]
    fn quota_errors_take_the_retry_delay_from_the_message() {
        let msg = "You exceeded your current quota, please check your plan and billing details. Please retry in 41.5s.";
        let e = refine(ProviderError::from_status(PROVIDER_ID, 429, msg));
        assert_eq!(e.kind, ProviderErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_millis(41_500)));
        let header = Some(Duration::from_secs(3));
        let e = refine(ProviderError::from_status(PROVIDER_ID, 429, msg).with_retry_after(header));
        assert_eq!(e.retry_after, header);
        let e = refine(ProviderError::from_status(PROVIDER_ID, 429, "Resource has been exhausted"));
        assert_eq!(e.retry_after, None);
    }

    #[test]
    fn stream_error_objects_classify_by_code_or_status() {
        let e = from_api_error(ApiError {
            code: None,
            message: Some("The model is overloaded.".into()),
            status: Some("UNAVAILABLE".into()),
        });
        assert_eq!((e.kind, e.status), (ProviderErrorKind::Overloaded, Some(503)));
        let e = from_api_error(ApiError {
            code: Some(429),
            message: None,
            status: Some("RESOURCE_EXHAUSTED".into()),
        });
        assert_eq!((e.kind, e.message.as_str()), (ProviderErrorKind::RateLimited, "RESOURCE_EXHAUSTED"));
        let e = from_api_error(ApiError::default());
        assert_eq!(e.kind, ProviderErrorKind::Server);
        assert_eq!(prompt_blocked("SAFETY").kind, ProviderErrorKind::ContentFilter);
    }
}
