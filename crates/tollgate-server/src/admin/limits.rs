//! Limits and pricing as resources of their own: `GET` reads the policy, `PUT` replaces it whole
//! (`{}` clears it) and answers the stored policy (normalised: alert thresholds sorted, price
//! amounts as decimal strings). The same policies show on `GET` tenant, project and key.
//!
//! Rights (checked by `AdminService`): every member reads a tenant's and a project's; keys'
//! as `GET` key (developers their own); only the super-admin sets a tenant's limits and pricing;
//! admins and owners set project and key limits.

use axum::Json;

use super::extract::{Admin, Ids, KeyPath, ProjectPath, TenantPath};
use super::model::{Limits, Pricing};
use crate::errors::ApiError;
use crate::extract::JsonBody;

/// The tenant's limits (every member).
#[utoipa::path(operation_id = "get_tenant_limits", get, path = "/admin/v1/tenants/{tenant_id}/limits", tag = "limits",
    params(TenantPath), responses((status = 200, body = Limits)))]
pub async fn get_tenant_limits(admin: Admin, Ids(p): Ids<TenantPath>) -> Result<Json<Limits>, ApiError> {
    Ok(Json(admin.service.get_tenant(&admin.caller, p.tenant_id).await?.limits.into()))
}

/// Replaces the tenant's limits (super-admin only).
#[utoipa::path(operation_id = "set_tenant_limits", put, path = "/admin/v1/tenants/{tenant_id}/limits", tag = "limits",
    params(TenantPath), request_body = Limits, responses((status = 200, body = Limits)))]
pub async fn set_tenant_limits(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<Limits>,
) -> Result<Json<Limits>, ApiError> {
    let tenant = admin.service.set_tenant_limits(&admin.caller, p.tenant_id, body.into()).await?;
    Ok(Json(tenant.limits.into()))
}

/// The tenant's negotiated prices and markup (every member).
#[utoipa::path(operation_id = "get_tenant_pricing", get, path = "/admin/v1/tenants/{tenant_id}/pricing", tag = "limits",
    params(TenantPath), responses((status = 200, body = Pricing)))]
pub async fn get_tenant_pricing(admin: Admin, Ids(p): Ids<TenantPath>) -> Result<Json<Pricing>, ApiError> {
    Ok(Json(admin.service.get_tenant(&admin.caller, p.tenant_id).await?.pricing.into()))
}

/// Replaces the tenant's prices and markup (super-admin only).
#[utoipa::path(operation_id = "set_tenant_pricing", put, path = "/admin/v1/tenants/{tenant_id}/pricing", tag = "limits",
    params(TenantPath), request_body = Pricing, responses((status = 200, body = Pricing)))]
pub async fn set_tenant_pricing(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<Pricing>,
) -> Result<Json<Pricing>, ApiError> {
    let tenant = admin.service.set_tenant_pricing(&admin.caller, p.tenant_id, body.into()).await?;
    Ok(Json(tenant.pricing.into()))
}

/// The project's limits (every member).
#[utoipa::path(operation_id = "get_project_limits", get, path = "/admin/v1/tenants/{tenant_id}/projects/{project_id}/limits",
    tag = "limits", params(ProjectPath), responses((status = 200, body = Limits)))]
pub async fn get_project_limits(admin: Admin, Ids(p): Ids<ProjectPath>) -> Result<Json<Limits>, ApiError> {
    Ok(Json(admin.service.get_project(&admin.caller, p.tenant_id, p.project_id).await?.limits.into()))
}

/// Replaces the project's limits (admins and owners).
#[utoipa::path(operation_id = "set_project_limits", put, path = "/admin/v1/tenants/{tenant_id}/projects/{project_id}/limits",
    tag = "limits", params(ProjectPath), request_body = Limits, responses((status = 200, body = Limits)))]
pub async fn set_project_limits(
    admin: Admin,
    Ids(p): Ids<ProjectPath>,
    JsonBody(body): JsonBody<Limits>,
) -> Result<Json<Limits>, ApiError> {
    let project =
        admin.service.set_project_limits(&admin.caller, p.tenant_id, p.project_id, body.into()).await?;
    Ok(Json(project.limits.into()))
}

/// The key's limits (as `GET` key: developers only for their own keys).
#[utoipa::path(operation_id = "get_key_limits", get, path = "/admin/v1/tenants/{tenant_id}/keys/{key_id}/limits",
    tag = "limits", params(KeyPath), responses((status = 200, body = Limits)))]
pub async fn get_key_limits(admin: Admin, Ids(p): Ids<KeyPath>) -> Result<Json<Limits>, ApiError> {
    Ok(Json(admin.service.get_key(&admin.caller, p.tenant_id, p.key_id).await?.limits.into()))
}

/// Replaces the key's limits (admins and owners).
#[utoipa::path(operation_id = "set_key_limits", put, path = "/admin/v1/tenants/{tenant_id}/keys/{key_id}/limits",
    tag = "limits", params(KeyPath), request_body = Limits, responses((status = 200, body = Limits)))]
pub async fn set_key_limits(
    admin: Admin,
    Ids(p): Ids<KeyPath>,
    JsonBody(body): JsonBody<Limits>,
) -> Result<Json<Limits>, ApiError> {
    let key = admin.service.set_key_limits(&admin.caller, p.tenant_id, p.key_id, body.into()).await?;
    Ok(Json(key.limits.into()))
}
