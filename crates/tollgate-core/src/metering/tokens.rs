//! Local token counting, used when the provider reports no usage: for the admission estimate
//! (rate-limit reservation), for upstreams that return no `usage`, and for streams the client
//! abandoned before the usage chunk arrived (billed as [`UsageSource::Partial`]).
//!
//! OpenAI families use the real tokenizer (tiktoken `o200k_base` / `cl100k_base`, BPE ranks
//! embedded in the crate, no network). Every other family is an approximation documented on
//! [`TokenizerFamily::approximation_permille`]. Counts from here are always marked
//! [`UsageSource::Counted`] or [`UsageSource::Partial`], never passed off as the provider's.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;
use tollgate_types::ports::usage::TokenSource;
use tollgate_types::{
    ChatChunk, ChatRequest, ContentPart, ImageSource, ImageUrl, Message, MessageContent, Tool, Usage,
};

/// Where the token numbers of a usage record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// Reported by the provider (response `usage` or the final stream chunk).
    Provider,
    /// Counted locally with [`count_prompt_tokens`] / [`StreamTokenCounter`] because the provider
    /// reported nothing.
    Counted,
    /// Counted locally for a stream that ended early (client disconnect, mid-stream error): what
    /// was generated up to that point.
    Partial,
}

/// The usage record's column ([`TokenSource`] adds `none` for requests rejected before any
/// upstream call).
impl From<UsageSource> for TokenSource {
    fn from(source: UsageSource) -> Self {
        match source {
            UsageSource::Provider => TokenSource::Provider,
            UsageSource::Counted => TokenSource::Counted,
            UsageSource::Partial => TokenSource::Partial,
        }
    }
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Counted => "counted",
            UsageSource::Partial => "partial",
        }
    }
}

/// A tokenizer family: which encoding (or which approximation) counts a model's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerFamily {
    /// `o200k_base`: gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4, chatgpt-4o, gpt-oss.
    O200k,
    /// `cl100k_base`: gpt-3.5-turbo, gpt-4, gpt-4-turbo, text-embedding-3 / ada-002.
    Cl100k,
    /// Anthropic Claude (approximation).
    Claude,
    /// Google Gemini / Gemma (approximation).
    Gemini,
    /// Cohere Command / Embed (approximation).
    Cohere,
    /// Meta Llama (approximation).
    Llama,
    /// Mistral / Mixtral / Codestral / Ministral (approximation).
    Mistral,
    /// Anything unrecognised (approximation).
    Other,
}

impl TokenizerFamily {
    /// Picks the family from the upstream model name (case-insensitive; a `provider/` or
    /// `models/` prefix, as OpenRouter-style and Gemini names carry, is ignored).
    pub fn for_model(upstream_model: &str) -> Self {
        let lower = upstream_model.to_ascii_lowercase();
        let m = lower.rsplit('/').next().unwrap_or(&lower);
        let starts = |p: &str| m.starts_with(p);
        if starts("gpt-4o")
            || starts("gpt-4.1")
            || starts("gpt-4.5")
            || starts("gpt-5")
            || starts("chatgpt-4o")
            || starts("gpt-oss")
            || starts("o1")
            || starts("o3")
            || starts("o4")
            || starts("codex")
            || starts("computer-use")
        {
            TokenizerFamily::O200k
        } else if starts("gpt-3.5") || starts("gpt-4") || starts("text-embedding") || starts("gpt-35") {
            TokenizerFamily::Cl100k
        } else if starts("claude") {
            TokenizerFamily::Claude
        } else if starts("gemini") || starts("gemma") {
            TokenizerFamily::Gemini
        } else if starts("command") || starts("embed-") || starts("c4ai") || starts("rerank") {
            TokenizerFamily::Cohere
        } else if m.contains("llama") {
            TokenizerFamily::Llama
        } else if starts("mistral")
            || starts("mixtral")
            || starts("codestral")
            || starts("ministral")
            || starts("magistral")
            || starts("devstral")
            || starts("pixtral")
            || starts("open-mistral")
        {
            TokenizerFamily::Mistral
        } else {
            TokenizerFamily::Other
        }
    }

