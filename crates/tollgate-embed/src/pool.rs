//! The async front of [`LocalModel`]: what the gateway's cache calls on the request path.
//!
//! The model is CPU-bound for milliseconds per call; run on a tokio worker it would stall every
//! other request on that worker. So it runs on dedicated OS threads ("tollgate-embed-N") fed by
//! a bounded queue, and each caller awaits a oneshot answer. Under load a worker takes whatever
//! is waiting (up to `max_batch`) into one forward pass, which costs far less than the same
//! texts one by one. When the queue is full the caller gets [`EmbedError::Busy`] at once: for a
//! cache, a miss now beats a hit later.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::{EmbedError, LocalModel};

/// Sizing of an [`EmbedPool`] (`cache.semantic.embedding.local` in the configuration, whose
/// defaults these are). Zeros are raised to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Worker threads, each running whole batches. The matrix products already use every core
    /// (candle's rayon pool), so more than 1–2 mostly adds memory; more helps only when batches
    /// are small and tokenising dominates.
    pub threads: usize,
    /// Most texts per forward pass. Larger batches raise throughput but also the latency of
    /// everyone in them (padding to the longest text).
    pub max_batch: usize,
    /// Requests that may wait for a worker. Past it, [`EmbedError::Busy`]. Roughly
    /// `queue / throughput` is the worst wait a caller accepts.
    pub queue: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self { threads: 1, max_batch: 16, queue: 256 }
    }
}

/// Handle to the embedding threads. Cheap to clone; the threads finish the queued requests and
/// exit once the last handle is dropped (or [`EmbedPool::shutdown_blocking`] is called on it).
#[derive(Debug, Clone)]
pub struct EmbedPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Dropping the last sender is what tells the workers to exit.
    jobs: SyncSender<Job>,
    workers: Vec<JoinHandle<()>>,
    dim: usize,
    id: &'static str,
}

#[derive(Debug)]
struct Job {
    text: String,
    reply: oneshot::Sender<Result<Vec<f32>, EmbedError>>,
}

impl EmbedPool {
    /// Starts `opts.threads` worker threads sharing `model`. Fails only if the OS refuses a
    /// thread ([`EmbedError::Model`]); threads already started then exit on their own.
    pub fn start(model: LocalModel, opts: PoolOptions) -> Result<Self, EmbedError> {
        let threads = opts.threads.max(1);
        let max_batch = opts.max_batch.max(1);
        let (jobs, rx) = std::sync::mpsc::sync_channel(opts.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let (dim, id) = (model.dim(), model.id());
        let model = Arc::new(model);
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            let (rx, model) = (Arc::clone(&rx), Arc::clone(&model));
            let handle = std::thread::Builder::new()
                .name(format!("tollgate-embed-{n}"))
                .spawn(move || worker(&rx, &model, max_batch))
                .map_err(|e| EmbedError::Model(format!("cannot start embedding thread: {e}")))?;
            workers.push(handle);
        }
        tracing::debug!(threads, max_batch, queue = opts.queue, id, "embedding pool started");
        Ok(Self { inner: Arc::new(Inner { jobs, workers, dim, id }) })
    }

    /// Embeds one text (unit length, [`crate::DIM`] floats). Truncates past
    /// [`crate::MAX_TOKENS`] word pieces; any text is accepted.
    ///
    /// Errors: [`EmbedError::Busy`] immediately when the queue is full (never waits for room),
    /// [`EmbedError::Closed`] when the workers are gone, [`EmbedError::Model`] if the model
    /// failed on this text. All mean "no vector": treat as a cache miss.
    ///
    /// Cancel-safe: dropping the future abandons the request, and a worker that has not yet
    /// started it skips it.
    pub async fn embed(&self, text: String) -> Result<Vec<f32>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        match self.inner.jobs.try_send(Job { text, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EmbedError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(EmbedError::Closed),
        }
        answer.await.map_err(|_| EmbedError::Closed)?
    }

    /// Length of the vectors.
    pub fn dim(&self) -> usize {
        self.inner.dim
    }

    /// The model's identity (see [`crate::MODEL_ID`]), for cache namespaces.
    pub fn id(&self) -> &'static str {
        self.inner.id
    }

    /// Drops this handle and, if it was the last one, waits for the workers to answer what is
    /// queued and exit; returns whether it waited (false when other clones keep the pool open).
    /// Blocks: call it at shutdown from a blocking context, not on a tokio worker.
    pub fn shutdown_blocking(self) -> bool {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            return false;
        };
        let Inner { jobs, workers, .. } = inner;
        drop(jobs);
        for handle in workers {
            if handle.join().is_err() {
                tracing::warn!("an embedding thread panicked");
            }
        }
        true
    }
}

// === worker threads ===

/// One worker: block for a request, take what else is already waiting (up to `max_batch` in
/// all), embed them together, answer each; exit once every [`EmbedPool`] handle is gone and the
/// queue is drained.
fn worker(rx: &Mutex<Receiver<Job>>, model: &LocalModel, max_batch: usize) {
    loop {
        // The lock is held while waiting, so idle workers queue on the lock and exactly one
        // waits on the channel; it is released before the model runs, so others can collect
        // the next batch meanwhile.
        let batch = {
            let rx = rx.lock();
            let Ok(first) = rx.recv() else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        run_batch(model, batch);
    }
}

fn run_batch(model: &LocalModel, batch: Vec<Job>) {
    // Callers that gave up (timed out, disconnected) are not worth a forward pass.
    let batch: Vec<Job> = batch.into_iter().filter(|job| !job.reply.is_closed()).collect();
    if batch.is_empty() {
        return;
    }
    let texts: Vec<&str> = batch.iter().map(|job| job.text.as_str()).collect();
    match guarded_embed(model, &texts) {
        Ok(vectors) if vectors.len() == batch.len() => {
            for (job, vector) in batch.into_iter().zip(vectors) {
                // The caller may have left since; nothing to do then.
                let _ = job.reply.send(Ok(vector));
            }
        }
        outcome => {
            // Retry one by one so that a text the model chokes on fails alone, not its batch.
            if let Err(e) = outcome {
                tracing::warn!(error = %e, size = batch.len(), "embedding batch failed; retrying texts singly");
            }
            for job in batch {
                let answer = guarded_embed(model, &[job.text.as_str()]).and_then(|mut v| {
                    v.pop().ok_or_else(|| EmbedError::Model("model returned no vector".to_owned()))
                });
                let _ = job.reply.send(answer);
            }
        }
    }
}

/// `embed_batch`, with a panic inside the tokenizer or candle turned into
/// [`EmbedError::Model`], so one bad input cannot kill a worker (and with it, once all are
/// gone, the semantic cache). The model is immutable, so it is still sound after a panic.
fn guarded_embed(model: &LocalModel, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| model.embed_batch(texts)))
        .unwrap_or_else(|_| Err(EmbedError::Model("the model panicked".to_owned())))
}
