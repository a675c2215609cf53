//! Streams in and out of the cache: [`assemble`] turns the chunks of a finished upstream stream
//! into the one [`ChatResponse`] that is stored (at settle), and [`replay`] turns a stored answer
//! back into a chunk sequence the pipeline sends as SSE to a streaming client on a hit.
//!
//! Only complete streams are stored: [`assemble`] refuses a stream in which any choice has no
//! finish reason (a disconnect or a mid-stream error).

use std::collections::BTreeMap;

use serde_json::Value;
use tollgate_types::{
    ChatChunk, ChatResponse, Choice, Delta, FinishReason, FunctionCall, FunctionCallDelta, JsonMap,
    ResponseMessage, Role, ToolCall, ToolCallDelta, ToolKind, Usage,
};

/// The longest content or argument fragment [`replay`] puts in one chunk, in bytes (cut at a
/// character boundary, so a fragment may be a little shorter).
pub const REPLAY_PIECE_BYTES: usize = 64;

/// Why a stream cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("the stream had no choices")]
    NoChoices,
    #[error("choice {0} has no finish reason: the stream did not complete")]
    Unfinished(u32),
    #[error("tool call {call} of choice {choice} has no id or no function name")]
    IncompleteToolCall { choice: u32, call: u32 },
}

// === assemble ===

#[derive(Default)]
struct ChoiceAcc {
    role: Option<Role>,
    content: Option<String>,
    refusal: Option<String>,
    calls: BTreeMap<u32, CallAcc>,
    finish_reason: Option<FinishReason>,
    logprobs: Option<Value>,
}

#[derive(Default)]
struct CallAcc {
    id: Option<String>,
    kind: Option<ToolKind>,
    name: Option<String>,
    arguments: String,
}

/// The complete answer a finished stream carried: content, refusal and tool-call fragments
/// joined per choice (by `index`) and per call (by its `index`), each choice's finish reason, the
/// last usage seen, and the first chunk's id, model, created time and fingerprint.
pub fn assemble<'a>(chunks: impl IntoIterator<Item = &'a ChatChunk>) -> Result<ChatResponse, AssembleError> {
    let mut head: Option<&ChatChunk> = None;
    let mut fingerprint = None;
    let mut usage: Option<Usage> = None;
    let mut choices: BTreeMap<u32, ChoiceAcc> = BTreeMap::new();
    for chunk in chunks {
        head.get_or_insert(chunk);
        if fingerprint.is_none() {
            fingerprint.clone_from(&chunk.system_fingerprint);
        }
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
        for c in &chunk.choices {
            let acc = choices.entry(c.index).or_default();
            let Delta { role, content, refusal, tool_calls } = &c.delta;
            if acc.role.is_none() {
                acc.role = *role;
            }
            if let Some(s) = content {
                acc.content.get_or_insert_default().push_str(s);
            }
            if let Some(s) = refusal {
                acc.refusal.get_or_insert_default().push_str(s);
            }
            for call in tool_calls.iter().flatten() {
                let ToolCallDelta { index, id, kind, function } = call;
                let cacc = acc.calls.entry(*index).or_default();
                if cacc.id.is_none() {
                    cacc.id.clone_from(id);
                }
                if cacc.kind.is_none() {
                    cacc.kind = *kind;
                }
                if let Some(FunctionCallDelta { name, arguments }) = function {
                    if cacc.name.is_none() {
                        cacc.name.clone_from(name);
                    }
                    if let Some(a) = arguments {
                        cacc.arguments.push_str(a);
                    }
                }
            }
            if c.finish_reason.is_some() {
                acc.finish_reason = c.finish_reason;
            }
            if let Some(lp) = &c.logprobs {
                merge_logprobs(&mut acc.logprobs, lp);
            }
        }
    }
    let Some(head) = head else { return Err(AssembleError::NoChoices) };
    if choices.is_empty() {
        return Err(AssembleError::NoChoices);
    }
    let mut out = Vec::with_capacity(choices.len());
    for (index, acc) in choices {
        let finish_reason = acc.finish_reason.ok_or(AssembleError::Unfinished(index))?;
        let mut calls = Vec::with_capacity(acc.calls.len());
        for (call, c) in acc.calls {
            let (Some(id), Some(name)) = (c.id, c.name) else {
                return Err(AssembleError::IncompleteToolCall { choice: index, call });
            };
            calls.push(ToolCall {
                id,
                kind: c.kind.unwrap_or(ToolKind::Function),
                function: FunctionCall { name, arguments: c.arguments },
            });
        }
        out.push(Choice {
            index,
            message: ResponseMessage {
                role: acc.role.unwrap_or(Role::Assistant),
                content: acc.content,
                refusal: acc.refusal,
                tool_calls: (!calls.is_empty()).then_some(calls),
            },
            finish_reason: Some(finish_reason),
            logprobs: acc.logprobs,
        });
    }
    Ok(ChatResponse {
        id: head.id.clone(),
        object: "chat.completion".to_owned(),
        created: head.created,
        model: head.model.clone(),
        choices: out,
        usage,
        system_fingerprint: fingerprint,
        extra: JsonMap::new(),
    })
}

