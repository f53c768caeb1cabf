//! Storage of the Smile event notification system, behind the one [`Store`] trait.
//!
//! - [`model`]: what is stored: keys, subscriptions, events, deliveries, attempts.
//! - [`Store`]: every read and write the server and the delivery engine make. Each query
//!   that a caller can reach takes a [`Scope`] (tenant and mode) and sees nothing outside it.
//! - [`sqlite::SqliteStore`]: the embedded default. One writer thread batches concurrent
//!   writes into one transaction (group commit); readers use their own connections (WAL).
//! - [`postgres::PostgresStore`]: for several nodes on one database. A lane (one
//!   subscription's deliveries) is leased whole to one node; nodes signal each other with
//!   `LISTEN/NOTIFY`, and the listening session is the node's presence: a lease of a node
//!   whose sessions are gone is free at once.
//!
//! The store is the delivery queue: deliveries are rows, read into memory a batch at a time
//! ([`Store::load_lane`]); the deliveries of a lane that fell behind wait in the event log
//! until the lane reads them ([`Store::fall_behind`]). Backends only speak SQL: every
//! decision (a transition, a disable, a retry time) is the engine's, and transitions are
//! written only over a delivery that [`DeliveryStatus::may_change`].

mod common;
mod migrations;
pub mod model;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;
pub use model::*;
use smile_core::Mode;

