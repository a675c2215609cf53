//! A tenant's API keys: the secret is in the create and rotate responses only.

use axum::Json;
use axum::http::StatusCode;

use super::extract::{Admin, Ids, KeyListQuery, KeyPath, ListQuery, TenantPath};
use super::model::{CreateKey, CreatedKeyView, KeyView, List, UpdateKey};
use crate::errors::ApiError;
use crate::extract::JsonBody;

/// Creates a key; the response holds its secret, which is never shown again.
#[utoipa::path(operation_id = "create_key", post, path = "/admin/v1/tenants/{tenant_id}/keys", tag = "keys", params(TenantPath),
    request_body = CreateKey, responses((status = 201, body = CreatedKeyView)))]
pub async fn create(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKeyView>), ApiError> {
    let created = admin.service.create_key(&admin.caller, p.tenant_id, body.into()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Lists keys (developers: only their own), live ones unless `include_revoked`.
#[utoipa::path(operation_id = "list_keys", get, path = "/admin/v1/tenants/{tenant_id}/keys", tag = "keys",
    params(TenantPath, KeyListQuery), responses((status = 200, body = List<KeyView>)))]
pub async fn list(
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    ListQuery(q): ListQuery<KeyListQuery>,
) -> Result<Json<List<KeyView>>, ApiError> {
    let page = admin.service.list_keys(&admin.caller, p.tenant_id, q.filter(), q.page()?).await?;
    Ok(Json(List::from_page(page, KeyView::from)))
}

#[utoipa::path(operation_id = "get_key", get, path = "/admin/v1/tenants/{tenant_id}/keys/{key_id}", tag = "keys",
    params(KeyPath), responses((status = 200, body = KeyView)))]
pub async fn get(admin: Admin, Ids(p): Ids<KeyPath>) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(admin.service.get_key(&admin.caller, p.tenant_id, p.key_id).await?.into()))
}

#[utoipa::path(operation_id = "update_key", patch, path = "/admin/v1/tenants/{tenant_id}/keys/{key_id}", tag = "keys",
    params(KeyPath), request_body = UpdateKey, responses((status = 200, body = KeyView)))]
pub async fn update(
    admin: Admin,
    Ids(p): Ids<KeyPath>,
    JsonBody(body): JsonBody<UpdateKey>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(admin.service.update_key(&admin.caller, p.tenant_id, p.key_id, body.into()).await?.into()))
}

/// Revokes the key (at once on this node, within about a second on the others) and returns it.
#[utoipa::path(operation_id = "revoke_key", delete, path = "/admin/v1/tenants/{tenant_id}/keys/{key_id}", tag = "keys",
    params(KeyPath), responses((status = 200, body = KeyView)))]
pub async fn revoke(admin: Admin, Ids(p): Ids<KeyPath>) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(admin.service.revoke_key(&admin.caller, p.tenant_id, p.key_id).await?.into()))
}

/// Replaces the key with a new secret (same project, owner, name, scopes, models, metadata and
/// expiry) and revokes the old one in the same transaction.
#[utoipa::path(operation_id = "rotate_key", post, path = "/admin/v1/tenants/{tenant_id}/keys/{key_id}/rotate", tag = "keys",
    params(KeyPath), responses((status = 200, body = CreatedKeyView)))]
pub async fn rotate(admin: Admin, Ids(p): Ids<KeyPath>) -> Result<Json<CreatedKeyView>, ApiError> {
    Ok(Json(admin.service.rotate_key(&admin.caller, p.tenant_id, p.key_id).await?.into()))
}
