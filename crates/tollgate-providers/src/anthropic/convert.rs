//! Pure conversion between the canonical (OpenAI-shaped) chat types and Anthropic's Messages API.
//!
//! Request: system and developer messages go to the top-level `system`; the rest must alternate
//! user/assistant starting with user, so same-role turns merge into one message with several
//! blocks and tool results become `tool_result` blocks of a user turn. Response: text and
//! `tool_use` blocks become content and tool calls; `stop_reason` and usage are mapped.
//!
//! Not carried: `seed`, `presence_penalty`, `frequency_penalty` and `logit_bias` have no
//! Anthropic equivalent and are dropped; `n > 1` is refused rather than silently answered once.

use serde_json::Value;
use tollgate_types::ports::{ProviderError, ProviderErrorKind};
use tollgate_types::{
    ChatRequest, ChatResponse, Choice, ContentPart, FinishReason, FunctionCall,
    ImageSource as CanonicalImage, ImageUrl, Message, MessageContent, ResponseFormat, ResponseMessage, Role,
    ToolCall, ToolChoice as CanonicalToolChoice, ToolChoiceMode, ToolKind, Usage,
};

use super::PROVIDER_ID;
use super::wire::{
    ImageSource, InputBlock, InputMessage, MessagesRequest, MessagesResponse, Metadata, OutputBlock,
    ToolChoice, ToolDef, WireRole, WireUsage,
};

/// Anthropic requires `max_tokens`; this is sent when the client gives no cap.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Anthropic requires the first turn to be the user's. A conversation that opens with an
/// assistant turn (a chat UI's greeting) gets this minimal user turn in front rather than a 400.
const OPENING_USER_TURN: &str = ".";

fn bad_request(message: impl Into<String>) -> ProviderError {
    ProviderError::new(PROVIDER_ID, ProviderErrorKind::BadRequest, message)
}

/// The Messages API request for `req`, sent to `model`.
pub fn to_wire(req: &ChatRequest, model: &str, stream: bool) -> Result<MessagesRequest, ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ProviderError::unsupported(PROVIDER_ID, "n > 1 (several choices per request)"));
    }
    let tools = tools(req);
    Ok(MessagesRequest {
        model: model.to_owned(),
        max_tokens: req.output_cap().unwrap_or(DEFAULT_MAX_TOKENS),
        messages: messages(&req.messages)?,
        system: system_prompt(req),
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: req.stop.as_ref().map(|s| s.sequences()).filter(|s| !s.is_empty()),
        stream,
        tool_choice: tools.as_ref().and_then(|_| tool_choice(req)),
        tools,
        metadata: req.user.as_ref().map(|u| Metadata { user_id: u.clone() }),
    })
}

/// The system text, plus the JSON instruction for `response_format`.
///
/// The Messages API has no JSON mode, so `json_object` and `json_schema` become an instruction
/// at the end of the system prompt (the schema included). This is best effort: the output is not
/// validated against the schema, as OpenAI's `strict` would.
fn system_prompt(req: &ChatRequest) -> Option<String> {
    let instruction = match &req.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => {
            Some("Respond with a single valid JSON object and nothing else.".to_owned())
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(match &json_schema.schema {
            Some(schema) => format!(
                "Respond with a single valid JSON object and nothing else. It must conform to the JSON \
                 Schema named \"{}\":\n{schema}",
                json_schema.name
            ),
            None => "Respond with a single valid JSON object and nothing else.".to_owned(),
        }),
    };
    match (req.system_text(), instruction) {
        (Some(system), Some(i)) => Some(format!("{system}\n\n{i}")),
        (system, instruction) => system.or(instruction),
    }
}

/// The conversation turns, merged so that roles alternate and the first is the user's.
fn messages(messages: &[Message]) -> Result<Vec<InputMessage>, ProviderError> {
    let mut out: Vec<InputMessage> = Vec::with_capacity(messages.len());
    for message in messages {
        let Some((role, content)) = turn(message)? else { continue };
        if content.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(content),
            _ => out.push(InputMessage { role, content }),
        }
    }
    if out.first().is_some_and(|m| m.role == WireRole::Assistant) {
        let opening = InputBlock::Text { text: OPENING_USER_TURN.to_owned() };
        out.insert(0, InputMessage { role: WireRole::User, content: vec![opening] });
    }
    if out.is_empty() {
        return Err(bad_request("the request has no user or assistant message with content"));
    }
    Ok(out)
}

