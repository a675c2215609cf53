//! [`PgSemanticStore`]: the semantic cache on PostgreSQL with pgvector, shared by every node
//! (`cache.semantic.backend: postgres`). Operators: `docs/postgres.md`, "Semantic cache on
//! pgvector".
//!
//! One table per embedding length, `semantic_cache_d<dim>`, because an HNSW index needs a fixed
//! dimension. The table is created by the owner role with [`PostgresStore::migrate_semantic`],
//! not by the embedded migrations, so those keep working on a PostgreSQL without pgvector. Like
//! every tenant-scoped table it has forced row-level security keyed on `tollgate.tenant_id`, and
//! every lookup, insert and purge runs in a transaction whose first statement sets the tenant.
//!
//! Lookups order by cosine distance (`<=>`) under `WHERE tenant_id, namespace, expires_at`.
//! When the planner walks the HNSW index, the filter is applied to the candidates the index
//! yields; `hnsw.iterative_scan = strict_order` (pgvector 0.8) makes the scan go on past the
//! first `hnsw.ef_search` candidates until a row passes the filter, so a namespace whose rows
//! are not among the globally nearest still finds its own nearest entry.
//!
//! Vectors go over the wire as `real[]` in binary (sqlx encodes `&[f32]` natively) and are cast
//! with `::real[]::vector`: exact, with no text formatting or parsing of floats, and no crate for
//! the `vector` type. Answers are stored as `jsonb` (the `CachedResponse` serialised by serde).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Transaction};
use tollgate_types::ports::semantic::MAX_SEMANTIC_TTL;
use tollgate_types::ports::store::StoreError;
use tollgate_types::ports::{
    CacheError, CacheKey, CacheStats, CachedResponse, PurgeFilter, SemanticEntry, SemanticHit, SemanticStore,
};
use tollgate_types::tenancy::TenantId;

use super::PostgresStore;
use crate::db_error;

/// The oldest pgvector the store accepts: 0.8.0 brought `hnsw.iterative_scan`, without which a
/// filtered HNSW scan can come back empty.
pub const MIN_PGVECTOR: (u32, u32) = (0, 8);

/// The longest embedding an HNSW index over `vector` takes (pgvector's limit).
pub const MAX_SEMANTIC_DIM: usize = 2000;

/// How many expired rows one `purge_expired` statement deletes (short statements, short locks).
const PURGE_BATCH: i32 = 10_000;

/// The table of embeddings of length `dim`.
pub fn semantic_table(dim: usize) -> String {
    format!("semantic_cache_d{dim}")
}

/// Deletes `tenant`'s rows from every semantic-cache table (part of deleting the tenant: the
/// tables are made at run time, one per embedding length, and carry no foreign key). Runs in
/// the caller's transaction, which it binds to `tenant` for row-level security.
pub(super) async fn delete_tenant_rows(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
) -> Result<(), StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname ~ '^semantic_cache_d[0-9]+$'",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    if tables.is_empty() {
        return Ok(());
    }
    super::set_tenant(&mut *conn, tenant).await?;
    for t in tables {
        // `t` matched ^semantic_cache_d[0-9]+$ above: a plain identifier.
        sqlx::query(AssertSqlSafe(format!("DELETE FROM public.{t} WHERE tenant_id = $1")))
            .bind(tenant.0)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Creates, as the owner role, what the semantic cache for embeddings of length `dim` needs:
    /// the `vector` extension (when the role may create it), the table `semantic_cache_d<dim>`
    /// with its HNSW and btree indexes, row-level security with the same tenant policies as the
    /// other tables, two `SECURITY DEFINER` functions (stats and expiry across tenants) and
    /// `tollgate_app`'s grants. Run it after [`Self::migrate`]. Idempotent, and safe to run from
    /// several places at once (one transaction under an advisory lock).
    ///
    /// Errors: [`StoreError::Invalid`] with what to do when the server has no pgvector (or one
    /// older than 0.8), when the role may not create the extension, when the tenancy schema is
    /// missing, or when `dim` is out of range; [`StoreError::Unavailable`] when the database
    /// cannot be reached.
    pub async fn migrate_semantic(owner_url: &str, dim: usize) -> Result<(), StoreError> {
        check_dim(dim)?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(owner_url)
            .await
            .map_err(db_error)?;
        let result = migrate_semantic_on(&pool, dim).await;
        pool.close().await;
        result
    }

    /// The semantic cache for embeddings of length `dim` on this store's pool (no extra
    /// connections). Checks the schema like [`PgSemanticStore::connect`].
    pub async fn semantic_store(&self, dim: usize) -> Result<PgSemanticStore, StoreError> {
        PgSemanticStore::from_pool(self.pool.clone(), dim).await
    }
}

