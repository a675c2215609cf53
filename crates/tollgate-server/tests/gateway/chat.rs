//! Non-streaming calls through every OpenAI-family kind and echo: translation, headers,
//! pass-through of unknown fields, embeddings, legacy completions, models.

use serde_json::{Value, json};

use crate::harness::{CONFIG, Harness, PROVIDER_KEY};

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn chat_through_each_openai_family_kind() {
    let h = Harness::start(CONFIG).await;
    for (alias, provider, deployment) in [
        ("openai-chat", "openai", "openai/gpt-4o-mini"),
        ("azure-chat", "azure", "azure/my-gpt4o-deployment"),
        ("compat-chat", "openai_compatible", "compat/llama-3"),
    ] {
        let resp = h.chat(hello(alias)).await;
        assert_eq!(resp.status(), 200, "{alias}");
        assert_eq!(resp.headers()["x-tollgate-provider"], provider);
        assert_eq!(resp.headers()["x-tollgate-deployment"], deployment);
        assert!(!resp.headers()["x-request-id"].is_empty());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "mock: hello there", "{alias}");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["prompt_tokens"], 4);
    }
    let reqs = h.mock.requests();
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("authorization"), Some(format!("Bearer {PROVIDER_KEY}").as_str()));
    assert_eq!(reqs[0].body["model"], "gpt-4o-mini");
    assert_eq!(reqs[1].path, "/openai/deployments/my-gpt4o-deployment/chat/completions");
    assert_eq!(reqs[1].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(reqs[1].header("api-key"), Some(PROVIDER_KEY));
    assert_eq!(reqs[1].header("authorization"), None);
    assert_eq!(reqs[2].header("authorization"), None, "compat provider has no key");
}

#[tokio::test]
async fn request_id_is_taken_from_the_client() {
    let h = Harness::start(CONFIG).await;
    let resp = h
        .post("/v1/chat/completions")
        .header("x-request-id", "my-trace-42")
        .json(&hello("echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "my-trace-42");
    let resp = h.http.get(format!("{}/healthz", h.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers()["x-request-id"].is_empty());
}

#[tokio::test]
async fn unknown_fields_tools_and_formats_pass_through_untouched() {
    let h = Harness::start(CONFIG).await;
    let body = json!({
        "model": "compat-chat",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
        ]}],
        "logit_bias": {"50256": -100}, "top_k": 40, "repetition_penalty": 1.1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}},
        "seed": 7, "stop": ["END"], "max_completion_tokens": 50, "user": "u1", "metadata": {"team": "a"}
    });
    let resp = h.chat(body.clone()).await;
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "mock: what is this [1 image(s)]");
    let sent = &h.mock.requests()[0].body;
    for field in [
        "logit_bias",
        "top_k",
        "repetition_penalty",
        "response_format",
        "seed",
        "stop",
        "max_completion_tokens",
        "user",
        "metadata",
        "messages",
    ] {
        assert_eq!(sent[field], body[field], "{field}");
    }
    assert_eq!(sent["model"], "llama-3");
}

#[tokio::test]
async fn parallel_tool_calls_and_tool_results_round_trip() {
    let h = Harness::start(CONFIG).await;
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    ]);
    let resp = h.chat(json!({"model": "openai-chat", "tools": tools, "messages": [{"role": "user", "content": "weather and time in Paris?"}]})).await;
    let out: Value = resp.json().await.unwrap();
    let calls = out["choices"][0]["message"]["tool_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");

    let resp = h
        .chat(json!({"model": "openai-chat", "tools": tools, "messages": [
            {"role": "user", "content": "weather and time in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_mock_0", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": "noon"}
        ]}))
        .await;
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "mock: weather and time in Paris?");
}

