//! The semantic-cache contract: one suite every [`SemanticStore`] (in-process, pgvector) must
//! pass, run through [`crate::semantic_contract!`].
//!
//! Every test uses fresh tenant ids, so tests run in parallel on one shared backend. Vectors
//! are deterministic pseudo-random unit vectors of the fixture's dimension; similarities are
//! computed here, so the suite never depends on a model.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tollgate_types::ports::{
    CacheError, CacheKey, CachedResponse, PurgeFilter, SemanticEntry, SemanticPut, SemanticStore,
};
use tollgate_types::tenancy::TenantId;

use super::contract::entry;

/// One test's store, the embedding length it takes, and a clean-up guard.
pub struct SemanticFixture {
    pub store: Arc<dyn SemanticStore>,
    pub dim: usize,
    pub guard: Box<dyn Any + Send>,
}

/// Expands to one `#[tokio::test]` per contract function, each on a fresh fixture from
/// `$factory` (an expression evaluating to a future of [`SemanticFixture`]).
#[macro_export]
macro_rules! semantic_contract {
    ($factory:expr) => {
        $crate::semantic_contract!(@tests $factory;
            put_then_nearest_finds_it,
            put_many_adds_each,
            below_the_threshold_is_a_miss,
            nearest_is_the_most_similar,
            other_namespaces_never_match,
            tenant_b_never_hits_tenant_a_entry,
            other_lengths_never_match,
            zero_ttl_stores_nothing,
            entries_expire_after_their_ttl,
            purge_by_tenant_removes_only_that_tenant,
            purge_by_alias_and_age,
            many_entries_still_find_the_nearest,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture = $factory.await;
                $crate::cache::semantic_contract::$name(fixture).await.unwrap();
            }
        )*
    };
}

/// A deterministic unit vector of length `dim` for `seed` (splitmix64 noise, normalised).
pub fn unit(dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Top 24 bits to [-1, 1).
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    normalise(v)
}

/// `a` moved towards `b` by `t` (0 = a, 1 = b), normalised.
pub fn blend(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    normalise(a.iter().zip(b).map(|(x, y)| (1.0 - t) * x + t * y).collect())
}

/// The dot product (cosine similarity of unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = dot(&v, &v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// A namespace of `tenant` numbered `n`.
pub fn namespace(tenant: TenantId, n: u8) -> CacheKey {
    let mut digest = [0u8; 32];
    digest[0] = n;
    digest[1..17].copy_from_slice(tenant.0.as_bytes());
    CacheKey::new(tenant, digest)
}

fn stored(prompt: &str, embedding: Vec<f32>, value: CachedResponse) -> SemanticEntry {
    SemanticEntry { prompt: prompt.into(), embedding, value: Arc::new(value) }
}

/// A lookup that should have hit did not: an error, so the test fails naming the step.
fn missing(what: &str) -> CacheError {
    CacheError::Unavailable(format!("expected a hit: {what}"))
}

fn answer_of(v: &CachedResponse) -> Option<&str> {
    v.response.choices.first()?.message.content.as_deref()
}

const MINUTE: Duration = Duration::from_secs(60);

pub async fn put_then_nearest_finds_it(f: SemanticFixture) -> Result<(), CacheError> {
    let ns = namespace(TenantId::new(), 1);
    let v = unit(f.dim, 1);
    let e = entry("Paris");
    f.store.put(&ns, stored("capital of France?", v.clone(), e.clone()), MINUTE).await?;
    let query = blend(&v, &unit(f.dim, 2), 0.05);
    let hit = f.store.nearest(&ns, &query, 0.9).await?.ok_or_else(|| missing("a close query hits"))?;
    assert_eq!(hit.prompt, "capital of France?");
    assert_eq!(*hit.value, e, "every field comes back as stored");
    let want = dot(&v, &query);
    assert!((hit.similarity - want).abs() < 1e-3, "similarity {} != {want}", hit.similarity);
    Ok(())
}

