//! The store ports: tenancy records, keys, credentials and the audit trail. Two
//! implementations (SQLite, PostgreSQL) pass one contract suite.
//!
//! Every tenant-scoped method takes the [`TenantId`] first. In PostgreSQL it runs in a
//! transaction that sets the tenant for row-level security before any statement, so a bug in a
//! `WHERE` clause still cannot reach another tenant's rows. Methods that must run before a
//! tenant is known ([`AuthStore`]) or across tenants (super-admin, key rotation) are few and
//! named as such.
//!
//! Every mutating admin method writes its [`crate::tenancy::AuditRecord`] in the same
//! transaction as the change, so there is no change without its record.

use async_trait::async_trait;
use futures::stream::BoxStream;
use time::OffsetDateTime;

use crate::JsonMap;
use crate::cache_rule::CacheRule;
use crate::limits::{LimitPolicy, PricingPolicy};
use crate::tenancy::{
    Actor, ApiKey, AuditRecord, CredentialId, KeyAuth, KeyHash, KeyId, KeyScope, Member, MemberId,
    MemberRole, Page, PageRequest, Project, ProjectId, ProviderCredential, SealedSecret, Tenant, TenantId,
    TenantPolicy,
};

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist (or belongs to another tenant: the two are indistinguishable).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken (the message names the field and value).
    #[error("{0}")]
    Conflict(String),
    /// A value the store cannot accept (the message names the field).
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached or timed out; retrying later may work.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a bug, a corrupt row).
    #[error("store error: {0}")]
    Internal(String),
}

// === inputs ===

