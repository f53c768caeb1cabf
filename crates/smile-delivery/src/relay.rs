//! Deliveries to `smile listen` sessions. A session's subscription has a `listen://` URL: its
//! attempts are signed as usual, then handed to the CLI that polls the session instead of being
//! sent over HTTP, and what the CLI reports (the status its local URL answered) is the
//! attempt's result. Retries, the attempt log and the breaker work as for any subscription.

use crate::sender::AttemptResult;
use bytes::Bytes;
use smile_core::ids;
use smile_store::Scope;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The URL scheme of a session's subscription: `listen://<session id>`.
pub const RELAY_SCHEME: &str = "listen://";

/// One signed attempt waiting for the CLI to forward it.
#[derive(Debug, Clone)]
pub struct RelayedRequest {
    /// Names the attempt in the CLI's report.
    pub token: String,
    pub event_id: String,
    /// The headers an HTTP attempt would carry (content type and signatures).
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// What the CLI saw when it forwarded an attempt to its local URL.
#[derive(Debug, Clone, Default)]
pub struct RelayReport {
    pub status: Option<u16>,
    pub latency: Duration,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// A session the CLI holds open.
#[derive(Debug, Clone)]
pub struct RelaySession {
    pub id: String,
    pub scope: Scope,
    pub subscription_id: String,
}

struct Session {
    about: RelaySession,
    queue: mpsc::UnboundedSender<RelayedRequest>,
    pending: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<RelayedRequest>>>,
    waiting: HashMap<String, oneshot::Sender<RelayReport>>,
    last_seen: Instant,
}

/// Why a session call found nothing to work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("no such listen session (it ended, or belongs to another key)")]
    NoSession,
}

/// This node's listen sessions.
#[derive(Default)]
pub struct Relays {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Relays {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves only a map of channels behind: still usable.
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a session for the subscription `listen://<id>` the caller has created.
    pub fn open(&self, id: &str, scope: Scope, subscription_id: &str) {
        let (queue, pending) = mpsc::unbounded_channel();
        let about = RelaySession { id: id.to_owned(), scope, subscription_id: subscription_id.to_owned() };
        let session = Session {
            about,
            queue,
            pending: Arc::new(tokio::sync::Mutex::new(pending)),
            waiting: HashMap::new(),
            last_seen: Instant::now(),
        };
        self.sessions().insert(id.to_owned(), session);
    }

    /// The session, if it is open and in `scope`.
    pub fn get(&self, id: &str, scope: &Scope) -> Option<RelaySession> {
        self.sessions().get(id).filter(|s| &s.about.scope == scope).map(|s| s.about.clone())
    }

    /// Ends a session; attempts waiting on it fail (and are retried later).
    pub fn close(&self, id: &str) -> Option<RelaySession> {
        self.sessions().remove(id).map(|s| s.about)
    }

    /// Sessions whose CLI has not polled for `idle`: it is gone.
    pub fn idle(&self, idle: Duration) -> Vec<String> {
        self.sessions().iter().filter(|(_, s)| s.last_seen.elapsed() > idle).map(|(id, _)| id.clone()).collect()
    }

    /// The next attempt for the CLI, waiting up to `wait`; None if none came.
    pub async fn next(&self, id: &str, scope: &Scope, wait: Duration) -> Result<Option<RelayedRequest>, RelayError> {
        let pending = {
            let mut sessions = self.sessions();
            let session = sessions.get_mut(id).filter(|s| &s.about.scope == scope).ok_or(RelayError::NoSession)?;
            session.last_seen = Instant::now();
            session.pending.clone()
        };
        let mut pending = pending.lock().await;
        let next = tokio::time::timeout(wait, pending.recv()).await.ok().flatten();
        if let Some(session) = self.sessions().get_mut(id) {
            session.last_seen = Instant::now();
        }
        Ok(next)
    }

    /// The CLI's report of one attempt; false if nobody waits for it any more (timed out).
    pub fn report(&self, id: &str, scope: &Scope, token: &str, report: RelayReport) -> Result<bool, RelayError> {
        let mut sessions = self.sessions();
        let session = sessions.get_mut(id).filter(|s| &s.about.scope == scope).ok_or(RelayError::NoSession)?;
        session.last_seen = Instant::now();
        Ok(session.waiting.remove(token).is_some_and(|reply| reply.send(report).is_ok()))
    }

    /// Hands a signed attempt to the session's CLI and waits, up to `timeout`, for its report.
    pub(crate) async fn send(
        &self,
        session_id: &str,
        event_id: &str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
        timeout: Duration,
    ) -> AttemptResult {
        let started = Instant::now();
        let token = ids::new_id("rly-");
        let (reply, report) = oneshot::channel();
        let queued = {
            let mut sessions = self.sessions();
            sessions.get_mut(session_id).is_some_and(|session| {
                session.waiting.insert(token.clone(), reply);
                let request = RelayedRequest { token: token.clone(), event_id: event_id.to_owned(), headers, body };
                session.queue.send(request).is_ok()
            })
        };
        let failed = |error: &str| AttemptResult {
            status: None,
            latency: started.elapsed(),
            response_body: None,
            error: Some(error.to_owned()),
            retry_after: None,
        };
        if !queued {
            return failed("no `smile listen` session is connected to this node");
        }
        match tokio::time::timeout(timeout, report).await {
            Ok(Ok(r)) => AttemptResult {
                status: r.status,
                latency: r.latency,
                response_body: r.response_body,
                error: r.error.or_else(|| r.status.filter(|s| !(200..300).contains(s)).map(|s| format!("HTTP {s}"))),
                retry_after: None,
            },
            Ok(Err(_)) => failed("the `smile listen` session ended before it reported"),
            Err(_) => {
                if let Some(session) = self.sessions().get_mut(session_id) {
                    session.waiting.remove(&token);
                }
                failed("timed out waiting for `smile listen` to report")
            }
        }
    }
}
