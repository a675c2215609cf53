//! Row shapes of the SQLite tables and their conversion into the domain records of
//! `tollgate_types::tenancy`. Column lists live next to the structs (as macros, so queries stay
//! `&'static str` literals) so a query and its row type cannot drift apart.

use sqlx::types::Json;
use time::OffsetDateTime;
use tollgate_types::JsonMap;
use tollgate_types::cache_rule::CacheRule;
use tollgate_types::limits::{LimitPolicy, PricingPolicy};
use tollgate_types::ports::store::StoreError;
use tollgate_types::tenancy::{
    Actor, ApiKey, AuditId, AuditRecord, CredentialId, KeyAuth, KeyId, KeyScope, Member, MemberId,
    MemberRole, Project, ProjectId, ProviderCredential, SealedSecret, Tenant, TenantId, TenantPolicy,
};
use uuid::Uuid;

macro_rules! tenant_cols {
    () => {
        "id, name, policy, limits, pricing, created_at, updated_at"
    };
}
macro_rules! project_cols {
    () => {
        "id, tenant_id, name, limits, cache, created_at, updated_at"
    };
}
macro_rules! member_cols {
    () => {
        "id, tenant_id, name, role, created_at, updated_at"
    };
}
macro_rules! key_cols {
    () => {
        "id, tenant_id, project_id, owner_id, name, prefix, scopes, allowed_models, allowed_tags, metadata, \
         limits, cache, expires_at, revoked_at, last_used_at, created_at, updated_at"
    };
}
macro_rules! credential_cols {
    () => {
        "id, tenant_id, provider, name, masked, key_id, ciphertext, created_at, updated_at"
    };
}
macro_rules! audit_cols {
    () => {
        "id, tenant_id, actor, action, resource_type, resource_id, before, after, at"
    };
}
pub(super) use {audit_cols, credential_cols, key_cols, member_cols, project_cols, tenant_cols};

#[derive(sqlx::FromRow)]
pub(super) struct TenantRow {
    id: Uuid,
    name: String,
    policy: Json<TenantPolicy>,
    limits: Json<LimitPolicy>,
    pricing: Json<PricingPolicy>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        Tenant {
            id: TenantId(r.id),
            name: r.name,
            policy: r.policy.0,
            limits: r.limits.0,
            pricing: r.pricing.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ProjectRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    limits: Json<LimitPolicy>,
    cache: Json<CacheRule>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Self {
        Project {
            id: ProjectId(r.id),
            tenant_id: TenantId(r.tenant_id),
            name: r.name,
            limits: r.limits.0,
            cache: r.cache.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct MemberRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    role: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

fn role(s: &str) -> Result<MemberRole, StoreError> {
    s.parse().map_err(StoreError::Internal)
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> Result<Self, StoreError> {
        Ok(Member {
            id: MemberId(r.id),
            tenant_id: TenantId(r.tenant_id),
            name: r.name,
            role: role(&r.role)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    id: Uuid,
    tenant_id: Uuid,
    project_id: Uuid,
    owner_id: Uuid,
    name: String,
    prefix: String,
    scopes: Json<Vec<KeyScope>>,
    allowed_models: Option<Json<Vec<String>>>,
    allowed_tags: Json<Vec<String>>,
    metadata: Json<JsonMap>,
    limits: Json<LimitPolicy>,
    cache: Json<CacheRule>,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    last_used_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<KeyRow> for ApiKey {
    fn from(r: KeyRow) -> Self {
        ApiKey {
            id: KeyId(r.id),
            tenant_id: TenantId(r.tenant_id),
            project_id: ProjectId(r.project_id),
            owner_id: MemberId(r.owner_id),
            name: r.name,
            prefix: r.prefix,
            scopes: r.scopes.0,
            allowed_models: r.allowed_models.map(|j| j.0),
            allowed_tags: r.allowed_tags.0,
            metadata: r.metadata.0,
            limits: r.limits.0,
            cache: r.cache.0,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyAuthRow {
    id: Uuid,
    tenant_id: Uuid,
    project_id: Uuid,
    owner_id: Uuid,
    /// `NULL` when the owner was deleted (its keys were revoked then).
    role: Option<String>,
    scopes: Json<Vec<KeyScope>>,
    allowed_models: Option<Json<Vec<String>>>,
    allowed_tags: Json<Vec<String>>,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    policy: Json<TenantPolicy>,
    key_limits: Json<LimitPolicy>,
    project_limits: Json<LimitPolicy>,
    tenant_limits: Json<LimitPolicy>,
    tenant_pricing: Json<PricingPolicy>,
    key_cache: Json<CacheRule>,
    project_cache: Json<CacheRule>,
}

impl TryFrom<KeyAuthRow> for KeyAuth {
    type Error = StoreError;
    fn try_from(r: KeyAuthRow) -> Result<Self, StoreError> {
        Ok(KeyAuth {
            key_id: KeyId(r.id),
            tenant_id: TenantId(r.tenant_id),
            project_id: ProjectId(r.project_id),
            owner_id: MemberId(r.owner_id),
            // A key whose owner is gone was revoked with it; the least role is the safe answer.
            role: r.role.as_deref().map(role).transpose()?.unwrap_or(MemberRole::Viewer),
            scopes: r.scopes.0,
            allowed_models: r.allowed_models.map(|j| j.0),
            allowed_tags: r.allowed_tags.0,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            tenant_policy: r.policy.0,
            key_limits: r.key_limits.0,
            project_limits: r.project_limits.0,
            tenant_limits: r.tenant_limits.0,
            tenant_pricing: r.tenant_pricing.0,
            key_cache: r.key_cache.0,
            project_cache: r.project_cache.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CredentialRow {
    pub(super) id: Uuid,
    pub(super) tenant_id: Uuid,
    pub(super) provider: String,
    name: String,
    masked: String,
    pub(super) key_id: String,
    pub(super) ciphertext: Vec<u8>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl CredentialRow {
    /// The record, with its sealed secret only when `sealed` (lists and gets never carry it).
    pub(super) fn into_credential(self, sealed: bool) -> ProviderCredential {
        ProviderCredential {
            id: CredentialId(self.id),
            tenant_id: TenantId(self.tenant_id),
            provider: self.provider,
            name: self.name,
            masked: self.masked,
            sealed: sealed.then_some(SealedSecret { key_id: self.key_id, ciphertext: self.ciphertext }),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    id: Uuid,
    tenant_id: Uuid,
    actor: Json<Actor>,
    action: String,
    resource_type: String,
    resource_id: String,
    before: Option<Json<serde_json::Value>>,
    after: Option<Json<serde_json::Value>>,
    at: OffsetDateTime,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        AuditRecord {
            id: AuditId(r.id),
            tenant_id: TenantId(r.tenant_id),
            actor: r.actor.0,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            before: r.before.map(|j| j.0),
            after: r.after.map(|j| j.0),
            at: r.at,
        }
    }
}
