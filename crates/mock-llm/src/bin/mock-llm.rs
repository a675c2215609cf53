//! `mock-llm --listen 127.0.0.1:9000 [--latency-ms N] [--chunk-delay-ms N] [--no-record]`:
//! the fake upstream as a process, for benchmarks and the Python SDK tests.

use clap::Parser;
use mock_llm::{Knobs, MockLlm};

#[derive(Parser)]
#[command(
    version,
    about = "Fake LLM upstream speaking OpenAI, Azure, Anthropic, Gemini and Cohere wire formats"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Keep no log of requests (benchmarks).
    #[arg(long)]
    no_record: bool,
    /// Require this API key.
    #[arg(long)]
    require_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let knobs = Knobs {
        latency_ms: args.latency_ms,
        chunk_delay_ms: args.chunk_delay_ms,
        require_key: args.require_key,
        ..Knobs::default()
    };
    let mock = MockLlm::start_with(knobs, args.listen, !args.no_record).await?;
    // The address goes to stderr: scripts read it to find an ephemeral port.
    eprintln!("mock-llm listening on {}", mock.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
