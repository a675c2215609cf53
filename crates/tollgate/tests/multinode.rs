//! Two gateway processes on one PostgreSQL: a key revoked through one path stops working on
//! every node within a second (PostgreSQL LISTEN/NOTIFY invalidates each node's key cache).
//! Needs PostgreSQL on 127.0.0.1:5432 with trust auth for `postgres` (TOLLGATE_TEST_PG_URL
//! overrides the admin URL).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod support;

use std::time::Duration;

use support::{ADMIN_KEY, Gateway, PgDb, TempDir, chat_status, cli, cli_json, pg_admin_url};
use tokio::time::Instant;

#[tokio::test]
async fn a_revoked_key_stops_working_on_every_node_within_a_second() {
    let db = PgDb::create(pg_admin_url()).await;
    let dir = TempDir::new("multinode");
    let config = dir.write(
        "tollgate.yaml",
        &format!(
            "store: {{ url: \"{}\", owner_url: \"{}\" }}\nproviders: {{ echo: {{ kind: echo }} }}\nmodels: {{ echo: {{ deployments: [ {{ provider: echo, model: echo-1 }} ] }} }}\n",
            db.url("tollgate_app"),
            db.url("postgres"),
        ),
    );
    cli(&config, &["migrate"]);
    let key = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice"]).trim().to_owned();
    let tenant = cli_json(&config, &["tenants", "list"])["data"][0]["id"].as_str().unwrap().to_owned();

    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let http = reqwest::Client::new();
    for gw in [&a, &b] {
        assert_eq!(chat_status(&http, gw, &key).await, 200, "the key works on {}", gw.addr);
    }

    // Revoke through node A's admin API (as the super-admin); node B must follow.
    let keys: serde_json::Value = http
        .get(a.url(&format!("/admin/v1/tenants/{tenant}/keys")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    let revoked_at = Instant::now();
    let resp = http
        .delete(a.url(&format!("/admin/v1/tenants/{tenant}/keys/{key_id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    for gw in [&a, &b] {
        loop {
            let status = chat_status(&http, gw, &key).await;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "node {} still accepts the revoked key",
                gw.addr
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let elapsed = revoked_at.elapsed();
    eprintln!("both nodes refused the revoked key {elapsed:?} after the revocation");
    drop((a, b));
    db.drop_now().await;
}
