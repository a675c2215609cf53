//! The exact-cache contract (`tollgate_core::cache::contract`) on Redis, plus what only a shared
//! remote cache has: forged and tampered keys, corrupt values, an unreachable Redis, purges
//! across tenants on the wire.
//!
//! Most tests use the machine's Redis at `127.0.0.1:6379` (`TOLLGATE_TEST_REDIS_URL` overrides),
//! each under its own UUID key prefix, deleted when the test ends, so tests run in parallel. The
//! size-bound test needs a Redis whose `maxmemory` it controls: it starts its own `redis-server`
//! child on a free port (killed when the test ends).

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

mod common;

use common::{DropKeys, redis_url};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;
use tollgate_core::cache::contract::{Fixture, entry, key};
use tollgate_redis::{RedisCacheConfig, RedisCacheStore};
use tollgate_types::ports::{CacheError, CacheKey, CacheStore, CachedResponse, PurgeFilter};
use tollgate_types::tenancy::TenantId;

/// Generous enough for a loaded CI machine; the unreachable test uses the 100 ms default.
fn test_config(prefix: &str) -> RedisCacheConfig {
    RedisCacheConfig { prefix: prefix.into(), timeout: Duration::from_secs(2), ..RedisCacheConfig::default() }
}

fn unique_prefix() -> String {
    format!("tg:test:cache:{}", uuid::Uuid::now_v7())
}

/// A store on the machine's Redis under a fresh prefix, and the guard that cleans it up.
fn shared_store() -> (RedisCacheStore, DropKeys) {
    let prefix = unique_prefix();
    (RedisCacheStore::new(&redis_url(), test_config(&prefix)).unwrap(), DropKeys(prefix))
}

async fn shared_fixture() -> Fixture {
    let (store, guard) = shared_store();
    // Only the size test reads the bound, and it runs on `bounded_fixture`.
    Fixture { store: Arc::new(store), capacity_bytes: u64::MAX, guard: Box::new(guard) }
}

/// `maxmemory` of the dedicated server. An empty Redis 7 uses about 0.9 MB itself, so about
/// 1 MB is left for entries.
const MAXMEMORY: u64 = 2 * 1024 * 1024;

/// A `redis-server` of our own, killed when dropped.
struct OwnRedis {
    child: Child,
    url: String,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnRedis {
    /// Starts `redis-server` (on PATH) on a free port with no persistence and an LRU-bounded
    /// memory, and waits until it answers.
    async fn start(maxmemory: u64) -> Self {
        // Ask the OS for a free port, then hand it to redis-server (a small race with other
        // processes picking the same port in between; retried below).
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--maxmemory", &maxmemory.to_string(), "--maxmemory-policy", "allkeys-lru"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut own = Self { child, url: format!("redis://127.0.0.1:{port}") };
            for _ in 0..100 {
                if own.ping() {
                    return own;
                }
                if own.child.try_wait().unwrap().is_some() {
                    break; // exited: the port was taken, try another
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        unreachable!("could not start redis-server");
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return false };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else { return false };
        redis::cmd("PING").query::<String>(&mut c).is_ok()
    }
}

async fn bounded_fixture() -> Fixture {
    let own = OwnRedis::start(MAXMEMORY).await;
    let store = RedisCacheStore::new(&own.url, test_config("tg:cache")).unwrap();
    Fixture { store: Arc::new(store), capacity_bytes: MAXMEMORY, guard: Box::new(own) }
}

tollgate_core::cache_contract!(shared_fixture(), size_bound: bounded_fixture());

const MINUTE: Duration = Duration::from_secs(60);

/// A raw connection to the machine's Redis, to look at and tamper with what the store wrote.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

fn answer_of(v: &CachedResponse) -> Option<&str> {
    v.response.choices.first()?.message.content.as_deref()
}

#[tokio::test]
async fn keys_are_namespaced_by_prefix_tenant_and_digest_and_carry_the_ttl() {
    let (store, guard) = shared_store();
    let k = key(TenantId::new(), "q");
    store.put(&k, Arc::new(entry("a")), MINUTE).await.unwrap();
    let rkey = store.redis_key(&k);
    assert_eq!(rkey, format!("{}:{}:{}", guard.0, k.tenant(), k.digest_hex()));
    let mut c = raw().await;
    let pttl: i64 = redis::cmd("PTTL").arg(&rkey).query_async(&mut c).await.unwrap();
    assert!((50_000..=60_000).contains(&pttl), "PX set from the TTL: {pttl}");
}

/// A key forged with tenant A's digest under tenant B misses, and a value copied from A's key to
/// B's key (someone with Redis access, or a bug) is not served to B either.
#[tokio::test]
async fn tenant_isolation_survives_forged_keys_and_copied_values() {
    let (store, _guard) = shared_store();
    let (a, b) = (TenantId::new(), TenantId::new());
    let ka = key(a, "the same prompt");
    store.put(&ka, Arc::new(entry("A's secret answer")), MINUTE).await.unwrap();

    let forged = CacheKey::new(b, *ka.digest());
    assert_ne!(store.redis_key(&forged), store.redis_key(&ka), "the tenant is part of the Redis key");
    assert!(store.get(&forged).await.unwrap().is_none());

    let mut c = raw().await;
    let value: Vec<u8> = redis::cmd("GET").arg(store.redis_key(&ka)).query_async(&mut c).await.unwrap();
    let () = redis::cmd("SET").arg(store.redis_key(&forged)).arg(value).query_async(&mut c).await.unwrap();
    assert!(store.get(&forged).await.unwrap().is_none(), "A's value under B's key is not served");
    let left: i64 = redis::cmd("EXISTS").arg(store.redis_key(&forged)).query_async(&mut c).await.unwrap();
    assert_eq!(left, 0, "and it is deleted");
    assert_eq!(store.get(&ka).await.unwrap().as_deref().and_then(answer_of), Some("A's secret answer"));
}

#[tokio::test]
async fn a_corrupt_value_is_a_miss_and_is_deleted() {
    let (store, _guard) = shared_store();
    let t = TenantId::new();
    let mut c = raw().await;
    let good = key(t, "good");
    store.put(&good, Arc::new(entry("fine")), MINUTE).await.unwrap();
    let stored: Vec<u8> = redis::cmd("GET").arg(store.redis_key(&good)).query_async(&mut c).await.unwrap();

    let half = stored[..stored.len() / 2].to_vec();
    let mut flipped = stored.clone();
    let last = flipped.len() - 2;
    flipped[last] = b'\xff';
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"garbage".to_vec()),
        ("empty", Vec::new()),
        ("truncated", half),
        ("not utf-8 json", flipped),
    ];
    for (name, bytes) in cases {
        let k = key(t, name);
        let () = redis::cmd("SET").arg(store.redis_key(&k)).arg(bytes).query_async(&mut c).await.unwrap();
        assert!(store.get(&k).await.unwrap().is_none(), "{name} is a miss");
        let left: i64 = redis::cmd("EXISTS").arg(store.redis_key(&k)).query_async(&mut c).await.unwrap();
        assert_eq!(left, 0, "{name} is deleted");
    }
    // A key of another type under the prefix (WRONGTYPE) is an error, not a panic.
    let k = key(t, "a list");
    let _: i64 = redis::cmd("RPUSH").arg(store.redis_key(&k)).arg("x").query_async(&mut c).await.unwrap();
    assert!(matches!(store.get(&k).await, Err(CacheError::Unavailable(_))));
    assert!(store.get(&good).await.unwrap().is_some(), "good entries are untouched");
}

