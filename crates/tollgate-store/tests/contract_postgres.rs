//! The store contract (`tests/contract`) on PostgreSQL: each test gets its own database
//! (`pg_support`), migrated as the owner and used as `tollgate_app`, so every rule is checked
//! with row-level security in force. Dropped when the test ends.

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

#[macro_use]
mod contract;
mod pg_support;

use pg_support::TestDb;
use tollgate_store::Store;

/// A migrated store on a fresh database, connected as the application role.
async fn fresh_postgres() -> (Store, TestDb) {
    let (store, db) = TestDb::with_store().await;
    (store.into_store(), db)
}

store_contract!(fresh_postgres());
