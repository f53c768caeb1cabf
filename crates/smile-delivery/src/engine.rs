//! The engine's face: publish, test sends, and what the API tells it about subscriptions.
//! A publish is one store transaction (the event and its fan-out); after the commit its due
//! deliveries go to their lanes.

use crate::config::DeliveryConfig;
use crate::error::EngineError;
use crate::lanes::{self, Msg, WindowStats};
use crate::sender::Sender;
use bytes::Bytes;
use serde_json::Value;
use smile_core::{Event, EventType, Mode, ids, timefmt};
use smile_store::{NewEvent, Scope, Signal, Store, Subscription};
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

/// The delivery engine; cheap to clone, one per process (a node).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    sender: Arc<Sender>,
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
        let signals = store.listen().await?;
        let node = ids::new_id("node-");
        let lanes = lanes::spawn(store.clone(), config.clone(), sender.clone(), node.clone(), signals);
        Ok(Engine { inner: Arc::new(Inner { store, config, sender, node, lanes }) })
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
        self.publish_to(scope, event_type, data, None, Some(order_key.to_owned())).await
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
        self.changed(&sub.id).await;
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
        only: Option<String>,
        order_key: Option<String>,
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
                order_key,
            })
            .await?;
        if !deliveries.is_empty() {
            let _ = self.inner.lanes.send(Msg::Fresh {
                event_id: event.id.clone(),
                body: Bytes::from(body),
                lean_body: lean_body.map(Bytes::from),
                deliveries,
            });
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