async fn migrate_semantic_on(pool: &PgPool, dim: usize) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    // One migration at a time per database: CREATE EXTENSION / TABLE / POLICY IF NOT EXISTS are
    // not safe against a concurrent twin, the lock makes the loser find everything in place.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tollgate_migrate_semantic'))")
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let tenancy: bool = sqlx::query_scalar(
        "SELECT to_regprocedure('public.tollgate_current_tenant()') IS NOT NULL \
         AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tollgate_app')",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    if !tenancy {
        return Err(StoreError::Invalid(
            "the semantic cache's table needs the tenancy schema: run the store migrations \
             (`tollgate migrate`, PostgresStore::migrate) before migrate_semantic"
                .into(),
        ));
    }
    let installed = installed_pgvector(&mut tx).await?;
    if installed.is_none() {
        let available: Option<String> = sqlx::query_scalar(
            "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'vector'",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(available) = available else {
            return Err(missing_extension());
        };
        check_version(&available, "available")?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS vector").execute(&mut *tx).await.map_err(|e| {
            if is_code(&e, "42501") {
                StoreError::Invalid(format!(
                    "the semantic cache needs the pgvector extension in this database, and this role may not \
                     create it (pgvector is not a trusted extension): run `CREATE EXTENSION vector;` in this \
                     database as a superuser, then migrate again (see docs/postgres.md): {e}"
                ))
            } else {
                db_error(e)
            }
        })?;
    }
    let version = installed_pgvector(&mut tx).await?.ok_or_else(missing_extension)?;
    check_version(&version, "installed")?;
    sqlx::raw_sql(AssertSqlSafe(schema_sql(dim))).execute(&mut *tx).await.map_err(|e| {
        StoreError::Internal(format!(
            "creating the semantic cache's table for {dim} dimensions failed (it must run as the role \
             that owns the tables, not as tollgate_app): {e}"
        ))
    })?;
    tx.commit().await.map_err(db_error)
}

