//! Scenarios with the engine in this process: publishes go straight to `Engine::publish`,
//! as the sandbox's do.

use crate::load::{Published, baseline, http_client};
use crate::receiver::{self, Hostile, Received};
use crate::schema::BenchSchema;
use crate::{BenchArgs, Measured, Report, measured, percentile, tally};
use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use smile_core::{EventType, Mode};
use smile_server::{Running, ServeOptions};
use smile_store::Scope;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Servers on a temporary database, with the sandbox key's Basic auth.
struct Bench {
    servers: Vec<Running>,
    schema: Option<BenchSchema>,
    auth: String,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(args: &BenchArgs, name: &str) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let schema = match &args.database_url {
            Some(url) => Some(BenchSchema::create(url, name).await?),
            None => None,
        };
        let mut options = ServeOptions::new(dir.path().to_owned());
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
        Ok(Bench { servers, schema, auth, _dir: dir })
    }

    async fn subscribe(&self, url: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "name": "bench", "url": url, "eventTypes": ["ALL_EVENTS"], "active": true, "secret": "bench-secret"
        });
        let request = hyper::Request::post(format!("http://{}/v1/webhooks", self.servers[0].addr))
            .header("content-type", "application/json")
            .header("authorization", &self.auth)
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = http_client().request(request).await?;
        if !response.status().is_success() {
            bail!("creating a subscription failed: {}", response.status());
        }
        Ok(())
    }

    /// Publishes `events` events from `concurrency` publishers spread over the nodes;
    /// returns when each was acknowledged, and how long that took.
    async fn publish(&self, events: u64, concurrency: u64) -> anyhow::Result<(Published, f64)> {
        let published: Published = Arc::default();
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..concurrency {
            let engine = self.servers[p as usize % self.servers.len()].engine.clone();
            let (published, next) = (published.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < events {
                    publish_one(&engine, &published).await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok((published, started.elapsed().as_secs_f64()))
    }

    async fn stop(self) -> anyhow::Result<()> {
        for server in self.servers {
            server.shutdown(std::time::Duration::from_secs(5)).await?;
        }
        if let Some(schema) = self.schema {
            schema.drop().await?;
        }
        Ok(())
    }
}

async fn publish_one(engine: &smile_delivery::Engine, published: &Published) -> anyhow::Result<f64> {
    let scope = Scope { tenant_id: smile_server::FIRST_TENANT.into(), mode: Mode::Sandbox };
    let data =
        serde_json::json!({"userId": "default-bench", "accountId": "a-bench", "count": 3, "providers": ["bench"]});
    let before = Instant::now();
    let event = engine.publish(&scope, EventType::IncomesAdded, data).await?;
    let took = before.elapsed().as_secs_f64() * 1000.0;
    if let Ok(mut map) = published.lock() {
        map.insert(event.id, before);
    }
    Ok(took)
}

/// Waits until `received` has `expected` deliveries; returns the seconds since `started`
/// at which the last one came (or the timeout).
async fn wait_for(name: &str, received: &Received, expected: u64, started: Instant, args: &BenchArgs) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut last_report = Instant::now();
    while received.total.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("[{name}] received {}/{expected}", received.total.load(Ordering::Relaxed));
            last_report = Instant::now();
        }
    }
    started.elapsed().as_secs_f64()
}

async fn measure_baseline(name: &str, url: &str, requests: u64, args: &BenchArgs) -> anyhow::Result<f64> {
    let rate = baseline(url, requests.clamp(5_000, 50_000), args.concurrency).await?;
    eprintln!("[{name}] baseline: {rate:.0} req/s");
    Ok(rate)
}

fn report(name: &str, args: &BenchArgs, events: u64, fanout: u64) -> Report {
    Report {
        scenario: name.to_owned(),
        backend: args.backend(),
        nodes: if args.database_url.is_some() { args.nodes.max(1) } else { 1 },
        events,
        fanout,
        ..Report::default()
    }
}

/// `events` events, each to `fanout` subscriptions on receivers of their own.
pub async fn burst(name: &str, events: u64, fanout: u64, args: &BenchArgs) -> anyhow::Result<Report> {
    let bench = Bench::start(args, name).await?;
    let received = Arc::new(Received::default());
    let mut receivers = Vec::new();
    for _ in 0..fanout {
        receivers.push(receiver::counting(received.clone()).await?);
    }
    let baseline = measure_baseline(name, &format!("http://{}/hook/0", receivers[0]), events * fanout, args).await?;
    for (i, addr) in receivers.iter().enumerate() {
        bench.subscribe(&format!("http://{addr}/hook/{i}")).await?;
    }
    let started = Instant::now();
    let (published, publish_secs) = bench.publish(events, args.concurrency).await?;
    eprintln!("[{name}] published {events} events in {publish_secs:.2}s");
    let secs = wait_for(name, &received, events * fanout, started, args).await;
    bench.stop().await?;
    let publish_per_s = events as f64 / publish_secs;
    let m = Measured { name, published: &published, received: &received, fanout, secs, baseline, publish_per_s };
    measured(args, m)
}

