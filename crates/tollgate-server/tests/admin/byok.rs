//! Bring-your-own-key: a tenant's credential is used for its calls (and never shown), the
//! gateway's own key for everyone else's; `byok_only` forbids falling back to the gateway's key.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Backend, GATEWAY_PROVIDER_KEY, Harness, TENANT_SECRET};

on_every_store!(
    a_tenant_credential_is_used_for_its_calls_and_byok_only_forbids_fallback,
    credential_secrets_never_leave_the_gateway
);

async fn a_tenant_credential_is_used_for_its_calls_and_byok_only_forbids_fallback(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let cred = h
        .ok(
            &t.owner_key,
            Method::POST,
            &t.path("/credentials"),
            Some(json!({"provider": "compat", "name": "ours", "secret": TENANT_SECRET})),
        )
        .await;

    let r = h.chat(&t.owner_key, "compat-chat").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {TENANT_SECRET}").as_str()));

    // The bootstrap key goes through the gateway's own key (which this mock refuses).
    h.mock.clear_requests();
    let r = h.chat(crate::harness::ADMIN_KEY, "compat-chat").await;
    assert_ne!(r.status, 200, "{}", r.text);
    let seen = h.mock.requests();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|s| s.header("authorization") == Some(format!("Bearer {GATEWAY_PROVIDER_KEY}").as_str()))
    );

    // Without byok_only, a provider the tenant has no credential for uses the gateway's key.
    h.mock.clear_requests();
    h.chat(&t.owner_key, "other-chat").await;
    assert_eq!(
        h.mock.requests()[0].header("authorization"),
        Some(format!("Bearer {GATEWAY_PROVIDER_KEY}").as_str())
    );

    // byok_only, and the credential gone: the tenant's call fails before reaching the upstream.
    h.ok(&t.owner_key, Method::PATCH, &t.path(""), Some(json!({"policy": {"byok_only": true}}))).await;
    h.ok(
        &t.owner_key,
        Method::DELETE,
        &t.path(&format!("/credentials/{}", cred["id"].as_str().unwrap())),
        None,
    )
    .await;
    h.mock.clear_requests();
    for model in ["compat-chat", "other-chat"] {
        let r = h.chat(&t.owner_key, model).await;
        assert_eq!(r.status, 403, "{model}: {}", r.text);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("byok_only"), "{}", r.text);
    }
    assert!(h.mock.requests().is_empty(), "the upstream was called: {:?}", h.mock.requests());
    // A new credential takes effect at once.
    h.ok(
        &t.owner_key,
        Method::POST,
        &t.path("/credentials"),
        Some(json!({"provider": "compat", "name": "again", "secret": TENANT_SECRET})),
    )
    .await;
    assert_eq!(h.chat(&t.owner_key, "compat-chat").await.status, 200);
}

async fn credential_secrets_never_leave_the_gateway(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let secret = "sk-very-secret-provider-key-XYZ9";
    let created = h
        .call(
            &t.owner_key,
            Method::POST,
            &t.path("/credentials"),
            Some(json!({"provider": "compat", "name": "c", "secret": secret})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    let path = t.path(&format!("/credentials/{id}"));
    let mut texts = vec![created.text];
    texts.push(h.call(&t.owner_key, Method::GET, &path, None).await.text);
    texts.push(h.call(&t.owner_key, Method::GET, &t.path("/credentials"), None).await.text);
    texts.push(h.call(&t.owner_key, Method::GET, &t.path("/audit"), None).await.text);
    texts.push(h.call(&t.owner_key, Method::DELETE, &path, None).await.text);
    texts.push(h.call(&t.owner_key, Method::GET, &t.path("/audit"), None).await.text);
    // A refused create does not echo it either.
    texts.push(
        h.call(
            &t.owner_key,
            Method::POST,
            &t.path("/credentials"),
            Some(json!({"provider": "nope", "name": "c", "secret": secret})),
        )
        .await
        .text,
    );
    for text in &texts {
        assert!(!text.contains(secret) && !text.contains("very-secret"), "secret leaked: {text}");
    }
    assert!(texts[0].contains("...XYZ9"));
    let audit: serde_json::Value = serde_json::from_str(&texts[5]).unwrap();
    let actions: Vec<&str> =
        audit["data"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"credential.create") && actions.contains(&"credential.delete"), "{actions:?}");
}

#[tokio::test]
async fn without_a_master_key_credentials_are_refused_with_the_fix() {
    let h = Harness::start_with(Backend::Sqlite, true, false).await;
    let t = h.tenant("acme").await;
    let r = h
        .call(
            &t.owner_key,
            Method::POST,
            &t.path("/credentials"),
            Some(json!({"provider": "compat", "name": "c", "secret": TENANT_SECRET})),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("TOLLGATE_ENCRYPTION_KEY"), "{}", r.text);
    assert!(!r.text.contains(TENANT_SECRET));
    let list = h.ok(&t.owner_key, Method::GET, &t.path("/credentials"), None).await;
    assert_eq!(list["data"], json!([]));
}
