//! The response cache (`docs/caching.md`): the pipeline's `cache` stage looks chat requests up
//! before limits and routing, and stores complete answers when they settle.
//!
//! - [`service`]: [`ResponseCache`] (the stage's lookup, the write queue, purge and stats);
//! - [`key`]: the exact key, SHA-256 over the tenant and every answer-changing request field;
//! - [`policy`]: the request's [`CacheMode`] from the configured policy and the
//!   `x-tollgate-cache` / `Cache-Control` headers;
//! - [`replay`]: a finished stream assembled into the stored answer, and a stored answer replayed
//!   as stream chunks;
//! - [`memory`]: the in-process [`MemoryCacheStore`] (bounded LRU with per-entry TTL, optionally
//!   journaled to the SQLite store);
//! - [`embed`]: how the semantic cache embeds a prompt ([`EmbedPrompt`]) and binds the model's
//!   identity into the namespace;
//! - [`semantic_memory`]: the in-process [`MemorySemanticStore`] (one [`vector`] index per
//!   namespace, one LRU order, optionally journaled);
//! - [`vector`]: the nearest-neighbour index of one semantic-cache namespace (exact scan, then
//!   HNSW);
//! - `contract` / `semantic_contract` (with the `test-util` feature): the suites every
//!   [`tollgate_types::ports::CacheStore`] and [`tollgate_types::ports::SemanticStore`] must
//!   pass, run through [`crate::cache_contract!`] and [`crate::semantic_contract!`].

#[cfg(any(test, feature = "test-util"))]
pub mod contract;
pub mod embed;
pub mod key;
pub mod memory;
pub mod policy;
pub mod replay;
#[cfg(any(test, feature = "test-util"))]
pub mod semantic_contract;
pub mod semantic_memory;
pub mod service;
pub mod vector;

pub use embed::EmbedPrompt;
pub use key::{KEY_VERSION, KeyError, SEMANTIC_VERSION, SemanticKey, exact_key, semantic_key};
pub use memory::MemoryCacheStore;
pub use policy::{CACHE_HEADER, CacheHeaderError, CacheMode, CachePolicy, CacheRequest};
pub use replay::{AssembleError, assemble, replay};
pub use semantic_memory::MemorySemanticStore;
pub use service::{CacheStatus, CacheWriter, ResponseCache};
