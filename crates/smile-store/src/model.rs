//! The stored records. Times are Unix milliseconds.

use serde::Serialize;
use smile_core::Mode;

/// A tenant and mode: the boundary of everything a key may see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub tenant_id: String,
    pub mode: Mode,
}

/// A freshly made key pair; the secret is shown once and stored only as a hash.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub api_key: String,
    pub api_secret: String,
}

/// Who a key authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Tenant(Scope),
    Operator,
}

/// A stored key: its secret's SHA-256 and whom it authenticates.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub secret_sha256: [u8; 32],
    pub principal: Principal,
}

/// A change to a subscription: each field given is set, the others are left as stored, in one
/// statement. A change made meanwhile (the engine's automatic disable, say) is never written
/// back over from an earlier read.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Activating clears a disable (its reason and the run of failures).
    pub active: Option<bool>,
    pub secret: Option<String>,
    /// With `secret`, a rotation: the secret it replaces keeps signing until this time.
    pub previous_secret_until_ms: Option<i64>,
    pub include_payload: Option<bool>,
    pub ordering: Option<Ordering>,
}

/// A webhook subscription: where to send which event types, signed with which secret.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub scope: Scope,
    pub name: String,
    pub url: String,
    /// Event type names, or `ALL_EVENTS`.
    pub event_types: Vec<String>,
    pub active: bool,
    pub secret: String,
    /// The secret before the last rotation, still signed with until `previous_secret_until_ms`.
    pub previous_secret: Option<String>,
    pub previous_secret_until_ms: Option<i64>,
    pub include_payload: bool,
    /// Whether its deliveries go one at a time, in publish order.
    pub ordering: Ordering,
    /// Why the engine disabled it (410 Gone, failing too long), if it did.
    pub disabled_reason: Option<String>,
    /// Start of the current run of failures, cleared by a success.
    pub failing_since_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Subscription {
    /// A new active subscription with a fresh id: concurrent, without `includePayload`, and
    /// nothing rotated, disabled or failing yet.
    pub fn new(scope: Scope, name: String, url: String, event_types: Vec<String>, secret: String, now_ms: i64) -> Self {
        Subscription {
            id: smile_core::ids::new_subscription_id(),
            scope,
            name,
            url,
            event_types,
            active: true,
            secret,
            previous_secret: None,
            previous_secret_until_ms: None,
            include_payload: false,
            ordering: Ordering::Concurrent,
            disabled_reason: None,
            failing_since_ms: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }
}

/// How a subscription's deliveries are sequenced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// Many in flight at once; a failing delivery does not hold up the next (the default).
    #[default]
    Concurrent,
    /// Strict FIFO: the next delivery waits until the previous one succeeded or finally failed.
    Fifo,
}

/// The order key every delivery of a FIFO subscription carries: one sequence for all of them.
pub const FIFO_KEY: &str = "";

/// One event to persist and fan out.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub scope: Scope,
    pub event_type: String,
    pub created_ms: i64,
    /// The exact body sent to subscriptions with `includePayload` (and to all for other types).
    pub body: String,
    /// The body without `data.payload`, for the other subscriptions, when it differs.
    pub lean_body: Option<String>,
    /// Deliver to this subscription only (test sends), whatever its event types.
    pub only_subscription: Option<String>,
    /// Deliveries with the same key to the same subscription go one at a time, in publish
    /// order: a later one is parked (not due) while an earlier one is pending.
    pub order_key: Option<String>,
    /// The caller's `Idempotency-Key`, if it sent one.
    pub idempotency: Option<IdempotencyKey>,
}

/// How long an `Idempotency-Key` names its first event; after that it may be used afresh.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A caller's `Idempotency-Key` on a publish, unique within the event's scope.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    /// A digest of what the request asked for: the same key with another request is refused.
    pub fingerprint: String,
}

