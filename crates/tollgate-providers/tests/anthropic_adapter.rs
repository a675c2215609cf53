//! The Anthropic adapter against mock-llm's Anthropic routes over real HTTP: text and tools,
//! JSON and SSE, images, system placement, and every failure class the router relies on.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers outside #[test] functions fail the test on setup errors, as the tests do"
)]

use std::time::Duration;

use futures::StreamExt;
use mock_llm::{Knobs, MockLlm};
use serde_json::{Value, json};
use tollgate_providers::anthropic::AnthropicAdapter;
use tollgate_providers::{Credential, ProviderSettings};
use tollgate_types::ports::{CallCtx, ProviderAdapter, ProviderError, ProviderErrorKind, ProviderQuota};
use tollgate_types::{ChatChunk, ChatRequest, FinishReason, ToolKind};

mod common;

use common::{KEY, call, request, settings, text_of};

fn adapter(mock: &MockLlm) -> AnthropicAdapter {
    AnthropicAdapter::new(settings(mock, KEY, ("x-team", "search"))).unwrap()
}

fn user(text: &str) -> ChatRequest {
    request(json!({"model": "alias", "messages": [{"role": "user", "content": text}]}))
}

fn weather_tools(extra: Value) -> ChatRequest {
    let mut body = json!({
        "model": "alias",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "get_time"}}
        ]
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    request(body)
}

/// All items of a stream, failing the test if it does not end within 5 s.
async fn collect(
    a: &AnthropicAdapter,
    req: &ChatRequest,
    c: &CallCtx,
) -> (Vec<ChatChunk>, Option<ProviderError>) {
    let mut stream = a.chat_stream(req, c).await.unwrap();
    let mut chunks = Vec::new();
    let drain = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => chunks.push(chunk),
                Err(e) => return Some(e),
            }
        }
        None
    };
    let err = tokio::time::timeout(Duration::from_secs(5), drain).await.expect("the stream hung");
    (chunks, err)
}

async fn chat_err(model: &str) -> ProviderError {
    let mock = MockLlm::start().await.unwrap();
    adapter(&mock).chat(&user("hi"), &call(model)).await.unwrap_err()
}

#[tokio::test]
async fn non_stream_text_goes_to_v1_messages_with_the_anthropic_headers() {
    let mock = MockLlm::start().await.unwrap();
    let resp = adapter(&mock).chat(&user("hello there"), &call("claude-test")).await.unwrap();
    assert_eq!(resp.id, "msg_mock");
    assert_eq!(resp.model, "claude-test");
    let choice = &resp.choices[0];
    assert_eq!(choice.message.content.as_deref(), Some("mock: hello there"));
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let usage = resp.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (2, 3, 5));
    assert_eq!(usage.cached_tokens(), 0);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("x-team"), Some("search"));
    assert!(r.header("authorization").is_none());
    assert_eq!(r.body["model"], "claude-test");
    assert_eq!(r.body["max_tokens"], 4096);
}

#[tokio::test]
async fn a_max_tokens_cut_answer_finishes_with_length() {
    let mock = MockLlm::start().await.unwrap();
    let mut req = user("one two three four");
    req.max_tokens = Some(2);
    let resp = adapter(&mock).chat(&req, &call("claude-test")).await.unwrap();
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(mock.requests()[0].body["max_tokens"], 2);
}

#[tokio::test]
async fn stream_text_yields_role_text_finish_and_a_final_usage_chunk() {
    let mock = MockLlm::start().await.unwrap();
    let a = adapter(&mock);
    let (chunks, err) = collect(&a, &user("stream this please"), &call("claude-test")).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(chunks[0].choices[0].delta.role, Some(tollgate_types::Role::Assistant));
    assert_eq!(text_of(&chunks), "mock: stream this please");
    let finish: Vec<_> = chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.finish_reason).collect();
    assert_eq!(finish, vec![FinishReason::Stop]);
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
    assert!(chunks.iter().all(|c| c.id == "msg_mock" && c.model == "claude-test"));
    assert_eq!(mock.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn tools_non_stream_then_the_tool_result_round_trip() {
    let mock = MockLlm::start().await.unwrap();
    let a = adapter(&mock);
    let req =
        weather_tools(json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}));
    let resp = a.chat(&req, &call("claude-test")).await.unwrap();
    let choice = &resp.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.message.content, None);
    let calls = choice.message.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].function.name.as_str(), calls[0].kind), ("get_weather", ToolKind::Function));
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].function.arguments).unwrap(),
        json!({"city": "Paris"})
    );
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "get_weather"}));
    assert_eq!(sent["tools"][1]["input_schema"], json!({"type": "object", "properties": {}}));

    // The answer goes back as history; the mock rejects a tool_result without its tool_use.
    let mut follow_up = req.clone();
    follow_up.messages.push(tollgate_types::Message {
        tool_calls: Some(calls.clone()),
        ..tollgate_types::Message::text(tollgate_types::Role::Assistant, "")
    });
    follow_up.messages.push(tollgate_types::Message {
        tool_call_id: Some(calls[0].id.clone()),
        ..tollgate_types::Message::text(tollgate_types::Role::Tool, "18 degrees")
    });
    let resp = a.chat(&follow_up, &call("claude-test")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: What is the weather in Paris?"));
    let sent = &mock.requests()[1].body;
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], calls[0].id.as_str());
}

