//! Limits and pricing stored with tenants, projects and keys: read with the resource they belong
//! to, replaced whole through these methods (an empty policy clears them).
//!
//! Who may set what: a tenant's limits and pricing only the super-admin (they are what the
//! operator sells; a tenant must not lift its own caps), project and key limits the tenant's
//! admins and owners. Every member reads them with the resource (`GET` tenant, project, key).
//! After each change the node's caches are told at once (through the service's notifier);
//! other nodes hear of it through the store's change feed.

use tollgate_types::GatewayError;
use tollgate_types::limits::{LimitPolicy, PricingPolicy};
use tollgate_types::ports::store::Change;
use tollgate_types::tenancy::{ApiKey, KeyId, MemberRole, Project, ProjectId, Tenant, TenantId};

use super::errors::StoreResultExt;
use super::{AdminService, Caller, validate};

impl AdminService {
    /// Replaces the tenant's limits (super-admin only).
    pub async fn set_tenant_limits(
        &self,
        caller: &Caller,
        tenant: TenantId,
        limits: LimitPolicy,
    ) -> Result<Tenant, GatewayError> {
        self.access(caller, tenant).await?.require_super("set a tenant's limits")?;
        let limits = validate::limits("", limits)?;
        let updated = self
            .store
            .set_tenant_limits(tenant, limits, &caller.actor)
            .await
            .or_not_found("tenant", tenant)?;
        // Every key of the tenant carries its tenant's limits.
        self.changed(Change::Tenant(tenant));
        Ok(updated)
    }

    /// Replaces the tenant's negotiated prices and markup (super-admin only).
    pub async fn set_tenant_pricing(
        &self,
        caller: &Caller,
        tenant: TenantId,
        pricing: PricingPolicy,
    ) -> Result<Tenant, GatewayError> {
        self.access(caller, tenant).await?.require_super("set a tenant's pricing")?;
        let pricing = validate::pricing(pricing)?;
        let updated = self
            .store
            .set_tenant_pricing(tenant, pricing, &caller.actor)
            .await
            .or_not_found("tenant", tenant)?;
        self.changed(Change::Tenant(tenant));
        Ok(updated)
    }

    /// Replaces a project's limits (admins and owners).
    pub async fn set_project_limits(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: ProjectId,
        limits: LimitPolicy,
    ) -> Result<Project, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "set a project's limits")?;
        let limits = validate::limits("", limits)?;
        let updated = self
            .store
            .set_project_limits(tenant, id, limits, &caller.actor)
            .await
            .or_not_found("project", id)?;
        // Cached keys do not say which project they are in cheaply: drop the tenant's.
        self.changed(Change::Tenant(tenant));
        Ok(updated)
    }

    /// Replaces a key's limits (admins and owners: a developer must not lift its own key's).
    pub async fn set_key_limits(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: KeyId,
        limits: LimitPolicy,
    ) -> Result<ApiKey, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "set a key's limits")?;
        let limits = validate::limits("", limits)?;
        let updated =
            self.store.set_key_limits(tenant, id, limits, &caller.actor).await.or_not_found("key", id)?;
        self.changed(Change::Key(id));
        Ok(updated)
    }
}
