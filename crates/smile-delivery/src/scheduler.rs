//! The in-memory scheduler: one queue per subscription with an in-flight cap, so a slow or
//! dead endpoint never holds up the others. It only orders the work this node holds a lease
//! on; what is pending lives in the store, and retries come back through a claim.

use crate::engine::Inner;
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// One attempt to make: a delivery and the exact body it sends.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub delivery_id: String,
    pub event_id: String,
    pub subscription_id: String,
    /// Attempts already made (the next one is this plus one).
    pub attempts_made: u32,
    pub body: Bytes,
    /// Deliveries with the same key to the same subscription go one at a time, in order.
    pub order_key: Option<Arc<str>>,
}

pub(crate) enum Msg {
    /// Send as soon as the endpoint has room.
    Now(Job),
    /// An attempt ended.
    Done { subscription_id: String, delivery_id: String, order_key: Option<Arc<str>> },
    /// The deliveries held (queued or in flight), for lease renewal.
    Held(oneshot::Sender<Vec<String>>),
}

#[derive(Default)]
struct Endpoint {
    waiting: VecDeque<Job>,
    in_flight: usize,
}

pub(crate) struct Scheduler {
    engine: Weak<Inner>,
    tx: mpsc::UnboundedSender<Msg>,
    cap: usize,
    endpoints: HashMap<String, Endpoint>,
    /// Deliveries queued at an endpoint or in flight: never twice at once.
    active: HashSet<String>,
    /// Order keys with a delivery under way at a subscription, and what waits behind it.
    ordered: HashMap<(String, Arc<str>), VecDeque<Job>>,
}

impl Scheduler {
    pub fn spawn(engine: Weak<Inner>, cap: usize) -> mpsc::UnboundedSender<Msg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let scheduler = Scheduler {
            engine,
            tx: tx.clone(),
            cap: cap.max(1),
            endpoints: HashMap::new(),
            active: HashSet::new(),
            ordered: HashMap::new(),
        };
        tokio::spawn(scheduler.run(rx));
        tx
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Now(job) => {
                    if !self.active.contains(&job.delivery_id) {
                        self.admit(job);
                    }
                }
                Msg::Done { subscription_id, delivery_id, order_key } => {
                    self.active.remove(&delivery_id);
                    self.finish(&subscription_id);
                    if let Some(key) = order_key {
                        self.next_in_order((subscription_id, key));
                    }
                }
                Msg::Held(reply) => {
                    let _ = reply.send(self.active.iter().cloned().collect());
                }
            }
        }
    }

    /// Holds a job behind an earlier one of its order key, or dispatches it.
    fn admit(&mut self, job: Job) {
        if let Some(key) = &job.order_key {
            let slot = (job.subscription_id.clone(), key.clone());
            if let Some(waiting) = self.ordered.get_mut(&slot) {
                self.active.insert(job.delivery_id.clone());
                waiting.push_back(job);
                return;
            }
            self.ordered.insert(slot, VecDeque::new());
        }
        self.dispatch(job);
    }

    fn next_in_order(&mut self, slot: (String, Arc<str>)) {
        match self.ordered.get_mut(&slot).and_then(VecDeque::pop_front) {
            Some(next) => self.dispatch(next),
            None => {
                self.ordered.remove(&slot);
            }
        }
    }

    fn dispatch(&mut self, job: Job) {
        self.active.insert(job.delivery_id.clone());
        let endpoint = self.endpoints.entry(job.subscription_id.clone()).or_default();
        if endpoint.in_flight < self.cap {
            endpoint.in_flight += 1;
            self.start(job);
        } else {
            endpoint.waiting.push_back(job);
        }
    }

    fn finish(&mut self, subscription_id: &str) {
        let Some(endpoint) = self.endpoints.get_mut(subscription_id) else {
            return;
        };
        endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        if let Some(next) = endpoint.waiting.pop_front() {
            endpoint.in_flight += 1;
            self.start(next);
        } else if endpoint.in_flight == 0 {
            self.endpoints.remove(subscription_id);
        }
    }

    fn start(&self, job: Job) {
        let engine = self.engine.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let (subscription_id, delivery_id) = (job.subscription_id.clone(), job.delivery_id.clone());
            let order_key = job.order_key.clone();
            if let Some(engine) = engine.upgrade() {
                engine.attempt(job).await;
            }
            let _ = tx.send(Msg::Done { subscription_id, delivery_id, order_key });
        });
    }
}
