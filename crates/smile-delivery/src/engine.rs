use crate::config::DeliveryConfig;
use crate::scheduler::{Job, Msg, Scheduler};
use crate::sender::{AttemptResult, Sender, Signing};
use bytes::Bytes;
use serde_json::Value;
use smile_core::{Event, EventType, Mode, ids, timefmt};
use smile_store::{
    Attempt, ClaimedDelivery, DeliveryStatus, Lease, NewEvent, Outcome, Scope, Signal, Store, StoreError, Subscription,
    SubscriptionEffect,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why the engine refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("data does not match the event type's schema: {0}")]
    InvalidData(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("subscription not found")]
    SubscriptionNotFound,
    #[error("subscription is inactive")]
    SubscriptionInactive,
}

/// The delivery engine; cheap to clone, one per process (a node).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What an attempt needs to know of its subscription, kept current by the API and by
/// signals from other nodes.
struct Target {
    url: String,
    guarded: bool,
    secret: String,
    previous: Option<(String, i64)>,
    active: AtomicBool,
}

impl Target {
    fn of(sub: &Subscription) -> Self {
        Target {
            url: sub.url.clone(),
            guarded: sub.scope.mode == Mode::Production,
            secret: sub.secret.clone(),
            previous: sub.previous_secret.clone().zip(sub.previous_secret_until_ms),
            active: AtomicBool::new(sub.active),
        }
    }
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    sender: Sender,
    /// This process's name in leases.
    node: String,
    targets: RwLock<HashMap<String, Arc<Target>>>,
    scheduler: mpsc::UnboundedSender<Msg>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// Times at which work may become due; the poller claims it then.
    wake: mpsc::UnboundedSender<i64>,
}

