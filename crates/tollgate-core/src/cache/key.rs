//! The exact-cache key: SHA-256 over the tenant and every request field that can change the
//! answer. The pipeline's `cache` stage computes it once per request (before routing) and uses
//! it for the lookup and, at settle, for the write.
//!
//! The request is **destructured without `..`**: adding a field to [`ChatRequest`] fails to
//! compile here until someone decides whether it belongs in the key.
//!
//! Encoding (version [`KEY_VERSION`]): every field is written as its name, then a type tag, then
//! its value; strings and byte strings are length-prefixed, so no two different requests encode
//! to the same byte sequence. JSON values (messages, tools, `extra`, ...) are written in a
//! canonical form: object keys sorted, whatever order the client sent them in and whether or not
//! serde_json's `preserve_order` feature is on somewhere in the build (it is off today; sorting
//! here makes the key independent of it). Floats are hashed by their IEEE-754 bits, with `-0.0`
//! folded into `0.0`.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tollgate_types::ports::CacheKey;
use tollgate_types::tenancy::TenantId;
use tollgate_types::{ChatRequest, ContentPart, Message, MessageContent, Role};

/// Bumped whenever the encoding changes, so old entries simply stop matching.
pub const KEY_VERSION: &str = "tollgate-exact-cache-v1";

/// A request field could not be encoded for hashing (it did not serialize to JSON). The
/// pipeline then bypasses the cache for that request.
#[derive(Debug, thiserror::Error)]
#[error("cache key: field `{field}` could not be encoded: {source}")]
pub struct KeyError {
    pub field: &'static str,
    #[source]
    pub source: serde_json::Error,
}

/// Bumped whenever the semantic namespace's encoding changes.
pub const SEMANTIC_VERSION: &str = "tollgate-semantic-namespace-v1";

/// The exact-cache key of `req` for `tenant`.
pub fn exact_key(tenant: TenantId, req: &ChatRequest) -> Result<CacheKey, KeyError> {
    hash_request(KEY_VERSION, tenant, req, &req.messages)
}

/// What a semantic lookup needs: the namespace (the tenant and everything in the request but the
/// last user message's text, hashed exactly as the exact key is) and that text, which is
/// compared by embedding within the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemanticKey {
    pub namespace: CacheKey,
    pub prompt: String,
}

/// The semantic key of `req` for `tenant`, or `None` when the request cannot be matched by
/// meaning: its last message is not a user's, carries tool calls, has a non-text part (an image,
/// audio, a file), or has no text. The last message's role, name and other fields stay in the
/// namespace; only its text is left for the embedding.
pub fn semantic_key(tenant: TenantId, req: &ChatRequest) -> Result<Option<SemanticKey>, KeyError> {
    let Some((last, earlier)) = req.messages.split_last() else { return Ok(None) };
    if last.role != Role::User || last.tool_calls.is_some() {
        return Ok(None);
    }
    let prompt = match &last.content {
        Some(MessageContent::Text(text)) => text.clone(),
        Some(c @ MessageContent::Parts(parts))
            if parts.iter().all(|p| matches!(p, ContentPart::Text { .. })) =>
        {
            c.joined_text()
        }
        _ => return Ok(None),
    };
    if prompt.trim().is_empty() {
        return Ok(None);
    }
    let mut messages = earlier.to_vec();
    messages.push(Message { content: None, ..last.clone() });
    let namespace = hash_request(SEMANTIC_VERSION, tenant, req, &messages)?;
    Ok(Some(SemanticKey { namespace, prompt }))
}