    /// Whether counts for this family come from the model's real tokenizer.
    pub fn is_exact(self) -> bool {
        matches!(self, TokenizerFamily::O200k | TokenizerFamily::Cl100k)
    }

    /// The approximation used for families without a local tokenizer: the `o200k_base` count
    /// scaled by this factor (per mille), rounded up.
    ///
    /// Why `o200k × factor` and not `chars / 4`: o200k is a modern 200k-vocabulary BPE, so it
    /// follows the same language- and code-dependent density as the other providers' large
    /// vocabularies (CJK, code and numbers are far from 4 chars/token), while `chars / 4` is off
    /// by 2–3× on non-English text. The factors are deliberately slightly pessimistic, because
    /// the count feeds rate-limit reservations and billing of partial streams, where
    /// undercounting is the worse error:
    /// - Claude 1.20: Anthropic's tokenizer yields roughly 10–20% (up to ~30% on code and for
    ///   the newer models) more tokens than o200k for the same English text;
    /// - Gemini 1.05: SentencePiece, 256k vocabulary, close to o200k;
    /// - Cohere 1.05: 255k-vocabulary BPE, close to o200k;
    /// - Llama 1.05: Llama 3+ uses a 128k tiktoken-derived vocabulary (Llama 2's 32k one was
    ///   ~1.3× but is no longer served by the major hosts);
    /// - Mistral 1.10: Tekken (131k) for current models, 32k SentencePiece for older ones;
    /// - Other 1.15.
    ///
    /// When the `o200k` encoder cannot be built (it never fails with the embedded ranks, but the
    /// constructor returns a `Result`), text falls back to `ceil(chars / 4)` × this factor.
    pub fn approximation_permille(self) -> u64 {
        match self {
            TokenizerFamily::O200k | TokenizerFamily::Cl100k => 1000,
            TokenizerFamily::Claude => 1200,
            TokenizerFamily::Gemini | TokenizerFamily::Cohere | TokenizerFamily::Llama => 1050,
            TokenizerFamily::Mistral => 1100,
            TokenizerFamily::Other => 1150,
        }
    }
}

// === encoders ===

/// Built once per process: building a BPE table takes tens of milliseconds.
fn encoder(family: TokenizerFamily) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match family {
        TokenizerFamily::Cl100k => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref(),
        _ => O200K.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref(),
    }
}

/// Raw BPE count (no family factor). Text is encoded as ordinary text: a user who writes
/// `<|endoftext|>` gets it counted as the characters it is, which is what the upstream does.
fn raw_count(text: &str, family: TokenizerFamily) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match encoder(family) {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.chars().count() as u64).div_ceil(4),
    }
}

