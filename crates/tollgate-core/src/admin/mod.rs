//! The admin service: tenants, projects, members, keys, provider credentials and the audit
//! trail, behind one set of role checks. The HTTP admin API (`tollgate-server`) and the
//! `tollgate` CLI both go through [`AdminService`], so role checks, key generation and
//! credential sealing live in one place.
//!
//! Every method takes the [`Caller`] first, checks its tenant and role ([`rbac`]), validates
//! the input ([`validate`]), then calls the store, which writes the audit record in the same
//! transaction as the change. After a change that cached state depends on (keys, roles,
//! tenant policy, credentials), the service tells the [`Notifier`], so the node that made the
//! change sees it at once, before the store's change feed delivers it.

mod cache;
mod credentials;
mod errors;
mod keys;
mod limits;
mod rbac;
pub mod validate;

use std::collections::HashSet;
use std::sync::Arc;

use tollgate_types::GatewayError;
use tollgate_types::ports::store::{
    AdminStore, Change, MemberPatch, NewMember, NewProject, NewTenant, ProjectPatch, TenantPatch,
};
use tollgate_types::ports::usage::{UsageQuery, UsageStore, UsageTotals};
use tollgate_types::tenancy::{
    AuditRecord, KeyId, KeyScope, Member, MemberId, MemberRole, Page, PageRequest, Project, ProjectId,
    Tenant, TenantId,
};

pub use self::credentials::CreateCredential;
use self::errors::StoreResultExt;
pub use self::errors::{not_found, store_error};
pub use self::keys::{CreateKey, CreatedKey};
pub use self::rbac::Caller;
use self::rbac::{Access, forbidden};
use crate::auth::Principal;
use crate::secrets::MasterKeys;

/// Told about each change the service made that cached state depends on.
pub type Notifier = Arc<dyn Fn(Change) + Send + Sync>;

/// The admin operations, with their role checks. Cheap to construct (a few `Arc`s).
#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn AdminStore>,
    master_keys: Arc<MasterKeys>,
    /// The provider names of the gateway's config: credentials may only be registered for these.
    providers: Arc<HashSet<String>>,
    notify: Option<Notifier>,
    /// Usage records, for the usage reports (absent: reports answer 503).
    usage: Option<Arc<dyn UsageStore>>,
}

/// Who is calling, as `GET /admin/v1/me` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Me {
    SuperAdmin,
    Key {
        key_id: KeyId,
        tenant_id: TenantId,
        project_id: ProjectId,
        member_id: MemberId,
        role: MemberRole,
        scopes: Vec<KeyScope>,
    },
}

impl AdminService {
    /// `providers` are the provider names configured in the gateway.
    pub fn new(
        store: Arc<dyn AdminStore>,
        master_keys: Arc<MasterKeys>,
        providers: Arc<HashSet<String>>,
    ) -> Self {
        Self { store, master_keys, providers, notify: None, usage: None }
    }

