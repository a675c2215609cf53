//! The Redis [`RateLimiter`]: every gateway node talking to one Redis enforces one shared limit.
//!
//! - One atomic Lua **function** per operation, `tollgate_reserve_v3` and `tollgate_settle_v3`
//!   (library `tollgate_limiter_v3`, `src/limiter.lua`), checks and charges every key of a
//!   request at once. Functions rather than `EVALSHA` scripts because the style guide asks for
//!   named, versioned functions: the `_v3` library sits next to `_v2` and `_v1` during a rolling
//!   deploy (old nodes keep calling theirs, which this crate never deletes; all use the same keys
//!   and state layout, so old and new nodes enforce one limit), and `FUNCTION LIST` shows what
//!   is loaded. The library is loaded on first use and again whenever Redis answers "Function not
//!   found" (a restarted or flushed Redis).
//! - **Batching**, because Redis is the bottleneck: every `redis.call` inside Lua costs the
//!   server a microsecond or two, and with one call per request (seven counters each, loaded and
//!   saved one by one) Redis saturated its CPU at a fraction of the gateway's throughput.
//!   Concurrent requests mostly share counters (same key, tenant, model), so
//!   [`reserve`](RateLimiter::reserve) queues its reservations for a worker task
//!   (`src/worker.rs`) that sends every request queued at that moment in one
//!   `tollgate_reserve_v3` call (as two binary arguments: Lua reads them with `struct.unpack`,
//!   far cheaper for Redis than a string argument per number); Lua loads and saves each counter once per call and still
//!   decides each request on its own (all-or-nothing, in queue order). The worker does not
//!   linger for more requests: under load the queue fills while up to four calls are in
//!   flight, so batches grow with the load, and an idle gateway pays no added latency.
//!   [`settle`](RateLimiter::settle) merges adjustments of one counter before sending them.
//! - **Abandoned callers:** a caller waits at most the configured timeout; the worker waits for
//!   Redis longer (10× the timeout, at least a second) so a late answer is still seen, and if
//!   Redis admitted a request whose caller is gone (timed out or cancelled) the worker gives the
//!   reservations back (`-amount` per counter, one slot per concurrency unit). Without that a
//!   slow Redis leaks concurrency slots and budget until their TTLs end. Only an answer that
//!   takes even longer than the worker's wait is lost that way.
//! - Windows and slot expiry use the Redis server clock (`TIME`), so nodes with skewed clocks
//!   still agree; calendar budgets take the period from the injected [`Clock`] and put its label
//!   in the key (`…:c:month:2026-11`).
//! - Every key has a TTL (a drained bucket, a past period, expired slots), except `total`
//!   budgets, which by definition never end.
//! - Every call is bounded by a short timeout (default 50 ms) and the connection is made lazily,
//!   so an unreachable Redis is an [`LimitError::Unavailable`] quickly, never a hang; wrap the
//!   limiter in `tollgate_core::limits::PolicyRateLimiter` to fail open or closed. A full queue
//!   (Redis far behind) is `Unavailable` at once.
//! - All keys of one call must live on one node: this is for a single Redis (or a primary with
//!   replicas), not Redis Cluster.
//!
//! The crate also holds the exact response cache shared by every node, [`RedisCacheStore`]
//! (`src/cache.rs`).

pub mod cache;
mod keys;
mod wire;
mod worker;

/// Keys are the gateway's own counter names, not client input: a fast hash is enough.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tollgate_types::ports::{Adjustment, Admission, Clock, LimitError, LimitKind, RateLimiter, Reservation};

pub use crate::cache::{RedisCacheConfig, RedisCacheStore};
use crate::keys::KeyNames;
use crate::worker::{Answer, Job, Work};

/// The Lua library (both functions).
pub const LIBRARY: &str = include_str!("limiter.lua");
/// The library's name in `FUNCTION LIST`; a new version is a new name, next to this one.
pub const LIBRARY_NAME: &str = "tollgate_limiter_v3";
const RESERVE_FN: &str = "tollgate_reserve_v3";
const SETTLE_FN: &str = "tollgate_settle_v3";

/// Settings of a [`RedisRateLimiter`].
#[derive(Debug, Clone)]
pub struct RedisLimiterConfig {
    /// Upper bound on every call (connecting and waiting in the batch queue included). Default
    /// 50 ms.
    pub timeout: Duration,
    /// How long an unreleased concurrency slot is held. Default 10 minutes.
    pub max_hold: Duration,
    /// Prefix of every key. Default `tg:lim`.
    pub prefix: String,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(50),
            max_hold: Duration::from_secs(600),
            prefix: "tg:lim".into(),
        }
    }
}

