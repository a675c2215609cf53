//! Google Gemini wire format: `POST /v1beta/models/{model}:generateContent` (JSON) and
//! `:streamGenerateContent` (`?alt=sse`: one whole `GenerateContentResponse` per `data:` event,
//! no end marker, the last event with `finishReason` and the full `usageMetadata`; without
//! `alt=sse`: one JSON array of those responses). Errors are Google RPC statuses
//! (`{"error":{"code","message","status"}}`).
//!
//! Like the real API it rejects unknown fields, wrong roles, empty parts and malformed function
//! calls with a 400, so a bad translation fails tests instead of passing silently. A wrong key is
//! a 400 `API_KEY_INVALID` (as Gemini answers), a missing one a 403.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::core::{self, Conversation, Fault, Reply, SseEvent, State};

pub fn routes() -> Router<State> {
    Router::new().route("/v1beta/models/{target}", post(handle))
}

/// Google's RPC status name for an HTTP status.
fn rpc_status(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

pub fn error_body(code: u16, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": rpc_status(code)}})
}

/// What Gemini says when the prompt does not fit the model.
pub const CONTEXT_LENGTH_MESSAGE: &str =
    "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).";

/// The error body for a fault the knobs asked for. Gemini's body has no code of its own beyond
/// the RPC status: `context_length_exceeded` gets Gemini's message for it, any other code is
/// named in the mock's message.
pub fn fault_body(status: u16, code: Option<&str>) -> Value {
    match code {
        Some("context_length_exceeded") => error_body(status, CONTEXT_LENGTH_MESSAGE),
        _ => error_body(status, &core::mock_message(status, code)),
    }
}

fn error(code: u16, message: &str) -> Response {
    core::error_response(code, None, error_body(code, message))
}

async fn handle(
    AxState(state): AxState<State>,
    Path(target): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1beta/models/{target}");
    let parsed = match core::parse_body(&body) {
        Ok(v) => v,
        Err(m) => return error(400, &format!("Invalid JSON payload received. {m}")),
    };
    core::record(&state, "POST", &path, q.as_deref(), &headers, &parsed);
    let knobs = state.knobs();
    if !core::authorized(&knobs, &headers, q.as_deref()) {
        return unauthorized(&headers);
    }
    let Some((model, method)) = target.split_once(':') else {
        return error(404, &format!("models/{target} is not found for API version v1beta"));
    };
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return error(404, &format!("Method {method} is not found for API version v1beta")),
    };
    let sse = q.as_deref().is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let (knobs, bare) = knobs.with_model_suffix(model);
    match core::pre_answer(&state, &knobs, model).await {
        Fault::None => {}
        Fault::Hang => return core::hang().await,
        Fault::Garbage => return core::garbage(),
        Fault::Status(s, ra) => {
            return core::error_response(s, ra, fault_body(s, knobs.error_code.as_deref()));
        }
    }
    if let Err(message) = validate(&parsed) {
        return error(400, &message);
    }
    let conv = conversation(&parsed, bare, stream);
    let (reply, input, output) = core::plan(&conv, &knobs);
    let responses = render(&conv, &reply, input, output);
    match (stream, sse) {
        (false, _) => axum::Json(responses.into_iter().next().unwrap_or_default()).into_response(),
        (true, true) => {
            core::sse_response(responses.iter().map(|r| SseEvent::data(r.to_string())).collect(), &knobs)
        }
        (true, false) => axum::Json(Value::Array(responses)).into_response(),
    }
}

/// Gemini answers a wrong key with 400 `API_KEY_INVALID` and a missing one with 403.
fn unauthorized(headers: &HeaderMap) -> Response {
    if headers.contains_key("x-goog-api-key") {
        let mut body = error_body(400, "API key not valid. Please pass a valid API key.");
        body["error"]["details"] = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]);
        return core::error_response(400, None, body);
    }
    error(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
    )
}

// === validation: what the real API rejects ===

const REQUEST_FIELDS: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
];
const GENERATION_FIELDS: &[&str] = &[
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "candidateCount",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
];
const PART_DATA: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];
const PART_FIELDS: &[&str] = &["thought", "thoughtSignature", "videoMetadata"];

fn unknown_field(obj: &Value, known: &[&str], at: &str) -> Result<(), String> {
    match obj.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str()))) {
        Some(k) => {
            Err(format!("Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."))
        }
        None => Ok(()),
    }
}

fn validate(body: &Value) -> Result<(), String> {
    unknown_field(body, REQUEST_FIELDS, "")?;
    let contents = body["contents"].as_array().filter(|c| !c.is_empty());
    let contents = contents.ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    for (i, c) in contents.iter().enumerate() {
        unknown_field(c, &["role", "parts"], &format!("contents[{i}]"))?;
        if !matches!(c["role"].as_str(), None | Some("user" | "model")) {
            return Err("Please use a valid role: user, model.".to_owned());
        }
        validate_parts(&c["parts"], &format!("contents[{i}]"))?;
    }
    if !body["systemInstruction"].is_null() {
        validate_parts(&body["systemInstruction"]["parts"], "system_instruction")?;
    }
    unknown_field(&body["generationConfig"], GENERATION_FIELDS, "generation_config")?;
    validate_tools(body)
}

