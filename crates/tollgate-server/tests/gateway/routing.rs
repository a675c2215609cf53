//! Routing and resilience against a real mock upstream: strategies, fallbacks, breakers,
//! cooldowns, the attempt budget and the deadline. Faults come from the mock's model-name knobs
//! (`model~status=500`) or its global knobs, so each deployment of an alias can misbehave its own
//! way.

use std::collections::HashMap;
use std::time::Duration;

use mock_llm::Knobs;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::harness::{Harness, KEY};

const CONFIG: &str = r#"
providers:
  compat: { kind: openai_compatible, base_url: "{mock}/v1" }
routing:
  backoff_base: 10ms
  backoff_max: 50ms
  breaker: { consecutive_failures: 3, cooldown: 400ms, min_requests: 1000 }
models:
  weighted:
    routing: { strategy: weighted }
    deployments:
      - { provider: compat, model: a, name: heavy, weight: 3 }
      - { provider: compat, model: b, name: light, weight: 1 }
  mixed:
    routing: { strategy: weighted, max_attempts: 3 }
    deployments:
      - { provider: compat, model: "flaky~fail_rate=0.5,status=503", name: flaky }
      - { provider: compat, model: "slow~latency_ms=150", name: slow }
      - { provider: compat, model: healthy, name: healthy }
  latency:
    routing: { strategy: latency }
    deployments:
      - { provider: compat, model: "slow~latency_ms=120", name: slow }
      - { provider: compat, model: fast, name: fast }
  failing:
    routing: { max_attempts: 3 }
    deployments: [ { provider: compat, model: "broken~status=500", name: broken } ]
  hanging:
    deployments: [ { provider: compat, model: "stuck~hang", name: stuck, timeouts: { first_byte: 10s } } ]
  primary:
    routing: { fallbacks: [backup] }
    deployments: [ { provider: compat, model: "down~status=502", name: down } ]
  backup:
    deployments: [ { provider: compat, model: up, name: up } ]
  cooling:
    deployments:
      - { provider: compat, model: "busy~status=429,retry_after=30", name: busy }
      - { provider: compat, model: spare, name: spare }
  regional:
    deployments:
      - { provider: compat, model: eu-model, name: eu, tags: [eu], region: eu-west-1 }
      - { provider: compat, model: us-model, name: us, tags: [us] }
  small:
    routing: { context_window_fallback: big }
    deployments: [ { provider: compat, model: small-model, name: small, context_window: 40 } ]
  big:
    deployments: [ { provider: compat, model: big-model, name: big } ]
  solo:
    deployments: [ { provider: compat, model: solo-model, name: solo } ]
  guarded:
    routing: { content_policy_fallback: backup }
    deployments: [ { provider: compat, model: "strict~error_code=content_policy_violation", name: strict } ]
  unguarded:
    deployments:
      - { provider: compat, model: "strict~error_code=content_policy_violation", name: strict }
      - { provider: compat, model: never-tried, name: other }
  gauntlet:
    routing: { strategy: weighted, max_attempts: 8 }
    deployments:
      - { provider: compat, model: "g~garbage", name: garbage }
      - { provider: compat, model: "h~hang", name: hang, timeouts: { first_byte: 150ms } }
      - { provider: compat, model: "r~status=429,retry_after=1", name: limited }
      - { provider: compat, model: "f~fail_rate=0.5,status=503", name: flaky }
      - { provider: compat, model: "c~disconnect_after=0", name: cut }
      - { provider: compat, model: ok, name: ok }
  hedged:
    routing: { strategy: ordered, hedge_after: 60ms }
    deployments:
      - { provider: compat, model: "laggard~latency_ms=1500,ttft_ms=1500", name: laggard }
      - { provider: compat, model: brisk, name: brisk }
  hedge_skips:
    routing: { strategy: ordered, hedge_after: 50ms }
    deployments:
      - { provider: compat, model: "dawdler~latency_ms=1500", name: dawdler }
      - { provider: compat, model: "crowded~status=429,retry_after=30", name: crowded }
      - { provider: compat, model: nimble, name: nimble }
  first_token:
    routing: { strategy: ordered }
    deployments:
      - { provider: compat, model: "mute~ttft_ms=800", name: mute, timeouts: { first_byte: 200ms } }
      - { provider: compat, model: prompt-two, name: prompt-two }
  leisurely:
    routing: { max_attempts: 1 }
    deployments: [ { provider: compat, model: "leisurely~latency_ms=400", name: leisurely } ]
  hedged_unneeded:
    routing: { strategy: ordered, hedge_after: 500ms }
    deployments:
      - { provider: compat, model: prompt-one, name: prompt-one }
      - { provider: compat, model: never-hedged, name: never-hedged }
  hedge_fails:
    routing: { strategy: ordered, hedge_after: 50ms }
    deployments:
      - { provider: compat, model: "tardy~latency_ms=300", name: tardy }
      - { provider: compat, model: "broken-hedge~status=500", name: broken-hedge }
  hedge_no_budget:
    routing: { strategy: ordered, hedge_after: 50ms, max_attempts: 1 }
    deployments:
      - { provider: compat, model: "only-try~latency_ms=200", name: only-try }
      - { provider: compat, model: no-budget-hedge, name: no-budget-hedge }
  narrow:
    routing: { context_window_fallback: big }
    deployments: [ { provider: compat, model: "narrow~error_code=context_length_exceeded", name: narrow } ]
