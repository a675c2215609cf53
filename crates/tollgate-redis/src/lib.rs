//! The Redis [`RateLimiter`]: every gateway node talking to one Redis enforces one shared limit.
//!
//! - One atomic Lua **function** per operation, `tollgate_reserve_v1` and `tollgate_settle_v1`
//!   (library `tollgate_limiter_v1`, `src/limiter.lua`), checks and charges every key of a
//!   request at once. Functions rather than `EVALSHA` scripts because the style guide asks for
//!   named, versioned functions: a `_v2` library can sit next to `_v1` during a rolling deploy,
//!   and `FUNCTION LIST` shows what is loaded. The library is loaded on first use and again
//!   whenever Redis answers "Function not found" (a restarted or flushed Redis).
//! - Windows and slot expiry use the Redis server clock (`TIME`), so nodes with skewed clocks
//!   still agree; calendar budgets take the period from the injected [`Clock`] and put its label
//!   in the key (`…:c:month:2026-11`).
//! - Every key has a TTL (a drained bucket, a past period, expired slots), except `total`
//!   budgets, which by definition never end.
//! - Every call is bounded by a short timeout (default 50 ms) and the connection is made lazily,
//!   so an unreachable Redis is an [`LimitError::Unavailable`] quickly, never a hang; wrap the
//!   limiter in `tollgate_core::limits::PolicyRateLimiter` to fail open or closed.
//! - All keys of one call must live on one node: this is for a single Redis (or a primary with
//!   replicas), not Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tollgate_types::ports::{
    Adjustment, Admission, Clock, LimitError, LimitKind, LimitStatus, RateLimiter, Reservation,
};

/// The Lua library (both functions).
pub const LIBRARY: &str = include_str!("limiter.lua");
const RESERVE_FN: &str = "tollgate_reserve_v1";
const SETTLE_FN: &str = "tollgate_settle_v1";

/// Settings of a [`RedisRateLimiter`].
#[derive(Debug, Clone)]
pub struct RedisLimiterConfig {
    /// Upper bound on every call (connecting included). Default 50 ms.
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

/// Rate limits and budgets in Redis.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    clock: Arc<dyn Clock>,
    cfg: RedisLimiterConfig,
}

/// The reply of `tollgate_reserve_v1`, mirrored from `src/limiter.lua`; keep both in step:
/// admitted `{1, 0, 0, remaining_1, reset_us_1, …}`, refused `{0, index (1-based),
/// retry_after_us}`; `-1` stands for "none" in the time fields.
#[derive(Debug, PartialEq, Eq)]
struct ReserveReplyV1 {
    admitted: bool,
    /// 0-based index of the first limit hit (refused only).
    failed: usize,
    retry_after_us: i64,
    /// `(remaining, reset_us)` per reservation (admitted only).
    statuses: Vec<(i64, i64)>,
}

impl ReserveReplyV1 {
    fn parse(v: &[i64], expected: usize) -> Result<Self, LimitError> {
        let bad = || LimitError::Unavailable(format!("unexpected reply from {RESERVE_FN}: {v:?}"));
        match v {
            [1, 0, 0, rest @ ..] if rest.len() == expected * 2 => Ok(Self {
                admitted: true,
                failed: 0,
                retry_after_us: 0,
                statuses: rest.chunks_exact(2).map(|c| (c[0], c[1])).collect(),
            }),
            [0, idx, retry] if *idx >= 1 && usize::try_from(*idx).is_ok_and(|i| i <= expected) => Ok(Self {
                admitted: false,
                failed: usize::try_from(*idx - 1).map_err(|_| bad())?,
                retry_after_us: *retry,
                statuses: Vec::new(),
            }),
            _ => Err(bad()),
        }
    }
}

fn opt_us(us: i64) -> Option<Duration> {
    u64::try_from(us).ok().map(Duration::from_micros)
}

impl RedisRateLimiter {
    /// A limiter on `url` (`redis://127.0.0.1:6379`). Connects lazily: never blocks, and works
    /// (with `Unavailable` errors) while Redis is down. Budgets follow `clock`. Call it inside a
    /// Tokio runtime (the connection manager runs there).
    pub fn new(url: &str, clock: Arc<dyn Clock>, cfg: RedisLimiterConfig) -> Result<Self, LimitError> {
        let client =
            redis::Client::open(url).map_err(|e| LimitError::Unavailable(format!("redis url: {e}")))?;
        let mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(cfg.timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, mc).map_err(unavailable)?;
        Ok(Self { conn, clock, cfg })
    }

    /// Loads (or replaces) the Lua library now, e.g. at start-up; calls load it on demand too.
    pub async fn load_functions(&self) -> Result<(), LimitError> {
        self.bounded(async {
            let mut conn = self.conn.clone();
            redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(LIBRARY)
                .query_async::<String>(&mut conn)
                .await
                .map(drop)
        })
        .await
    }