#[tokio::test]
async fn embeddings_completions_and_models() {
    let h = Harness::start(CONFIG).await;
    for alias in ["openai-chat", "azure-chat", "compat-chat", "echo"] {
        let resp = h
            .post("/v1/embeddings")
            .json(&json!({"model": alias, "input": ["a b", "c"], "dimensions": 4}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{alias}");
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out["data"].as_array().unwrap().len(), 2, "{alias}");
        assert_eq!(out["data"][1]["index"], 1);
        assert_eq!(out["data"][0]["embedding"].as_array().unwrap().len(), 4, "{alias}");
    }
    assert!(h.mock.requests().iter().any(|r| r.path == "/openai/deployments/my-gpt4o-deployment/embeddings"));

    let resp = h
        .post("/v1/completions")
        .json(&json!({"model": "compat-chat", "prompt": "once upon", "max_tokens": 5, "echo": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["choices"][0]["text"], "mock: once upon");
    assert_eq!(h.mock.requests().last().unwrap().body["echo"], false);

    let resp =
        h.http.get(format!("{}/v1/models", h.base)).bearer_auth(crate::harness::KEY).send().await.unwrap();
    let out: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = out["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"openai-chat") && ids.contains(&"echo"), "{ids:?}");
    let resp = h
        .http
        .get(format!("{}/v1/models/echo", h.base))
        .bearer_auth(crate::harness::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn fallback_moves_to_the_next_deployment_on_retryable_errors_only() {
    let h = Harness::start(CONFIG).await;
    let resp = h.chat(hello("fallback")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-deployment"], "second");
    assert_eq!(h.mock.requests().len(), 2);

    h.mock.clear_requests();
    let resp = h.chat(hello("rejected")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(h.mock.requests().len(), 1, "a 400 is the request's fault: no other deployment is tried");
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_upstream_errors() {
    let h = Harness::start(CONFIG).await;
    h.chat(hello("compat-chat")).await;
    h.chat(hello("failing")).await;
    let text = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"tollgate_requests_total{endpoint="chat",model="compat-chat",provider="openai_compatible",status="200"}"#), "{text}");
    assert!(text.contains(r#"model="failing",provider="openai_compatible",status="502"}"#), "{text}");
    assert!(text.contains("tollgate_tokens_total{"));
    assert!(text.contains(r#"tollgate_upstream_errors_total{provider="openai_compatible",kind="server"}"#));
    assert!(text.contains("tollgate_request_duration_seconds_bucket{"));
}

#[tokio::test]
async fn translated_kinds_answer_in_openai_shape() {
    let h = Harness::start(CONFIG).await;
    for (alias, provider) in crate::harness::TRANSLATED {
        let resp = h.chat(hello(alias)).await;
        assert_eq!(resp.status(), 200, "{alias}");
        assert_eq!(resp.headers()["x-tollgate-provider"], provider);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["message"]["content"], "mock: hello there", "{alias}: {body}");
        assert_eq!(body["choices"][0]["finish_reason"], "stop", "{alias}");
        assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{alias}: {body}");
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{alias}");
    }
    let paths: Vec<String> = h.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/messages", "/v1beta/models/gemini-2.5-flash:generateContent", "/v2/chat"]);
    let anthropic = &h.mock.requests()[0];
    assert_eq!(anthropic.header("x-api-key"), Some(PROVIDER_KEY));
    assert_eq!(anthropic.body["system"], "be brief", "system prompt moved to Anthropic's field");
}

#[tokio::test]
async fn translated_kinds_do_tools_and_images() {
    let h = Harness::start(CONFIG).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    for (alias, _) in crate::harness::TRANSLATED {
        let resp = h.chat(json!({"model": alias, "tools": tools, "messages": [{"role": "user", "content": "weather in Paris?"}]})).await;
        let out: Value = resp.json().await.unwrap();
        let call = &out["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather", "{alias}: {out}");
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}), "{alias}");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls", "{alias}");

        let resp = h
            .chat(json!({"model": alias, "tools": tools, "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "{\"sky\":\"sunny\"}"}
            ]}))
            .await;
        assert_eq!(resp.status(), 200, "{alias}");
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "mock: weather in Paris?", "{alias}: {out}");

        let resp = h
            .chat(json!({"model": alias, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]}]}))
            .await;
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "mock: describe [1 image(s)]", "{alias}: {out}");
    }
}
