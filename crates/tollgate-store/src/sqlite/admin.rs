//! [`AdminStore`] for [`SqliteStore`]: tenancy CRUD, keys, credentials and the audit trail.
//!
//! Every tenant-scoped statement has `tenant_id = ?` in its `WHERE` clause, so another tenant's
//! id finds nothing and the method answers `NotFound`, exactly as for a missing record.
//! Mutations read the current row, change it and write their audit record in one
//! `BEGIN IMMEDIATE` transaction, then publish their change after the commit.

use tollgate_types::limits::{LimitPolicy, PricingPolicy};
use tollgate_types::ports::store::{
    AdminStore, Change, KeyFilter, KeyPatch, MemberPatch, NewCredential, NewKey, NewMember, NewProject,
    NewTenant, ProjectPatch, SealedCredential, StoreError, TenantPatch,
};
use tollgate_types::tenancy::{
    Actor, ApiKey, AuditRecord, CredentialId, KeyId, Member, MemberId, Page, PageRequest, Project, ProjectId,
    ProviderCredential, SealedSecret, Tenant, TenantId,
};

use super::rows::{
    AuditRow, CredentialRow, KeyRow, MemberRow, ProjectRow, TenantRow, audit_cols, credential_cols, key_cols,
    member_cols, project_cols, tenant_cols,
};
use super::{Audit, SqliteStore, Tx, after_asc, after_desc, conflict_or, missing_parent_or, to_json};
use crate::db_error;
use crate::paging::{finish_page, page_limit};
use crate::validate;

// === row fetchers used inside transactions ===

