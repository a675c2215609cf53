//! Gemini's SSE stream (`streamGenerateContent?alt=sse`): every `data:` event is a whole
//! `GenerateContentResponse` holding the parts generated since the previous one. There is no end
//! marker: the last event carries `finishReason` and the full `usageMetadata`, then the
//! connection closes. A close before any `finishReason` is a truncated answer.
//!
//! Function calls arrive whole in one event, so each becomes one tool-call delta carrying its id,
//! name and complete arguments.

use tollgate_types::ports::ProviderError;
use tollgate_types::{ChatChunk, Delta, FinishReason, Role, ToolCallDelta, ToolKind, Usage};

use super::PROVIDER_ID;
use super::convert::{Answer, answer_part, finish_reason, usage};
use super::errors::{from_api_error, prompt_blocked};
use super::wire::GenerateContentResponse;
use crate::sse::{StreamDecoder, parse_data, truncated};

pub struct ChatDecoder {
    id: String,
    model: String,
    created: i64,
    started: bool,
    tool_calls: usize,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ChatDecoder {
    /// `fallback_id` is the chunks' id when the upstream sends no `responseId`.
    pub fn new(fallback_id: String, model: String, created: i64) -> Self {
        Self { id: fallback_id, model, created, started: false, tool_calls: 0, finish: None, usage: None }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::delta(&self.id, &self.model, self.created, delta, finish)
    }
}

impl StreamDecoder for ChatDecoder {
    type Item = ChatChunk;

    fn on_event(&mut self, _event: &str, data: &str) -> Result<Vec<ChatChunk>, ProviderError> {
        if data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let resp: GenerateContentResponse = parse_data(PROVIDER_ID, data)?;
        if let Some(error) = resp.error {
            return Err(from_api_error(error));
        }
        // Usage is cumulative; early events may carry only the prompt count.
        if let Some(u) = &resp.usage_metadata {
            self.usage = Some(usage(u));
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            if let Some(id) = resp.response_id {
                self.id = id;
            }
            out.push(self.chunk(Delta::role(Role::Assistant), None));
        }
        let Some(candidate) = resp.candidates.into_iter().next() else {
            return match resp.prompt_feedback.and_then(|f| f.block_reason) {
                Some(reason) => Err(prompt_blocked(&reason)),
                None => Ok(out),
            };
        };
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            match answer_part(part, self.tool_calls) {
                Some(Answer::Text(text)) => out.push(self.chunk(Delta::content(text), None)),
                Some(Answer::Call(call)) => {
                    let delta = ToolCallDelta {
                        index: u32::try_from(self.tool_calls).unwrap_or(u32::MAX),
                        id: Some(call.id),
                        kind: Some(ToolKind::Function),
                        function: Some(tollgate_types::FunctionCallDelta {
                            name: Some(call.function.name),
                            arguments: Some(call.function.arguments),
                        }),
                    };
                    self.tool_calls += 1;
                    out.push(self.chunk(Delta::tool_call(delta), None));
                }
                None => {}
            }
        }
        if let Some(reason) = candidate.finish_reason
            && self.finish.is_none()
        {
            let finish = finish_reason(&reason, self.tool_calls > 0);
            self.finish = Some(finish);
            out.push(self.chunk(Delta::default(), Some(finish)));
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        // No end marker: usage may still follow the finish reason, so read until the close.
        false
    }

    fn on_end(&mut self) -> Result<Vec<ChatChunk>, ProviderError> {
        if self.finish.is_none() {
            return Err(truncated(PROVIDER_ID));
        }
        Ok(self
            .usage
            .take()
            .map(|u| ChatChunk::usage_only(&self.id, &self.model, self.created, u))
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_types::ports::ProviderErrorKind;

    fn decoder() -> ChatDecoder {
        ChatDecoder::new("chatcmpl-gemini-r1".into(), "gemini-2.5-flash".into(), 7)
    }

    /// Feeds every event, then the close; the error, if any, ends the run.
    fn run(d: &mut ChatDecoder, events: &[&str]) -> Result<Vec<ChatChunk>, ProviderError> {
        let mut out = Vec::new();
        for e in events {
            out.extend(d.on_event("", e)?);
        }
        out.extend(d.on_end()?);
        Ok(out)
    }

    fn text(chunks: &[ChatChunk]) -> String {
        chunks.iter().filter_map(|c| c.choices.first()?.delta.content.clone()).collect()
    }

    // Recorded from the shape of a real `alt=sse` answer of gemini-2.5-flash.
    const TEXT_STREAM: [&str; 3] = [
        r#"{"candidates": [{"content": {"parts": [{"text": "The capital"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 9}]},"modelVersion": "gemini-2.5-flash","responseId": "tTCwacuEBMvnitYP06qsgQY"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": " of France is Paris"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},"modelVersion": "gemini-2.5-flash","responseId": "tTCwacuEBMvnitYP06qsgQY"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": ".","thoughtSignature": "AY89a18i"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 7,"totalTokenCount": 36,"cachedContentTokenCount": 4,"thoughtsTokenCount": 20},"modelVersion": "gemini-2.5-flash","responseId": "tTCwacuEBMvnitYP06qsgQY"}"#,
    ];

    #[test]
    fn a_text_stream_yields_role_content_finish_and_usage() {
        let chunks = run(&mut decoder(), &TEXT_STREAM).unwrap();
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert!(chunks.iter().all(|c| c.id == "tTCwacuEBMvnitYP06qsgQY" && c.model == "gemini-2.5-flash"));
        assert_eq!(text(&chunks), "The capital of France is Paris.");
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish.choices[0].finish_reason, Some(FinishReason::Stop));
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        let usage = last.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (9, 27, 36));
        assert_eq!(usage.cached_tokens(), 4);
        assert_eq!(usage.completion_tokens_details.unwrap().reasoning_tokens, 20);
        assert_eq!(chunks.iter().filter(|c| c.usage.is_some()).count(), 1);
    }

