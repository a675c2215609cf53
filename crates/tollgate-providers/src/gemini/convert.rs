//! Pure conversion between the canonical (OpenAI-shaped) chat types and Gemini's
//! `generateContent` bodies.
//!
//! Structured output and tool parameters use Gemini's `responseJsonSchema` and
//! `parametersJsonSchema`, which take plain JSON Schema, rather than `responseSchema` and
//! `parameters`, which take an OpenAPI subset that rejects keywords OpenAI clients commonly send
//! (`additionalProperties`, `$ref`, `$defs`, ...).
//!
//! Gemini's function calls have no ids on older models; the gateway names them `call_<n>`. When a
//! call carries a `thoughtSignature` (which Gemini 3 requires back on later turns), it is kept in
//! the tool-call id after [`SIGNATURE_SEP`], so it survives a round trip through an OpenAI client.

use std::collections::HashMap;

use serde_json::{Value, json};
use tollgate_types::ports::{ProviderError, ProviderErrorKind};
use tollgate_types::{
    ChatRequest, ChatResponse, Choice, CompletionTokensDetails, ContentPart, FinishReason, ImageSource,
    ImageUrl, Message, MessageContent, ResponseFormat, ResponseMessage, Role, ToolCall, ToolChoice,
    ToolChoiceMode, ToolKind, Usage,
};

use super::PROVIDER_ID;
use super::errors::prompt_blocked;
use super::wire::{
    Content, FileData, FunctionCall, FunctionCallingConfig, FunctionCallingMode, FunctionDeclaration,
    FunctionResponse, GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part, Tool,
    ToolConfig, UsageMetadata,
};

/// Separates a tool-call id from the thought signature carried along in it.
pub const SIGNATURE_SEP: &str = "__thought__";

fn bad_request(message: impl Into<String>) -> ProviderError {
    ProviderError::new(PROVIDER_ID, ProviderErrorKind::BadRequest, message)
}

// === request ===

/// The Gemini request for `req`. Fails on what Gemini cannot express.
pub fn to_wire(req: &ChatRequest) -> Result<GenerateContentRequest, ProviderError> {
    let contents = contents(&req.messages)?;
    if contents.is_empty() {
        return Err(bad_request("the request needs at least one user or assistant message"));
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    Ok(GenerateContentRequest {
        contents,
        system_instruction: req
            .system_text()
            .map(|text| Content { role: None, parts: vec![Part::text(text)] }),
        tools: if tools.is_empty() {
            Vec::new()
        } else {
            vec![Tool {
                function_declarations: tools
                    .iter()
                    .map(|t| FunctionDeclaration {
                        name: t.function.name.clone(),
                        description: t.function.description.clone(),
                        parameters_json_schema: t.function.parameters.clone(),
                    })
                    .collect(),
            }]
        },
        tool_config: if tools.is_empty() { None } else { tool_config(req.tool_choice.as_ref(), tools)? },
        generation_config: generation_config(req)?,
    })
}

/// The turns, with system messages left out (they go to `systemInstruction`) and consecutive
/// turns of one role merged, because Gemini wants `user` and `model` to alternate.
fn contents(messages: &[Message]) -> Result<Vec<Content>, ProviderError> {
    // Tool messages carry only the call id; Gemini wants the function's name. Later assistant
    // turns overwrite earlier ones, since generated ids repeat from turn to turn.
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut out: Vec<Content> = Vec::new();
    for m in messages {
        let (role, parts) = match m.role {
            Role::System | Role::Developer => continue,
            Role::User => ("user", user_parts(m.content.as_ref())?),
            Role::Assistant => {
                for call in m.tool_calls.iter().flatten() {
                    names.insert(call.id.as_str(), call.function.name.as_str());
                }
                ("model", assistant_parts(m)?)
            }
            Role::Tool => ("user", vec![tool_result(m, &names)?]),
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => out.push(Content { role: Some(role.to_owned()), parts }),
        }
    }
    Ok(out)
}

fn user_parts(content: Option<&MessageContent>) -> Result<Vec<Part>, ProviderError> {
    let Some(content) = content else { return Ok(Vec::new()) };
    let mut parts = Vec::new();
    for part in content.to_parts() {
        match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                if !text.is_empty() {
                    parts.push(Part::text(text));
                }
            }
            ContentPart::ImageUrl { image_url } => parts.push(image(&image_url)?),
            ContentPart::InputAudio { input_audio } => parts.push(audio(&input_audio)?),
            ContentPart::File { file } => parts.push(file_part(&file)?),
        }
    }
    Ok(parts)
}

