//! The semantic cache on PostgreSQL with pgvector, through the real binary: two gateway
//! processes share one database, so a prompt answered by node A is found by meaning on node B;
//! and a PostgreSQL without pgvector stops the gateway at start-up with an error saying what to
//! do. Needs the pgvector server of `scripts/pgvector-server.sh` (TOLLGATE_TEST_PGVECTOR_URL,
//! set by scripts/test) and the plain PostgreSQL on 127.0.0.1:5432 (TOLLGATE_TEST_PG_URL).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod support;

use std::time::Duration;

use mock_llm::MockLlm;
use sqlx::PgPool;
use support::{Gateway, PgDb, TempDir, ask_gpt, cli, delete_tenant, pg_admin_url, tenant_of, tollgate};

fn pgvector_url() -> String {
    std::env::var("TOLLGATE_TEST_PGVECTOR_URL").expect(
        "TOLLGATE_TEST_PGVECTOR_URL is not set: run `export TOLLGATE_TEST_PGVECTOR_URL=$(scripts/pgvector-server.sh start)`",
    )
}

/// A config on `db` (app role and owner), the semantic cache on pgvector through `embed`.
fn config(db: &PgDb, mock: &MockLlm) -> String {
    format!(
        "store: {{ url: \"{}\", owner_url: \"{}\" }}
cache:
  mode: on
  semantic: {{ enabled: true, backend: postgres, dimensions: 256, embedding: {{ alias: embed }}, threshold: 0.9, short_threshold: 0.95 }}
providers:
  up: {{ kind: openai, base_url: \"{}/v1\", api_key: sk-gateway }}
models:
  gpt: {{ deployments: [ {{ provider: up, model: gpt-4o-mini }} ] }}
  embed: {{ deployments: [ {{ provider: up, model: \"text-embedding-3-small~embedding_dims=256\" }} ] }}
",
        db.url("tollgate_app"),
        db.url("postgres"),
        mock.base_url()
    )
}

#[tokio::test]
async fn two_nodes_share_semantic_entries_on_pgvector() {
    let db = PgDb::create(pgvector_url()).await;
    let mock = MockLlm::start().await.unwrap();
    let dir = TempDir::new("semantic-pgvector");
    let config = dir.write("tollgate.yaml", &config(&db, &mock));
    cli(&config, &["migrate"]);
    let acme = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice"]).trim().to_owned();
    let globex = cli(&config, &["bootstrap", "--tenant", "globex", "--owner", "bob"]).trim().to_owned();
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let http = reqwest::Client::new();

    let (cache, _, first) = ask_gpt(&http, &a, &acme, "Which river is the longest in Europe?").await;
    assert_eq!(cache, "miss");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cache, _, again) = ask_gpt(&http, &b, &acme, "which RIVER is the longest in europe").await;
    assert_eq!(cache, "semantic-hit", "node b finds node a's answer by meaning");
    assert_eq!(again["choices"][0]["message"]["content"], first["choices"][0]["message"]["content"]);
    let (cache, _, _) = ask_gpt(&http, &b, &globex, "which river is the longest in Europe?").await;
    assert_eq!(cache, "miss", "never another tenant's entry");

    // Deleting a tenant deletes its rows (the table has no foreign key to the tenant).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (acme_id, globex_id) = (tenant_of(&http, &a, &acme).await, tenant_of(&http, &a, &globex).await);
    let owner = PgPool::connect(&db.url("postgres")).await.unwrap();
    let rows = async |tenant: &str| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM semantic_cache_d256 WHERE tenant_id = $1::uuid")
            .bind(tenant)
            .fetch_one(&owner)
            .await
            .unwrap()
    };
    assert_eq!((rows(&acme_id).await, rows(&globex_id).await), (1, 1));
    assert_eq!(delete_tenant(&http, &a, &acme_id).await, 200);
    assert_eq!((rows(&acme_id).await, rows(&globex_id).await), (0, 1));
    let (cache, _, _) = ask_gpt(&http, &b, &globex, "Which river is the longest in Europe").await;
    assert_eq!(cache, "semantic-hit", "another tenant's entries stay");
    owner.close().await;
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test]
async fn a_postgres_without_pgvector_is_a_clear_start_up_error() {
    let db = PgDb::create(pg_admin_url()).await;
    let mock = MockLlm::start().await.unwrap();
    let dir = TempDir::new("semantic-no-pgvector");
    let config = dir.write("tollgate.yaml", &config(&db, &mock));
    let out = tollgate(&config).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success(), "the gateway must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pgvector"), "{stderr}");
    assert!(stderr.contains("cache.semantic"), "names the setting: {stderr}");
    db.drop_now().await;
}
