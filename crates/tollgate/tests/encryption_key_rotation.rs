//! Master-key rotation end to end: a tenant's provider credential sealed under key k1 is
//! re-encrypted by `tollgate rotate-encryption-key` under k2, after which a gateway that knows
//! only k2 still calls the upstream with the tenant's own key.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod support;

use mock_llm::{Knobs, MockLlm};
use support::{ADMIN_KEY, Gateway, TempDir, cli, cli_env, cli_json};

const K1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "k2:1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
const TENANT_SECRET: &str = "sk-tenant-own-secret-0042";

#[tokio::test]
async fn rotation_reseals_credentials_and_the_new_key_alone_opens_them() {
    let mock = MockLlm::start_with(
        Knobs { require_key: Some(TENANT_SECRET.into()), ..Knobs::default() },
        "127.0.0.1:0".parse().unwrap(),
        true,
    )
    .await
    .unwrap();
    let dir = TempDir::new("rotation");
    let config = dir.write(
        "tollgate.yaml",
        &format!(
            "store: {{ url: \"sqlite://tollgate.db\" }}\nproviders: {{ up: {{ kind: openai_compatible, base_url: \"{}/v1\" }} }}\nmodels: {{ m: {{ deployments: [ {{ provider: up, model: x }} ] }} }}\n",
            mock.base_url()
        ),
    );
    let key = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice"]).trim().to_owned();
    let tenant = cli_json(&config, &["tenants", "list"])["data"][0]["id"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let chat = |gw: &Gateway, key: &str| {
        http.post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };

    {
        let gw = Gateway::start_env(&config, &[("TOLLGATE_ENCRYPTION_KEY", K1)]);
        let resp = http
            .post(gw.url(&format!("/admin/v1/tenants/{tenant}/credentials")))
            .bearer_auth(&key)
            .json(&serde_json::json!({"provider": "up", "name": "own", "secret": TENANT_SECRET}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        assert_eq!(chat(&gw, &key).await.unwrap().status(), 200);
        // The gateway's own (empty) credential is refused by the mock: the super-admin's call
        // fails, which shows the tenant's call above used the tenant's secret.
        assert_eq!(chat(&gw, ADMIN_KEY).await.unwrap().status(), 502);
    }

    let out =
        cli_env(&config, &[("TOLLGATE_ENCRYPTION_KEY", &format!("{K2},{K1}"))], &["rotate-encryption-key"]);
    assert!(out.is_empty(), "the report goes to stderr");
    // The database and its write-ahead log never hold the secret in clear.
    for file in ["tollgate.db", "tollgate.db-wal"] {
        let bytes = std::fs::read(dir.0.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(TENANT_SECRET.len()).any(|w| w == TENANT_SECRET.as_bytes()),
            "{file} holds the secret"
        );
    }

    let gw = Gateway::start_env(&config, &[("TOLLGATE_ENCRYPTION_KEY", K2)]);
    assert_eq!(chat(&gw, &key).await.unwrap().status(), 200, "k2 alone opens the re-sealed credential");
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.header("authorization"), Some(format!("Bearer {TENANT_SECRET}").as_str()));
}