fn assistant_parts(m: &Message) -> Result<Vec<Part>, ProviderError> {
    let mut parts = Vec::new();
    if let Some(text) = m.content.as_ref().map(MessageContent::joined_text)
        && !text.is_empty()
    {
        parts.push(Part::text(text));
    }
    for call in m.tool_calls.iter().flatten() {
        let args = match call.function.arguments.trim() {
            "" => json!({}),
            raw => serde_json::from_str::<Value>(raw).ok().filter(Value::is_object).ok_or_else(|| {
                bad_request(format!("tool call {}: arguments must be a JSON object", call.id))
            })?,
        };
        let signature = call.id.split_once(SIGNATURE_SEP).map(|(_, sig)| sig.to_owned());
        parts.push(Part {
            function_call: Some(FunctionCall {
                id: None,
                name: call.function.name.clone(),
                args: Some(args),
            }),
            thought_signature: signature,
            ..Part::default()
        });
    }
    Ok(parts)
}

/// A tool message as a `functionResponse`; a result that is not a JSON object is wrapped as
/// `{"result": ...}` because Gemini's `response` must be an object.
fn tool_result(m: &Message, names: &HashMap<&str, &str>) -> Result<Part, ProviderError> {
    let id = m.tool_call_id.as_deref().unwrap_or_default();
    let name = names
        .get(id)
        .copied()
        .or(m.name.as_deref())
        .ok_or_else(|| bad_request(format!("tool message answers unknown tool_call_id {id:?}")))?;
    let text = m.content.as_ref().map(MessageContent::joined_text).unwrap_or_default();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => json!({ "result": other }),
        Err(_) => json!({ "result": text }),
    };
    Ok(Part {
        function_response: Some(FunctionResponse { name: name.to_owned(), response }),
        ..Part::default()
    })
}

fn image(image_url: &ImageUrl) -> Result<Part, ProviderError> {
    match image_url.source() {
        ImageSource::Base64 { media_type, data } => Ok(Part::inline(media_type, data)),
        ImageSource::Url(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(Part {
            file_data: Some(FileData {
                mime_type: Some(image_mime_from_extension(url).to_owned()),
                file_uri: url.to_owned(),
            }),
            ..Part::default()
        }),
        ImageSource::Url(_) => {
            Err(bad_request("image_url.url must be an http(s) URL or a data:<media type>;base64,<data> URL"))
        }
    }
}

/// Gemini needs a MIME type for URL images; the extension is all there is to go by.
fn image_mime_from_extension(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => "image/jpeg",
    }
}

/// OpenAI's `input_audio` `{data, format}` as inline audio.
fn audio(input_audio: &Value) -> Result<Part, ProviderError> {
    match (input_audio["data"].as_str(), input_audio["format"].as_str()) {
        (Some(data), Some(format)) => Ok(Part::inline(format!("audio/{format}"), data)),
        _ => Err(bad_request("input_audio needs data and format")),
    }
}

/// OpenAI's `file` part: only inline `file_data` (a data: URL) can be passed on.
fn file_part(file: &Value) -> Result<Part, ProviderError> {
    let url = ImageUrl { url: file["file_data"].as_str().unwrap_or_default().to_owned(), detail: None };
    match url.source() {
        ImageSource::Base64 { media_type, data } => Ok(Part::inline(media_type, data)),
        ImageSource::Url(_) => Err(ProviderError::unsupported(
            PROVIDER_ID,
            "file parts other than inline file_data (data:<media type>;base64,<data>)",
        )),
    }
}

