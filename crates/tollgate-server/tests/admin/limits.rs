//! Limits and pricing over the admin API: each policy set with `PUT` and read back with `GET`
//! (and on the tenant, project and key it belongs to), `{}` clearing it, who may set which, and
//! bad policies refused with a 400 naming the field.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Backend, Harness, TenantFx};

on_every_store!(
    each_policy_is_set_read_and_cleared,
    limits_can_be_given_when_creating_projects_and_keys,
    only_the_super_admin_sets_tenant_limits_and_pricing,
    members_below_admin_cannot_set_project_or_key_limits,
    another_tenant_gets_404,
    bad_policies_are_400_naming_the_field,
);

fn limits() -> Value {
    json!({
        "rate": {"rpm": 60, "tpm": 100000, "max_concurrent": 5},
        "models": {"gpt-4o": {"rpm": 10}},
        "budgets": [{"period": "month", "limit_usd": "100.50", "alert_at_percent": [80, 50, 100, 80]}]
    })
}

/// `limits()` as stored: thresholds sorted without duplicates, the amount in its shortest form.
fn limits_stored() -> Value {
    json!({
        "rate": {"rpm": 60, "tpm": 100000, "max_concurrent": 5},
        "models": {"gpt-4o": {"rpm": 10}},
        "budgets": [{"period": "month", "limit_usd": "100.5", "alert_at_percent": [50, 80, 100]}]
    })
}

fn pricing() -> Value {
    json!({"markup_bps": 1500, "prices": [{"id": "acme/gpt-4o", "provider": "openai", "model": "gpt-4o",
        "effective_from": "2025-01-01", "input": "1.25", "output": 5}]})
}

/// `pricing()` as stored: every amount a decimal string.
fn pricing_stored() -> Value {
    json!({"markup_bps": 1500, "prices": [{"id": "acme/gpt-4o", "provider": "openai", "model": "gpt-4o",
        "effective_from": "2025-01-01", "input": "1.25", "output": "5"}]})
}

/// The four policy paths of `t`'s tenant, default project and `key`.
struct Paths {
    tenant: String,
    pricing: String,
    project: String,
    key: String,
}

fn paths(t: &TenantFx, key: &str) -> Paths {
    Paths {
        tenant: t.path("/limits"),
        pricing: t.path("/pricing"),
        project: t.path(&format!("/projects/{}/limits", t.project_id)),
        key: t.path(&format!("/keys/{key}/limits")),
    }
}

