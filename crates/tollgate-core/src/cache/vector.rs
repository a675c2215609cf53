//! Nearest-neighbour index over L2-normalised embeddings for one semantic-cache namespace.
//!
//! Small namespaces are scanned exhaustively: a contiguous scan of a few thousand vectors is
//! exact and costs well under a millisecond. Once a namespace reaches
//! [`IndexParams::hnsw_threshold`] live entries, lookups go through an HNSW graph (Malkov &
//! Yashunin, 2016) instead. Removing from an HNSW graph is not supported by the algorithm, so
//! removed entries stay in the graph as tombstones: they still route searches but are never
//! returned. When tombstones pass a quarter of the graph, the graph is rebuilt from the live
//! entries.
//!
//! Graph builds (crossing the threshold, and tombstone rebuilds) run outside the index lock,
//! by default on a short-lived background thread: the current structure keeps answering
//! lookups and taking writes, the writes made meanwhile are replayed onto the new graph, and
//! the new graph is swapped in under a brief write lock. A synchronous rebuild of a
//! 100k-entry graph would otherwise block every lookup in the namespace for a minute or more.
//! Taking the build's snapshot (a copy of the live vectors) still holds the write lock, for
//! tens of milliseconds at 100k entries.
//!
//! The graph is searched over int8 codes of the vectors (a quarter of the memory traffic,
//! which bounds search speed) and its best candidates are re-ranked with the f32 vectors, so
//! returned similarities are exact.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Weak};

use foldhash::{HashMap, HashMapExt};
use parking_lot::{Condvar, Mutex, RwLock};

/// Tuning knobs for a [`VectorIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexParams {
    /// Length of every stored and queried vector.
    pub dim: usize,
    /// Live-entry count at which the index switches from an exact scan to an HNSW graph. It
    /// switches back once the count falls below half of this.
    pub hnsw_threshold: usize,
    /// HNSW links per node on the upper layers; the bottom layer keeps twice as many.
    pub m: usize,
    /// Candidate-list size while inserting into the graph: higher builds a better graph, slower.
    pub ef_construction: usize,
    /// Candidate-list size for lookups: higher raises recall and latency. Adjustable at run
    /// time with [`VectorIndex::set_ef_search`].
    ///
    /// The defaults (m 24, ef_construction 100, ef_search 96) were picked on 100k random
    /// 384-d vectors, the hard case for a graph index: recall@1 0.98-1.0 for queries near a
    /// stored vector at about 1 ms per lookup. Real embeddings cluster and fare better.
    pub ef_search: usize,
    /// Build graphs on a background thread (true) or inside the `insert`/`remove` call that
    /// triggered the build (false). Either way lookups are not blocked while the graph builds.
    pub background_build: bool,
}

impl Default for IndexParams {
    fn default() -> Self {
        Self {
            dim: 384,
            hnsw_threshold: 4096,
            m: 24,
            ef_construction: 100,
            ef_search: 96,
            background_build: true,
        }
    }
}

/// Why a vector was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The vector's length differs from [`IndexParams::dim`] (or `dim` is zero).
    #[error("vector has {got} dimensions, the index expects {expected}")]
    DimensionMismatch {
        /// The index's dimension.
        expected: usize,
        /// The length of the vector given.
        got: usize,
    },
    /// A component is NaN or infinite.
    #[error("vector component {position} is not finite")]
    NonFinite {
        /// Index of the first offending component.
        position: usize,
    },
    /// The graph has run out of 32-bit node numbers.
    #[error("the index cannot hold more vectors")]
    CapacityExceeded,
}

/// Which structure currently answers lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// Exact scan over all vectors.
    BruteForce,
    /// Approximate search over an HNSW graph.
    Hnsw,
}

/// A point-in-time description of an index, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Structure answering lookups.
    pub mode: IndexMode,
    /// Entries that lookups can return.
    pub live: usize,
    /// Nodes in the HNSW graph, tombstones included (0 in brute-force mode).
    pub graph_nodes: usize,
    /// Removed or replaced entries still present in the graph.
    pub tombstones: usize,
    /// A graph build is under way.
    pub build_pending: bool,
    /// Graph builds that have completed and been swapped in.
    pub builds_completed: u64,
}

/// Nearest-neighbour index for one namespace. Share it between threads behind an `Arc`; all
/// methods take `&self`.
pub struct VectorIndex {
    shared: Arc<Shared>,
}

impl VectorIndex {
    /// Creates an empty index.
    pub fn new(params: IndexParams) -> Self {
        let params = IndexParams {
            // Fewer than two links per node cannot form a navigable graph.
            m: params.m.max(2),
            ef_construction: params.ef_construction.max(1),
            ef_search: params.ef_search.max(1),
            ..params
        };
        let ef_search = AtomicUsize::new(params.ef_search);
        let store = Store::Flat(Flat::new(params.dim));
        Self {
            shared: Arc::new(Shared {
                params,
                ef_search,
                state: RwLock::new(State { store, pending: None, next_build_id: 0, builds_completed: 0 }),
                scratch: Mutex::new(Vec::new()),
                builds_running: Mutex::new(0),
                builds_idle: Condvar::new(),
            }),
        }
    }

