//! The limiter contract (`tollgate_core::limits::contract`) on the real Redis at
//! `127.0.0.1:6379` (`TOLLGATE_TEST_REDIS_URL` overrides), plus what only a remote limiter has:
//! two nodes sharing one limit, timeouts on an unreachable or silent Redis, and the failure
//! policy. Every test uses its own UUID key namespace, so tests run in parallel on one Redis.

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use tokio::time::Instant;
use tollgate_core::limits::contract::Fixture;
use tollgate_core::limits::{FailurePolicy, PolicyRateLimiter};
use tollgate_redis::{RedisLimiterConfig, RedisRateLimiter};
use tollgate_types::ports::{LimitError, LimitKind, ManualClock, RateLimiter, Reservation};

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Generous enough for a loaded CI machine; the unreachable tests use the 50 ms default.
fn test_config() -> RedisLimiterConfig {
    RedisLimiterConfig { timeout: Duration::from_secs(2), ..RedisLimiterConfig::default() }
}

fn node(clock: Arc<ManualClock>) -> RedisRateLimiter {
    RedisRateLimiter::new(&redis_url(), clock, test_config()).unwrap()
}

async fn redis_fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let limiter = node(clock.clone());
    limiter.load_functions().await.unwrap();
    Fixture { limiter: Arc::new(limiter), clock, guard: Box::new(()) }
}

tollgate_core::limiter_contract!(redis_fixture());

fn rpm(key: &str, limit: u64) -> Reservation {
    Reservation {
        key: key.into(),
        kind: LimitKind::Window { period: Duration::from_secs(3600) },
        limit,
        amount: 1,
        name: "key requests per minute".into(),
    }
}

fn ns() -> String {
    format!("test:{}", uuid::Uuid::now_v7())
}

/// Two limiters with their own connection managers (two gateway nodes) enforce one limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_enforce_one_shared_limit() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let (a, b): (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) =
        (Arc::new(node(clock.clone())), Arc::new(node(clock)));
    let r = vec![rpm(&format!("{}:shared", ns()), 30)];
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        let r = r.clone();
        set.spawn(async move { l.reserve(&r).await });
    }
    let mut admitted = 0;
    while let Some(res) = set.join_next().await {
        match res.unwrap() {
            Ok(_) => admitted += 1,
            Err(LimitError::Exceeded { .. }) => {}
            Err(e) => unreachable!("{e}"),
        }
    }
    assert_eq!(admitted, 30);
}

/// The library is loaded again when Redis forgot it (restart, `FUNCTION FLUSH`).
#[tokio::test]
async fn functions_are_loaded_on_demand() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let l = node(clock);
    // Other tests running now recover the same way, so deleting the library is safe here.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: redis::Value =
        redis::cmd("FUNCTION").arg("DELETE").arg("tollgate_limiter_v1").query_async(&mut c).await.unwrap();
    l.reserve(&[rpm(&format!("{}:a", ns()), 5)]).await.unwrap();
}

/// Nothing listens on the port: refused at once.
#[tokio::test]
async fn unreachable_redis_fails_fast_and_policy_decides() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let url = format!("redis://127.0.0.1:{port}");
    let limiter: Arc<dyn RateLimiter> =
        Arc::new(RedisRateLimiter::new(&url, clock, RedisLimiterConfig::default()).unwrap());
    let r = [rpm("k", 1)];
    let t = Instant::now();
    assert!(matches!(limiter.reserve(&r).await, Err(LimitError::Unavailable(_))));
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());

    let open = PolicyRateLimiter::new(limiter.clone(), FailurePolicy::Open);
    assert!(open.reserve(&r).await.unwrap().degraded);
    let closed = PolicyRateLimiter::new(limiter, FailurePolicy::Closed);
    assert!(matches!(closed.reserve(&r).await, Err(LimitError::Unavailable(_))));
}

/// A server that accepts connections and never answers: the 50 ms timeout ends every call.
#[tokio::test]
async fn silent_redis_times_out_within_the_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let limiter = RedisRateLimiter::new(&url, clock, RedisLimiterConfig::default()).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let res = limiter.reserve(&[rpm("k", 1)]).await;
        assert!(matches!(res, Err(LimitError::Unavailable(_))), "{res:?}");
        assert!(t.elapsed() < Duration::from_millis(250), "{:?}", t.elapsed());
        let t = Instant::now();
        assert!(limiter.settle(&[]).await.is_ok()); // nothing to send
        assert!(t.elapsed() < Duration::from_millis(50));
    }
    let policy = PolicyRateLimiter::new(Arc::new(limiter), FailurePolicy::Open);
    let t = Instant::now();
    assert!(policy.reserve(&[rpm("k", 1)]).await.unwrap().degraded);
    assert!(t.elapsed() < Duration::from_millis(250));
}

/// Keys carry TTLs: a window bucket expires once drained, a monthly budget after its month.
#[tokio::test]
async fn keys_carry_ttls() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-30 23:00 UTC)));
    let l = node(clock);
    let n = ns();
    l.reserve(&[
        rpm(&format!("{n}:w"), 10),
        Reservation {
            key: format!("{n}:b"),
            kind: LimitKind::Calendar { period: tollgate_types::ports::BudgetPeriod::Month },
            limit: 100,
            amount: 1,
            name: "budget".into(),
        },
        Reservation {
            key: format!("{n}:s"),
            kind: LimitKind::Concurrency,
            limit: 2,
            amount: 1,
            name: "slots".into(),
        },
    ])
    .await
    .unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let pttl = |key: String| {
        let mut c = c.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut c).await.unwrap() }
    };
    let w = pttl(format!("tg:lim:{n}:w:w:3600000")).await;
    assert!((360_000..=361_000).contains(&w), "{w}"); // 1 of 10 per hour drains in 6 min (+1 s)
    let b = pttl(format!("tg:lim:{n}:b:c:month:2026-11")).await;
    assert!((3_600_000 + 86_400_000 - 5_000..=3_600_000 + 86_400_000).contains(&b), "{b}");
    let s = pttl(format!("tg:lim:{n}:s:q")).await;
    assert!((600_000..=601_000).contains(&s), "{s}");
    let _ = &mut c;
}
