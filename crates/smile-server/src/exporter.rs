//! `/metrics`: the `metrics` facade's recorder, exported in the Prometheus text format. The
//! engine and the store count as they go; gauges of the backlog and of this node's window are
//! read when scraped. On the API's listener it takes an operator key; `--metrics-listen` serves
//! it without one on an address of its own (keep that one private).

use crate::AppState;
use crate::auth::OperatorKey;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use smile_core::metric::{self, MetricKind};
use std::sync::OnceLock;

/// The process's one recorder (tests start several servers in one process).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(metric::COMMIT_BATCH.into()), &sizes));
        let handle = match builder.and_then(|b| b.install_recorder()) {
            Ok(handle) => handle,
            Err(error) => {
                // Another recorder is installed (an embedding program's): render an empty one.
                tracing::warn!(%error, "metrics recorder not installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        for m in metric::ALL {
            match m.kind {
                MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
                MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
                MetricKind::Histogram => metrics::describe_histogram!(m.name, m.help),
            }
        }
        // Counters without labels show from the start, at 0, rather than from their first event.
        metrics::counter!(metric::DELIVERIES_CREATED).increment(0);
        metrics::counter!(metric::AUTO_DISABLES).increment(0);
        handle
    })
}

/// Installs the recorder, so that what happens before the first scrape is counted.
pub(crate) fn install() {
    handle();
}

/// `GET /metrics` on the API's listener: operator key only.
pub(crate) async fn scrape(_: OperatorKey, State(state): State<AppState>) -> Response {
    render(&state).await
}

/// `GET /metrics` on `--metrics-listen`.
pub(crate) async fn scrape_open(State(state): State<AppState>) -> Response {
    render(&state).await
}

async fn render(state: &AppState) -> Response {
    match state.store.backlog().await {
        Ok(backlog) => {
            metrics::gauge!(metric::PENDING_DELIVERIES).set(backlog.pending as f64);
            let age_ms = backlog.oldest_created_ms.map_or(0, |t| (smile_core::timefmt::now_ms() - t).max(0));
            metrics::gauge!(metric::OLDEST_PENDING_SECONDS).set(age_ms as f64 / 1000.0);
        }
        Err(error) => tracing::warn!(%error, "could not read the backlog for /metrics"),
    }
    let window = state.engine.window().await;
    metrics::gauge!(metric::WINDOW_DELIVERIES).set(window.held as f64);
    metrics::gauge!(metric::WINDOW_BYTES).set(window.held_bytes as f64);
    metrics::gauge!(metric::WINDOW_LANES).set(window.lanes as f64);
    metrics::gauge!(metric::IN_FLIGHT).set(window.in_flight as f64);
    let handle = handle();
    handle.run_upkeep();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

/// Counts an answer by route template (`/v1/webhooks/{id}`, never a raw path, so the label set
/// stays small), method and status; `None` for answers given before routing (rate limit,
/// preflight, malformed input) or by no route, counted as `unrouted`.
pub(crate) fn count_request(route: Option<&str>, method: &Method, status: StatusCode) {
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let route = route.unwrap_or("unrouted").to_owned();
    let status = status.as_u16().to_string();
    metrics::counter!(metric::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
}