    async fn bounded<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, LimitError> {
        match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => {
                Err(LimitError::Unavailable(format!("redis did not answer within {:?}", self.cfg.timeout)))
            }
        }
    }

    /// FCALL of `cmd` (built by [`fcall_cmd`]), loading the library once if Redis does not know
    /// the function.
    async fn fcall(&self, cmd: redis::Cmd) -> Result<redis::Value, LimitError> {
        let call = || {
            let mut conn = self.conn.clone();
            let cmd = cmd.clone();
            async move { cmd.query_async::<redis::Value>(&mut conn).await }
        };
        let first = tokio::time::timeout(self.cfg.timeout, call()).await;
        match first {
            Ok(Err(e)) if e.to_string().contains("Function not found") => {
                tracing::info!(
                    library = "tollgate_limiter_v1",
                    "loading the rate-limit functions into redis"
                );
                self.load_functions().await?;
                self.bounded(call()).await
            }
            Ok(r) => r.map_err(unavailable),
            Err(_) => {
                Err(LimitError::Unavailable(format!("redis did not answer within {:?}", self.cfg.timeout)))
            }
        }
    }

    /// The Redis key of a counter, and its kind's arguments (`kind`, `param`).
    fn key_of(&self, key: &str, kind: LimitKind, now: time::OffsetDateTime) -> (String, &'static str, i64) {
        let p = &self.cfg.prefix;
        match kind {
            LimitKind::Window { period } => {
                let us = i64::try_from(period.as_micros()).unwrap_or(i64::MAX);
                (format!("{p}:{key}:w:{}", period.as_millis()), "w", us)
            }
            LimitKind::Calendar { period } => {
                // Whole seconds, rounded up so a client told to wait this long finds a new period.
                let left = period
                    .end(now)
                    .map(|end| {
                        let d = end - now;
                        (d.whole_seconds() + i64::from(d.subsec_nanoseconds() > 0)).max(1)
                    })
                    .unwrap_or(-1);
                (format!("{p}:{key}:c:{}:{}", period.as_str(), period.label(now)), "c", left)
            }
            LimitKind::Concurrency => {
                let us = i64::try_from(self.cfg.max_hold.as_micros()).unwrap_or(i64::MAX);
                (format!("{p}:{key}:q"), "q", us)
            }
        }
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

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn reserve(&self, reqs: &[Reservation]) -> Result<Admission, LimitError> {
        if reqs.is_empty() {
            return Ok(Admission::default());
        }
        let now = self.clock.now_utc();
        let mut cmd = fcall_cmd(RESERVE_FN, reqs.len());
        let mut params = Vec::with_capacity(reqs.len());
        for r in reqs {
            let (key, kind, param) = self.key_of(&r.key, r.kind, now);
            cmd.arg(key);
            params.push((kind, r.limit, r.amount, param));
        }
        cmd.arg(uuid::Uuid::now_v7().simple().to_string());
        for (kind, limit, amount, param) in params {
            cmd.arg(kind).arg(limit).arg(amount).arg(param);
        }
        let raw = self.fcall(cmd).await?;
        let ints: Vec<i64> =
            redis::from_redis_value(raw).map_err(|e| LimitError::Unavailable(e.to_string()))?;
        let reply = ReserveReplyV1::parse(&ints, reqs.len())?;
        if !reply.admitted {
            let r = &reqs[reply.failed];
            return Err(LimitError::Exceeded {
                name: r.name.clone(),
                limit: r.limit,
                retry_after: opt_us(reply.retry_after_us),
            });
        }
        let limits = reqs
            .iter()
            .zip(reply.statuses)
            .map(|(r, (remaining, reset_us))| LimitStatus {
                name: r.name.clone(),
                limit: r.limit,
                remaining: u64::try_from(remaining).unwrap_or(0),
                reset_after: opt_us(reset_us),
            })
            .collect();
        Ok(Admission { limits, degraded: false })
    }

    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), LimitError> {
        let adjustments: Vec<&Adjustment> = adjustments.iter().filter(|a| a.delta != 0).collect();
        if adjustments.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_utc();
        let mut cmd = fcall_cmd(SETTLE_FN, adjustments.len());
        let mut params = Vec::with_capacity(adjustments.len());
        for a in &adjustments {
            let (key, kind, param) = self.key_of(&a.key, a.kind, now);
            cmd.arg(key);
            params.push((kind, a.delta, param));
        }
        cmd.arg(uuid::Uuid::now_v7().simple().to_string());
        for (kind, delta, param) in params {
            cmd.arg(kind).arg(delta).arg(param);
        }
        self.fcall(cmd).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use tollgate_types::ports::BudgetPeriod;

    use super::*;

    #[test]
    fn reply_shapes_parse() {
        assert_eq!(
            ReserveReplyV1::parse(&[1, 0, 0, 2, 20, 5, -1], 2).unwrap(),
            ReserveReplyV1 { admitted: true, failed: 0, retry_after_us: 0, statuses: vec![(2, 20), (5, -1)] }
        );
        assert_eq!(
            ReserveReplyV1::parse(&[0, 2, -1], 2).unwrap(),
            ReserveReplyV1 { admitted: false, failed: 1, retry_after_us: -1, statuses: vec![] }
        );
        assert!(ReserveReplyV1::parse(&[0, 3, 5], 2).is_err());
        assert!(ReserveReplyV1::parse(&[1, 0, 0, 2], 2).is_err());
        assert!(ReserveReplyV1::parse(&[], 2).is_err());
    }

    #[tokio::test]
    async fn keys_carry_kind_and_period_label() {
        let clock =
            Arc::new(tollgate_types::ports::ManualClock::new(time::macros::datetime!(2026-11-21 12:00 UTC)));
        let l = RedisRateLimiter::new("redis://127.0.0.1:1", clock, RedisLimiterConfig::default()).unwrap();
        let now = time::macros::datetime!(2026-11-21 12:00 UTC);
        let (k, kind, left) = l.key_of("p:1", LimitKind::Calendar { period: BudgetPeriod::Month }, now);
        assert_eq!((k.as_str(), kind, left), ("tg:lim:p:1:c:month:2026-11", "c", 9 * 86_400 + 12 * 3600));
        let (k, _, left) = l.key_of("p:1", LimitKind::Calendar { period: BudgetPeriod::Total }, now);
        assert_eq!((k.as_str(), left), ("tg:lim:p:1:c:total:total", -1));
        let (k, kind, us) = l.key_of("k", LimitKind::Window { period: Duration::from_secs(60) }, now);
        assert_eq!((k.as_str(), kind, us), ("tg:lim:k:w:60000", "w", 60_000_000));
    }
}
