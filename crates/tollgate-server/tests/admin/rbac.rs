//! Roles within a tenant: viewers read, developers manage their own keys, admins manage all but
//! owners, owners everything; each refusal is a 403 that changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Harness, TenantFx};

on_every_store!(
    a_viewer_reads_but_every_write_is_403,
    a_developer_manages_only_its_own_keys,
    an_admin_manages_all_but_owners_and_tenant_policy,
);

/// Every write route of the tenant, with a valid body.
fn writes(
    t: &TenantFx,
    other_member: &str,
    other_key: &str,
    credential: &str,
) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::PATCH, t.path(""), Some(json!({"name": "x"}))),
        (Method::DELETE, t.path(""), None),
        (Method::POST, t.path("/projects"), Some(json!({"name": "x"}))),
        (Method::PATCH, t.path(&format!("/projects/{}", t.project_id)), Some(json!({"name": "x"}))),
        (Method::DELETE, t.path(&format!("/projects/{}", t.project_id)), None),
        (Method::POST, t.path("/members"), Some(json!({"name": "x", "role": "viewer"}))),
        (Method::PATCH, t.path(&format!("/members/{other_member}")), Some(json!({"name": "x"}))),
        (Method::DELETE, t.path(&format!("/members/{other_member}")), None),
        (Method::POST, t.path("/keys"), Some(json!({"project_id": t.project_id, "name": "x"}))),
        (Method::PATCH, t.path(&format!("/keys/{other_key}")), Some(json!({"name": "x"}))),
        (Method::DELETE, t.path(&format!("/keys/{other_key}")), None),
        (Method::POST, t.path(&format!("/keys/{other_key}/rotate")), None),
        (
            Method::POST,
            t.path("/credentials"),
            Some(json!({"provider": "compat", "name": "x", "secret": "sk-xxxxxxxxxxxx"})),
        ),
        (Method::DELETE, t.path(&format!("/credentials/{credential}")), None),
    ]
}

async fn state(h: &Harness, t: &TenantFx) -> Vec<Value> {
    let mut out = vec![h.admin(Method::GET, &t.path(""), None).await];
    for list in ["/projects", "/members", "/keys?include_revoked=true", "/credentials", "/audit"] {
        out.push(h.admin(Method::GET, &t.path(list), None).await);
    }
    out
}

async fn a_viewer_reads_but_every_write_is_403(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let viewer = h.member(&t, "viewer", &["admin"]).await;
    let cred = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/credentials"),
            Some(json!({"provider": "compat", "name": "c", "secret": "sk-c-0000000000"})),
        )
        .await;
    // Reads: the tenant and its projects.
    h.ok(&viewer.key, Method::GET, &t.path(""), None).await;
    h.ok(&viewer.key, Method::GET, &t.path("/projects"), None).await;
    h.ok(&viewer.key, Method::GET, &t.path(&format!("/projects/{}", t.project_id)), None).await;
    // Nothing else.
    for list in ["/members", "/keys", "/credentials", "/audit"] {
        assert_eq!(h.call(&viewer.key, Method::GET, &t.path(list), None).await.status, 403, "{list}");
    }
    let before = state(&h, &t).await;
    for (method, path, body) in writes(&t, &t.owner_id, &viewer.key_id, cred["id"].as_str().unwrap()) {
        let r = h.call(&viewer.key, method.clone(), &path, body).await;
        assert_eq!(r.status, 403, "viewer {method} {path}: {}", r.text);
        assert_eq!(r.body["error"]["code"], "forbidden");
    }
    assert_eq!(state(&h, &t).await, before, "a refused write changed something");
}

