//! OpenAI and everything that speaks its API: OpenAI itself, Azure OpenAI (deployment URLs,
//! `api-version`, `api-key` header) and any OpenAI-compatible server (vLLM, TGI, Ollama,
//! LM Studio, Mistral, Groq, DeepSeek, Together, OpenRouter, ...).
//!
//! The canonical types are OpenAI's, so there is no conversion: the request is re-serialized
//! with the upstream model name, fields the gateway does not know included.

mod errors;
mod stream;
pub mod wire;

use async_trait::async_trait;
use http::HeaderValue;
use serde::Serialize;
use tollgate_types::ports::{CallCtx, ChunkStream, CompletionStream, ProviderAdapter, ProviderError};
use tollgate_types::{ChatRequest, ChatResponse, CompletionRequest, CompletionResponse};
use tollgate_types::{EmbeddingsRequest, EmbeddingsResponse};

use crate::http::{Deadlines, read_json, send};
use crate::{ProviderSettings, sse};

/// Which member of the OpenAI family this adapter talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Azure,
    OpenAiCompatible,
}

impl Flavor {
    fn id(self) -> &'static str {
        match self {
            Flavor::OpenAi => "openai",
            Flavor::Azure => "azure",
            Flavor::OpenAiCompatible => "openai_compatible",
        }
    }
}

/// Azure's `api-version` when the config gives none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

pub struct OpenAiAdapter {
    flavor: Flavor,
    settings: ProviderSettings,
}

impl OpenAiAdapter {
    pub fn new(flavor: Flavor, settings: ProviderSettings) -> Result<Self, ProviderError> {
        Ok(Self { flavor, settings })
    }

    /// The URL of an operation (`/chat/completions`, `/embeddings`, `/completions`).
    fn url(&self, operation: &str, upstream_model: &str) -> String {
        match self.flavor {
            Flavor::Azure => {
                let version = self.settings.api_version.as_deref().unwrap_or(AZURE_DEFAULT_API_VERSION);
                let mut url = self.settings.url("/openai/deployments/");
                url.push_str(upstream_model);
                url.push_str(operation);
                url.push_str("?api-version=");
                url.push_str(version);
                url
            }
            Flavor::OpenAi | Flavor::OpenAiCompatible => self.settings.url(operation),
        }
    }

    async fn post<B: Serialize + ?Sized>(
        &self,
        operation: &str,
        body: &B,
        call: &CallCtx,
        deadlines: Deadlines,
    ) -> Result<reqwest::Response, ProviderError> {
        let provider = self.flavor.id();
        let key = self.settings.credential.key(provider)?;
        let body = serde_json::to_vec(body).map_err(|e| {
            ProviderError::new(provider, tollgate_types::ports::ProviderErrorKind::BadRequest, e.to_string())
        })?;
        let mut request = self
            .settings
            .http
            .post(self.url(operation, &call.upstream_model))
            .header(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if let Some(key) = key {
            request = match self.flavor {
                Flavor::Azure => request.header("api-key", key),
                Flavor::OpenAi | Flavor::OpenAiCompatible => request.bearer_auth(key),
            };
        }
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        send(provider, request, deadlines, &call.quota, errors::error_message).await.map_err(errors::refine)
    }
}

#[async_trait]
impl ProviderAdapter for OpenAiAdapter {
    fn kind(&self) -> &'static str {
        self.flavor.id()
    }

    async fn chat(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChatResponse, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = wire::OpenAiChatRequest::new(req, &call.upstream_model, false, false);
        let response = self.post("/chat/completions", &body, call, deadlines).await?;
        read_json(self.flavor.id(), response, deadlines).await
    }

    async fn chat_stream(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChunkStream, ProviderError> {
        let deadlines = Deadlines::start(call);
        let include_usage = call.include_usage || req.wants_stream_usage();
        let body = wire::OpenAiChatRequest::new(req, &call.upstream_model, true, include_usage);
        let response = self.post("/chat/completions", &body, call, deadlines).await?;
        Ok(sse::decode(self.flavor.id(), response, stream::ChatDecoder::new(self.flavor.id()), deadlines))
    }

    async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        call: &CallCtx,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = wire::OpenAiEmbeddingsRequest::new(req, &call.upstream_model);
        let response = self.post("/embeddings", &body, call, deadlines).await?;
        read_json(self.flavor.id(), response, deadlines).await
    }

    async fn completions(
        &self,
        req: &CompletionRequest,
        call: &CallCtx,
    ) -> Result<CompletionResponse, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = wire::OpenAiCompletionRequest::new(req, &call.upstream_model, false);
        let response = self.post("/completions", &body, call, deadlines).await?;
        read_json(self.flavor.id(), response, deadlines).await
    }

    async fn completions_stream(
        &self,
        req: &CompletionRequest,
        call: &CallCtx,
    ) -> Result<CompletionStream, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = wire::OpenAiCompletionRequest::new(req, &call.upstream_model, true);
        let response = self.post("/completions", &body, call, deadlines).await?;
        Ok(sse::decode(
            self.flavor.id(),
            response,
            stream::CompletionDecoder::new(self.flavor.id()),
            deadlines,
        ))
    }
}
