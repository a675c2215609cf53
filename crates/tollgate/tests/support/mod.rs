//! Running the real `tollgate` binary in tests: CLI commands, and gateway processes on
//! ephemeral ports that are killed when dropped.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
pub const ADMIN_KEY: &str = "test-super-admin";

/// A command with a clean environment: no provider keys; the given admin key.
pub fn tollgate(config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
        .arg("--config")
        .arg(config);
    cmd
}

/// Runs a CLI command; returns stdout, failing the test with stderr if it failed.
pub fn cli(config: &Path, args: &[&str]) -> String {
    cli_env(config, &[], args)
}

/// [`cli`] with extra environment variables.
pub fn cli_env(config: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = tollgate(config).envs(env.iter().copied()).args(args).output().unwrap();
    assert!(out.status.success(), "tollgate {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn cli_json(config: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&cli(config, args)).unwrap()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tollgate-{tag}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running gateway process.
pub struct Gateway {
    pub child: Child,
    pub addr: String,
}

impl Gateway {
    /// Starts `tollgate serve` on 127.0.0.1:0 and waits for its address.
    pub fn start(config: &Path) -> Gateway {
        Self::start_env(config, &[])
    }

    /// [`Gateway::start`] with extra environment variables.
    pub fn start_env(config: &Path, env: &[(&str, &str)]) -> Gateway {
        let mut child = tollgate(config)
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Shown with the output of a failing test.
                eprintln!("[tollgate] {line}");
                if let Some(a) = line.split("address=").nth(1) {
                    let _ = tx.send(a.split_whitespace().next().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("tollgate did not start");
        Gateway { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the gateway with SIGTERM (a graceful shutdown: usage records are flushed) and
    /// checks it exited cleanly.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success(), "tollgate did not exit cleanly");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chat call to the `echo` model with `key`; returns the status.
pub async fn chat_status(http: &reqwest::Client, gw: &Gateway, key: &str) -> u16 {
    http.post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One user message to alias `gpt` as `key`, which must answer 200: `x-tollgate-cache`,
/// `x-tollgate-cache-similarity` (semantic hits) and the body.
pub async fn ask_gpt(
    http: &reqwest::Client,
    gw: &Gateway,
    key: &str,
    prompt: &str,
) -> (String, Option<f32>, serde_json::Value) {
    let resp = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "gpt", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let cache = header("x-tollgate-cache").unwrap();
    let similarity = header("x-tollgate-cache-similarity").map(|s| s.parse().unwrap());
    (cache, similarity, resp.json().await.unwrap())
}

/// The tenant of `key` (`GET /admin/v1/me`).
pub async fn tenant_of(http: &reqwest::Client, gw: &Gateway, key: &str) -> String {
    let me: serde_json::Value =
        http.get(gw.url("/admin/v1/me")).bearer_auth(key).send().await.unwrap().json().await.unwrap();
    me["tenant_id"].as_str().unwrap().to_owned()
}

/// `DELETE /admin/v1/tenants/{tenant}` as the super-admin: the status.
pub async fn delete_tenant(http: &reqwest::Client, gw: &Gateway, tenant: &str) -> u16 {
    let url = gw.url(&format!("/admin/v1/tenants/{tenant}"));
    http.delete(url).bearer_auth(ADMIN_KEY).send().await.unwrap().status().as_u16()
}

/// The value of the un-labelled metric `name` on `/metrics` (0 when absent).
pub async fn metric(http: &reqwest::Client, gw: &Gateway, name: &str) -> f64 {
    let text = http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// `POST /admin/v1/tenants/{tenant}/cache/purge` with `body`, as `key`: status and JSON body.
pub async fn purge_cache(
    http: &reqwest::Client,
    gw: &Gateway,
    key: &str,
    tenant: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = http
        .post(gw.url(&format!("/admin/v1/tenants/{tenant}/cache/purge")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The plain PostgreSQL's admin URL (`TOLLGATE_TEST_PG_URL`, default 127.0.0.1:5432 as
/// `postgres`).
pub fn pg_admin_url() -> String {
    std::env::var("TOLLGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database on the server `admin` (a superuser URL) names; [`PgDb::drop_now`] drops it.
pub struct PgDb {
    admin: String,
    pub name: String,
}

impl PgDb {
    pub async fn create(admin: String) -> PgDb {
        use sqlx::Connection;
        let name = format!("tollgate_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        // The name is generated above (hex digits), never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        PgDb { admin, name }
    }

    /// This database on the same server, as `user` (trust auth).
    pub fn url(&self, user: &str) -> String {
        let rest = self.admin.split_once("://").map_or(self.admin.as_str(), |(_, r)| r);
        let host = rest.split_once('@').map_or(rest, |(_, h)| h);
        let host = host.split_once('/').map_or(host, |(h, _)| h);
        format!("postgres://{user}@{host}/{}", self.name)
    }

    pub async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
        }
    }
}
