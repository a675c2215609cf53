//! A tenant's provider credentials (bring-your-own-key) and its audit trail: admins and owners
//! only. A credential's secret goes in once and never comes out.

use axum::Json;
use axum::http::StatusCode;

use super::extract::{Admin, CredentialPath, Ids, ListQuery, PageQuery, TenantPath};
use super::model::{AuditView, CreateCredentialBody, CredentialView, Deleted, List};
use crate::errors::ApiError;
use crate::extract::JsonBody;

#[utoipa::path(operation_id = "create_credential", post, path = "/admin/v1/tenants/{tenant_id}/credentials", tag = "credentials",
    params(TenantPath), request_body = CreateCredentialBody, responses((status = 201, body = CredentialView)))]
pub async fn create(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<CreateCredentialBody>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let credential = admin.service.create_credential(&admin.caller, p.tenant_id, body.into()).await?;
    Ok((StatusCode::CREATED, Json(credential.into())))
}

#[utoipa::path(operation_id = "list_credentials", get, path = "/admin/v1/tenants/{tenant_id}/credentials", tag = "credentials",
    params(TenantPath, PageQuery), responses((status = 200, body = List<CredentialView>)))]
pub async fn list(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    ListQuery(q): ListQuery<PageQuery>,
) -> Result<Json<List<CredentialView>>, ApiError> {
    let page = admin.service.list_credentials(&admin.caller, p.tenant_id, q.page()?).await?;
    Ok(Json(List::from_page(page, CredentialView::from)))
}

#[utoipa::path(operation_id = "get_credential", get, path = "/admin/v1/tenants/{tenant_id}/credentials/{credential_id}", tag = "credentials",
    params(CredentialPath), responses((status = 200, body = CredentialView)))]
pub async fn get(admin: Admin, Ids(p): Ids<CredentialPath>) -> Result<Json<CredentialView>, ApiError> {
    Ok(Json(admin.service.get_credential(&admin.caller, p.tenant_id, p.credential_id).await?.into()))
}

#[utoipa::path(operation_id = "delete_credential", delete, path = "/admin/v1/tenants/{tenant_id}/credentials/{credential_id}", tag = "credentials",
    params(CredentialPath), responses((status = 200, body = Deleted)))]
pub async fn delete(admin: Admin, Ids(p): Ids<CredentialPath>) -> Result<Json<Deleted>, ApiError> {
    admin.service.delete_credential(&admin.caller, p.tenant_id, p.credential_id).await?;
    Ok(Json(Deleted::new("provider_credential", p.credential_id.0)))
}

/// The tenant's admin changes, newest first: who, what, when, before and after.
#[utoipa::path(operation_id = "list_audit", get, path = "/admin/v1/tenants/{tenant_id}/audit", tag = "audit",
    params(TenantPath, PageQuery), responses((status = 200, body = List<AuditView>)))]
pub async fn audit(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    ListQuery(q): ListQuery<PageQuery>,
) -> Result<Json<List<AuditView>>, ApiError> {
    let page = admin.service.list_audit(&admin.caller, p.tenant_id, q.page()?).await?;
    Ok(Json(List::from_page(page, AuditView::from)))
}
