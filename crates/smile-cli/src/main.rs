//! `smile`: the Smile event notification server and its tools.

mod config;
mod listen;
mod remote;
mod trigger;

// Delivery allocates many small, short-lived buffers; mimalloc handles that pattern far
// better than the system allocator (measured in docs/benchmarks.md). It is built without
// transparent huge pages (see the workspace's Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use smile_core::Mode;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "smile",
    version,
    about = "Self-hostable Smile event notification server: signed webhooks, sandbox platform, Wink Widget."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates the data directory and a sandbox tenant on first start).
    Serve(Box<config::ServeArgs>),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Measure publish and delivery throughput against a raw HTTP baseline.
    Bench(smile_bench::BenchArgs),
    /// The http scenario's load generator, a process of its own (run by `smile bench`).
    #[command(hide = true)]
    BenchGenerator(smile_bench::GeneratorArgs),
    /// The http scenario's ceiling: a relay that stores and signs nothing (run by `smile bench`).
    #[command(hide = true)]
    BenchRelay(smile_bench::RelayArgs),
    /// Forward a server's webhooks to a local URL (for development), reporting each answer back.
    Listen(listen::ListenArgs),
    /// Publish a sample event (or given data) for a sandbox key's tenant; show where it went.
    Trigger(trigger::TriggerArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key pair for a tenant and mode, or an operator key.
    Create {
        /// The tenant (created if new): lowercase letters, digits, '-' and '_'.
        #[arg(long, required_unless_present = "operator")]
        tenant: Option<String>,
        /// sandbox or production.
        #[arg(long, default_value = "sandbox")]
        mode: Mode,
        /// An operator key instead, for operator-only endpoints.
        #[arg(long, conflicts_with = "tenant")]
        operator: bool,
        #[arg(long, env = "SMILE_DATA_DIR", default_value = "./smile-data")]
        data_dir: PathBuf,
        /// PostgreSQL instead of the SQLite file, as `smile serve --database-url`.
        #[arg(long, env = "SMILE_DATABASE_URL")]
        database_url: Option<String>,
    },
}

fn print_key(key: &smile_server::NewKey) {
    println!("API key: {}", key.api_key);
    println!("API secret: {}", key.api_secret);
}

async fn keys_create(
    tenant: Option<String>,
    mode: Mode,
    operator: bool,
    data_dir: PathBuf,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let store = smile_server::open_store(&data_dir, database_url.as_deref()).await.context("opening the store")?;
    let key = if operator {
        store.create_operator_key().await?
    } else {
        let tenant = tenant.unwrap_or_default();
        if !smile_core::ids::is_valid_tenant_id(&tenant) {
            bail!("tenant must be 1 to 40 of: lowercase letters, digits, '-', '_'");
        }
        store.create_tenant_key(&tenant, mode).await?
    };
    print_key(&key);
    Ok(())
}

async fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let options = args.resolve()?;
    let grace = options.shutdown_grace;
    let running = smile_server::start(options).await?;
    if let Some(key) = &running.first_start_key {
        println!("Created tenant `{}` with sandbox keys (shown once; keep them):", smile_server::FIRST_TENANT);
        print_key(key);
    }
    println!("Listening on http://{}", running.addr);
    if let Some(addr) = running.metrics_addr {
        println!("Metrics (no authentication) on http://{addr}/metrics");
    }
    tracing::info!(addr = %running.addr, "serving");
    running.serve_until(stop_signal(), grace).await
}

/// Resolves on SIGTERM (what orchestrators send) or Ctrl-C.
pub(crate) async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SMILE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    // The HTTP clients of `listen` and `trigger` use rustls with ring, like the server's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::Keys { command: KeysCommand::Create { tenant, mode, operator, data_dir, database_url } } => {
            keys_create(tenant, mode, operator, data_dir, database_url).await
        }
        Command::Bench(args) => smile_bench::run(args).await,
        Command::BenchGenerator(args) => smile_bench::generate(args).await,
        Command::BenchRelay(args) => smile_bench::relay(args).await,
        Command::Listen(args) => listen::run(args).await,
        Command::Trigger(args) => trigger::run(args).await,
    }
}
