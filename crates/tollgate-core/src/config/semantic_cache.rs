//! `cache.semantic:` — the semantic cache (answers matched by meaning): where its entries live,
//! how prompts are embedded, and how similar is similar enough. See `docs/caching.md`.
//!
//! The section's presence makes the semantic cache available; `enabled` is the file-level rule
//! (aliases, tenants, projects and keys turn it on or off with their own `semantic` rule).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tollgate_types::cache_rule::SimilarityThreshold;

use super::Issues;

/// `cache.semantic` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemanticConfig {
    /// Match requests by meaning unless a more specific rule says otherwise (default false).
    #[serde(default)]
    pub enabled: bool,
    /// `memory` (one node, the default; persisted to a SQLite store) or `postgres` (pgvector in
    /// the PostgreSQL store, shared by every node).
    pub backend: Option<String>,
    /// How prompts are embedded: `{alias: <model alias>}` (through the gateway, with the
    /// tenant's credentials and at the tenant's cost) or `{local: {model_dir: ...}}`.
    pub embedding: Option<RawEmbedding>,
    /// Similarity bar for prompts of more than `short_max_words` words.
    pub threshold: Option<f32>,
    /// The stricter bar for short prompts.
    pub short_threshold: Option<f32>,
    pub short_max_words: Option<usize>,
    /// Memory backend: the most bytes of entries (answers, prompts and vectors) kept (default
    /// 256 MiB); the least recently used are evicted past it.
    pub max_bytes: Option<u64>,
    /// Memory backend: entries in one namespace from which lookups use an HNSW graph instead of
    /// an exact scan (default 4096).
    pub hnsw_threshold: Option<usize>,
    /// Bound on embedding a prompt plus the lookup (default 2s); slower is a miss.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The embedding alias's vector length: the postgres backend needs it to create its table
    /// (a local model's is known: 384).
    pub dimensions: Option<usize>,
}

/// `cache.semantic.embedding`: exactly one of the two.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbedding {
    pub alias: Option<String>,
    pub local: Option<RawLocalEmbedding>,
}

/// `cache.semantic.embedding.local`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalEmbedding {
    /// The all-MiniLM-L6-v2 files (`config.json`, `tokenizer.json`, `model.safetensors`), as
    /// `scripts/fetch-embedding-model.sh` lays them out.
    pub model_dir: PathBuf,
    /// Threads running the model (default 1).
    pub threads: Option<usize>,
    /// Prompts embedded in one forward pass (default 16).
    pub max_batch: Option<usize>,
    /// Prompts waiting for a thread; past it, lookups are misses (default 256).
    pub queue: Option<usize>,
}

/// Where semantic entries live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SemanticBackend {
    Memory { max_bytes: u64, hnsw_threshold: usize },
    Postgres,
}

/// How prompts are embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbeddingSource {
    /// Through this model alias of the gateway.
    Alias(String),
    Local(LocalEmbedding),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEmbedding {
    pub model_dir: PathBuf,
    pub threads: usize,
    pub max_batch: usize,
    pub queue: usize,
}

/// The validated `cache.semantic` section.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticConfig {
    pub enabled: bool,
    pub backend: SemanticBackend,
    pub embedding: EmbeddingSource,
    pub threshold: SimilarityThreshold,
    pub timeout: Duration,
    /// `dimensions`, when set.
    pub dimensions: Option<usize>,
}

pub const DEFAULT_SEMANTIC_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_HNSW_THRESHOLD: usize = 4096;
pub const DEFAULT_SEMANTIC_TIMEOUT: Duration = Duration::from_secs(2);

