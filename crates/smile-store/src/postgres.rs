//! The PostgreSQL store: several `smile serve` nodes share one database.
//!
//! Each call runs on a pooled connection; concurrent commits are grouped by PostgreSQL itself.
//! A node sends a subscription's deliveries only while it holds that lane's lease (the `lanes`
//! table), so two nodes never send the same lane; signals between nodes travel with
//! `LISTEN/NOTIFY` on one channel.

use crate::common::{
    DeliveryPage, EventHead, add_log_counts, delivery_id, due_from_log, event_id_prefix, mode_of, new_key_pair, now,
    paginate, retry_conflicts, sent_body, types_from_column, types_to_column,
};
use crate::*;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use smile_core::metric;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls, Row};

/// The NOTIFY channel every node listens on.
const CHANNEL: &str = "smile_signals";
/// How long a connection, or a wait for one from the pool, may take before the call fails
/// as unavailable (503) instead of hanging; and how long a session may sit idle inside a
/// transaction before PostgreSQL ends it.
const DATABASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Connections writing publishes at once; each writes every publish queued meanwhile.
const PUBLISH_WRITERS: usize = 4;
/// The most publishes one transaction takes.
const MAX_PUBLISH_BATCH: usize = 1024;

type PublishJob = (NewEvent, oneshot::Sender<Result<Published>>);

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    publishes: mpsc::Sender<PublishJob>,
}

