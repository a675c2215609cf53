//! Pure conversion between the canonical (OpenAI-shaped) types and Cohere's v2 wire format:
//! chat requests and responses, finish reasons, usage, and embeddings.

use std::borrow::Cow;

use base64::Engine;
use serde_json::{Value, json};
use tollgate_types::ports::{ProviderError, ProviderErrorKind};
use tollgate_types::{
    ChatRequest, ChatResponse, Choice, ContentPart, Embedding, EmbeddingsRequest, EmbeddingsResponse,
    EmbeddingsUsage, FinishReason, FunctionCall, ImageSource, ImageUrl, JsonMap, Message, MessageContent,
    ResponseFormat, ResponseMessage, Role, Tool, ToolCall, ToolChoice, ToolChoiceMode, ToolKind, Usage,
};

use super::PROVIDER_ID;
use super::errors::generation_failed;
use super::wire::{
    CohereChatRequest, CohereChatResponse, CohereContent, CohereContentPart, CohereEmbedRequest,
    CohereEmbedResponse, CohereFunctionCall, CohereFunctionDef, CohereImageUrl, CohereMessage,
    CohereResponseFormat, CohereTool, CohereToolCall, CohereToolChoice, CohereUsage,
};

/// `input_type` of an embed call when the client does not name one (in the request's extra
/// fields, as Cohere-aware clients do).
const DEFAULT_INPUT_TYPE: &str = "search_document";

fn bad_request(message: impl Into<String>) -> ProviderError {
    ProviderError::new(PROVIDER_ID, ProviderErrorKind::BadRequest, message)
}

// === chat request ===

/// The Cohere request for `req`, sent to `model`.
pub fn chat_request<'a>(
    req: &'a ChatRequest,
    model: &'a str,
    stream: bool,
) -> Result<CohereChatRequest<'a>, ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ProviderError::unsupported(PROVIDER_ID, "several choices per request (n > 1)"));
    }
    let (tools, tool_choice) = tools(req)?;
    Ok(CohereChatRequest {
        model,
        messages: messages(req)?,
        tools,
        tool_choice,
        temperature: req.temperature,
        p: req.top_p,
        max_tokens: req.output_cap(),
        stop_sequences: req.stop.as_ref().map(|s| s.sequences()).unwrap_or_default(),
        seed: req.seed,
        frequency_penalty: req.frequency_penalty,
        presence_penalty: req.presence_penalty,
        response_format: req.response_format.as_ref().and_then(response_format),
        stream,
    })
}

/// The conversation. System and developer messages become one leading `system` message, wherever
/// they were, because Cohere wants the system turn first. Cohere v2 does not require user and
/// assistant turns to alternate, so consecutive turns of one role are sent as they are.
fn messages(req: &ChatRequest) -> Result<Vec<CohereMessage<'_>>, ProviderError> {
    let mut out = Vec::with_capacity(req.messages.len());
    if let Some(system) = req.system_text() {
        out.push(CohereMessage::System { content: CohereContent::Text(Cow::Owned(system)) });
    }
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => {}
            Role::User => out.push(CohereMessage::User { content: user_content(i, m)? }),
            Role::Assistant => out.push(assistant_message(m)),
            Role::Tool => out.push(tool_message(i, m)?),
        }
    }
    Ok(out)
}

fn user_content(i: usize, m: &Message) -> Result<CohereContent<'_>, ProviderError> {
    match &m.content {
        None => Err(bad_request(format!("messages[{i}]: a user message needs content"))),
        Some(MessageContent::Text(t)) => Ok(CohereContent::Text(Cow::Borrowed(t))),
        Some(MessageContent::Parts(parts)) => {
            parts.iter().map(|p| content_part(i, p)).collect::<Result<Vec<_>, _>>().map(CohereContent::Parts)
        }
    }
}

fn content_part(i: usize, part: &ContentPart) -> Result<CohereContentPart<'_>, ProviderError> {
    match part {
        ContentPart::Text { text } => Ok(CohereContentPart::Text { text }),
        ContentPart::ImageUrl { image_url } => image(i, image_url),
        ContentPart::InputAudio { .. } => {
            Err(ProviderError::unsupported(PROVIDER_ID, &format!("audio input (messages[{i}])")))
        }
        ContentPart::File { .. } => {
            Err(ProviderError::unsupported(PROVIDER_ID, &format!("file input (messages[{i}])")))
        }
        ContentPart::Refusal { .. } => {
            Err(bad_request(format!("messages[{i}]: a refusal part belongs to assistant messages only")))
        }
    }
}

