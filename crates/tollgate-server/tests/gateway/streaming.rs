//! Streaming: chunks flow as they arrive, usage is asked upstream and shown only to clients
//! that asked, mid-stream failures end with an error event, and a client that leaves cancels
//! the upstream call.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::harness::{CONFIG, Harness, sse_data};

fn stream_body(model: &str, include_usage: Option<bool>) -> Value {
    let mut body =
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "one two three"}]});
    if let Some(u) = include_usage {
        body["stream_options"] = json!({"include_usage": u});
    }
    body
}

fn text_of(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn streams_through_each_kind_with_usage_only_when_asked() {
    let h = Harness::start(CONFIG).await;
    for alias in ["openai-chat", "azure-chat", "compat-chat", "echo"] {
        let resp = h.chat(stream_body(alias, None)).await;
        assert_eq!(resp.status(), 200, "{alias}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = sse_data(resp).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{alias}");
        let expected = if alias == "echo" { "one two three" } else { "mock: one two three" };
        assert_eq!(text_of(&events), expected, "{alias}");
        assert!(
            !events.iter().any(|e| e.contains("\"usage\"")),
            "{alias}: usage chunk shown to a client that did not ask"
        );

        let events = sse_data(h.chat(stream_body(alias, Some(true))).await).await;
        let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0, "{alias}: {usage}");
        assert_eq!(usage["choices"], json!([]));
    }
    // The gateway always asks the upstream for usage, to meter the stream.
    for r in h.mock.requests() {
        assert_eq!(r.body["stream_options"]["include_usage"], true, "{}", r.path);
    }
}

#[tokio::test]
async fn tool_call_fragments_stream_through() {
    let h = Harness::start(CONFIG).await;
    let body = json!({"model": "openai-chat", "stream": true,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": "weather?"}]});
    let events = sse_data(h.chat(body).await).await;
    let mut args = String::new();
    let mut name = None;
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let c: Value = serde_json::from_str(e).unwrap();
        if let Some(tc) = c["choices"][0]["delta"]["tool_calls"].get(0) {
            if let Some(n) = tc["function"]["name"].as_str() {
                name = Some(n.to_owned());
            }
            args.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(args, r#"{"city":"Paris"}"#);
}

#[tokio::test]
async fn a_mid_stream_failure_ends_with_an_openai_error_event() {
    let h = Harness::start(CONFIG).await;
    let resp = h.chat(stream_body("breaking", None)).await;
    assert_eq!(resp.status(), 200, "headers were sent before the failure");
    let events =
        tokio::time::timeout(Duration::from_secs(5), sse_data(resp)).await.expect("stream must not hang");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].as_str().unwrap().contains("closed the stream"), "{last}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "a broken stream must not look complete");
}

#[tokio::test]
async fn failures_before_the_first_chunk_are_plain_errors_and_fall_back() {
    let h = Harness::start(CONFIG).await;
    let resp = h.chat(stream_body("rate-limited", None)).await;
    assert_eq!(resp.status(), 429);
    let resp = h.chat(stream_body("fallback", None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-deployment"], "second");
}

#[tokio::test]
async fn chunks_arrive_as_the_upstream_sends_them() {
    let h = Harness::start(CONFIG).await;
    h.mock.set_knobs(mock_llm::Knobs { chunk_delay_ms: 150, ..mock_llm::Knobs::default() });
    let started = tokio::time::Instant::now();
    let resp = h.chat(stream_body("compat-chat", None)).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    while body.next().await.is_some() {}
    let total = started.elapsed();
    // 6 events 150 ms apart: the first must not wait for the rest.
    assert!(first_at < Duration::from_millis(400), "first chunk after {first_at:?}");
    assert!(total >= Duration::from_millis(700), "whole stream took {total:?}");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let h = Harness::start(CONFIG).await;
    h.mock.set_knobs(mock_llm::Knobs { chunk_delay_ms: 200, ..mock_llm::Knobs::default() });
    let resp = h
        .chat(json!({"model": "compat-chat", "stream": true,
        "messages": [{"role": "user", "content": "a b c d e f g h i j k l m n o p q r s t u v w x y z"}]}))
        .await;
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    assert_eq!(h.mock.open_streams(), 1);
    drop(body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while h.mock.open_streams() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream stream is still open after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn translated_kinds_stream_openai_chunks() {
    let h = Harness::start(CONFIG).await;
    for (alias, _) in crate::harness::TRANSLATED {
        let events = sse_data(h.chat(stream_body(alias, Some(true))).await).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{alias}");
        assert_eq!(text_of(&events), "mock: one two three", "{alias}");
        let chunks: Vec<Value> = events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"), "{alias}");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{alias}");
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"), "{alias}");
        let usage = &chunks.last().unwrap()["usage"];
        assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{alias}: {usage}");
    }
}

#[tokio::test]
async fn anthropic_overload_is_a_502_with_the_provider_named() {
    let h = Harness::start(CONFIG).await;
    let resp = h.chat(stream_body("anthropic-overloaded", None)).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("anthropic"), "{body}");
}
