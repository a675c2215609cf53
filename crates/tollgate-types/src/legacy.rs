//! The legacy text completions API (`POST /v1/completions`), served by OpenAI-compatible upstreams
//! only. The gateway reads the few fields it needs and passes everything else through.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JsonMap, Usage};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    /// A string, a list of strings, or token ids: passed through as given.
    pub prompt: Value,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// A `text_completion` object (or one chunk of a streamed one): kept whole, with usage read out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub body: JsonMap,
}