impl Engine {
    /// Starts the engine on `store`: the scheduler, the outcome writer, the poller that
    /// claims due work (left by an earlier run, retries, other nodes' expired leases), and
    /// the lease renewer.
    pub async fn start(store: Arc<dyn Store>, config: DeliveryConfig) -> Result<Engine, EngineError> {
        let sender = Sender::new(&config)?;
        let (outcomes, outcome_rx) = mpsc::unbounded_channel();
        let (wake, wake_rx) = mpsc::unbounded_channel();
        if store.single_node() {
            // Whatever the previous process held is due now: nobody else can hold it.
            store.release_all_leases(timefmt::now_ms()).await?;
        }
        let signals = store.listen().await?;
        let inner = Arc::new_cyclic(|weak| Inner {
            store: store.clone(),
            scheduler: Scheduler::spawn(weak.clone(), config.max_in_flight_per_endpoint),
            config,
            sender,
            node: ids::new_id("node-"),
            targets: RwLock::default(),
            outcomes,
            wake,
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(write_outcomes(weak.clone(), outcome_rx));
        tokio::spawn(poll(weak.clone(), wake_rx, signals));
        tokio::spawn(renew_leases(weak));
        Ok(Engine { inner })
    }

    /// This node's name in leases.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The egress IPs receivers should allow.
    pub fn public_egress_ips(&self) -> &[String] {
        &self.inner.config.egress.public_ips
    }

    /// Why a production delivery to `url` would be refused outright (an internal IP literal).
    pub fn url_refusal(&self, url: &str, mode: Mode) -> Option<String> {
        (mode == Mode::Production).then(|| self.inner.sender.literal_blocked(url)).flatten()
    }

    /// Checks `data` against the catalog, persists the event with one delivery per matching
    /// subscription, and returns once that is durable; delivery starts at once.
    pub async fn publish(&self, scope: &Scope, event_type: EventType, data: Value) -> Result<Event, EngineError> {
        event_type.validate_data(&data).map_err(EngineError::InvalidData)?;
        self.publish_to(scope, event_type, data, None, None).await
    }

    /// Like [`Engine::publish`], and each subscription gets the events of one `order_key`
    /// (an account, say) one at a time, in publish order. A failed attempt leaves the
    /// sequence: its retry may arrive after later events.
    pub async fn publish_in_order(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
        order_key: &str,
    ) -> Result<Event, EngineError> {
        event_type.validate_data(&data).map_err(EngineError::InvalidData)?;
        self.publish_to(scope, event_type, data, None, Some(Arc::from(order_key))).await
    }

    /// Sends a sample event of `event_type` (default: the subscription's first type) to one
    /// subscription only.
    pub async fn send_test(
        &self,
        scope: &Scope,
        subscription_id: &str,
        event_type: Option<EventType>,
    ) -> Result<Event, EngineError> {
        let sub = self
            .inner
            .store
            .get_subscription(scope, subscription_id)
            .await?
            .ok_or(EngineError::SubscriptionNotFound)?;
        if !sub.active {
            return Err(EngineError::SubscriptionInactive);
        }
        let event_type = event_type
            .or_else(|| sub.event_types.iter().find_map(|t| EventType::from_name(t)))
            .unwrap_or(EventType::UserCreated);
        self.publish_to(scope, event_type, event_type.sample_data(), Some(sub.id), None).await
    }

    /// The API changed a subscription: later attempts, on every node, use its new state.
    pub async fn subscription_changed(&self, sub: &Subscription) {
        if let Ok(mut targets) = self.inner.targets.write() {
            targets.insert(sub.id.clone(), Arc::new(Target::of(sub)));
        }
        self.inner.tell_others(Signal::SubscriptionChanged { id: sub.id.clone() }).await;
    }

    /// The API deleted a subscription: its queued attempts are dropped, on every node.
    pub async fn subscription_deleted(&self, id: &str) {
        self.inner.forget(id);
        self.inner.tell_others(Signal::SubscriptionChanged { id: id.to_owned() }).await;
    }

    /// The store made deliveries due now (a replay or a recovery): claim and send them.
    pub async fn deliveries_due_now(&self) {
        let now = timefmt::now_ms();
        let _ = self.inner.wake.send(now);
        self.inner.tell_others(Signal::Due { at_ms: now }).await;
    }

    async fn publish_to(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
        only: Option<String>,
        order_key: Option<Arc<str>>,
    ) -> Result<Event, EngineError> {
        let now = timefmt::now_ms();
        let event = Event {
            id: ids::new_id(ids::EVENT),
            version: smile_core::EVENT_VERSION,
            event_type,
            created_at: timefmt::format_ms(now),
            data,
        };
        let body = serde_json::to_string(&event).map_err(|e| EngineError::InvalidData(e.to_string()))?;
        let lean_body = lean_body(&event);
        let deliveries = self
            .inner
            .store
            .publish(NewEvent {
                id: event.id.clone(),
                scope: scope.clone(),
                event_type: event_type.as_str().to_owned(),
                created_ms: now,
                body: body.clone(),
                lean_body: lean_body.clone(),
                only_subscription: only,
                delivery_created_ms: now,
                lease: self.inner.lease(now),
            })
            .await?;
        let body = Bytes::from(body);
        let lean_body = lean_body.map(Bytes::from);
        for d in deliveries {
            let body = match (&lean_body, d.lean) {
                (Some(lean), true) => lean.clone(),
                _ => body.clone(),
            };
            let job = Job {
                delivery_id: d.id,
                event_id: event.id.clone(),
                subscription_id: d.subscription_id,
                attempts_made: 0,
                body,
                order_key: order_key.clone(),
            };
            let _ = self.inner.scheduler.send(Msg::Now(job));
        }
        Ok(event)
    }
}

/// The body without `data.payload`, for subscriptions without `includePayload`.
fn lean_body(event: &Event) -> Option<String> {
    if !event.event_type.carries_payload() || event.data.get("payload").is_none() {
        return None;
    }
    let mut lean = event.clone();
    if let Some(data) = lean.data.as_object_mut() {
        data.remove("payload");
    }
    serde_json::to_string(&lean).ok()
}

impl Inner {
    fn lease(&self, now: i64) -> Lease {
        Lease { owner: self.node.clone(), until_ms: now + self.config.lease.as_millis() as i64 }
    }

    fn forget(&self, subscription_id: &str) {
        if let Ok(mut targets) = self.targets.write() {
            targets.remove(subscription_id);
        }
    }

    /// Signals the other nodes; a single-node store has none.
    async fn tell_others(&self, signal: Signal) {
        if self.store.single_node() {
            return;
        }
        if let Err(error) = self.store.notify(signal).await {
            tracing::warn!(%error, "could not signal the other nodes; they will poll");
        }
    }

    async fn target(&self, id: &str) -> Option<Arc<Target>> {
        if let Some(t) = self.targets.read().ok().and_then(|t| t.get(id).cloned()) {
            return Some(t);
        }
        let sub = self.store.subscription_by_id(id).await.ok()??;
        let target = Arc::new(Target::of(&sub));
        if let Ok(mut targets) = self.targets.write() {
            targets.entry(id.to_owned()).or_insert_with(|| target.clone());
        }
        Some(target)
    }

    /// Makes one attempt and queues its outcome for the store.
    pub(crate) async fn attempt(&self, job: Job) {
        // A deleted subscription's deliveries were cancelled in the store; an inactive one's failed.
        let Some(target) = self.target(&job.subscription_id).await else {
            return;
        };
        if !target.active.load(Ordering::Relaxed) {
            return;
        }
        let now = timefmt::now_ms();
        let previous = target.previous.as_ref().filter(|(_, until)| *until > now).map(|(s, _)| s.as_str());
        let signing = Signing { secret: &target.secret, previous };
        let result = self.sender.send(&target.url, target.guarded, &job.event_id, job.body.clone(), signing).await;
        let attempt_no = job.attempts_made + 1;
        let finished = timefmt::now_ms();
        let (effect, next) = self.judge(&target, &result, attempt_no, finished);
        let status = match (result.succeeded(), next) {
            (true, _) => DeliveryStatus::Succeeded,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        let _ = self.outcomes.send(Outcome {
            attempt: Attempt {
                id: ids::new_id(ids::ATTEMPT),
                delivery_id: job.delivery_id,
                attempt: attempt_no,
                attempted_ms: finished,
                status_code: result.status,
                latency_ms: result.latency.as_millis() as u64,
                response_body: result.response_body,
                error: result.error,
            },
            subscription_id: job.subscription_id,
            status,
            next_attempt_ms: next,
            subscription_effect: effect,
        });
    }

    /// How an attempt changes its subscription, and when the next attempt is due.
    fn judge(
        &self,
        target: &Target,
        result: &AttemptResult,
        attempt_no: u32,
        now: i64,
    ) -> (SubscriptionEffect, Option<i64>) {
        if result.succeeded() {
            return (SubscriptionEffect::Healthy, None);
        }
        if result.status == Some(410) {
            target.active.store(false, Ordering::Relaxed);
            return (SubscriptionEffect::Disable { reason: "the endpoint answered 410 Gone".into() }, None);
        }
        let effect = SubscriptionEffect::Failing {
            now_ms: now,
            disable_if_since_before_ms: now - self.config.disable_after.as_millis() as i64,
        };
        let next = self.config.retry_schedule.get(attempt_no as usize - 1).map(|wait| {
            let spread = 1.0 + self.config.jitter * (2.0 * rand::random::<f64>() - 1.0);
            let mut wait_ms = (wait.as_secs_f64() * spread * 1000.0) as i64;
            if let Some(after) = result.retry_after {
                wait_ms = wait_ms.max(after.min(self.config.max_retry_after).as_millis() as i64);
            }
            now + wait_ms
        });
        (effect, next)
    }

    /// Claims due work in batches and hands it to the scheduler.
    async fn claim(&self) {
        const BATCH: u32 = 1000;
        loop {
            let now = timefmt::now_ms();
            let claimed = match self.store.claim_due(&self.lease(now), now, BATCH).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::error!(%error, "could not claim due deliveries");
                    return;
                }
            };
            let full = claimed.len() as u32 == BATCH;
            for ClaimedDelivery { delivery: d, body } in claimed {
                let job = Job {
                    delivery_id: d.id,
                    event_id: d.event_id,
                    subscription_id: d.subscription_id,
                    attempts_made: d.attempts,
                    body: Bytes::from(body),
                    order_key: None,
                };
                let _ = self.scheduler.send(Msg::Now(job));
            }
            if !full {
                return;
            }
        }
    }
}

/// Writes attempt outcomes in batches (whatever queued while the last batch committed), then
/// says when their retries are due, here and to the other nodes.
async fn write_outcomes(engine: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let next_due = batch.iter().filter_map(|o| o.next_attempt_ms).min();
        match inner.store.record_outcomes(batch).await {
            Ok(effects) => {
                for id in effects.disabled {
                    inner.forget(&id);
                    inner.tell_others(Signal::SubscriptionChanged { id }).await;
                }
                if let Some(at_ms) = next_due {
                    let _ = inner.wake.send(at_ms);
                    inner.tell_others(Signal::Due { at_ms }).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "could not record attempt outcomes; those deliveries will be sent again")
            }
        }
    }
}

