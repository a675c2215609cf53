//! Anthropic's SSE stream → OpenAI chunks, as a pure state machine.
//!
//! Anthropic sends `message_start` (id, input usage), then per content block
//! `content_block_start` / `content_block_delta`* / `content_block_stop`, then `message_delta`
//! (stop reason, cumulative usage) and `message_stop`, the end marker; `ping` may come anywhere
//! and `error` ends the stream. Out come a role chunk, content and tool-call deltas, a finish
//! chunk and, when usage was reported, a final usage-only chunk.

use serde_json::Value;
use tollgate_types::ports::ProviderError;
use tollgate_types::{ChatChunk, Delta, FinishReason, FunctionCallDelta, Role, ToolCallDelta, ToolKind};

use super::wire::{BlockDelta, OutputBlock, StreamEvent, WireUsage};
use super::{PROVIDER_ID, convert, errors};
use crate::sse::{StreamDecoder, parse_data, truncated};

pub struct ChatDecoder {
    id: String,
    model: String,
    created: i64,
    role_sent: bool,
    /// `(Anthropic content-block index, OpenAI tool-call index)` of each `tool_use` block: OpenAI
    /// numbers tool calls 0, 1, ... while Anthropic numbers every block, text included.
    tool_blocks: Vec<(u32, u32)>,
    usage: WireUsage,
    done: bool,
}

impl ChatDecoder {
    /// `model` and `created` stamp the chunks until `message_start` names the model.
    pub fn new(model: &str, created: i64) -> Self {
        Self {
            id: String::new(),
            model: model.to_owned(),
            created,
            role_sent: false,
            tool_blocks: Vec::new(),
            usage: WireUsage::default(),
            done: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::delta(&self.id, &self.model, self.created, delta, finish)
    }

    /// Pushes `delta`, preceded by the role chunk if none was sent yet.
    fn emit(&mut self, out: &mut Vec<ChatChunk>, delta: Delta, finish: Option<FinishReason>) {
        if !self.role_sent {
            self.role_sent = true;
            out.push(self.chunk(Delta::role(Role::Assistant), None));
        }
        if delta != Delta::default() || finish.is_some() {
            out.push(self.chunk(delta, finish));
        }
    }

    fn on_block_start(&mut self, out: &mut Vec<ChatChunk>, index: u32, block: OutputBlock) {
        match block {
            OutputBlock::Text { text } => self.emit(out, content(text), None),
            OutputBlock::ToolUse { id, name, input } => {
                let tool_index = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                self.tool_blocks.push((index, tool_index));
                // Anthropic starts with `input: {}` and streams the arguments; an upstream that
                // sends the whole input here sends no deltas.
                let arguments = match input {
                    Value::Object(m) if !m.is_empty() => Value::Object(m).to_string(),
                    _ => String::new(),
                };
                let call = ToolCallDelta {
                    index: tool_index,
                    id: Some(id),
                    kind: Some(ToolKind::Function),
                    function: Some(FunctionCallDelta { name: Some(name), arguments: Some(arguments) }),
                };
                self.emit(out, Delta::tool_call(call), None);
            }
            OutputBlock::Other => {}
        }
    }

    fn on_block_delta(&mut self, out: &mut Vec<ChatChunk>, index: u32, delta: BlockDelta) {
        match delta {
            BlockDelta::TextDelta { text } => self.emit(out, content(text), None),
            BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                let Some(&(_, tool_index)) = self.tool_blocks.iter().find(|(block, _)| *block == index)
                else {
                    return;
                };
                let call = ToolCallDelta {
                    index: tool_index,
                    function: Some(FunctionCallDelta { name: None, arguments: Some(partial_json) }),
                    ..ToolCallDelta::default()
                };
                self.emit(out, Delta::tool_call(call), None);
            }
            BlockDelta::InputJsonDelta { .. } | BlockDelta::Other => {}
        }
    }
}

/// A content delta, or nothing for empty text (a text block starts with `""`).
fn content(text: String) -> Delta {
    if text.is_empty() { Delta::default() } else { Delta::content(text) }
}

impl StreamDecoder for ChatDecoder {
    type Item = ChatChunk;

    fn on_event(&mut self, _event: &str, data: &str) -> Result<Vec<ChatChunk>, ProviderError> {
        if data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match parse_data::<StreamEvent>(PROVIDER_ID, data)? {
            StreamEvent::MessageStart { message } => {
                if !message.id.is_empty() {
                    self.id = message.id;
                }
                if !message.model.is_empty() {
                    self.model = message.model;
                }
                self.usage.merge(&message.usage);
                self.emit(&mut out, Delta::default(), None);
            }
            StreamEvent::ContentBlockStart { index, content_block } => {
                self.on_block_start(&mut out, index, content_block);
            }
            StreamEvent::ContentBlockDelta { index, delta } => self.on_block_delta(&mut out, index, delta),
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.merge(&usage);
                if let Some(reason) = delta.stop_reason {
                    self.emit(&mut out, Delta::default(), Some(convert::finish_reason(&reason)));
                }
            }
            StreamEvent::MessageStop => {
                self.done = true;
                if let Some(usage) = convert::usage(&self.usage) {
                    out.push(ChatChunk::usage_only(&self.id, &self.model, self.created, usage));
                }
            }
            StreamEvent::Error { error } => return Err(errors::stream_error(&error)),
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => {}
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
    use tollgate_types::ports::ProviderErrorKind;

    const TEXT_STREAM: &[(&str, &str)] = &[
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
        ),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];

