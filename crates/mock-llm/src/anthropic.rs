//! Anthropic Messages API wire format: `POST /v1/messages` with `x-api-key` and
//! `anthropic-version`, answering a `message` object or the SSE sequence `message_start`,
//! `content_block_start` / `ping` / `content_block_delta`* / `content_block_stop` per block,
//! `message_delta`, `message_stop`. Errors are `{"type":"error","error":{type,message}}`.
//!
//! Requests are validated the way the real API rejects them (required `max_tokens`, roles that
//! alternate starting with `user`, no `system` role, non-empty text blocks, `tool_result` only
//! for a `tool_use` of the previous turn, no unknown top-level fields), so a bad translation
//! fails a test with a 400 instead of passing against a lenient fake.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::core::{self, Conversation, Fault, Knobs, RateLimitStyle, Reply, SseEvent, State};

const PATH: &str = "/v1/messages";

pub fn routes() -> Router<State> {
    Router::new().route(PATH, post(messages))
}

/// The error body Anthropic sends with `status`.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})
}

/// What Anthropic says when the prompt does not fit the model's context window.
pub const PROMPT_TOO_LONG_MESSAGE: &str = "prompt is too long: 210000 tokens > 200000 maximum";
/// What Anthropic says when its content filtering blocks the output.
pub const CONTENT_FILTER_MESSAGE: &str = "Output blocked by content filtering policy";

/// The error body for a fault the knobs asked for. Anthropic has no error codes beyond the
/// error `type`: `context_length_exceeded` and the content-policy codes become an
/// `invalid_request_error` with Anthropic's message for them; any other code is used as the type.
pub fn fault_body(status: u16, code: Option<&str>) -> Value {
    let (kind, message) = match code {
        None => return error_body(status, &core::mock_message(status, None)),
        Some("context_length_exceeded") => ("invalid_request_error", PROMPT_TOO_LONG_MESSAGE.to_owned()),
        Some("content_policy_violation" | "content_filter") => {
            ("invalid_request_error", CONTENT_FILTER_MESSAGE.to_owned())
        }
        Some(other) => (other, core::mock_message(status, None)),
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})
}

fn bad_request(message: &str) -> Response {
    core::error_response(400, None, error_body(400, message))
}

async fn messages(
    AxState(state): AxState<State>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = match core::parse_body(&body) {
        Ok(v) => v,
        Err(m) => return bad_request(&m),
    };
    core::record(&state, "POST", PATH, q.as_deref(), &headers, &parsed);
    let knobs = state.knobs();
    if !core::authorized(&knobs, &headers, q.as_deref()) {
        return core::error_response(401, None, error_body(401, "invalid x-api-key"));
    }
    if headers.get("anthropic-version").is_none() {
        return bad_request("anthropic-version: header is required");
    }
    let sent = parsed["model"].as_str().unwrap_or("");
    let (knobs, model) = knobs.with_model_suffix(sent);
    let stream = parsed["stream"].as_bool().unwrap_or(false);
    match core::pre_answer(&state, &knobs, sent).await {
        Fault::None => {}
        Fault::Hang => return core::hang().await,
        // A stream breaks mid-way, after the headers, as a confused proxy would break it.
        Fault::Garbage if !stream => return core::garbage(),
        Fault::Garbage => {}
        Fault::Status(s, ra) => {
            let resp = core::error_response(s, ra, fault_body(s, knobs.error_code.as_deref()));
            return core::with_rate_limits(resp, &knobs, RateLimitStyle::Anthropic);
        }
    }
    if let Err(m) = validate(&parsed) {
        return bad_request(&m);
    }
    let conv = conversation(&parsed, model);
    let (reply, input, output) = core::plan(&conv, &knobs);
    let resp = if stream {
        stream_answer(&conv, &reply, input, output, &knobs)
    } else {
        json_answer(&conv, &reply, input, output)
    };
    core::with_rate_limits(resp, &knobs, RateLimitStyle::Anthropic)
}

// === validation ===

const TOP_LEVEL_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
];