/// The DDL of one dimension's table. Every statement is idempotent. `dim` is a checked number,
/// so formatting it into SQL is safe.
fn schema_sql(dim: usize) -> String {
    let t = semantic_table(dim);
    format!(
        r#"
CREATE TABLE IF NOT EXISTS public.{t} (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    -- The namespace digest (tollgate_core::cache::semantic_key): alias, parameters, tools,
    -- system prompt, earlier turns and the embedding model. The tenant is hashed in too.
    namespace   bytea NOT NULL CHECK (octet_length(namespace) = 32),
    prompt      text NOT NULL,
    embedding   vector({dim}) NOT NULL,
    -- The CachedResponse as JSON.
    value       jsonb NOT NULL,
    -- value's alias and created_at, as columns for purges by alias and age.
    alias       text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
-- No foreign key to tenants: entries are a cache, removed by purge or expiry.
CREATE INDEX IF NOT EXISTS {t}_embedding_idx ON public.{t} USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS {t}_namespace_idx ON public.{t} (tenant_id, namespace, expires_at);
CREATE INDEX IF NOT EXISTS {t}_expires_idx ON public.{t} (expires_at);

-- Row-level security as on the other tables (migration 0001): forced, one policy per command
-- the gateway uses, and the owner's policy that applies only inside SECURITY DEFINER functions.
ALTER TABLE public.{t} ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.{t} FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policies
                   WHERE schemaname = 'public' AND tablename = '{t}' AND policyname = '{t}_tenant_select') THEN
        CREATE POLICY {t}_tenant_select ON public.{t} FOR SELECT
            USING (tenant_id = tollgate_current_tenant());
        CREATE POLICY {t}_tenant_insert ON public.{t} FOR INSERT
            WITH CHECK (tenant_id = tollgate_current_tenant());
        CREATE POLICY {t}_tenant_delete ON public.{t} FOR DELETE
            USING (tenant_id = tollgate_current_tenant());
        CREATE POLICY {t}_owner_definer ON public.{t} FOR ALL TO CURRENT_USER
            USING (session_user <> current_user) WITH CHECK (session_user <> current_user);
    END IF;
END
$$;

-- Across tenants, for the gateway's stats and expiry sweep only (the app role sees one tenant).
-- Live entries and their row size (prompt, vector and jsonb answer, as stored).
CREATE OR REPLACE FUNCTION tollgate_semantic_stats_d{dim}()
RETURNS TABLE (entries bigint, bytes bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $fn$
    SELECT count(*), coalesce(sum(pg_column_size(c.*)), 0)::bigint
    FROM public.{t} c
    WHERE c.expires_at > now()
$fn$;

-- Deletes at most p_limit expired rows (oldest expiry first); returns how many.
CREATE OR REPLACE FUNCTION tollgate_semantic_purge_expired_d{dim}(p_limit integer)
RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $fn$
    WITH d AS (
        DELETE FROM public.{t}
        WHERE id IN (SELECT c.id FROM public.{t} c WHERE c.expires_at <= now()
                     ORDER BY c.expires_at LIMIT greatest(p_limit, 0) FOR UPDATE SKIP LOCKED)
        RETURNING 1
    )
    SELECT count(*) FROM d
$fn$;

REVOKE ALL ON FUNCTION tollgate_semantic_stats_d{dim}() FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_semantic_purge_expired_d{dim}(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tollgate_semantic_stats_d{dim}(), tollgate_semantic_purge_expired_d{dim}(integer)
    TO tollgate_app;
GRANT SELECT, INSERT, DELETE ON public.{t} TO tollgate_app;
"#
    )
}

fn check_dim(dim: usize) -> Result<(), StoreError> {
    if (1..=MAX_SEMANTIC_DIM).contains(&dim) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "the semantic cache on PostgreSQL takes embeddings of 1 to {MAX_SEMANTIC_DIM} dimensions \
             (pgvector's HNSW limit), not {dim}"
        )))
    }
}

fn missing_extension() -> StoreError {
    StoreError::Invalid(
        "the semantic cache on PostgreSQL needs the pgvector extension (>= 0.8), and this server does not \
         have it (no `vector` in pg_available_extensions): install pgvector on the database server, or use \
         `cache.semantic.backend: memory`; see docs/postgres.md, \"Semantic cache on pgvector\""
            .into(),
    )
}

/// The `vector` extension's version in this database, if it is created.
async fn installed_pgvector(tx: &mut Transaction<'static, Postgres>) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)
}

/// Refuses a pgvector older than [`MIN_PGVECTOR`] (`which`: "available" or "installed").
fn check_version(version: &str, which: &str) -> Result<(), StoreError> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found >= MIN_PGVECTOR {
        return Ok(());
    }
    let hint = if which == "installed" {
        "update it (`ALTER EXTENSION vector UPDATE;` as a superuser, after installing a newer pgvector)"
    } else {
        "install a newer pgvector on the database server"
    };
    Err(StoreError::Invalid(format!(
        "the semantic cache on PostgreSQL needs pgvector >= {}.{} (for hnsw.iterative_scan); the {which} \
         version is {version}: {hint}; see docs/postgres.md",
        MIN_PGVECTOR.0, MIN_PGVECTOR.1
    )))
}

fn is_code(e: &sqlx::Error, code: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

// === impl PgSemanticStore ===

/// The semantic cache in PostgreSQL for embeddings of one length. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgSemanticStore {
    pool: PgPool,
    dim: usize,
    sql: Arc<Queries>,
}

/// The statements of one table, formatted once.
#[derive(Debug)]
struct Queries {
    nearest: Arc<str>,
    sweep_namespace: Arc<str>,
    put: Arc<str>,
    purge: Arc<str>,
    stats: Arc<str>,
    purge_expired: Arc<str>,
}

