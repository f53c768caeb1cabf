//! `smile bench`: starts a real server on a temporary SQLite database and real receivers on
//! loopback, publishes events with fan-out, and prints one JSON line per scenario with the
//! publish and delivery rates, publish→received latency, and a raw HTTP baseline measured
//! in the same run against the same receivers.

use anyhow::{Context, bail};
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use smile_core::{EventType, Mode};
use smile_store::Scope;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `smile bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenarios to run: single-endpoint, fanout, or all.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Events published per scenario.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Subscriptions each event goes to in the fanout scenario.
    #[arg(long, default_value_t = 4)]
    pub fanout: u64,
    /// Concurrent publishers (and baseline senders).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Run on PostgreSQL (a fresh schema in this database, dropped afterwards) instead of SQLite.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Nodes sharing the PostgreSQL database; publishers are spread over them.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
}

/// The one JSON line a scenario ends with.
#[derive(Serialize, Debug)]
pub struct Report {
    pub scenario: String,
    pub backend: &'static str,
    pub nodes: usize,
    pub events: u64,
    pub fanout: u64,
    pub publish_per_s: f64,
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub baseline_req_per_s: f64,
    pub ratio: f64,
    pub lost: u64,
    pub duplicates: u64,
}

/// What the receivers saw: arrivals per event id, and when the first came.
#[derive(Default)]
struct Received {
    arrivals: Mutex<HashMap<String, (u32, Instant)>>,
    total: AtomicU64,
    baseline: AtomicU64,
}

async fn receive(State(received): State<Arc<Received>>, headers: HeaderMap, _body: Bytes) -> &'static str {
    match headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        Some(id) => {
            let now = Instant::now();
            if let Ok(mut map) = received.arrivals.lock() {
                map.entry(id.to_owned()).and_modify(|(n, _)| *n += 1).or_insert((1, now));
            }
            received.total.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            received.baseline.fetch_add(1, Ordering::Relaxed);
        }
    }
    "ok"
}

async fn start_receiver(received: Arc<Received>) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route("/hook/{n}", axum::routing::post(receive)).with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build_http()
}

/// Requests/s of a pooled hyper client POSTing a small JSON body to `url`.
async fn baseline(url: &str, requests: u64, concurrency: u64) -> anyhow::Result<f64> {
    let client = http_client();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let request = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(br#"{"id":"baseline","data":{}}"#)))?;
                let response = client.request(request).await?;
                response.into_body().collect().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

async fn create_subscription(server: SocketAddr, auth: &str, url: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "name": "bench", "url": url, "eventTypes": ["ALL_EVENTS"], "active": true, "secret": "bench-secret"
    });
    let request = hyper::Request::post(format!("http://{server}/v1/webhooks"))
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = http_client().request(request).await?;
    if !response.status().is_success() {
        bail!("creating a subscription failed: {}", response.status());
    }
    Ok(())
}

/// A schema of the benchmark's own in a PostgreSQL database.
struct BenchSchema {
    base: String,
    name: String,
    url: String,
}

impl BenchSchema {
    async fn create(base: &str, scenario: &str) -> anyhow::Result<Self> {
        let name = format!("smile_bench_{}_{}", std::process::id(), scenario.replace('-', "_"));
        Self::run(base, &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")).await?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        Ok(BenchSchema { base: base.to_owned(), name, url })
    }

    /// Drops the schema; the stopped engines' last queries may still hold locks, so a
    /// deadlock is tried again.
    async fn drop(self) -> anyhow::Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let mut tries = 0;
        loop {
            match Self::run(&self.base, &sql).await {
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("dropping the benchmark schema: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                done => return done,
            }
        }
    }

    async fn run(url: &str, sql: &str) -> anyhow::Result<()> {
        let describe = |e: tokio_postgres::Error| match e.as_db_error() {
            Some(db) => anyhow::anyhow!("PostgreSQL: {}", db.message()),
            None => anyhow::anyhow!("PostgreSQL: {e}"),
        };
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(describe)?;
        tokio::spawn(connection);
        client.batch_execute(sql).await.map_err(describe)
    }
}

/// Latencies (sorted, ms) of first arrivals, events some receiver missed, extra arrivals.
fn tally(
    published: &HashMap<String, Instant>,
    received: &Received,
    fanout: u64,
) -> anyhow::Result<(Vec<f64>, u64, u64)> {
    let arrivals = received.arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut latencies: Vec<f64> = Vec::with_capacity(published.len());
    let (mut lost, mut duplicates) = (0u64, 0u64);
    for (id, at) in published {
        match arrivals.get(id) {
            Some((n, first)) => {
                latencies.push(first.duration_since(*at).as_secs_f64() * 1000.0);
                duplicates += u64::from(n.saturating_sub(fanout as u32));
                if u64::from(*n) < fanout {
                    lost += 1;
                }
            }
            None => lost += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, lost, duplicates))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs one scenario: `fanout` subscriptions on separate receivers, `events` events.
pub async fn scenario(name: &str, events: u64, fanout: u64, args: &BenchArgs) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let schema = match &args.database_url {
        Some(url) => Some(BenchSchema::create(url, name).await?),
        None => None,
    };
    let mut options = smile_server::ServeOptions::new(dir.path().to_owned());
    options.listen = "127.0.0.1:0".parse()?;
    options.delivery.max_in_flight_per_endpoint = 64;
    options.rate_limit.per_second = 0;
    options.database_url = schema.as_ref().map(|s| s.url.clone());
    let nodes = if schema.is_some() { args.nodes.max(1) } else { 1 };
    let mut servers = Vec::new();
    for _ in 0..nodes {
        servers.push(smile_server::start(options.clone()).await?);
    }
    let key = servers[0].first_start_key.clone().context("a fresh server creates keys")?;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", key.api_key, key.api_secret))
    );
    let received = Arc::new(Received::default());
    let mut receivers = Vec::new();
    for _ in 0..fanout {
        receivers.push(start_receiver(received.clone()).await?);
    }

    let baseline_requests = (events * fanout).clamp(5_000, 50_000);
    let baseline_rate =
        baseline(&format!("http://{}/hook/0", receivers[0]), baseline_requests, args.concurrency).await?;
    eprintln!("[{name}] baseline: {baseline_rate:.0} req/s over {baseline_requests} requests");

    for (i, addr) in receivers.iter().enumerate() {
        create_subscription(servers[0].addr, &auth, &format!("http://{addr}/hook/{i}")).await?;
    }

    let scope = Scope { tenant_id: smile_server::FIRST_TENANT.into(), mode: Mode::Sandbox };
    let published: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.concurrency {
        let (engine, scope, published, next) =
            (servers[p as usize % nodes].engine.clone(), scope.clone(), published.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < events {
                let data = serde_json::json!({"userId": "default-bench", "accountId": "a-bench", "count": 3, "providers": ["bench"]});
                let before = Instant::now();
                let event = engine.publish(&scope, EventType::IncomesAdded, data).await?;
                if let Ok(mut map) = published.lock() {
                    map.insert(event.id, before);
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    eprintln!("[{name}] published {events} events in {publish_secs:.2}s");

    let expected = events * fanout;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut last_report = Instant::now();
    while received.total.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("[{name}] received {}/{expected}", received.total.load(Ordering::Relaxed));
            last_report = Instant::now();
        }
    }
    let delivery_secs = started.elapsed().as_secs_f64();

    let published = published.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let (latencies, lost, duplicates) = tally(&published, &received, fanout)?;
    let deliveries_per_s = received.total.load(Ordering::Relaxed).min(expected) as f64 / delivery_secs;
    for server in servers {
        server.shutdown().await?;
    }
    if let Some(schema) = schema {
        schema.drop().await?;
    }
    Ok(Report {
        scenario: name.to_owned(),
        backend: if args.database_url.is_some() { "postgres" } else { "sqlite" },
        nodes,
        events,
        fanout,
        publish_per_s: events as f64 / publish_secs,
        deliveries_per_s,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        baseline_req_per_s: baseline_rate,
        ratio: deliveries_per_s / baseline_rate,
        lost,
        duplicates,
    })
}

/// Runs the scenarios `args` names and prints one JSON line each.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let all = args.scenario == "all";
    let mut ran = false;
    if all || args.scenario == "single-endpoint" {
        let report = scenario("single-endpoint", args.events, 1, &args).await?;
        println!("{}", serde_json::to_string(&report)?);
        ran = true;
    }
    if all || args.scenario == "fanout" {
        let report = scenario("fanout", args.events / args.fanout.max(1), args.fanout.max(1), &args).await?;
        println!("{}", serde_json::to_string(&report)?);
        ran = true;
    }
    if !ran {
        bail!("unknown scenario `{}`: single-endpoint, fanout or all", args.scenario);
    }
    Ok(())
}
