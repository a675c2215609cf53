//! Tenancy: tenants (organisations) → projects → API keys; members with roles; provider
//! credentials a tenant brings (bring-your-own-key); the audit trail of admin changes.
//!
//! These are the store's records and the admin API's resources. Secrets never appear here in
//! clear: keys are represented by their hash and a display prefix, credentials by their
//! ciphertext and a masked tail.

use std::fmt;

use crate::cache_rule::CacheRule;
use crate::limits::{LimitPolicy, PricingPolicy};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::JsonMap;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// An organisation: the unit of isolation.
    TenantId
);
id_type!(
    /// A project inside a tenant; keys belong to projects.
    ProjectId
);
id_type!(
    /// A member (user) of a tenant.
    MemberId
);
id_type!(
    /// An API key (its public identity, not the secret).
    KeyId
);
id_type!(
    /// A provider credential a tenant registered.
    CredentialId
);
id_type!(
    /// One audit record.
    AuditId
);

/// A member's role in its tenant. Ordered: each role can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Reads usage and logs.
    Viewer,
    /// Manages keys in its projects and calls models.
    Developer,
    /// Manages projects, members (below owner), keys and credentials.
    Admin,
    /// Everything in the tenant, including its policy and owners.
    Owner,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Viewer => "viewer",
            MemberRole::Developer => "developer",
            MemberRole::Admin => "admin",
            MemberRole::Owner => "owner",
        }
    }
}

impl std::str::FromStr for MemberRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(MemberRole::Viewer),
            "developer" => Ok(MemberRole::Developer),
            "admin" => Ok(MemberRole::Admin),
            "owner" => Ok(MemberRole::Owner),
            other => Err(format!("unknown role {other:?} (owner, admin, developer, viewer)")),
        }
    }
}

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Call models (`/v1/...`).
    Inference,
    /// Use the admin API (`/admin/v1/...`) with its owner's role.
    Admin,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Inference => "inference",
            KeyScope::Admin => "admin",
        }
    }
}

/// Tenant-wide rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPolicy {
    /// Never use the gateway's own provider keys for this tenant: calls to a provider the tenant
    /// has no credential for fail instead.
    #[serde(default)]
    pub byok_only: bool,
    /// Only deployments carrying one of these tags serve this tenant (e.g. `eu`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tags: Vec<String>,
    /// The response cache for the tenant's requests (unset fields inherit the alias's and the
    /// file's).
    #[serde(default, skip_serializing_if = "CacheRule::is_empty")]
    pub cache: CacheRule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub policy: TenantPolicy,
    /// Limits on all the tenant's requests together (set by the super-admin).
    #[serde(default)]
    pub limits: LimitPolicy,
    /// Negotiated prices and markup (set by the super-admin).
    #[serde(default)]
    pub pricing: PricingPolicy,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub tenant_id: TenantId,
    pub name: String,
    /// Limits on all the project's requests together.
    #[serde(default)]
    pub limits: LimitPolicy,
    /// The response cache for the project's requests (unset fields inherit the tenant's).
    #[serde(default)]
    pub cache: CacheRule,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    pub tenant_id: TenantId,
    /// Unique within the tenant (an email address, or any name).
    pub name: String,
    pub role: MemberRole,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The SHA-256 of an API key's full text: the only form in which a key is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// An API key as stored and listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    /// The member whose role the key carries on the admin API.
    pub owner_id: MemberId,
    pub name: String,
    /// The readable start of the key (`tg_live_AbCd`), to recognise it in lists.
    pub prefix: String,
    pub scopes: Vec<KeyScope>,
    /// Model aliases the key may call; `None` means every model.
    pub allowed_models: Option<Vec<String>>,
    /// Only deployments carrying one of these tags serve this key (e.g. `eu`); empty: any the
    /// tenant may use. Narrows the tenant's `allowed_tags`, never widens them.
    #[serde(default)]
    pub allowed_tags: Vec<String>,
    pub metadata: JsonMap,
    /// Limits on the key's requests.
    #[serde(default)]
    pub limits: LimitPolicy,
    /// The response cache for the key's requests (unset fields inherit the project's); e.g.
    /// `allow: read-only` for a low-trust key.
    #[serde(default)]
    pub cache: CacheRule,
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

/// What authentication learns from a key hash, before the tenant is known. Returned by the
/// store's narrow pre-tenant lookup (in PostgreSQL, a `SECURITY DEFINER` function).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyAuth {
    pub key_id: KeyId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub owner_id: MemberId,
    /// The owner's role in the tenant.
    pub role: MemberRole,
    pub scopes: Vec<KeyScope>,
    pub allowed_models: Option<Vec<String>>,
    /// The key's own tag restriction (empty: none), on top of the tenant policy's.
    pub allowed_tags: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub tenant_policy: TenantPolicy,
    /// Limits set on the key, its project and its tenant (each possibly empty).
    pub key_limits: LimitPolicy,
    pub project_limits: LimitPolicy,
    pub tenant_limits: LimitPolicy,
    /// The tenant's negotiated prices and markup.
    pub tenant_pricing: PricingPolicy,
    /// The cache rules set on the key and its project (the tenant's is in `tenant_policy`).
    pub key_cache: CacheRule,
    pub project_cache: CacheRule,
}

/// A provider credential as stored: the secret only as ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Which master key sealed it (for rotation).
    pub key_id: String,
    /// Nonce and ciphertext with the AES-GCM tag, as the crypto module lays them out.
    pub ciphertext: Vec<u8>,
}

/// A tenant's credential for one provider (bring-your-own-key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderCredential {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    /// The provider entry of the gateway config it is used for (`openai`, `anthropic`, ...).
    pub provider: String,
    pub name: String,
    /// The last four characters of the secret, e.g. `...x9Qz`.
    pub masked: String,
    #[serde(skip)]
    pub sealed: Option<SealedSecret>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Who made an admin change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// The gateway's bootstrap key (`TOLLGATE_ADMIN_KEY`).
    SuperAdmin,
    /// An admin-scoped key, acting with its owner's role.
    Key { key_id: KeyId, member_id: MemberId },
    /// The `tollgate` CLI, run by an operator on the store directly.
    Cli,
}

/// One admin change: who, what, when, and the resource before and after (never secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: AuditId,
    pub tenant_id: TenantId,
    pub actor: Actor,
    /// `tenant.update`, `key.create`, `key.revoke`, `credential.delete`, ...
    pub action: String,
    /// `tenant`, `project`, `member`, `key`, `credential`.
    pub resource_type: String,
    pub resource_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A page request: results after `after` (an id cursor), at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// Return items whose id sorts after this one (ids are time-ordered UUIDv7).
    pub after: Option<Uuid>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 500;

    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }
}

/// One page of results, oldest first; `next` is the cursor for the next page, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next: Option<Uuid>,
}
