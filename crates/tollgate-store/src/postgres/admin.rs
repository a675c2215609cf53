//! [`AdminStore`] for PostgreSQL. Every tenant-scoped method runs in [`PostgresStore::tenant_tx`]
//! (row-level security set first), writes its audit record in the same transaction, and queues
//! its change notification there too, so nothing is announced that did not commit. The tenant is
//! also named in each `WHERE` clause: that is for the indexes, not for isolation.

use async_trait::async_trait;
use sqlx::PgConnection;
use tollgate_types::limits::{LimitPolicy, PricingPolicy};
use tollgate_types::ports::store::{
    AdminStore, Change, KeyFilter, KeyPatch, MemberPatch, NewCredential, NewKey, NewMember, NewProject,
    NewTenant, ProjectPatch, SealedCredential, StoreError, TenantPatch,
};
use tollgate_types::tenancy::{
    Actor, ApiKey, AuditRecord, CredentialId, KeyId, Member, MemberId, Page, PageRequest, Project, ProjectId,
    ProviderCredential, SealedSecret, Tenant, TenantId,
};

use super::rows::{self, audit_cols, credential_cols, key_cols, member_cols, project_cols, tenant_cols};
use super::{AuditEntry, PostgresStore, notify, set_tenant, to_json, write_audit, write_error};
use crate::paging::{finish_page, page_limit};
use crate::{db_error, validate};

fn name_conflict(kind: &'static str, name: &str) -> impl FnOnce(&str) -> StoreError {
    move |_constraint| StoreError::Conflict(format!("name: a {kind} named {name:?} already exists"))
}

fn key_conflict(new: &NewKey) -> impl FnOnce(&str) -> StoreError {
    let id = new.id;
    move |constraint| match constraint {
        "api_keys_hash_key" => StoreError::Conflict("hash: a key with this hash already exists".to_owned()),
        _ => StoreError::Conflict(format!("id: a key with id {id} already exists")),
    }
}

// === row helpers (all inside a tenant transaction) ===

async fn lock_tenant(conn: &mut PgConnection, tenant: TenantId) -> Result<Tenant, StoreError> {
    let row = sqlx::query(concat!("SELECT ", tenant_cols!(), " FROM tenants WHERE id = $1 FOR UPDATE"))
        .bind(tenant.0)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    row.as_ref().map(rows::tenant).transpose()?.ok_or(StoreError::NotFound("tenant"))
}

async fn lock_project(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ProjectId,
) -> Result<Project, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        project_cols!(),
        " FROM projects WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tenant.0)
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(rows::project).transpose()?.ok_or(StoreError::NotFound("project"))
}

async fn lock_member(conn: &mut PgConnection, tenant: TenantId, id: MemberId) -> Result<Member, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        member_cols!(),
        " FROM members WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tenant.0)
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(rows::member).transpose()?.ok_or(StoreError::NotFound("member"))
}

async fn lock_key(conn: &mut PgConnection, tenant: TenantId, id: KeyId) -> Result<ApiKey, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        key_cols!(),
        " FROM api_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tenant.0)
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(rows::key).transpose()?.ok_or(StoreError::NotFound("key"))
}

async fn lock_credential(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: CredentialId,
) -> Result<ProviderCredential, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        credential_cols!(),
        " FROM provider_credentials WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tenant.0)
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(rows::credential).transpose()?.ok_or(StoreError::NotFound("credential"))
}

