//! The limiter contract (`tollgate_core::limits::contract`) on the real Redis at
//! `127.0.0.1:6379` (`TOLLGATE_TEST_REDIS_URL` overrides), plus what only a remote limiter has:
//! two nodes sharing one limit, timeouts on an unreachable or silent Redis, and the failure
//! policy. Every test uses its own UUID key namespace, so tests run in parallel on one Redis.

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

mod common;

use common::{DropKeys, redis_url};
use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use tokio::time::Instant;
use tollgate_core::limits::contract::Fixture;
use tollgate_core::limits::{FailurePolicy, PolicyRateLimiter};
use tollgate_redis::{RedisLimiterConfig, RedisRateLimiter};
use tollgate_types::ports::{LimitError, LimitKind, ManualClock, RateLimiter, Reservation};

/// Generous enough for a loaded CI machine; the unreachable tests use the 50 ms default.
fn test_config() -> RedisLimiterConfig {
    RedisLimiterConfig { timeout: Duration::from_secs(2), ..RedisLimiterConfig::default() }
}

fn node(clock: Arc<ManualClock>) -> RedisRateLimiter {
    RedisRateLimiter::new(&redis_url(), clock, test_config()).unwrap()
}

async fn redis_fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let prefix = format!("tg:test:{}", uuid::Uuid::now_v7());
    let cfg = RedisLimiterConfig { prefix: prefix.clone(), ..test_config() };
    let limiter = RedisRateLimiter::new(&redis_url(), clock.clone(), cfg).unwrap();
    limiter.load_functions().await.unwrap();
    Fixture { limiter: Arc::new(limiter), clock, guard: Box::new(DropKeys(prefix)) }
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

/// Budgets across two nodes: 50 concurrent worst-case reservations never overshoot the cap, and
/// settling the real costs gives the difference back to both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_overshoot_one_budget() {
    use tollgate_types::ports::{Adjustment, BudgetPeriod};
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let (a, b): (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) =
        (Arc::new(node(clock.clone())), Arc::new(node(clock)));
    let budget = Reservation {
        key: format!("{}:proj", ns()).into(),
        kind: LimitKind::Calendar { period: BudgetPeriod::Month },
        limit: 1_000_000_000,
        amount: 75_000_000,
        name: "project monthly budget".into(),
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        let r = budget.clone();
        set.spawn(async move { l.reserve(&[r]).await });
    }
    let mut admitted = 0;
    while let Some(res) = set.join_next().await {
        match res.unwrap() {
            Ok(_) => admitted += 1,
            Err(LimitError::Exceeded { name, .. }) => assert_eq!(&*name, "project monthly budget"),
            Err(e) => unreachable!("{e}"),
        }
    }
    assert_eq!(admitted, 13);
    // Each really cost 5 cents: 13 x 2.5 cents come back, enough for 4 more worst cases.
    let back = Adjustment { key: budget.key.clone(), kind: budget.kind, delta: -25_000_000 };
    a.settle(&vec![back; 13]).await.unwrap();
    for _ in 0..4 {
        b.reserve(std::slice::from_ref(&budget)).await.unwrap();
    }
    assert!(a.reserve(std::slice::from_ref(&budget)).await.is_err());
}

/// The library is loaded again when Redis forgot it (restart, `FUNCTION FLUSH`).
#[tokio::test]
async fn functions_are_loaded_on_demand() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let l = node(clock);
    // Other tests running now recover the same way, so deleting the library is safe here.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: redis::Value = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg(tollgate_redis::LIBRARY_NAME)
        .query_async(&mut c)
        .await
        .unwrap();
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
            key: format!("{n}:b").into(),
            kind: LimitKind::Calendar { period: tollgate_types::ports::BudgetPeriod::Month },
            limit: 100,
            amount: 1,
            name: "budget".into(),
        },
        Reservation {
            key: format!("{n}:s").into(),
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

/// A private `redis-server` on a free port, shut down when dropped.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        let status = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "yes", "--dir"])
            .arg(dir)
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            .status()
            .unwrap();
        assert!(status.success());
        Self { port, dir: dir.to_owned() }
    }

    fn stop(&self) {
        let _ = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Redis restarts (and forgets its functions and counters): calls fail fast while it is down,
/// and the same limiter works again once it is back, reloading the functions.
#[tokio::test]
async fn limiter_recovers_after_a_redis_restart() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("tollgate-redis-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = PrivateRedis::start(port, &dir);
    let url = format!("redis://127.0.0.1:{port}");
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
    let cfg = RedisLimiterConfig { timeout: Duration::from_millis(200), ..RedisLimiterConfig::default() };
    let limiter = RedisRateLimiter::new(&url, clock, cfg).unwrap();
    let r = [rpm("k", 100)];
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.reserve(&r).await.is_err() {
        assert!(Instant::now() < deadline, "private redis did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    server.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    assert!(matches!(limiter.reserve(&r).await, Err(LimitError::Unavailable(_))));
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());

    let _again = PrivateRedis::start(port, &dir);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match limiter.reserve(&r).await {
            Ok(a) => {
                assert_eq!(a.limits[0].remaining, 99, "a fresh Redis has fresh counters");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "limiter did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
