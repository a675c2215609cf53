//! A fake LLM upstream for tests and benchmarks: a real HTTP server speaking each provider's
//! documented wire format (JSON and SSE), with fault knobs. Never used by the product.
//!
//! What it answers is decided once, provider-neutrally ([`plan`]): with tools offered and the
//! last turn from the user, it calls every offered tool (or the one `tool_choice` names) with
//! [`Knobs::tool_arguments`]; otherwise it answers `mock: <last user text>` (plus how many
//! images it saw). Each provider module parses its request into a [`Conversation`] and renders
//! the [`Reply`] in its own format.
//!
//! Knobs are set per server ([`MockLlm::set_knobs`], or the binary's flags), and can be
//! overridden per request by a suffix on the model name: `gpt-4o~status=429,retry_after=2`.
//! The suffix passes through a gateway untouched, so one mock can serve healthy and failing
//! deployments at once. Fault knobs ([`Knobs`] has them all): `status=503` (every request),
//! `fail_rate=0.5` / `fail_every=4` (a random share / exactly every 4th request to that model
//! name, with `status`, default 500), `error_code=content_policy_violation` (the provider's own
//! error body and message for the code, status 400 unless given), `latency_ms` (before the
//! headers), `ttft_ms` (streams: between the headers and the first event), `chunk_delay_ms`,
//! `disconnect_after`, `garbage`, `hang`, `retry_after`, `reply`; and `embedding_dims=384`, the
//! length of embeddings when the request does not ask for one (default 8).
//!
//! Rate-limit headers: the OpenAI-shaped routes (Azure's included) send
//! `x-ratelimit-{limit,remaining}-{requests,tokens}` and the Anthropic route
//! `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining}` on every
//! answer, errors included, as the real APIs do. `ratelimit_limit=N` sets the request limit
//! (default 1000; tokens are 1000 times it; 0 sends no headers), `ratelimit_remaining=N` the
//! requests left (default the limit minus one, 0 on a 429); `model~ratelimit_remaining=5` makes
//! a deployment look nearly out of quota.

pub mod anthropic;
pub mod cohere;
pub mod core;
pub mod gemini;
pub mod openai;

pub use crate::core::{Conversation, Knobs, MockLlm, Recorded, Reply, ToolCallPlan, plan};
