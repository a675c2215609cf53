//! The admin test harness: a real store (a temp SQLite file, or a fresh PostgreSQL database
//! used as `tollgate_app`), the real app and a mock upstream on ephemeral ports of 127.0.0.1,
//! spoken to over real HTTP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use mock_llm::{Knobs, MockLlm};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate_core::config::Config;
use tollgate_core::secrets::MasterKeys;
use tollgate_server::{AppState, build_app};
use tollgate_store::Store;
use tollgate_store::postgres::PostgresStore;
use tollgate_store::sqlite::SqliteStore;

/// The bootstrap (super-admin) key.
pub const ADMIN_KEY: &str = "test-bootstrap-admin-key";
/// The gateway's own key for the `compat` provider.
pub const GATEWAY_PROVIDER_KEY: &str = "sk-gateway-own-key-0000";
/// The key the mock upstream accepts: only a tenant's own credential carries it.
pub const TENANT_SECRET: &str = "tenant-secret";
const MASTER_KEY: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const PG_ADMIN: [&str; 6] = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"];

/// Which store the gateway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The test config: `echo` (answers locally), `compat` (the mock), and `other` (the mock
/// again, for which tenants never have a credential).
const CONFIG: &str = r#"
server: { max_body_bytes: 262144 }
providers:
  echo: { kind: echo }
  compat: { kind: openai_compatible, base_url: "{mock}/v1", api_key: "${MOCK_KEY}" }
  other: { kind: openai_compatible, base_url: "{mock}/v1", api_key: "${MOCK_KEY}" }
models:
  echo: { deployments: [ { provider: echo, model: echo-1 } ] }
  echo-2: { deployments: [ { provider: echo, model: echo-2 } ] }
  compat-chat: { deployments: [ { provider: compat, model: llama-3 } ] }
  other-chat: { deployments: [ { provider: other, model: llama-3 } ] }
  regional:
    deployments:
      - { provider: echo, model: eu-1, name: eu, tags: [eu] }
      - { provider: echo, model: us-1, name: us, region: us-east-1 }
"#;

/// Removes the test's database when the test ends.
enum DbGuard {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        match self {
            DbGuard::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    // Best effort: a leftover temp file is not worth failing a test over.
                    let _ = std::fs::remove_file(p);
                }
            }
            DbGuard::Postgres(name) => {
                // FORCE closes the gateway's connections, which may still be open here.
                let _ = psql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}

/// Runs one statement as the PostgreSQL admin. `psql` rather than a driver: the test crate
/// reaches the database only through `tollgate-store`.
fn psql(sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args(PG_ADMIN)
        .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

async fn open_store(backend: Backend) -> (Store, DbGuard) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("tollgate-admin-{id}.db"));
            let guard = DbGuard::Sqlite(path.clone());
            let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
            store.migrate().await.unwrap();
            (store.into_store(), guard)
        }
        Backend::Postgres => {
            // The name is generated here (hex digits only), never user input.
            let name = format!("tollgate_admin_test_{id}");
            psql(&format!("CREATE DATABASE \"{name}\"")).unwrap_or_else(|e| panic!("create database: {e}"));
            let guard = DbGuard::Postgres(name.clone());
            PostgresStore::migrate(&format!("postgres://postgres@127.0.0.1:5432/{name}")).await.unwrap();
            let store = PostgresStore::connect(&format!("postgres://tollgate_app@127.0.0.1:5432/{name}"))
                .await
                .unwrap();
            (store.into_store(), guard)
        }
    }
}

pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub mock: MockLlm,
    /// The gateway's store, for set-up the API forbids (an already expired key).
    pub store: Store,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    // Declared last: dropped after the server is told to stop.
    _db: DbGuard,
}

