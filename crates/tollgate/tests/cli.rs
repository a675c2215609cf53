//! Black-box tests of the `tollgate` binary: config checking, start-up with the default
//! config and no provider keys, serving, and graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn repo_file(name: &str) -> String {
    format!("{}/../../{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A command with a clean environment: no provider keys, no admin key.
fn tollgate() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn version_is_printed() {
    let out = tollgate().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tollgate "));
}

#[test]
fn check_config_accepts_the_default_config_and_warns_about_missing_keys() {
    let out = tollgate().args(["check-config", "--config", &repo_file("tollgate.yaml")]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is valid"), "{stderr}");
    assert!(stderr.contains("OPENAI_API_KEY is not set"), "{stderr}");
}

#[test]
fn check_config_reports_every_problem_with_its_path() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        "providers:\n  anthropic: { kind: anthropic, api_key: k }\nmodels:\n  claude: { deployments: [ { provider: antropic, model: c } ] }\n  x: { deployments: [] }\n",
    )
    .unwrap();
    let out = tollgate().args(["check-config", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"models.claude.deployments[0].provider: unknown provider "antropic""#),
        "{stderr}"
    );
    assert!(stderr.contains("models.x.deployments: needs at least one deployment"), "{stderr}");
    let out = tollgate().args(["check-config", "--config", "/nonexistent/tollgate.yaml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}

#[tokio::test]
async fn serves_the_default_config_with_a_generated_key_and_stops_on_sigterm() {
    // A copy of the default config in a scratch directory, so its store file lands there.
    let dir = std::env::temp_dir().join(format!("tollgate-cli-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tollgate.yaml");
    std::fs::copy(repo_file("tollgate.yaml"), &config).unwrap();
    let mut child = tollgate()
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // The generated key is printed on its own indented line; the address is in the log line.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut key, mut addr) = (None, None);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(k) = line.trim().strip_prefix("tg_admin_") {
                key = Some(format!("tg_admin_{k}"));
            }
            if let Some(a) = line.split("address=").nth(1) {
                addr = a.split_whitespace().next().map(str::to_owned);
            }
            if let (Some(k), Some(a)) = (&key, &addr) {
                let _ = tx.send((k.clone(), a.clone()));
                key = None;
            }
        }
    });
    let (key, addr) = rx.recv_timeout(Duration::from_secs(30)).expect("tollgate did not start");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("ANTHROPIC_API_KEY"), "{body}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            assert!(dir.join("tollgate.db").exists(), "the default store is a file next to the config");
            let _ = std::fs::remove_dir_all(&dir);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "tollgate did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
