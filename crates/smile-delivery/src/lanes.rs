//! Lanes: the bounded window of the store's queue that this node sends.
//!
//! A lane is one subscription's pending deliveries. A node sends a lane only while it holds
//! the lane's lease, so FIFO needs no other lock and two nodes never send the same delivery.
//! In memory a lane holds at most `lane_window` deliveries and all lanes at most
//! `window_bytes`, each body counted once (a fan-out's deliveries share theirs); the rest wait
//! in the store and are read in batches, earliest due first, as the lane drains. Fresh
//! deliveries go straight into their lane when it has room and nothing older waits in the
//! store. Each lane has its own in-flight cap, and a lane that keeps failing
//! sends one probe at a time, so a bad endpoint never takes capacity from a good one.
//!
//! Everything here runs in one task that owns the lanes; attempts, reads and writes run in
//! tasks of their own and report back as messages.

use crate::config::DeliveryConfig;
use crate::outcomes::{self, Committed, Recording};
use crate::sender::{AttemptResult, Endpoint, Sender, Signing};
use crate::trace::{AttemptSpan, Traces};
use crate::verdict;
use bytes::Bytes;
use smile_core::{Mode, ids, metric, timefmt};
use smile_signature::Secret;
use smile_store::{
    Attempt, DeliveryStatus, LaneBatch, Lease, NewDelivery, Outcome, Signal, Store, StoreError, Subscription,
    SubscriptionEffect,
};
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the lanes hear: from the engine, from the tasks they start, and from other nodes.
pub(crate) enum Msg {
    /// Deliveries a publish on this node just committed, with the bodies they send.
    Fresh {
        event_id: String,
        body: Bytes,
        lean_body: Option<Bytes>,
        deliveries: Vec<NewDelivery>,
    },
    /// These lanes have due work in the store (a replay, a recovery, another node's publish).
    Work(Vec<String>),
    /// A subscription changed or went away.
    Changed(String),
    Reloaded(String, Option<Subscription>),
    Claimed {
        claimed: Vec<(String, Option<Subscription>)>,
        refused: Vec<String>,
        /// The lease the claim wrote.
        until_ms: i64,
        /// The node's absences before the claim: one since makes it void.
        absences: u64,
    },
    Loaded {
        subscription_id: String,
        asked: u32,
        batch: Result<LaneBatch, StoreError>,
    },
    Attempted {
        subscription_id: String,
        job: Job,
        result: AttemptResult,
    },
    Committed(Committed),
    Renewed {
        held: Vec<String>,
        asked: Vec<String>,
        until_ms: i64,
    },
    Found(Vec<String>),
    /// Subscriptions changed lately; those held here are reloaded (their signal may be lost).
    Stale(Vec<String>),
    /// How full the window is, for tests and metrics.
    Window(oneshot::Sender<WindowStats>),
    /// The node is going away: send nothing more, let the attempts in flight finish and their
    /// outcomes commit, then hand every lane back. Answers once the lanes are handed back.
    Drain(oneshot::Sender<()>),
    /// Hand every lane back now, whatever is still in flight (the drain ran out of time).
    HandBack(oneshot::Sender<()>),
    /// Stop the task.
    Stop,
}

/// Whether this node still takes work.
enum Phase {
    Running,
    /// Finishing what is in flight; the answer waits for the hand back.
    Draining(Option<oneshot::Sender<()>>),
    /// Every lane is handed back; nothing more is claimed.
    HandedBack,
}

/// How much of the store's queue this node holds in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Lanes this node holds.
    pub lanes: usize,
    /// Deliveries in memory: queued, in flight, or waiting for their outcome's commit.
    pub held: usize,
    /// What they cost the window, in bytes (see `DeliveryConfig::window_bytes`).
    pub held_bytes: usize,
    /// The most any one lane holds.
    pub largest_lane: usize,
    pub in_flight: usize,
}

/// One attempt to make: a delivery and the exact body it sends.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    seq: i64,
    delivery_id: String,
    event_id: String,
    /// Attempts already made (the next one is this plus one).
    attempts_made: u32,
    body: Bytes,
}

/// What a delivery in memory costs besides its body: its ids, its queue slot, its map entries.
const JOB_BYTES: usize = 320;

/// What a delivery read from the store is expected to cost, to size a read before its
/// bodies are seen (the read's own answer is then held to the budget, body by body).
const READ_JOB_BYTES: usize = JOB_BYTES + 1024;

/// What all lanes of this node hold in memory, against its budget: each delivery's
/// [`JOB_BYTES`], and each body once however many deliveries hold it (a fan-out's share one).
#[derive(Debug)]
struct Window {
    deliveries: usize,
    bytes: usize,
    budget: usize,
    /// Bodies held, by address, with how many held deliveries hold each. A held delivery keeps
    /// its body alive (see `Lane::held`), so an address is not reused while it is here.
    bodies: HashMap<usize, usize>,
}

impl Window {
    fn new(budget: usize) -> Self {
        Window { deliveries: 0, bytes: 0, budget, bodies: HashMap::new() }
    }

    /// What holding one more delivery with `body` would add.
    fn cost(&self, body: &Bytes) -> usize {
        let shared = self.bodies.contains_key(&(body.as_ptr() as usize));
        JOB_BYTES + if shared { 0 } else { body.len() }
    }

    /// Whether one more delivery with `body` fits, beside `also` more waiting to be counted.
    fn admits(&self, body: &Bytes, also: usize) -> bool {
        self.fits(self.cost(body) + JOB_BYTES * also)
    }