/// The connection settings of every session of the store: `url`'s, and ours.
fn session_config(url: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Invalid(format!("bad database URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DATABASE_TIMEOUT);
    }
    // A database host that vanishes mid-query fails the query instead of hanging it.
    config.tcp_user_timeout(DATABASE_TIMEOUT).keepalives_idle(DATABASE_TIMEOUT);
    // Our statements are prepared once per connection and their plans do not depend on the
    // values bound (no parameter decides which partial index applies). Left to itself,
    // PostgreSQL planned the batched publish and outcome statements again on every run,
    // preferring custom plans for their arrays: a fifth of its CPU under HTTP publishing.
    let generic_plans = "-c plan_cache_mode=force_generic_plan";
    // A node that stops mid-transaction (SIGSTOP, a frozen VM) would hold that transaction's
    // row locks until it resumes: a lane's row locked by `read_log` stops every other node
    // reading that log, and every publish to the lane. PostgreSQL ends such a session
    // instead; our transactions never wait on their client this long.
    let idle_limit = format!("-c idle_in_transaction_session_timeout={}", DATABASE_TIMEOUT.as_millis());
    let options = match config.get_options() {
        Some(theirs) => format!("{theirs} {generic_plans} {idle_limit}"),
        None => format!("{generic_plans} {idle_limit}"),
    };
    config.options(&options);
    Ok(config)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), and applies the migrations under an
    /// advisory lock so that nodes starting together do not race.
    pub async fn connect(url: &str) -> Result<Self> {
        let config = session_config(url)?;
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(32)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(DATABASE_TIMEOUT))
            .create_timeout(Some(DATABASE_TIMEOUT))
            .recycle_timeout(Some(DATABASE_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot build the connection pool: {e}")))?;
        let (publishes, jobs) = mpsc::channel(65_536);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..PUBLISH_WRITERS {
            tokio::spawn(write_publishes(pool.clone(), jobs.clone()));
        }
        let store = PostgresStore { pool, config, publishes };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        crate::migrations::postgres(&mut client).await
    }
}

const SUBSCRIPTION_COLUMNS: &str = "seq, id, tenant_id, mode, name, url, event_types, active, secret, \
    previous_secret, previous_secret_until_ms, include_payload, disabled_reason, failing_since_ms, \
    created_ms, updated_ms, fifo";

fn subscription_row(row: &Row) -> (i64, Subscription) {
    (
        row.get(0),
        Subscription {
            id: row.get(1),
            scope: Scope { tenant_id: row.get(2), mode: mode_of(row.get(3)) },
            name: row.get(4),
            url: row.get(5),
            event_types: types_from_column(row.get(6)),
            active: row.get(7),
            secret: row.get(8),
            previous_secret: row.get(9),
            previous_secret_until_ms: row.get(10),
            include_payload: row.get(11),
            disabled_reason: row.get(12),
            failing_since_ms: row.get(13),
            created_ms: row.get(14),
            updated_ms: row.get(15),
            ordering: if row.get(16) { Ordering::Fifo } else { Ordering::Concurrent },
        },
    )
}

const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.event_id, d.event_type, d.subscription_id, d.tenant_id, d.mode, \
    d.status, d.attempts, d.next_attempt_ms, d.lean, d.created_ms, d.updated_ms, d.last_status_code, d.last_error";

fn delivery_row(row: &Row) -> (i64, Delivery) {
    let attempts: i32 = row.get(8);
    let code: Option<i32> = row.get(13);
    (
        row.get(0),
        Delivery {
            id: row.get(1),
            event_id: row.get(2),
            event_type: row.get(3),
            subscription_id: row.get(4),
            scope: Scope { tenant_id: row.get(5), mode: mode_of(row.get(6)) },
            status: DeliveryStatus::parse(row.get(7)),
            attempts: attempts.max(0) as u32,
            next_attempt_ms: row.get(9),
            lean: row.get(10),
            created_ms: row.get(11),
            updated_ms: row.get(12),
            last_status_code: code.map(|c| c as u16),
            last_error: row.get(14),
        },
    )
}

const DOCUMENT_COLUMNS: &str = "seq, kind, id, tenant_id, mode, user_id, source_id, created_ms, body";

fn document_row(row: &Row) -> (i64, Document) {
    let body: String = row.get(8);
    (
        row.get(0),
        Document {
            kind: row.get(1),
            id: row.get(2),
            scope: Scope { tenant_id: row.get(3), mode: mode_of(row.get(4)) },
            user_id: row.get(5),
            source_id: row.get(6),
            created_ms: row.get(7),
            body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        },
    )
}

fn event_row(row: &Row) -> StoredEvent {
    StoredEvent { seq: row.get(0), id: row.get(1), event_type: row.get(2), created_ms: row.get(3), body: row.get(4) }
}

/// Ends every open delivery of a subscription with `status`, those still in its log included
/// (they are written first, so that `recover` finds them).
async fn fail_pending(c: &impl GenericClient, subscription_id: &str, status: DeliveryStatus, why: &str) -> Result<()> {
    // In steps, so that a long log's bodies are never all in memory at once.
    while read_log(c, subscription_id, 10_000).await?.behind {}
    c.execute(
        &format!(
            "UPDATE deliveries SET status = $1, next_attempt_ms = NULL, last_error = $2, updated_ms = $3 \
             WHERE subscription_id = $4 AND {OPEN_DELIVERY}"
        ),
        &[&status.as_str(), &why, &now(), &subscription_id],
    )
    .await?;
    Ok(())
}

/// The advisory lock of one order key on one subscription. A publish that parks behind a
/// pending delivery and the outcome that ends it take it, so neither misses the other
/// (under READ COMMITTED each could otherwise not see the other's uncommitted row).
fn order_lock(subscription_id: &str, order_key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(subscription_id).chain_update([0]).chain_update(order_key).finalize();
    i64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Takes the order locks of these keys until the transaction ends, in one order to avoid deadlocks.
async fn lock_order_keys<'a>(c: &impl GenericClient, keys: impl Iterator<Item = (&'a str, &'a str)>) -> Result<()> {
    let mut locks: Vec<i64> = keys.map(|(sub, key)| order_lock(sub, key)).collect();
    if locks.is_empty() {
        return Ok(());
    }
    locks.sort_unstable();
    locks.dedup();
    c.execute("SELECT pg_advisory_xact_lock(l) FROM UNNEST($1::bigint[]) AS l", &[&locks]).await?;
    Ok(())
}

/// Makes the next parked delivery of an order key due, unless one of the key is due already.
async fn unpark(c: &impl GenericClient, subscription_id: &str, order_key: &str, now_ms: i64) -> Result<bool> {
    let changed = c
        .execute(
            "UPDATE deliveries SET next_attempt_ms = $3 WHERE id = (SELECT id FROM deliveries \
             WHERE subscription_id = $1 AND order_key = $2 AND status = 'PENDING' ORDER BY seq LIMIT 1) \
             AND next_attempt_ms IS NULL",
            &[&subscription_id, &order_key, &now_ms],
        )
        .await?;
    Ok(changed > 0)
}

/// Turns a disable decision into a disabled subscription; true if this call disabled it.
async fn disable(c: &impl GenericClient, subscription_id: &str, reason: &str) -> Result<bool> {
    let changed = c
        .execute(
            "UPDATE subscriptions SET active = FALSE, disabled_reason = $1, updated_ms = $2 WHERE id = $3 AND active",
            &[&reason, &now(), &subscription_id],
        )
        .await?;
    if changed > 0 {
        fail_pending(c, subscription_id, DeliveryStatus::Failed, reason).await?;
    }
    Ok(changed > 0)
}

/// Group commit: takes every publish queued while the last transaction ran, and writes them
/// all in one transaction (whole columns at once), answering each after the commit.
async fn write_publishes(pool: Pool, jobs: Arc<Mutex<mpsc::Receiver<PublishJob>>>) {
    loop {
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_PUBLISH_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let (events, replies): (Vec<NewEvent>, Vec<_>) = batch.into_iter().unzip();
        match retry_conflicts("publish", || publish_batch(&pool, &events)).await {
            Ok(published) => {
                for (reply, published) in replies.into_iter().zip(published) {
                    let _ = reply.send(Ok(published));
                }
            }
            Err(error) => {
                tracing::error!(%error, "publish transaction failed");
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// A subscription an event matches: its number and id, `includePayload`, whether it is FIFO,
/// and whether it fell behind (its deliveries wait in the event log, see [`read_log`]).
struct Target {
    seq: i64,
    id: String,
    include_payload: bool,
    fifo: bool,
    behind: bool,
}

/// The subscriptions an event matches.
async fn targets(c: &impl GenericClient, e: &NewEvent) -> Result<Vec<Target>> {
    let (tenant, mode) = (e.scope.tenant_id.as_str(), e.scope.mode.as_str());
    let rows = match &e.only_subscription {
        Some(id) => {
            let statement = c
                .prepare_cached(
                    "SELECT seq, id, include_payload, fifo, FALSE FROM subscriptions \
                     WHERE id = $1 AND tenant_id = $2 AND mode = $3",
                )
                .await?;
            c.query(&statement, &[id, &tenant, &mode]).await?
        }
        None => {
            let statement = c
                .prepare_cached(
                    "SELECT seq, id, include_payload, fifo, cursor_seq IS NOT NULL FROM subscriptions \
                     WHERE tenant_id = $1 AND mode = $2 AND active \
                     AND (event_types LIKE $3 OR event_types LIKE '%,ALL_EVENTS,%')",
                )
                .await?;
            c.query(&statement, &[&tenant, &mode, &format!("%,{},%", e.event_type)]).await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| Target { seq: r.get(0), id: r.get(1), include_payload: r.get(2), fifo: r.get(3), behind: r.get(4) })
        .collect())
}

/// Records one write transaction's time and size.
fn record_commit(write: &'static str, started: std::time::Instant, size: usize) {
    let labels = [("backend", "postgres"), ("write", write)];
    metrics::histogram!(metric::COMMIT_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    metrics::histogram!(metric::COMMIT_BATCH, &labels).record(size as f64);
}

/// Takes `e`'s idempotency key for it; or, when the key names an event made within the
/// window, returns that event. A concurrent transaction inserting the same key waits for this
/// one to end, then finds the key taken.
async fn take_idempotency_key(c: &impl GenericClient, e: &NewEvent, k: &IdempotencyKey) -> Result<Option<Published>> {
    let (tenant, mode) = (e.scope.tenant_id.as_str(), e.scope.mode.as_str());
    let take = c
        .prepare_cached(
            "INSERT INTO idempotency_keys (tenant_id, mode, key, fingerprint, event_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, mode, key) DO UPDATE SET \
             fingerprint = excluded.fingerprint, event_id = excluded.event_id, created_ms = excluded.created_ms \
             WHERE idempotency_keys.created_ms <= $7",
        )
        .await?;
    let cutoff = e.created_ms - IDEMPOTENCY_WINDOW_MS;
    if c.execute(&take, &[&tenant, &mode, &k.key, &k.fingerprint, &e.id, &e.created_ms, &cutoff]).await? > 0 {
        return Ok(None);
    }
    let row = c
        .query_one(
            "SELECT event_id, fingerprint FROM idempotency_keys WHERE tenant_id = $1 AND mode = $2 AND key = $3",
            &[&tenant, &mode, &k.key],
        )
        .await?;
    Ok(Some(Published::Replayed { event_id: row.get(0), fingerprint: row.get(1) }))
}

/// A publish whose events each go to at most this many subscriptions, with no idempotency or
/// order key, is one statement outside a transaction. Larger fan-outs keep two statements in
/// a transaction: as one statement, fan-out-1000 lost 40 % of its deliveries/s (see
/// `docs/benchmarks.md`, "A PostgreSQL publish as one statement").
const ONE_STATEMENT_FAN_OUT: usize = 64;

/// Writes a batch of publishes, answering each. A batch of small fan-outs without keys takes
/// two round trips: the matching subscriptions, then one statement that inserts the events
/// and their deliveries, atomic on its own, leaving out those of lanes that fell behind (see
/// [`lock_lanes`]). Keys and large fan-outs take a transaction.
async fn publish_batch(pool: &Pool, all: &[NewEvent]) -> Result<Vec<Published>> {
    let started = std::time::Instant::now();
    let mut client = pool.get().await?;
    // Read before the transaction: under READ COMMITTED, reading them inside it saw no more.
    let targets = matching(&client, all).await?;
    let keyed = all.iter().any(|e| e.order_key.is_some() || e.idempotency.is_some())
        || targets.iter().flat_map(|t| t.iter()).any(|t| t.fifo);
    let small = targets.iter().all(|t| t.len() <= ONE_STATEMENT_FAN_OUT);
    let behind: Vec<&str> = targets.iter().flat_map(|t| t.iter()).filter(|t| t.behind).map(|t| &*t.id).collect();
    let (replayed, created) = if keyed || !small {
        let tx = client.transaction().await?;
        // Before the events, so their `seq` is past the cursor of every lane still behind.
        let caught_up = lock_lanes(&tx, &behind).await?;
        let replayed = take_idempotency_keys(&tx, all).await?;
        let d = DeliveryColumns::of(all, &targets, &replayed, |t| !t.behind || caught_up.contains(&t.id));
        insert_events(&tx, all, &replayed).await?;
        lock_order_keys(&tx, d.order_keys()).await?;
        let created = insert_deliveries(&tx, &d).await?;
        tx.commit().await?;
        (replayed, created)
    } else {
        let none = HashMap::new();
        let d = DeliveryColumns::of(all, &targets, &none, |_| true);
        let created = insert_published(&client, all, &d, &behind).await?;
        (none, created)
    };
    record_commit("publish", started, all.len());
    Ok(answers(all, replayed, created))
}

/// Each publish's answer: the earlier event it replays, or the deliveries it created.
fn answers(
    all: &[NewEvent],
    mut replayed: HashMap<usize, Published>,
    mut created: HashMap<String, Vec<NewDelivery>>,
) -> Vec<Published> {
    all.iter()
        .enumerate()
        .map(|(i, e)| {
            replayed.remove(&i).unwrap_or_else(|| Published::Created(created.remove(&e.id).unwrap_or_default()))
        })
        .collect()
}

/// The subscriptions each event goes to; events of one tenant, mode and type share theirs.
async fn matching(c: &impl GenericClient, all: &[NewEvent]) -> Result<Vec<Arc<[Target]>>> {
    let mut groups: HashMap<(&str, Mode, &str), Arc<[Target]>> = HashMap::new();
    let mut each = Vec::with_capacity(all.len());
    for e in all {
        let group = (e.scope.tenant_id.as_str(), e.scope.mode, e.event_type.as_str());
        let found = match (&e.only_subscription, groups.get(&group)) {
            (None, Some(found)) => found.clone(),
            _ => {
                let found: Arc<[Target]> = targets(c, e).await?.into();
                if e.only_subscription.is_none() {
                    groups.insert(group, found.clone());
                }
                found
            }
        };
        each.push(found);
    }
    Ok(each)
}

/// Takes the batch's idempotency keys, in one order so that two batches sharing keys cannot
/// deadlock; returns the publishes that replay an earlier event, by position.
async fn take_idempotency_keys(c: &impl GenericClient, all: &[NewEvent]) -> Result<HashMap<usize, Published>> {
    let mut keyed: Vec<(usize, &IdempotencyKey)> =
        all.iter().enumerate().filter_map(|(i, e)| Some((i, e.idempotency.as_ref()?))).collect();
    keyed.sort_by(|a, b| (&a.1.key, a.0).cmp(&(&b.1.key, b.0)));
    let mut replayed = HashMap::new();
    for (i, k) in keyed {
        if let Some(first) = take_idempotency_key(c, &all[i], k).await? {
            replayed.insert(i, first);
        }
    }
    Ok(replayed)
}

/// The columns of the events not `replayed`, in the order of [`events_from_unnest`]'s parameters.
struct EventColumns<'a> {
    id: Vec<&'a str>,
    tenant: Vec<&'a str>,
    mode: Vec<&'a str>,
    event_type: Vec<&'a str>,
    created: Vec<i64>,
    body: Vec<&'a str>,
    lean_body: Vec<Option<&'a str>>,
    order_key: Vec<Option<&'a str>>,
    only_subscription: Vec<Option<&'a str>>,
}

impl<'a> EventColumns<'a> {
    fn of(all: &'a [NewEvent], replayed: &HashMap<usize, Published>) -> Self {
        let events: Vec<&NewEvent> =
            all.iter().enumerate().filter(|(i, _)| !replayed.contains_key(i)).map(|(_, e)| e).collect();
        EventColumns {
            id: events.iter().map(|e| e.id.as_str()).collect(),
            tenant: events.iter().map(|e| e.scope.tenant_id.as_str()).collect(),
            mode: events.iter().map(|e| e.scope.mode.as_str()).collect(),
            event_type: events.iter().map(|e| e.event_type.as_str()).collect(),
            created: events.iter().map(|e| e.created_ms).collect(),
            body: events.iter().map(|e| e.body.as_str()).collect(),
            lean_body: events.iter().map(|e| e.lean_body.as_deref()).collect(),
            order_key: events.iter().map(|e| e.order_key.as_deref()).collect(),
            only_subscription: events.iter().map(|e| e.only_subscription.as_deref()).collect(),
        }
    }
}

/// Inserts the events' columns from `UNNEST($first … $first+8)`: alone, or as the first part
/// of [`INSERT_PUBLISHED`], after the deliveries' ten parameters.
fn events_from_unnest(first: usize) -> String {
    let [id, tenant, mode, kind, created, body, lean, key, only] = std::array::from_fn(|i| first + i);
    format!(
        "INSERT INTO events (id, tenant_id, mode, type, created_ms, body, lean_body, order_key, only_subscription) \
         SELECT * FROM UNNEST(${id}::text[], ${tenant}::text[], ${mode}::text[], ${kind}::text[], \
         ${created}::bigint[], ${body}::text[], ${lean}::text[], ${key}::text[], ${only}::text[])"
    )
}

impl EventColumns<'_> {
    /// The parameters of [`events_from_unnest`].
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 9] {
        [
            &self.id,
            &self.tenant,
            &self.mode,
            &self.event_type,
            &self.created,
            &self.body,
            &self.lean_body,
            &self.order_key,
            &self.only_subscription,
        ]
    }
}

/// The events alone, for a publish that takes a transaction.
static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| events_from_unnest(1));

/// The events and their deliveries in one statement, when none of the subscriptions fell behind.
static INSERT_PUBLISHED: LazyLock<String> = LazyLock::new(|| {
    format!("WITH new_events AS ({}) {INSERT_DELIVERIES} {RETURNING_DELIVERIES}", events_from_unnest(11))
});

/// [`INSERT_PUBLISHED`] where some fell behind. `$20` names them: their rows are locked as
/// [`lock_lanes`] does, and a delivery to one is written only if the lane caught up or its
/// cursor is at or past the event (its `seq` was drawn before the lock); otherwise the lane
/// reads it from its log. The pairs to write are a hashed subquery: as joins, the plan hashed
/// every delivery row of the batch. (Kept apart: with the lock and those joins in every
/// publish, single-endpoint was 3–5 % slower.)
static INSERT_PUBLISHED_PAST_LOGS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH new_events AS ({} RETURNING id, seq), lanes AS MATERIALIZED ({}) \
         {INSERT_DELIVERIES} WHERE u.sub <> ALL($20::text[]) OR (u.event_id, u.sub) IN \
         (SELECT n.id, l.id FROM new_events n CROSS JOIN lanes l WHERE l.cursor_seq IS NULL OR l.cursor_seq >= n.seq) \
         {RETURNING_DELIVERIES}",
        events_from_unnest(11),
        lock_lanes_from(20)
    )
});