fn validate(body: &Value) -> Result<(), String> {
    let Some(obj) = body.as_object() else { return Err("body must be a JSON object".to_owned()) };
    if let Some(extra) = obj.keys().find(|k| !TOP_LEVEL_FIELDS.contains(&k.as_str())) {
        return Err(format!("{extra}: Extra inputs are not permitted"));
    }
    if body["model"].as_str().is_none_or(str::is_empty) {
        return Err("model: Field required".to_owned());
    }
    if body["max_tokens"].as_u64().is_none_or(|m| m == 0) {
        return Err("max_tokens: Field required".to_owned());
    }
    if let Some(t) = body.get("temperature")
        && !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))
    {
        return Err("temperature: Input should be less than or equal to 1".to_owned());
    }
    validate_system(&body["system"])?;
    validate_tools(body)?;
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err("messages: Field required".to_owned());
    };
    let mut previous_tool_uses: Vec<&str> = Vec::new();
    let mut previous_role = "";
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".to_owned());
        }
        if role == previous_role {
            return Err(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            ));
        }
        let last = i + 1 == messages.len();
        previous_tool_uses = validate_content(i, role, &m["content"], &previous_tool_uses, last)?;
        previous_role = role;
    }
    Ok(())
}

fn validate_system(system: &Value) -> Result<(), String> {
    match system {
        Value::Null | Value::String(_) => Ok(()),
        Value::Array(blocks) if blocks.iter().all(|b| b["type"] == "text" && b["text"].is_string()) => Ok(()),
        _ => Err("system: Input should be a valid string or a list of text blocks".to_owned()),
    }
}

fn validate_tools(body: &Value) -> Result<(), String> {
    let tools = match &body["tools"] {
        Value::Null => &Vec::new(),
        Value::Array(t) => t,
        _ => return Err("tools: Input should be a valid list".to_owned()),
    };
    for (i, t) in tools.iter().enumerate() {
        if !t["name"].is_string() {
            return Err(format!("tools.{i}.name: Field required"));
        }
        if !t["input_schema"].is_object() {
            return Err(format!("tools.{i}.input_schema: Field required"));
        }
    }
    let choice = &body["tool_choice"];
    if choice.is_null() {
        return Ok(());
    }
    match choice["type"].as_str() {
        Some("auto" | "any" | "none") => Ok(()),
        Some("tool") if choice["name"].is_string() => Ok(()),
        _ => Err(
            "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
                .to_owned(),
        ),
    }
}

/// Checks one message's content; returns the ids of its `tool_use` blocks, which the next turn's
/// `tool_result` blocks must answer.
fn validate_content<'a>(
    i: usize,
    role: &str,
    content: &'a Value,
    previous_tool_uses: &[&str],
    last: bool,
) -> Result<Vec<&'a str>, String> {
    let blocks = match content {
        // The final assistant turn may be empty (a prefill); no other turn may.
        Value::String(s) if s.is_empty() && !(last && role == "assistant") => {
            return Err(format!("messages.{i}: all messages must have non-empty content"));
        }
        Value::String(_) => return Ok(Vec::new()),
        Value::Array(blocks) if !blocks.is_empty() => blocks,
        _ => return Err(format!("messages.{i}: all messages must have non-empty content")),
    };
    let mut tool_uses = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        match (b["type"].as_str().unwrap_or(""), role) {
            ("text", _) if b["text"].as_str().is_some_and(|t| !t.is_empty()) => {}
            ("text", _) => return Err(format!("{at}: text content blocks must be non-empty")),
            ("image", "user") => validate_image(&at, &b["source"])?,
            ("tool_use", "assistant")
                if b["id"].is_string() && b["name"].is_string() && b["input"].is_object() =>
            {
                tool_uses.extend(b["id"].as_str());
            }
            ("tool_result", "user")
                if b["tool_use_id"].as_str().is_some_and(|id| previous_tool_uses.contains(&id)) => {}
            ("tool_result", "user") => {
                return Err(format!(
                    "{at}: unexpected `tool_use_id` found in `tool_result` blocks: each `tool_result` block must have a corresponding `tool_use` block in the previous message"
                ));
            }
            (kind, _) => {
                return Err(format!("{at}: invalid content block type '{kind}' in a {role} message"));
            }
        }
    }
    Ok(tool_uses)
}

fn validate_image(at: &str, source: &Value) -> Result<(), String> {
    match source["type"].as_str() {
        Some("base64")
            if matches!(
                source["media_type"].as_str(),
                Some("image/jpeg" | "image/png" | "image/gif" | "image/webp")
            ) && source["data"].as_str().is_some_and(|d| !d.is_empty()) =>
        {
            Ok(())
        }
        Some("url") if source["url"].as_str().is_some_and(|u| u.starts_with("http")) => Ok(()),
        _ => Err(format!("{at}.source: invalid image source")),
    }
}

// === the answer ===

