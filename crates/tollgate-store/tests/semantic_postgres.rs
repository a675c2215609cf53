//! The semantic cache on PostgreSQL with pgvector: the semantic contract
//! (`tollgate_core::semantic_contract!`), then what only this backend has: row-level security
//! seen from raw `tollgate_app` connections, a filtered HNSW scan that needs pgvector's iterative
//! scan, the owner's idempotent schema step, expiry across tenants, and the start-up errors.
//!
//! Needs a PostgreSQL with pgvector >= 0.8 whose admin (superuser) URL is in
//! `TOLLGATE_TEST_PGVECTOR_URL`: `scripts/pgvector-server.sh start` runs one and prints it. Without
//! it these tests fail (never skip). Each test gets its own database there (`pg_support`). The
//! "no pgvector" test uses the plain PostgreSQL of the other store tests (`TOLLGATE_TEST_PG_URL`,
//! default 127.0.0.1:5432), which must not have pgvector.

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]
#![expect(
    clippy::panic,
    reason = "without TOLLGATE_TEST_PGVECTOR_URL the tests fail with instructions, never skip"
)]

mod pg_support;

use std::sync::Arc;
use std::time::Duration;

use pg_support::TestDb;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tollgate_core::cache::contract::entry;
use tollgate_core::cache::semantic_contract::{SemanticFixture, blend, dot, namespace, unit};
use tollgate_store::postgres::{PgSemanticStore, PostgresStore, semantic_table};
use tollgate_types::ports::{CacheError, CacheKey, PurgeFilter, SemanticEntry, SemanticStore};
use tollgate_types::tenancy::TenantId;

/// The contract's embedding length: all-MiniLM-L6-v2's.
const DIM: usize = 384;
const MINUTE: Duration = Duration::from_secs(60);

fn pgvector_url() -> String {
    match std::env::var("TOLLGATE_TEST_PGVECTOR_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "TOLLGATE_TEST_PGVECTOR_URL is not set: these tests need a PostgreSQL with pgvector >= 0.8. \
             Run `scripts/pgvector-server.sh start` and set TOLLGATE_TEST_PGVECTOR_URL to the URL it prints \
             (or `$(scripts/pgvector-server.sh url)`)"
        ),
    }
}

/// A fresh database on the pgvector server: the store's migrations and the semantic table of
/// `dim` (both as the owner), and the semantic store connected as `tollgate_app`.
async fn semantic_db(dim: usize) -> (PgSemanticStore, TestDb) {
    let db = TestDb::create_on(&pgvector_url()).await;
    PostgresStore::migrate(&db.owner_url).await.unwrap();
    PostgresStore::migrate_semantic(&db.owner_url, dim).await.unwrap();
    let store = PgSemanticStore::connect(&db.app_url, dim).await.unwrap();
    (store, db)
}

async fn fixture() -> SemanticFixture {
    let (store, db) = semantic_db(DIM).await;
    SemanticFixture { store: Arc::new(store), dim: DIM, guard: Box::new(db) }
}

tollgate_core::semantic_contract!(fixture());

fn stored(prompt: &str, embedding: Vec<f32>) -> SemanticEntry {
    SemanticEntry { prompt: prompt.into(), embedding, value: Arc::new(entry(prompt)) }
}

/// pgvector's text form of a vector (`Display` of f32 is the shortest exact form).
fn vector_text(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

async fn admin(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.owner_url).await.unwrap()
}

/// Rows of the table, seen by the superuser (no row-level security).
async fn count_all(db: &TestDb, dim: usize) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", semantic_table(dim));
    sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut admin(db).await).await.unwrap()
}

