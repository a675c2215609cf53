//! What every adapter test needs: settings pointing at the mock, a call context, requests from
//! JSON, and the streamed text.

#![allow(dead_code, reason = "each adapter test binary uses part of this module")]

use std::time::Duration;

use mock_llm::MockLlm;
use secrecy::SecretString;
use serde_json::Value;
use tollgate_providers::{Credential, ProviderSettings};
use tollgate_types::ports::CallCtx;
use tollgate_types::{ChatChunk, ChatRequest};

/// The provider key the tests send.
pub const KEY: &str = "test-key";

/// Settings for an adapter talking to `mock` with `key`, and one extra header (to check
/// `settings.headers` reach the upstream).
pub fn settings(mock: &MockLlm, key: &str, header: (&'static str, &'static str)) -> ProviderSettings {
    ProviderSettings {
        base_url: mock.base_url(),
        credential: Credential::Key(SecretString::from(key)),
        headers: vec![(http::HeaderName::from_static(header.0), http::HeaderValue::from_static(header.1))],
        api_version: None,
        http: tollgate_providers::http::build_client(Duration::from_secs(2)).unwrap(),
    }
}

/// A call to `model` with generous deadlines (tests of timeouts shorten them).
pub fn call(model: &str) -> CallCtx {
    CallCtx {
        upstream_model: model.to_owned(),
        request_id: "req-1".to_owned(),
        first_byte_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(10),
        include_usage: true,
        quota: Default::default(),
    }
}

pub fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

/// The streamed text: every content delta in order.
pub fn text_of(chunks: &[ChatChunk]) -> String {
    chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.delta.content.as_deref()).collect()
}