fn scale(raw: u64, family: TokenizerFamily) -> u64 {
    let permille = family.approximation_permille();
    if permille == 1000 {
        return raw;
    }
    let scaled = (u128::from(raw) * u128::from(permille)).div_ceil(1000);
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// Tokens of a piece of text for `family` (exact for OpenAI families, approximated otherwise).
pub fn count_text_tokens(text: &str, family: TokenizerFamily) -> u64 {
    scale(raw_count(text, family), family)
}

// === prompts ===

/// Per-message framing (`<|start|>{role}<|message|>…<|end|>`), per OpenAI's cookbook
/// "How to count tokens with tiktoken" for every current chat model.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// A message's `name` costs one token on top of its text.
pub const TOKENS_PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
pub const REPLY_PRIMING_TOKENS: u64 = 3;
/// Per tool call in an assistant message (separator around name and arguments); the same
/// heuristic tiktoken-rs uses.
pub const TOKENS_PER_TOOL_CALL: u64 = 1;
/// Tool definitions: OpenAI renders them into a TypeScript-like `namespace functions` block
/// inside the system message. We approximate that by counting the compact JSON of each
/// function definition (name, description, parameters) plus this per-tool overhead, plus
/// [`TOOLS_BLOCK_TOKENS`] once. Compared with OpenAI's reported counts this errs by a few
/// percent, usually over (JSON punctuation costs more tokens than the TypeScript rendering).
pub const TOKENS_PER_TOOL_DEF: u64 = 8;
/// The fixed framing of the tool block (namespace header, closing braces), once per request.
pub const TOOLS_BLOCK_TOKENS: u64 = 12;
/// An image whose size is unknown and whose detail is not `low`: the cost of a 1024×1024
/// image at high detail (scaled to 768×768 = 4 tiles: 4 × 170 + 85).
pub const DEFAULT_IMAGE_TOKENS: u64 = 765;
/// Base tokens of every image (and all a `detail: low` image costs).
pub const IMAGE_BASE_TOKENS: u64 = 85;
/// Tokens per 512×512 tile at high detail.
pub const IMAGE_TILE_TOKENS: u64 = 170;

/// Prompt tokens of `req` as the upstream will see them: messages with their framing, names,
/// tool calls, images and tool definitions, plus the reply priming. Audio and file parts are not
/// estimated (0): providers always report usage for them, and estimating a PDF's tokens from
/// its bytes would be noise. For non-OpenAI families the whole count is scaled by
/// [`TokenizerFamily::approximation_permille`].
pub fn count_prompt_tokens(req: &ChatRequest, family: TokenizerFamily) -> u64 {
    let mut raw: u64 = 0;
    for message in &req.messages {
        raw = raw.saturating_add(message_tokens(message, family));
    }
    raw = raw.saturating_add(REPLY_PRIMING_TOKENS);
    if let Some(tools) = req.tools.as_deref()
        && !tools.is_empty()
    {
        raw = raw.saturating_add(tool_definition_tokens(tools, family));
    }
    scale(raw, family)
}

/// Every role name is a single token in both encodings (a test checks it), so counting a
/// message's role does not need a tokenizer pass.
const ROLE_TOKENS: u64 = 1;

fn message_tokens(message: &Message, family: TokenizerFamily) -> u64 {
    let mut n = TOKENS_PER_MESSAGE + ROLE_TOKENS;
    if let Some(content) = &message.content {
        n = n.saturating_add(content_tokens(content, family));
    }
    if let Some(name) = &message.name {
        n = n.saturating_add(raw_count(name, family) + TOKENS_PER_NAME);
    }
    for call in message.tool_calls.iter().flatten() {
        n = n.saturating_add(
            raw_count(&call.function.name, family)
                + raw_count(&call.function.arguments, family)
                + TOKENS_PER_TOOL_CALL,
        );
    }
    n
}

fn content_tokens(content: &MessageContent, family: TokenizerFamily) -> u64 {
    match content {
        MessageContent::Text(text) => raw_count(text, family),
        MessageContent::Parts(parts) => parts
            .iter()
            .map(|part| match part {
                ContentPart::Text { text } => raw_count(text, family),
                ContentPart::Refusal { refusal } => raw_count(refusal, family),
                ContentPart::ImageUrl { image_url } => image_part_tokens(image_url),
                ContentPart::InputAudio { .. } | ContentPart::File { .. } => 0,
            })
            .fold(0u64, u64::saturating_add),
    }
}

fn tool_definition_tokens(tools: &[Tool], family: TokenizerFamily) -> u64 {
    let mut n = TOOLS_BLOCK_TOKENS;
    for tool in tools {
        let json = serde_json::to_string(&tool.function).unwrap_or_default();
        n = n.saturating_add(raw_count(&json, family) + TOKENS_PER_TOOL_DEF);
    }
    n
}

/// Tokens of one image part: OpenAI's tile formula when the size can be read from an inline
/// PNG, GIF or WebP header, 85 for `detail: low`, else [`DEFAULT_IMAGE_TOKENS`].
fn image_part_tokens(image: &ImageUrl) -> u64 {
    let detail = image.detail.as_deref().unwrap_or("auto");
    if detail.eq_ignore_ascii_case("low") {
        return IMAGE_BASE_TOKENS;
    }
    match image.source() {
        ImageSource::Base64 { data, .. } => match inline_image_size(data) {
            Some((w, h)) => image_tokens(w, h, detail),
            None => DEFAULT_IMAGE_TOKENS,
        },
        ImageSource::Url(_) => DEFAULT_IMAGE_TOKENS,
    }
}

/// OpenAI's documented image cost for the tile-based models (gpt-4o, gpt-4.1, o-series):
/// `low` detail costs 85; otherwise the image is scaled to fit 2048×2048, then so its shortest
/// side is 768 (only ever down), and costs 170 per 512-px tile plus 85.
pub fn image_tokens(width: u32, height: u32, detail: &str) -> u64 {
    if detail.eq_ignore_ascii_case("low") || width == 0 || height == 0 {
        return IMAGE_BASE_TOKENS;
    }
    let (mut w, mut h) = (f64::from(width), f64::from(height));
    let fit = (2048.0 / w.max(h)).min(1.0);
    w *= fit;
    h *= fit;
    let shrink = (768.0 / w.min(h)).min(1.0);
    w *= shrink;
    h *= shrink;
    let tiles_w = (w / 512.0).ceil() as u64;
    let tiles_h = (h / 512.0).ceil() as u64;
    IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * tiles_w * tiles_h
}

/// Width and height from the first bytes of a base64 PNG, GIF or WebP (VP8X/VP8L/VP8 headers
/// are not parsed; JPEG needs a segment walk and is left to the default estimate).
fn inline_image_size(data_b64: &str) -> Option<(u32, u32)> {
    let head = decode_base64_prefix(data_b64, 32)?;
    if head.len() >= 24 && head.starts_with(b"\x89PNG\r\n\x1a\n") {
        let w = u32::from_be_bytes([head[16], head[17], head[18], head[19]]);
        let h = u32::from_be_bytes([head[20], head[21], head[22], head[23]]);
        return Some((w, h));
    }
    if head.len() >= 10 && (head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a")) {
        let w = u32::from(u16::from_le_bytes([head[6], head[7]]));
        let h = u32::from(u16::from_le_bytes([head[8], head[9]]));
        return Some((w, h));
    }
    None
}

/// Decodes at least `bytes` bytes (when available) from the start of standard base64.
fn decode_base64_prefix(data: &str, bytes: usize) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let chars = bytes.div_ceil(3) * 4;
    let mut out = Vec::with_capacity(bytes + 2);
    for quad in data.as_bytes().chunks(4).take(chars / 4) {
        let mut acc = 0u32;
        let mut n = 0;
        for &c in quad {
            if c == b'=' {
                break;
            }
            acc = (acc << 6) | value(c)?;
            n += 1;
        }
        match n {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => break,
        }
        if n < 4 {
            break;
        }
    }
    Some(out)
}

