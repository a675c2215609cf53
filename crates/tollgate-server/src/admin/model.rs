//! The admin API's wire types: request bodies (unknown fields rejected, so a typo is a 400, not
//! a silently ignored field) and responses. They carry the OpenAPI schemas, so the document is
//! generated from the same types the handlers read and write.
//!
//! Responses are views of the store's records with an OpenAI-style `object` tag; secrets never
//! appear in them except a key's secret in the one create/rotate response.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use tollgate_core::admin::{CreateCredential, CreatedKey, Me};
use tollgate_types::JsonMap;
use tollgate_types::cache_rule::{CacheAllow, CacheRule, CacheRuleMode};
use tollgate_types::limits::{
    BudgetSpec, LimitPolicy, PriceAmount, PriceEntry, PricingPolicy, RateLimits, Usd,
};
use tollgate_types::ports::BudgetPeriod;
use tollgate_types::ports::store::{
    KeyPatch, MemberPatch, NewMember, NewProject, NewTenant, ProjectPatch, TenantPatch,
};
use tollgate_types::tenancy::{
    Actor, ApiKey, AuditRecord, KeyScope, Member, MemberId, MemberRole, Page, Project, ProviderCredential,
    Tenant, TenantPolicy,
};
use utoipa::ToSchema;
use uuid::Uuid;

// === shared ===

/// One page of a list, oldest first (the audit log: newest first).
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    /// Whether another page follows.
    pub has_more: bool,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_cursor: Option<Uuid>,
}

impl<T> List<T> {
    pub fn from_page<R>(page: Page<R>, view: impl FnMut(R) -> T) -> Self {
        Self {
            object: "list",
            data: page.data.into_iter().map(view).collect(),
            has_more: page.next.is_some(),
            next_cursor: page.next,
        }
    }
}

/// What a DELETE answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: Uuid,
    /// The kind of the deleted resource (`tenant`, `project`, `member`, `provider_credential`).
    pub object: &'static str,
    pub deleted: bool,
}

impl Deleted {
    pub fn new(object: &'static str, id: Uuid) -> Self {
        Self { id, object, deleted: true }
    }
}

/// The error body of every failure (OpenAI's shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What was wrong and how to fix it.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The field or parameter at fault, when there is one.
    pub param: Option<String>,
    /// Stable code: `invalid_request`, `invalid_api_key`, `forbidden`, `not_found`, `conflict`, ...
    pub code: String,
}

/// A member's role in its tenant; each can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Developer,
    Admin,
    Owner,
}

impl From<MemberRole> for Role {
    fn from(r: MemberRole) -> Self {
        match r {
            MemberRole::Viewer => Role::Viewer,
            MemberRole::Developer => Role::Developer,
            MemberRole::Admin => Role::Admin,
            MemberRole::Owner => Role::Owner,
        }
    }
}

impl From<Role> for MemberRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Viewer => MemberRole::Viewer,
            Role::Developer => MemberRole::Developer,
            Role::Admin => MemberRole::Admin,
            Role::Owner => MemberRole::Owner,
        }
    }
}

/// What a key may be used for: `inference` (`/v1/...`) and/or `admin` (`/admin/v1/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Inference,
    Admin,
}

impl From<KeyScope> for Scope {
    fn from(s: KeyScope) -> Self {
        match s {
            KeyScope::Inference => Scope::Inference,
            KeyScope::Admin => Scope::Admin,
        }
    }
}

impl From<Scope> for KeyScope {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Inference => KeyScope::Inference,
            Scope::Admin => KeyScope::Admin,
        }
    }
}

/// `Some(None)` for an explicit `null`, `None` when absent (with `#[serde(default)]`): lets a
/// PATCH clear a field.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn nullable_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
    time::serde::rfc3339::option::deserialize(d).map(Some)
}

// === me ===

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// Always `me`.
    pub object: &'static str,
    /// `super_admin` (the bootstrap key) or `key` (a tenant's key).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub key_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub member_id: Option<Uuid>,
    pub role: Option<Role>,
    pub scopes: Option<Vec<Scope>>,
}

