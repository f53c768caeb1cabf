//! The engine's face: publish, test sends, and what the API tells it about subscriptions.
//! A publish is one store transaction (the event and its fan-out; on SQLite, a large fan-out's
//! rows follow in the next commits); after the commit its due deliveries go to their lanes.

use crate::config::DeliveryConfig;
use crate::error::EngineError;
use crate::lanes::{self, Msg, WindowStats};
use crate::sender::Sender;
use crate::trace::Traces;
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use smile_core::{Event, EventType, Mode, ids, metric, timefmt};
use smile_store::{IDEMPOTENCY_WINDOW_MS, IdempotencyKey, NewEvent, Published, Scope, Signal, Store, Subscription};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every attempt in flight finished and its outcome is committed.
    Finished,
    /// The grace period ran out with attempts in flight; their lanes were handed back anyway.
    HandedBackInFlight,
}

/// An event as a publish answered it.
#[derive(Debug, Clone)]
pub struct Publication {
    pub event: Event,
    /// The idempotency key had made this event before: nothing new was written or sent.
    pub replayed: bool,
}

/// The delivery engine; cheap to clone, one per process (a node).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    sender: Arc<Sender>,
    traces: Traces,
    /// This process's name in lane leases.
    node: String,
    lanes: mpsc::UnboundedSender<Msg>,
}

impl Engine {
    /// Starts the engine on `store`. Lanes with due work (left by an earlier run, or by a
    /// node that died) are found and claimed at once, then every `poll_interval`.
    pub async fn start(store: Arc<dyn Store>, config: DeliveryConfig) -> Result<Engine, EngineError> {
        let sender = Arc::new(Sender::new(&config)?);
        if store.single_node() {
            // Whatever the previous process held is free now: nobody else can hold it.
            store.release_all_lanes().await?;
        }
        let node = ids::new_id("node-");
        let signals = store.listen(&node).await?;
        let traces = match &config.otlp_endpoint {
            Some(endpoint) => Traces::start(endpoint).map_err(EngineError::Config)?,
            None => Traces::default(),
        };
        let lanes = lanes::spawn(store.clone(), config.clone(), sender.clone(), node.clone(), signals, traces.clone());
        forget_old_idempotency_keys(&store);
        Ok(Engine { inner: Arc::new(Inner { store, config, sender, traces, node, lanes }) })
    }

    /// This node's name in leases.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Stops starting attempts; what is pending stays in the store for the next start.
    pub fn stop(&self) {
        let _ = self.inner.lanes.send(Msg::Stop);
    }