// === streams ===

/// Text is counted in slices once this much is buffered, cut before a space or newline, where
/// the tokenizers' pre-split already separates tokens, so counting slices gives the same total
/// as counting the whole (bar rare runs of whitespace) while memory stays bounded.
const STREAM_COUNT_THRESHOLD: usize = 16 * 1024;

/// Accumulates a stream's generated content and tool-call deltas to count completion tokens
/// locally, and remembers the provider's usage if a chunk carries one.
///
/// Feed every chunk to [`push`](Self::push); at the end call [`usage`](Self::usage). Content,
/// refusals and tool-call arguments of all choices are counted; tool-call names once each.
#[derive(Debug)]
pub struct StreamTokenCounter {
    family: TokenizerFamily,
    pending: String,
    counted_raw: u64,
    tool_calls: u64,
    provider_usage: Option<Usage>,
}

impl StreamTokenCounter {
    pub fn new(family: TokenizerFamily) -> Self {
        Self { family, pending: String::new(), counted_raw: 0, tool_calls: 0, provider_usage: None }
    }

    /// Takes one chunk into account.
    pub fn push(&mut self, chunk: &ChatChunk) {
        if let Some(usage) = chunk.usage {
            self.provider_usage = Some(usage);
        }
        for choice in &chunk.choices {
            let delta = &choice.delta;
            if let Some(text) = &delta.content {
                self.push_text(text);
            }
            if let Some(text) = &delta.refusal {
                self.push_text(text);
            }
            for call in delta.tool_calls.iter().flatten() {
                if call.id.is_some() {
                    self.tool_calls += 1;
                }
                if let Some(function) = &call.function {
                    if let Some(name) = &function.name {
                        // Names are separate from the text around them.
                        self.counted_raw += raw_count(name, self.family);
                    }
                    if let Some(arguments) = &function.arguments {
                        self.push_text(arguments);
                    }
                }
            }
        }
    }

