//! Cohere's v2 chat stream → canonical chunks. Cohere sends `event: <type>` SSE events whose
//! JSON `data` repeats the `type`: `message-start` (id), `content-start`/`content-delta`/
//! `content-end` (text), `tool-plan-delta`, `tool-call-start`/`tool-call-delta`/`tool-call-end`
//! (one call at a time), and `message-end` (finish reason and usage), which ends the stream.

use tollgate_types::ports::{ProviderError, ProviderErrorKind};
use tollgate_types::{
    ChatChunk, Delta, FinishReason, FunctionCallDelta, Role, ToolCallDelta, ToolKind, Usage,
};

use super::PROVIDER_ID;
use super::convert::{finish_reason, usage};
use super::errors::error_message;
use super::wire::{CohereMessageEndDelta, CohereStreamEvent, CohereStreamToolCall};
use crate::sse::{StreamDecoder, parse_data, truncated};

/// The decoder of one chat stream.
pub struct ChatDecoder {
    id: String,
    model: String,
    created: i64,
    /// Whether the leading role chunk went out.
    started: bool,
    /// Canonical index of the next tool call; Cohere streams calls one after another.
    next_tool: u32,
    done: bool,
}

impl ChatDecoder {
    /// `model` and `created` stamp every chunk (Cohere's events carry neither).
    pub fn new(model: &str, created: i64) -> Self {
        Self {
            id: String::new(),
            model: model.to_owned(),
            created,
            started: false,
            next_tool: 0,
            done: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::delta(&self.id, &self.model, self.created, delta, finish)
    }

    /// The role chunk, once, before anything else the client sees.
    fn start(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(Delta::role(Role::Assistant), None));
        }
    }

    fn tool_call_start(&mut self, call: CohereStreamToolCall, out: &mut Vec<ChatChunk>) {
        let index = self.next_tool;
        self.next_tool += 1;
        out.push(self.chunk(
            Delta::tool_call(ToolCallDelta {
                index,
                id: call.id,
                kind: Some(ToolKind::Function),
                function: Some(FunctionCallDelta {
                    name: Some(call.function.name.unwrap_or_default()),
                    arguments: Some(call.function.arguments.unwrap_or_default()),
                }),
            }),
            None,
        ));
    }

    fn tool_call_delta(&self, call: CohereStreamToolCall, out: &mut Vec<ChatChunk>) {
        let Some(arguments) = call.function.arguments.filter(|a| !a.is_empty()) else { return };
        out.push(self.chunk(
            Delta::tool_call(ToolCallDelta {
                // The call started last; a delta before any start belongs to call 0.
                index: self.next_tool.saturating_sub(1),
                id: None,
                kind: None,
                function: Some(FunctionCallDelta { name: None, arguments: Some(arguments) }),
            }),
            None,
        ));
    }

    fn message_end(
        &mut self,
        end: CohereMessageEndDelta,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), ProviderError> {
        self.done = true;
        let finish = finish_reason(end.finish_reason.as_deref(), end.error.as_deref())?;
        out.push(self.chunk(Delta::default(), Some(finish.unwrap_or(FinishReason::Stop))));
        if let Some(u) = end.usage.as_ref().and_then(usage) {
            out.push(self.usage_chunk(u));
        }
        Ok(())
    }

    fn usage_chunk(&self, u: Usage) -> ChatChunk {
        ChatChunk::usage_only(&self.id, &self.model, self.created, u)
    }
}

impl StreamDecoder for ChatDecoder {
    type Item = ChatChunk;