fn tool_config(
    choice: Option<&ToolChoice>,
    tools: &[tollgate_types::Tool],
) -> Result<Option<ToolConfig>, ProviderError> {
    let (mode, allowed) = match choice {
        None => return Ok(None),
        Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => (FunctionCallingMode::Auto, None),
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => (FunctionCallingMode::None, None),
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => (FunctionCallingMode::Any, None),
        Some(ToolChoice::Named(named)) => {
            let name = &named.function.name;
            if !tools.iter().any(|t| &t.function.name == name) {
                return Err(bad_request(format!("tool_choice names {name:?}, which is not among the tools")));
            }
            (FunctionCallingMode::Any, Some(vec![name.clone()]))
        }
    };
    Ok(Some(ToolConfig {
        function_calling_config: FunctionCallingConfig { mode, allowed_function_names: allowed },
    }))
}

fn generation_config(req: &ChatRequest) -> Result<Option<GenerationConfig>, ProviderError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(bad_request("n > 1 is not supported by the gemini adapter; send one request per answer"));
    }
    let seed = req
        .seed
        .map(i32::try_from)
        .transpose()
        .map_err(|_| bad_request("seed must fit in a signed 32-bit integer for Gemini"))?;
    let (mime, schema) = match &req.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json".to_owned()), None),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            (Some("application/json".to_owned()), json_schema.schema.clone())
        }
        Some(ResponseFormat::Text) | None => (None, None),
    };
    let config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.output_cap(),
        stop_sequences: req.stop.as_ref().map(|s| s.sequences()).unwrap_or_default(),
        candidate_count: None,
        seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        response_mime_type: mime,
        response_json_schema: schema,
    };
    Ok((config != GenerationConfig::default()).then_some(config))
}

// === response ===

/// The fields of a canonical response the Gemini body does not carry.
#[derive(Debug, Clone)]
pub struct ResponseMeta<'a> {
    /// Used when the upstream sent no `responseId`.
    pub fallback_id: &'a str,
    pub model: &'a str,
    pub created: i64,
}

/// The canonical response for a Gemini response (first candidate only; `n > 1` is refused).
pub fn from_wire(
    resp: GenerateContentResponse,
    meta: &ResponseMeta<'_>,
) -> Result<ChatResponse, ProviderError> {
    if let Some(error) = resp.error {
        return Err(super::errors::from_api_error(error));
    }
    let usage = resp.usage_metadata.as_ref().map(usage);
    let Some(candidate) = resp.candidates.into_iter().next() else {
        return Err(match resp.prompt_feedback.and_then(|f| f.block_reason) {
            Some(reason) => prompt_blocked(&reason),
            None => ProviderError::invalid_response(PROVIDER_ID, "no candidates in the response"),
        });
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        match answer_part(part, calls.len()) {
            Some(Answer::Text(t)) => text.push_str(&t),
            Some(Answer::Call(call)) => calls.push(call),
            None => {}
        }
    }
    let has_calls = !calls.is_empty();
    let finish = finish_reason(candidate.finish_reason.as_deref().unwrap_or("STOP"), has_calls);
    let content = (!text.is_empty() || !has_calls).then_some(text);
    Ok(ChatResponse {
        id: resp.response_id.unwrap_or_else(|| meta.fallback_id.to_owned()),
        object: "chat.completion".to_owned(),
        created: meta.created,
        model: meta.model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage::assistant(content, calls),
            finish_reason: Some(finish),
            logprobs: None,
        }],
        usage,
        system_fingerprint: None,
        extra: tollgate_types::JsonMap::new(),
    })
}

/// What one response part adds to the answer.
pub enum Answer {
    Text(String),
    Call(ToolCall),
}

/// `None` for thought summaries, empty text and parts the canonical answer cannot carry
/// (executable code and the like). `call_index` numbers calls that come without an id.
pub fn answer_part(part: Part, call_index: usize) -> Option<Answer> {
    if part.thought {
        return None;
    }
    if let Some(call) = part.function_call {
        let mut id = call.id.unwrap_or_else(|| format!("call_{call_index}"));
        if let Some(sig) = part.thought_signature {
            id.push_str(SIGNATURE_SEP);
            id.push_str(&sig);
        }
        let arguments = call.args.unwrap_or_else(|| json!({})).to_string();
        return Some(Answer::Call(ToolCall {
            id,
            kind: ToolKind::Function,
            function: tollgate_types::FunctionCall { name: call.name, arguments },
        }));
    }
    part.text.filter(|t| !t.is_empty()).map(Answer::Text)
}

