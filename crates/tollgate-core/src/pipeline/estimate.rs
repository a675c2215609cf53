//! What a request may take before it is sent: its input tokens (counted with the tokenizer of the
//! alias's first deployment) and its maximum output. Only computed when a token limit or a
//! budget applies, since counting a long prompt is not free.

use tollgate_types::{ChatRequest, CompletionRequest, EmbeddingInput, EmbeddingsRequest};

use crate::metering::{TokenizerFamily, count_prompt_tokens, count_text_tokens};

/// Input tokens and the most output the request asked for (`None`: no maximum given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Demand {
    pub prompt_tokens: u64,
    pub max_output: Option<u64>,
}

pub(crate) fn chat(req: &ChatRequest, family: TokenizerFamily) -> Demand {
    let choices = u64::from(req.n.unwrap_or(1).max(1));
    Demand {
        prompt_tokens: count_prompt_tokens(req, family),
        max_output: req.max_completion_tokens.or(req.max_tokens).map(|m| u64::from(m) * choices),
    }
}

pub(crate) fn embeddings(req: &EmbeddingsRequest, family: TokenizerFamily) -> Demand {
    let prompt_tokens = match &req.input {
        EmbeddingInput::One(text) => count_text_tokens(text, family),
        EmbeddingInput::Many(texts) => texts.iter().map(|t| count_text_tokens(t, family)).sum(),
        EmbeddingInput::Tokens(ids) => ids.len() as u64,
        EmbeddingInput::TokenBatches(batches) => batches.iter().map(|b| b.len() as u64).sum(),
    };
    Demand { prompt_tokens, max_output: Some(0) }
}

/// OpenAI's default `max_tokens` for the legacy completions endpoint.
const LEGACY_DEFAULT_MAX_TOKENS: u64 = 16;

pub(crate) fn completions(req: &CompletionRequest, family: TokenizerFamily) -> Demand {
    let prompt_tokens = match &req.prompt {
        serde_json::Value::String(s) => count_text_tokens(s, family),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                serde_json::Value::String(s) => count_text_tokens(s, family),
                serde_json::Value::Number(_) => 1,
                serde_json::Value::Array(ids) => ids.len() as u64,
                _ => 0,
            })
            .sum(),
        _ => 0,
    };
    let prompts = match &req.prompt {
        serde_json::Value::Array(items) if items.iter().all(serde_json::Value::is_string) => {
            items.len().max(1)
        }
        _ => 1,
    } as u64;
    Demand {
        prompt_tokens,
        max_output: Some(req.max_tokens.map_or(LEGACY_DEFAULT_MAX_TOKENS, u64::from) * prompts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_counts_the_prompt_and_multiplies_the_maximum_by_n() {
        let req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 100, "n": 3
        }))
        .unwrap();
        let d = chat(&req, TokenizerFamily::O200k);
        assert!(d.prompt_tokens > 2 && d.prompt_tokens < 20, "{d:?}");
        assert_eq!(d.max_output, Some(300));
    }

    #[test]
    fn embeddings_and_completions_count_their_inputs() {
        let req: EmbeddingsRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "input": [[1, 2, 3], [4]]})).unwrap();
        assert_eq!(
            embeddings(&req, TokenizerFamily::Cl100k),
            Demand { prompt_tokens: 4, max_output: Some(0) }
        );
        let req: CompletionRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "prompt": ["a", "b"]})).unwrap();
        assert_eq!(completions(&req, TokenizerFamily::Cl100k).max_output, Some(32));
    }
}