/// Rate limits and budgets in Redis. Clones share one connection and one batching worker; the
/// worker ends once the last clone is dropped.
#[derive(Clone)]
pub struct RedisRateLimiter {
    backend: Arc<Backend>,
    queue: mpsc::Sender<Work>,
}

/// What the limiter and its worker share (the worker holds no queue sender, so dropping the
/// last limiter ends it).
struct Backend {
    conn: ConnectionManager,
    clock: Arc<dyn Clock>,
    cfg: RedisLimiterConfig,
    names: Mutex<KeyNames>,
}

fn opt_us(us: i64) -> Option<Duration> {
    u64::try_from(us).ok().map(Duration::from_micros)
}

// === impl RedisRateLimiter ===

impl RedisRateLimiter {
    /// A limiter on `url` (`redis://127.0.0.1:6379`). Connects lazily: never blocks, and works
    /// (with `Unavailable` errors) while Redis is down. Budgets follow `clock`. Call it inside a
    /// Tokio runtime: the connection manager and the batching worker run there (outside one
    /// this is an error).
    pub fn new(url: &str, clock: Arc<dyn Clock>, cfg: RedisLimiterConfig) -> Result<Self, LimitError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(LimitError::Unavailable("the redis limiter needs a Tokio runtime".into()));
        }
        let client =
            redis::Client::open(url).map_err(|e| LimitError::Unavailable(format!("redis url: {e}")))?;
        // Callers bound their own wait by `cfg.timeout`; the connection waits for replies as long
        // as the worker does, so a late answer to a batch is still read (and released if its
        // callers are gone) instead of being cut off.
        let mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(patience(&cfg)))
            .set_number_of_retries(1)
            .set_max_delay(cfg.timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, mc).map_err(unavailable)?;
        let names = Mutex::new(KeyNames::new(&cfg.prefix, cfg.max_hold));
        let backend = Arc::new(Backend { conn, clock, cfg, names });
        let (queue, rx) = mpsc::channel(worker::QUEUE);
        #[expect(
            clippy::disallowed_methods,
            reason = "the worker owns no side effects to drain: it ends by itself once the last \
                      limiter clone (every queue sender) is dropped, answering what is queued"
        )]
        tokio::spawn(worker::run(backend.clone(), rx));
        Ok(Self { backend, queue })
    }

    /// Loads (or replaces) the Lua library now, e.g. at start-up; calls load it on demand too.
    pub async fn load_functions(&self) -> Result<(), LimitError> {
        self.backend.load_functions(self.backend.cfg.timeout).await
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    /// Queues `reqs` for the batching worker and waits for its answer, at most `cfg.timeout`
    /// (queueing included). Cancel-safe: whatever Redis admits for a caller that timed out or
    /// was dropped is given back by the worker.
    async fn reserve(&self, reqs: &[Reservation]) -> Result<Admission, LimitError> {
        if reqs.is_empty() {
            return Ok(Admission::default());
        }
        let (reply, rx) = oneshot::channel();
        self.queue.try_send(Work::Reserve(Job { reqs: reqs.to_vec(), reply })).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                LimitError::Unavailable("the redis limiter's queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                LimitError::Unavailable("the redis limiter's worker has stopped".into())
            }
        })?;
        let mut waiting = Waiting { rx, queue: &self.queue };
        match tokio::time::timeout(self.backend.cfg.timeout, &mut waiting.rx).await {
            Ok(Ok((_, answer))) => answer,
            Ok(Err(_)) => Err(LimitError::Unavailable("the redis limiter's worker has stopped".into())),
            Err(_) => {
                // Closing first settles the race with the worker: either the answer is already
                // here (use it), or the worker's send fails and it gives the reservations back.
                waiting.rx.close();
                match waiting.rx.try_recv() {
                    Ok((_, answer)) => answer,
                    Err(_) => Err(LimitError::Unavailable(format!(
                        "redis did not answer within {:?}",
                        self.backend.cfg.timeout
                    ))),
                }
            }
        }
    }

    /// Merges adjustments of one counter, then one `tollgate_settle_v3` call bounded by
    /// `cfg.timeout`. Not batched with other settles: the gateway already settles in batches.
    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), LimitError> {
        let b = &self.backend;
        b.settle_at(adjustments.iter().map(|a| (&a.key, a.kind, a.delta)), b.clock.now_utc(), b.cfg.timeout)
            .await
    }
}

