//! The response cache's building blocks, for the pipeline's `cache` stage (look up before
//! routing, store at settle). Not wired into the pipeline yet: see `docs/caching.md`.
//!
//! - [`key`]: the exact key, SHA-256 over the tenant and every answer-changing request field;
//! - [`policy`]: the request's [`CacheMode`] from the configured policy and the
//!   `x-tollgate-cache` / `Cache-Control` headers;
//! - [`replay`]: a finished stream assembled into the stored answer, and a stored answer replayed
//!   as stream chunks;
//! - [`memory`]: the in-process [`MemoryCacheStore`] (bounded LRU with per-entry TTL);
//! - `contract` (with the `test-util` feature): the suite every
//!   [`tollgate_types::ports::CacheStore`] must pass, run through [`crate::cache_contract!`].

#[cfg(any(test, feature = "test-util"))]
pub mod contract;
pub mod key;
pub mod memory;
pub mod policy;
pub mod replay;

pub use key::{KEY_VERSION, KeyError, exact_key};
pub use memory::MemoryCacheStore;
pub use policy::{CACHE_HEADER, CacheHeaderError, CacheMode, CachePolicy};
pub use replay::{AssembleError, assemble, replay};