/// What a publish did.
#[derive(Debug)]
pub enum Published {
    /// The event is written, with these deliveries.
    Created(Vec<NewDelivery>),
    /// The event is written with `deliveries`, and a durable note of the rest of its large
    /// fan-out, to `later` more subscriptions (more than 64, none of them in order), whose
    /// rows are written in parts in the commits after it; `rest` hears of each part's due
    /// deliveries as it commits (a part heard of late could reach a lane that had read,
    /// sent and finished them already), and closes after the last or a failed one. A part
    /// its publisher leaves (a crash, a failure) is written by
    /// [`crate::Store::write_left_over_spreads`].
    Spreading {
        deliveries: Vec<NewDelivery>,
        later: usize,
        rest: tokio::sync::mpsc::UnboundedReceiver<crate::Result<Vec<NewDelivery>>>,
    },
    /// Its idempotency key was used within the window: nothing was written. These are the
    /// first event's id and the fingerprint of the request that made it.
    Replayed { event_id: String, fingerprint: String },
}

/// A node's claim on lanes (a subscription's deliveries): nobody else sends them until it
/// runs out.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until_ms: i64,
}

/// A due delivery read into a lane, with the exact body to send.
#[derive(Debug, Clone)]
pub struct LaneDelivery {
    pub seq: i64,
    pub id: String,
    pub event_id: String,
    /// Attempts already made.
    pub attempts: u32,
    pub order_key: Option<String>,
    pub body: String,
}

/// What one read of a lane found.
#[derive(Debug, Clone, Default)]
pub struct LaneBatch {
    /// Due deliveries, earliest due first.
    pub deliveries: Vec<LaneDelivery>,
    /// When the earliest pending delivery that is not due yet becomes due.
    pub next_due_ms: Option<i64>,
    /// The lane fell behind and has deliveries in the log still (see [`crate::Store::fall_behind`]).
    pub behind: bool,
}

/// What one node tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A subscription changed: drop what you cached of it.
    SubscriptionChanged { id: String },
    /// These lanes have new due work: their owner should read them.
    LaneWork { subscription_ids: Vec<String> },
    /// Signals may have been lost (the listening connection dropped and is back): reload
    /// whatever was cached, and look for work again. After [`Signal::Absent`], the node is
    /// present again.
    Missed,
    /// This node's presence in the store ended (its listening connection dropped): other
    /// nodes may take its lanes at once, so it sends and claims nothing until `Missed`.
    Absent,
}

impl Signal {
    /// The text sent over the wire (PostgreSQL NOTIFY payload).
    pub fn encode(&self) -> String {
        match self {
            Signal::SubscriptionChanged { id } => format!("subscription:{id}"),
            Signal::LaneWork { subscription_ids } => format!("lanes:{}", subscription_ids.join(",")),
            Signal::Missed => "missed:".to_owned(),
            Signal::Absent => "absent:".to_owned(),
        }
    }

    pub fn decode(text: &str) -> Option<Signal> {
        match text.split_once(':')? {
            ("subscription", id) => Some(Signal::SubscriptionChanged { id: id.to_owned() }),
            ("lanes", ids) => Some(Signal::LaneWork { subscription_ids: ids.split(',').map(str::to_owned).collect() }),
            ("missed", _) => Some(Signal::Missed),
            ("absent", _) => Some(Signal::Absent),
            _ => None,
        }
    }
}

/// What recording outcomes changed beyond the deliveries.
#[derive(Debug, Clone, Default)]
pub struct OutcomeEffects {
    /// Subscriptions disabled by these outcomes.
    pub disabled: Vec<String>,
    /// Subscriptions whose next delivery in order was made due (unparked).
    pub unparked: Vec<String>,
}

/// A delivery the publish created, handed straight to its lane when it is due.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub seq: i64,
    pub id: String,
    pub subscription_id: String,
    pub lean: bool,
    /// False when it waits behind an earlier delivery of its order key (parked).
    pub due: bool,
    pub order_key: Option<String>,
}

/// A persisted event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub created_ms: i64,
    pub body: String,
}

/// The store's backlog, over every tenant and node: for the operator's metrics only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Deliveries still PENDING.
    pub pending: u64,
    /// When the oldest of them was created.
    pub oldest_created_ms: Option<i64>,
}

