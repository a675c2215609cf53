//! The built-in `echo` provider: answers from the request itself, without any upstream. It lets a
//! newcomer try the gateway with curl or an SDK at once, and load tests run without an upstream.
//!
//! The answer is the text of the last user message; with `max_tokens` it is cut to that many
//! words (finish reason `length`). Token counts are an approximation (one token per four
//! characters, at least one per word); embeddings are deterministic pseudo-random unit vectors.

use async_trait::async_trait;
use futures::stream;
use tollgate_types::ids::unix_now;
use tollgate_types::ports::{CallCtx, ChunkStream, ProviderAdapter, ProviderError};
use tollgate_types::{
    ChatChunk, ChatRequest, ChatResponse, Choice, Delta, Embedding, EmbeddingsRequest, EmbeddingsResponse,
    EmbeddingsUsage, FinishReason, JsonMap, ResponseMessage, Role, Usage,
};

pub const PROVIDER_ID: &str = "echo";

/// Dimensions of an echo embedding when the request does not ask for a number.
const DEFAULT_DIMENSIONS: u32 = 16;

pub struct EchoAdapter;

/// What the echo provider answers to a request: the text, why it stopped, and the usage.
struct Answer {
    words: Vec<String>,
    finish_reason: FinishReason,
    usage: Usage,
}

fn answer(req: &ChatRequest) -> Answer {
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.as_ref())
        .map(|c| c.joined_text())
        .unwrap_or_default();
    let mut words: Vec<String> = split_keep_spaces(&last_user);
    let mut finish_reason = FinishReason::Stop;
    if let Some(cap) = req.output_cap().map(|c| c as usize)
        && words.len() > cap
    {
        words.truncate(cap);
        finish_reason = FinishReason::Length;
    }
    let prompt: u64 =
        req.messages.iter().filter_map(|m| m.content.as_ref()).map(|c| approx_tokens(&c.joined_text())).sum();
    let completion = approx_tokens(&words.concat());
    Answer { words, finish_reason, usage: Usage::new(prompt, completion, None) }
}

/// Splits text into words, each keeping its trailing whitespace, so concatenating gives it back.
fn split_keep_spaces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if !ch.is_whitespace() && current.ends_with(char::is_whitespace) {
            out.push(std::mem::take(&mut current));
        }
        current.push(ch);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One token per four characters, and at least one per word.
pub fn approx_tokens(text: &str) -> u64 {
    let chars = text.chars().count() as u64;
    let words = text.split_whitespace().count() as u64;
    chars.div_ceil(4).max(words)
}

fn completion_id(call: &CallCtx) -> String {
    format!("chatcmpl-echo-{}", call.request_id)
}

#[async_trait]
impl ProviderAdapter for EchoAdapter {
    fn kind(&self) -> &'static str {
        PROVIDER_ID
    }

    async fn chat(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChatResponse, ProviderError> {
        let a = answer(req);
        Ok(ChatResponse {
            id: completion_id(call),
            object: "chat.completion".to_owned(),
            created: unix_now(),
            model: call.upstream_model.clone(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage::assistant(Some(a.words.concat()), Vec::new()),
                finish_reason: Some(a.finish_reason),
                logprobs: None,
            }],
            usage: Some(a.usage),
            system_fingerprint: None,
            extra: JsonMap::new(),
        })
    }

    async fn chat_stream(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChunkStream, ProviderError> {
        let a = answer(req);
        let (id, model, created) = (completion_id(call), call.upstream_model.as_str(), unix_now());
        let mut chunks = Vec::with_capacity(a.words.len() + 3);
        chunks.push(ChatChunk::delta(&id, model, created, Delta::role(Role::Assistant), None));
        for w in a.words {
            chunks.push(ChatChunk::delta(&id, model, created, Delta::content(w), None));
        }
        chunks.push(ChatChunk::delta(&id, model, created, Delta::default(), Some(a.finish_reason)));
        chunks.push(ChatChunk::usage_only(&id, model, created, a.usage));
        Ok(Box::pin(stream::iter(chunks.into_iter().map(Ok))))
    }

    async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        call: &CallCtx,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let texts: Vec<String> = match req.input.texts() {
            Some(t) => t.into_iter().map(str::to_owned).collect(),
            None => match &req.input {
                tollgate_types::EmbeddingInput::Tokens(t) => vec![format!("{t:?}")],
                tollgate_types::EmbeddingInput::TokenBatches(b) => {
                    b.iter().map(|t| format!("{t:?}")).collect()
                }
                _ => Vec::new(),
            },
        };
        let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS).clamp(1, 4096);
        let tokens: u64 = texts.iter().map(|t| approx_tokens(t)).sum();
        let data = texts
            .iter()
            .zip(0u32..)
            .map(|(t, index)| Embedding {
                object: "embedding".to_owned(),
                index,
                embedding: serde_json::Value::from(pseudo_embedding(t, dims)),
            })
            .collect();
        Ok(EmbeddingsResponse {
            object: "list".to_owned(),
            data,
            model: call.upstream_model.clone(),
            usage: EmbeddingsUsage { prompt_tokens: tokens, total_tokens: tokens },
        })
    }
}

/// A deterministic unit vector derived from the text (FNV-1a seeded xorshift).
fn pseudo_embedding(text: &str, dims: u32) -> Vec<f64> {
    let mut state =
        text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut v: Vec<f64> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tollgate_types::Message;

    fn call() -> CallCtx {
        CallCtx {
            upstream_model: "echo-1".into(),
            request_id: "r1".into(),
            first_byte_timeout: std::time::Duration::from_secs(1),
            total_timeout: std::time::Duration::from_secs(1),
            include_usage: true,
            quota: Default::default(),
        }
    }

    fn req(text: &str, max_tokens: Option<u32>) -> ChatRequest {
        ChatRequest {
            model: "echo".into(),
            messages: vec![Message::text(Role::System, "be brief"), Message::text(Role::User, text)],
            max_tokens,
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn echoes_the_last_user_message_and_honours_max_tokens() {
        let r = EchoAdapter.chat(&req("hello there  world", None), &call()).await.unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some("hello there  world"));
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        let r = EchoAdapter.chat(&req("one two three", Some(2)), &call()).await.unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some("one two "));
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Length));
    }

    #[tokio::test]
    async fn streams_word_by_word_with_usage_last() {
        let s = EchoAdapter.chat_stream(&req("a b c", None), &call()).await.unwrap();
        let chunks: Vec<ChatChunk> = s.map(|c| c.unwrap()).collect().await;
        let text: String = chunks.iter().filter_map(|c| c.choices.first()?.delta.content.clone()).collect();
        assert_eq!(text, "a b c");
        assert_eq!(chunks.len(), 6);
        assert!(chunks.last().unwrap().usage.is_some());
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = pseudo_embedding("cat", 8);
        assert_eq!(a, pseudo_embedding("cat", 8));
        assert_ne!(a, pseudo_embedding("dog", 8));
        let norm: f64 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-9);
    }
}