/// The writer's batches: every entry is added to its own namespace, zero TTLs store nothing.
pub async fn put_many_adds_each(f: SemanticFixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    let (ns_a, ns_b) = (namespace(a, 1), namespace(b, 1));
    let mut puts: Vec<SemanticPut> = (0..30u64)
        .map(|seed| SemanticPut {
            namespace: if seed % 3 == 0 { ns_b } else { ns_a },
            entry: stored(&seed.to_string(), unit(f.dim, seed), entry(&format!("a{seed}"))),
            ttl: MINUTE,
        })
        .collect();
    puts.push(SemanticPut {
        namespace: ns_a,
        entry: stored("never", unit(f.dim, 77), entry("x")),
        ttl: Duration::ZERO,
    });
    f.store.put_many(puts).await?;
    for seed in 0..30u64 {
        let (own, other) = if seed % 3 == 0 { (ns_b, ns_a) } else { (ns_a, ns_b) };
        let hit = f.store.nearest(&own, &unit(f.dim, seed), 0.99).await?.ok_or_else(|| missing("batched"))?;
        assert_eq!(hit.prompt, seed.to_string());
        assert_eq!(answer_of(&hit.value), Some(format!("a{seed}").as_str()));
        assert!(
            f.store.nearest(&other, &unit(f.dim, seed), 0.99).await?.is_none(),
            "{seed} stays in its namespace"
        );
    }
    assert!(f.store.nearest(&ns_a, &unit(f.dim, 77), 0.99).await?.is_none(), "a zero TTL stores nothing");
    Ok(())
}

pub async fn below_the_threshold_is_a_miss(f: SemanticFixture) -> Result<(), CacheError> {
    let ns = namespace(TenantId::new(), 1);
    let v = unit(f.dim, 3);
    f.store.put(&ns, stored("p", v.clone(), entry("a")), MINUTE).await?;
    let query = blend(&v, &unit(f.dim, 4), 0.5);
    let sim = dot(&v, &query);
    assert!(f.store.nearest(&ns, &query, sim + 0.01).await?.is_none(), "just under the bar misses");
    assert!(f.store.nearest(&ns, &query, sim - 0.01).await?.is_some(), "just over it hits");
    Ok(())
}

pub async fn nearest_is_the_most_similar(f: SemanticFixture) -> Result<(), CacheError> {
    let ns = namespace(TenantId::new(), 1);
    let target = unit(f.dim, 5);
    let far = blend(&target, &unit(f.dim, 6), 0.6);
    let near = blend(&target, &unit(f.dim, 7), 0.2);
    f.store.put(&ns, stored("far", far, entry("far")), MINUTE).await?;
    f.store.put(&ns, stored("near", near, entry("near")), MINUTE).await?;
    let hit = f.store.nearest(&ns, &target, 0.1).await?.ok_or_else(|| missing("both qualify"))?;
    assert_eq!(hit.prompt, "near");
    assert_eq!(answer_of(&hit.value), Some("near"));
    Ok(())
}

pub async fn other_namespaces_never_match(f: SemanticFixture) -> Result<(), CacheError> {
    let t = TenantId::new();
    let v = unit(f.dim, 8);
    f.store.put(&namespace(t, 1), stored("p", v.clone(), entry("a")), MINUTE).await?;
    assert!(
        f.store.nearest(&namespace(t, 2), &v, 0.5).await?.is_none(),
        "another alias, system prompt or conversation of the same tenant never matches"
    );
    Ok(())
}

pub async fn tenant_b_never_hits_tenant_a_entry(f: SemanticFixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    let v = unit(f.dim, 9);
    let ns_a = namespace(a, 1);
    f.store.put(&ns_a, stored("the same prompt", v.clone(), entry("A's answer")), MINUTE).await?;
    assert!(f.store.nearest(&namespace(b, 1), &v, 0.0).await?.is_none(), "B's own namespace");
    // A namespace forged with A's digest under B's tenant still misses: the tenant is part of
    // the lookup, not only of the hash.
    let forged = CacheKey::new(b, *ns_a.digest());
    assert!(f.store.nearest(&forged, &v, -1.0).await?.is_none(), "forged digest");
    assert!(f.store.nearest(&ns_a, &v, 0.99).await?.is_some(), "A still hits");
    Ok(())
}

pub async fn other_lengths_never_match(f: SemanticFixture) -> Result<(), CacheError> {
    let ns = namespace(TenantId::new(), 1);
    let v = unit(f.dim, 10);
    f.store.put(&ns, stored("p", v.clone(), entry("a")), MINUTE).await?;
    let short = v[..f.dim / 2].to_vec();
    assert!(f.store.nearest(&ns, &short, -1.0).await?.is_none());
    Ok(())
}

