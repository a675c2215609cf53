//! Cohere v2 wire format: `POST /v2/chat` (JSON, or SSE events `message-start` ...
//! `message-end` with `stream: true`) and `POST /v2/embed`. Errors are `{"id", "message"}`.
//!
//! Requests are validated as strictly as Cohere does where a translation bug would show:
//! unknown top-level fields (`top_p`, `stop`, ...), lower-case `tool_choice`, a system turn that
//! is not first, empty turns, tool results without `tool_call_id`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::core::{self, Conversation, Fault, Knobs, Reply, SseEvent, State, ToolCallPlan};

pub fn routes() -> Router<State> {
    Router::new().route("/v2/chat", post(chat)).route("/v2/embed", post(embed))
}

/// The top-level fields `/v2/chat` accepts; Cohere rejects any other.
const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
    "stream",
];

const MESSAGE_ID: &str = "5a8d1b9e-6c3f-4e0a-9b7d-2f1c0e4d8a6b";

pub fn error_body(message: &str) -> Value {
    json!({"id": "b7d0c3e2-4f1a-4b8e-9c6d-1a2b3c4d5e6f", "message": message})
}

fn bad_request(message: &str) -> Response {
    core::error_response(400, None, error_body(message))
}

/// Common prologue: parse, record, auth, knobs from the model suffix, faults.
async fn prologue(
    state: &State,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Value, Knobs, String), Response> {
    let parsed = core::parse_body(body).map_err(|m| bad_request(&format!("invalid request: {m}")))?;
    core::record(state, "POST", path, query, headers, &parsed);
    let knobs = state.knobs();
    if !core::authorized(&knobs, headers, query) {
        return Err(core::error_response(401, None, error_body("invalid api token")));
    }
    let Some(model) = parsed["model"].as_str().filter(|m| !m.is_empty()) else {
        return Err(bad_request("invalid request: model must be specified"));
    };
    let (knobs, bare) = knobs.with_model_suffix(model);
    match core::pre_answer(state, &knobs, model).await {
        Fault::None => Ok((parsed, knobs, bare)),
        Fault::Hang => Err(core::hang().await),
        Fault::Garbage => Err(core::garbage()),
        Fault::Status(s, ra) => {
            let message = core::mock_message(s, knobs.error_code.as_deref());
            Err(core::error_response(s, ra, error_body(&message)))
        }
    }
}

// === request validation ===

fn validate_chat(body: &Value) -> Result<(), String> {
    let Some(obj) = body.as_object() else { return Err("invalid request: body must be an object".into()) };
    if let Some(k) = obj.keys().find(|k| !CHAT_FIELDS.contains(&k.as_str())) {
        return Err(format!("invalid request: unknown field: parameter {k} is not a valid field"));
    }
    let messages = body["messages"].as_array().filter(|m| !m.is_empty());
    let Some(messages) = messages else { return Err("invalid request: messages must not be empty".into()) };
    for (i, m) in messages.iter().enumerate() {
        validate_message(i, m)?;
    }
    let tools = body["tools"].as_array().map_or(&[][..], Vec::as_slice);
    for t in tools {
        if t["type"] != "function" || t["function"]["name"].as_str().is_none_or(str::is_empty) {
            return Err("invalid request: each tool needs type function and a function name".into());
        }
        if !t["function"]["parameters"].is_object() {
            return Err("invalid request: tool parameters must be a JSON schema object".into());
        }
    }
    match &body["tool_choice"] {
        Value::Null => {}
        Value::String(c) if c == "NONE" => {}
        Value::String(c) if c == "REQUIRED" && !tools.is_empty() => {}
        Value::String(c) if c == "REQUIRED" => {
            return Err("invalid request: tool_choice REQUIRED needs tools".into());
        }
        other => {
            return Err(format!("invalid request: tool_choice must be one of REQUIRED, NONE; got {other}"));
        }
    }
    if let Some(f) = body.get("response_format")
        && !matches!(f["type"].as_str(), Some("text" | "json_object"))
    {
        return Err("invalid request: response_format.type must be text or json_object".into());
    }
    Ok(())
}