async fn each_policy_is_set_read_and_cleared(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let dev = h.member(&t, "developer", &["admin", "inference"]).await;
    let p = paths(&t, &dev.key_id);
    for path in [&p.tenant, &p.project, &p.key] {
        assert_eq!(h.ok(&t.owner_key, Method::GET, path, None).await, json!({}), "{path}");
    }
    assert_eq!(h.ok(&t.owner_key, Method::GET, &p.pricing, None).await, json!({"markup_bps": 0}));

    // PUT answers the stored policy; GET reads the same.
    assert_eq!(h.admin(Method::PUT, &p.tenant, Some(limits())).await, limits_stored());
    assert_eq!(h.admin(Method::PUT, &p.pricing, Some(pricing())).await, pricing_stored());
    let project_limits = json!({"rate": {"rpm": 30}});
    assert_eq!(
        h.ok(&t.owner_key, Method::PUT, &p.project, Some(project_limits.clone())).await,
        project_limits
    );
    let key_limits =
        json!({"models": {"echo": {"tpm": 500}}, "budgets": [{"period": "day", "limit_usd": 2}]});
    let key_stored =
        json!({"models": {"echo": {"tpm": 500}}, "budgets": [{"period": "day", "limit_usd": "2"}]});
    assert_eq!(h.ok(&t.owner_key, Method::PUT, &p.key, Some(key_limits)).await, key_stored);
    assert_eq!(h.ok(&t.owner_key, Method::GET, &p.tenant, None).await, limits_stored());
    assert_eq!(h.ok(&t.owner_key, Method::GET, &p.pricing, None).await, pricing_stored());
    assert_eq!(h.ok(&t.owner_key, Method::GET, &p.project, None).await, project_limits);
    assert_eq!(h.ok(&t.owner_key, Method::GET, &p.key, None).await, key_stored);
    // A developer reads its own key's limits.
    assert_eq!(h.ok(&dev.key, Method::GET, &p.key, None).await, key_stored);

    // The resources show them too.
    let tenant = h.ok(&t.owner_key, Method::GET, &t.path(""), None).await;
    assert_eq!((&tenant["limits"], &tenant["pricing"]), (&limits_stored(), &pricing_stored()));
    let project =
        h.ok(&t.owner_key, Method::GET, &t.path(&format!("/projects/{}", t.project_id)), None).await;
    assert_eq!(project["limits"], project_limits);
    let key = h.ok(&t.owner_key, Method::GET, &t.path(&format!("/keys/{}", dev.key_id)), None).await;
    assert_eq!(key["limits"], key_stored);
    let listed = h.ok(&t.owner_key, Method::GET, &t.path("/keys"), None).await;
    let mine = listed["data"].as_array().unwrap().iter().find(|k| k["id"] == dev.key_id.as_str()).unwrap();
    assert_eq!(mine["limits"], key_stored);

    // Each change is in the audit trail with the policies before and after.
    let audit = h.ok(&t.owner_key, Method::GET, &t.path("/audit?limit=4"), None).await;
    let actions: Vec<&str> =
        audit["data"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.limits", "project.limits", "tenant.pricing", "tenant.limits"]);
    assert_eq!((&audit["data"][0]["before"], &audit["data"][0]["after"]), (&json!({}), &key_stored));
    assert_eq!(audit["data"][3]["actor"], json!({"type": "super_admin"}));

    // `{}` clears each.
    for path in [&p.tenant, &p.pricing] {
        h.admin(Method::PUT, path, Some(json!({}))).await;
    }
    for path in [&p.project, &p.key] {
        assert_eq!(h.ok(&t.owner_key, Method::PUT, path, Some(json!({}))).await, json!({}));
    }
    for path in [&p.tenant, &p.project, &p.key] {
        assert_eq!(h.ok(&t.owner_key, Method::GET, path, None).await, json!({}), "{path}");
    }
    assert_eq!(h.ok(&t.owner_key, Method::GET, &p.pricing, None).await, json!({"markup_bps": 0}));
    // The keys still work (no pipeline limit is left that could refuse them).
    assert_eq!(h.chat(&t.owner_key, "echo").await.status, 200);
}

async fn limits_can_be_given_when_creating_projects_and_keys(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let project = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/projects"),
            Some(json!({"name": "web", "limits": limits()})),
        )
        .await;
    assert_eq!(project["limits"], limits_stored());
    let project_id = project["id"].as_str().unwrap();
    let key = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": project_id, "name": "ci", "limits": {"rate": {"rpm": 5}}})),
        )
        .await;
    assert_eq!(key["limits"], json!({"rate": {"rpm": 5}}));
    assert!(key["secret"].is_string());
    let key_id = key["id"].as_str().unwrap();
    let read = h.ok(&t.owner_key, Method::GET, &t.path(&format!("/keys/{key_id}/limits")), None).await;
    assert_eq!(read, json!({"rate": {"rpm": 5}}));
    // A rotated key keeps its limits.
    let rotated = h.ok(&t.owner_key, Method::POST, &t.path(&format!("/keys/{key_id}/rotate")), None).await;
    assert_eq!(rotated["limits"], json!({"rate": {"rpm": 5}}));
    // Without limits: none.
    let plain = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": project_id, "name": "plain"})),
        )
        .await;
    assert_eq!(plain["limits"], json!({}));

    // Setting limits needs an admin: a developer may create keys, but not with limits.
    let dev = h.member(&t, "developer", &["admin", "inference"]).await;
    let r = h
        .call(
            &dev.key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": project_id, "name": "mine", "limits": {"rate": {"rpm": 100000}}})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = h
        .call(
            &dev.key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": project_id, "name": "mine"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Bad limits at creation name the field under `limits` and create nothing.
    let r = h
        .call(
            &t.owner_key,
            Method::POST,
            &t.path("/projects"),
            Some(json!({"name": "bad", "limits": {"rate": {"rpm": 0}}})),
        )
        .await;
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("limits.rate.rpm")), "{}", r.text);
    let projects = h.ok(&t.owner_key, Method::GET, &t.path("/projects"), None).await;
    assert_eq!(projects["data"].as_array().unwrap().len(), 2);
}