    #[test]
    fn function_calls_arrive_whole_and_finish_as_tool_calls() {
        let events = [
            r#"{"candidates": [{"content": {"parts": [{"text": "Let me check."}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 30,"totalTokenCount": 30}}"#,
            r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"city": "Paris","unit": "celsius"}},"thoughtSignature": "CiQB"},{"functionCall": {"name": "get_time","args": {"tz": "Europe/Paris"}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 30,"candidatesTokenCount": 18,"totalTokenCount": 48}}"#,
        ];
        let chunks = run(&mut decoder(), &events).unwrap();
        assert_eq!(chunks[0].id, "chatcmpl-gemini-r1");
        assert_eq!(text(&chunks), "Let me check.");
        let calls: Vec<&ToolCallDelta> =
            chunks.iter().filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref()).flatten().collect();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].index, calls[0].id.as_deref()), (0, Some("call_0__thought__CiQB")));
        assert_eq!(calls[0].kind, Some(ToolKind::Function));
        let f = calls[0].function.as_ref().unwrap();
        assert_eq!(f.name.as_deref(), Some("get_weather"));
        let args: serde_json::Value = serde_json::from_str(f.arguments.as_deref().unwrap()).unwrap();
        assert_eq!(args, serde_json::json!({"city": "Paris", "unit": "celsius"}));
        assert_eq!((calls[1].index, calls[1].id.as_deref()), (1, Some("call_1")));
        let finish = chunks.iter().find_map(|c| c.choices.first()?.finish_reason);
        assert_eq!(finish, Some(FinishReason::ToolCalls));
        assert_eq!(chunks.last().unwrap().usage.unwrap().total_tokens, 48);
    }

    #[test]
    fn a_stream_without_usage_ends_after_the_finish_chunk() {
        let events = [
            r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"finishReason": "MAX_TOKENS"}]}"#,
        ];
        let chunks = run(&mut decoder(), &events).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].choices[0].finish_reason, Some(FinishReason::Length));
    }

    #[test]
    fn error_events_and_blocked_prompts_end_the_stream_with_an_error() {
        let mut d = decoder();
        assert_eq!(d.on_event("", TEXT_STREAM[0]).unwrap().len(), 2);
        let err = d
            .on_event("", r#"{"error": {"code": 503,"message": "The model is overloaded. Please try again later.","status": "UNAVAILABLE"}}"#)
            .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Overloaded);
        assert_eq!(err.message, "The model is overloaded. Please try again later.");
        let err = decoder()
            .on_event("", r#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},"usageMetadata": {"promptTokenCount": 5,"totalTokenCount": 5}}"#)
            .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::ContentFilter);
        assert_eq!(decoder().on_event("", "{not json").unwrap_err().kind, ProviderErrorKind::InvalidResponse);
    }

    #[test]
    fn a_close_before_the_finish_reason_is_truncation() {
        let mut d = decoder();
        d.on_event("", TEXT_STREAM[0]).unwrap();
        d.on_event("", TEXT_STREAM[1]).unwrap();
        assert!(!d.is_done());
        let err = d.on_end().unwrap_err();
        assert_eq!(err, truncated(PROVIDER_ID));
        assert!(decoder().on_end().is_err());
    }

    #[test]
    fn unknown_fields_and_empty_events_are_ignored() {
        let mut d = decoder();
        assert!(d.on_event("", "").unwrap().is_empty());
        let chunks = d
            .on_event("", r#"{"candidates": [{"content": {"parts": [{"executableCode": {"language": "PYTHON","code": "1+1"}},{"text": ""}],"role": "model"},"groundingMetadata": {}}],"somethingNew": 1}"#)
            .unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    }
}