/// Locks the rows of the lanes `$param` names that are still active, `FOR KEY SHARE`, in the
/// order an outcome's transaction disables them (bytewise); selects their ids and cursors as
/// they are now (a locking read sees the latest).
fn lock_lanes_from(param: usize) -> String {
    format!(
        "SELECT id, cursor_seq FROM subscriptions WHERE id = ANY(${param}::text[]) AND active \
         ORDER BY id COLLATE \"C\" FOR KEY SHARE"
    )
}

/// [`lock_lanes_from`] as a statement of its own.
static LOCK_LANES: LazyLock<String> = LazyLock::new(|| lock_lanes_from(1));

/// Locks the rows of the lanes that fell behind among a publish's targets until its
/// transaction ends; returns those that caught up meanwhile. The others get no row: those
/// still behind read the events from their logs, the rest were disabled or deleted.
///
/// Until the publish commits, none of these lanes moves its cursor: [`read_log`] locks the
/// row `FOR UPDATE`, which waits for `FOR KEY SHARE`. So a lane never reads its log past an
/// event still to commit that it must read. Outcomes' updates of the row do not wait for it.
async fn lock_lanes(c: &impl GenericClient, behind: &[&str]) -> Result<HashSet<String>> {
    if behind.is_empty() {
        return Ok(HashSet::new());
    }
    let lock = c.prepare_cached(&LOCK_LANES).await?;
    let rows = c.query(&lock, &[&behind]).await?;
    Ok(rows.iter().filter(|r| r.get::<_, Option<i64>>(1).is_none()).map(|r| r.get(0)).collect())
}

/// Inserts the events of `all` not `replayed`.
async fn insert_events(c: &impl GenericClient, all: &[NewEvent], replayed: &HashMap<usize, Published>) -> Result<()> {
    let e = EventColumns::of(all, replayed);
    let insert = c.prepare_cached(&INSERT_EVENTS).await?;
    c.execute(&insert, &e.params()).await?;
    Ok(())
}

/// The deliveries' columns, selected from `UNNEST($1 … $10)`. A delivery behind a pending one
/// of its order key (in the store or earlier in this batch) is parked: not due until that one
/// ends.
const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (id, event_id, event_type, subscription_id, tenant_id, \
     mode, status, attempts, next_attempt_ms, lean, created_ms, updated_ms, order_key) \
     SELECT u.id, u.event_id, u.event_type, u.sub, u.tenant, u.mode, 'PENDING', 0, \
     CASE WHEN u.k IS NOT NULL AND (u.behind OR EXISTS (SELECT 1 FROM deliveries p \
     WHERE p.subscription_id = u.sub AND p.order_key = u.k AND p.status = 'PENDING')) \
     THEN NULL ELSE u.created END, u.lean, u.created, u.created, u.k \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], \
     $8::bigint[], $9::text[], $10::bool[]) AS u(id, event_id, event_type, sub, tenant, mode, lean, \
     created, k, behind)";

/// What inserting deliveries answers, for [`NewDelivery`].
const RETURNING_DELIVERIES: &str =
    "RETURNING seq, id, event_id, subscription_id, lean, next_attempt_ms IS NOT NULL, order_key";

/// Inserts the deliveries of [`DeliveryColumns::params`].
static DELIVERIES_FROM_UNNEST: LazyLock<String> =
    LazyLock::new(|| format!("{INSERT_DELIVERIES} {RETURNING_DELIVERIES}"));

/// Inserts the deliveries `d`; returns them by event id.
async fn insert_deliveries(c: &impl GenericClient, d: &DeliveryColumns) -> Result<HashMap<String, Vec<NewDelivery>>> {
    if d.id.is_empty() {
        return Ok(HashMap::new());
    }
    let insert = c.prepare_cached(&DELIVERIES_FROM_UNNEST).await?;
    let rows = c.query(&insert, &d.params()).await?;
    Ok(created_by_event(rows))
}

/// Inserts the events of `all` and their deliveries `d` in one statement, atomic on its own,
/// but for those of lanes still `behind` (see [`INSERT_PUBLISHED_PAST_LOGS`]); returns the
/// deliveries written by event id. Only for batches without idempotency or order keys.
async fn insert_published(
    c: &impl GenericClient,
    all: &[NewEvent],
    d: &DeliveryColumns,
    behind: &[&str],
) -> Result<HashMap<String, Vec<NewDelivery>>> {
    let e = EventColumns::of(all, &HashMap::new());
    let mut params = d.params();
    params.extend_from_slice(&e.params());
    let insert = if behind.is_empty() {
        c.prepare_cached(&INSERT_PUBLISHED).await?
    } else {
        params.push(&behind);
        c.prepare_cached(&INSERT_PUBLISHED_PAST_LOGS).await?
    };
    let rows = c.query(&insert, &params).await?;
    Ok(created_by_event(rows))
}

/// The rows `DELIVERIES_FROM_UNNEST` returns, by event id.
fn created_by_event(rows: Vec<Row>) -> HashMap<String, Vec<NewDelivery>> {
    let mut created: HashMap<String, Vec<NewDelivery>> = HashMap::new();
    for r in rows {
        created.entry(r.get(2)).or_default().push(NewDelivery {
            seq: r.get(0),
            id: r.get(1),
            subscription_id: r.get(3),
            lean: r.get(4),
            due: r.get(5),
            order_key: r.get(6),
        });
    }
    created
}

