//! How fast the in-process semantic store takes the cache writer's batches, with several large
//! namespaces (tenants): batches that each hold one namespace (its graph takes one insert at a
//! time) against batches that mix the namespaces (shared among up to one blocking task per CPU).
//!
//!     cargo run --release -p tollgate-core --features test-util --example semantic_writes \
//!         [NAMESPACES] [ENTRIES_EACH]
//!
//! Random 384-dimensional unit vectors (the contract suite's `unit`; the hard case for a
//! graph), batches of 64 as the writer sends them. Prints inserts per second for both shapes
//! (on stderr).

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;
use tollgate_core::cache::MemorySemanticStore;
use tollgate_core::cache::semantic_contract::unit;
use tollgate_core::cache::vector::IndexParams;
use tollgate_types::ports::{CacheKey, CachedResponse, SemanticEntry, SemanticPut, SemanticStore};
use tollgate_types::tenancy::TenantId;

const DIM: usize = 384;
const BATCH: usize = 64;
const MEASURED: usize = 2048;

fn put(ns: CacheKey, seed: u64, value: &Arc<CachedResponse>) -> SemanticPut {
    SemanticPut {
        namespace: ns,
        entry: SemanticEntry { prompt: format!("p{seed}"), embedding: unit(DIM, seed), value: value.clone() },
        ttl: Duration::from_secs(3600),
    }
}

/// Stores `batches` and returns inserts per second.
async fn rate(store: &MemorySemanticStore, batches: Vec<Vec<SemanticPut>>) -> Result<f64, Box<dyn Error>> {
    let n: usize = batches.iter().map(Vec::len).sum();
    let started = Instant::now();
    for batch in batches {
        store.put_many(batch).await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let spaces: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let each: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    // Graphs built in the insert calls, so the figures are inserts into finished graphs.
    let params = IndexParams { background_build: false, ..IndexParams::default() };
    let store = MemorySemanticStore::new(params, u64::MAX);
    let value = Arc::new(CachedResponse::sample("m", OffsetDateTime::now_utc()));
    let namespaces: Vec<CacheKey> =
        (0..spaces).map(|i| CacheKey::new(TenantId::new(), [i as u8; 32])).collect();

    eprintln!("filling {spaces} namespaces with {each} entries each");
    for (i, ns) in namespaces.iter().enumerate() {
        let seeds: Vec<u64> = (0..each).map(|k| (i as u64) << 32 | k).collect();
        for chunk in seeds.chunks(BATCH) {
            store.put_many(chunk.iter().map(|&s| put(*ns, s, &value)).collect()).await?;
        }
    }

    let mut seed = 1u64 << 48;
    let mut next = || {
        seed += 1;
        seed
    };
    // One namespace per batch, round robin.
    let single: Vec<Vec<SemanticPut>> = (0..MEASURED / BATCH)
        .map(|b| (0..BATCH).map(|_| put(namespaces[b % spaces], next(), &value)).collect())
        .collect();
    // Every batch mixes all namespaces.
    let mixed: Vec<Vec<SemanticPut>> = (0..MEASURED / BATCH)
        .map(|_| (0..BATCH).map(|k| put(namespaces[k % spaces], next(), &value)).collect())
        .collect();
    let one = rate(&store, single).await?;
    let all = rate(&store, mixed).await?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "{spaces} namespaces of ~{each} entries, {cpus} CPUs, batches of {BATCH}: \
         one namespace per batch {one:.0} inserts/s; mixed batches {all:.0} inserts/s ({:.2}x)",
        all / one
    );
    Ok(())
}
