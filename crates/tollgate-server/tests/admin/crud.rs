//! Every resource's create, list, get, update and delete; pagination; `/me`; the OpenAPI
//! document; the admin API without a store.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, Backend, Harness};

on_every_store!(
    bootstrap_admin_sets_up_a_tenant_whose_key_manages_it,
    tenants_crud,
    projects_crud,
    members_crud,
    keys_crud,
    credentials_crud,
    pagination_walks_every_item_once,
    me_describes_the_caller,
);

async fn bootstrap_admin_sets_up_a_tenant_whose_key_manages_it(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    // The owner's key manages its tenant: rename it, add a project, list them.
    let renamed = h.ok(&t.owner_key, Method::PATCH, &t.path(""), Some(json!({"name": "Acme Inc"}))).await;
    assert_eq!(renamed["name"], "Acme Inc");
    h.ok(&t.owner_key, Method::POST, &t.path("/projects"), Some(json!({"name": "search"}))).await;
    let list = h.ok(&t.owner_key, Method::GET, &t.path("/projects"), None).await;
    let names: Vec<&str> =
        list["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "search"]);
    // ...and its key works for inference too.
    let r = h.chat(&t.owner_key, "echo").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn tenants_crud(b: Backend) {
    let h = Harness::start(b).await;
    let created = h.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "t1"}))).await;
    assert_eq!(created["object"], "tenant");
    assert_eq!(created["policy"], json!({"byok_only": false, "allowed_tags": [], "cache": {}}));
    let id = created["id"].as_str().unwrap();
    let path = format!("/admin/v1/tenants/{id}");
    assert_eq!(h.admin(Method::GET, &path, None).await["name"], "t1");
    let list = h.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert!(list["data"].as_array().unwrap().iter().any(|t| t["id"] == id));
    let updated =
        h.admin(Method::PATCH, &path, Some(json!({"name": "t1b", "policy": {"byok_only": true}}))).await;
    assert_eq!(
        (updated["name"].as_str(), updated["policy"]["byok_only"].as_bool()),
        (Some("t1b"), Some(true))
    );
    let tagged = h
        .admin(Method::PATCH, &path, Some(json!({"policy": {"allowed_tags": ["eu", "eu-west", "eu"]}})))
        .await;
    assert_eq!(tagged["policy"]["allowed_tags"], json!(["eu", "eu-west"]));
    let r = h.call(ADMIN_KEY, Method::PATCH, &path, Some(json!({"policy": {"allowed_tags": ["e u"]}}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("allowed_tags"), "{}", r.text);
    let deleted = h.admin(Method::DELETE, &path, None).await;
    assert_eq!(deleted, json!({"id": id, "object": "tenant", "deleted": true}));
    let r = h.call(ADMIN_KEY, Method::GET, &path, None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (404, Some("not_found")), "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains(id));
}

async fn projects_crud(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    let p = h.ok(k, Method::POST, &t.path("/projects"), Some(json!({"name": "web"}))).await;
    assert_eq!((p["object"].as_str(), p["tenant_id"].as_str()), (Some("project"), Some(t.id.as_str())));
    let path = t.path(&format!("/projects/{}", p["id"].as_str().unwrap()));
    assert_eq!(h.ok(k, Method::GET, &path, None).await["name"], "web");
    assert_eq!(h.ok(k, Method::PATCH, &path, Some(json!({"name": "webapp"}))).await["name"], "webapp");
    assert_eq!(h.ok(k, Method::GET, &t.path("/projects"), None).await["data"].as_array().unwrap().len(), 2);
    // A project with live keys cannot be deleted; once its key is revoked it can.
    let key =
        h.ok(k, Method::POST, &t.path("/keys"), Some(json!({"project_id": p["id"], "name": "k"}))).await;
    let r = h.call(k, Method::DELETE, &path, None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("conflict")), "{}", r.text);
    h.ok(k, Method::DELETE, &t.path(&format!("/keys/{}", key["id"].as_str().unwrap())), None).await;
    assert_eq!(h.ok(k, Method::DELETE, &path, None).await["deleted"], true);
    assert_eq!(h.call(k, Method::GET, &path, None).await.status, 404);
}

async fn members_crud(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    let m = h
        .ok(k, Method::POST, &t.path("/members"), Some(json!({"name": "dev@acme", "role": "developer"})))
        .await;
    assert_eq!((m["object"].as_str(), m["role"].as_str()), (Some("member"), Some("developer")));
    let path = t.path(&format!("/members/{}", m["id"].as_str().unwrap()));
    assert_eq!(h.ok(k, Method::GET, &path, None).await["name"], "dev@acme");
    let up = h.ok(k, Method::PATCH, &path, Some(json!({"role": "admin", "name": "lead@acme"}))).await;
    assert_eq!((up["role"].as_str(), up["name"].as_str()), (Some("admin"), Some("lead@acme")));
    assert_eq!(h.ok(k, Method::GET, &t.path("/members"), None).await["data"].as_array().unwrap().len(), 2);
    assert_eq!(h.ok(k, Method::DELETE, &path, None).await["deleted"], true);
    assert_eq!(h.call(k, Method::GET, &path, None).await.status, 404);
    let r = h.call(k, Method::POST, &t.path("/members"), Some(json!({"name": "x", "role": "wizard"}))).await;
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("role")), "{}", r.text);
}