/// How many deliveries of one subscription, created in one minute, have one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteCount {
    /// The minute's start, Unix milliseconds.
    pub minute_ms: i64,
    pub status: DeliveryStatus,
    pub count: u64,
}

/// Filters of `GET /v1/events`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// The SQL form of [`DeliveryStatus::may_change`], the guard of every automatic transition.
pub const OPEN_DELIVERY: &str = "status = 'PENDING'";

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    /// Gave up after the last retry, or its subscription was disabled.
    Failed,
    /// Its subscription was deleted.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Succeeded => "SUCCEEDED",
            DeliveryStatus::Failed => "FAILED",
            DeliveryStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether an outcome, a disable or a delete may still change a delivery in this status:
    /// the one rule of the state machine. Only PENDING moves (to SUCCEEDED, FAILED or
    /// CANCELLED); FAILED and CANCELLED come back only by an explicit retry or recover.
    /// Both stores write it as [`OPEN_DELIVERY`].
    pub fn may_change(self) -> bool {
        self == DeliveryStatus::Pending
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCEEDED" => DeliveryStatus::Succeeded,
            "FAILED" => DeliveryStatus::Failed,
            "CANCELLED" => DeliveryStatus::Cancelled,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub subscription_id: String,
    pub scope: Scope,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_ms: Option<i64>,
    pub lean: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Copy)]
pub enum DeliveriesOf<'a> {
    Subscription(&'a str),
    Event(&'a str),
}

/// One HTTP try of a delivery.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub id: String,
    #[serde(skip)]
    pub delivery_id: String,
    pub attempt: u32,
    #[serde(skip)]
    pub attempted_ms: i64,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// An attempt and what the engine decided it means; the store only writes it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempt: Attempt,
    pub subscription_id: String,
    /// PENDING (retry at `next_attempt_ms`), SUCCEEDED or FAILED; written only over PENDING.
    pub status: DeliveryStatus,
    pub next_attempt_ms: Option<i64>,
    pub subscription_effect: SubscriptionEffect,
}

/// How an attempt changes its subscription, as the engine decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEffect {
    /// Nothing to write.
    None,
    /// A success ended a run of failures.
    Recovered,
    /// A failure started a run of failures at this time.
    FailingSince(i64),
    /// The subscription is disabled at once, its pending deliveries failed.
    Disable { reason: String },
}

/// `size` and `cursor` of a list request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub size: u32,
    /// The `seq` to continue below (lists run newest first).
    pub before_seq: Option<i64>,
}

/// One page of a list, and the cursor of the next if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A record of the sandbox platform (user, link token, account, task, data item, archive,
/// invite), kept as the JSON document the API serves.
#[derive(Debug, Clone)]
pub struct Document {
    /// What it is: `user`, `token`, `account`, `task`, `identity`, …
    pub kind: String,
    pub id: String,
    pub scope: Scope,
    pub user_id: Option<String>,
    /// The account or archive it came from.
    pub source_id: Option<String>,
    pub created_ms: i64,
    pub body: serde_json::Value,
}

impl Document {
    /// A document of `kind` and `id` in `scope`, made now, of no user and no source.
    pub fn new(kind: &str, id: &str, scope: &Scope, body: serde_json::Value) -> Document {
        Document {
            kind: kind.to_owned(),
            id: id.to_owned(),
            scope: scope.clone(),
            user_id: None,
            source_id: None,
            created_ms: smile_core::timefmt::now_ms(),
            body,
        }
    }

    /// The same document, of `user_id`.
    pub fn of_user(self, user_id: &str) -> Document {
        Document { user_id: Some(user_id.to_owned()), ..self }
    }

    /// The same document, from `source_id` (an account, an archive; deleted with it).
    pub fn from_source(self, source_id: &str) -> Document {
        Document { source_id: Some(source_id.to_owned()), ..self }
    }
}

/// Filters of the platform's list endpoints.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    pub user_id: Option<String>,
    /// The document's own `type` field (an archive's file type, say).
    pub body_type: Option<String>,
    pub source_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}
