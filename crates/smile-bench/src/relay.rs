//! `smile bench-relay`: the `http` scenario's ceiling, a process of its own.
//!
//! It does for each published event only what any node must: it takes the publish over HTTP,
//! reads its JSON, answers it, and sends the body on to the receiver over a pooled client. It
//! stores nothing, signs nothing and never retries. The same generator and receiver driven
//! through it show the most any node could deliver on this machine: the `http` scenario's
//! two HTTP exchanges per event share the cores that the raw baseline gives to one.

use crate::load::{HttpClient, http_client};
use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Options of `smile bench-relay`.
#[derive(clap::Args, Debug, Clone)]
pub struct RelayArgs {
    /// Where each published event's body is sent.
    #[arg(long)]
    pub target: String,
}

struct Relay {
    client: HttpClient,
    target: Uri,
    next: AtomicU64,
}

/// Listens on a free loopback port, prints `Listening on http://ADDR`, and relays until killed.
pub async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    let target: Uri = args.target.parse().context("--target")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    let relay = Arc::new(Relay { client: http_client(), target, next: AtomicU64::new(0) });
    let app = axum::Router::new().route("/v1/operator/events", axum::routing::post(forward)).with_state(relay);
    Ok(axum::serve(listener, app).await?)
}

/// Answers a publish with an id, then sends its body on: as a node acknowledges, then delivers.
async fn forward(State(relay): State<Arc<Relay>>, body: Bytes) -> Result<String, StatusCode> {
    serde_json::from_slice::<serde_json::Value>(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let id = format!("evt-relay-{}", relay.next.fetch_add(1, Ordering::Relaxed));
    let request = hyper::Request::post(relay.target.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .body(Full::new(body))
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let client = relay.client.clone();
    tokio::spawn(async move {
        if let Ok(response) = client.request(request).await {
            let _ = response.into_body().collect().await;
        }
    });
    Ok(format!(r#"{{"data":{{"id":"{id}"}}}}"#))
}
