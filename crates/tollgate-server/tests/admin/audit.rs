//! The audit trail: each admin change, newest first, with its actor and before/after.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Harness};

on_every_store!(audit_lists_each_change_with_actor_and_before_after);

async fn audit_lists_each_change_with_actor_and_before_after(b: Backend) {
    let h = Harness::start(b).await;
    let t = h.tenant("acme").await;
    let me = h.ok(&t.owner_key, Method::GET, "/admin/v1/me", None).await;
    let p = h.ok(&t.owner_key, Method::POST, &t.path("/projects"), Some(json!({"name": "before"}))).await;
    let path = t.path(&format!("/projects/{}", p["id"].as_str().unwrap()));
    h.ok(&t.owner_key, Method::PATCH, &path, Some(json!({"name": "after"}))).await;
    h.ok(&t.owner_key, Method::DELETE, &path, None).await;

    let audit = h.ok(&t.owner_key, Method::GET, &t.path("/audit"), None).await;
    let records = audit["data"].as_array().unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    // Newest first: the owner key's changes, then the bootstrap set-up.
    let expected_head = ["project.delete", "project.update", "project.create"];
    assert_eq!(actions[..3], expected_head, "{actions:?}");
    for action in ["tenant.create", "member.create", "key.create"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    let by_key = json!({"type": "key", "key_id": me["key_id"], "member_id": t.owner_id});
    let find = |action: &str| records.iter().find(|r| r["action"] == action).unwrap().clone();
    let update = find("project.update");
    assert_eq!(update["actor"], by_key);
    assert_eq!(
        (update["resource_type"].as_str(), update["resource_id"].as_str()),
        (Some("project"), p["id"].as_str())
    );
    assert_eq!(update["before"]["name"], "before");
    assert_eq!(update["after"]["name"], "after");
    let delete = find("project.delete");
    assert_eq!((delete["before"]["name"].as_str(), &delete["after"]), (Some("after"), &Value::Null));
    assert_eq!(find("project.create")["before"], Value::Null);
    assert_eq!(find("member.create")["actor"], json!({"type": "super_admin"}));
    // Key records hold no secret or hash.
    let key_create = find("key.create");
    let text = key_create.to_string();
    assert!(!text.contains(&t.owner_key) && !text.contains("hash"), "{text}");
}
