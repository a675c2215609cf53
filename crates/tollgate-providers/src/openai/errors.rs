//! OpenAI's error body (`{"error":{"message","type","param","code"}}`; Azure adds `status` and
//! `innererror`) → [`ProviderError`]: the message for HTTP errors, and the case the HTTP status
//! alone gets wrong. A prompt refused on content policy is a 400 like a malformed request, but the
//! router must see a [`ProviderErrorKind::ContentFilter`] to try the alias's
//! `content_policy_fallback`.
//!
//! The codes the router acts on (content policy, context length) are kept in the message as
//! `"<upstream message> (<code>)"`: the message is all a [`ProviderError`] carries past
//! [`crate::http::send`], and the router recognises a context-length 400 by its text. Codes are
//! short fixed identifiers, so the message stays as safe to show a client as the upstream's own.

use bytes::Bytes;
use serde_json::Value;
use tollgate_types::ports::{ProviderError, ProviderErrorKind};

use super::wire::{OpenAiError, OpenAiErrorBody, OpenAiErrorField};
use crate::http::common_error_message;

/// OpenAI's code for a prompt (or image) its safety system refused.
const CONTENT_POLICY_VIOLATION: &str = "content_policy_violation";
/// Azure's code for the same, with `innererror.code` [`RESPONSIBLE_AI`].
const CONTENT_FILTER: &str = "content_filter";
/// Azure's inner code naming the policy that refused.
const RESPONSIBLE_AI: &str = "ResponsibleAIPolicyViolation";
/// The prompt does not fit the model (the router's context-window fallback looks for it).
const CONTEXT_LENGTH_EXCEEDED: &str = "context_length_exceeded";

/// The codes worth keeping in the message, content-policy ones first.
const KEPT_CODES: [&str; 4] =
    [CONTENT_POLICY_VIOLATION, CONTENT_FILTER, RESPONSIBLE_AI, CONTEXT_LENGTH_EXCEEDED];
/// How a content-policy code reads in a message built by [`error_message`].
const CONTENT_POLICY_MARKS: [&str; 3] =
    ["(content_policy_violation)", "(content_filter)", "(ResponsibleAIPolicyViolation)"];

/// The upstream's own message from an error body (for [`crate::http::send`]), with the code in
/// parentheses when it is one the router acts on.
pub fn error_message(body: &Bytes) -> Option<String> {
    let Ok(parsed) = serde_json::from_slice::<OpenAiErrorBody>(body) else {
        return common_error_message(body);
    };
    let (message, code) = match parsed.error {
        Some(OpenAiErrorField::Object(e)) => {
            let code = kept_code(&e);
            (e.message.or(parsed.message), code)
        }
        Some(OpenAiErrorField::Text(m)) => (Some(m), None),
        None => (parsed.message, None),
    };
    let Some(code) = code else { return message };
    Some(match message.filter(|m| !m.is_empty()) {
        Some(m) if m.contains(&format!("({code})")) => m,
        Some(m) => format!("{m} ({code})"),
        None if code == CONTEXT_LENGTH_EXCEEDED => {
            format!("the prompt is longer than the model's context length ({code})")
        }
        None => format!("the upstream refused the request on content policy ({code})"),
    })
}

/// The first of [`KEPT_CODES`] the error names, in `code` or Azure's `innererror.code`.
fn kept_code(e: &OpenAiError) -> Option<&'static str> {
    let code = e.code.as_ref().and_then(Value::as_str);
    let inner = e.innererror.as_ref().and_then(|i| i.code.as_ref()).and_then(Value::as_str);
    KEPT_CODES.into_iter().find(|k| code == Some(*k) || inner == Some(*k))
}

/// An error event inside a stream (no status to go by): a content-policy one is a
/// [`ProviderErrorKind::ContentFilter`], anything else stays the upstream's failure.
pub fn in_stream(err: ProviderError) -> ProviderError {
    if CONTENT_POLICY_MARKS.iter().any(|m| err.message.contains(m)) {
        return ProviderError { kind: ProviderErrorKind::ContentFilter, ..err };
    }
    err
}