/// Text of a block list or string content (text blocks and tool results).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") => b["text"].as_str().unwrap_or("").to_owned(),
                Some("tool_result") => text_of(&b["content"]),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn blocks_of_type<'a>(content: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    content.as_array().into_iter().flatten().filter(move |b| b["type"] == kind)
}

fn conversation(body: &Value, model: String) -> Conversation {
    let mut conv = Conversation {
        model,
        stream: body["stream"].as_bool().unwrap_or(false),
        max_tokens: body["max_tokens"].as_u64().and_then(|m| u32::try_from(m).ok()),
        all_text: text_of(&body["system"]),
        ..Conversation::default()
    };
    conv.all_text.push(' ');
    let empty = Vec::new();
    let messages = body["messages"].as_array().unwrap_or(&empty);
    for m in messages {
        conv.all_text.push_str(&text_of(&m["content"]));
        conv.all_text.push(' ');
        let content = &m["content"];
        let is_only_tool_results =
            content.as_array().is_some_and(|b| b.iter().all(|b| b["type"] == "tool_result"));
        if m["role"] == "user" && !is_only_tool_results {
            conv.last_user_text = match content {
                Value::String(s) => s.clone(),
                _ => blocks_of_type(content, "text").filter_map(|b| b["text"].as_str()).collect(),
            };
            conv.image_count = blocks_of_type(content, "image").count();
        }
    }
    conv.last_is_tool_result = messages.last().is_some_and(|m| {
        m["role"] == "user" && blocks_of_type(&m["content"], "tool_result").next().is_some()
    });
    let choice = &body["tool_choice"];
    if choice["type"] != "none" {
        conv.tools = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
    }
    if choice["type"] == "tool" {
        conv.forced_tool = choice["name"].as_str().map(str::to_owned);
    }
    conv
}

fn stop_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::ToolCalls(_) => "tool_use",
        Reply::Text { truncated: true, .. } => "max_tokens",
        Reply::Text { .. } => "end_turn",
    }
}

fn tool_use_id(plan_id: &str) -> String {
    plan_id.replacen("call_", "toolu_", 1)
}

fn tool_input(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments).ok().filter(Value::is_object).unwrap_or_else(|| json!({}))
}

fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "output_tokens": output, "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0, "service_tier": "standard"})
}

fn json_answer(conv: &Conversation, reply: &Reply, input: u64, output: u64) -> Response {
    let content: Vec<Value> = match reply {
        Reply::Text { .. } => vec![json!({"type": "text", "text": reply.text()})],
        Reply::ToolCalls(calls) => calls
            .iter()
            .map(|c| json!({"type": "tool_use", "id": tool_use_id(&c.id), "name": c.name, "input": tool_input(&c.arguments)}))
            .collect(),
    };
    axum::Json(json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": conv.model,
        "content": content, "stop_reason": stop_reason(reply), "stop_sequence": null,
        "usage": usage(input, output)
    }))
    .into_response()
}

