//! The Cohere adapter against the mock upstream over real HTTP: translation both ways (text,
//! tools, images, system prompt, embeddings), streaming, and every failure class.

#![expect(clippy::unwrap_used, reason = "the helpers below fail the calling test on purpose")]

use std::time::Duration;

use futures::StreamExt;
use mock_llm::{Knobs, MockLlm};
use serde_json::{Value, json};
use tollgate_providers::cohere::CohereAdapter;
use tollgate_types::ports::{ProviderAdapter, ProviderError, ProviderErrorKind};
use tollgate_types::{ChatChunk, ChatRequest, EmbeddingsRequest, FinishReason, Usage};

mod common;

use common::{KEY, call, request, settings, text_of};

fn adapter(mock: &MockLlm) -> CohereAdapter {
    adapter_with(mock, KEY)
}

fn adapter_with(mock: &MockLlm, key: &str) -> CohereAdapter {
    CohereAdapter::new(settings(mock, key, ("x-client-name", "tollgate"))).unwrap()
}

fn hello() -> ChatRequest {
    request(json!({"model": "alias", "messages": [{"role": "user", "content": "hello there"}]}))
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

/// The items of a stream, which must end (never hang).
async fn collect(
    adapter: &CohereAdapter,
    req: &ChatRequest,
    model: &str,
) -> Vec<Result<ChatChunk, ProviderError>> {
    let stream = adapter.chat_stream(req, &call(model)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), stream.collect()).await.unwrap()
}

async fn chat_error(mock: &MockLlm, model: &str) -> ProviderError {
    adapter(mock).chat(&hello(), &call(model)).await.unwrap_err()
}

#[tokio::test]
async fn a_text_answer_round_trips() {
    let mock = MockLlm::start().await.unwrap();
    let resp = adapter(&mock).chat(&hello(), &call("command-a-03-2025")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: hello there"));
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(resp.usage, Some(Usage::new(2, 3, Some(0))));
    assert_eq!(resp.model, "command-a-03-2025");
    assert!(!resp.id.is_empty());

    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(sent.header("authorization"), Some("Bearer test-key"));
    assert_eq!(sent.header("x-client-name"), Some("tollgate"));
    assert_eq!(sent.body["model"], "command-a-03-2025");
    assert_eq!(sent.body["stream"], false);
}

#[tokio::test]
async fn sampling_settings_use_coheres_names_and_max_tokens_truncates() {
    let mock = MockLlm::start().await.unwrap();
    let req =
        request(json!({"model": "alias", "messages": [{"role": "user", "content": "one two three four"}],
        "top_p": 0.5, "temperature": 0.2, "stop": ["END"], "max_tokens": 2, "seed": 3,
        "response_format": {"type": "json_object"}}));
    let resp = adapter(&mock).chat(&req, &call("command-r")).await.unwrap();
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Length));
    let body = &mock.requests()[0].body;
    assert_eq!(body["p"], 0.5);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["max_tokens"], 2);
    assert_eq!(body["seed"], 3);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert!(body.get("top_p").is_none() && body.get("stop").is_none());
}