fn validate_parts(parts: &Value, at: &str) -> Result<(), String> {
    let parts = parts.as_array().filter(|p| !p.is_empty());
    let parts = parts
        .ok_or_else(|| format!("* GenerateContentRequest.{at}.parts: contents.parts must not be empty."))?;
    for (j, p) in parts.iter().enumerate() {
        let at = format!("{at}.parts[{j}]");
        let known: Vec<&str> = PART_DATA.iter().chain(PART_FIELDS).copied().collect();
        unknown_field(p, &known, &at)?;
        let data = PART_DATA.iter().filter(|k| p.get(**k).is_some()).count();
        if data != 1 {
            return Err(format!(
                "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
            ));
        }
        let blob = &p["inlineData"];
        if !blob.is_null() && (blob["mimeType"].as_str().is_none() || blob["data"].as_str().is_none()) {
            return Err(format!(
                "* GenerateContentRequest.{at}.inline_data: mime_type and data are required"
            ));
        }
        if !p["fileData"].is_null() && p["fileData"]["fileUri"].as_str().is_none() {
            return Err(format!("* GenerateContentRequest.{at}.file_data.file_uri: file_uri is required"));
        }
        let call = &p["functionCall"];
        if !call.is_null()
            && (call["name"].as_str().is_none() || !(call["args"].is_null() || call["args"].is_object()))
        {
            return Err(format!(
                "* GenerateContentRequest.{at}.function_call: name is required and args must be an object"
            ));
        }
        let resp = &p["functionResponse"];
        if !resp.is_null() && (resp["name"].as_str().is_none() || !resp["response"].is_object()) {
            return Err(format!(
                "* GenerateContentRequest.{at}.function_response: name and an object response are required"
            ));
        }
    }
    Ok(())
}

fn validate_tools(body: &Value) -> Result<(), String> {
    let empty = Vec::new();
    for (i, tool) in body["tools"].as_array().unwrap_or(&empty).iter().enumerate() {
        for (j, f) in tool["functionDeclarations"].as_array().unwrap_or(&empty).iter().enumerate() {
            let at = format!("tools[{i}].function_declarations[{j}]");
            unknown_field(
                f,
                &["name", "description", "parameters", "parametersJsonSchema", "response"],
                &at,
            )?;
            if f["name"].as_str().is_none_or(str::is_empty) {
                return Err(format!("* GenerateContentRequest.{at}.name: Name cannot be empty."));
            }
            if !f["parameters"].is_null() && !f["parametersJsonSchema"].is_null() {
                return Err(format!(
                    "* GenerateContentRequest.{at}: parameters and parameters_json_schema are mutually exclusive"
                ));
            }
        }
    }
    let mode = &body["toolConfig"]["functionCallingConfig"]["mode"];
    if !mode.is_null() && !matches!(mode.as_str(), Some("AUTO" | "ANY" | "NONE" | "VALIDATED")) {
        return Err(format!("Invalid value at 'tool_config.function_calling_config.mode', {mode}"));
    }
    Ok(())
}

// === the answer ===

fn text_of(parts: &Value) -> String {
    parts.as_array().map_or_else(String::new, |p| p.iter().filter_map(|p| p["text"].as_str()).collect())
}