/// Inserts a key after checking its project and owner exist in this tenant. The owner's row is
/// share-locked so a concurrent `delete_member` cannot slip between the check and the insert
/// (owner_id has no foreign key: see the migration); the project is guarded by its foreign key.
async fn insert_key(conn: &mut PgConnection, tenant: TenantId, new: &NewKey) -> Result<ApiKey, StoreError> {
    let owner = sqlx::query("SELECT 1 FROM members WHERE tenant_id = $1 AND id = $2 FOR SHARE")
        .bind(tenant.0)
        .bind(new.owner_id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    if owner.is_none() {
        return Err(StoreError::NotFound("member"));
    }
    let row = sqlx::query(concat!(
        "INSERT INTO api_keys (id, tenant_id, project_id, owner_id, name, prefix, hash, scopes, allowed_models, \
         allowed_tags, metadata, expires_at, limits, cache, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now(), now()) RETURNING ",
        key_cols!()
    ))
    .bind(new.id.0)
    .bind(tenant.0)
    .bind(new.project_id.0)
    .bind(new.owner_id.0)
    .bind(&new.name)
    .bind(&new.prefix)
    .bind(&new.hash.0[..])
    .bind(rows::scopes_to_db(&new.scopes))
    .bind(&new.allowed_models)
    .bind(&new.allowed_tags)
    .bind(serde_json::Value::Object(new.metadata.clone()))
    .bind(new.expires_at)
    .bind(to_json(&new.limits.clone().unwrap_or_default())?)
    .bind(to_json(&new.cache)?)
    .fetch_one(conn)
    .await
    .map_err(|e| write_error(e, key_conflict(new)))?;
    rows::key(&row)
}

async fn revoke_locked(conn: &mut PgConnection, tenant: TenantId, id: KeyId) -> Result<ApiKey, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE api_keys SET revoked_at = now(), updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING ",
        key_cols!()
    ))
    .bind(tenant.0)
    .bind(id.0)
    .fetch_one(conn)
    .await
    .map_err(db_error)?;
    rows::key(&row)
}

// === impl AdminStore ===