/// Cohere takes `data:` URLs (inline base64) and public `http(s)` URLs in `image_url.url`, as
/// OpenAI does; anything else is rejected here with a clear message instead of upstream.
fn image(i: usize, image_url: &ImageUrl) -> Result<CohereContentPart<'_>, ProviderError> {
    let valid = match image_url.source() {
        ImageSource::Base64 { media_type, data } => media_type.starts_with("image/") && !data.is_empty(),
        ImageSource::Url(url) => url.starts_with("https://") || url.starts_with("http://"),
    };
    if !valid {
        return Err(bad_request(format!(
            "messages[{i}]: an image must be a data:image/...;base64 URL or an http(s) URL"
        )));
    }
    Ok(CohereContentPart::ImageUrl {
        image_url: CohereImageUrl { url: &image_url.url, detail: image_url.detail.as_deref() },
    })
}

fn assistant_message(m: &Message) -> CohereMessage<'_> {
    let tool_calls: Vec<CohereToolCall<'_>> = m
        .tool_calls
        .iter()
        .flatten()
        .map(|c| CohereToolCall {
            id: &c.id,
            kind: "function",
            function: CohereFunctionCall { name: &c.function.name, arguments: &c.function.arguments },
        })
        .collect();
    let text = m.content.as_ref().map(MessageContent::joined_text);
    // Cohere rejects an empty text next to tool calls; a turn with neither is left for Cohere
    // to reject with its own message.
    let content = match text {
        Some(t) if t.is_empty() && !tool_calls.is_empty() => None,
        Some(t) => Some(CohereContent::Text(Cow::Owned(t))),
        None => None,
    };
    CohereMessage::Assistant { content, tool_calls }
}

fn tool_message(i: usize, m: &Message) -> Result<CohereMessage<'_>, ProviderError> {
    let Some(tool_call_id) = m.tool_call_id.as_deref() else {
        return Err(bad_request(format!("messages[{i}]: a tool message needs tool_call_id")));
    };
    let text = m.content.as_ref().map(MessageContent::joined_text).unwrap_or_default();
    Ok(CohereMessage::Tool { tool_call_id, content: CohereContent::Text(Cow::Owned(text)) })
}

/// Tools and `tool_choice`. Cohere cannot force one named tool: `REQUIRED` with only that tool
/// offered has the same effect.
fn tools(req: &ChatRequest) -> Result<(Vec<CohereTool<'_>>, Option<CohereToolChoice>), ProviderError> {
    let offered: &[Tool] = req.tools.as_deref().unwrap_or_default();
    let (offered, choice): (Vec<&Tool>, _) = match &req.tool_choice {
        None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => (offered.iter().collect(), None),
        Some(ToolChoice::Mode(ToolChoiceMode::None)) if offered.is_empty() => (Vec::new(), None),
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => {
            (offered.iter().collect(), Some(CohereToolChoice::None))
        }
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => {
            (offered.iter().collect(), Some(CohereToolChoice::Required))
        }
        Some(ToolChoice::Named(named)) => {
            let name = &named.function.name;
            let only: Vec<&Tool> = offered.iter().filter(|t| t.function.name == *name).take(1).collect();
            if only.is_empty() {
                return Err(bad_request(format!(
                    "tool_choice names the function {name}, which is not in tools"
                )));
            }
            (only, Some(CohereToolChoice::Required))
        }
    };
    if choice == Some(CohereToolChoice::Required) && offered.is_empty() {
        return Err(bad_request("tool_choice is required but no tools are given"));
    }
    Ok((offered.into_iter().map(tool).collect(), choice))
}

fn tool(t: &Tool) -> CohereTool<'_> {
    let parameters = match &t.function.parameters {
        Some(p) => Cow::Borrowed(p),
        None => Cow::Owned(json!({"type": "object", "properties": {}})),
    };
    CohereTool {
        kind: "function",
        function: CohereFunctionDef {
            name: &t.function.name,
            description: t.function.description.as_deref(),
            parameters,
        },
    }
}

