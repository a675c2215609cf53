//! The OpenAI and Azure adapters against mock-llm's routes over real HTTP: how the errors the
//! router acts on (content policy, context length) come out of each flavor.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers outside #[test] functions fail the test on setup errors, as the tests do"
)]

use mock_llm::MockLlm;
use serde_json::json;
use tollgate_providers::openai::{Flavor, OpenAiAdapter};
use tollgate_types::ChatRequest;
use tollgate_types::ports::{ProviderAdapter, ProviderError, ProviderErrorKind, ProviderQuota};

mod common;

use common::{KEY, call, request, settings};

fn adapter(mock: &MockLlm, flavor: Flavor) -> OpenAiAdapter {
    let mut s = settings(mock, KEY, ("x-team", "search"));
    if flavor != Flavor::Azure {
        s.base_url.push_str("/v1");
    }
    OpenAiAdapter::new(flavor, s).unwrap()
}

fn user(text: &str) -> ChatRequest {
    request(json!({"model": "alias", "messages": [{"role": "user", "content": text}]}))
}

/// The error of a non-streaming and of a streaming call (both fail before any chunk).
async fn errors(flavor: Flavor, model: &str) -> [ProviderError; 2] {
    let mock = MockLlm::start().await.unwrap();
    let a = adapter(&mock, flavor);
    let chat = a.chat(&user("hi"), &call(model)).await.unwrap_err();
    let stream = a.chat_stream(&user("hi"), &call(model)).await.err().expect("the stream must fail");
    [chat, stream]
}

#[tokio::test]
async fn openais_content_policy_refusal_is_a_content_filter_error() {
    for e in errors(Flavor::OpenAi, "gpt-4o~error_code=content_policy_violation").await {
        assert_eq!((e.kind.clone(), e.status), (ProviderErrorKind::ContentFilter, Some(400)));
        assert!(
            e.message.contains("safety system") && e.message.ends_with("(content_policy_violation)"),
            "{e}"
        );
        assert!(!e.retryable());
    }
}

#[tokio::test]
async fn azures_content_filter_is_a_content_filter_error_without_the_key() {
    for e in errors(Flavor::Azure, "gpt4o~error_code=content_policy_violation").await {
        assert_eq!((e.kind.clone(), e.status), (ProviderErrorKind::ContentFilter, Some(400)));
        assert!(
            e.message.contains("content management policy") && e.message.ends_with("(content_filter)"),
            "{e}"
        );
        assert!(!format!("{e:?}").contains(KEY));
    }
}

#[tokio::test]
async fn a_context_length_400_keeps_the_upstream_text_and_code() {
    for flavor in [Flavor::OpenAi, Flavor::Azure, Flavor::OpenAiCompatible] {
        for e in errors(flavor, "m~error_code=context_length_exceeded").await {
            assert_eq!(e.kind.clone(), ProviderErrorKind::BadRequest, "{flavor:?}");
            let m = e.message.to_ascii_lowercase();
            assert!(m.contains("maximum context length") && m.contains("context_length_exceeded"), "{e}");
        }
    }
}

#[tokio::test]
async fn other_failures_classify_as_before() {
    let [chat, stream] = errors(Flavor::OpenAi, "m~status=400").await;
    assert_eq!((chat.kind, chat.message.as_str()), (ProviderErrorKind::BadRequest, "mock error 400"));
    assert_eq!(stream.kind, ProviderErrorKind::BadRequest);
    let [chat, _] = errors(Flavor::OpenAiCompatible, "m~fail_every=1,status=503").await;
    assert_eq!(chat.kind, ProviderErrorKind::Overloaded);
}

#[tokio::test]
async fn the_upstreams_rate_limit_headers_reach_the_call_context() {
    let mock = MockLlm::start().await.unwrap();
    for flavor in [Flavor::OpenAi, Flavor::Azure, Flavor::OpenAiCompatible] {
        let a = adapter(&mock, flavor);
        let c = call("m~ratelimit_remaining=5,ratelimit_limit=100");
        a.chat(&user("hi"), &c).await.unwrap();
        let expected = ProviderQuota { requests: Some((5, 100)), tokens: Some((5000, 100_000)) };
        assert_eq!(c.quota.take(), Some(expected), "{flavor:?}");
        let _stream = a.chat_stream(&user("hi"), &c).await.unwrap();
        assert_eq!(c.quota.take(), Some(expected), "{flavor:?}: streams, at the headers");
        // An error answer reports its quota too: a 429 is out of it.
        let c = call("m~status=429,ratelimit_limit=100");
        assert_eq!(a.chat(&user("hi"), &c).await.unwrap_err().kind, ProviderErrorKind::RateLimited);
        let out = ProviderQuota { requests: Some((0, 100)), tokens: Some((0, 100_000)) };
        assert_eq!(c.quota.take(), Some(out), "{flavor:?}");
    }
    let c = call("m~ratelimit_limit=0");
    adapter(&mock, Flavor::OpenAi).chat(&user("hi"), &c).await.unwrap();
    assert_eq!(c.quota.take(), None, "no headers, no reading");
}
