//! `EmbedPool` against the real model: concurrency, overload, shutdown.

pub mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{load_model, long_text, max_abs_diff};
use tokio::task::JoinSet;
use tollgate_embed::{EmbedError, EmbedPool, PoolOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_embeds_are_all_answered_correctly() {
    let model = load_model();
    let texts: Vec<String> = (0..64)
        .map(|i| match i % 4 {
            0 => format!("question number {i}"),
            1 => format!("How do I sort a list of {i} integers in Rust without allocating?"),
            2 => long_text(20 + i * 3),
            _ => format!("{i}"),
        })
        .collect();
    let expected: Vec<Vec<f32>> =
        texts.iter().map(|t| model.embed_batch(&[t.as_str()]).unwrap().remove(0)).collect();

    let pool = EmbedPool::start(model, PoolOptions { threads: 2, max_batch: 8, queue: 64 }).unwrap();
    assert_eq!((pool.dim(), pool.id()), (384, "local:all-MiniLM-L6-v2"));
    let mut tasks = JoinSet::new();
    for (i, text) in texts.iter().enumerate() {
        let (pool, text) = (pool.clone(), text.clone());
        tasks.spawn(async move { (i, pool.embed(text).await) });
    }
    let mut answered = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.unwrap();
        let vector = result.unwrap_or_else(|e| panic!("text {i}: {e}"));
        let diff = max_abs_diff(&vector, &expected[i]);
        assert!(diff < 1e-5, "text {i}: pooled vector differs from direct embed_batch by {diff}");
        answered += 1;
    }
    assert_eq!(answered, 64);
    assert!(pool.shutdown_blocking());
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_is_busy_at_once() {
    // One worker taking one text at a time, one waiting slot, and texts at the 256-piece cap:
    // the worker is busy for milliseconds while all 16 requests arrive in microseconds.
    let pool = EmbedPool::start(load_model(), PoolOptions { threads: 1, max_batch: 1, queue: 1 }).unwrap();
    let pool = Arc::new(pool);
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let pool = Arc::clone(&pool);
        tasks.spawn(async move {
            // Busy must come back without waiting for the worker.
            tokio::time::timeout(Duration::from_millis(10), pool.embed(long_text(400))).await
        });
    }
    let (mut busy, mut done, mut slow) = (0, 0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(Err(EmbedError::Busy)) => busy += 1,
            Ok(Ok(v)) => {
                assert_eq!(v.len(), 384);
                done += 1;
            }
            Ok(Err(e)) => panic!("unexpected error {e}"),
            // Accepted requests may take longer than 10 ms; only Busy is held to it.
            Err(_elapsed) => slow += 1,
        }
    }
    eprintln!("busy {busy}, answered {done}, accepted but slower than 10 ms {slow}");
    assert!(busy >= 1, "no request was refused");
    assert!(done + slow >= 1, "no request was accepted");
    assert!(done + slow <= 4, "more accepted than 1 running + 1 queued allows (plus a little slack)");
}

#[test]
fn dropping_the_last_handle_stops_the_threads() {
    let pool = EmbedPool::start(load_model(), PoolOptions { threads: 2, max_batch: 4, queue: 8 }).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let v = runtime.block_on(pool.embed("warm up".to_owned())).unwrap();
    assert_eq!(v.len(), 384);

    let other = pool.clone();
    assert!(!other.shutdown_blocking(), "a clone is still open; must not wait");

    // The workers exit once the last handle is gone: joining them must finish quickly.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(pool.shutdown_blocking()).unwrap());
    let joined = rx.recv_timeout(Duration::from_secs(30)).expect("workers did not exit after shutdown");
    assert!(joined);
}

#[tokio::test]
async fn zero_options_are_raised_to_one() {
    let pool = EmbedPool::start(load_model(), PoolOptions { threads: 0, max_batch: 0, queue: 0 }).unwrap();
    assert_eq!(pool.embed(String::new()).await.unwrap().len(), 384);
    assert_eq!(PoolOptions::default(), PoolOptions { threads: 1, max_batch: 16, queue: 256 });
}
