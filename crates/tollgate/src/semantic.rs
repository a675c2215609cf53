//! Opening the response cache's parts at start-up: the in-process exact cache with its SQLite
//! journal, and, as `cache.semantic` configures them, the in-process semantic store with its
//! journal or the pgvector store, and the local embedding model. Journals are restored before
//! the gateway listens.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tollgate_core::cache::vector::IndexParams;
use tollgate_core::cache::{MemoryCacheStore, MemorySemanticStore};
use tollgate_core::config::{CacheBackend, Config, EmbeddingSource, SemanticBackend};
use tollgate_server::app::CacheParts;
use tollgate_store::postgres::{PgSemanticStore, PostgresStore};
use tollgate_types::ports::semantic::SemanticStore;
use tollgate_types::ports::{CacheJournal, CacheStore};

use crate::commands::store_url;

/// The parts `AppState::from_config_with` needs: the in-process exact cache with its SQLite
/// journal (restored), and the semantic cache's store and model when one is configured.
pub async fn open(config_path: &Path, config: &Config) -> anyhow::Result<CacheParts> {
    let url = store_url(config_path, config);
    // Only the in-process backends keep journals.
    let in_process = matches!(config.cache.backend, CacheBackend::Memory { .. })
        || config
            .cache
            .semantic
            .as_ref()
            .is_some_and(|s| matches!(s.backend, SemanticBackend::Memory { .. }));
    let journals = if in_process {
        tollgate_store::open_cache_journals(url.expose_secret())
            .await
            .context("cannot open the response cache's journals")?
    } else {
        None
    };
    let exact = exact_store(config, journals.as_ref().map(|j| j.exact.clone())).await;
    let Some(semantic) = &config.cache.semantic else {
        return Ok(CacheParts { exact, ..CacheParts::default() });
    };
    let (local_embedder, local_dim) = match &semantic.embedding {
        EmbeddingSource::Local(local) => {
            let (embedder, dim) = crate::local_embed::load(local)?;
            (Some(embedder), Some(dim))
        }
        EmbeddingSource::Alias(_) => (None, None),
    };
    let store: Arc<dyn SemanticStore> = match semantic.backend {
        SemanticBackend::Memory { max_bytes, hnsw_threshold } => {
            let params = IndexParams { hnsw_threshold, ..IndexParams::default() };
            let mut memory = MemorySemanticStore::new(params, max_bytes);
            if let Some(j) = &journals {
                memory = memory.with_journal(j.semantic.clone());
            }
            // A journal that cannot be read costs the cache, not the gateway: start empty.
            match memory.restore().await {
                Ok(entries) => tracing::info!(entries, "semantic cache restored from the store"),
                Err(e) => tracing::warn!(error = %e, "could not restore the semantic cache; starting empty"),
            }
            Arc::new(memory)
        }
        SemanticBackend::Postgres => {
            // Configuration requires one of the two (dimensions with an alias).
            let dim = semantic.dimensions.or(local_dim).context("cache.semantic.dimensions is required")?;
            if let Some(owner) = config.store.owner_url.as_ref().filter(|_| config.store.migrate) {
                migrate_table(owner.expose_secret(), dim).await?;
            }
            let store = PgSemanticStore::connect(url.expose_secret(), dim)
                .await
                .map_err(|e| anyhow::anyhow!("cache.semantic (backend postgres): {e}"))?;
            tracing::info!(dim, "semantic cache on pgvector");
            Arc::new(store)
        }
    };
    Ok(CacheParts { exact, store: Some(store), local_embedder })
}

/// The in-process exact cache journaled to `journal` (a SQLite store) and restored from it;
/// `None` for Redis (which keeps its own entries) or without a journal (a PostgreSQL store:
/// memory only).
async fn exact_store(config: &Config, journal: Option<Arc<dyn CacheJournal>>) -> Option<Arc<dyn CacheStore>> {
    let CacheBackend::Memory { max_bytes } = config.cache.backend else { return None };
    let store = MemoryCacheStore::with_journal(max_bytes, Some(journal?));
    // A journal that cannot be read costs the cache, not the gateway: start empty.
    match store.restore().await {
        Ok(entries) => tracing::info!(entries, "response cache restored from the store"),
        Err(e) => tracing::warn!(error = %e, "could not restore the response cache; starting empty"),
    }
    Some(Arc::new(store))
}

/// `tollgate migrate`'s part for the semantic cache: with the postgres backend, the owner
/// creates the pgvector table (nothing to do otherwise; a local model's length is known without
/// loading it).
pub async fn migrate(config: &Config, owner_url: &str) -> anyhow::Result<()> {
    let Some(semantic) = config.cache.semantic.as_ref().filter(|s| s.backend == SemanticBackend::Postgres)
    else {
        return Ok(());
    };
    // Configuration requires `dimensions` with an embedding alias.
    let dim = match &semantic.embedding {
        EmbeddingSource::Local(_) => semantic.dimensions.unwrap_or(LOCAL_MODEL_DIM),
        EmbeddingSource::Alias(_) => semantic.dimensions.context("cache.semantic.dimensions is required")?,
    };
    migrate_table(owner_url, dim).await
}

/// all-MiniLM-L6-v2's vector length (checked against the model when it loads).
const LOCAL_MODEL_DIM: usize = 384;

async fn migrate_table(owner_url: &str, dim: usize) -> anyhow::Result<()> {
    PostgresStore::migrate_semantic(owner_url, dim)
        .await
        .map_err(|e| anyhow::anyhow!("cache.semantic: {e}"))?;
    tracing::info!(dim, "semantic cache table ready");
    Ok(())
}
