//! The local embedding model (all-MiniLM-L6-v2 through candle), when the binary is built with
//! the `local-embeddings` cargo feature: the semantic cache's prompts are embedded in process,
//! on the model's own threads, and never leave the machine.

use std::sync::Arc;

use tollgate_core::cache::EmbedPrompt;
use tollgate_core::config::LocalEmbedding;

/// Loads the model `local` names and starts its worker threads; also returns its vector length.
#[cfg(feature = "local-embeddings")]
pub fn load(local: &LocalEmbedding) -> anyhow::Result<(Arc<dyn EmbedPrompt>, usize)> {
    use anyhow::Context;
    use tollgate_embed::{EmbedPool, LocalModel, PoolOptions};

    let started = tokio::time::Instant::now();
    let model = LocalModel::load(&local.model_dir)
        .with_context(|| "cache.semantic.embedding.local: cannot load the embedding model (scripts/fetch-embedding-model.sh puts the files in place)")?;
    let options = PoolOptions { threads: local.threads, max_batch: local.max_batch, queue: local.queue };
    let pool = EmbedPool::start(model, options).context("cannot start the embedding threads")?;
    tracing::info!(
        model = pool.id(),
        dim = pool.dim(),
        threads = local.threads,
        load_ms = started.elapsed().as_millis() as u64,
        "local embedding model loaded"
    );
    let dim = pool.dim();
    Ok((Arc::new(Local(pool)), dim))
}

/// Without the feature, configuring a local model is a start-up error naming the fix.
#[cfg(not(feature = "local-embeddings"))]
pub fn load(local: &LocalEmbedding) -> anyhow::Result<(Arc<dyn EmbedPrompt>, usize)> {
    anyhow::bail!(
        "cache.semantic.embedding.local (model_dir {}) needs a tollgate built with the local-embeddings \
         feature: cargo build --release -p tollgate --features local-embeddings",
        local.model_dir.display()
    )
}

#[cfg(feature = "local-embeddings")]
struct Local(tollgate_embed::EmbedPool);

#[cfg(feature = "local-embeddings")]
#[async_trait::async_trait]
impl EmbedPrompt for Local {
    fn id(&self) -> String {
        self.0.id().to_owned()
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        self.0.embed(text.to_owned()).await.map_err(|e| e.to_string())
    }
}
