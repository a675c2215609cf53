//! Server, knobs, request log and the provider-neutral answer plan.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Fault and behaviour knobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Delay before the response headers.
    pub latency_ms: u64,
    /// Streaming only: delay between the headers and the first event (time to first token),
    /// on top of `latency_ms`. Non-streaming answers ignore it.
    pub ttft_ms: u64,
    /// Delay between stream events.
    pub chunk_delay_ms: u64,
    /// Answer this error status (in the provider's error shape) instead of a completion. With
    /// `fail_rate` or `fail_every`, only the failing requests answer it.
    pub status: Option<u16>,
    /// The provider error code the error body carries, with the provider's own message for it
    /// (`content_policy_violation`, `content_filter`, `context_length_exceeded`; any other code is
    /// passed through). Makes the request fail like `status`, which defaults to 400 with it.
    pub error_code: Option<String>,
    /// `Retry-After` seconds sent with `status`.
    pub retry_after: Option<u64>,
    /// Probability (0..1) of answering `status` (default 500 when unset) instead of a completion.
    pub fail_rate: f64,
    /// Every n-th request to a model name (as sent, knob suffix included: each deployment counts
    /// on its own) answers `status` (default 500): exact failure rates. 0 or unset: off.
    pub fail_every: Option<u64>,
    /// Answer 200 with a body that is not JSON (or, streaming, an event that is not JSON).
    pub garbage: bool,
    /// Streaming: close the connection after this many events, without the end marker.
    pub disconnect_after: Option<usize>,
    /// Never answer (the connection stays open).
    pub hang: bool,
    /// The text to answer instead of `mock: <last user text>`.
    pub reply: Option<String>,
    /// Arguments of the tool calls the mock makes (a JSON object, encoded).
    pub tool_arguments: String,
    /// Require this API key (any provider's header or `?key=`); otherwise 401.
    pub require_key: Option<String>,
    /// Dimensions of mock embeddings.
    pub embedding_dims: usize,
    /// The request limit the OpenAI-shaped and Anthropic routes report in their rate-limit
    /// headers (`x-ratelimit-*`, `anthropic-ratelimit-*`), on every answer as the real APIs do;
    /// the token limit reported is 1000 times it. 0: no rate-limit headers.
    pub ratelimit_limit: u64,
    /// The requests remaining those headers report (tokens: 1000 times it, so both give the
    /// same share). Unset: `ratelimit_limit - 1`, or 0 on a 429.
    pub ratelimit_remaining: Option<u64>,
    /// SSE responses being written now, shared by every copy of the server's knobs: a stream
    /// whose client went away is dropped by the server, which decrements it (tests use it to
    /// see upstream cancellation). Not a knob; it rides along so every handler has it.
    #[serde(skip)]
    pub open_streams: Arc<AtomicUsize>,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            ttft_ms: 0,
            chunk_delay_ms: 0,
            status: None,
            error_code: None,
            retry_after: None,
            fail_rate: 0.0,
            fail_every: None,
            garbage: false,
            disconnect_after: None,
            hang: false,
            reply: None,
            tool_arguments: r#"{"city":"Paris"}"#.to_owned(),
            require_key: None,
            embedding_dims: 8,
            ratelimit_limit: 1000,
            ratelimit_remaining: None,
            open_streams: Arc::default(),
        }
    }
}

impl Knobs {
    /// Applies a `~k=v,k=v` model-name suffix; returns the bare model name.
    pub fn with_model_suffix(mut self, model: &str) -> (Self, String) {
        let Some((bare, spec)) = model.split_once('~') else {
            return (self, model.to_owned());
        };
        for kv in spec.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            match k {
                "latency_ms" => self.latency_ms = v.parse().unwrap_or(self.latency_ms),
                "ttft_ms" => self.ttft_ms = v.parse().unwrap_or(self.ttft_ms),
                "chunk_delay_ms" => self.chunk_delay_ms = v.parse().unwrap_or(self.chunk_delay_ms),
                "status" => self.status = v.parse().ok(),
                "error_code" => self.error_code = Some(v.to_owned()).filter(|c| !c.is_empty()),
                "retry_after" => self.retry_after = v.parse().ok(),
                "fail_rate" => self.fail_rate = v.parse().unwrap_or(self.fail_rate),
                "fail_every" => self.fail_every = v.parse().ok().filter(|n| *n > 0),
                "garbage" => self.garbage = v == "true",
                "disconnect_after" => self.disconnect_after = v.parse().ok(),
                "hang" => self.hang = v == "true",
                "reply" => self.reply = Some(v.to_owned()),
                "embedding_dims" => {
                    self.embedding_dims = v.parse().unwrap_or(self.embedding_dims).clamp(1, 4096)
                }
                "ratelimit_limit" => self.ratelimit_limit = v.parse().unwrap_or(self.ratelimit_limit),
                "ratelimit_remaining" => self.ratelimit_remaining = v.parse().ok(),
                _ => {}
            }
        }
        (self, bare.to_owned())
    }
}

