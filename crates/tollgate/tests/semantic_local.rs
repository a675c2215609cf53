//! The semantic cache with the local embedding model (all-MiniLM-L6-v2 in process), through the
//! real binary built with `--features local-embeddings`: real paraphrases match, other
//! questions do not, and no prompt is sent to any embedding provider. The model files come
//! from `scripts/fetch-embedding-model.sh` (`TOLLGATE_EMBED_MODEL_DIR`).

#![cfg(feature = "local-embeddings")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod support;

use std::time::Duration;

use mock_llm::MockLlm;
use support::{Gateway, TempDir, ask_gpt, cli};

fn model_dir() -> String {
    std::env::var("TOLLGATE_EMBED_MODEL_DIR").expect(
        "TOLLGATE_EMBED_MODEL_DIR is not set: run `export TOLLGATE_EMBED_MODEL_DIR=$(scripts/fetch-embedding-model.sh)`",
    )
}

#[tokio::test]
async fn paraphrases_match_by_meaning_with_the_local_model() {
    let mock = MockLlm::start().await.unwrap();
    let dir = TempDir::new("semantic-local");
    let config = dir.write(
        "tollgate.yaml",
        &format!(
            "store: {{ url: \"sqlite://tollgate.db\" }}
cache:
  mode: on
  semantic: {{ enabled: true, embedding: {{ local: {{ model_dir: \"{}\" }} }} }}
providers:
  up: {{ kind: openai, base_url: \"{}/v1\", api_key: sk-gateway }}
models:
  gpt: {{ deployments: [ {{ provider: up, model: gpt-4o-mini }} ] }}
",
            model_dir(),
            mock.base_url()
        ),
    );
    let key = cli(&config, &["bootstrap", "--tenant", "acme", "--owner", "alice"]).trim().to_owned();
    let gw = Gateway::start(&config);
    let http = reqwest::Client::new();

    let (cache, _, first) = ask_gpt(&http, &gw, &key, "How do I reverse a list in Python?").await;
    assert_eq!(cache, "miss");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cache, similarity, again) =
        ask_gpt(&http, &gw, &key, "What's the way to reverse a Python list?").await;
    assert_eq!(cache, "semantic-hit", "a real paraphrase (similarity {similarity:?})");
    assert!(similarity.unwrap() > 0.9);
    assert_eq!(again["choices"][0]["message"]["content"], first["choices"][0]["message"]["content"]);
    let (cache, _, _) = ask_gpt(&http, &gw, &key, "What is the boiling point of water at sea level?").await;
    assert_eq!(cache, "miss", "another question");
    let reqs = mock.requests();
    assert!(
        reqs.iter().all(|r| !r.path.ends_with("/embeddings")),
        "no prompt left for an embedding provider"
    );
    assert_eq!(reqs.len(), 2, "two upstream chat calls: the two misses");
}
