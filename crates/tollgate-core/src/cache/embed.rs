//! How the semantic cache turns a prompt into an embedding.
//!
//! The pipeline hands the cache an [`EmbedPrompt`] for each request: either the gateway's own
//! embeddings path for the configured alias, called as the requesting tenant (so a `byok_only`
//! tenant's prompt goes out under its own credentials and the call is metered to it), or an
//! in-process model (the binary's `local-embeddings` cargo feature; it must run the model off
//! the async runtime), so no prompt leaves the machine.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tollgate_types::ports::CacheKey;

/// Embeds one request's prompt.
#[async_trait]
pub trait EmbedPrompt: Send + Sync {
    /// The model's identity, hashed into every namespace so vectors of different models never
    /// meet (changing the embedding model starts an empty semantic cache).
    fn id(&self) -> String;

    /// The L2-normalised embedding of `text`, or why there is none (the lookup is then a miss).
    async fn embed(&self, text: &str) -> Result<Vec<f32>, String>;
}

/// The namespace a request's semantic entries live in: its semantic key's digest bound to the
/// embedding model's identity.
pub fn namespace_for(key: &CacheKey, model_id: &str) -> CacheKey {
    let mut h = Sha256::new();
    h.update(key.digest());
    h.update((model_id.len() as u64).to_le_bytes());
    h.update(model_id.as_bytes());
    CacheKey::new(key.tenant(), h.finalize().into())
}

/// L2-normalises `v` in place; `false` when it cannot be (zero length, zero or non-finite norm),
/// since an embedding that is not a direction cannot be compared.
pub fn normalise(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_types::tenancy::TenantId;

    #[test]
    fn the_model_is_part_of_the_namespace_and_the_tenant_is_kept() {
        let t = TenantId::new();
        let key = CacheKey::new(t, [7; 32]);
        let a = namespace_for(&key, "local:all-MiniLM-L6-v2");
        let b = namespace_for(&key, "alias:embed");
        assert_ne!(a, b);
        assert_eq!(a, namespace_for(&key, "local:all-MiniLM-L6-v2"));
        assert_eq!(a.tenant(), t);
        assert_ne!(namespace_for(&CacheKey::new(TenantId::new(), [7; 32]), "alias:embed").tenant(), t);
    }

    #[test]
    fn normalise_refuses_what_is_not_a_direction() {
        let mut v = vec![3.0, 4.0];
        assert!(normalise(&mut v));
        assert_eq!(v, vec![0.6, 0.8]);
        assert!(!normalise(&mut []));
        assert!(!normalise(&mut [0.0, 0.0]));
        assert!(!normalise(&mut [f32::NAN, 1.0]));
        assert!(!normalise(&mut [f32::INFINITY, 1.0]));
    }
}
