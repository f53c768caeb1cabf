//! Load generators: a pooled hyper client sending a fixed number of requests with a fixed
//! number of connections, for the raw baseline and for publishing over HTTP.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build_http()
}

/// Requests/s of `concurrency` connections POSTing a small JSON body to `url`.
pub async fn baseline(url: &str, requests: u64, concurrency: u64) -> anyhow::Result<f64> {
    let client = http_client();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let request = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(br#"{"id":"baseline","data":{}}"#)))?;
                let response = client.request(request).await?;
                response.into_body().collect().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

/// The events an HTTP publisher had acknowledged, each with when its publish began.
pub type Published = Arc<Mutex<HashMap<String, Instant>>>;

/// Publishes `events` events through `POST {server}/v1/operator/events` over `concurrency`
/// connections; returns the acknowledged ids and the publish rate.
pub async fn publish_over_http(
    server: &str,
    auth: &str,
    events: u64,
    concurrency: u64,
) -> anyhow::Result<(Published, f64)> {
    let client = http_client();
    let published: Published = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let url = format!("{server}/v1/operator/events");
    for _ in 0..concurrency {
        let (client, next, url, auth, published) =
            (client.clone(), next.clone(), url.clone(), auth.to_owned(), published.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < events {
                let body = serde_json::json!({"tenantId": "default", "mode": "SANDBOX", "type": "INCOMES_ADDED",
                    "data": {"userId": "default-bench", "accountId": "a-bench", "count": 3, "providers": ["bench"]}});
                let request = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", &auth)
                    .body(Full::new(Bytes::from(body.to_string())))?;
                let begun = Instant::now();
                let response = client.request(request).await?;
                let status = response.status();
                let bytes = response.into_body().collect().await?.to_bytes();
                if !status.is_success() {
                    anyhow::bail!("publish answered {status}: {}", String::from_utf8_lossy(&bytes));
                }
                let answer: serde_json::Value = serde_json::from_slice(&bytes)?;
                let id = answer["data"]["id"].as_str().unwrap_or_default().to_owned();
                if let Ok(mut map) = published.lock() {
                    map.insert(id, begun);
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((published, events as f64 / started.elapsed().as_secs_f64()))
}
