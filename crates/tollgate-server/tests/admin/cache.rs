//! Response-cache rules through the admin API: set and read on tenants (in the policy), projects
//! and keys; replaced whole by a PATCH; kept by a rotation; a key's rule is an admin's to set
//! (a developer must not lift the read-only rule its key was given); a bad TTL names its field.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Backend, Harness};

on_every_store!(
    project_and_tenant_cache_rules_round_trip,
    key_cache_rules_round_trip_and_survive_rotation,
    only_admins_set_a_keys_cache_rule,
    bad_cache_rules_are_400_naming_the_field,
);

async fn project_and_tenant_cache_rules_round_trip(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let default =
        h.ok(&t.owner_key, Method::GET, &t.path(&format!("/projects/{}", t.project_id)), None).await;
    assert_eq!(default["cache"], json!({}), "no rule unless one is given");

    let rule = json!({"mode": "on", "allow": "read-only", "ttl_seconds": 600});
    let p = h
        .ok(&t.owner_key, Method::POST, &t.path("/projects"), Some(json!({"name": "web", "cache": rule})))
        .await;
    assert_eq!(p["cache"], rule);
    let path = t.path(&format!("/projects/{}", p["id"].as_str().unwrap()));
    assert_eq!(h.ok(&t.owner_key, Method::GET, &path, None).await["cache"], rule);
    let listed = h.ok(&t.owner_key, Method::GET, &t.path("/projects"), None).await;
    assert_eq!(listed["data"][1]["cache"], rule);

    // A rename keeps the rule; a new one replaces it whole; `null` (or `{}`) clears it.
    let renamed = h.ok(&t.owner_key, Method::PATCH, &path, Some(json!({"name": "site"}))).await;
    assert_eq!((&renamed["name"], &renamed["cache"]), (&json!("site"), &rule));
    let closed = json!({"allow": "none"});
    let replaced = h.ok(&t.owner_key, Method::PATCH, &path, Some(json!({"cache": closed}))).await;
    assert_eq!(replaced["cache"], closed);
    assert_eq!(h.ok(&t.owner_key, Method::GET, &path, None).await["cache"], closed);
    let cleared = h.ok(&t.owner_key, Method::PATCH, &path, Some(json!({"cache": null}))).await;
    assert_eq!(cleared["cache"], json!({}));

    // The tenant's rule lives in its policy (the owner's to change).
    let policy = json!({"byok_only": false, "allowed_tags": [], "cache": {"mode": "write-only"}});
    let tenant = h.ok(&t.owner_key, Method::PATCH, &t.path(""), Some(json!({"policy": policy}))).await;
    assert_eq!(tenant["policy"]["cache"], json!({"mode": "write-only"}));
    assert_eq!(h.ok(&t.owner_key, Method::GET, &t.path(""), None).await["policy"], policy);
    let created = h
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "cached", "policy": {"cache": {"ttl_seconds": 60}}})),
        )
        .await;
    assert_eq!(created["policy"]["cache"], json!({"ttl_seconds": 60}));
}

async fn key_cache_rules_round_trip_and_survive_rotation(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let plain = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "plain"})),
        )
        .await;
    assert_eq!(plain["cache"], json!({}));

    let rule = json!({"allow": "read-only"});
    let k = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "low-trust", "cache": rule})),
        )
        .await;
    assert_eq!(k["cache"], rule);
    let path = t.path(&format!("/keys/{}", k["id"].as_str().unwrap()));
    assert_eq!(h.ok(&t.owner_key, Method::GET, &path, None).await["cache"], rule);
    // The key still works for inference with its rule.
    let r = h.chat(k["secret"].as_str().unwrap(), "echo").await;
    assert_eq!(r.status, 200, "{}", r.text);

    let renamed = h.ok(&t.owner_key, Method::PATCH, &path, Some(json!({"name": "ci"}))).await;
    assert_eq!(renamed["cache"], rule, "other changes keep the rule");
    let next = json!({"mode": "write-only", "ttl_seconds": 60});
    let replaced = h.ok(&t.owner_key, Method::PATCH, &path, Some(json!({"cache": next}))).await;
    assert_eq!(replaced["cache"], next);

    // A rotation carries the rule over to the new key.
    let rotated = h.ok(&t.owner_key, Method::POST, &format!("{path}/rotate"), None).await;
    assert_eq!(rotated["cache"], next);
    let new_path = t.path(&format!("/keys/{}", rotated["id"].as_str().unwrap()));
    assert_eq!(h.ok(&t.owner_key, Method::GET, &new_path, None).await["cache"], next);
    let cleared = h.ok(&t.owner_key, Method::PATCH, &new_path, Some(json!({"cache": {}}))).await;
    assert_eq!(cleared["cache"], json!({}));

    // The audit trail records the rule before and after.
    let audit = h.ok(&t.owner_key, Method::GET, &t.path("/audit"), None).await;
    let update = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "key.update" && r["after"]["cache"] == next)
        .unwrap();
    assert_eq!(update["before"]["cache"], rule);
}