/// `text` is Cohere's default and is left out; JSON modes map onto `json_object`, with the
/// schema when there is one.
fn response_format(f: &ResponseFormat) -> Option<CohereResponseFormat<'_>> {
    match f {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(CohereResponseFormat::JsonObject { json_schema: None }),
        ResponseFormat::JsonSchema { json_schema } => {
            Some(CohereResponseFormat::JsonObject { json_schema: json_schema.schema.as_ref() })
        }
    }
}

// === chat response ===

/// The canonical finish reason of Cohere's `finish_reason`; `ERROR` and `TIMEOUT` are failures,
/// with `error` as their message when Cohere gave one.
pub fn finish_reason(
    reason: Option<&str>,
    error: Option<&str>,
) -> Result<Option<FinishReason>, ProviderError> {
    let Some(reason) = reason else { return Ok(None) };
    let mapped = match reason.to_ascii_uppercase().as_str() {
        "COMPLETE" | "STOP_SEQUENCE" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "TOOL_CALL" => FinishReason::ToolCalls,
        "ERROR" | "TIMEOUT" => return Err(generation_failed(reason, error)),
        // A reason added after this was written: the answer itself is complete.
        _ => FinishReason::Stop,
    };
    Ok(Some(mapped))
}

/// Token usage: `tokens` (what the model processed) when present, else `billed_units`.
pub fn usage(u: &CohereUsage) -> Option<Usage> {
    let counts = u.tokens.or(u.billed_units)?;
    let cached = u.cached_tokens.map(to_count);
    Some(Usage::new(
        counts.input_tokens.map_or(0, to_count),
        counts.output_tokens.map_or(0, to_count),
        cached,
    ))
}

/// A token count sent as a JSON number (Cohere may send `12.0`); negative or absurd values
/// saturate instead of wrapping.
fn to_count(n: f64) -> u64 {
    n.max(0.0) as u64
}

/// The canonical completion of Cohere's answer.
pub fn chat_response(
    resp: CohereChatResponse,
    model: &str,
    created: i64,
) -> Result<ChatResponse, ProviderError> {
    let finish = finish_reason(resp.finish_reason.as_deref(), None)?;
    let text: String =
        resp.message.content.iter().filter(|c| c.kind == "text").filter_map(|c| c.text.as_deref()).collect();
    let tool_calls: Vec<ToolCall> = resp
        .message
        .tool_calls
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            kind: ToolKind::Function,
            function: FunctionCall {
                name: c.function.name.unwrap_or_default(),
                arguments: c.function.arguments.unwrap_or_else(|| "{}".to_owned()),
            },
        })
        .collect();
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    Ok(ChatResponse {
        id: resp.id,
        object: "chat.completion".to_owned(),
        created,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage::assistant(content, tool_calls),
            finish_reason: finish,
            logprobs: None,
        }],
        usage: resp.usage.as_ref().and_then(usage),
        system_fingerprint: None,
        extra: JsonMap::new(),
    })
}

// === embeddings ===

/// The Cohere embed request for `req`. Token-id input has no Cohere equivalent.
pub fn embed_request<'a>(
    req: &'a EmbeddingsRequest,
    model: &'a str,
) -> Result<CohereEmbedRequest<'a>, ProviderError> {
    let Some(texts) = req.input.texts() else {
        return Err(ProviderError::unsupported(PROVIDER_ID, "token-id input for embeddings"));
    };
    if texts.is_empty() {
        return Err(bad_request("input: give at least one text to embed"));
    }
    Ok(CohereEmbedRequest {
        model,
        texts,
        input_type: req.extra.get("input_type").and_then(Value::as_str).unwrap_or(DEFAULT_INPUT_TYPE),
        embedding_types: ["float"],
        output_dimension: req.dimensions,
    })
}

/// The canonical embeddings answer; with `encoding_format: base64`, each vector is encoded as
/// OpenAI does (little-endian `f32`s).
pub fn embed_response(resp: CohereEmbedResponse, req: &EmbeddingsRequest, model: &str) -> EmbeddingsResponse {
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data = resp
        .embeddings
        .float
        .into_iter()
        .enumerate()
        .map(|(i, v)| Embedding {
            object: "embedding".to_owned(),
            index: u32::try_from(i).unwrap_or(u32::MAX),
            embedding: if base64 { Value::from(encode_base64(&v)) } else { Value::from(v) },
        })
        .collect();
    let tokens = resp.meta.and_then(|m| m.billed_units).and_then(|b| b.input_tokens).map_or(0, to_count);
    EmbeddingsResponse {
        object: "list".to_owned(),
        data,
        model: model.to_owned(),
        usage: EmbeddingsUsage { prompt_tokens: tokens, total_tokens: tokens },
    }
}

