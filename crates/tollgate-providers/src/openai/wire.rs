//! OpenAI request bodies as sent upstream: the canonical request, borrowed field by field, with
//! the upstream model name and the stream settings the gateway needs. Unknown client fields
//! (`extra`) are flattened back in untouched. Also the error body (`errors.rs` reads it).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_types::{
    ChatRequest, CompletionRequest, EmbeddingInput, EmbeddingsRequest, JsonMap, Message, ResponseFormat,
    Stop, Tool, ToolChoice,
};

#[derive(Debug, Serialize)]
pub struct OpenAiChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<OpenAiStreamOptions<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a Stop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<&'a [Tool]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'a ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<&'a ResponseFormat>,
    #[serde(flatten)]
    pub extra: &'a JsonMap,
}

#[derive(Debug, Serialize)]
pub struct OpenAiStreamOptions<'a> {
    pub include_usage: bool,
    #[serde(flatten)]
    pub extra: Option<&'a JsonMap>,
}

impl<'a> OpenAiChatRequest<'a> {
    /// `include_usage` asks the upstream for the final usage chunk (streams only).
    pub fn new(req: &'a ChatRequest, upstream_model: &'a str, stream: bool, include_usage: bool) -> Self {
        let stream_options = stream.then(|| OpenAiStreamOptions {
            include_usage,
            extra: req.stream_options.as_ref().map(|o| &o.extra),
        });
        Self {
            model: upstream_model,
            messages: &req.messages,
            stream,
            stream_options,
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_tokens,
            max_completion_tokens: req.max_completion_tokens,
            stop: req.stop.as_ref(),
            seed: req.seed,
            n: req.n,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            user: req.user.as_deref(),
            metadata: req.metadata.as_ref(),
            tools: req.tools.as_deref(),
            tool_choice: req.tool_choice.as_ref(),
            parallel_tool_calls: req.parallel_tool_calls,
            response_format: req.response_format.as_ref(),
            extra: &req.extra,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OpenAiEmbeddingsRequest<'a> {
    pub model: &'a str,
    pub input: &'a EmbeddingInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(flatten)]
    pub extra: &'a JsonMap,
}

impl<'a> OpenAiEmbeddingsRequest<'a> {
    pub fn new(req: &'a EmbeddingsRequest, upstream_model: &'a str) -> Self {
        Self {
            model: upstream_model,
            input: &req.input,
            encoding_format: req.encoding_format.as_deref(),
            dimensions: req.dimensions,
            user: req.user.as_deref(),
            extra: &req.extra,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OpenAiCompletionRequest<'a> {
    pub model: &'a str,
    pub prompt: &'a Value,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: &'a JsonMap,
}

impl<'a> OpenAiCompletionRequest<'a> {
    pub fn new(req: &'a CompletionRequest, upstream_model: &'a str, stream: bool) -> Self {
        Self {
            model: upstream_model,
            prompt: &req.prompt,
            stream,
            max_tokens: req.max_tokens,
            extra: &req.extra,
        }
    }
}

// === errors ===

/// An error body: `{"error": {...}}` as OpenAI and Azure send it; some compatible servers send
/// `error` as a string, or only a top-level `message`.
#[derive(Debug, Deserialize)]
pub struct OpenAiErrorBody {
    #[serde(default)]
    pub error: Option<OpenAiErrorField>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OpenAiErrorField {
    Object(OpenAiError),
    Text(String),
}

#[derive(Debug, Deserialize)]
pub struct OpenAiError {
    #[serde(default)]
    pub message: Option<String>,
    /// A string at OpenAI and Azure (`context_length_exceeded`, `content_filter`, ...); some
    /// compatible servers (vLLM) put the HTTP status here as a number.
    #[serde(default)]
    pub code: Option<Value>,
    /// Azure only: why its content filter refused (`code: ResponsibleAIPolicyViolation`).
    #[serde(default)]
    pub innererror: Option<OpenAiInnerError>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiInnerError {
    #[serde(default)]
    pub code: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_body_swaps_the_model_and_keeps_unknown_fields() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "alias", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2, "logit_bias": {"50256": -100}, "service_tier": "flex",
            "stream_options": {"include_usage": false}
        }))
        .unwrap();
        let body = serde_json::to_value(OpenAiChatRequest::new(&req, "gpt-4o-mini", true, true)).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["logit_bias"], json!({"50256": -100}));
        assert_eq!(body["service_tier"], "flex");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(body["temperature"], 0.2);
        let body = serde_json::to_value(OpenAiChatRequest::new(&req, "m", false, true)).unwrap();
        assert!(body.get("stream").is_none() && body.get("stream_options").is_none());
    }

    #[test]
    fn embeddings_body_swaps_the_model() {
        let req: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": ["a", "b"], "dimensions": 8})).unwrap();
        let body =
            serde_json::to_value(OpenAiEmbeddingsRequest::new(&req, "text-embedding-3-small")).unwrap();
        assert_eq!(body, json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8}));
    }
}