impl From<Me> for MeView {
    fn from(me: Me) -> Self {
        match me {
            Me::SuperAdmin => Self {
                object: "me",
                kind: "super_admin",
                key_id: None,
                tenant_id: None,
                project_id: None,
                member_id: None,
                role: None,
                scopes: None,
            },
            Me::Key { key_id, tenant_id, project_id, member_id, role, scopes } => Self {
                object: "me",
                kind: "key",
                key_id: Some(key_id.0),
                tenant_id: Some(tenant_id.0),
                project_id: Some(project_id.0),
                member_id: Some(member_id.0),
                role: Some(role.into()),
                scopes: Some(scopes.into_iter().map(Scope::from).collect()),
            },
        }
    }
}

// === tenants ===

/// Tenant-wide rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Never use the gateway's own provider keys for this tenant: a call to a provider the
    /// tenant has no credential for fails with 403.
    #[serde(default)]
    pub byok_only: bool,
    /// Only deployments carrying one of these tags (config `models.*.deployments[].tags` or
    /// `region`) serve this tenant, e.g. `["eu"]`; empty: any deployment.
    #[serde(default)]
    pub allowed_tags: Vec<String>,
    /// The response cache for the tenant's requests; `{}` (or left out) sets nothing, and the
    /// gateway's configuration decides. Its `allow` caps every project and key of the tenant.
    #[serde(default)]
    pub cache: Cache,
}

impl From<TenantPolicy> for Policy {
    fn from(p: TenantPolicy) -> Self {
        Self { byok_only: p.byok_only, allowed_tags: p.allowed_tags, cache: p.cache.into() }
    }
}

