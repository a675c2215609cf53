//! How long the local model takes on this machine: load, one short prompt, a batch of 32, and
//! one prompt through the pool (queue + thread hop included). Run in release, as the gateway is:
//!
//! ```sh
//! export TOLLGATE_EMBED_MODEL_DIR="$(scripts/fetch-embedding-model.sh)"
//! cargo run --release -p tollgate-embed --example timing
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tollgate_embed::{EmbedPool, LocalModel, PoolOptions};

const PROMPT: &str = "How do I configure retries with exponential backoff for the OpenAI client?";

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(idx).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("TOLLGATE_EMBED_MODEL_DIR"))
        .map(PathBuf::from)
        .ok_or("give the model directory as an argument or in TOLLGATE_EMBED_MODEL_DIR")?;
    eprintln!("prompt: {} words", PROMPT.split_whitespace().count());

    let start = Instant::now();
    let model = LocalModel::load(&dir)?;
    eprintln!("load: {:.1} ms", ms(start.elapsed()));

    for _ in 0..20 {
        model.embed_batch(&[PROMPT])?;
    }
    let mut single: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            model.embed_batch(&[PROMPT]).map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()?;
    eprintln!(
        "one prompt: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms (200 runs)",
        ms(percentile(&mut single, 0.5)),
        ms(percentile(&mut single, 0.9)),
        ms(percentile(&mut single, 0.99))
    );

    let prompts: Vec<String> = (0..32).map(|i| format!("{PROMPT} Variant number {i}.")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    model.embed_batch(&refs)?;
    let mut batch: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            model.embed_batch(&refs).map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()?;
    let p50 = percentile(&mut batch, 0.5);
    eprintln!("batch of 32: p50 {:.1} ms ({:.2} ms per prompt, 20 runs)", ms(p50), ms(p50) / 32.0);

    let pool = EmbedPool::start(model, PoolOptions::default())?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut pooled: Vec<Duration> = runtime.block_on(async {
        let mut out = Vec::with_capacity(200);
        for i in 0..220 {
            let t = Instant::now();
            pool.embed(PROMPT.to_owned()).await?;
            if i >= 20 {
                out.push(t.elapsed());
            }
        }
        Ok::<_, tollgate_embed::EmbedError>(out)
    })?;
    eprintln!("one prompt via EmbedPool: p50 {:.2} ms (200 runs)", ms(percentile(&mut pooled, 0.5)));
    pool.shutdown_blocking();
    Ok(())
}