#[tokio::test]
async fn redis_down_is_unavailable_quickly_and_the_store_still_builds() {
    // Port 1: nothing listens. The store is built without connecting.
    let store = RedisCacheStore::new("redis://127.0.0.1:1", RedisCacheConfig::default()).unwrap();
    let k = key(TenantId::new(), "q");
    let started = Instant::now();
    assert!(matches!(store.get(&k).await, Err(CacheError::Unavailable(_))));
    assert!(matches!(store.put(&k, Arc::new(entry("a")), MINUTE).await, Err(CacheError::Unavailable(_))));
    assert!(matches!(store.purge(&PurgeFilter::tenant(k.tenant())).await, Err(CacheError::Unavailable(_))));
    assert!(matches!(store.stats().await, Err(CacheError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(2), "four calls took {:?}", started.elapsed());
}

/// A Redis that accepts the connection but never answers (a listener that never calls
/// `accept`: the kernel completes the handshake, nobody reads): each call ends at the timeout.
#[tokio::test]
async fn a_silent_redis_is_unavailable_after_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let cfg = RedisCacheConfig { timeout: Duration::from_millis(100), ..RedisCacheConfig::default() };
    let store = RedisCacheStore::new(&url, cfg).unwrap();
    let started = Instant::now();
    assert!(matches!(store.get(&key(TenantId::new(), "q")).await, Err(CacheError::Unavailable(_))));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(1), "took {took:?}");
    drop(listener);
}