/// New deliveries of a batch, column by column, for one bulk insert.
#[derive(Default)]
struct DeliveryColumns {
    id: Vec<String>,
    event_id: Vec<String>,
    event_type: Vec<String>,
    sub: Vec<String>,
    tenant: Vec<String>,
    mode: Vec<&'static str>,
    lean: Vec<bool>,
    created: Vec<i64>,
    key: Vec<Option<String>>,
    /// Behind an earlier delivery of the same subscription and key in this batch.
    behind: Vec<bool>,
    keys_seen: std::collections::HashSet<(String, String)>,
}

impl DeliveryColumns {
    /// The deliveries of every event not `replayed` to those of its `targets` that get a row.
    fn of(
        all: &[NewEvent],
        targets: &[Arc<[Target]>],
        replayed: &HashMap<usize, Published>,
        gets_row: impl Fn(&Target) -> bool,
    ) -> Self {
        let mut d = DeliveryColumns::default();
        for (i, (e, found)) in all.iter().zip(targets).enumerate() {
            if replayed.contains_key(&i) {
                continue;
            }
            let head = EventHead::of(e);
            for t in found.iter().filter(|t| gets_row(t)) {
                d.push(&head, t, e.order_key.as_deref());
            }
        }
        d
    }

    /// Each delivery's subscription and order key, for those that have one.
    fn order_keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sub.iter().zip(&self.key).filter_map(|(sub, key)| Some((sub.as_str(), key.as_deref()?)))
    }

    /// `$1 … $10` of `DELIVERIES_FROM_UNNEST`.
    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        vec![
            &self.id,
            &self.event_id,
            &self.event_type,
            &self.sub,
            &self.tenant,
            &self.mode,
            &self.lean,
            &self.created,
            &self.key,
            &self.behind,
        ]
    }

    /// `e`'s delivery to `t`, behind `order_key` (the event's) unless `t` is FIFO.
    fn push(&mut self, e: &EventHead, t: &Target, order_key: Option<&str>) {
        let key = if t.fifo { Some(FIFO_KEY.to_owned()) } else { order_key.map(str::to_owned) };
        self.id.push(delivery_id(e.id, t.seq));
        self.event_id.push(e.id.to_owned());
        self.event_type.push(e.event_type.to_owned());
        self.sub.push(t.id.clone());
        self.tenant.push(e.scope.tenant_id.clone());
        self.mode.push(e.scope.mode.as_str());
        self.lean.push(e.lean && !t.include_payload);
        self.created.push(e.created_ms);
        let behind = key.as_ref().is_some_and(|k| !self.keys_seen.insert((t.id.clone(), k.clone())));
        self.behind.push(behind);
        self.key.push(key);
    }
}

/// The event from `e` (of the log) that subscription `s` takes: the test `targets` makes at
/// publish, made at read time. A publish that read the cursor as NULL just before the lane
/// fell behind writes its row even if its event lands past the cursor (its `seq` is drawn
/// after that read), so an event whose delivery ([`delivery_id`]) is a row already is not
/// in the log.
const TAKES_FROM_LOG: &str = "e.tenant_id = s.tenant_id AND e.mode = s.mode AND e.seq > s.cursor_seq \
    AND e.only_subscription IS NULL \
    AND (strpos(s.event_types, ',' || e.type || ',') > 0 OR strpos(s.event_types, ',ALL_EVENTS,') > 0) \
    AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE r.id = 'dlv-' || substr(e.id, 4, 24) \
    || right('0000000' || to_hex(s.seq), greatest(8, length(to_hex(s.seq)))))";

/// The next events of a subscription's log, oldest first, with what its deliveries need,
/// bodies included. The events are read in a lateral subquery, where the subscription's scope
/// is a constant: as a join, the plan sorted the whole log to take its first rows.
static READ_LOG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.seq, e.id, e.type, e.tenant_id, e.mode, e.created_ms, e.lean_body IS NOT NULL, \
         s.seq, s.include_payload, s.fifo, e.order_key, {} FROM subscriptions s CROSS JOIN LATERAL \
         (SELECT * FROM events e WHERE {TAKES_FROM_LOG} ORDER BY e.seq LIMIT $2) e WHERE s.id = $1 ORDER BY e.seq",
        sent_body("NOT s.include_payload")
    )
});

/// Writes the deliveries of a subscription that fell behind for the next at most `limit`
/// matching events of the log past its cursor, and moves the cursor over them; once the log
/// is read to its end, publishes write the subscription's deliveries again. Locks the lane's
/// row `FOR UPDATE` first: a publish that leaves this lane's delivery in the log holds it `FOR
/// KEY SHARE` until its event commits (see [`lock_lanes`]), so nothing below the new cursor
/// commits later. Returns the due deliveries it wrote, and whether it is still behind.
async fn read_log(c: &impl GenericClient, subscription_id: &str, limit: i64) -> Result<LaneBatch> {
    c.execute("SELECT 1 FROM subscriptions WHERE id = $1 FOR UPDATE", &[&subscription_id]).await?;
    let read = c.prepare_cached(&READ_LOG).await?;
    let rows = c.query(&read, &[&subscription_id, &limit]).await?;
    let behind = rows.len() as i64 >= limit;
    let mut d = DeliveryColumns::default();
    for r in &rows {
        let scope = Scope { tenant_id: r.get(3), mode: mode_of(r.get(4)) };
        let head =
            EventHead { id: r.get(1), event_type: r.get(2), scope: &scope, created_ms: r.get(5), lean: r.get(6) };
        let t = Target {
            seq: r.get(7),
            id: subscription_id.to_owned(),
            include_payload: r.get(8),
            fifo: r.get(9),
            behind: true,
        };
        d.push(&head, &t, r.get(10));
    }
    lock_order_keys(c, d.order_keys()).await?;
    let mut written = insert_deliveries(c, &d).await?;
    let cursor: Option<i64> = rows.last().map(|r| r.get(0)).filter(|_| behind);
    c.execute(
        "UPDATE subscriptions SET cursor_seq = $1 WHERE id = $2 AND cursor_seq IS NOT NULL",
        &[&cursor, &subscription_id],
    )
    .await?;
    let deliveries = rows
        .iter()
        .filter_map(|r| {
            let event_id: String = r.get(1);
            let delivery = written.remove(&event_id)?.pop()?;
            due_from_log(delivery, event_id, r.get(11))
        })
        .collect();
    Ok(LaneBatch { deliveries, next_due_ms: None, behind })
}

/// A lane's due rows, each with the body it sends, leaving out those the lane holds.
static READ_LANE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT d.seq, d.id, d.event_id, d.attempts, d.order_key, {} \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.subscription_id = $1 AND d.status = 'PENDING' AND d.next_attempt_ms <= $2 \
         AND NOT (d.seq = ANY($3)) ORDER BY d.next_attempt_ms, d.seq LIMIT $4",
        sent_body("d.lean")
    )
});

/// Deliveries still in the event log (of lanes that fell behind) as the PENDING deliveries
/// they will be, newest first, at most `limit` whose page position is below `below`. The
/// position is the event's number among a subscription's deliveries, the subscription's
/// among an event's.
async fn log_deliveries(
    c: &impl GenericClient,
    scope: &Scope,
    of: DeliveriesOf<'_>,
    below: i64,
    limit: i64,
) -> Result<Vec<(i64, Delivery)>> {
    // As in READ_LOG, a subscription's events are a lateral subquery, read newest first.
    let (filter, events, position, key) = match of {
        DeliveriesOf::Subscription(id) => ("s.id = $3", "e.seq < $4", "e.seq", id),
        DeliveriesOf::Event(id) => ("s.seq < $4", "e.id = $3", "s.seq", id),
    };
    let sql = format!(
        "SELECT {position}, e.id, e.type, e.created_ms, e.lean_body IS NOT NULL AND NOT s.include_payload, \
         s.seq, s.id FROM subscriptions s CROSS JOIN LATERAL \
         (SELECT * FROM events e WHERE {TAKES_FROM_LOG} AND {events} ORDER BY e.seq DESC LIMIT $5) e \
         WHERE s.tenant_id = $1 AND s.mode = $2 AND {filter} AND s.cursor_seq IS NOT NULL \
         ORDER BY {position} DESC LIMIT $5"
    );
    let statement = c.prepare_cached(&sql).await?;
    let rows = c.query(&statement, &[&scope.tenant_id, &scope.mode.as_str(), &key, &below, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (event_id, created_ms): (String, i64) = (r.get(1), r.get(3));
            let delivery = Delivery {
                id: delivery_id(&event_id, r.get(5)),
                event_id,
                event_type: r.get(2),
                subscription_id: r.get(6),
                scope: scope.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_ms: Some(created_ms),
                lean: r.get(4),
                created_ms,
                updated_ms: created_ms,
                last_status_code: None,
                last_error: None,
            };
            (r.get(0), delivery)
        })
        .collect())
}