    /// Whether `cost` more fits. An empty window takes anything, so that a body larger than
    /// the budget is still sent.
    fn fits(&self, cost: usize) -> bool {
        self.deliveries == 0 || self.bytes + cost <= self.budget
    }

    /// How many deliveries a read may ask for now.
    fn room_for_reads(&self) -> usize {
        let room = self.budget.saturating_sub(self.bytes) / READ_JOB_BYTES;
        if self.deliveries == 0 { room.max(1) } else { room }
    }

    fn take(&mut self, body: &Bytes) {
        let holders = self.bodies.entry(body.as_ptr() as usize).or_default();
        if *holders == 0 {
            self.bytes += body.len();
        }
        *holders += 1;
        self.bytes += JOB_BYTES;
        self.deliveries += 1;
    }

    fn give_back(&mut self, body: &Bytes) {
        let key = body.as_ptr() as usize;
        let Some(holders) = self.bodies.get_mut(&key) else { return };
        *holders -= 1;
        if *holders == 0 {
            self.bodies.remove(&key);
            self.bytes = self.bytes.saturating_sub(body.len());
        }
        self.bytes = self.bytes.saturating_sub(JOB_BYTES);
        self.deliveries = self.deliveries.saturating_sub(1);
    }

    fn clear(&mut self) {
        *self = Window::new(self.budget);
    }
}

/// What an attempt needs to know of its subscription.
#[derive(Clone)]
struct Target {
    endpoint: Endpoint,
    guarded: bool,
    secret: Secret,
    previous: Option<(Secret, i64)>,
    active: bool,
    /// The subscription's `updated_ms`: an older read never replaces a newer one.
    updated_ms: i64,
}

impl Target {
    fn of(sub: &Subscription) -> Self {
        Target {
            endpoint: Endpoint::parse(&sub.url),
            guarded: sub.scope.mode == Mode::Production,
            secret: secret_of(&sub.secret),
            previous: sub.previous_secret.as_deref().map(secret_of).zip(sub.previous_secret_until_ms),
            active: sub.active,
            updated_ms: sub.updated_ms,
        }
    }
}

/// The API refuses a malformed `whsk_` key, so one here is a stored row from elsewhere: it
/// still signs (as a shared secret) rather than stopping the lane.
fn secret_of(stored: &str) -> Secret {
    Secret::parse(stored).unwrap_or_else(|_| Secret::shared(stored.as_bytes()))
}

/// One subscription's window.
struct Lane {
    target: Arc<Target>,
    /// Loaded and due, not sent yet.
    queue: VecDeque<Job>,
    /// The deliveries in memory (queued, in flight, or waiting for their outcome's commit) by
    /// seq, each with its body, kept until it leaves the window.
    held: HashMap<i64, Bytes>,
    in_flight: usize,
    /// The store may hold due deliveries of this lane that are not in memory.
    more: bool,
    /// The store was asked to leave this lane's deliveries in the log (see `fall_behind`).
    behind: bool,
    loading: bool,
    /// Fresh deliveries that came while a read was under way; merged (without repeats) when
    /// it returns, since the read may or may not have seen them.
    arrived: Vec<Job>,
    /// Work in the store that a read under way may not see (a retry, a made-due delivery).
    missed: bool,
    /// Seqs the last two reads returned. A publish's notice can come after a read that
    /// already returned (and even sent) that delivery; such a notice is ignored.
    read_last: HashSet<i64>,
    read_before: HashSet<i64>,
    /// Deliveries whose outcome committed while a read was under way: the read's snapshot
    /// may predate the commit, so they are not taken from it.
    finished: HashSet<i64>,
    failing_since: Option<i64>,
    /// Consecutive failed attempts, for the breaker.
    failures: u32,
    /// Fresh deliveries it was given while all its attempt slots were taken and none of them
    /// answered: a hung or trickling endpoint, which falls behind before it fills its window.
    unanswered_arrivals: usize,
    /// No attempt starts before this (the breaker's pause).
    paused_until: i64,
    /// In the queue of lanes waiting for a free attempt slot.
    waiting_turn: bool,
    /// In the queue of lanes waiting for room in the global window.
    waiting_room: bool,
    /// The earliest time a timer will look at this lane again.
    wake_at: Option<i64>,
    lease_until: i64,
}

impl Lane {
    fn new(sub: &Subscription, lease_until: i64) -> Self {
        Lane {
            target: Arc::new(Target::of(sub)),
            queue: VecDeque::new(),
            held: HashMap::new(),
            in_flight: 0,
            more: true,
            behind: false,
            loading: false,
            arrived: Vec::new(),
            missed: false,
            finished: HashSet::new(),
            read_last: HashSet::new(),
            read_before: HashSet::new(),
            failing_since: sub.failing_since_ms,
            failures: 0,
            unanswered_arrivals: 0,
            paused_until: 0,
            waiting_turn: false,
            waiting_room: false,
            wake_at: None,
            lease_until,
        }
    }

    /// Its breaker paused it: no attempt starts before `paused_until`.
    fn paused(&self, now: i64) -> bool {
        self.paused_until > now
    }

    /// Its breaker is open: one attempt at a time, and it reads only what that one needs.
    fn on_probation(&self, config: &DeliveryConfig) -> bool {
        self.failures >= config.breaker_after
    }

    /// Attempts it may have in flight at once.
    fn in_flight_cap(&self, config: &DeliveryConfig) -> usize {
        if self.on_probation(config) { 1 } else { config.max_in_flight_per_endpoint }
    }