fn validate_message(i: usize, m: &Value) -> Result<(), String> {
    match m["role"].as_str() {
        Some("system") if i > 0 => Err("system turn must be the first in the list".into()),
        Some("system" | "user") => validate_content(i, &m["content"]),
        Some("assistant") => {
            let calls = m["tool_calls"].as_array().map_or(&[][..], Vec::as_slice);
            for c in calls {
                let ok = c["id"].is_string()
                    && c["type"] == "function"
                    && c["function"]["name"].is_string()
                    && c["function"]["arguments"].is_string();
                if !ok {
                    return Err(format!("invalid request: messages[{i}]: malformed tool call"));
                }
            }
            if calls.is_empty() { validate_content(i, &m["content"]) } else { Ok(()) }
        }
        Some("tool") if !m["tool_call_id"].is_string() => {
            Err(format!("invalid request: messages[{i}]: tool_call_id is required"))
        }
        Some("tool") => validate_content(i, &m["content"]),
        other => Err(format!(
            "invalid request: messages[{i}]: role must be one of system, user, assistant, tool; got {}",
            other.unwrap_or("nothing")
        )),
    }
}

fn validate_content(i: usize, content: &Value) -> Result<(), String> {
    let empty = || format!("invalid request: messages[{i}]: message must not be empty in a turn");
    match content {
        Value::String(s) if s.is_empty() => Err(empty()),
        Value::String(_) => Ok(()),
        Value::Array(parts) if parts.is_empty() => Err(empty()),
        Value::Array(parts) => parts.iter().try_for_each(|p| match p["type"].as_str() {
            Some("text") if p["text"].is_string() => Ok(()),
            Some("image_url") if p["image_url"]["url"].is_string() => Ok(()),
            Some("document") => Ok(()),
            _ => Err(format!("invalid request: messages[{i}]: invalid content part {p}")),
        }),
        _ => Err(empty()),
    }
}

// === chat ===

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    }
}

fn conversation(body: &Value, model: String) -> Conversation {
    let mut conv = Conversation {
        model,
        stream: body["stream"].as_bool().unwrap_or(false),
        max_tokens: body["max_tokens"].as_u64().map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
        ..Conversation::default()
    };
    let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
    for m in messages {
        let text = text_of(&m["content"]);
        conv.all_text.push_str(&text);
        conv.all_text.push(' ');
        if m["role"] == "user" {
            conv.last_user_text = text;
            conv.image_count =
                m["content"].as_array().map_or(0, |p| p.iter().filter(|p| p["type"] == "image_url").count());
        }
    }
    conv.last_is_tool_result = messages.last().is_some_and(|m| m["role"] == "tool");
    // Cohere cannot name one tool (`forced_tool` stays unset): a client forcing one sends only it.
    if body["tool_choice"] != "NONE" {
        conv.tools = body["tools"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
            .collect();
    }
    conv
}

fn usage(input: u64, output: u64) -> Value {
    json!({"billed_units": {"input_tokens": input, "output_tokens": output},
        "tokens": {"input_tokens": input, "output_tokens": output}, "cached_tokens": 0})
}

fn finish_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::ToolCalls(_) => "TOOL_CALL",
        Reply::Text { truncated: true, .. } => "MAX_TOKENS",
        Reply::Text { .. } => "COMPLETE",
    }
}

fn tool_plan(calls: &[ToolCallPlan]) -> String {
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    format!("I will call {}.", names.join(", "))
}

