//! Bad input: SQL-injection-shaped names, oversized fields, duplicates, unknown fields,
//! malformed ids. Each is a clear 4xx (or, for odd names, stored verbatim) and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Backend, Harness};

on_every_store!(
    sql_injection_shaped_names_are_stored_verbatim_and_harmless,
    oversized_fields_are_400_naming_the_field,
    duplicate_names_are_409,
    unknown_fields_malformed_ids_and_bad_bodies_are_clean_4xx,
);

const NASTY: [&str; 5] = [
    "'; DROP TABLE tenants; --",
    "x' OR '1'='1",
    "Robert'); DELETE FROM api_keys WHERE ('1'='1",
    "\" ; SELECT pg_sleep(5); --",
    "%' UNION SELECT * FROM provider_credentials --",
];

async fn sql_injection_shaped_names_are_stored_verbatim_and_harmless(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    for name in NASTY {
        let tenant = h.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": name}))).await;
        assert_eq!(tenant["name"], name);
        let got = h
            .admin(Method::GET, &format!("/admin/v1/tenants/{}", tenant["id"].as_str().unwrap()), None)
            .await;
        assert_eq!(got["name"], name);
        let p = h.ok(&t.owner_key, Method::POST, &t.path("/projects"), Some(json!({"name": name}))).await;
        assert_eq!(p["name"], name);
        let m = h
            .ok(
                &t.owner_key,
                Method::POST,
                &t.path("/members"),
                Some(json!({"name": name, "role": "viewer"})),
            )
            .await;
        assert_eq!(m["name"], name);
        let k = h
            .ok(
                &t.owner_key,
                Method::POST,
                &t.path("/keys"),
                Some(json!({"project_id": t.project_id, "name": name, "metadata": {name: name}})),
            )
            .await;
        assert_eq!((k["name"].as_str(), &k["metadata"][name]), (Some(name), &json!(name)));
    }
    // Everything is still there and still works.
    let tenants = h.admin(Method::GET, "/admin/v1/tenants?limit=500", None).await;
    assert_eq!(tenants["data"].as_array().unwrap().len(), NASTY.len() + 1);
    let projects = h.ok(&t.owner_key, Method::GET, &t.path("/projects"), None).await;
    assert_eq!(projects["data"].as_array().unwrap().len(), NASTY.len() + 1);
    assert_eq!(h.chat(&t.owner_key, "echo").await.status, 200);
}