/// Row-level security, at the SQL level: `tollgate_app` under tenant A's setting sees A's rows
/// only, cannot delete or insert B's, and sees nothing without a tenant or with a malformed one.
#[tokio::test]
async fn tollgate_app_sees_one_tenant_and_nothing_without_one() {
    let (store, db) = semantic_db(DIM).await;
    let (a, b) = (TenantId::new(), TenantId::new());
    for i in 0..3 {
        store.put(&namespace(a, 1), stored(&format!("a{i}"), unit(DIM, i)), MINUTE).await.unwrap();
    }
    for i in 0..2 {
        store.put(&namespace(b, 1), stored(&format!("b{i}"), unit(DIM, 10 + i)), MINUTE).await.unwrap();
    }
    let table = semantic_table(DIM);
    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    let (user, bypass): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert_eq!((user.as_str(), bypass), ("tollgate_app", false));

    let count_sql = format!("SELECT count(*), count(*) FILTER (WHERE tenant_id = $1) FROM {table}");
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('tollgate.tenant_id', $1, true)")
        .bind(a.0.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let (all, of_b): (i64, i64) =
        sqlx::query_as(AssertSqlSafe(count_sql.clone())).bind(b.0).fetch_one(&mut *tx).await.unwrap();
    assert_eq!((all, of_b), (3, 0), "A's three rows, none of B's");
    let deleted = sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE tenant_id = $1")))
        .bind(b.0)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0, "B's rows cannot be deleted under A");
    let insert = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, tenant_id, namespace, prompt, embedding, value, alias, created_at, expires_at) \
         SELECT gen_random_uuid(), $1, $2, 'p', embedding, value, alias, created_at, expires_at FROM {table} LIMIT 1"
    )))
    .bind(b.0)
    .bind(namespace(b, 1).digest().as_slice())
    .execute(&mut *tx)
    .await;
    let err = insert.unwrap_err().to_string();
    assert!(err.contains("row-level security"), "writing B's row under A is refused: {err}");
    tx.rollback().await.unwrap();

    let (all, _): (i64, i64) =
        sqlx::query_as(AssertSqlSafe(count_sql.clone())).bind(b.0).fetch_one(&mut app).await.unwrap();
    assert_eq!(all, 0, "no tenant set: no rows");
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('tollgate.tenant_id', 'not-a-uuid', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let (all, _): (i64, i64) =
        sqlx::query_as(AssertSqlSafe(count_sql)).bind(b.0).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(all, 0, "a malformed tenant: no rows, no error");
    tx.rollback().await.unwrap();

    // Nothing leaked out of the transactions, and the stats cross tenants (SECURITY DEFINER).
    assert_eq!(count_all(&db, DIM).await, 5);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.entries, 5);
    assert!(stats.bytes > 5 * (DIM as u64 * 4), "at least the vectors: {stats:?}");
}