impl From<Policy> for TenantPolicy {
    fn from(p: Policy) -> Self {
        Self { byok_only: p.byok_only, allowed_tags: p.allowed_tags, cache: p.cache.into() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// Always `tenant`.
    pub object: &'static str,
    pub id: Uuid,
    pub name: String,
    pub policy: Policy,
    /// Limits on all the tenant's requests together (set by the super-admin).
    pub limits: Limits,
    /// Negotiated prices and markup (set by the super-admin).
    pub pricing: Pricing,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            object: "tenant",
            id: t.id.0,
            name: t.name,
            policy: t.policy.into(),
            limits: t.limits.into(),
            pricing: t.pricing.into(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1-200 characters.
    pub name: String,
    #[serde(default)]
    pub policy: Policy,
}

impl From<CreateTenant> for NewTenant {
    fn from(b: CreateTenant) -> Self {
        Self { name: b.name, policy: b.policy.into() }
    }
}

/// Renaming needs the admin role; changing the policy needs the owner role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    pub policy: Option<Policy>,
}

impl From<UpdateTenant> for TenantPatch {
    fn from(b: UpdateTenant) -> Self {
        Self { name: b.name, policy: b.policy.map(Into::into) }
    }
}

// === projects ===

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    /// Always `project`.
    pub object: &'static str,
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    /// Limits on all the project's requests together.
    pub limits: Limits,
    /// The response cache for the project's requests (`{}`: inherit the tenant's).
    pub cache: Cache,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        Self {
            object: "project",
            id: p.id.0,
            tenant_id: p.tenant_id.0,
            name: p.name,
            limits: p.limits.into(),
            cache: p.cache.into(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// 1-200 characters, unique in the tenant.
    pub name: String,
    /// The project's limits from the start (admins and owners).
    pub limits: Option<Limits>,
    /// The project's response-cache rule; left out: inherit the tenant's.
    #[serde(default)]
    pub cache: Cache,
}

impl From<CreateProject> for NewProject {
    fn from(b: CreateProject) -> Self {
        Self { name: b.name, limits: b.limits.map(Into::into), cache: b.cache.into() }
    }
}

/// Fields left out are unchanged. `cache` replaces the project's rule whole; `{}` or `null`
/// clears it (inherit the tenant's).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Cache>)]
    pub cache: Option<Option<Cache>>,
}

impl From<UpdateProject> for ProjectPatch {
    fn from(b: UpdateProject) -> Self {
        Self { name: b.name, cache: b.cache.map(|c| c.unwrap_or_default().into()) }
    }
}

// === members ===

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// Always `member`.
    pub object: &'static str,
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self {
            object: "member",
            id: m.id.0,
            tenant_id: m.tenant_id.0,
            name: m.name,
            role: m.role.into(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMember {
    /// 1-200 characters, unique in the tenant (an email address, or any name).
    pub name: String,
    pub role: Role,
}

impl From<CreateMember> for NewMember {
    fn from(b: CreateMember) -> Self {
        Self { name: b.name, role: b.role.into() }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub name: Option<String>,
    pub role: Option<Role>,
}

impl From<UpdateMember> for MemberPatch {
    fn from(b: UpdateMember) -> Self {
        Self { name: b.name, role: b.role.map(Into::into) }
    }
}

// === keys ===

/// An API key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Always `api_key`.
    pub object: &'static str,
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub project_id: Uuid,
    /// The member whose role the key carries on the admin API.
    pub owner_id: Uuid,
    pub name: String,
    /// The readable start of the key (`tg_live_AbCd`).
    pub prefix: String,
    pub scopes: Vec<Scope>,
    /// Model aliases the key may call; `null` means every model.
    pub allowed_models: Option<Vec<String>>,
    /// Only deployments carrying one of these tags serve the key, on top of the tenant's
    /// `policy.allowed_tags`; empty: any deployment the tenant may use.
    pub allowed_tags: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: JsonMap,
    /// Limits on the key's requests.
    pub limits: Limits,
    /// The response cache for the key's requests (`{}`: inherit the project's).
    pub cache: Cache,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            object: "api_key",
            id: k.id.0,
            tenant_id: k.tenant_id.0,
            project_id: k.project_id.0,
            owner_id: k.owner_id.0,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes.into_iter().map(Scope::from).collect(),
            allowed_models: k.allowed_models,
            allowed_tags: k.allowed_tags,
            metadata: k.metadata,
            limits: k.limits.into(),
            cache: k.cache.into(),
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

/// A new key with its secret: shown in this response only, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    /// The full key (`tg_live_...`). Store it now: the gateway keeps only its hash.
    pub secret: String,
}

impl From<CreatedKey> for CreatedKeyView {
    fn from(c: CreatedKey) -> Self {
        Self { key: c.key.into(), secret: c.secret.expose_secret().to_owned() }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub project_id: Uuid,
    /// The member whose role the key carries. Default: the caller's member (the super-admin
    /// must give one).
    pub owner_id: Option<Uuid>,
    /// 1-200 characters.
    pub name: String,
    /// Default `["inference"]`. Only admins and owners may grant `admin`.
    pub scopes: Option<Vec<Scope>>,
    /// 1-100 model aliases; absent or `null` allows every model.
    pub allowed_models: Option<Vec<String>>,
    /// At most 32 deployment tags (config `models.*.deployments[].tags` or `region`), e.g.
    /// `["eu"]`: only deployments carrying one of them serve the key. They narrow the tenant's
    /// `policy.allowed_tags`, never widen them. Absent or empty: no restriction of its own.
    #[serde(default)]
    pub allowed_tags: Vec<String>,
    /// Free-form JSON object, at most 16 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: JsonMap,
    /// RFC 3339, in the future.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The key's limits from the start (admins and owners).
    pub limits: Option<Limits>,
    /// The key's response-cache rule (admins and owners); left out: inherit the project's.
    /// E.g. `{"allow": "read-only"}` for a low-trust key that must not write the cache.
    #[serde(default)]
    pub cache: Cache,
}

impl From<CreateKey> for tollgate_core::admin::CreateKey {
    fn from(b: CreateKey) -> Self {
        Self {
            project_id: tollgate_types::tenancy::ProjectId(b.project_id),
            owner_id: b.owner_id.map(MemberId),
            name: b.name,
            scopes: b.scopes.map(|s| s.into_iter().map(KeyScope::from).collect()),
            allowed_models: b.allowed_models,
            allowed_tags: b.allowed_tags,
            metadata: b.metadata,
            expires_at: b.expires_at,
            limits: b.limits.map(Into::into),
            cache: b.cache.into(),
        }
    }
}

/// Fields left out are unchanged; `null` clears `allowed_models` (every model), `allowed_tags`
/// (no restriction of its own, as `[]` does), `expires_at` or `cache` (inherit the project's,
/// as `{}` does). `cache` replaces the key's rule whole and needs the admin role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_tags: Option<Option<Vec<String>>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonMap>,
    #[serde(default, deserialize_with = "nullable_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<OffsetDateTime>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Cache>)]
    pub cache: Option<Option<Cache>>,
}

impl From<UpdateKey> for KeyPatch {
    fn from(b: UpdateKey) -> Self {
        Self {
            name: b.name,
            allowed_models: b.allowed_models,
            allowed_tags: b.allowed_tags.map(Option::unwrap_or_default),
            metadata: b.metadata,
            expires_at: b.expires_at,
            cache: b.cache.map(|c| c.unwrap_or_default().into()),
        }
    }
}

// === response cache ===
// Mirrors of `tollgate_types::cache_rule` carrying the OpenAPI schemas. Same JSON shape:
// kebab-case values, unset fields left out (`{}` sets nothing). See docs/caching.md.

/// What a request that sends no `x-tollgate-cache` header does with the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Answer from the cache when possible, and store new answers.
    On,
    /// Neither.
    Off,
    /// Answer from the cache, never store.
    ReadOnly,
    /// Store answers, never answer from the cache (warming).
    WriteOnly,
}

impl From<CacheRuleMode> for CacheMode {
    fn from(m: CacheRuleMode) -> Self {
        match m {
            CacheRuleMode::On => CacheMode::On,
            CacheRuleMode::Off => CacheMode::Off,
            CacheRuleMode::ReadOnly => CacheMode::ReadOnly,
            CacheRuleMode::WriteOnly => CacheMode::WriteOnly,
        }
    }
}

impl From<CacheMode> for CacheRuleMode {
    fn from(m: CacheMode) -> Self {
        match m {
            CacheMode::On => CacheRuleMode::On,
            CacheMode::Off => CacheRuleMode::Off,
            CacheMode::ReadOnly => CacheRuleMode::ReadOnly,
            CacheMode::WriteOnly => CacheRuleMode::WriteOnly,
        }
    }
}

/// The most any request may do with the response cache, whatever its header asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheAllowance {
    /// Reading and writing (no restriction).
    ReadWrite,
    /// Reading only: answers are never stored.
    ReadOnly,
    /// Nothing: the cache is never consulted.
    None,
}

impl From<CacheAllow> for CacheAllowance {
    fn from(a: CacheAllow) -> Self {
        match a {
            CacheAllow::ReadWrite => CacheAllowance::ReadWrite,
            CacheAllow::ReadOnly => CacheAllowance::ReadOnly,
            CacheAllow::None => CacheAllowance::None,
        }
    }
}

impl From<CacheAllowance> for CacheAllow {
    fn from(a: CacheAllowance) -> Self {
        match a {
            CacheAllowance::ReadWrite => CacheAllow::ReadWrite,
            CacheAllowance::ReadOnly => CacheAllow::ReadOnly,
            CacheAllowance::None => CacheAllow::None,
        }
    }
}

/// The response-cache rule of a tenant (in its policy), a project or a key. A field left out
/// inherits the level above (key, then project, tenant, the gateway's configuration). `mode`
/// and `ttl_seconds`: the most specific level that sets them wins; `allow`: every level's
/// applies, the strictest wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// The default for requests without an `x-tollgate-cache` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CacheMode>,
    /// A ceiling on what requests may do (e.g. `read-only` for a low-trust key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<CacheAllowance>,
    /// How long stored answers live, 1 to 31536000 seconds (a year); the gateway's
    /// `cache.max_ttl` caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31536000)]
    pub ttl_seconds: Option<u64>,
    /// Whether requests that miss the exact cache are also matched by meaning (the semantic
    /// cache, when the gateway configures one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<bool>,
}

impl From<CacheRule> for Cache {
    fn from(r: CacheRule) -> Self {
        Self {
            mode: r.mode.map(Into::into),
            allow: r.allow.map(Into::into),
            ttl_seconds: r.ttl_seconds,
            semantic: r.semantic,
        }
    }
}

impl From<Cache> for CacheRule {
    fn from(c: Cache) -> Self {
        Self {
            mode: c.mode.map(Into::into),
            allow: c.allow.map(Into::into),
            ttl_seconds: c.ttl_seconds,
            semantic: c.semantic,
        }
    }
}

// === limits and pricing ===
// Mirrors of `tollgate_types::limits` carrying the OpenAPI schemas (the types crate does not
// depend on utoipa). Same JSON shape and rules: unknown fields refused, empty parts left out.
// Amounts of money keep the types' own decoding ([`Usd`], [`PriceAmount`]), so they stay exact.

/// Rate limits on one scope; a field left out means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per minute, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub tpm: Option<u64>,
    /// Requests in flight at once, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_concurrent: Option<u64>,
}

