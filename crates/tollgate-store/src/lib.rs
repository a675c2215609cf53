//! The stores behind the tenancy ports of `tollgate-types`: [`sqlite::SqliteStore`] (the
//! default: one file, WAL mode) and [`postgres::PostgresStore`] (many nodes; row-level security
//! enforces tenant isolation in the database itself). Both pass one contract suite
//! (`tests/contract`). Migrations are embedded and run by [`open`] at start or by
//! `tollgate migrate`.

mod paging;
pub mod postgres;
pub mod sqlite;
mod usage_row;
mod usage_totals;
pub mod validate;

pub use tollgate_types::ports::store::Store;
use tollgate_types::ports::store::StoreError;

/// Which store a URL selects: `postgres://` or `postgresql://` → PostgreSQL; `sqlite:` or a
/// plain path → SQLite.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Maps sqlx errors to the port's error, keeping the database's details out of client messages.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound("record"),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

/// Opens the store a URL names, running the embedded migrations first when `migrate` is set.
/// PostgreSQL migrations run as `owner_url` (the role owning the tables) and are skipped when
/// it is not given; the gateway then connects as `url` (the `tollgate_app` role, which owns
/// nothing and cannot bypass row-level security).
pub async fn open(url: &str, owner_url: Option<&str>, migrate: bool) -> Result<Store, StoreError> {
    if is_postgres_url(url) {
        // The app role cannot migrate (it owns nothing), so start-up migration needs the
        // owner's URL; without it, migrations are an operator's `tollgate migrate` job.
        match (migrate, owner_url) {
            (true, Some(owner)) => postgres::PostgresStore::migrate(owner).await?,
            (true, None) => tracing::info!(
                "store.owner_url is not set: not migrating at start-up (run `tollgate migrate` as the owning role)"
            ),
            (false, _) => {}
        }
        return Ok(postgres::PostgresStore::connect(url).await?.into_store());
    }
    let store = sqlite::SqliteStore::open(url).await?;
    if migrate {
        store.migrate().await?;
    }
    Ok(store.into_store())
}

/// The in-process caches' journals (exact and semantic) in the SQLite store `url` names, on one
/// pool of their own (the store's migrations must have run). `None` for PostgreSQL, whose nodes
/// share Redis (exact) and pgvector (semantic) instead.
pub async fn open_cache_journals(url: &str) -> Result<Option<CacheJournals>, StoreError> {
    if is_postgres_url(url) {
        return Ok(None);
    }
    let store = sqlite::SqliteStore::open(url).await?;
    Ok(Some(CacheJournals { exact: store.cache_journal(), semantic: store.semantic_journal() }))
}

/// What [`open_cache_journals`] opens.
pub struct CacheJournals {
    pub exact: std::sync::Arc<dyn tollgate_types::ports::CacheJournal>,
    pub semantic: std::sync::Arc<dyn tollgate_types::ports::SemanticJournal>,
}

/// Runs the migrations of the store a URL names (`tollgate migrate`); PostgreSQL: as
/// `owner_url` when given, else as `url`, which must then be the owning role.
pub async fn migrate(url: &str, owner_url: Option<&str>) -> Result<(), StoreError> {
    if is_postgres_url(url) {
        return postgres::PostgresStore::migrate(owner_url.unwrap_or(url)).await;
    }
    sqlite::SqliteStore::open(url).await?.migrate().await
}