/// 5,000 entries in one namespace and 5,000 in others (another namespace of the same tenant,
/// another tenant, and that tenant with the first one's digest), the others all nearer to the
/// query than anything in the namespace. An HNSW walk meets only other namespaces' rows in its
/// first `ef_search` (40) candidates, so without pgvector's iterative scan the filtered query is
/// empty; with it (what the store sets), the namespace's nearest entry is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_hnsw_scan_finds_the_namespace_nearest_among_10000() {
    const D: usize = 128;
    const PER_SIDE: u64 = 5_000;
    let (store, db) = semantic_db(D).await;
    let table = semantic_table(D);
    let (a, b) = (TenantId::new(), TenantId::new());
    let target = namespace(a, 1);
    let query = unit(D, 1);
    let right = blend(&query, &unit(D, 2), 0.3);

    // Rows (tenant, namespace, prompt, vector): the target namespace holds the right answer and
    // 4,999 random vectors; the others are all within a hair of the query.
    let others = [namespace(a, 2), namespace(b, 1), CacheKey::new(b, *target.digest())];
    let mut rows: Vec<(CacheKey, String, Vec<f32>)> = vec![(target, "right".into(), right.clone())];
    for i in 1..PER_SIDE {
        rows.push((target, format!("noise {i}"), unit(D, 1_000 + i)));
    }
    for i in 0..PER_SIDE {
        let ns = others[(i % 3) as usize];
        rows.push((ns, format!("decoy {i}"), blend(&query, &unit(D, 100_000 + i), 0.1)));
    }
    let decoy_sim = dot(&query, &rows[rows.len() - 1].2);
    assert!(decoy_sim > dot(&query, &right) + 0.03, "the decoys are nearer than the right answer");

    // Bulk-loaded by the superuser (the store would take a transaction per row).
    let value = serde_json::to_value(entry("x")).unwrap();
    let mut owner = admin(&db).await;
    for chunk in rows.chunks(1_000) {
        let tenants: Vec<uuid::Uuid> = chunk.iter().map(|(k, _, _)| k.tenant().0).collect();
        let namespaces: Vec<Vec<u8>> = chunk.iter().map(|(k, _, _)| k.digest().to_vec()).collect();
        let prompts: Vec<String> = chunk.iter().map(|(_, p, _)| p.clone()).collect();
        let vectors: Vec<String> = chunk.iter().map(|(_, _, v)| vector_text(v)).collect();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (id, tenant_id, namespace, prompt, embedding, value, alias, created_at, expires_at) \
             SELECT gen_random_uuid(), t, n, p, v::vector, $5, 'm', now(), now() + interval '1 hour' \
             FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::text[]) AS r (t, n, p, v)"
        )))
        .bind(tenants)
        .bind(namespaces)
        .bind(prompts)
        .bind(vectors)
        .bind(&value)
        .execute(&mut owner)
        .await
        .unwrap();
    }
    sqlx::query(AssertSqlSafe(format!("ANALYZE {table}"))).execute(&mut owner).await.unwrap();
    assert_eq!(count_all(&db, D).await, 2 * PER_SIDE as i64);

    // Through the store, whichever plan PostgreSQL picks.
    let hit = store.nearest(&target, &query, 0.5).await.unwrap().expect("the right answer qualifies");
    assert_eq!(hit.prompt, "right");
    assert!((hit.similarity - dot(&query, &right)).abs() < 1e-3);

    // The same query as tollgate_app, forced onto the HNSW index.
    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    let sql = format!(
        "SELECT prompt FROM {table} WHERE tenant_id = $1 AND namespace = $2 AND expires_at > now() \
         ORDER BY embedding <=> $3::real[]::vector LIMIT 1"
    );
    let mut run = async |iterative: &str| -> (String, Option<String>) {
        let mut tx = app.begin().await.unwrap();
        sqlx::query(
            "SELECT set_config('tollgate.tenant_id', $1, true), set_config('hnsw.iterative_scan', $2, true), \
             set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true), \
             set_config('enable_sort', 'off', true)",
        )
        .bind(a.0.to_string())
        .bind(iterative)
        .execute(&mut *tx)
        .await
        .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN (COSTS OFF) {sql}")))
            .bind(a.0)
            .bind(target.digest().as_slice())
            .bind(query.as_slice())
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let found: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .bind(a.0)
            .bind(target.digest().as_slice())
            .bind(query.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        (plan.join("\n"), found)
    };
    let (plan, found) = run("strict_order").await;
    assert!(plan.contains(&format!("Index Scan using {table}_embedding_idx")), "{plan}");
    assert_eq!(found.as_deref(), Some("right"), "the iterative scan goes past the decoys");
    let (plan, found) = run("off").await;
    assert!(plan.contains(&format!("Index Scan using {table}_embedding_idx")), "{plan}");
    assert_eq!(found, None, "without it the filtered HNSW scan is empty: the test proves something");
}