#[tokio::test]
async fn tools_stream_reassembles_names_and_arguments_per_index() {
    let mock = MockLlm::start().await.unwrap();
    let a = adapter(&mock);
    let req = weather_tools(json!({"tool_choice": "required", "parallel_tool_calls": true}));
    let (chunks, err) = collect(&a, &req, &call("claude-test")).await;
    assert!(err.is_none(), "{err:?}");
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for d in chunks.iter().flat_map(|c| &c.choices).flat_map(|c| c.delta.tool_calls.iter().flatten()) {
        let index = usize::try_from(d.index).unwrap();
        if index == calls.len() {
            calls.push((d.id.clone().unwrap(), String::new(), String::new()));
        }
        let f = d.function.as_ref().unwrap();
        if let Some(name) = &f.name {
            calls[index].1.push_str(name);
        }
        calls[index].2.push_str(f.arguments.as_deref().unwrap_or(""));
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(calls[1].1, "get_time");
    for (_, _, args) in &calls {
        assert_eq!(serde_json::from_str::<Value>(args).unwrap(), json!({"city": "Paris"}));
    }
    let finish: Vec<_> = chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.finish_reason).collect();
    assert_eq!(finish, vec![FinishReason::ToolCalls]);
    assert_eq!(chunks.last().unwrap().usage.unwrap().completion_tokens, 20);
    assert_eq!(mock.requests()[0].body["tool_choice"], json!({"type": "any"}));
}

#[tokio::test]
async fn a_data_url_image_reaches_anthropic_as_an_inline_base64_block() {
    let mock = MockLlm::start().await.unwrap();
    let req = request(json!({"model": "alias", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}}
    ]}]}));
    let resp = adapter(&mock).chat(&req, &call("claude-test")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: describe [1 image(s)]"));
    assert_eq!(
        mock.requests()[0].body["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgoAAAANSUhEUg=="}})
    );
}

#[tokio::test]
async fn system_and_developer_messages_go_to_the_top_level_system_field() {
    let mock = MockLlm::start().await.unwrap();
    let req = request(json!({"model": "alias", "messages": [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "hello"},
        {"role": "developer", "content": "Stay in character."},
        {"role": "user", "content": "again"}
    ]}));
    let resp = adapter(&mock).chat(&req, &call("claude-test")).await.unwrap();
    assert_eq!(resp.choices[0].message.content.as_deref(), Some("mock: helloagain"));
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["system"], "You are a pirate.\n\nStay in character.");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "again"}]}])
    );
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let err = chat_err("claude~status=429,retry_after=3").await;
    assert_eq!(err.kind.clone(), ProviderErrorKind::RateLimited);
    assert_eq!(err.status, Some(429));
    assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(err.message, "mock error 429");
    assert!(err.retryable());
}

#[tokio::test]
async fn anthropics_rate_limit_headers_reach_the_call_context() {
    let mock = MockLlm::start().await.unwrap();
    let c = call("claude~ratelimit_limit=50,ratelimit_remaining=10");
    adapter(&mock).chat(&user("hi"), &c).await.unwrap();
    // The tightest token limit: the mock's output tokens (10000 of 50000 / 5), the same share.
    let expected = ProviderQuota { requests: Some((10, 50)), tokens: Some((10_000, 50_000)) };
    assert_eq!(c.quota.take(), Some(expected));
    let c = call("claude~status=429,ratelimit_limit=50");
    assert_eq!(adapter(&mock).chat(&user("hi"), &c).await.unwrap_err().kind, ProviderErrorKind::RateLimited);
    assert_eq!(c.quota.take().and_then(|q| q.requests), Some((0, 50)));
}