impl Queries {
    fn new(dim: usize) -> Self {
        let t = semantic_table(dim);
        Self {
            // The filter matches the btree index; the ORDER BY the HNSW index (cosine ops). The
            // planner picks one: the btree then an exact sort when the namespace is small, the
            // HNSW walk (made complete by the iterative scan) when it is large.
            nearest: format!(
                "SELECT prompt, value, 1 - (embedding <=> $3::real[]::vector) AS similarity FROM public.{t} \
                 WHERE tenant_id = $1 AND namespace = $2 AND expires_at > now() \
                 ORDER BY embedding <=> $3::real[]::vector LIMIT 1"
            )
            .into(),
            sweep_namespace: format!(
                "DELETE FROM public.{t} WHERE tenant_id = $1 AND namespace = $2 AND expires_at <= now()"
            )
            .into(),
            put: format!(
                "INSERT INTO public.{t} (id, tenant_id, namespace, prompt, embedding, value, alias, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5::real[]::vector, $6, $7, $8, \
                 now() + make_interval(secs => $9))"
            )
            .into(),
            // Counts the live rows it removed; expired ones go too but are not news to anyone.
            purge: format!(
                "WITH d AS (DELETE FROM public.{t} WHERE tenant_id = $1 \
                 AND ($2::text IS NULL OR alias = $2) AND ($3::timestamptz IS NULL OR created_at < $3) \
                 RETURNING expires_at) \
                 SELECT count(*) FILTER (WHERE expires_at > now()) FROM d"
            )
            .into(),
            stats: format!("SELECT entries, bytes FROM tollgate_semantic_stats_d{dim}()").into(),
            purge_expired: format!("SELECT tollgate_semantic_purge_expired_d{dim}($1)").into(),
        }
    }
}

impl PgSemanticStore {
    /// Connects to `app_url` (the `tollgate_app` role) with a pool of its own and checks the
    /// schema (see [`Self::from_pool`]). Prefer [`PostgresStore::semantic_store`] to share the
    /// store's pool.
    pub async fn connect(app_url: &str, dim: usize) -> Result<Self, StoreError> {
        check_dim(dim)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(app_url)
            .await
            .map_err(db_error)?;
        Self::from_pool(pool, dim).await
    }

    /// The store on `pool`, after checking, with clear errors ([`StoreError::Invalid`]) for
    /// what an operator must fix: that the role does not bypass row-level security, that
    /// pgvector (>= 0.8) is on the server and created in this database, and that
    /// `semantic_cache_<dim>` exists with that dimension and is usable by this role.
    pub async fn from_pool(pool: PgPool, dim: usize) -> Result<Self, StoreError> {
        check_dim(dim)?;
        let table = semantic_table(dim);
        let row: (String, bool, Option<String>, bool, Option<i32>, bool) = sqlx::query_as(
            "SELECT current_user::text, \
               (SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user), \
               (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'), \
               EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'vector'), \
               (SELECT a.atttypmod FROM pg_catalog.pg_attribute a \
                WHERE a.attrelid = to_regclass('public.' || $1) AND a.attname = 'embedding' AND NOT a.attisdropped), \
               coalesce(has_table_privilege(to_regclass('public.' || $1), 'SELECT, INSERT, DELETE'), false) \
               AND coalesce(has_function_privilege(to_regprocedure('public.tollgate_semantic_stats_d' || $2 || '()'), \
                            'EXECUTE'), false)",
        )
        .bind(&table)
        .bind(dim.to_string())
        .fetch_one(&pool)
        .await
        .map_err(db_error)?;
        let (user, bypasses, installed, available, typmod, usable) = row;
        if bypasses {
            return Err(StoreError::Invalid(format!(
                "the semantic cache connects as {user:?}, a role that bypasses row-level security; connect as \
                 tollgate_app (see docs/postgres.md)"
            )));
        }
        let Some(version) = installed else {
            if !available {
                return Err(missing_extension());
            }
            return Err(StoreError::Invalid(format!(
                "the semantic cache's table {table} is missing: pgvector is on the server but not created in \
                 this database; run the semantic cache's schema step as the owner role \
                 (PostgresStore::migrate_semantic) for {dim} dimensions; see docs/postgres.md"
            )));
        };
        check_version(&version, "installed")?;
        match typmod {
            None => {
                return Err(StoreError::Invalid(format!(
                    "the semantic cache's table {table} is missing: run the semantic cache's schema step as \
                     the owner role (PostgresStore::migrate_semantic) for {dim} dimensions; see docs/postgres.md"
                )));
            }
            Some(found) if found != dim as i32 => {
                return Err(StoreError::Invalid(format!(
                    "the semantic cache's table {table} holds vectors of {found} dimensions, not {dim}; \
                     see docs/postgres.md"
                )));
            }
            Some(_) => {}
        }
        if !usable {
            return Err(StoreError::Invalid(format!(
                "{user:?} may not use the semantic cache's table {table} (SELECT, INSERT, DELETE and EXECUTE on \
                 tollgate_semantic_stats_d{dim}); run PostgresStore::migrate_semantic again as the owner role"
            )));
        }
        Ok(Self { pool, dim, sql: Arc::new(Queries::new(dim)) })
    }

