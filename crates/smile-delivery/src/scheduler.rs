//! The in-memory scheduler: one queue per subscription with an in-flight cap, so a slow or
//! dead endpoint never holds up the others, and a timer for retries that are not yet due.
//! It only orders work: what is pending lives in the store, and is reloaded on start.

use crate::engine::Inner;
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Weak;
use tokio::sync::mpsc;

/// One attempt to make: a delivery and the exact body it sends.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub delivery_id: String,
    pub event_id: String,
    pub subscription_id: String,
    /// Attempts already made (the next one is this plus one).
    pub attempts_made: u32,
    pub body: Bytes,
}

pub(crate) enum Msg {
    /// Send as soon as the endpoint has room (a replay of a waiting delivery jumps its timer).
    Now(Job),
    /// Send at this Unix-ms time.
    At(i64, Job),
    /// An attempt ended; `retry` is the next one, if any.
    Done {
        subscription_id: String,
        delivery_id: String,
        retry: Option<(i64, Job)>,
    },
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
    timers: BinaryHeap<Reverse<(i64, String)>>,
    sleeping: HashMap<String, (i64, Job)>,
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
            timers: BinaryHeap::new(),
            sleeping: HashMap::new(),
        };
        tokio::spawn(scheduler.run(rx));
        tx
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let wait = self.timers.peek().map(|Reverse((due, _))| {
                let ms = (*due - smile_core::timefmt::now_ms()).max(0) as u64;
                tokio::time::Instant::now() + std::time::Duration::from_millis(ms)
            });
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = tokio::time::sleep_until(wait.unwrap_or_else(tokio::time::Instant::now)), if wait.is_some() => {
                    self.wake_due();
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Now(job) => {
                if !self.active.contains(&job.delivery_id) {
                    self.sleeping.remove(&job.delivery_id);
                    self.dispatch(job);
                }
            }
            Msg::At(due, job) => self.sleep(due, job),
            Msg::Done {
                subscription_id,
                delivery_id,
                retry,
            } => {
                self.active.remove(&delivery_id);
                self.finish(&subscription_id);
                if let Some((due, job)) = retry {
                    self.sleep(due, job);
                }
            }
        }
    }

    fn sleep(&mut self, due: i64, job: Job) {
        if self.active.contains(&job.delivery_id) {
            return;
        }
        if due <= smile_core::timefmt::now_ms() {
            self.sleeping.remove(&job.delivery_id);
            self.dispatch(job);
        } else {
            self.timers.push(Reverse((due, job.delivery_id.clone())));
            self.sleeping.insert(job.delivery_id.clone(), (due, job));
        }
    }

    fn wake_due(&mut self) {
        let now = smile_core::timefmt::now_ms();
        while let Some(Reverse((due, _))) = self.timers.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, id))) = self.timers.pop() else {
                break;
            };
            // A timer whose delivery was replayed or rescheduled since is stale.
            if self.sleeping.get(&id).is_some_and(|(d, _)| *d == due)
                && let Some((_, job)) = self.sleeping.remove(&id)
            {
                self.dispatch(job);
            }
        }
    }

    fn dispatch(&mut self, job: Job) {
        self.active.insert(job.delivery_id.clone());
        let endpoint = self
            .endpoints
            .entry(job.subscription_id.clone())
            .or_default();
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
            let (subscription_id, delivery_id) =
                (job.subscription_id.clone(), job.delivery_id.clone());
            let retry = match engine.upgrade() {
                Some(engine) => engine.attempt(job).await,
                None => None,
            };
            let _ = tx.send(Msg::Done {
                subscription_id,
                delivery_id,
                retry,
            });
        });
    }
}