    /// Adds or replaces `id`. Err if the vector's length != dim or it has a non-finite value.
    ///
    /// Vectors are expected to be L2-normalised; the index compares them by dot product. In
    /// HNSW mode this links the vector into the graph under the write lock (about a lookup's
    /// work at a wider search, ~1 ms at 100k entries); while a graph build is under way it
    /// only queues the write, and the call that starts a build snapshots the live vectors.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        let dim = self.shared.params.dim;
        if vector.len() != dim || dim == 0 {
            return Err(IndexError::DimensionMismatch { expected: dim, got: vector.len() });
        }
        if let Some(position) = vector.iter().position(|x| !x.is_finite()) {
            return Err(IndexError::NonFinite { position });
        }
        let job = {
            let mut state = self.shared.state.write();
            state.store.insert(id, vector)?;
            if let Some(pending) = state.pending.as_mut() {
                pending.log.push(Op::Insert(id, vector.into()));
            }
            plan_build(&self.shared, &mut state)
        };
        if let Some(job) = job {
            launch(&self.shared, job);
        }
        Ok(())
    }

    /// Removes `id`; true if it was there.
    pub fn remove(&self, id: u64) -> bool {
        let (removed, job) = {
            let mut state = self.shared.state.write();
            let removed = state.store.remove(id);
            if removed {
                if let Some(pending) = state.pending.as_mut() {
                    pending.log.push(Op::Remove(id));
                }
                state.shrink_if_small(self.shared.params.hnsw_threshold);
            }
            (removed, plan_build(&self.shared, &mut state))
        };
        if let Some(job) = job {
            launch(&self.shared, job);
        }
        removed
    }

    /// The stored vector most similar to `query` (cosine = dot of normalised vectors) whose
    /// similarity is >= min_similarity, if any. Removed ids are never returned.
    ///
    /// A query of the wrong length or with a non-finite component matches nothing. In HNSW
    /// mode the answer is approximate (the true nearest entry is occasionally missed, see
    /// [`IndexParams::ef_search`]), but the similarity returned is exact for the id returned.
    pub fn nearest(&self, query: &[f32], min_similarity: f32) -> Option<(u64, f32)> {
        let dim = self.shared.params.dim;
        if query.len() != dim || dim == 0 || query.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let state = self.shared.state.read();
        let (id, similarity) = match &state.store {
            Store::Flat(flat) => flat.nearest(query)?,
            Store::Graph(graph) => {
                let mut visited = self.shared.scratch.lock().pop().unwrap_or_default();
                let ef = self.shared.ef_search.load(AtomicOrdering::Relaxed);
                let found = graph.nearest(query, ef, &mut visited);
                let mut pool = self.shared.scratch.lock();
                // Enough for every thread that can be inside a lookup at once, without letting
                // a burst of concurrency pin memory forever.
                if pool.len() < SCRATCH_POOL_LIMIT {
                    pool.push(visited);
                }
                found?
            }
        };
        (similarity >= min_similarity).then_some((id, similarity))
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.shared.state.read().store.len()
    }

    /// True if no entries are live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes used (vectors + graph), for memory figures.
    ///
    /// Includes tombstoned graph nodes and writes queued for a graph build in progress, but
    /// not the graph being built (at most about as large as the current one).
    pub fn approx_bytes(&self) -> usize {
        let state = self.shared.state.read();
        let pending = state.pending.as_ref().map_or(0, Pending::approx_bytes);
        let scratch: usize = self.shared.scratch.lock().iter().map(Visited::approx_bytes).sum();
        state.store.approx_bytes() + pending + scratch
    }

    /// Changes the lookup candidate-list size (see [`IndexParams::ef_search`]).
    pub fn set_ef_search(&self, ef: usize) {
        self.shared.ef_search.store(ef.max(1), AtomicOrdering::Relaxed);
    }

    /// A snapshot of the index's shape.
    pub fn stats(&self) -> IndexStats {
        let state = self.shared.state.read();
        let (mode, graph_nodes, tombstones) = match &state.store {
            Store::Flat(_) => (IndexMode::BruteForce, 0, 0),
            Store::Graph(graph) => (IndexMode::Hnsw, graph.node_count(), graph.dead),
        };
        IndexStats {
            mode,
            live: state.store.len(),
            graph_nodes,
            tombstones,
            build_pending: state.pending.is_some(),
            builds_completed: state.builds_completed,
        }
    }

    /// Blocks until no graph build is running, e.g. before measuring or in tests.
    pub fn wait_for_build(&self) {
        let mut running = self.shared.builds_running.lock();
        while *running > 0 {
            self.shared.builds_idle.wait(&mut running);
        }
    }
}

impl fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorIndex")
            .field("params", &self.shared.params)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Lookup scratch buffers kept for reuse.
const SCRATCH_POOL_LIMIT: usize = 64;
/// A graph build swaps itself in once the writes left to replay are this few, so the final
/// write lock stays short; longer backlogs are replayed outside the lock first.
const REPLAY_UNDER_LOCK: usize = 64;
/// Inserts between checks that a build is still wanted.
const CANCEL_CHECK_EVERY: usize = 512;
/// Link rows hold `1/LINK_SLACK_DIVISOR` more slots than the pruning budget. Pruning a full
/// row with the heuristic costs O(row^2) dot products; letting rows overflow into slack and
/// pruning them back to budget only when the slack runs out makes that cost occasional
/// instead of per insert (the dominant insert cost otherwise, as nearly every row is full).
const LINK_SLACK_DIVISOR: usize = 2;
/// Graph candidates re-ranked with exact f32 similarity at the end of a lookup.
const RERANK: usize = 16;
/// Upper bound on HNSW layers; at m >= 2 the chance of needing more is negligible.
const MAX_LEVEL: usize = 16;

struct Shared {
    params: IndexParams,
    ef_search: AtomicUsize,
    state: RwLock<State>,
    scratch: Mutex<Vec<Visited>>,
    builds_running: Mutex<usize>,
    builds_idle: Condvar,
}

struct State {
    store: Store,
    /// A graph build under way: writes made after its snapshot, to replay onto it.
    pending: Option<Pending>,
    next_build_id: u64,
    builds_completed: u64,
}

impl State {
    /// Drops back to the exact scan when a graph has shrunk far below the threshold, where a
    /// scan is both exact and cheap and the graph's overhead no longer pays.
    fn shrink_if_small(&mut self, threshold: usize) {
        if self.store.len() >= threshold / 2 {
            return;
        }
        if let Store::Graph(graph) = &self.store {
            let flat = graph.to_flat();
            self.store = Store::Flat(flat);
        }
        // A build in flight would install a graph in a namespace that no longer needs one.
        self.pending = None;
    }
}

struct Pending {
    build_id: u64,
    log: Vec<Op>,
}

impl Pending {
    fn approx_bytes(&self) -> usize {
        self.log.capacity() * size_of::<Op>()
            + self
                .log
                .iter()
                .map(|op| match op {
                    Op::Insert(_, v) => size_of_val(&**v),
                    Op::Remove(_) => 0,
                })
                .sum::<usize>()
    }
}

enum Op {
    Insert(u64, Box<[f32]>),
    Remove(u64),
}

enum Store {
    Flat(Flat),
    Graph(Box<Graph>),
}

impl Store {
    fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        match self {
            Self::Flat(flat) => {
                flat.insert(id, vector);
                Ok(())
            }
            Self::Graph(graph) => graph.insert(id, vector),
        }
    }

    fn remove(&mut self, id: u64) -> bool {
        match self {
            Self::Flat(flat) => flat.remove(id),
            Self::Graph(graph) => graph.remove(id),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Flat(flat) => flat.ids.len(),
            Self::Graph(graph) => graph.live(),
        }
    }

    fn approx_bytes(&self) -> usize {
        match self {
            Self::Flat(flat) => flat.approx_bytes(),
            Self::Graph(graph) => graph.approx_bytes(),
        }
    }
}

/// Everything a graph build needs, taken under the lock so the build itself can run without it.
struct Job {
    build_id: u64,
    ids: Vec<u64>,
    vectors: Vec<f32>,
    _ticket: BuildTicket,
}

/// Counts a build as running for [`VectorIndex::wait_for_build`] until dropped, and on drop
/// retires the build's queued writes if it never swapped itself in. Whichever way a build ends
/// (installed, cancelled, or a panic in its thread), a later build can then start and the
/// queue stops growing.
struct BuildTicket {
    shared: Weak<Shared>,
    build_id: u64,
}

