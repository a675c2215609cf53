//! The Redis [`CacheStore`]: the exact response cache shared by every gateway node (the pipeline's
//! `cache` stage reads it before routing, `settle` writes it), selected by `cache.backend: redis`;
//! see `docs/caching.md`.
//!
//! - **Keys** are `<prefix>:<tenant uuid>:<digest hex>` (prefix default `tg:cache`). The tenant
//!   is in the Redis key, not only hashed into the digest, so a key forged with another tenant's
//!   digest names a different Redis key and misses. The stored value also carries its tenant, and
//!   a value found under another tenant's key is not served (a copied or tampered value).
//! - **Values** are one Redis string: a small binary header, then the [`CachedResponse`] as JSON
//!   (see [`encode`]). The header holds what a purge filters on (alias, creation time), so a
//!   purge reads a few dozen bytes per key with `GETRANGE` instead of whole answers. JSON, not a
//!   binary encoding, for the answer: it is what the port round-trips and can be read with
//!   `redis-cli` when debugging.
//! - **TTL:** `SET … PX <ttl>`, so Redis expires entries on its own clock; a zero TTL stores
//!   nothing and TTLs are capped at [`MAX_TTL`], as in the in-process store.
//! - **Size bound:** Redis's own `maxmemory` with an LRU eviction policy (`allkeys-lru`, or
//!   `volatile-lru` when the instance holds keys without TTL that must stay). Operators must set
//!   both; without them the cache grows until entries expire. A put that Redis refuses for want
//!   of memory (`OOM`, e.g. under `noeviction`) is `Unavailable`.
//! - **Errors:** every Redis round trip is bounded by [`RedisCacheConfig::timeout`] (default
//!   100 ms) and the connection is made lazily, so an unreachable Redis is
//!   [`CacheError::Unavailable`] quickly, never a hang. Purge and stats, which take many round
//!   trips, are also bounded as a whole by [`RedisCacheConfig::admin_timeout`].
//! - A value that cannot be decoded is a miss and is deleted; nothing panics on what Redis
//!   returns.
//! - For a single Redis (or a primary with replicas), not Redis Cluster: `SCAN` walks one node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use time::OffsetDateTime;
use tollgate_types::ports::{
    CacheError, CacheKey, CachePut, CacheStats, CacheStore, CachedResponse, PurgeFilter,
};
use tollgate_types::tenancy::TenantId;

/// The longest an entry is kept, whatever TTL it was put with (as the in-process store).
pub const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);

/// Settings of a [`RedisCacheStore`].
#[derive(Debug, Clone)]
pub struct RedisCacheConfig {
    /// Prefix of every key. Default `tg:cache`.
    pub prefix: String,
    /// Upper bound on every Redis round trip (connecting included). Default 100 ms.
    pub timeout: Duration,
    /// Upper bound on a whole purge or stats call (many `SCAN` round trips). Default 30 s.
    pub admin_timeout: Duration,
    /// `SCAN … COUNT` hint: keys examined per round trip by purge and stats. Default 1000.
    pub scan_count: usize,
}

impl Default for RedisCacheConfig {
    fn default() -> Self {
        Self {
            prefix: "tg:cache".into(),
            timeout: Duration::from_millis(100),
            admin_timeout: Duration::from_secs(30),
            scan_count: 1000,
        }
    }
}

/// The exact cache in Redis. Clones share one connection.
#[derive(Clone)]
pub struct RedisCacheStore {
    conn: ConnectionManager,
    cfg: Arc<RedisCacheConfig>,
}

// === impl RedisCacheStore ===