impl Rate {
    fn is_empty(&self) -> bool {
        RateLimits::from(*self).is_empty()
    }
}

impl From<RateLimits> for Rate {
    fn from(r: RateLimits) -> Self {
        Self { rpm: r.rpm, tpm: r.tpm, max_concurrent: r.max_concurrent }
    }
}

impl From<Rate> for RateLimits {
    fn from(r: Rate) -> Self {
        Self { rpm: r.rpm, tpm: r.tpm, max_concurrent: r.max_concurrent }
    }
}

/// The period of a budget: UTC day, ISO week (from Monday), calendar month, or `total` (never
/// resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    Total,
}

impl From<BudgetPeriod> for Period {
    fn from(p: BudgetPeriod) -> Self {
        match p {
            BudgetPeriod::Day => Period::Day,
            BudgetPeriod::Week => Period::Week,
            BudgetPeriod::Month => Period::Month,
            BudgetPeriod::Total => Period::Total,
        }
    }
}

impl From<Period> for BudgetPeriod {
    fn from(p: Period) -> Self {
        match p {
            Period::Day => BudgetPeriod::Day,
            Period::Week => BudgetPeriod::Week,
            Period::Month => BudgetPeriod::Month,
            Period::Total => BudgetPeriod::Total,
        }
    }
}