fn encode_base64(v: &[f64]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    fn wire(req: &ChatRequest) -> Value {
        serde_json::to_value(chat_request(req, "command-a-03-2025", false).unwrap()).unwrap()
    }

    #[test]
    fn a_plain_request_maps_field_by_field() {
        let req = request(json!({
            "model": "alias",
            "messages": [{"role": "user", "content": "What is an LLM?"}],
            "temperature": 0.3, "top_p": 0.9, "max_completion_tokens": 200, "stop": "\n\n",
            "seed": 7, "frequency_penalty": 0.1, "presence_penalty": 0.2, "logit_bias": {"1": 2}
        }));
        assert_eq!(
            wire(&req),
            json!({
                "model": "command-a-03-2025",
                "messages": [{"role": "user", "content": "What is an LLM?"}],
                "temperature": 0.3, "p": 0.9, "max_tokens": 200, "stop_sequences": ["\n\n"],
                "seed": 7, "frequency_penalty": 0.1, "presence_penalty": 0.2, "stream": false
            })
        );
    }

    #[test]
    fn system_and_developer_messages_become_one_leading_system_message() {
        let req = request(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "again"}
        ]}));
        assert_eq!(
            wire(&req)["messages"],
            json!([
                {"role": "system", "content": "Be terse.\n\nAnswer in French."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Bonjour"},
                {"role": "user", "content": "again"}
            ])
        );
    }

    #[test]
    fn tool_calls_and_results_keep_their_ids() {
        let req = request(json!({"model": "m",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "get_weather_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "get_weather_1", "content": [{"type": "text", "text": "21C"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time"}}]
        }));
        let body = wire(&req);
        assert_eq!(
            body["messages"][1],
            json!({"role": "assistant", "tool_calls": [{"id": "get_weather_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "tool", "tool_call_id": "get_weather_1", "content": "21C"})
        );
        assert_eq!(body["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
        assert_eq!(body["tools"][0]["function"]["description"], "Weather by city");
        assert_eq!(
            body["tools"][1],
            json!({"type": "function", "function": {"name": "get_time",
                "parameters": {"type": "object", "properties": {}}}})
        );
        assert!(body.get("tool_choice").is_none(), "auto is Cohere's default");
    }

    #[test]
    fn tool_choice_modes_and_a_named_tool() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]});
        let with = |choice: Value| {
            let mut b = base.clone();
            b["tool_choice"] = choice;
            wire(&request(b))
        };
        assert_eq!(with(json!("required"))["tool_choice"], "REQUIRED");
        assert_eq!(with(json!("none"))["tool_choice"], "NONE");
        assert!(with(json!("auto")).get("tool_choice").is_none());
        let named = with(json!({"type": "function", "function": {"name": "b"}}));
        assert_eq!(named["tool_choice"], "REQUIRED");
        assert_eq!(named["tools"].as_array().unwrap().len(), 1);
        assert_eq!(named["tools"][0]["function"]["name"], "b");

        let mut missing = base.clone();
        missing["tool_choice"] = json!({"type": "function", "function": {"name": "zzz"}});
        let err = chat_request(&request(missing), "m", false).unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::BadRequest);
        assert!(err.message.contains("zzz"));
    }

    #[test]
    fn images_pass_as_data_or_http_urls_and_others_are_rejected() {
        let req = request(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
        ]}]}));
        assert_eq!(
            wire(&req)["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ])
        );
        let bad = request(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}}]}]}));
        assert_eq!(chat_request(&bad, "m", false).unwrap_err().kind, ProviderErrorKind::BadRequest);
        let audio = request(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}));
        assert_eq!(chat_request(&audio, "m", false).unwrap_err().kind, ProviderErrorKind::Unsupported);
    }

    #[test]
    fn response_formats_and_unsupported_fields() {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person",
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}});
        assert_eq!(
            wire(&request(body.clone()))["response_format"],
            json!({"type": "json_object", "json_schema": {"type": "object", "properties": {"name": {"type": "string"}}}})
        );
        body["response_format"] = json!({"type": "json_object"});
        assert_eq!(wire(&request(body.clone()))["response_format"], json!({"type": "json_object"}));
        body["response_format"] = json!({"type": "text"});
        assert!(wire(&request(body.clone())).get("response_format").is_none());
        body["n"] = json!(2);
        assert_eq!(
            chat_request(&request(body), "m", false).unwrap_err().kind,
            ProviderErrorKind::Unsupported
        );
        let no_id = request(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(chat_request(&no_id, "m", false).unwrap_err().kind, ProviderErrorKind::BadRequest);
    }

    fn response(body: Value) -> Result<ChatResponse, ProviderError> {
        chat_response(serde_json::from_value(body).unwrap(), "command-a-03-2025", 1_700_000_000)
    }

    #[test]
    fn a_text_answer_with_usage_and_cached_tokens() {
        let r = response(json!({
            "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "A large language model"}],
                "citations": []},
            "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 4},
                "tokens": {"input_tokens": 71.0, "output_tokens": 4.0}, "cached_tokens": 64},
            "logprobs": null
        }))
        .unwrap();
        assert_eq!(r.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!(r.model, "command-a-03-2025");
        assert_eq!(r.choices[0].message.content.as_deref(), Some("A large language model"));
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(r.usage, Some(Usage::new(71, 4, Some(64))));
    }

    #[test]
    fn a_tool_call_answer() {
        let r = response(json!({
            "id": "7b1f0d5e", "finish_reason": "TOOL_CALL",
            "message": {"role": "assistant",
                "tool_plan": "I will look up the weather in Toronto.",
                "tool_calls": [{"id": "get_weather_1byjy32y4hvq", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\":\"Toronto\"}"}}]},
            "usage": {"billed_units": {"input_tokens": 37, "output_tokens": 28}}
        }))
        .unwrap();
        let msg = &r.choices[0].message;
        assert_eq!(msg.content, None);
        let call = &msg.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.id, "get_weather_1byjy32y4hvq");
        assert_eq!(call.function.name, "get_weather");
        assert_eq!(call.function.arguments, r#"{"location":"Toronto"}"#);
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(r.usage, Some(Usage::new(37, 28, None)), "billed units stand in for missing tokens");
    }

    #[test]
    fn finish_reasons_map_and_failures_are_errors() {
        assert_eq!(finish_reason(Some("MAX_TOKENS"), None).unwrap(), Some(FinishReason::Length));
        assert_eq!(finish_reason(Some("stop_sequence"), None).unwrap(), Some(FinishReason::Stop));
        assert_eq!(finish_reason(Some("SOMETHING_NEW"), None).unwrap(), Some(FinishReason::Stop));
        assert_eq!(finish_reason(None, None).unwrap(), None);
        let err =
            response(json!({"id": "x", "finish_reason": "ERROR", "message": {"content": []}})).unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Server);
        let err = response(json!({"id": "x", "finish_reason": "TIMEOUT"})).unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Timeout);
    }

    #[test]
    fn embeddings_map_both_ways() {
        let req: EmbeddingsRequest = serde_json::from_value(
            json!({"model": "e", "input": ["hello", "world"], "input_type": "search_query"}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(embed_request(&req, "embed-v4.0").unwrap()).unwrap(),
            json!({"model": "embed-v4.0", "texts": ["hello", "world"], "input_type": "search_query",
                "embedding_types": ["float"]})
        );
        let resp: CohereEmbedResponse = serde_json::from_value(json!({
            "id": "da6e531f", "embeddings": {"float": [[0.5, -0.25], [1.0, 0.0]]}, "texts": ["hello", "world"],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
            "response_type": "embeddings_by_type"
        }))
        .unwrap();
        let out = embed_response(resp.clone(), &req, "embed-v4.0");
        assert_eq!(out.data.len(), 2);
        assert_eq!(out.data[1].index, 1);
        assert_eq!(out.data[0].embedding, json!([0.5, -0.25]));
        assert_eq!(out.usage.prompt_tokens, 2);

        let b64: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": "hello", "encoding_format": "base64"}))
                .unwrap();
        let out = embed_response(resp, &b64, "embed-v4.0");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(out.data[0].embedding.as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, [0.5f32.to_le_bytes(), (-0.25f32).to_le_bytes()].concat());

        let tokens: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": [1, 2]})).unwrap();
        assert_eq!(embed_request(&tokens, "m").unwrap_err().kind, ProviderErrorKind::Unsupported);
    }
}
