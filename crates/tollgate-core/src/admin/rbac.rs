//! Who may do what: the caller's tenant and role, checked before every admin store call.
//!
//! The rules (the table in `docs/admin-api.md` is the public statement of them):
//! - the super-admin (bootstrap key or CLI) may do everything in every tenant, and is the only
//!   one who creates, lists and deletes tenants;
//! - a tenant key acts in its own tenant only, with its owner's role; any other tenant is
//!   answered "not found", exactly as a tenant that does not exist, so a key learns nothing
//!   about other tenants;
//! - roles are ordered (`viewer < developer < admin < owner`) and each action names the least
//!   role it needs.

use std::sync::Arc;

use tollgate_types::tenancy::{Actor, MemberId, MemberRole, TenantId};
use tollgate_types::{ErrorKind, GatewayError};

use crate::auth::{KeyPrincipal, Principal};

/// The caller of an admin operation: the principal whose rights are checked, and the actor
/// recorded in the audit trail.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub actor: Actor,
}

impl Caller {
    /// A caller of the HTTP API: the super-admin, or a key acting with its owner's role.
    pub fn from_principal(principal: Principal) -> Self {
        let actor = match &principal {
            Principal::SuperAdmin => Actor::SuperAdmin,
            Principal::Key(k) => Actor::Key { key_id: k.key_id, member_id: k.owner_id },
        };
        Self { principal, actor }
    }

    /// The `tollgate` CLI: an operator on the store directly, with super-admin rights.
    pub fn cli() -> Self {
        Self { principal: Principal::SuperAdmin, actor: Actor::Cli }
    }

    /// The caller's rights in `tenant`, or 404 if the caller belongs to another tenant.
    pub(crate) fn access(&self, tenant: TenantId) -> Result<Access, GatewayError> {
        match &self.principal {
            Principal::SuperAdmin => Ok(Access::Super),
            Principal::Key(k) if k.tenant_id == tenant => Ok(Access::Member(k.clone())),
            // Same answer as for a tenant that does not exist: never reveal that it does.
            Principal::Key(_) => Err(tenant_not_found(tenant)),
        }
    }

    /// Only the super-admin may do `what` (create or list tenants).
    pub(crate) fn require_super(&self, what: &str) -> Result<(), GatewayError> {
        match self.principal {
            Principal::SuperAdmin => Ok(()),
            Principal::Key(_) => Err(super_admin_only(what)),
        }
    }
}

/// The caller's rights within one tenant.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    Super,
    Member(Arc<KeyPrincipal>),
}

impl Access {
    pub(crate) fn is_super(&self) -> bool {
        matches!(self, Access::Super)
    }

    /// The caller's role; the super-admin counts as an owner.
    pub(crate) fn role(&self) -> MemberRole {
        match self {
            Access::Super => MemberRole::Owner,
            Access::Member(k) => k.role,
        }
    }

    /// The member the caller acts as (`None` for the super-admin).
    pub(crate) fn member(&self) -> Option<MemberId> {
        match self {
            Access::Super => None,
            Access::Member(k) => Some(k.owner_id),
        }
    }

    /// Fails with 403 unless the caller's role is at least `min`. `what` completes "needed to
    /// ..." in the message.
    pub(crate) fn require(&self, min: MemberRole, what: &str) -> Result<(), GatewayError> {
        let role = self.role();
        if role >= min {
            return Ok(());
        }
        Err(forbidden(format!(
            "The {} role or higher is needed to {what}; this key acts as a {}.",
            min.as_str(),
            role.as_str()
        )))
    }

    /// Only the super-admin may do `what` in a tenant (delete it).
    pub(crate) fn require_super(&self, what: &str) -> Result<(), GatewayError> {
        if self.is_super() { Ok(()) } else { Err(super_admin_only(what)) }
    }
}

pub(crate) fn forbidden(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Forbidden, message)
}

pub(crate) fn tenant_not_found(tenant: TenantId) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("tenant {tenant} not found"))
}

fn super_admin_only(what: &str) -> GatewayError {
    forbidden(format!("Only the gateway super-admin (TOLLGATE_ADMIN_KEY) can {what}."))
}

#[cfg(test)]
mod tests {
    use tollgate_types::tenancy::{KeyId, KeyScope, ProjectId};

    use super::*;

    fn key(tenant: TenantId, role: MemberRole) -> Caller {
        Caller::from_principal(Principal::Key(Arc::new(KeyPrincipal {
            key_id: KeyId::new(),
            project_id: ProjectId::new(),
            owner_id: MemberId::new(),
            role,
            scopes: vec![KeyScope::Admin],
            ..KeyPrincipal::sample(tenant)
        })))
    }

    #[test]
    fn actors_follow_the_principal() {
        assert_eq!(Caller::from_principal(Principal::SuperAdmin).actor, Actor::SuperAdmin);
        assert_eq!(Caller::cli().actor, Actor::Cli);
        let caller = key(TenantId::new(), MemberRole::Admin);
        let Principal::Key(k) = &caller.principal else { panic!("a key") };
        assert_eq!(caller.actor, Actor::Key { key_id: k.key_id, member_id: k.owner_id });
    }

    #[test]
    fn another_tenant_is_not_found_and_roles_are_ordered() {
        let (mine, theirs) = (TenantId::new(), TenantId::new());
        let caller = key(mine, MemberRole::Developer);
        let err = caller.access(theirs).unwrap_err();
        assert_eq!((err.status(), err.message.clone()), (404, format!("tenant {theirs} not found")));
        let access = caller.access(mine).unwrap();
        assert!(access.require(MemberRole::Developer, "x").is_ok());
        let err = access.require(MemberRole::Admin, "create projects").unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(err.message.contains("admin role") && err.message.contains("developer"), "{}", err.message);
        assert_eq!(caller.require_super("create tenants").unwrap_err().status(), 403);
        let sup = Caller::cli().access(theirs).unwrap();
        assert!(sup.is_super() && sup.require(MemberRole::Owner, "x").is_ok() && sup.member().is_none());
    }
}
