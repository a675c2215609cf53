//! The exact-cache contract: one suite every [`CacheStore`] (memory, Redis) must pass.
//!
//! Use: `tollgate_core::cache_contract!(factory())` where `factory()` is a future yielding a
//! [`Fixture`]: the store, the byte bound it was built with, and a guard dropped at the end of
//! the test (or `cache_contract!(factory(), size_bound: bounded())` when only a dedicated store
//! is bounded, see the macro). The macro expands to one multi-threaded `#[tokio::test]` per function below, so a
//! failure names the rule that broke. Every test uses fresh tenant ids, so tests run in parallel
//! on one shared backend. TTLs run on real time (short TTLs), since a remote backend keeps its
//! own clock.
//!
//! Functions return `Err` for an unexpected cache error and assert everything else.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tollgate_types::ports::{CacheError, CacheKey, CachePut, CacheStore, CachedResponse, PurgeFilter};
use tollgate_types::tenancy::TenantId;
use tollgate_types::{
    ChatRequest, ChatResponse, Choice, FinishReason, JsonMap, Message, ResponseMessage, Role, Usage,
};

use super::exact_key;

/// One test's store and clean-up guard.
pub struct Fixture {
    pub store: Arc<dyn CacheStore>,
    /// The store's size bound in bytes: `size_bound_evicts` writes four times as much.
    pub capacity_bytes: u64,
    pub guard: Box<dyn Any + Send>,
}

/// Expands to one `#[tokio::test]` per contract function, each on a fresh fixture from
/// `$factory` (an expression evaluating to a future of [`Fixture`]).
///
/// A backend whose size bound is not the store's own setting (Redis: the server's `maxmemory`)
/// names a second factory for the size test: `cache_contract!(shared(), size_bound: bounded())`.
/// Every other test runs on `$factory`; the list of tests stays in this one place.
#[macro_export]
macro_rules! cache_contract {
    ($factory:expr) => {
        $crate::cache_contract!($factory, size_bound: $factory);
    };
    ($factory:expr, size_bound: $bounded:expr) => {
        $crate::cache_contract!(@tests $bounded; size_bound_evicts);
        $crate::cache_contract!(@tests $factory;
            put_then_get_round_trips,
            unknown_key_is_a_miss,
            put_replaces_the_entry,
            put_many_stores_each_and_the_last_of_a_key_wins,
            zero_ttl_stores_nothing,
            entries_expire_after_their_ttl,
            tenant_b_never_hits_tenant_a_entry,
            purge_by_tenant_removes_only_that_tenant,
            purge_by_alias,
            purge_by_age,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture = $factory.await;
                $crate::cache::contract::$name(fixture).await.unwrap();
            }
        )*
    };
}

/// The request a test caches: one user message `prompt` to alias `m`.
pub fn request(prompt: &str) -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, prompt)],
        ..ChatRequest::default()
    }
}

/// The exact key of [`request`]`(prompt)` for `tenant`.
pub fn key(tenant: TenantId, prompt: &str) -> CacheKey {
    // The request is plain text, which always encodes; fall back to a distinct digest anyway.
    exact_key(tenant, &request(prompt)).unwrap_or_else(|_| CacheKey::new(tenant, [0xff; 32]))
}

/// A stored answer saying `answer`, for alias `m`, created now.
pub fn entry(answer: &str) -> CachedResponse {
    CachedResponse {
        response: ChatResponse {
            id: format!("chatcmpl-{}", uuid::Uuid::now_v7()),
            object: "chat.completion".into(),
            created: 1_700_000_000,
            model: "upstream-model".into(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage::assistant(Some(answer.to_owned()), Vec::new()),
                finish_reason: Some(FinishReason::Stop),
                logprobs: None,
            }],
            usage: Some(Usage::new(10, 5, None)),
            system_fingerprint: None,
            extra: JsonMap::new(),
        },
        alias: "m".into(),
        deployment: "openai-main".into(),
        provider: "openai".into(),
        usage: Usage::new(10, 5, None),
        cost_nanodollars: 1_500,
        created_at: OffsetDateTime::now_utc(),
    }
}

fn answer_of(v: &CachedResponse) -> Option<&str> {
    v.response.choices.first()?.message.content.as_deref()
}

const MINUTE: Duration = Duration::from_secs(60);