/// Gemini's finish reason in OpenAI's vocabulary. Gemini says `STOP` after function calls too.
pub fn finish_reason(reason: &str, has_tool_calls: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ if has_tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Thinking tokens are billed as output, so they count as completion tokens (as OpenAI counts
/// reasoning tokens); tool-use prompt tokens are billed as input.
pub fn usage(u: &UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count.unwrap_or(0);
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    let mut usage = Usage::new(prompt, u.candidates_token_count + thoughts, u.cached_content_token_count);
    if u.thoughts_token_count.is_some() {
        usage.completion_tokens_details = Some(CompletionTokensDetails { reasoning_tokens: thoughts });
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn wire(v: Value) -> Value {
        serde_json::to_value(to_wire(&req(v)).unwrap()).unwrap()
    }

    const META: ResponseMeta<'static> =
        ResponseMeta { fallback_id: "chatcmpl-gemini-r1", model: "gemini-2.5-flash", created: 7 };

    #[test]
    fn system_prompts_go_to_the_system_instruction_and_roles_alternate() {
        let body = wire(json!({
            "model": "g",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "Anyone there?"}]},
                {"role": "assistant", "content": "Bonjour"},
                {"role": "user", "content": "Ça va?"}
            ]
        }));
        assert_eq!(
            body,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief.\n\nAnswer in French."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hello"}, {"text": "Anyone there?"}]},
                    {"role": "model", "parts": [{"text": "Bonjour"}]},
                    {"role": "user", "parts": [{"text": "Ça va?"}]}
                ]
            })
        );
    }

    #[test]
    fn sampling_settings_go_to_the_generation_config() {
        let body = wire(json!({
            "model": "g", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.3, "top_p": 0.9, "max_tokens": 50, "max_completion_tokens": 64,
            "stop": ["END", "STOP"], "seed": 42, "n": 1, "presence_penalty": 0.5,
            "response_format": {"type": "json_object"}
        }));
        assert_eq!(
            body["generationConfig"],
            json!({"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 64, "stopSequences": ["END", "STOP"],
                "seed": 42, "presencePenalty": 0.5, "responseMimeType": "application/json"})
        );
        let schema =
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
        let body = wire(json!({
            "model": "g", "messages": [{"role": "user", "content": "hi"}], "stop": "X",
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": true}}
        }));
        assert_eq!(
            body["generationConfig"],
            json!({"stopSequences": ["X"], "responseMimeType": "application/json", "responseJsonSchema": schema})
        );
        assert!(
            wire(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]}))
                .get("generationConfig")
                .is_none()
        );
    }

    #[test]
    fn unsupported_settings_are_clear_bad_requests() {
        let r = |extra: Value| {
            let mut v = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            to_wire(&req(v)).unwrap_err()
        };
        let e = r(json!({"n": 2}));
        assert_eq!(e.kind, ProviderErrorKind::BadRequest);
        assert!(e.message.contains("n > 1"), "{}", e.message);
        assert!(r(json!({"seed": 1_i64 << 40})).message.contains("seed"));
        let only_system = req(json!({"model": "g", "messages": [{"role": "system", "content": "x"}]}));
        assert_eq!(to_wire(&only_system).unwrap_err().kind, ProviderErrorKind::BadRequest);
    }

    #[test]
    fn tools_tool_choice_calls_and_results_translate() {
        let body = wire(json!({
            "model": "g",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_1__thought__c2ln", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp_c\":21}"},
                {"role": "tool", "tool_call_id": "call_1__thought__c2ln", "content": "sunny"},
                {"role": "tool", "tool_call_id": "x", "name": "get_time", "content": "[1,2]"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time"}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        }));
        assert_eq!(
            body["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Current weather", "parametersJsonSchema":
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "get_time"}
            ]}])
        );
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        assert_eq!(
            body["contents"][1],
            json!({"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": "c2ln"}
            ]})
        );
        assert_eq!(
            body["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "get_time", "response": {"result": [1, 2]}}}
            ]})
        );
    }

    #[test]
    fn tool_choice_modes_map_and_bad_tool_messages_are_refused() {
        let with_choice = |choice: Value| {
            wire(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}))["toolConfig"]
                .clone()
        };
        assert_eq!(with_choice(json!("auto")), json!({"functionCallingConfig": {"mode": "AUTO"}}));
        assert_eq!(with_choice(json!("none")), json!({"functionCallingConfig": {"mode": "NONE"}}));
        assert_eq!(with_choice(json!("required")), json!({"functionCallingConfig": {"mode": "ANY"}}));
        let bad = req(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}}}));
        assert_eq!(to_wire(&bad).unwrap_err().kind, ProviderErrorKind::BadRequest);
        let orphan = req(json!({"model": "g", "messages": [{"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "nope", "content": "1"}]}));
        assert!(to_wire(&orphan).unwrap_err().message.contains("nope"));
        let bad_args = req(json!({"model": "g", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}));
        assert_eq!(to_wire(&bad_args).unwrap_err().kind, ProviderErrorKind::BadRequest);
    }

    #[test]
    fn images_audio_and_files_become_inline_or_file_data() {
        let body = wire(json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.WEBP?size=large"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
        ]}]}));
        assert_eq!(
            body["contents"][0]["parts"],
            json!([
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.WEBP?size=large"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
            ])
        );
        let ftp = req(json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}));
        assert_eq!(to_wire(&ftp).unwrap_err().kind, ProviderErrorKind::BadRequest);
        let file_id = req(json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-abc"}}]}]}));
        assert_eq!(to_wire(&file_id).unwrap_err().kind, ProviderErrorKind::Unsupported);
    }

    fn response(v: Value) -> GenerateContentResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_text_response_converts_with_usage_and_the_response_id() {
        let resp = response(json!({
            "candidates": [{
                "content": {"parts": [{"text": "Thinking about it", "thought": true}, {"text": "Paris is "}, {"text": "the capital."}], "role": "model"},
                "finishReason": "STOP", "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
            }],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 27,
                "cachedContentTokenCount": 8, "thoughtsTokenCount": 10,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mXbOaJ2vL8a0qtsP"
        }));
        let out = from_wire(resp, &META).unwrap();
        assert_eq!(out.id, "mXbOaJ2vL8a0qtsP");
        assert_eq!(out.model, "gemini-2.5-flash");
        assert_eq!(out.choices[0].message.content.as_deref(), Some("Paris is the capital."));
        assert_eq!(out.choices[0].finish_reason, Some(FinishReason::Stop));
        let usage = out.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (12, 15, 27));
        assert_eq!(usage.cached_tokens(), 8);
        assert_eq!(usage.completion_tokens_details.unwrap().reasoning_tokens, 10);
    }

    #[test]
    fn function_calls_become_tool_calls_with_json_arguments() {
        let resp = response(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time"}},
                {"functionCall": {"id": "fc-7", "name": "get_weather", "args": {"city": "Rome"}}}
            ]}, "finishReason": "STOP"}]
        }));
        let out = from_wire(resp, &META).unwrap();
        assert_eq!(out.id, "chatcmpl-gemini-r1");
        let choice = &out.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(choice.message.content, None);
        let calls = choice.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].id, "call_0__thought__c2ln");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!((calls[1].id.as_str(), calls[1].function.arguments.as_str()), ("call_1", "{}"));
        assert_eq!(calls[2].id, "fc-7");
        assert!(out.usage.is_none());
    }

    #[test]
    fn finish_reasons_and_blocked_prompts_map() {
        assert_eq!(finish_reason("MAX_TOKENS", false), FinishReason::Length);
        for r in ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"] {
            assert_eq!(finish_reason(r, false), FinishReason::ContentFilter);
        }
        assert_eq!(finish_reason("STOP", true), FinishReason::ToolCalls);
        assert_eq!(finish_reason("SOMETHING_NEW", false), FinishReason::Stop);
        let blocked = response(json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}));
        assert_eq!(from_wire(blocked, &META).unwrap_err().kind, ProviderErrorKind::ContentFilter);
        let empty = response(json!({"candidates": []}));
        assert_eq!(from_wire(empty, &META).unwrap_err().kind, ProviderErrorKind::InvalidResponse);
        let cut = response(
            json!({"candidates": [{"content": {"parts": [{"text": "Once upon"}]}, "finishReason": "MAX_TOKENS"}]}),
        );
        assert_eq!(from_wire(cut, &META).unwrap().choices[0].finish_reason, Some(FinishReason::Length));
    }
}
