//! One usage record per request, through the real binary on SQLite: answered, streamed,
//! rejected, failed, and a stream the client abandoned; written by the background sink and
//! drained at graceful shutdown.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use mock_llm::{Knobs, MockLlm};
use sqlx::{Connection, Row, SqliteConnection};
use support::{Gateway, TempDir, cli};

#[tokio::test]
async fn every_request_leaves_one_usage_record() {
    let mock = MockLlm::start_with(
        Knobs { chunk_delay_ms: 100, ..Knobs::default() },
        "127.0.0.1:0".parse().unwrap(),
        true,
    )
    .await
    .unwrap();
    let dir = TempDir::new("usage");
    let config = dir.write(
        "tollgate.yaml",
        &format!(
            "store: {{ url: \"sqlite://tollgate.db\" }}\nproviders:\n  echo: {{ kind: echo }}\n  up: {{ kind: openai_compatible, base_url: \"{}/v1\" }}\nmodels:\n  echo: {{ deployments: [ {{ provider: echo, model: echo-1 }} ] }}\n  slow: {{ deployments: [ {{ provider: up, model: m }} ] }}\n  broken: {{ deployments: [ {{ provider: up, model: \"m~status=500\" }} ] }}\n",
            mock.base_url()
        ),
    );
    let key = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice"]).trim().to_owned();
    let mut gw = Gateway::start(&config);
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        http.post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-request-id", body["user"].as_str().unwrap_or("x").to_owned())
            .json(&body)
            .send()
    };
    let msg = serde_json::json!([{"role": "user", "content": "one two three four five six seven eight"}]);
    assert_eq!(
        post(
            serde_json::json!({"model": "echo", "user": "r-json", "messages": msg, "metadata": {"team": "a"}})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    let streamed =
        post(serde_json::json!({"model": "echo", "user": "r-stream", "stream": true, "messages": msg}))
            .await
            .unwrap();
    assert!(streamed.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(
        post(serde_json::json!({"model": "nope", "user": "r-unknown", "messages": msg}))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        post(serde_json::json!({"model": "broken", "user": "r-broken", "messages": msg}))
            .await
            .unwrap()
            .status(),
        502
    );
    // A stream the client abandons after its first chunk.
    let resp = post(serde_json::json!({"model": "slow", "user": "r-left", "stream": true, "messages": msg}))
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    // Leave once some text has arrived (the first chunk carries only the role).
    let mut seen = String::new();
    while !seen.contains("mock:") {
        seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    drop(body);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Graceful shutdown drains the sink.
    gw.terminate();

    let mut db = SqliteConnection::connect(&format!("sqlite://{}", dir.0.join("tollgate.db").display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT request_id, status, model, provider, input_tokens, output_tokens, token_source, error_code, tenant_id IS NOT NULL AS has_tenant, user_tag, metadata, attempts, served_model FROM usage_records ORDER BY id")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let by_id = |id: &str| {
        rows.iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap_or_else(|| panic!("no record for {id}"))
    };
    assert_eq!(rows.len(), 5, "one record per request");
    let json = by_id("r-json");
    assert_eq!(
        (json.get::<i64, _>("status"), json.get::<String, _>("token_source").as_str()),
        (200, "provider")
    );
    assert!(json.get::<i64, _>("input_tokens") > 0 && json.get::<i64, _>("output_tokens") > 0);
    assert!(json.get::<bool, _>("has_tenant"));
    assert_eq!(json.get::<Option<String>, _>("user_tag").as_deref(), Some("r-json"));
    assert_eq!(json.get::<String, _>("metadata"), r#"{"team":"a"}"#);
    assert_eq!((json.get::<i64, _>("attempts"), json.get::<Option<String>, _>("served_model")), (1, None));
    let stream = by_id("r-stream");
    assert_eq!(
        stream.get::<String, _>("token_source"),
        "provider",
        "streams are metered from the upstream's usage"
    );
    assert!(stream.get::<i64, _>("output_tokens") > 0);
    let unknown = by_id("r-unknown");
    assert_eq!(
        (unknown.get::<i64, _>("status"), unknown.get::<Option<String>, _>("error_code").as_deref()),
        (404, Some("model_not_found"))
    );
    assert_eq!(unknown.get::<String, _>("model"), "nope");
    assert_eq!(unknown.get::<i64, _>("attempts"), 0, "refused before any upstream attempt");
    let broken = by_id("r-broken");
    assert_eq!(
        (broken.get::<i64, _>("status"), broken.get::<Option<String>, _>("provider").as_deref()),
        (502, Some("openai_compatible"))
    );
    assert!(broken.get::<i64, _>("attempts") >= 1, "every failed attempt is counted");
    // The key's last-used time is written by the same shutdown flush (the periodic one, every
    // 5 s, has not run yet).
    let last_used: Option<String> =
        sqlx::query_scalar("SELECT last_used_at FROM api_keys").fetch_one(&mut db).await.unwrap();
    assert!(last_used.is_some(), "last-used time flushed at shutdown");
    // The CLI reports the same records.
    let tenant =
        support::cli_json(&config, &["tenants", "list"])["data"][0]["id"].as_str().unwrap().to_owned();
    let report = support::cli_json(&config, &["usage", "--tenant", &tenant, "--group-by", "model"]);
    assert_eq!(report["totals"]["requests"], 5);
    assert_eq!(report["totals"]["errors"], 2);
    let left = by_id("r-left");
    assert_eq!(left.get::<String, _>("token_source"), "partial");
    assert_eq!(left.get::<Option<String>, _>("error_code").as_deref(), Some("client_disconnected"));
    // What it had generated before the client left is counted with a tokenizer and billed.
    assert!(left.get::<i64, _>("output_tokens") > 0, "the abandoned stream's generated tokens are counted");
}

#[tokio::test]
async fn records_older_than_the_retention_period_are_removed_at_start_up() {
    let dir = TempDir::new("retention");
    let config = dir.write(
        "tollgate.yaml",
        "store: { url: \"sqlite://tollgate.db\" }\nusage: { retention_days: 30 }\nproviders: { echo: { kind: echo } }\nmodels: { echo: { deployments: [ { provider: echo, model: echo-1 } ] } }\n",
    );
    let key = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice"]).trim().to_owned();
    let url = format!("sqlite://{}", dir.0.join("tollgate.db").display());
    let count = || async {
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(at < '2025-01-01'), 0) AS old FROM usage_records",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        (row.get::<i64, _>("n"), row.get::<i64, _>("old"))
    };

    // Two records through a first run, then one of them made 400+ days old.
    {
        let gw = Gateway::start(&config);
        let http = reqwest::Client::new();
        for _ in 0..2 {
            assert_eq!(support::chat_status(&http, &gw, &key).await, 200);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count().await.0 < 2 {
            assert!(tokio::time::Instant::now() < deadline, "records were not written");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE usage_records SET at = '2024-06-01T12:00:00Z' WHERE id = (SELECT MIN(id) FROM usage_records)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(count().await, (2, 1));

    // The next start runs the retention job at once: the old record goes, the recent one stays.
    let _gw = Gateway::start(&config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count().await != (1, 0) {
        assert!(tokio::time::Instant::now() < deadline, "old record kept: {:?}", count().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_request_served_by_a_fallback_alias_records_the_serving_alias_and_its_attempts() {
    let mock = MockLlm::start().await.unwrap();
    let dir = TempDir::new("usage-fallback");
    // `primary`'s only deployment always fails: the first attempt fails, the fallback alias
    // `backup` answers on the second (and last) one.
    let config = dir.write(
        "tollgate.yaml",
        &format!(
            "store: {{ url: \"sqlite://tollgate.db\" }}\nproviders:\n  up: {{ kind: openai_compatible, base_url: \"{}/v1\" }}\nmodels:\n  primary:\n    deployments: [ {{ provider: up, model: \"m~status=500\" }} ]\n    routing: {{ fallbacks: [backup], max_attempts: 2 }}\n  backup: {{ deployments: [ {{ provider: up, model: m }} ] }}\n  hedged:\n    routing: {{ strategy: ordered, hedge_after: 50ms }}\n    deployments: [ {{ provider: up, model: \"m~latency_ms=2000\", name: slow }}, {{ provider: up, model: m, name: quick }} ]\n",
            mock.base_url()
        ),
    );
    let key = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice"]).trim().to_owned();
    let gw = Gateway::start(&config);
    let http = reqwest::Client::new();
    let msg = serde_json::json!([{"role": "user", "content": "hello"}]);
    for (id, stream) in
        [("r-fallback", false), ("r-fallback-stream", true), ("r-direct", false), ("r-hedged", false)]
    {
        let model = match id {
            "r-direct" => "backup",
            "r-hedged" => "hedged",
            _ => "primary",
        };
        let resp = http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-request-id", id)
            .json(&serde_json::json!({"model": model, "stream": stream, "messages": msg}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{id}");
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let alias = if id == "r-hedged" { "hedged" } else { "backup" };
        assert_eq!(header("x-tollgate-model").as_deref(), Some(alias), "{id}");
        let attempts = if id == "r-direct" { "1" } else { "2" };
        assert_eq!(header("x-tollgate-attempts").as_deref(), Some(attempts), "{id}");
        resp.bytes().await.unwrap();
    }

    // Records are written in batches shortly after the requests.
    let url = format!("sqlite://{}", dir.0.join("tollgate.db").display());
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = sqlx::query(
            "SELECT request_id, status, model, deployment, served_model, attempts, hedged FROM usage_records",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        if rows.len() == 4 {
            break rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "records were not written: {}", rows.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id = |id: &str| {
        let r = rows
            .iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap_or_else(|| panic!("no record for {id}"));
        (
            r.get::<i64, _>("status"),
            r.get::<String, _>("model"),
            r.get::<Option<String>, _>("deployment"),
            r.get::<Option<String>, _>("served_model"),
            r.get::<i64, _>("attempts"),
            r.get::<bool, _>("hedged"),
        )
    };
    let served = |model: &str, served_model: Option<&str>, attempts| {
        (200, model.to_owned(), Some("up/m".to_owned()), served_model.map(str::to_owned), attempts, false)
    };
    // `model` stays what the client asked for; `served_model` names the fallback that answered.
    assert_eq!(by_id("r-fallback"), served("primary", Some("backup"), 2));
    assert_eq!(by_id("r-fallback-stream"), served("primary", Some("backup"), 2));
    // The requested alias answered: no `served_model`.
    assert_eq!(by_id("r-direct"), served("backup", None, 1));
    // The slow first deployment had not answered after 50ms: the hedge on `quick` answered.
    let hedged = by_id("r-hedged");
    assert_eq!(hedged, (200, "hedged".to_owned(), Some("quick".to_owned()), None, 2, true));
}