impl BuildTicket {
    /// Call with the state lock held (lock order: state, then `builds_running`).
    fn new(shared: &Arc<Shared>, build_id: u64) -> Self {
        *shared.builds_running.lock() += 1;
        Self { shared: Arc::downgrade(shared), build_id }
    }
}

impl Drop for BuildTicket {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        {
            let mut state = shared.state.write();
            if state.pending.as_ref().is_some_and(|p| p.build_id == self.build_id) {
                state.pending = None;
            }
        }
        let mut running = shared.builds_running.lock();
        *running = running.saturating_sub(1);
        shared.builds_idle.notify_all();
    }
}

/// Decides, under the write lock, whether a graph build should start, and snapshots its input.
fn plan_build(shared: &Arc<Shared>, state: &mut State) -> Option<Job> {
    if state.pending.is_some() {
        return None;
    }
    let (ids, vectors) = match &state.store {
        Store::Flat(flat) if !flat.ids.is_empty() && flat.ids.len() >= shared.params.hnsw_threshold => {
            (flat.ids.clone(), flat.vectors.clone())
        }
        Store::Graph(graph) if graph.needs_rebuild() => graph.live_entries(),
        _ => return None,
    };
    state.next_build_id += 1;
    let build_id = state.next_build_id;
    state.pending = Some(Pending { build_id, log: Vec::new() });
    Some(Job { build_id, ids, vectors, _ticket: BuildTicket::new(shared, build_id) })
}

fn launch(shared: &Arc<Shared>, job: Job) {
    let params = shared.params.clone();
    let weak = Arc::downgrade(shared);
    if !shared.params.background_build {
        run_build(&weak, &params, job);
        return;
    }
    // The job goes through a shared slot so that it can still run here if no thread starts.
    let slot = Arc::new(Mutex::new(Some(job)));
    let thread_slot = Arc::clone(&slot);
    let thread_weak = weak.clone();
    let thread_params = params.clone();
    let spawned = std::thread::Builder::new().name("vecindex-build".to_owned()).spawn(move || {
        let job = thread_slot.lock().take();
        if let Some(job) = job {
            run_build(&thread_weak, &thread_params, job);
        }
    });
    if spawned.is_err() {
        let job = slot.lock().take();
        if let Some(job) = job {
            run_build(&weak, &params, job);
        }
    }
}

/// Builds a graph from a snapshot, catches up with the writes made meanwhile and swaps it in.
/// Holds the index lock only for cancellation checks and the final short replay and swap.
fn run_build(shared: &Weak<Shared>, params: &IndexParams, job: Job) {
    let Job { build_id, ids, vectors, _ticket } = job;
    let still_wanted = || {
        shared.upgrade().is_some_and(|shared| {
            shared.state.read().pending.as_ref().is_some_and(|p| p.build_id == build_id)
        })
    };
    // The snapshot's vectors become the graph's own: no second copy while building.
    let Some(mut graph) = Graph::from_entries(params, ids, vectors) else {
        return;
    };
    for node in 0..graph.node_count() {
        if node.is_multiple_of(CANCEL_CHECK_EVERY) && !still_wanted() {
            return;
        }
        graph.link_node(node as u32);
    }
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let backlog = {
            let mut state = shared.state.write();
            let Some(pending) = state.pending.as_mut().filter(|p| p.build_id == build_id) else {
                return;
            };
            let backlog = std::mem::take(&mut pending.log);
            if backlog.len() <= REPLAY_UNDER_LOCK {
                graph.replay(backlog);
                state.pending = None;
                state.builds_completed += 1;
                let old = std::mem::replace(&mut state.store, Store::Graph(Box::new(graph)));
                state.shrink_if_small(params.hnsw_threshold);
                drop(state);
                // Freeing the old structure (possibly hundreds of MB) need not block lookups.
                drop(old);
                return;
            }
            backlog
        };
        graph.replay(backlog);
    }
}

/// Dot product written so the compiler vectorises it: fixed-size chunks of 8 lanes (no bounds
/// checks) become packed multiply-adds into independent accumulators. Of 8/16/32-lane variants
/// this measured fastest on the baseline x86-64 target (4-wide SSE registers).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a_chunks, a_tail) = a[..len].as_chunks::<8>();
    let (b_chunks, b_tail) = b[..len].as_chunks::<8>();
    let mut acc = [0.0f32; 8];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Integer dot product of two int8 codes; exact (no overflow below ~130k dimensions).
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let len = a.len().min(b.len());
    let (a_chunks, a_tail) = a[..len].as_chunks::<32>();
    let (b_chunks, b_tail) = b[..len].as_chunks::<32>();
    let mut acc = [0i32; 32];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += i32::from(*x) * i32::from(*y);
        }
    }
    let tail: i32 = a_tail.iter().zip(b_tail).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum();
    acc.iter().sum::<i32>() + tail
}

/// Appends the int8 code of `vector` to `codes` and returns its scale: component i is about
/// `codes[i] as f32 * scale`. Scaling each vector by its own largest component keeps the
/// relative error near 1/254 of that component, so code dot products track the real ones
/// to about 1e-3 on normalised 384-d vectors.
fn quantise_into(vector: &[f32], codes: &mut Vec<i8>) -> f32 {
    let max = vector.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        codes.extend(std::iter::repeat_n(0, vector.len()));
        return 0.0;
    }
    let to_code = 127.0 / max;
    codes.extend(vector.iter().map(|x| (x * to_code).round().clamp(-127.0, 127.0) as i8));
    max / 127.0
}

/// A search target in code form.
struct Probe {
    codes: Vec<i8>,
    scale: f32,
}

impl Probe {
    fn new(vector: &[f32]) -> Self {
        let mut codes = Vec::with_capacity(vector.len());
        let scale = quantise_into(vector, &mut codes);
        Self { codes, scale }
    }
}

/// Exact scan over a contiguous block of vectors.
struct Flat {
    dim: usize,
    vectors: Vec<f32>,
    ids: Vec<u64>,
    slot_of: HashMap<u64, usize>,
}

impl Flat {
    fn new(dim: usize) -> Self {
        Self { dim, vectors: Vec::new(), ids: Vec::new(), slot_of: HashMap::new() }
    }

    fn insert(&mut self, id: u64, vector: &[f32]) {
        if let Some(&slot) = self.slot_of.get(&id) {
            let start = slot * self.dim;
            self.vectors[start..start + self.dim].copy_from_slice(vector);
            return;
        }
        self.slot_of.insert(id, self.ids.len());
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        // Swap-remove keeps the block contiguous without shifting everything after `slot`.
        let last = self.ids.len() - 1;
        if slot != last {
            let moved = self.ids[last];
            self.ids[slot] = moved;
            self.vectors.copy_within(last * self.dim..(last + 1) * self.dim, slot * self.dim);
            self.slot_of.insert(moved, slot);
        }
        self.ids.pop();
        self.vectors.truncate(last * self.dim);
        true
    }