/// A spend cap over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub period: Period,
    /// The cap in USD, more than 0, as a decimal string with at most 9 decimals (`"25.00"`); a
    /// whole number is accepted, a JSON number with a fraction is refused (it could be rounded).
    #[schema(value_type = String, example = "25.00")]
    pub limit_usd: Usd,
    /// Percentages of the cap (1-100) at which an alert is sent; left out: the gateway's
    /// configured thresholds. Stored sorted, without duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_at_percent: Option<Vec<u8>>,
}

impl From<BudgetSpec> for Budget {
    fn from(b: BudgetSpec) -> Self {
        Self { period: b.period.into(), limit_usd: b.limit_usd, alert_at_percent: b.alert_at_percent }
    }
}

impl From<Budget> for BudgetSpec {
    fn from(b: Budget) -> Self {
        Self { period: b.period.into(), limit_usd: b.limit_usd, alert_at_percent: b.alert_at_percent }
    }
}

/// Everything limited at one scope (a tenant, a project or a key). `{}` is no limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Limits on all the scope's requests together.
    #[serde(default, skip_serializing_if = "Rate::is_empty")]
    pub rate: Rate,
    /// Limits per model alias (the name clients send), on top of `rate`; at most 100.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, Rate>,
    /// Spend caps, at most one per period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Budget>,
}

