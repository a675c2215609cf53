//! Batching on the real Redis at `127.0.0.1:6379` (`TOLLGATE_TEST_REDIS_URL` overrides): many
//! concurrent callers of one limiter share `tollgate_reserve_v3` calls and still get exact
//! limits, a refused request inside a batch charges nothing, merged settles end where unmerged
//! ones do, and reservations admitted for callers that gave up are given back. A small TCP proxy
//! in front of Redis delays its replies and counts the reserve calls, so slow round trips and
//! batches are real, not simulated. Every test uses its own UUID key prefix.

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

mod common;

use common::{DropKeys, redis_url};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use time::macros::datetime;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tollgate_redis::{RedisLimiterConfig, RedisRateLimiter};
use tollgate_types::ports::{
    Adjustment, BudgetPeriod, Clock as _, LimitError, LimitKind, ManualClock, RateLimiter, Reservation,
};

const HOUR: Duration = Duration::from_secs(3600);

/// One test's key prefix and clock; deletes every key under the prefix when dropped.
struct Ns {
    prefix: String,
    clock: Arc<ManualClock>,
    _keys: DropKeys,
}

impl Ns {
    fn new() -> Self {
        let prefix = format!("tg:test:{}", uuid::Uuid::now_v7());
        Self {
            _keys: DropKeys(prefix.clone()),
            prefix,
            clock: Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC))),
        }
    }

    fn limiter_at(&self, url: &str, timeout: Duration) -> RedisRateLimiter {
        let cfg =
            RedisLimiterConfig { timeout, prefix: self.prefix.clone(), ..RedisLimiterConfig::default() };
        RedisRateLimiter::new(url, self.clock.clone(), cfg).unwrap()
    }

    /// A limiter straight on Redis, with a timeout generous enough for a loaded CI machine.
    async fn limiter(&self) -> RedisRateLimiter {
        let l = self.limiter_at(&redis_url(), Duration::from_secs(2));
        l.load_functions().await.unwrap();
        l
    }

    /// The Redis key of a counter (as `RedisRateLimiter` names them).
    fn key(&self, r: &Reservation) -> String {
        match r.kind {
            LimitKind::Window { period } => format!("{}:{}:w:{}", self.prefix, r.key, period.as_millis()),
            LimitKind::Calendar { period } => {
                format!(
                    "{}:{}:c:{}:{}",
                    self.prefix,
                    r.key,
                    period.as_str(),
                    period.label(self.clock.now_utc())
                )
            }
            LimitKind::Concurrency => format!("{}:{}:q", self.prefix, r.key),
        }
    }
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

fn window(key: &str, limit: u64, amount: u64) -> Reservation {
    Reservation {
        key: key.into(),
        kind: LimitKind::Window { period: HOUR },
        limit,
        amount,
        name: "window".into(),
    }
}

fn budget(key: &str, limit: u64, amount: u64) -> Reservation {
    Reservation {
        key: key.into(),
        kind: LimitKind::Calendar { period: BudgetPeriod::Month },
        limit,
        amount,
        name: "budget".into(),
    }
}

fn slot(key: &str, limit: u64) -> Reservation {
    Reservation { key: key.into(), kind: LimitKind::Concurrency, limit, amount: 1, name: "slots".into() }
}

fn adj(r: &Reservation, delta: i64) -> Adjustment {
    Adjustment { key: r.key.clone(), kind: r.kind, delta }
}

/// What a counter holds in Redis now: a window's stored level, a budget's spend, a zset's slots.
async fn level(c: &mut redis::aio::MultiplexedConnection, ns: &Ns, r: &Reservation) -> f64 {
    let key = ns.key(r);
    match r.kind {
        LimitKind::Window { .. } => {
            let l: Option<String> = redis::cmd("HGET").arg(&key).arg("l").query_async(c).await.unwrap();
            l.map_or(0.0, |l| l.parse().unwrap())
        }
        LimitKind::Calendar { .. } => {
            let v: Option<String> = redis::cmd("GET").arg(&key).query_async(c).await.unwrap();
            v.map_or(0.0, |v| v.parse().unwrap())
        }
        LimitKind::Concurrency => redis::cmd("ZCARD").arg(&key).query_async::<f64>(c).await.unwrap(),
    }
}