/// A delivery by id: its row, or, for a lane that fell behind, the one still in the log.
async fn delivery_by_id(c: &impl GenericClient, scope: &Scope, id: &str) -> Result<Option<Delivery>> {
    let sql =
        format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = $1 AND d.tenant_id = $2 AND d.mode = $3");
    let statement = c.prepare_cached(&sql).await?;
    if let Some(row) = c.query_opt(&statement, &[&id, &scope.tenant_id, &scope.mode.as_str()]).await? {
        return Ok(Some(delivery_row(&row).1));
    }
    let Some(prefix) = event_id_prefix(id) else { return Ok(None) };
    let find = c.prepare_cached("SELECT id FROM events WHERE id >= $1 AND id < $1 || 'g' LIMIT 1").await?;
    let Some(event) = c.query_opt(&find, &[&prefix]).await? else { return Ok(None) };
    let event_id: String = event.get(0);
    let in_log = log_deliveries(c, scope, DeliveriesOf::Event(&event_id), i64::MAX, i64::MAX).await?;
    Ok(in_log.into_iter().map(|(_, d)| d).find(|d| d.id == id))
}

/// The two-key advisory lock class of node presences: a node holds its own, exclusive, on
/// its listening connection for as long as that connection lasts. (The one-key space, which
/// the order and migration locks use, does not overlap it.)
const PRESENCE: i32 = 0x736d_6c70;

/// The key of a node's presence (`{owner}`: an SQL expression): advisory locks are the
/// database's, and its schemas hold clusters of their own.
fn presence_key(owner: &str) -> String {
    format!("{PRESENCE}, {}", presence_of(owner))
}

/// The second half of [`presence_key`]: the owner's name within its schema.
fn presence_of(owner: &str) -> String {
    format!("hashtext(current_schema() || '/' || {owner})")
}

/// Ends the session that holds `$1`'s presence, if any: only this node's own can, one the
/// server kept after the node lost it (a reset seen on one side only), which would otherwise
/// keep the node away until the server's keepalive ends it, by default after hours. Leaves
/// alone other nodes' claims, which take the lock shared for a moment.
static END_STALE_PRESENCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND mode = 'ExclusiveLock' AND objsubid = 2 AND pid <> pg_backend_pid() \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = {PRESENCE}::oid AND objid = {}::oid",
        presence_of("$1")
    )
});

/// Whether the owner of lease `l` is gone: its presence lock is free. The test takes that
/// lock shared until the claim's transaction ends, so the owner cannot come back in between.
fn owner_gone() -> String {
    format!("pg_try_advisory_xact_lock_shared({})", presence_key("l.owner"))
}

/// The connection that hears other nodes' signals and holds this node's presence.
struct Listening {
    client: tokio_postgres::Client,
    messages: mpsc::UnboundedReceiver<String>,
    driver: tokio::task::JoinHandle<()>,
}

impl Listening {
    async fn open(config: &tokio_postgres::Config, node: &str) -> Result<Listening> {
        // Named, so that an operator can tell the nodes' sessions apart in `pg_stat_activity`.
        let (client, mut connection) = config.clone().application_name(format!("smile {node}")).connect(NoTls).await?;
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = stream.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = messages_tx.send(n.payload().to_owned());
                }
            }
        });
        let listening = Listening { client, messages, driver };
        if let Err(error) = listening.client.execute(END_STALE_PRESENCE.as_str(), &[&node]).await {
            tracing::warn!(%error, "could not end this node's earlier session; waiting for the server to");
        }
        let lock = format!("SELECT pg_advisory_lock({})", presence_key("$1"));
        listening.client.execute(&lock, &[&node]).await?;
        listening.client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(listening)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Forwards signals until nobody reads them (a node that stopped closes its connection,
/// and so ends its presence). A lost connection is reopened; the node hears that it was
/// absent, then that signals may have been missed.
async fn forward_signals(
    config: tokio_postgres::Config,
    node: String,
    mut listening: Listening,
    tx: mpsc::UnboundedSender<Signal>,
) {
    loop {
        // Whatever was sent while nobody listened is lost: say so.
        if tx.send(Signal::Missed).is_err() {
            return;
        }
        loop {
            let payload = tokio::select! {
                payload = listening.messages.recv() => payload,
                () = tx.closed() => return,
            };
            let Some(payload) = payload else { break };
            if let Some(signal) = Signal::decode(&payload)
                && tx.send(signal).is_err()
            {
                return;
            }
        }
        tracing::warn!(
            "lost the LISTEN connection, and with it this node's presence: sending nothing until it is back"
        );
        if tx.send(Signal::Absent).is_err() {
            return;
        }
        listening = loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if tx.is_closed() {
                return;
            }
            match Listening::open(&config, &node).await {
                Ok(listening) => break listening,
                Err(error) => tracing::warn!(%error, "cannot open the LISTEN connection; retrying"),
            }
        };
    }
}