impl From<LimitPolicy> for Limits {
    fn from(p: LimitPolicy) -> Self {
        Self {
            rate: p.rate.into(),
            models: p.models.into_iter().map(|(m, r)| (m, r.into())).collect(),
            budgets: p.budgets.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Limits> for LimitPolicy {
    fn from(l: Limits) -> Self {
        Self {
            rate: l.rate.into(),
            models: l.models.into_iter().map(|(m, r)| (m, r.into())).collect(),
            budgets: l.budgets.into_iter().map(Into::into).collect(),
        }
    }
}

/// A tenant's negotiated prices and markup. `{}` is the gateway's prices without markup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Added to every computed cost, in basis points (100 = 1%), at most 100000.
    #[serde(default)]
    #[schema(maximum = 100000)]
    pub markup_bps: u32,
    /// Prices that take precedence over the gateway's for this tenant; at most 1000.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<PriceItem>,
}

impl From<PricingPolicy> for Pricing {
    fn from(p: PricingPolicy) -> Self {
        Self { markup_bps: p.markup_bps, prices: p.prices.into_iter().map(Into::into).collect() }
    }
}

impl From<Pricing> for PricingPolicy {
    fn from(p: Pricing) -> Self {
        Self { markup_bps: p.markup_bps, prices: p.prices.into_iter().map(Into::into).collect() }
    }
}

/// One price version, as in the gateway's price table. Amounts are USD per million tokens,
/// decimal strings with at most 6 decimals (`"0.15"`; a JSON number is accepted and stored as
/// its decimal string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceItem {
    /// Recorded with every cost; default `{provider}/{model}@{effective_from}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Price namespace (`openai`, `anthropic`, ...).
    pub provider: String,
    /// An upstream model name (also matches its dated snapshots) or a prefix ending in `*`.
    pub model: String,
    /// First day (UTC) the price applies, `YYYY-MM-DD`.
    pub effective_from: String,
    /// Uncached input tokens.
    #[schema(value_type = String, example = "0.15")]
    pub input: PriceAmount,
    /// Output tokens (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "0.60")]
    pub output: Option<PriceAmount>,
    /// Input tokens read from the provider's cache (default: as `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cached_input: Option<PriceAmount>,
    /// Input tokens written to the provider's cache (default: as `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cache_write: Option<PriceAmount>,
    /// Reasoning tokens (default: as `output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reasoning: Option<PriceAmount>,
    /// Where the price comes from (a contract, a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl From<PriceEntry> for PriceItem {
    fn from(e: PriceEntry) -> Self {
        Self {
            id: e.id,
            provider: e.provider,
            model: e.model,
            effective_from: e.effective_from,
            input: e.input,
            output: e.output,
            cached_input: e.cached_input,
            cache_write: e.cache_write,
            reasoning: e.reasoning,
            source: e.source,
        }
    }
}

impl From<PriceItem> for PriceEntry {
    fn from(e: PriceItem) -> Self {
        Self {
            id: e.id,
            provider: e.provider,
            model: e.model,
            effective_from: e.effective_from,
            input: e.input,
            output: e.output,
            cached_input: e.cached_input,
            cache_write: e.cache_write,
            reasoning: e.reasoning,
            source: e.source,
        }
    }
}

// === credentials ===

/// A provider credential: never its secret, only the masked tail.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// Always `provider_credential`.
    pub object: &'static str,
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The provider entry of the gateway config it is used for.
    pub provider: String,
    pub name: String,
    /// `...` and the last four characters of the secret.
    pub masked: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<ProviderCredential> for CredentialView {
    fn from(c: ProviderCredential) -> Self {
        Self {
            object: "provider_credential",
            id: c.id.0,
            tenant_id: c.tenant_id.0,
            provider: c.provider,
            name: c.name,
            masked: c.masked,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `Debug` is not derived: the body holds a secret.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredentialBody {
    /// A provider name of the gateway's config (`openai`, `anthropic`, ...).
    pub provider: String,
    /// 1-200 characters.
    pub name: String,
    /// The provider API key. Encrypted at rest; never returned.
    #[schema(value_type = String, format = Password)]
    pub secret: SecretBody,
}

/// A secret as it arrives: moved into a [`SecretString`] at once, so no `Debug` shows it.
pub struct SecretBody(SecretString);

impl<'de> Deserialize<'de> for SecretBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretBody(SecretString::from(s)))
    }
}

impl From<CreateCredentialBody> for CreateCredential {
    fn from(b: CreateCredentialBody) -> Self {
        Self { provider: b.provider, name: b.name, secret: b.secret.0 }
    }
}

// === audit ===

/// One admin change: who, what, when, and the resource before and after (never secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Always `audit_record`.
    pub object: &'static str,
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `{"type":"super_admin"}`, `{"type":"key","key_id":..,"member_id":..}` or `{"type":"cli"}`.
    #[schema(value_type = Object)]
    pub actor: Actor,
    /// `tenant.update`, `key.create`, `key.revoke`, `credential.delete`, ...
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl From<AuditRecord> for AuditView {
    fn from(a: AuditRecord) -> Self {
        Self {
            object: "audit_record",
            id: a.id.0,
            tenant_id: a.tenant_id.0,
            actor: a.actor,
            action: a.action,
            resource_type: a.resource_type,
            resource_id: a.resource_id,
            before: a.before,
            after: a.after,
            at: a.at,
        }
    }
}
