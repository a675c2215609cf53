//! The ports the pipeline talks to. Concrete implementations live in other crates; only the
//! binary knows them all.

pub mod cache;
pub mod limiter;
pub mod provider;
pub mod quota;
pub mod semantic;
pub mod store;
pub mod usage;

pub use cache::{
    CacheError, CacheJournal, CacheKey, CachePut, CacheStats, CacheStore, CachedResponse, JournaledEntry,
    PurgeFilter,
};
pub use limiter::{
    Adjustment, Admission, BudgetPeriod, Clock, LimitError, LimitKind, LimitStatus, ManualClock, RateLimiter,
    Reservation, SystemClock,
};
pub use provider::{
    CallCtx, ChunkStream, CompletionStream, ProviderAdapter, ProviderError, ProviderErrorKind,
    parse_retry_after,
};
pub use quota::{ProviderQuota, QuotaCell};
pub use semantic::{JournalRecord, SemanticEntry, SemanticHit, SemanticJournal, SemanticPut, SemanticStore};
