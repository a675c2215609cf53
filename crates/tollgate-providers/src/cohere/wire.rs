//! Cohere v2 wire format (`POST /v2/chat`, `POST /v2/embed`): Cohere's own field names only.
//!
//! Request types borrow from the canonical request; response and stream types ignore fields
//! they do not name, so additions on Cohere's side never break decoding.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

// === chat request ===

#[derive(Debug, Serialize)]
pub struct CohereChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<CohereMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<CohereTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<CohereToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Top-p (nucleus) sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<CohereResponseFormat<'a>>,
    pub stream: bool,
}

/// One turn. v2 takes the system prompt as a `system` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum CohereMessage<'a> {
    System {
        content: CohereContent<'a>,
    },
    User {
        content: CohereContent<'a>,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<CohereContent<'a>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<CohereToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: CohereContent<'a>,
    },
}

/// Message content: a plain string or typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CohereContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<CohereContentPart<'a>>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CohereContentPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: CohereImageUrl<'a> },
}

/// An image: a `data:` URL (inline base64) or a public URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohereImageUrl<'a> {
    pub url: &'a str,
    /// `auto`, `low` or `high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohereToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: CohereFunctionCall<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohereFunctionCall<'a> {
    pub name: &'a str,
    /// JSON-encoded arguments, as OpenAI carries them.
    pub arguments: &'a str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohereTool<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: CohereFunctionDef<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohereFunctionDef<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// JSON Schema of the arguments; Cohere requires an object, so an empty one stands in.
    pub parameters: Cow<'a, Value>,
}

/// Cohere has no `AUTO` value: leaving `tool_choice` out means auto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CohereToolChoice {
    Required,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CohereResponseFormat<'a> {
    Text,
    /// JSON output; with `json_schema`, constrained to that schema.
    JsonObject {
        #[serde(skip_serializing_if = "Option::is_none")]
        json_schema: Option<&'a Value>,
    },
}

// === chat response ===

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereChatResponse {
    #[serde(default)]
    pub id: String,
    /// `COMPLETE`, `STOP_SEQUENCE`, `MAX_TOKENS`, `TOOL_CALL`, `ERROR` or `TIMEOUT`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub message: CohereResponseMessage,
    #[serde(default)]
    pub usage: Option<CohereUsage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereResponseMessage {
    #[serde(default)]
    pub content: Vec<CohereResponseContent>,
    #[serde(default)]
    pub tool_calls: Vec<CohereResponseToolCall>,
    /// The model's reasoning before its tool calls; not part of the canonical answer.
    #[serde(default)]
    pub tool_plan: Option<String>,
}

/// A content block of the answer; only `text` blocks carry answer text (`thinking` blocks and
/// future kinds are skipped).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereResponseContent {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereResponseToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub function: CohereResponseFunction,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereResponseFunction {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// `tokens` is what the model processed; `billed_units` is what was charged (it leaves out the
/// tokens of Cohere's own prompt template), used only when `tokens` is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct CohereUsage {
    #[serde(default)]
    pub billed_units: Option<CohereTokens>,
    #[serde(default)]
    pub tokens: Option<CohereTokens>,
    #[serde(default)]
    pub cached_tokens: Option<f64>,
}

/// Cohere's SDKs type these as doubles, so a `5.0` must decode as well as a `5`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct CohereTokens {
    #[serde(default)]
    pub input_tokens: Option<f64>,
    #[serde(default)]
    pub output_tokens: Option<f64>,
}

// === chat stream ===

/// One SSE event's `data`, named by its `type`. Events the gateway has no use for
/// (`content-end`, `tool-plan-delta`, `citation-*`, and future ones) decode as `Other`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CohereStreamEvent {
    MessageStart {
        #[serde(default)]
        id: Option<String>,
    },
    ContentDelta {
        #[serde(default)]
        delta: CohereStreamDelta<CohereDeltaContent>,
    },
    ToolCallStart {
        #[serde(default)]
        delta: CohereStreamDelta<CohereDeltaToolCall>,
    },
    ToolCallDelta {
        #[serde(default)]
        delta: CohereStreamDelta<CohereDeltaToolCall>,
    },
    MessageEnd {
        #[serde(default)]
        delta: CohereMessageEndDelta,
    },
    #[serde(other)]
    Other,
}

/// `delta.message` of a content or tool-call event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereStreamDelta<T> {
    #[serde(default)]
    pub message: Option<T>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereDeltaContent {
    #[serde(default)]
    pub content: Option<CohereDeltaText>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereDeltaText {
    /// Absent on a reasoning model's `thinking` fragments.
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereDeltaToolCall {
    /// One call (an object, not a list) per event.
    #[serde(default)]
    pub tool_calls: Option<CohereStreamToolCall>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereStreamToolCall {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: CohereResponseFunction,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereMessageEndDelta {
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<CohereUsage>,
    /// Set when generation failed mid-stream (with `finish_reason: ERROR`).
    #[serde(default)]
    pub error: Option<String>,
}

// === embed ===

#[derive(Debug, Serialize)]
pub struct CohereEmbedRequest<'a> {
    pub model: &'a str,
    pub texts: Vec<&'a str>,
    /// Required by v3+ embed models. OpenAI's API has no such notion; `search_document` is the
    /// neutral choice for stored texts.
    pub input_type: &'a str,
    pub embedding_types: [&'static str; 1],
    /// Matryoshka size, for models that support it (embed-v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimension: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereEmbedResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub embeddings: CohereEmbeddings,
    #[serde(default)]
    pub meta: Option<CohereEmbedMeta>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereEmbeddings {
    /// Only `float` is requested; other types Cohere may add are ignored.
    #[serde(default)]
    pub float: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereEmbedMeta {
    #[serde(default)]
    pub billed_units: Option<CohereTokens>,
}

// === errors ===

/// Cohere's error body: `{"message": "..."}`, sometimes with an `id`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CohereErrorBody {
    #[serde(default)]
    pub message: Option<String>,
}