    /// Its endpoint holds every attempt it may send and answers none, while a quarter of a
    /// window more came in: it will not drain soon, so it stops taking rows and memory now.
    /// A lane merely waiting for a turn under the node's cap has free slots, so it never
    /// counts as stalled: a thousand lanes falling behind at once cost more than they save.
    fn stalled(&self, config: &DeliveryConfig) -> bool {
        self.unanswered_arrivals >= (config.lane_window / 4).max(1)
    }

    /// Counts a fresh delivery toward `stalled` while its attempt slots are all taken.
    fn count_arrival(&mut self, config: &DeliveryConfig) {
        if self.in_flight >= self.in_flight_cap(config) {
            self.unanswered_arrivals += 1;
        }
    }

    fn idle(&self) -> bool {
        self.held.is_empty() && !self.more && !self.loading
    }

    /// Attempts sent whose outcomes are not committed yet: in flight, or answered and waiting
    /// for the attempt log (what is held and no longer queued).
    fn unrecorded(&self) -> usize {
        self.held.len().saturating_sub(self.queue.len())
    }

    /// Queues `job` and counts it in the window, unless it is held already.
    fn hold(&mut self, job: Job, window: &mut Window) {
        if let Entry::Vacant(held) = self.held.entry(job.seq) {
            window.take(&job.body);
            held.insert(job.body.clone());
            self.queue.push_back(job);
        }
    }

    /// Lets a delivery leave memory; whether it was held.
    fn release(&mut self, seq: i64, window: &mut Window) -> bool {
        let Some(body) = self.held.remove(&seq) else { return false };
        window.give_back(&body);
        true
    }

    /// Lets every delivery it holds leave memory, as the lane leaves this node.
    fn release_all(self, window: &mut Window) {
        for body in self.held.into_values() {
            window.give_back(&body);
        }
    }

    /// Drops what is queued and not sent yet (it stays in the store).
    fn unqueue(&mut self, window: &mut Window) {
        for job in std::mem::take(&mut self.queue) {
            self.release(job.seq, window);
        }
    }
}

/// The lanes of this node and what they share.
struct Lanes {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    sender: Arc<Sender>,
    traces: Traces,
    node: String,
    tx: mpsc::UnboundedSender<Msg>,
    outcomes: mpsc::UnboundedSender<Recording>,
    lanes: HashMap<String, Lane>,
    /// Lanes being claimed.
    claiming: HashSet<String>,
    /// Lanes another node holds, and until when we believe it.
    foreign: HashMap<String, i64>,
    /// What all lanes hold.
    window: Window,
    /// Lanes waiting for room in the global window, in arrival order.
    starved: VecDeque<String>,
    /// Attempts in flight, all lanes.
    in_flight: usize,
    /// Lanes with work waiting for a free attempt slot, in turn.
    ready: VecDeque<String>,
    timers: BinaryHeap<Reverse<(i64, String)>>,
    phase: Phase,
    /// When held lanes' subscriptions were last compared with the store.
    refreshed_at: i64,
    /// This node's presence in the store ended ([`Signal::Absent`]) and is not back.
    absent: bool,
    /// How many times it ended.
    absences: u64,
}

/// Starts the lanes of a node; returns where to send them work.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    sender: Arc<Sender>,
    node: String,
    signals: mpsc::UnboundedReceiver<Signal>,
    traces: Traces,
) -> mpsc::UnboundedSender<Msg> {
    let (tx, rx) = mpsc::unbounded_channel();
    let report = tx.clone();
    let outcomes = outcomes::spawn(store.clone(), move |committed| {
        let _ = report.send(Msg::Committed(committed));
    });
    let window = Window::new(config.window_bytes);
    let lanes = Lanes {
        store,
        config,
        sender,
        traces,
        node,
        tx: tx.clone(),
        outcomes,
        lanes: HashMap::new(),
        claiming: HashSet::new(),
        foreign: HashMap::new(),
        window,
        starved: VecDeque::new(),
        in_flight: 0,
        ready: VecDeque::new(),
        timers: BinaryHeap::new(),
        phase: Phase::Running,
        refreshed_at: timefmt::now_ms(),
        absent: false,
        absences: 0,
    };
    tokio::spawn(lanes.run(rx, signals));
    tx
}