    /// The embedding length this store takes.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Deletes every expired entry of every tenant, in batches of 10,000 rows, and returns how
    /// many. Lookups never return expired rows, and `put` drops the expired rows of the
    /// namespace it writes to, so this only reclaims space: the gateway calls it periodically
    /// (every few minutes; concurrent calls from several nodes skip each other's rows). Runs
    /// through a `SECURITY DEFINER` function, since `tollgate_app` sees one tenant at a time.
    pub async fn purge_expired(&self) -> Result<u64, CacheError> {
        let mut total = 0u64;
        loop {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql.purge_expired.clone()))
                .bind(PURGE_BATCH)
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable("deleting expired entries"))?;
            total += n.max(0) as u64;
            if n < i64::from(PURGE_BATCH) {
                return Ok(total);
            }
        }
    }

    /// A transaction bound to `tenant` (the same first statement as
    /// [`PostgresStore::tenant_tx`]); with `iterative`, also the HNSW iterative scan, local to
    /// the transaction like the tenant.
    async fn tenant_tx(
        &self,
        tenant: TenantId,
        iterative: bool,
    ) -> Result<Transaction<'static, Postgres>, CacheError> {
        let mut tx = self.pool.begin().await.map_err(unavailable("beginning a transaction"))?;
        let sql = if iterative {
            // set_config(.., true) is SET LOCAL. Before pgvector's library is loaded in this
            // session the setting is kept as a placeholder and applied when it loads.
            "SELECT set_config('tollgate.tenant_id', $1, true), \
             set_config('hnsw.iterative_scan', 'strict_order', true)"
        } else {
            "SELECT set_config('tollgate.tenant_id', $1, true)"
        };
        sqlx::query(sql)
            .bind(tenant.0.to_string())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("setting the tenant"))?;
        Ok(tx)
    }
}

/// Maps a database error to the port's error, saying what was being done.
fn unavailable(what: &'static str) -> impl FnOnce(sqlx::Error) -> CacheError {
    move |e| CacheError::Unavailable(format!("semantic cache (postgres), {what}: {e}"))
}