/// One request the mock received.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Shared state of one mock server.
#[derive(Default)]
pub struct MockState {
    knobs: Mutex<Knobs>,
    log: Mutex<Vec<Recorded>>,
    /// Requests received per model name (as sent, knob suffix included), for `fail_every`.
    counts: Mutex<HashMap<String, u64>>,
    /// Bench runs turn the log off so memory stays flat.
    pub record: bool,
}

pub type State = Arc<MockState>;

impl MockState {
    pub fn knobs(&self) -> Knobs {
        self.knobs.lock().clone()
    }

    pub fn record(&self, r: Recorded) {
        if self.record {
            self.log.lock().push(r);
        }
    }

    /// Counts one more request to `model` and returns its number (1 for the first).
    fn count(&self, model: &str) -> u64 {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(model) {
            *n += 1;
            return *n;
        }
        counts.insert(model.to_owned(), 1);
        1
    }
}

/// A running mock server.
pub struct MockLlm {
    pub addr: SocketAddr,
    state: State,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl MockLlm {
    /// Starts a mock on an ephemeral port of 127.0.0.1 with default knobs.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Knobs::default(), "127.0.0.1:0".parse()?, true).await
    }

    pub async fn start_with(knobs: Knobs, addr: SocketAddr, record: bool) -> anyhow::Result<Self> {
        let state = Arc::new(MockState {
            knobs: Mutex::new(knobs),
            log: Mutex::default(),
            counts: Mutex::default(),
            record,
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        #[expect(clippy::disallowed_methods, reason = "test/bench server, not part of the gateway")]
        tokio::spawn(async move {
            // Real providers flush each SSE event at once; without TCP_NODELAY small writes
            // would wait for delayed ACKs and every stream through the mock would be slow.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            let _ = serve.await;
        });
        Ok(Self { addr, state, _shutdown: tx })
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_knobs(&self, mut knobs: Knobs) {
        let mut current = self.state.knobs.lock();
        knobs.open_streams = current.open_streams.clone();
        *current = knobs;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().clone()
    }

    /// SSE responses still being written.
    pub fn open_streams(&self) -> usize {
        self.state.knobs.lock().open_streams.load(Ordering::SeqCst)
    }

    pub fn clear_requests(&self) {
        self.state.log.lock().clear();
    }
}

/// All routes of every provider.
pub fn router(state: State) -> Router {
    Router::new()
        .merge(crate::openai::routes())
        .merge(crate::anthropic::routes())
        .merge(crate::gemini::routes())
        .merge(crate::cohere::routes())
        .with_state(state)
}

// === the answer plan ===

/// What the mock needs to know of a request, whatever the provider.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    pub model: String,
    pub last_user_text: String,
    pub image_count: usize,
    /// Names of the offered tools, in order.
    pub tools: Vec<String>,
    /// `Some(name)` when the request forces one tool; `tool_choice: none` empties `tools`.
    pub forced_tool: Option<String>,
    /// Whether the last turn is a tool result (then the mock answers with text).
    pub last_is_tool_result: bool,
    /// All text of the request, for the input-token count.
    pub all_text: String,
    pub max_tokens: Option<u32>,
    pub stream: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallPlan {
    pub id: String,
    pub name: String,
    /// JSON-encoded arguments.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Text split into the pieces a stream sends; `truncated` when `max_tokens` cut it.
    Text {
        pieces: Vec<String>,
        truncated: bool,
    },
    ToolCalls(Vec<ToolCallPlan>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Text { pieces, .. } => pieces.concat(),
            Reply::ToolCalls(_) => String::new(),
        }
    }
}

/// The answer and its token usage `(input, output)`. Tokens are whitespace-separated words
/// (plus 85 per image), so tests can predict them.
pub fn plan(conv: &Conversation, knobs: &Knobs) -> (Reply, u64, u64) {
    let input = conv.all_text.split_whitespace().count() as u64 + 85 * conv.image_count as u64;
    if !conv.tools.is_empty() && !conv.last_is_tool_result {
        let names: Vec<&String> = match &conv.forced_tool {
            Some(name) => conv.tools.iter().filter(|t| *t == name).take(1).collect(),
            None => conv.tools.iter().collect(),
        };
        if !names.is_empty() {
            let calls: Vec<ToolCallPlan> = names
                .iter()
                .enumerate()
                .map(|(i, name)| ToolCallPlan {
                    id: format!("call_mock_{i}"),
                    name: (*name).clone(),
                    arguments: knobs.tool_arguments.clone(),
                })
                .collect();
            let output = 10 * calls.len() as u64;
            return (Reply::ToolCalls(calls), input, output);
        }
    }
    let text = match &knobs.reply {
        Some(r) => r.clone(),
        None if conv.image_count > 0 => {
            format!("mock: {} [{} image(s)]", conv.last_user_text, conv.image_count)
        }
        None => format!("mock: {}", conv.last_user_text),
    };
    let mut pieces: Vec<String> = Vec::new();
    for word in text.split_inclusive(' ') {
        pieces.push(word.to_owned());
    }
    let mut truncated = false;
    if let Some(max) = conv.max_tokens.map(|m| m as usize)
        && pieces.len() > max
    {
        pieces.truncate(max);
        truncated = true;
    }
    let output = pieces.len() as u64;
    (Reply::Text { pieces, truncated }, input, output)
}

// === faults ===

/// The fault a request should get, decided before the answer is rendered.
pub enum Fault {
    None,
    Hang,
    Status(u16, Option<u64>),
    Garbage,
}

/// Applies latency and decides the fault for this request. Call first in every handler, with
/// the model name as the request sent it (knob suffix included: `fail_every` counts per name).
///
/// `status` (or `error_code`, which implies 400) fails every request, unless `fail_rate` or
/// `fail_every` is set: then only the requests they pick fail, with that status (default 500).
pub async fn pre_answer(state: &MockState, knobs: &Knobs, model: &str) -> Fault {
    if knobs.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
    }
    if knobs.hang {
        return Fault::Hang;
    }
    let status = knobs.status.or(knobs.error_code.as_ref().map(|_| 400));
    let nth = knobs.fail_every.map(|n| state.count(model).is_multiple_of(n));
    if nth.is_some() || knobs.fail_rate > 0.0 {
        if nth == Some(true) || (knobs.fail_rate > 0.0 && rand_unit() < knobs.fail_rate) {
            return Fault::Status(status.unwrap_or(500), knobs.retry_after);
        }
    } else if let Some(s) = status {
        return Fault::Status(s, knobs.retry_after);
    }
    if knobs.garbage {
        return Fault::Garbage;
    }
    Fault::None
}

/// Waits forever (the client's timeout decides).
pub async fn hang() -> Response {
    futures::future::pending::<()>().await;
    StatusCode::OK.into_response()
}

/// A body that is not JSON, with a JSON content type.
pub fn garbage() -> Response {
    ([("content-type", "application/json")], "<html>502 bad gateway from a confused proxy").into_response()
}

/// The message of an error the knobs asked for, when the provider has no message of its own for
/// the code: `mock error 503`, `mock error 400 (some_code)`.
pub fn mock_message(status: u16, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("mock error {status} ({code})"),
        None => format!("mock error {status}"),
    }
}

