//! The gateway test harness: a real mock upstream and the real app on ephemeral ports, spoken
//! to over real HTTP.

use std::collections::HashMap;

use mock_llm::MockLlm;
use secrecy::SecretString;
use tollgate_core::config::Config;
use tollgate_core::secrets::MasterKeys;
use tollgate_server::{AppState, build_app};

pub const KEY: &str = "test-admin-key";
pub const PROVIDER_KEY: &str = "sk-provider-secret-123";

pub struct Harness {
    pub base: String,
    pub mock: MockLlm,
    pub http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _background: tokio_util::sync::DropGuard,
}

impl Harness {
    /// Starts a mock and a gateway whose config is `yaml` with `{mock}` replaced by the mock's
    /// base URL. `${MOCK_KEY}` resolves to [`PROVIDER_KEY`].
    pub async fn start(yaml: &str) -> Harness {
        Self::start_with(yaml, false).await
    }

    /// Like [`Self::start`]; with `background`, the app's background tasks run too (health
    /// checks, usage writer, ...), stopped with the harness.
    pub async fn start_with(yaml: &str, background: bool) -> Harness {
        let mock = MockLlm::start().await.unwrap();
        let yaml = yaml.replace("{mock}", &mock.base_url());
        let env = HashMap::from([("MOCK_KEY".to_owned(), PROVIDER_KEY.to_owned())]);
        let (config, _warnings) = Config::parse(&yaml, &env).unwrap_or_else(|e| panic!("test config: {e}"));
        let state =
            AppState::from_config(&config, &SecretString::from(KEY), None, MasterKeys::none()).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        if background {
            state.spawn_background(&tokio_util::task::TaskTracker::new(), stop.clone());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        #[expect(clippy::disallowed_methods, reason = "the test server lives as long as the test")]
        tokio::spawn(async move {
            axum::serve(listener, build_app(state))
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Harness { base, mock, http: reqwest::Client::new(), _shutdown: tx, _background: stop.drop_guard() }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).bearer_auth(KEY)
    }

    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.post("/v1/chat/completions").json(&body).send().await.unwrap()
    }
}

/// Reads an SSE body into its `data:` payloads (`[DONE]` included).
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_owned))
        .collect()
}

/// Aliases of every kind that translates to a non-OpenAI wire format, with its provider kind.
pub const TRANSLATED: [(&str, &str); 3] =
    [("anthropic-chat", "anthropic"), ("gemini-chat", "gemini"), ("cohere-chat", "cohere")];

/// The config used by most tests: every OpenAI-family kind, echo, and fault aliases.
pub const CONFIG: &str = r#"
server: { max_body_bytes: 65536 }
providers:
  openai: { kind: openai, base_url: "{mock}/v1", api_key: "${MOCK_KEY}" }
  azure: { kind: azure, base_url: "{mock}", api_key: "${MOCK_KEY}", api_version: "2024-10-21" }
  compat: { kind: openai_compatible, base_url: "{mock}/v1" }
  nokey: { kind: openai, base_url: "{mock}/v1", api_key: "${UNSET_TEST_KEY}" }
  anthropic: { kind: anthropic, base_url: "{mock}", api_key: "${MOCK_KEY}" }
  gemini: { kind: gemini, base_url: "{mock}", api_key: "${MOCK_KEY}" }
  cohere: { kind: cohere, base_url: "{mock}", api_key: "${MOCK_KEY}" }
  echo: { kind: echo }
models:
  anthropic-chat: { deployments: [ { provider: anthropic, model: claude-sonnet-4-5 } ] }
  gemini-chat: { deployments: [ { provider: gemini, model: gemini-2.5-flash } ] }
  cohere-chat: { deployments: [ { provider: cohere, model: command-a-03-2025 } ] }
  anthropic-overloaded: { deployments: [ { provider: anthropic, model: "c~status=529" } ] }
  openai-chat: { deployments: [ { provider: openai, model: gpt-4o-mini } ] }
  azure-chat: { deployments: [ { provider: azure, model: my-gpt4o-deployment } ] }
  compat-chat: { deployments: [ { provider: compat, model: llama-3 } ] }
  echo: { deployments: [ { provider: echo, model: echo-1 } ] }
  nokey: { deployments: [ { provider: nokey, model: gpt-4o } ] }
  rate-limited: { deployments: [ { provider: compat, model: "m~status=429,retry_after=7" } ] }
  failing: { deployments: [ { provider: compat, model: "m~status=500" } ] }
  rejected: { deployments: [ { provider: compat, model: "m~status=400" }, { provider: compat, model: never-tried } ] }
  garbage: { deployments: [ { provider: compat, model: "m~garbage" } ] }
  hanging: { deployments: [ { provider: compat, model: "m~hang", timeouts: { first_byte: 300ms } } ] }
  breaking: { deployments: [ { provider: compat, model: "m~disconnect_after=3" } ] }
  fallback:
    deployments:
      - { provider: compat, model: "m~status=503", name: first }
      - { provider: openai, model: gpt-4o-mini, name: second }
"#;
