//! The `tollgate` binary: CLI, logging set-up, and wiring the concrete parts together.

mod admin_cli;
mod commands;
mod local_embed;
mod semantic;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tollgate_core::config::Config;
use tollgate_core::env::{EnvSource, ProcessEnv};
use tollgate_server::{AppState, build_app};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "A multi-tenant API gateway for large language models")]
struct Cli {
    /// The YAML config file.
    #[arg(long, short, global = true, env = "TOLLGATE_CONFIG", default_value = "tollgate.yaml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, env = "TOLLGATE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve {
        /// Listen address, overriding `listen` in the config.
        #[arg(long, env = "TOLLGATE_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate the config file and report every problem with its path.
    CheckConfig,
    /// Run the store's migrations (PostgreSQL: as `store.owner_url`).
    Migrate,
    /// Create a tenant with an owner, a project and an admin key for the owner; print the key.
    Bootstrap {
        /// The tenant's name.
        #[arg(long)]
        tenant: String,
        /// The owner member's name (e.g. an email address).
        #[arg(long)]
        owner: String,
        /// The first project's name.
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// Manage tenants.
    Tenants {
        #[command(subcommand)]
        cmd: admin_cli::TenantsCmd,
    },
    /// Manage a tenant's projects.
    Projects {
        #[command(subcommand)]
        cmd: admin_cli::ProjectsCmd,
    },
    /// Manage a tenant's members and their roles.
    Members {
        #[command(subcommand)]
        cmd: admin_cli::MembersCmd,
    },
    /// Manage a tenant's API keys.
    Keys {
        #[command(subcommand)]
        cmd: admin_cli::KeysCmd,
    },
    /// Read or replace the limits (rate limits, budgets) of a tenant, project or key.
    Limits {
        #[command(subcommand)]
        cmd: admin_cli::LimitsCmd,
    },
    /// Read or replace a tenant's negotiated prices and markup.
    Pricing {
        #[command(subcommand)]
        cmd: admin_cli::PricingCmd,
    },
    /// A tenant's usage over a time range, grouped.
    Usage(admin_cli::UsageArgs),
    /// Re-encrypt every stored provider credential under the first key of
    /// TOLLGATE_ENCRYPTION_KEY (list the old key after it while rotating).
    RotateEncryptionKey,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command.unwrap_or(Command::Serve { listen: None }) {
        Command::CheckConfig => check_config(&cli.config),
        Command::Serve { listen } => serve(&cli.config, listen),
        Command::Migrate => with_runtime(commands::migrate(&cli.config)),
        Command::Bootstrap { tenant, owner, project } => {
            with_runtime(commands::bootstrap(&cli.config, tenant, owner, project))
        }
        Command::RotateEncryptionKey => with_runtime(commands::rotate_encryption_key(&cli.config)),
        Command::Tenants { cmd } => {
            with_runtime(admin_cli::run(&cli.config, admin_cli::AdminCmd::Tenants(cmd)))
        }
        Command::Projects { cmd } => {
            with_runtime(admin_cli::run(&cli.config, admin_cli::AdminCmd::Projects(cmd)))
        }
        Command::Members { cmd } => {
            with_runtime(admin_cli::run(&cli.config, admin_cli::AdminCmd::Members(cmd)))
        }
        Command::Keys { cmd } => with_runtime(admin_cli::run(&cli.config, admin_cli::AdminCmd::Keys(cmd))),
        Command::Limits { cmd } => {
            with_runtime(admin_cli::run(&cli.config, admin_cli::AdminCmd::Limits(cmd)))
        }
        Command::Pricing { cmd } => {
            with_runtime(admin_cli::run(&cli.config, admin_cli::AdminCmd::Pricing(cmd)))
        }
        Command::Usage(args) => with_runtime(admin_cli::run(&cli.config, admin_cli::AdminCmd::Usage(args))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("TOLLGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn with_runtime(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}

fn install_crypto_provider() {
    // One crypto provider for every TLS client in the process (see DEPENDENCIES.md).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub(crate) fn load_config(
    path: &Path,
) -> anyhow::Result<(Config, Vec<tollgate_core::config::ConfigWarning>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    Config::parse(&text, &ProcessEnv).map_err(|e| anyhow::anyhow!("{} is invalid:\n{e}", path.display()))
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let (config, warnings) = load_config(path)?;
    for w in &warnings {
        eprintln!("warning: {}: {}", w.path, w.message);
    }
    eprintln!(
        "{} is valid: {} providers, {} models",
        path.display(),
        config.providers.len(),
        config.models.len()
    );
    Ok(())
}

fn serve(path: &Path, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let (config, warnings) = load_config(path)?;
    for w in &warnings {
        tracing::warn!(path = %w.path, "{}", w.message);
    }
    with_runtime(run(path, config, listen))
}

async fn run(path: &Path, config: Config, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let store = commands::open_store(path, &config).await?;
    let master_keys = commands::master_keys(&ProcessEnv)?;
    let semantic = semantic::open(path, &config).await?;
    let state =
        AppState::from_config_with(&config, &admin_key(&ProcessEnv), Some(store), master_keys, semantic)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tasks = TaskTracker::new();
    let stop_background = CancellationToken::new();
    state.spawn_background(&tasks, stop_background.clone());
    let addr = listen.unwrap_or(config.listen);
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, models = config.models.len(), "tollgate listening");
    // Small SSE writes must not wait for delayed ACKs (Nagle): set TCP_NODELAY on every accepted
    // socket.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let grace = config.server.shutdown_grace;
    axum::serve(listener, build_app(state)).with_graceful_shutdown(shutdown_signal(grace)).await?;
    // In-flight requests are done: stop the background work and let it flush (queued usage
    // records, keys' last-used times), within the grace period.
    stop_background.cancel();
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!("background tasks did not finish within the grace period");
    }
    tracing::info!("tollgate stopped");
    Ok(())
}

/// The bootstrap key: `TOLLGATE_ADMIN_KEY`, or a random one printed once.
fn admin_key(env: &dyn EnvSource) -> SecretString {
    if let Some(k) = env.var("TOLLGATE_ADMIN_KEY") {
        return SecretString::from(k);
    }
    let key = format!("tg_admin_{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
    eprintln!(
        "TOLLGATE_ADMIN_KEY is not set; this run's key is:\n\n    {key}\n\nSet TOLLGATE_ADMIN_KEY to keep a key across restarts."
    );
    SecretString::from(key)
}

/// Resolves on Ctrl-C or SIGTERM, then arms a deadline: in-flight requests get `grace` to finish
/// before the process exits anyway.
async fn shutdown_signal(grace: std::time::Duration) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures_pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures_pending();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: finishing in-flight requests");
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        eprintln!("shutdown grace period over; exiting");
        std::process::exit(0);
    });
}

async fn futures_pending() {
    std::future::pending::<()>().await;
}