async fn oversized_fields_are_400_naming_the_field(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    let long = "x".repeat(201);
    let mut big = serde_json::Map::new();
    big.insert("blob".into(), Value::String("y".repeat(17 * 1024)));
    let models: Vec<String> = (0..101).map(|i| format!("m{i}")).collect();
    let key = |extra: Value| {
        let mut body = json!({"project_id": t.project_id, "name": "k"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(&str, String, Value, &str)> = vec![
        ("POST", "/admin/v1/tenants".into(), json!({"name": long}), "name"),
        ("POST", t.path("/projects"), json!({"name": long}), "name"),
        ("PATCH", t.path(&format!("/projects/{}", t.project_id)), json!({"name": long}), "name"),
        ("POST", t.path("/members"), json!({"name": long, "role": "viewer"}), "name"),
        ("POST", t.path("/keys"), key(json!({"name": long})), "name"),
        ("POST", t.path("/keys"), key(json!({"metadata": big})), "metadata"),
        ("POST", t.path("/keys"), key(json!({"allowed_models": models})), "allowed_models"),
        ("POST", t.path("/keys"), key(json!({"allowed_models": []})), "allowed_models"),
        ("POST", t.path("/keys"), key(json!({"allowed_models": ["echo", ""]})), "allowed_models[1]"),
        ("POST", t.path("/keys"), key(json!({"expires_at": "2000-01-01T00:00:00Z"})), "expires_at"),
        ("POST", t.path("/keys"), key(json!({"scopes": []})), "scopes"),
        (
            "POST",
            t.path("/credentials"),
            json!({"provider": "compat", "name": long, "secret": "sk-1234567890"}),
            "name",
        ),
        ("POST", t.path("/credentials"), json!({"provider": "compat", "name": "c", "secret": ""}), "secret"),
        ("POST", t.path("/projects"), json!({"name": "   "}), "name"),
    ];
    let before = h.admin(Method::GET, &t.path("/audit?limit=500"), None).await;
    for (method, path, body, param) in cases {
        let key = if path == "/admin/v1/tenants" { ADMIN_KEY } else { k.as_str() };
        let r = h.call(key, method.parse().unwrap(), &path, Some(body)).await;
        assert_eq!(r.status, 400, "{method} {path} ({param}): {}", r.text);
        assert_eq!(r.body["error"]["param"], param, "{method} {path}: {}", r.text);
    }
    assert_eq!(h.admin(Method::GET, &t.path("/audit?limit=500"), None).await, before, "nothing was written");
    // At the limits: accepted.
    h.ok(k, Method::POST, &t.path("/projects"), Some(json!({"name": "z".repeat(200)}))).await;
    let ok_models: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    h.ok(k, Method::POST, &t.path("/keys"), Some(key(json!({"allowed_models": ok_models})))).await;
}

async fn duplicate_names_are_409(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    for (path, body) in [
        (t.path("/projects"), json!({"name": "dup"})),
        (t.path("/members"), json!({"name": "dup@acme", "role": "viewer"})),
    ] {
        h.ok(k, Method::POST, &path, Some(body.clone())).await;
        let r = h.call(k, Method::POST, &path, Some(body)).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (409, Some("conflict")),
            "{path}: {}",
            r.text
        );
    }
    let r = h.call(ADMIN_KEY, Method::POST, "/admin/v1/tenants", Some(json!({"name": "acme"}))).await;
    assert_eq!(r.status, 409, "{}", r.text);
    // Renaming onto an existing name is a conflict too.
    let p = h.ok(k, Method::POST, &t.path("/projects"), Some(json!({"name": "other"}))).await;
    let r = h
        .call(
            k,
            Method::PATCH,
            &t.path(&format!("/projects/{}", p["id"].as_str().unwrap())),
            Some(json!({"name": "dup"})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // Names are per tenant: another tenant may reuse them.
    let t2 = h.tenant("other").await;
    h.ok(&t2.owner_key, Method::POST, &t2.path("/projects"), Some(json!({"name": "dup"}))).await;
}

async fn unknown_fields_malformed_ids_and_bad_bodies_are_clean_4xx(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    // A typo is a 400 naming it, not an ignored field.
    let r = h.call(k, Method::POST, &t.path("/projects"), Some(json!({"name": "p", "nmae": "q"}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("nmae"), "{}", r.text);
    let r = h.call(k, Method::PATCH, &t.path(""), Some(json!({"policy": {"byok_onyl": true}}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = h
        .call(
            k,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "k", "scopes": ["root"]})),
        )
        .await;
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("scopes[0]")), "{}", r.text);
    // Malformed ids in the path: 400 naming the parameter, in the error shape.
    for (path, param) in [
        ("/admin/v1/tenants/not-a-uuid".to_owned(), "tenant_id"),
        ("/admin/v1/tenants/1%27%20OR%201=1".to_owned(), "tenant_id"),
        (t.path("/projects/123"), "project_id"),
        (t.path("/keys/zzz/rotate"), "key_id"),
    ] {
        let method = if path.ends_with("rotate") { Method::POST } else { Method::GET };
        let r = h.call(k, method, &path, None).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert_eq!(r.body["error"]["param"], param, "{path}: {}", r.text);
    }
    // Unknown ids: 404 naming the resource.
    let missing = "0192f1d2-7c4e-7b6a-9d0e-3f5a6b7c8d9e";
    let r = h.call(k, Method::GET, &t.path(&format!("/projects/{missing}")), None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["message"], format!("project {missing} not found"));
    let r = h.call(ADMIN_KEY, Method::GET, &format!("/admin/v1/tenants/{missing}/projects"), None).await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (404, Some(format!("tenant {missing} not found").as_str()))
    );
    // Not JSON, wrong content type.
    let r = h
        .http
        .post(format!("{}{}", h.base, t.path("/projects")))
        .bearer_auth(k)
        .body("{nope")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .post(format!("{}{}", h.base, t.path("/projects")))
        .bearer_auth(k)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Nothing was created by any of it.
    assert_eq!(h.ok(k, Method::GET, &t.path("/projects"), None).await["data"].as_array().unwrap().len(), 1);
}
