//! [`PostgresStore`]: the tenancy store for many gateway nodes sharing one PostgreSQL.
//!
//! Isolation is enforced by the database, not only by `WHERE` clauses: every tenant-scoped table
//! has row-level security keyed on the per-transaction setting `tollgate.tenant_id`, and the
//! gateway connects as `tollgate_app`, which owns no table and cannot bypass the policies. Each
//! tenant-scoped method runs in a transaction whose first statement sets the tenant
//! ([`PostgresStore::tenant_tx`]). The few lookups that happen before a tenant is known (key
//! authentication) or across tenants (super-admin) call narrow `SECURITY DEFINER` functions
//! defined by the migration. Changes are broadcast to every node with `NOTIFY` (see
//! [`changes`]). Operators: `docs/postgres.md`.

mod admin;
mod auth;
mod changes;
mod rows;
mod semantic;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};
use tollgate_types::ports::store::{Change, StoreError};
use tollgate_types::tenancy::{Actor, TenantId};

use crate::{Store, db_error};

pub use changes::PgChangeFeed;
pub use semantic::{MAX_SEMANTIC_DIM, MIN_PGVECTOR, PgSemanticStore, semantic_table};

/// The channel every node `LISTEN`s on; payloads are `key:<uuid>`, `tenant:<uuid>` and
/// `credentials:<uuid>` (see [`changes`]).
pub const CHANGE_CHANNEL: &str = "tollgate_changes";

/// The PostgreSQL store. Cheap to clone (a pool handle and the shared change feed).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    changes: Arc<PgChangeFeed>,
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects as the application role (`tollgate_app`) and starts listening for changes made
    /// by every node. The schema must already be migrated by the owner ([`Self::migrate`]).
    pub async fn connect(app_url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(app_url)
            .await
            .map_err(db_error)?;
        // Row-level security is the isolation guarantee: refuse a role that bypasses it.
        let (user, bypasses): (String, bool) = sqlx::query_as(
            "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await
        .map_err(db_error)?;
        if bypasses {
            return Err(StoreError::Invalid(format!(
                "store.url connects as {user:?}, a role that bypasses row-level security; connect as tollgate_app \
                 (see docs/postgres.md) and give the owning role in store.owner_url for migrations"
            )));
        }
        // Listening starts before `connect` returns, so a subscriber never misses a change made
        // after the store was handed out.
        let changes = PgChangeFeed::start(app_url).await?;
        let store = Self { pool, changes: Arc::new(changes) };
        // Start-up is a natural moment to keep next months' partitions ready; a failure only
        // means rows land in the DEFAULT partition, so it is logged, not fatal.
        if let Err(e) = store.ensure_usage_partitions(3).await {
            tracing::warn!(error = %e, "could not create the coming months' usage partitions");
        }
        Ok(store)
    }

    /// Connects as the owner role and runs the embedded migrations (creating the
    /// `tollgate_app` role if it is missing). Safe to run concurrently: sqlx takes an advisory
    /// lock per database.
    pub async fn migrate(owner_url: &str) -> Result<(), StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(owner_url)
            .await
            .map_err(db_error)?;
        let result = sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| {
            StoreError::Internal(format!(
                "postgres migration failed (it must run as the role that owns the tables, \
                     not as tollgate_app): {e}"
            ))
        });
        pool.close().await;
        result
    }

    /// The store as the gateway uses it.
    pub fn store(&self) -> Store {
        Store {
            auth: Arc::new(self.clone()),
            admin: Arc::new(self.clone()),
            changes: self.changes.clone(),
            usage: Arc::new(self.clone()),
        }
    }

    /// Like [`Self::store`], consuming `self`.
    pub fn into_store(self) -> Store {
        self.store()
    }

    /// Begins a transaction bound to `tenant`: its first statement sets `tollgate.tenant_id`
    /// (transaction-local, so a pooled connection never carries it into the next use), and
    /// row-level security then hides every other tenant's rows from every statement after it.
    async fn tenant_tx(&self, tenant: TenantId) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        set_tenant(&mut tx, tenant).await?;
        Ok(tx)
    }

    /// One page of a tenant-scoped table, oldest first, under the tenant's setting: `sql` binds
    /// the tenant as `$1`, the cursor as `$2` and the row limit as `$3`.
    async fn list_scoped<T: rows::HasId>(
        &self,
        tenant: TenantId,
        page: tollgate_types::tenancy::PageRequest,
        sql: &'static str,
        map: fn(&sqlx::postgres::PgRow) -> Result<T, StoreError>,
    ) -> Result<tollgate_types::tenancy::Page<T>, StoreError> {
        let limit = crate::paging::page_limit(&page);
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(sql)
            .bind(tenant.0)
            .bind(page.after)
            .bind(limit as i64 + 1)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(crate::paging::finish_page(rows::all(&rows, map)?, limit, rows::uuid_of))
    }

    /// Reads one row of a tenant-scoped table by id, under the tenant's setting: `sql` binds
    /// the tenant as `$1` and the id as `$2`. `what` names the record in `NotFound`.
    async fn get_scoped<T>(
        &self,
        tenant: TenantId,
        sql: &'static str,
        id: uuid::Uuid,
        map: fn(&sqlx::postgres::PgRow) -> Result<T, StoreError>,
        what: &'static str,
    ) -> Result<T, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row =
            sqlx::query(sql).bind(tenant.0).bind(id).fetch_optional(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        row.as_ref().map(map).transpose()?.ok_or(StoreError::NotFound(what))
    }
}

