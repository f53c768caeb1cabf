use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How deliveries are retried, timed and bounded.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The wait before each retry; the attempts are one more than its length.
    pub retry_schedule: Vec<Duration>,
    /// Each wait is scaled by a random factor in `1 ± jitter` (0 turns jitter off).
    pub jitter: f64,
    /// A subscription failing without a success for this long is disabled.
    pub disable_after: Duration,
    pub connect_timeout: Duration,
    /// Limit on a whole attempt: connect, send, and reading the response.
    pub request_timeout: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Concurrent attempts per subscription; the rest wait in its lane.
    pub max_in_flight_per_endpoint: usize,
    /// Attempts per subscription sent but not yet recorded (in flight, or answered and waiting
    /// for the attempt log's commit). A node that dies has these sent again by the next one,
    /// so this bounds a crash's duplicates per subscription.
    pub max_unrecorded_per_endpoint: usize,
    /// Concurrent attempts of all subscriptions; lanes wanting more take turns.
    pub max_in_flight: usize,
    /// Deliveries one lane (subscription) holds in memory at most; the rest wait in the store.
    pub lane_window: usize,
    /// Bytes all lanes of this node hold in memory at most: each delivery's bookkeeping and
    /// its body, a body shared by a fan-out's deliveries counted once among them.
    pub window_bytes: usize,
    /// Consecutive failures after which a lane sends one attempt at a time, pausing between
    /// them (1 s, doubling up to `breaker_max_pause`) until one succeeds.
    pub breaker_after: u32,
    pub breaker_max_pause: Duration,
    /// How much of a response body is read (the rest is dropped with the connection).
    pub max_response_read: usize,
    /// How much of a response body is kept in the attempt log.
    pub response_snippet: usize,
    /// How long a node's claim on a lane lasts unless renewed: a dead node's lanes are
    /// taken over after at most this long.
    pub lease: Duration,
    /// How often a node looks for due work nobody told it about (expired leases, retries
    /// left by an earlier run).
    pub poll_interval: Duration,
    pub egress: EgressConfig,
    /// Export OpenTelemetry traces (one per event) to this OTLP/HTTP collector, e.g.
    /// `http://localhost:4318`.
    pub otlp_endpoint: Option<String>,
}

/// Where outgoing connections come from and whom they trust.
#[derive(Debug, Clone, Default)]
pub struct EgressConfig {
    /// Source address of every outgoing connection.
    pub bind: Option<IpAddr>,
    /// HTTP CONNECT proxy every delivery goes through.
    pub proxy: Option<String>,
    /// The public egress IPs published at `GET /v1/egressIps`, for receivers to allow.
    pub public_ips: Vec<String>,
    /// PEM files of CAs trusted besides the system roots.
    pub extra_ca: Vec<PathBuf>,
    /// Networks production deliveries may reach despite the SSRF guard.
    pub ssrf_allow: Vec<IpNet>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let mins = |m: u64| Duration::from_secs(m * 60);
        DeliveryConfig {
            retry_schedule: vec![
                Duration::from_secs(5),
                mins(5),
                mins(30),
                mins(2 * 60),
                mins(5 * 60),
                mins(10 * 60),
                mins(14 * 60),
                mins(20 * 60),
                mins(24 * 60),
            ],
            jitter: 0.1,
            disable_after: Duration::from_secs(5 * 24 * 3600),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(3600),
            max_in_flight_per_endpoint: 32,
            max_unrecorded_per_endpoint: 512,
            max_in_flight: 1024,
            lane_window: 1024,
            window_bytes: 64 << 20,
            breaker_after: 5,
            breaker_max_pause: Duration::from_secs(60),
            max_response_read: 64 * 1024,
            response_snippet: 512,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            egress: EgressConfig::default(),
            otlp_endpoint: None,
        }
    }
}