async fn only_the_super_admin_sets_tenant_limits_and_pricing(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let viewer = h.member(&t, "viewer", &["admin"]).await;
    let p = paths(&t, &viewer.key_id);
    // The tenant's owner may not lift its own caps or set its own prices.
    for (path, body) in [(&p.tenant, limits()), (&p.pricing, pricing())] {
        let r = h.call(&t.owner_key, Method::PUT, path, Some(body)).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}: {}",
            r.text
        );
        assert!(r.body["error"]["message"].as_str().unwrap().contains("super-admin"), "{}", r.text);
    }
    h.admin(Method::PUT, &p.tenant, Some(limits())).await;
    h.admin(Method::PUT, &p.pricing, Some(pricing())).await;
    let r = h.call(&t.owner_key, Method::PUT, &p.tenant, Some(json!({}))).await;
    assert_eq!(r.status, 403);
    // Every member reads them, a viewer included.
    assert_eq!(h.ok(&viewer.key, Method::GET, &p.tenant, None).await, limits_stored());
    assert_eq!(h.ok(&viewer.key, Method::GET, &p.pricing, None).await, pricing_stored());
    assert_eq!(h.ok(&viewer.key, Method::GET, &t.path(""), None).await["limits"], limits_stored());
    assert_eq!(h.ok(&viewer.key, Method::GET, &p.project, None).await, json!({}));
    // The refused writes changed nothing.
    assert_eq!(h.admin(Method::GET, &p.tenant, None).await, limits_stored());
    // The super-admin on a tenant that does not exist: 404.
    let ghost = format!("/admin/v1/tenants/{}/limits", uuid::Uuid::now_v7());
    let r = h.call(ADMIN_KEY, Method::PUT, &ghost, Some(limits())).await;
    assert_eq!(r.status, 404, "{}", r.text);
}