async fn keys_crud(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    let created = h
        .ok(
            k,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "ci", "allowed_models": ["echo"],
                "metadata": {"team": "search"}, "expires_at": "2999-01-01T00:00:00Z"})),
        )
        .await;
    // Defaults: inference only, owned by the caller's member.
    assert_eq!(created["scopes"], json!(["inference"]));
    assert_eq!(created["owner_id"], t.owner_id.as_str());
    assert_eq!(created["object"], "api_key");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("tg_live_") && secret.starts_with(created["prefix"].as_str().unwrap()));
    let path = t.path(&format!("/keys/{}", created["id"].as_str().unwrap()));
    let got = h.ok(k, Method::GET, &path, None).await;
    assert!(got.get("secret").is_none(), "the secret is shown once: {got}");
    assert_eq!(got["metadata"], json!({"team": "search"}));
    assert_eq!(got["expires_at"], "2999-01-01T00:00:00Z");
    let up = h
        .ok(
            k,
            Method::PATCH,
            &path,
            Some(json!({"name": "ci-2", "allowed_models": null, "expires_at": null})),
        )
        .await;
    assert_eq!(
        (up["name"].as_str(), &up["allowed_models"], &up["expires_at"]),
        (Some("ci-2"), &Value::Null, &Value::Null)
    );
    assert_eq!(up["metadata"], json!({"team": "search"}), "fields left out stay");
    // Rotate: a new secret, the same settings, the old key revoked.
    let rotated = h.ok(k, Method::POST, &format!("{path}/rotate"), None).await;
    assert_ne!(rotated["id"], created["id"]);
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);
    assert_eq!((rotated["name"].as_str(), &rotated["metadata"]), (Some("ci-2"), &json!({"team": "search"})));
    assert_eq!(h.chat(secret, "echo").await.status, 401);
    assert_eq!(h.chat(rotated["secret"].as_str().unwrap(), "echo").await.status, 200);
    let old = h.ok(k, Method::GET, &path, None).await;
    assert!(old["revoked_at"].is_string(), "{old}");
    // Revoke returns the revoked key; live lists leave it out unless asked.
    let rpath = t.path(&format!("/keys/{}", rotated["id"].as_str().unwrap()));
    assert!(h.ok(k, Method::DELETE, &rpath, None).await["revoked_at"].is_string());
    let live = h.ok(k, Method::GET, &t.path("/keys"), None).await;
    let ids: HashSet<&str> =
        live["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(created["id"].as_str().unwrap()) && !ids.contains(rotated["id"].as_str().unwrap()));
    let all = h.ok(k, Method::GET, &t.path("/keys?include_revoked=true"), None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), ids.len() + 2);
    // Filter by project.
    let p2 = h.ok(k, Method::POST, &t.path("/projects"), Some(json!({"name": "p2"}))).await;
    h.ok(k, Method::POST, &t.path("/keys"), Some(json!({"project_id": p2["id"], "name": "p2 key"}))).await;
    let only = h
        .ok(k, Method::GET, &t.path(&format!("/keys?project_id={}", p2["id"].as_str().unwrap())), None)
        .await;
    let names: Vec<&str> =
        only["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["p2 key"]);
    // Rotating a revoked key is refused.
    let r = h.call(k, Method::POST, &format!("{path}/rotate"), None).await;
    assert_eq!(r.status, 409, "{}", r.text);
}

async fn credentials_crud(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    let c = h
        .ok(
            k,
            Method::POST,
            &t.path("/credentials"),
            Some(json!({"provider": "compat", "name": "prod", "secret": "sk-abcdefghijkl9876"})),
        )
        .await;
    assert_eq!((c["object"].as_str(), c["masked"].as_str()), (Some("provider_credential"), Some("...9876")));
    let path = t.path(&format!("/credentials/{}", c["id"].as_str().unwrap()));
    assert_eq!(h.ok(k, Method::GET, &path, None).await["provider"], "compat");
    assert_eq!(
        h.ok(k, Method::GET, &t.path("/credentials"), None).await["data"].as_array().unwrap().len(),
        1
    );
    assert_eq!(h.ok(k, Method::DELETE, &path, None).await["deleted"], true);
    assert_eq!(h.call(k, Method::GET, &path, None).await.status, 404);
    // Only providers of this gateway.
    let r = h
        .call(
            k,
            Method::POST,
            &t.path("/credentials"),
            Some(json!({"provider": "openai", "name": "x", "secret": "sk-1234567890"})),
        )
        .await;
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("provider")), "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("compat"), "{}", r.text);
}