/// Sets the row-level-security tenant for the rest of the current transaction.
async fn set_tenant(conn: &mut PgConnection, tenant: TenantId) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('tollgate.tenant_id', $1, true)")
        .bind(tenant.0.to_string())
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Queues a change notification. `NOTIFY` is transactional: it is delivered only if, and when,
/// the surrounding transaction commits, so no node hears of a change that was rolled back.
async fn notify(conn: &mut PgConnection, change: Change) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify('tollgate_changes', $1)")
        .bind(changes::encode(change))
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// One audit record, written in the caller's transaction (so there is no change without it).
struct AuditEntry<'a> {
    tenant: TenantId,
    actor: &'a Actor,
    action: &'static str,
    resource_type: &'static str,
    resource_id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
}

async fn write_audit(conn: &mut PgConnection, entry: AuditEntry<'_>) -> Result<(), StoreError> {
    let actor = to_json(entry.actor)?;
    sqlx::query(
        "INSERT INTO audit_log (id, tenant_id, actor, action, resource_type, resource_id, before, after, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())",
    )
    .bind(tollgate_types::tenancy::AuditId::new().0)
    .bind(entry.tenant.0)
    .bind(actor)
    .bind(entry.action)
    .bind(entry.resource_type)
    .bind(entry.resource_id)
    .bind(entry.before)
    .bind(entry.after)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Internal(format!("serialize: {e}")))
}

/// What a write's database error means, given what was being written. Unique violations become
/// `Conflict` naming the field and value (mapped from the database's own check, never a racy
/// pre-check); foreign-key violations become `NotFound` for the referenced record.
fn write_error(e: sqlx::Error, conflict: impl FnOnce(&str) -> StoreError) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("23505") => return conflict(db.constraint().unwrap_or_default()),
            Some("23503") => {
                return match db.constraint().unwrap_or_default() {
                    "api_keys_project_fkey" => StoreError::NotFound("project"),
                    _ => StoreError::NotFound("tenant"),
                };
            }
            Some("23514") => {
                return StoreError::Invalid(format!(
                    "value rejected by check {}",
                    db.constraint().unwrap_or("constraint")
                ));
            }
            _ => {}
        }
    }
    db_error(e)
}
