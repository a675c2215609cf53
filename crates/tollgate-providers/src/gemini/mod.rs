//! Google Gemini (Generative Language API): `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, key in the `x-goog-api-key` header (never in the URL, where
//! it would end up in access logs). This module does the HTTP call only; see `convert` and
//! `stream` for the translation.

mod convert;
mod errors;
mod stream;
pub mod wire;

use async_trait::async_trait;
use http::HeaderValue;
use tollgate_types::ids::unix_now;
use tollgate_types::ports::{CallCtx, ChunkStream, ProviderAdapter, ProviderError, ProviderErrorKind};
use tollgate_types::{ChatRequest, ChatResponse};

use crate::http::{Deadlines, read_json, send};
use crate::{ProviderSettings, sse};

pub const PROVIDER_ID: &str = "gemini";

pub struct GeminiAdapter {
    settings: ProviderSettings,
}

impl GeminiAdapter {
    pub fn new(settings: ProviderSettings) -> Result<Self, ProviderError> {
        Ok(Self { settings })
    }

    fn url(&self, model: &str, stream: bool) -> Result<String, ProviderError> {
        // Configs often copy the model's resource name (`models/gemini-2.5-flash`).
        let model = model.strip_prefix("models/").unwrap_or(model);
        if model.is_empty() || model.contains(['/', '?', '#', ':']) || model.contains(char::is_whitespace) {
            return Err(ProviderError::new(
                PROVIDER_ID,
                ProviderErrorKind::BadRequest,
                format!("{model:?} is not a valid Gemini model name"),
            ));
        }
        let method = if stream { ":streamGenerateContent?alt=sse" } else { ":generateContent" };
        Ok(self.settings.url(&format!("/v1beta/models/{model}{method}")))
    }

    async fn post(
        &self,
        req: &ChatRequest,
        call: &CallCtx,
        stream: bool,
        deadlines: Deadlines,
    ) -> Result<reqwest::Response, ProviderError> {
        let key = self.settings.credential.key(PROVIDER_ID)?;
        let body = serde_json::to_vec(&convert::to_wire(req)?)
            .map_err(|e| ProviderError::new(PROVIDER_ID, ProviderErrorKind::BadRequest, e.to_string()))?;
        let mut request = self
            .settings
            .http
            .post(self.url(&call.upstream_model, stream)?)
            .header(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if let Some(key) = key {
            request = request.header("x-goog-api-key", key);
        }
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        send(PROVIDER_ID, request, deadlines, &call.quota, errors::error_message).await.map_err(|e| {
            let mut e = errors::refine(e);
            // Upstream messages are passed on to clients; a key echoed back must not be.
            if let Some(key) = key.filter(|k| !k.is_empty()) {
                e.message = e.message.replace(key, "[redacted]");
            }
            e
        })
    }

    fn fallback_id(call: &CallCtx) -> String {
        format!("chatcmpl-gemini-{}", call.request_id)
    }
}

#[async_trait]
impl ProviderAdapter for GeminiAdapter {
    fn kind(&self) -> &'static str {
        PROVIDER_ID
    }

    async fn chat(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChatResponse, ProviderError> {
        let deadlines = Deadlines::start(call);
        let response = self.post(req, call, false, deadlines).await?;
        let body: wire::GenerateContentResponse = read_json(PROVIDER_ID, response, deadlines).await?;
        let fallback_id = Self::fallback_id(call);
        let meta = convert::ResponseMeta {
            fallback_id: &fallback_id,
            model: &call.upstream_model,
            created: unix_now(),
        };
        convert::from_wire(body, &meta)
    }

    async fn chat_stream(&self, req: &ChatRequest, call: &CallCtx) -> Result<ChunkStream, ProviderError> {
        let deadlines = Deadlines::start(call);
        let response = self.post(req, call, true, deadlines).await?;
        let decoder =
            stream::ChatDecoder::new(Self::fallback_id(call), call.upstream_model.clone(), unix_now());
        Ok(sse::decode(PROVIDER_ID, response, decoder, deadlines))
    }
}