#[tokio::test]
async fn server_errors_and_overload_classify() {
    assert_eq!(chat_err("claude~status=500").await.kind, ProviderErrorKind::Server);
    let overloaded = chat_err("claude~status=529").await;
    assert_eq!((overloaded.kind.clone(), overloaded.status), (ProviderErrorKind::Overloaded, Some(529)));
}

#[tokio::test]
async fn bad_requests_carry_the_upstream_message() {
    let err = chat_err("claude~status=400").await;
    assert_eq!((err.kind.clone(), err.message.as_str()), (ProviderErrorKind::BadRequest, "mock error 400"));
    assert!(!err.retryable());
    // The mock rejects what Anthropic rejects; its message comes through as it was phrased.
    let mock = MockLlm::start().await.unwrap();
    let mut req = user("hi");
    req.temperature = Some(1.5);
    let err = adapter(&mock).chat(&req, &call("claude-test")).await.unwrap_err();
    assert_eq!(err.kind.clone(), ProviderErrorKind::BadRequest);
    assert_eq!(err.message, "temperature: Input should be less than or equal to 1");
}

#[tokio::test]
async fn garbage_is_an_invalid_response_in_json_and_in_a_stream() {
    assert_eq!(chat_err("claude~garbage").await.kind, ProviderErrorKind::InvalidResponse);
    let mock = MockLlm::start().await.unwrap();
    let (chunks, err) = collect(&adapter(&mock), &user("hi"), &call("claude~garbage")).await;
    assert_eq!(text_of(&chunks), "mock: hi");
    assert_eq!(err.unwrap().kind, ProviderErrorKind::InvalidResponse);
}

#[tokio::test]
async fn a_hanging_upstream_times_out_at_the_first_byte_deadline() {
    let mock = MockLlm::start().await.unwrap();
    let mut c = call("claude~hang");
    c.first_byte_timeout = Duration::from_millis(200);
    let err = adapter(&mock).chat(&user("hi"), &c).await.unwrap_err();
    assert_eq!(err.kind.clone(), ProviderErrorKind::Timeout);
    let err = adapter(&mock).chat_stream(&user("hi"), &c).await.err().unwrap();
    assert_eq!(err.kind.clone(), ProviderErrorKind::Timeout);
}

#[tokio::test]
async fn a_disconnect_mid_stream_ends_with_an_error_item() {
    let mock = MockLlm::start().await.unwrap();
    // The delay makes each event its own write, so the cut comes after the headers and a few events.
    let model = "claude~disconnect_after=5,chunk_delay_ms=20";
    let (chunks, err) = collect(&adapter(&mock), &user("a b c d e f"), &call(model)).await;
    assert_eq!(text_of(&chunks), "mock: a ");
    assert!(chunks.iter().all(|c| c.usage.is_none()), "a cut stream must not look complete");
    let err = err.expect("a cut stream must end with an error");
    // reqwest reports a body cut mid-chunk as a decode error, which `http::transport_error`
    // classifies as an invalid response; either way the router may retry it.
    assert!(matches!(err.kind, ProviderErrorKind::Connect | ProviderErrorKind::InvalidResponse), "{err:?}");
    assert!(err.retryable());
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_that_never_shows_the_key() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_knobs(Knobs { require_key: Some("the-right-key".to_owned()), ..Knobs::default() });
    let err = adapter(&mock).chat(&user("hi"), &call("claude-test")).await.unwrap_err();
    assert_eq!((err.kind.clone(), err.status), (ProviderErrorKind::Auth, Some(401)));
    assert_eq!(err.message, "invalid x-api-key");
    assert!(!err.to_string().contains(KEY) && !format!("{err:?}").contains(KEY));
    let err = adapter(&mock).chat_stream(&user("hi"), &call("claude-test")).await.err().unwrap();
    assert_eq!(err.kind.clone(), ProviderErrorKind::Auth);
    assert!(!format!("{err:?}").contains(KEY));
}

#[tokio::test]
async fn a_missing_credential_fails_before_any_request() {
    let mock = MockLlm::start().await.unwrap();
    let settings = ProviderSettings {
        base_url: mock.base_url(),
        credential: Credential::Missing { env_var: "ANTHROPIC_API_KEY".to_owned() },
        headers: Vec::new(),
        api_version: Some("2023-06-01".to_owned()),
        http: tollgate_providers::http::build_client(Duration::from_secs(2)).unwrap(),
    };
    let err = AnthropicAdapter::new(settings).unwrap().chat(&user("hi"), &call("claude")).await.unwrap_err();
    assert_eq!(
        err.kind.clone(),
        ProviderErrorKind::MissingCredential { env_var: "ANTHROPIC_API_KEY".to_owned() }
    );
    assert!(mock.requests().is_empty());
}
