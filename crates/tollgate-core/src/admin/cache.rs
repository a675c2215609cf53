//! The response cache from the admin side: a tenant's admins and owners purge its entries
//! (all, one alias's, or those stored before a time).

use time::OffsetDateTime;
use tollgate_types::ports::cache::PurgeFilter;
use tollgate_types::tenancy::{MemberRole, TenantId};
use tollgate_types::{ErrorKind, GatewayError};

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
        cache.purge(&filter).await.map_err(|e| {
            GatewayError::new(
                ErrorKind::Unavailable,
                format!("The response cache could not be purged ({e}); try again."),
            )
        })
    }
}