impl Lanes {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, mut signals: mpsc::UnboundedReceiver<Signal>) {
        let mut poll = tokio::time::interval(self.config.poll_interval.max(Duration::from_millis(50)));
        let mut renew = tokio::time::interval((self.config.lease / 3).max(Duration::from_millis(50)));
        renew.reset();
        let mut signals_open = true;
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let sleep_ms = next_timer.map_or(3_600_000, |at| (at - timefmt::now_ms()).max(0) as u64);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Stop) | None => return,
                    Some(msg) => self.handle(msg),
                },
                signal = signals.recv(), if signals_open => match signal {
                    Some(Signal::SubscriptionChanged { id }) => self.handle(Msg::Changed(id)),
                    Some(Signal::LaneWork { subscription_ids }) => self.work(subscription_ids, false),
                    Some(Signal::Missed) => self.missed_signals(),
                    Some(Signal::Absent) => self.absent(),
                    None => signals_open = false,
                },
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)), if next_timer.is_some() => self.fire_timers(),
                _ = poll.tick() => self.poll(),
                _ = renew.tick() => self.renew(),
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Fresh { event_id, body, lean_body, deliveries } => self.fresh(&event_id, body, lean_body, deliveries),
            Msg::Work(ids) => self.work(ids, true),
            Msg::Changed(id) => {
                let (store, tx) = (self.store.clone(), self.tx.clone());
                tokio::spawn(async move {
                    let sub = store.subscription_by_id(&id).await.ok().flatten();
                    let _ = tx.send(Msg::Reloaded(id, sub));
                });
            }
            Msg::Reloaded(id, sub) => self.reloaded(id, sub),
            Msg::Claimed { claimed, refused, until_ms, absences } => self.claimed(claimed, refused, until_ms, absences),
            Msg::Loaded { subscription_id, asked, batch } => self.loaded(subscription_id, asked, batch),
            Msg::Attempted { subscription_id, job, result } => self.attempted(subscription_id, job, result),
            Msg::Committed(committed) => self.committed(committed),
            Msg::Renewed { held, asked, until_ms } => self.renewed(held, asked, until_ms),
            Msg::Found(ids) => {
                // A lane already at work reads the store as it drains; only an empty one may
                // have missed a signal.
                let ids = ids.into_iter().filter(|id| self.lanes.get(id).is_none_or(|l| l.held.is_empty())).collect();
                self.work(ids, false)
            }
            Msg::Stale(ids) => {
                let held: Vec<String> = ids.into_iter().filter(|id| self.lanes.contains_key(id)).collect();
                for id in held {
                    self.handle(Msg::Changed(id));
                }
            }
            Msg::Drain(reply) => self.drain(reply),
            Msg::HandBack(reply) => self.hand_back(Some(reply)),
            Msg::Stop => {}
            Msg::Window(reply) => {
                let _ = reply.send(WindowStats {
                    lanes: self.lanes.len(),
                    held: self.window.deliveries,
                    held_bytes: self.window.bytes,
                    largest_lane: self.lanes.values().map(|l| l.held.len()).max().unwrap_or(0),
                    in_flight: self.in_flight,
                });
            }
        }
    }

    // ---- work arriving ----

    fn fresh(&mut self, event_id: &str, body: Bytes, lean_body: Option<Bytes>, deliveries: Vec<NewDelivery>) {
        if !self.running() {
            // The store has them; the node that takes the lane over sends them.
            return;
        }
        let mut unknown = Vec::new();
        let now = timefmt::now_ms();
        for d in deliveries.into_iter().filter(|d| d.due) {
            let Some(lane) = self.lanes.get_mut(&d.subscription_id) else {
                unknown.push(d.subscription_id);
                continue;
            };
            let held = lane.held.len() + lane.arrived.len();
            lane.count_arrival(&self.config);
            // A lane its breaker paused sends nothing for a second or more, and a stalled one
            // nothing until its endpoint answers: neither can take work any more than a full
            // one can.
            let stuck = held >= self.config.lane_window || lane.paused(now) || lane.stalled(&self.config);
            let body = match (&lean_body, d.lean) {
                (Some(lean), true) => lean.clone(),
                _ => body.clone(),
            };
            let room = !stuck && self.window.admits(&body, lane.arrived.len());
            let job = Job { seq: d.seq, delivery_id: d.id, event_id: event_id.to_owned(), attempts_made: 0, body };
            if lane.held.contains_key(&job.seq)
                || lane.read_last.contains(&job.seq)
                || lane.read_before.contains(&job.seq)
            {
                continue;
            }
            if !room || !lane.target.active || (lane.more && !lane.loading) {
                // The store has it; the lane reads it when it gets there.
                lane.more = true;
                // Only a lane that cannot take work falls behind: one waiting for room in the
                // node's window takes it soon, and a thousand lanes falling behind at once
                // made one writer batch of their writes take 331 ms (fan-out-1000).
                if stuck && !lane.behind {
                    lane.behind = true;
                    fall_behind(self.store.clone(), d.subscription_id.clone());
                }
            } else if lane.loading {
                lane.arrived.push(job);
            } else {
                lane.hold(job, &mut self.window);
            }
            self.pump(&d.subscription_id);
        }
        if !unknown.is_empty() {
            self.work(unknown, true);
        }
    }

    /// Lanes with due work in the store: read the ones held here, claim the others.
    /// `tell_owner`: when another node holds a lane, signal it.
    fn work(&mut self, ids: Vec<String>, tell_owner: bool) {
        // An absent node claims nothing: the store has the work, and the poll after the
        // presence is back finds it.
        if !self.running() || self.absent {
            return;
        }
        let now = timefmt::now_ms();
        let (mut claim, mut foreign) = (Vec::new(), Vec::new());
        for id in ids {
            if let Some(lane) = self.lanes.get_mut(&id) {
                lane.more = true;
                lane.missed |= lane.loading;
                self.pump(&id);
            } else if self.foreign.get(&id).is_some_and(|until| *until > now) {
                foreign.push(id);
            } else if self.claiming.insert(id.clone()) {
                claim.push(id);
            }
        }
        if tell_owner && !foreign.is_empty() {
            self.tell_others(foreign);
        }
        if !claim.is_empty() {
            self.claim(claim);
        }
    }

    fn claim(&mut self, ids: Vec<String>) {
        let (store, tx, absences) = (self.store.clone(), self.tx.clone(), self.absences);
        let lease = self.lease();
        tokio::spawn(async move {
            let taken = match store.claim_lanes(&lease, &ids, timefmt::now_ms()).await {
                Ok(taken) => taken,
                Err(error) => {
                    tracing::error!(%error, "could not claim lanes; the poller will try again");
                    Vec::new()
                }
            };
            let mut claimed = Vec::with_capacity(taken.len());
            for id in &taken {
                claimed.push((id.clone(), store.subscription_by_id(id).await.ok().flatten()));
            }
            let refused = ids.into_iter().filter(|id| !taken.contains(id)).collect();
            let _ = tx.send(Msg::Claimed { claimed, refused, until_ms: lease.until_ms, absences });
        });
    }

    fn claimed(
        &mut self,
        claimed: Vec<(String, Option<Subscription>)>,
        refused: Vec<String>,
        lease_until: i64,
        absences: u64,
    ) {
        if absences != self.absences {
            // Claimed before an absence: other nodes may have taken them since. Those still
            // ours are claimed again once the node is back.
            for id in claimed.iter().map(|(id, _)| id).chain(&refused) {
                self.claiming.remove(id);
            }
            return;
        }
        let mut release = Vec::new();
        for (id, sub) in claimed {
            self.claiming.remove(&id);
            match sub {
                Some(sub) if sub.active => {
                    self.foreign.remove(&id);
                    self.lanes.insert(id.clone(), Lane::new(&sub, lease_until));
                    self.pump(&id);
                }
                _ => release.push(id),
            }
        }
        let guess = timefmt::now_ms() + self.config.poll_interval.as_millis() as i64;
        for id in &refused {
            self.claiming.remove(id);
            self.foreign.insert(id.clone(), guess);
        }
        if !refused.is_empty() {
            // Another node holds them: tell it there is work.
            self.tell_others(refused);
        }
        self.release(release, lease_until);
    }

    fn reloaded(&mut self, id: String, sub: Option<Subscription>) {
        let Some(lane) = self.lanes.get_mut(&id) else { return };
        match sub {
            // A read that started before a change the API already handed over.
            Some(sub) if sub.updated_ms < lane.target.updated_ms => {}
            Some(sub) if sub.active => {
                lane.target = Arc::new(Target::of(&sub));
                lane.failing_since = sub.failing_since_ms;
                lane.more = true;
                self.pump(&id);
            }
            _ => self.stop(&id),
        }
    }

    // ---- the window ----

    /// Starts what the lane may send now, and reads more from the store when it runs low.
    fn pump(&mut self, id: &str) {
        if !self.running() {
            return;
        }
        let Some(lane) = self.lanes.get_mut(id) else { return };
        if !lane.target.active {
            return;
        }
        let now = timefmt::now_ms();
        // Fencing: never send on a lease that may have run out.
        let margin = self.config.lease.as_millis() as i64 / 6;
        if now >= lane.lease_until - margin {
            return;
        }
        let cap = lane.in_flight_cap(&self.config);
        // What is sent but not recorded is sent again if this node dies: bound it.
        let unrecorded_cap = self.config.max_unrecorded_per_endpoint.max(1);
        while lane.in_flight < cap.max(1)
            && lane.unrecorded() < unrecorded_cap
            && !lane.paused(now)
            && !lane.queue.is_empty()
        {
            if self.in_flight >= self.config.max_in_flight {
                if !lane.waiting_turn {
                    lane.waiting_turn = true;
                    self.ready.push_back(id.to_owned());
                }
                break;
            }
            let Some(job) = lane.queue.pop_front() else { break };
            lane.in_flight += 1;
            self.in_flight += 1;
            attempt(self.sender.clone(), lane.target.clone(), id.to_owned(), job, self.tx.clone());
        }
        if lane.paused(now) {
            // Nothing is read while paused: a read would only fill the window with what the
            // lane cannot send, and make rows of deliveries still in the log.
            if !lane.queue.is_empty() || lane.more {
                let at = lane.paused_until;
                self.wake(id, at);
            }
            return;
        }
        // Nor while stalled, for the same reasons: the next answer ends the stall and reads.
        if !lane.more || lane.loading || lane.stalled(&self.config) || lane.queue.len() > self.config.lane_window / 2 {
            return;
        }
        let wanted = if lane.on_probation(&self.config) { 1 } else { self.config.lane_window };
        if lane.held.len() >= wanted {
            return;
        }
        let room = (wanted - lane.held.len()).min(self.window.room_for_reads());
        if room == 0 {
            if !lane.waiting_room {
                lane.waiting_room = true;
                self.starved.push_back(id.to_owned());
            }
            return;
        }
        lane.loading = true;
        lane.missed = false;
        let held: Vec<i64> = lane.held.keys().copied().collect();
        let (store, tx, id) = (self.store.clone(), self.tx.clone(), id.to_owned());
        let asked = room.min(1000) as u32;
        tokio::spawn(async move {
            let batch = store.load_lane(&id, timefmt::now_ms(), &held, asked).await;
            let _ = tx.send(Msg::Loaded { subscription_id: id, asked, batch });
        });
    }

    fn loaded(&mut self, id: String, asked: u32, batch: Result<LaneBatch, StoreError>) {
        let Some(lane) = self.lanes.get_mut(&id) else { return };
        lane.loading = false;
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        match batch {
            Ok(batch) => {
                let mut more = batch.deliveries.len() as u32 >= asked || lane.missed || batch.behind;
                lane.missed = false;
                lane.behind = batch.behind;
                lane.read_before =
                    std::mem::replace(&mut lane.read_last, batch.deliveries.iter().map(|d| d.seq).collect());
                let read = batch.deliveries.into_iter().map(|d| Job {
                    seq: d.seq,
                    delivery_id: d.id,
                    event_id: d.event_id,
                    attempts_made: d.attempts,
                    body: Bytes::from(d.body),
                });
                let arrived: Vec<Job> = std::mem::take(&mut lane.arrived)
                    .into_iter()
                    .filter(|job| !lane.read_before.contains(&job.seq))
                    .collect();
                let finished = std::mem::take(&mut lane.finished);
                if lane.target.active {
                    for job in read.chain(arrived).filter(|job| !finished.contains(&job.seq)) {
                        // Other lanes may have taken room since the read was asked for.
                        if lane.held.len() >= self.config.lane_window || !self.window.admits(&job.body, 0) {
                            more = true;
                            break;
                        }
                        lane.hold(job, &mut self.window);
                    }
                }
                lane.more = more;
                if let Some(at) = batch.next_due_ms {
                    self.wake(&id, at);
                }
            }
            Err(error) => {
                tracing::error!(%error, subscription = %id, "could not read a lane; trying again in a second");
                self.wake(&id, timefmt::now_ms() + 1000);
            }
        }
        self.pump(&id);
    }

    /// Looks at a lane again at `at`, unless a timer already does so sooner.
    fn wake(&mut self, id: &str, at: i64) {
        let Some(lane) = self.lanes.get_mut(id) else { return };
        if lane.wake_at.is_none_or(|w| at < w) {
            lane.wake_at = Some(at);
            self.timers.push(Reverse((at, id.to_owned())));
        }
    }

    fn fire_timers(&mut self) {
        let now = timefmt::now_ms();
        while let Some(Reverse((at, _))) = self.timers.peek()
            && *at <= now
        {
            let Some(Reverse((at, id))) = self.timers.pop() else { break };
            if let Some(lane) = self.lanes.get_mut(&id) {
                if lane.wake_at.is_some_and(|w| w <= at) {
                    lane.wake_at = None;
                }
                lane.more = true;
                lane.missed |= lane.loading;
            }
            self.pump(&id);
        }
    }

    // ---- attempts and their outcomes ----

    fn attempted(&mut self, id: String, job: Job, result: AttemptResult) {
        let finished = timefmt::now_ms();
        let attempt_no = job.attempts_made + 1;
        // A lane lost meanwhile still gets its attempt logged.
        let failing_since = self.lanes.get(&id).and_then(|lane| lane.failing_since);
        let verdict = verdict::decide(&self.config, &result, attempt_no, failing_since, finished);
        record_attempt(&result, verdict.status);
        self.traces.attempt(AttemptSpan {
            event_id: &job.event_id,
            delivery_id: &job.delivery_id,
            subscription_id: &id,
            attempt: attempt_no,
            latency: result.latency,
            status_code: result.status,
            error: result.error.as_deref(),
            decided: verdict.status.as_str(),
        });
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(lane) = self.lanes.get_mut(&id) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            lane.unanswered_arrivals = 0;
            match &verdict.effect {
                SubscriptionEffect::Recovered => lane.failing_since = None,
                SubscriptionEffect::FailingSince(since) => lane.failing_since = Some(*since),
                SubscriptionEffect::Disable { .. } | SubscriptionEffect::None => {}
            }
            if result.succeeded() {
                lane.failures = 0;
                lane.paused_until = 0;
            } else if finished >= lane.paused_until {
                // Attempts still in flight when the breaker paused the lane fail together and
                // count as the one failure that paused it: ten at once had paused it 32 s.
                lane.failures += 1;
                if let Some(over) = lane.failures.checked_sub(self.config.breaker_after) {
                    let pause = Duration::from_secs(1u64 << over.min(16)).min(self.config.breaker_max_pause);
                    lane.paused_until = finished + pause.as_millis() as i64;
                }
            }
        }
        let outcome = Outcome {
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
            subscription_id: id.clone(),
            status: verdict.status,
            next_attempt_ms: verdict.next_attempt_ms,
            subscription_effect: verdict.effect,
        };
        let disabled = matches!(outcome.subscription_effect, SubscriptionEffect::Disable { .. });
        let _ = self.outcomes.send(Recording { outcome, seq: job.seq });
        if disabled {
            // Stop now, not when the disable commits: nothing more goes to a 410.
            self.stop(&id);
        }
        self.pump(&id);
        self.take_turns();
        self.check_drained();
    }

    /// Gives free attempt slots to the lanes waiting for one, a slot each in turn.
    fn take_turns(&mut self) {
        while self.in_flight < self.config.max_in_flight
            && let Some(id) = self.ready.pop_front()
        {
            if let Some(lane) = self.lanes.get_mut(&id) {
                lane.waiting_turn = false;
            }
            self.pump(&id);
        }
    }

    fn committed(&mut self, committed: Committed) {
        let mut touched = HashSet::new();
        for (id, seq, due_again) in committed.deliveries {
            if let Some(lane) = self.lanes.get_mut(&id)
                && lane.release(seq, &mut self.window)
            {
                if lane.loading {
                    lane.finished.insert(seq);
                }
                if let Some(at) = due_again {
                    self.wake(&id, at);
                }
            }
            touched.insert(id);
        }
        for id in committed.effects.unparked {
            if let Some(lane) = self.lanes.get_mut(&id) {
                lane.more = true;
                lane.missed |= lane.loading;
            }
            touched.insert(id);
        }
        for id in &committed.effects.disabled {
            self.stop(id);
            self.tell_changed(id.clone());
        }
        for id in touched {
            self.pump(&id);
        }
        while self.window.room_for_reads() > 0
            && let Some(id) = self.starved.pop_front()
        {
            if let Some(lane) = self.lanes.get_mut(&id) {
                lane.waiting_room = false;
            }
            self.pump(&id);
        }
        self.check_drained();
    }

    /// The subscription is inactive or gone: drop what the lane holds but has not sent.
    fn stop(&mut self, id: &str) {
        let Some(lane) = self.lanes.get_mut(id) else { return };
        if lane.target.active {
            lane.target = Arc::new(Target { active: false, ..Target::clone(&lane.target) });
        }
        lane.unqueue(&mut self.window);
        lane.more = false;
    }

    // ---- leases ----

    fn lease(&self) -> Lease {
        Lease { owner: self.node.clone(), until_ms: timefmt::now_ms() + self.config.lease.as_millis() as i64 }
    }

    /// Other nodes may take this node's lanes now, before their leases run out: drop them all
    /// (what they hold stays in the store), and claim nothing until the presence is back.
    fn absent(&mut self) {
        self.absent = true;
        self.absences += 1;
        if !self.lanes.is_empty() {
            tracing::warn!(lanes = self.lanes.len(), "this node is absent from the store: it drops every lane it held");
        }
        for (_, lane) in self.lanes.drain() {
            lane.release_all(&mut self.window);
        }
        self.ready.clear();
        self.starved.clear();
    }

    /// Signals were lost: every held lane's subscription may be stale, and work may wait.
    /// After an absence, the node is present again.
    fn missed_signals(&mut self) {
        self.absent = false;
        let ids: Vec<String> = self.lanes.keys().cloned().collect();
        for id in ids {
            self.handle(Msg::Changed(id));
        }
        self.poll();
    }

    /// Reloads held lanes whose subscription changed since the last look, so that a lost
    /// signal leaves a lane stale (an old URL or secret) for a third of a lease at most.
    fn refresh(&mut self) {
        let now = timefmt::now_ms();
        // Nodes' clocks differ: look back a whole lease further than needed.
        let since = self.refreshed_at - self.config.lease.as_millis() as i64;
        self.refreshed_at = now;
        if self.lanes.is_empty() {
            return;
        }
        let (store, tx) = (self.store.clone(), self.tx.clone());
        tokio::spawn(async move {
            match store.subscriptions_changed_since(since).await {
                Ok(ids) if !ids.is_empty() => {
                    let _ = tx.send(Msg::Stale(ids));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not look for changed subscriptions"),
            }
        });
    }

    /// Renews the lanes in use, and gives up those idle or stopped.
    fn renew(&mut self) {
        self.refresh();
        let idle: Vec<String> = self
            .lanes
            .iter()
            .filter(|(_, lane)| lane.idle() || (!lane.target.active && lane.held.is_empty()))
            .map(|(id, _)| id.clone())
            .collect();
        let waiting: HashSet<&String> = self.timers.iter().map(|Reverse((_, id))| id).collect();
        let idle: Vec<String> = idle.into_iter().filter(|id| !waiting.contains(id)).collect();
        let until = idle.iter().filter_map(|id| self.lanes.remove(id)).map(|lane| lane.lease_until).max();
        self.release(idle, until.unwrap_or(0));
        let asked: Vec<String> = self.lanes.keys().cloned().collect();
        if asked.is_empty() {
            return;
        }
        let (store, tx, lease) = (self.store.clone(), self.tx.clone(), self.lease());
        tokio::spawn(async move {
            let held = match store.renew_lanes(&lease, &asked).await {
                Ok(held) => held,
                Err(error) => {
                    tracing::error!(%error, "could not renew lane leases; their sends stop before the leases run out");
                    return;
                }
            };
            let _ = tx.send(Msg::Renewed { held, asked, until_ms: lease.until_ms });
        });
    }

    fn renewed(&mut self, held: Vec<String>, asked: Vec<String>, until_ms: i64) {
        let held: HashSet<String> = held.into_iter().collect();
        for id in asked {
            if held.contains(&id) {
                if let Some(lane) = self.lanes.get_mut(&id) {
                    lane.lease_until = until_ms;
                }
                self.pump(&id);
            } else if let Some(lane) = self.lanes.remove(&id) {
                tracing::warn!(subscription = %id, "lost a lane's lease; another node sends it now");
                lane.release_all(&mut self.window);
            }
        }
    }

    /// Gives lanes up, unless this node claimed them again since (a lease past `until_ms`).
    fn release(&self, ids: Vec<String>, until_ms: i64) {
        if ids.is_empty() {
            return;
        }
        let (store, node) = (self.store.clone(), self.node.clone());
        tokio::spawn(async move {
            if let Err(error) = store.release_lanes(&node, &ids, until_ms).await {
                tracing::warn!(%error, "could not release lanes; they free up when their leases run out");
            }
        });
    }

    /// Looks for lanes with due work that no live node holds, after writing the large
    /// fan-outs' parts their publishers left (their lanes may be held anywhere).
    fn poll(&self) {
        if !self.running() || self.absent {
            return;
        }
        let (store, tx, node) = (self.store.clone(), self.tx.clone(), self.node.clone());
        tokio::spawn(async move {
            match store.write_left_over_spreads(timefmt::now_ms()).await {
                Ok(ids) if !ids.is_empty() => {
                    let _ = tx.send(Msg::Work(ids));
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "could not write a fan-out its publisher left"),
            }
            match store.lanes_with_work(&node, timefmt::now_ms(), 1000).await {
                Ok(ids) if !ids.is_empty() => {
                    let _ = tx.send(Msg::Found(ids));
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "could not look for due work"),
            }
        });
    }

    // ---- going away ----

    fn running(&self) -> bool {
        matches!(self.phase, Phase::Running)
    }

    /// Sends nothing more and drops what waits unsent (it stays in the store); the hand back
    /// follows once the attempts in flight have finished and their outcomes are committed.
    fn drain(&mut self, reply: oneshot::Sender<()>) {
        if !self.running() {
            let _ = reply.send(());
            return;
        }
        self.phase = Phase::Draining(Some(reply));
        for lane in self.lanes.values_mut() {
            lane.unqueue(&mut self.window);
            lane.arrived.clear();
        }
        self.ready.clear();
        self.starved.clear();
        self.check_drained();
    }

    fn check_drained(&mut self) {
        let Phase::Draining(reply) = &mut self.phase else { return };
        if self.in_flight == 0 && self.lanes.values().all(|lane| lane.held.is_empty()) {
            let reply = reply.take();
            self.hand_back(reply);
        }
    }

    /// Gives every lane up at once and tells the other nodes they have work, so they take
    /// this node's lanes now instead of when the leases run out.
    fn hand_back(&mut self, reply: Option<oneshot::Sender<()>>) {
        self.phase = Phase::HandedBack;
        let ids: Vec<String> = self.lanes.drain().map(|(id, _)| id).collect();
        self.window.clear();
        let (store, node) = (self.store.clone(), self.node.clone());
        tokio::spawn(async move {
            if let Err(error) = store.release_lanes(&node, &ids, i64::MAX).await {
                tracing::warn!(%error, "could not hand lanes back; they free up when their leases run out");
            }
            if !store.single_node() {
                for chunk in ids.chunks(200) {
                    let _ = store.notify(Signal::LaneWork { subscription_ids: chunk.to_vec() }).await;
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(());
            }
        });
    }

    // ---- other nodes ----

    fn tell_others(&self, subscription_ids: Vec<String>) {
        if self.store.single_node() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            // NOTIFY payloads are limited to 8000 bytes.
            for chunk in subscription_ids.chunks(200) {
                let signal = Signal::LaneWork { subscription_ids: chunk.to_vec() };
                if let Err(error) = store.notify(signal).await {
                    tracing::warn!(%error, "could not signal the other nodes; they will poll");
                }
            }
        });
    }

    fn tell_changed(&self, id: String) {
        if self.store.single_node() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            let _ = store.notify(Signal::SubscriptionChanged { id }).await;
        });
    }
}