/// Runs `n` reserves of `reqs` at once through one limiter; returns how many were admitted.
async fn race(limiter: &Arc<RedisRateLimiter>, n: usize, reqs: Vec<Reservation>) -> usize {
    let limiter: Arc<dyn RateLimiter> = limiter.clone();
    tollgate_core::limits::contract::race(&limiter, n, reqs).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_reserves_admit_exactly_the_limit() {
    let ns = Ns::new();
    let l = Arc::new(ns.limiter().await);
    assert_eq!(race(&l, 200, vec![window("w", 50, 1), window("other", 1_000, 1)]).await, 50);
    assert_eq!(race(&l, 200, vec![window("rpm", 1_000, 1), budget("b", 1_000, 20)]).await, 50);
    assert_eq!(race(&l, 200, vec![slot("s", 50)]).await, 50);
    // Exactly the admitted amounts were charged, nothing for the 150 refused each time.
    let mut c = redis().await;
    assert_eq!(level(&mut c, &ns, &budget("b", 0, 0)).await, 1_000.0);
    assert_eq!(level(&mut c, &ns, &slot("s", 0)).await, 50.0);
    let rpm = level(&mut c, &ns, &window("rpm", 0, 0)).await;
    assert!((49.0..=50.0).contains(&rpm), "{rpm}"); // drained a little since
}

/// A TCP proxy in front of Redis: replies are held back by `delay_ms` (each as long, from when
/// it arrived), and the `tollgate_reserve_v3` calls sent through it are counted.
struct SlowProxy {
    url: String,
    delay_ms: Arc<AtomicU64>,
    reserve_calls: Arc<AtomicUsize>,
    _tasks: JoinSet<()>,
}

impl SlowProxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let upstream = redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let (delay_ms, reserve_calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = JoinSet::new();
        let (delay, calls) = (delay_ms.clone(), reserve_calls.clone());
        tasks.spawn(async move {
            // Dropped with the accept loop, which ends every connection.
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let calls = calls.clone();
                conns.spawn(async move {
                    const NEEDLE: &[u8] = b"tollgate_reserve_v3";
                    let mut buf = vec![0; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        tail.extend_from_slice(&buf[..n]);
                        calls.fetch_add(
                            tail.windows(NEEDLE.len()).filter(|w| *w == NEEDLE).count(),
                            Ordering::SeqCst,
                        );
                        let keep = tail.len().min(NEEDLE.len() - 1);
                        tail.drain(..tail.len() - keep);
                    }
                });
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                let delay = delay.clone();
                conns.spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        let due = Instant::now() + Duration::from_millis(delay.load(Ordering::SeqCst));
                        if n == 0 || tx.send((due, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
                conns.spawn(async move {
                    while let Some((due, bytes)) = rx.recv().await {
                        tokio::time::sleep_until(due).await;
                        if cw.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { url, delay_ms, reserve_calls, _tasks: tasks }
    }

    fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    fn reserve_calls(&self) -> usize {
        self.reserve_calls.load(Ordering::SeqCst)
    }
}

/// Retries a first reserve until the connection through the proxy is up.
async fn warm_up(l: &RedisRateLimiter) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = l.reserve(&[window("warm-up", 1_000_000, 1)]).await {
        assert!(Instant::now() < deadline, "no connection through the proxy: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests queued while calls are in flight go out together, one call for all of them, and
/// each caller gets its own statuses back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_queued_meanwhile_share_one_call() {
    let ns = Ns::new();
    ns.limiter().await; // loads the functions
    let proxy = SlowProxy::start().await;
    let l = Arc::new(ns.limiter_at(&proxy.url, Duration::from_secs(5)));
    warm_up(&l).await;
    proxy.delay(300);
    let before = proxy.reserve_calls();
    let admitted: Vec<u64> = {
        let mut set = JoinSet::new();
        for _ in 0..64 {
            let l = l.clone();
            set.spawn(async move { l.reserve(&[window("rpm", 100, 1), slot("s", 1_000)]).await });
        }
        let mut remaining = Vec::new();
        while let Some(res) = set.join_next().await {
            remaining.push(res.unwrap().unwrap().limits[0].remaining);
        }
        remaining.sort_unstable();
        remaining
    };
    // Each caller saw its own place in the window: 99 down to 36, each once.
    assert_eq!(admitted, (36..=99).collect::<Vec<_>>());
    let calls = proxy.reserve_calls() - before;
    assert!(calls <= 16, "64 concurrent requests took {calls} reserve calls");
}

/// In one call, a refused request charges nothing while the requests before and after it are
/// charged, each seeing what the earlier ones took.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_request_in_a_batch_charges_nothing() {
    let ns = Ns::new();
    ns.limiter().await;
    let proxy = SlowProxy::start().await;
    let l = Arc::new(ns.limiter_at(&proxy.url, Duration::from_secs(5)));
    warm_up(&l).await;
    proxy.delay(300);
    // Four slow calls occupy every place in flight, so the three requests below queue up
    // (in this order: one task polls them in turn) and leave in one call.
    let mut blockers = JoinSet::new();
    let base = proxy.reserve_calls();
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0..4 {
        let l2 = l.clone();
        blockers.spawn(async move { l2.reserve(&[window(&format!("blocker{i}"), 10, 1)]).await });
        // One at a time, so each is a call of its own.
        while proxy.reserve_calls() < base + i + 1 {
            assert!(Instant::now() < deadline, "the blocking calls were not sent");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let (w, b) = (window("tpm", 5, 3), budget("b", 100, 10));
    let (r1, r2, r3) = ([w.clone(), b.clone()], [b.clone(), w.clone()], [window("tpm", 5, 2), b.clone()]);
    let (first, refused, third) = tokio::join!(l.reserve(&r1), l.reserve(&r2), l.reserve(&r3));
    assert_eq!(proxy.reserve_calls(), base + 5, "the three requests did not share one call");
    while let Some(r) = blockers.join_next().await {
        r.unwrap().unwrap();
    }
    let first = first.unwrap();
    assert_eq!((first.limits[0].remaining, first.limits[1].remaining), (2, 90));
    match refused {
        Err(LimitError::Exceeded { name, retry_after, .. }) => {
            assert_eq!(&*name, "window");
            assert!(retry_after.is_some());
        }
        other => unreachable!("expected a refusal: {other:?}"),
    }
    let third = third.unwrap();
    assert_eq!((third.limits[0].remaining, third.limits[1].remaining), (0, 80));
    let mut c = redis().await;
    assert_eq!(level(&mut c, &ns, &b).await, 20.0);
    let tpm = level(&mut c, &ns, &w).await;
    assert!((4.99..=5.0).contains(&tpm), "{tpm}");
}

/// `tollgate_reserve_v3` itself, called by hand: order, all-or-nothing per request, a key twice
/// in one request, unique slot members across requests, one save per key.
#[tokio::test]
async fn reserve_v3_decides_each_request_in_order() {
    let ns = Ns::new();
    ns.limiter().await;
    let mut c = redis().await;
    let (w, b, q) = (window("w", 5, 0), budget("b", 100, 0), slot("q", 2));
    let keys = [ns.key(&w), ns.key(&b), ns.key(&q)];
    let h = 3_600_000_000_i64; // the window's period, µs
    // Per counter (KEYS entry): kind, param.
    let counters = pack_counters(&[(b'w', h), (b'c', 3600), (b'q', 600_000_000)]);
    // Per reservation: key index, limit, amount.
    let requests: &[&[(i32, i64, i64)]] = &[
        &[(1, 5, 3), (2, 100, 10)],
        &[(2, 100, 10), (1, 5, 3)],         // the window is full: refused
        &[(1, 5, 1), (1, 5, 1), (3, 2, 1)], // the window counts twice
        &[(3, 2, 2)],                       // one slot left of two: refused
        &[(3, 2, 1), (2, 100, 80)],
    ];
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("tollgate_reserve_v3").arg(3).arg(&keys).arg("tok").arg(&counters).arg(pack_requests(requests));
    // Another test (functions_are_loaded_on_demand) may delete the library meanwhile.
    let reply: Vec<i64> = match cmd.query_async(&mut c).await {
        Err(e) if e.to_string().contains("Function not found") => {
            ns.limiter().await;
            cmd.query_async(&mut c).await.unwrap()
        }
        other => other.unwrap(),
    };
    #[rustfmt::skip]
    assert_eq!(reply, vec![
        1, 2, 3 * h / 5, 90, 3_600_000_000,
        0, 2, h / 5,
        1, 1, 4 * h / 5, 0, h, 1, -1,
        0, 1, 1_000_000,
        1, 0, -1, 10, 3_600_000_000,
    ]);
    assert_eq!(level(&mut c, &ns, &w).await, 5.0);
    assert_eq!(level(&mut c, &ns, &b).await, 90.0);
    let members: Vec<String> =
        redis::cmd("ZRANGE").arg(&keys[2]).arg(0).arg(-1).query_async(&mut c).await.unwrap();
    assert_eq!(members, vec!["tok:1", "tok:2"]);
    let ttl: i64 = redis::cmd("TTL").arg(&keys[1]).query_async(&mut c).await.unwrap();
    assert!((3600 + 86_400 - 5..=3600 + 86_400).contains(&ttl), "{ttl}");
    let pttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut c).await.unwrap();
    assert!((3_600_000..=3_601_000).contains(&pttl), "{pttl}");
}

fn pack_counters(counters: &[(u8, i64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(kind, param) in counters {
        out.push(kind);
        out.extend_from_slice(&param.to_le_bytes());
    }
    out
}

fn pack_requests(requests: &[&[(i32, i64, i64)]]) -> Vec<u8> {
    let mut out = Vec::new();
    for req in requests {
        out.extend_from_slice(&i32::try_from(req.len()).unwrap().to_le_bytes());
        for &(at, limit, amount) in *req {
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&limit.to_le_bytes());
            out.extend_from_slice(&amount.to_le_bytes());
        }
    }
    out
}

/// Malformed binary arguments are an error reply, never a partial charge.
#[tokio::test]
async fn reserve_v3_refuses_malformed_arguments() {
    let ns = Ns::new();
    ns.limiter().await;
    let mut c = redis().await;
    let w = window("w", 5, 0);
    let keys = [ns.key(&w)];
    let good_counters = pack_counters(&[(b'w', 3_600_000_000)]);
    let good = pack_requests(&[&[(1, 5, 1)]]);
    let cases: [(Vec<u8>, Vec<u8>); 4] = [
        (pack_counters(&[(b'x', 1)]), good.clone()), // unknown kind
        (good_counters.clone(), good[..good.len() - 3].to_vec()), // cut short
        (good_counters.clone(), pack_requests(&[&[(2, 5, 1)]])), // no such key
        (good_counters[..4].to_vec(), good.clone()), // counters cut short
    ];
    for (counters, requests) in cases {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("tollgate_reserve_v3").arg(1).arg(&keys).arg("tok").arg(counters).arg(requests);
        let reply: redis::RedisResult<Vec<i64>> = cmd.query_async(&mut c).await;
        assert!(reply.is_err(), "{reply:?}");
    }
    assert_eq!(level(&mut c, &ns, &w).await, 0.0, "nothing was charged");
}

/// One settle with repeated counters (merged before sending) ends where settling the same
/// adjustments one call at a time ends.
#[tokio::test]
async fn merged_settle_ends_where_unmerged_does() {
    let ns = Ns::new();
    let l = ns.limiter().await;
    let mut c = redis().await;
    let setup = |p: &str| {
        (
            window(&format!("{p}:tpm"), 1_000, 800),
            budget(&format!("{p}:b"), 1_000, 900),
            slot(&format!("{p}:s"), 5),
        )
    };
    let adjustments = |(w, b, s): &(Reservation, Reservation, Reservation)| {
        vec![
            adj(w, -300),
            adj(b, -500),
            adj(s, -1),
            adj(w, 100),
            adj(s, -1),
            adj(b, 50),
            adj(w, -200),
            adj(s, 1),
        ]
    };
    let (merged, unmerged) = (setup("merged"), setup("unmerged"));
    for (w, b, s) in [&merged, &unmerged] {
        l.reserve(&[w.clone(), b.clone(), s.clone(), s.clone(), s.clone()]).await.unwrap();
    }
    l.settle(&adjustments(&merged)).await.unwrap();
    for a in adjustments(&unmerged) {
        l.settle(std::slice::from_ref(&a)).await.unwrap();
    }
    for (m, u) in [(&merged.0, &unmerged.0), (&merged.1, &unmerged.1), (&merged.2, &unmerged.2)] {
        let (m, u) = (level(&mut c, &ns, m).await, level(&mut c, &ns, u).await);
        assert!((m - u).abs() < 0.01, "merged {m} vs unmerged {u}");
    }
    assert_eq!(level(&mut c, &ns, &merged.1).await, 450.0);
    assert_eq!(level(&mut c, &ns, &merged.2).await, 2.0);
}

/// Waits until every counter of `reqs` is back to zero in Redis (what was admitted was given
/// back), failing after a few seconds.
async fn assert_given_back(ns: &Ns, reqs: &[Reservation]) {
    let mut c = redis().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut held = Vec::new();
        for r in reqs {
            held.push(level(&mut c, ns, r).await);
        }
        if held.iter().all(|&h| h < 1e-6) {
            return;
        }
        assert!(Instant::now() < deadline, "still held after the caller gave up: {held:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts Redis admitted `reqs` (so a later zero is a release, not a request never sent).
async fn assert_held(ns: &Ns, reqs: &[Reservation]) {
    let mut c = redis().await;
    for r in reqs {
        let held = level(&mut c, ns, r).await;
        assert!(held >= 1.0, "{} was not charged: {held}", r.key);
    }
}

fn abandoned_request() -> Vec<Reservation> {
    vec![slot("s", 1), window("tpm", 1_000, 400), budget("b", 1_000, 700)]
}

/// The caller times out while Redis is slow; Redis admits its request anyway, and the worker,
/// still waiting for the late answer, gives the reservations back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timed_out_callers_admitted_reservations_are_given_back() {
    let ns = Ns::new();
    let direct = ns.limiter().await;
    let proxy = SlowProxy::start().await;
    let l = ns.limiter_at(&proxy.url, Duration::from_millis(50));
    warm_up(&l).await;
    proxy.delay(400);
    let reqs = abandoned_request();
    let res = l.reserve(&reqs).await;
    assert!(matches!(res, Err(LimitError::Unavailable(_))), "{res:?}");
    assert_held(&ns, &reqs).await;
    assert_given_back(&ns, &reqs).await;
    direct.reserve(&reqs).await.unwrap(); // the slot and the budget are free again
}

/// The same when the caller's future is dropped (the client went away) while waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_callers_admitted_reservations_are_given_back() {
    let ns = Ns::new();
    ns.limiter().await;
    let proxy = SlowProxy::start().await;
    let l = ns.limiter_at(&proxy.url, Duration::from_secs(2));
    warm_up(&l).await;
    proxy.delay(400);
    let reqs = abandoned_request();
    assert!(tokio::time::timeout(Duration::from_millis(50), l.reserve(&reqs)).await.is_err());
    assert_held(&ns, &reqs).await;
    assert_given_back(&ns, &reqs).await;
}

/// A caller dropped after the worker sent its answer but before reading it: the answer it left
/// unread is handed back for release.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_left_unread_is_given_back() {
    let ns = Ns::new();
    let l = ns.limiter().await;
    let reqs = abandoned_request();
    let mut pending = l.reserve(&reqs);
    assert!(futures::poll!(&mut pending).is_pending()); // queued; not polled again
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = redis().await;
    while level(&mut c, &ns, &reqs[0]).await < 1.0 {
        assert!(Instant::now() < deadline, "the request was never admitted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // the answer reaches the caller's channel
    drop(pending);
    assert_given_back(&ns, &reqs).await;
    l.reserve(&reqs).await.unwrap();
}

/// During a rolling deploy nodes of earlier versions call `tollgate_reserve_v1` or `_v2`
/// (`tests/fixtures/`, the libraries as they shipped) on the same keys: every version reads what
/// the others wrote.
#[tokio::test]
async fn nodes_of_earlier_versions_share_one_limit() {
    for old in [1, 2] {
        let ns = Ns::new();
        let l = ns.limiter().await;
        let mut c = redis().await;
        let library = if old == 1 {
            include_str!("fixtures/limiter_v1.lua")
        } else {
            include_str!("fixtures/limiter_v2.lua")
        };
        let _: String =
            redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(library).query_async(&mut c).await.unwrap();
        let (b, s) = (budget("b", 100, 30), slot("s", 3));
        let reqs = [window("w", 4, 1), b.clone(), s.clone()];
        l.reserve(&reqs).await.unwrap();
        // The old node takes the same three counters once more. v1: token, then (kind, limit,
        // amount, param) per reservation; v2: token, one request of three, each with its key
        // index first. Both reply 1, then (remaining, reset) pairs (v1 with an extra value first).
        let keys: Vec<String> = reqs.iter().map(|r| ns.key(r)).collect();
        let mut cmd = redis::cmd("FCALL");
        let remaining_at = if old == 1 {
            cmd.arg("tollgate_reserve_v1").arg(3).arg(&keys).arg("old-node");
            cmd.arg(&["w", "4", "1", "3600000000"]).arg(&["c", "100", "30", "3600"]);
            cmd.arg(&["q", "3", "1", "600000000"]);
            [3, 5, 7]
        } else {
            cmd.arg("tollgate_reserve_v2").arg(3).arg(&keys).arg("old-node").arg(3);
            cmd.arg(&["1", "w", "4", "1", "3600000000"]).arg(&["2", "c", "100", "30", "3600"]);
            cmd.arg(&["3", "q", "3", "1", "600000000"]);
            [1, 3, 5]
        };
        let reply: Vec<i64> = cmd.query_async(&mut c).await.unwrap();
        let left: Vec<i64> = remaining_at.iter().map(|&i| reply[i]).collect();
        assert_eq!((reply[0], left), (1, vec![2, 40, 1]), "v{old}: {reply:?}");
        // The new node sees both: the budget has 10 left, no slot is free, one window unit left.
        let a = l.reserve(&reqs).await.unwrap();
        let left: Vec<u64> = a.limits.iter().map(|s| s.remaining).collect();
        assert_eq!(left, vec![1, 10, 0], "v{old}");
        assert!(matches!(l.reserve(std::slice::from_ref(&s)).await, Err(LimitError::Exceeded { .. })));
        l.settle(&[adj(&s, -3), adj(&b, -90)]).await.unwrap();
        assert_eq!(level(&mut c, &ns, &s).await, 0.0);
        assert_eq!(level(&mut c, &ns, &b).await, 0.0);
    }
}