    fn on_event(&mut self, event: &str, data: &str) -> Result<Vec<ChatChunk>, ProviderError> {
        if event == "error" {
            let message = error_message(&bytes::Bytes::copy_from_slice(data.as_bytes()))
                .unwrap_or_else(|| "Cohere sent an error event".to_owned());
            return Err(ProviderError::new(PROVIDER_ID, ProviderErrorKind::Server, message));
        }
        let mut out = Vec::new();
        match parse_data::<CohereStreamEvent>(PROVIDER_ID, data)? {
            CohereStreamEvent::MessageStart { id } => {
                if let Some(id) = id {
                    self.id = id;
                }
                self.start(&mut out);
            }
            CohereStreamEvent::ContentDelta { delta } => {
                let text = delta.message.and_then(|m| m.content).and_then(|c| c.text);
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    self.start(&mut out);
                    out.push(self.chunk(Delta::content(text), None));
                }
            }
            CohereStreamEvent::ToolCallStart { delta } => {
                if let Some(call) = delta.message.and_then(|m| m.tool_calls) {
                    self.start(&mut out);
                    self.tool_call_start(call, &mut out);
                }
            }
            CohereStreamEvent::ToolCallDelta { delta } => {
                if let Some(call) = delta.message.and_then(|m| m.tool_calls) {
                    self.tool_call_delta(call, &mut out);
                }
            }
            CohereStreamEvent::MessageEnd { delta } => {
                self.start(&mut out);
                self.message_end(delta, &mut out)?;
            }
            CohereStreamEvent::Other => {}
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_end(&mut self) -> Result<Vec<ChatChunk>, ProviderError> {
        if self.done { Ok(Vec::new()) } else { Err(truncated(PROVIDER_ID)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::testing::{feed, text_of};

    const TEXT_STREAM: &[(&str, &str)] = &[
        (
            "message-start",
            r#"{"id":"29f14a5a-11de-4cae-9800-25e4747408ea","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}"#,
        ),
        (
            "content-start",
            r#"{"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}"#,
        ),
        (
            "content-delta",
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"A large"}}}}"#,
        ),
        (
            "content-delta",
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" language model"}}},"logprobs":null}"#,
        ),
        ("content-end", r#"{"type":"content-end","index":0}"#),
        (
            "message-end",
            r#"{"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":5,"output_tokens":3},"tokens":{"input_tokens":71,"output_tokens":3},"cached_tokens":64}}}"#,
        ),
    ];

    #[test]
    fn a_text_stream_gives_role_text_finish_and_usage() {
        let mut d = ChatDecoder::new("command-a-03-2025", 1_700_000_000);
        let out = feed(&mut d, TEXT_STREAM).unwrap();
        assert!(d.is_done());
        assert_eq!(out[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(text_of(&out), "A large language model");
        assert!(out.iter().all(|c| c.id == "29f14a5a-11de-4cae-9800-25e4747408ea"));
        assert!(out.iter().all(|c| c.model == "command-a-03-2025" && c.created == 1_700_000_000));
        let finish = &out[out.len() - 2];
        assert_eq!(finish.choices[0].finish_reason, Some(FinishReason::Stop));
        let last = out.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage, Some(Usage::new(71, 3, Some(64))));
        assert!(d.on_end().unwrap().is_empty());
    }

    #[test]
    fn a_tool_call_stream_gives_a_first_fragment_then_arguments() {
        let mut d = ChatDecoder::new("command-a-03-2025", 1);
        let out = feed(
            &mut d,
            &[
                ("message-start", r#"{"id":"m1","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}"#),
                ("tool-plan-delta", r#"{"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will look up the weather"}}}"#),
                ("tool-call-start", r#"{"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"get_weather_nsz5zm3w56q3","type":"function","function":{"name":"get_weather","arguments":""}}}}}"#),
                ("tool-call-delta", r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\"location\":"}}}}}"#),
                ("tool-call-delta", r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\"Toronto\"}"}}}}}"#),
                ("tool-call-end", r#"{"type":"tool-call-end","index":0}"#),
                ("tool-call-start", r#"{"type":"tool-call-start","index":1,"delta":{"message":{"tool_calls":{"id":"get_time_2","type":"function","function":{"name":"get_time","arguments":"{}"}}}}}"#),
                ("tool-call-end", r#"{"type":"tool-call-end","index":1}"#),
                ("message-end", r#"{"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":37,"output_tokens":28},"tokens":{"input_tokens":1012,"output_tokens":60}}}}"#),
            ],
        )
        .unwrap();
        let calls: Vec<&ToolCallDelta> = out
            .iter()
            .filter_map(|c| c.choices.first())
            .filter_map(|c| c.delta.tool_calls.as_ref())
            .flatten()
            .collect();
        assert_eq!(calls.len(), 4);
        let first = calls[0];
        assert_eq!((first.index, first.id.as_deref()), (0, Some("get_weather_nsz5zm3w56q3")));
        assert_eq!(first.kind, Some(ToolKind::Function));
        assert_eq!(first.function.as_ref().unwrap().name.as_deref(), Some("get_weather"));
        let args: String = calls
            .iter()
            .filter(|c| c.index == 0)
            .filter_map(|c| c.function.as_ref()?.arguments.as_deref())
            .collect();
        assert_eq!(args, r#"{"location":"Toronto"}"#);
        assert!(calls[1].id.is_none() && calls[1].function.as_ref().unwrap().name.is_none());
        assert_eq!((calls[3].index, calls[3].id.as_deref()), (1, Some("get_time_2")));
        let finish = out.iter().rev().find_map(|c| c.choices.first()?.finish_reason);
        assert_eq!(finish, Some(FinishReason::ToolCalls));
        assert_eq!(out.last().unwrap().usage, Some(Usage::new(1012, 60, None)));
    }

    #[test]
    fn an_error_at_the_end_is_an_error() {
        let mut d = ChatDecoder::new("m", 1);
        let err = feed(
            &mut d,
            &[
                ("message-start", r#"{"id":"m1","type":"message-start"}"#),
                ("content-delta", r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hal"}}}}"#),
                ("message-end", r#"{"type":"message-end","delta":{"finish_reason":"ERROR","error":"internal server error"}}"#),
            ],
        )
        .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Server);
        assert_eq!(err.message, "internal server error");
        let mut d = ChatDecoder::new("m", 1);
        let err = d.on_event("error", r#"{"message":"stream failed"}"#).unwrap_err();
        assert_eq!(err.message, "stream failed");
    }

    #[test]
    fn a_stream_cut_before_message_end_is_truncated() {
        let mut d = ChatDecoder::new("m", 1);
        let out = feed(&mut d, &TEXT_STREAM[..4]).unwrap();
        assert_eq!(text_of(&out), "A large language model");
        assert!(!d.is_done());
        let err = d.on_end().unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Connect);
    }

    #[test]
    fn unknown_events_are_ignored_and_garbage_is_an_error() {
        let mut d = ChatDecoder::new("m", 1);
        let out = feed(
            &mut d,
            &[
                ("citation-start", r#"{"type":"citation-start","index":0,"delta":{"message":{"citations":{"start":0}}}}"#),
                ("brand-new-event", r#"{"type":"brand-new-event","delta":[1,2,3]}"#),
                ("content-delta", r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"type":"thinking","thinking":"hmm"}}}}"#),
            ],
        )
        .unwrap();
        assert!(out.is_empty());
        let err = d.on_event("content-delta", "{not json").unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::InvalidResponse);
    }

    #[test]
    fn message_end_without_usage_still_finishes() {
        let mut d = ChatDecoder::new("m", 1);
        let out = feed(
            &mut d,
            &[("message-end", r#"{"type":"message-end","delta":{"finish_reason":"MAX_TOKENS"}}"#)],
        )
        .unwrap();
        assert_eq!(out.len(), 2, "role chunk, then the finish chunk");
        assert_eq!(out[1].choices[0].finish_reason, Some(FinishReason::Length));
        assert!(out.iter().all(|c| c.usage.is_none()));
        assert!(d.is_done());
    }
}
