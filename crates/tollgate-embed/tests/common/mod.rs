//! Shared by the integration tests: finding the model, loading it, comparing vectors.

use std::path::PathBuf;

use tollgate_embed::LocalModel;

/// The model directory, from `TOLLGATE_EMBED_MODEL_DIR`. Fails (never skips) when it is unset,
/// so a CI that forgot to fetch the model cannot pass without testing anything.
#[expect(clippy::panic, reason = "a test helper: failing the test is its job")]
pub fn model_dir() -> PathBuf {
    match std::env::var_os("TOLLGATE_EMBED_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "TOLLGATE_EMBED_MODEL_DIR is not set. Fetch the model and point the tests at it, from the \
             workspace root:\n    export TOLLGATE_EMBED_MODEL_DIR=\"$(scripts/fetch-embedding-model.sh)\""
        ),
    }
}

#[expect(clippy::panic, reason = "a test helper: failing the test is its job")]
pub fn load_model() -> LocalModel {
    let dir = model_dir();
    LocalModel::load(&dir).unwrap_or_else(|e| panic!("{e} (run scripts/fetch-embedding-model.sh?)"))
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `n` words of plain English-ish text, each a separate word piece or two.
pub fn long_text(n: usize) -> String {
    const WORDS: [&str; 12] = [
        "the", "gateway", "routes", "every", "request", "to", "a", "provider", "and", "caches", "answers",
        "quickly",
    ];
    (0..n).map(|i| WORDS[i % WORDS.len()]).collect::<Vec<_>>().join(" ")
}