/// SHA-256 over `version`, the tenant, `messages` (the request's own, or the semantic
/// namespace's) and every other answer-changing field of `req`.
fn hash_request(
    version: &str,
    tenant: TenantId,
    req: &ChatRequest,
    messages: &[Message],
) -> Result<CacheKey, KeyError> {
    // No `..`: a new request field must be placed in one of the two groups below.
    let ChatRequest {
        model,
        // Passed in: the exact key hashes them all, the semantic namespace all but the last text.
        messages: _,
        // Streaming or not, the completion is the same; replay turns a stored answer into
        // either form.
        stream: _,
        // Only says whether a usage chunk ends the stream; replay decides that per request.
        stream_options: _,
        temperature,
        top_p,
        max_tokens,
        max_completion_tokens,
        stop,
        seed,
        n,
        presence_penalty,
        frequency_penalty,
        // An end-user tag for the provider's abuse monitoring; it does not change the output.
        user: _,
        // Tags for the caller's own bookkeeping (and stored completions); not model input.
        metadata: _,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        extra,
    } = req;

    let mut h = KeyHasher::new();
    h.str("version", version);
    h.bytes("tenant", tenant.0.as_bytes());
    h.str("model", model);
    h.json("messages", messages)?;
    h.opt_f64("temperature", *temperature);
    h.opt_f64("top_p", *top_p);
    h.opt_u64("max_tokens", max_tokens.map(u64::from));
    h.opt_u64("max_completion_tokens", max_completion_tokens.map(u64::from));
    h.json("stop", stop)?;
    h.opt_i64("seed", *seed);
    h.opt_u64("n", n.map(u64::from));
    h.opt_f64("presence_penalty", *presence_penalty);
    h.opt_f64("frequency_penalty", *frequency_penalty);
    h.json("tools", tools)?;
    h.json("tool_choice", tool_choice)?;
    h.opt_u64("parallel_tool_calls", parallel_tool_calls.map(u64::from));
    h.json("response_format", response_format)?;
    // Unknown pass-through fields (logit_bias, logprobs, reasoning_effort, ...) reach
    // OpenAI-compatible upstreams and may change the answer, so all of them are part of the key.
    h.value("extra", &Value::Object(extra.clone()));
    Ok(CacheKey::new(tenant, h.finish()))
}

// === impl KeyHasher ===

/// Type tags: keep a `None` apart from every value, and values of different types apart.
mod tag {
    pub const NONE: u8 = 0;
    pub const STR: u8 = 1;
    pub const BYTES: u8 = 2;
    pub const U64: u8 = 3;
    pub const I64: u8 = 4;
    pub const F64: u8 = 5;
    pub const NULL: u8 = 6;
    pub const FALSE: u8 = 7;
    pub const TRUE: u8 = 8;
    pub const NUMBER: u8 = 9;
    pub const ARRAY: u8 = 10;
    pub const OBJECT: u8 = 11;
}

struct KeyHasher(Sha256);

impl KeyHasher {
    fn new() -> Self {
        Self(Sha256::new())
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }

    fn raw_len(&mut self, len: usize) {
        self.0.update((len as u64).to_le_bytes());
    }

    fn raw_str(&mut self, s: &str) {
        self.raw_len(s.len());
        self.0.update(s.as_bytes());
    }

    fn name(&mut self, name: &str) {
        self.raw_str(name);
    }

    fn str(&mut self, name: &str, s: &str) {
        self.name(name);
        self.0.update([tag::STR]);
        self.raw_str(s);
    }

    fn bytes(&mut self, name: &str, b: &[u8]) {
        self.name(name);
        self.0.update([tag::BYTES]);
        self.raw_len(b.len());
        self.0.update(b);
    }

    fn opt_u64(&mut self, name: &str, v: Option<u64>) {
        self.name(name);
        match v {
            None => self.0.update([tag::NONE]),
            Some(v) => {
                self.0.update([tag::U64]);
                self.0.update(v.to_le_bytes());
            }
        }
    }

    fn opt_i64(&mut self, name: &str, v: Option<i64>) {
        self.name(name);
        match v {
            None => self.0.update([tag::NONE]),
            Some(v) => {
                self.0.update([tag::I64]);
                self.0.update(v.to_le_bytes());
            }
        }
    }

    fn opt_f64(&mut self, name: &str, v: Option<f64>) {
        self.name(name);
        match v {
            None => self.0.update([tag::NONE]),
            Some(v) => {
                // -0.0 and 0.0 are the same setting; adding 0.0 folds the sign away.
                let v = v + 0.0;
                self.0.update([tag::F64]);
                self.0.update(v.to_bits().to_le_bytes());
            }
        }
    }

