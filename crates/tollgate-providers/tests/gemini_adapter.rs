//! The Gemini adapter against mock-llm's Gemini routes, over real HTTP on 127.0.0.1.

#![expect(clippy::unwrap_used, reason = "shared test helpers: a failed setup must fail the test loudly")]

use std::time::Duration;

use futures::StreamExt;
use mock_llm::{Knobs, MockLlm};
use serde_json::{Value, json};
use tollgate_providers::gemini::GeminiAdapter;
use tollgate_types::ports::{CallCtx, ProviderAdapter, ProviderError, ProviderErrorKind};
use tollgate_types::{ChatChunk, ChatRequest, FinishReason};

mod common;

use common::{KEY, call, request, settings, text_of};

fn adapter(mock: &MockLlm) -> GeminiAdapter {
    GeminiAdapter::new(settings(mock, KEY, ("x-extra", "yes"))).unwrap()
}

fn hello() -> ChatRequest {
    request(json!({"model": "alias", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello there"}
    ]}))
}

fn weather_tools() -> ChatRequest {
    request(json!({"model": "alias", "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}))
}

/// Every item of a stream, the error (if any) last.
async fn collect(
    adapter: &GeminiAdapter,
    req: &ChatRequest,
    call: &CallCtx,
) -> (Vec<ChatChunk>, Option<ProviderError>) {
    let mut stream = adapter.chat_stream(req, call).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap() {
        match item {
            Ok(c) => chunks.push(c),
            Err(e) => {
                assert!(stream.next().await.is_none(), "an error must be the last item");
                return (chunks, Some(e));
            }
        }
    }
    (chunks, None)
}

async fn chat_err(mock: &MockLlm, model: &str) -> ProviderError {
    adapter(mock).chat(&hello(), &call(model)).await.unwrap_err()
}

#[tokio::test]
async fn non_stream_text_with_usage() {
    let mock = MockLlm::start().await.unwrap();
    let resp = adapter(&mock).chat(&hello(), &call("gemini-2.5-flash")).await.unwrap();
    assert_eq!(resp.model, "gemini-2.5-flash");
    assert_eq!(resp.id, "mock-gemini-response");
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: hello there"));
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
    let usage = resp.usage.unwrap();
    // "You are terse." + "hello there" = 5 words; "mock: hello there" = 3.
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (5, 3, 8));

    let reqs = mock.requests();
    let r = &reqs[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r.header("x-goog-api-key"), Some(KEY));
    assert_eq!(r.header("x-extra"), Some("yes"));
    assert!(r.query.as_deref().is_none_or(|q| !q.contains(KEY)), "the key never goes into the URL");
}

#[tokio::test]
async fn system_prompt_goes_to_the_system_instruction() {
    let mock = MockLlm::start().await.unwrap();
    adapter(&mock).chat(&hello(), &call("gemini-2.5-flash")).await.unwrap();
    let body = &mock.requests()[0].body;
    assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "You are terse."}]}));
    assert_eq!(body["contents"], json!([{"role": "user", "parts": [{"text": "hello there"}]}]));
}

#[tokio::test]
async fn stream_text_finish_and_usage() {
    let mock = MockLlm::start().await.unwrap();
    let (chunks, err) = collect(&adapter(&mock), &hello(), &call("gemini-2.5-flash")).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(mock.requests()[0].path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(mock.requests()[0].query.as_deref(), Some("alt=sse"));
    assert_eq!(chunks[0].choices[0].delta.role, Some(tollgate_types::Role::Assistant));
    assert_eq!(text_of(&chunks), "mock: hello there");
    let finish = chunks.iter().find_map(|c| c.choices.first()?.finish_reason);
    assert_eq!(finish, Some(FinishReason::Stop));
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage.unwrap().total_tokens, 8);
}

#[tokio::test]
async fn stream_truncated_by_max_tokens_finishes_with_length() {
    let mock = MockLlm::start().await.unwrap();
    let mut req = hello();
    req.max_tokens = Some(2);
    let (chunks, err) = collect(&adapter(&mock), &req, &call("gemini-2.5-flash")).await;
    assert!(err.is_none());
    assert_eq!(text_of(&chunks), "mock: hello ");
    assert_eq!(chunks.iter().find_map(|c| c.choices.first()?.finish_reason), Some(FinishReason::Length));
}