#[tokio::test]
async fn a_text_stream_gives_text_finish_and_usage() {
    let mock = MockLlm::start().await.unwrap();
    let items = collect(&adapter(&mock), &hello(), "command-a-03-2025").await;
    let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(chunks[0].choices[0].delta.role, Some(tollgate_types::Role::Assistant));
    assert_eq!(text_of(&chunks), "mock: hello there");
    let finish = chunks.iter().find_map(|c| c.choices.first()?.finish_reason);
    assert_eq!(finish, Some(FinishReason::Stop));
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage, Some(Usage::new(2, 3, Some(0))));
    assert_eq!(mock.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn tools_round_trip_without_streaming() {
    let mock = MockLlm::start().await.unwrap();
    let req =
        request(json!({"model": "alias", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools(), "tool_choice": "required"}));
    let resp = adapter(&mock).chat(&req, &call("command-a-03-2025")).await.unwrap();
    let calls = resp.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let body = &mock.requests()[0].body;
    assert_eq!(body["tool_choice"], "REQUIRED");
    assert_eq!(body["tools"][0]["function"]["parameters"]["required"], json!(["city"]));

    // The follow-up turn carries the call and its result; the mock then answers with text.
    let follow_up = request(json!({"model": "alias", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": calls[0].id, "type": "function",
            "function": {"name": "get_weather", "arguments": calls[0].function.arguments}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "21C and sunny"}]}));
    let resp = adapter(&mock).chat(&follow_up, &call("command-a-03-2025")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: Weather in Paris?"));
    let sent = &mock.requests()[1].body["messages"];
    assert_eq!(sent[1]["tool_calls"][0]["id"], calls[0].id.as_str());
    assert_eq!(sent[2], json!({"role": "tool", "tool_call_id": calls[0].id, "content": "21C and sunny"}));
}

