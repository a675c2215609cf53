//! A tenant restricted to tags (`policy.allowed_tags`, the super-admin's to set) is served only
//! by deployments carrying one of them, and cannot lift the restriction itself. A key restricted
//! to tags (its own `allowed_tags`, set by whoever manages the key) is served only by deployments
//! carrying one of those and allowed to its tenant.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Backend, Harness};

on_every_store!(
    an_eu_only_tenant_is_served_only_by_eu_deployments,
    a_key_restricted_to_tags_is_served_only_by_them
);

async fn an_eu_only_tenant_is_served_only_by_eu_deployments(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let served = |r: &crate::harness::Resp| r.body["model"].as_str().unwrap_or_default().to_owned();
    // Unrestricted, the alias uses both of its deployments (ordered: eu first, us on failure);
    // pinning us through the header proves the tenant can reach it.
    let r = h.call_with(&t.owner_key, "regional", &[("x-tollgate-tags", "us-east-1")]).await;
    assert_eq!((r.status, served(&r)), (200, "us-1".to_owned()), "{}", r.text);

    h.admin(Method::PATCH, &t.path(""), Some(json!({"policy": {"allowed_tags": ["eu"]}}))).await;
    for _ in 0..3 {
        let r = h.chat(&t.owner_key, "regional").await;
        assert_eq!((r.status, served(&r)), (200, "eu-1".to_owned()), "{}", r.text);
    }
    // Asking for the us deployment now finds none the tenant may use.
    let r = h.call_with(&t.owner_key, "regional", &[("x-tollgate-tags", "us-east-1")]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    // An alias without eu deployments is closed to the tenant.
    let r = h.chat(&t.owner_key, "echo").await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("allowed tags"), "{}", r.text);

    // The owner may change the rest of the policy; the restriction stays.
    let updated =
        h.ok(&t.owner_key, Method::PATCH, &t.path(""), Some(json!({"policy": {"byok_only": false}}))).await;
    assert_eq!(updated["policy"]["allowed_tags"], json!(["eu"]));
    let r = h
        .call(&t.owner_key, Method::PATCH, &t.path(""), Some(json!({"policy": {"allowed_tags": ["us"]}})))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

async fn a_key_restricted_to_tags_is_served_only_by_them(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let served = |r: &crate::harness::Resp| r.body["model"].as_str().unwrap_or_default().to_owned();
    let create =
        |tags: serde_json::Value| json!({"project_id": t.project_id, "name": "tagged", "allowed_tags": tags});
    let message =
        |r: &crate::harness::Resp| r.body["error"]["message"].as_str().unwrap_or_default().to_owned();

    // The us deployment comes second in `regional`: a key restricted to it is still sent there.
    let us = h.ok(&t.owner_key, Method::POST, &t.path("/keys"), Some(create(json!(["us-east-1"])))).await;
    assert_eq!(us["allowed_tags"], json!(["us-east-1"]));
    let us_secret = us["secret"].as_str().unwrap();
    for _ in 0..3 {
        let r = h.chat(us_secret, "regional").await;
        assert_eq!((r.status, served(&r)), (200, "us-1".to_owned()), "{}", r.text);
    }

    // An eu-only key (tags sorted and deduplicated) reaches only eu-1, even when it pins us.
    let eu = h.ok(&t.owner_key, Method::POST, &t.path("/keys"), Some(create(json!(["eu", "eu"])))).await;
    assert_eq!(eu["allowed_tags"], json!(["eu"]));
    let eu_secret = eu["secret"].as_str().unwrap();
    let r = h.chat(eu_secret, "regional").await;
    assert_eq!((r.status, served(&r)), (200, "eu-1".to_owned()), "{}", r.text);
    let r = h.call_with(eu_secret, "regional", &[("x-tollgate-tags", "us-east-1")]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    // The owner's unrestricted key of the same tenant still reaches us.
    let r = h.call_with(&t.owner_key, "regional", &[("x-tollgate-tags", "us-east-1")]).await;
    assert_eq!((r.status, served(&r)), (200, "us-1".to_owned()), "{}", r.text);

    // A tag no deployment of the alias carries closes it to the key, with a 403 naming the key.
    let apac = h.ok(&t.owner_key, Method::POST, &t.path("/keys"), Some(create(json!(["apac"])))).await;
    let apac_secret = apac["secret"].as_str().unwrap();
    for model in ["regional", "echo"] {
        let r = h.chat(apac_secret, model).await;
        assert_eq!(r.status, 403, "{model}: {}", r.text);
        assert!(message(&r).contains("API key") && message(&r).contains("allowed tags"), "{}", r.text);
    }

    // Patching the key's tags takes effect at once; `null` (or `[]`) lifts the restriction.
    let apac_path = t.path(&format!("/keys/{}", apac["id"].as_str().unwrap()));
    let patched = h.ok(&t.owner_key, Method::PATCH, &apac_path, Some(json!({"allowed_tags": ["eu"]}))).await;
    assert_eq!(patched["allowed_tags"], json!(["eu"]));
    let r = h.chat(apac_secret, "regional").await;
    assert_eq!((r.status, served(&r)), (200, "eu-1".to_owned()), "{}", r.text);
    assert_eq!(h.chat(apac_secret, "echo").await.status, 403);
    let patched = h.ok(&t.owner_key, Method::PATCH, &apac_path, Some(json!({"allowed_tags": null}))).await;
    assert_eq!(patched["allowed_tags"], json!([]));
    assert_eq!(h.chat(apac_secret, "echo").await.status, 200);
    // Other fields' patches keep the tags.
    let eu_path = t.path(&format!("/keys/{}", eu["id"].as_str().unwrap()));
    let renamed = h.ok(&t.owner_key, Method::PATCH, &eu_path, Some(json!({"name": "renamed"}))).await;
    assert_eq!(renamed["allowed_tags"], json!(["eu"]));

    // Bad tags are a 400 naming the field, and nothing changes.
    let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    for (method, path, body, param) in [
        (Method::POST, t.path("/keys"), create(json!(["eu", "e u"])), "allowed_tags[1]"),
        (Method::POST, t.path("/keys"), create(json!(many)), "allowed_tags"),
        (Method::PATCH, eu_path.clone(), json!({"allowed_tags": ["eu/west"]}), "allowed_tags[0]"),
        (Method::PATCH, eu_path.clone(), json!({"allowed_tags": [""]}), "allowed_tags[0]"),
    ] {
        let r = h.call(&t.owner_key, method, &path, Some(body)).await;
        assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some(param)), "{path}: {}", r.text);
    }
    assert_eq!(h.ok(&t.owner_key, Method::GET, &eu_path, None).await["allowed_tags"], json!(["eu"]));

    // A developer manages its own key's tags.
    let dev = h.member(&t, "developer", &["admin", "inference"]).await;
    let dev_path = t.path(&format!("/keys/{}", dev.key_id));
    h.ok(&dev.key, Method::PATCH, &dev_path, Some(json!({"allowed_tags": ["us-east-1"]}))).await;
    let r = h.chat(&dev.key, "regional").await;
    assert_eq!((r.status, served(&r)), (200, "us-1".to_owned()), "{}", r.text);

    // A key's tags only narrow its tenant's: once the tenant is eu-only, the us-only key has
    // nothing left, and the eu-only key is unchanged.
    h.admin(Method::PATCH, &t.path(""), Some(json!({"policy": {"allowed_tags": ["eu"]}}))).await;
    let r = h.chat(us_secret, "regional").await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = h.chat(eu_secret, "regional").await;
    assert_eq!((r.status, served(&r)), (200, "eu-1".to_owned()), "{}", r.text);
}