/// Wakes to claim due work: at once on start, at the times it is told, and every
/// `poll_interval` for work whose lease ran out (a node died).
async fn poll(
    engine: Weak<Inner>,
    mut wake: mpsc::UnboundedReceiver<i64>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) {
    let mut wake_at = timefmt::now_ms();
    let mut signals_open = true;
    loop {
        let sleep_ms = (wake_at - timefmt::now_ms()).max(0) as u64;
        tokio::select! {
            at = wake.recv() => match at {
                Some(at) => wake_at = wake_at.min(at),
                None => return,
            },
            signal = signals.recv(), if signals_open => match signal {
                Some(Signal::Due { at_ms }) => wake_at = wake_at.min(at_ms),
                Some(Signal::SubscriptionChanged { id }) => {
                    if let Some(inner) = engine.upgrade() {
                        inner.forget(&id);
                    }
                }
                None => signals_open = false,
            },
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {
                let Some(inner) = engine.upgrade() else { return };
                wake_at = timefmt::now_ms() + inner.config.poll_interval.as_millis() as i64;
                inner.claim().await;
            }
        }
    }
}

/// Keeps the leases of the work this node holds (queued or in flight) from running out.
async fn renew_leases(engine: Weak<Inner>) {
    loop {
        let every = match engine.upgrade() {
            Some(inner) => inner.config.lease / 3,
            None => return,
        };
        tokio::time::sleep(every.max(Duration::from_millis(50))).await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if inner.scheduler.send(Msg::Held(tx)).is_err() {
            return;
        }
        let Ok(held) = rx.await else { return };
        if held.is_empty() {
            continue;
        }
        let lease = inner.lease(timefmt::now_ms());
        if let Err(error) = inner.store.renew_leases(&lease, &held).await {
            tracing::error!(%error, "could not renew leases; other nodes may send these deliveries too");
        }
    }
}
