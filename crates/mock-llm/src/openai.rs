//! OpenAI wire format (also Azure's deployment routes and OpenAI-compatible servers):
//! `POST /v1/chat/completions` (JSON or SSE ending in `data: [DONE]`), `/v1/completions`,
//! `/v1/embeddings`, `GET /v1/models`; Azure: `/openai/deployments/{deployment}/...`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::core::{self, Conversation, Fault, RateLimitStyle, Reply, SseEvent, State};

pub fn routes() -> Router<State> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/openai/deployments/{deployment}/chat/completions", post(azure_chat))
        .route("/openai/deployments/{deployment}/embeddings", post(azure_embeddings))
}

pub fn error_body(status: u16, message: &str) -> Value {
    let (ty, code) = match status {
        400 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        404 => ("invalid_request_error", "model_not_found"),
        429 => ("requests", "rate_limit_exceeded"),
        _ => ("server_error", "server_error"),
    };
    json!({"error": {"message": message, "type": ty, "param": null, "code": code}})
}

/// What OpenAI says when its safety system rejects a prompt.
pub const CONTENT_POLICY_MESSAGE: &str = "Your request was rejected as a result of our safety system. \
    Your prompt may contain text that is not allowed by our safety system.";
/// What Azure says when its content filter rejects a prompt.
pub const AZURE_CONTENT_FILTER_MESSAGE: &str = "The response was filtered due to the prompt triggering \
    Azure OpenAI's content management policy. Please modify your prompt and retry.";
/// What OpenAI (and Azure) say when the prompt does not fit the model.
pub const CONTEXT_LENGTH_MESSAGE: &str = "This model's maximum context length is 128000 tokens. \
    However, your messages resulted in 130000 tokens. Please reduce the length of the messages.";

/// The error body for a fault the knobs asked for: with `error_code`, that code in OpenAI's shape
/// and OpenAI's message for it. A content-policy code on the Azure routes (and `content_filter`
/// anywhere, a code only Azure sends) gives Azure's content-filter body, `innererror` included.
pub fn fault_body(status: u16, code: Option<&str>, azure: bool) -> Value {
    let (message, param) = match code {
        None => return error_body(status, &core::mock_message(status, None)),
        Some("content_filter") => return azure_content_filter_body(status),
        Some("content_policy_violation") if azure => return azure_content_filter_body(status),
        Some("content_policy_violation") => (CONTENT_POLICY_MESSAGE.to_owned(), Value::Null),
        Some("context_length_exceeded") => (CONTEXT_LENGTH_MESSAGE.to_owned(), json!("messages")),
        Some(other) => (core::mock_message(status, Some(other)), Value::Null),
    };
    let ty = if status == 429 {
        "requests"
    } else if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    json!({"error": {"message": message, "type": ty, "param": param, "code": code}})
}

/// Azure's answer to a prompt its content filter rejects: code `content_filter`, and the
/// `innererror` naming the policy and each category's verdict.
fn azure_content_filter_body(status: u16) -> Value {
    let clear = json!({"filtered": false, "severity": "safe"});
    json!({"error": {
        "message": AZURE_CONTENT_FILTER_MESSAGE, "type": null, "param": "prompt", "code": "content_filter",
        "status": status,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": clear, "jailbreak": {"filtered": false, "detected": false}, "self_harm": clear,
            "sexual": clear, "violence": {"filtered": true, "severity": "medium"}
        }}
    }})
}

/// Common prologue: record, auth, parse, knobs from the model suffix, faults.
async fn prologue(
    state: &State,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    model_override: Option<&str>,
) -> Result<(Value, core::Knobs, String), Response> {
    let parsed = core::parse_body(body).map_err(|m| core::error_response(400, None, error_body(400, &m)))?;
    core::record(state, "POST", path, query, headers, &parsed);
    let knobs = state.knobs();
    if !core::authorized(&knobs, headers, query) {
        return Err(core::error_response(401, None, error_body(401, "Incorrect API key provided.")));
    }
    let sent = model_override.or_else(|| parsed["model"].as_str()).unwrap_or("").to_owned();
    let (knobs, model) = knobs.with_model_suffix(&sent);
    match core::pre_answer(state, &knobs, &sent).await {
        Fault::None => Ok((parsed, knobs, model)),
        Fault::Hang => Err(core::hang().await),
        Fault::Garbage => Err(core::garbage()),
        Fault::Status(s, ra) => {
            // Only the Azure routes name the model in the path.
            let azure = model_override.is_some();
            let resp = core::error_response(s, ra, fault_body(s, knobs.error_code.as_deref(), azure));
            Err(core::with_rate_limits(resp, &knobs, RateLimitStyle::OpenAi))
        }
    }
}

