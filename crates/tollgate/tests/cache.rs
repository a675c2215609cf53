//! The response cache through the real binary: tenants' keys on SQLite, a real mock upstream
//! (its request log shows whether a request reached it), the in-process backend, and Redis
//! shared by two gateway processes.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod support;

use std::time::Duration;

use mock_llm::MockLlm;
use serde_json::{Value, json};
use sqlx::{Connection, Row, SqliteConnection};
use support::{Gateway, TempDir, cli};

/// A config on SQLite with caching on by default (`cache_section` adds to the `cache:` map),
/// `gpt` served by the mock, `nocache` an alias that may never be cached.
fn config(mock: &MockLlm, cache_section: &str) -> String {
    format!(
        "store: {{ url: \"sqlite://tollgate.db\" }}\ncache: {{ mode: on{cache_section} }}\nproviders:\n  up: {{ kind: openai, base_url: \"{}/v1\", api_key: sk-test }}\nmodels:\n  gpt: {{ deployments: [ {{ provider: up, model: gpt-4o-mini }} ] }}\n  nocache: {{ deployments: [ {{ provider: up, model: gpt-4o-mini }} ], cache: {{ allow: none }} }}\n  breaking: {{ deployments: [ {{ provider: up, model: \"gpt-4o-mini~disconnect_after=2\" }} ] }}\n",
        mock.base_url()
    )
}

/// The mock upstream, the test's directory and its config file (see [`config`]).
async fn setup(tag: &str, cache_section: &str) -> (MockLlm, TempDir, std::path::PathBuf) {
    let mock = MockLlm::start().await.unwrap();
    let dir = TempDir::new(tag);
    let config = dir.write("tollgate.yaml", &config(&mock, cache_section));
    (mock, dir, config)
}

