//! `smile serve` settings: flags, else `SMILE_*` environment variables, else the TOML file
//! named by `--config`, else the defaults.

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use smile_delivery::{DeliveryConfig, EgressConfig};
use smile_server::ServeOptions;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Every setting of `smile serve`; each is also a key of the TOML file (same name, `_` for `-`).
#[derive(Args, Deserialize, Default, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings.
    #[arg(long, env = "SMILE_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SMILE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the SQLite database [default: ./smile-data].
    #[arg(long, env = "SMILE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// postgres://user@host:port/db: share a PostgreSQL database with other nodes instead.
    #[arg(long, env = "SMILE_DATABASE_URL")]
    database_url: Option<String>,
    /// How long a node's claim on a lane (a subscription's deliveries) lasts unless renewed [default: 30s].
    #[arg(long, env = "SMILE_LEASE")]
    lease: Option<String>,
    /// How often a node looks for work whose lease ran out [default: 2s].
    #[arg(long, env = "SMILE_POLL_INTERVAL")]
    poll_interval: Option<String>,
    /// Source IP of every outgoing delivery connection.
    #[arg(long, env = "SMILE_EGRESS_BIND")]
    egress_bind: Option<IpAddr>,
    /// HTTP CONNECT proxy for every delivery, e.g. http://proxy:3128.
    #[arg(long, env = "SMILE_EGRESS_PROXY")]
    egress_proxy: Option<String>,
    /// Public egress IP to publish at GET /v1/egressIps (repeat, or comma-separate).
    #[arg(long = "egress-ip", env = "SMILE_EGRESS_IPS", value_delimiter = ',')]
    egress_ips: Vec<String>,
    /// PEM file of a CA to trust besides the system roots (repeatable).
    #[arg(long, env = "SMILE_EXTRA_CA", value_delimiter = ',')]
    extra_ca: Vec<PathBuf>,
    /// Network production deliveries may reach despite the SSRF guard, e.g. 10.0.0.0/8 (repeatable).
    #[arg(long, env = "SMILE_SSRF_ALLOW", value_delimiter = ',')]
    ssrf_allow: Vec<String>,
    /// Waits before each retry, e.g. "5s,5m,30m,2h,5h,10h,14h,20h,24h".
    #[arg(long, env = "SMILE_RETRY_SCHEDULE")]
    retry_schedule: Option<String>,
    /// Random spread of each retry wait, 0 to 1 [default: 0.1].
    #[arg(long, env = "SMILE_RETRY_JITTER")]
    retry_jitter: Option<f64>,
    /// Disable a subscription failing without a success this long [default: 5d].
    #[arg(long, env = "SMILE_DISABLE_AFTER")]
    disable_after: Option<String>,
    /// Connect timeout of a delivery [default: 5s].
    #[arg(long, env = "SMILE_CONNECT_TIMEOUT")]
    connect_timeout: Option<String>,
    /// Total timeout of one delivery attempt [default: 15s].
    #[arg(long, env = "SMILE_REQUEST_TIMEOUT")]
    request_timeout: Option<String>,
    /// Concurrent attempts per subscription [default: 32].
    #[arg(long, env = "SMILE_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Attempts per subscription sent but not yet recorded: what a crashed node's successor
    /// sends again at most [default: 512].
    #[arg(long, env = "SMILE_MAX_UNRECORDED")]
    max_unrecorded: Option<usize>,
    /// Concurrent attempts of all subscriptions together [default: 1024].
    #[arg(long, env = "SMILE_MAX_IN_FLIGHT_TOTAL")]
    max_in_flight_total: Option<usize>,
    /// Deliveries one subscription holds in memory at most; the rest wait on disk [default: 1024].
    #[arg(long, env = "SMILE_LANE_WINDOW")]
    lane_window: Option<usize>,
    /// Memory in MiB that all subscriptions' deliveries in memory take at most (a fan-out's
    /// deliveries share their body); the rest wait on disk [default: 64].
    #[arg(long, env = "SMILE_WINDOW_MIB")]
    window_mib: Option<usize>,
    /// Largest accepted request body in bytes [default: 262144].
    #[arg(long, env = "SMILE_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// API requests per second per client address, across all nodes; 0 turns it off [default: 20].
    #[arg(long, env = "SMILE_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Operator requests per second per client address, counted apart; 0 turns it off [default: 0].
    #[arg(long, env = "SMILE_OPERATOR_RATE_LIMIT")]
    operator_rate_limit: Option<u32>,
    /// Header carrying the client address behind a load balancer, e.g. x-forwarded-for.
    #[arg(long, env = "SMILE_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// How long a link token lasts [default: 30m].
    #[arg(long, env = "SMILE_TOKEN_TTL")]
    token_ttl: Option<String>,
    /// On SIGTERM or Ctrl-C, how long attempts in flight may take to finish before their
    /// lanes are handed to other nodes anyway [default: 10s].
    #[arg(long, env = "SMILE_SHUTDOWN_GRACE")]
    shutdown_grace: Option<String>,
    /// Open client connections at most; when full, the longest-idle one is closed to make
    /// room [default: 10000, or less under a lower open-files limit].
    #[arg(long, env = "SMILE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// How long a client may take to send a request's headers [default: 10s].
    #[arg(long, env = "SMILE_HEADER_TIMEOUT")]
    header_timeout: Option<String>,
    /// How long a client may take to send a request's body [default: 30s].
    #[arg(long, env = "SMILE_BODY_TIMEOUT")]
    body_timeout: Option<String>,
    /// How long a keep-alive connection may wait for its next request [default: 60s].
    #[arg(long, env = "SMILE_IDLE_TIMEOUT")]
    idle_timeout: Option<String>,
    /// Where clients reach this server, e.g. https://smile.example.com; links it hands out
    /// (invite landing pages) start with it [default: http:// and the listen address].
    #[arg(long, env = "SMILE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Also serve /metrics, without authentication, on this address (keep it private); on the
    /// API's address /metrics takes an operator key.
    #[arg(long, env = "SMILE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Export OpenTelemetry traces, one per event from publish to each attempt, to this
    /// OTLP/HTTP collector (e.g. http://localhost:4318; spans go to /v1/traces) [default: off].
    #[arg(long, env = "SMILE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