fn conversation(body: &Value, model: String) -> Conversation {
    let mut conv =
        Conversation { model, stream: body["stream"].as_bool().unwrap_or(false), ..Conversation::default() };
    conv.max_tokens =
        body["max_completion_tokens"].as_u64().or(body["max_tokens"].as_u64()).map(|m| m as u32);
    let empty = Vec::new();
    let messages = body["messages"].as_array().unwrap_or(&empty);
    for m in messages {
        let text = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("")
            }
            _ => String::new(),
        };
        conv.all_text.push_str(&text);
        conv.all_text.push(' ');
        if m["role"] == "user" {
            conv.last_user_text = text;
            conv.image_count =
                m["content"].as_array().map_or(0, |p| p.iter().filter(|p| p["type"] == "image_url").count());
        }
    }
    conv.last_is_tool_result = messages.last().is_some_and(|m| m["role"] == "tool");
    if body["tool_choice"] != "none" {
        conv.tools = body["tools"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
            .collect();
    }
    conv.forced_tool = body["tool_choice"]["function"]["name"].as_str().map(str::to_owned);
    conv
}

async fn chat(
    AxState(state): AxState<State>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_chat(&state, "/v1/chat/completions", q.as_deref(), &headers, &body, None).await
}

async fn azure_chat(
    AxState(state): AxState<State>,
    Path(deployment): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !q.as_deref().unwrap_or("").contains("api-version=") {
        return core::error_response(404, None, error_body(404, "Resource not found (missing api-version)"));
    }
    let path = format!("/openai/deployments/{deployment}/chat/completions");
    answer_chat(&state, &path, q.as_deref(), &headers, &body, Some(&deployment)).await
}

async fn answer_chat(
    state: &State,
    path: &str,
    q: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    model_override: Option<&str>,
) -> Response {
    let (parsed, knobs, model) = match prologue(state, path, q, headers, body, model_override).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let conv = conversation(&parsed, model);
    let (reply, input, output) = core::plan(&conv, &knobs);
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}});
    let id = "chatcmpl-mock";
    let created = core::now();
    let (finish, message_tool_calls) = match &reply {
        Reply::ToolCalls(calls) => (
            "tool_calls",
            Some(
                calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect::<Vec<_>>(),
            ),
        ),
        Reply::Text { truncated: true, .. } => ("length", None),
        Reply::Text { .. } => ("stop", None),
    };
    if !conv.stream {
        let mut message = json!({"role": "assistant", "content": null, "refusal": null});
        match &message_tool_calls {
            Some(calls) => message["tool_calls"] = Value::from(calls.clone()),
            None => message["content"] = Value::from(reply.text()),
        }
        let resp = axum::Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": conv.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage, "system_fingerprint": "fp_mock"
        }))
        .into_response();
        return core::with_rate_limits(resp, &knobs, RateLimitStyle::OpenAi);
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": conv.model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        .to_string()
    };
    let mut events = vec![SseEvent::data(chunk(json!({"role": "assistant", "content": ""}), None))];
    match &reply {
        Reply::Text { pieces, .. } => {
            for p in pieces {
                events.push(SseEvent::data(chunk(json!({"content": p}), None)));
            }
        }
        Reply::ToolCalls(calls) => {
            for (i, c) in calls.iter().enumerate() {
                events.push(SseEvent::data(chunk(
                    json!({"tool_calls": [{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                    None,
                )));
                // Arguments arrive in two fragments, as OpenAI splits them.
                let mid = c.arguments.len() / 2;
                let (a, b) = c
                    .arguments
                    .split_at(c.arguments.char_indices().map(|(i, _)| i).find(|&i| i >= mid).unwrap_or(0));
                for frag in [a, b] {
                    events.push(SseEvent::data(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}),
                        None,
                    )));
                }
            }
        }
    }
    if knobs.garbage {
        events.push(SseEvent::data("{this is not json"));
    }
    events.push(SseEvent::data(chunk(json!({}), Some(finish))));
    if parsed["stream_options"]["include_usage"].as_bool() == Some(true) {
        events.push(
            SseEvent::data(
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": conv.model,
                    "choices": [], "usage": usage})
                .to_string(),
            )
            .trailer(),
        );
    }
    events.push(SseEvent::data("[DONE]").trailer());
    core::with_rate_limits(core::sse_response(events, &knobs), &knobs, RateLimitStyle::OpenAi)
}

