//! Keys at work: shown once, usable for inference, refused once revoked (on this node, at
//! once) or expired; malformed and unknown keys; scopes; allowed models.

use reqwest::Method;
use serde_json::json;
use time::OffsetDateTime;
use tollgate_core::secrets::generate_key;
use tollgate_types::ports::store::NewKey;
use tollgate_types::tenancy::{Actor, KeyId, KeyScope, MemberId, ProjectId, TenantId};

use crate::harness::{Backend, Harness};

on_every_store!(
    a_new_key_works_for_inference_and_stops_the_moment_it_is_revoked,
    expired_malformed_and_unknown_keys_get_401,
    an_inference_only_key_is_refused_on_admin_routes,
    allowed_models_restrict_inference,
    deleting_a_member_revokes_its_keys_at_once,
);

async fn a_new_key_works_for_inference_and_stops_the_moment_it_is_revoked(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let created = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "app"})),
        )
        .await;
    let secret = created["secret"].as_str().unwrap();
    let r = h.chat(secret, "echo").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The secret is never shown again, in any listing.
    let list = h.ok(&t.owner_key, Method::GET, &t.path("/keys?include_revoked=true"), None).await;
    assert!(!list.to_string().contains(secret));
    let path = t.path(&format!("/keys/{}", created["id"].as_str().unwrap()));
    assert!(!h.ok(&t.owner_key, Method::GET, &path, None).await.to_string().contains(secret));

    // Warm in the cache now; the revocation must still be seen on the very next request.
    h.ok(&t.owner_key, Method::DELETE, &path, None).await;
    let r = h.chat(secret, "echo").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("revoked"), "{}", r.text);
    // Revoking again is idempotent.
    assert!(h.ok(&t.owner_key, Method::DELETE, &path, None).await["revoked_at"].is_string());
}

async fn expired_malformed_and_unknown_keys_get_401(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    // The API refuses a past expiry, so store an expired key directly.
    let g = generate_key().unwrap();
    let tenant: TenantId = t.id.parse().unwrap();
    let new = NewKey {
        id: KeyId::new(),
        project_id: t.project_id.parse::<ProjectId>().unwrap(),
        owner_id: t.owner_id.parse::<MemberId>().unwrap(),
        name: "old".into(),
        prefix: g.prefix.clone(),
        hash: g.hash,
        scopes: vec![KeyScope::Inference, KeyScope::Admin],
        allowed_models: None,
        allowed_tags: Vec::new(),
        metadata: Default::default(),
        expires_at: Some(OffsetDateTime::now_utc() - time::Duration::minutes(1)),
        limits: None,
        cache: Default::default(),
    };
    h.store.admin.create_key(tenant, new, &Actor::Cli).await.unwrap();
    let r = h.chat(&g.secret, "echo").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("expired"), "{}", r.text);
    assert_eq!(h.call(&g.secret, Method::GET, "/admin/v1/me", None).await.status, 401);

    let unknown = generate_key().unwrap().secret;
    let mut truncated = t.owner_key.clone();
    truncated.pop();
    for key in
        [unknown.as_str(), truncated.as_str(), "tg_live_'; DROP TABLE api_keys; --", "Bearer", "sk-not-ours"]
    {
        for path in ["/v1/chat/completions", "/admin/v1/me"] {
            let method = if path == "/admin/v1/me" { Method::GET } else { Method::POST };
            let body = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
            let r = h.call(key, method, path, Some(body)).await;
            assert_eq!(r.status, 401, "{key:?} on {path}: {}", r.text);
            assert_eq!(r.body["error"]["code"], "invalid_api_key");
        }
    }
    let r = h.http.get(format!("{}/admin/v1/me", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

async fn an_inference_only_key_is_refused_on_admin_routes(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let dev = h.member(&t, "admin", &["inference"]).await;
    for (method, path) in
        [(Method::GET, "/admin/v1/me".to_owned()), (Method::GET, t.path("")), (Method::GET, t.path("/keys"))]
    {
        let r = h.call(&dev.key, method, &path, None).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("admin"), "{}", r.text);
    }
    // An admin-only key is refused on inference.
    let adm = h.member(&t, "admin", &["admin"]).await;
    assert_eq!(h.chat(&adm.key, "echo").await.status, 403);
}

async fn allowed_models_restrict_inference(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let k = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/keys"),
            Some(json!({"project_id": t.project_id, "name": "echo only", "allowed_models": ["echo"]})),
        )
        .await;
    let secret = k["secret"].as_str().unwrap();
    assert_eq!(h.chat(secret, "echo").await.status, 200);
    let r = h.chat(secret, "echo-2").await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("echo-2"), "{}", r.text);
    // Widening the list takes effect at once.
    let path = t.path(&format!("/keys/{}", k["id"].as_str().unwrap()));
    h.ok(&t.owner_key, Method::PATCH, &path, Some(json!({"allowed_models": ["echo", "echo-2"]}))).await;
    assert_eq!(h.chat(secret, "echo-2").await.status, 200);
}

async fn deleting_a_member_revokes_its_keys_at_once(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let dev = h.member(&t, "developer", &["inference"]).await;
    assert_eq!(h.chat(&dev.key, "echo").await.status, 200);
    h.ok(&t.owner_key, Method::DELETE, &t.path(&format!("/members/{}", dev.id)), None).await;
    assert_eq!(h.chat(&dev.key, "echo").await.status, 401);
}