async fn members_below_admin_cannot_set_project_or_key_limits(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let admin = h.member(&t, "admin", &["admin"]).await;
    for role in ["developer", "viewer"] {
        let m = h.member(&t, role, &["admin"]).await;
        let p = paths(&t, &m.key_id);
        // Not even the limits of its own key: a developer must not lift them.
        for path in [&p.project, &p.key] {
            let r = h.call(&m.key, Method::PUT, path, Some(json!({"rate": {"rpm": 1000}}))).await;
            assert_eq!(
                (r.status, r.body["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{role} {path}"
            );
        }
        assert_eq!(h.ok(&t.owner_key, Method::GET, &p.key, None).await, json!({}));
        // An admin may.
        for path in [&p.project, &p.key] {
            h.ok(&admin.key, Method::PUT, path, Some(json!({"rate": {"rpm": 7}}))).await;
        }
        assert_eq!(h.ok(&t.owner_key, Method::GET, &p.key, None).await, json!({"rate": {"rpm": 7}}));
    }
    // A developer reads only its own key's limits (as GET key).
    let dev = h.member(&t, "developer", &["admin"]).await;
    let r = h.call(&dev.key, Method::GET, &t.path(&format!("/keys/{}/limits", admin.key_id)), None).await;
    assert_eq!(r.status, 403, "{}", r.text);
}

async fn another_tenant_gets_404(b: Backend) {
    let h = Harness::start(b).await;
    let a = h.tenant("a").await;
    let other = h.tenant("b").await;
    let a_member = h.member(&a, "developer", &["inference"]).await;
    let p = paths(&a, &a_member.key_id);
    for path in [&p.tenant, &p.pricing, &p.project, &p.key] {
        for (method, body) in [(Method::GET, None), (Method::PUT, Some(json!({"rate": {"rpm": 1}})))] {
            let body = if path == &p.pricing { body.map(|_| json!({"markup_bps": 1})) } else { body };
            let r = h.call(&other.owner_key, method.clone(), path, body).await;
            assert_eq!(
                (r.status, r.body["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{method} {path}"
            );
        }
    }
    // B's ids under B's tenant with A's project or key: 404 as well.
    for path in [
        other.path(&format!("/projects/{}/limits", a.project_id)),
        other.path(&format!("/keys/{}/limits", a_member.key_id)),
    ] {
        let r = h.call(&other.owner_key, Method::PUT, &path, Some(json!({"rate": {"rpm": 1}}))).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(h.call(&other.owner_key, Method::GET, &path, None).await.status, 404, "{path}");
    }
    // A's policies are untouched.
    for path in [&p.tenant, &p.project, &p.key] {
        assert_eq!(h.ok(&a.owner_key, Method::GET, path, None).await, json!({}), "{path}");
    }
}

async fn bad_policies_are_400_naming_the_field(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let dev = h.member(&t, "developer", &["inference"]).await;
    let p = paths(&t, &dev.key_id);
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("m{i}"), json!({"rpm": 1}))).collect();
    let limit_cases = [
        (
            json!({"models": {"gpt-4o": {"rpm": 0}}}),
            "models.gpt-4o.rpm",
            "must be at least 1; remove the field for no limit",
        ),
        (json!({"rate": {"tpm": 0}}), "rate.tpm", "must be at least 1"),
        (json!({"rate": {"max_concurrent": 0}}), "rate.max_concurrent", "must be at least 1"),
        (json!({"rate": {"rpm": -1}}), "rate.rpm", ""),
        (json!({"models": many}), "models", "at most 100"),
        (json!({"models": {"": {"rpm": 1}}}), "models.", "model alias"),
        (
            json!({"budgets": [{"period": "day", "limit_usd": "1"}, {"period": "day", "limit_usd": "2"}]}),
            "budgets[1].period",
            "one budget per period",
        ),
        (json!({"budgets": [{"period": "month", "limit_usd": "0"}]}), "budgets[0].limit_usd", "more than 0"),
        (
            json!({"budgets": [{"period": "month", "limit_usd": 12.5}]}),
            "budgets[0].limit_usd",
            "decimal string",
        ),
        (
            json!({"budgets": [{"period": "month", "limit_usd": "1.0000000001"}]}),
            "budgets[0].limit_usd",
            "9 decimals",
        ),
        (json!({"budgets": [{"period": "year", "limit_usd": "1"}]}), "budgets[0].period", "unknown variant"),
        (
            json!({"budgets": [{"period": "week", "limit_usd": "1", "alert_at_percent": [50, 101]}]}),
            "budgets[0].alert_at_percent",
            "between 1 and 100",
        ),
        (json!({"rpm": 5}), "rpm", "unknown field"),
    ];
    for (body, field, words) in limit_cases {
        for (key, path) in
            [(ADMIN_KEY, &p.tenant), (t.owner_key.as_str(), &p.project), (t.owner_key.as_str(), &p.key)]
        {
            let r = h.call(key, Method::PUT, path, Some(body.clone())).await;
            assert_eq!(r.status, 400, "{path} {body}: {}", r.text);
            assert_eq!(r.body["error"]["param"].as_str(), Some(field), "{path} {body}: {}", r.text);
            assert!(r.body["error"]["message"].as_str().unwrap().contains(words), "{body}: {}", r.text);
        }
    }
    let entry =
        json!({"provider": "openai", "model": "gpt-4o", "effective_from": "2025-01-01", "input": "1"});
    let pricing_cases = [
        (json!({"markup_bps": 100001}), "markup_bps", "at most 100000"),
        (json!({"prices": vec![entry.clone(); 1001]}), "prices", "at most 1000"),
        (
            json!({"prices": [entry.clone(), {"provider": "openai", "model": "x", "effective_from": "2025-02-30", "input": "1"}]}),
            "prices[1]",
            "effective_from",
        ),
        (
            json!({"prices": [{"provider": "openai", "model": "x", "effective_from": "2025-01-01", "input": "0.0000001"}]}),
            "prices[0]",
            "6 decimals",
        ),
        (
            json!({"prices": [{"provider": "", "model": "x", "effective_from": "2025-01-01", "input": "1"}]}),
            "prices[0]",
            "must not be empty",
        ),
        (
            json!({"prices": [{"provider": "openai", "model": "x", "input": "1"}]}),
            "prices[0]",
            "effective_from",
        ),
    ];
    for (body, field, words) in pricing_cases {
        let r = h.call(ADMIN_KEY, Method::PUT, &p.pricing, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.body["error"]["param"].as_str(), Some(field), "{body}: {}", r.text);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(words), "{body}: {}", r.text);
    }
    // Nothing was stored, and nothing audited.
    for path in [&p.tenant, &p.project, &p.key] {
        assert_eq!(h.ok(&t.owner_key, Method::GET, path, None).await, json!({}), "{path}");
    }
    assert_eq!(h.ok(&t.owner_key, Method::GET, &p.pricing, None).await, json!({"markup_bps": 0}));
    let audit = h.ok(&t.owner_key, Method::GET, &t.path("/audit?limit=500"), None).await;
    assert!(
        audit["data"].as_array().unwrap().iter().all(|r| !r["action"].as_str().unwrap().ends_with("limits"))
    );
}