async fn only_admins_set_a_keys_cache_rule(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let dev = h.member(&t, "developer", &["admin", "inference"]).await;
    let dev_key_path = t.path(&format!("/keys/{}", dev.key_id));

    // A developer creates keys, but not with a cache rule, and cannot change its own key's.
    let r = h
        .call(
            &dev.key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "mine", "cache": {"allow": "read-write"}})),
        )
        .await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (403, Some("forbidden")), "{}", r.text);
    let before = h.ok(&t.owner_key, Method::GET, &t.path("/keys"), None).await;
    let r = h.call(&dev.key, Method::PATCH, &dev_key_path, Some(json!({"cache": {"mode": "on"}}))).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = h.call(&dev.key, Method::PATCH, &dev_key_path, Some(json!({"cache": null}))).await;
    assert_eq!(r.status, 403, "clearing is changing: {}", r.text);
    assert_eq!(h.ok(&t.owner_key, Method::GET, &t.path("/keys"), None).await, before, "nothing changed");
    // Without a rule a developer's key is created as before, and other changes still work.
    let r = h
        .call(
            &dev.key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "mine"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    h.ok(&dev.key, Method::PATCH, &dev_key_path, Some(json!({"name": "renamed"}))).await;

    // An admin sets it, on the developer's key too; the developer then reads it.
    let admin = h.member(&t, "admin", &["admin"]).await;
    let rule = json!({"allow": "read-only"});
    let set = h.ok(&admin.key, Method::PATCH, &dev_key_path, Some(json!({"cache": rule}))).await;
    assert_eq!(set["cache"], rule);
    assert_eq!(h.ok(&dev.key, Method::GET, &dev_key_path, None).await["cache"], rule);
    let k = h
        .ok(
            &admin.key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "cached", "cache": rule})),
        )
        .await;
    assert_eq!(k["cache"], rule);
    // A developer cannot change a project's rule either (projects are an admin's).
    let r = h
        .call(
            &dev.key,
            Method::PATCH,
            &t.path(&format!("/projects/{}", t.project_id)),
            Some(json!({"cache": {"mode": "on"}})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

async fn bad_cache_rules_are_400_naming_the_field(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let key_path = t.path(&format!("/keys/{}", h.member(&t, "viewer", &["admin"]).await.key_id));
    let project_path = t.path(&format!("/projects/{}", t.project_id));
    let zero = json!({"ttl_seconds": 0});
    let too_long = json!({"ttl_seconds": 365 * 24 * 3600 + 1});
    for (method, path, body, param) in [
        (
            Method::POST,
            t.path("/keys"),
            json!({"project_id": t.project_id, "name": "k", "cache": zero}),
            "cache.ttl_seconds",
        ),
        (Method::PATCH, key_path.clone(), json!({"cache": zero}), "cache.ttl_seconds"),
        (Method::PATCH, key_path.clone(), json!({"cache": too_long}), "cache.ttl_seconds"),
        (Method::POST, t.path("/projects"), json!({"name": "p", "cache": zero}), "cache.ttl_seconds"),
        (Method::PATCH, project_path.clone(), json!({"cache": too_long}), "cache.ttl_seconds"),
        (Method::PATCH, t.path(""), json!({"policy": {"cache": zero}}), "policy.cache.ttl_seconds"),
    ] {
        let r = h.call(&t.owner_key, method.clone(), &path, Some(body)).await;
        assert_eq!(
            (r.status, r.body["error"]["param"].as_str()),
            (400, Some(param)),
            "{method} {path}: {}",
            r.text
        );
    }
    // Unknown fields and values are refused as well (a typo never passes silently).
    for cache in [
        json!({"mode": "sometimes"}),
        json!({"allow": "write-only"}),
        json!({"ttl": 60}),
        json!({"ttl_seconds": -1}),
    ] {
        let r = h.call(&t.owner_key, Method::PATCH, &project_path, Some(json!({"cache": cache}))).await;
        assert_eq!(r.status, 400, "{cache}: {}", r.text);
    }
    // Nothing was stored.
    assert_eq!(h.ok(&t.owner_key, Method::GET, &project_path, None).await["cache"], json!({}));
    let projects = h.ok(&t.owner_key, Method::GET, &t.path("/projects"), None).await;
    assert_eq!(projects["data"].as_array().unwrap().len(), 1);
    assert_eq!(h.ok(&t.owner_key, Method::GET, &t.path(""), None).await["policy"]["cache"], json!({}));
}
