//! API keys: created with a fresh secret (shown once, stored only as its hash and display
//! prefix), listed, updated, revoked and rotated.
//!
//! Who may touch which key: admins and owners every key of their tenant; developers only keys
//! they own. Minting a secret (create, rotate) has two more rules: only admins and owners mint
//! `admin`-scoped keys, and nobody mints a key for a member whose role is above their own
//! (otherwise an admin could hand itself an owner's rights).

use secrecy::SecretString;
use time::OffsetDateTime;
use tollgate_types::cache_rule::CacheRule;
use tollgate_types::limits::LimitPolicy;
use tollgate_types::ports::store::{Change, KeyFilter, KeyPatch, NewKey};
use tollgate_types::tenancy::{
    ApiKey, KeyId, KeyScope, MemberId, MemberRole, Page, PageRequest, ProjectId, TenantId,
};
use tollgate_types::{GatewayError, JsonMap};

use super::errors::StoreResultExt;
use super::rbac::{Access, forbidden};
use super::{AdminService, Caller, own_key_only, validate};
use crate::secrets::generate_key;

/// A key to create.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateKey {
    pub project_id: ProjectId,
    /// Default: the caller's member (the super-admin must name one).
    pub owner_id: Option<MemberId>,
    pub name: String,
    /// Default: `[inference]`.
    pub scopes: Option<Vec<KeyScope>>,
    pub allowed_models: Option<Vec<String>>,
    /// Deployment tags the key is restricted to (empty: whatever the tenant may use). Only
    /// narrows: a request must match the tenant's allowed tags and these.
    pub allowed_tags: Vec<String>,
    pub metadata: JsonMap,
    pub expires_at: Option<OffsetDateTime>,
    /// The key's limits from the start; setting any needs the admin role (as
    /// [`AdminService::set_key_limits`] does).
    pub limits: Option<LimitPolicy>,
    /// The key's response-cache rule (empty: inherit); setting one needs the admin role, so a
    /// developer cannot lift the read-only rule a low-trust key was given.
    pub cache: CacheRule,
}

/// A created (or rotated) key: the record and its secret, which is never available again.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

impl AdminService {
    pub async fn create_key(
        &self,
        caller: &Caller,
        tenant: TenantId,
        req: CreateKey,
    ) -> Result<CreatedKey, GatewayError> {
        let access = self.access(caller, tenant).await?;
        access.require(MemberRole::Developer, "create keys")?;
        let owner_id = match (req.owner_id, access.member()) {
            (Some(owner), _) => owner,
            (None, Some(me)) => me,
            (None, None) => {
                return Err(GatewayError::invalid_field(
                    "owner_id",
                    "is required when the super-admin creates a key (the member whose role the key carries)",
                ));
            }
        };
        own_key_only(&access, owner_id)?;
        let scopes = req.scopes.unwrap_or_else(|| vec![KeyScope::Inference]);
        if scopes.is_empty() {
            return Err(GatewayError::invalid_field(
                "scopes",
                "at least one scope is required (inference, admin)",
            ));
        }
        let name = validate::name("name", &req.name)?;
        let allowed_models = validate::allowed_models(req.allowed_models)?;
        let allowed_tags = validate::allowed_tags("allowed_tags", req.allowed_tags)?;
        validate::metadata(&req.metadata)?;
        let expires_at = validate::expires_at(req.expires_at)?;
        let limits = req.limits.map(|l| validate::limits("limits", l)).transpose()?;
        if limits.as_ref().is_some_and(|l| !l.is_empty()) {
            access.require(MemberRole::Admin, "create keys with limits")?;
        }
        let cache = validate::cache_rule("cache", req.cache)?;
        if !cache.is_empty() {
            access.require(MemberRole::Admin, "create keys with a cache rule")?;
        }
        // Existence checks name what is missing; the project lookup is tenant-scoped, so another
        // tenant's project is "not found" too.
        self.store.get_project(tenant, req.project_id).await.or_not_found("project", req.project_id)?;
        self.check_mint(&access, tenant, owner_id, &scopes).await?;

        let generated =
            generate_key().map_err(|_| GatewayError::internal("The key could not be generated."))?;
        let new = NewKey {
            id: KeyId::new(),
            project_id: req.project_id,
            owner_id,
            name,
            prefix: generated.prefix,
            hash: generated.hash,
            scopes,
            allowed_models,
            allowed_tags,
            metadata: req.metadata,
            expires_at,
            limits,
            cache,
        };
        let key = self.store.create_key(tenant, new, &caller.actor).await.client()?;
        Ok(CreatedKey { key, secret: SecretString::from(generated.secret) })
    }

