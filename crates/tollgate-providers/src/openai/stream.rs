//! OpenAI's SSE stream: `data: {chunk}` lines ending with `data: [DONE]`. The chunks are already
//! canonical; the decoder only checks them and notices the end marker.

use tollgate_types::ports::ProviderError;
use tollgate_types::{ChatChunk, CompletionResponse};

use crate::sse::{StreamDecoder, parse_data, truncated};

const DONE: &str = "[DONE]";

pub struct ChatDecoder {
    provider: &'static str,
    done: bool,
}

impl ChatDecoder {
    pub fn new(provider: &'static str) -> Self {
        Self { provider, done: false }
    }
}

impl StreamDecoder for ChatDecoder {
    type Item = ChatChunk;

    fn on_event(&mut self, event: &str, data: &str) -> Result<Vec<ChatChunk>, ProviderError> {
        if data == DONE {
            self.done = true;
            return Ok(Vec::new());
        }
        if event == "error" || data.starts_with("{\"error\"") {
            let msg = super::errors::error_message(&bytes::Bytes::copy_from_slice(data.as_bytes()))
                .unwrap_or_else(|| "the upstream sent an error event".to_owned());
            return Err(super::errors::in_stream(ProviderError::new(
                self.provider,
                tollgate_types::ports::ProviderErrorKind::Server,
                msg,
            )));
        }
        Ok(vec![parse_data(self.provider, data)?])
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_end(&mut self) -> Result<Vec<ChatChunk>, ProviderError> {
        if self.done { Ok(Vec::new()) } else { Err(truncated(self.provider)) }
    }
}

/// Legacy completions stream: the same framing, `text_completion` chunks.
pub struct CompletionDecoder {
    provider: &'static str,
    done: bool,
}

impl CompletionDecoder {
    pub fn new(provider: &'static str) -> Self {
        Self { provider, done: false }
    }
}

impl StreamDecoder for CompletionDecoder {
    type Item = CompletionResponse;

    fn on_event(&mut self, _event: &str, data: &str) -> Result<Vec<CompletionResponse>, ProviderError> {
        if data == DONE {
            self.done = true;
            return Ok(Vec::new());
        }
        Ok(vec![parse_data(self.provider, data)?])
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_end(&mut self) -> Result<Vec<CompletionResponse>, ProviderError> {
        if self.done { Ok(Vec::new()) } else { Err(truncated(self.provider)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_pass_and_done_ends_the_stream() {
        let mut d = ChatDecoder::new("openai");
        let out = d
            .on_event(
                "",
                r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#,
            )
            .unwrap();
        assert_eq!(out[0].choices[0].delta.tool_calls.as_ref().unwrap()[0].id.as_deref(), Some("call_1"));
        let usage = d
            .on_event("", r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#)
            .unwrap();
        assert_eq!(usage[0].usage.unwrap().total_tokens, 5);
        assert!(!d.is_done());
        assert!(d.on_event("", "[DONE]").unwrap().is_empty());
        assert!(d.is_done());
        assert!(d.on_end().unwrap().is_empty());
    }

    #[test]
    fn a_stream_without_done_is_truncated_and_garbage_is_an_error() {
        let mut d = ChatDecoder::new("openai");
        assert!(d.on_event("", "{not json").is_err());
        assert!(d.on_end().is_err());
        let mut d = ChatDecoder::new("openai");
        let err = d.on_event("", r#"{"error":{"message":"overloaded","type":"server_error"}}"#).unwrap_err();
        assert_eq!(err.message, "overloaded");
        assert_eq!(err.kind, tollgate_types::ports::ProviderErrorKind::Server);
    }

    #[test]
    fn a_content_policy_error_event_is_a_content_filter_error() {
        let mut d = ChatDecoder::new("azure");
        let event =
            r#"{"error":{"message":"The response was filtered","code":"content_filter","status":400}}"#;
        let err = d.on_event("", event).unwrap_err();
        assert_eq!(err.kind, tollgate_types::ports::ProviderErrorKind::ContentFilter);
        assert!(err.message.contains("(content_filter)"), "{}", err.message);
    }
}
