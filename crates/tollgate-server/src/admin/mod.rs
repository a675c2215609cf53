//! The admin API under `/admin/v1`: tenants, projects, members, keys, limits and pricing,
//! provider credentials and the audit trail. Handlers are thin: they decode ([`extract`], [`model`]), call
//! `tollgate_core::admin::AdminService` (which checks the caller's tenant and role), and encode.
//!
//! Every handler carries a `#[utoipa::path]` and is registered through `utoipa_axum::routes!`,
//! so the OpenAPI document served at `GET /admin/v1/openapi.json` is generated from the routes
//! themselves and cannot drift from them. Authentication (and the `admin` scope) is checked by
//! the app's auth middleware before any of this runs; `openapi.json` is public.

mod cache;
mod credentials;
mod deployments;
pub mod extract;
mod keys;
mod limits;
mod members;
pub mod model;
mod projects;
mod tenants;
mod usage;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// Where the document is served (listed in `auth::PUBLIC_ROUTES`).
pub const OPENAPI_PATH: &str = "/admin/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate admin API",
        description = "Tenants, projects, members, API keys, limits and pricing, provider credentials and the audit trail. \
            Send an admin-scoped key as `Authorization: Bearer <key>`. Errors use OpenAI's shape \
            `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}`. See docs/admin-api.md."
    ),
    components(schemas(model::ErrorBody)),
    tags(
        (name = "me", description = "The caller"),
        (name = "tenants", description = "Organisations: the unit of isolation"),
        (name = "projects", description = "A tenant's projects; keys belong to projects"),
        (name = "members", description = "A tenant's members and their roles"),
        (name = "keys", description = "API keys: the secret is shown once"),
        (name = "limits", description = "Rate limits and budgets of tenants, projects and keys; a tenant's pricing"),
        (name = "credentials", description = "Provider credentials a tenant brings (BYOK)"),
        (name = "audit", description = "Every admin change, with before and after"),
        (name = "routing", description = "Aliases, their deployments and live health (super-admin)"),
        (name = "cache", description = "The response cache: purge a tenant's cached answers"),
    )
)]
struct ApiDoc;

/// What every admin route shares, added to the document once instead of on each handler: the
/// bearer-key security scheme and the error responses. Applied after the routes are collected
/// (an `#[openapi(modifiers(..))]` would run before there are any paths).
struct Conventions;

/// The error statuses any admin route may answer, with what they mean there.
const ERROR_RESPONSES: [(&str, &str); 7] = [
    ("400", "Invalid body, path or query parameter (the message and `param` name it)"),
    ("401", "Missing, unknown, expired or revoked key"),
    ("403", "The key lacks the `admin` scope or the role this action needs"),
    ("404", "No such resource in this tenant (another tenant's resources are never visible)"),
    ("409", "Conflicts with existing state (a duplicate name, a project with live keys)"),
    ("413", "The body is larger than the gateway's limit"),
    ("503", "The gateway runs without a store, or the store is unavailable"),
];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("tg_live_...").build(),
            ),
        );
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete];
            for op in operations.into_iter().flatten() {
                // OpenAPI requires a description on every response; the handlers give the body.
                for (status, response) in &mut op.responses.responses {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = if status == "201" { "Created" } else { "OK" }.to_owned();
                    }
                }
                for (status, description) in ERROR_RESPONSES {
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                        )
                        .build();
                    op.responses.responses.entry(status.to_owned()).or_insert_with(|| response.into());
                }
            }
        }
    }
}

/// The admin routes and their OpenAPI document.
fn api() -> (Router<AppState>, OpenApiDoc) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::me))
        .routes(routes!(tenants::create, tenants::list))
        .routes(routes!(tenants::get, tenants::update, tenants::delete))
        .routes(routes!(projects::create, projects::list))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(members::create, members::list))
        .routes(routes!(members::get, members::update, members::delete))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::get, keys::update, keys::revoke))
        .routes(routes!(keys::rotate))
        .routes(routes!(limits::get_tenant_limits, limits::set_tenant_limits))
        .routes(routes!(limits::get_tenant_pricing, limits::set_tenant_pricing))
        .routes(routes!(limits::get_project_limits, limits::set_project_limits))
        .routes(routes!(limits::get_key_limits, limits::set_key_limits))
        .routes(routes!(credentials::create, credentials::list))
        .routes(routes!(credentials::get, credentials::delete))
        .routes(routes!(credentials::audit))
        .routes(routes!(usage::report))
        .routes(routes!(cache::purge))
        .routes(routes!(deployments::list))
        .split_for_parts();
    Conventions.modify(&mut doc);
    (router, doc)
}

/// The OpenAPI document of the admin API (also served at [`OPENAPI_PATH`]).
pub fn openapi() -> OpenApiDoc {
    api().1
}

/// The admin routes, merged into the app by `build_app`.
pub fn router() -> Router<AppState> {
    let (router, doc) = api();
    // Rendered once: the document only changes with the code.
    let json = Bytes::from(doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned()));
    router.route(
        OPENAPI_PATH,
        get(move || {
            let json = json.clone();
            async move {
                ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response()
            }
        }),
    )
}