impl RawSemanticConfig {
    pub(super) fn validate(self, issues: &mut Issues) -> Option<SemanticConfig> {
        let max_bytes = self.max_bytes.unwrap_or(DEFAULT_SEMANTIC_MAX_BYTES);
        let hnsw_threshold = self.hnsw_threshold.unwrap_or(DEFAULT_HNSW_THRESHOLD);
        let backend = match self.backend.as_deref().unwrap_or("memory") {
            "memory" => {
                if max_bytes == 0 {
                    issues.push("cache.semantic.max_bytes", "must be greater than 0");
                }
                if hnsw_threshold < 2 {
                    issues.push("cache.semantic.hnsw_threshold", "must be at least 2");
                }
                SemanticBackend::Memory { max_bytes, hnsw_threshold }
            }
            "postgres" => {
                for (field, set) in [
                    ("max_bytes", self.max_bytes.is_some()),
                    ("hnsw_threshold", self.hnsw_threshold.is_some()),
                ] {
                    if set {
                        issues.push(format!("cache.semantic.{field}"), "applies to the memory backend only");
                    }
                }
                SemanticBackend::Postgres
            }
            other => {
                issues.push(
                    "cache.semantic.backend",
                    format!("unknown backend {other:?} (known: memory, postgres)"),
                );
                SemanticBackend::Memory { max_bytes, hnsw_threshold }
            }
        };
        let embedding = match self.embedding.unwrap_or_default() {
            RawEmbedding { alias: Some(alias), local: None } => EmbeddingSource::Alias(alias),
            RawEmbedding { alias: None, local: Some(l) } => {
                let local = LocalEmbedding {
                    model_dir: l.model_dir,
                    threads: l.threads.unwrap_or(1),
                    max_batch: l.max_batch.unwrap_or(16),
                    queue: l.queue.unwrap_or(256),
                };
                for (field, v) in
                    [("threads", local.threads), ("max_batch", local.max_batch), ("queue", local.queue)]
                {
                    if v == 0 {
                        issues.push(format!("cache.semantic.embedding.local.{field}"), "must be at least 1");
                    }
                }
                EmbeddingSource::Local(local)
            }
            _ => {
                issues.push(
                    "cache.semantic.embedding",
                    "needs exactly one of {alias: <an embedding model alias>} or {local: {model_dir: <dir>}}",
                );
                return None;
            }
        };
        let d = SimilarityThreshold::DEFAULT;
        let threshold = SimilarityThreshold {
            threshold: self.threshold.unwrap_or(d.threshold),
            short_threshold: self.short_threshold.unwrap_or(d.short_threshold),
            short_max_words: self.short_max_words.unwrap_or(d.short_max_words),
        };
        if let Err(e) = threshold.validate() {
            issues.push("cache.semantic", e);
        }
        if threshold.short_threshold < threshold.threshold {
            issues.push(
                "cache.semantic.short_threshold",
                "must not be below threshold (short prompts need the stricter bar)",
            );
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_SEMANTIC_TIMEOUT);
        if timeout.is_zero() {
            issues.push("cache.semantic.timeout", "must be greater than 0");
        }
        if let Some(d) = self.dimensions
            && !(1..=2000).contains(&d)
        {
            issues.push("cache.semantic.dimensions", "must be from 1 to 2000 (pgvector's HNSW limit)");
        }
        if backend == SemanticBackend::Postgres
            && matches!(embedding, EmbeddingSource::Alias(_))
            && self.dimensions.is_none()
        {
            issues.push(
                "cache.semantic.dimensions",
                "is required with backend postgres and an embedding alias (the length of the alias's vectors)",
            );
        }
        Some(SemanticConfig {
            enabled: self.enabled,
            backend,
            embedding,
            threshold,
            timeout,
            dimensions: self.dimensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    const MODELS: &str =
        "providers: {echo: {kind: echo}}\nmodels: {echo: {deployments: [{provider: echo, model: e}]}}\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{MODELS}{extra}"), &HashMap::new()).map(|(c, _)| c).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_means_exact_matching_only() {
        let c = parse("").unwrap().cache;
        assert!(c.semantic.is_none());
        assert_eq!(c.rule.semantic, None);
    }

    #[test]
    fn reads_an_alias_embedder_with_defaults() {
        let c = parse("cache: {semantic: {enabled: true, embedding: {alias: echo}}}").unwrap().cache;
        let s = c.semantic.unwrap();
        assert_eq!(s.embedding, EmbeddingSource::Alias("echo".into()));
        assert_eq!(
            s.backend,
            SemanticBackend::Memory {
                max_bytes: DEFAULT_SEMANTIC_MAX_BYTES,
                hnsw_threshold: DEFAULT_HNSW_THRESHOLD
            }
        );
        assert_eq!(s.threshold, SimilarityThreshold::DEFAULT);
        assert_eq!(s.timeout, DEFAULT_SEMANTIC_TIMEOUT);
        assert_eq!(c.rule.semantic, Some(true), "enabled is the file-level rule");
    }

    #[test]
    fn reads_a_local_model_and_every_knob() {
        let c = parse(
            "cache: {semantic: {embedding: {local: {model_dir: /m, threads: 2, max_batch: 8, queue: 64}}, \
             threshold: 0.8, short_threshold: 0.9, short_max_words: 5, max_bytes: 1000, hnsw_threshold: 100, timeout: 500ms}}",
        )
        .unwrap()
        .cache;
        let s = c.semantic.unwrap();
        assert_eq!(
            s.embedding,
            EmbeddingSource::Local(LocalEmbedding {
                model_dir: "/m".into(),
                threads: 2,
                max_batch: 8,
                queue: 64
            })
        );
        assert_eq!(
            s.threshold,
            SimilarityThreshold { threshold: 0.8, short_threshold: 0.9, short_max_words: 5 }
        );
        assert_eq!(s.backend, SemanticBackend::Memory { max_bytes: 1000, hnsw_threshold: 100 });
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert_eq!(c.rule.semantic, Some(false));
    }

    #[test]
    fn reports_bad_values_with_their_path() {
        for (yaml, want) in [
            ("cache: {semantic: {}}", "cache.semantic.embedding: needs exactly one"),
            ("cache: {semantic: {embedding: {alias: echo, local: {model_dir: /m}}}}", "needs exactly one"),
            (
                "cache: {semantic: {embedding: {alias: nope}}}",
                "cache.semantic.embedding.alias: names no model alias",
            ),
            (
                "cache: {semantic: {embedding: {alias: echo}, backend: redis}}",
                "cache.semantic.backend: unknown backend",
            ),
            ("cache: {semantic: {embedding: {alias: echo}, backend: postgres}}", "postgres needs store.url"),
            ("cache: {semantic: {embedding: {alias: echo}, threshold: 1.5}}", "threshold must be in (0, 1]"),
            (
                "cache: {semantic: {embedding: {alias: echo}, threshold: 0.95, short_threshold: 0.9}}",
                "must not be below threshold",
            ),
            ("cache: {semantic: {embedding: {alias: echo}, max_bytes: 0}}", "cache.semantic.max_bytes"),
            (
                "cache: {semantic: {embedding: {local: {model_dir: /m, threads: 0}}}}",
                "local.threads: must be at least 1",
            ),
            ("cache: {semantic: {embedding: {alias: echo}, timeout: 0s}}", "cache.semantic.timeout"),
            ("cache: {semantic: {embedding: {alias: echo}, size: 1}}", "unknown field `size`"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
