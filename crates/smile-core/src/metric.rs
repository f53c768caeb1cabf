//! The names of the metrics every crate records (through the `metrics` facade), in one table,
//! with what each one means; `smile serve` exports them in the Prometheus text format.

/// A metric's name, kind and one-line meaning, as `/metrics` describes it.
pub struct MetricInfo {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
}

/// How a metric is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

pub const EVENTS_PUBLISHED: &str = "smile_events_published_total";
pub const DELIVERIES_CREATED: &str = "smile_deliveries_created_total";
pub const ATTEMPTS: &str = "smile_attempts_total";
pub const DELIVERY_OUTCOMES: &str = "smile_delivery_outcomes_total";
pub const ATTEMPT_SECONDS: &str = "smile_attempt_duration_seconds";
pub const PENDING_DELIVERIES: &str = "smile_pending_deliveries";
pub const OLDEST_PENDING_SECONDS: &str = "smile_oldest_pending_delivery_age_seconds";
pub const WINDOW_DELIVERIES: &str = "smile_window_deliveries";
pub const WINDOW_BYTES: &str = "smile_window_bytes";
pub const WINDOW_LANES: &str = "smile_window_lanes";
pub const IN_FLIGHT: &str = "smile_attempts_in_flight";
pub const COMMIT_SECONDS: &str = "smile_store_commit_duration_seconds";
pub const COMMIT_BATCH: &str = "smile_store_commit_batch_size";
pub const AUTO_DISABLES: &str = "smile_subscriptions_auto_disabled_total";
pub const SSRF_REFUSALS: &str = "smile_ssrf_refusals_total";
pub const HTTP_REQUESTS: &str = "smile_http_requests_total";

/// Every metric, for `/metrics`' `# HELP` lines.
pub const ALL: &[MetricInfo] = &[
    MetricInfo { name: EVENTS_PUBLISHED, kind: MetricKind::Counter, help: "Events published, by mode." },
    MetricInfo {
        name: DELIVERIES_CREATED,
        kind: MetricKind::Counter,
        help: "Deliveries created by publishes (one per matching subscription).",
    },
    MetricInfo {
        name: ATTEMPTS,
        kind: MetricKind::Counter,
        help: "HTTP attempts made, by result: success (2xx) or failure.",
    },
    MetricInfo {
        name: DELIVERY_OUTCOMES,
        kind: MetricKind::Counter,
        help: "What each attempt decided for its delivery: succeeded, retry or failed.",
    },
    MetricInfo {
        name: ATTEMPT_SECONDS,
        kind: MetricKind::Histogram,
        help: "Time from sending an attempt to its answer.",
    },
    MetricInfo {
        name: PENDING_DELIVERIES,
        kind: MetricKind::Gauge,
        help: "Deliveries still PENDING in the store, every node's (read at scrape time).",
    },
    MetricInfo {
        name: OLDEST_PENDING_SECONDS,
        kind: MetricKind::Gauge,
        help: "Age of the oldest PENDING delivery (0 when none).",
    },
    MetricInfo {
        name: WINDOW_DELIVERIES,
        kind: MetricKind::Gauge,
        help: "Deliveries this node holds in memory (its window of the store).",
    },
    MetricInfo {
        name: WINDOW_BYTES,
        kind: MetricKind::Gauge,
        help: "Memory the deliveries in this node's window take, in bytes (against --window-mib).",
    },
    MetricInfo { name: WINDOW_LANES, kind: MetricKind::Gauge, help: "Lanes (subscriptions) this node holds." },
    MetricInfo { name: IN_FLIGHT, kind: MetricKind::Gauge, help: "Attempts this node has in flight." },
    MetricInfo {
        name: COMMIT_SECONDS,
        kind: MetricKind::Histogram,
        help: "Time of one store write transaction, begin to commit, by backend and write.",
    },
    MetricInfo {
        name: COMMIT_BATCH,
        kind: MetricKind::Histogram,
        help: "Writes group-committed in one transaction, by backend and write.",
    },
    MetricInfo {
        name: AUTO_DISABLES,
        kind: MetricKind::Counter,
        help: "Subscriptions the engine disabled (410 Gone, or failing too long).",
    },
    MetricInfo {
        name: SSRF_REFUSALS,
        kind: MetricKind::Counter,
        help: "Production attempts and subscription URLs refused by the SSRF guard, by where.",
    },
    MetricInfo {
        name: HTTP_REQUESTS,
        kind: MetricKind::Counter,
        help: "API requests answered, by route, method and status.",
    },
];
