//! Per-test PostgreSQL databases for the store tests.
//!
//! Each test gets its own database `tollgate_test_<uuid v7, simple>`, created through the admin
//! URL (`TOLLGATE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, or another
//! cluster's with `TestDb::create_on`, e.g. the pgvector server of `semantic_postgres`), migrated
//! as that admin (the owner role) and used as `tollgate_app` (trust auth locally). The guard drops
//! the database when the test ends; databases a crashed run left behind are swept at the next
//! run once they are an hour old (the v7 uuid in the name carries the creation time).

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use tollgate_store::postgres::PostgresStore;
use uuid::Uuid;

pub const APP_ROLE: &str = "tollgate_app";
const PREFIX: &str = "tollgate_test_";

pub fn admin_url() -> String {
    std::env::var("TOLLGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `base` with another database and, if given, another user (password dropped with the user).
pub fn url_for(base: &str, database: &str, user: Option<&str>) -> String {
    let mut opts = PgConnectOptions::from_str(base).unwrap().database(database);
    if let Some(user) = user {
        opts = opts.username(user).password("");
    }
    let mut url = opts.to_url_lossy();
    if user.is_some() {
        url.set_password(None).unwrap();
    }
    url.to_string()
}

/// One test database; dropped (with `FORCE`, closing the test's connections) on drop.
pub struct TestDb {
    pub name: String,
    /// The admin (owner, superuser) URL of this database.
    pub owner_url: String,
    /// The `tollgate_app` URL of this database.
    pub app_url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_on(&admin_url()).await
    }

    /// Like [`Self::create`], on the cluster of another admin (superuser) URL.
    pub async fn create_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        sweep_leftovers(&admin_url).await;
        let name = format!("{PREFIX}{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        // The name is generated above (hex digits only), never user input.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
        Self {
            owner_url: url_for(&admin_url, &name, None),
            app_url: url_for(&admin_url, &name, Some(APP_ROLE)),
            name,
            admin_url,
        }
    }

    /// Creates, migrates as the owner, and connects the store as `tollgate_app`.
    pub async fn with_store() -> (PostgresStore, Self) {
        let db = Self::create().await;
        PostgresStore::migrate(&db.owner_url).await.unwrap();
        let store = PostgresStore::connect(&db.app_url).await.unwrap();
        (store, db)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await, and this may run inside the test's runtime: do it on a thread with
        // its own runtime and wait for it (best effort; leftovers are swept later).
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(drop_database(&admin_url, &name));
        });
        let _ = cleanup.join();
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let Ok(mut admin) = PgConnection::connect(admin_url).await else { return };
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await;
    let _ = admin.close().await;
}

/// Drops test databases older than an hour (a killed test run never ran its guards). Once per
/// process and cluster.
async fn sweep_leftovers(admin_url: &str) {
    static SWEPT: tokio::sync::Mutex<Vec<String>> = tokio::sync::Mutex::const_new(Vec::new());
    {
        let mut swept = SWEPT.lock().await;
        if swept.iter().any(|u| u == admin_url) {
            return;
        }
        swept.push(admin_url.to_owned());
    }
    let Ok(mut admin) = PgConnection::connect(admin_url).await else { return };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'tollgate\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    let _ = admin.close().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| id.get_timestamp())
            .map(|ts| ts.to_unix().0 as i64);
        if let Some(created) = created
            && now - created > 3600
        {
            drop_database(admin_url, &name).await;
        }
    }
}