/// A response: status and JSON body (`Value::Null` if the body is not JSON).
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Harness {
    pub async fn start(backend: Backend) -> Harness {
        Self::start_with(backend, true, true).await
    }

    /// `with_store: false` runs the gateway without a store; `with_master_key: false` without
    /// `TOLLGATE_ENCRYPTION_KEY`.
    pub async fn start_with(backend: Backend, with_store: bool, with_master_key: bool) -> Harness {
        let knobs = Knobs { require_key: Some(TENANT_SECRET.into()), ..Knobs::default() };
        let mock = MockLlm::start_with(knobs, "127.0.0.1:0".parse().unwrap(), true).await.unwrap();
        let yaml = CONFIG.replace("{mock}", &mock.base_url());
        let env = HashMap::from([("MOCK_KEY".to_owned(), GATEWAY_PROVIDER_KEY.to_owned())]);
        let (config, _warnings) = Config::parse(&yaml, &env).unwrap_or_else(|e| panic!("test config: {e}"));
        let (store, db) = open_store(backend).await;
        let state = AppState::from_config(
            &config,
            &SecretString::from(ADMIN_KEY),
            with_store.then(|| store.clone()),
            if with_master_key { MasterKeys::parse(MASTER_KEY).unwrap() } else { MasterKeys::none() },
        )
        .unwrap();
        // No change-feed task: changes must be visible on this node through the admin API's
        // own cache updates, immediately.
        let app = build_app(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        #[expect(clippy::disallowed_methods, reason = "the test server lives as long as the test")]
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Harness { base, http: reqwest::Client::new(), mock, store, _shutdown: tx, _db: db }
    }

    /// Sends `body` (if any) with `key`.
    pub async fn call(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    /// A call that must succeed; returns the body.
    pub async fn ok(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.call(key, method.clone(), path, body).await;
        assert!((200..300).contains(&r.status), "{method} {path} → {}: {}", r.status, r.text);
        r.body
    }

    /// As the super-admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.ok(ADMIN_KEY, method, path, body).await
    }

    pub async fn chat(&self, key: &str, model: &str) -> Resp {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        self.call(key, Method::POST, "/v1/chat/completions", Some(body)).await
    }

    /// A chat call with extra request headers (routing controls).
    pub async fn call_with(&self, key: &str, model: &str, headers: &[(&str, &str)]) -> Resp {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let mut req =
            self.http.post(format!("{}/v1/chat/completions", self.base)).bearer_auth(key).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    /// What the bootstrap admin sets up for a team: a tenant, its owner, a project, and an
    /// owner key with the `admin` and `inference` scopes.
    pub async fn tenant(&self, name: &str) -> TenantFx {
        let t = self.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": name}))).await;
        let id = t["id"].as_str().unwrap().to_owned();
        let owner = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{id}/members"),
                Some(json!({"name": format!("owner@{name}"), "role": "owner"})),
            )
            .await;
        let owner_id = owner["id"].as_str().unwrap().to_owned();
        let project = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{id}/projects"),
                Some(json!({"name": "default"})),
            )
            .await;
        let project_id = project["id"].as_str().unwrap().to_owned();
        let key = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{id}/keys"),
                Some(json!({"project_id": project_id, "owner_id": owner_id, "name": "owner key",
                    "scopes": ["admin", "inference"]})),
            )
            .await;
        let owner_key = key["secret"].as_str().unwrap().to_owned();
        TenantFx { id, owner_id, project_id, owner_key }
    }

    /// A new member of `t` with `role`, and a key it owns with `scopes` (minted by the owner).
    pub async fn member(&self, t: &TenantFx, role: &str, scopes: &[&str]) -> MemberFx {
        let m = self
            .ok(
                &t.owner_key,
                Method::POST,
                &t.path("/members"),
                Some(json!({"name": format!("{role}-{}", uuid::Uuid::now_v7()), "role": role})),
            )
            .await;
        let id = m["id"].as_str().unwrap().to_owned();
        let k = self
            .ok(
                &t.owner_key,
                Method::POST,
                &t.path("/keys"),
                Some(json!({"project_id": t.project_id, "owner_id": id, "name": format!("{role} key"),
                    "scopes": scopes})),
            )
            .await;
        MemberFx {
            id,
            key: k["secret"].as_str().unwrap().to_owned(),
            key_id: k["id"].as_str().unwrap().to_owned(),
        }
    }
}

/// A tenant set up by [`Harness::tenant`].
pub struct TenantFx {
    pub id: String,
    pub owner_id: String,
    pub project_id: String,
    /// The owner's key, scopes `admin` and `inference`.
    pub owner_key: String,
}

impl TenantFx {
    /// `/admin/v1/tenants/<id><rest>`
    pub fn path(&self, rest: &str) -> String {
        format!("/admin/v1/tenants/{}{rest}", self.id)
    }
}

pub struct MemberFx {
    pub id: String,
    pub key: String,
    pub key_id: String,
}
