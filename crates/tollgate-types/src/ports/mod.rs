//! The ports the pipeline talks to. Concrete implementations live in other crates; only the
//! binary knows them all.

pub mod provider;
pub mod store;

pub use provider::{
    CallCtx, ChunkStream, CompletionStream, ProviderAdapter, ProviderError, ProviderErrorKind,
    parse_retry_after,
};