/// A storage failure. Transient ones (the database is unreachable, or a write lost a deadlock)
/// are worth retrying; callers answer those with 503 and log the rest as server errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused a statement (a constraint, a bad query): retrying will not help.
    #[error("database error: {0}")]
    Database(String),
    /// The database cannot be reached, or dropped the connection.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A deadlock or serialization failure: the same write, tried again, can succeed.
    #[error("database conflict: {0}")]
    Conflict(String),
    /// The disk under the database is full: nothing more can be written until space returns.
    #[error("the database's disk is full: {0}")]
    DiskFull(String),
    #[error("the store is shut down")]
    Closed,
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the same call may succeed later without any change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Conflict(_) | StoreError::DiskFull(_) | StoreError::Closed
        )
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(db) = e.as_db_error() else {
            // No answer from the server: the connection failed or closed. The chain says why
            // (`db error`, the Display of the outer error, alone hides it).
            return StoreError::Unavailable(error_chain(&e));
        };
        let text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        let code = db.code();
        if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE {
            StoreError::Conflict(text)
        } else if *code == SqlState::DISK_FULL || *code == SqlState::INSUFFICIENT_RESOURCES {
            StoreError::DiskFull(text)
        } else if code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            StoreError::Unavailable(text)
        } else {
            StoreError::Database(text)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Closed => StoreError::Closed,
            other => StoreError::Unavailable(error_chain(&other)),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Conflict(e.to_string())
            }
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// An error and each of its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Every read and write of the system. Implementations must be safe to share across tasks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- tenants and keys ----

    /// Creates the tenant if needed, and a key pair for it in `mode`.
    async fn create_tenant_key(&self, tenant_id: &str, mode: Mode) -> Result<NewKey>;
    /// Creates a key pair for the operator (operator-only endpoints).
    async fn create_operator_key(&self) -> Result<NewKey>;
    /// The key record for `api_key`, if there is one.
    async fn find_key(&self, api_key: &str) -> Result<Option<KeyRecord>>;
    /// Whether any tenant exists yet (first start creates the sandbox tenant).
    async fn has_tenants(&self) -> Result<bool>;
    /// Whether the tenant exists.
    async fn tenant_exists(&self, tenant_id: &str) -> Result<bool>;

    // ---- subscriptions ----

    async fn insert_subscription(&self, sub: Subscription) -> Result<()>;
    async fn get_subscription(&self, scope: &Scope, id: &str) -> Result<Option<Subscription>>;
    /// A subscription by id in any scope: for the engine only, never for a caller's request.
    async fn subscription_by_id(&self, id: &str) -> Result<Option<Subscription>>;
    /// Subscriptions changed (`updated_ms`) at or after `since_ms`, for caches to catch up
    /// with changes whose signal was lost.
    async fn subscriptions_changed_since(&self, since_ms: i64) -> Result<Vec<String>>;
    async fn list_subscriptions(&self, scope: &Scope, page: &PageRequest) -> Result<Page<Subscription>>;
    /// Applies `patch` to the subscription in one statement; None if it is not there. An
    /// inactive result fails its pending deliveries.
    async fn patch_subscription(
        &self,
        scope: &Scope,
        id: &str,
        patch: &SubscriptionPatch,
        now_ms: i64,
    ) -> Result<Option<Subscription>>;
    /// Deletes it and cancels its pending deliveries; false if it is not there.
    async fn delete_subscription(&self, scope: &Scope, id: &str) -> Result<bool>;

    // ---- events ----

    /// Writes each event and one delivery per matching active subscription, all durably,
    /// before returning (a large fan-out's rows follow in parts: [`Published::Spreading`]).
    /// Concurrent calls may share one commit.
    /// An event whose idempotency key was used within [`IDEMPOTENCY_WINDOW_MS`] writes nothing
    /// and names the first event; of concurrent calls with one key, exactly one creates.
    async fn publish(&self, event: NewEvent) -> Result<Published>;
    /// Writes the delivery rows of large fan-outs' parts their publisher left unwritten (a
    /// crash, a failed write; see [`Published::Spreading`]), of events made before
    /// `now_ms` less a grace; returns the subscriptions that got deliveries.
    async fn write_left_over_spreads(&self, now_ms: i64) -> Result<Vec<String>>;
    /// Forgets idempotency keys created before `before_ms`; returns how many.
    async fn forget_idempotency_keys(&self, before_ms: i64) -> Result<u64>;
    async fn get_event(&self, scope: &Scope, id: &str) -> Result<Option<StoredEvent>>;
    async fn list_events(&self, scope: &Scope, filter: &EventFilter, page: &PageRequest) -> Result<Page<StoredEvent>>;

    // ---- deliveries and attempts ----

    async fn get_delivery(&self, scope: &Scope, id: &str) -> Result<Option<Delivery>>;
    async fn list_deliveries(&self, scope: &Scope, of: DeliveriesOf<'_>, page: &PageRequest) -> Result<Page<Delivery>>;
    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>>;
    /// A subscription's deliveries created since `since_ms`, counted per minute and status.
    async fn delivery_counts(&self, scope: &Scope, subscription_id: &str, since_ms: i64) -> Result<Vec<MinuteCount>>;
    /// Records attempt outcomes: each attempt row, and the delivery's new status only where
    /// it is still PENDING (see [`DeliveryStatus::may_change`]). A delivery that finished
    /// makes the next one of its order key due. A lost outcome only means the delivery is
    /// sent again (at least once).
    /// Shared, so that a caller may try a failed batch again without copying it.
    async fn record_outcomes(&self, outcomes: std::sync::Arc<[Outcome]>) -> Result<OutcomeEffects>;

    // ---- lanes: a subscription's pending deliveries, sent by one node at a time ----

    /// Due deliveries of one subscription, earliest due first, at most `limit`, leaving out
    /// those whose `seq` is in `held` (already in the caller's memory); bodies included. A
    /// lane that fell behind has its deliveries written from the log when its rows run short.
    async fn load_lane(&self, subscription_id: &str, now_ms: i64, held: &[i64], limit: u32) -> Result<LaneBatch> {
        let mut batch = self.read_lane(subscription_id, now_ms, held, limit).await?;
        let short = limit.saturating_sub(batch.deliveries.len() as u32);
        if !batch.behind || short == 0 {
            return Ok(batch);
        }
        let from_log = self.read_log(subscription_id, short).await?;
        batch.behind = from_log.behind;
        batch.deliveries.extend(from_log.deliveries);
        Ok(batch)
    }
    /// [`Store::load_lane`]'s rows alone, and whether the lane fell behind.
    async fn read_lane(&self, subscription_id: &str, now_ms: i64, held: &[i64], limit: u32) -> Result<LaneBatch>;
    /// Writes the deliveries of a lane that fell behind for its log's next at most `limit`
    /// events, moving its cursor over them; returns those that are due, in the log's order,
    /// bodies included (so the lane need not read them back), and whether it is still behind.
    async fn read_log(&self, subscription_id: &str, limit: u32) -> Result<LaneBatch>;
    /// Stops writing the subscription's deliveries at publish, because its lane's window is
    /// full: later events wait in the event log, and [`Store::load_lane`] writes their
    /// deliveries as the lane drains, until it has read the log to its end. A lane that
    /// cannot take work costs its publishers nothing. Returns false when the subscription is
    /// inactive or behind already.
    async fn fall_behind(&self, subscription_id: &str) -> Result<bool>;
    /// Active subscriptions with due deliveries whose lane no other present node holds.
    async fn lanes_with_work(&self, node: &str, now_ms: i64, limit: u32) -> Result<Vec<String>>;
    /// Takes the lanes that are free, expired, held by a node no longer present (see
    /// [`Store::listen`]) or already `lease.owner`'s; returns those taken.
    async fn claim_lanes(&self, lease: &Lease, subscription_ids: &[String], now_ms: i64) -> Result<Vec<String>>;
    /// Extends the lanes `lease.owner` still holds; returns those.
    async fn renew_lanes(&self, lease: &Lease, subscription_ids: &[String]) -> Result<Vec<String>>;
    /// Gives lanes up, so that another node may take them at once; a lane whose lease runs
    /// past `until_ms` was claimed again since, and is kept.
    async fn release_lanes(&self, owner: &str, subscription_ids: &[String], until_ms: i64) -> Result<()>;
    /// Ends every lane lease: only for a store that one node owns alone, on start.
    async fn release_all_lanes(&self) -> Result<()>;
    /// The pending delivery a FIFO subscription waits on, once it has failed at least once.
    async fn blocked_head(&self, scope: &Scope, subscription_id: &str) -> Result<Option<Delivery>>;
    /// How many deliveries are PENDING, in every scope, and since when: for `/metrics` only.
    async fn backlog(&self) -> Result<Backlog>;
    /// Whether only one node can use this store.
    fn single_node(&self) -> bool;
    /// Counts one request of `client` in the one-second window `window_s` and returns the
    /// window's count so far, across every node sharing the store.
    async fn count_request(&self, client: &str, window_s: i64) -> Result<u32>;
    /// Signals from other nodes (and this one), for as long as the receiver is kept. It is
    /// also the presence of `node` (the owner in its lane leases): while it lasts no other
    /// node takes those lanes before their leases run out; once it ends (the process died,
    /// or its connection dropped: [`Signal::Absent`]) they may take them at once.
    async fn listen(&self, node: &str) -> Result<tokio::sync::mpsc::UnboundedReceiver<Signal>>;
    /// Tells every node, this one included.
    async fn notify(&self, signal: Signal) -> Result<()>;
    // ---- platform documents ----

    /// Writes documents, replacing the body, user and source of any with the same kind and
    /// id; all or none.
    async fn put_documents(&self, documents: Vec<Document>) -> Result<()>;
    /// A document of `kind` by id in `scope`.
    async fn get_document(&self, scope: &Scope, kind: &str, id: &str) -> Result<Option<Document>>;
    /// A document by kind and id in any scope: only for credentials that name their own
    /// scope (link tokens), never for a caller's request.
    async fn document_by_id(&self, kind: &str, id: &str) -> Result<Option<Document>>;
    /// Documents of `kind` in every scope created at or before `until_ms`, oldest first: only
    /// for the platform's own bookkeeping (unfinished work), never for a caller's request.
    async fn documents_of_kind(&self, kind: &str, until_ms: i64, limit: u32) -> Result<Vec<Document>>;
    /// Documents of `kind` in `scope`, newest first.
    async fn list_documents(
        &self,
        scope: &Scope,
        kind: &str,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>>;
    /// Deletes the documents of these kinds that came from `source_id`; returns how many.
    async fn delete_documents_of_source(&self, scope: &Scope, kinds: &[&str], source_id: &str) -> Result<u64>;

    /// Makes one delivery due now (any status but cancelled); None if it is not there.
    async fn retry_delivery(&self, scope: &Scope, id: &str, now_ms: i64) -> Result<Option<Delivery>>;
    /// Makes every failed delivery of a subscription created since `since_ms` due now.
    async fn recover_deliveries(
        &self,
        scope: &Scope,
        subscription_id: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Delivery>>;
}
