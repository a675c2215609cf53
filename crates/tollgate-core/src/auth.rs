//! Authentication: a presented key → a [`Principal`].
//!
//! The bootstrap key (`TOLLGATE_ADMIN_KEY`) is the gateway's super-admin. Every other key is a
//! tenant's: looked up by its SHA-256 through the store's narrow pre-tenant path, then cached in
//! memory, so a warm request reads no database. The cache is invalidated by the store's change
//! feed (PostgreSQL `LISTEN/NOTIFY` across nodes), so a revoked key stops working on every node
//! within about a second; a time-to-live bounds how stale an entry can get if a change is ever
//! missed. Last-used times are collected in memory and written in batches by a background task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::time::Instant;
use tollgate_types::cache_rule::CacheRule;
use tollgate_types::ports::store::{AuthStore, Change, ChangeEvent};
use tollgate_types::tenancy::{
    KeyAuth, KeyHash, KeyId, KeyScope, MemberId, MemberRole, ProjectId, TenantId, TenantPolicy,
};
use tollgate_types::{ErrorKind, GatewayError};

use crate::limits::ScopeLimits;
use crate::limits::plan::PlanCache;
use crate::metering::{TenantPricing, tenant_pricing};
use crate::secrets::api_key::{hash_key, is_well_formed};

/// How long a cached key may be used without hearing from the store, in case a change
/// notification was lost.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Bound on cached keys; when full, the cache is cleared (cheap, rare, self-healing).
const CACHE_MAX: usize = 100_000;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The bootstrap key: every tenant, every admin route, every model.
    SuperAdmin,
    /// A tenant's key.
    Key(Arc<KeyPrincipal>),
}

/// A tenant key's identity and rights, as cached.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPrincipal {
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub owner_id: MemberId,
    pub role: MemberRole,
    pub scopes: Vec<KeyScope>,
    pub allowed_models: Option<Vec<String>>,
    /// The key's own deployment-tag restriction (empty: none); routing applies it on top of
    /// the tenant's `policy.allowed_tags`.
    pub allowed_tags: Vec<String>,
    pub policy: TenantPolicy,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// Limits set on the key, its project and its tenant.
    pub limits: ScopeLimits,
    /// The tenant's negotiated prices (parsed) and markup.
    pub pricing: Arc<TenantPricing>,
    /// The limit plans of this key, by model alias (derived, built on first use).
    pub plans: PlanCache,
    /// The response-cache rules set on the key and its project (the tenant's is
    /// `policy.cache`).
    pub key_cache: CacheRule,
    pub project_cache: CacheRule,
}

impl From<KeyAuth> for KeyPrincipal {
    fn from(k: KeyAuth) -> Self {
        let (pricing, errors) = tenant_pricing(&k.tenant_pricing);
        for e in errors {
            tracing::warn!(tenant_id = %k.tenant_id.0, error = %e, "a stored tenant price no longer parses; skipped");
        }
        Self {
            key_id: k.key_id,
            tenant_id: k.tenant_id,
            project_id: k.project_id,
            owner_id: k.owner_id,
            role: k.role,
            scopes: k.scopes,
            allowed_models: k.allowed_models,
            allowed_tags: k.allowed_tags,
            policy: k.tenant_policy,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            limits: ScopeLimits { key: k.key_limits, project: k.project_limits, tenant: k.tenant_limits },
            pricing: Arc::new(pricing),
            plans: PlanCache::default(),
            key_cache: k.key_cache,
            project_cache: k.project_cache,
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
impl KeyPrincipal {
    /// An owner's live inference key of `tenant` with nothing restricted or limited: the
    /// fixture tests adjust with struct-update syntax.
    pub fn sample(tenant: TenantId) -> Self {
        Self {
            key_id: KeyId(uuid::Uuid::from_u128(1)),
            tenant_id: tenant,
            project_id: ProjectId(uuid::Uuid::from_u128(3)),
            owner_id: MemberId(uuid::Uuid::from_u128(4)),
            role: MemberRole::Owner,
            scopes: vec![KeyScope::Inference],
            allowed_models: None,
            allowed_tags: Vec::new(),
            policy: TenantPolicy::default(),
            expires_at: None,
            revoked_at: None,
            limits: ScopeLimits::default(),
            pricing: Arc::default(),
            plans: PlanCache::default(),
            key_cache: CacheRule::default(),
            project_cache: CacheRule::default(),
        }
    }
}

impl Principal {
    pub fn has_scope(&self, scope: KeyScope) -> bool {
        match self {
            Principal::SuperAdmin => true,
            Principal::Key(k) => k.scopes.contains(&scope),
        }
    }

    /// The tenant the caller belongs to (`None` for the super-admin).
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Principal::SuperAdmin => None,
            Principal::Key(k) => Some(k.tenant_id),
        }
    }

    /// Whether the caller may call `model`; the error names the model.
    pub fn check_model(&self, model: &str) -> Result<(), GatewayError> {
        match self {
            Principal::Key(k)
                if k.allowed_models.as_ref().is_some_and(|allowed| !allowed.iter().any(|m| m == model)) =>
            {
                Err(GatewayError::new(
                    ErrorKind::Forbidden,
                    format!("The model `{model}` is not allowed for this API key."),
                ))
            }
            _ => Ok(()),
        }
    }
}

struct Cached {
    principal: Arc<KeyPrincipal>,
    fetched: Instant,
}

/// Resolves keys to principals.
pub struct Authenticator {
    bootstrap: KeyHash,
    store: Option<Arc<dyn AuthStore>>,
    cache: RwLock<HashMap<KeyHash, Cached>>,
    used: Mutex<HashMap<KeyId, OffsetDateTime>>,
}

impl Authenticator {
    /// `bootstrap_key` is the super-admin key; without a store only it is accepted.
    pub fn new(bootstrap_key: &str, store: Option<Arc<dyn AuthStore>>) -> Self {
        Self { bootstrap: hash_key(bootstrap_key), store, cache: RwLock::default(), used: Mutex::default() }
    }

