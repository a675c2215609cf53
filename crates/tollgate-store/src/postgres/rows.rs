//! Row → record mapping for PostgreSQL, and the column lists the queries select (kept here, as
//! macros expanding to literals, so every query selects exactly what its mapper reads).

use sqlx::Row;
use sqlx::postgres::PgRow;
use tollgate_types::cache_rule::CacheRule;
use tollgate_types::limits::{LimitPolicy, PricingPolicy};
use tollgate_types::ports::store::{SealedCredential, StoreError};
use tollgate_types::tenancy::{
    ApiKey, AuditRecord, CredentialId, KeyAuth, KeyId, KeyScope, Member, MemberId, MemberRole, Project,
    ProjectId, ProviderCredential, SealedSecret, Tenant, TenantId, TenantPolicy,
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
/// Without the ciphertext: what lists and the admin API get.
macro_rules! credential_cols {
    () => {
        "id, tenant_id, provider, name, masked, created_at, updated_at"
    };
}
macro_rules! audit_cols {
    () => {
        "id, tenant_id, actor, action, resource_type, resource_id, before, after, at"
    };
}
pub(super) use {audit_cols, credential_cols, key_cols, member_cols, project_cols, tenant_cols};

fn get<'r, T>(row: &'r PgRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(col).map_err(|e| StoreError::Internal(format!("column {col}: {e}")))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt {what}: {e}"))
}

fn policy(value: serde_json::Value) -> Result<TenantPolicy, StoreError> {
    serde_json::from_value(value).map_err(|e| corrupt("tenant policy", e))
}

fn limits(row: &PgRow, col: &str) -> Result<LimitPolicy, StoreError> {
    serde_json::from_value(get(row, col)?).map_err(|e| corrupt(col, e))
}

fn pricing(row: &PgRow, col: &str) -> Result<PricingPolicy, StoreError> {
    serde_json::from_value(get(row, col)?).map_err(|e| corrupt(col, e))
}

fn cache(row: &PgRow, col: &str) -> Result<CacheRule, StoreError> {
    serde_json::from_value(get(row, col)?).map_err(|e| corrupt(col, e))
}

fn role(s: &str) -> Result<MemberRole, StoreError> {
    s.parse().map_err(|e: String| corrupt("member role", e))
}

pub(super) fn scopes_to_db(scopes: &[KeyScope]) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

fn scopes(raw: Vec<String>) -> Result<Vec<KeyScope>, StoreError> {
    raw.iter()
        .map(|s| match s.as_str() {
            "inference" => Ok(KeyScope::Inference),
            "admin" => Ok(KeyScope::Admin),
            other => Err(corrupt("key scope", other)),
        })
        .collect()
}

pub(super) fn tenant(row: &PgRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId(get(row, "id")?),
        name: get(row, "name")?,
        policy: policy(get(row, "policy")?)?,
        limits: limits(row, "limits")?,
        pricing: pricing(row, "pricing")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(super) fn project(row: &PgRow) -> Result<Project, StoreError> {
    Ok(Project {
        id: ProjectId(get(row, "id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        name: get(row, "name")?,
        limits: limits(row, "limits")?,
        cache: cache(row, "cache")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(super) fn member(row: &PgRow) -> Result<Member, StoreError> {
    Ok(Member {
        id: MemberId(get(row, "id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        name: get(row, "name")?,
        role: role(&get::<String>(row, "role")?)?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(super) fn key(row: &PgRow) -> Result<ApiKey, StoreError> {
    let metadata = match get::<serde_json::Value>(row, "metadata")? {
        serde_json::Value::Object(map) => map,
        other => return Err(corrupt("key metadata", format!("not an object: {other}"))),
    };
    Ok(ApiKey {
        id: KeyId(get(row, "id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        project_id: ProjectId(get(row, "project_id")?),
        owner_id: MemberId(get(row, "owner_id")?),
        name: get(row, "name")?,
        prefix: get(row, "prefix")?,
        scopes: scopes(get(row, "scopes")?)?,
        allowed_models: get(row, "allowed_models")?,
        allowed_tags: get(row, "allowed_tags")?,
        metadata,
        limits: limits(row, "limits")?,
        cache: cache(row, "cache")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        last_used_at: get(row, "last_used_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(super) fn key_auth(row: &PgRow) -> Result<KeyAuth, StoreError> {
    Ok(KeyAuth {
        key_id: KeyId(get(row, "key_id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        project_id: ProjectId(get(row, "project_id")?),
        owner_id: MemberId(get(row, "owner_id")?),
        role: role(&get::<String>(row, "role")?)?,
        scopes: scopes(get(row, "scopes")?)?,
        allowed_models: get(row, "allowed_models")?,
        allowed_tags: get(row, "allowed_tags")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        tenant_policy: policy(get(row, "tenant_policy")?)?,
        key_limits: limits(row, "key_limits")?,
        project_limits: limits(row, "project_limits")?,
        tenant_limits: limits(row, "tenant_limits")?,
        tenant_pricing: pricing(row, "tenant_pricing")?,
        key_cache: cache(row, "key_cache")?,
        project_cache: cache(row, "project_cache")?,
    })
}

/// A credential without its secret (`credential_cols!`).
pub(super) fn credential(row: &PgRow) -> Result<ProviderCredential, StoreError> {
    Ok(ProviderCredential {
        id: CredentialId(get(row, "id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        provider: get(row, "provider")?,
        name: get(row, "name")?,
        masked: get(row, "masked")?,
        sealed: None,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// A credential with its secret (`credential_cols!` plus `key_id, ciphertext`).
pub(super) fn sealed_credential(row: &PgRow) -> Result<ProviderCredential, StoreError> {
    let mut c = credential(row)?;
    c.sealed = Some(sealed(row)?);
    Ok(c)
}

fn sealed(row: &PgRow) -> Result<SealedSecret, StoreError> {
    Ok(SealedSecret { key_id: get(row, "key_id")?, ciphertext: get(row, "ciphertext")? })
}

pub(super) fn sealed_for_rotation(row: &PgRow) -> Result<SealedCredential, StoreError> {
    Ok(SealedCredential {
        tenant_id: TenantId(get(row, "tenant_id")?),
        id: CredentialId(get(row, "id")?),
        provider: get(row, "provider")?,
        sealed: sealed(row)?,
    })
}

pub(super) fn audit(row: &PgRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: tollgate_types::tenancy::AuditId(get(row, "id")?),
        tenant_id: TenantId(get(row, "tenant_id")?),
        actor: serde_json::from_value(get(row, "actor")?).map_err(|e| corrupt("audit actor", e))?,
        action: get(row, "action")?,
        resource_type: get(row, "resource_type")?,
        resource_id: get(row, "resource_id")?,
        before: get(row, "before")?,
        after: get(row, "after")?,
        at: get(row, "at")?,
    })
}

/// Maps every row, failing on the first bad one.
pub(super) fn all<T>(rows: &[PgRow], f: fn(&PgRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

/// The id of a record, for page cursors.
pub(super) fn uuid_of<T: HasId>(t: &T) -> Uuid {
    t.uuid()
}

pub(super) trait HasId {
    fn uuid(&self) -> Uuid;
}

macro_rules! has_id {
    ($($t:ty),*) => { $(impl HasId for $t { fn uuid(&self) -> Uuid { self.id.0 } })* };
}
has_id!(Tenant, Project, Member, ApiKey, ProviderCredential, AuditRecord);