/// Single tries of the writes that [`retry_conflicts`] repeats.
impl PostgresStore {
    async fn create_tenant_key_once(&self, tenant_id: &str, mode: Mode) -> Result<NewKey> {
        let (key, hash) = new_key_pair();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO tenants (id, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&tenant_id, &now()],
        )
        .await?;
        tx.execute(
            "INSERT INTO api_keys (api_key, secret_sha256, tenant_id, mode, operator, created_ms) VALUES ($1,$2,$3,$4,FALSE,$5)",
            &[&key.api_key, &hash.as_slice(), &tenant_id, &mode.as_str(), &now()],
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn patch_subscription_once(
        &self,
        scope: &Scope,
        id: &str,
        p: &SubscriptionPatch,
        now_ms: i64,
    ) -> Result<Option<Subscription>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let sql = format!(
            "UPDATE subscriptions SET name = COALESCE($1::text, name), url = COALESCE($2::text, url), \
             event_types = COALESCE($3::text, event_types), \
             previous_secret = CASE WHEN $4::bigint IS NULL THEN previous_secret ELSE secret END, \
             previous_secret_until_ms = COALESCE($4::bigint, previous_secret_until_ms), \
             secret = COALESCE($5::text, secret), include_payload = COALESCE($6::boolean, include_payload), \
             fifo = COALESCE($7::boolean, fifo), \
             disabled_reason = CASE WHEN $8::boolean AND NOT active THEN NULL ELSE disabled_reason END, \
             failing_since_ms = CASE WHEN $8::boolean AND NOT active THEN NULL ELSE failing_since_ms END, \
             active = COALESCE($8::boolean, active), updated_ms = $9 \
             WHERE id = $10 AND tenant_id = $11 AND mode = $12 RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let types = p.event_types.as_deref().map(types_to_column);
        let fifo = p.ordering.map(|o| o == Ordering::Fifo);
        let row = tx
            .query_opt(
                &sql,
                &[
                    &p.name,
                    &p.url,
                    &types,
                    &p.previous_secret_until_ms,
                    &p.secret,
                    &p.include_payload,
                    &fifo,
                    &p.active,
                    &now_ms,
                    &id,
                    &scope.tenant_id,
                    &scope.mode.as_str(),
                ],
            )
            .await?;
        let updated = row.map(|r| subscription_row(&r).1);
        if let Some(sub) = &updated
            && !sub.active
        {
            fail_pending(&tx, &sub.id, DeliveryStatus::Failed, "subscription inactive").await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_subscription_once(&self, scope: &Scope, id: &str) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let deleted = tx
            .execute(
                "DELETE FROM subscriptions WHERE id = $1 AND tenant_id = $2 AND mode = $3",
                &[&id, &scope.tenant_id, &scope.mode.as_str()],
            )
            .await?;
        if deleted > 0 {
            fail_pending(&tx, id, DeliveryStatus::Cancelled, "subscription deleted").await?;
            tx.execute("DELETE FROM lanes WHERE subscription_id = $1", &[&id]).await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn record_outcomes_once(&self, outcomes: &[Outcome]) -> Result<OutcomeEffects> {
        let started = std::time::Instant::now();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Whole columns at once: one round trip for the attempts, one for the deliveries.
        let a: Vec<&Attempt> = outcomes.iter().map(|o| &o.attempt).collect();
        let ids: Vec<&str> = a.iter().map(|a| a.id.as_str()).collect();
        let delivery_ids: Vec<&str> = a.iter().map(|a| a.delivery_id.as_str()).collect();
        let numbers: Vec<i32> = a.iter().map(|a| a.attempt as i32).collect();
        let times: Vec<i64> = a.iter().map(|a| a.attempted_ms).collect();
        let codes: Vec<Option<i32>> = a.iter().map(|a| a.status_code.map(i32::from)).collect();
        let latencies: Vec<i64> = a.iter().map(|a| a.latency_ms as i64).collect();
        let bodies: Vec<Option<&str>> = a.iter().map(|a| a.response_body.as_deref()).collect();
        let errors: Vec<Option<&str>> = a.iter().map(|a| a.error.as_deref()).collect();
        let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
        let nexts: Vec<Option<i64>> = outcomes.iter().map(|o| o.next_attempt_ms).collect();
        let insert = tx
            .prepare_cached(
                "INSERT INTO attempts (id, delivery_id, attempt, attempted_ms, status_code, latency_ms, response_body, error) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[], $4::bigint[], $5::int[], $6::bigint[], $7::text[], $8::text[])",
            )
            .await?;
        tx.execute(&insert, &[&ids, &delivery_ids, &numbers, &times, &codes, &latencies, &bodies, &errors]).await?;
        let update = tx
            .prepare_cached(&format!(
                "UPDATE deliveries d SET status = u.status, attempts = GREATEST(d.attempts, u.attempt), \
                 next_attempt_ms = u.next, updated_ms = u.at, last_status_code = u.code, last_error = u.error \
                 FROM UNNEST($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::int[], $7::text[]) \
                 AS u(id, status, attempt, next, at, code, error) \
                 WHERE d.id = u.id AND d.{OPEN_DELIVERY} \
                 RETURNING d.subscription_id, d.order_key, d.status, d.updated_ms"
            ))
            .await?;
        let changed = tx.query(&update, &[&delivery_ids, &statuses, &numbers, &nexts, &times, &codes, &errors]).await?;
        let mut effects = OutcomeEffects::default();
        let ended: Vec<(String, String, i64)> = changed
            .iter()
            .filter(|row| DeliveryStatus::parse(row.get(2)) != DeliveryStatus::Pending)
            .filter_map(|row| Some((row.get(0), row.get::<_, Option<String>>(1)?, row.get(3))))
            .collect();
        // Subscriptions first, in one order: a disable locks its lane's row, which every
        // other writer locks before order locks, and a publish locks lanes in this order.
        let mut by_subscription: Vec<_> = outcomes.iter().collect();
        by_subscription.sort_by(|a, b| a.subscription_id.cmp(&b.subscription_id));
        for o in by_subscription {
            match &o.subscription_effect {
                SubscriptionEffect::None => {}
                SubscriptionEffect::Recovered => {
                    tx.execute("UPDATE subscriptions SET failing_since_ms = NULL WHERE id = $1", &[&o.subscription_id])
                        .await?;
                }
                SubscriptionEffect::FailingSince(since) => {
                    tx.execute(
                        "UPDATE subscriptions SET failing_since_ms = COALESCE(failing_since_ms, $1) WHERE id = $2",
                        &[since, &o.subscription_id],
                    )
                    .await?;
                }
                SubscriptionEffect::Disable { reason } => {
                    if disable(&tx, &o.subscription_id, reason).await? {
                        effects.disabled.push(o.subscription_id.clone());
                    }
                }
            }
        }
        lock_order_keys(&tx, ended.iter().map(|(sub, key, _)| (sub.as_str(), key.as_str()))).await?;
        for (subscription_id, key, at) in ended {
            if unpark(&tx, &subscription_id, &key, at).await? {
                effects.unparked.push(subscription_id);
            }
        }
        tx.commit().await?;
        record_commit("outcomes", started, outcomes.len());
        Ok(effects)
    }

    async fn read_log_once(&self, subscription_id: &str, limit: u32) -> Result<LaneBatch> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let written = read_log(&tx, subscription_id, i64::from(limit)).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn put_documents_once(&self, documents: &[Document]) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let put = tx
            .prepare_cached(
                "INSERT INTO documents (kind, id, tenant_id, mode, user_id, source_id, created_ms, body) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (kind, id) DO UPDATE SET \
                 user_id = excluded.user_id, source_id = excluded.source_id, body = excluded.body",
            )
            .await?;
        for d in documents {
            tx.execute(
                &put,
                &[
                    &d.kind,
                    &d.id,
                    &d.scope.tenant_id,
                    &d.scope.mode.as_str(),
                    &d.user_id,
                    &d.source_id,
                    &d.created_ms,
                    &d.body.to_string(),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_tenant_key(&self, tenant_id: &str, mode: Mode) -> Result<NewKey> {
        retry_conflicts("create tenant key", || self.create_tenant_key_once(tenant_id, mode)).await
    }

    async fn create_operator_key(&self) -> Result<NewKey> {
        let (key, hash) = new_key_pair();
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO api_keys (api_key, secret_sha256, operator, created_ms) VALUES ($1, $2, TRUE, $3)",
                &[&key.api_key, &hash.as_slice(), &now()],
            )
            .await?;
        Ok(key)
    }

    async fn find_key(&self, api_key: &str) -> Result<Option<KeyRecord>> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT secret_sha256, tenant_id, mode, operator FROM api_keys WHERE api_key = $1")
            .await?;
        let Some(row) = client.query_opt(&statement, &[&api_key]).await? else {
            return Ok(None);
        };
        let hash: Vec<u8> = row.get(0);
        let secret_sha256: [u8; 32] = hash.try_into().map_err(|_| StoreError::Invalid("bad key hash".into()))?;
        let principal = match (row.get::<_, bool>(3), row.get::<_, Option<String>>(1), row.get::<_, Option<String>>(2))
        {
            (true, _, _) => Principal::Operator,
            (false, Some(tenant_id), Some(mode)) => Principal::Tenant(Scope { tenant_id, mode: mode_of(&mode) }),
            _ => return Ok(None),
        };
        Ok(Some(KeyRecord { secret_sha256, principal }))
    }

    async fn backlog(&self) -> Result<Backlog> {
        let row = self
            .pool
            .get()
            .await?
            .query_one(
                // Rows, and the deliveries of lanes that fell behind, still in the log.
                &format!(
                    "SELECT SUM(n)::bigint, MIN(oldest) FROM ( \
                     SELECT COUNT(*) AS n, MIN(created_ms) AS oldest FROM deliveries WHERE status = 'PENDING' \
                     UNION ALL SELECT COUNT(*), MIN(e.created_ms) FROM subscriptions s JOIN events e \
                     ON {TAKES_FROM_LOG} WHERE s.cursor_seq IS NOT NULL) AS both_kinds"
                ),
                &[],
            )
            .await?;
        Ok(Backlog { pending: row.get::<_, Option<i64>>(0).unwrap_or(0) as u64, oldest_created_ms: row.get(1) })
    }

    async fn delivery_counts(&self, scope: &Scope, subscription_id: &str, since_ms: i64) -> Result<Vec<MinuteCount>> {
        let client = self.pool.get().await?;
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&subscription_id, &scope.tenant_id, &scope.mode.as_str(), &since_ms];
        let rows = client
            .query(
                "SELECT (created_ms / 60000) * 60000, status, COUNT(*) FROM deliveries WHERE subscription_id = $1 AND tenant_id = $2 AND mode = $3 AND created_ms >= $4 GROUP BY 1, 2",
                &args,
            )
            .await?;
        let mut counts: Vec<MinuteCount> = rows
            .iter()
            .map(|r| MinuteCount {
                minute_ms: r.get(0),
                status: DeliveryStatus::parse(r.get(1)),
                count: r.get::<_, i64>(2) as u64,
            })
            .collect();
        let in_log = client
            .query(
                &format!(
                    "SELECT (e.created_ms / 60000) * 60000, COUNT(*) FROM subscriptions s JOIN events e \
                     ON {TAKES_FROM_LOG} WHERE s.id = $1 AND s.tenant_id = $2 AND s.mode = $3 \
                     AND s.cursor_seq IS NOT NULL AND e.created_ms >= $4 GROUP BY 1"
                ),
                &args,
            )
            .await?;
        add_log_counts(&mut counts, in_log.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u64)));
        Ok(counts)
    }

    async fn has_tenants(&self) -> Result<bool> {
        Ok(self.pool.get().await?.query_one("SELECT EXISTS(SELECT 1 FROM tenants)", &[]).await?.get(0))
    }

    async fn tenant_exists(&self, tenant_id: &str) -> Result<bool> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached("SELECT EXISTS(SELECT 1 FROM tenants WHERE id = $1)").await?;
        Ok(client.query_one(&statement, &[&tenant_id]).await?.get(0))
    }

    async fn insert_subscription(&self, s: Subscription) -> Result<()> {
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO subscriptions (id, tenant_id, mode, name, url, event_types, active, secret, \
                 previous_secret, previous_secret_until_ms, include_payload, disabled_reason, failing_since_ms, \
                 created_ms, updated_ms, fifo) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
                &[
                    &s.id,
                    &s.scope.tenant_id,
                    &s.scope.mode.as_str(),
                    &s.name,
                    &s.url,
                    &types_to_column(&s.event_types),
                    &s.active,
                    &s.secret,
                    &s.previous_secret,
                    &s.previous_secret_until_ms,
                    &s.include_payload,
                    &s.disabled_reason,
                    &s.failing_since_ms,
                    &s.created_ms,
                    &s.updated_ms,
                    &(s.ordering == Ordering::Fifo),
                ],
            )
            .await?;
        Ok(())
    }

    async fn get_subscription(&self, scope: &Scope, id: &str) -> Result<Option<Subscription>> {
        let sql =
            format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1 AND tenant_id = $2 AND mode = $3");
        let client = self.pool.get().await?;
        let row = client.query_opt(&sql, &[&id, &scope.tenant_id, &scope.mode.as_str()]).await?;
        Ok(row.map(|r| subscription_row(&r).1))
    }