/// One canonical message as a role and its blocks; `None` for system/developer messages, which
/// go to `system`.
fn turn(message: &Message) -> Result<Option<(WireRole, Vec<InputBlock>)>, ProviderError> {
    Ok(Some(match message.role {
        Role::System | Role::Developer => return Ok(None),
        Role::User => (WireRole::User, content_blocks(message.content.as_ref())?),
        Role::Assistant => {
            let mut blocks = content_blocks(message.content.as_ref())?;
            for call in message.tool_calls.iter().flatten() {
                blocks.push(tool_use_block(call)?);
            }
            (WireRole::Assistant, blocks)
        }
        Role::Tool => {
            let tool_use_id = message
                .tool_call_id
                .clone()
                .ok_or_else(|| bad_request("a tool message has no tool_call_id"))?;
            let content = message.content.as_ref().map(MessageContent::joined_text).unwrap_or_default();
            (WireRole::User, vec![InputBlock::ToolResult { tool_use_id, content }])
        }
    }))
}

/// Text and image blocks of a message's content. Empty text is left out: Anthropic rejects
/// empty text blocks (an assistant turn with only tool calls often has `content: ""`).
fn content_blocks(content: Option<&MessageContent>) -> Result<Vec<InputBlock>, ProviderError> {
    let Some(content) = content else { return Ok(Vec::new()) };
    let mut blocks = Vec::new();
    for part in content.to_parts() {
        let block = match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                if text.is_empty() {
                    continue;
                }
                InputBlock::Text { text }
            }
            ContentPart::ImageUrl { image_url } => image_block(&image_url)?,
            ContentPart::InputAudio { .. } => {
                return Err(ProviderError::unsupported(PROVIDER_ID, "audio input"));
            }
            ContentPart::File { .. } => {
                return Err(ProviderError::unsupported(PROVIDER_ID, "file content parts"));
            }
        };
        blocks.push(block);
    }
    Ok(blocks)
}

fn image_block(image: &ImageUrl) -> Result<InputBlock, ProviderError> {
    let source = match image.source() {
        CanonicalImage::Base64 { media_type, data } => {
            ImageSource::Base64 { media_type: media_type.to_owned(), data: data.to_owned() }
        }
        CanonicalImage::Url(url) if url.starts_with("https://") || url.starts_with("http://") => {
            ImageSource::Url { url: url.to_owned() }
        }
        CanonicalImage::Url(_) => {
            return Err(bad_request(
                "an image_url must be an http(s) URL or a data:<media type>;base64,<data> URL",
            ));
        }
    };
    Ok(InputBlock::Image { source })
}

/// An assistant's earlier tool call. Anthropic wants the arguments as a JSON object, not text.
fn tool_use_block(call: &ToolCall) -> Result<InputBlock, ProviderError> {
    let arguments = call.function.arguments.trim();
    let input = if arguments.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_str::<Value>(arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(bad_request(format!(
                    "the arguments of tool call {} are not a JSON object",
                    call.id
                )));
            }
        }
    };
    Ok(InputBlock::ToolUse { id: call.id.clone(), name: call.function.name.clone(), input })
}

fn tools(req: &ChatRequest) -> Option<Vec<ToolDef>> {
    let tools = req.tools.as_ref().filter(|t| !t.is_empty())?;
    Some(
        tools
            .iter()
            .map(|t| ToolDef {
                name: t.function.name.clone(),
                description: t.function.description.clone(),
                // `input_schema` is required; a function without parameters takes an empty object.
                input_schema: t
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            })
            .collect(),
    )
}

fn tool_choice(req: &ChatRequest) -> Option<ToolChoice> {
    let disable_parallel_tool_use = (req.parallel_tool_calls == Some(false)).then_some(true);
    match &req.tool_choice {
        None if disable_parallel_tool_use.is_some() => Some(ToolChoice::Auto { disable_parallel_tool_use }),
        None => None,
        Some(CanonicalToolChoice::Mode(ToolChoiceMode::Auto)) => {
            Some(ToolChoice::Auto { disable_parallel_tool_use })
        }
        Some(CanonicalToolChoice::Mode(ToolChoiceMode::Required)) => {
            Some(ToolChoice::Any { disable_parallel_tool_use })
        }
        Some(CanonicalToolChoice::Mode(ToolChoiceMode::None)) => Some(ToolChoice::None),
        Some(CanonicalToolChoice::Named(named)) => {
            Some(ToolChoice::Tool { name: named.function.name.clone(), disable_parallel_tool_use })
        }
    }
}