"#;

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

async fn chat_with(h: &Harness, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = h.post("/v1/chat/completions").json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// `GET /admin/v1/deployments` as the super-admin.
async fn deployments(h: &Harness) -> Value {
    let resp = h.http.get(format!("{}/admin/v1/deployments", h.base)).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn assert_bad_request_naming(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains(what), "{body}");
}

/// Requests the mock received for a model name (knob suffix included).
fn hits(h: &Harness, model: &str) -> usize {
    h.mock.requests().iter().filter(|r| r.body["model"] == model).count()
}

#[tokio::test]
async fn weighted_routing_splits_traffic_by_weight() {
    let h = Harness::start(CONFIG).await;
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        let resp = h.chat(hello("weighted")).await;
        assert_eq!(resp.status(), 200);
        *served.entry(header(&resp, "x-tollgate-deployment")).or_default() += 1;
    }
    let heavy = served.get("heavy").copied().unwrap_or(0);
    assert!((290..=310).contains(&heavy), "3:1 weights over 400 requests gave {served:?}");
    assert_eq!(heavy + served.get("light").copied().unwrap_or(0), 400);
}

#[tokio::test]
async fn every_request_succeeds_while_one_deployment_is_healthy() {
    let h = Harness::start(CONFIG).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (base, http) = (h.base.clone(), h.http.clone());
        #[expect(clippy::disallowed_methods, reason = "concurrent clients of the test server")]
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..25 {
                let resp = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .json(&hello("mixed"))
                    .send()
                    .await
                    .unwrap();
                statuses.push(resp.status().as_u16());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 200);
    assert!(
        all.iter().all(|s| *s == 200),
        "non-200 answers: {:?}",
        all.iter().filter(|s| **s != 200).count()
    );
    assert!(hits(&h, "flaky~fail_rate=0.5,status=503") > 0, "the flaky deployment was tried");
}

#[tokio::test]
async fn latency_routing_moves_traffic_off_a_slow_deployment() {
    let h = Harness::start(CONFIG).await;
    let mut fast = 0;
    for i in 0..60 {
        let resp = h.chat(hello("latency")).await;
        assert_eq!(resp.status(), 200);
        if i >= 20 && header(&resp, "x-tollgate-deployment") == "fast" {
            fast += 1;
        }
    }
    // Exploration sends a few percent elsewhere; the rest goes to the fast one.
    assert!(fast >= 34, "only {fast} of the last 40 requests went to the fast deployment");
}

#[tokio::test]
async fn retries_stop_at_the_attempt_budget() {
    let h = Harness::start(CONFIG).await;
    let resp = h.chat(hello("failing")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(hits(&h, "broken~status=500"), 3, "max_attempts: 3");
}

#[tokio::test]
async fn the_timeout_header_bounds_the_whole_request() {
    let h = Harness::start(CONFIG).await;
    let started = Instant::now();
    let resp = chat_with(&h, hello("hanging"), &[("x-tollgate-timeout", "300ms")]).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 504, "{}", resp.text().await.unwrap());
    assert!(took >= Duration::from_millis(290) && took < Duration::from_millis(1500), "took {took:?}");
    let bad = chat_with(&h, hello("hanging"), &[("x-tollgate-timeout", "soon")]).await;
    assert_bad_request_naming(bad, "x-tollgate-timeout").await;
}

#[tokio::test]
async fn a_fallback_alias_serves_and_the_answer_says_so() {
    let h = Harness::start(CONFIG).await;
    let resp = h.chat(hello("primary")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-model"), "backup");
    assert_eq!(header(&resp, "x-tollgate-deployment"), "up");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "2");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "up", "the upstream model that answered");

    let off = chat_with(&h, hello("primary"), &[("x-tollgate-fallbacks", "off")]).await;
    assert_eq!(off.status(), 502, "fallbacks off: only the primary's deployment");
}