async fn completions(
    AxState(state): AxState<State>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (parsed, knobs, model) =
        match prologue(&state, "/v1/completions", q.as_deref(), &headers, &body, None).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let prompt = match &parsed["prompt"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = format!("mock: {prompt}");
    let input = prompt.split_whitespace().count() as u64;
    let output = text.split_whitespace().count() as u64;
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output});
    let created = core::now();
    if parsed["stream"].as_bool() != Some(true) {
        let resp = axum::Json(json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}], "usage": usage}))
        .into_response();
        return core::with_rate_limits(resp, &knobs, RateLimitStyle::OpenAi);
    }
    let mut events: Vec<SseEvent> = text
        .split_inclusive(' ')
        .map(|w| {
            SseEvent::data(
                json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
                "choices": [{"text": w, "index": 0, "logprobs": null, "finish_reason": null}]})
                .to_string(),
            )
        })
        .collect();
    events.push(SseEvent::data(
        json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
        "choices": [{"text": "", "index": 0, "logprobs": null, "finish_reason": "stop"}], "usage": usage})
        .to_string(),
    ));
    events.push(SseEvent::data("[DONE]"));
    core::with_rate_limits(core::sse_response(events, &knobs), &knobs, RateLimitStyle::OpenAi)
}

async fn embeddings(
    AxState(state): AxState<State>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_embeddings(&state, "/v1/embeddings", q.as_deref(), &headers, &body, None).await
}

async fn azure_embeddings(
    AxState(state): AxState<State>,
    Path(deployment): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/openai/deployments/{deployment}/embeddings");
    answer_embeddings(&state, &path, q.as_deref(), &headers, &body, Some(&deployment)).await
}

async fn answer_embeddings(
    state: &State,
    path: &str,
    q: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    model_override: Option<&str>,
) -> Response {
    let (parsed, knobs, model) = match prologue(state, path, q, headers, body, model_override).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match &parsed["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => {
            a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect()
        }
        _ => return core::error_response(400, None, error_body(400, "'input' must be a string or an array")),
    };
    let dims = parsed["dimensions"].as_u64().map_or(knobs.embedding_dims, |d| d as usize);
    let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": core::embedding(s, dims)}))
        .collect();
    let resp = axum::Json(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response();
    core::with_rate_limits(resp, &knobs, RateLimitStyle::OpenAi)
}

