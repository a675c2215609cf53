//! A tenant's projects: everyone in the tenant reads them, admins and owners change them.

use axum::Json;
use axum::http::StatusCode;

use super::extract::{Admin, Ids, ListQuery, PageQuery, ProjectPath, TenantPath};
use super::model::{CreateProject, Deleted, List, ProjectView, UpdateProject};
use crate::errors::ApiError;
use crate::extract::JsonBody;

#[utoipa::path(operation_id = "create_project", post, path = "/admin/v1/tenants/{tenant_id}/projects", tag = "projects", params(TenantPath),
    request_body = CreateProject, responses((status = 201, body = ProjectView)))]
pub async fn create(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<CreateProject>,
) -> Result<(StatusCode, Json<ProjectView>), ApiError> {
    let project = admin.service.create_project(&admin.caller, p.tenant_id, body.into()).await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

#[utoipa::path(operation_id = "list_projects", get, path = "/admin/v1/tenants/{tenant_id}/projects", tag = "projects",
    params(TenantPath, PageQuery), responses((status = 200, body = List<ProjectView>)))]
pub async fn list(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    ListQuery(q): ListQuery<PageQuery>,
) -> Result<Json<List<ProjectView>>, ApiError> {
    let page = admin.service.list_projects(&admin.caller, p.tenant_id, q.page()?).await?;
    Ok(Json(List::from_page(page, ProjectView::from)))
}

#[utoipa::path(operation_id = "get_project", get, path = "/admin/v1/tenants/{tenant_id}/projects/{project_id}", tag = "projects",
    params(ProjectPath), responses((status = 200, body = ProjectView)))]
pub async fn get(admin: Admin, Ids(p): Ids<ProjectPath>) -> Result<Json<ProjectView>, ApiError> {
    Ok(Json(admin.service.get_project(&admin.caller, p.tenant_id, p.project_id).await?.into()))
}

#[utoipa::path(operation_id = "update_project", patch, path = "/admin/v1/tenants/{tenant_id}/projects/{project_id}", tag = "projects",
    params(ProjectPath), request_body = UpdateProject, responses((status = 200, body = ProjectView)))]
pub async fn update(
    admin: Admin,
    Ids(p): Ids<ProjectPath>,
    JsonBody(body): JsonBody<UpdateProject>,
) -> Result<Json<ProjectView>, ApiError> {
    let project = admin.service.update_project(&admin.caller, p.tenant_id, p.project_id, body.into()).await?;
    Ok(Json(project.into()))
}

/// Deletes the project; 409 while it still has live keys.
#[utoipa::path(operation_id = "delete_project", delete, path = "/admin/v1/tenants/{tenant_id}/projects/{project_id}", tag = "projects",
    params(ProjectPath), responses((status = 200, body = Deleted)))]
pub async fn delete(admin: Admin, Ids(p): Ids<ProjectPath>) -> Result<Json<Deleted>, ApiError> {
    admin.service.delete_project(&admin.caller, p.tenant_id, p.project_id).await?;
    Ok(Json(Deleted::new("project", p.project_id.0)))
}