    fn nearest(&self, query: &[f32]) -> Option<(u64, f32)> {
        let mut best: Option<(u64, f32)> = None;
        for (vector, &id) in self.vectors.chunks_exact(self.dim.max(1)).zip(&self.ids) {
            let similarity = dot(query, vector);
            if best.is_none_or(|(_, b)| similarity > b) {
                best = Some((id, similarity));
            }
        }
        best
    }

    /// Bytes in use (lengths, not capacities: spare capacity is mostly untouched pages).
    fn approx_bytes(&self) -> usize {
        self.vectors.len() * size_of::<f32>() + self.ids.len() * size_of::<u64>() + map_bytes(&self.slot_of)
    }
}

fn map_bytes<V>(map: &HashMap<u64, V>) -> usize {
    // One control byte per bucket besides the entry itself (hashbrown layout).
    map.capacity() * (size_of::<(u64, V)>() + 1)
}

/// A graph node with its similarity to the current query. Orders by similarity, then node.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Candidate {
    similarity: f32,
    node: u32,
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.similarity.total_cmp(&other.similarity).then(self.node.cmp(&other.node))
    }
}

/// Visited-node marks for one search. Stamping with a per-search epoch avoids clearing the
/// whole array before every search.
#[derive(Default)]
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn begin(&mut self, nodes: usize) {
        if self.marks.len() < nodes {
            self.marks.resize(nodes, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; true if it was not marked yet in this search.
    fn first_visit(&mut self, node: u32) -> bool {
        match self.marks.get_mut(node as usize) {
            Some(mark) if *mark != self.epoch => {
                *mark = self.epoch;
                true
            }
            _ => false,
        }
    }

    fn approx_bytes(&self) -> usize {
        self.marks.capacity() * size_of::<u32>()
    }
}

/// HNSW graph. Nodes are numbered in insertion order and never reused.
///
/// Search walks int8 codes of the vectors, not the f32 vectors: on this workload a search is
/// bound by cache misses on the vectors it visits (random rows of a 100+ MB block), and a
/// code is a quarter of the size. The f32 vectors are kept to rank the final candidates
/// exactly and to rebuild from. Bottom-layer links sit in fixed-size rows of one array.
struct Graph {
    dim: usize,
    /// Links kept per node on upper layers after pruning.
    m: usize,
    /// Links kept per node on the bottom layer after pruning.
    m0: usize,
    /// Link slots per upper-layer row, `m` plus slack (see [`LINK_SLACK_DIVISOR`]).
    cap: usize,
    /// Link slots per bottom-layer row, `m0` plus slack.
    cap0: usize,
    ef_construction: usize,
    level_mult: f64,
    rng: u64,
    vectors: Vec<f32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    ids: Vec<u64>,
    alive: Vec<bool>,
    /// Bottom-layer rows of `1 + cap0` entries: the link count, then the links.
    links0: Vec<u32>,
    /// Per node, rows of `1 + cap` entries for layers 1..=level; empty for bottom-only nodes.
    upper: Vec<Vec<u32>>,
    slot_of: HashMap<u64, u32>,
    entry: u32,
    max_level: usize,
    dead: usize,
    /// Nodes linked so far; the entry point and `max_level` describe only these.
    linked: usize,
    scratch: Visited,
}

impl Graph {
    /// A graph holding `vectors` (row i belongs to `ids[i]`) with no links yet: link each node
    /// in order with [`Self::link_node`]. None if the lengths disagree or ids repeat.
    fn from_entries(params: &IndexParams, ids: Vec<u64>, vectors: Vec<f32>) -> Option<Self> {
        let m = params.m.max(2);
        let (cap, cap0) = (m + m / LINK_SLACK_DIVISOR, 2 * m + 2 * m / LINK_SLACK_DIVISOR);
        let n = ids.len();
        if vectors.len() != n * params.dim || u32::try_from(n).is_err() {
            return None;
        }
        let mut slot_of = HashMap::with_capacity(n);
        for (node, &id) in ids.iter().enumerate() {
            if slot_of.insert(id, node as u32).is_some() {
                return None;
            }
        }
        let mut codes = Vec::with_capacity(vectors.len());
        let scales = vectors.chunks_exact(params.dim.max(1)).map(|v| quantise_into(v, &mut codes)).collect();
        let mut graph = Self {
            dim: params.dim,
            m,
            m0: 2 * m,
            cap,
            cap0,
            ef_construction: params.ef_construction.max(m),
            level_mult: 1.0 / (m as f64).ln(),
            // Fixed seed: the same inserts give the same graph, which keeps tests and
            // benchmarks repeatable.
            rng: 0x9E37_79B9_7F4A_7C15,
            vectors,
            codes,
            scales,
            ids,
            alive: vec![true; n],
            links0: vec![0; n * (cap0 + 1)],
            upper: Vec::with_capacity(n),
            slot_of,
            entry: 0,
            max_level: 0,
            dead: 0,
            linked: 0,
            scratch: Visited::default(),
        };
        for _ in 0..n {
            let level = graph.random_level();
            graph.upper.push(vec![0; level * (cap + 1)]);
        }
        Some(graph)
    }

    fn node_count(&self) -> usize {
        self.ids.len()
    }

    fn live(&self) -> usize {
        self.slot_of.len()
    }

    fn needs_rebuild(&self) -> bool {
        self.dead > 0 && self.dead * 4 > self.node_count()
    }

    fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    fn code(&self, node: u32) -> &[i8] {
        let start = node as usize * self.dim;
        &self.codes[start..start + self.dim]
    }

    fn probe_of(&self, node: u32) -> Probe {
        Probe { codes: self.code(node).to_vec(), scale: self.scales[node as usize] }
    }

    /// Approximate similarity of `probe` to `node`, from the codes.
    fn similarity(&self, probe: &Probe, node: u32) -> f32 {
        dot_i8(&probe.codes, self.code(node)) as f32 * probe.scale * self.scales[node as usize]
    }

    /// Approximate similarity between two nodes, from the codes.
    fn node_similarity(&self, a: u32, b: u32) -> f32 {
        dot_i8(self.code(a), self.code(b)) as f32 * self.scales[a as usize] * self.scales[b as usize]
    }

    /// Loads one byte from every cache line of each node's code before any is used. The loads
    /// are independent, so their misses overlap instead of being paid one after another
    /// inside the dot products (a stand-in for prefetch instructions, which need `unsafe`).
    fn warm_codes(&self, nodes: &[u32]) {
        let mut sink = 0i32;
        for &node in nodes {
            let code = self.code(node);
            for byte in code.iter().step_by(64).chain(code.last()) {
                sink = sink.wrapping_add(i32::from(*byte));
            }
        }
        std::hint::black_box(sink);
    }

    /// As [`Self::warm_codes`], for the f32 vectors.
    fn warm_vectors(&self, nodes: &[u32]) {
        let mut sink = 0.0f32;
        for &node in nodes {
            let vector = self.vector(node);
            for x in vector.iter().step_by(16).chain(vector.last()) {
                sink += x;
            }
        }
        std::hint::black_box(sink);
    }

    fn is_alive(&self, node: u32) -> bool {
        self.alive.get(node as usize).copied().unwrap_or(false)
    }

    fn links(&self, node: u32, level: usize) -> &[u32] {
        let (row, start, cap) = if level == 0 {
            (&self.links0[..], node as usize * (self.cap0 + 1), self.cap0)
        } else {
            (&self.upper[node as usize][..], (level - 1) * (self.cap + 1), self.cap)
        };
        let count = (row[start] as usize).min(cap);
        &row[start + 1..start + 1 + count]
    }

    fn set_links(&mut self, node: u32, level: usize, links: &[u32]) {
        let (row, start, cap) = if level == 0 {
            (&mut self.links0[..], node as usize * (self.cap0 + 1), self.cap0)
        } else {
            (&mut self.upper[node as usize][..], (level - 1) * (self.cap + 1), self.cap)
        };
        let count = links.len().min(cap);
        row[start] = count as u32;
        row[start + 1..start + 1 + count].copy_from_slice(&links[..count]);
    }

    /// Level for a new node: geometric with ratio 1/m, as in the paper.
    fn random_level(&mut self) -> usize {
        // splitmix64: a dependency-free generator is plenty for drawing levels.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // In (0, 1], so the logarithm is finite.
        let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let level = (-uniform.ln() * self.level_mult).floor();
        (level as usize).min(MAX_LEVEL)
    }

    /// Best-first search of one layer from `entries`; returns up to `ef` nodes, best first.
    /// With `live_only`, tombstones still route the search but are left out of the answer,
    /// and the search keeps going until it has `ef` live nodes or runs out of graph.
    fn search_layer(
        &self,
        probe: &Probe,
        entries: &[Candidate],
        ef: usize,
        level: usize,
        live_only: bool,
        visited: &mut Visited,
    ) -> Vec<Candidate> {
        visited.begin(self.node_count());
        let mut frontier = BinaryHeap::with_capacity(ef * 2);
        let mut found: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(ef + 1);
        for &entry in entries {
            if !visited.first_visit(entry.node) {
                continue;
            }
            frontier.push(entry);
            if !live_only || self.is_alive(entry.node) {
                found.push(Reverse(entry));
                if found.len() > ef {
                    found.pop();
                }
            }
        }
        let mut batch = Vec::with_capacity(self.cap0);
        while let Some(current) = frontier.pop() {
            if found.len() >= ef
                && let Some(Reverse(worst)) = found.peek()
                && current.similarity < worst.similarity
            {
                break;
            }
            batch.clear();
            batch.extend(
                self.links(current.node, level).iter().copied().filter(|&next| visited.first_visit(next)),
            );
            self.warm_codes(&batch);
            for &next in &batch {
                let similarity = self.similarity(probe, next);
                if found.len() >= ef
                    && found.peek().is_some_and(|Reverse(worst)| similarity <= worst.similarity)
                {
                    continue;
                }
                let candidate = Candidate { similarity, node: next };
                frontier.push(candidate);
                if !live_only || self.is_alive(next) {
                    found.push(Reverse(candidate));
                    if found.len() > ef {
                        found.pop();
                    }
                }
            }
        }
        let mut out: Vec<Candidate> = found.into_iter().map(|Reverse(c)| c).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Descends the upper layers greedily to the best entry points for `level`.
    fn descend(&self, probe: &Probe, level: usize, visited: &mut Visited) -> Vec<Candidate> {
        let mut entries =
            vec![Candidate { similarity: self.similarity(probe, self.entry), node: self.entry }];
        for layer in (level + 1..=self.max_level).rev() {
            let closer = self.search_layer(probe, &entries, 1, layer, false, visited);
            if !closer.is_empty() {
                entries = closer;
            }
        }
        entries
    }

    fn nearest(&self, query: &[f32], ef: usize, visited: &mut Visited) -> Option<(u64, f32)> {
        if self.slot_of.is_empty() {
            return None;
        }
        let probe = Probe::new(query);
        let entries = self.descend(&probe, 0, visited);
        let found = self.search_layer(&probe, &entries, ef, 0, true, visited);
        // Codes order candidates only to about 1e-3, so the best few are re-ranked exactly.
        let finalists: Vec<u32> = found.iter().take(RERANK).map(|c| c.node).collect();
        self.warm_vectors(&finalists);
        finalists
            .iter()
            .map(|&node| (self.ids[node as usize], dot(query, self.vector(node))))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The paper's neighbour-selection heuristic: keep a candidate only if it is closer to the
    /// new node than to every neighbour already kept. Links then point in diverse directions,
    /// which keeps the graph navigable where plain nearest-m links form isolated clusters.
    fn select_neighbours(&self, candidates: &[Candidate], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for candidate in candidates {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|&k| self.node_similarity(candidate.node, k) < candidate.similarity) {
                kept.push(candidate.node);
            }
        }
        kept
    }

    /// Adds the reverse link `from -> to`. A full row is pruned with the heuristic back to its
    /// budget, which frees the slack slots so the next several links need no pruning.
    fn link(&mut self, from: u32, to: u32, level: usize) {
        let (cap, budget) = if level == 0 { (self.cap0, self.m0) } else { (self.cap, self.m) };
        let current = self.links(from, level);
        if current.contains(&to) {
            return;
        }
        if current.len() < cap {
            let mut links = current.to_vec();
            links.push(to);
            self.set_links(from, level, &links);
            return;
        }
        let mut candidates: Vec<Candidate> = current
            .iter()
            .chain(std::iter::once(&to))
            // Links to tombstones are the first to go: they only matter until the next rebuild.
            .filter(|&&node| self.is_alive(node))
            .map(|&node| Candidate { similarity: self.node_similarity(from, node), node })
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let kept = self.select_neighbours(&candidates, budget);
        self.set_links(from, level, &kept);
    }

    fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        let node = u32::try_from(self.node_count()).map_err(|_| IndexError::CapacityExceeded)?;
        // Replacing leaves the old node as a tombstone: its links keep routing searches.
        if let Some(old) = self.slot_of.remove(&id) {
            self.bury(old);
        }
        let level = self.random_level();
        self.vectors.extend_from_slice(vector);
        let scale = quantise_into(vector, &mut self.codes);
        self.scales.push(scale);
        self.ids.push(id);
        self.alive.push(true);
        self.links0.resize(self.links0.len() + self.cap0 + 1, 0);
        self.upper.push(vec![0; level * (self.cap + 1)]);
        self.slot_of.insert(id, node);
        self.link_node(node);
        Ok(())
    }

    fn level_of(&self, node: u32) -> usize {
        self.upper[node as usize].len() / (self.cap + 1)
    }

    /// Connects a stored node (the next unlinked one) into the graph, as in the paper's insert.
    fn link_node(&mut self, node: u32) {
        let level = self.level_of(node);
        self.linked += 1;
        if self.linked == 1 {
            self.entry = node;
            self.max_level = level;
            return;
        }
        let mut visited = std::mem::take(&mut self.scratch);
        let probe = self.probe_of(node);
        let mut entries = self.descend(&probe, level, &mut visited);
        for layer in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(&probe, &entries, self.ef_construction, layer, false, &mut visited);
            let live: Vec<Candidate> =
                found.iter().copied().filter(|c| self.is_alive(c.node) && c.node != node).collect();
            let neighbours = self.select_neighbours(&live, self.m);
            self.set_links(node, layer, &neighbours);
            for &neighbour in &neighbours {
                self.link(neighbour, node, layer);
            }
            if !found.is_empty() {
                entries = found;
            }
        }
        self.scratch = visited;
        if level > self.max_level {
            self.max_level = level;
            self.entry = node;
        }
    }

    fn bury(&mut self, node: u32) {
        if let Some(alive) = self.alive.get_mut(node as usize)
            && *alive
        {
            *alive = false;
            self.dead += 1;
        }
    }

    fn remove(&mut self, id: u64) -> bool {
        match self.slot_of.remove(&id) {
            Some(node) => {
                self.bury(node);
                true
            }
            None => false,
        }
    }

    fn replay(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                // Only a full graph fails an insert; the entry then stays out, like any miss.
                Op::Insert(id, vector) => {
                    if self.insert(id, &vector).is_err() {
                        self.remove(id);
                    }
                }
                Op::Remove(id) => {
                    self.remove(id);
                }
            }
        }
    }

    fn live_entries(&self) -> (Vec<u64>, Vec<f32>) {
        let mut ids = Vec::with_capacity(self.live());
        let mut vectors = Vec::with_capacity(self.live() * self.dim);
        for (node, &id) in self.ids.iter().enumerate() {
            if self.alive[node] {
                ids.push(id);
                vectors.extend_from_slice(&self.vectors[node * self.dim..(node + 1) * self.dim]);
            }
        }
        (ids, vectors)
    }

    fn to_flat(&self) -> Flat {
        let (ids, vectors) = self.live_entries();
        let mut slot_of = HashMap::with_capacity(ids.len());
        for (slot, &id) in ids.iter().enumerate() {
            slot_of.insert(id, slot);
        }
        Flat { dim: self.dim, vectors, ids, slot_of }
    }

    /// Bytes in use (lengths, not capacities: spare capacity is mostly untouched pages).
    fn approx_bytes(&self) -> usize {
        let upper: usize =
            self.upper.iter().map(|row| row.len() * size_of::<u32>() + size_of::<Vec<u32>>()).sum();
        self.vectors.len() * size_of::<f32>()
            + self.codes.len()
            + self.scales.len() * size_of::<f32>()
            + self.ids.len() * size_of::<u64>()
            + self.alive.len()
            + self.links0.len() * size_of::<u32>()
            + upper
            + map_bytes(&self.slot_of)
            + self.scratch.approx_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Small vectors keep the graph tests quick in unoptimised builds; the benchmark covers 384.
    const DIM: usize = 32;

    fn normalise(mut v: Vec<f32>) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    /// Gaussian components make the direction uniform on the sphere.
    fn gaussian(rng: &mut StdRng) -> f32 {
        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    fn random_unit(rng: &mut StdRng, dim: usize) -> Vec<f32> {
        normalise((0..dim).map(|_| gaussian(rng)).collect())
    }

    /// A stored vector plus noise of relative size `scale`: a paraphrased prompt.
    fn near(rng: &mut StdRng, base: &[f32], scale: f32) -> Vec<f32> {
        let per_dim = scale / (base.len() as f32).sqrt();
        normalise(base.iter().map(|x| x + per_dim * gaussian(rng)).collect())
    }

    fn params(dim: usize, threshold: usize) -> IndexParams {
        IndexParams { dim, hnsw_threshold: threshold, background_build: false, ..IndexParams::default() }
    }

    fn exact(dim: usize) -> VectorIndex {
        VectorIndex::new(params(dim, usize::MAX))
    }

    fn fill(index: &VectorIndex, rng: &mut StdRng, n: u64, dim: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|id| {
                let v = random_unit(rng, dim);
                index.insert(id, &v).unwrap();
                v
            })
            .collect()
    }

    #[test]
    fn every_entry_finds_itself_in_a_graph_built_in_the_background() {
        let mut rng = StdRng::seed_from_u64(21);
        let index = VectorIndex::new(IndexParams { background_build: true, ..params(64, 512) });
        let vectors = fill(&index, &mut rng, 1500, 64);
        index.wait_for_build();
        assert_eq!(index.stats().mode, IndexMode::Hnsw);
        let missed: Vec<usize> = (0..vectors.len())
            .filter(|&id| index.nearest(&vectors[id], 0.999).map(|(found, _)| found) != Some(id as u64))
            .collect();
        assert!(
            missed.len() <= 15,
            "{} of 1500 missed, e.g. {:?}",
            missed.len(),
            &missed[..missed.len().min(10)]
        );
        assert!(!missed.contains(&0), "the first entry is found: {missed:?}");
    }

    #[test]
    fn dot_matches_naive_sum() {
        let mut rng = StdRng::seed_from_u64(1);
        for len in [0, 1, 7, 31, 32, 33, 100, 384] {
            let a: Vec<f32> = (0..len).map(|_| gaussian(&mut rng)).collect();
            let b: Vec<f32> = (0..len).map(|_| gaussian(&mut rng)).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-3, "len {len}");
        }
    }

    #[test]
    fn codes_track_exact_similarity() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..200 {
            let a = random_unit(&mut rng, 384);
            let noise = rng.random_range(0.0..3.0);
            let b = near(&mut rng, &a, noise);
            let (pa, pb) = (Probe::new(&a), Probe::new(&b));
            let approx = dot_i8(&pa.codes, &pb.codes) as f32 * pa.scale * pb.scale;
            assert!((approx - dot(&a, &b)).abs() < 5e-3, "{approx} vs {}", dot(&a, &b));
        }
        let zero = Probe::new(&[0.0; 8]);
        assert_eq!(zero.scale, 0.0);
        assert!(zero.codes.iter().all(|&c| c == 0));
    }

    #[test]
    fn brute_force_nearest_is_exact() {
        let mut rng = StdRng::seed_from_u64(2);
        let index = exact(DIM);
        let stored = fill(&index, &mut rng, 500, DIM);
        assert_eq!(index.stats().mode, IndexMode::BruteForce);
        for _ in 0..50 {
            let q = random_unit(&mut rng, DIM);
            let (want_id, want_sim) = stored
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, dot(&q, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let (id, sim) = index.nearest(&q, -1.0).unwrap();
            assert_eq!(id, want_id);
            assert!((sim - want_sim).abs() < 1e-6);
        }
        // A stored vector finds itself with similarity ~1.
        let (id, sim) = index.nearest(&stored[123], 0.99).unwrap();
        assert_eq!(id, 123);
        assert!((sim - 1.0).abs() < 1e-5);
    }

    #[test]
    fn brute_force_threshold_filters() {
        let index = exact(3);
        index.insert(1, &[1.0, 0.0, 0.0]).unwrap();
        let q = normalise(vec![0.8, 0.6, 0.0]);
        assert_eq!(index.nearest(&q, 0.9), None);
        let (id, sim) = index.nearest(&q, 0.8).unwrap();
        assert_eq!(id, 1);
        assert!((sim - 0.8).abs() < 1e-6);
        assert_eq!(index.nearest(&q, f32::NAN), None);
    }

    #[test]
    fn brute_force_remove() {
        let mut rng = StdRng::seed_from_u64(3);
        let index = exact(DIM);
        let stored = fill(&index, &mut rng, 20, DIM);
        assert!(index.remove(0));
        assert!(!index.remove(0));
        assert!(!index.remove(999));
        assert_eq!(index.len(), 19);
        // The removed vector's own query now lands elsewhere.
        assert_ne!(index.nearest(&stored[0], -1.0).unwrap().0, 0);
        // Swap-remove moved the last entry into slot 0; it must still be found as itself.
        assert_eq!(index.nearest(&stored[19], 0.99).unwrap().0, 19);
        for id in 1..20 {
            assert!(index.remove(id));
        }
        assert!(index.is_empty());
        assert_eq!(index.nearest(&stored[5], -1.0), None);
    }

    #[test]
    fn brute_force_replace_same_id() {
        let index = exact(3);
        index.insert(7, &[1.0, 0.0, 0.0]).unwrap();
        index.insert(7, &[0.0, 1.0, 0.0]).unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index.nearest(&[1.0, 0.0, 0.0], 0.5), None);
        assert_eq!(index.nearest(&[0.0, 1.0, 0.0], 0.5), Some((7, 1.0)));
    }

    #[test]
    fn rejects_wrong_dimension_and_non_finite() {
        let index = exact(3);
        assert_eq!(index.insert(1, &[1.0, 0.0]), Err(IndexError::DimensionMismatch { expected: 3, got: 2 }));
        assert_eq!(index.insert(1, &[1.0, f32::NAN, 0.0]), Err(IndexError::NonFinite { position: 1 }));
        assert_eq!(index.insert(1, &[f32::INFINITY, 0.0, 0.0]), Err(IndexError::NonFinite { position: 0 }));
        assert!(index.is_empty());
        index.insert(1, &[1.0, 0.0, 0.0]).unwrap();
        assert_eq!(index.nearest(&[1.0, 0.0], -1.0), None);
        assert_eq!(index.nearest(&[f32::NAN, 0.0, 0.0], -1.0), None);
        let zero_dim = exact(0);
        assert!(zero_dim.insert(1, &[]).is_err());
        assert_eq!(zero_dim.nearest(&[], -1.0), None);
    }

    /// recall@1 of `index` against an exact scan over the same entries.
    fn recall(index: &VectorIndex, oracle: &VectorIndex, queries: &[Vec<f32>]) -> f64 {
        let hits = queries
            .iter()
            .filter(|q| index.nearest(q, -1.0).map(|r| r.0) == oracle.nearest(q, -1.0).map(|r| r.0))
            .count();
        hits as f64 / queries.len() as f64
    }

    /// Builds a graph over `n` random vectors plus an exact twin, and queries of both kinds:
    /// stored vectors plus noise (a paraphrased prompt; the cache's real case) and fresh
    /// random vectors.
    fn recall_fixture(
        seed: u64,
        n: u64,
        dim: usize,
    ) -> (VectorIndex, VectorIndex, Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let index = VectorIndex::new(params(dim, 64));
        let oracle = exact(dim);
        let mut stored = Vec::new();
        for id in 0..n {
            let v = random_unit(&mut rng, dim);
            index.insert(id, &v).unwrap();
            oracle.insert(id, &v).unwrap();
            stored.push(v);
        }
        assert_eq!(index.stats().mode, IndexMode::Hnsw);
        assert_eq!(index.stats().graph_nodes, n as usize);
        let noisy = (0..300)
            .map(|_| {
                let base = &stored[rng.random_range(0..stored.len())];
                near(&mut rng, base, 0.5)
            })
            .collect();
        let random = (0..300).map(|_| random_unit(&mut rng, dim)).collect();
        (index, oracle, noisy, random)
    }

    #[test]
    fn hnsw_recall_at_2k() {
        let (index, oracle, noisy, random) = recall_fixture(4, 2000, 64);
        let noisy_recall = recall(&index, &oracle, &noisy);
        let random_recall = recall(&index, &oracle, &random);
        assert!(noisy_recall >= 0.95, "noisy-query recall {noisy_recall}");
        assert!(random_recall >= 0.95, "random-query recall {random_recall}");
    }

    #[test]
    fn hnsw_never_returns_removed_ids() {
        let mut rng = StdRng::seed_from_u64(5);
        let index = VectorIndex::new(params(DIM, 64));
        let stored = fill(&index, &mut rng, 1000, DIM);
        // Below the rebuild trigger, so every removed id is still a tombstone in the graph.
        let removed: Vec<u64> = (0..1000u64).filter(|id| id.is_multiple_of(5)).collect();
        for &id in &removed {
            assert!(index.remove(id));
        }
        let stats = index.stats();
        assert_eq!(stats.tombstones, removed.len());
        assert_eq!(stats.builds_completed, 1);
        for &id in &removed {
            let (found, _) = index.nearest(&stored[id as usize], -1.0).unwrap();
            assert_ne!(found % 5, 0, "removed id {found} returned");
        }
        for _ in 0..200 {
            let (found, _) = index.nearest(&random_unit(&mut rng, DIM), -1.0).unwrap();
            assert_ne!(found % 5, 0, "removed id {found} returned");
        }
        // Live entries are still found as themselves, with their exact similarity.
        for id in (0..1000).filter(|id| id % 5 != 0).step_by(7) {
            let (found, similarity) = index.nearest(&stored[id as usize], 0.99).unwrap();
            assert_eq!(found, id as u64);
            assert!((similarity - dot(&stored[id as usize], &stored[id as usize])).abs() < 1e-6);
        }
    }

    #[test]
    fn hnsw_replace_same_id() {
        let mut rng = StdRng::seed_from_u64(6);
        let index = VectorIndex::new(params(DIM, 64));
        let stored = fill(&index, &mut rng, 300, DIM);
        let replacement = random_unit(&mut rng, DIM);
        index.insert(42, &replacement).unwrap();
        assert_eq!(index.len(), 300);
        assert_eq!(index.stats().tombstones, 1);
        assert_eq!(index.nearest(&replacement, 0.99).unwrap().0, 42);
        assert_ne!(index.nearest(&stored[42], -1.0).unwrap().0, 42);
    }

    #[test]
    fn hnsw_rebuilds_after_many_removals() {
        let mut rng = StdRng::seed_from_u64(7);
        let index = VectorIndex::new(params(DIM, 64));
        let mut stored = fill(&index, &mut rng, 1200, DIM);
        assert_eq!(index.stats().builds_completed, 1);
        // Remove two thirds of the original entries in waves, adding some between waves.
        let mut next_id = 1200u64;
        for wave in 0..4u64 {
            for id in (0..1200u64).filter(|id| id % 4 == wave && id % 3 != 0) {
                assert!(index.remove(id));
            }
            for _ in 0..40 {
                let v = random_unit(&mut rng, DIM);
                index.insert(next_id, &v).unwrap();
                stored.push(v);
                next_id += 1;
            }
        }
        let stats = index.stats();
        assert_eq!(stats.mode, IndexMode::Hnsw);
        assert!(stats.builds_completed >= 3, "{stats:?}");
        assert!(stats.tombstones * 4 <= stats.graph_nodes, "{stats:?}");
        let live: Vec<u64> = (0..1200u64).filter(|id| id.is_multiple_of(3)).chain(1200..next_id).collect();
        assert_eq!(index.len(), live.len());
        for &id in &live {
            assert_eq!(index.nearest(&stored[id as usize], 0.99).unwrap().0, id);
        }
        for id in (0..1200u64).filter(|id| id % 3 != 0) {
            let found = index.nearest(&stored[id as usize], -1.0).unwrap().0;
            assert!(found.is_multiple_of(3) || found >= 1200, "removed id {found} returned");
        }
    }

    #[test]
    fn switches_between_modes_both_ways() {
        let mut rng = StdRng::seed_from_u64(8);
        let index = VectorIndex::new(params(DIM, 100));
        let stored = fill(&index, &mut rng, 99, DIM);
        assert_eq!(index.stats().mode, IndexMode::BruteForce);
        let extra = random_unit(&mut rng, DIM);
        index.insert(99, &extra).unwrap();
        assert_eq!(index.stats().mode, IndexMode::Hnsw);
        // Hysteresis: still a graph between threshold/2 and threshold.
        for id in 0..50 {
            index.remove(id);
        }
        assert_eq!(index.stats().mode, IndexMode::Hnsw);
        index.remove(50);
        let stats = index.stats();
        assert_eq!(stats.mode, IndexMode::BruteForce);
        assert_eq!(stats.live, 49);
        for id in 51..99 {
            assert_eq!(index.nearest(&stored[id as usize], 0.99).unwrap().0, id);
        }
        assert_eq!(index.nearest(&extra, 0.99).unwrap().0, 99);
        // Back up across the threshold with fresh ids.
        for id in 1000..1051u64 {
            index.insert(id, &random_unit(&mut rng, DIM)).unwrap();
        }
        assert_eq!(index.stats().mode, IndexMode::Hnsw);
        assert_eq!(index.len(), 100);
        assert_eq!(index.nearest(&extra, 0.99).unwrap().0, 99);
        assert!(index.approx_bytes() > index.len() * DIM * size_of::<f32>());
    }

    #[test]
    fn background_build_replays_concurrent_writes() {
        let mut rng = StdRng::seed_from_u64(9);
        let index = Arc::new(VectorIndex::new(IndexParams { background_build: true, ..params(DIM, 400) }));
        let mut stored = fill(&index, &mut rng, 600, DIM);
        // Writes racing the build that the threshold crossing started.
        for id in 0..100 {
            index.remove(id);
        }
        for id in 600..700u64 {
            let v = random_unit(&mut rng, DIM);
            index.insert(id, &v).unwrap();
            stored.push(v);
        }
        let reader = {
            let index = Arc::clone(&index);
            let queries: Vec<Vec<f32>> = stored[100..200].to_vec();
            std::thread::spawn(move || {
                for q in &queries {
                    assert!(index.nearest(q, 0.99).is_some());
                }
            })
        };
        reader.join().unwrap();
        index.wait_for_build();
        let stats = index.stats();
        assert_eq!(stats.mode, IndexMode::Hnsw);
        assert!(!stats.build_pending);
        assert_eq!(stats.live, 600);
        for id in 100..700u64 {
            assert_eq!(index.nearest(&stored[id as usize], 0.99).unwrap().0, id);
        }
        for id in 0..100u64 {
            assert!(index.nearest(&stored[id as usize], -1.0).unwrap().0 >= 100);
        }
    }

    #[test]
    fn concurrent_readers_and_writers() {
        let index = Arc::new(VectorIndex::new(IndexParams { background_build: true, ..params(DIM, 128) }));
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let index = Arc::clone(&index);
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(100 + t);
                    for i in 0..600u64 {
                        let id = t * 1_000_000 + i;
                        index.insert(id, &random_unit(&mut rng, DIM)).unwrap();
                        if i.is_multiple_of(3) {
                            index.remove(id - i / 2);
                        }
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..2u64)
            .map(|t| {
                let index = Arc::clone(&index);
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(200 + t);
                    for _ in 0..600 {
                        let _ = index.nearest(&random_unit(&mut rng, DIM), 0.0);
                    }
                })
            })
            .collect();
        for handle in writers.into_iter().chain(readers) {
            handle.join().unwrap();
        }
        index.wait_for_build();
        let stats = index.stats();
        assert_eq!(stats.mode, IndexMode::Hnsw);
        // Each writer inserted 600 ids and removed 200 distinct ones (`id - i / 2`, i % 3 == 0).
        assert_eq!(index.len(), 2 * (600 - 200));
    }

    #[test]
    fn dropping_index_during_build_is_fine() {
        let mut rng = StdRng::seed_from_u64(10);
        let index = VectorIndex::new(IndexParams { background_build: true, ..params(DIM, 300) });
        fill(&index, &mut rng, 400, DIM);
        drop(index);
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<VectorIndex>();
        assert_send_sync::<IndexError>();
    }
}