    /// The principal for a presented key, or a 401 saying why (unknown, revoked, expired).
    /// Fails closed: a store error is a 503, never an admission.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, GatewayError> {
        let hash = hash_key(presented);
        // Compare digests in constant time: timing reveals nothing about the bootstrap key.
        if bool::from(hash.0.ct_eq(&self.bootstrap.0)) {
            return Ok(Principal::SuperAdmin);
        }
        let invalid = || GatewayError::new(ErrorKind::Unauthenticated, "Invalid API key.");
        if !is_well_formed(presented) {
            return Err(invalid());
        }
        let Some(store) = &self.store else { return Err(invalid()) };
        let principal = match self.cached(&hash) {
            Some(p) => p,
            None => {
                let auth = store.authenticate_key(&hash).await.map_err(|e| {
                    tracing::error!(error = %e, "key lookup failed");
                    GatewayError::new(
                        ErrorKind::Overloaded,
                        "Authentication is temporarily unavailable; retry shortly.",
                    )
                    .with_retry_after(Some(Duration::from_secs(1)))
                })?;
                let Some(auth) = auth else { return Err(invalid()) };
                let p = Arc::new(KeyPrincipal::from(auth));
                self.insert(hash, p.clone());
                p
            }
        };
        let now = OffsetDateTime::now_utc();
        if principal.revoked_at.is_some() {
            return Err(GatewayError::new(ErrorKind::Unauthenticated, "This API key has been revoked."));
        }
        if let Some(exp) = principal.expires_at
            && exp <= now
        {
            return Err(GatewayError::new(ErrorKind::Unauthenticated, "This API key has expired."));
        }
        self.used.lock().insert(principal.key_id, now);
        Ok(Principal::Key(principal))
    }

    fn cached(&self, hash: &KeyHash) -> Option<Arc<KeyPrincipal>> {
        let cache = self.cache.read();
        let entry = cache.get(hash)?;
        (entry.fetched.elapsed() < CACHE_TTL).then(|| entry.principal.clone())
    }

    fn insert(&self, hash: KeyHash, principal: Arc<KeyPrincipal>) {
        let mut cache = self.cache.write();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, Cached { principal, fetched: Instant::now() });
    }

    /// Drops what a change makes stale.
    pub fn apply(&self, event: ChangeEvent) {
        let mut cache = self.cache.write();
        match event {
            ChangeEvent::Resync => cache.clear(),
            ChangeEvent::Changed(Change::Key(id)) => cache.retain(|_, c| c.principal.key_id != id),
            ChangeEvent::Changed(Change::Tenant(t)) => cache.retain(|_, c| c.principal.tenant_id != t),
            ChangeEvent::Changed(Change::Credentials(_)) => {}
        }
    }

    /// Writes the collected last-used times. Called periodically and at shutdown.
    pub async fn flush_usage(&self) {
        let Some(store) = &self.store else { return };
        let batch: Vec<(KeyId, OffsetDateTime)> = self.used.lock().drain().collect();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.touch_keys(&batch).await {
            tracing::warn!(error = %e, keys = batch.len(), "could not record key last-used times; will retry");
            let mut used = self.used.lock();
            for (k, t) in batch {
                used.entry(k).or_insert(t);
            }
        }
    }

    /// Keys cached now (for tests and metrics).
    pub fn cached_keys(&self) -> usize {
        self.cache.read().len()
    }
}
