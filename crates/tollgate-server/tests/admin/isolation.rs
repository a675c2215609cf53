//! Tenant isolation: an owner of tenant A, on every admin route of tenant B (and on A's routes
//! with B's ids), gets 404 as if B did not exist, and B is unchanged afterwards.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Harness, TenantFx};

on_every_store!(
    a_key_of_tenant_a_sees_and_changes_nothing_of_tenant_b,
    tenant_keys_cannot_create_list_or_delete_tenants,
);

/// B's resources, as the super-admin sees them.
async fn snapshot(h: &Harness, b: &TenantFx) -> Vec<Value> {
    let mut out = vec![h.admin(Method::GET, &b.path(""), None).await];
    for list in ["/projects", "/members", "/keys?include_revoked=true", "/credentials", "/audit"] {
        out.push(h.admin(Method::GET, &b.path(list), None).await);
    }
    out
}

async fn a_key_of_tenant_a_sees_and_changes_nothing_of_tenant_b(backend: Backend) {
    let h = Harness::start(backend).await;
    let a = h.tenant("tenant-a").await;
    let b = h.tenant("tenant-b").await;
    let b_dev = h.member(&b, "developer", &["inference"]).await;
    let cred = h
        .ok(
            &b.owner_key,
            Method::POST,
            &b.path("/credentials"),
            Some(json!({"provider": "compat", "name": "b", "secret": "sk-b-secret-0001"})),
        )
        .await;
    let cred_id = cred["id"].as_str().unwrap();
    let before = snapshot(&h, &b).await;

    // Valid bodies, so each request reaches the tenant check (a malformed body is a 400
    // whatever the tenant, which reveals nothing either).
    let create_bodies = [
        ("/projects", json!({"name": "pwned"})),
        ("/members", json!({"name": "pwned", "role": "owner"})),
        ("/keys", json!({"project_id": b.project_id, "name": "pwned", "scopes": ["admin"]})),
        ("/credentials", json!({"provider": "compat", "name": "pwned", "secret": "sk-pwned-000000"})),
    ];
    let rename = json!({"name": "pwned"});
    let items = [
        format!("/projects/{}", b.project_id),
        format!("/members/{}", b_dev.id),
        format!("/keys/{}", b_dev.key_id),
        format!("/credentials/{cred_id}"),
    ];
    let mut routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, String::new(), None),
        (Method::PATCH, String::new(), Some(json!({"name": "pwned", "policy": {"byok_only": true}}))),
        (Method::DELETE, String::new(), None),
        (Method::GET, "/audit".into(), None),
        (Method::POST, format!("/keys/{}/rotate", b_dev.key_id), None),
    ];
    for (list, body) in create_bodies {
        routes.push((Method::GET, list.into(), None));
        routes.push((Method::POST, list.into(), Some(body)));
    }
    for item in &items {
        routes.push((Method::GET, item.clone(), None));
        routes.push((Method::DELETE, item.clone(), None));
        if !item.starts_with("/credentials") {
            routes.push((Method::PATCH, item.clone(), Some(rename.clone())));
        }
    }
    for (method, rest, body) in &routes {
        // On B's routes: B does not exist for A.
        let r = h.call(&a.owner_key, method.clone(), &b.path(rest), body.clone()).await;
        assert_eq!(r.status, 404, "{method} {}: {}", b.path(rest), r.text);
        assert_eq!(r.body["error"]["code"], "not_found");
        assert_eq!(r.body["error"]["message"], format!("tenant {} not found", b.id));
        // On A's own routes with B's ids: those ids do not exist in A.
        if items.iter().any(|i| rest.starts_with(i.as_str())) {
            let r = h.call(&a.owner_key, method.clone(), &a.path(rest), body.clone()).await;
            assert_eq!(r.status, 404, "{method} {}: {}", a.path(rest), r.text);
            assert!(!r.text.contains(&b.id), "{}", r.text);
        }
    }
    // A key of A cannot be created in A for B's project or B's member either.
    for body in [
        json!({"project_id": b.project_id, "name": "x"}),
        json!({"project_id": a.project_id, "owner_id": b.owner_id, "name": "x"}),
    ] {
        let r = h.call(&a.owner_key, Method::POST, &a.path("/keys"), Some(body)).await;
        assert_eq!(r.status, 404, "{}", r.text);
    }

    assert_eq!(snapshot(&h, &b).await, before, "tenant B changed");
    // B's keys still work.
    assert_eq!(h.chat(&b_dev.key, "echo").await.status, 200);
    assert_eq!(h.ok(&b.owner_key, Method::GET, &b.path(""), None).await["name"], "tenant-b");
}

async fn tenant_keys_cannot_create_list_or_delete_tenants(backend: Backend) {
    let h = Harness::start(backend).await;
    let a = h.tenant("tenant-a").await;
    let r = h.call(&a.owner_key, Method::POST, "/admin/v1/tenants", Some(json!({"name": "mine"}))).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = h.call(&a.owner_key, Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    // Even an owner cannot delete its own tenant; only the super-admin can.
    let r = h.call(&a.owner_key, Method::DELETE, &a.path(""), None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(h.admin(Method::GET, &a.path(""), None).await["name"], "tenant-a");
}
