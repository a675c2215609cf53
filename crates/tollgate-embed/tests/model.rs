//! `LocalModel` against the real all-MiniLM-L6-v2 files (`TOLLGATE_EMBED_MODEL_DIR`).

pub mod common;

use common::{dot, load_model, long_text, max_abs_diff};
use tollgate_embed::{DIM, MODEL_ID};

#[test]
fn matches_the_reference_implementation() {
    // Reference: scripts/embedding-reference.py, an independent float64 numpy implementation of
    // the sentence-transformers pipeline (BERT, mean pooling over the attention mask, L2) on the
    // same files. For the single words it gives cos(cat, kitten) = 0.788211 and
    // cos(cat, stocks) = 0.202756. (shared/DEPENDENCIES.md quotes 0.6427 / 0.0526 from the
    // candle probe; no pooling or padding variant reproduces those for single words, so they were
    // evidently measured on other inputs.)
    let model = load_model();
    let v = model.embed_batch(&["cat", "kitten", "stocks"]).unwrap();
    let (cat_kitten, cat_stocks) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
    eprintln!("cos(cat, kitten) = {cat_kitten:.4}, cos(cat, stocks) = {cat_stocks:.4}");
    assert!((cat_kitten - 0.7882).abs() < 1e-3, "cos(cat, kitten) = {cat_kitten}");
    assert!((cat_stocks - 0.2028).abs() < 1e-3, "cos(cat, stocks) = {cat_stocks}");
    // Not just the angles: the vectors themselves.
    let cat_head = [0.037_330_36, 0.051_161_78, -0.000_306_07, 0.060_209_88];
    assert!(max_abs_diff(&v[0][..4], &cat_head) < 1e-5, "cat starts {:?}", &v[0][..4]);

    let a = "How do I reverse a list in Python?";
    let b = "What's the way to reverse a Python list?";
    let w = model.embed_batch(&[a, b]).unwrap();
    let sim = dot(&w[0], &w[1]);
    assert!((sim - 0.972_562).abs() < 1e-4, "cos = {sim}");
    let a_head = [-0.002_404_1, 0.078_560_01, 0.079_250_49, 0.003_161_82];
    assert!(max_abs_diff(&w[0][..4], &a_head) < 1e-5, "{a:?} starts {:?}", &w[0][..4]);
}

#[test]
fn vectors_have_the_model_dimension_and_unit_length() {
    let model = load_model();
    assert_eq!(model.dim(), 384);
    assert_eq!(DIM, 384);
    assert_eq!(model.id(), MODEL_ID);
    let v = model.embed_batch(&["How do I reverse a list in Python?", "x"]).unwrap();
    assert_eq!(v.len(), 2);
    for vector in &v {
        assert_eq!(vector.len(), 384);
        let norm = dot(vector, vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn batching_does_not_change_a_texts_vector() {
    // Very different lengths: the short texts get many pad positions in the batch, so any pad
    // leaking into attention or pooling would show here.
    let model = load_model();
    let long = long_text(180);
    let texts = ["hi", "What is the capital of France?", long.as_str(), "", "kitten"];
    let batched = model.embed_batch(&texts).unwrap();
    for (text, from_batch) in texts.iter().zip(&batched) {
        let alone = model.embed_batch(&[text]).unwrap().remove(0);
        let diff = max_abs_diff(&alone, from_batch);
        assert!(diff < 1e-5, "{:?}: batch differs from single by {diff}", &text[..text.len().min(20)]);
    }
    // And the order within the batch does not matter either.
    let reversed: Vec<&str> = texts.iter().rev().copied().collect();
    let back = model.embed_batch(&reversed).unwrap();
    for (a, b) in batched.iter().zip(back.iter().rev()) {
        assert!(max_abs_diff(a, b) < 1e-5);
    }
}

#[test]
fn empty_input_gives_empty_output_and_empty_text_a_vector() {
    let model = load_model();
    assert!(model.embed_batch(&[]).unwrap().is_empty());
    let v = model.embed_batch(&[""]).unwrap();
    assert_eq!(v[0].len(), 384);
    assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
}

#[test]
fn long_texts_are_truncated_not_rejected() {
    let model = load_model();
    let huge = long_text(10_000);
    // Every word of `long_text` is one word piece, so 300 words already pass the 256-piece cap:
    // both texts must come out identical (up to rounding).
    let prefix = long_text(300);
    let v = model.embed_batch(&[huge.as_str(), prefix.as_str()]).unwrap();
    assert!(max_abs_diff(&v[0], &v[1]) < 1e-5, "the 10k-word text was not cut at 256 word pieces");
    let shorter = long_text(100);
    let w = model.embed_batch(&[shorter.as_str()]).unwrap();
    assert!(max_abs_diff(&v[0], &w[0]) > 1e-3, "100 words should differ from 256 pieces");
}

#[test]
fn odd_inputs_embed_without_error() {
    let model = load_model();
    let one_long_word = "a".repeat(50_000);
    let megabyte = "x ".repeat(600_000);
    let texts = [
        "\0\0\0",
        "nul\0in the middle",
        "   \t\n  ",
        "😀🚀 emoji only 👍🏽",
        "مرحبا بالعالم",
        "日本語のテキストです",
        "e\u{301}\u{301}\u{301} combining marks",
        "\u{200b}\u{feff}\u{202e}reversed",
        "\u{7}\u{1b}[31m control codes",
        "\u{10ffff}\u{fffd}",
        one_long_word.as_str(),
        megabyte.as_str(),
    ];
    let v = model.embed_batch(&texts).unwrap();
    assert_eq!(v.len(), texts.len());
    for (text, vector) in texts.iter().zip(&v) {
        assert_eq!(vector.len(), 384);
        assert!(vector.iter().all(|x| x.is_finite()));
        let norm = dot(vector, vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{:?}: norm {norm}", &text[..text.len().min(12)]);
    }
}
