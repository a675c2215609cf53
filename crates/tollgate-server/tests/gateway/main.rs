//! Gateway tests over real HTTP: the real app, a real mock upstream, ephemeral ports.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failed step must fail the test loudly"
)]

mod chat;
mod errors;
mod harness;
mod routing;
mod streaming;
