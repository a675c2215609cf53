//! Embeddings (`POST /v1/embeddings`) in the canonical (OpenAI) shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JsonMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// One string, several strings, or pre-tokenized input (token ids), as OpenAI accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    TokenBatches(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The texts to embed, when the input is text.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            EmbeddingInput::One(s) => Some(vec![s.as_str()]),
            EmbeddingInput::Many(v) => Some(v.iter().map(String::as_str).collect()),
            EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            EmbeddingInput::One(s) => s.is_empty(),
            EmbeddingInput::Many(v) => v.is_empty(),
            EmbeddingInput::Tokens(v) => v.is_empty(),
            EmbeddingInput::TokenBatches(v) => v.is_empty(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    #[serde(default = "list_object")]
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    #[serde(default)]
    pub usage: EmbeddingsUsage,
}

fn list_object() -> String {
    "list".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    #[serde(default = "embedding_object")]
    pub object: String,
    pub index: u32,
    /// A list of floats, or a base64 string when `encoding_format` was `base64`.
    pub embedding: Value,
}

fn embedding_object() -> String {
    "embedding".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}