/// Counts an attempt and what it decided, for `/metrics`.
fn record_attempt(result: &AttemptResult, decided: DeliveryStatus) {
    metrics::histogram!(metric::ATTEMPT_SECONDS).record(result.latency.as_secs_f64());
    // Literal label values: see `Engine::publish_to`.
    let attempts = if result.succeeded() {
        metrics::counter!(metric::ATTEMPTS, "result" => "success")
    } else {
        metrics::counter!(metric::ATTEMPTS, "result" => "failure")
    };
    attempts.increment(1);
    let outcomes = match decided {
        DeliveryStatus::Succeeded => metrics::counter!(metric::DELIVERY_OUTCOMES, "outcome" => "succeeded"),
        DeliveryStatus::Pending => metrics::counter!(metric::DELIVERY_OUTCOMES, "outcome" => "retry"),
        DeliveryStatus::Failed | DeliveryStatus::Cancelled => {
            metrics::counter!(metric::DELIVERY_OUTCOMES, "outcome" => "failed")
        }
    };
    outcomes.increment(1);
}

/// A lane whose window is full stops costing its publishers a row per event: the store keeps
/// its next deliveries in the event log until the lane reads them.
fn fall_behind(store: Arc<dyn Store>, subscription_id: String) {
    tokio::spawn(async move {
        if let Err(error) = store.fall_behind(&subscription_id).await {
            tracing::warn!(%error, subscription = %subscription_id, "could not leave a full lane's deliveries in the log");
        }
    });
}

