//! Cohere adapter (stub: to be filled in).

use async_trait::async_trait;
use tollgate_types::ports::{CallCtx, ChunkStream, ProviderAdapter, ProviderError};
use tollgate_types::{ChatRequest, ChatResponse};

use crate::ProviderSettings;

pub const PROVIDER_ID: &str = "cohere";

pub struct CohereAdapter {
    #[expect(dead_code, reason = "stub until the adapter lands")]
    settings: ProviderSettings,
}

impl CohereAdapter {
    pub fn new(settings: ProviderSettings) -> Result<Self, ProviderError> {
        Ok(Self { settings })
    }
}

#[async_trait]
impl ProviderAdapter for CohereAdapter {
    fn kind(&self) -> &'static str {
        PROVIDER_ID
    }

    async fn chat(&self, _req: &ChatRequest, _call: &CallCtx) -> Result<ChatResponse, ProviderError> {
        Err(ProviderError::unsupported(PROVIDER_ID, "chat (not yet implemented)"))
    }

    async fn chat_stream(&self, _req: &ChatRequest, _call: &CallCtx) -> Result<ChunkStream, ProviderError> {
        Err(ProviderError::unsupported(PROVIDER_ID, "chat (not yet implemented)"))
    }
}