#[async_trait]
impl SemanticStore for PgSemanticStore {
    async fn nearest(
        &self,
        namespace: &CacheKey,
        embedding: &[f32],
        min_similarity: f32,
    ) -> Result<Option<SemanticHit>, CacheError> {
        // Another model's vectors (or garbage) cannot match; pgvector would reject them anyway.
        if embedding.len() != self.dim || !embedding.iter().all(|x| x.is_finite()) {
            return Ok(None);
        }
        let mut tx = self.tenant_tx(namespace.tenant(), true).await?;
        let row: Option<(String, Json<CachedResponse>, f64)> =
            sqlx::query_as(AssertSqlSafe(self.sql.nearest.clone()))
                .bind(namespace.tenant().0)
                .bind(namespace.digest().as_slice())
                .bind(embedding)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable("looking up the nearest entry"))?;
        tx.commit().await.map_err(unavailable("committing a lookup"))?;
        Ok(row.and_then(|(prompt, Json(value), similarity)| {
            let similarity = similarity as f32;
            (similarity >= min_similarity).then(|| SemanticHit { prompt, value: Arc::new(value), similarity })
        }))
    }

    async fn put(&self, namespace: &CacheKey, entry: SemanticEntry, ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            return Ok(());
        }
        if entry.embedding.len() != self.dim {
            return Err(CacheError::Unavailable(format!(
                "semantic cache (postgres): an embedding of {} dimensions cannot be stored in {} (it takes {})",
                entry.embedding.len(),
                semantic_table(self.dim),
                self.dim
            )));
        }
        let ttl = ttl.min(MAX_SEMANTIC_TTL);
        let value = serde_json::to_value(&*entry.value).map_err(|e| {
            CacheError::Unavailable(format!("semantic cache (postgres), encoding the answer: {e}"))
        })?;
        let tenant = namespace.tenant();
        let mut tx = self.tenant_tx(tenant, false).await?;
        // Opportunistic expiry: the namespace being written is the one its readers scan, and the
        // btree finds its expired rows directly.
        sqlx::query(AssertSqlSafe(self.sql.sweep_namespace.clone()))
            .bind(tenant.0)
            .bind(namespace.digest().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("deleting the namespace's expired entries"))?;
        sqlx::query(AssertSqlSafe(self.sql.put.clone()))
            .bind(uuid::Uuid::now_v7())
            .bind(tenant.0)
            .bind(namespace.digest().as_slice())
            .bind(&entry.prompt)
            .bind(entry.embedding.as_slice())
            .bind(value)
            .bind(&entry.value.alias)
            .bind(entry.value.created_at)
            .bind(ttl.as_secs_f64())
            .execute(&mut *tx)
            .await
            .map_err(unavailable("storing an entry"))?;
        tx.commit().await.map_err(unavailable("committing an entry"))
    }

    async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        let mut tx = self.tenant_tx(filter.tenant, false).await?;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql.purge.clone()))
            .bind(filter.tenant.0)
            .bind(filter.alias.as_deref())
            .bind(filter.created_before)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable("purging"))?;
        tx.commit().await.map_err(unavailable("committing a purge"))?;
        Ok(n.max(0) as u64)
    }

    async fn stats(&self) -> Result<CacheStats, CacheError> {
        let (entries, bytes): (i64, i64) = sqlx::query_as(AssertSqlSafe(self.sql.stats.clone()))
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable("reading the stats"))?;
        Ok(CacheStats { entries: entries.max(0) as u64, bytes: bytes.max(0) as u64 })
    }

    /// The cache's writer calls this every minute on every node; concurrent sweeps skip each
    /// other's rows.
    async fn purge_expired(&self) -> Result<u64, CacheError> {
        PgSemanticStore::purge_expired(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_0_8_are_accepted() {
        for ok in ["0.8.0", "0.8.2", "0.9", "1.0.0"] {
            assert!(check_version(ok, "installed").is_ok(), "{ok}");
        }
        for old in ["0.5.1", "0.7.4", "garbage", ""] {
            let err = check_version(old, "installed").unwrap_err().to_string();
            assert!(err.contains("pgvector >= 0.8") && err.contains("ALTER EXTENSION"), "{err}");
        }
    }

    #[test]
    fn dimensions_are_bounded_by_the_hnsw_limit() {
        assert!(check_dim(1).is_ok() && check_dim(384).is_ok() && check_dim(2000).is_ok());
        assert!(check_dim(0).is_err() && check_dim(2001).is_err());
    }

    #[test]
    fn the_schema_names_its_dimension_everywhere() {
        let sql = schema_sql(384);
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS public.semantic_cache_d384 ("));
        assert!(sql.contains("embedding   vector(384) NOT NULL"));
        assert!(sql.contains("USING hnsw (embedding vector_cosine_ops)"));
        assert!(sql.contains("tollgate_semantic_stats_d384()"));
        assert!(!sql.contains("{t}") && !sql.contains("{dim}"));
    }
}