async fn pagination_walks_every_item_once(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = &t.owner_key;
    for i in 0..6 {
        h.ok(k, Method::POST, &t.path("/projects"), Some(json!({"name": format!("p{i}")}))).await;
    }
    let mut seen = Vec::new();
    let mut url = t.path("/projects?limit=3");
    loop {
        let page = h.ok(k, Method::GET, &url, None).await;
        assert_eq!(page["object"], "list");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 3);
        seen.extend(data.iter().map(|p| p["name"].as_str().unwrap().to_owned()));
        if !page["has_more"].as_bool().unwrap() {
            assert!(page["next_cursor"].is_null());
            break;
        }
        url = t.path(&format!("/projects?limit=3&after={}", page["next_cursor"].as_str().unwrap()));
    }
    assert_eq!(seen, ["default", "p0", "p1", "p2", "p3", "p4", "p5"]);
    // The same envelope on every list.
    for list in ["/members", "/keys", "/credentials", "/audit"] {
        let page = h.ok(k, Method::GET, &t.path(&format!("{list}?limit=1")), None).await;
        assert_eq!(page["object"], "list", "{list}");
        assert!(page["has_more"].is_boolean() && page.get("next_cursor").is_some(), "{list}: {page}");
    }
    let page = h.admin(Method::GET, "/admin/v1/tenants?limit=1", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    // Bad parameters are 400s naming them.
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=abc", "limit"),
        ("after=nope", "after"),
        ("colour=red", ""),
    ] {
        let r = h.call(k, Method::GET, &t.path(&format!("/projects?{query}")), None).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert_eq!(r.body["error"]["type"], "invalid_request_error", "{query}");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(if param.is_empty() { "colour" } else { param }), "{query}: {message}");
        if !param.is_empty() {
            assert_eq!(r.body["error"]["param"], param, "{query}");
        }
    }
    let r = h.call(k, Method::GET, &t.path("/keys?include_revoked=maybe"), None).await;
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("include_revoked")), "{}", r.text);
}

async fn me_describes_the_caller(b: Backend) {
    let h = Harness::start(b).await;
    assert_eq!(h.admin(Method::GET, "/admin/v1/me", None).await["type"], "super_admin");
    let t = h.tenant("acme").await;
    let me = h.ok(&t.owner_key, Method::GET, "/admin/v1/me", None).await;
    assert_eq!(
        (me["type"].as_str(), me["tenant_id"].as_str(), me["member_id"].as_str(), me["role"].as_str()),
        (Some("key"), Some(t.id.as_str()), Some(t.owner_id.as_str()), Some("owner"))
    );
    assert_eq!(me["scopes"], json!(["admin", "inference"]));
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let h = Harness::start(Backend::Sqlite).await;
    // Public: no key needed.
    let resp = h.http.get(format!("{}/admin/v1/openapi.json", h.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let t = "/admin/v1/tenants/{tenant_id}";
    let expected: Vec<(String, &str)> = [
        ("/admin/v1/me".to_owned(), "get"),
        ("/admin/v1/deployments".to_owned(), "get"),
        ("/admin/v1/tenants".to_owned(), "post"),
        ("/admin/v1/tenants".to_owned(), "get"),
        (t.to_owned(), "get"),
        (t.to_owned(), "patch"),
        (t.to_owned(), "delete"),
        (format!("{t}/keys/{{key_id}}/rotate"), "post"),
        (format!("{t}/audit"), "get"),
        (format!("{t}/usage"), "get"),
        (format!("{t}/cache/purge"), "post"),
        (format!("{t}/limits"), "get"),
        (format!("{t}/limits"), "put"),
        (format!("{t}/pricing"), "get"),
        (format!("{t}/pricing"), "put"),
        (format!("{t}/projects/{{project_id}}/limits"), "get"),
        (format!("{t}/projects/{{project_id}}/limits"), "put"),
        (format!("{t}/keys/{{key_id}}/limits"), "get"),
        (format!("{t}/keys/{{key_id}}/limits"), "put"),
    ]
    .into_iter()
    .chain(
        ["projects/{project_id}", "members/{member_id}", "keys/{key_id}", "credentials/{credential_id}"]
            .into_iter()
            .flat_map(|item| {
                let (list, _) = item.split_once('/').unwrap();
                let mut ops = vec![
                    (format!("{t}/{list}"), "post"),
                    (format!("{t}/{list}"), "get"),
                    (format!("{t}/{item}"), "get"),
                    (format!("{t}/{item}"), "delete"),
                ];
                if list != "credentials" {
                    ops.push((format!("{t}/{item}"), "patch"));
                }
                ops
            }),
    )
    .collect();
    assert_eq!(expected.len(), 38);
    for (path, method) in &expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        assert!(op["responses"]["401"].is_object(), "{method} {path} lacks the error responses");
    }
    let documented: usize =
        doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, expected.len(), "undocumented or unexpected operations");
    // Operation ids are unique, and every response is described (both required by OpenAPI).
    let mut ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "{method} {path}: duplicate operationId"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(!response["description"].as_str().unwrap().is_empty(), "{method} {path} {status}");
            }
        }
    }
    assert!(doc["components"]["schemas"]["CreatedKeyView"].is_object());
    assert!(doc["components"]["schemas"]["Cache"].is_object(), "the cache rule is documented");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn without_a_store_admin_routes_answer_503() {
    let h = Harness::start_with(Backend::Sqlite, false, true).await;
    let r = h.call(ADMIN_KEY, Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("without a store"), "{}", r.text);
}