/// Purges by alias and by age over many tenants and more keys than one SCAN batch: only the
/// named tenant's matching entries go, and the count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_by_alias_and_age_across_tenants() {
    let prefix = unique_prefix();
    let _guard = DropKeys(prefix.clone());
    let cfg = RedisCacheConfig { scan_count: 7, ..test_config(&prefix) };
    let store = RedisCacheStore::new(&redis_url(), cfg).unwrap();
    let tenants: Vec<TenantId> = (0..4).map(|_| TenantId::new()).collect();
    let now = OffsetDateTime::now_utc();
    let hour = 60 * MINUTE;
    let make = |alias: &str, age: Duration| CachedResponse {
        alias: alias.into(),
        created_at: now - age,
        ..entry("x")
    };
    // Per tenant: 10 × (fast, old), 10 × (fast, new), 10 × (smart, old), 10 × (fast-ish, old).
    for t in &tenants {
        for i in 0..10 {
            let t = *t;
            store.put(&key(t, &format!("fo{i}")), Arc::new(make("fast", 2 * hour)), MINUTE).await.unwrap();
            store
                .put(&key(t, &format!("fn{i}")), Arc::new(make("fast", Duration::ZERO)), MINUTE)
                .await
                .unwrap();
            store.put(&key(t, &format!("so{i}")), Arc::new(make("smart", 2 * hour)), MINUTE).await.unwrap();
            store
                .put(&key(t, &format!("xo{i}")), Arc::new(make("fast-ish", 2 * hour)), MINUTE)
                .await
                .unwrap();
        }
    }
    let (a, b) = (tenants[0], tenants[1]);

    let old_fast = PurgeFilter { alias: Some("fast".into()), created_before: Some(now - hour), tenant: a };
    assert_eq!(store.purge(&old_fast).await.unwrap(), 10, "alias and age together");
    let by_alias = PurgeFilter { alias: Some("fast".into()), ..PurgeFilter::tenant(a) };
    assert_eq!(store.purge(&by_alias).await.unwrap(), 10, "then the young `fast` ones");
    let by_age = PurgeFilter { created_before: Some(now - hour), ..PurgeFilter::tenant(b) };
    assert_eq!(store.purge(&by_age).await.unwrap(), 30, "every old entry of B, whatever its alias");

    for i in 0..10 {
        let g = |t, p: &str| {
            let store = store.clone();
            let k = key(t, &format!("{p}{i}"));
            async move { store.get(&k).await.unwrap().is_some() }
        };
        assert!(!g(a, "fo").await && !g(a, "fn").await);
        assert!(g(a, "so").await && g(a, "xo").await, "A's other aliases stay");
        assert!(!g(b, "fo").await && !g(b, "so").await && !g(b, "xo").await);
        assert!(g(b, "fn").await, "B's young entries stay");
        for t in &tenants[2..] {
            for p in ["fo", "fn", "so", "xo"] {
                assert!(g(*t, p).await, "other tenants keep everything");
            }
        }
    }
    assert_eq!(store.stats().await.unwrap().entries, 4 * 40 - 20 - 30);
    assert_eq!(store.purge(&PurgeFilter::tenant(a)).await.unwrap(), 20);
}

/// Stats count only this store's keys and weigh them by their stored length.
#[tokio::test]
async fn stats_count_keys_under_the_prefix() {
    let (store, guard) = shared_store();
    assert_eq!(store.stats().await.unwrap().entries, 0);
    let t = TenantId::new();
    for i in 0..25 {
        store.put(&key(t, &i.to_string()), Arc::new(entry("a")), MINUTE).await.unwrap();
    }
    // A neighbour whose prefix starts with ours is not counted.
    let (other, _other_guard) = {
        let prefix = format!("{}x", guard.0);
        (RedisCacheStore::new(&redis_url(), test_config(&prefix)).unwrap(), DropKeys(prefix))
    };
    other.put(&key(t, "n"), Arc::new(entry("a")), MINUTE).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.entries, 25);
    let one = entry("a").approx_size() as u64;
    assert!(stats.bytes > 25 * one && stats.bytes < 25 * (one + 200), "{stats:?}");
}

/// A prefix with glob characters matches only itself in SCAN.
#[tokio::test]
async fn a_prefix_with_glob_characters_is_escaped() {
    let base = unique_prefix();
    let _g1 = DropKeys(format!("{base}:a*"));
    let _g2 = DropKeys(format!("{base}:ab"));
    let star = RedisCacheStore::new(&redis_url(), test_config(&format!("{base}:a*"))).unwrap();
    let plain = RedisCacheStore::new(&redis_url(), test_config(&format!("{base}:ab"))).unwrap();
    let t = TenantId::new();
    star.put(&key(t, "1"), Arc::new(entry("a")), MINUTE).await.unwrap();
    plain.put(&key(t, "1"), Arc::new(entry("a")), MINUTE).await.unwrap();
    assert_eq!(star.stats().await.unwrap().entries, 1);
    assert_eq!(star.purge(&PurgeFilter::tenant(t)).await.unwrap(), 1);
    assert!(plain.get(&key(t, "1")).await.unwrap().is_some(), "`a*` did not purge `ab`");
}

/// Two stores (two gateway nodes) on one Redis share entries.
#[tokio::test]
async fn two_nodes_share_entries() {
    let (a, _guard) = shared_store();
    let b = RedisCacheStore::new(&redis_url(), a.config().clone()).unwrap();
    let k = key(TenantId::new(), "q");
    a.put(&k, Arc::new(entry("from node a")), MINUTE).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap().as_deref().and_then(answer_of), Some("from node a"));
}
