//! `GET /me` and the tenants: create, list and delete are the super-admin's; a tenant's own
//! keys read it, admins rename it, owners change its policy.

use axum::Json;
use axum::http::StatusCode;

use super::extract::{Admin, Ids, ListQuery, PageQuery, TenantPath};
use super::model::{CreateTenant, Deleted, List, MeView, TenantView, UpdateTenant};
use crate::errors::ApiError;
use crate::extract::JsonBody;

/// The caller: the super-admin, or a tenant key with its tenant, member and role.
#[utoipa::path(operation_id = "get_me", get, path = "/admin/v1/me", tag = "me", responses((status = 200, body = MeView)))]
pub async fn me(admin: Admin) -> Json<MeView> {
    Json(admin.service.me(&admin.caller).into())
}

/// Creates a tenant (super-admin only).
#[utoipa::path(operation_id = "create_tenant", post, path = "/admin/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView)))]
pub async fn create(
    admin: Admin,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let tenant = admin.service.create_tenant(&admin.caller, body.into()).await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// Lists tenants (super-admin only).
#[utoipa::path(operation_id = "list_tenants", get, path = "/admin/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = List<TenantView>)))]
pub async fn list(
    admin: Admin,
    ListQuery(q): ListQuery<PageQuery>,
) -> Result<Json<List<TenantView>>, ApiError> {
    let page = admin.service.list_tenants(&admin.caller, q.page()?).await?;
    Ok(Json(List::from_page(page, TenantView::from)))
}

#[utoipa::path(operation_id = "get_tenant", get, path = "/admin/v1/tenants/{tenant_id}", tag = "tenants", params(TenantPath),
    responses((status = 200, body = TenantView)))]
pub async fn get(admin: Admin, Ids(p): Ids<TenantPath>) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(admin.service.get_tenant(&admin.caller, p.tenant_id).await?.into()))
}

/// Renames the tenant (admin) or changes its policy (owner).
#[utoipa::path(operation_id = "update_tenant", patch, path = "/admin/v1/tenants/{tenant_id}", tag = "tenants", params(TenantPath),
    request_body = UpdateTenant, responses((status = 200, body = TenantView)))]
pub async fn update(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(admin.service.update_tenant(&admin.caller, p.tenant_id, body.into()).await?.into()))
}

/// Deletes the tenant and everything it owns (super-admin only).
#[utoipa::path(operation_id = "delete_tenant", delete, path = "/admin/v1/tenants/{tenant_id}", tag = "tenants", params(TenantPath),
    responses((status = 200, body = Deleted)))]
pub async fn delete(admin: Admin, Ids(p): Ids<TenantPath>) -> Result<Json<Deleted>, ApiError> {
    admin.service.delete_tenant(&admin.caller, p.tenant_id).await?;
    Ok(Json(Deleted::new("tenant", p.tenant_id.0)))
}
