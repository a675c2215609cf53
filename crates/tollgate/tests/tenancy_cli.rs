//! The tenancy commands of the binary against a SQLite store: bootstrap, tenants, projects,
//! members and keys; a key made by the CLI works on a gateway and stops working when the CLI
//! revokes it.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod support;

use support::{Gateway, TempDir, chat_status, cli, cli_json};

const CONFIG: &str = "store: { url: \"sqlite://tollgate.db\" }\nproviders: { echo: { kind: echo } }\nmodels: { echo: { deployments: [ { provider: echo, model: echo-1, tags: [eu] } ] } }\n";

#[tokio::test]
async fn cli_manages_tenants_projects_members_and_keys() {
    let dir = TempDir::new("cli");
    let config = dir.write("tollgate.yaml", CONFIG);
    let owner_key = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice@acme.test"]);
    let owner_key = owner_key.trim();
    assert!(owner_key.starts_with("tg_live_"), "{owner_key}");
    assert!(dir.0.join("tollgate.db").exists(), "the store lives next to the config");

    let tenants = cli_json(&config, &["tenants", "list"]);
    let tenant = tenants["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(tenants["data"][0]["name"], "acme");
    let project = cli_json(&config, &["projects", "create", "--tenant", &tenant, "--name", "web"]);
    let member = cli_json(
        &config,
        &["members", "create", "--tenant", &tenant, "--name", "bob", "--role", "developer"],
    );
    let created = cli_json(
        &config,
        &[
            "keys",
            "create",
            "--tenant",
            &tenant,
            "--project",
            project["id"].as_str().unwrap(),
            "--owner",
            member["id"].as_str().unwrap(),
            "--name",
            "ci",
            "--model",
            "echo",
            "--tag",
            "eu",
        ],
    );
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["key"]["allowed_models"], serde_json::json!(["echo"]));
    assert_eq!(created["key"]["allowed_tags"], serde_json::json!(["eu"]));
    let keys = cli_json(&config, &["keys", "list", "--tenant", &tenant]);
    assert_eq!(keys["data"].as_array().unwrap().len(), 2);
    assert!(!keys.to_string().contains(&secret), "a listed key must not carry its secret");

    let gw = Gateway::start(&config);
    let http = reqwest::Client::new();
    assert_eq!(chat_status(&http, &gw, &secret).await, 200);
    assert_eq!(chat_status(&http, &gw, owner_key).await, 200);

    cli(&config, &["keys", "revoke", "--tenant", &tenant, created["key"]["id"].as_str().unwrap()]);
    // SQLite is single-node: the gateway's cache learns of the CLI's revocation when its
    // entry's time-to-live ends, so here we only check the store, through a fresh lookup.
    let listed =
        cli_json(&config, &["keys", "get", "--tenant", &tenant, created["key"]["id"].as_str().unwrap()]);
    assert!(listed["revoked_at"].is_string());

    // Bad input is refused with a message and changes nothing.
    let out = support::tollgate(&config).args(["tenants", "create", "--name", "acme"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = support::tollgate(&config)
        .args(["members", "create", "--tenant", &tenant, "--name", "x", "--role", "god"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(cli_json(&config, &["tenants", "list"])["data"].as_array().unwrap().len(), 1);
    let audit_actions = cli_json(&config, &["members", "list", "--tenant", &tenant]);
    assert_eq!(audit_actions["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn cli_sets_and_reads_limits_and_pricing() {
    let dir = TempDir::new("cli-limits");
    let config = dir.write("tollgate.yaml", CONFIG);
    cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice@acme.test"]);
    let tenant = cli_json(&config, &["tenants", "list"])["data"][0]["id"].as_str().unwrap().to_owned();
    let keys = cli_json(&config, &["keys", "list", "--tenant", &tenant]);
    let key = keys["data"][0]["id"].as_str().unwrap().to_owned();
    let project = keys["data"][0]["project_id"].as_str().unwrap().to_owned();

    let get = |target: &[&str]| {
        let mut args = vec!["limits", "get", "--tenant", tenant.as_str()];
        args.extend_from_slice(target);
        cli_json(&config, &args)
    };
    assert_eq!(get(&["--key", &key]), serde_json::json!({}));
    let set = cli_json(
        &config,
        &[
            "limits",
            "set",
            "--tenant",
            &tenant,
            "--key",
            &key,
            "--json",
            r#"{"rate":{"rpm":60,"max_concurrent":2},"budgets":[{"period":"day","limit_usd":"5.50","alert_at_percent":[100,50]}]}"#,
        ],
    );
    let stored = serde_json::json!({"rate": {"rpm": 60, "max_concurrent": 2},
        "budgets": [{"period": "day", "limit_usd": "5.5", "alert_at_percent": [50, 100]}]});
    assert_eq!(set, stored);
    assert_eq!(get(&["--key", &key]), stored);
    assert_eq!(cli_json(&config, &["keys", "get", "--tenant", &tenant, &key])["limits"], stored);
    // The project's and the tenant's are separate, and still empty.
    assert_eq!(get(&["--project", &project]), serde_json::json!({}));
    assert_eq!(get(&[]), serde_json::json!({}));

    cli(&config, &["limits", "set", "--tenant", &tenant, "--json", r#"{"rate":{"tpm":1000}}"#]);
    assert_eq!(get(&[]), serde_json::json!({"rate": {"tpm": 1000}}));
    let pricing =
        cli_json(&config, &["pricing", "set", "--tenant", &tenant, "--json", r#"{"markup_bps":250}"#]);
    assert_eq!(pricing, serde_json::json!({"markup_bps": 250}));
    assert_eq!(cli_json(&config, &["pricing", "get", "--tenant", &tenant])["markup_bps"], 250);

    // Invalid policies are refused with the field named, and change nothing.
    let out = support::tollgate(&config)
        .args(["limits", "set", "--tenant", &tenant, "--key", &key, "--json", r#"{"rate":{"rpm":0}}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate.rpm: must be at least 1"), "{out:?}");
    let out = support::tollgate(&config)
        .args(["limits", "set", "--tenant", &tenant, "--json", "not json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(get(&["--key", &key]), stored);
    // `{}` clears.
    assert_eq!(
        cli_json(&config, &["limits", "set", "--tenant", &tenant, "--key", &key, "--json", "{}"]),
        serde_json::json!({})
    );
    assert_eq!(get(&["--key", &key]), serde_json::json!({}));
}

#[tokio::test]
async fn cli_sets_and_clears_cache_rules_of_projects_and_keys() {
    let dir = TempDir::new("cli-cache");
    let config = dir.write("tollgate.yaml", CONFIG);
    cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice@acme.test"]);
    let tenant = cli_json(&config, &["tenants", "list"])["data"][0]["id"].as_str().unwrap().to_owned();
    let owner = cli_json(&config, &["members", "list", "--tenant", &tenant])["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let project = cli_json(
        &config,
        &[
            "projects",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "web",
            "--cache-mode",
            "on",
            "--cache-ttl",
            "600",
        ],
    );
    assert_eq!(project["cache"], serde_json::json!({"mode": "on", "ttl_seconds": 600}));
    let project_id = project["id"].as_str().unwrap().to_owned();
    let created = cli_json(
        &config,
        &[
            "keys",
            "create",
            "--tenant",
            &tenant,
            "--project",
            &project_id,
            "--owner",
            &owner,
            "--name",
            "low-trust",
            "--cache-allow",
            "read-only",
        ],
    );
    assert_eq!(created["key"]["cache"], serde_json::json!({"allow": "read-only"}));
    let key = created["key"]["id"].as_str().unwrap().to_owned();
    // A key made without flags inherits (no rule of its own).
    let plain = cli_json(
        &config,
        &[
            "keys",
            "create",
            "--tenant",
            &tenant,
            "--project",
            &project_id,
            "--owner",
            &owner,
            "--name",
            "plain",
        ],
    );
    assert_eq!(plain["key"]["cache"], serde_json::json!({}));
    // The key works for inference with its rule.
    let gw = Gateway::start(&config);
    assert_eq!(chat_status(&reqwest::Client::new(), &gw, created["secret"].as_str().unwrap()).await, 200);

    // set-cache replaces the rule whole; --clear removes it.
    let set = cli_json(
        &config,
        &["keys", "set-cache", "--tenant", &tenant, &key, "--cache-mode", "write-only", "--cache-ttl", "60"],
    );
    assert_eq!(set["cache"], serde_json::json!({"mode": "write-only", "ttl_seconds": 60}));
    assert_eq!(cli_json(&config, &["keys", "get", "--tenant", &tenant, &key])["cache"], set["cache"]);
    let set = cli_json(
        &config,
        &["projects", "set-cache", "--tenant", &tenant, &project_id, "--cache-allow", "none"],
    );
    assert_eq!(set["cache"], serde_json::json!({"allow": "none"}));
    let projects = cli_json(&config, &["projects", "list", "--tenant", &tenant]);
    assert_eq!(projects["data"][1]["cache"], serde_json::json!({"allow": "none"}));
    // Renaming keeps the rule.
    let renamed =
        cli_json(&config, &["projects", "rename", "--tenant", &tenant, &project_id, "--name", "site"]);
    assert_eq!(renamed["cache"], serde_json::json!({"allow": "none"}));
    let cleared = cli_json(&config, &["keys", "set-cache", "--tenant", &tenant, &key, "--clear"]);
    assert_eq!(cleared["cache"], serde_json::json!({}));
    let cleared = cli_json(&config, &["projects", "set-cache", "--tenant", &tenant, &project_id, "--clear"]);
    assert_eq!(cleared["cache"], serde_json::json!({}));
    // Rotation keeps the key's rule.
    cli(&config, &["keys", "set-cache", "--tenant", &tenant, &key, "--cache-allow", "read-only"]);
    let rotated = cli_json(&config, &["keys", "rotate", "--tenant", &tenant, &key]);
    assert_eq!(rotated["key"]["cache"], serde_json::json!({"allow": "read-only"}));
    // Changing the tenant's byok_only keeps the rest of its policy.
    let updated = cli_json(&config, &["tenants", "update", &tenant, "--byok-only", "true"]);
    assert_eq!(updated["policy"]["byok_only"], true);

    // Bad input is refused with a message and changes nothing.
    let key = rotated["key"]["id"].as_str().unwrap().to_owned();
    for (args, message) in [
        (vec!["keys", "set-cache", "--tenant", &tenant, &key], "--clear"),
        (vec!["keys", "set-cache", "--tenant", &tenant, &key, "--cache-ttl", "0"], "ttl_seconds"),
        (vec!["keys", "set-cache", "--tenant", &tenant, &key, "--cache-mode", "sometimes"], "sometimes"),
        (vec!["keys", "set-cache", "--tenant", &tenant, &key, "--cache-allow", "none", "--clear"], "--clear"),
        (
            vec!["projects", "set-cache", "--tenant", &tenant, &project_id, "--cache-allow", "write-only"],
            "write-only",
        ),
    ] {
        let out = support::tollgate(&config).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(
        cli_json(&config, &["keys", "get", "--tenant", &tenant, &key])["cache"],
        serde_json::json!({"allow": "read-only"})
    );
    assert_eq!(
        cli_json(&config, &["projects", "list", "--tenant", &tenant])["data"][1]["cache"],
        serde_json::json!({})
    );
}