#[async_trait]
impl AdminStore for PostgresStore {
    async fn create_tenant(&self, new: NewTenant, actor: &Actor) -> Result<Tenant, StoreError> {
        let new = validate::new_tenant(new)?;
        let name = new.name;
        let id = TenantId::new();
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // The tenant row goes in through the SECURITY DEFINER function (tollgate_app has no
        // INSERT on tenants); the audit record then goes in as the new tenant, same transaction.
        let row = sqlx::query(concat!("SELECT ", tenant_cols!(), " FROM tollgate_create_tenant($1, $2, $3)"))
            .bind(id.0)
            .bind(&name)
            .bind(to_json(&new.policy)?)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| write_error(e, name_conflict("tenant", &name)))?;
        let tenant = rows::tenant(&row)?;
        set_tenant(&mut tx, id).await?;
        let audit = AuditEntry {
            tenant: id,
            actor,
            action: "tenant.create",
            resource_type: "tenant",
            resource_id: id.to_string(),
            before: None,
            after: Some(to_json(&tenant)?),
        };
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(tenant)
    }

    async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>, StoreError> {
        let limit = page_limit(&page);
        let rows = sqlx::query(concat!("SELECT ", tenant_cols!(), " FROM tollgate_list_tenants($1, $2)"))
            .bind(page.after)
            .bind(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(finish_page(rows::all(&rows, rows::tenant)?, limit, rows::uuid_of))
    }

    async fn get_tenant(&self, tenant: TenantId) -> Result<Tenant, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(concat!("SELECT ", tenant_cols!(), " FROM tenants WHERE id = $1"))
            .bind(tenant.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        row.as_ref().map(rows::tenant).transpose()?.ok_or(StoreError::NotFound("tenant"))
    }

    async fn update_tenant(
        &self,
        tenant: TenantId,
        patch: TenantPatch,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let patch = validate::tenant_patch(patch)?;
        let new_name = patch.name;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_tenant(&mut tx, tenant).await?;
        let name = new_name.unwrap_or_else(|| before.name.clone());
        let policy = patch.policy.unwrap_or_else(|| before.policy.clone());
        let row = sqlx::query(concat!(
            "UPDATE tenants SET name = $2, policy = $3, updated_at = now() WHERE id = $1 RETURNING ",
            tenant_cols!()
        ))
        .bind(tenant.0)
        .bind(&name)
        .bind(to_json(&policy)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_error(e, name_conflict("tenant", &name)))?;
        let after = rows::tenant(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "tenant.update",
            resource_type: "tenant",
            resource_id: tenant.to_string(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&after)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Tenant(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn delete_tenant(&self, tenant: TenantId, _actor: &Actor) -> Result<(), StoreError> {
        // No audit record: it would belong to the tenant, and goes with it. The change is still
        // announced so every node drops what it cached for the tenant.
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let existed: bool = sqlx::query_scalar("SELECT tollgate_delete_tenant($1)")
            .bind(tenant.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if !existed {
            return Err(StoreError::NotFound("tenant"));
        }
        // The semantic cache's tables have no foreign key to the tenant (made at run time).
        super::semantic::delete_tenant_rows(&mut tx, tenant).await?;
        notify(&mut tx, Change::Tenant(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    // --- projects ---

    async fn create_project(
        &self,
        tenant: TenantId,
        new: NewProject,
        actor: &Actor,
    ) -> Result<Project, StoreError> {
        let new = validate::new_project(new)?;
        let name = new.name;
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(concat!(
            "INSERT INTO projects (id, tenant_id, name, limits, cache, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING ",
            project_cols!()
        ))
        .bind(ProjectId::new().0)
        .bind(tenant.0)
        .bind(&name)
        .bind(to_json(&new.limits.unwrap_or_default())?)
        .bind(to_json(&new.cache)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_error(e, name_conflict("project", &name)))?;
        let project = rows::project(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "project.create",
            resource_type: "project",
            resource_id: project.id.to_string(),
            before: None,
            after: Some(to_json(&project)?),
        };
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(project)
    }

    async fn list_projects(&self, tenant: TenantId, page: PageRequest) -> Result<Page<Project>, StoreError> {
        self.list_scoped(
            tenant,
            page,
            concat!(
                "SELECT ",
                project_cols!(),
                " FROM projects WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
            ),
            rows::project,
        )
        .await
    }

    async fn get_project(&self, tenant: TenantId, id: ProjectId) -> Result<Project, StoreError> {
        self.get_scoped(
            tenant,
            concat!("SELECT ", project_cols!(), " FROM projects WHERE tenant_id = $1 AND id = $2"),
            id.0,
            rows::project,
            "project",
        )
        .await
    }

    async fn update_project(
        &self,
        tenant: TenantId,
        id: ProjectId,
        patch: ProjectPatch,
        actor: &Actor,
    ) -> Result<Project, StoreError> {
        let patch = validate::project_patch(patch)?;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_project(&mut tx, tenant, id).await?;
        let name = patch.name.unwrap_or_else(|| before.name.clone());
        let cache = patch.cache.unwrap_or(before.cache);
        let row = sqlx::query(concat!(
            "UPDATE projects SET name = $3, cache = $4, updated_at = now() WHERE tenant_id = $1 AND id = $2 \
             RETURNING ",
            project_cols!()
        ))
        .bind(tenant.0)
        .bind(id.0)
        .bind(&name)
        .bind(to_json(&cache)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_error(e, name_conflict("project", &name)))?;
        let after = rows::project(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "project.update",
            resource_type: "project",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&after)?),
        };
        write_audit(&mut tx, audit).await?;
        if after.cache != before.cache {
            // Keys carry their project's cache rule: every cached key of the tenant may belong
            // to the project.
            notify(&mut tx, Change::Tenant(tenant)).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn delete_project(&self, tenant: TenantId, id: ProjectId, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        // The row lock orders this against key creation in the project (whose foreign-key check
        // takes a share lock on the same row), so no live key can appear after the check below.
        let before = lock_project(&mut tx, tenant, id).await?;
        let live: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = $1 AND project_id = $2 AND revoked_at IS NULL)",
        )
        .bind(tenant.0)
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        if live {
            return Err(StoreError::Conflict(format!(
                "project: {:?} still has live keys; revoke them before deleting it",
                before.name
            )));
        }
        sqlx::query("DELETE FROM projects WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "project.delete",
            resource_type: "project",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: None,
        };
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    // --- members ---

    async fn create_member(
        &self,
        tenant: TenantId,
        new: NewMember,
        actor: &Actor,
    ) -> Result<Member, StoreError> {
        let new = validate::new_member(new)?;
        let name = new.name;
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(concat!(
            "INSERT INTO members (id, tenant_id, name, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, now(), now()) RETURNING ",
            member_cols!()
        ))
        .bind(MemberId::new().0)
        .bind(tenant.0)
        .bind(&name)
        .bind(new.role.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_error(e, name_conflict("member", &name)))?;
        let member = rows::member(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "member.create",
            resource_type: "member",
            resource_id: member.id.to_string(),
            before: None,
            after: Some(to_json(&member)?),
        };
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(member)
    }

    async fn list_members(&self, tenant: TenantId, page: PageRequest) -> Result<Page<Member>, StoreError> {
        self.list_scoped(
            tenant,
            page,
            concat!(
                "SELECT ",
                member_cols!(),
                " FROM members WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
            ),
            rows::member,
        )
        .await
    }

    async fn get_member(&self, tenant: TenantId, id: MemberId) -> Result<Member, StoreError> {
        self.get_scoped(
            tenant,
            concat!("SELECT ", member_cols!(), " FROM members WHERE tenant_id = $1 AND id = $2"),
            id.0,
            rows::member,
            "member",
        )
        .await
    }

    async fn update_member(
        &self,
        tenant: TenantId,
        id: MemberId,
        patch: MemberPatch,
        actor: &Actor,
    ) -> Result<Member, StoreError> {
        let patch = validate::member_patch(patch)?;
        let new_name = patch.name;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_member(&mut tx, tenant, id).await?;
        let name = new_name.unwrap_or_else(|| before.name.clone());
        let role = patch.role.unwrap_or(before.role);
        let row = sqlx::query(concat!(
            "UPDATE members SET name = $3, role = $4, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING ",
            member_cols!()
        ))
        .bind(tenant.0)
        .bind(id.0)
        .bind(&name)
        .bind(role.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_error(e, name_conflict("member", &name)))?;
        let after = rows::member(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "member.update",
            resource_type: "member",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&after)?),
        };
        write_audit(&mut tx, audit).await?;
        // The member's role is cached with every key it owns: drop the tenant's cache.
        notify(&mut tx, Change::Tenant(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn delete_member(&self, tenant: TenantId, id: MemberId, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_member(&mut tx, tenant, id).await?;
        let live = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE tenant_id = $1 AND owner_id = $2 AND revoked_at IS NULL ORDER BY id FOR UPDATE"
        ))
        .bind(tenant.0)
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let live = rows::all(&live, rows::key)?;
        for key in &live {
            let after = revoke_locked(&mut tx, tenant, key.id).await?;
            let audit = AuditEntry {
                tenant,
                actor,
                action: "key.revoke",
                resource_type: "key",
                resource_id: key.id.to_string(),
                before: Some(to_json(key)?),
                after: Some(to_json(&after)?),
            };
            write_audit(&mut tx, audit).await?;
            notify(&mut tx, Change::Key(key.id)).await?;
        }
        sqlx::query("DELETE FROM members WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "member.delete",
            resource_type: "member",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: None,
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Tenant(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    // --- keys ---

    async fn create_key(&self, tenant: TenantId, new: NewKey, actor: &Actor) -> Result<ApiKey, StoreError> {
        let new = validate::new_key(new)?;
        let mut tx = self.tenant_tx(tenant).await?;
        let key = insert_key(&mut tx, tenant, &new).await?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "key.create",
            resource_type: "key",
            resource_id: key.id.to_string(),
            before: None,
            after: Some(to_json(&key)?),
        };
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(key)
    }

    async fn list_keys(
        &self,
        tenant: TenantId,
        filter: KeyFilter,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, StoreError> {
        let limit = page_limit(&page);
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE tenant_id = $1 AND ($2::uuid IS NULL OR project_id = $2) \
             AND ($3 OR revoked_at IS NULL) AND ($4::uuid IS NULL OR id > $4) ORDER BY id LIMIT $5"
        ))
        .bind(tenant.0)
        .bind(filter.project_id.map(|p| p.0))
        .bind(filter.include_revoked)
        .bind(page.after)
        .bind(limit as i64 + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(finish_page(rows::all(&rows, rows::key)?, limit, rows::uuid_of))
    }

    async fn get_key(&self, tenant: TenantId, id: KeyId) -> Result<ApiKey, StoreError> {
        self.get_scoped(
            tenant,
            concat!("SELECT ", key_cols!(), " FROM api_keys WHERE tenant_id = $1 AND id = $2"),
            id.0,
            rows::key,
            "key",
        )
        .await
    }

    async fn update_key(
        &self,
        tenant: TenantId,
        id: KeyId,
        patch: KeyPatch,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError> {
        let patch = validate::key_patch(patch)?;
        let new_name = patch.name;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_key(&mut tx, tenant, id).await?;
        let name = new_name.unwrap_or_else(|| before.name.clone());
        let allowed_models = patch.allowed_models.unwrap_or_else(|| before.allowed_models.clone());
        let allowed_tags = patch.allowed_tags.unwrap_or_else(|| before.allowed_tags.clone());
        let metadata = patch.metadata.unwrap_or_else(|| before.metadata.clone());
        let expires_at = patch.expires_at.unwrap_or(before.expires_at);
        let cache = patch.cache.unwrap_or(before.cache);
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET name = $3, allowed_models = $4, allowed_tags = $5, metadata = $6, expires_at = $7, \
             cache = $8, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING ",
            key_cols!()
        ))
        .bind(tenant.0)
        .bind(id.0)
        .bind(&name)
        .bind(&allowed_models)
        .bind(&allowed_tags)
        .bind(serde_json::Value::Object(metadata))
        .bind(expires_at)
        .bind(to_json(&cache)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let after = rows::key(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "key.update",
            resource_type: "key",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&after)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Key(id)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn revoke_key(&self, tenant: TenantId, id: KeyId, actor: &Actor) -> Result<ApiKey, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_key(&mut tx, tenant, id).await?;
        if before.revoked_at.is_some() {
            // Idempotent: nothing changed, so nothing to record or announce.
            tx.commit().await.map_err(db_error)?;
            return Ok(before);
        }
        let after = revoke_locked(&mut tx, tenant, id).await?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "key.revoke",
            resource_type: "key",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&after)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Key(id)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn rotate_key(
        &self,
        tenant: TenantId,
        old: KeyId,
        new: NewKey,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError> {
        let new = validate::new_key(new)?;
        let mut tx = self.tenant_tx(tenant).await?;
        // One transaction: either the new key exists and the old one is revoked, or neither
        // happened (an early return drops `tx`, which rolls back).
        let before = lock_key(&mut tx, tenant, old).await?;
        if before.revoked_at.is_some() {
            return Err(StoreError::Conflict(format!("key: {old} is revoked and cannot be rotated")));
        }
        let key = insert_key(&mut tx, tenant, &new).await?;
        revoke_locked(&mut tx, tenant, old).await?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "key.rotate",
            resource_type: "key",
            resource_id: old.to_string(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&key)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Key(old)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(key)
    }

    // --- limits and pricing ---

    async fn set_tenant_limits(
        &self,
        tenant: TenantId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let limits = validate::policy("limits", limits)?;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_tenant(&mut tx, tenant).await?;
        let row = sqlx::query(concat!(
            "UPDATE tenants SET limits = $2, updated_at = now() WHERE id = $1 RETURNING ",
            tenant_cols!()
        ))
        .bind(tenant.0)
        .bind(to_json(&limits)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let after = rows::tenant(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "tenant.limits",
            resource_type: "tenant",
            resource_id: tenant.to_string(),
            before: Some(to_json(&before.limits)?),
            after: Some(to_json(&after.limits)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Tenant(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn set_tenant_pricing(
        &self,
        tenant: TenantId,
        pricing: PricingPolicy,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let pricing = validate::policy("pricing", pricing)?;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_tenant(&mut tx, tenant).await?;
        let row = sqlx::query(concat!(
            "UPDATE tenants SET pricing = $2, updated_at = now() WHERE id = $1 RETURNING ",
            tenant_cols!()
        ))
        .bind(tenant.0)
        .bind(to_json(&pricing)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let after = rows::tenant(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "tenant.pricing",
            resource_type: "tenant",
            resource_id: tenant.to_string(),
            before: Some(to_json(&before.pricing)?),
            after: Some(to_json(&after.pricing)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Tenant(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn set_project_limits(
        &self,
        tenant: TenantId,
        id: ProjectId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<Project, StoreError> {
        let limits = validate::policy("limits", limits)?;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_project(&mut tx, tenant, id).await?;
        let row = sqlx::query(concat!(
            "UPDATE projects SET limits = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING ",
            project_cols!()
        ))
        .bind(tenant.0)
        .bind(id.0)
        .bind(to_json(&limits)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let after = rows::project(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "project.limits",
            resource_type: "project",
            resource_id: id.to_string(),
            before: Some(to_json(&before.limits)?),
            after: Some(to_json(&after.limits)?),
        };
        write_audit(&mut tx, audit).await?;
        // Every cached key of the tenant may belong to the project.
        notify(&mut tx, Change::Tenant(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn set_key_limits(
        &self,
        tenant: TenantId,
        id: KeyId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError> {
        let limits = validate::policy("limits", limits)?;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_key(&mut tx, tenant, id).await?;
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET limits = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING ",
            key_cols!()
        ))
        .bind(tenant.0)
        .bind(id.0)
        .bind(to_json(&limits)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let after = rows::key(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "key.limits",
            resource_type: "key",
            resource_id: id.to_string(),
            before: Some(to_json(&before.limits)?),
            after: Some(to_json(&after.limits)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Key(id)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    // --- provider credentials ---

    async fn create_credential(
        &self,
        tenant: TenantId,
        new: NewCredential,
        actor: &Actor,
    ) -> Result<ProviderCredential, StoreError> {
        let new = validate::new_credential(new)?;
        let name = &new.name;
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(concat!(
            "INSERT INTO provider_credentials (id, tenant_id, provider, name, masked, key_id, ciphertext, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now()) RETURNING ",
            credential_cols!()
        ))
        .bind(new.id.0)
        .bind(tenant.0)
        .bind(&new.provider)
        .bind(name)
        .bind(&new.masked)
        .bind(&new.sealed.key_id)
        .bind(&new.sealed.ciphertext)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            write_error(e, |constraint| match constraint {
                "provider_credentials_pkey" => {
                    StoreError::Conflict(format!("id: a credential with id {} already exists", new.id))
                }
                _ => StoreError::Conflict(format!("name: a credential named {name:?} already exists")),
            })
        })?;
        let credential = rows::credential(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "credential.create",
            resource_type: "credential",
            resource_id: credential.id.to_string(),
            before: None,
            after: Some(to_json(&credential)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Credentials(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(credential)
    }

    async fn list_credentials(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<ProviderCredential>, StoreError> {
        self.list_scoped(
            tenant,
            page,
            concat!("SELECT ", credential_cols!(), " FROM provider_credentials WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"),
            rows::credential,
        )
        .await
    }

    async fn get_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
    ) -> Result<ProviderCredential, StoreError> {
        self.get_scoped(
            tenant,
            concat!(
                "SELECT ",
                credential_cols!(),
                " FROM provider_credentials WHERE tenant_id = $1 AND id = $2"
            ),
            id.0,
            rows::credential,
            "credential",
        )
        .await
    }

    async fn delete_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_credential(&mut tx, tenant, id).await?;
        sqlx::query("DELETE FROM provider_credentials WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "credential.delete",
            resource_type: "credential",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: None,
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Credentials(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn sealed_credentials(&self, tenant: TenantId) -> Result<Vec<ProviderCredential>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            credential_cols!(),
            ", key_id, ciphertext FROM provider_credentials WHERE tenant_id = $1 ORDER BY id"
        ))
        .bind(tenant.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        rows::all(&rows, rows::sealed_credential)
    }

    async fn all_sealed_credentials(&self) -> Result<Vec<SealedCredential>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, provider, key_id, ciphertext FROM tollgate_all_sealed_credentials()",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows::all(&rows, rows::sealed_for_rotation)
    }

    async fn reseal_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
        sealed: SealedSecret,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let sealed = validate::sealed(sealed)?;
        let mut tx = self.tenant_tx(tenant).await?;
        let before = lock_credential(&mut tx, tenant, id).await?;
        let row = sqlx::query(concat!(
            "UPDATE provider_credentials SET key_id = $3, ciphertext = $4, updated_at = now() \
             WHERE tenant_id = $1 AND id = $2 RETURNING ",
            credential_cols!()
        ))
        .bind(tenant.0)
        .bind(id.0)
        .bind(&sealed.key_id)
        .bind(&sealed.ciphertext)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let after = rows::credential(&row)?;
        let audit = AuditEntry {
            tenant,
            actor,
            action: "credential.reseal",
            resource_type: "credential",
            resource_id: id.to_string(),
            before: Some(to_json(&before)?),
            after: Some(to_json(&after)?),
        };
        write_audit(&mut tx, audit).await?;
        notify(&mut tx, Change::Credentials(tenant)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    // --- audit ---

    async fn record_action(
        &self,
        tenant: TenantId,
        actor: &Actor,
        action: &'static str,
        resource_id: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        lock_tenant(&mut tx, tenant).await?;
        let audit = AuditEntry {
            tenant,
            actor,
            action,
            resource_type: action.split('.').next().unwrap_or(action),
            resource_id: resource_id.to_owned(),
            before: None,
            after: Some(details),
        };
        write_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn list_audit(&self, tenant: TenantId, page: PageRequest) -> Result<Page<AuditRecord>, StoreError> {
        let limit = page_limit(&page);
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_log WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(tenant.0)
        .bind(page.after)
        .bind(limit as i64 + 1)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(finish_page(rows::all(&rows, rows::audit)?, limit, rows::uuid_of))
    }
}