    async fn subscriptions_changed_since(&self, since_ms: i64) -> Result<Vec<String>> {
        let rows =
            self.pool.get().await?.query("SELECT id FROM subscriptions WHERE updated_ms >= $1", &[&since_ms]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn subscription_by_id(&self, id: &str) -> Result<Option<Subscription>> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        let row = self.pool.get().await?.query_opt(&sql, &[&id]).await?;
        Ok(row.map(|r| subscription_row(&r).1))
    }

    async fn list_subscriptions(&self, scope: &Scope, page: &PageRequest) -> Result<Page<Subscription>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant_id = $1 AND mode = $2 AND seq < $3 \
             ORDER BY seq DESC LIMIT $4"
        );
        let rows = self
            .pool
            .get()
            .await?
            .query(
                &sql,
                &[
                    &scope.tenant_id,
                    &scope.mode.as_str(),
                    &page.before_seq.unwrap_or(i64::MAX),
                    &(i64::from(page.size) + 1),
                ],
            )
            .await?;
        Ok(paginate(rows.iter().map(subscription_row).collect(), page.size))
    }

    async fn patch_subscription(
        &self,
        scope: &Scope,
        id: &str,
        patch: &SubscriptionPatch,
        now_ms: i64,
    ) -> Result<Option<Subscription>> {
        retry_conflicts("update subscription", || self.patch_subscription_once(scope, id, patch, now_ms)).await
    }

    async fn delete_subscription(&self, scope: &Scope, id: &str) -> Result<bool> {
        retry_conflicts("delete subscription", || self.delete_subscription_once(scope, id)).await
    }

    async fn publish(&self, e: NewEvent) -> Result<Published> {
        let (reply, answer) = oneshot::channel();
        self.publishes.send((e, reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn write_left_over_spreads(&self, _now_ms: i64) -> Result<Vec<String>> {
        // A publish here writes every delivery row in its own transaction, so none is left:
        // parts written after the commit cost more than they saved (docs/next-engine.md).
        Ok(Vec::new())
    }

    async fn forget_idempotency_keys(&self, before_ms: i64) -> Result<u64> {
        let client = self.pool.get().await?;
        Ok(client.execute("DELETE FROM idempotency_keys WHERE created_ms < $1", &[&before_ms]).await?)
    }

    async fn get_event(&self, scope: &Scope, id: &str) -> Result<Option<StoredEvent>> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "SELECT seq, id, type, created_ms, body FROM events WHERE id = $1 AND tenant_id = $2 AND mode = $3",
                &[&id, &scope.tenant_id, &scope.mode.as_str()],
            )
            .await?;
        Ok(row.map(|r| event_row(&r)))
    }

    async fn list_events(&self, scope: &Scope, filter: &EventFilter, page: &PageRequest) -> Result<Page<StoredEvent>> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "SELECT seq, id, type, created_ms, body FROM events WHERE tenant_id = $1 AND mode = $2 AND seq < $3 \
                 AND ($4::text IS NULL OR type = $4) AND created_ms >= $5 AND created_ms < $6 ORDER BY seq DESC LIMIT $7",
                &[
                    &scope.tenant_id, &scope.mode.as_str(), &page.before_seq.unwrap_or(i64::MAX), &filter.event_type,
                    &filter.from_ms.unwrap_or(i64::MIN), &filter.to_ms.unwrap_or(i64::MAX), &(i64::from(page.size) + 1),
                ],
            )
            .await?;
        Ok(paginate(rows.iter().map(|r| (r.get(0), event_row(r))).collect(), page.size))
    }

    async fn get_delivery(&self, scope: &Scope, id: &str) -> Result<Option<Delivery>> {
        delivery_by_id(&self.pool.get().await?, scope, id).await
    }

    async fn list_deliveries(&self, scope: &Scope, of: DeliveriesOf<'_>, page: &PageRequest) -> Result<Page<Delivery>> {
        let client = self.pool.get().await?;
        let mut listed = DeliveryPage::new(page);
        if let Some((below, limit)) = listed.log() {
            listed.add_log(log_deliveries(&client, scope, of, below, i64::from(limit)).await?);
        }
        if let Some((before, wanted)) = listed.rows() {
            let (column, key) = match of {
                DeliveriesOf::Subscription(id) => ("subscription_id", id),
                DeliveriesOf::Event(id) => ("event_id", id),
            };
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.{column} = $1 AND d.tenant_id = $2 AND d.mode = $3 \
                 AND d.seq < $4 ORDER BY d.seq DESC LIMIT $5"
            );
            let rows = client.query(&sql, &[&key, &scope.tenant_id, &scope.mode.as_str(), &before, &wanted]).await?;
            listed.add_rows(rows.iter().map(delivery_row));
        }
        Ok(listed.finish())
    }

    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "SELECT id, delivery_id, attempt, attempted_ms, status_code, latency_ms, response_body, error \
                 FROM attempts WHERE delivery_id = $1 ORDER BY attempted_ms, attempt, id",
                &[&delivery_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Attempt {
                id: r.get(0),
                delivery_id: r.get(1),
                attempt: r.get::<_, i32>(2).max(0) as u32,
                attempted_ms: r.get(3),
                status_code: r.get::<_, Option<i32>>(4).map(|c| c as u16),
                latency_ms: r.get::<_, i64>(5).max(0) as u64,
                response_body: r.get(6),
                error: r.get(7),
            })
            .collect())
    }

    async fn record_outcomes(&self, outcomes: Arc<[Outcome]>) -> Result<OutcomeEffects> {
        retry_conflicts("record outcomes", || self.record_outcomes_once(&outcomes)).await
    }

    async fn read_lane(&self, subscription_id: &str, now_ms: i64, held: &[i64], limit: u32) -> Result<LaneBatch> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(&READ_LANE).await?;
        let rows = client.query(&statement, &[&subscription_id, &now_ms, &held, &i64::from(limit)]).await?;
        let deliveries = rows
            .iter()
            .map(|r| LaneDelivery {
                seq: r.get(0),
                id: r.get(1),
                event_id: r.get(2),
                attempts: r.get::<_, i32>(3).max(0) as u32,
                order_key: r.get(4),
                body: r.get(5),
            })
            .collect();
        let next = client
            .prepare_cached(
                "SELECT MIN(next_attempt_ms) FROM deliveries \
                 WHERE subscription_id = $1 AND status = 'PENDING' AND next_attempt_ms > $2",
            )
            .await?;
        let next_due_ms = client.query_one(&next, &[&subscription_id, &now_ms]).await?.get(0);
        let behind = client
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE id = $1 AND cursor_seq IS NOT NULL)")
            .await?;
        let behind = client.query_one(&behind, &[&subscription_id]).await?.get(0);
        Ok(LaneBatch { deliveries, next_due_ms, behind })
    }

    async fn read_log(&self, subscription_id: &str, limit: u32) -> Result<LaneBatch> {
        retry_conflicts("read a lane's log", || self.read_log_once(subscription_id, limit)).await
    }

    async fn fall_behind(&self, subscription_id: &str) -> Result<bool> {
        // The sequence's last number, not the log's end: a publish that has drawn a number
        // below it and not committed read the cursor as NULL, so it writes its row.
        let changed = self
            .pool
            .get()
            .await?
            .execute(
                "UPDATE subscriptions SET cursor_seq = \
                 (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM events_seq_seq) \
                 WHERE id = $1 AND active AND cursor_seq IS NULL",
                &[&subscription_id],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn lanes_with_work(&self, node: &str, now_ms: i64, limit: u32) -> Result<Vec<String>> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                &format!(
                    "SELECT s.id FROM subscriptions s LEFT JOIN lanes l ON l.subscription_id = s.id \
                     WHERE s.active AND (s.cursor_seq IS NOT NULL OR EXISTS (SELECT 1 FROM deliveries d \
                     WHERE d.subscription_id = s.id AND d.status = 'PENDING' AND d.next_attempt_ms <= $2)) \
                     AND (l.owner IS NULL OR l.owner = $1 OR l.until_ms <= $2 OR {}) LIMIT $3",
                    owner_gone()
                ),
                &[&node, &now_ms, &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
    async fn claim_lanes(&self, lease: &Lease, subscription_ids: &[String], now_ms: i64) -> Result<Vec<String>> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                &format!(
                    "INSERT INTO lanes AS l (subscription_id, owner, until_ms) SELECT u, $2, $3 \
                     FROM UNNEST($1::text[]) AS u ON CONFLICT (subscription_id) DO UPDATE \
                     SET owner = excluded.owner, until_ms = excluded.until_ms \
                     WHERE l.owner = excluded.owner OR l.until_ms <= $4 OR {} RETURNING subscription_id",
                    owner_gone()
                ),
                &[&subscription_ids, &lease.owner, &lease.until_ms, &now_ms],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn renew_lanes(&self, lease: &Lease, subscription_ids: &[String]) -> Result<Vec<String>> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "UPDATE lanes SET until_ms = $1 WHERE subscription_id = ANY($2) AND owner = $3 RETURNING subscription_id",
                &[&lease.until_ms, &subscription_ids, &lease.owner],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn release_lanes(&self, owner: &str, subscription_ids: &[String], until_ms: i64) -> Result<()> {
        self.pool
            .get()
            .await?
            .execute(
                "DELETE FROM lanes WHERE subscription_id = ANY($1) AND owner = $2 AND until_ms <= $3",
                &[&subscription_ids, &owner, &until_ms],
            )
            .await?;
        Ok(())
    }

    async fn release_all_lanes(&self) -> Result<()> {
        self.pool.get().await?.execute("DELETE FROM lanes", &[]).await?;
        Ok(())
    }

    async fn blocked_head(&self, scope: &Scope, subscription_id: &str) -> Result<Option<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.subscription_id = $1 AND d.tenant_id = $2 \
             AND d.mode = $3 AND d.status = 'PENDING' AND d.order_key = '{FIFO_KEY}' \
             AND d.next_attempt_ms IS NOT NULL AND d.attempts > 0 ORDER BY d.seq LIMIT 1"
        );
        let row =
            self.pool.get().await?.query_opt(&sql, &[&subscription_id, &scope.tenant_id, &scope.mode.as_str()]).await?;
        Ok(row.map(|r| delivery_row(&r).1))
    }

    fn single_node(&self) -> bool {
        false
    }

    async fn count_request(&self, client: &str, window_s: i64) -> Result<u32> {
        let connection = self.pool.get().await?;
        let statement = connection
            .prepare_cached(
                "INSERT INTO request_counts (client, window_s, count) VALUES ($1, $2, 1) \
                 ON CONFLICT (client, window_s) DO UPDATE SET count = request_counts.count + 1 RETURNING count",
            )
            .await?;
        let count: i32 = connection.query_one(&statement, &[&client, &window_s]).await?.get(0);
        // Old windows are of no use: the first request of each second clears them.
        if count == 1 {
            connection.execute("DELETE FROM request_counts WHERE window_s < $1", &[&(window_s - 5)]).await?;
        }
        Ok(count.max(0) as u32)
    }

    async fn listen(&self, node: &str) -> Result<mpsc::UnboundedReceiver<Signal>> {
        let (tx, rx) = mpsc::unbounded_channel();
        // Present before the first claim: otherwise another node could take what it claims.
        let listening = tokio::time::timeout(DATABASE_TIMEOUT, Listening::open(&self.config, node))
            .await
            .map_err(|_| StoreError::Database("timed out opening the LISTEN connection".into()))??;
        tokio::spawn(forward_signals(self.config.clone(), node.to_owned(), listening, tx));
        Ok(rx)
    }

    async fn notify(&self, signal: Signal) -> Result<()> {
        self.pool.get().await?.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &signal.encode()]).await?;
        Ok(())
    }

    async fn put_documents(&self, documents: Vec<Document>) -> Result<()> {
        retry_conflicts("put documents", || self.put_documents_once(&documents)).await
    }

    async fn get_document(&self, scope: &Scope, kind: &str, id: &str) -> Result<Option<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE kind = $1 AND id = $2 AND tenant_id = $3 AND mode = $4"
        );
        let row = self.pool.get().await?.query_opt(&sql, &[&kind, &id, &scope.tenant_id, &scope.mode.as_str()]).await?;
        Ok(row.map(|r| document_row(&r).1))
    }

    async fn documents_of_kind(&self, kind: &str, until_ms: i64, limit: u32) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE kind = $1 AND created_ms <= $2 ORDER BY seq LIMIT $3"
        );
        let rows = self.pool.get().await?.query(&sql, &[&kind, &until_ms, &i64::from(limit)]).await?;
        Ok(rows.iter().map(|r| document_row(r).1).collect())
    }

    async fn document_by_id(&self, kind: &str, id: &str) -> Result<Option<Document>> {
        let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE kind = $1 AND id = $2");
        let row = self.pool.get().await?.query_opt(&sql, &[&kind, &id]).await?;
        Ok(row.map(|r| document_row(&r).1))
    }

    async fn list_documents(
        &self,
        scope: &Scope,
        kind: &str,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = $1 AND mode = $2 AND kind = $3 AND seq < $4 \
             AND ($5::text IS NULL OR user_id = $5) AND ($6::text IS NULL OR source_id = $6) AND created_ms >= $7 \
             AND created_ms < $8 AND ($10::text IS NULL OR body::jsonb->>'type' = $10) ORDER BY seq DESC LIMIT $9"
        );
        let rows = self
            .pool
            .get()
            .await?
            .query(
                &sql,
                &[
                    &scope.tenant_id,
                    &scope.mode.as_str(),
                    &kind,
                    &page.before_seq.unwrap_or(i64::MAX),
                    &filter.user_id,
                    &filter.source_id,
                    &filter.from_ms.unwrap_or(i64::MIN),
                    &filter.to_ms.unwrap_or(i64::MAX),
                    &(i64::from(page.size) + 1),
                    &filter.body_type,
                ],
            )
            .await?;
        Ok(paginate(rows.iter().map(document_row).collect(), page.size))
    }

    async fn delete_documents_of_source(&self, scope: &Scope, kinds: &[&str], source_id: &str) -> Result<u64> {
        Ok(self
            .pool
            .get()
            .await?
            .execute(
                "DELETE FROM documents WHERE tenant_id = $1 AND mode = $2 AND kind = ANY($3) AND source_id = $4",
                &[&scope.tenant_id, &scope.mode.as_str(), &kinds, &source_id],
            )
            .await?)
    }

    async fn retry_delivery(&self, scope: &Scope, id: &str, now_ms: i64) -> Result<Option<Delivery>> {
        let sql = format!(
            "UPDATE deliveries d SET status = CASE WHEN d.status = 'CANCELLED' THEN d.status ELSE 'PENDING' END, \
             next_attempt_ms = CASE WHEN d.status = 'CANCELLED' THEN d.next_attempt_ms ELSE $1 END, \
             updated_ms = $1 WHERE d.id = $2 AND d.tenant_id = $3 AND d.mode = $4 RETURNING {DELIVERY_COLUMNS}"
        );
        let mode = scope.mode.as_str();
        let row = retry_conflicts("retry a delivery", || {
            let (sql, tenant) = (&sql, &scope.tenant_id);
            async move { Ok(self.pool.get().await?.query_opt(sql, &[&now_ms, &id, tenant, &mode]).await?) }
        })
        .await?;
        match row {
            Some(r) => Ok(Some(delivery_row(&r).1)),
            // One still in the log is pending already: its lane sends it as it reads the log.
            None => delivery_by_id(&self.pool.get().await?, scope, id).await,
        }
    }

    async fn recover_deliveries(
        &self,
        scope: &Scope,
        subscription_id: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Delivery>> {
        let sql = format!(
            "UPDATE deliveries d SET status = 'PENDING', next_attempt_ms = $1, updated_ms = $1 \
             WHERE d.subscription_id = $2 AND d.tenant_id = $3 AND d.mode = $4 \
             AND d.status = 'FAILED' AND d.created_ms >= $5 RETURNING {DELIVERY_COLUMNS}"
        );
        let mode = scope.mode.as_str();
        let rows = retry_conflicts("recover deliveries", || {
            let (sql, tenant) = (&sql, &scope.tenant_id);
            async move {
                let client = self.pool.get().await?;
                Ok(client.query(sql, &[&now_ms, &subscription_id, tenant, &mode, &since_ms]).await?)
            }
        })
        .await?;
        Ok(rows.iter().map(|r| delivery_row(r).1).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A session left idle inside a transaction, as a node stopped by SIGSTOP leaves it, is
    /// ended by PostgreSQL, and the row it locked is free again.
    #[tokio::test]
    async fn a_session_stopped_inside_a_transaction_lets_go_of_its_locks() {
        let Some(url) = crate::testing::fresh_postgres_schema().await else { return };
        let config = session_config(&url).expect("config");
        let (mut stopped, connection) = config.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        stopped
            .batch_execute("CREATE TABLE held (id int PRIMARY KEY); INSERT INTO held VALUES (1)")
            .await
            .expect("table");
        let tx = stopped.transaction().await.expect("begin");
        tx.execute("SELECT 1 FROM held WHERE id = 1 FOR UPDATE", &[]).await.expect("lock");
        // From here the stopped session sends nothing.
        let (other, connection) = config.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        let deadline = Instant::now() + 3 * DATABASE_TIMEOUT;
        while let Err(e) = other.execute("SELECT 1 FROM held WHERE id = 1 FOR UPDATE NOWAIT", &[]).await {
            assert!(Instant::now() < deadline, "the stopped session still holds the row: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(tx);
    }
}