async fn tenant_in(tx: &mut Tx, id: TenantId) -> Result<Tenant, StoreError> {
    let row: Option<TenantRow> =
        sqlx::query_as(concat!("SELECT ", tenant_cols!(), " FROM tenants WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
    row.map(Tenant::from).ok_or(StoreError::NotFound("tenant"))
}

async fn project_in(tx: &mut Tx, tenant: TenantId, id: ProjectId) -> Result<Project, StoreError> {
    let row: Option<ProjectRow> =
        sqlx::query_as(concat!("SELECT ", project_cols!(), " FROM projects WHERE tenant_id = ? AND id = ?"))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
    row.map(Project::from).ok_or(StoreError::NotFound("project"))
}

async fn member_in(tx: &mut Tx, tenant: TenantId, id: MemberId) -> Result<Member, StoreError> {
    let row: Option<MemberRow> =
        sqlx::query_as(concat!("SELECT ", member_cols!(), " FROM members WHERE tenant_id = ? AND id = ?"))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
    row.map(Member::try_from).transpose()?.ok_or(StoreError::NotFound("member"))
}

async fn key_in(tx: &mut Tx, tenant: TenantId, id: KeyId) -> Result<ApiKey, StoreError> {
    let row: Option<KeyRow> =
        sqlx::query_as(concat!("SELECT ", key_cols!(), " FROM api_keys WHERE tenant_id = ? AND id = ?"))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
    row.map(ApiKey::from).ok_or(StoreError::NotFound("key"))
}

async fn credential_in(
    tx: &mut Tx,
    tenant: TenantId,
    id: CredentialId,
) -> Result<ProviderCredential, StoreError> {
    let row: Option<CredentialRow> = sqlx::query_as(concat!(
        "SELECT ",
        credential_cols!(),
        " FROM provider_credentials WHERE tenant_id = ? AND id = ?"
    ))
    .bind(tenant.0)
    .bind(id.0)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    row.map(|r| r.into_credential(false)).ok_or(StoreError::NotFound("credential"))
}

/// Inserts a validated key after checking its project and owner are the tenant's.
async fn insert_key(
    tx: &mut Tx,
    tenant: TenantId,
    new: NewKey,
    now: time::OffsetDateTime,
) -> Result<ApiKey, StoreError> {
    project_in(tx, tenant, new.project_id).await?;
    member_in(tx, tenant, new.owner_id).await?;
    let key = ApiKey {
        id: new.id,
        tenant_id: tenant,
        project_id: new.project_id,
        owner_id: new.owner_id,
        name: new.name,
        prefix: new.prefix,
        scopes: new.scopes,
        allowed_models: new.allowed_models,
        allowed_tags: new.allowed_tags,
        metadata: new.metadata,
        limits: new.limits.unwrap_or_default(),
        cache: new.cache,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
        created_at: now,
        updated_at: now,
    };
    sqlx::query(concat!(
        "INSERT INTO api_keys (",
        key_cols!(),
        ", hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(key.id.0)
    .bind(tenant.0)
    .bind(key.project_id.0)
    .bind(key.owner_id.0)
    .bind(&key.name)
    .bind(&key.prefix)
    .bind(sqlx::types::Json(&key.scopes))
    .bind(key.allowed_models.as_ref().map(sqlx::types::Json))
    .bind(sqlx::types::Json(&key.allowed_tags))
    .bind(sqlx::types::Json(&key.metadata))
    .bind(sqlx::types::Json(&key.limits))
    .bind(sqlx::types::Json(&key.cache))
    .bind(key.expires_at)
    .bind(key.revoked_at)
    .bind(key.last_used_at)
    .bind(key.created_at)
    .bind(key.updated_at)
    .bind(&new.hash.0[..])
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        conflict_or(e, |msg| {
            if msg.contains(".hash") {
                "hash: a key with this hash already exists".to_owned()
            } else {
                format!("id: a key with id {} already exists", key.id)
            }
        })
    })?;
    Ok(key)
}

/// Marks a live key revoked at `now`; returns the revoked record.
async fn revoke_in(tx: &mut Tx, key: &ApiKey, now: time::OffsetDateTime) -> Result<ApiKey, StoreError> {
    sqlx::query("UPDATE api_keys SET revoked_at = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
        .bind(now)
        .bind(now)
        .bind(key.tenant_id.0)
        .bind(key.id.0)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(ApiKey { revoked_at: Some(now), updated_at: now, ..key.clone() })
}

/// An audit record; the resource type is the action's first part (`key` of `key.revoke`).
fn audit<'a>(
    tenant: TenantId,
    actor: &'a Actor,
    action: &'static str,
    resource_id: impl ToString,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    at: time::OffsetDateTime,
) -> Audit<'a> {
    let resource_type = action.split('.').next().unwrap_or(action);
    Audit { tenant, actor, action, resource_type, resource_id: resource_id.to_string(), before, after, at }
}

// === impl AdminStore ===

#[async_trait::async_trait]
impl AdminStore for SqliteStore {
    // --- tenants ---

    async fn create_tenant(&self, new: NewTenant, actor: &Actor) -> Result<Tenant, StoreError> {
        let new = validate::new_tenant(new)?;
        let now = validate::now();
        let tenant = Tenant {
            id: TenantId::new(),
            name: new.name,
            policy: new.policy,
            limits: LimitPolicy::default(),
            pricing: PricingPolicy::default(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(concat!("INSERT INTO tenants (", tenant_cols!(), ") VALUES (?, ?, ?, ?, ?, ?, ?)"))
            .bind(tenant.id.0)
            .bind(&tenant.name)
            .bind(sqlx::types::Json(&tenant.policy))
            .bind(sqlx::types::Json(&tenant.limits))
            .bind(sqlx::types::Json(&tenant.pricing))
            .bind(tenant.created_at)
            .bind(tenant.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict_or(e, |_| format!("name: a tenant named {:?} already exists", tenant.name))
            })?;
        audit(tenant.id, actor, "tenant.create", tenant.id, None, Some(to_json(&tenant)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(tenant)
    }

    async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>, StoreError> {
        let limit = page_limit(&page);
        let rows: Vec<TenantRow> = sqlx::query_as(concat!(
            "SELECT ",
            tenant_cols!(),
            " FROM tenants WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(after_asc(page))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(finish_page(rows.into_iter().map(Tenant::from).collect(), limit, |t| t.id.0))
    }

    async fn get_tenant(&self, tenant: TenantId) -> Result<Tenant, StoreError> {
        let row: Option<TenantRow> =
            sqlx::query_as(concat!("SELECT ", tenant_cols!(), " FROM tenants WHERE id = ?"))
                .bind(tenant.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        row.map(Tenant::from).ok_or(StoreError::NotFound("tenant"))
    }

    async fn update_tenant(
        &self,
        tenant: TenantId,
        patch: TenantPatch,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let patch = validate::tenant_patch(patch)?;
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = tenant_in(&mut tx, tenant).await?;
        let after = Tenant {
            name: patch.name.unwrap_or_else(|| before.name.clone()),
            policy: patch.policy.unwrap_or_else(|| before.policy.clone()),
            updated_at: now,
            ..before.clone()
        };
        sqlx::query("UPDATE tenants SET name = ?, policy = ?, updated_at = ? WHERE id = ?")
            .bind(&after.name)
            .bind(sqlx::types::Json(&after.policy))
            .bind(now)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict_or(e, |_| format!("name: a tenant named {:?} already exists", after.name))
            })?;
        audit(tenant, actor, "tenant.update", tenant, Some(to_json(&before)?), Some(to_json(&after)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Tenant(tenant)]);
        Ok(after)
    }

    async fn delete_tenant(&self, tenant: TenantId, _actor: &Actor) -> Result<(), StoreError> {
        // No audit record: the tenant's audit log is deleted with it (ON DELETE CASCADE).
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM tenants WHERE id = ?")
            .bind(tenant.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        // The cache journals have no foreign key (they are written off the request path, and
        // an entry may outlive its key): their rows go here, so a restart cannot bring the
        // tenant's prompts and answers back. Running gateways purge memory on the change.
        for table in ["exact_cache_entries", "semantic_cache_entries"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE tenant_id = ?")))
                .bind(tenant.0.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Tenant(tenant)]);
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
        let now = validate::now();
        let project = Project {
            id: ProjectId::new(),
            tenant_id: tenant,
            name: new.name,
            limits: new.limits.unwrap_or_default(),
            cache: new.cache,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(concat!("INSERT INTO projects (", project_cols!(), ") VALUES (?, ?, ?, ?, ?, ?, ?)"))
            .bind(project.id.0)
            .bind(tenant.0)
            .bind(&project.name)
            .bind(sqlx::types::Json(&project.limits))
            .bind(sqlx::types::Json(&project.cache))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                insert_error(e, |_| format!("name: a project named {:?} already exists", project.name))
            })?;
        audit(tenant, actor, "project.create", project.id, None, Some(to_json(&project)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(project)
    }

    async fn list_projects(&self, tenant: TenantId, page: PageRequest) -> Result<Page<Project>, StoreError> {
        self.list_scoped::<ProjectRow, _>(
            tenant,
            page,
            concat!(
                "SELECT ",
                project_cols!(),
                " FROM projects WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?"
            ),
            |r| Ok(Project::from(r)),
            |p| p.id.0,
        )
        .await
    }

    async fn get_project(&self, tenant: TenantId, id: ProjectId) -> Result<Project, StoreError> {
        self.get_scoped::<ProjectRow, _>(
            tenant,
            concat!("SELECT ", project_cols!(), " FROM projects WHERE tenant_id = ? AND id = ?"),
            id.0,
            |r| Ok(Project::from(r)),
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
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = project_in(&mut tx, tenant, id).await?;
        let cache_changed = patch.cache.is_some_and(|c| c != before.cache);
        let after = Project {
            name: patch.name.unwrap_or_else(|| before.name.clone()),
            cache: patch.cache.unwrap_or(before.cache),
            updated_at: now,
            ..before.clone()
        };
        sqlx::query("UPDATE projects SET name = ?, cache = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(&after.name)
            .bind(sqlx::types::Json(&after.cache))
            .bind(now)
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict_or(e, |_| format!("name: a project named {:?} already exists", after.name))
            })?;
        audit(tenant, actor, "project.update", id, Some(to_json(&before)?), Some(to_json(&after)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        if cache_changed {
            // Keys carry their project's cache rule: every cached key of the tenant may belong
            // to the project.
            self.publish([Change::Tenant(tenant)]);
        }
        Ok(after)
    }

    async fn delete_project(&self, tenant: TenantId, id: ProjectId, actor: &Actor) -> Result<(), StoreError> {
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = project_in(&mut tx, tenant, id).await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM api_keys WHERE tenant_id = ? AND project_id = ? AND revoked_at IS NULL",
        )
        .bind(tenant.0)
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        if live > 0 {
            return Err(StoreError::Conflict(format!(
                "project: {:?} still has {live} live key(s); revoke them before deleting it",
                before.name
            )));
        }
        // Its revoked keys go with it (ON DELETE CASCADE); tell caches to forget them too.
        let gone: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM api_keys WHERE tenant_id = ? AND project_id = ?")
                .bind(tenant.0)
                .bind(id.0)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
        sqlx::query("DELETE FROM projects WHERE tenant_id = ? AND id = ?")
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit(tenant, actor, "project.delete", id, Some(to_json(&before)?), None, now).write(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        self.publish(gone.into_iter().map(|k| Change::Key(KeyId(k))));
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
        let now = validate::now();
        let member = Member {
            id: MemberId::new(),
            tenant_id: tenant,
            name: new.name,
            role: new.role,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(concat!("INSERT INTO members (", member_cols!(), ") VALUES (?, ?, ?, ?, ?, ?)"))
            .bind(member.id.0)
            .bind(tenant.0)
            .bind(&member.name)
            .bind(member.role.as_str())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                insert_error(e, |_| format!("name: a member named {:?} already exists", member.name))
            })?;
        audit(tenant, actor, "member.create", member.id, None, Some(to_json(&member)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(member)
    }

    async fn list_members(&self, tenant: TenantId, page: PageRequest) -> Result<Page<Member>, StoreError> {
        self.list_scoped::<MemberRow, _>(
            tenant,
            page,
            concat!(
                "SELECT ",
                member_cols!(),
                " FROM members WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?"
            ),
            Member::try_from,
            |m| m.id.0,
        )
        .await
    }

    async fn get_member(&self, tenant: TenantId, id: MemberId) -> Result<Member, StoreError> {
        self.get_scoped::<MemberRow, _>(
            tenant,
            concat!("SELECT ", member_cols!(), " FROM members WHERE tenant_id = ? AND id = ?"),
            id.0,
            Member::try_from,
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
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = member_in(&mut tx, tenant, id).await?;
        let after = Member {
            name: patch.name.unwrap_or_else(|| before.name.clone()),
            role: patch.role.unwrap_or(before.role),
            updated_at: now,
            ..before.clone()
        };
        sqlx::query("UPDATE members SET name = ?, role = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(&after.name)
            .bind(after.role.as_str())
            .bind(now)
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict_or(e, |_| format!("name: a member named {:?} already exists", after.name))
            })?;
        audit(tenant, actor, "member.update", id, Some(to_json(&before)?), Some(to_json(&after)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Tenant(tenant)]);
        Ok(after)
    }

    async fn delete_member(&self, tenant: TenantId, id: MemberId, actor: &Actor) -> Result<(), StoreError> {
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = member_in(&mut tx, tenant, id).await?;
        let live: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE tenant_id = ? AND owner_id = ? AND revoked_at IS NULL ORDER BY id"
        ))
        .bind(tenant.0)
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut revoked = Vec::with_capacity(live.len());
        for key in live.into_iter().map(ApiKey::from) {
            let after = revoke_in(&mut tx, &key, now).await?;
            audit(tenant, actor, "key.revoke", key.id, Some(to_json(&key)?), Some(to_json(&after)?), now)
                .write(&mut tx)
                .await?;
            revoked.push(key.id);
        }
        sqlx::query("DELETE FROM members WHERE tenant_id = ? AND id = ?")
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit(tenant, actor, "member.delete", id, Some(to_json(&before)?), None, now).write(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        self.publish(revoked.into_iter().map(Change::Key).chain([Change::Tenant(tenant)]));
        Ok(())
    }

    // --- keys ---

    async fn create_key(&self, tenant: TenantId, new: NewKey, actor: &Actor) -> Result<ApiKey, StoreError> {
        let new = validate::new_key(new)?;
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let key = insert_key(&mut tx, tenant, new, now).await?;
        audit(tenant, actor, "key.create", key.id, None, Some(to_json(&key)?), now).write(&mut tx).await?;
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
        let project = filter.project_id.map(|p| p.0);
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_cols!(),
            " FROM api_keys WHERE tenant_id = ? AND id > ? AND (? IS NULL OR project_id = ?) \
              AND (? OR revoked_at IS NULL) ORDER BY id LIMIT ?"
        ))
        .bind(tenant.0)
        .bind(after_asc(page))
        .bind(project)
        .bind(project)
        .bind(filter.include_revoked)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(finish_page(rows.into_iter().map(ApiKey::from).collect(), limit, |k| k.id.0))
    }

    async fn get_key(&self, tenant: TenantId, id: KeyId) -> Result<ApiKey, StoreError> {
        self.get_scoped::<KeyRow, _>(
            tenant,
            concat!("SELECT ", key_cols!(), " FROM api_keys WHERE tenant_id = ? AND id = ?"),
            id.0,
            |r| Ok(ApiKey::from(r)),
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
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = key_in(&mut tx, tenant, id).await?;
        let after = ApiKey {
            name: patch.name.unwrap_or_else(|| before.name.clone()),
            allowed_models: patch.allowed_models.unwrap_or_else(|| before.allowed_models.clone()),
            allowed_tags: patch.allowed_tags.unwrap_or_else(|| before.allowed_tags.clone()),
            metadata: patch.metadata.unwrap_or_else(|| before.metadata.clone()),
            expires_at: patch.expires_at.unwrap_or(before.expires_at),
            cache: patch.cache.unwrap_or(before.cache),
            updated_at: now,
            ..before.clone()
        };
        sqlx::query(
            "UPDATE api_keys SET name = ?, allowed_models = ?, allowed_tags = ?, metadata = ?, expires_at = ?, \
             cache = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(&after.name)
        .bind(after.allowed_models.as_ref().map(sqlx::types::Json))
        .bind(sqlx::types::Json(&after.allowed_tags))
        .bind(sqlx::types::Json(&after.metadata))
        .bind(after.expires_at)
        .bind(sqlx::types::Json(&after.cache))
        .bind(now)
        .bind(tenant.0)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        audit(tenant, actor, "key.update", id, Some(to_json(&before)?), Some(to_json(&after)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Key(id)]);
        Ok(after)
    }

    async fn revoke_key(&self, tenant: TenantId, id: KeyId, actor: &Actor) -> Result<ApiKey, StoreError> {
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = key_in(&mut tx, tenant, id).await?;
        if before.revoked_at.is_some() {
            // Idempotent: nothing changes, so nothing is audited or published.
            return Ok(before);
        }
        let after = revoke_in(&mut tx, &before, now).await?;
        audit(tenant, actor, "key.revoke", id, Some(to_json(&before)?), Some(to_json(&after)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Key(id)]);
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
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = key_in(&mut tx, tenant, old).await?;
        if before.revoked_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "key: {old} is revoked; only a live key can be rotated"
            )));
        }
        let created = insert_key(&mut tx, tenant, new, now).await?;
        revoke_in(&mut tx, &before, now).await?;
        // One record for the pair: the old key before, the key that replaces it after.
        audit(tenant, actor, "key.rotate", old, Some(to_json(&before)?), Some(to_json(&created)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Key(old)]);
        Ok(created)
    }

    // --- limits and pricing ---

    async fn set_tenant_limits(
        &self,
        tenant: TenantId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let limits = validate::policy("limits", limits)?;
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = tenant_in(&mut tx, tenant).await?;
        sqlx::query("UPDATE tenants SET limits = ?, updated_at = ? WHERE id = ?")
            .bind(sqlx::types::Json(&limits))
            .bind(now)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit(
            tenant,
            actor,
            "tenant.limits",
            tenant,
            Some(to_json(&before.limits)?),
            Some(to_json(&limits)?),
            now,
        )
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Tenant(tenant)]);
        Ok(Tenant { limits, updated_at: now, ..before })
    }

    async fn set_tenant_pricing(
        &self,
        tenant: TenantId,
        pricing: PricingPolicy,
        actor: &Actor,
    ) -> Result<Tenant, StoreError> {
        let pricing = validate::policy("pricing", pricing)?;
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = tenant_in(&mut tx, tenant).await?;
        sqlx::query("UPDATE tenants SET pricing = ?, updated_at = ? WHERE id = ?")
            .bind(sqlx::types::Json(&pricing))
            .bind(now)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit(
            tenant,
            actor,
            "tenant.pricing",
            tenant,
            Some(to_json(&before.pricing)?),
            Some(to_json(&pricing)?),
            now,
        )
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Tenant(tenant)]);
        Ok(Tenant { pricing, updated_at: now, ..before })
    }

    async fn set_project_limits(
        &self,
        tenant: TenantId,
        id: ProjectId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<Project, StoreError> {
        let limits = validate::policy("limits", limits)?;
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = project_in(&mut tx, tenant, id).await?;
        sqlx::query("UPDATE projects SET limits = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(sqlx::types::Json(&limits))
            .bind(now)
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit(
            tenant,
            actor,
            "project.limits",
            id,
            Some(to_json(&before.limits)?),
            Some(to_json(&limits)?),
            now,
        )
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db_error)?;
        // Every cached key of the tenant may belong to the project.
        self.publish([Change::Tenant(tenant)]);
        Ok(Project { limits, updated_at: now, ..before })
    }

    async fn set_key_limits(
        &self,
        tenant: TenantId,
        id: KeyId,
        limits: LimitPolicy,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError> {
        let limits = validate::policy("limits", limits)?;
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = key_in(&mut tx, tenant, id).await?;
        sqlx::query("UPDATE api_keys SET limits = ?, updated_at = ? WHERE tenant_id = ? AND id = ?")
            .bind(sqlx::types::Json(&limits))
            .bind(now)
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit(tenant, actor, "key.limits", id, Some(to_json(&before.limits)?), Some(to_json(&limits)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Key(id)]);
        Ok(ApiKey { limits, updated_at: now, ..before })
    }

    // --- provider credentials ---

    async fn create_credential(
        &self,
        tenant: TenantId,
        new: NewCredential,
        actor: &Actor,
    ) -> Result<ProviderCredential, StoreError> {
        let new = validate::new_credential(new)?;
        let now = validate::now();
        let credential = ProviderCredential {
            id: new.id,
            tenant_id: tenant,
            provider: new.provider,
            name: new.name,
            masked: new.masked,
            sealed: None,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(concat!(
            "INSERT INTO provider_credentials (",
            credential_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(credential.id.0)
        .bind(tenant.0)
        .bind(&credential.provider)
        .bind(&credential.name)
        .bind(&credential.masked)
        .bind(&new.sealed.key_id)
        .bind(&new.sealed.ciphertext)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            insert_error(e, |msg| {
                if msg.contains(".name") {
                    format!("name: a credential named {:?} already exists", credential.name)
                } else {
                    format!("id: a credential with id {} already exists", credential.id)
                }
            })
        })?;
        audit(tenant, actor, "credential.create", credential.id, None, Some(to_json(&credential)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Credentials(tenant)]);
        Ok(credential)
    }

    async fn list_credentials(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<ProviderCredential>, StoreError> {
        self.list_scoped::<CredentialRow, _>(
            tenant,
            page,
            concat!(
                "SELECT ",
                credential_cols!(),
                " FROM provider_credentials WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?"
            ),
            |r| Ok(r.into_credential(false)),
            |c| c.id.0,
        )
        .await
    }

    async fn get_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
    ) -> Result<ProviderCredential, StoreError> {
        self.get_scoped::<CredentialRow, _>(
            tenant,
            concat!(
                "SELECT ",
                credential_cols!(),
                " FROM provider_credentials WHERE tenant_id = ? AND id = ?"
            ),
            id.0,
            |r| Ok(r.into_credential(false)),
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
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = credential_in(&mut tx, tenant, id).await?;
        sqlx::query("DELETE FROM provider_credentials WHERE tenant_id = ? AND id = ?")
            .bind(tenant.0)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        audit(tenant, actor, "credential.delete", id, Some(to_json(&before)?), None, now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Credentials(tenant)]);
        Ok(())
    }

    async fn sealed_credentials(&self, tenant: TenantId) -> Result<Vec<ProviderCredential>, StoreError> {
        let rows: Vec<CredentialRow> = sqlx::query_as(concat!(
            "SELECT ",
            credential_cols!(),
            " FROM provider_credentials WHERE tenant_id = ? ORDER BY id"
        ))
        .bind(tenant.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|r| r.into_credential(true)).collect())
    }

    async fn all_sealed_credentials(&self) -> Result<Vec<SealedCredential>, StoreError> {
        let rows: Vec<CredentialRow> =
            sqlx::query_as(concat!("SELECT ", credential_cols!(), " FROM provider_credentials ORDER BY id"))
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|r| SealedCredential {
                tenant_id: TenantId(r.tenant_id),
                id: CredentialId(r.id),
                provider: r.provider,
                sealed: SealedSecret { key_id: r.key_id, ciphertext: r.ciphertext },
            })
            .collect())
    }

    async fn reseal_credential(
        &self,
        tenant: TenantId,
        id: CredentialId,
        sealed: SealedSecret,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let sealed = validate::sealed(sealed)?;
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        let before = credential_in(&mut tx, tenant, id).await?;
        sqlx::query(
            "UPDATE provider_credentials SET key_id = ?, ciphertext = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(&sealed.key_id)
        .bind(&sealed.ciphertext)
        .bind(now)
        .bind(tenant.0)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let after = ProviderCredential { updated_at: now, ..before.clone() };
        audit(tenant, actor, "credential.reseal", id, Some(to_json(&before)?), Some(to_json(&after)?), now)
            .write(&mut tx)
            .await?;
        tx.commit().await.map_err(db_error)?;
        self.publish([Change::Credentials(tenant)]);
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
        let now = validate::now();
        let mut tx = self.write_tx().await?;
        tenant_in(&mut tx, tenant).await?;
        audit(tenant, actor, action, resource_id, None, Some(details), now).write(&mut tx).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn list_audit(&self, tenant: TenantId, page: PageRequest) -> Result<Page<AuditRecord>, StoreError> {
        let limit = page_limit(&page);
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_log WHERE tenant_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(tenant.0)
        .bind(after_desc(page))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(finish_page(rows.into_iter().map(AuditRecord::from).collect(), limit, |a| a.id.0))
    }
}

/// Maps an insert's failure: a unique violation is `Conflict(message(db message))`; a
/// foreign-key violation means the tenant does not exist.
fn insert_error(e: sqlx::Error, message: impl FnOnce(&str) -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_foreign_key_violation()
    {
        return missing_parent_or(e, "tenant");
    }
    conflict_or(e, message)
}