impl RedisCacheStore {
    /// A store on `url` (`redis://127.0.0.1:6379`). Connects lazily: never blocks, and works
    /// (with `Unavailable` errors) while Redis is down. Call it inside a Tokio runtime (the
    /// connection manager runs there); outside one this is an error.
    pub fn new(url: &str, cfg: RedisCacheConfig) -> Result<Self, CacheError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CacheError::Unavailable("the redis cache needs a Tokio runtime".into()));
        }
        let client =
            redis::Client::open(url).map_err(|e| CacheError::Unavailable(format!("redis url: {e}")))?;
        let mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(cfg.timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, mc).map_err(unavailable)?;
        Ok(Self { conn, cfg: Arc::new(cfg) })
    }

    /// The settings this store was built with.
    pub fn config(&self) -> &RedisCacheConfig {
        &self.cfg
    }

    /// The Redis key holding `key`'s entry: `<prefix>:<tenant>:<digest hex>`.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}:{}:{}", self.cfg.prefix, key.tenant(), key.digest_hex())
    }

    /// One command, bounded by the round-trip timeout.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CacheError> {
        let mut conn = self.conn.clone();
        bounded(self.cfg.timeout, cmd.query_async::<T>(&mut conn)).await
    }

    /// One pipeline (one round trip), bounded by the round-trip timeout.
    async fn run_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, CacheError> {
        let mut conn = self.conn.clone();
        bounded(self.cfg.timeout, pipe.query_async::<T>(&mut conn)).await
    }

    /// One `SCAN` step: the next cursor (0 when done) and the keys matching `pattern`.
    async fn scan_step(&self, cursor: u64, pattern: &str) -> Result<(u64, Vec<String>), CacheError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(self.cfg.scan_count.max(1));
        self.run(&cmd).await
    }

    async fn unlink(&self, keys: &[String]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        self.run(&cmd).await
    }

    async fn purge_inner(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        let alias = filter.alias.as_deref().map(str::as_bytes);
        if alias.is_some_and(|a| a.len() > usize::from(u16::MAX)) {
            // No entry can hold such an alias (see `encode`).
            return Ok(0);
        }
        let before = filter.created_before.map(unix_nanos);
        let needs_header = alias.is_some() || before.is_some();
        // GETRANGE's end is inclusive: the fixed header plus the alias we compare with.
        let header_end = HEADER_LEN + alias.map_or(0, <[u8]>::len) - 1;
        let pattern = tenant_pattern(&self.cfg.prefix, filter.tenant);
        let mut removed = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_step(cursor, &pattern).await?;
            let doomed = if needs_header && !keys.is_empty() {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("GETRANGE").arg(k).arg(0).arg(header_end);
                }
                let heads: Vec<Vec<u8>> = self.run_pipe(&pipe).await?;
                keys.into_iter()
                    .zip(heads)
                    .filter(|(_, head)| purge_matches(head, alias, before))
                    .map(|(k, _)| k)
                    .collect()
            } else {
                keys
            };
            // A key replaced between the GETRANGE and this UNLINK is removed too: a miss at
            // worst, which an admin purge may cause.
            removed += self.unlink(&doomed).await?;
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn stats_inner(&self) -> Result<CacheStats, CacheError> {
        let pattern = format!("{}:*", escape_glob(&self.cfg.prefix));
        let mut stats = CacheStats::default();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_step(cursor, &pattern).await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("STRLEN").arg(k);
                }
                let lens: Vec<u64> = self.run_pipe(&pipe).await?;
                // A key that expired since the SCAN has length 0 and is not counted.
                for len in lens.into_iter().filter(|&l| l > 0) {
                    stats.entries += 1;
                    stats.bytes += len;
                }
            }
            if next == 0 {
                return Ok(stats);
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl CacheStore for RedisCacheStore {
    /// One `GET`, bounded by `timeout`. A value that does not decode (or belongs to another
    /// tenant) is deleted and reported as a miss.
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<CachedResponse>>, CacheError> {
        let rkey = self.redis_key(key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&rkey);
        let Some(raw) = self.run::<Option<Vec<u8>>>(&cmd).await? else { return Ok(None) };
        match decode(key.tenant(), &raw) {
            Some(value) => Ok(Some(Arc::new(value))),
            None => {
                tracing::warn!(key = %rkey, "removing an unreadable response-cache entry");
                // Best effort: if this fails the entry is still never served, and expires.
                let _ = self.unlink(&[rkey]).await;
                Ok(None)
            }
        }
    }

    /// One `SET … PX`, bounded by `timeout`. An alias longer than 65,535 bytes cannot be stored:
    /// the key is cleared instead (as a put of an unstorable entry in the in-process store).
    async fn put(&self, key: &CacheKey, value: Arc<CachedResponse>, ttl: Duration) -> Result<(), CacheError> {
        self.put_many(vec![CachePut { key: *key, value, ttl }]).await
    }

    /// The writer's batch in one pipeline (one round trip, in order, so a later put of a key
    /// wins): a `SET … PX` per entry, an `UNLINK` for one that cannot be stored.
    async fn put_many(&self, puts: Vec<CachePut>) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        let mut unencodable = None;
        for CachePut { key, value, ttl } in puts.iter().filter(|p| !p.ttl.is_zero()) {
            let rkey = self.redis_key(key);
            match encode(key.tenant(), value) {
                Ok(bytes) => {
                    pipe.cmd("SET").arg(&rkey).arg(bytes).arg("PX").arg(ttl_millis(*ttl)).ignore();
                }
                Err(EncodeError::AliasTooLong) => {
                    pipe.cmd("UNLINK").arg(&rkey).ignore();
                }
                Err(EncodeError::Json(e)) => {
                    unencodable
                        .get_or_insert(CacheError::Unavailable(format!("could not encode an entry: {e}")));
                }
            }
        }
        if !pipe.is_empty() {
            self.run_pipe::<()>(&pipe).await?;
        }
        unencodable.map_or(Ok(()), Err)
    }

    /// `SCAN MATCH <prefix>:<tenant>:*`; with an alias or age filter, `GETRANGE` of each key's
    /// header (one pipeline per batch); then `UNLINK` of the matches. Bounded as a whole by
    /// `admin_timeout`; on an error part of the entries may be gone (run it again). Values that
    /// do not decode are removed only by an unfiltered purge (their alias and age are unknown).
    async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        let wait = self.cfg.admin_timeout;
        tokio::time::timeout(wait, self.purge_inner(filter)).await.map_err(|_| {
            CacheError::Unavailable(format!("the redis cache purge took longer than {wait:?}"))
        })?
    }

    /// Counts keys under the prefix (`SCAN`, every tenant) and sums their value lengths
    /// (`STRLEN`: header plus JSON, without Redis's per-key overhead, so `used_memory` is
    /// higher). Costs a walk of the whole keyspace: for metrics scraped now and then and the
    /// admin API, not the request path.
    async fn stats(&self) -> Result<CacheStats, CacheError> {
        let wait = self.cfg.admin_timeout;
        tokio::time::timeout(wait, self.stats_inner()).await.map_err(|_| {
            CacheError::Unavailable(format!("the redis cache stats took longer than {wait:?}"))
        })?
    }
}