/// An error response with the provider's body and an optional `Retry-After`.
pub fn error_response(status: u16, retry_after: Option<u64>, body: serde_json::Value) -> Response {
    let mut resp = axum::Json(body).into_response();
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(s) = retry_after
        && let Ok(v) = s.to_string().parse()
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// Which provider's rate-limit header names an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitStyle {
    /// `x-ratelimit-{limit,remaining}-{requests,tokens}` (OpenAI, Azure, OpenAI-compatible).
    OpenAi,
    /// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining}`.
    Anthropic,
}

/// Adds the provider's rate-limit headers to an answer (success or error), per the knobs
/// `ratelimit_limit` and `ratelimit_remaining`. Reset headers are left out: the gateway does not
/// read them.
pub fn with_rate_limits(mut resp: Response, knobs: &Knobs, style: RateLimitStyle) -> Response {
    let limit = knobs.ratelimit_limit;
    if limit == 0 {
        return resp;
    }
    let exhausted = resp.status() == StatusCode::TOO_MANY_REQUESTS;
    let remaining = knobs.ratelimit_remaining.unwrap_or(if exhausted { 0 } else { limit - 1 });
    let (token_limit, tokens_left) = (limit.saturating_mul(1000), remaining.saturating_mul(1000));
    let names: &[(&'static str, u64)] = match style {
        RateLimitStyle::OpenAi => &[
            ("x-ratelimit-limit-requests", limit),
            ("x-ratelimit-remaining-requests", remaining),
            ("x-ratelimit-limit-tokens", token_limit),
            ("x-ratelimit-remaining-tokens", tokens_left),
        ],
        RateLimitStyle::Anthropic => &[
            ("anthropic-ratelimit-requests-limit", limit),
            ("anthropic-ratelimit-requests-remaining", remaining),
            ("anthropic-ratelimit-tokens-limit", token_limit),
            ("anthropic-ratelimit-tokens-remaining", tokens_left),
            ("anthropic-ratelimit-input-tokens-limit", token_limit),
            ("anthropic-ratelimit-input-tokens-remaining", tokens_left),
            ("anthropic-ratelimit-output-tokens-limit", token_limit / 5),
            ("anthropic-ratelimit-output-tokens-remaining", tokens_left / 5),
        ],
    };
    let headers = resp.headers_mut();
    for (name, value) in names {
        headers.insert(axum::http::HeaderName::from_static(name), axum::http::HeaderValue::from(*value));
    }
    resp
}

/// One SSE event: optional `event:` name and the `data:` payload.
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    /// Sent right after the previous event, without the generation delay: what a provider
    /// sends once generation is over (the usage chunk, `[DONE]`).
    pub trailer: bool,
}

