//! The store contract (`tests/contract`) on SQLite: each test gets its own database file in the
//! system temp directory, removed when the test ends.

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

#[macro_use]
mod contract;

use std::path::PathBuf;

use tollgate_store::Store;
use tollgate_store::sqlite::SqliteStore;

/// Removes the test's database file (and its WAL side files) when dropped.
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            // Best effort: a leftover temp file is not worth failing a test over.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A migrated store on a fresh file.
async fn fresh_sqlite() -> (Store, TempDb) {
    let path = std::env::temp_dir().join(format!("tollgate-store-{}.db", uuid::Uuid::now_v7()));
    let guard = TempDb(path.clone());
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    (store.into_store(), guard)
}

store_contract!(fresh_sqlite());

/// Opening an existing file again (and migrating twice) keeps its data.
#[tokio::test]
async fn reopening_keeps_data() {
    use tollgate_types::ports::store::NewTenant;
    use tollgate_types::tenancy::{Actor, PageRequest, TenantPolicy};

    let path = std::env::temp_dir().join(format!("tollgate-store-{}.db", uuid::Uuid::now_v7()));
    let _guard = TempDb(path.clone());
    let url = format!("sqlite:{}", path.display());
    let first = SqliteStore::open(&url).await.unwrap();
    first.migrate().await.unwrap();
    let store = first.clone().into_store();
    let t = store
        .admin
        .create_tenant(NewTenant { name: "acme".into(), policy: TenantPolicy::default() }, &Actor::Cli)
        .await
        .unwrap();
    first.pool().close().await;

    let again = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    again.migrate().await.unwrap();
    let store = again.into_store();
    assert_eq!(store.admin.get_tenant(t.id).await.unwrap(), t);
    assert_eq!(store.admin.list_tenants(PageRequest::first(10)).await.unwrap().data.len(), 1);
}

/// Records written before migrations 0005 (routing columns) and 0007 (cache saving) read back
/// with their defaults: no serving alias, no attempts, not hedged, nothing saved.
#[tokio::test]
async fn usage_records_from_before_the_routing_columns_get_their_defaults() {
    use tollgate_types::ports::usage::UsageStore;
    use tollgate_types::tenancy::{PageRequest, TenantId};

    let path = std::env::temp_dir().join(format!("tollgate-store-{}.db", uuid::Uuid::now_v7()));
    let _guard = TempDb(path.clone());
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    sqlx::migrate!("./migrations/sqlite").run_to(20260101000003, store.pool()).await.unwrap();
    let tenant = TenantId::new();
    sqlx::query(
        "INSERT INTO usage_records (id, request_id, at, tenant_id, endpoint, model, status, input_tokens, \
         output_tokens, cached_input_tokens, reasoning_tokens, token_source, latency_ms, metadata) \
         VALUES (?, 'old', '2026-11-21T12:00:00Z', ?, 'chat', 'm', 200, 1, 1, 0, 0, 'provider', 5, '{}')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(tenant.0)
    .execute(store.pool())
    .await
    .unwrap();

    store.migrate().await.unwrap();
    let records = store.list_usage(tenant, PageRequest::first(10)).await.unwrap().data;
    assert_eq!(records.len(), 1);
    let old = &records[0];
    assert_eq!(
        (old.request_id.as_str(), &old.served_model, old.attempts, old.hedged),
        ("old", &None, 0, false)
    );
    // Nor a cache saving (migration 0007).
    assert_eq!((&old.cache_status, old.cost_saved_nanodollars), (&None, None));
}