pub async fn put_then_get_round_trips(f: Fixture) -> Result<(), CacheError> {
    let t = TenantId::new();
    let k = key(t, "What is 2+2?");
    let e = entry("4");
    f.store.put(&k, Arc::new(e.clone()), MINUTE).await?;
    let got = f.store.get(&k).await?;
    assert_eq!(got.as_deref(), Some(&e), "every field comes back as stored");
    Ok(())
}

/// The writer's batches: every entry of tenant A's batch is stored, a key put twice keeps the
/// later answer, a zero TTL in the batch stores nothing, and tenant B's entry in the same batch
/// stays B's.
pub async fn put_many_stores_each_and_the_last_of_a_key_wins(f: Fixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    let put = |key, answer: &str, ttl| CachePut { key, value: Arc::new(entry(answer)), ttl };
    let mut puts: Vec<CachePut> =
        (0..20).map(|i| put(key(a, &format!("q{i}")), &format!("a{i}"), MINUTE)).collect();
    puts.push(put(key(a, "q3"), "again", MINUTE));
    puts.push(put(key(a, "never"), "x", Duration::ZERO));
    puts.push(put(key(b, "q0"), "b's", MINUTE));
    f.store.put_many(puts).await?;
    for i in (0..20).filter(|i| *i != 3) {
        let got = f.store.get(&key(a, &format!("q{i}"))).await?;
        assert_eq!(got.as_deref().and_then(answer_of), Some(format!("a{i}").as_str()), "q{i}");
    }
    assert_eq!(f.store.get(&key(a, "q3")).await?.as_deref().and_then(answer_of), Some("again"));
    assert!(f.store.get(&key(a, "never")).await?.is_none(), "a zero TTL stores nothing");
    assert_eq!(f.store.get(&key(b, "q0")).await?.as_deref().and_then(answer_of), Some("b's"));
    assert_eq!(f.store.get(&key(a, "q0")).await?.as_deref().and_then(answer_of), Some("a0"));
    Ok(())
}

pub async fn unknown_key_is_a_miss(f: Fixture) -> Result<(), CacheError> {
    let t = TenantId::new();
    f.store.put(&key(t, "a"), Arc::new(entry("A")), MINUTE).await?;
    assert!(f.store.get(&key(t, "b")).await?.is_none());
    Ok(())
}

pub async fn put_replaces_the_entry(f: Fixture) -> Result<(), CacheError> {
    let t = TenantId::new();
    let k = key(t, "q");
    f.store.put(&k, Arc::new(entry("first")), MINUTE).await?;
    f.store.put(&k, Arc::new(entry("second")), MINUTE).await?;
    let got = f.store.get(&k).await?;
    assert_eq!(got.as_deref().and_then(answer_of), Some("second"));
    Ok(())
}

pub async fn zero_ttl_stores_nothing(f: Fixture) -> Result<(), CacheError> {
    let k = key(TenantId::new(), "q");
    f.store.put(&k, Arc::new(entry("x")), Duration::ZERO).await?;
    assert!(f.store.get(&k).await?.is_none());
    Ok(())
}

pub async fn entries_expire_after_their_ttl(f: Fixture) -> Result<(), CacheError> {
    let t = TenantId::new();
    let short = key(t, "short");
    let long = key(t, "long");
    f.store.put(&short, Arc::new(entry("s")), Duration::from_millis(400)).await?;
    f.store.put(&long, Arc::new(entry("l")), MINUTE).await?;
    assert!(f.store.get(&short).await?.is_some(), "live before its TTL");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(f.store.get(&short).await?.is_none(), "an expired entry is never returned");
    assert!(f.store.get(&long).await?.is_some(), "other entries keep their own TTL");
    // A re-put after expiry stores afresh.
    f.store.put(&short, Arc::new(entry("s2")), MINUTE).await?;
    assert_eq!(f.store.get(&short).await?.as_deref().and_then(answer_of), Some("s2"));
    Ok(())
}