/// The owner's schema step is idempotent, safe to run twice at once, keeps the store migrations
/// working, and takes several dimensions side by side.
#[tokio::test]
async fn migrate_semantic_twice_and_at_once_is_fine() {
    let db = TestDb::create_on(&pgvector_url()).await;
    PostgresStore::migrate(&db.owner_url).await.unwrap();
    let (first, second) = tokio::join!(
        PostgresStore::migrate_semantic(&db.owner_url, DIM),
        PostgresStore::migrate_semantic(&db.owner_url, DIM)
    );
    first.unwrap();
    second.unwrap();
    PostgresStore::migrate_semantic(&db.owner_url, DIM).await.unwrap();
    PostgresStore::migrate(&db.owner_url).await.unwrap();
    PostgresStore::migrate_semantic(&db.owner_url, 8).await.unwrap();

    let mut owner = admin(&db).await;
    let policies: Vec<String> = sqlx::query_scalar(
        "SELECT policyname::text FROM pg_policies WHERE tablename = $1 ORDER BY policyname",
    )
    .bind(semantic_table(DIM))
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let t = semantic_table(DIM);
    assert_eq!(
        policies,
        ["owner_definer", "tenant_delete", "tenant_insert", "tenant_select"].map(|p| format!("{t}_{p}"))
    );
    let (enabled, forced): (bool, bool) = sqlx::query_as(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = to_regclass($1)",
    )
    .bind(&t)
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(enabled && forced);
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname")
            .bind(&t)
            .fetch_all(&mut owner)
            .await
            .unwrap();
    assert!(indexes.iter().any(|d| d.contains("USING hnsw (embedding vector_cosine_ops)")), "{indexes:?}");
    assert!(indexes.iter().any(|d| d.contains("(tenant_id, namespace, expires_at)")), "{indexes:?}");

    // Both dimensions work, each in its own table.
    let big = PgSemanticStore::connect(&db.app_url, DIM).await.unwrap();
    let small = PgSemanticStore::connect(&db.app_url, 8).await.unwrap();
    let ns = namespace(TenantId::new(), 1);
    big.put(&ns, stored("big", unit(DIM, 1)), MINUTE).await.unwrap();
    small.put(&ns, stored("small", unit(8, 1)), MINUTE).await.unwrap();
    assert_eq!(big.nearest(&ns, &unit(DIM, 1), 0.99).await.unwrap().unwrap().prompt, "big");
    assert_eq!(small.nearest(&ns, &unit(8, 1), 0.99).await.unwrap().unwrap().prompt, "small");
    assert!(big.nearest(&ns, &unit(8, 1), -1.0).await.unwrap().is_none(), "8 dimensions never reach d384");
}

/// Expired rows: never returned, dropped from the namespace a `put` writes to, and swept for
/// every tenant by `purge_expired`; stats count live entries only. TTLs are capped.
#[tokio::test]
async fn expired_entries_are_swept_and_ttls_capped() {
    let (store, db) = semantic_db(DIM).await;
    let (a, b, c) = (TenantId::new(), TenantId::new(), TenantId::new());
    let short = Duration::from_millis(300);
    for i in 0..3 {
        store.put(&namespace(a, 1), stored("a", unit(DIM, i)), short).await.unwrap();
    }
    for i in 0..2 {
        store.put(&namespace(b, 1), stored("b", unit(DIM, 10 + i)), short).await.unwrap();
    }
    store.put(&namespace(c, 1), stored("c", unit(DIM, 20)), Duration::MAX).await.unwrap();
    assert_eq!(store.stats().await.unwrap().entries, 6);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(store.stats().await.unwrap().entries, 1, "live entries only");
    assert_eq!(count_all(&db, DIM).await, 6, "still on disk");

    // A put sweeps its own namespace's expired rows (B's first), nothing else.
    store.put(&namespace(b, 1), stored("b again", unit(DIM, 12)), MINUTE).await.unwrap();
    assert_eq!(count_all(&db, DIM).await, 5);
    assert_eq!(store.purge_expired().await.unwrap(), 3, "A's, across tenants");
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(count_all(&db, DIM).await, 2);

    // Duration::MAX was cut to a year.
    let sql = format!(
        "SELECT extract(epoch FROM expires_at - now())::float8 FROM {} WHERE prompt = 'c'",
        semantic_table(DIM)
    );
    let left: f64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut admin(&db).await).await.unwrap();
    let year = 365.0 * 86_400.0;
    assert!((year - 60.0..=year).contains(&left), "{left}");
}

