//! The SQLite store: the single-node default. One file in WAL mode behind a small sqlx pool;
//! implements [`AuthStore`], [`AdminStore`] and [`ChangeFeed`] (an in-process broadcast
//! channel, since on one node every change is made here).
//!
//! Writes run in `BEGIN IMMEDIATE` transactions: SQLite allows one writer, and taking the write
//! lock up front makes a concurrent writer wait on `busy_timeout` instead of failing with
//! `SQLITE_BUSY` when a read transaction tries to upgrade. Each mutation writes its audit
//! record in the same transaction and publishes its [`Change`] only after the commit.

mod admin;
mod cache_journal;
mod rows;
mod semantic;
mod usage;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tollgate_types::ports::store::{AuthStore, Change, ChangeEvent, ChangeFeed, StoreError};
use tollgate_types::tenancy::{Actor, AuditId, KeyAuth, KeyHash, KeyId, PageRequest, TenantId};
use uuid::Uuid;

use crate::{Store, db_error};
pub use cache_journal::SqliteCacheJournal;
use rows::KeyAuthRow;
pub use semantic::SqliteSemanticJournal;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in the pool: SQLite has one writer, so more mostly adds readers.
const MAX_CONNECTIONS: u32 = 4;
/// Changes buffered per subscriber before it lags and gets [`ChangeEvent::Resync`].
const CHANGE_CAPACITY: usize = 1024;

type Tx = Transaction<'static, Sqlite>;

/// A SQLite-backed store. Cheap to clone (the pool and the change channel are shared).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    changes: broadcast::Sender<Change>,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if missing) the database at `path_or_url`: a `sqlite:` URL or a plain
    /// file path. Does not migrate; call [`SqliteStore::migrate`].
    pub async fn open(path_or_url: &str) -> Result<SqliteStore, StoreError> {
        let options = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url)
                .map_err(|e| StoreError::Invalid(format!("store url: {e}")))?
        } else {
            SqliteConnectOptions::new().filename(path_or_url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only an OS crash can
            // lose the last transactions, which is the usual trade for a gateway's admin data.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        Ok(SqliteStore { pool, changes })
    }

    /// Applies the embedded migrations (`migrations/sqlite`) that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating the SQLite store failed: {e}")))
    }

    /// The store behind the three ports, as the gateway takes it.
    pub fn into_store(self) -> Store {
        let this = Arc::new(self);
        Store { auth: this.clone(), admin: this.clone(), changes: this.clone(), usage: this }
    }

    /// The connection pool, for other SQLite-backed components sharing the file.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction, taking SQLite's write lock now (see the module doc).
    /// One page of a tenant-scoped table, oldest first: `sql` binds the tenant, the cursor and
    /// the row limit, in that order; `convert` turns typed rows into records, `id` reads their
    /// cursor.
    async fn list_scoped<R, T>(
        &self,
        tenant: TenantId,
        page: PageRequest,
        sql: &'static str,
        convert: fn(R) -> Result<T, StoreError>,
        id: fn(&T) -> Uuid,
    ) -> Result<tollgate_types::tenancy::Page<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let limit = crate::paging::page_limit(&page);
        let rows: Vec<R> = sqlx::query_as(sql)
            .bind(tenant.0)
            .bind(after_asc(page))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let records = rows.into_iter().map(convert).collect::<Result<Vec<_>, _>>()?;
        Ok(crate::paging::finish_page(records, limit, id))
    }

    /// Reads one row of a tenant-scoped table by id: `sql` binds the tenant first and the id
    /// second; `convert` turns the typed row into the record; `what` names it in `NotFound`.
    async fn get_scoped<R, T>(
        &self,
        tenant: TenantId,
        sql: &'static str,
        id: Uuid,
        convert: fn(R) -> Result<T, StoreError>,
        what: &'static str,
    ) -> Result<T, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let row: Option<R> =
            sqlx::query_as(sql).bind(tenant.0).bind(id).fetch_optional(&self.pool).await.map_err(db_error)?;
        row.map(convert).transpose()?.ok_or(StoreError::NotFound(what))
    }

    async fn write_tx(&self) -> Result<Tx, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
    }

    /// Tells subscribers about committed changes. No subscriber is not an error.
    fn publish(&self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            let _ = self.changes.send(change);
        }
    }
}

// === helpers shared by the admin methods ===

/// The page's cursor for ascending pages: the nil UUID sorts before every id.
fn after_asc(page: PageRequest) -> Uuid {
    page.after.unwrap_or(Uuid::nil())
}

/// The page's cursor for descending pages: the max UUID sorts after every id.
fn after_desc(page: PageRequest) -> Uuid {
    page.after.unwrap_or(Uuid::max())
}

fn to_json(value: &impl Serialize) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Internal(format!("serializing a record: {e}")))
}

/// One audit record to write in the mutation's transaction.
struct Audit<'a> {
    tenant: TenantId,
    actor: &'a Actor,
    action: &'static str,
    resource_type: &'static str,
    resource_id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    at: OffsetDateTime,
}

impl Audit<'_> {
    async fn write(self, tx: &mut Tx) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, tenant_id, actor, action, resource_type, resource_id, before, after, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(AuditId::new().0)
        .bind(self.tenant.0)
        .bind(sqlx::types::Json(self.actor))
        .bind(self.action)
        .bind(self.resource_type)
        .bind(self.resource_id)
        .bind(self.before.map(sqlx::types::Json))
        .bind(self.after.map(sqlx::types::Json))
        .bind(self.at)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

/// Maps a unique violation to `Conflict(message())`, anything else as [`db_error`] does.
fn conflict_or(e: sqlx::Error, message: impl FnOnce(&str) -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict(message(db.message()));
    }
    db_error(e)
}

/// Maps a foreign-key violation (the parent row is gone) to `NotFound(what)`.
fn missing_parent_or(e: sqlx::Error, what: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return StoreError::NotFound(what);
    }
    db_error(e)
}

// === impl AuthStore ===

#[async_trait::async_trait]
impl AuthStore for SqliteStore {
    async fn authenticate_key(&self, hash: &KeyHash) -> Result<Option<KeyAuth>, StoreError> {
        // LEFT JOIN members: a deleted member's keys stay as revoked records (see the migration).
        let row: Option<KeyAuthRow> = sqlx::query_as(
            "SELECT k.id, k.tenant_id, k.project_id, k.owner_id, m.role, k.scopes, k.allowed_models, \
                    k.allowed_tags, k.expires_at, k.revoked_at, t.policy, k.limits AS key_limits, \
                    p.limits AS project_limits, t.limits AS tenant_limits, t.pricing AS tenant_pricing, \
                    k.cache AS key_cache, p.cache AS project_cache \
             FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant_id \
             JOIN projects p ON p.id = k.project_id AND p.tenant_id = k.tenant_id \
             LEFT JOIN members m ON m.id = k.owner_id AND m.tenant_id = k.tenant_id \
             WHERE k.hash = ?",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(KeyAuth::try_from).transpose()
    }

    async fn touch_keys(&self, used: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        // One transaction for the batch: one fsync instead of one per key.
        let mut tx = self.write_tx().await?;
        for (id, at) in used {
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(crate::validate::micros(*at))
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_error)?;
        Ok(())
    }
}

// === impl ChangeFeed ===

impl ChangeFeed for SqliteStore {
    fn subscribe(&self) -> BoxStream<'static, ChangeEvent> {
        futures::stream::unfold(self.changes.subscribe(), |mut rx| async move {
            match rx.recv().await {
                Ok(change) => Some((ChangeEvent::Changed(change), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((ChangeEvent::Resync, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }
}
