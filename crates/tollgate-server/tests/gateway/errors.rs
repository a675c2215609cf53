//! Bad input and failing upstreams: OpenAI-shaped errors with the right status, and no secret
//! in any of them.

use serde_json::{Value, json};

use crate::harness::{CONFIG, Harness, PROVIDER_KEY};

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    for field in ["message", "type", "code"] {
        assert!(body["error"][field].is_string(), "error.{field} missing in {body}");
    }
    assert!(body["error"].get("param").is_some(), "error.param missing in {body}");
    assert!(!body.to_string().contains(PROVIDER_KEY), "provider key leaked: {body}");
    (status, body)
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn authentication_is_required_except_for_probes() {
    let h = Harness::start(CONFIG).await;
    let url = format!("{}/v1/chat/completions", h.base);
    let (status, body) = error_of(h.http.post(&url).json(&hello("echo")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let (status, _) =
        error_of(h.http.post(&url).bearer_auth("wrong").json(&hello("echo")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) = error_of(h.http.get(format!("{}/v1/models", h.base)).send().await.unwrap()).await;
    assert_eq!(status, 401);
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(h.http.get(format!("{}{probe}", h.base)).send().await.unwrap().status(), 200, "{probe}");
    }
}

#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let h = Harness::start(CONFIG).await;
    let post = |body: &'static str, ct: &'static str| {
        h.post("/v1/chat/completions").header("content-type", ct).body(body).send()
    };
    let (status, body) = error_of(post("{not json", "application/json").await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("not valid JSON"));

    let (status, body) = error_of(
        post(
            r#"{"model":"echo","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "temperature");

    let (status, body) = error_of(
        post(
            r#"{"model":"echo","messages":[{"role":"user","content":"x"}],"temperature":9}"#,
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("temperature"));

    let (status, body) = error_of(post(r#"{"model":"echo"}"#, "application/json").await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("messages"), "{body}");

    let (status, _) = error_of(post(r#"{"model":"echo","messages":[]}"#, "text/plain").await.unwrap()).await;
    assert_eq!(status, 415);

    let (status, body) = error_of(post(r#"[1,2,3]"#, "application/json").await.unwrap()).await;
    assert_eq!(status, 400, "{body}");

    let big =
        format!(r#"{{"model":"echo","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(70_000));
    let (status, body) = error_of(
        h.post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (status, body) = error_of(h.chat(hello("no-such-model")).await).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("no-such-model"));

    let (status, _) = error_of(
        h.http.get(format!("{}/v2/whatever", h.base)).bearer_auth(crate::harness::KEY).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn upstream_failures_map_to_gateway_statuses() {
    let h = Harness::start(CONFIG).await;

    let resp = h.chat(hello("rate-limited")).await;
    assert_eq!(resp.headers()["retry-after"], "7");
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("compat"), "names the provider: {body}");

    let (status, body) = error_of(h.chat(hello("failing")).await).await;
    assert_eq!(status, 502);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("mock error 500"),
        "carries the upstream message: {body}"
    );

    let (status, body) = error_of(h.chat(hello("rejected")).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "upstream_rejected");

    let (status, _) = error_of(h.chat(hello("garbage")).await).await;
    assert_eq!(status, 502);

    let (status, body) = error_of(h.chat(hello("hanging")).await).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout");

    let (status, body) = error_of(h.chat(hello("nokey")).await).await;
    assert_eq!(status, 503);
    assert!(body["error"]["message"].as_str().unwrap().contains("UNSET_TEST_KEY"), "{body}");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    // Port 1 (tcpmux) is closed on any machine that runs these tests. (A port freed by dropping
    // a listener could be handed to a concurrent test's server before the request goes out.)
    let port = 1;
    let config = format!(
        "providers: {{ gone: {{ kind: openai_compatible, base_url: \"http://127.0.0.1:{port}/v1\" }} }}\nmodels: {{ m: {{ deployments: [ {{ provider: gone, model: x }} ] }} }}"
    );
    let h = Harness::start(&config).await;
    let (status, body) = error_of(h.chat(hello("m")).await).await;
    assert_eq!(status, 502);
    assert!(body["error"]["message"].as_str().unwrap().contains("unreachable"), "{body}");
}