    /// Developers see only their own keys.
    pub async fn list_keys(
        &self,
        caller: &Caller,
        tenant: TenantId,
        filter: KeyFilter,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, GatewayError> {
        let access = self.access(caller, tenant).await?;
        access.require(MemberRole::Developer, "list keys")?;
        match access.member() {
            Some(me) if access.role() < MemberRole::Admin => {
                self.list_own_keys(tenant, me, filter, page).await
            }
            _ => self.store.list_keys(tenant, filter, page).await.client(),
        }
    }

    /// One page of `me`'s keys. The store filters by project only, so this reads full pages
    /// and keeps `me`'s; the cursor is the last key returned, so paging stays exact.
    async fn list_own_keys(
        &self,
        tenant: TenantId,
        me: MemberId,
        filter: KeyFilter,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, GatewayError> {
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut after = page.after;
        loop {
            let chunk = self
                .store
                .list_keys(tenant, filter.clone(), PageRequest { limit: PageRequest::MAX_LIMIT, after })
                .await
                .client()?;
            out.extend(chunk.data.into_iter().filter(|k| k.owner_id == me));
            // One more than asked tells whether there is a next page.
            if out.len() > limit {
                out.truncate(limit);
                let next = out.last().map(|k| k.id.0);
                return Ok(Page { data: out, next });
            }
            match chunk.next {
                Some(next) => after = Some(next),
                None => return Ok(Page { data: out, next: None }),
            }
        }
    }

    pub async fn get_key(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: KeyId,
    ) -> Result<ApiKey, GatewayError> {
        let (_, key) = self.key_for(caller, tenant, id, "read keys").await?;
        Ok(key)
    }

    pub async fn update_key(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: KeyId,
        patch: KeyPatch,
    ) -> Result<ApiKey, GatewayError> {
        let (access, _) = self.key_for(caller, tenant, id, "update keys").await?;
        if patch.cache.is_some() {
            access.require(MemberRole::Admin, "change a key's cache rule")?;
        }
        let patch = KeyPatch {
            name: validate::optional_name("name", patch.name)?,
            allowed_models: patch.allowed_models.map(validate::allowed_models).transpose()?,
            allowed_tags: patch
                .allowed_tags
                .map(|t| validate::allowed_tags("allowed_tags", t))
                .transpose()?,
            metadata: patch.metadata.map(|m| validate::metadata(&m).map(|()| m)).transpose()?,
            expires_at: patch.expires_at.map(validate::expires_at).transpose()?,
            cache: patch.cache.map(|c| validate::cache_rule("cache", c)).transpose()?,
        };
        let key = self.store.update_key(tenant, id, patch, &caller.actor).await.or_not_found("key", id)?;
        self.changed(Change::Key(id));
        Ok(key)
    }

    /// Idempotent: revoking a revoked key returns it unchanged.
    pub async fn revoke_key(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: KeyId,
    ) -> Result<ApiKey, GatewayError> {
        self.key_for(caller, tenant, id, "revoke keys").await?;
        let key = self.store.revoke_key(tenant, id, &caller.actor).await.or_not_found("key", id)?;
        self.changed(Change::Key(id));
        Ok(key)
    }

    /// A new secret for the same project, owner, name, scopes, models, tags, metadata, limits and expiry;
    /// the old key is revoked in the same transaction.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: KeyId,
    ) -> Result<CreatedKey, GatewayError> {
        let (access, old) = self.key_for(caller, tenant, id, "rotate keys").await?;
        if old.revoked_at.is_some() {
            return Err(GatewayError::new(
                tollgate_types::ErrorKind::Conflict,
                format!("key {id} is revoked and cannot be rotated; create a new key instead"),
            ));
        }
        // Rotating mints a secret; a developer may rotate its own admin-scoped key (it already
        // holds that scope), so only the owner's role is checked here.
        self.check_mint(&access, tenant, old.owner_id, &[]).await?;
        let generated =
            generate_key().map_err(|_| GatewayError::internal("The key could not be generated."))?;
        let new = NewKey {
            id: KeyId::new(),
            project_id: old.project_id,
            owner_id: old.owner_id,
            name: old.name,
            prefix: generated.prefix,
            hash: generated.hash,
            scopes: old.scopes,
            allowed_models: old.allowed_models,
            allowed_tags: old.allowed_tags,
            metadata: old.metadata,
            expires_at: old.expires_at,
            limits: Some(old.limits),
            cache: old.cache,
        };
        let key = self.store.rotate_key(tenant, id, new, &caller.actor).await.or_not_found("key", id)?;
        self.changed(Change::Key(id));
        Ok(CreatedKey { key, secret: SecretString::from(generated.secret) })
    }

    /// The key `id` of `tenant`, if the caller may act on it (`what` names the action).
    async fn key_for(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: KeyId,
        what: &str,
    ) -> Result<(Access, ApiKey), GatewayError> {
        let access = self.access(caller, tenant).await?;
        access.require(MemberRole::Developer, what)?;
        let key = self.store.get_key(tenant, id).await.or_not_found("key", id)?;
        own_key_only(&access, key.owner_id)?;
        Ok((access, key))
    }

    /// The rules for minting a secret owned by `owner` with `scopes`.
    async fn check_mint(
        &self,
        access: &Access,
        tenant: TenantId,
        owner: MemberId,
        scopes: &[KeyScope],
    ) -> Result<(), GatewayError> {
        if scopes.contains(&KeyScope::Admin) {
            access.require(MemberRole::Admin, "create keys with the admin scope")?;
        }
        let member = self.store.get_member(tenant, owner).await.or_not_found("member", owner)?;
        if member.role > access.role() {
            return Err(forbidden(format!(
                "A {} cannot create a key for member {owner}, whose role ({}) is higher.",
                access.role().as_str(),
                member.role.as_str()
            )));
        }
        Ok(())
    }
}