    /// Leaves the cluster cleanly: starts no attempt, lets those in flight finish and their
    /// outcomes commit for at most `grace`, then hands every lane back so that other nodes
    /// take them at once. Attempts still in flight after `grace` are handed back too (another
    /// node sends them again). Then the engine stops.
    pub async fn drain(&self, grace: std::time::Duration) -> Drained {
        let (reply, drained) = tokio::sync::oneshot::channel();
        let _ = self.inner.lanes.send(Msg::Drain(reply));
        let outcome = match tokio::time::timeout(grace, drained).await {
            Ok(_) => Drained::Finished,
            Err(_) => {
                let (reply, handed_back) = tokio::sync::oneshot::channel();
                let _ = self.inner.lanes.send(Msg::HandBack(reply));
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), handed_back).await;
                Drained::HandedBackInFlight
            }
        };
        self.stop();
        outcome
    }

    /// How much of the queue this node holds in memory now.
    pub async fn window(&self) -> WindowStats {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let _ = self.inner.lanes.send(Msg::Window(reply));
        answer.await.unwrap_or_default()
    }

    /// This node's `smile listen` sessions.
    pub fn relays(&self) -> &Arc<crate::relay::Relays> {
        &self.inner.sender.relays
    }

    /// The egress IPs receivers should allow.
    pub fn public_egress_ips(&self) -> &[String] {
        &self.inner.config.egress.public_ips
    }

    /// Why a production delivery to `url` would be refused outright (an internal IP literal).
    pub fn url_refusal(&self, url: &str, mode: Mode) -> Option<String> {
        let refusal = (mode == Mode::Production).then(|| self.inner.sender.literal_blocked(url)).flatten();
        if refusal.is_some() {
            metrics::counter!(metric::SSRF_REFUSALS, "at" => "subscription").increment(1);
        }
        refusal
    }

    /// Checks `data` against the catalog, persists the event with one delivery per matching
    /// subscription, and returns once that is durable; delivery starts at once.
    pub async fn publish(&self, scope: &Scope, event_type: EventType, data: Value) -> Result<Event, EngineError> {
        Ok(self.publish_once(scope, event_type, data, None).await?.event)
    }

    /// Like [`Engine::publish`]; with an idempotency key, a second publish with the same key in
    /// `scope` within 24 hours returns the first event and sends nothing. The same key with
    /// another type or data is refused.
    pub async fn publish_once(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Publication, EngineError> {
        event_type.validate_data(&data).map_err(EngineError::InvalidData)?;
        let target = Target { only: None, order_key: None, idempotency_key };
        self.publish_to(scope, event_type, data, target).await
    }

    /// Like [`Engine::publish`], and each subscription gets the events of one `order_key`
    /// (an account, say) strictly in publish order: the next is sent only after the one
    /// before it succeeded or finally failed. The order holds across restarts and nodes.
    pub async fn publish_in_order(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
        order_key: &str,
    ) -> Result<Event, EngineError> {
        event_type.validate_data(&data).map_err(EngineError::InvalidData)?;
        let target = Target { only: None, order_key: Some(order_key.to_owned()), idempotency_key: None };
        Ok(self.publish_to(scope, event_type, data, target).await?.event)
    }

    /// Sends a sample event of `event_type` (default: the subscription's first type) to one
    /// subscription only; the idempotency key works as for [`Engine::publish_once`].
    pub async fn send_test(
        &self,
        scope: &Scope,
        subscription_id: &str,
        event_type: Option<EventType>,
        idempotency_key: Option<&str>,
    ) -> Result<Publication, EngineError> {
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
        let target = Target { only: Some(sub.id), order_key: None, idempotency_key };
        self.publish_to(scope, event_type, event_type.sample_data(), target).await
    }

    /// The API changed a subscription: later attempts, on every node, use its new state. This
    /// node takes `sub` as it is, before any later publish reaches the lane: a delivery
    /// published after a rotation is never signed with the secret it replaced.
    pub async fn subscription_changed(&self, sub: &Subscription) {
        let _ = self.inner.lanes.send(Msg::Reloaded(sub.id.clone(), Some(sub.clone())));
        self.tell_others(Signal::SubscriptionChanged { id: sub.id.clone() }).await;
    }

    /// The API deleted a subscription: its lane stops, on every node.
    pub async fn subscription_deleted(&self, id: &str) {
        self.changed(id).await;
    }

    /// The store made deliveries of this subscription due now (a replay or a recovery).
    pub async fn deliveries_due_now(&self, subscription_id: &str) {
        let ids = vec![subscription_id.to_owned()];
        let _ = self.inner.lanes.send(Msg::Work(ids.clone()));
        self.tell_others(Signal::LaneWork { subscription_ids: ids }).await;
    }

    async fn changed(&self, id: &str) {
        let _ = self.inner.lanes.send(Msg::Changed(id.to_owned()));
        self.tell_others(Signal::SubscriptionChanged { id: id.to_owned() }).await;
    }

    /// Signals the other nodes; a single-node store has none.
    async fn tell_others(&self, signal: Signal) {
        if self.inner.store.single_node() {
            return;
        }
        if let Err(error) = self.inner.store.notify(signal).await {
            tracing::warn!(%error, "could not signal the other nodes; they will poll");
        }
    }

    async fn publish_to(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
        target: Target<'_>,
    ) -> Result<Publication, EngineError> {
        let idempotency = target.idempotency_key.map(|key| IdempotencyKey {
            key: key.to_owned(),
            fingerprint: fingerprint(event_type, &data, target.only.as_deref()),
        });
        let started = std::time::SystemTime::now();
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
        let published = self
            .inner
            .store
            .publish(NewEvent {
                id: event.id.clone(),
                scope: scope.clone(),
                event_type: event_type.as_str().to_owned(),
                created_ms: now,
                body: body.clone(),
                lean_body: lean_body.clone(),
                only_subscription: target.only,
                order_key: target.order_key,
                idempotency: idempotency.clone(),
            })
            .await?;
        let (deliveries, later, rest) = match published {
            Published::Created(deliveries) => (deliveries, 0, None),
            Published::Spreading { deliveries, later, rest } => (deliveries, later, Some(rest)),
            Published::Replayed { event_id, fingerprint } => {
                if idempotency.is_none_or(|k| k.fingerprint != fingerprint) {
                    return Err(EngineError::IdempotencyKeyReused);
                }
                return self.first_event(scope, &event_id).await;
            }
        };
        // Literal label values make a key the recorder keeps without copying (a computed one is
        // allocated and copied at every call: a tenth of a delivery's allocations).
        match scope.mode {
            Mode::Sandbox => metrics::counter!(metric::EVENTS_PUBLISHED, "mode" => "SANDBOX").increment(1),
            Mode::Production => metrics::counter!(metric::EVENTS_PUBLISHED, "mode" => "PRODUCTION").increment(1),
        }
        let scope_labels = (scope.tenant_id.as_str(), scope.mode.as_str());
        let fan_out = deliveries.len() + later;
        self.inner.traces.publish(&event.id, event_type.as_str(), scope_labels, started, fan_out);
        let fresh =
            Fresh { event_id: event.id.clone(), body: Bytes::from(body), lean_body: lean_body.map(Bytes::from) };
        let Some(mut rest) = rest else {
            fresh.hand_to_lanes(&self.inner.lanes, deliveries);
            return Ok(Publication { event, replayed: false });
        };
        // Only a large fan-out pays for copies of the id, for the rows still to come.
        fresh.clone().hand_to_lanes(&self.inner.lanes, deliveries);
        let lanes = self.inner.lanes.clone();
        tokio::spawn(async move {
            while let Some(part) = rest.recv().await {
                match part {
                    Ok(deliveries) => fresh.clone().hand_to_lanes(&lanes, deliveries),
                    // The part is still in the store: a poll writes it.
                    Err(error) => tracing::error!(%error, event_id = %fresh.event_id, "writing a fan-out failed"),
                }
            }
        });
        Ok(Publication { event, replayed: false })
    }

    /// The event an idempotency key made first, exactly as it was answered then.
    async fn first_event(&self, scope: &Scope, event_id: &str) -> Result<Publication, EngineError> {
        let stored = self.inner.store.get_event(scope, event_id).await?;
        let event = stored
            .and_then(|stored| serde_json::from_str(&stored.body).ok())
            .ok_or_else(|| EngineError::Store(smile_store::StoreError::Invalid(format!("event {event_id} is gone"))))?;
        Ok(Publication { event, replayed: true })
    }
}