pub async fn tenant_b_never_hits_tenant_a_entry(f: Fixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    let prompt = "the same prompt, word for word";
    let (ka, kb) = (key(a, prompt), key(b, prompt));
    assert_ne!(ka.digest(), kb.digest(), "the tenant is part of the digest");
    f.store.put(&ka, Arc::new(entry("A's answer")), MINUTE).await?;
    assert!(f.store.get(&kb).await?.is_none(), "B must not see A's entry");
    // A key forged with A's digest under B's tenant still misses: the tenant is part of the
    // lookup, not only of the hash.
    assert!(f.store.get(&CacheKey::new(b, *ka.digest())).await?.is_none());
    f.store.put(&kb, Arc::new(entry("B's answer")), MINUTE).await?;
    assert_eq!(f.store.get(&ka).await?.as_deref().and_then(answer_of), Some("A's answer"));
    assert_eq!(f.store.get(&kb).await?.as_deref().and_then(answer_of), Some("B's answer"));
    Ok(())
}

pub async fn purge_by_tenant_removes_only_that_tenant(f: Fixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    for p in ["1", "2", "3"] {
        f.store.put(&key(a, p), Arc::new(entry(p)), MINUTE).await?;
        f.store.put(&key(b, p), Arc::new(entry(p)), MINUTE).await?;
    }
    assert_eq!(f.store.purge(&PurgeFilter::tenant(a)).await?, 3);
    for p in ["1", "2", "3"] {
        assert!(f.store.get(&key(a, p)).await?.is_none());
        assert!(f.store.get(&key(b, p)).await?.is_some(), "B's entries survive A's purge");
    }
    assert_eq!(f.store.purge(&PurgeFilter::tenant(a)).await?, 0, "nothing left to purge");
    Ok(())
}

pub async fn purge_by_alias(f: Fixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    let with_alias = |alias: &str| CachedResponse { alias: alias.into(), ..entry("x") };
    f.store.put(&key(a, "1"), Arc::new(with_alias("fast")), MINUTE).await?;
    f.store.put(&key(a, "2"), Arc::new(with_alias("smart")), MINUTE).await?;
    f.store.put(&key(b, "1"), Arc::new(with_alias("fast")), MINUTE).await?;
    let filter = PurgeFilter { alias: Some("fast".into()), ..PurgeFilter::tenant(a) };
    assert_eq!(f.store.purge(&filter).await?, 1);
    assert!(f.store.get(&key(a, "1")).await?.is_none());
    assert!(f.store.get(&key(a, "2")).await?.is_some(), "other aliases stay");
    assert!(f.store.get(&key(b, "1")).await?.is_some(), "other tenants stay");
    Ok(())
}

pub async fn purge_by_age(f: Fixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    let now = OffsetDateTime::now_utc();
    let aged = |age: Duration| CachedResponse { created_at: now - age, ..entry("x") };
    f.store.put(&key(a, "old"), Arc::new(aged(2 * 60 * MINUTE)), MINUTE).await?;
    f.store.put(&key(a, "new"), Arc::new(aged(Duration::ZERO)), MINUTE).await?;
    f.store.put(&key(b, "old"), Arc::new(aged(2 * 60 * MINUTE)), MINUTE).await?;
    let filter = PurgeFilter { created_before: Some(now - 60 * MINUTE), ..PurgeFilter::tenant(a) };
    assert_eq!(f.store.purge(&filter).await?, 1);
    assert!(f.store.get(&key(a, "old")).await?.is_none());
    assert!(f.store.get(&key(a, "new")).await?.is_some(), "younger entries stay");
    assert!(f.store.get(&key(b, "old")).await?.is_some(), "other tenants stay");
    Ok(())
}

pub async fn size_bound_evicts(f: Fixture) -> Result<(), CacheError> {
    let t = TenantId::new();
    // Entries of about a sixteenth of the bound; write four bounds' worth.
    let filler = "z".repeat(usize::try_from(f.capacity_bytes / 16).unwrap_or(4096));
    let e = Arc::new(entry(&filler));
    let size = e.approx_size() as u64;
    let n = (4 * f.capacity_bytes).div_ceil(size);
    for i in 0..n {
        f.store.put(&key(t, &i.to_string()), e.clone(), MINUTE).await?;
    }
    let mut kept = 0u64;
    for i in 0..n {
        if f.store.get(&key(t, &i.to_string())).await?.is_some() {
            kept += 1;
        }
    }
    assert!(kept > 0, "a bounded cache still keeps entries that fit");
    assert!(
        kept * size <= f.capacity_bytes,
        "{kept} entries of {size} bytes exceed the bound {}",
        f.capacity_bytes
    );
    let stats = f.store.stats().await?;
    assert!(stats.bytes <= f.capacity_bytes, "{stats:?}");
    Ok(())
}