#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub name: String,
    pub policy: TenantPolicy,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub policy: Option<TenantPolicy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewProject {
    pub name: String,
    /// The project's limits from the start (`None`: no limits).
    pub limits: Option<LimitPolicy>,
    /// The project's cache rule (empty: inherit the tenant's).
    pub cache: CacheRule,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectPatch {
    pub name: Option<String>,
    /// A new cache rule (replacing the old one whole).
    pub cache: Option<CacheRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMember {
    pub name: String,
    pub role: MemberRole,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberPatch {
    pub name: Option<String>,
    pub role: Option<MemberRole>,
}

/// A key to store. The caller generated the secret and hashed it; the store never sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    pub id: KeyId,
    pub project_id: ProjectId,
    pub owner_id: MemberId,
    pub name: String,
    pub prefix: String,
    pub hash: KeyHash,
    pub scopes: Vec<KeyScope>,
    pub allowed_models: Option<Vec<String>>,
    /// Deployment tags the key is restricted to (empty: no restriction of its own).
    pub allowed_tags: Vec<String>,
    pub metadata: JsonMap,
    pub expires_at: Option<OffsetDateTime>,
    /// The key's limits from the start (`None`: no limits).
    pub limits: Option<LimitPolicy>,
    /// The key's cache rule (empty: inherit the project's).
    pub cache: CacheRule,
}

/// Changes to a key. `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub allowed_models: Option<Option<Vec<String>>>,
    /// New tag restriction; `Some(vec![])` lifts it.
    pub allowed_tags: Option<Vec<String>>,
    pub metadata: Option<JsonMap>,
    pub expires_at: Option<Option<OffsetDateTime>>,
    /// A new cache rule (replacing the old one whole).
    pub cache: Option<CacheRule>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyFilter {
    pub project_id: Option<ProjectId>,
    /// Include revoked keys (default: only live ones).
    pub include_revoked: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCredential {
    pub id: CredentialId,
    pub provider: String,
    pub name: String,
    pub masked: String,
    pub sealed: SealedSecret,
}

/// A sealed credential as the key-rotation job sees it (across tenants).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedCredential {
    pub tenant_id: TenantId,
    pub id: CredentialId,
    pub provider: String,
    pub sealed: SealedSecret,
}

/// A change other nodes must hear about to drop cached state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A key was updated, revoked or deleted.
    Key(KeyId),
    /// A tenant's policy, members or existence changed (drop everything cached for it).
    Tenant(TenantId),
    /// A tenant's provider credentials changed.
    Credentials(TenantId),
}

// === ports ===

/// The narrow pre-tenant path used by authentication on every (cold) request.
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    /// The key with this hash and what authentication needs, whether or not it is expired or
    /// revoked (the caller decides and says which). `None` if no key has this hash.
    async fn authenticate_key(&self, hash: &KeyHash) -> Result<Option<KeyAuth>, StoreError>;

    /// Records when keys were last used. Called in batches from a background task, never on
    /// the request path. Unknown ids are ignored.
    async fn touch_keys(&self, used: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Admin CRUD. Tenant-scoped methods take the tenant first and only ever see its rows.
#[async_trait]
pub trait AdminStore: Send + Sync + 'static {
    // --- tenants (create/list/delete are super-admin operations) ---
    async fn create_tenant(&self, new: NewTenant, actor: &Actor) -> Result<Tenant, StoreError>;
    async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>, StoreError>;
    async fn get_tenant(&self, tenant: TenantId) -> Result<Tenant, StoreError>;
    async fn update_tenant(
        &self,
        tenant: TenantId,
        patch: TenantPatch,
        actor: &Actor,
    ) -> Result<Tenant, StoreError>;
    /// Deletes the tenant and everything it owns.
    async fn delete_tenant(&self, tenant: TenantId, actor: &Actor) -> Result<(), StoreError>;

    // --- projects ---
    async fn create_project(
        &self,
        tenant: TenantId,
        new: NewProject,
        actor: &Actor,
    ) -> Result<Project, StoreError>;
    async fn list_projects(&self, tenant: TenantId, page: PageRequest) -> Result<Page<Project>, StoreError>;
    async fn get_project(&self, tenant: TenantId, id: ProjectId) -> Result<Project, StoreError>;
    async fn update_project(
        &self,
        tenant: TenantId,
        id: ProjectId,
        patch: ProjectPatch,
        actor: &Actor,
    ) -> Result<Project, StoreError>;
    /// Fails with `Conflict` while the project still has live keys.
    async fn delete_project(&self, tenant: TenantId, id: ProjectId, actor: &Actor) -> Result<(), StoreError>;

    // --- members ---
    async fn create_member(
        &self,
        tenant: TenantId,
        new: NewMember,
        actor: &Actor,
    ) -> Result<Member, StoreError>;
    async fn list_members(&self, tenant: TenantId, page: PageRequest) -> Result<Page<Member>, StoreError>;
    async fn get_member(&self, tenant: TenantId, id: MemberId) -> Result<Member, StoreError>;
    async fn update_member(
        &self,
        tenant: TenantId,
        id: MemberId,
        patch: MemberPatch,
        actor: &Actor,
    ) -> Result<Member, StoreError>;
    /// Also revokes the member's keys.
    async fn delete_member(&self, tenant: TenantId, id: MemberId, actor: &Actor) -> Result<(), StoreError>;

    // --- keys ---
    async fn create_key(&self, tenant: TenantId, new: NewKey, actor: &Actor) -> Result<ApiKey, StoreError>;
    async fn list_keys(
        &self,
        tenant: TenantId,
        filter: KeyFilter,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, StoreError>;
    async fn get_key(&self, tenant: TenantId, id: KeyId) -> Result<ApiKey, StoreError>;
    async fn update_key(
        &self,
        tenant: TenantId,
        id: KeyId,
        patch: KeyPatch,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError>;
    /// Idempotent: revoking a revoked key returns it unchanged.
    async fn revoke_key(&self, tenant: TenantId, id: KeyId, actor: &Actor) -> Result<ApiKey, StoreError>;
    /// Atomically creates `new` and revokes `old` (which must be live).
    async fn rotate_key(
        &self,
        tenant: TenantId,
        old: KeyId,
        new: NewKey,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError>;

    // --- limits and pricing ---
    // Each replaces the whole policy (an empty one clears it), writes a `*.limits` /
    // `tenant.pricing` audit record whose before/after are the policies, and announces a change
    // so every node's authentication cache drops the principals that carried the old policy.
    // The store checks only that the policy is storable; the admin service validates it.

    /// Announces `Change::Tenant`.
    async fn set_tenant_limits(
        &self,
        tenant: TenantId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<Tenant, StoreError>;
    /// Announces `Change::Tenant`.
    async fn set_tenant_pricing(
        &self,
        tenant: TenantId,
        pricing: PricingPolicy,
        actor: &Actor,
    ) -> Result<Tenant, StoreError>;
    /// Announces `Change::Tenant`: every key of the tenant may be in the project, and dropping the
    /// tenant's cached keys is cheaper than listing the project's.
    async fn set_project_limits(
        &self,
        tenant: TenantId,
        id: ProjectId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<Project, StoreError>;
    /// Announces `Change::Key`.
    async fn set_key_limits(
        &self,
        tenant: TenantId,
        id: KeyId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError>;

    // --- provider credentials ---
    async fn create_credential(
        &self,
        tenant: TenantId,
        new: NewCredential,
        actor: &Actor,
    ) -> Result<ProviderCredential, StoreError>;
    /// Listed without their sealed secrets.
    async fn list_credentials(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<ProviderCredential>, StoreError>;
    async fn get_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
    ) -> Result<ProviderCredential, StoreError>;
    async fn delete_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
        actor: &Actor,
    ) -> Result<(), StoreError>;
    /// The tenant's credentials with their sealed secrets, for routing (cached by the caller).
    async fn sealed_credentials(&self, tenant: TenantId) -> Result<Vec<ProviderCredential>, StoreError>;

    // --- master-key rotation (operator only, across tenants) ---
    async fn all_sealed_credentials(&self) -> Result<Vec<SealedCredential>, StoreError>;
    /// Replaces one credential's ciphertext (re-encrypted under a new master key).
    async fn reseal_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
        sealed: SealedSecret,
        actor: &Actor,
    ) -> Result<(), StoreError>;

    // --- audit ---
    /// Newest first.
    async fn list_audit(&self, tenant: TenantId, page: PageRequest) -> Result<Page<AuditRecord>, StoreError>;

    /// Records an admin action that changes no store record (a response-cache purge), so the
    /// audit trail lists it with the others: `action` as `<resource type>.<verb>`, what it did
    /// in `details` (the record's `after`). `NotFound` if the tenant does not exist.
    async fn record_action(
        &self,
        tenant: TenantId,
        actor: &Actor,
        action: &'static str,
        resource_id: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError>;
}

/// A connected store as the gateway holds it: its ports, each behind an `Arc`.
#[derive(Clone)]
pub struct Store {
    pub auth: std::sync::Arc<dyn AuthStore>,
    pub admin: std::sync::Arc<dyn AdminStore>,
    pub changes: std::sync::Arc<dyn ChangeFeed>,
    pub usage: std::sync::Arc<dyn crate::ports::usage::UsageStore>,
}

/// Changes made through any node, for cache invalidation. Single-node stores deliver their own
/// changes; PostgreSQL delivers every node's through `LISTEN/NOTIFY`.
pub trait ChangeFeed: Send + Sync + 'static {
    /// A stream of changes from now on. When changes may have been missed (a lagging
    /// subscriber, a reconnect), the stream yields [`ChangeEvent::Resync`] and the subscriber
    /// drops everything it cached.
    fn subscribe(&self) -> BoxStream<'static, ChangeEvent>;
}

/// One item of the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEvent {
    Changed(Change),
    /// Changes may have been missed (lag, reconnect): drop all cached state.
    Resync,
}