fn body(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

struct Client {
    http: reqwest::Client,
    key: String,
}

impl Client {
    async fn chat(&self, gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(gw.url("/v1/chat/completions")).bearer_auth(&self.key).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// Status, `x-tollgate-cache`, and the JSON body.
    async fn json(&self, gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> (u16, String, Value) {
        let resp = self.chat(gw, body, headers).await;
        let status = resp.status().as_u16();
        let cache = resp.headers().get("x-tollgate-cache").map_or("", |v| v.to_str().unwrap()).to_owned();
        (status, cache, resp.json().await.unwrap())
    }
}

fn bootstrap(config: &std::path::Path, tenant: &str) -> Client {
    let key = cli(config, &["bootstrap", "--tenant", tenant, "--owner", "alice"]).trim().to_owned();
    Client { http: reqwest::Client::new(), key }
}

/// Texts of an SSE body's chunks, and whether it had a usage chunk and ended with `[DONE]`.
async fn sse(resp: reqwest::Response) -> (String, bool, bool) {
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
    let done = events.last() == Some(&"[DONE]");
    let chunks: Vec<Value> = events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    let content =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<String>();
    let usage = chunks.iter().any(|c| c["usage"].is_object());
    (content, usage, done)
}

#[tokio::test]
async fn answers_are_stored_and_replayed_within_one_tenant_only() {
    let (mock, _dir, config) = setup("cache-json", "").await;
    let (acme, globex) = (bootstrap(&config, "acme"), bootstrap(&config, "globex"));
    let gw = Gateway::start(&config);
    let q = body("gpt", "what is the capital of France?");

    let (status, cache, first) = acme.json(&gw, &q, &[]).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    assert_eq!(mock.requests().len(), 1);
    // The write is queued; give the writer a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = acme.chat(&gw, &q, &[]).await;
    assert_eq!(resp.headers()["x-tollgate-cache"], "hit");
    assert_eq!(resp.headers()["x-tollgate-attempts"], "0");
    assert_eq!(resp.headers()["x-tollgate-model"], "gpt");
    assert_eq!(resp.headers()["x-tollgate-deployment"], "up/gpt-4o-mini");
    let again: Value = resp.json().await.unwrap();
    assert_eq!(again, first, "the stored answer, as it was");
    assert_eq!(mock.requests().len(), 1, "a hit does not reach the upstream");

    // Any answer-changing field is another entry.
    let mut warmer = q.clone();
    warmer["temperature"] = json!(1.5);
    assert_eq!(acme.json(&gw, &warmer, &[]).await.1, "miss");
    assert_eq!(acme.json(&gw, &body("gpt", "what is the capital of Spain?"), &[]).await.1, "miss");
    assert_eq!(mock.requests().len(), 3);

    // The same prompt from another tenant never finds acme's entry.
    assert_eq!(globex.json(&gw, &q, &[]).await.1, "miss");
    assert_eq!(mock.requests().len(), 4);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(globex.json(&gw, &q, &[]).await.1, "hit");
    assert_eq!(mock.requests().len(), 4);
}

#[tokio::test]
async fn streams_are_stored_once_complete_and_replayed_as_sse() {
    let (mock, _dir, config) = setup("cache-stream", "").await;
    let acme = bootstrap(&config, "acme");
    let gw = Gateway::start(&config);
    let mut q = body("gpt", "tell me a short story");
    q["stream"] = json!(true);

    let resp = acme.chat(&gw, &q, &[]).await;
    assert_eq!(resp.headers()["x-tollgate-cache"], "miss");
    let (live, usage, done) = sse(resp).await;
    assert!(!live.is_empty() && !usage && done);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let resp = acme.chat(&gw, &q, &[]).await;
    assert_eq!(resp.headers()["x-tollgate-cache"], "hit");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(sse(resp).await, (live.clone(), false, true), "same text, no usage chunk, [DONE]");
    // The usage chunk is replayed to a client that asks for it.
    q["stream_options"] = json!({"include_usage": true});
    let (text, usage, done) = sse(acme.chat(&gw, &q, &[]).await).await;
    assert_eq!((text.as_str(), usage, done), (live.as_str(), true, true));
    // A JSON client gets the streamed answer as one completion.
    q["stream"] = json!(false);
    q.as_object_mut().unwrap().remove("stream_options");
    let (status, cache, json) = acme.json(&gw, &q, &[]).await;
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert_eq!(json["choices"][0]["message"]["content"], live.as_str());
    assert!(json["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(mock.requests().len(), 1);

    // A stream cut by the upstream is not stored.
    let mut cut = body("breaking", "a story that breaks");
    cut["stream"] = json!(true);
    let (_, _, done) = sse(acme.chat(&gw, &cut, &[]).await).await;
    assert!(!done, "the upstream cut the stream");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = acme.chat(&gw, &cut, &[]).await;
    assert_eq!(resp.headers()["x-tollgate-cache"], "miss", "a partial stream was stored");
}

#[tokio::test]
async fn request_headers_and_rules_control_the_cache() {
    let (mock, _dir, config) = setup("cache-headers", "").await;
    let acme = bootstrap(&config, "acme");
    let gw = Gateway::start(&config);
    let settle = || tokio::time::sleep(Duration::from_millis(100));

    // off: neither read nor written.
    let q = body("gpt", "q1");
    assert_eq!(acme.json(&gw, &q, &[("x-tollgate-cache", "off")]).await.1, "bypass");
    settle().await;
    assert_eq!(acme.json(&gw, &q, &[]).await.1, "miss");
    // read-only never writes; write-only writes without reading.
    let q = body("gpt", "q2");
    assert_eq!(acme.json(&gw, &q, &[("x-tollgate-cache", "read-only")]).await.1, "miss");
    settle().await;
    assert_eq!(acme.json(&gw, &q, &[("x-tollgate-cache", "write-only")]).await.1, "bypass");
    settle().await;
    assert_eq!(acme.json(&gw, &q, &[("x-tollgate-cache", "read-only")]).await.1, "hit");
    // Cache-Control: no-store reads but does not write; no-cache writes but does not read.
    let q = body("gpt", "q3");
    assert_eq!(acme.json(&gw, &q, &[("cache-control", "no-store")]).await.1, "miss");
    settle().await;
    assert_eq!(acme.json(&gw, &q, &[("cache-control", "no-cache")]).await.1, "bypass");
    settle().await;
    assert_eq!(acme.json(&gw, &q, &[]).await.1, "hit");
    // A TTL from the header.
    let q = body("gpt", "q4");
    assert_eq!(acme.json(&gw, &q, &[("x-tollgate-cache", "on; ttl=1s")]).await.1, "miss");
    settle().await;
    assert_eq!(acme.json(&gw, &q, &[]).await.1, "hit");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(acme.json(&gw, &q, &[]).await.1, "miss", "expired after its 1s TTL");
    // An alias whose rule allows nothing: a header cannot turn it on.
    let q = body("nocache", "q5");
    assert_eq!(acme.json(&gw, &q, &[("x-tollgate-cache", "on")]).await.1, "bypass");
    settle().await;
    assert_eq!(acme.json(&gw, &q, &[("x-tollgate-cache", "on")]).await.1, "bypass");

    // A malformed header is a 400 in OpenAI's shape naming the header; nothing is called.
    let before = mock.requests().len();
    for bad in ["yes", "ttl=0", "on; off", "ttl=5w"] {
        let (status, _, err) = acme.json(&gw, &body("gpt", "q6"), &[("x-tollgate-cache", bad)]).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(err["error"]["type"], "invalid_request_error", "{bad}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("x-tollgate-cache"), "{bad}: {err}");
    }
    assert_eq!(mock.requests().len(), before);
}

#[tokio::test]
async fn hits_are_metered_with_zero_cost_and_the_cost_saved() {
    let (_mock, dir, config) = setup("cache-usage", "").await;
    let acme = bootstrap(&config, "acme");
    let mut gw = Gateway::start(&config);
    let q = body("gpt", "how many legs does a spider have");
    let send = |id: &'static str| {
        let (http, key, url) = (acme.http.clone(), acme.key.clone(), gw.url("/v1/chat/completions"));
        let q = q.clone();
        async move {
            let resp =
                http.post(url).bearer_auth(key).header("x-request-id", id).json(&q).send().await.unwrap();
            resp.headers()["x-tollgate-cache"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(send("r-miss").await, "miss");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(send("r-hit").await, "hit");
    assert_eq!(send("r-hit2").await, "hit");

    let metrics = reqwest::get(gw.url("/metrics")).await.unwrap().text().await.unwrap();
    let line =
        |needle: &str| metrics.lines().find(|l| l.contains(needle) && !l.starts_with('#')).map(str::to_owned);
    let hits = line("tollgate_cache_requests_total{model=\"gpt\",status=\"hit\"}").expect("hit counter");
    assert!(hits.ends_with(" 2"), "{hits}");
    assert!(line("tollgate_cache_requests_total{model=\"gpt\",status=\"miss\"}").unwrap().ends_with(" 1"));
    let saved = line("tollgate_cache_cost_saved_nanodollars_total{model=\"gpt\"}").expect("saved counter");
    let saved: u64 = saved.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(line("tollgate_cache_entries ").as_deref(), Some("tollgate_cache_entries 1"));

    gw.terminate();
    let mut db = SqliteConnection::connect(&format!("sqlite://{}", dir.0.join("tollgate.db").display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT request_id, cache_status, cost_nanodollars, cost_saved_nanodollars, input_tokens, output_tokens, attempts, deployment FROM usage_records")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let row = |id: &str| rows.iter().find(|r| r.get::<String, _>("request_id") == id).unwrap();
    let miss = row("r-miss");
    let cost: i64 = miss.get::<Option<i64>, _>("cost_nanodollars").unwrap();
    assert!(cost > 0, "the miss was priced");
    assert_eq!(miss.get::<Option<String>, _>("cache_status").as_deref(), Some("miss"));
    assert_eq!(miss.get::<Option<i64>, _>("cost_saved_nanodollars"), None);
    for id in ["r-hit", "r-hit2"] {
        let hit = row(id);
        assert_eq!(hit.get::<Option<String>, _>("cache_status").as_deref(), Some("hit"));
        assert_eq!(hit.get::<Option<i64>, _>("cost_nanodollars"), Some(0), "no upstream cost");
        assert_eq!(hit.get::<Option<i64>, _>("cost_saved_nanodollars"), Some(cost));
        assert_eq!(hit.get::<i64, _>("attempts"), 0);
        assert_eq!(hit.get::<i64, _>("input_tokens"), miss.get::<i64, _>("input_tokens"));
        assert_eq!(hit.get::<Option<String>, _>("deployment").as_deref(), Some("up/gpt-4o-mini"));
    }
    assert_eq!(saved, 2 * u64::try_from(cost).unwrap());
}

#[tokio::test]
async fn in_process_entries_survive_a_restart_through_the_sqlite_journal() {
    let (mock, _dir, config) = setup("cache-restart", ", ttl: 10m").await;
    let acme = bootstrap(&config, "acme");
    let q = body("gpt", "kept across restarts");
    let short = body("gpt", "gone by the restart");
    let mut gw = Gateway::start(&config);
    let (_, cache, first) = acme.json(&gw, &q, &[]).await;
    assert_eq!(cache, "miss");
    assert_eq!(acme.json(&gw, &short, &[("x-tollgate-cache", "ttl=1s")]).await.1, "miss");
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let gw = Gateway::start(&config);
    let (_, cache, again) = acme.json(&gw, &q, &[]).await;
    assert_eq!((cache.as_str(), &again), ("hit", &first), "restored, as it was");
    assert_eq!(acme.json(&gw, &short, &[]).await.1, "miss", "expired while the gateway was down");
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn redis_backend_is_shared_by_every_node() {
    let redis =
        std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let (mock, _dir, config) =
        setup("cache-redis", &format!(", backend: redis, redis_url: \"{redis}\"")).await;
    let acme = bootstrap(&config, "acme");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let q = body("gpt", "shared across nodes");
    assert_eq!(acme.json(&a, &q, &[]).await.1, "miss");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, cache, answer) = acme.json(&b, &q, &[]).await;
    assert_eq!((status, cache.as_str()), (200, "hit"), "node b finds node a's answer");
    assert!(!answer["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    assert_eq!(mock.requests().len(), 1);
}

impl Client {
    async fn tenant_id(&self, gw: &Gateway) -> String {
        support::tenant_of(&self.http, gw, &self.key).await
    }

    async fn purge(&self, gw: &Gateway, tenant: &str, body: Value) -> (u16, Value) {
        support::purge_cache(&self.http, gw, &self.key, tenant, body).await
    }
}

#[tokio::test]
async fn admins_purge_their_tenants_entries_only() {
    let (_mock, _dir, config) = setup("cache-purge", "").await;
    let (acme, globex) = (bootstrap(&config, "acme"), bootstrap(&config, "globex"));
    let gw = Gateway::start(&config);
    let q = body("gpt", "purge me");
    for client in [&acme, &globex] {
        assert_eq!(client.json(&gw, &q, &[]).await.1, "miss");
    }
    assert_eq!(acme.json(&gw, &body("gpt", "purge me too"), &[]).await.1, "miss");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let acme_id = acme.tenant_id(&gw).await;

    // Another tenant's admin cannot purge acme's cache.
    let (status, _) = globex.purge(&gw, &acme_id, json!({})).await;
    assert!(status == 403 || status == 404, "{status}");
    // Filters: an alias with no entries, a time before every entry, then the alias.
    assert_eq!(
        acme.purge(&gw, &acme_id, json!({"model": "nocache"})).await,
        (200, json!({"object": "cache.purge", "purged": 0}))
    );
    assert_eq!(acme.purge(&gw, &acme_id, json!({"older_than_seconds": 3600})).await.1["purged"], 0);
    let (status, err) = acme.purge(&gw, &acme_id, json!({"created_before": "yesterday"})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("created_before")));
    assert_eq!(acme.purge(&gw, &acme_id, json!({"model": "gpt"})).await.1["purged"], 2);

    assert_eq!(acme.json(&gw, &q, &[]).await.1, "miss", "acme's entry is gone");
    // Each purge is in acme's audit trail, newest first, with what it removed.
    let audit: Value = acme
        .http
        .get(gw.url(&format!("/admin/v1/tenants/{acme_id}/audit")))
        .bearer_auth(&acme.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let purges: Vec<&Value> =
        audit["data"].as_array().unwrap().iter().filter(|r| r["action"] == "cache.purge").collect();
    assert_eq!(purges.len(), 3, "{audit}");
    assert_eq!(purges[0]["after"], json!({"model": "gpt", "created_before": null, "purged": 2}));
    assert_eq!(purges[0]["resource_type"], "cache");
    assert_eq!(globex.json(&gw, &q, &[]).await.1, "hit", "globex's entry is untouched");
}