    /// A typed field through its JSON form (absent `Option`s become JSON `null`).
    fn json<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) -> Result<(), KeyError> {
        let value = serde_json::to_value(v).map_err(|source| KeyError { field: name, source })?;
        self.value(name, &value);
        Ok(())
    }

    fn value(&mut self, name: &str, v: &Value) {
        self.name(name);
        self.canonical(v);
    }

    /// Writes `v` with object keys sorted, so key order never matters.
    fn canonical(&mut self, v: &Value) {
        match v {
            Value::Null => self.0.update([tag::NULL]),
            Value::Bool(false) => self.0.update([tag::FALSE]),
            Value::Bool(true) => self.0.update([tag::TRUE]),
            Value::Number(n) => {
                self.0.update([tag::NUMBER]);
                self.raw_str(&n.to_string());
            }
            Value::String(s) => {
                self.0.update([tag::STR]);
                self.raw_str(s);
            }
            Value::Array(items) => {
                self.0.update([tag::ARRAY]);
                self.raw_len(items.len());
                for item in items {
                    self.canonical(item);
                }
            }
            Value::Object(map) => {
                self.0.update([tag::OBJECT]);
                self.raw_len(map.len());
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    self.raw_str(k);
                    self.canonical(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn tenant() -> TenantId {
        TenantId(Uuid::from_u128(1))
    }

    fn parse(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({
            "model": "gpt-fast",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is 2+2?"}
            ],
            "temperature": 0.2,
            "max_tokens": 64,
            "tools": [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}],
            "logit_bias": {"50256": -100, "11": 5}
        })
    }

    fn key_of(v: Value) -> CacheKey {
        exact_key(tenant(), &parse(v)).unwrap()
    }

    /// `base()` with `path` (a top-level field) replaced by `value`.
    fn with(field: &str, value: Value) -> CacheKey {
        let mut v = base();
        v[field] = value;
        key_of(v)
    }

    #[test]
    fn same_request_same_key_and_tenant_is_kept() {
        let a = key_of(base());
        assert_eq!(a, key_of(base()));
        assert_eq!(a.tenant(), tenant());
    }

    #[test]
    fn key_order_of_the_json_does_not_matter() {
        let reordered = r#"{
            "logit_bias": {"11": 5, "50256": -100},
            "tools": [{"function": {"parameters": {"properties": {"b": {"type": "number"}, "a": {"type": "number"}}, "type": "object"}, "name": "calc"}, "type": "function"}],
            "max_tokens": 64,
            "temperature": 0.2,
            "messages": [
                {"content": "You are terse.", "role": "system"},
                {"content": "What is 2+2?", "role": "user"}
            ],
            "model": "gpt-fast"
        }"#;
        let req: ChatRequest = serde_json::from_str(reordered).unwrap();
        assert_eq!(exact_key(tenant(), &req).unwrap(), key_of(base()));
    }

    #[test]
    fn tenant_changes_the_key_digest() {
        let req = parse(base());
        let a = exact_key(tenant(), &req).unwrap();
        let b = exact_key(TenantId(Uuid::from_u128(2)), &req).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a, b);
    }

    #[test]
    fn one_character_of_a_message_changes_the_key() {
        let mut v = base();
        v["messages"][1]["content"] = json!("What is 2+3?");
        assert_ne!(key_of(v), key_of(base()));
        // Moving text between messages changes it too (length-prefixed, not concatenated).
        let mut v = base();
        v["messages"][0]["content"] = json!("You are terse.W");
        v["messages"][1]["content"] = json!("hat is 2+2?");
        assert_ne!(key_of(v), key_of(base()));
        // So does a role.
        let mut v = base();
        v["messages"][0]["role"] = json!("developer");
        assert_ne!(key_of(v), key_of(base()));
    }

    #[test]
    fn each_semantic_field_changes_the_key() {
        let b = key_of(base());
        let cases = [
            ("model", json!("gpt-slow")),
            ("temperature", json!(0.3)),
            ("top_p", json!(0.9)),
            ("max_tokens", json!(65)),
            ("max_completion_tokens", json!(64)),
            ("stop", json!("\n")),
            ("seed", json!(7)),
            ("n", json!(2)),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(0.5)),
            ("tools", json!([{"type": "function", "function": {"name": "calc2"}}])),
            ("tool_choice", json!("required")),
            ("parallel_tool_calls", json!(false)),
            ("response_format", json!({"type": "json_object"})),
            ("logit_bias", json!({"50256": -99, "11": 5})),
            ("reasoning_effort", json!("high")),
        ];
        let mut seen = std::collections::HashSet::new();
        for (field, value) in cases {
            let k = with(field, value);
            assert_ne!(k, b, "{field} must change the key");
            assert!(seen.insert(k), "{field} collided with another field's change");
        }
    }

    #[test]
    fn stop_one_vs_many_and_tool_choice_forms_differ() {
        assert_ne!(with("stop", json!("x")), with("stop", json!(["x", "y"])));
        assert_ne!(
            with("tool_choice", json!("auto")),
            with("tool_choice", json!({"type": "function", "function": {"name": "calc"}}))
        );
    }

    #[test]
    fn fields_that_cannot_change_the_answer_are_ignored() {
        let b = key_of(base());
        assert_eq!(with("stream", json!(true)), b);
        assert_eq!(with("stream_options", json!({"include_usage": true})), b);
        assert_eq!(with("user", json!("end-user-42")), b);
        assert_eq!(with("metadata", json!({"run": "nightly"})), b);
    }

    #[test]
    fn floats_hash_by_bits_and_negative_zero_is_zero() {
        assert_ne!(with("temperature", json!(0.1)), with("temperature", json!(0.10000000000000002)));
        assert_eq!(with("temperature", json!(0.0)), with("temperature", json!(-0.0)));
        // Absent and zero are different requests (the provider default is not 0).
        let mut v = base();
        v.as_object_mut().unwrap().remove("temperature");
        assert_ne!(key_of(v), with("temperature", json!(0.0)));
    }

    #[test]
    fn absent_and_null_like_values_are_distinct() {
        // `seed: 0` is not the same as no seed; an empty tools list is not the same as none.
        let mut v = base();
        v.as_object_mut().unwrap().remove("tools");
        let no_tools = key_of(v);
        assert_ne!(no_tools, with("tools", json!([])));
        assert_ne!(with("seed", json!(0)), key_of(base()));
    }

    #[test]
    fn built_requests_hash_like_parsed_ones() {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![Message::text(Role::User, "hi")],
            ..ChatRequest::default()
        };
        let parsed = parse(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(exact_key(tenant(), &req).unwrap(), exact_key(tenant(), &parsed).unwrap());
    }

    fn semantic(v: Value) -> Option<SemanticKey> {
        semantic_key(tenant(), &parse(v)).unwrap()
    }

    /// `base()` with its last (user) message's content replaced.
    fn asking(content: Value) -> Value {
        let mut v = base();
        v["messages"][1]["content"] = content;
        v
    }

    #[test]
    fn semantic_key_leaves_only_the_last_user_text_out_of_the_namespace() {
        let a = semantic(base()).unwrap();
        assert_eq!(a.prompt, "What is 2+2?");
        assert_eq!(a.namespace.tenant(), tenant());
        // Another wording of the last question: same namespace, the text differs.
        let b = semantic(asking(json!("what's two plus two"))).unwrap();
        assert_eq!((a.namespace, b.prompt.as_str()), (b.namespace, "what's two plus two"));
        // Text parts are the same prompt as a plain string.
        let parts =
            semantic(asking(json!([{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}])));
        assert_eq!(parts.unwrap().namespace, a.namespace);
        // Never the exact key's digest: the two caches cannot collide.
        assert_ne!(a.namespace, key_of(base()));
        // Everything else is in the namespace: the system prompt, sampling, tools, the alias,
        // the tenant, the last message's name.
        let mut v = base();
        v["messages"][0]["content"] = json!("You are verbose.");
        assert_ne!(semantic(v).unwrap().namespace, a.namespace);
        for (field, value) in
            [("temperature", json!(0.9)), ("model", json!("gpt-slow")), ("tools", json!([]))]
        {
            let mut v = base();
            v[field] = value;
            assert_ne!(semantic(v).unwrap().namespace, a.namespace, "{field}");
        }
        let other = semantic_key(TenantId(Uuid::from_u128(2)), &parse(base())).unwrap().unwrap();
        assert_ne!(other.namespace, a.namespace);
        let mut v = base();
        v["messages"][1]["name"] = json!("alice");
        assert_ne!(semantic(v).unwrap().namespace, a.namespace);
    }

    #[test]
    fn earlier_turns_are_part_of_the_namespace() {
        let mut v = base();
        let messages = v["messages"].as_array_mut().unwrap();
        messages.insert(1, json!({"role": "user", "content": "Use base 3."}));
        messages.insert(2, json!({"role": "assistant", "content": "OK."}));
        assert_ne!(semantic(v).unwrap().namespace, semantic(base()).unwrap().namespace);
    }

    #[test]
    fn requests_that_cannot_be_matched_by_meaning_have_no_semantic_key() {
        // Last message not the user's.
        let mut v = base();
        v["messages"].as_array_mut().unwrap().push(json!({"role": "assistant", "content": "4"}));
        assert_eq!(semantic(v), None);
        // An image, or no text at all.
        let image = json!([{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]);
        assert_eq!(semantic(asking(image)), None);
        assert_eq!(semantic(asking(json!("   "))), None);
        assert_eq!(semantic(json!({"model": "m", "messages": []})), None);
    }
}