async fn models() -> Response {
    axum::Json(json!({"object": "list", "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}]}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockLlm;
    use crate::core::raw;

    fn chat(model: &str) -> String {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    }

    #[tokio::test]
    async fn error_codes_come_in_openais_shape_with_its_messages() {
        let mock = MockLlm::start().await.unwrap();
        let r =
            raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~error_code=content_policy_violation"))
                .await;
        let e = &r.json()["error"];
        assert_eq!(
            (r.status, e["code"].as_str(), e["type"].as_str()),
            (400, Some("content_policy_violation"), Some("invalid_request_error"))
        );
        assert!(e["message"].as_str().unwrap().contains("safety system"), "{e}");

        let r =
            raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~error_code=context_length_exceeded"))
                .await;
        let e = &r.json()["error"];
        assert_eq!(
            (r.status, e["code"].as_str(), e["param"].as_str()),
            (400, Some("context_length_exceeded"), Some("messages"))
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("This model's maximum context length is 128000 tokens."),
            "{e}"
        );

        // Any other code passes through, with the status asked for.
        let r = raw::post(
            mock.addr,
            "/v1/chat/completions",
            &[],
            &chat("m~error_code=insufficient_quota,status=429"),
        )
        .await;
        let e = &r.json()["error"];
        assert_eq!(
            (r.status, e["code"].as_str(), e["type"].as_str()),
            (429, Some("insufficient_quota"), Some("requests"))
        );
        // Without a code the body is as before.
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~status=500")).await;
        assert_eq!(r.json()["error"]["message"], "mock error 500");
    }

    #[tokio::test]
    async fn the_azure_routes_answer_a_content_policy_code_with_azures_content_filter_body() {
        let mock = MockLlm::start().await.unwrap();
        let path = "/openai/deployments/gpt4o~error_code=content_policy_violation/chat/completions?api-version=2024-10-21";
        let r = raw::post(mock.addr, path, &[], &chat("ignored")).await;
        let e = &r.json()["error"];
        assert_eq!(
            (r.status, e["code"].as_str(), e["param"].as_str()),
            (400, Some("content_filter"), Some("prompt"))
        );
        assert_eq!(e["status"], 400);
        assert!(e["type"].is_null());
        assert!(e["message"].as_str().unwrap().contains("Azure OpenAI's content management policy"), "{e}");
        assert_eq!(e["innererror"]["code"], "ResponsibleAIPolicyViolation");
        assert_eq!(e["innererror"]["content_filter_result"]["violence"]["filtered"], true);
        // `content_filter` names Azure's shape on any route.
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~error_code=content_filter")).await;
        assert_eq!(r.json()["error"]["innererror"]["code"], "ResponsibleAIPolicyViolation");
        // Context length reads the same on Azure as on OpenAI.
        let path = "/openai/deployments/gpt4o~error_code=context_length_exceeded/chat/completions?api-version=2024-10-21";
        let r = raw::post(mock.addr, path, &[], &chat("ignored")).await;
        assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    }

    #[tokio::test]
    async fn fail_every_counts_requests_per_deployment_end_to_end() {
        let mock = MockLlm::start().await.unwrap();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(
                raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~fail_every=2,status=503"))
                    .await
                    .status,
            );
        }
        assert_eq!(statuses, [200, 503, 200, 503]);
        let r = raw::post(
            mock.addr,
            "/v1/chat/completions",
            &[],
            &chat("m~fail_every=2,error_code=context_length_exceeded"),
        )
        .await;
        assert_eq!(r.status, 200, "its own count: the first request succeeds");
    }

    #[tokio::test]
    async fn every_answer_carries_openais_rate_limit_headers() {
        let mock = MockLlm::start().await.unwrap();
        let limits = |r: &raw::RawResponse| {
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
            ]
            .map(|name| r.header(name).map(str::to_owned))
        };
        let some = |v: [&str; 4]| v.map(|s| Some(s.to_owned()));
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m")).await;
        assert_eq!(limits(&r), some(["1000", "999", "1000000", "999000"]), "by default: one request used");
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~ratelimit_remaining=5")).await;
        assert_eq!(limits(&r), some(["1000", "5", "1000000", "5000"]));
        let stream = json!({"model": "m~ratelimit_remaining=2,ratelimit_limit=10", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]});
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &stream.to_string()).await;
        assert_eq!(limits(&r), some(["10", "2", "10000", "2000"]), "streams too");
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~status=429")).await;
        assert_eq!((r.status, r.header("x-ratelimit-remaining-requests")), (429, Some("0")), "a 429 is out");
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &chat("m~ratelimit_limit=0")).await;
        assert_eq!(limits(&r), [None, None, None, None], "0 turns them off");
        let path = "/openai/deployments/gpt4o~ratelimit_remaining=7/chat/completions?api-version=2024-10-21";
        let r = raw::post(mock.addr, path, &[], &chat("ignored")).await;
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("7"), "Azure's routes");
        let embed = json!({"model": "e~ratelimit_remaining=1", "input": "hi"}).to_string();
        let r = raw::post(mock.addr, "/v1/embeddings", &[], &embed).await;
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("1"), "embeddings");
    }
}