async fn chat(
    AxState(state): AxState<State>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (parsed, knobs, model) = match prologue(&state, "/v2/chat", q.as_deref(), &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(m) = validate_chat(&parsed) {
        return bad_request(&m);
    }
    let conv = conversation(&parsed, model);
    let (reply, input, output) = core::plan(&conv, &knobs);
    if conv.stream {
        return core::sse_response(stream_events(&reply, input, output, &knobs), &knobs);
    }
    let message = match &reply {
        Reply::ToolCalls(calls) => json!({"role": "assistant", "tool_plan": tool_plan(calls),
            "tool_calls": calls.iter().map(|c| json!({"id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}})).collect::<Vec<_>>()}),
        Reply::Text { .. } => {
            json!({"role": "assistant", "content": [{"type": "text", "text": reply.text()}]})
        }
    };
    axum::Json(json!({"id": MESSAGE_ID, "message": message, "finish_reason": finish_reason(&reply),
        "usage": usage(input, output)}))
    .into_response()
}

fn stream_events(reply: &Reply, input: u64, output: u64, knobs: &Knobs) -> Vec<SseEvent> {
    let ev = |ty: &str, data: Value| SseEvent::named(ty, data.to_string());
    let mut events = vec![ev(
        "message-start",
        json!({"id": MESSAGE_ID, "type": "message-start", "delta": {"message": {"role": "assistant",
            "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
    )];
    match reply {
        Reply::Text { pieces, .. } => {
            events.push(ev(
                "content-start",
                json!({"type": "content-start", "index": 0,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
            ));
            for p in pieces {
                events.push(ev(
                    "content-delta",
                    json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}}),
                ));
            }
            events.push(ev("content-end", json!({"type": "content-end", "index": 0})));
        }
        Reply::ToolCalls(calls) => {
            events.push(ev(
                "tool-plan-delta",
                json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": tool_plan(calls)}}}),
            ));
            for (i, c) in calls.iter().enumerate() {
                events.extend(tool_call_events(i, c).into_iter().map(|(ty, data)| ev(ty, data)));
            }
        }
    }
    if knobs.garbage {
        events.push(SseEvent::named("content-delta", "{this is not json"));
    }
    events.push(ev(
        "message-end",
        json!({"type": "message-end", "delta": {"finish_reason": finish_reason(reply),
            "usage": usage(input, output)}}),
    ));
    events
}

/// One call: `tool-call-start` with empty arguments, the arguments in two fragments, the end.
fn tool_call_events(i: usize, c: &ToolCallPlan) -> Vec<(&'static str, Value)> {
    let mid = c.arguments.char_indices().map(|(i, _)| i).find(|&i| i >= c.arguments.len() / 2).unwrap_or(0);
    let (a, b) = c.arguments.split_at(mid);
    let fragment = |args: &str| {
        json!({"type": "tool-call-delta", "index": i,
            "delta": {"message": {"tool_calls": {"function": {"arguments": args}}}}})
    };
    vec![
        (
            "tool-call-start",
            json!({"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": {
                "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}}}}),
        ),
        ("tool-call-delta", fragment(a)),
        ("tool-call-delta", fragment(b)),
        ("tool-call-end", json!({"type": "tool-call-end", "index": i})),
    ]
}

// === embed ===

fn validate_embed(body: &Value) -> Result<Vec<String>, String> {
    let texts: Option<Vec<String>> =
        body["texts"].as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect());
    let Some(texts) = texts.filter(|t| !t.is_empty()) else {
        return Err("invalid request: texts must be a non-empty list of strings".into());
    };
    if texts.len() > 96 {
        return Err(format!(
            "invalid request: total number of texts must be at most 96 - received {}",
            texts.len()
        ));
    }
    if !body["input_type"].is_string() {
        return Err("invalid request: valid input_type must be provided with the provided model".into());
    }
    let types = body["embedding_types"].as_array();
    if !types.is_some_and(|t| t.iter().any(|t| t == "float")) {
        return Err("invalid request: embedding_types is required for embed models v3 and higher".into());
    }
    Ok(texts)
}

async fn embed(
    AxState(state): AxState<State>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (parsed, knobs, _model) = match prologue(&state, "/v2/embed", q.as_deref(), &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let texts = match validate_embed(&parsed) {
        Ok(t) => t,
        Err(m) => return bad_request(&m),
    };
    let dims = parsed["output_dimension"].as_u64().map_or(knobs.embedding_dims, |d| d as usize);
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| core::embedding(t, dims)).collect();
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    axum::Json(json!({
        "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
        "embeddings": {"float": vectors},
        "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
        "response_type": "embeddings_by_type"
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_cohere_would_reject_are_rejected() {
        let ok = json!({"model": "m", "messages": [{"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "REQUIRED", "p": 0.5, "stop_sequences": ["x"]});
        assert_eq!(validate_chat(&ok), Ok(()));
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            validate_chat(&b)
        };
        assert!(with("top_p", json!(0.5)).unwrap_err().contains("top_p"));
        assert!(with("tool_choice", json!("required")).is_err());
        assert!(with("messages", json!([])).is_err());
        assert!(
            with("messages", json!([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]))
                .is_err()
        );
        assert!(with("messages", json!([{"role": "tool", "content": "x"}])).is_err());
        assert!(with("messages", json!([{"role": "user", "content": ""}])).is_err());
        assert!(with("messages", json!([{"role": "chatbot", "content": "x"}])).is_err());
    }

    #[test]
    fn the_conversation_counts_images_and_tools() {
        let body = json!({"model": "m", "stream": true, "max_tokens": 3, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "NONE"});
        let conv = conversation(&body, "m".into());
        assert_eq!((conv.image_count, conv.last_user_text.as_str()), (1, "look"));
        assert!(conv.tools.is_empty() && conv.stream);
        assert_eq!(conv.max_tokens, Some(3));
    }

    #[test]
    fn embed_requests_need_texts_input_type_and_float() {
        let ok = json!({"model": "e", "texts": ["a b"], "input_type": "search_document", "embedding_types": ["float"]});
        assert_eq!(validate_embed(&ok), Ok(vec!["a b".to_owned()]));
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("embedding_types");
        assert!(validate_embed(&missing).is_err());
        let mut missing = ok;
        missing.as_object_mut().unwrap().remove("input_type");
        assert!(validate_embed(&missing).is_err());
    }
}
