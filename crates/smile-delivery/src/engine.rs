use crate::config::DeliveryConfig;
use crate::scheduler::{Job, Msg, Scheduler};
use crate::sender::{AttemptResult, Sender, Signing};
use bytes::Bytes;
use serde_json::Value;
use smile_core::{Event, EventType, Mode, ids, timefmt};
use smile_store::{
    Attempt, Delivery, DeliveryStatus, EventBodies, NewEvent, Outcome, Scope, Store, StoreError,
    Subscription, SubscriptionEffect,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

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

/// The delivery engine; cheap to clone, one per process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What an attempt needs to know of its subscription, kept current by the API.
struct Target {
    url: String,
    guarded: bool,
    secret: String,
    previous: Option<(String, i64)>,
    active: AtomicBool,
    /// Start of the current run of failures in Unix ms; 0 while healthy.
    failing_since: AtomicI64,
}

impl Target {
    fn of(sub: &Subscription) -> Self {
        Target {
            url: sub.url.clone(),
            guarded: sub.scope.mode == Mode::Production,
            secret: sub.secret.clone(),
            previous: sub
                .previous_secret
                .clone()
                .zip(sub.previous_secret_until_ms),
            active: AtomicBool::new(sub.active),
            failing_since: AtomicI64::new(sub.failing_since_ms.unwrap_or(0)),
        }
    }
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    sender: Sender,
    targets: RwLock<HashMap<String, Arc<Target>>>,
    scheduler: mpsc::UnboundedSender<Msg>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl Engine {
    /// Starts the engine on `store`: the scheduler, the outcome writer, and every delivery
    /// left pending by an earlier run.
    pub async fn start(
        store: Arc<dyn Store>,
        config: DeliveryConfig,
    ) -> Result<Engine, EngineError> {
        let sender = Sender::new(&config)?;
        let (outcomes, outcome_rx) = mpsc::unbounded_channel();
        let inner = Arc::new_cyclic(|weak| Inner {
            store: store.clone(),
            scheduler: Scheduler::spawn(weak.clone(), config.max_in_flight_per_endpoint),
            config,
            sender,
            targets: RwLock::default(),
            outcomes,
        });
        tokio::spawn(write_outcomes(store, outcome_rx));
        let engine = Engine { inner };
        engine.resume().await?;
        Ok(engine)
    }

    /// The egress IPs receivers should allow.
    pub fn public_egress_ips(&self) -> &[String] {
        &self.inner.config.egress.public_ips
    }

    /// Why a production delivery to `url` would be refused outright (an internal IP literal).
    pub fn url_refusal(&self, url: &str, mode: Mode) -> Option<String> {
        (mode == Mode::Production)
            .then(|| self.inner.sender.literal_blocked(url))
            .flatten()
    }

    /// Checks `data` against the catalog, persists the event with one delivery per matching
    /// subscription, and returns once that is durable; delivery starts at once.
    pub async fn publish(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
    ) -> Result<Event, EngineError> {
        event_type
            .validate_data(&data)
            .map_err(EngineError::InvalidData)?;
        self.publish_to(scope, event_type, data, None).await
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
        self.publish_to(scope, event_type, event_type.sample_data(), Some(sub.id))
            .await
    }

    /// The API changed a subscription: later attempts use its new URL, secrets and state.
    pub fn subscription_changed(&self, sub: &Subscription) {
        if let Ok(mut targets) = self.inner.targets.write() {
            targets.insert(sub.id.clone(), Arc::new(Target::of(sub)));
        }
    }

    /// The API deleted a subscription: its queued attempts are dropped.
    pub fn subscription_deleted(&self, id: &str) {
        if let Ok(mut targets) = self.inner.targets.write() {
            targets.remove(id);
        }
    }

    /// Sends these deliveries (made due by a replay or a recovery) now.
    pub async fn schedule_now(&self, deliveries: Vec<Delivery>) -> Result<(), EngineError> {
        let jobs = self.jobs_for(deliveries).await?;
        for (_, job) in jobs {
            let _ = self.inner.scheduler.send(Msg::Now(job));
        }
        Ok(())
    }

    async fn publish_to(
        &self,
        scope: &Scope,
        event_type: EventType,
        data: Value,
        only: Option<String>,
    ) -> Result<Event, EngineError> {
        let now = timefmt::now_ms();
        let event = Event {
            id: ids::new_id(ids::EVENT),
            version: smile_core::EVENT_VERSION,
            event_type,
            created_at: timefmt::format_ms(now),
            data,
        };
        let body =
            serde_json::to_string(&event).map_err(|e| EngineError::InvalidData(e.to_string()))?;
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
            })
            .await?;
        let body = Bytes::from(body);
        let lean_body = lean_body.map(Bytes::from);
        for d in deliveries {
            let body = if d.lean {
                lean_body.clone().unwrap_or_else(|| body.clone())
            } else {
                body.clone()
            };
            let job = Job {
                delivery_id: d.id,
                event_id: event.id.clone(),
                subscription_id: d.subscription_id,
                attempts_made: 0,
                body,
            };
            let _ = self.inner.scheduler.send(Msg::Now(job));
        }
        Ok(event)
    }

    async fn resume(&self) -> Result<(), EngineError> {
        let pending = self.inner.store.pending_deliveries().await?;
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "resuming pending deliveries");
        }
        let now = timefmt::now_ms();
        for (due, job) in self.jobs_for(pending).await? {
            let _ = self.inner.scheduler.send(Msg::At(due.unwrap_or(now), job));
        }
        Ok(())
    }

    async fn jobs_for(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Result<Vec<(Option<i64>, Job)>, EngineError> {
        let mut bodies: HashMap<String, Option<EventBodies>> = HashMap::new();
        let mut jobs = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            if !bodies.contains_key(&d.event_id) {
                let loaded = self.inner.store.event_bodies(&d.event_id).await?;
                bodies.insert(d.event_id.clone(), loaded);
            }
            let Some(Some(b)) = bodies.get(&d.event_id) else {
                continue;
            };
            let body = match (&b.lean_body, d.lean) {
                (Some(lean), true) => lean.clone(),
                _ => b.body.clone(),
            };
            let job = Job {
                delivery_id: d.id,
                event_id: d.event_id,
                subscription_id: d.subscription_id,
                attempts_made: d.attempts,
                body: Bytes::from(body),
            };
            jobs.push((d.next_attempt_ms, job));
        }
        Ok(jobs)
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
    async fn target(&self, id: &str) -> Option<Arc<Target>> {
        if let Some(t) = self.targets.read().ok().and_then(|t| t.get(id).cloned()) {
            return Some(t);
        }
        let sub = self.store.subscription_by_id(id).await.ok()??;
        let target = Arc::new(Target::of(&sub));
        if let Ok(mut targets) = self.targets.write() {
            targets
                .entry(id.to_owned())
                .or_insert_with(|| target.clone());
        }
        Some(target)
    }

    /// Makes one attempt, records it, and returns the next attempt's time if there is one.
    pub(crate) async fn attempt(&self, job: Job) -> Option<(i64, Job)> {
        // A deleted subscription's deliveries were cancelled in the store; an inactive one's failed.
        let target = self.target(&job.subscription_id).await?;
        if !target.active.load(Ordering::Relaxed) {
            return None;
        }
        let now = timefmt::now_ms();
        let previous = target
            .previous
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(s, _)| s.as_str());
        let signing = Signing {
            secret: &target.secret,
            previous,
        };
        let result = self
            .sender
            .send(
                &target.url,
                target.guarded,
                &job.event_id,
                job.body.clone(),
                signing,
            )
            .await;
        let attempt_no = job.attempts_made + 1;
        let finished = timefmt::now_ms();
        let (effect, next) = self.judge(&target, &result, attempt_no, finished);
        let status = match (&result.succeeded(), next) {
            (true, _) => DeliveryStatus::Succeeded,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        let outcome = Outcome {
            attempt: Attempt {
                id: ids::new_id(ids::ATTEMPT),
                delivery_id: job.delivery_id.clone(),
                attempt: attempt_no,
                attempted_ms: finished,
                status_code: result.status,
                latency_ms: result.latency.as_millis() as u64,
                response_body: result.response_body,
                error: result.error,
            },
            subscription_id: job.subscription_id.clone(),
            status,
            next_attempt_ms: next,
            subscription_effect: effect,
        };
        let _ = self.outcomes.send(outcome);
        next.map(|due| {
            (
                due,
                Job {
                    attempts_made: attempt_no,
                    ..job
                },
            )
        })
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
            let was_failing = target.failing_since.swap(0, Ordering::Relaxed) != 0;
            let effect = if was_failing {
                SubscriptionEffect::Healthy
            } else {
                SubscriptionEffect::Unchanged
            };
            return (effect, None);
        }
        let since = match target.failing_since.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        let disable = if result.status == Some(410) {
            Some("the endpoint answered 410 Gone".to_owned())
        } else if now - since >= self.config.disable_after.as_millis() as i64 {
            Some(format!(
                "failing without a success since {}",
                timefmt::format_ms(since)
            ))
        } else {
            None
        };
        if let Some(reason) = disable {
            target.active.store(false, Ordering::Relaxed);
            return (SubscriptionEffect::Disable { reason }, None);
        }
        let effect = if since == now {
            SubscriptionEffect::Failing { since_ms: since }
        } else {
            SubscriptionEffect::Unchanged
        };
        let next = self
            .config
            .retry_schedule
            .get(attempt_no as usize - 1)
            .map(|wait| {
                let jittered = wait.as_secs_f64()
                    * (1.0 + self.config.jitter * (2.0 * rand::random::<f64>() - 1.0));
                let mut wait_ms = (jittered * 1000.0) as i64;
                if let Some(after) = result.retry_after {
                    wait_ms =
                        wait_ms.max(after.min(self.config.max_retry_after).as_millis() as i64);
                }
                now + wait_ms
            });
        (effect, next)
    }
}

/// Writes attempt outcomes in batches: whatever queued while the last batch committed.
async fn write_outcomes(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        if let Err(error) = store.record_outcomes(batch).await {
            tracing::error!(%error, "could not record attempt outcomes; those deliveries will be sent again");
        }
    }
}
