//! The Smile HTTP API and the process that serves it.
//!
//! - [`start`]: opens the store, starts the delivery engine, creates the sandbox tenant on
//!   first start, and serves the API until [`Running::shutdown`].
//! - `edge`: connections: the cap, header, body and idle timeouts, shedding, graceful stop.
//! - `envelope`: the `{code, message, requestId, data}` body of every response.
//! - `exporter`: `/metrics`, in the Prometheus text format.
//! - `auth`: HTTP Basic `apikey:apisecret`, resolved to a tenant and mode or the operator.
//! - `extract`: request parts that fail as Smile errors, never as plain-text rejections.
//! - `routes`: the endpoints, one module per resource.

mod auth;
mod edge;
mod envelope;
mod exporter;
mod extract;
mod limits;
mod routes;
mod views;

use smile_delivery::{DeliveryConfig, Drained, Engine};
pub use smile_store::NewKey;
use smile_store::Store;
use smile_store::postgres::PostgresStore;
use smile_store::sqlite::SqliteStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use edge::EdgeConfig;
pub use envelope::Error;
pub use limits::RateLimit;

/// The tenant created on first start, whose sandbox keys are printed.
pub const FIRST_TENANT: &str = "default";

/// Everything `smile serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` to share a PostgreSQL database with other nodes; else SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub delivery: DeliveryConfig,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub rate_limit: RateLimit,
    /// How long a link token lasts.
    pub token_ttl: std::time::Duration,
    /// How long a graceful shutdown lets requests and attempts in flight finish.
    pub shutdown_grace: std::time::Duration,
    /// Connection cap and client timeouts.
    pub edge: EdgeConfig,
    /// Where clients reach this server (e.g. `https://smile.example.com`), for the links it
    /// hands out; None: `http://` and the listen address.
    pub public_url: Option<String>,
    /// Also serve `/metrics`, without authentication, on this address.
    pub metrics_listen: Option<SocketAddr>,
    /// How long a `smile listen` session lives without a poll before it ends.
    pub listen_idle: std::time::Duration,
}

impl ServeOptions {
    /// The defaults of `smile serve`, on `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            database_url: None,
            delivery: DeliveryConfig::default(),
            max_body_bytes: 256 * 1024,
            rate_limit: RateLimit::default(),
            token_ttl: std::time::Duration::from_secs(30 * 60),
            shutdown_grace: std::time::Duration::from_secs(10),
            edge: EdgeConfig::default(),
            public_url: None,
            metrics_listen: None,
            listen_idle: std::time::Duration::from_secs(30),
        }
    }
}

/// Shared by every handler. axum clones the state for each extractor and layer of every
/// request, so it is one pointer: cloned field by field it cost two heap allocations and
/// a dozen atomic increments each time (perf: 2 % of a busy server's CPU).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub keys: Arc<auth::KeyCache>,
    pub tenants: Arc<routes::operator::KnownTenants>,
    pub rate_limit: RateLimit,
    pub platform: smile_sandbox::Platform,
    pub demo: Arc<routes::assets::DemoInbox>,
    pub listen_idle: std::time::Duration,
    /// Where clients reach this server, without a trailing slash.
    pub public_url: String,
}

/// A serving server.
pub struct Running {
    /// The address it listens on (the real port when asked for port 0).
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    /// The sandbox keys created on first start, if this was the first start.
    pub first_start_key: Option<NewKey>,
    /// Where `/metrics` is served without authentication, if it is.
    pub metrics_addr: Option<SocketAddr>,
    metrics_served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The server's own loops (sandbox work, retention, idle `smile listen` sessions).
    background: Vec<Background>,
}

/// A loop that holds the store and the engine: it ends with the server that started it,
/// which an embedding process (the bench, the tests) outlives.
struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Running {
    /// Leaves gracefully, within `grace` (twice at most: requests, then attempts): stops
    /// accepting connections and lets the requests in progress finish, then drains the engine
    /// (attempts in flight finish, their outcomes commit) and hands its lanes to the other
    /// nodes at once.
    pub async fn shutdown(self, grace: std::time::Duration) -> anyhow::Result<Drained> {
        drop(self.background);
        let _ = self.shutdown.send(());
        if let Some(metrics) = &self.metrics_served {
            metrics.abort();
        }
        match tokio::time::timeout(grace, self.served).await {
            Ok(served) => served??,
            Err(_) => tracing::warn!(?grace, "requests still in progress after the grace period; leaving them"),
        }
        let drained = self.engine.drain(grace).await;
        if drained == Drained::HandedBackInFlight {
            tracing::warn!(?grace, "attempts still in flight after the grace period; other nodes send them again");
        }
        Ok(drained)
    }

    /// Serves until `stop` resolves (a signal, say), then shuts down gracefully.
    pub async fn serve_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
        grace: std::time::Duration,
    ) -> anyhow::Result<()> {
        tokio::select! {
            served = &mut self.served => return Ok(served??),
            _ = stop => {}
        }
        tracing::info!("shutting down: no new connections; finishing what is in flight");
        let drained = self.shutdown(grace).await?;
        tracing::info!(?drained, "shut down");
        Ok(())
    }
}

/// Opens PostgreSQL at `database_url` if given, else the SQLite store under the data
/// directory (creating both if needed). Migrations run either way.
pub async fn open_store(data_dir: &std::path::Path, database_url: Option<&str>) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = database_url {
        return Ok(Arc::new(PostgresStore::connect(url).await?));
    }
    std::fs::create_dir_all(data_dir)?;
    Ok(Arc::new(SqliteStore::open(&data_dir.join("smile.db"))?))
}

/// Starts the store, the engine and the API.
pub async fn start(options: ServeOptions) -> anyhow::Result<Running> {
    exporter::install();
    let store = open_store(&options.data_dir, options.database_url.as_deref()).await?;
    let first_start_key = if store.has_tenants().await? {
        None
    } else {
        Some(store.create_tenant_key(FIRST_TENANT, smile_core::Mode::Sandbox).await?)
    };
    let engine = Engine::start(store.clone(), options.delivery.clone()).await?;
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = options.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let state = AppState(Arc::new(Shared {
        store: store.clone(),
        engine: engine.clone(),
        keys: Arc::default(),
        tenants: Arc::default(),
        rate_limit: options.rate_limit.clone(),
        platform: smile_sandbox::Platform::new(
            store.clone(),
            engine.clone(),
            options.token_ttl,
            options.data_dir.join("archives"),
            public_url.trim_end_matches('/').to_owned(),
        ),
        demo: Arc::default(),
        listen_idle: options.listen_idle.max(std::time::Duration::from_secs(1)),
        public_url: public_url.trim_end_matches('/').to_owned(),
    }));
    let background = vec![
        Background(state.platform.start_retention()),
        Background(state.platform.resume_jobs()),
        Background(routes::listen::reap_idle_sessions(state.clone())),
    ];
    let (metrics_addr, metrics_served) = match options.metrics_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at).await?;
            let addr = listener.local_addr()?;
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(exporter::scrape_open))
                .with_state(state.clone());
            let served = tokio::spawn(edge::serve(listener, app, options.edge.clone(), std::future::pending()));
            (Some(addr), Some(served))
        }
        None => (None, None),
    };
    let app = routes::router(state, options.max_body_bytes);
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let edge_config = options.edge.clone();
    let served = tokio::spawn(edge::serve(listener, app, edge_config, async move {
        let _ = stop.await;
    }));
    Ok(Running { addr, store, engine, first_start_key, metrics_addr, metrics_served, shutdown, served, background })
}
