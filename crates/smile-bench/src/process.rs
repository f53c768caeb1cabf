//! Scenarios with `smile serve` as a process of its own, as an operator runs it: publishing
//! over HTTP from a generator process, and a backlog that survives SIGKILL.

use crate::generator;
use crate::load::{baseline, publish_over_http};
use crate::receiver::{self, Received};
use crate::schema::BenchSchema;
use crate::{BenchArgs, Measured, Report, measured};
use anyhow::{Context, bail};
use base64::Engine as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A running `smile serve`.
pub(crate) struct Serve {
    pub child: Child,
    pub base: String,
    pub sandbox_auth: Option<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn basic(key: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}")))
}

/// The `smile` that runs the nodes: this one, or the build `SMILE_BENCH_SERVER` names (to
/// measure an earlier build's nodes with the same driver, in the same run).
pub(crate) fn smile(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> anyhow::Result<Command> {
    let binary = match std::env::var_os("SMILE_BENCH_SERVER") {
        Some(path) => path.into(),
        None => std::env::current_exe().context("finding the smile binary")?,
    };
    let mut command = Command::new(binary);
    command.args(args).arg("--data-dir").arg(data_dir).env("SMILE_LOG", "warn");
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    Ok(command)
}

impl Serve {
    fn start(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<Serve> {
        Serve::start_with(data_dir, database_url, &[])
    }

    /// Starts a node with `extra` arguments; fails if it exits before listening.
    pub(crate) fn start_with(data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> anyhow::Result<Serve> {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"];
        if !extra.contains(&"--max-in-flight") {
            args.extend_from_slice(&["--max-in-flight", "64"]);
        }
        args.extend_from_slice(extra);
        let mut child = smile(data_dir, database_url, &args)?.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut key, mut secret) = (None, None);
        let base = loop {
            let Some(line) = lines.next() else { bail!("smile serve exited before listening") };
            let line = line?;
            if let Some(v) = line.strip_prefix("API key: ") {
                key = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("API secret: ") {
                secret = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("Listening on ") {
                break v.to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let sandbox_auth = key.zip(secret).map(|(k, s)| basic(&k, &s));
        Ok(Serve { child, base, sandbox_auth })
    }

    fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id()).unwrap_or(0.0)
    }
}

/// Resident memory of a process, from /proc.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) fn operator_auth(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<String> {
    let output = smile(data_dir, database_url, &["keys", "create", "--operator"])?.output()?;
    if !output.status.success() {
        bail!("smile keys create: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    let value = |prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_owned);
    Ok(basic(&value("API key: ").context("key")?, &value("API secret: ").context("secret")?))
}

pub(crate) async fn subscribe(server: &Serve, url: &str) -> anyhow::Result<()> {
    let auth = server.sandbox_auth.as_deref().context("a first start prints the sandbox keys")?;
    let body = serde_json::json!({"name": "bench", "url": url, "eventTypes": ["ALL_EVENTS"], "active": true,
        "secret": "bench-secret"});
    let response = reqwest_like_post(&format!("{}/v1/webhooks", server.base), auth, body).await?;
    if !(200..300).contains(&response) {
        bail!("creating a subscription answered {response}");
    }
    Ok(())
}

async fn reqwest_like_post(url: &str, auth: &str, body: serde_json::Value) -> anyhow::Result<u16> {
    use http_body_util::{BodyExt, Full};
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(Full::new(bytes::Bytes::from(body.to_string())))?;
    let response = crate::load::http_client().request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// Waits until `received` has `expected` distinct events, printing progress.
pub(crate) async fn wait_distinct(name: &str, received: &Received, expected: usize, args: &BenchArgs) {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut last_report = Instant::now();
    while received.distinct() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("[{name}] received {}/{expected}", received.distinct());
            last_report = Instant::now();
        }
    }
}

pub(crate) async fn schema(args: &BenchArgs, name: &str) -> anyhow::Result<Option<BenchSchema>> {
    Ok(match &args.database_url {
        Some(url) => Some(BenchSchema::create(url, name).await?),
        None => None,
    })
}

/// A separate load generator publishing over HTTP into `smile serve`, a fast receiver.
pub async fn http(args: &BenchArgs) -> anyhow::Result<Report> {
    let name = "http";
    let dir = tempfile::tempdir()?;
    let schema = schema(args, name).await?;
    let url = schema.as_ref().map(|s| s.url.clone());
    let server = Serve::start(dir.path(), url.as_deref())?;
    let operator = operator_auth(dir.path(), url.as_deref())?;
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let hook = format!("http://{addr}/hook/0");
    let (raw, _) = generator::run(&hook, args.http_events, args.concurrency, None).await?;
    eprintln!("[{name}] the generator (a process of its own) into the receiver: {raw:.0} req/s");
    // The stricter ruler of earlier runs, kept for comparison: the same client in this
    // process, where it shares a scheduler with the receiver.
    let in_process = baseline(&hook, args.http_events, args.concurrency).await?;
    eprintln!("[{name}] the same client in this process into the receiver: {in_process:.0} req/s");
    let ceiling = relay_ceiling(args).await?;
    eprintln!("[{name}] through a relay that stores and signs nothing: {ceiling:.0} events/s");
    subscribe(&server, &hook).await?;
    let started = Instant::now();
    let (publish_rate, published) =
        generator::run(&server.base, args.http_events, args.concurrency, Some(&operator)).await?;
    eprintln!("[{name}] published {} events at {publish_rate:.0}/s", args.http_events);
    wait_distinct(name, &received, args.http_events as usize, args).await;
    let secs = started.elapsed().as_secs_f64();
    let m = Measured {
        name,
        published: &published,
        received: &received,
        fanout: 1,
        secs,
        baseline: raw,
        publish_per_s: publish_rate,
    };
    let mut report = measured(args, m)?;
    report.in_process_baseline_req_per_s = Some(in_process);
    report.in_process_ratio = Some(report.deliveries_per_s / in_process);
    report.relay_ceiling_per_s = Some(ceiling);
    report.relay_ceiling_ratio = Some(ceiling / raw);
    drop(server);
    if let Some(schema) = schema {
        schema.drop().await?;
    }
    Ok(report)
}

/// Events/s the same generator gets delivered through `smile bench-relay` into a receiver of
/// its own: publish to the last arrival, as the scenario measures a node.
async fn relay_ceiling(args: &BenchArgs) -> anyhow::Result<f64> {
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let binary = std::env::current_exe().context("finding the smile binary")?;
    let mut child = Command::new(binary)
        .args(["bench-relay", "--target", &format!("http://{addr}/hook/0")])
        .stdout(Stdio::piped())
        .spawn()?;
    let result = async {
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = match lines.next() {
            Some(line) => line?.strip_prefix("Listening on ").context("the relay's first line")?.to_owned(),
            None => bail!("the relay exited before listening"),
        };
        let started = Instant::now();
        generator::run(&base, args.http_events, args.concurrency, Some("none")).await?;
        wait_distinct("http relay", &received, args.http_events as usize, args).await;
        let delivered = received.distinct();
        if delivered < args.http_events as usize {
            bail!("the relay delivered {delivered} of {} events", args.http_events);
        }
        Ok(delivered as f64 / started.elapsed().as_secs_f64())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Samples a process's resident memory until told to stop; returns the peak.
fn watch_rss(pid: u32) -> (Arc<std::sync::atomic::AtomicBool>, tokio::task::JoinHandle<f64>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let peak = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while !flag.load(Ordering::Relaxed) {
            peak = peak.max(rss_mib(pid).unwrap_or(0.0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    (stop, peak)
}

/// A million pending deliveries for an endpoint that answers in a second; SIGKILL; restart;
/// then the endpoint recovers and the backlog drains.
pub async fn backlog(args: &BenchArgs) -> anyhow::Result<Report> {
    let name = "backlog";
    let events = args.backlog_events;
    let dir = tempfile::tempdir()?;
    let schema = schema(args, name).await?;
    let url = schema.as_ref().map(|s| s.url.clone());
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let raw = baseline(&format!("http://{addr}/hook/0"), 50_000, args.concurrency).await?;
    received.delay_ms.store(1000, Ordering::Relaxed);

    let server = Serve::start(dir.path(), url.as_deref())?;
    let operator = operator_auth(dir.path(), url.as_deref())?;
    subscribe(&server, &format!("http://{addr}/hook/0")).await?;
    let (stop, peak) = watch_rss(server.child.id());
    let (published, publish_rate) = publish_over_http(&server.base, &operator, events, args.concurrency).await?;
    eprintln!("[{name}] published {events} events at {publish_rate:.0}/s; RSS {:.0} MiB", server.rss_mib());
    stop.store(true, Ordering::Relaxed);
    let rss_peak = peak.await?;
    drop(server); // SIGKILL
    let arrived_before_kill = received.ids();

    let restarted_at = Instant::now();
    let server = Serve::start(dir.path(), url.as_deref())?;
    let health = crate::load::http_client();
    loop {
        let request = hyper::Request::get(format!("{}/health", server.base)).body(Default::default())?;
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(1), health.request(request)).await
            && response.status().is_success()
        {
            break;
        }
        if restarted_at.elapsed() > Duration::from_secs(60) {
            bail!("/health did not answer within a minute of the restart");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let health_ms = restarted_at.elapsed().as_secs_f64() * 1000.0;
    let (stop, peak) = watch_rss(server.child.id());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let rss_restart = peak.await?;
    eprintln!("[{name}] restarted: /health after {health_ms:.0} ms, RSS {rss_restart:.0} MiB");

    let before = received.distinct();
    received.delay_ms.store(0, Ordering::Relaxed);
    let drain_started = Instant::now();
    wait_distinct(name, &received, events as usize, args).await;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let drain = (received.distinct() - before) as f64 / drain_secs;
    let m = Measured {
        name,
        published: &published,
        received: &received,
        fanout: 1,
        secs: drain_secs,
        baseline: raw,
        publish_per_s: publish_rate,
    };
    let mut report = measured(args, m)?;
    drop(server);
    if let Some(schema) = schema {
        schema.drop().await?;
    }
    report.deliveries_per_s = drain;
    report.ratio = drain / raw;
    report.rss_peak_mib = Some(rss_peak);
    report.rss_after_restart_mib = Some(rss_restart);
    report.health_after_restart_ms = Some(health_ms);
    report.drain_per_s = Some(drain);
    report.duplicates_across_the_kill = Some(received.extra_arrivals(&arrived_before_kill));
    Ok(report)
}