async fn bounded<T>(
    wait: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, CacheError> {
    match tokio::time::timeout(wait, fut).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(CacheError::Unavailable(format!("redis did not answer within {wait:?}"))),
    }
}

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

/// `PX` milliseconds for a non-zero `ttl`: capped at [`MAX_TTL`], at least 1 (`PX 0` is an error).
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.min(MAX_TTL).as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `pattern` matching every key of `tenant` (the prefix's glob characters escaped).
fn tenant_pattern(prefix: &str, tenant: TenantId) -> String {
    format!("{}:{tenant}:*", escape_glob(prefix))
}

/// `s` with the characters `SCAN MATCH` treats specially escaped.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// === value encoding ===
//
// A stored value is:
//
//   offset  size  field
//   0       4     magic `TGc1` (a new layout is a new magic: old values then decode as corrupt,
//                 i.e. a miss, and are replaced)
//   4       16    tenant uuid
//   20      8     created_at, unix nanoseconds, big-endian i64 (clamped)
//   28      2     alias length in bytes, big-endian u16
//   30      n     alias (UTF-8)
//   30+n    ..    the whole CachedResponse as JSON (alias and created_at included)
//
// Purge reads bytes 0..30+n only. The header repeats fields of the JSON; `decode` checks they
// agree, so a value whose header lies is never served.

const MAGIC: [u8; 4] = *b"TGc1";
/// Bytes before the alias.
const HEADER_LEN: usize = 30;

#[derive(Debug)]
enum EncodeError {
    AliasTooLong,
    Json(serde_json::Error),
}

/// The stored form of `value`, for `tenant`.
fn encode(tenant: TenantId, value: &CachedResponse) -> Result<Vec<u8>, EncodeError> {
    let alias = value.alias.as_bytes();
    let alias_len = u16::try_from(alias.len()).map_err(|_| EncodeError::AliasTooLong)?;
    let body = serde_json::to_vec(value).map_err(EncodeError::Json)?;
    let mut out = Vec::with_capacity(HEADER_LEN + alias.len() + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(tenant.0.as_bytes());
    out.extend_from_slice(&unix_nanos(value.created_at).to_be_bytes());
    out.extend_from_slice(&alias_len.to_be_bytes());
    out.extend_from_slice(alias);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The fixed part of a header.
struct Header {
    tenant: [u8; 16],
    created_nanos: i64,
    alias_len: usize,
}

fn parse_header(bytes: &[u8]) -> Option<Header> {
    let fixed: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let (magic, rest) = fixed.split_first_chunk::<4>()?;
    let (tenant, rest) = rest.split_first_chunk::<16>()?;
    let (created, rest) = rest.split_first_chunk::<8>()?;
    let (alias_len, _) = rest.split_first_chunk::<2>()?;
    (*magic == MAGIC).then_some(Header {
        tenant: *tenant,
        created_nanos: i64::from_be_bytes(*created),
        alias_len: usize::from(u16::from_be_bytes(*alias_len)),
    })
}

/// The entry in `bytes` if it is well formed and belongs to `tenant`.
fn decode(tenant: TenantId, bytes: &[u8]) -> Option<CachedResponse> {
    let header = parse_header(bytes)?;
    if header.tenant != *tenant.0.as_bytes() {
        return None;
    }
    let rest = bytes.get(HEADER_LEN..)?;
    let (alias, body) = (rest.get(..header.alias_len)?, rest.get(header.alias_len..)?);
    let value: CachedResponse = serde_json::from_slice(body).ok()?;
    (value.alias.as_bytes() == alias && unix_nanos(value.created_at) == header.created_nanos).then_some(value)
}

/// Whether the entry whose first bytes are `head` is removed by a purge with `alias` and
/// `before` (unix nanoseconds) filters. Empty: the key expired since the scan. A head that does
/// not parse is kept: its alias and age are unknown.
fn purge_matches(head: &[u8], alias: Option<&[u8]>, before: Option<i64>) -> bool {
    let Some(header) = parse_header(head) else { return false };
    let alias_ok = alias
        .is_none_or(|a| header.alias_len == a.len() && head.get(HEADER_LEN..HEADER_LEN + a.len()) == Some(a));
    alias_ok && before.is_none_or(|b| header.created_nanos < b)
}

/// `t` as unix nanoseconds, clamped to `i64` (years 1677 to 2262), which keeps `<` between
/// times in that range.
fn unix_nanos(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(alias: &str, created_at: OffsetDateTime) -> CachedResponse {
        CachedResponse::sample(alias, created_at)
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    #[test]
    fn values_round_trip_for_their_tenant_only() {
        let (a, b) = (TenantId::new(), TenantId::new());
        let e = entry("fast", at(1_700_000_000) + Duration::from_nanos(123));
        let bytes = encode(a, &e).unwrap();
        assert_eq!(&bytes[..4], b"TGc1");
        assert_eq!(decode(a, &bytes), Some(e));
        assert_eq!(decode(b, &bytes), None, "a value copied under another tenant is not served");
    }

    #[test]
    fn corrupt_values_decode_to_nothing() {
        let t = TenantId::new();
        let good = encode(t, &entry("fast", at(1_700_000_000))).unwrap();
        for n in 0..good.len() {
            assert_eq!(decode(t, &good[..n]), None, "truncated at {n}");
        }
        assert_eq!(decode(t, b"not a cache entry at all, but long enough to hold a header"), None);
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(decode(t, &bad_magic), None);
        // A header that disagrees with the body (alias length lies).
        let mut lying = good.clone();
        lying[29] = 3;
        assert_eq!(decode(t, &lying), None);
        // A header whose creation time disagrees with the body.
        let mut aged = good;
        aged[27] ^= 1;
        assert_eq!(decode(t, &aged), None);
    }

    #[test]
    fn an_alias_too_long_for_the_header_is_not_encoded() {
        let e = entry(&"a".repeat(usize::from(u16::MAX) + 1), at(0));
        assert!(matches!(encode(TenantId::new(), &e), Err(EncodeError::AliasTooLong)));
    }

    #[test]
    fn purge_reads_alias_and_age_from_the_header_alone() {
        let t = TenantId::new();
        let bytes = encode(t, &entry("fast", at(1000))).unwrap();
        // What GETRANGE returns for an alias filter of `len` bytes.
        let head = |len: usize| &bytes[..(HEADER_LEN + len).min(bytes.len())];
        let nanos = |s: i64| s * 1_000_000_000;
        assert!(purge_matches(head(4), Some(b"fast"), None));
        assert!(!purge_matches(head(4), Some(b"slow"), None));
        assert!(!purge_matches(head(3), Some(b"fas"), None), "a prefix of the alias is another alias");
        assert!(!purge_matches(head(5), Some(b"fast2"), None));
        assert!(purge_matches(head(0), None, Some(nanos(1001))));
        assert!(!purge_matches(head(0), None, Some(nanos(1000))), "strictly before");
        assert!(purge_matches(head(4), Some(b"fast"), Some(nanos(2000))));
        assert!(!purge_matches(head(4), Some(b"fast"), Some(nanos(500))));
        assert!(!purge_matches(b"", None, Some(nanos(2000))), "an expired key");
        assert!(!purge_matches(b"garbage", None, Some(nanos(2000))), "an unreadable head");
    }

    #[test]
    fn keys_and_patterns_are_tenant_scoped_and_escaped() {
        let t = TenantId(uuid::Uuid::nil());
        assert_eq!(tenant_pattern("tg:cache", t), format!("tg:cache:{t}:*"));
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    }

    #[test]
    fn ttls_are_whole_positive_milliseconds_and_capped() {
        assert_eq!(ttl_millis(Duration::from_micros(10)), 1);
        assert_eq!(ttl_millis(Duration::from_millis(400)), 400);
        assert_eq!(ttl_millis(Duration::MAX), 365 * 86_400 * 1000);
    }

    #[test]
    fn times_keep_their_order_as_nanos() {
        assert!(unix_nanos(at(-5)) < unix_nanos(at(0)));
        assert_eq!(
            unix_nanos(OffsetDateTime::from_unix_timestamp(i64::from(i32::MAX) * 100).unwrap()),
            i64::MAX
        );
    }

    #[test]
    fn outside_a_runtime_new_is_an_error_not_a_panic() {
        assert!(RedisCacheStore::new("redis://127.0.0.1:1", RedisCacheConfig::default()).is_err());
    }
}
