//! The semantic cache's prompts embedded through the gateway's own routing: the configured
//! alias, called as the requesting tenant (its credentials, its limits, its usage record), so
//! a `byok_only` tenant's prompt never goes out under the gateway's keys and the embedding's
//! cost is the tenant's.

use async_trait::async_trait;
use tollgate_types::{EmbeddingInput, EmbeddingsRequest, JsonMap};

use super::{Caller, Gateway, RequestCtx};
use crate::cache::EmbedPrompt;
use crate::cache::embed::normalise;
use crate::registry::ModelRoute;

/// Embeds one request's prompt through `route`. Built for every chat request of a gateway
/// with an embedding alias, so it only borrows: anything it needs to own is made when (if) it
/// embeds.
pub(super) struct AliasEmbedder<'a> {
    gateway: &'a Gateway,
    ctx: &'a RequestCtx,
    route: &'a ModelRoute,
}

impl<'a> AliasEmbedder<'a> {
    pub(super) fn new(gateway: &'a Gateway, ctx: &'a RequestCtx, route: &'a ModelRoute) -> Self {
        Self { gateway, ctx, route }
    }
}

#[async_trait]
impl EmbedPrompt for AliasEmbedder<'_> {
    /// The alias and the upstream models behind it: re-pointing the alias at another model
    /// starts a fresh namespace instead of comparing vectors of two models.
    fn id(&self) -> String {
        let models: Vec<String> = self
            .route
            .deployments
            .iter()
            .map(|d| format!("{}/{}", d.provider_kind, d.upstream_model))
            .collect();
        format!("alias:{}:{}", self.route.alias, models.join(","))
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let req = EmbeddingsRequest {
            model: self.route.alias.clone(),
            input: EmbeddingInput::One(text.to_owned()),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: JsonMap::new(),
        };
        // The client's identity and request id, without its routing headers (those address the
        // chat alias, not this one).
        let ctx = RequestCtx::new(self.ctx.request_id.clone(), self.ctx.principal.clone());
        let served = self.gateway.embed(&ctx, req, Caller::Cache).await.map_err(|e| e.to_string())?;
        let first = served.value.data.into_iter().next().ok_or("the embeddings answer has no data")?;
        let mut vector: Vec<f32> = serde_json::from_value(first.embedding)
            .map_err(|e| format!("the embedding is not a list of numbers: {e}"))?;
        if !normalise(&mut vector) {
            return Err("the embedding is empty, zero or not finite".into());
        }
        Ok(vector)
    }
}
