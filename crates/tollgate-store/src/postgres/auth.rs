//! [`AuthStore`] for PostgreSQL: the pre-tenant path. Authentication and the last-used batch run
//! before (or across) any tenant, so they call the migration's `SECURITY DEFINER` functions,
//! which return only the columns authentication needs; `tollgate_app` itself can read no key
//! row without a tenant set.

use async_trait::async_trait;
use time::OffsetDateTime;
use tollgate_types::ports::store::{AuthStore, StoreError};
use tollgate_types::tenancy::{KeyAuth, KeyHash, KeyId};
use uuid::Uuid;

use super::{PostgresStore, rows};
use crate::db_error;

// === impl AuthStore ===

#[async_trait]
impl AuthStore for PostgresStore {
    async fn authenticate_key(&self, hash: &KeyHash) -> Result<Option<KeyAuth>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, tenant_id, project_id, owner_id, role, scopes, allowed_models, allowed_tags, expires_at, \
             revoked_at, tenant_policy, key_limits, project_limits, tenant_limits, tenant_pricing, key_cache, \
             project_cache FROM tollgate_authenticate_key($1)",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(rows::key_auth).transpose()
    }

    async fn touch_keys(&self, used: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        // One statement for the whole batch: two parallel arrays unnested in the function.
        let ids: Vec<Uuid> = used.iter().map(|(id, _)| id.0).collect();
        let at: Vec<OffsetDateTime> = used.iter().map(|(_, at)| *at).collect();
        sqlx::query("SELECT tollgate_touch_keys($1, $2)")
            .bind(ids)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_error)?;
        Ok(())
    }
}