/// A caller's wait for its answer. Dropped before the answer was taken (the caller's future was
/// cancelled between the worker's send and its next poll), it hands admitted reservations back
/// to the worker for release; a caller dropped earlier makes the worker's send fail instead.
struct Waiting<'a> {
    rx: oneshot::Receiver<Answer>,
    queue: &'a mpsc::Sender<Work>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok((reqs, Ok(_))) = self.rx.try_recv()
            && self.queue.try_send(Work::Release(reqs)).is_err()
        {
            tracing::warn!(
                "the redis limiter's queue is full; a cancelled caller's slots stay held until they expire"
            );
        }
    }
}

// === impl Backend ===

/// How long the worker waits for Redis: well past the callers' timeout, so late answers are
/// still seen and what they admitted for callers that are gone can be given back.
fn patience(cfg: &RedisLimiterConfig) -> Duration {
    (cfg.timeout * 10).max(Duration::from_secs(1))
}

impl Backend {
    fn patience(&self) -> Duration {
        patience(&self.cfg)
    }

    async fn load_functions(&self, wait: Duration) -> Result<(), LimitError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(LIBRARY);
        bounded(wait, async { cmd.query_async::<String>(&mut conn).await.map(drop) }).await
    }

    /// FCALL of `cmd` (built by [`fcall_cmd`]), loading the library once if Redis does not know
    /// the function; each attempt waits at most `wait`.
    async fn fcall(&self, cmd: &redis::Cmd, wait: Duration) -> Result<redis::Value, LimitError> {
        let call = || {
            let mut conn = self.conn.clone();
            async move { cmd.query_async::<redis::Value>(&mut conn).await }
        };
        match tokio::time::timeout(wait, call()).await {
            Ok(Err(e)) if e.to_string().contains("Function not found") => {
                tracing::info!(library = LIBRARY_NAME, "loading the rate-limit functions into redis");
                self.load_functions(wait).await?;
                bounded(wait, call()).await
            }
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(LimitError::Unavailable(format!("redis did not answer within {wait:?}"))),
        }
    }

    /// One `tollgate_settle_v3` call for `adjustments`, merged per counter first; calendar
    /// periods are those of `now`.
    async fn settle_at<'a>(
        &self,
        adjustments: impl IntoIterator<Item = (&'a Arc<str>, LimitKind, i64)>,
        now: time::OffsetDateTime,
        wait: Duration,
    ) -> Result<(), LimitError> {
        let merged = wire::merge_adjustments(adjustments);
        if merged.is_empty() {
            return Ok(());
        }
        let mut cmd = fcall_cmd(SETTLE_FN, merged.len());
        let mut params = Vec::with_capacity(merged.len());
        {
            let mut names = self.names.lock();
            for &(key, kind, delta) in &merged {
                let c = names.counter(key, kind, now);
                cmd.arg(c.name);
                params.push((c.kind, delta, c.param));
            }
        }
        cmd.arg(uuid::Uuid::now_v7().simple().to_string());
        for (kind, delta, param) in params {
            cmd.arg(kind).arg(delta).arg(param);
        }
        self.fcall(&cmd, wait).await.map(drop)
    }
}

async fn bounded<T>(
    wait: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, LimitError> {
    match tokio::time::timeout(wait, fut).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(LimitError::Unavailable(format!("redis did not answer within {wait:?}"))),
    }
}

/// `FCALL name numkeys`: the caller appends the keys, then the arguments (numbers are written
/// straight into the command, without intermediate strings).
fn fcall_cmd(name: &str, keys: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(name).arg(keys);
    cmd
}

fn unavailable(e: redis::RedisError) -> LimitError {
    LimitError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_outwaits_its_callers() {
        let cfg =
            |ms| RedisLimiterConfig { timeout: Duration::from_millis(ms), ..RedisLimiterConfig::default() };
        assert_eq!(patience(&cfg(50)), Duration::from_secs(1));
        assert_eq!(patience(&cfg(500)), Duration::from_secs(5));
    }

    #[test]
    fn outside_a_runtime_new_is_an_error_not_a_panic() {
        let clock = Arc::new(tollgate_types::ports::SystemClock);
        assert!(RedisRateLimiter::new("redis://127.0.0.1:1", clock, RedisLimiterConfig::default()).is_err());
    }
}