/// A committed event's bodies, for its deliveries as they are written.
#[derive(Clone)]
struct Fresh {
    event_id: String,
    body: Bytes,
    lean_body: Option<Bytes>,
}

impl Fresh {
    /// Hands `deliveries`, just written, to their lanes.
    fn hand_to_lanes(self, lanes: &mpsc::UnboundedSender<Msg>, deliveries: Vec<smile_store::NewDelivery>) {
        metrics::counter!(metric::DELIVERIES_CREATED).increment(deliveries.len() as u64);
        if !deliveries.is_empty() {
            let Fresh { event_id, body, lean_body } = self;
            let _ = lanes.send(Msg::Fresh { event_id, body, lean_body, deliveries });
        }
    }
}

/// Where a publish goes beyond the matching subscriptions' rules.
struct Target<'a> {
    /// One subscription only (test sends), whatever its event types.
    only: Option<String>,
    /// Deliveries of one key go one at a time, in publish order.
    order_key: Option<String>,
    idempotency_key: Option<&'a str>,
}

/// What a request asked for, as an idempotency key remembers it.
fn fingerprint(event_type: EventType, data: &Value, only: Option<&str>) -> String {
    let mut digest = Sha256::new();
    digest.update(event_type.as_str());
    digest.update([0]);
    digest.update(only.unwrap_or_default());
    digest.update([0]);
    // serde_json's maps are sorted, so the same data always serialises the same.
    digest.update(data.to_string());
    hex::encode(digest.finalize())
}

/// Keys past their window are only taken over by a new request; this deletes them, hourly,
/// for as long as anyone else holds the store.
fn forget_old_idempotency_keys(store: &Arc<dyn Store>) {
    let store = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            match store.forget_idempotency_keys(timefmt::now_ms() - IDEMPOTENCY_WINDOW_MS).await {
                Ok(0) => {}
                Ok(forgotten) => tracing::info!(forgotten, "forgot idempotency keys past their 24 hours"),
                Err(error) => tracing::warn!(%error, "could not forget old idempotency keys; will try again"),
            }
        }
    });
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
