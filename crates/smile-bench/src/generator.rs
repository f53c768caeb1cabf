//! The `http` scenario's load generator as a process of its own (`smile bench-generator`), as
//! issue 8 specifies it: the same generator measures the raw rate into the receiver and
//! publishes into `smile serve`, and neither shares a process (or its scheduler) with the
//! receiver or the server.
//!
//! It prints one line per acknowledged publish, `id<TAB>microseconds since the Unix epoch`
//! (when that publish began), then `per_s<TAB>rate`.

use crate::load::{Published, baseline, publish_over_http};
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the publishing generator finds the operator's `Authorization` header: not on the
/// command line, where every local user can read it.
const AUTH_VAR: &str = "SMILE_BENCH_AUTH";

/// Options of `smile bench-generator`.
#[derive(clap::Args, Debug, Clone)]
pub struct GeneratorArgs {
    /// The receiver's URL (raw requests), or the server's base URL with `--publish`.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub requests: u64,
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Publish events through `POST {url}/v1/operator/events` with the Authorization header
    /// in `SMILE_BENCH_AUTH`.
    #[arg(long)]
    pub publish: bool,
}

/// Runs the generator and prints what it did (see the module's doc).
pub async fn generate(args: GeneratorArgs) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let rate = if args.publish {
        let auth = std::env::var(AUTH_VAR).with_context(|| format!("{AUTH_VAR} is not set"))?;
        let (published, rate) = publish_over_http(&args.url, &auth, args.requests, args.concurrency).await?;
        let clock = Clock::now();
        let published = published.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for (id, begun) in published.iter() {
            writeln!(out, "{id}\t{}", clock.unix_us(*begun))?;
        }
        rate
    } else {
        baseline(&args.url, args.requests, args.concurrency).await?
    };
    writeln!(out, "per_s\t{rate}")?;
    Ok(out.flush()?)
}

/// Runs `smile bench-generator` (this binary) and reads its rate and, when publishing, the
/// acknowledged events with when each publish began on this process's clock.
pub(crate) async fn run(
    url: &str,
    requests: u64,
    concurrency: u64,
    publish_auth: Option<&str>,
) -> anyhow::Result<(f64, Published)> {
    let binary = std::env::current_exe().context("finding the smile binary")?;
    let mut command = tokio::process::Command::new(binary);
    command.args(["bench-generator", "--url", url, "--requests", &requests.to_string()]);
    command.args(["--concurrency", &concurrency.to_string()]);
    if let Some(auth) = publish_auth {
        command.arg("--publish").env(AUTH_VAR, auth);
    }
    let output = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true).output().await?;
    if !output.status.success() {
        bail!("the load generator failed ({})", output.status);
    }
    let clock = Clock::now();
    let mut published = HashMap::new();
    let mut rate = None;
    for line in String::from_utf8(output.stdout)?.lines() {
        let (key, value) = line.split_once('\t').with_context(|| format!("a generator line: {line}"))?;
        if key == "per_s" {
            rate = Some(value.parse()?);
        } else {
            published.insert(key.to_owned(), clock.instant(value.parse()?));
        }
    }
    Ok((rate.context("the generator printed no rate")?, std::sync::Arc::new(std::sync::Mutex::new(published))))
}

/// This process's monotonic clock against the wall clock both processes share.
struct Clock {
    instant: Instant,
    unix_us: u64,
}

impl Clock {
    fn now() -> Self {
        let unix_us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
        Clock { instant: Instant::now(), unix_us }
    }

    fn unix_us(&self, at: Instant) -> u64 {
        self.unix_us.saturating_sub(self.instant.saturating_duration_since(at).as_micros() as u64)
    }

    fn instant(&self, unix_us: u64) -> Instant {
        let ago = Duration::from_micros(self.unix_us.saturating_sub(unix_us));
        self.instant.checked_sub(ago).unwrap_or(self.instant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_crosses_to_the_wall_clock_and_back_to_within_a_millisecond() {
        let clock = Clock::now();
        let begun = clock.instant - Duration::from_millis(250);
        let back = Clock::now().instant(clock.unix_us(begun));
        let error = back.max(begun) - back.min(begun);
        assert!(error < Duration::from_millis(1), "{error:?}");
    }
}
