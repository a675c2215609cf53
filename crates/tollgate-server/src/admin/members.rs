//! A tenant's members and their roles: admins manage members below owner, owners manage all.

use axum::Json;
use axum::http::StatusCode;

use super::extract::{Admin, Ids, ListQuery, MemberPath, PageQuery, TenantPath};
use super::model::{CreateMember, Deleted, List, MemberView, UpdateMember};
use crate::errors::ApiError;
use crate::extract::JsonBody;

#[utoipa::path(operation_id = "create_member", post, path = "/admin/v1/tenants/{tenant_id}/members", tag = "members", params(TenantPath),
    request_body = CreateMember, responses((status = 201, body = MemberView)))]
pub async fn create(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<CreateMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    let member = admin.service.create_member(&admin.caller, p.tenant_id, body.into()).await?;
    Ok((StatusCode::CREATED, Json(member.into())))
}

#[utoipa::path(operation_id = "list_members", get, path = "/admin/v1/tenants/{tenant_id}/members", tag = "members",
    params(TenantPath, PageQuery), responses((status = 200, body = List<MemberView>)))]
pub async fn list(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    ListQuery(q): ListQuery<PageQuery>,
) -> Result<Json<List<MemberView>>, ApiError> {
    let page = admin.service.list_members(&admin.caller, p.tenant_id, q.page()?).await?;
    Ok(Json(List::from_page(page, MemberView::from)))
}

#[utoipa::path(operation_id = "get_member", get, path = "/admin/v1/tenants/{tenant_id}/members/{member_id}", tag = "members",
    params(MemberPath), responses((status = 200, body = MemberView)))]
pub async fn get(admin: Admin, Ids(p): Ids<MemberPath>) -> Result<Json<MemberView>, ApiError> {
    Ok(Json(admin.service.get_member(&admin.caller, p.tenant_id, p.member_id).await?.into()))
}

#[utoipa::path(operation_id = "update_member", patch, path = "/admin/v1/tenants/{tenant_id}/members/{member_id}", tag = "members",
    params(MemberPath), request_body = UpdateMember, responses((status = 200, body = MemberView)))]
pub async fn update(
    admin: Admin,
    Ids(p): Ids<MemberPath>,
    JsonBody(body): JsonBody<UpdateMember>,
) -> Result<Json<MemberView>, ApiError> {
    let member = admin.service.update_member(&admin.caller, p.tenant_id, p.member_id, body.into()).await?;
    Ok(Json(member.into()))
}

/// Deletes the member and revokes its keys.
#[utoipa::path(operation_id = "delete_member", delete, path = "/admin/v1/tenants/{tenant_id}/members/{member_id}", tag = "members",
    params(MemberPath), responses((status = 200, body = Deleted)))]
pub async fn delete(admin: Admin, Ids(p): Ids<MemberPath>) -> Result<Json<Deleted>, ApiError> {
    admin.service.delete_member(&admin.caller, p.tenant_id, p.member_id).await?;
    Ok(Json(Deleted::new("member", p.member_id.0)))
}
