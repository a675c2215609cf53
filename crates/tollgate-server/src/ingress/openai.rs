//! The OpenAI-compatible API: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/models`. The canonical types are OpenAI's, so decoding is plain JSON.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tollgate_core::RequestCtx;
use tollgate_core::auth::Principal;
use tollgate_core::pipeline::{ChatOutcome, CompletionOutcome};
use tollgate_types::{ChatRequest, CompletionRequest, EmbeddingsRequest, ErrorKind, GatewayError};

use super::controls::{CacheHeaders, Controls};
use super::{ServedBy, with_cache_hit, with_served};
use crate::app::AppState;
use crate::errors::ApiError;
use crate::extract::JsonBody;
use crate::observe::RequestId;
use crate::sse;

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(RequestId(id)): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    Controls(controls): Controls,
    CacheHeaders(cache): CacheHeaders,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let ctx = RequestCtx::new(id, principal).with_controls(controls).with_cache(cache);
    Ok(match state.gateway.chat(&ctx, req).await? {
        ChatOutcome::Json(s) => with_served(json_response(&s.value)?, (&s).into()),
        ChatOutcome::Stream(s) => {
            let by = ServedBy::parts(&s.deployment, &s.route, s.attempts, &s.rate_limits, s.cache);
            with_served(sse::response(s.value), by)
        }
        ChatOutcome::Cached(hit) => {
            let resp = if hit.stream {
                sse::response(futures::stream::iter(hit.chunks().into_iter().map(Ok)))
            } else {
                json_response(&hit.entry.response)?
            };
            with_cache_hit(resp, &hit)
        }
    })
}

pub async fn completions(
    State(state): State<AppState>,
    Extension(RequestId(id)): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    Controls(controls): Controls,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let ctx = RequestCtx::new(id, principal).with_controls(controls);
    Ok(match state.gateway.completions(&ctx, req).await? {
        CompletionOutcome::Json(s) => with_served(json_response(&s.value)?, (&s).into()),
        CompletionOutcome::Stream(s) => {
            let by = ServedBy::parts(&s.deployment, &s.route, s.attempts, &s.rate_limits, s.cache);
            let chunks = s.value.map(|item| item.map_err(GatewayError::from));
            with_served(sse::response(chunks), by)
        }
    })
}

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(RequestId(id)): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    Controls(controls): Controls,
    JsonBody(req): JsonBody<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let ctx = RequestCtx::new(id, principal).with_controls(controls);
    let served = state.gateway.embeddings(&ctx, req).await?;
    Ok(with_served(json_response(&served.value)?, (&served).into()))
}

/// The aliases this key may call.
pub async fn list_models(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let data: Vec<_> = state
        .gateway
        .models()
        .into_iter()
        .filter(|m| principal.check_model(&m.alias).is_ok())
        .map(|m| model_object(&m.alias))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn get_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    match state.gateway.models().into_iter().find(|m| m.alias == model) {
        Some(m) => Ok(axum::Json(model_object(&m.alias)).into_response()),
        None => Err(GatewayError::new(
            ErrorKind::ModelNotFound,
            format!("The model `{model}` does not exist on this gateway."),
        )
        .into()),
    }
}

fn model_object(alias: &str) -> serde_json::Value {
    json!({"id": alias, "object": "model", "created": 0, "owned_by": "tollgate"})
}

fn json_response<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| GatewayError::internal(format!("the response could not be encoded: {e}")))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], Bytes::from(body))
        .into_response())
}