impl SseEvent {
    pub fn data(data: impl Into<String>) -> Self {
        Self { event: None, data: data.into(), trailer: false }
    }
    pub fn named(event: &str, data: impl Into<String>) -> Self {
        Self { event: Some(event.to_owned()), data: data.into(), trailer: false }
    }
    /// Marks the event as a trailer (no delay before it).
    pub fn trailer(mut self) -> Self {
        self.trailer = true;
        self
    }
    fn encode(&self) -> Bytes {
        let mut s = String::with_capacity(self.data.len() + 32);
        if let Some(e) = &self.event {
            s.push_str("event: ");
            s.push_str(e);
            s.push('\n');
        }
        s.push_str("data: ");
        s.push_str(&self.data);
        s.push_str("\n\n");
        Bytes::from(s)
    }
}

/// Streams events with the knobs' delays (`ttft_ms` before the first event, once the headers
/// are out; `chunk_delay_ms` between events); with `disconnect_after` (or `garbage`) the stream
/// breaks as configured. Each event is its own write, as real providers flush them.
pub fn sse_response(events: Vec<SseEvent>, knobs: &Knobs) -> Response {
    let guard = OpenStream::new(knobs.open_streams.clone());
    let delay = Duration::from_millis(knobs.chunk_delay_ms);
    let ttft = Duration::from_millis(knobs.ttft_ms);
    let cut = knobs.disconnect_after;
    let stream = futures::stream::iter(events.into_iter().enumerate()).then(move |(i, ev)| {
        let _alive = &guard;
        async move {
            if i == 0 && !ttft.is_zero() {
                tokio::time::sleep(ttft).await;
            }
            if i > 0 && !delay.is_zero() && !ev.trailer {
                tokio::time::sleep(delay).await;
            }
            if cut.is_some_and(|n| i >= n) {
                // Let the events already yielded reach the socket first: hyper drops buffered
                // data when a body fails, which would turn a mid-stream cut into no answer.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(std::io::Error::other("mock: disconnect mid-stream"));
            }
            Ok::<Bytes, std::io::Error>(ev.encode())
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Counts one open SSE response for as long as it lives.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the request carries the key the knobs require (any provider's way of sending it).
pub fn authorized(knobs: &Knobs, headers: &HeaderMap, query: Option<&str>) -> bool {
    let Some(want) = &knobs.require_key else { return true };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    h("authorization").and_then(|v| v.strip_prefix("Bearer ")) == Some(want)
        || h("api-key") == Some(want)
        || h("x-api-key") == Some(want)
        || h("x-goog-api-key") == Some(want)
        || query.is_some_and(|q| q.split('&').any(|kv| kv == format!("key={want}")))
}

/// Records a request.
pub fn record(
    state: &MockState,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &serde_json::Value,
) {
    state.record(Recorded {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.clone(),
    });
}

/// Parses a JSON body, or answers 400 in the provider's shape via `bad`.
pub fn parse_body(body: &Bytes) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

/// A deterministic pseudo-embedding of `text`, L2-normalised: the sum of one pseudo-random
/// vector per word (lower-cased, split on anything but letters and digits), so texts sharing
/// most of their words are close (the gateway's semantic-cache tests rely on it) and unrelated
/// texts are nearly orthogonal. A text without words gets a vector of its bytes.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let mut sum = vec![0f32; dims];
    if words.is_empty() {
        add_noise(&mut sum, text.as_bytes());
    }
    for word in &words {
        add_noise(&mut sum, word.as_bytes());
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        sum.iter_mut().for_each(|x| *x /= norm);
    }
    sum
}

/// Adds a pseudo-random vector seeded by `bytes` (FNV-1a, then xorshift) to `out`.
fn add_noise(out: &mut [f32], bytes: &[u8]) {
    let mut h = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    for x in out.iter_mut() {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        *x += ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    }
}

fn rand_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A bare HTTP/1.1 client for the mock's own tests: it sees when the headers and the first SSE
/// event arrive, which the knobs' timing tests need, without a client library.
#[cfg(test)]
pub(crate) mod raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    pub struct RawResponse {
        pub status: u16,
        /// From sending the request to the end of the response headers.
        pub headers_after: Duration,
        /// From sending the request to the first `data:` line of the body.
        pub first_event_after: Option<Duration>,
        /// The body as received (chunk framing included for streams).
        pub body: String,
        /// The status line and headers, as received.
        pub head: String,
    }

    impl RawResponse {
        /// The body as JSON (non-streaming answers have a `Content-Length`, no chunk framing).
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
        }

        /// A response header's value (names compared case-insensitively).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    /// `POST path` with a JSON body and `headers`; reads until the server closes.
    pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let started = Instant::now();
        tcp.write_all(req.as_bytes()).await.unwrap();
        let (mut received, mut buf) = (Vec::new(), [0u8; 4096]);
        let (mut head_end, mut headers_after, mut first_event_after) = (None, Duration::ZERO, None);
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received);
            if head_end.is_none()
                && let Some(i) = text.find("\r\n\r\n")
            {
                head_end = Some(i + 4);
                headers_after = started.elapsed();
            }
            if let Some(end) = head_end
                && first_event_after.is_none()
                && text[end..].contains("data:")
            {
                first_event_after = Some(started.elapsed());
            }
        }
        let text = String::from_utf8_lossy(&received).into_owned();
        let end = head_end.unwrap();
        let status = text[9..12].parse().unwrap();
        RawResponse {
            status,
            headers_after,
            first_event_after,
            body: text[end..].to_owned(),
            head: text[..end].to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_suffix_overrides_knobs() {
        let (k, m) = Knobs::default().with_model_suffix("gpt-4o~status=429,retry_after=2,hang");
        assert_eq!(m, "gpt-4o");
        assert_eq!(k.status, Some(429));
        assert_eq!(k.retry_after, Some(2));
        assert!(k.hang);
    }

    #[test]
    fn model_suffix_sets_the_error_code_ttft_and_fail_every_knobs() {
        let (k, m) = Knobs::default()
            .with_model_suffix("gpt-4o~error_code=context_length_exceeded,ttft_ms=250,fail_every=4");
        assert_eq!(m, "gpt-4o");
        assert_eq!(k.error_code.as_deref(), Some("context_length_exceeded"));
        assert_eq!((k.ttft_ms, k.fail_every, k.status), (250, Some(4), None));
        let (k, _) = Knobs::default().with_model_suffix("m~fail_every=0,error_code=");
        assert_eq!((k.fail_every, k.error_code), (None, None), "0 and empty mean off");
        let (k, _) = Knobs::default().with_model_suffix("m~ratelimit_remaining=3,ratelimit_limit=20");
        assert_eq!((k.ratelimit_limit, k.ratelimit_remaining), (20, Some(3)));
    }

    fn status_of(f: &Fault) -> Option<u16> {
        match f {
            Fault::Status(s, _) => Some(*s),
            Fault::None | Fault::Hang | Fault::Garbage => None,
        }
    }

    async fn faults(state: &MockState, model: &str, n: usize) -> Vec<Option<u16>> {
        let (knobs, _) = Knobs::default().with_model_suffix(model);
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(status_of(&pre_answer(state, &knobs, model).await));
        }
        out
    }

    #[tokio::test]
    async fn fail_every_fails_exactly_every_nth_request_per_model_name() {
        let state = MockState::default();
        let a = "m~fail_every=3,status=503";
        assert_eq!(
            faults(&state, a, 6).await,
            [None, None, Some(503), None, None, Some(503)],
            "requests 3 and 6 fail"
        );
        // Another suffix is another deployment, with its own count; the default status is 500.
        assert_eq!(faults(&state, "m~fail_every=2", 2).await, [None, Some(500)]);
        assert_eq!(faults(&state, a, 3).await, [None, None, Some(503)], "a's count went on");
        let code = "m~fail_every=2,error_code=content_policy_violation";
        assert_eq!(faults(&state, code, 2).await, [None, Some(400)], "error_code implies 400");
    }

    #[tokio::test]
    async fn status_fails_every_request_unless_a_rate_picks_which() {
        let state = MockState::default();
        assert!(faults(&state, "m~status=503", 20).await.iter().all(|s| *s == Some(503)));
        assert!(
            faults(&state, "m~error_code=context_length_exceeded", 5).await.iter().all(|s| *s == Some(400))
        );
        let flaky = faults(&state, "m~fail_rate=0.5,status=503", 400).await;
        let failed = flaky.iter().filter(|s| s.is_some()).count();
        assert!((120..=280).contains(&failed), "{failed} of 400 failed at fail_rate 0.5");
        assert!(flaky.iter().all(|s| matches!(s, None | Some(503))), "failures answer the status");
        let default = faults(&state, "m~fail_rate=1", 3).await;
        assert_eq!(default, [Some(500); 3]);
    }

    #[tokio::test]
    async fn ttft_delays_the_first_stream_event_not_the_headers() {
        let mock = MockLlm::start().await.unwrap();
        let body = |model: &str, stream: bool| {
            serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
                .to_string()
        };
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &body("m~ttft_ms=300", true)).await;
        assert_eq!(r.status, 200);
        let first = r.first_event_after.unwrap();
        assert!(first >= Duration::from_millis(300), "first event after {first:?}");
        // The headers went out before the wait (a margin for a busy machine).
        assert!(r.headers_after + Duration::from_millis(150) < first, "headers after {:?}", r.headers_after);
        assert!(r.body.contains("[DONE]"));
        // latency_ms holds the headers back instead.
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &body("m~latency_ms=300", true)).await;
        assert!(r.headers_after >= Duration::from_millis(300), "headers after {:?}", r.headers_after);
        // Not streaming: ttft_ms does nothing.
        let r = raw::post(mock.addr, "/v1/chat/completions", &[], &body("m~ttft_ms=300", false)).await;
        assert_eq!(
            (r.status, r.json()["choices"][0]["message"]["content"].as_str()),
            (200, Some("mock: hi"))
        );
        assert!(r.headers_after < Duration::from_millis(300), "headers after {:?}", r.headers_after);
        // Anthropic's stream waits the same way.
        let claude = serde_json::json!({"model": "claude~ttft_ms=300", "max_tokens": 10, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
        let r = raw::post(mock.addr, "/v1/messages", &[("anthropic-version", "2023-06-01")], &claude).await;
        assert_eq!(r.status, 200);
        assert!(r.first_event_after.unwrap() >= Duration::from_millis(300));
        assert!(r.body.contains("message_stop"));
    }

    #[test]
    fn plan_calls_tools_then_answers_text() {
        let mut conv = Conversation {
            last_user_text: "weather?".into(),
            tools: vec!["get_weather".into(), "get_time".into()],
            all_text: "what is the weather?".into(),
            ..Conversation::default()
        };
        let (r, input, _) = plan(&conv, &Knobs::default());
        assert_eq!(input, 4);
        match r {
            Reply::ToolCalls(c) => assert_eq!(c.len(), 2),
            Reply::Text { .. } => panic!("expected tool calls"),
        }
        conv.last_is_tool_result = true;
        assert_eq!(plan(&conv, &Knobs::default()).0.text(), "mock: weather?");
    }
}