/// Stream logprobs come as `{"content": [...], "refusal": [...]}` per chunk: arrays are
/// concatenated, anything else is taken as it last came.
fn merge_logprobs(acc: &mut Option<Value>, next: &Value) {
    match (acc.as_mut(), next) {
        (Some(Value::Object(have)), Value::Object(more)) => {
            for (k, v) in more {
                match (have.get_mut(k), v) {
                    (Some(Value::Array(a)), Value::Array(b)) => a.extend(b.iter().cloned()),
                    _ => {
                        have.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *acc = Some(next.clone()),
    }
}

// === replay ===

/// A chunk sequence carrying `resp`, choice after choice: for each choice a role chunk, the
/// content in pieces of at most [`REPLAY_PIECE_BYTES`] (the choice's logprobs ride on the first),
/// the refusal, each tool call (id and name first, then its arguments in pieces), then a chunk
/// with the finish reason; finally one usage-only chunk when `resp` has usage. The pipeline
/// drops that last chunk when the client did not ask for `stream_options.include_usage`.
pub fn replay(resp: &ChatResponse) -> Vec<ChatChunk> {
    let mut out = Vec::new();
    let chunk = |index: u32, delta: Delta, finish_reason: Option<FinishReason>, logprobs: Option<Value>| {
        let mut c = ChatChunk::delta(&resp.id, &resp.model, resp.created, delta, finish_reason);
        c.system_fingerprint.clone_from(&resp.system_fingerprint);
        if let Some(first) = c.choices.first_mut() {
            first.index = index;
            first.logprobs = logprobs;
        }
        c
    };
    for choice in &resp.choices {
        let i = choice.index;
        let msg = &choice.message;
        let mut logprobs = choice.logprobs.clone();
        out.push(chunk(i, Delta::role(msg.role), None, None));
        if let Some(content) = &msg.content {
            for piece in pieces(content) {
                out.push(chunk(i, Delta::content(piece), None, logprobs.take()));
            }
        }
        if let Some(refusal) = &msg.refusal {
            for piece in pieces(refusal) {
                let delta = Delta { refusal: Some(piece.to_owned()), ..Delta::default() };
                out.push(chunk(i, delta, None, logprobs.take()));
            }
        }
        for (n, call) in msg.tool_calls.iter().flatten().enumerate() {
            let index = u32::try_from(n).unwrap_or(u32::MAX);
            let head = ToolCallDelta {
                index,
                id: Some(call.id.clone()),
                kind: Some(call.kind),
                function: Some(FunctionCallDelta { name: Some(call.function.name.clone()), arguments: None }),
            };
            out.push(chunk(i, Delta::tool_call(head), None, None));
            if !call.function.arguments.is_empty() {
                for piece in pieces(&call.function.arguments) {
                    let frag = ToolCallDelta {
                        index,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta { name: None, arguments: Some(piece.to_owned()) }),
                    };
                    out.push(chunk(i, Delta::tool_call(frag), None, None));
                }
            }
        }
        // Logprobs with no content or refusal to ride on still go out, on the last chunk.
        out.push(chunk(i, Delta::default(), choice.finish_reason, logprobs.take()));
    }
    if let Some(usage) = resp.usage {
        let mut c = ChatChunk::usage_only(&resp.id, &resp.model, resp.created, usage);
        c.system_fingerprint.clone_from(&resp.system_fingerprint);
        out.push(c);
    }
    out
}

/// `s` cut into pieces of at most [`REPLAY_PIECE_BYTES`] at character boundaries; an empty
/// string is one empty piece (so `Some("")` content survives a round trip).
fn pieces(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return vec![""];
    }
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut end = REPLAY_PIECE_BYTES.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunks_from(lines: &[Value]) -> Vec<ChatChunk> {
        lines.iter().map(|l| serde_json::from_value(l.clone()).unwrap()).collect()
    }

    /// A real-shaped OpenAI stream: role, content, two parallel tool calls whose arguments come
    /// in fragments interleaved between the calls, finish reason, then usage.
    fn tool_stream() -> Vec<ChatChunk> {
        let c = |choices: Value| {
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
                   "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_1", "choices": choices})
        };
        let mut lines = vec![
            c(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])),
            c(json!([{"index": 0, "delta": {"content": "Checking "}, "finish_reason": null}])),
            c(json!([{"index": 0, "delta": {"content": "both."}, "finish_reason": null}])),
            c(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}]}, "finish_reason": null}]),
            ),
            c(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}, "finish_reason": null}]),
            ),
            c(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\""}}]}, "finish_reason": null}]),
            ),
            c(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}]}, "finish_reason": null}]),
            ),
            c(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": ": \"Oslo\"}"}}]}, "finish_reason": null}]),
            ),
            c(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
        ];
        let mut usage = c(json!([]));
        usage["usage"] = json!({"prompt_tokens": 31, "completion_tokens": 40, "total_tokens": 71});
        lines.push(usage);
        chunks_from(&lines)
    }

    fn two_choice_response() -> ChatResponse {
        serde_json::from_value(json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 1_700_000_001, "model": "m",
            "system_fingerprint": "fp_2",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "héllo wörld ".repeat(20)}, "finish_reason": "length",
                 "logprobs": {"content": [{"token": "h", "logprob": -0.1, "bytes": [104], "top_logprobs": []}]}},
                {"index": 1, "message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "f", "arguments": "{\"q\": \"".to_owned() + &"z".repeat(150) + "\"}"}},
                                   {"id": "call_y", "type": "function", "function": {"name": "g", "arguments": ""}}]},
                 "finish_reason": "tool_calls"},
                {"index": 2, "message": {"role": "assistant", "content": "", "refusal": "I can't help with that."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 500, "total_tokens": 505}
        }))
        .unwrap()
    }

    #[test]
    fn assembles_a_real_tool_call_stream() {
        let r = assemble(&tool_stream()).unwrap();
        assert_eq!(r.id, "chatcmpl-1");
        assert_eq!(r.object, "chat.completion");
        assert_eq!(r.model, "gpt-4o-2024-08-06");
        assert_eq!(r.created, 1_700_000_000);
        assert_eq!(r.system_fingerprint.as_deref(), Some("fp_1"));
        assert_eq!(r.usage, Some(Usage::new(31, 40, None)));
        assert_eq!(r.choices.len(), 1);
        let ch = &r.choices[0];
        assert_eq!(ch.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(ch.message.role, Role::Assistant);
        assert_eq!(ch.message.content.as_deref(), Some("Checking both."));
        let calls = ch.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].id.as_str(), calls[0].function.name.as_str()), ("call_a", "weather"));
        assert_eq!(calls[0].function.arguments, r#"{"city": "Paris"}"#);
        assert_eq!(
            (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
            ("call_b", r#"{"city": "Oslo"}"#)
        );
    }

    #[test]
    fn incomplete_streams_are_refused() {
        let mut s = tool_stream();
        s.truncate(8); // cut before the finish reason
        assert_eq!(assemble(&s), Err(AssembleError::Unfinished(0)));
        assert_eq!(assemble(&[]), Err(AssembleError::NoChoices));
        // Only a usage chunk: nothing to answer with.
        let only_usage = tool_stream().split_off(9);
        assert_eq!(assemble(&only_usage), Err(AssembleError::NoChoices));
        // A tool call whose first fragment (id, name) was lost.
        let mut s = tool_stream();
        s.remove(3);
        assert_eq!(assemble(&s), Err(AssembleError::IncompleteToolCall { choice: 0, call: 0 }));
    }

    #[test]
    fn assemble_of_replay_gives_back_the_response() {
        let r = two_choice_response();
        let chunks = replay(&r);
        assert_eq!(assemble(&chunks).unwrap(), r);
        let r = assemble(&tool_stream()).unwrap();
        assert_eq!(assemble(&replay(&r)).unwrap(), r);
    }

    #[test]
    fn replay_shape_role_first_pieces_finish_then_usage() {
        let r = two_choice_response();
        let chunks = replay(&r);
        // Every chunk is a chunk of this completion.
        for c in &chunks {
            assert_eq!(
                (c.id.as_str(), c.object.as_str(), c.created),
                ("chatcmpl-2", "chat.completion.chunk", r.created)
            );
            assert_eq!(c.system_fingerprint.as_deref(), Some("fp_2"));
        }
        // Role first for choice 0, then content in several pieces within the size bound.
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(chunks[0].choices[0].delta.content, None);
        let content: Vec<&str> = chunks
            .iter()
            .filter(|c| c.choices.first().is_some_and(|ch| ch.index == 0))
            .filter_map(|c| c.choices[0].delta.content.as_deref())
            .collect();
        assert!(content.len() > 2, "content should come in pieces: {content:?}");
        assert!(content.iter().all(|p| p.len() <= REPLAY_PIECE_BYTES + 3));
        // Finish reason comes after the content of its choice, on an empty delta.
        let finish0 = chunks
            .iter()
            .position(|c| c.choices.first().is_some_and(|ch| ch.finish_reason.is_some()))
            .unwrap();
        assert_eq!(chunks[finish0].choices[0].finish_reason, Some(FinishReason::Length));
        assert_eq!(chunks[finish0].choices[0].delta, Delta::default());
        // The tool call's head carries id, type and name before any argument fragment.
        let first_call = chunks
            .iter()
            .find_map(|c| c.choices.first()?.delta.tool_calls.as_ref()?.first().cloned())
            .unwrap();
        assert_eq!(first_call.id.as_deref(), Some("call_x"));
        assert_eq!(first_call.kind, Some(ToolKind::Function));
        assert_eq!(first_call.function.unwrap().name.as_deref(), Some("f"));
        // Last: usage only, no choices.
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage, r.usage);
        // Exactly one usage chunk.
        assert_eq!(chunks.iter().filter(|c| c.usage.is_some()).count(), 1);
    }

    #[test]
    fn replay_without_usage_has_no_usage_chunk() {
        let mut r = two_choice_response();
        r.usage = None;
        let chunks = replay(&r);
        assert!(chunks.iter().all(|c| c.usage.is_none() && !c.choices.is_empty()));
        assert_eq!(assemble(&chunks).unwrap(), r);
    }

    #[test]
    fn pieces_respect_char_boundaries() {
        let s = "é".repeat(100); // 200 bytes, 2 per char
        let p = pieces(&s);
        assert!(p.len() > 1);
        assert_eq!(p.concat(), s);
        assert_eq!(pieces(""), vec![""]);
        assert_eq!(pieces("abc"), vec!["abc"]);
    }
}
