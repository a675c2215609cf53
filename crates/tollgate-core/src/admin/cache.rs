//! The response cache from the admin side: a tenant's admins and owners purge its entries
//! (all, one alias's, or those stored before a time); each purge is in the audit trail.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_types::ports::cache::PurgeFilter;
use tollgate_types::tenancy::{MemberRole, TenantId};
use tollgate_types::{ErrorKind, GatewayError};

use super::errors::StoreResultExt;
use super::{AdminService, Caller};
use crate::cache::ResponseCache;

impl AdminService {
    /// Removes the tenant's cached answers (of `alias` only, and/or stored before
    /// `created_before`) and returns how many. Needs the admin role.
    pub async fn purge_cache(
        &self,
        caller: &Caller,
        tenant: TenantId,
        cache: &ResponseCache,
        alias: Option<String>,
        created_before: Option<OffsetDateTime>,
    ) -> Result<u64, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "purge the response cache")?;
        if let Some(a) = &alias {
            super::validate::name("model", a)?;
        }
        let filter = PurgeFilter { tenant, alias, created_before };
        let purged = cache.purge(&filter).await.map_err(|e| {
            GatewayError::new(
                ErrorKind::Unavailable,
                format!("The response cache could not be purged ({e}); try again."),
            )
        })?;
        // In the audit trail like every other admin change (after the purge: a failed purge
        // changed nothing worth recording).
        let created_before = filter.created_before.and_then(|t| t.format(&Rfc3339).ok());
        let details =
            serde_json::json!({"model": filter.alias, "created_before": created_before, "purged": purged});
        self.store
            .record_action(tenant, &caller.actor, "cache.purge", &tenant.to_string(), details)
            .await
            .or_not_found("tenant", tenant)?;
        Ok(purged)
    }
}
