//! The semantic cache through the real binary: prompts embedded through the gateway's own
//! `embed` alias (the mock upstream's embeddings are bags of words, so prompts with the same
//! words are close and a changed word moves them apart), the in-process backend journaled to
//! SQLite, tenants from `tollgate bootstrap`. The mock's request log shows what reached the
//! upstream: one embeddings call per semantic lookup, a chat call per miss only.

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
use support::{Gateway, TempDir, cli, cli_json};

const K1: &str = "k1:0101010101010101010101010101010101010101010101010101010101010101";

/// The semantic cache on for every request, bars of 0.9 (0.95 for prompts of up to 3 words).
fn config(mock: &MockLlm) -> String {
    format!(
        "store: {{ url: \"sqlite://tollgate.db\" }}
cache:
  mode: on
  semantic: {{ enabled: true, embedding: {{ alias: embed }}, threshold: 0.9, short_threshold: 0.95, short_max_words: 3 }}
providers:
  up: {{ kind: openai, base_url: \"{}/v1\", api_key: sk-gateway }}
models:
  gpt: {{ deployments: [ {{ provider: up, model: gpt-4o-mini }} ] }}
  exact: {{ deployments: [ {{ provider: up, model: gpt-4o-mini }} ], cache: {{ semantic: false }} }}
  embed: {{ deployments: [ {{ provider: up, model: \"text-embedding-3-small~embedding_dims=256\" }} ] }}
",
        mock.base_url()
    )
}

async fn setup(tag: &str) -> (MockLlm, TempDir, std::path::PathBuf) {
    let mock = MockLlm::start().await.unwrap();
    let dir = TempDir::new(tag);
    let config = dir.write("tollgate.yaml", &config(&mock));
    (mock, dir, config)
}

struct Client {
    http: reqwest::Client,
    key: String,
}

/// Status, `x-tollgate-cache`, `x-tollgate-cache-similarity` and the answer's text.
struct Answer {
    status: u16,
    cache: String,
    similarity: Option<f32>,
    text: String,
}

impl Client {
    fn new(config: &std::path::Path, tenant: &str) -> Self {
        let key = cli(config, &["bootstrap", "--tenant", tenant, "--owner", "alice"]).trim().to_owned();
        Self { http: reqwest::Client::new(), key }
    }

    async fn send(&self, gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(gw.url("/v1/chat/completions")).bearer_auth(&self.key).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    async fn ask(&self, gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let resp = self.send(gw, body, headers).await;
        let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (status, cache) = (resp.status().as_u16(), header("x-tollgate-cache").unwrap_or_default());
        let similarity = header("x-tollgate-cache-similarity").map(|s| s.parse().unwrap());
        let body: Value = resp.json().await.unwrap();
        let text = body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
        Answer { status, cache, similarity, text }
    }
}

fn ask(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// Upstream calls by kind: (embeddings, chat completions).
fn upstream(mock: &MockLlm) -> (usize, usize) {
    let reqs = mock.requests();
    let count = |path: &str| reqs.iter().filter(|r| r.path.ends_with(path)).count();
    (count("/embeddings"), count("/chat/completions"))
}

/// Waits for the cache's writer (answers are stored off the request path).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn paraphrases_hit_by_meaning_within_one_tenant_only() {
    let (mock, dir, config) = setup("semantic-hit").await;
    let (acme, globex) = (Client::new(&config, "acme"), Client::new(&config, "globex"));
    let mut gw = Gateway::start(&config);

    let first = acme.ask(&gw, &ask("gpt", "What is the capital city of France?"), &[]).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"));
    assert_eq!(upstream(&mock), (1, 1), "one embedding for the lookup, one chat call");
    settle().await;

    // The same words in another case and punctuation: a different exact key, the same meaning.
    let same = acme.ask(&gw, &ask("gpt", "what is the CAPITAL city of france"), &[]).await;
    assert_eq!((same.cache.as_str(), same.text.as_str()), ("semantic-hit", first.text.as_str()));
    assert!(same.similarity.unwrap() > 0.999, "{:?}", same.similarity);
    // One more word: close enough (7 of 8 words shared, cos ≈ 0.935 > 0.9).
    let close = acme.ask(&gw, &ask("gpt", "what is the capital city of France please"), &[]).await;
    assert_eq!(close.cache, "semantic-hit");
    let s = close.similarity.unwrap();
    assert!((0.9..0.99).contains(&s), "similarity {s}");
    assert_eq!(upstream(&mock), (3, 1), "hits embed the prompt but never call the chat model");

    // Another question (one word changed of seven, cos ≈ 0.857) is a miss.
    assert_eq!(acme.ask(&gw, &ask("gpt", "What is the capital city of Spain?"), &[]).await.cache, "miss");
    // Another system prompt or alias is another namespace.
    let mut system = ask("gpt", "what is the capital city of france");
    system["messages"] = json!([{"role": "system", "content": "Answer in French."}, system["messages"][0]]);
    assert_eq!(acme.ask(&gw, &system, &[]).await.cache, "miss");
    // `exact` turns the semantic cache off: no embedding, an exact miss.
    let before = upstream(&mock).0;
    assert_eq!(acme.ask(&gw, &ask("exact", "what is the capital city of france"), &[]).await.cache, "miss");
    assert_eq!(upstream(&mock).0, before, "no embedding when the semantic cache is off");
    // So does the request header.
    let please = ask("gpt", "what is the capital city of France, please");
    assert_eq!(acme.ask(&gw, &please, &[("x-tollgate-cache", "semantic=off")]).await.cache, "miss");

    // The same prompt from another tenant never finds acme's entry.
    let theirs = globex.ask(&gw, &ask("gpt", "What is the capital city of France?"), &[]).await;
    assert_eq!(theirs.cache, "miss");
    settle().await;
    assert_eq!(
        globex.ask(&gw, &ask("gpt", "what is the capital city of france"), &[]).await.cache,
        "semantic-hit"
    );

    // Streaming clients get a semantic hit replayed as SSE.
    let mut stream = ask("gpt", "What is the capital city of France");
    stream["stream"] = json!(true);
    let resp = acme.send(&gw, &stream, &[]).await;
    assert_eq!(resp.headers()["x-tollgate-cache"], "semantic-hit");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let sse = resp.text().await.unwrap();
    assert!(sse.trim_end().ends_with("data: [DONE]"), "{sse}");

    // Usage: embeddings are metered to the tenant that asked; hits record cost 0 and the saving.
    gw.terminate();
    let url = format!("sqlite://{}", dir.0.join("tollgate.db").display());
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT t.name AS tenant, u.endpoint, u.model, u.cache_status, u.cost_nanodollars, u.cost_saved_nanodollars \
         FROM usage_records u JOIN tenants t ON t.id = u.tenant_id ORDER BY u.at",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let embeddings = |tenant: &str| {
        rows.iter()
            .filter(|r| {
                r.get::<String, _>("tenant") == tenant && r.get::<String, _>("endpoint") == "embeddings"
            })
            .count()
    };
    assert!(
        embeddings("acme") >= 6 && embeddings("globex") == 2,
        "acme {} globex {}",
        embeddings("acme"),
        embeddings("globex")
    );
    let hits: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<Option<String>, _>("cache_status").as_deref() == Some("semantic-hit"))
        .collect();
    assert_eq!(hits.len(), 4);
    for hit in hits {
        assert_eq!(hit.get::<i64, _>("cost_nanodollars"), 0);
        assert!(hit.get::<Option<i64>, _>("cost_saved_nanodollars").unwrap() > 0);
    }
}

#[tokio::test]
async fn semantic_entries_survive_a_restart_and_a_purge_removes_them() {
    let (mock, _dir, config) = setup("semantic-restart").await;
    let acme = Client::new(&config, "acme");
    let mut gw = Gateway::start(&config);
    assert_eq!(acme.ask(&gw, &ask("gpt", "How do I reverse a list in Python?"), &[]).await.cache, "miss");
    settle().await;
    gw.terminate();

    let gw = Gateway::start(&config);
    let exact = acme.ask(&gw, &ask("gpt", "How do I reverse a list in Python?"), &[]).await;
    assert_eq!(exact.cache, "hit", "the exact entry is restored too");
    let again = acme.ask(&gw, &ask("gpt", "how do I reverse a Python list"), &[]).await;
    assert_eq!(again.cache, "semantic-hit", "restored from the SQLite journal");
    assert_eq!(upstream(&mock).1, 1);

    let tenant = support::tenant_of(&acme.http, &gw, &acme.key).await;
    let (status, purged) = support::purge_cache(&acme.http, &gw, &acme.key, &tenant, json!({})).await;
    assert_eq!(status, 200);
    // Both the exact entry and the semantic one were restored from the journals, and both go.
    assert_eq!(purged["purged"], 2, "{purged}");
    assert_eq!(acme.ask(&gw, &ask("gpt", "how do I reverse a Python list"), &[]).await.cache, "miss");
}

/// Rows of `table` belonging to `tenant` in the gateway's SQLite database.
async fn journal_rows(dir: &TempDir, table: &str, tenant: &str) -> i64 {
    let url = format!("sqlite://{}", dir.0.join("tollgate.db").display());
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = ?");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(tenant).fetch_one(&mut db).await.unwrap()
}

#[tokio::test]
async fn deleting_a_tenant_removes_its_cached_answers_from_memory_and_the_journals() {
    let (_mock, dir, config) = setup("semantic-tenant-delete").await;
    let (acme, globex) = (Client::new(&config, "acme"), Client::new(&config, "globex"));
    let mut gw = Gateway::start(&config);
    for client in [&acme, &globex] {
        assert_eq!(
            client.ask(&gw, &ask("gpt", "How do I reverse a list in Python?"), &[]).await.cache,
            "miss"
        );
    }
    settle().await;
    let (a, g) = (
        support::tenant_of(&acme.http, &gw, &acme.key).await,
        support::tenant_of(&globex.http, &gw, &globex.key).await,
    );
    for table in ["exact_cache_entries", "semantic_cache_entries"] {
        assert_eq!(
            (journal_rows(&dir, table, &a).await, journal_rows(&dir, table, &g).await),
            (1, 1),
            "{table}"
        );
    }
    let http = &acme.http;
    assert_eq!(support::metric(http, &gw, "tollgate_cache_entries").await, 2.0);
    assert_eq!(support::metric(http, &gw, "tollgate_cache_semantic_entries").await, 2.0);

    assert_eq!(support::delete_tenant(http, &gw, &a).await, 200);
    // The journals lose acme's rows with the tenant; memory is purged on the change (async).
    for table in ["exact_cache_entries", "semantic_cache_entries"] {
        assert_eq!(
            (journal_rows(&dir, table, &a).await, journal_rows(&dir, table, &g).await),
            (0, 1),
            "{table}"
        );
    }
    let mut left = (0.0, 0.0);
    for _ in 0..50 {
        left = (
            support::metric(http, &gw, "tollgate_cache_entries").await,
            support::metric(http, &gw, "tollgate_cache_semantic_entries").await,
        );
        if left == (1.0, 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, (1.0, 1.0), "only globex's entries are left in memory");
    let theirs = globex.ask(&gw, &ask("gpt", "how do I reverse a Python list"), &[]).await;
    assert_eq!(theirs.cache, "semantic-hit", "another tenant's entries stay");

    // And a restart brings nothing of acme's back.
    gw.terminate();
    let gw = Gateway::start(&config);
    assert_eq!(support::metric(http, &gw, "tollgate_cache_entries").await, 1.0);
    assert_eq!(support::metric(http, &gw, "tollgate_cache_semantic_entries").await, 1.0);
}

#[tokio::test]
async fn a_byok_only_tenant_embeds_with_its_own_credential() {
    let mock = MockLlm::start().await.unwrap();
    let dir = TempDir::new("semantic-byok");
    let config = dir.write("tollgate.yaml", &config(&mock));
    let acme = Client::new(&config, "acme");
    let tenant = cli_json(&config, &["tenants", "list"])["data"][0]["id"].as_str().unwrap().to_owned();
    cli_json(&config, &["tenants", "update", &tenant, "--byok-only", "true"]);
    let gw = Gateway::start_env(&config, &[("TOLLGATE_ENCRYPTION_KEY", K1)]);
    let resp = acme
        .http
        .post(gw.url(&format!("/admin/v1/tenants/{tenant}/credentials")))
        .bearer_auth(&acme.key)
        .json(&json!({"provider": "up", "name": "own", "secret": "sk-acme-own"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    assert_eq!(acme.ask(&gw, &ask("gpt", "Summarise the plot of Hamlet"), &[]).await.status, 200);
    let reqs = mock.requests();
    let embedding = reqs.iter().find(|r| r.path.ends_with("/embeddings")).expect("the prompt was embedded");
    assert_eq!(embedding.header("authorization"), Some("Bearer sk-acme-own"), "never the gateway's key");
    assert!(reqs.iter().all(|r| r.header("authorization") != Some("Bearer sk-gateway")));
}
