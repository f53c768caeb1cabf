//! `smile bench`: real servers on temporary databases, real receivers on loopback, and one
//! JSON line per scenario with a raw HTTP baseline measured in the same run.
//!
//! - `inproc`: the engine in this process: `single-endpoint`, `fanout`, `fanout-1000`,
//!   `isolation`, `latency`.
//! - `process`: `smile serve` as a process of its own: `http` (a separate load generator
//!   publishing over HTTP) and `backlog` (a million pending, SIGKILL, restart, drain).
//! - `cluster`: nodes on one PostgreSQL database under a steady load: `restarts` (with
//!   `keys create` between them), `rolling` (every node restarted in turn), `stall` (SIGSTOP
//!   past the lease).
//! - `receiver`: counting and hostile receivers; `load`: the load generators;
//!   `relay`: the `http` scenario's ceiling (a node that stores and signs nothing);
//!   `schema`: a PostgreSQL schema per scenario.

mod cluster;
mod generator;
mod inproc;
mod load;
mod process;
mod receiver;
mod relay;
mod schema;

pub use generator::{GeneratorArgs, generate};
pub use relay::{RelayArgs, relay};

use anyhow::bail;
use receiver::Received;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

/// Options of `smile bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenarios to run, comma-separated: single-endpoint, fanout, http, fanout-1000, backlog,
    /// isolation, latency, and on PostgreSQL restarts, rolling, stall; or all.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Events published by the in-process scenarios.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Subscriptions each event goes to in the fanout scenario.
    #[arg(long, default_value_t = 4)]
    pub fanout: u64,
    /// Events the http scenario publishes.
    #[arg(long, default_value_t = 50_000)]
    pub http_events: u64,
    /// Pending deliveries the backlog scenario builds up.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog_events: u64,
    /// Concurrent publishers (and baseline connections).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Run on PostgreSQL (a fresh schema in this database, dropped afterwards) instead of SQLite.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Nodes sharing the PostgreSQL database in the in-process scenarios.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Events per second of the steady load under the cluster scenarios (restarts, rolling).
    #[arg(long, default_value_t = 250)]
    pub rate: u64,
    /// Node restarts (each followed by a `keys create`) in the restarts scenario.
    #[arg(long, default_value_t = 20)]
    pub restarts: u64,
    /// Nodes the rolling scenario restarts one after another.
    #[arg(long, default_value_t = 10)]
    pub rolling_nodes: usize,
}

impl BenchArgs {
    fn backend(&self) -> &'static str {
        if self.database_url.is_some() { "postgres" } else { "sqlite" }
    }
}

/// The one JSON line a scenario ends with; the optional fields belong to some scenarios.
#[derive(Serialize, Debug, Default)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_peak_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_restart_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_after_restart_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_per_s: Option<f64>,
    /// `backlog`: of `duplicates`, arrivals again of events that had arrived before the
    /// SIGKILL (answered, their outcomes not yet recorded: sent again, at least once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates_across_the_kill: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alone_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beside_hostile_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// `http`: the generator's client run inside the bench process instead, a stricter ruler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_process_baseline_req_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_process_ratio: Option<f64>,
    /// `http`: events/s through `smile bench-relay` (stores and signs nothing) with the same
    /// generator and receiver, and that ÷ the raw baseline: the most any node could reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_ceiling_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_ceiling_ratio: Option<f64>,
    /// Of the events' first deliveries, the slowest (ms after the publish began).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_within_1s_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_pct: Option<f64>,
    /// Publishes answered with an error, or acknowledged by no node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// Node starts that failed (and were tried again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_starts: Option<u32>,
    /// Nodes that did not exit 0 on SIGTERM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unclean_exits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_created: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_keys_create: Option<u32>,
}

/// What a scenario measured, before it becomes its report line.
struct Measured<'a> {
    name: &'a str,
    published: &'a load::Published,
    received: &'a Received,
    fanout: u64,
    /// From the first publish to the last arrival.
    secs: f64,
    baseline: f64,
    publish_per_s: f64,
}

/// The report line of a scenario: rates, latencies, losses and repeats.
fn measured(args: &BenchArgs, m: Measured) -> anyhow::Result<Report> {
    let published = m.published.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let (latencies, lost, duplicates) = tally(&published, m.received, m.fanout);
    let expected = published.len() as u64 * m.fanout;
    let delivered = m.received.total.load(std::sync::atomic::Ordering::Relaxed).min(expected) as f64 / m.secs;
    Ok(Report {
        scenario: m.name.to_owned(),
        backend: args.backend(),
        nodes: if args.database_url.is_some() { args.nodes.max(1) } else { 1 },
        events: published.len() as u64,
        fanout: m.fanout,
        publish_per_s: m.publish_per_s,
        deliveries_per_s: delivered,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        baseline_req_per_s: m.baseline,
        ratio: delivered / m.baseline,
        lost,
        duplicates,
        ..Report::default()
    })
}

/// Latencies (sorted, ms) of first arrivals, events some receiver missed, extra arrivals.
fn tally(published: &HashMap<String, Instant>, received: &Received, fanout: u64) -> (Vec<f64>, u64, u64) {
    let Ok(arrivals) = received.arrivals.lock() else {
        return (Vec::new(), published.len() as u64, 0);
    };
    let mut latencies: Vec<f64> = Vec::with_capacity(published.len());
    let (mut lost, mut duplicates) = (0u64, 0u64);
    for (id, at) in published {
        match arrivals.get(id) {
            Some((n, first)) => {
                latencies.push(first.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                duplicates += u64::from(n.saturating_sub(fanout as u32));
                if u64::from(*n) < fanout {
                    lost += 1;
                }
            }
            None => lost += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, lost, duplicates)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

const SCENARIOS: [&str; 7] = ["single-endpoint", "fanout", "http", "fanout-1000", "isolation", "latency", "backlog"];
/// Scenarios of several nodes on one PostgreSQL database.
const CLUSTER_SCENARIOS: [&str; 3] = ["restarts", "rolling", "stall"];

/// Runs the scenarios `args` names and prints one JSON line each.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let names: Vec<&str> = match args.scenario.as_str() {
        "all" if args.database_url.is_some() => SCENARIOS.iter().chain(&CLUSTER_SCENARIOS).copied().collect(),
        "all" => SCENARIOS.to_vec(),
        list => list.split(',').map(str::trim).collect(),
    };
    let known = |n: &&str| SCENARIOS.contains(n) || CLUSTER_SCENARIOS.contains(n);
    if let Some(unknown) = names.iter().find(|n| !known(n)) {
        bail!("unknown scenario `{unknown}`; one of {}, {} or all", SCENARIOS.join(", "), CLUSTER_SCENARIOS.join(", "));
    }
    let mut max_rate = None;
    for name in names {
        let report = match name {
            "single-endpoint" => inproc::burst(name, args.events, 1, &args).await?,
            "fanout" => inproc::burst(name, args.events / args.fanout.max(1), args.fanout.max(1), &args).await?,
            "fanout-1000" => inproc::fanout_1000(&args).await?,
            "isolation" => inproc::isolation(&args).await?,
            "latency" => inproc::latency(&args, max_rate).await?,
            "http" => process::http(&args).await?,
            "restarts" => cluster::operations(&args, name, cluster::Chaos::Restarts).await?,
            "rolling" => cluster::operations(&args, name, cluster::Chaos::Rolling).await?,
            "stall" => cluster::stall(&args).await?,
            _ => process::backlog(&args).await?,
        };
        if name == "single-endpoint" {
            max_rate = Some(report.deliveries_per_s);
        }
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