#[tokio::test]
async fn a_named_tool_choice_offers_only_that_tool() {
    let mock = MockLlm::start().await.unwrap();
    let mut tools = weather_tools();
    tools.as_array_mut().unwrap().push(json!({"type": "function", "function": {"name": "get_time"}}));
    let req = request(json!({"model": "alias", "messages": [{"role": "user", "content": "time?"}],
        "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_time"}}}));
    let resp = adapter(&mock).chat(&req, &call("command-a-03-2025")).await.unwrap();
    let calls = resp.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function.name, "get_time");
    assert_eq!(mock.requests()[0].body["tools"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_tool_call_stream_reassembles_name_and_arguments() {
    let mock = MockLlm::start().await.unwrap();
    let req =
        request(json!({"model": "alias", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools()}));
    let items = collect(&adapter(&mock), &req, "command-a-03-2025").await;
    let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
    let deltas: Vec<_> = chunks
        .iter()
        .filter_map(|c| c.choices.first())
        .filter_map(|c| c.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    let first = deltas[0];
    assert_eq!(first.id.as_deref(), Some("call_mock_0"));
    assert_eq!(first.function.as_ref().unwrap().name.as_deref(), Some("get_weather"));
    let args: String = deltas.iter().filter_map(|d| d.function.as_ref()?.arguments.as_deref()).collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    assert!(deltas.len() >= 3, "arguments arrive in fragments");
    let finish = chunks.iter().find_map(|c| c.choices.first()?.finish_reason);
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    assert_eq!(chunks.last().unwrap().usage.map(|u| u.completion_tokens), Some(10));
}

#[tokio::test]
async fn a_data_url_image_reaches_cohere_inline() {
    let mock = MockLlm::start().await.unwrap();
    let url = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let req = request(json!({"model": "alias", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": url}}]}]}));
    let resp = adapter(&mock).chat(&req, &call("command-a-vision-07-2025")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: what is this [1 image(s)]"));
    let content = &mock.requests()[0].body["messages"][0]["content"];
    assert_eq!(content[1], json!({"type": "image_url", "image_url": {"url": url}}));
}

#[tokio::test]
async fn system_prompts_lead_the_conversation() {
    let mock = MockLlm::start().await.unwrap();
    let req = request(json!({"model": "alias", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": "Answer in French."}]}));
    adapter(&mock).chat(&req, &call("command-a-03-2025")).await.unwrap();
    assert_eq!(
        mock.requests()[0].body["messages"],
        json!([{"role": "system", "content": "Be terse.\n\nAnswer in French."}, {"role": "user", "content": "hi"}])
    );
}

#[tokio::test]
async fn embeddings_round_trip() {
    let mock = MockLlm::start().await.unwrap();
    let req: EmbeddingsRequest =
        serde_json::from_value(json!({"model": "e", "input": ["a b", "c"], "dimensions": 4})).unwrap();
    let resp = adapter(&mock).embeddings(&req, &call("embed-v4.0")).await.unwrap();
    assert_eq!(resp.data.len(), 2);
    assert_eq!(resp.data[0].embedding.as_array().unwrap().len(), 4);
    assert_eq!(resp.usage.prompt_tokens, 3);
    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v2/embed");
    assert_eq!(sent.body["input_type"], "search_document");
    assert_eq!(sent.body["embedding_types"], json!(["float"]));
}

#[tokio::test]
async fn a_429_is_rate_limited_with_retry_after() {
    let mock = MockLlm::start().await.unwrap();
    let e = chat_error(&mock, "command-r~status=429,retry_after=3").await;
    assert_eq!(e.kind, ProviderErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(e.status, Some(429));
}

#[tokio::test]
async fn a_500_is_a_server_error() {
    let mock = MockLlm::start().await.unwrap();
    let e = chat_error(&mock, "command-r~status=500").await;
    assert_eq!(e.kind, ProviderErrorKind::Server);
    assert_eq!(e.message, "mock error 500");
}

#[tokio::test]
async fn a_400_carries_coheres_message() {
    let mock = MockLlm::start().await.unwrap();
    let e = chat_error(&mock, "command-r~status=400").await;
    assert_eq!(e.kind, ProviderErrorKind::BadRequest);
    assert_eq!(e.message, "mock error 400");

    // A request the real Cohere rejects: the mock's validation message comes through.
    let req = request(json!({"model": "alias", "messages": [{"role": "user", "content": ""}]}));
    let e = adapter(&mock).chat(&req, &call("command-r")).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::BadRequest);
    assert!(e.message.contains("must not be empty"), "{}", e.message);
}

#[tokio::test]
async fn a_498_is_an_auth_error() {
    let mock = MockLlm::start().await.unwrap();
    assert_eq!(chat_error(&mock, "command-r~status=498").await.kind, ProviderErrorKind::Auth);
}

#[tokio::test]
async fn a_garbage_body_is_an_invalid_response() {
    let mock = MockLlm::start().await.unwrap();
    assert_eq!(chat_error(&mock, "command-r~garbage").await.kind, ProviderErrorKind::InvalidResponse);
}

#[tokio::test]
async fn a_hanging_upstream_times_out() {
    let mock = MockLlm::start().await.unwrap();
    let mut ctx = call("command-r~hang");
    ctx.first_byte_timeout = Duration::from_millis(200);
    let e = tokio::time::timeout(Duration::from_secs(5), adapter(&mock).chat(&hello(), &ctx))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Timeout);
}

#[tokio::test]
async fn a_disconnect_mid_stream_ends_with_an_error() {
    let mock = MockLlm::start().await.unwrap();
    let items = collect(&adapter(&mock), &hello(), "command-r~disconnect_after=3,chunk_delay_ms=20").await;
    let (last, before) = items.split_last().unwrap();
    assert!(before.iter().all(Result::is_ok));
    assert!(text_of(&before.iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>()).starts_with("mock:"));
    assert!(last.is_err(), "the stream must end with an error, not look complete");
}

#[tokio::test]
async fn a_garbage_body_instead_of_a_stream_is_an_invalid_response() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_knobs(Knobs { garbage: true, ..Knobs::default() });
    let Err(e) = adapter(&mock).chat_stream(&hello(), &call("command-r")).await else {
        panic!("a garbage body must not start a stream");
    };
    assert_eq!(e.kind, ProviderErrorKind::InvalidResponse);
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_and_never_echoed() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_knobs(Knobs { require_key: Some("the-right-key".into()), ..Knobs::default() });
    let secret = "sk-wrong-key-do-not-leak";
    let e = adapter_with(&mock, secret).chat(&hello(), &call("command-r")).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Auth);
    assert_eq!(e.status, Some(401));
    assert!(!e.to_string().contains(secret) && !format!("{e:?}").contains(secret));

    let right = adapter_with(&mock, "the-right-key").chat(&hello(), &call("command-r")).await;
    assert!(right.is_ok());
}
