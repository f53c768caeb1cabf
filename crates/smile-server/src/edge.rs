//! The HTTP edge: how connections are accepted, timed out and shed.
//!
//! - A client gets `header_timeout` to send a request's headers, and `body_timeout` to send
//!   its body; a keep-alive connection with no request for `idle_timeout` is closed.
//! - At most `max_connections` are open. When full (or out of file descriptors), the
//!   connection idle the longest (between requests, or still sending headers) is closed to
//!   make room, so a flood of slow clients cannot lock out real ones; if every connection is
//!   busy, the new one gets a 503 and is closed.
//! - On shutdown, accepting stops and every connection finishes its request in progress.

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Limits of the HTTP edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Open connections at most; None picks one below the process's file descriptor limit.
    pub max_connections: Option<usize>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_connections: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl EdgeConfig {
    /// The cap in force: the configured one, else 10,000 or less, leaving file descriptors
    /// for the database, delivery connections and files.
    pub fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| match fd_limit() {
            Some(limit) => (limit.saturating_sub(256)).clamp(64, 10_000),
            None => 1_000,
        })
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn fd_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One open connection, as the shedder sees it.
struct Conn {
    /// Requests being served on it now.
    busy: AtomicUsize,
    /// When a request last ended (or the connection opened), in ms since the edge started.
    idle_since: AtomicI64,
    close: Notify,
}

/// The open connections.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Closes the connection idle the longest; false if every one is busy.
    fn shed_idle(&self) -> bool {
        let Ok(conns) = self.conns.lock() else { return false };
        let victim = conns
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match victim {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets connections finish their
/// requests in progress.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: EdgeConfig,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = config.connection_cap();
    tracing::debug!(cap, "accepting connections");
    let registry = Arc::new(Registry::default());
    let started = Instant::now();
    let (shutdown, shutting_down) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id: u64 = 0;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: make room, then try again.
                    tracing::warn!(%error, "accepting a connection failed; closing an idle one");
                    registry.shed_idle();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if registry.len() >= cap && !registry.shed_idle() {
            refuse(stream);
            continue;
        }
        next_id += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicI64::new(started.elapsed().as_millis() as i64),
            close: Notify::new(),
        });
        if let Ok(mut conns) = registry.conns.lock() {
            conns.insert(next_id, conn.clone());
        }
        let (app, config, registry, shutting_down) =
            (app.clone(), config.clone(), registry.clone(), shutting_down.clone());
        let id = next_id;
        tasks.spawn(async move {
            serve_connection(stream, peer, app, &config, conn, started, shutting_down).await;
            if let Ok(mut conns) = registry.conns.lock() {
                conns.remove(&id);
            }
        });
    }
    drop(listener);
    let _ = shutdown.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Answers 503 without reading the request, and closes.
fn refuse(stream: TcpStream) {
    const FULL: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = stream.try_write(FULL);
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    config: &EdgeConfig,
    conn: Arc<Conn>,
    started: Instant,
    mut shutting_down: watch::Receiver<bool>,
) {
    let body_timeout = config.body_timeout;
    let tracked = conn.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let request = request.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_timeout)));
        let busy = Busy::start(tracked.clone(), started);
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut check_idle = tokio::time::interval((config.idle_timeout / 4).max(Duration::from_millis(100)));
    let idle_ms = config.idle_timeout.as_millis() as i64;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = conn.close.notified() => return,
            changed = shutting_down.changed() => {
                if changed.is_err() || *shutting_down.borrow() {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                    return;
                }
            }
            _ = check_idle.tick() => {
                let idle_for = started.elapsed().as_millis() as i64 - conn.idle_since.load(Ordering::Relaxed);
                if conn.busy.load(Ordering::Relaxed) == 0 && idle_for > idle_ms {
                    return;
                }
            }
        }
    }
}

/// Marks a connection busy while a request is served, even if the request is dropped.
struct Busy {
    conn: Arc<Conn>,
    started: Instant,
}

impl Busy {
    fn start(conn: Arc<Conn>, started: Instant) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Busy { conn, started }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn.idle_since.store(self.started.elapsed().as_millis() as i64, Ordering::Relaxed);
        self.conn.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body that fails once `timeout` has passed since the request began, so that a
/// client sending its body a byte at a time cannot hold a handler (and its buffer) forever.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        DeadlineBody { inner, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

/// The error a body that took too long ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTimedOut;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