    #[test]
    fn a_text_stream_becomes_role_content_finish_and_usage_chunks() {
        let mut d = ChatDecoder::new("upstream-model", 1_700_000_000);
        let out = feed(&mut d, TEXT_STREAM).unwrap();
        assert!(d.is_done());
        assert!(d.on_end().unwrap().is_empty());
        assert_eq!(out.len(), 5, "{out:#?}");
        assert_eq!(out[0].choices[0].delta, Delta::role(Role::Assistant));
        assert_eq!(text_of(&out), "Hello!");
        assert_eq!(out[3].choices[0].finish_reason, Some(FinishReason::Stop));
        let last = &out[4];
        assert!(last.choices.is_empty());
        let usage = last.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (125, 15, 140));
        assert_eq!(usage.cached_tokens(), 100);
        for c in &out {
            assert_eq!(
                (c.id.as_str(), c.model.as_str(), c.created),
                ("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-sonnet-4-5-20250929", 1_700_000_000)
            );
        }
    }

    #[test]
    fn tool_use_blocks_become_indexed_tool_call_fragments() {
        let mut d = ChatDecoder::new("m", 1);
        let out = feed(
            &mut d,
            &[
                ("message_start", r#"{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}"#),
                ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#),
                ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me check."}}"#),
                ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#),
                ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
                ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#),
                ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check."}}"#),
                ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
                ("content_block_start", r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#),
                ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#),
                ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#),
                ("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}"#),
                ("content_block_stop", r#"{"type":"content_block_stop","index":2}"#),
                ("content_block_start", r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}"#),
                ("content_block_delta", r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#),
                ("content_block_stop", r#"{"type":"content_block_stop","index":3}"#),
                ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
        )
        .unwrap();
        assert_eq!(text_of(&out), "Okay, let's check.");
        let calls: Vec<&ToolCallDelta> =
            out.iter().flat_map(|c| &c.choices).flat_map(|c| c.delta.tool_calls.iter().flatten()).collect();
        assert_eq!(calls.len(), 5);
        assert_eq!(calls[0].index, 0);
        assert_eq!(calls[0].id.as_deref(), Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6"));
        assert_eq!(calls[0].kind, Some(ToolKind::Function));
        assert_eq!(calls[0].function.as_ref().unwrap().name.as_deref(), Some("get_weather"));
        let args: String = calls
            .iter()
            .filter(|c| c.index == 0)
            .filter_map(|c| c.function.as_ref()?.arguments.as_deref())
            .collect();
        assert_eq!(args, r#"{"location": "San Francisco, CA"}"#);
        assert!(calls[1].id.is_none() && calls[1].function.as_ref().unwrap().name.is_none());
        assert_eq!(calls[3].id.as_deref(), Some("toolu_02"));
        assert_eq!(
            (calls[4].index, calls[4].function.as_ref().unwrap().arguments.as_deref()),
            (1, Some("{}"))
        );
        let finish: Vec<_> = out.iter().flat_map(|c| &c.choices).filter_map(|c| c.finish_reason).collect();
        assert_eq!(finish, vec![FinishReason::ToolCalls]);
        let usage = out.last().unwrap().usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (472, 89));
        assert_eq!(usage.prompt_tokens_details, None);
    }

    #[test]
    fn cumulative_usage_in_message_delta_wins() {
        let mut d = ChatDecoder::new("m", 1);
        let out = feed(
            &mut d,
            &[
                ("message_start", r#"{"type":"message_start","message":{"id":"msg_1","model":"m","content":[],"usage":{"input_tokens":10,"output_tokens":1}}}"#),
                ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":40,"output_tokens":7}}"#),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
        )
        .unwrap();
        assert_eq!(out[1].choices[0].finish_reason, Some(FinishReason::Length));
        let usage = out[2].usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens()), (55, 7, 40));
    }

    #[test]
    fn an_error_event_ends_the_stream_with_a_classified_error() {
        let mut d = ChatDecoder::new("m", 1);
        let err = feed(
            &mut d,
            &[
                TEXT_STREAM[0],
                TEXT_STREAM[1],
                (
                    "error",
                    r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
                ),
            ],
        )
        .unwrap_err();
        assert_eq!((err.kind, err.message.as_str()), (ProviderErrorKind::Overloaded, "Overloaded"));
        let err = d.on_event(
            "error",
            r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
        );
        assert_eq!(err.unwrap_err().kind, ProviderErrorKind::Server);
    }

    #[test]
    fn a_stream_closed_before_message_stop_is_truncated() {
        let mut d = ChatDecoder::new("m", 1);
        let out = feed(&mut d, TEXT_STREAM.get(..4).unwrap()).unwrap();
        assert_eq!(text_of(&out), "Hello");
        assert!(!d.is_done());
        let err = d.on_end().unwrap_err();
        assert_eq!(err, truncated(PROVIDER_ID));
    }

    #[test]
    fn unknown_events_are_ignored_and_garbage_is_invalid() {
        let mut d = ChatDecoder::new("m", 1);
        assert!(d.on_event("future_event", r#"{"type":"future_event","x":1}"#).unwrap().is_empty());
        assert!(d.on_event("", "").unwrap().is_empty());
        // A delta for a block that was never started carries nothing to attach it to.
        let orphan = r#"{"type":"content_block_delta","index":9,"delta":{"type":"input_json_delta","partial_json":"{"}}"#;
        assert!(d.on_event("content_block_delta", orphan).unwrap().is_empty());
        let err = d.on_event("content_block_delta", "{this is not json").unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::InvalidResponse);
    }
}