async fn a_developer_manages_only_its_own_keys(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let dev = h.member(&t, "developer", &["admin", "inference"]).await;
    let other = h.member(&t, "developer", &["inference"]).await;
    let k = &dev.key;
    // Its own keys: create (owned by itself by default), list, get, update, rotate, revoke.
    let mine = h
        .ok(k, Method::POST, &t.path("/keys"), Some(json!({"project_id": t.project_id, "name": "mine"})))
        .await;
    assert_eq!(mine["owner_id"], dev.id.as_str());
    let path = t.path(&format!("/keys/{}", mine["id"].as_str().unwrap()));
    h.ok(k, Method::GET, &path, None).await;
    h.ok(k, Method::PATCH, &path, Some(json!({"name": "mine-2"}))).await;
    let rotated = h.ok(k, Method::POST, &format!("{path}/rotate"), None).await;
    h.ok(k, Method::DELETE, &t.path(&format!("/keys/{}", rotated["id"].as_str().unwrap())), None).await;
    // The list shows only its own keys.
    let list = h.ok(k, Method::GET, &t.path("/keys?include_revoked=true&limit=1"), None).await;
    let mut owners = Vec::new();
    let mut page = list;
    loop {
        owners.extend(
            page["data"].as_array().unwrap().iter().map(|k| k["owner_id"].as_str().unwrap().to_owned()),
        );
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        let url = t.path(&format!(
            "/keys?include_revoked=true&limit=1&after={}",
            page["next_cursor"].as_str().unwrap()
        ));
        page = h.ok(k, Method::GET, &url, None).await;
    }
    assert_eq!(owners.len(), 3, "its admin key, `mine` and the rotated key");
    assert!(owners.iter().all(|o| *o == dev.id), "{owners:?}");

    // Someone else's key: 403 on every action.
    let theirs = t.path(&format!("/keys/{}", other.key_id));
    for (method, path, body) in [
        (Method::GET, theirs.clone(), None),
        (Method::PATCH, theirs.clone(), Some(json!({"name": "x"}))),
        (Method::DELETE, theirs.clone(), None),
        (Method::POST, format!("{theirs}/rotate"), None),
        (
            Method::POST,
            t.path("/keys"),
            Some(json!({"project_id": t.project_id, "owner_id": other.id, "name": "x"})),
        ),
    ] {
        let r = h.call(k, method.clone(), &path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
    }
    assert_eq!(h.chat(&other.key, "echo").await.status, 200, "the other key still works");
    // No admin-scoped keys, even for itself.
    let r = h
        .call(
            k,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "x", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("admin scope"), "{}", r.text);
    // Members and credentials are not a developer's.
    assert_eq!(h.call(k, Method::GET, &t.path("/members"), None).await.status, 403);
    assert_eq!(h.call(k, Method::GET, &t.path("/credentials"), None).await.status, 403);
    // A developer reads the tenant and projects.
    h.ok(k, Method::GET, &t.path("/projects"), None).await;
}

async fn an_admin_manages_all_but_owners_and_tenant_policy(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let admin = h.member(&t, "admin", &["admin", "inference"]).await;
    let dev = h.member(&t, "developer", &["inference"]).await;
    let k = &admin.key;
    // Allowed: rename the tenant, members below owner, anyone's keys, admin-scoped keys.
    h.ok(k, Method::PATCH, &t.path(""), Some(json!({"name": "acme-2"}))).await;
    let m = h.ok(k, Method::POST, &t.path("/members"), Some(json!({"name": "v", "role": "viewer"}))).await;
    h.ok(
        k,
        Method::PATCH,
        &t.path(&format!("/members/{}", m["id"].as_str().unwrap())),
        Some(json!({"role": "developer"})),
    )
    .await;
    h.ok(
        k,
        Method::POST,
        &t.path("/keys"),
        Some(json!({"project_id": t.project_id, "owner_id": dev.id, "name": "for dev", "scopes": ["admin"]})),
    )
    .await;
    h.ok(k, Method::DELETE, &t.path(&format!("/keys/{}", dev.key_id)), None).await;
    h.ok(k, Method::GET, &t.path("/audit"), None).await;

    let before = state(&h, &t).await;
    let owner = t.path(&format!("/members/{}", t.owner_id));
    for (method, path, body) in [
        (Method::PATCH, t.path(""), Some(json!({"policy": {"byok_only": true}}))),
        (Method::POST, t.path("/members"), Some(json!({"name": "o2", "role": "owner"}))),
        (
            Method::PATCH,
            t.path(&format!("/members/{}", m["id"].as_str().unwrap())),
            Some(json!({"role": "owner"})),
        ),
        (Method::PATCH, owner.clone(), Some(json!({"role": "viewer"}))),
        (Method::DELETE, owner.clone(), None),
        // Minting for a member with a higher role.
        (
            Method::POST,
            t.path("/keys"),
            Some(json!({"project_id": t.project_id, "owner_id": t.owner_id, "name": "x"})),
        ),
        (Method::DELETE, t.path(""), None),
    ] {
        let r = h.call(k, method.clone(), &path, body).await;
        assert_eq!(r.status, 403, "admin {method} {path}: {}", r.text);
    }
    assert_eq!(state(&h, &t).await, before, "a refused write changed something");
    // The owner can do what the admin could not.
    h.ok(&t.owner_key, Method::PATCH, &t.path(""), Some(json!({"policy": {"byok_only": true}}))).await;
    h.ok(&t.owner_key, Method::POST, &t.path("/members"), Some(json!({"name": "o2", "role": "owner"}))).await;
}
