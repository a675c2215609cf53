//! Canonical types of the Tollgate gateway: the OpenAI-shaped request, response and stream-chunk
//! types every stage speaks, the closed error kinds, and the ports (traits) the pipeline talks to.
//!
//! This crate does no I/O: it is the vocabulary shared by the provider adapters, the pipeline and
//! the HTTP server. Client dialects and upstream wire formats are converted to and from these
//! types at the edges only.

pub mod cache_rule;
pub mod chat;
pub mod embeddings;
pub mod error;
pub mod ids;
pub mod legacy;
pub mod limits;
pub mod ports;
pub mod semantic_match;
pub mod tenancy;
pub mod usage;

pub use chat::*;
pub use embeddings::*;
pub use error::{Attempt, ErrorKind, ErrorOrigin, GatewayError};
pub use legacy::*;
pub use usage::*;

/// A JSON object, as used for fields the gateway passes through without interpreting them.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;
