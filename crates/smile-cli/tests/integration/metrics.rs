//! `/metrics`: the Prometheus text format, with an operator key on the API's listener and
//! without one on `--metrics-listen`.

use crate::support::*;
use serde_json::json;
use smile_core::Mode;
use std::time::Duration;

/// The value of the sample `name{labels}` (exactly as rendered), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The samples of a metric whose labels include every `label="value"` given.
fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(url: &str, auth: Option<&Api>) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut request = client.get(url);
    if let Some(api) = auth {
        request = request.basic_auth(api.key_id(), Some(api.key_secret()));
    }
    let response = request.send().await.expect("scrape");
    (response.status().as_u16(), response.text().await.expect("text"))
}

on_both_backends! {
async fn metrics_count_what_the_engine_and_the_api_did() {
    let server = TestServer::with(|o| {
        o.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
        o.delivery.retry_schedule = vec![Duration::from_secs(60)];
    })
    .await;
    let operator = server.operator().await;
    let good = Receiver::start().await;
    let gone = Receiver::scripted(vec![Reply::Status(410)]).await;
    server.sandbox.subscribe(&good.url(), &["USER_CREATED"], "s").await;
    let gone_sub = server.sandbox.subscribe(&gone.url(), &["USER_CREATED"], "s").await;
    // Nothing listens on port 9: this delivery stays pending, waiting for its retry.
    server.sandbox.subscribe("http://127.0.0.1:9/hook", &["USER_CREATED"], "s").await;
    let production = server.key("default", Mode::Production).await;
    let (status, _) = production
        .post("/v1/webhooks", json!({"name": "n", "url": "https://127.0.0.1/hook", "eventTypes": ["ALL_EVENTS"], "active": true, "secret": "s"}))
        .await;
    assert_eq!(status, 400, "an internal address is refused in production");

    user_created(&operator).await;
    good.wait_hits(1).await;
    eventually(Duration::from_secs(10), "the 410 disables its subscription", || async {
        let (_, body) = server.sandbox.get(&format!("/v1/webhooks/{gone_sub}")).await;
        (body["data"]["active"] == false).then_some(())
    })
    .await;

    // Answers given by no route, or before the route (a NUL in the path): counted as `unrouted`.
    assert_eq!(server.sandbox.get("/v1/nowhere").await.0, 404);
    assert_eq!(server.sandbox.get("/v1/webhooks/a%00b").await.0, 400);
    let main = format!("{}/metrics", server.sandbox.base);
    assert_eq!(scrape(&main, None).await.0, 400, "no key: refused");
    assert_eq!(scrape(&main, Some(&server.sandbox)).await.0, 403, "a tenant key: refused");
    let (status, text) = scrape(&main, Some(&operator)).await;
    assert_eq!(status, 200, "{text}");
    let open = format!("http://{}/metrics", server.running.metrics_addr.expect("metrics listener"));
    let (status, open_text) = scrape(&open, None).await;
    assert_eq!(status, 200);
    assert!(open_text.contains("smile_events_published_total"));

    assert_eq!(sample(&text, "smile_events_published_total{mode=\"SANDBOX\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "smile_deliveries_created_total"), Some(3.0));
    assert!(sum_of(&text, "smile_attempts_total", &["result=\"success\""]) >= 1.0);
    assert!(sum_of(&text, "smile_attempts_total", &["result=\"failure\""]) >= 2.0);
    assert!(sum_of(&text, "smile_delivery_outcomes_total", &["outcome=\"retry\""]) >= 1.0);
    assert!(sum_of(&text, "smile_attempt_duration_seconds_count", &[]) >= 3.0);
    assert!(text.contains("smile_attempt_duration_seconds_bucket{le=\"0.005\"}"), "a histogram, with buckets");
    assert_eq!(sample(&text, "smile_subscriptions_auto_disabled_total"), Some(1.0));
    assert_eq!(sample(&text, "smile_ssrf_refusals_total{at=\"subscription\"}"), Some(1.0));
    assert!(sample(&text, "smile_pending_deliveries").expect("pending") >= 1.0);
    assert!(sample(&text, "smile_oldest_pending_delivery_age_seconds").expect("age") > 0.0);
    assert!(sample(&text, "smile_window_lanes").is_some());
    assert!(sample(&text, "smile_window_deliveries").is_some());
    assert!(sample(&text, "smile_window_bytes").is_some());
    assert!(sum_of(&text, "smile_store_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(sum_of(&text, "smile_store_commit_batch_size_bucket", &["le=\"+Inf\""]) >= 1.0);
    assert!(
        sum_of(&text, "smile_http_requests_total", &["route=\"/v1/webhooks\"", "method=\"POST\"", "status=\"200\""]) >= 3.0,
        "{text}"
    );
    assert!(sum_of(&text, "smile_http_requests_total", &["route=\"/v1/webhooks/{id}\"", "method=\"GET\""]) >= 1.0);
    for status in ["404", "400"] {
        let labels = ["route=\"unrouted\"", "method=\"GET\"", &format!("status=\"{status}\"")];
        assert!(sum_of(&text, "smile_http_requests_total", &labels) >= 1.0, "{status}: {text}");
    }
    assert!(text.contains("# HELP smile_pending_deliveries "), "described");
    assert!(!text.contains(operator.key_secret()) && !text.contains("secret"), "no secrets");
}
}

/// A fake OTLP/HTTP collector: every span it was sent, decoded from protobuf.
struct Collector {
    url: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
}

impl Collector {
    async fn start() -> Collector {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message as _;
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        kept.lock().expect("lock").extend(scope.spans);
                    }
                }
                ""
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { url, spans }
    }

    fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.spans.lock().expect("lock").clone()
    }
}

fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    })
}

on_both_backends! {
async fn with_an_otlp_endpoint_each_event_is_one_trace_from_publish_to_each_attempt() {
    let collector = Collector::start().await;
    let endpoint = collector.url.clone();
    let server = TestServer::with(|o| o.delivery.otlp_endpoint = Some(endpoint)).await;
    let operator = server.operator().await;
    let flaky = Receiver::scripted(vec![Reply::Status(503)]).await;
    let steady = Receiver::start().await;
    server.sandbox.subscribe(&flaky.url(), &["USER_CREATED"], "s").await;
    server.sandbox.subscribe(&steady.url(), &["USER_CREATED"], "s").await;
    let event_id = user_created(&operator).await;
    let other_event = user_created(&operator).await;

    // Per event: a publish span, and an attempt span per attempt (2 to the flaky one, 1 to the other).
    let spans = eventually(Duration::from_secs(15), "the spans of both events", || async {
        let spans = collector.spans();
        let of = |id: &str| spans.iter().filter(|s| attribute(s, "smile.event.id").as_deref() == Some(id)).count();
        (of(&event_id) >= 4 && of(&other_event) >= 3).then_some(spans)
    })
    .await;
    let mine: Vec<_> = spans.iter().filter(|s| attribute(s, "smile.event.id").as_deref() == Some(event_id.as_str())).collect();
    let publish: Vec<_> = mine.iter().filter(|s| s.name == "publish").collect();
    assert_eq!(publish.len(), 1, "one root per event");
    assert!(publish[0].parent_span_id.is_empty());
    assert_eq!(attribute(publish[0], "smile.deliveries").as_deref(), Some("2"));
    let attempts: Vec<_> = mine.iter().filter(|s| s.name == "attempt").collect();
    assert_eq!(attempts.len(), 3);
    for attempt in &attempts {
        assert_eq!(attempt.trace_id, publish[0].trace_id, "one trace per event");
        assert_eq!(attempt.parent_span_id, publish[0].span_id, "attempts hang under the publish");
        assert!(attempt.end_time_unix_nano >= attempt.start_time_unix_nano);
    }
    let mut codes: Vec<String> = attempts.iter().filter_map(|a| attribute(a, "http.response.status_code")).collect();
    codes.sort();
    assert_eq!(codes, vec!["200", "200", "503"]);
    let theirs = spans.iter().find(|s| attribute(s, "smile.event.id").as_deref() == Some(other_event.as_str())).expect("span");
    assert_ne!(theirs.trace_id, publish[0].trace_id, "another event, another trace");
}
}