/// Purges count the live entries they removed, and an embedding of the wrong length is an
/// error on `put` (a misconfigured embedder), never a stored row.
#[tokio::test]
async fn purge_counts_live_entries_and_wrong_lengths_are_refused() {
    let (store, db) = semantic_db(DIM).await;
    let a = TenantId::new();
    store.put(&namespace(a, 1), stored("gone", unit(DIM, 1)), Duration::from_millis(200)).await.unwrap();
    store.put(&namespace(a, 2), stored("live", unit(DIM, 2)), MINUTE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.purge(&PurgeFilter::tenant(a)).await.unwrap(), 1, "the expired one is not counted");
    assert_eq!(count_all(&db, DIM).await, 0, "but it is removed");

    let err = store.put(&namespace(a, 1), stored("short", unit(DIM / 2, 1)), MINUTE).await.unwrap_err();
    let CacheError::Unavailable(msg) = err;
    assert!(msg.contains("192 dimensions") && msg.contains("semantic_cache_d384"), "{msg}");
    let mut nan = unit(DIM, 3);
    nan[0] = f32::NAN;
    assert!(store.nearest(&namespace(a, 1), &nan, -1.0).await.unwrap().is_none());
    assert_eq!(count_all(&db, DIM).await, 0);
}

/// Start-up errors an operator can act on, on the pgvector server: no semantic table yet (the
/// extension not even created), the wrong dimension, an owner URL instead of the app's, a
/// dimension out of range, and the schema step before the store migrations.
#[tokio::test]
async fn connect_without_the_table_says_what_to_run() {
    let db = TestDb::create_on(&pgvector_url()).await;
    PostgresStore::migrate(&db.owner_url).await.unwrap();
    let err = PgSemanticStore::connect(&db.app_url, DIM).await.unwrap_err().to_string();
    assert!(
        err.contains("semantic_cache_d384 is missing")
            && err.contains("not created in this database")
            && err.contains("migrate_semantic"),
        "{err}"
    );
    PostgresStore::migrate_semantic(&db.owner_url, 8).await.unwrap();
    let err = PgSemanticStore::connect(&db.app_url, DIM).await.unwrap_err().to_string();
    assert!(err.contains("semantic_cache_d384 is missing") && err.contains("for 384 dimensions"), "{err}");
    let err = PgSemanticStore::connect(&db.owner_url, 8).await.unwrap_err().to_string();
    assert!(err.contains("bypasses row-level security"), "{err}");
    let err = PgSemanticStore::connect(&db.app_url, 4096).await.unwrap_err().to_string();
    assert!(err.contains("1 to 2000 dimensions"), "{err}");

    let bare = TestDb::create_on(&pgvector_url()).await;
    let err = PostgresStore::migrate_semantic(&bare.owner_url, 8).await.unwrap_err().to_string();
    assert!(err.contains("run the store migrations"), "{err}");
}

/// On a PostgreSQL without pgvector (Debian's, at `TOLLGATE_TEST_PG_URL`): the store migrations
/// and the store work, and the semantic cache's schema step and start-up fail saying what is
/// missing and where to read more.
#[tokio::test]
async fn without_pgvector_the_error_is_clear() {
    // The store's own migrations and the store itself need no pgvector.
    let (_store, db) = TestDb::with_store().await;
    let mut owner = admin(&db).await;
    let has: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert!(!has, "this test needs a PostgreSQL without pgvector at TOLLGATE_TEST_PG_URL");
    let migrate_err = PostgresStore::migrate_semantic(&db.owner_url, DIM).await.unwrap_err().to_string();
    let connect_err = PgSemanticStore::connect(&db.app_url, DIM).await.unwrap_err().to_string();
    for err in [&migrate_err, &connect_err] {
        assert!(
            err.contains("the semantic cache on PostgreSQL needs the pgvector extension (>= 0.8)")
                && err.contains("docs/postgres.md"),
            "{err}"
        );
    }
    eprintln!("start-up error without pgvector: {connect_err}");
}