    /// Serves usage reports from `usage`.
    pub fn with_usage(mut self, usage: Arc<dyn UsageStore>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Calls `notify` after each change that cached state depends on.
    pub fn with_notifier(mut self, notify: Notifier) -> Self {
        self.notify = Some(notify);
        self
    }

    fn changed(&self, change: Change) {
        if let Some(notify) = &self.notify {
            notify(change);
        }
    }

    /// The caller's rights in `tenant`. The super-admin gets a 404 for a tenant that does not
    /// exist (a key of another tenant gets the same answer without a lookup).
    async fn access(&self, caller: &Caller, tenant: TenantId) -> Result<Access, GatewayError> {
        let access = caller.access(tenant)?;
        if access.is_super() {
            self.store.get_tenant(tenant).await.or_not_found("tenant", tenant)?;
        }
        Ok(access)
    }

    /// `GET /me`.
    pub fn me(&self, caller: &Caller) -> Me {
        match &caller.principal {
            Principal::SuperAdmin => Me::SuperAdmin,
            Principal::Key(k) => Me::Key {
                key_id: k.key_id,
                tenant_id: k.tenant_id,
                project_id: k.project_id,
                member_id: k.owner_id,
                role: k.role,
                scopes: k.scopes.clone(),
            },
        }
    }

    // === tenants ===

    pub async fn create_tenant(&self, caller: &Caller, new: NewTenant) -> Result<Tenant, GatewayError> {
        caller.require_super("create tenants")?;
        let new =
            NewTenant { name: validate::name("name", &new.name)?, policy: validate::policy(new.policy)? };
        self.store.create_tenant(new, &caller.actor).await.client()
    }

    pub async fn list_tenants(
        &self,
        caller: &Caller,
        page: PageRequest,
    ) -> Result<Page<Tenant>, GatewayError> {
        caller.require_super("list tenants")?;
        self.store.list_tenants(page).await.client()
    }

    pub async fn get_tenant(&self, caller: &Caller, tenant: TenantId) -> Result<Tenant, GatewayError> {
        caller.access(tenant)?.require(MemberRole::Viewer, "read the tenant")?;
        self.store.get_tenant(tenant).await.or_not_found("tenant", tenant)
    }

    /// Renaming needs an admin; changing the policy (`byok_only`) needs an owner; the
    /// `allowed_tags` restriction is the super-admin's alone (an EU-only tenant must not lift
    /// it itself): other callers' patches keep it, and one that tries to change it is refused.
    pub async fn update_tenant(
        &self,
        caller: &Caller,
        tenant: TenantId,
        patch: TenantPatch,
    ) -> Result<Tenant, GatewayError> {
        let access = caller.access(tenant)?;
        access.require(MemberRole::Admin, "rename the tenant")?;
        let mut policy = patch.policy.map(validate::policy).transpose()?;
        if let Some(p) = &mut policy {
            access.require(MemberRole::Owner, "change the tenant's policy")?;
            if !access.is_super() {
                let current = self.store.get_tenant(tenant).await.or_not_found("tenant", tenant)?;
                if p.allowed_tags.is_empty() {
                    p.allowed_tags = current.policy.allowed_tags;
                } else if p.allowed_tags != current.policy.allowed_tags {
                    return Err(GatewayError::new(
                        tollgate_types::ErrorKind::Forbidden,
                        "Only the super-admin can change a tenant's allowed_tags.",
                    ));
                }
            }
        }
        let patch = TenantPatch { name: validate::optional_name("name", patch.name)?, policy };
        let updated =
            self.store.update_tenant(tenant, patch, &caller.actor).await.or_not_found("tenant", tenant)?;
        // Keys cache their tenant's policy.
        self.changed(Change::Tenant(tenant));
        Ok(updated)
    }

    pub async fn delete_tenant(&self, caller: &Caller, tenant: TenantId) -> Result<(), GatewayError> {
        caller.access(tenant)?.require_super("delete tenants")?;
        self.store.delete_tenant(tenant, &caller.actor).await.or_not_found("tenant", tenant)?;
        self.changed(Change::Tenant(tenant));
        Ok(())
    }

    // === projects ===

    pub async fn create_project(
        &self,
        caller: &Caller,
        tenant: TenantId,
        new: NewProject,
    ) -> Result<Project, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "create projects")?;
        let new = NewProject {
            name: validate::name("name", &new.name)?,
            limits: new.limits.map(|l| validate::limits("limits", l)).transpose()?,
            cache: validate::cache_rule("cache", new.cache)?,
        };
        self.store.create_project(tenant, new, &caller.actor).await.client()
    }

    pub async fn list_projects(
        &self,
        caller: &Caller,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Project>, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Viewer, "list projects")?;
        self.store.list_projects(tenant, page).await.client()
    }

    pub async fn get_project(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: ProjectId,
    ) -> Result<Project, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Viewer, "read projects")?;
        self.store.get_project(tenant, id).await.or_not_found("project", id)
    }

    pub async fn update_project(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: ProjectId,
        patch: ProjectPatch,
    ) -> Result<Project, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "update projects")?;
        let patch = ProjectPatch {
            name: validate::optional_name("name", patch.name)?,
            cache: patch.cache.map(|c| validate::cache_rule("cache", c)).transpose()?,
        };
        let cache_changed = patch.cache.is_some();
        let project =
            self.store.update_project(tenant, id, patch, &caller.actor).await.or_not_found("project", id)?;
        if cache_changed {
            // Keys carry their project's cache rule.
            self.changed(Change::Tenant(tenant));
        }
        Ok(project)
    }

    /// Fails with 409 while the project has live keys.
    pub async fn delete_project(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: ProjectId,
    ) -> Result<(), GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "delete projects")?;
        self.store.delete_project(tenant, id, &caller.actor).await.or_not_found("project", id)
    }

    // === members ===

    /// Admins manage members below owner; only owners create or change owners.
    pub async fn create_member(
        &self,
        caller: &Caller,
        tenant: TenantId,
        new: NewMember,
    ) -> Result<Member, GatewayError> {
        let access = self.access(caller, tenant).await?;
        access.require(MemberRole::Admin, "create members")?;
        if new.role == MemberRole::Owner {
            access.require(MemberRole::Owner, "create owners")?;
        }
        let new = NewMember { name: validate::name("name", &new.name)?, role: new.role };
        self.store.create_member(tenant, new, &caller.actor).await.client()
    }

    pub async fn list_members(
        &self,
        caller: &Caller,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Member>, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "list members")?;
        self.store.list_members(tenant, page).await.client()
    }

    pub async fn get_member(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: MemberId,
    ) -> Result<Member, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "read members")?;
        self.store.get_member(tenant, id).await.or_not_found("member", id)
    }

    pub async fn update_member(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: MemberId,
        patch: MemberPatch,
    ) -> Result<Member, GatewayError> {
        let access = self.access(caller, tenant).await?;
        access.require(MemberRole::Admin, "update members")?;
        let current = self.store.get_member(tenant, id).await.or_not_found("member", id)?;
        if current.role == MemberRole::Owner || patch.role == Some(MemberRole::Owner) {
            access.require(MemberRole::Owner, "change owners or promote to owner")?;
        }
        let patch = MemberPatch { name: validate::optional_name("name", patch.name)?, role: patch.role };
        let updated =
            self.store.update_member(tenant, id, patch, &caller.actor).await.or_not_found("member", id)?;
        // Keys carry their owner's role.
        self.changed(Change::Tenant(tenant));
        Ok(updated)
    }

    /// Also revokes the member's keys.
    pub async fn delete_member(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: MemberId,
    ) -> Result<(), GatewayError> {
        let access = self.access(caller, tenant).await?;
        access.require(MemberRole::Admin, "delete members")?;
        let current = self.store.get_member(tenant, id).await.or_not_found("member", id)?;
        if current.role == MemberRole::Owner {
            access.require(MemberRole::Owner, "delete owners")?;
        }
        self.store.delete_member(tenant, id, &caller.actor).await.or_not_found("member", id)?;
        self.changed(Change::Tenant(tenant));
        Ok(())
    }

    // === audit ===

    /// Newest first.
    pub async fn list_audit(
        &self,
        caller: &Caller,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<AuditRecord>, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "read the audit log")?;
        self.store.list_audit(tenant, page).await.client()
    }

    // === usage ===

    /// The tenant's usage over a time range, grouped, with the range's totals. Every member
    /// (viewers included) may read it.
    pub async fn usage_report(
        &self,
        caller: &Caller,
        tenant: TenantId,
        query: UsageQuery,
    ) -> Result<UsageReport, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Viewer, "read usage")?;
        if query.to <= query.from {
            return Err(GatewayError::invalid_field("to", "must be after `from`"));
        }
        if query.to - query.from > time::Duration::days(MAX_REPORT_DAYS) {
            return Err(GatewayError::invalid_field(
                "from",
                format!("the range may span at most {MAX_REPORT_DAYS} days"),
            ));
        }
        let usage = self.usage.as_ref().ok_or_else(|| {
            GatewayError::new(tollgate_types::ErrorKind::Unavailable, "Usage reports need a store.")
        })?;
        let groups = usage.aggregate_usage(tenant, &query).await.client()?;
        let totals = groups.iter().fold(UsageTotals::default(), |mut t, g| {
            t.add(g);
            t
        });
        Ok(UsageReport { query, totals, groups })
    }
}

/// The longest range one usage report may cover.
pub const MAX_REPORT_DAYS: i64 = 366;

/// A tenant's usage over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    pub query: UsageQuery,
    /// The whole range (its `group` is empty).
    pub totals: UsageTotals,
    pub groups: Vec<UsageTotals>,
}

/// Fails with 403 when `access` is a developer acting on a key that is not its own.
fn own_key_only(access: &Access, owner: MemberId) -> Result<(), GatewayError> {
    if access.role() >= MemberRole::Admin || access.member() == Some(owner) {
        return Ok(());
    }
    Err(forbidden("Developers can only manage their own keys; this key belongs to another member."))
}
