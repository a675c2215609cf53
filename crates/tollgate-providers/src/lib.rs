//! Provider adapters: each turns a canonical (OpenAI-shaped) request into one upstream's wire
//! format, makes the HTTP call, and turns the answer (JSON or SSE stream) back into canonical
//! types. One folder per provider:
//!
//! - `wire.rs`: the upstream's own field names, nothing else;
//! - `convert.rs`: pure canonical ⇄ wire conversion;
//! - `stream.rs`: a pure state machine from the upstream's SSE events to canonical chunks;
//! - `errors.rs`: the upstream's error body → [`ProviderError`];
//! - `mod.rs`: the HTTP call only.
//!
//! Adapters never retry and never log bodies: the router in `tollgate-core` owns both.

pub mod anthropic;
pub mod cohere;
pub mod echo;
pub mod gemini;
pub mod http;
pub mod openai;
pub mod settings;
pub mod sse;

use std::sync::Arc;

pub use settings::{Credential, ProviderKind, ProviderSettings};
use tollgate_types::ports::{ProviderAdapter, ProviderError};

/// Builds the adapter for one deployment of a provider.
pub fn build_adapter(
    kind: ProviderKind,
    settings: ProviderSettings,
) -> Result<Arc<dyn ProviderAdapter>, ProviderError> {
    Ok(match kind {
        ProviderKind::OpenAi => Arc::new(openai::OpenAiAdapter::new(openai::Flavor::OpenAi, settings)?),
        ProviderKind::OpenAiCompatible => {
            Arc::new(openai::OpenAiAdapter::new(openai::Flavor::OpenAiCompatible, settings)?)
        }
        ProviderKind::Azure => Arc::new(openai::OpenAiAdapter::new(openai::Flavor::Azure, settings)?),
        ProviderKind::Anthropic => Arc::new(anthropic::AnthropicAdapter::new(settings)?),
        ProviderKind::Gemini => Arc::new(gemini::GeminiAdapter::new(settings)?),
        ProviderKind::Cohere => Arc::new(cohere::CohereAdapter::new(settings)?),
        ProviderKind::Echo => Arc::new(echo::EchoAdapter),
    })
}
