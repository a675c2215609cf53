//! Cohere's v2 API: `POST /v2/chat` (JSON, or SSE with `stream: true`) and `POST /v2/embed`,
//! authenticated with `Authorization: Bearer <key>`. This module does the HTTP call only; see
//! `convert`, `stream` and `errors` for the translation.

mod convert;
mod errors;
mod stream;
pub mod wire;

use async_trait::async_trait;
use http::HeaderValue;
use serde::Serialize;
use tollgate_types::ids::unix_now;
use tollgate_types::ports::{CallCtx, ChunkStream, ProviderAdapter, ProviderError, ProviderErrorKind};
use tollgate_types::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};

use crate::http::{Deadlines, read_json, send};
use crate::{ProviderSettings, sse};

pub const PROVIDER_ID: &str = "cohere";

pub struct CohereAdapter {
    settings: ProviderSettings,
}

impl CohereAdapter {
    pub fn new(settings: ProviderSettings) -> Result<Self, ProviderError> {
        Ok(Self { settings })
    }

    /// Posts `body` to `path` and waits for the response headers; error statuses come back
    /// classified with Cohere's own message.
    async fn post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        call: &CallCtx,
        deadlines: Deadlines,
    ) -> Result<reqwest::Response, ProviderError> {
        let key = self.settings.credential.key(PROVIDER_ID)?;
        let body = serde_json::to_vec(body)
            .map_err(|e| ProviderError::new(PROVIDER_ID, ProviderErrorKind::BadRequest, e.to_string()))?;
        let mut request = self
            .settings
            .http
            .post(self.settings.url(path))
            .header(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        send(PROVIDER_ID, request, deadlines, &call.quota, errors::error_message)
            .await
            .map_err(errors::classify)
    }
}

fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[async_trait]
impl ProviderAdapter for CohereAdapter {
    fn kind(&self) -> &'static str {
        PROVIDER_ID
    }

    async fn chat(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChatResponse, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = convert::chat_request(req, &call.upstream_model, false)?;
        let response = self.post("/v2/chat", &body, call, deadlines).await?;
        let answer: wire::CohereChatResponse = read_json(PROVIDER_ID, response, deadlines).await?;
        convert::chat_response(answer, &call.upstream_model, unix_now())
    }

    async fn chat_stream(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChunkStream, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = convert::chat_request(req, &call.upstream_model, true)?;
        let response = self.post("/v2/chat", &body, call, deadlines).await?;
        if is_json(&response) {
            // A 200 with a JSON (or JSON-labelled garbage) body instead of an event stream,
            // as misbehaving proxies answer: reading it as SSE would only look truncated.
            return Err(ProviderError::invalid_response(PROVIDER_ID, "expected an event stream, got JSON"));
        }
        let decoder = stream::ChatDecoder::new(&call.upstream_model, unix_now());
        Ok(sse::decode(PROVIDER_ID, response, decoder, deadlines))
    }

    async fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        call: &CallCtx,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let deadlines = Deadlines::start(call);
        let body = convert::embed_request(req, &call.upstream_model)?;
        let response = self.post("/v2/embed", &body, call, deadlines).await?;
        let answer: wire::CohereEmbedResponse = read_json(PROVIDER_ID, response, deadlines).await?;
        Ok(convert::embed_response(answer, req, &call.upstream_model))
    }
}
