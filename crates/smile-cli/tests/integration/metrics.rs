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
    assert!(sum_of(&text, "smile_store_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(sum_of(&text, "smile_store_commit_batch_size_bucket", &["le=\"+Inf\""]) >= 1.0);
    assert!(
        sum_of(&text, "smile_http_requests_total", &["route=\"/v1/webhooks\"", "method=\"POST\"", "status=\"200\""]) >= 3.0,
        "{text}"
    );
    assert!(sum_of(&text, "smile_http_requests_total", &["route=\"/v1/webhooks/{id}\"", "method=\"GET\""]) >= 1.0);
    assert!(text.contains("# HELP smile_pending_deliveries "), "described");
    assert!(!text.contains(operator.key_secret()) && !text.contains("secret"), "no secrets");
}
}