#[tokio::test]
async fn tools_non_stream_and_the_follow_up_turn() {
    let mock = MockLlm::start().await.unwrap();
    let a = adapter(&mock);
    let mut req = weather_tools();
    let resp = a.chat(&req, &call("gemini-2.5-flash")).await.unwrap();
    let choice = &resp.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    let calls = choice.message.tool_calls.clone().unwrap();
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].function.arguments).unwrap(),
        json!({"city": "Paris"})
    );
    let body = &mock.requests()[0].body;
    assert_eq!(body["tools"][0]["functionDeclarations"][0]["name"], "get_weather");

    // The client answers the call; the mock then answers with text.
    req.messages.push(serde_json::from_value(json!({"role": "assistant", "tool_calls": calls})).unwrap());
    req.messages.push(
        serde_json::from_value(json!({"role": "tool", "tool_call_id": calls[0].id, "content": "21 degrees"}))
            .unwrap(),
    );
    let resp = a.chat(&req, &call("gemini-2.5-flash")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: weather in Paris?"));
    let body = &mock.requests()[1].body;
    assert_eq!(
        body["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "21 degrees"}}}]})
    );
}

#[tokio::test]
async fn tools_stream_reassembles_the_call() {
    let mock = MockLlm::start().await.unwrap();
    let mut req = weather_tools();
    req.tool_choice = Some(serde_json::from_value(json!("required")).unwrap());
    let (chunks, err) = collect(&adapter(&mock), &req, &call("gemini-2.5-flash")).await;
    assert!(err.is_none(), "{err:?}");
    let mut name = String::new();
    let mut args = String::new();
    for d in chunks.iter().filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref()).flatten() {
        assert_eq!(d.index, 0);
        name.push_str(d.function.as_ref().and_then(|f| f.name.as_deref()).unwrap_or_default());
        args.push_str(d.function.as_ref().and_then(|f| f.arguments.as_deref()).unwrap_or_default());
    }
    assert_eq!(name, "get_weather");
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "Paris"}));
    assert_eq!(chunks.iter().find_map(|c| c.choices.first()?.finish_reason), Some(FinishReason::ToolCalls));
    assert!(chunks.last().unwrap().usage.is_some());
    assert_eq!(mock.requests()[0].body["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
}

#[tokio::test]
async fn a_data_url_image_arrives_as_inline_data() {
    let mock = MockLlm::start().await.unwrap();
    let req = request(json!({"model": "alias", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    ]}]}));
    let resp = adapter(&mock).chat(&req, &call("gemini-2.5-flash")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: what is this [1 image(s)]"));
    assert_eq!(
        mock.requests()[0].body["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let mock = MockLlm::start().await.unwrap();
    let e = chat_err(&mock, "gemini-2.5-flash~status=429,retry_after=3").await;
    assert_eq!(e.kind, ProviderErrorKind::RateLimited);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
    assert!(e.retryable());
}

#[tokio::test]
async fn a_stream_refused_before_it_starts_fails_the_call_itself() {
    let mock = MockLlm::start().await.unwrap();
    let e = adapter(&mock)
        .chat_stream(&hello(), &call("gemini-2.5-flash~status=429,retry_after=2"))
        .await
        .err()
        .unwrap();
    assert_eq!((e.kind, e.retry_after), (ProviderErrorKind::RateLimited, Some(Duration::from_secs(2))));
}

#[tokio::test]
async fn server_errors_and_overload_classify() {
    let mock = MockLlm::start().await.unwrap();
    let e = chat_err(&mock, "gemini-2.5-flash~status=500").await;
    assert_eq!((&e.kind, e.message.as_str()), (&ProviderErrorKind::Server, "mock error 500"));
    let e = chat_err(&mock, "gemini-2.5-flash~status=503").await;
    assert_eq!(e.kind, ProviderErrorKind::Overloaded);
}

#[tokio::test]
async fn bad_requests_carry_gemini_s_message() {
    let mock = MockLlm::start().await.unwrap();
    let e = chat_err(&mock, "gemini-2.5-flash~status=400").await;
    assert_eq!((&e.kind, e.message.as_str()), (&ProviderErrorKind::BadRequest, "mock error 400"));
    assert!(!e.retryable());
    // The mock refuses what Gemini refuses (here an OpenAI-shaped body), in Gemini's error shape,
    // so a bad translation would fail the tests above.
    let raw = reqwest::Client::new()
        .post(format!("{}/v1beta/models/g:generateContent", mock.base_url()))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn garbage_is_an_invalid_response() {
    let mock = MockLlm::start().await.unwrap();
    let e = chat_err(&mock, "gemini-2.5-flash~garbage=true").await;
    assert_eq!(e.kind, ProviderErrorKind::InvalidResponse);
}

#[tokio::test]
async fn a_hang_times_out_at_the_first_byte_deadline() {
    let mock = MockLlm::start().await.unwrap();
    let mut ctx = call("gemini-2.5-flash~hang=true");
    ctx.first_byte_timeout = Duration::from_millis(200);
    let started = tokio::time::Instant::now();
    let e = adapter(&mock).chat(&hello(), &ctx).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
    let e = adapter(&mock).chat_stream(&hello(), &ctx).await.err().unwrap();
    assert_eq!(e.kind, ProviderErrorKind::Timeout);
}

#[tokio::test]
async fn a_disconnect_mid_stream_ends_with_an_error() {
    let mock = MockLlm::start().await.unwrap();
    // The delay lets the mock flush the headers and first event before it cuts the connection;
    // without it the cut can come before the headers, which is a different failure.
    let (chunks, err) =
        collect(&adapter(&mock), &hello(), &call("gemini-2.5-flash~disconnect_after=1,chunk_delay_ms=50"))
            .await;
    assert_eq!(text_of(&chunks), "mock: ");
    let e = err.expect("the stream must end with an error");
    assert!(e.retryable(), "{e:?}");
    assert!(chunks.iter().all(|c| c.usage.is_none()));
}

#[tokio::test]
async fn a_wrong_key_is_auth_and_the_key_never_leaks() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_knobs(Knobs { require_key: Some("the-right-key".into()), ..Knobs::default() });
    let e = chat_err(&mock, "gemini-2.5-flash").await;
    assert_eq!(e.kind, ProviderErrorKind::Auth);
    assert!(e.message.contains("API key not valid"), "{}", e.message);
    assert!(!e.message.contains(KEY) && !format!("{e:?}").contains(KEY));
    let e = adapter(&mock).chat_stream(&hello(), &call("gemini-2.5-flash")).await.err().unwrap();
    assert_eq!(e.kind, ProviderErrorKind::Auth);
    assert!(!format!("{e} {e:?}").contains(KEY));
}

#[tokio::test]
async fn unsupported_requests_fail_before_any_call() {
    let mock = MockLlm::start().await.unwrap();
    let mut req = hello();
    req.n = Some(2);
    let e = adapter(&mock).chat(&req, &call("gemini-2.5-flash")).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::BadRequest);
    let e = adapter(&mock).chat(&hello(), &call("bad/model")).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::BadRequest);
    assert!(mock.requests().is_empty());
}