fn duration(text: &str, what: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text.trim()).with_context(|| format!("{what}: `{text}` is not a duration like 30s or 5m"))
}

impl ServeArgs {
    fn merge(self, file: ServeArgs) -> ServeArgs {
        fn vec<T>(a: Vec<T>, b: Vec<T>) -> Vec<T> {
            if a.is_empty() { b } else { a }
        }
        ServeArgs {
            config: None,
            listen: self.listen.or(file.listen),
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
            lease: self.lease.or(file.lease),
            poll_interval: self.poll_interval.or(file.poll_interval),
            egress_bind: self.egress_bind.or(file.egress_bind),
            egress_proxy: self.egress_proxy.or(file.egress_proxy),
            egress_ips: vec(self.egress_ips, file.egress_ips),
            extra_ca: vec(self.extra_ca, file.extra_ca),
            ssrf_allow: vec(self.ssrf_allow, file.ssrf_allow),
            retry_schedule: self.retry_schedule.or(file.retry_schedule),
            retry_jitter: self.retry_jitter.or(file.retry_jitter),
            disable_after: self.disable_after.or(file.disable_after),
            connect_timeout: self.connect_timeout.or(file.connect_timeout),
            request_timeout: self.request_timeout.or(file.request_timeout),
            max_in_flight: self.max_in_flight.or(file.max_in_flight),
            max_unrecorded: self.max_unrecorded.or(file.max_unrecorded),
            max_in_flight_total: self.max_in_flight_total.or(file.max_in_flight_total),
            lane_window: self.lane_window.or(file.lane_window),
            window_mib: self.window_mib.or(file.window_mib),
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes),
            rate_limit: self.rate_limit.or(file.rate_limit),
            operator_rate_limit: self.operator_rate_limit.or(file.operator_rate_limit),
            client_ip_header: self.client_ip_header.or(file.client_ip_header),
            token_ttl: self.token_ttl.or(file.token_ttl),
            shutdown_grace: self.shutdown_grace.or(file.shutdown_grace),
            max_connections: self.max_connections.or(file.max_connections),
            header_timeout: self.header_timeout.or(file.header_timeout),
            body_timeout: self.body_timeout.or(file.body_timeout),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            public_url: self.public_url.or(file.public_url),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            otlp_endpoint: self.otlp_endpoint.or(file.otlp_endpoint),
        }
    }

    /// The options to serve with, after reading the config file if one is named.
    pub fn resolve(self) -> anyhow::Result<ServeOptions> {
        if std::env::var_os("SMILE_WINDOW").is_some() {
            // Ignoring it would quietly change a deployment's memory bound.
            bail!("SMILE_WINDOW (deliveries) is now SMILE_WINDOW_MIB, a memory budget in MiB [default: 64]");
        }
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        let a = self.merge(file);
        let mut options = ServeOptions::new(a.data_dir.unwrap_or_else(|| PathBuf::from("./smile-data")));
        let d = &mut options.delivery;
        if let Some(endpoint) = &a.otlp_endpoint {
            let parsed =
                url::Url::parse(endpoint).with_context(|| format!("otlp-endpoint: `{endpoint}` is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("otlp-endpoint: `{endpoint}` must be an http:// or https:// URL");
            }
            d.otlp_endpoint = Some(endpoint.clone());
        }
        if let Some(listen) = a.listen {
            options.listen = listen;
        }
        options.database_url = a.database_url.clone();
        if let Some(t) = &a.lease {
            d.lease = duration(t, "lease")?;
        }
        if let Some(t) = &a.poll_interval {
            d.poll_interval = duration(t, "poll-interval")?;
        }
        if let Some(schedule) = &a.retry_schedule {
            d.retry_schedule = schedule
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| duration(s, "retry-schedule"))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(jitter) = a.retry_jitter {
            if !(0.0..=1.0).contains(&jitter) {
                bail!("retry-jitter must be from 0 to 1");
            }
            d.jitter = jitter;
        }
        if let Some(t) = &a.disable_after {
            d.disable_after = duration(t, "disable-after")?;
        }
        if let Some(t) = &a.connect_timeout {
            d.connect_timeout = duration(t, "connect-timeout")?;
        }
        if let Some(t) = &a.request_timeout {
            d.request_timeout = duration(t, "request-timeout")?;
        }
        if let Some(n) = a.max_in_flight {
            d.max_in_flight_per_endpoint = n.max(1);
        }
        if let Some(n) = a.max_unrecorded {
            d.max_unrecorded_per_endpoint = n.max(1);
        }
        if let Some(n) = a.max_in_flight_total {
            d.max_in_flight = n.max(1);
        }
        if let Some(n) = a.lane_window {
            d.lane_window = n.max(1);
        }
        if let Some(n) = a.window_mib {
            d.window_bytes = n.max(1).saturating_mul(1 << 20);
        }
        if let Some(n) = a.max_body_bytes {
            options.max_body_bytes = n;
        }
        if let Some(n) = a.rate_limit {
            options.rate_limit.per_second = n;
        }
        if let Some(n) = a.operator_rate_limit {
            options.rate_limit.operator_per_second = n;
        }
        options.rate_limit.client_header = a.client_ip_header.clone();
        if let Some(t) = &a.token_ttl {
            options.token_ttl = duration(t, "token-ttl")?;
        }
        if let Some(t) = &a.shutdown_grace {
            options.shutdown_grace = duration(t, "shutdown-grace")?;
        }
        options.edge.max_connections = a.max_connections.map(|n| n.max(1));
        options.metrics_listen = a.metrics_listen;
        if let Some(t) = &a.header_timeout {
            options.edge.header_timeout = duration(t, "header-timeout")?;
        }
        if let Some(t) = &a.body_timeout {
            options.edge.body_timeout = duration(t, "body-timeout")?;
        }
        if let Some(t) = &a.idle_timeout {
            options.edge.idle_timeout = duration(t, "idle-timeout")?;
        }
        if let Some(url) = &a.public_url {
            let parsed = url::Url::parse(url).with_context(|| format!("public-url: `{url}` is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                anyhow::bail!("public-url: `{url}` must be an http:// or https:// URL with a host");
            }
            options.public_url = Some(url.trim_end_matches('/').to_owned());
        }
        let ssrf_allow = a
            .ssrf_allow
            .iter()
            .map(|net| net.parse().with_context(|| format!("ssrf-allow: `{net}` is not a network like 10.0.0.0/8")))
            .collect::<anyhow::Result<_>>()?;
        let mut public_ips = a.egress_ips;
        if public_ips.is_empty()
            && let Some(ip) = a.egress_bind
        {
            public_ips.push(ip.to_string());
        }
        d.egress =
            EgressConfig { bind: a.egress_bind, proxy: a.egress_proxy, public_ips, extra_ca: a.extra_ca, ssrf_allow };
        let _: &DeliveryConfig = d;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: ServeArgs = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nretry_schedule = \"1s,2s\"\nmax_in_flight = 4\nmax_unrecorded = 64\nwindow_mib = 16\negress_ips = [\"203.0.113.7\"]",
        )
        .expect("toml");
        let cli = ServeArgs { max_in_flight: Some(8), ..Default::default() };
        let options = cli.merge(file).resolve().expect("resolve");
        assert_eq!(options.listen.port(), 9000);
        assert_eq!(options.delivery.retry_schedule, vec![Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(options.delivery.max_in_flight_per_endpoint, 8);
        assert_eq!(options.delivery.max_unrecorded_per_endpoint, 64);
        assert_eq!(options.delivery.window_bytes, 16 << 20);
        assert_eq!(options.delivery.egress.public_ips, vec!["203.0.113.7".to_owned()]);
    }

    #[test]
    fn bad_values_are_explained() {
        let bad = ServeArgs { retry_schedule: Some("5 parsecs".into()), ..Default::default() };
        assert!(bad.resolve().unwrap_err().to_string().contains("retry-schedule"));
        let unknown: Result<ServeArgs, _> = toml::from_str("listn = \"x\"");
        assert!(unknown.is_err());
        // `window` counted deliveries before it became `window_mib`: an old file says so.
        let renamed: Result<ServeArgs, _> = toml::from_str("window = 20000");
        assert!(renamed.is_err());
    }
}
