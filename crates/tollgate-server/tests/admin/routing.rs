//! A tenant restricted to tags (`policy.allowed_tags`, the super-admin's to set) is served only
//! by deployments carrying one of them, and cannot lift the restriction itself.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Backend, Harness};

on_every_store!(an_eu_only_tenant_is_served_only_by_eu_deployments);

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