#[tokio::test]
async fn a_429_cools_the_deployment_down_for_its_retry_after() {
    let h = Harness::start(CONFIG).await;
    for i in 0..5 {
        let resp = h.chat(hello("cooling")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-tollgate-deployment"), "spare");
        let expected = if i == 0 { "2" } else { "1" };
        assert_eq!(header(&resp, "x-tollgate-attempts"), expected, "request {i}");
    }
    assert_eq!(hits(&h, "busy~status=429,retry_after=30"), 1, "skipped while cooling down");
}

#[tokio::test]
async fn tags_pin_a_request_to_matching_deployments() {
    let h = Harness::start(CONFIG).await;
    for (tags, expected) in [("eu", "eu"), ("eu-west-1", "eu"), ("us", "us")] {
        for _ in 0..3 {
            let resp = chat_with(&h, hello("regional"), &[("x-tollgate-tags", tags)]).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(header(&resp, "x-tollgate-deployment"), expected, "tags {tags}");
        }
    }
    let none = chat_with(&h, hello("regional"), &[("x-tollgate-tags", "asia")]).await;
    assert_bad_request_naming(none, "x-tollgate-tags").await;
}

#[tokio::test]
async fn a_prompt_too_long_for_the_context_window_goes_to_the_larger_alias() {
    let h = Harness::start(CONFIG).await;
    let short = h.chat(hello("small")).await;
    assert_eq!(header(&short, "x-tollgate-model"), "small");
    let long = "the quick brown fox jumps over the lazy dog ".repeat(20);
    let resp = h.chat(json!({"model": "small", "messages": [{"role": "user", "content": long}]})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-model"), "big");
    assert_eq!(hits(&h, "small-model"), 1, "the small deployment never saw the long prompt");
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers() {
    let h = Harness::start(CONFIG).await;
    h.mock.set_knobs(Knobs { status: Some(500), ..Knobs::default() });
    // Three attempts, three failures in a row: the breaker opens.
    assert_eq!(h.chat(hello("solo")).await.status(), 502);
    assert_eq!(hits(&h, "solo-model"), 3);
    let started = Instant::now();
    let resp = h.chat(hello("solo")).await;
    assert_eq!(resp.status(), 503, "open: refused without calling the upstream");
    assert!(resp.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(hits(&h, "solo-model"), 3);
    let view = deployments(&h).await;
    let solo = view["data"].as_array().unwrap().iter().find(|a| a["alias"] == "solo").unwrap();
    assert_eq!(solo["deployments"][0]["health"]["breaker"], "open", "{solo}");
    assert_eq!(solo["deployments"][0]["health"]["failures"], 3);

    // The upstream recovers; after the cooldown a probe goes through and closes the breaker.
    h.mock.set_knobs(Knobs::default());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(h.chat(hello("solo")).await.status(), 200);
    assert_eq!(h.chat(hello("solo")).await.status(), 200);
    assert_eq!(hits(&h, "solo-model"), 5);
}

#[tokio::test]
async fn active_health_checks_open_and_close_the_breaker_without_traffic() {
    let config = r#"
providers:
  compat: { kind: openai_compatible, base_url: "{mock}/v1" }
routing:
  health_check_interval: 1s
  breaker: { consecutive_failures: 2, cooldown: 500ms }
models:
  checked: { deployments: [ { provider: compat, model: checked-model, name: checked } ] }
"#;
    let h = Harness::start_with(config, true).await;
    let breaker = || async { deployments(&h).await["data"][0]["deployments"][0]["health"].clone() };
    h.mock.set_knobs(Knobs { status: Some(503), ..Knobs::default() });
    let deadline = Instant::now() + Duration::from_secs(8);
    while breaker().await["breaker"] != "open" {
        assert!(Instant::now() < deadline, "the checks never opened the breaker: {}", breaker().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pings = h.mock.requests();
    assert!(pings.len() >= 2);
    assert!(pings.iter().all(|r| r.body["max_tokens"] == 1 && r.body["model"] == "checked-model"));

    // Recovered upstream: the next check is the half-open probe and closes the breaker.
    h.mock.set_knobs(Knobs::default());
    let deadline = Instant::now() + Duration::from_secs(8);
    while breaker().await["breaker"] != "closed" {
        assert!(Instant::now() < deadline, "the checks never closed the breaker: {}", breaker().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.chat(hello("checked")).await.status(), 200);
}

#[tokio::test]
async fn upstream_refusals_go_to_the_matching_fallback_or_back_at_once() {
    let h = Harness::start(CONFIG).await;
    let resp = h.chat(hello("guarded")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-model"), "backup", "content-policy fallback");
    let resp = h.chat(hello("narrow")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-model"), "big", "the upstream's context-length error");
    // Without a content-policy fallback the refusal is the answer: no other deployment tried.
    let resp = h.chat(hello("unguarded")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(hits(&h, "never-tried"), 0);
}

async fn metric_line(h: &Harness, prefix: &str) -> Option<String> {
    let text = h.http.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned)
}

#[tokio::test]
async fn a_hedge_answers_when_the_first_deployment_is_slow_and_the_slow_call_is_cancelled() {
    let h = Harness::start(CONFIG).await;
    for stream in [false, true] {
        let started = Instant::now();
        let resp = h
            .chat(
                json!({"model": "hedged", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-tollgate-deployment"), "brisk", "stream: {stream}");
        assert_eq!(header(&resp, "x-tollgate-attempts"), "2", "the first call and its hedge");
        if stream {
            let data = crate::harness::sse_data(resp).await;
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        } else {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["model"], "brisk");
        }
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1000), "waited for the slow deployment: {took:?}");
    }
    assert_eq!(hits(&h, "laggard~latency_ms=1500,ttft_ms=1500"), 2, "the first call did start");
    assert_eq!(hits(&h, "brisk"), 2);
    let line = metric_line(&h, r#"tollgate_hedges_total{model="hedged",winner="hedge"}"#).await;
    assert_eq!(line.as_deref().and_then(|l| l.rsplit(' ').next()), Some("2"), "{line:?}");
    // The cancelled calls are neither failures nor in flight any longer.
    let view = deployments(&h).await;
    let laggard = view["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["deployments"].as_array().unwrap())
        .find(|d| d["name"] == "laggard")
        .unwrap()
        .clone();
    assert_eq!(laggard["health"]["in_flight"], 0, "{laggard}");
    assert_eq!(laggard["health"]["breaker"], "closed", "{laggard}");
    assert_eq!(laggard["health"]["failures"], 0, "{laggard}");
}

#[tokio::test]
async fn no_hedge_starts_when_the_first_answer_comes_in_time_or_the_budget_is_spent() {
    let h = Harness::start(CONFIG).await;
    for _ in 0..3 {
        let resp = h.chat(hello("hedged_unneeded")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-tollgate-attempts"), "1");
    }
    assert_eq!(hits(&h, "never-hedged"), 0);

    let resp = h.chat(hello("hedge_no_budget")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-deployment"), "only-try");
    assert_eq!(hits(&h, "no-budget-hedge"), 0, "max_attempts 1 leaves nothing for a hedge");
}

#[tokio::test]
async fn a_failed_hedge_does_not_end_the_race_the_first_call_still_answers() {
    let h = Harness::start(CONFIG).await;
    let started = Instant::now();
    let resp = h.chat(hello("hedge_fails")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-deployment"), "tardy");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "2");
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(hits(&h, "broken-hedge~status=500"), 1);
    let line = metric_line(&h, r#"tollgate_hedges_total{model="hedge_fails",winner="first"}"#).await;
    assert!(line.is_some(), "hedge outcome counted");
}

#[tokio::test]
async fn usage_routing_follows_the_providers_rate_limit_headers() {
    // The nearly exhausted deployment comes first in each alias: config order (what the
    // strategy falls back to without readings) would send it everything.
    let config = r#"
providers:
  compat: { kind: openai_compatible, base_url: "{mock}/v1" }
  anthropic: { kind: anthropic, base_url: "{mock}", api_key: "${MOCK_KEY}" }
models:
  usage-openai:
    routing: { strategy: usage }
    deployments:
      - { provider: compat, model: "tight~ratelimit_remaining=5", name: tight }
      - { provider: compat, model: roomy, name: roomy }
  usage-anthropic:
    routing: { strategy: usage }
    deployments:
      - { provider: anthropic, model: "claude~ratelimit_remaining=5", name: tight }
      - { provider: compat, model: roomy, name: roomy }
"#;
    let h = Harness::start(config).await;
    for alias in ["usage-openai", "usage-anthropic"] {
        let mut served: HashMap<String, usize> = HashMap::new();
        for _ in 0..30 {
            let resp = h.chat(hello(alias)).await;
            assert_eq!(resp.status(), 200);
            *served.entry(header(&resp, "x-tollgate-deployment")).or_default() += 1;
        }
        // One request to learn that `tight` has 0.5% of its quota left (by the mock's headers:
        // 5 of 1000 requests); `roomy` (999 of 1000) takes the rest.
        assert_eq!(served.get("tight").copied(), Some(1), "{alias}: {served:?}");
        assert_eq!(served.get("roomy").copied(), Some(29), "{alias}: {served:?}");

        let view = deployments(&h).await;
        let entry = view["data"].as_array().unwrap().iter().find(|a| a["alias"] == alias).unwrap();
        let headroom = |name: &str| {
            let d = entry["deployments"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap();
            d["health"]["headroom"].as_f64().unwrap_or_else(|| panic!("{alias} {name}: {d}"))
        };
        assert!((headroom("tight") - 0.005).abs() < 1e-9, "{entry}");
        assert!((headroom("roomy") - 0.999).abs() < 1e-9, "{entry}");
    }
}

/// Every fault the mock can play at once — garbage bodies, a hang, 429 with Retry-After, 503s by
/// rate, streams cut before their first chunk — next to one healthy deployment: every request,
/// plain and streamed, is answered, and every faulty deployment was tried.
#[tokio::test]
async fn every_fault_at_once_with_one_healthy_deployment_still_answers_everything() {
    let h = Harness::start(CONFIG).await;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (base, http) = (h.base.clone(), h.http.clone());
        #[expect(clippy::disallowed_methods, reason = "concurrent clients of the test server")]
        tasks.push(tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..10 {
                let stream = t % 2 == 0;
                let body = json!({"model": "gauntlet", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
                let resp = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "stream: {stream}");
                // Flaky answers half the time; the cut deployment only breaks streams.
                let served = header(&resp, "x-tollgate-deployment");
                let can_answer: &[&str] = if stream { &["ok", "flaky"] } else { &["ok", "flaky", "cut"] };
                assert!(can_answer.contains(&served.as_str()), "served by {served} (stream: {stream})");
                if stream {
                    let data = crate::harness::sse_data(resp).await;
                    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
                } else {
                    let body: Value = resp.json().await.unwrap();
                    assert_eq!(body["object"], "chat.completion");
                }
                answered += 1;
            }
            answered
        }));
    }
    let mut answered = 0;
    for t in tasks {
        answered += t.await.unwrap();
    }
    assert_eq!(answered, 60);
    for model in [
        "g~garbage",
        "h~hang",
        "r~status=429,retry_after=1",
        "f~fail_rate=0.5,status=503",
        "c~disconnect_after=0",
    ] {
        assert!(hits(&h, model) > 0, "{model} was never tried");
    }
}

#[tokio::test]
async fn a_hedge_skips_a_deployment_that_cools_down_and_takes_the_next() {
    let h = Harness::start(CONFIG).await;
    // The first request's hedge meets the 429 and puts `crowded` in its cooldown; the request's
    // own deadline ends it early.
    let first = chat_with(&h, hello("hedge_skips"), &[("x-tollgate-timeout", "300ms")]).await;
    assert_eq!(first.status(), 504, "{}", first.text().await.unwrap());
    assert_eq!(hits(&h, "crowded~status=429,retry_after=30"), 1);
    let started = Instant::now();
    let resp = h.chat(hello("hedge_skips")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-deployment"), "nimble", "the hedge passed over the cooling one");
    assert!(started.elapsed() < Duration::from_millis(1000), "took {:?}", started.elapsed());
    assert_eq!(hits(&h, "crowded~status=429,retry_after=30"), 1);
}

#[tokio::test]
async fn a_stream_without_a_first_chunk_by_the_first_byte_deadline_moves_on() {
    let h = Harness::start(CONFIG).await;
    let started = Instant::now();
    let resp = h
        .chat(
            json!({"model": "first_token", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-deployment"), "prompt-two");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "2");
    let data = crate::harness::sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    // Headers came at once; the first chunk would have taken 800 ms.
    assert!(started.elapsed() < Duration::from_millis(700), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn the_first_byte_timeout_header_shortens_each_attempts_wait() {
    let h = Harness::start(CONFIG).await;
    assert_eq!(
        h.chat(hello("leisurely")).await.status(),
        200,
        "400 ms is within the deployment's own timeout"
    );
    let started = Instant::now();
    let resp = chat_with(&h, hello("leisurely"), &[("x-tollgate-first-byte-timeout", "100ms")]).await;
    assert_eq!(resp.status(), 504, "{}", resp.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_millis(350), "took {:?}", started.elapsed());
    let bad = chat_with(&h, hello("leisurely"), &[("x-tollgate-first-byte-timeout", "soon")]).await;
    assert_bad_request_naming(bad, "x-tollgate-first-byte-timeout").await;
}