fn conversation(body: &Value, model: String, stream: bool) -> Conversation {
    let mut conv = Conversation { model, stream, ..Conversation::default() };
    conv.max_tokens = body["generationConfig"]["maxOutputTokens"].as_u64().map(|m| m as u32);
    conv.all_text = text_of(&body["systemInstruction"]["parts"]);
    let empty = Vec::new();
    let contents = body["contents"].as_array().unwrap_or(&empty);
    for c in contents {
        let text = text_of(&c["parts"]);
        conv.all_text.push(' ');
        conv.all_text.push_str(&text);
        let parts = c["parts"].as_array().unwrap_or(&empty);
        let is_result = parts.iter().any(|p| !p["functionResponse"].is_null());
        if c["role"] != "model" && !is_result {
            conv.last_user_text = text;
            conv.image_count = parts
                .iter()
                .filter(|p| {
                    let mime = p["inlineData"]["mimeType"].as_str().or(p["fileData"]["mimeType"].as_str());
                    mime.is_some_and(|m| m.starts_with("image/"))
                })
                .count();
        }
    }
    conv.last_is_tool_result = contents.last().is_some_and(|c| {
        c["parts"].as_array().is_some_and(|p| p.iter().any(|p| !p["functionResponse"].is_null()))
    });
    let calling = &body["toolConfig"]["functionCallingConfig"];
    if calling["mode"] != "NONE" {
        conv.tools = body["tools"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .flat_map(|t| t["functionDeclarations"].as_array().unwrap_or(&empty))
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect();
    }
    if let Some([only]) = calling["allowedFunctionNames"].as_array().map(Vec::as_slice) {
        conv.forced_tool = only.as_str().map(str::to_owned);
    }
    conv
}

/// The responses to send: one for a JSON answer; for a stream, one per text piece (the last with
/// the finish reason), or one holding every function call.
fn render(conv: &Conversation, reply: &Reply, input: u64, output: u64) -> Vec<Value> {
    let response = |parts: Vec<Value>, finish: Option<&str>, usage: Value| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
            candidate["safetyRatings"] =
                json!([{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]);
        }
        json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": conv.model,
            "responseId": "mock-gemini-response"})
    };
    let prompt_only = json!({"promptTokenCount": input, "totalTokenCount": input,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input}]});
    let full = json!({"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input}]});
    match reply {
        Reply::ToolCalls(calls) => {
            let parts = calls
                .iter()
                .map(|c| {
                    let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    json!({"functionCall": {"name": c.name, "args": args}})
                })
                .collect();
            vec![response(parts, Some("STOP"), full)]
        }
        Reply::Text { pieces, truncated } => {
            let finish = if *truncated { "MAX_TOKENS" } else { "STOP" };
            if !conv.stream {
                return vec![response(vec![json!({"text": reply.text()})], Some(finish), full)];
            }
            let mut out: Vec<Value> = pieces
                .iter()
                .map(|p| response(vec![json!({"text": p})], None, prompt_only.clone()))
                .collect();
            match out.last_mut() {
                Some(last) => *last = response(vec![json!({"text": pieces.last()})], Some(finish), full),
                None => out.push(response(vec![json!({"text": ""})], Some(finish), full)),
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_read_as_gemini_words_them() {
        let b = fault_body(400, Some("context_length_exceeded"));
        assert_eq!(b["error"]["status"], "INVALID_ARGUMENT");
        assert!(b["error"]["message"].as_str().unwrap().starts_with("The input token count"), "{b}");
        assert_eq!(fault_body(400, Some("other"))["error"]["message"], "mock error 400 (other)");
        assert_eq!(fault_body(503, None)["error"]["message"], "mock error 503");
    }

    fn valid(body: Value) -> Result<(), String> {
        validate(&body)
    }

    #[test]
    fn what_gemini_rejects_is_rejected() {
        let ok = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
        assert!(valid(ok).is_ok());
        assert!(valid(json!({"contents": []})).unwrap_err().contains("contents is not specified"));
        assert!(valid(json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]})).is_err());
        assert!(valid(json!({"contents": [{"role": "user", "parts": []}]})).is_err());
        assert!(
            valid(json!({"messages": [], "contents": [{"parts": [{"text": "x"}]}]}))
                .unwrap_err()
                .contains("messages")
        );
        assert!(
            valid(json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}}))
                .is_err()
        );
        assert!(valid(json!({"contents": [{"parts": [{"text": "x", "inlineData": {"mimeType": "a", "data": "b"}}]}]})).is_err());
        assert!(valid(json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": "[]"}}]}]})).is_err());
        assert!(
            valid(json!({"contents": [{"parts": [{"functionResponse": {"name": "f", "response": "ok"}}]}]}))
                .is_err()
        );
        let tools = json!({"contents": [{"parts": [{"text": "x"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {}, "parametersJsonSchema": {}}]}]});
        assert!(valid(tools).is_err());
    }

    #[test]
    fn a_stream_ends_with_the_finish_reason_and_full_usage() {
        let conv = Conversation { stream: true, model: "gemini-2.5-flash".into(), ..Conversation::default() };
        let reply = Reply::Text { pieces: vec!["mock: ".into(), "hi".into()], truncated: false };
        let out = render(&conv, &reply, 3, 2);
        assert_eq!(out.len(), 2);
        assert!(out[0]["candidates"][0]["finishReason"].is_null());
        assert_eq!(out[1]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(out[1]["usageMetadata"]["totalTokenCount"], 5);
    }

    #[test]
    fn the_conversation_reads_tools_images_and_tool_results() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "what is this"}, {"inlineData": {"mimeType": "image/png", "data": "AA=="}}]},
                {"role": "model", "parts": [{"functionCall": {"name": "look", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "look", "response": {"result": "cat"}}}]}
            ],
            "tools": [{"functionDeclarations": [{"name": "look"}, {"name": "other"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["other"]}},
            "generationConfig": {"maxOutputTokens": 9}
        });
        let conv = conversation(&body, "m".into(), false);
        assert_eq!(conv.last_user_text, "what is this");
        assert_eq!(conv.image_count, 1);
        assert!(conv.last_is_tool_result);
        assert_eq!(conv.tools, vec!["look", "other"]);
        assert_eq!(conv.forced_tool.as_deref(), Some("other"));
        assert_eq!(conv.max_tokens, Some(9));
        assert_eq!(conv.all_text.split_whitespace().count(), 5);
    }
}