fn stream_answer(conv: &Conversation, reply: &Reply, input: u64, output: u64, knobs: &Knobs) -> Response {
    let ev = |name: &str, data: Value| SseEvent::named(name, data.to_string());
    let mut events = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
            "model": conv.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(input, 1)}}),
    )];
    let delta = |index: usize, delta: Value| {
        ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}))
    };
    let blocks: Vec<(Value, Vec<Value>)> = match reply {
        Reply::Text { pieces, .. } => vec![(
            json!({"type": "text", "text": ""}),
            pieces.iter().map(|p| json!({"type": "text_delta", "text": p})).collect(),
        )],
        Reply::ToolCalls(calls) => calls
            .iter()
            .map(|c| {
                // Arguments arrive as JSON fragments after an empty one, as Anthropic sends them.
                let mid = (0..=c.arguments.len() / 2).rev().find(|&i| c.arguments.is_char_boundary(i));
                let (a, b) = c.arguments.split_at(mid.unwrap_or(0));
                (
                    json!({"type": "tool_use", "id": tool_use_id(&c.id), "name": c.name, "input": {}}),
                    ["", a, b]
                        .iter()
                        .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
                        .collect(),
                )
            })
            .collect(),
    };
    for (index, (block, deltas)) in blocks.into_iter().enumerate() {
        events.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if index == 0 {
            events.push(ev("ping", json!({"type": "ping"})));
        }
        events.extend(deltas.into_iter().map(|d| delta(index, d)));
        events.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
    if knobs.garbage {
        events.push(SseEvent::named("content_block_delta", "{this is not json"));
    }
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reply), "stop_sequence": null},
            "usage": {"output_tokens": output}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    core::sse_response(events, knobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw `POST /v1/messages` saying "hi" to `model` (knob suffix included).
    async fn post_hi(mock: &crate::MockLlm, model: &str) -> crate::core::raw::RawResponse {
        let body = json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        crate::core::raw::post(mock.addr, PATH, &[("anthropic-version", "2023-06-01")], &body.to_string())
            .await
    }

    fn body(messages: Value) -> Value {
        json!({"model": "claude", "max_tokens": 100, "messages": messages})
    }

    #[test]
    fn the_real_apis_rejections_are_reproduced() {
        let ok = body(json!([{"role": "user", "content": "hi"}]));
        assert_eq!(validate(&ok), Ok(()));
        let mut no_max = ok.clone();
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert!(validate(&no_max).unwrap_err().starts_with("max_tokens"));
        let mut extra = ok.clone();
        extra["stop"] = json!("x");
        assert_eq!(validate(&extra).unwrap_err(), "stop: Extra inputs are not permitted");
        let system_role =
            body(json!([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]));
        assert!(validate(&system_role).unwrap_err().contains("role"));
        let twice = body(json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]));
        assert!(validate(&twice).unwrap_err().contains("alternate"));
        let empty_text = body(json!([{"role": "user", "content": [{"type": "text", "text": ""}]}]));
        assert!(validate(&empty_text).unwrap_err().contains("non-empty"));
        let orphan_result = body(json!([
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}
        ]));
        assert!(validate(&orphan_result).unwrap_err().contains("tool_use_id"));
        let answered = body(json!([
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}
        ]));
        assert_eq!(validate(&answered), Ok(()));
    }

    #[tokio::test]
    async fn error_codes_become_anthropics_invalid_request_errors() {
        let mock = crate::MockLlm::start().await.unwrap();
        let post = async |model: &str| post_hi(&mock, model).await;
        let r = post("claude~error_code=context_length_exceeded").await;
        let b = r.json();
        assert_eq!((r.status, b["type"].as_str()), (400, Some("error")));
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["message"], "prompt is too long: 210000 tokens > 200000 maximum");
        let r = post("claude~error_code=content_policy_violation").await;
        assert_eq!(r.json()["error"]["message"], CONTENT_FILTER_MESSAGE);
        let r = post("claude~error_code=overloaded_error,status=529").await;
        assert_eq!((r.status, r.json()["error"]["type"].as_str()), (529, Some("overloaded_error")));
    }

    #[tokio::test]
    async fn every_answer_carries_anthropics_rate_limit_headers() {
        let mock = crate::MockLlm::start().await.unwrap();
        let post = async |model: &str| post_hi(&mock, model).await;
        let r = post("claude~ratelimit_limit=50,ratelimit_remaining=10").await;
        assert_eq!(r.status, 200);
        for (name, value) in [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "10"),
            ("anthropic-ratelimit-tokens-limit", "50000"),
            ("anthropic-ratelimit-tokens-remaining", "10000"),
            ("anthropic-ratelimit-input-tokens-limit", "50000"),
            ("anthropic-ratelimit-input-tokens-remaining", "10000"),
            ("anthropic-ratelimit-output-tokens-limit", "10000"),
            ("anthropic-ratelimit-output-tokens-remaining", "2000"),
        ] {
            assert_eq!(r.header(name), Some(value), "{name}");
        }
        assert_eq!(r.header("x-ratelimit-remaining-requests"), None, "not OpenAI's names");
        let r = post("claude~status=429").await;
        assert_eq!((r.status, r.header("anthropic-ratelimit-requests-remaining")), (429, Some("0")));
    }

    #[test]
    fn conversation_reads_tools_images_and_tool_results() {
        let b = json!({"model": "m", "max_tokens": 5, "system": "be brief",
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}, {"name": "now", "input_schema": {}}],
        "tool_choice": {"type": "tool", "name": "now"},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
        ]}]});
        let conv = conversation(&b, "m".into());
        assert_eq!(conv.tools, vec!["get_weather", "now"]);
        assert_eq!(conv.forced_tool.as_deref(), Some("now"));
        assert_eq!((conv.last_user_text.as_str(), conv.image_count), ("look", 1));
        assert!(conv.all_text.contains("be brief") && !conv.last_is_tool_result);
    }
}