/// 100 events published one after another, each to 1,000 subscriptions.
pub async fn fanout_1000(args: &BenchArgs) -> anyhow::Result<Report> {
    const SUBSCRIPTIONS: u64 = 1000;
    const EVENTS: u64 = 100;
    let name = "fanout-1000";
    let bench = Bench::start(args, name).await?;
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let baseline = measure_baseline(name, &format!("http://{addr}/hook/0"), 50_000, args).await?;
    for i in 0..SUBSCRIPTIONS {
        bench.subscribe(&format!("http://{addr}/hook/{i}")).await?;
    }
    let published: Published = Arc::default();
    let engine = bench.servers[0].engine.clone();
    let mut publish_ms = Vec::new();
    let started = Instant::now();
    for _ in 0..EVENTS {
        publish_ms.push(publish_one(&engine, &published).await?);
    }
    let publish_secs = started.elapsed().as_secs_f64();
    eprintln!("[{name}] published {EVENTS} events in {publish_secs:.2}s");
    let expected = EVENTS * SUBSCRIPTIONS;
    let secs = wait_for(name, &received, expected, started, args).await;
    publish_ms.sort_by(f64::total_cmp);
    bench.stop().await?;
    let publish_per_s = EVENTS as f64 / publish_secs;
    let m = Measured {
        name,
        published: &published,
        received: &received,
        fanout: SUBSCRIPTIONS,
        secs,
        baseline,
        publish_per_s,
    };
    Ok(Report { publish_p99_ms: Some(percentile(&publish_ms, 0.99)), ..measured(args, m)? })
}

/// One healthy endpoint's deliveries/s for `events` events, with the hostile endpoints
/// subscribed to the same events or not.
async fn healthy_rate(args: &BenchArgs, name: &str, hostile: bool) -> anyhow::Result<(f64, f64, u64)> {
    let bench = Bench::start(args, name).await?;
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let baseline_rate = measure_baseline(name, &format!("http://{addr}/hook/0"), args.events, args).await?;
    bench.subscribe(&format!("http://{addr}/hook/0")).await?;
    if hostile {
        for kind in Hostile::ALL {
            bench.subscribe(&kind.start().await?).await?;
        }
    }
    let started = Instant::now();
    let (published, _) = bench.publish(args.events, args.concurrency).await?;
    let secs = wait_for(name, &received, args.events, started, args).await;
    let published = published.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let (_, lost, _) = tally(&published, &received, 1);
    let rate = received.total.load(Ordering::Relaxed).min(args.events) as f64 / secs;
    eprintln!("[{name}] healthy endpoint: {rate:.0} deliveries/s");
    bench.stop().await?;
    Ok((rate, baseline_rate, lost))
}

/// Rounds of `isolation`: on this noisy machine one phase alone and then one beside hostile
/// endpoints gave ratios from 0.59 to 1.21 in one afternoon, as the machine's speed drifted
/// between the two phases.
const ISOLATION_ROUNDS: usize = 3;

/// A healthy endpoint alone, then beside hang, trickle, 500, refused and 410 endpoints, in
/// turns, [`ISOLATION_ROUNDS`] times. The ratio is the median of each round's (adjacent phases
/// share the machine's speed of the moment); the rates are the medians of each kind of phase.
pub async fn isolation(args: &BenchArgs) -> anyhow::Result<Report> {
    let (mut rounds, mut lost) = (Vec::new(), 0);
    for round in 1..=ISOLATION_ROUNDS {
        let (alone, _, _) = healthy_rate(args, "isolation-alone", false).await?;
        let (beside, baseline, round_lost) = healthy_rate(args, "isolation-hostile", true).await?;
        eprintln!("[isolation] round {round}: ratio {:.2}", beside / alone);
        rounds.push((alone, beside, baseline));
        lost += round_lost;
    }
    let median = |of: fn(&(f64, f64, f64)) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(of).collect();
        values.sort_by(f64::total_cmp);
        percentile(&values, 0.5)
    };
    let (beside, baseline_rate) = (median(|r| r.1), median(|r| r.2));
    Ok(Report {
        publish_per_s: 0.0,
        deliveries_per_s: beside,
        baseline_req_per_s: baseline_rate,
        ratio: beside / baseline_rate,
        lost,
        alone_per_s: Some(median(|r| r.0)),
        beside_hostile_per_s: Some(beside),
        isolation_ratio: Some(median(|r| r.1 / r.0)),
        ..report("isolation", args, args.events, 1 + Hostile::ALL.len() as u64)
    })
}

/// Publishes at a fixed 20 % of the measured maximum for ten seconds.
pub async fn latency(args: &BenchArgs, max_rate: Option<f64>) -> anyhow::Result<Report> {
    let name = "latency";
    let max = match max_rate {
        Some(rate) => rate,
        None => burst("latency-max", args.events / 2, 1, args).await?.deliveries_per_s,
    };
    let rate = (max * 0.2).max(1.0);
    let events = (rate * 10.0) as u64;
    let bench = Bench::start(args, name).await?;
    let received = Arc::new(Received::default());
    let addr = receiver::counting(received.clone()).await?;
    let baseline = measure_baseline(name, &format!("http://{addr}/hook/0"), events, args).await?;
    bench.subscribe(&format!("http://{addr}/hook/0")).await?;
    let published: Published = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..events {
        ticks.tick().await;
        let (engine, published) = (bench.servers[0].engine.clone(), published.clone());
        tasks.push(tokio::spawn(async move { publish_one(&engine, &published).await }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = wait_for(name, &received, events, started, args).await;
    bench.stop().await?;
    let m =
        Measured { name, published: &published, received: &received, fanout: 1, secs, baseline, publish_per_s: rate };
    Ok(Report { rate_per_s: Some(rate), ..measured(args, m)? })
}
