//! Receivers on loopback: a counting one (fast, or slow until told otherwise) and the
//! hostile kinds of the isolation scenario.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a counting receiver saw: arrivals per event id, and when the first came.
#[derive(Default)]
pub struct Received {
    pub arrivals: Mutex<HashMap<String, (u32, Instant)>>,
    /// Deliveries (requests with a `webhook-id`).
    pub total: AtomicU64,
    /// Requests without one: the raw baseline.
    pub baseline: AtomicU64,
    /// How long each delivery takes to answer, in milliseconds.
    pub delay_ms: AtomicU64,
}

impl Received {
    /// Distinct events that arrived.
    pub fn distinct(&self) -> usize {
        self.arrivals.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// The ids of the events that arrived so far.
    pub fn ids(&self) -> HashSet<String> {
        self.arrivals.lock().map(|a| a.keys().cloned().collect()).unwrap_or_default()
    }

    /// Arrivals beyond the first of the events `of`.
    pub fn extra_arrivals(&self, of: &HashSet<String>) -> u64 {
        let Ok(arrivals) = self.arrivals.lock() else { return 0 };
        of.iter().filter_map(|id| arrivals.get(id)).map(|(n, _)| u64::from(n.saturating_sub(1))).sum()
    }
}

async fn receive(State(received): State<Arc<Received>>, headers: HeaderMap, _body: Bytes) -> &'static str {
    match headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        Some(id) => {
            let delay = received.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let now = Instant::now();
            if let Ok(mut map) = received.arrivals.lock() {
                map.entry(id.to_owned()).and_modify(|(n, _)| *n += 1).or_insert((1, now));
            }
            received.total.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            received.baseline.fetch_add(1, Ordering::Relaxed);
        }
    }
    "ok"
}

async fn serve(app: axum::Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A counting receiver at `http://ADDR/hook/{n}`.
pub async fn counting(received: Arc<Received>) -> anyhow::Result<SocketAddr> {
    serve(axum::Router::new().route("/hook/{n}", axum::routing::post(receive)).with_state(received)).await
}

/// The endpoints no webhook server should let slow down the others.
#[derive(Debug, Clone, Copy)]
pub enum Hostile {
    /// Takes the request and never answers.
    Hang,
    /// Answers 200 and then sends its body one byte a second.
    Trickle,
    /// Always 500.
    Failing,
    /// Nothing listens.
    Refused,
    /// 410 Gone: the subscription is disabled.
    Gone,
}

impl Hostile {
    pub const ALL: [Hostile; 5] = [Hostile::Hang, Hostile::Trickle, Hostile::Failing, Hostile::Refused, Hostile::Gone];

    /// Starts one and returns its URL.
    pub async fn start(self) -> anyhow::Result<String> {
        let app = axum::Router::new().route("/hook", axum::routing::post(move || answer(self)));
        let addr = match self {
            Hostile::Refused => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                listener.local_addr()?
            }
            _ => serve(app).await?,
        };
        Ok(format!("http://{addr}/hook"))
    }
}

async fn answer(kind: Hostile) -> Response {
    match kind {
        Hostile::Hang => std::future::pending().await,
        Hostile::Trickle => {
            let bytes = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
            });
            axum::body::Body::from_stream(bytes).into_response()
        }
        Hostile::Failing | Hostile::Refused => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Hostile::Gone => StatusCode::GONE.into_response(),
    }
}