    /// Adds generated text directly (for adapters that see text before building chunks).
    pub fn push_text(&mut self, text: &str) {
        self.pending.push_str(text);
        if self.pending.len() >= STREAM_COUNT_THRESHOLD
            && let Some(cut) = self.pending.rfind([' ', '\n'])
            && cut > 0
        {
            let rest = self.pending.split_off(cut);
            self.counted_raw += raw_count(&self.pending, self.family);
            self.pending = rest;
        }
    }

    /// The usage a chunk carried, if any (then it is the one to bill).
    pub fn provider_usage(&self) -> Option<Usage> {
        self.provider_usage
    }

    /// Completion tokens counted locally so far.
    pub fn completion_tokens(&self) -> u64 {
        let raw =
            self.counted_raw + raw_count(&self.pending, self.family) + self.tool_calls * TOKENS_PER_TOOL_CALL;
        scale(raw, self.family)
    }

    /// The usage to record: the provider's when a chunk carried it, otherwise `prompt_tokens`
    /// (from [`count_prompt_tokens`]) plus the counted completion, marked
    /// [`UsageSource::Counted`] when the stream finished and [`UsageSource::Partial`] when it
    /// was cut short.
    pub fn usage(&self, prompt_tokens: u64, finished: bool) -> (Usage, UsageSource) {
        match self.provider_usage {
            Some(usage) => (usage, UsageSource::Provider),
            None => {
                let source = if finished { UsageSource::Counted } else { UsageSource::Partial };
                (Usage::new(prompt_tokens, self.completion_tokens(), None), source)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_name_is_one_token() {
        use tollgate_types::chat::Role;
        for role in [Role::System, Role::Developer, Role::User, Role::Assistant, Role::Tool] {
            for family in [TokenizerFamily::O200k, TokenizerFamily::Cl100k] {
                assert_eq!(raw_count(role.as_str(), family), ROLE_TOKENS, "{role:?} in {family:?}");
            }
        }
    }
    use tollgate_types::{
        Delta, FunctionCall, FunctionCallDelta, FunctionDef, Role, ToolCall, ToolCallDelta, ToolKind,
    };

    const HELLO: &str = "Hello, world! How many tokens is this?";

    fn req(messages: Vec<Message>) -> ChatRequest {
        ChatRequest { model: "gpt-4o".into(), messages, ..ChatRequest::default() }
    }

    #[test]
    fn known_strings_count_exactly_in_openai_encodings() {
        assert_eq!(count_text_tokens(HELLO, TokenizerFamily::O200k), 10);
        assert_eq!(count_text_tokens(HELLO, TokenizerFamily::Cl100k), 10);
        assert_eq!(count_text_tokens("", TokenizerFamily::O200k), 0);
        assert_eq!(count_text_tokens("hello world", TokenizerFamily::O200k), 2);
        // Special-token text is ordinary text here.
        assert!(count_text_tokens("<|endoftext|>", TokenizerFamily::Cl100k) > 1);
    }

    #[test]
    fn message_overhead_follows_the_cookbook() {
        let one = req(vec![Message::text(Role::User, HELLO)]);
        // 3 (framing) + 1 ("user") + 10 (text) + 3 (reply priming).
        assert_eq!(count_prompt_tokens(&one, TokenizerFamily::O200k), 17);

        let mut named = Message::text(Role::User, HELLO);
        named.name = Some("bob".into());
        let two = req(vec![Message::text(Role::System, "hello world"), named]);
        // system: 3 + 1 + 2; user: 3 + 1 + 10 + (1 "bob" + 1 name); priming 3.
        assert_eq!(count_prompt_tokens(&two, TokenizerFamily::O200k), 6 + 16 + 3);
        assert_eq!(count_prompt_tokens(&req(vec![]), TokenizerFamily::O200k), REPLY_PRIMING_TOKENS);
    }

    #[test]
    fn tool_calls_and_definitions_add_tokens() {
        let base = req(vec![Message::text(Role::User, HELLO)]);
        let base_n = count_prompt_tokens(&base, TokenizerFamily::O200k);

        let mut with_tools = base.clone();
        with_tools.tools = Some(vec![Tool {
            kind: ToolKind::Function,
            function: FunctionDef {
                name: "get_weather".into(),
                description: Some("Weather for a city".into()),
                parameters: Some(
                    serde_json::json!({"type":"object","properties":{"city":{"type":"string"}}}),
                ),
                strict: None,
            },
        }]);
        let json = serde_json::to_string(&with_tools.tools.as_ref().unwrap()[0].function).unwrap();
        let expected = base_n
            + TOOLS_BLOCK_TOKENS
            + TOKENS_PER_TOOL_DEF
            + count_text_tokens(&json, TokenizerFamily::O200k);
        assert_eq!(count_prompt_tokens(&with_tools, TokenizerFamily::O200k), expected);

        let mut assistant = Message::text(Role::Assistant, "");
        assistant.content = None;
        assistant.tool_calls = Some(vec![ToolCall {
            id: "call_1".into(),
            kind: ToolKind::Function,
            function: FunctionCall { name: "get_weather".into(), arguments: r#"{"city":"Paris"}"#.into() },
        }]);
        let with_call = req(vec![Message::text(Role::User, HELLO), assistant]);
        let call_n = count_text_tokens("get_weather", TokenizerFamily::O200k)
            + count_text_tokens(r#"{"city":"Paris"}"#, TokenizerFamily::O200k)
            + TOKENS_PER_TOOL_CALL;
        assert_eq!(
            count_prompt_tokens(&with_call, TokenizerFamily::O200k),
            base_n + TOKENS_PER_MESSAGE + count_text_tokens("assistant", TokenizerFamily::O200k) + call_n
        );
    }

    #[test]
    fn images_use_the_tile_formula() {
        assert_eq!(image_tokens(1024, 1024, "high"), 765);
        assert_eq!(image_tokens(2048, 4096, "high"), 1105); // → 1024×2048 → 768×1536: 2×3 tiles
        assert_eq!(image_tokens(4096, 8192, "low"), 85);
        assert_eq!(image_tokens(100, 100, "auto"), 255); // one tile

        // A 1×1 PNG header read from an inline data URL.
        let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
        let image = |url: String, detail: Option<&str>| ContentPart::ImageUrl {
            image_url: ImageUrl { url, detail: detail.map(str::to_owned) },
        };
        let msg = |part| Message {
            content: Some(MessageContent::Parts(vec![part])),
            ..Message::text(Role::User, "")
        };
        let framing = TOKENS_PER_MESSAGE + 1 + REPLY_PRIMING_TOKENS;
        let inline = req(vec![msg(image(format!("data:image/png;base64,{png}"), None))]);
        assert_eq!(count_prompt_tokens(&inline, TokenizerFamily::O200k), framing + 255);
        let remote = req(vec![msg(image("https://x/y.png".into(), None))]);
        assert_eq!(count_prompt_tokens(&remote, TokenizerFamily::O200k), framing + DEFAULT_IMAGE_TOKENS);
        let low = req(vec![msg(image("https://x/y.png".into(), Some("low")))]);
        assert_eq!(count_prompt_tokens(&low, TokenizerFamily::O200k), framing + 85);
    }

    #[test]
    fn families_are_picked_from_the_model_name() {
        use TokenizerFamily::*;
        for (model, family) in [
            ("gpt-4o-mini-2024-07-18", O200k),
            ("gpt-4.1-nano", O200k),
            ("gpt-5", O200k),
            ("o3-mini", O200k),
            ("o1", O200k),
            ("openai/gpt-4o", O200k),
            ("gpt-4-turbo", Cl100k),
            ("gpt-4", Cl100k),
            ("gpt-3.5-turbo-0125", Cl100k),
            ("text-embedding-3-small", Cl100k),
            ("claude-sonnet-4-5-20250929", Claude),
            ("models/gemini-2.5-flash", Gemini),
            ("command-a-03-2025", Cohere),
            ("meta-llama/Llama-3.3-70B-Instruct", Llama),
            ("mistral-large-latest", Mistral),
            ("codestral-2501", Mistral),
            ("qwen-2.5", Other),
        ] {
            assert_eq!(TokenizerFamily::for_model(model), family, "{model}");
        }
        assert!(O200k.is_exact() && !Claude.is_exact());
    }

    #[test]
    fn approximations_scale_o200k_and_grow_with_text() {
        let o = count_text_tokens(HELLO, TokenizerFamily::O200k);
        assert_eq!(count_text_tokens(HELLO, TokenizerFamily::Claude), (o * 1200).div_ceil(1000));
        for family in [
            TokenizerFamily::Claude,
            TokenizerFamily::Gemini,
            TokenizerFamily::Cohere,
            TokenizerFamily::Llama,
            TokenizerFamily::Mistral,
            TokenizerFamily::Other,
        ] {
            let mut text = String::new();
            let mut last = 0;
            for i in 0..200 {
                text.push_str(&format!("word{i} ünïcode 数字 {} ", i * 7));
                let n = count_text_tokens(&text, family);
                assert!(n >= last, "{family:?} not monotonic at {i}");
                assert!(n >= count_text_tokens(&text, TokenizerFamily::O200k));
                last = n;
            }
        }
    }

    fn content_chunk(text: &str) -> ChatChunk {
        ChatChunk::delta("id", "m", 0, Delta::content(text), None)
    }

    #[test]
    fn stream_counter_counts_content_and_tool_arguments() {
        let mut counter = StreamTokenCounter::new(TokenizerFamily::O200k);
        for piece in ["Hello", ", world!", " How many", " tokens is this?"] {
            counter.push(&content_chunk(piece));
        }
        assert_eq!(counter.completion_tokens(), 10);
        let (usage, source) = counter.usage(17, false);
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (17, 10, 27));
        assert_eq!(source, UsageSource::Partial);
        assert_eq!(counter.usage(17, true).1, UsageSource::Counted);

        let mut tools = StreamTokenCounter::new(TokenizerFamily::O200k);
        tools.push(&ChatChunk::delta(
            "id",
            "m",
            0,
            Delta::tool_call(ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                kind: Some(ToolKind::Function),
                function: Some(FunctionCallDelta { name: Some("get_weather".into()), arguments: None }),
            }),
            None,
        ));
        for part in [r#"{"ci"#, r#"ty":"Pa"#, r#"ris"}"#] {
            tools.push(&ChatChunk::delta(
                "id",
                "m",
                0,
                Delta::tool_call(ToolCallDelta {
                    index: 0,
                    function: Some(FunctionCallDelta { name: None, arguments: Some(part.into()) }),
                    ..ToolCallDelta::default()
                }),
                None,
            ));
        }
        assert_eq!(
            tools.completion_tokens(),
            count_text_tokens("get_weather", TokenizerFamily::O200k)
                + count_text_tokens(r#"{"city":"Paris"}"#, TokenizerFamily::O200k)
                + TOKENS_PER_TOOL_CALL
        );
    }

    #[test]
    fn stream_counter_prefers_provider_usage_and_slices_long_text() {
        let mut counter = StreamTokenCounter::new(TokenizerFamily::O200k);
        counter.push(&content_chunk("hi"));
        counter.push(&ChatChunk::usage_only("id", "m", 0, Usage::new(5, 1, None)));
        assert_eq!(counter.usage(99, false), (Usage::new(5, 1, None), UsageSource::Provider));

        let text: String = (0..5000).map(|i| format!("token{i} and more\n")).collect();
        let mut sliced = StreamTokenCounter::new(TokenizerFamily::O200k);
        for piece in text.as_bytes().chunks(37) {
            sliced.push_text(std::str::from_utf8(piece).unwrap());
        }
        assert!(sliced.pending.len() < STREAM_COUNT_THRESHOLD + 37);
        assert_eq!(sliced.completion_tokens(), count_text_tokens(&text, TokenizerFamily::O200k));
    }

    #[test]
    fn usage_source_serializes_snake_case() {
        assert_eq!(serde_json::to_string(&UsageSource::Partial).unwrap(), r#""partial""#);
        assert_eq!(UsageSource::Counted.as_str(), "counted");
        for source in [UsageSource::Provider, UsageSource::Counted, UsageSource::Partial] {
            assert_eq!(TokenSource::from(source).as_str(), source.as_str());
        }
    }
}