/// Makes one attempt in a task of its own and reports what it saw.
fn attempt(
    sender: Arc<Sender>,
    target: Arc<Target>,
    subscription_id: String,
    job: Job,
    tx: mpsc::UnboundedSender<Msg>,
) {
    tokio::spawn(async move {
        let now = timefmt::now_ms();
        let previous = target.previous.as_ref().filter(|(_, until)| *until > now).map(|(s, _)| s);
        let signing = Signing { secret: &target.secret, previous };
        let result = sender.send(&target.endpoint, target.guarded, &job.event_id, job.body.clone(), signing).await;
        let _ = tx.send(Msg::Attempted { subscription_id, job, result });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_counts_once_however_many_deliveries_hold_it() {
        let mut window = Window::new(64 * 1024);
        let shared = Bytes::from(vec![b'x'; 8000]);
        for _ in 0..3 {
            window.take(&shared.clone());
        }
        assert_eq!((window.deliveries, window.bytes), (3, 3 * JOB_BYTES + 8000));
        let own = Bytes::from(vec![b'y'; 8000]);
        assert_eq!(window.cost(&own), JOB_BYTES + 8000, "another body pays for itself");
        assert_eq!(window.cost(&shared), JOB_BYTES, "a held body is paid for already");
        window.give_back(&shared);
        window.give_back(&shared);
        assert_eq!(window.bytes, JOB_BYTES + 8000, "the body stays while one delivery holds it");
        window.give_back(&shared);
        assert_eq!((window.deliveries, window.bytes), (0, 0));
        assert!(window.bodies.is_empty());
    }

    #[test]
    fn an_empty_window_takes_a_body_larger_than_its_budget() {
        let mut window = Window::new(1024);
        let large = Bytes::from(vec![b'x'; 4096]);
        assert!(window.fits(window.cost(&large)));
        assert_eq!(window.room_for_reads(), 1, "a read may ask for one");
        window.take(&large);
        assert!(!window.fits(JOB_BYTES), "then nothing more");
        assert_eq!(window.room_for_reads(), 0);
    }
}
