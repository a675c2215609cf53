//! Anthropic Messages API adapter: `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version`, JSON or SSE. This module does the HTTP call only; the translation is in
//! `convert` (request and response), `stream` (SSE events) and `errors` (error bodies).

mod convert;
mod errors;
mod stream;
pub mod wire;

use async_trait::async_trait;
use http::HeaderValue;
use tollgate_types::ports::{CallCtx, ChunkStream, ProviderAdapter, ProviderError, ProviderErrorKind};
use tollgate_types::{ChatRequest, ChatResponse};

use crate::http::{Deadlines, read_json, send};
use crate::{ProviderSettings, sse};

pub const PROVIDER_ID: &str = "anthropic";

/// `anthropic-version` when the config gives none.
pub const DEFAULT_API_VERSION: &str = "2023-06-01";

pub struct AnthropicAdapter {
    settings: ProviderSettings,
}

impl AnthropicAdapter {
    pub fn new(settings: ProviderSettings) -> Result<Self, ProviderError> {
        Ok(Self { settings })
    }

    async fn post(
        &self,
        body: &wire::MessagesRequest,
        call: &CallCtx,
        deadlines: Deadlines,
    ) -> Result<reqwest::Response, ProviderError> {
        let key = self.settings.credential.key(PROVIDER_ID)?;
        let body = serde_json::to_vec(body)
            .map_err(|e| ProviderError::new(PROVIDER_ID, ProviderErrorKind::BadRequest, e.to_string()))?;
        let version = self.settings.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        let mut request = self
            .settings
            .http
            .post(self.settings.url("/v1/messages"))
            .header(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("anthropic-version", version)
            .body(body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        send(PROVIDER_ID, request, deadlines, &call.quota, errors::error_message)
            .await
            .map_err(errors::refine)
    }
}

/// Seconds since the epoch, for the `created` field Anthropic does not send.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[async_trait]
impl ProviderAdapter for AnthropicAdapter {
    fn kind(&self) -> &'static str {
        PROVIDER_ID
    }

    async fn chat(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChatResponse, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = convert::to_wire(req, &call.upstream_model, false)?;
        let response = self.post(&body, call, deadlines).await?;
        let message = read_json(PROVIDER_ID, response, deadlines).await?;
        Ok(convert::from_wire(message, &call.upstream_model, now()))
    }

    async fn chat_stream(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChunkStream, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = convert::to_wire(req, &call.upstream_model, true)?;
        let response = self.post(&body, call, deadlines).await?;
        let decoder = stream::ChatDecoder::new(&call.upstream_model, now());
        Ok(sse::decode(PROVIDER_ID, response, decoder, deadlines))
    }
}
