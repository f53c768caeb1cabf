//! Cluster operations on PostgreSQL, as an operator lives them, under a steady publish load:
//! node restarts with `smile keys create` run between them, a rolling restart of every node,
//! and a node stalled (SIGSTOP) past its lease.

use crate::load::{Published, baseline, http_client, publish_over_http};
use crate::process::{Serve, operator_auth, schema, smile, subscribe, wait_distinct};
use crate::receiver::{self, Received};
use crate::{BenchArgs, Measured, Report, measured, percentile, tally};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Nodes on one database; `bases` is what the load balancer (the publishers) sends to.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
    extra: Vec<String>,
    nodes: Vec<Option<Serve>>,
    bases: Arc<RwLock<Vec<Option<String>>>>,
    sandbox_auth: String,
}

impl Cluster {
    fn start(url: &str, count: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut cluster = Cluster {
            dir,
            url: url.to_owned(),
            extra,
            nodes: Vec::new(),
            bases: Arc::default(),
            sandbox_auth: String::new(),
        };
        for i in 0..count {
            let node = cluster.spawn(i)?;
            if let Some(auth) = &node.sandbox_auth {
                cluster.sandbox_auth = auth.clone();
            }
            cluster.bases.write().map_err(|_| anyhow::anyhow!("poisoned"))?.push(Some(node.base.clone()));
            cluster.nodes.push(Some(node));
        }
        Ok(cluster)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}"))
    }

    fn spawn(&self, i: usize) -> anyhow::Result<Serve> {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        Serve::start_with(&self.data_dir(i), Some(&self.url), &extra)
    }

    fn set_base(&self, i: usize, base: Option<String>) {
        if let Ok(mut bases) = self.bases.write() {
            bases[i] = base;
        }
    }

    /// Takes the node out of the balancer, sends SIGTERM and waits for it to exit; whether it
    /// exited 0.
    async fn stop(&mut self, i: usize) -> anyhow::Result<bool> {
        self.set_base(i, None);
        let Some(mut node) = self.nodes[i].take() else { return Ok(true) };
        signal(node.child.id(), "-TERM")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = node.child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                bail!("node {i} still running a minute after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts the node again; how many tries failed before one succeeded.
    fn restart(&mut self, i: usize) -> anyhow::Result<u32> {
        let mut failures = 0;
        loop {
            match self.spawn(i) {
                Ok(node) => {
                    self.set_base(i, Some(node.base.clone()));
                    self.nodes[i] = Some(node);
                    return Ok(failures);
                }
                Err(error) if failures < 5 => {
                    eprintln!("[cluster] node {i} failed to start: {error:#}");
                    failures += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Runs `smile keys create` against the shared database; whether it succeeded.
    fn keys_create(&self) -> anyhow::Result<bool> {
        let output =
            smile(&self.data_dir(0), Some(&self.url), &["keys", "create", "--tenant", "bench-keys"])?.output()?;
        if !output.status.success() {
            eprintln!("[cluster] keys create failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(output.status.success())
    }

    fn node(&self, i: usize) -> anyhow::Result<&Serve> {
        self.nodes[i].as_ref().context("the node is running")
    }
}

fn signal(pid: u32, which: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill").args([which, &pid.to_string()]).status()?;
    if !status.success() {
        bail!("kill {which} {pid} failed");
    }
    Ok(())
}

/// A steady publisher: `rate` events per second spread over the live nodes, as a load
/// balancer would; a node that refuses the connection is skipped for the next one.
#[derive(Default)]
struct Load {
    published: Published,
    /// Milliseconds from the first try to the acknowledgement.
    latencies: Mutex<Vec<f64>>,
    /// Answers other than 200 (a refused connection only moves on to the next node).
    errors: AtomicU64,
    /// Events no node acknowledged.
    failed: AtomicU64,
    stop: AtomicBool,
}

fn steady(
    load: Arc<Load>,
    bases: Arc<RwLock<Vec<Option<String>>>>,
    auth: String,
    rate: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = http_client();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
        let mut n: usize = 0;
        let mut tasks = Vec::new();
        while !load.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            n += 1;
            let (load, bases, auth, client) = (load.clone(), bases.clone(), auth.clone(), client.clone());
            tasks.push(tokio::spawn(async move { publish_one(&load, &bases, &auth, &client, n).await }));
        }
        for task in tasks {
            let _ = task.await;
        }
    })
}

async fn publish_one(
    load: &Load,
    bases: &RwLock<Vec<Option<String>>>,
    auth: &str,
    client: &crate::load::HttpClient,
    n: usize,
) {
    let begun = Instant::now();
    let body = serde_json::json!({"tenantId": "default", "mode": "SANDBOX", "type": "USER_CREATED",
        "data": {"userId": format!("u{n}")}});
    for round in 0..40 {
        let targets: Vec<Option<String>> = bases.read().map(|b| b.clone()).unwrap_or_default();
        let count = targets.len().max(1);
        let Some(base) = targets[(n + round) % count].clone() else { continue };
        let Ok(request) = hyper::Request::post(format!("{base}/v1/operator/events"))
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(Full::new(Bytes::from(body.to_string())))
        else {
            return;
        };
        let Ok(response) = client.request(request).await else { continue };
        let status = response.status();
        let Ok(bytes) = response.into_body().collect().await.map(|b| b.to_bytes()) else { continue };
        if !status.is_success() {
            load.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("[cluster] publish answered {status}: {}", String::from_utf8_lossy(&bytes));
            continue;
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if let Some(id) = answer["data"]["id"].as_str()
            && let Ok(mut published) = load.published.lock()
        {
            published.insert(id.to_owned(), begun);
        }
        if let Ok(mut latencies) = load.latencies.lock() {
            latencies.push(begun.elapsed().as_secs_f64() * 1000.0);
        }
        return;
    }
    load.failed.fetch_add(1, Ordering::Relaxed);
}

/// What the operations did, beside the load's figures.
#[derive(Default)]
struct Operations {
    restarts: u32,
    failed_starts: u32,
    unclean_exits: u32,
    keys_created: u32,
    failed_keys_create: u32,
}

/// The scenario's shape: how many nodes, what each round of operations does.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Chaos {
    /// Three nodes; restart them in turn, with a `keys create` after each restart.
    Restarts,
    /// Restart every node once, one after another.
    Rolling,
}

/// Restarts or a rolling restart under load, then every acknowledged event checked.
pub async fn operations(args: &BenchArgs, name: &str, chaos: Chaos) -> anyhow::Result<Report> {
    let schema = schema(args, name).await?.context("this scenario needs --database-url (PostgreSQL)")?;
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let raw = baseline(&format!("http://{addr}/hook/0"), 20_000, args.concurrency).await?;
    let count = if chaos == Chaos::Rolling { args.rolling_nodes.max(2) } else { 3 };
    let mut cluster = Cluster::start(&schema.url, count, &[])?;
    let operator = operator_auth(&cluster.data_dir(0), Some(&schema.url))?;
    subscribe(cluster.node(0)?, &format!("http://{addr}/hook/0")).await?;

    let load = Arc::new(Load::default());
    let publisher = steady(load.clone(), cluster.bases.clone(), operator, args.rate);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ops = Operations::default();
    let rounds = if chaos == Chaos::Rolling { count } else { args.restarts as usize };
    for round in 0..rounds {
        let i = round % count;
        if !cluster.stop(i).await? {
            ops.unclean_exits += 1;
        }
        ops.failed_starts += cluster.restart(i)?;
        ops.restarts += 1;
        if chaos == Chaos::Restarts {
            if cluster.keys_create()? {
                ops.keys_created += 1;
            } else {
                ops.failed_keys_create += 1;
            }
        }
        eprintln!(
            "[{name}] round {}/{rounds}: {} published",
            round + 1,
            load.latencies.lock().map(|l| l.len()).unwrap_or(0)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop.store(true, Ordering::Relaxed);
    publisher.await?;
    let expected = load.published.lock().map(|p| p.len()).unwrap_or(0);
    wait_distinct(name, &received, expected, args).await;
    let secs = started.elapsed().as_secs_f64();

    let mut latencies = load.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    let publish_rate = latencies.len() as f64 / secs;
    let m = Measured {
        name,
        published: &load.published,
        received: &received,
        fanout: 1,
        secs,
        baseline: raw,
        publish_per_s: publish_rate,
    };
    let mut report = measured(args, m)?;
    let published = load.published.lock().map(|p| p.clone()).unwrap_or_default();
    let (delivery, _, _) = tally(&published, &received, 1);
    let within_1s = delivery.iter().filter(|ms| **ms <= 1000.0).count();
    report.nodes = count;
    report.publish_p99_ms = Some(percentile(&latencies, 0.99));
    report.max_ms = delivery.last().copied();
    report.delivered_within_1s_pct = Some(within_1s as f64 * 100.0 / delivery.len().max(1) as f64);
    report.duplicate_pct = Some(report.duplicates as f64 * 100.0 / published.len().max(1) as f64);
    report.publish_errors = Some(load.errors.load(Ordering::Relaxed) + load.failed.load(Ordering::Relaxed));
    report.restarts = Some(ops.restarts);
    report.failed_starts = Some(ops.failed_starts);
    report.unclean_exits = Some(ops.unclean_exits);
    if chaos == Chaos::Restarts {
        report.keys_created = Some(ops.keys_created);
        report.failed_keys_create = Some(ops.failed_keys_create);
    }
    drop(cluster);
    schema.drop().await?;
    Ok(report)
}

/// A node stopped (SIGSTOP) past its lease with deliveries queued, then resumed: what it
/// sends after resuming is sent twice.
pub async fn stall(args: &BenchArgs) -> anyhow::Result<Report> {
    let name = "stall";
    const EVENTS: u64 = 268;
    let schema = schema(args, name).await?.context("this scenario needs --database-url (PostgreSQL)")?;
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let raw = baseline(&format!("http://{addr}/hook/0"), 20_000, args.concurrency).await?;
    received.delay_ms.store(50, Ordering::Relaxed);
    let lease = "5s";
    let cluster = Cluster::start(&schema.url, 2, &["--lease", lease, "--max-in-flight", "4"])?;
    let operator = operator_auth(&cluster.data_dir(0), Some(&schema.url))?;
    subscribe(cluster.node(0)?, &format!("http://{addr}/hook/0")).await?;
    // Publishing through the first node makes it the lane's holder.
    let started = Instant::now();
    let (published, publish_rate) = publish_over_http(&cluster.node(0)?.base, &operator, EVENTS, 8).await?;
    while received.distinct() < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stalled = cluster.node(0)?.child.id();
    signal(stalled, "-STOP")?;
    eprintln!("[{name}] node 0 stopped with {} of {EVENTS} delivered; lease {lease}", received.distinct());
    wait_distinct(name, &received, EVENTS as usize, args).await;
    eprintln!("[{name}] the other node delivered the rest after {:?}", started.elapsed());
    signal(stalled, "-CONT")?;
    // What a resumed node would send, it sends at once; a few seconds show it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = Measured {
        name,
        published: &published,
        received: &received,
        fanout: 1,
        secs: started.elapsed().as_secs_f64(),
        baseline: raw,
        publish_per_s: publish_rate,
    };
    let mut report = measured(args, m)?;
    report.nodes = 2;
    report.duplicate_pct = Some(report.duplicates as f64 * 100.0 / EVENTS as f64);
    drop(cluster);
    schema.drop().await?;
    Ok(report)
}