pub async fn zero_ttl_stores_nothing(f: SemanticFixture) -> Result<(), CacheError> {
    let ns = namespace(TenantId::new(), 1);
    let v = unit(f.dim, 11);
    f.store.put(&ns, stored("p", v.clone(), entry("a")), Duration::ZERO).await?;
    assert!(f.store.nearest(&ns, &v, 0.5).await?.is_none());
    Ok(())
}

pub async fn entries_expire_after_their_ttl(f: SemanticFixture) -> Result<(), CacheError> {
    let ns = namespace(TenantId::new(), 1);
    let (short, long) = (unit(f.dim, 12), unit(f.dim, 13));
    f.store.put(&ns, stored("short", short.clone(), entry("s")), Duration::from_millis(400)).await?;
    f.store.put(&ns, stored("long", long.clone(), entry("l")), MINUTE).await?;
    assert!(f.store.nearest(&ns, &short, 0.99).await?.is_some(), "live before its TTL");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(f.store.nearest(&ns, &short, 0.99).await?.is_none(), "an expired entry is never returned");
    assert!(f.store.nearest(&ns, &long, 0.99).await?.is_some(), "other entries keep their own TTL");
    Ok(())
}

pub async fn purge_by_tenant_removes_only_that_tenant(f: SemanticFixture) -> Result<(), CacheError> {
    let (a, b) = (TenantId::new(), TenantId::new());
    for seed in 20..23 {
        let v = unit(f.dim, seed);
        f.store.put(&namespace(a, 1), stored("p", v.clone(), entry("x")), MINUTE).await?;
        f.store.put(&namespace(b, 1), stored("p", v, entry("x")), MINUTE).await?;
    }
    assert_eq!(f.store.purge(&PurgeFilter::tenant(a)).await?, 3);
    for seed in 20..23 {
        let v = unit(f.dim, seed);
        assert!(f.store.nearest(&namespace(a, 1), &v, 0.99).await?.is_none());
        assert!(f.store.nearest(&namespace(b, 1), &v, 0.99).await?.is_some(), "B's entries survive");
    }
    assert_eq!(f.store.purge(&PurgeFilter::tenant(a)).await?, 0, "nothing left to purge");
    Ok(())
}

pub async fn purge_by_alias_and_age(f: SemanticFixture) -> Result<(), CacheError> {
    let a = TenantId::new();
    let ns = namespace(a, 1);
    let now = OffsetDateTime::now_utc();
    let made = |alias: &str, age: Duration| CachedResponse {
        alias: alias.into(),
        created_at: now - age,
        ..entry("x")
    };
    let (fast, smart, old) = (unit(f.dim, 30), unit(f.dim, 31), unit(f.dim, 32));
    f.store.put(&ns, stored("1", fast.clone(), made("fast", Duration::ZERO)), MINUTE).await?;
    f.store.put(&ns, stored("2", smart.clone(), made("smart", Duration::ZERO)), MINUTE).await?;
    f.store.put(&ns, stored("3", old.clone(), made("smart", 120 * MINUTE)), MINUTE).await?;
    let by_alias = PurgeFilter { alias: Some("fast".into()), ..PurgeFilter::tenant(a) };
    assert_eq!(f.store.purge(&by_alias).await?, 1);
    assert!(f.store.nearest(&ns, &fast, 0.99).await?.is_none());
    let by_age = PurgeFilter { created_before: Some(now - 60 * MINUTE), ..PurgeFilter::tenant(a) };
    assert_eq!(f.store.purge(&by_age).await?, 1);
    assert!(f.store.nearest(&ns, &old, 0.99).await?.is_none());
    assert!(f.store.nearest(&ns, &smart, 0.99).await?.is_some(), "the young smart entry stays");
    Ok(())
}

pub async fn many_entries_still_find_the_nearest(f: SemanticFixture) -> Result<(), CacheError> {
    let ns = namespace(TenantId::new(), 1);
    for seed in 100..400u64 {
        f.store.put(&ns, stored(&seed.to_string(), unit(f.dim, seed), entry("x")), MINUTE).await?;
    }
    for seed in [100u64, 257, 399] {
        let query = blend(&unit(f.dim, seed), &unit(f.dim, 10_000 + seed), 0.1);
        let hit =
            f.store.nearest(&ns, &query, 0.5).await?.ok_or_else(|| missing("its own entry qualifies"))?;
        assert_eq!(hit.prompt, seed.to_string());
    }
    Ok(())
}