// === response ===

/// The canonical completion for an Anthropic message; `model` is used when the answer names none.
pub fn from_wire(resp: MessagesResponse, model: &str, created: i64) -> ChatResponse {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.content {
        match block {
            OutputBlock::Text { text: t } => text.push_str(&t),
            OutputBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: ToolKind::Function,
                function: FunctionCall { name, arguments: arguments(&input) },
            }),
            OutputBlock::Other => {}
        }
    }
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    ChatResponse {
        id: resp.id,
        object: "chat.completion".to_owned(),
        created,
        model: if resp.model.is_empty() { model.to_owned() } else { resp.model },
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage::assistant(content, tool_calls),
            finish_reason: resp.stop_reason.as_deref().map(finish_reason),
            logprobs: None,
        }],
        usage: usage(&resp.usage),
        system_fingerprint: None,
        extra: serde_json::Map::new(),
    }
}

/// A tool call's arguments as OpenAI carries them: JSON text.
fn arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

/// Anthropic's `stop_reason` in OpenAI's vocabulary.
pub fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn and reasons added later.
        _ => FinishReason::Stop,
    }
}

/// Canonical usage; `None` when the upstream reported no token counts. Anthropic's
/// `input_tokens` excludes cache reads and writes, while OpenAI's `prompt_tokens` includes them.
pub fn usage(u: &WireUsage) -> Option<Usage> {
    if u.input_tokens.is_none() && u.output_tokens.is_none() {
        return None;
    }
    let prompt = u.input_tokens.unwrap_or(0)
        + u.cache_read_input_tokens.unwrap_or(0)
        + u.cache_creation_input_tokens.unwrap_or(0);
    Some(Usage::new(prompt, u.output_tokens.unwrap_or(0), u.cache_read_input_tokens))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    fn wire(body: Value) -> Value {
        serde_json::to_value(to_wire(&request(body), "claude-sonnet-4-5", false).unwrap()).unwrap()
    }

    #[test]
    fn a_plain_request_gets_the_required_max_tokens_and_top_level_system() {
        let body = wire(json!({
            "model": "alias",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hello"},
                {"role": "developer", "content": "Answer in French."}
            ],
            "temperature": 0.3, "top_p": 0.9, "stop": "END", "seed": 7, "user": "u-42"
        }));
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "system": "You are terse.\n\nAnswer in French.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
                "temperature": 0.3, "top_p": 0.9, "stop_sequences": ["END"],
                "metadata": {"user_id": "u-42"}
            })
        );
        let body = wire(
            json!({"model": "a", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 50}),
        );
        assert_eq!(body["max_tokens"], 50);
        assert!(body.get("system").is_none() && body.get("stream").is_none());
    }

    #[test]
    fn tool_history_merges_into_alternating_turns() {
        let body = wire(json!({
            "model": "a",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "user", "content": [{"type": "text", "text": "In Celsius."}]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_02", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "18"},
                {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "21"}]},
                {"role": "user", "content": "Thanks"}
            ]
        }));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris and Rome?"},
                    {"type": "text", "text": "In Celsius."}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18"},
                    {"type": "tool_result", "tool_use_id": "toolu_02", "content": "21"},
                    {"type": "text", "text": "Thanks"}
                ]}
            ])
        );
    }

    #[test]
    fn a_conversation_opening_with_the_assistant_gets_a_user_turn_first() {
        let body = wire(json!({"model": "a", "messages": [
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Hello"}
        ]}));
        assert_eq!(body["messages"][0], json!({"role": "user", "content": [{"type": "text", "text": "."}]}));
        assert_eq!(body["messages"][1]["role"], "assistant");
    }

    #[test]
    fn invalid_tool_arguments_and_missing_ids_are_bad_requests() {
        let req = request(json!({"model": "a", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}
        ]}));
        let err = to_wire(&req, "m", false).unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::BadRequest);
        assert!(err.message.contains("t1"));
        let req = request(json!({"model": "a", "messages": [{"role": "tool", "content": "r"}]}));
        assert_eq!(to_wire(&req, "m", false).unwrap_err().kind, ProviderErrorKind::BadRequest);
        let req = request(json!({"model": "a", "messages": [{"role": "system", "content": "only"}]}));
        assert_eq!(to_wire(&req, "m", false).unwrap_err().kind, ProviderErrorKind::BadRequest);
        let req = request(json!({"model": "a", "n": 2, "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(to_wire(&req, "m", false).unwrap_err().kind, ProviderErrorKind::Unsupported);
    }

    #[test]
    fn images_become_base64_or_url_sources() {
        let body = wire(json!({"model": "a", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
        ]}]}));
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
        let req = request(json!({"model": "a", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}}
        ]}]}));
        assert_eq!(to_wire(&req, "m", false).unwrap_err().kind, ProviderErrorKind::BadRequest);
        let req = request(json!({"model": "a", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
        ]}]}));
        assert_eq!(to_wire(&req, "m", false).unwrap_err().kind, ProviderErrorKind::Unsupported);
    }

    #[test]
    fn tools_and_every_tool_choice_map() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}}
        ]);
        let with = |choice: Value, parallel: Value| {
            wire(json!({"model": "a", "messages": [{"role": "user", "content": "x"}], "tools": tools,
                "tool_choice": choice, "parallel_tool_calls": parallel}))
        };
        let body = with(json!("auto"), Value::Null);
        assert_eq!(
            body["tools"],
            json!([
                {"name": "get_weather", "description": "Current weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert_eq!(body["tool_choice"], json!({"type": "auto"}));
        assert_eq!(
            with(json!("required"), json!(false))["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(with(json!("none"), Value::Null)["tool_choice"], json!({"type": "none"}));
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "now"}}), Value::Null)["tool_choice"],
            json!({"type": "tool", "name": "now"})
        );
        assert_eq!(
            with(Value::Null, json!(false))["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        // Without tools there is nothing to choose from; Anthropic rejects a lone tool_choice.
        let body = wire(
            json!({"model": "a", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        );
        assert!(body.get("tool_choice").is_none() && body.get("tools").is_none());
    }

    #[test]
    fn json_response_formats_become_a_system_instruction() {
        let body = wire(
            json!({"model": "a", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}}}}),
        );
        let system = body["system"].as_str().unwrap();
        assert!(system.starts_with("Be kind.\n\n"));
        assert!(system.contains("\"person\"") && system.contains(r#"{"type":"object"}"#));
        let body = wire(
            json!({"model": "a", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
        );
        assert_eq!(body["system"], "Respond with a single valid JSON object and nothing else.");
    }

    #[test]
    fn a_documented_tool_use_message_becomes_a_completion() {
        let resp: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "...", "signature": "EqQB"},
                {"type": "text", "text": "I'll check the weather."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 472, "output_tokens": 89, "cache_creation_input_tokens": 10,
                "cache_read_input_tokens": 1000, "service_tier": "standard"}
        }))
        .unwrap();
        let out = from_wire(resp, "fallback", 1_700_000_000);
        assert_eq!(out.id, "msg_01Aq9w938a90dw8q");
        assert_eq!(out.model, "claude-sonnet-4-5-20250929");
        let choice = &out.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(choice.message.content.as_deref(), Some("I'll check the weather."));
        let call = &choice.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (call.id.as_str(), call.function.name.as_str()),
            ("toolu_01A09q90qw90lq917835lq9", "get_weather")
        );
        assert_eq!(call.function.arguments, r#"{"location":"San Francisco, CA"}"#);
        let usage = out.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (1482, 89, 1571));
        assert_eq!(usage.cached_tokens(), 1000);
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, want) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Stop),
        ] {
            assert_eq!(finish_reason(stop), want, "{stop}");
        }
        let resp: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_1", "content": [], "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 0}
        }))
        .unwrap();
        let out = from_wire(resp, "claude-haiku", 1);
        assert_eq!(out.model, "claude-haiku");
        assert_eq!(out.choices[0].message.content.as_deref(), Some(""));
        assert_eq!(out.usage.unwrap().prompt_tokens_details, None);
    }
}