/// Refines what the status classified: a content-policy refusal is a
/// [`ProviderErrorKind::ContentFilter`], not a bad request (nor, if an upstream answers it with
/// 403, a credential problem that would count against the deployment's health).
pub fn refine(err: ProviderError) -> ProviderError {
    let rejected = err.kind == ProviderErrorKind::BadRequest
        || (err.kind == ProviderErrorKind::Auth && err.status == Some(403));
    if rejected && CONTENT_POLICY_MARKS.iter().any(|m| err.message.contains(m)) {
        return ProviderError { kind: ProviderErrorKind::ContentFilter, ..err };
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Option<String> {
        error_message(&Bytes::copy_from_slice(body.as_bytes()))
    }

    fn classify(status: u16, body: &str) -> ProviderError {
        let m = message(body).unwrap_or_default();
        refine(ProviderError::from_status("openai", status, m))
    }

    #[test]
    fn a_content_policy_refusal_is_a_content_filter_error() {
        let openai = r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;
        let e = classify(400, openai);
        assert_eq!(e.kind, ProviderErrorKind::ContentFilter);
        assert_eq!(
            e.message,
            "Your request was rejected as a result of our safety system. (content_policy_violation)"
        );
        assert!(!e.retryable());
        let azure = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"violence":{"filtered":true,"severity":"medium"}}}}}"#;
        let e = classify(400, azure);
        assert_eq!(e.kind, ProviderErrorKind::ContentFilter);
        assert!(e.message.ends_with("policy. (content_filter)"), "{}", e.message);
        assert!(!e.message.contains("violence"), "the filter's verdicts stay out of the message");
        // Only the inner code says it.
        let inner = r#"{"error":{"message":"filtered","code":null,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        assert_eq!(classify(400, inner).kind, ProviderErrorKind::ContentFilter);
        // A 403 naming the content policy is the prompt's fault, not the credential's.
        assert_eq!(classify(403, openai).kind, ProviderErrorKind::ContentFilter);
        // No message: the code alone still classifies.
        let bare = r#"{"error":{"code":"content_filter"}}"#;
        assert_eq!(
            classify(400, bare).message,
            "the upstream refused the request on content policy (content_filter)"
        );
        assert_eq!(classify(400, bare).kind, ProviderErrorKind::ContentFilter);
    }

    #[test]
    fn other_errors_keep_their_classification_and_message() {
        let bad = r#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}"#;
        let e = classify(400, bad);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ProviderErrorKind::BadRequest, "Invalid value for 'temperature'")
        );
        let key = r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(classify(401, key).kind, ProviderErrorKind::Auth);
        // The content-policy code on a 5xx is the server failing, whatever it says.
        let odd = r#"{"error":{"message":"boom","code":"content_filter"}}"#;
        assert_eq!(classify(500, odd).kind, ProviderErrorKind::Server);
        // A message that merely talks about filtering is not a refusal.
        let talk =
            r#"{"error":{"message":"content_filter is not a valid parameter","code":"unknown_parameter"}}"#;
        assert_eq!(classify(400, talk).kind, ProviderErrorKind::BadRequest);
    }

    #[test]
    fn a_context_length_error_keeps_the_upstream_text_and_its_code() {
        let openai = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let e = classify(400, openai);
        assert_eq!(e.kind, ProviderErrorKind::BadRequest);
        assert!(e.message.starts_with("This model's maximum context length is 128000 tokens."));
        assert!(e.message.ends_with("(context_length_exceeded)"), "{}", e.message);
        let bare = r#"{"error":{"message":"","code":"context_length_exceeded"}}"#;
        assert!(classify(400, bare).message.contains("context_length_exceeded"));
        // vLLM: the code is the status, the text says it all.
        let vllm = r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}"#;
        assert!(message(vllm).unwrap().starts_with("This model's maximum context length is 4096 tokens."));
        let vllm_nested = r#"{"error":{"message":"maximum context length is 4096 tokens","type":"BadRequestError","code":400}}"#;
        assert_eq!(message(vllm_nested).as_deref(), Some("maximum context length is 4096 tokens"));
    }

    #[test]
    fn the_compatible_servers_shapes_still_give_their_message() {
        assert_eq!(message(r#"{"error":"model not found"}"#).as_deref(), Some("model not found"));
        assert_eq!(message(r#"{"message":"overloaded"}"#).as_deref(), Some("overloaded"));
        assert_eq!(message("<html>bad gateway</html>"), None);
        assert_eq!(message(r#"{"error":{"type":"server_error"}}"#), None);
    }
}
