//! The embedded SQLite store: one file in WAL mode under the data directory.
//!
//! Writes go to one writer thread, which takes every write queued at that moment, runs them
//! in one transaction and commits once (group commit): a burst of publishes costs one fsync,
//! and each caller is answered only after that commit.

use crate::common::{
    DeliveryPage, EventHead, add_log_counts, delivery_id, due_from_log, event_id_prefix, mode_of, new_key_pair, now,
    paginate, sent_body, types_from_column, types_to_column,
};
use crate::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use smile_core::metric;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{self, AtomicBool};
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Reads running at once (and reader connections kept).
const MAX_READERS: usize = 8;
/// How long a connection waits for a lock another holds.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The most writes one commit takes, so a huge backlog still commits in bounded steps.
const MAX_BATCH: usize = 8192;

/// A write waiting for the next group commit.
type Job = Box<dyn Write>;

/// One caller's write: run inside the batch's transaction (a second time if the batch is
/// rolled back and run again), then told how the commit went.
trait Write: Send {
    /// Runs the write on `conn`; whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: its own result, unless the commit failed.
    fn finish(self: Box<Self>, commit: Result<()>);
    /// A request waits on it (a publish, an API change), not the engine's background work.
    fn urgent(&self) -> bool;
}

struct PendingWrite<R, F> {
    f: F,
    urgent: bool,
    /// None until run, and after a run that panicked.
    result: Option<Result<R>>,
    reply: oneshot::Sender<Result<R>>,
}

impl<R, F> Write for PendingWrite<R, F>
where
    R: Send,
    F: Fn(&Connection) -> Result<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        self.result = None;
        // A panicking write loses its answer (its caller sees the store as closed), not the
        // writer: what it wrote is rolled back and the batch goes on.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.f)(conn))) {
            Ok(result) => {
                let ok = result.is_ok();
                self.result = Some(result);
                ok
            }
            Err(_) => {
                tracing::error!("a store write panicked; it is rolled back and the writer goes on");
                false
            }
        }
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let result = self.result.unwrap_or(Err(StoreError::Closed));
        let _ = self.reply.send(commit.and(result));
    }

    fn urgent(&self) -> bool {
        self.urgent
    }
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Reads at once: each takes a blocking thread and a connection with its own cache.
    reading: Arc<tokio::sync::Semaphore>,
    /// One process owns the file, so signals stay in it.
    listeners: Mutex<Vec<mpsc::UnboundedSender<Signal>>>,
    /// Request counts of the current rate-limit window; one node, so memory is enough.
    requests: Mutex<(i64, HashMap<String, u32>)>,
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Every statement of the hot path stays prepared (the default keeps 16, fewer than we use).
    conn.set_prepared_statement_cache_capacity(128);
    // The plan of a prepared statement must not depend on the values bound to it: otherwise
    // SQLite prepares it again whenever a value it looked at changes (a `LIMIT ?`, say), which
    // perf showed as 5 % of the CPU of a fan-out to 1,000 subscriptions, all on the readers.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.execute_batch(
        // FULL: a commit is on disk before anyone is told it happened. The larger page cache
        // and checkpoint interval keep hot index pages from being re-read and re-copied. A WAL
        // that grew past its bound (a burst, or an older version) is cut back when it starts over.
        // Statement journals (kept by a statement that writes several rows or returns some)
        // stay in memory: past 64 KiB SQLite spilled one to a temporary file, a write() per
        // page touched (perf: a seventh of the writer's time beside hostile endpoints).
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; \
         PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=10000; PRAGMA mmap_size=268435456;",
    )?;
    conn.pragma_update(None, "journal_size_limit", WAL_RESTART_FRAMES * PAGE_BYTES)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies the migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = open(path)?;
        crate::migrations::sqlite(&mut conn)?;
        let tx = conn.transaction()?;
        spread_left_over(&tx, i64::MAX)?;
        tx.commit()?;
        // Checkpoints run beside the writer, not inside its commits, where a large one would
        // hold up every publish queued behind it.
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        let checkpointer = open(path)?;
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let asks = restart_wanted.clone();
        std::thread::Builder::new()
            .name("smile-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, asks))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let (writer, jobs) = mpsc::channel::<Job>(65_536);
        std::thread::Builder::new()
            .name("smile-sqlite-writer".into())
            .spawn(move || writer_loop(conn, jobs, restart_wanted))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer,
            readers: Arc::default(),
            reading: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            listeners: Mutex::default(),
            requests: Mutex::default(),
        })
    }

    /// Runs `f` in the next group commit and answers after that commit. `f` may run twice
    /// (see [`run_batch`]); only the last run's writes are committed.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R> + Send + 'static,
    {
        self.queue(f, true).await?.await.map_err(|_| StoreError::Closed)?
    }

    /// Like [`SqliteStore::write`], for the engine's background work: it runs after the
    /// urgent writes queued with it, and a batch past its budget commits without the rest of
    /// it when an urgent write waits (see [`writer_loop`]).
    async fn write_bulk<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R> + Send + 'static,
    {
        self.queue(f, false).await?.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `f` for the writer; the answer comes after its commit.
    async fn queue<R, F>(&self, f: F, urgent: bool) -> Result<oneshot::Receiver<Result<R>>>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(PendingWrite { f, urgent, result: None, reply });
        self.writer.send(job).await.map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    /// Runs `f` on a reader connection off the async runtime.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let permit = self.reading.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = readers.lock().map_err(|_| StoreError::Closed)?.pop();
            let conn = match taken {
                Some(conn) => conn,
                None => open(&path)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }
}

/// How long the WAL may grow before a checkpoint also starts it over: 64 MiB of 4 KiB pages
/// (a few seconds of the writer at full speed), 4 MiB in this crate's tests.
const WAL_RESTART_FRAMES: i64 = if cfg!(test) { 1_024 } else { 16_384 };

/// SQLite's default page size, which our files keep: the size of a WAL frame's page.
const PAGE_BYTES: i64 = 4096;

/// How few frames a long WAL may have left to copy when the writer is asked to start it over.
const WAL_LEFT_FOR_RESTART: i64 = 256;

/// Copies committed pages from the WAL into the database file every half second, without
/// blocking the writer (PASSIVE), for as long as the process runs. Once the WAL is long, it
/// copies again until little is left and then asks the writer to start it over.
fn checkpoint_loop(conn: Connection, restart_wanted: Arc<AtomicBool>) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        match copy_wal(&conn) {
            Ok(long) => restart_wanted.store(long, atomic::Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; trying again"),
        }
    }
}

/// Copies the WAL into the database file; whether it has grown long enough to start over.
/// A long one is copied again (a few times at most) until what is left is small, since the
/// writer's RESTART checkpoint holds up every commit while it copies and syncs the rest.
fn copy_wal(conn: &Connection) -> rusqlite::Result<bool> {
    let mut done = checkpoint(conn, "PASSIVE")?;
    if done.frames < WAL_RESTART_FRAMES {
        return Ok(false);
    }
    for _ in 0..8 {
        if done.frames - done.copied <= WAL_LEFT_FOR_RESTART {
            break;
        }
        done = checkpoint(conn, "PASSIVE")?;
    }
    Ok(true)
}

/// Makes the WAL start over when the checkpoint thread asks; run by the writer between two
/// batches.
///
/// PASSIVE checkpoints alone never do: SQLite only rewinds the WAL when every frame has been
/// copied and no reader still reads from it, and with the writer and the lanes' readers always
/// busy that moment never comes. The WAL grew to 2.6 GB over a 400,000-event backlog, and a
/// restart after SIGKILL read all of it before answering (6.7 s at 1,000,000 events). A
/// RESTART checkpoint needs the writer's lock, which a busy writer never lets another
/// connection take, so the writer runs it itself: it copies the few frames the PASSIVE ones
/// left and waits for the readers of old frames (milliseconds); the next commit then writes
/// from the WAL's start.
fn restart_long_wal(conn: &Connection, restart_wanted: &AtomicBool, tries: &mut u32) {
    if !restart_wanted.swap(false, atomic::Ordering::Relaxed) {
        return;
    }
    let started = std::time::Instant::now();
    // Readers of old frames are not waited for, so that commits do not wait behind a read;
    // after a try that had to give up because of one, they get 10 ms, then 100 ms.
    let wait = std::time::Duration::from_millis([0, 10, 100][(*tries).min(2) as usize]);
    let restarted = conn.busy_timeout(wait).and_then(|()| checkpoint(conn, "RESTART"));
    // Whatever happened, the writer waits as long as every connection again.
    let restored = conn.busy_timeout(BUSY_TIMEOUT);
    match restored.and(restarted) {
        Ok(Checkpoint { busy: false, .. }) => *tries = 0,
        Ok(Checkpoint { busy: true, .. }) => *tries += 1,
        Err(error) => tracing::warn!(%error, "could not start the WAL over; trying again later"),
    }
    let labels = [("backend", "sqlite"), ("write", "wal_restart")];
    metrics::histogram!(metric::COMMIT_SECONDS, &labels).record(started.elapsed().as_secs_f64());
}

/// What a WAL checkpoint reports.
struct Checkpoint {
    /// It could not finish: a lock it needed was held past the busy timeout.
    busy: bool,
    /// Frames in the WAL.
    frames: i64,
    /// Frames of it copied into the database file.
    copied: i64,
}

/// Runs a WAL checkpoint.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Checkpoint> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Checkpoint { busy: row.get::<_, i64>(0)? != 0, frames: row.get(1)?, copied: row.get(2)? })
    })
}

/// How long a batch runs before it commits early for an urgent write waiting behind it (or
/// in it): a publish waits for at most about this much of the engine's background writes.
const BATCH_BUDGET: std::time::Duration = std::time::Duration::from_millis(2);

/// Writes waiting for the writer thread, urgent ones first.
#[derive(Default)]
struct Queue {
    urgent: std::collections::VecDeque<Job>,
    bulk: std::collections::VecDeque<Job>,
}

impl Queue {
    fn push(&mut self, job: Job) {
        if job.urgent() { self.urgent.push_back(job) } else { self.bulk.push_back(job) }
    }

    /// Takes every write already sent.
    fn take_sent(&mut self, jobs: &mut mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.try_recv() {
            self.push(job);
        }
    }

    fn pop(&mut self) -> Option<Job> {
        self.urgent.pop_front().or_else(|| self.bulk.pop_front())
    }

    fn len(&self) -> usize {
        self.urgent.len() + self.bulk.len()
    }
}

/// Which writes one batch takes: those queued when it begins, urgent ones first; once it has
/// run past [`BATCH_BUDGET`], no more background writes while an urgent write is in it or
/// waits.
struct BatchPlan {
    started: std::time::Instant,
    limit: usize,
    urgent_in_batch: bool,
}

impl BatchPlan {
    fn new(queue: &Queue) -> Self {
        BatchPlan { started: std::time::Instant::now(), limit: queue.len().min(MAX_BATCH), urgent_in_batch: false }
    }

    /// The batch's next write, if it takes one more.
    fn next(&mut self, queue: &mut Queue, jobs: &mut mpsc::Receiver<Job>, batch: &[Job]) -> Option<Job> {
        if batch.len() >= self.limit {
            return None;
        }
        // Only background work is left behind: urgent writes behind urgent ones gain nothing
        // from an early commit, and publishes alone commit in as few batches as before.
        if queue.urgent.is_empty() && !batch.is_empty() && self.started.elapsed() >= BATCH_BUDGET {
            queue.take_sent(jobs);
            if self.urgent_in_batch || !queue.urgent.is_empty() {
                return None;
            }
        }
        let job = queue.pop()?;
        self.urgent_in_batch |= job.urgent();
        Some(job)
    }
}

/// The writer thread: each batch takes the writes queued when it begins, urgent ones first,
/// and commits once (group commit); past [`BATCH_BUDGET`], it commits early when an urgent
/// write is in it or waits for the next.
fn writer_loop(mut conn: Connection, mut jobs: mpsc::Receiver<Job>, restart_wanted: Arc<AtomicBool>) {
    let mut restart_tries = 0;
    let mut queue = Queue::default();
    loop {
        if queue.len() == 0 {
            match jobs.blocking_recv() {
                Some(job) => queue.push(job),
                None => return,
            }
        }
        queue.take_sent(&mut jobs);
        restart_long_wal(&conn, &restart_wanted, &mut restart_tries);
        let mut plan = BatchPlan::new(&queue);
        let mut batch = Vec::new();
        let committed = run_batch(&mut conn, &mut batch, |batch| plan.next(&mut queue, &mut jobs, batch));
        if committed.is_err() && batch.is_empty() {
            // The transaction did not begin: the writes it would have run hear why.
            batch.extend(std::iter::from_fn(|| queue.pop()).take(plan.limit));
        }
        let labels = [("backend", "sqlite"), ("write", "group")];
        metrics::histogram!(metric::COMMIT_SECONDS, &labels).record(plan.started.elapsed().as_secs_f64());
        metrics::histogram!(metric::COMMIT_BATCH, &labels).record(batch.len() as f64);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "group commit failed");
        }
        for job in batch {
            job.finish(committed.clone());
        }
    }
}

/// Runs writes in one transaction, each next one from `next` until it has none, and commits
/// them; a write that fails leaves nothing behind and the others are committed. `batch`
/// holds the writes run.
///
/// First every write runs bare. A savepoint per write would make SQLite copy each page a
/// write first touches into a sub-journal, which perf showed as a fifth of the writer's time,
/// and writes almost never fail. Only when one does is the batch rolled back and run again,
/// each write in a savepoint of its own.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>, mut next: impl FnMut(&[Job]) -> Option<Job>) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut failed = 0;
    while let Some(mut job) = next(batch) {
        if !job.run(&tx) {
            failed += 1;
        }
        batch.push(job);
    }
    if failed == 0 {
        return Ok(tx.commit()?);
    }
    tx.rollback()?;
    if failed == batch.len() {
        // Nothing to keep: each write already holds its own failure.
        return Ok(());
    }
    run_each_in_savepoint(conn, batch)
}

/// Runs a batch again, each write in its own savepoint so that a failing one is undone alone.
fn run_each_in_savepoint(conn: &mut Connection, batch: &mut [Job]) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for job in batch.iter_mut() {
        run_cached(&tx, "SAVEPOINT job")?;
        let undone = if job.run(&tx) { Ok(()) } else { run_cached(&tx, "ROLLBACK TO job") };
        if let Err(error) = undone.and_then(|()| run_cached(&tx, "RELEASE job")) {
            // The write's changes cannot be told apart from the others': none is committed.
            tracing::error!(%error, "a savepoint failed; the whole batch is rolled back");
            return Err(error);
        }
    }
    Ok(tx.commit()?)
}

/// A subscription an event goes to: its number, id, whether it takes the full payload, and
/// the order key its delivery waits behind.
struct Target {
    seq: i64,
    id: String,
    include_payload: bool,
    order_key: Option<String>,
}

/// The subscriptions whose deliveries of `e` are written at publish: a test send's one, or
/// the active matching ones that have not fallen behind (those read `e` from the log later).
fn targets(c: &Connection, e: &NewEvent) -> Result<Vec<Target>> {
    let sql = match e.only_subscription {
        Some(_) => &TARGET_ONE,
        None => &TARGETS_MATCHING,
    };
    let (tenant, mode) = (e.scope.tenant_id.as_str(), e.scope.mode.as_str());
    let types = format!(",{},", e.event_type);
    let found = c
        .prepare_cached(sql)?
        .query_map(params![e.only_subscription, tenant, mode, types, e.order_key], |r| {
            Ok(Target { seq: r.get(0)?, id: r.get(1)?, include_payload: r.get(2)?, order_key: r.get(3)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

/// [`targets`]' statement for a test send: the one subscription it names.
static TARGET_ONE: LazyLock<String> = LazyLock::new(|| targets_where("s.id = ?1 AND s.tenant_id = ?2 AND s.mode = ?3"));

/// [`targets`]' statement for a publish: the active subscriptions of the scope that take the type.
// instr, not LIKE: SQLite prepares a statement again whenever a bound LIKE pattern changes, and
// this one runs once per publish.
static TARGETS_MATCHING: LazyLock<String> = LazyLock::new(|| {
    targets_where(
        "s.tenant_id = ?2 AND s.mode = ?3 AND s.active = 1 AND s.cursor_seq IS NULL \
         AND (instr(s.event_types, ?4) > 0 OR instr(s.event_types, ',ALL_EVENTS,') > 0)",
    )
});

fn targets_where(matching: &str) -> String {
    format!("SELECT s.seq, s.id, s.include_payload, {} FROM subscriptions s WHERE {matching}", order_key_of("?5"))
}

/// A publish to more subscriptions than this (not counting those in order) commits its event
/// first and writes their delivery rows in the commits after it, in parts: it is answered
/// after a one-row commit instead of a 1,000-row one, which is most of a large fan-out's
/// publish latency (each row touches a page of two per-subscription indexes).
const SPREAD_AFTER: usize = 64;

/// The subscriptions one write of a spread takes: a few milliseconds, so that a publish
/// waits behind at most one such write (see [`BATCH_BUDGET`]).
const SPREAD_PART: usize = 128;

/// A spread part still unwritten this long after its event was made was left by its
/// publisher (a failed write): the poll's sweep writes it.
const SPREAD_LEFT_AFTER_MS: i64 = 10_000;

/// Writes the delivery rows of one part of a large fan-out whose event is committed (see
/// [`SPREAD_AFTER`]) and forgets that part; nothing if another write did already. A subscription
/// deleted in between gets none; one disabled in between gets its delivery failed as a
/// disable fails the pending ones. Runs in the commit after the event's, and at open for any
/// a crash left. Returns the due deliveries written.
fn spread(c: &Connection, event_seq: i64, part: i64) -> Result<Vec<NewDelivery>> {
    let found = c
        .prepare_cached(
            "SELECT e.id, e.type, e.tenant_id, e.mode, e.created_ms, e.lean_body IS NOT NULL, p.subscriptions \
             FROM spreads p JOIN events e ON e.seq = p.event_seq WHERE p.event_seq = ?1 AND p.part = ?2",
        )?
        .query_row([event_seq, part], |r| {
            let head = (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(4)?, r.get::<_, bool>(5)?);
            let scope = Scope { tenant_id: r.get(2)?, mode: mode_of(&r.get::<_, String>(3)?) };
            Ok((head, scope, r.get::<_, String>(6)?))
        })
        .optional()?;
    let Some(((id, event_type, created_ms, lean), scope, subscriptions)) = found else { return Ok(Vec::new()) };
    let head = EventHead { id: &id, event_type: &event_type, scope: &scope, created_ms, lean };
    let targets = c
        .prepare_cached(&SPREAD_TARGETS)?
        .query_map([subscriptions], |r| {
            let target = Target { seq: r.get(0)?, id: r.get(1)?, include_payload: r.get(2)?, order_key: r.get(3)? };
            Ok((target, r.get::<_, bool>(4)?, r.get::<_, Option<String>>(5)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut created = Vec::new();
    for (target, active, disabled_reason) in targets {
        let delivery = insert_delivery(c, &head, target)?;
        if active {
            created.push(delivery);
            continue;
        }
        c.prepare_cached(
            "UPDATE deliveries SET status = 'FAILED', next_attempt_ms = NULL, last_error = ?1, updated_ms = ?2 \
             WHERE seq = ?3",
        )?
        .execute(params![
            disabled_reason.unwrap_or_else(|| "subscription disabled".into()),
            now(),
            delivery.seq
        ])?;
    }
    c.prepare_cached("DELETE FROM spreads WHERE event_seq = ?1 AND part = ?2")?.execute([event_seq, part])?;
    Ok(created)
}

/// The subscriptions of one part of a spread, with whether each is still active and why not.
static SPREAD_TARGETS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.seq, s.id, s.include_payload, {}, s.active, s.disabled_reason FROM subscriptions s \
         WHERE s.seq IN (SELECT value FROM json_each(?1)) ORDER BY s.seq",
        order_key_of("NULL")
    )
});

/// Writes what spreads of events made before `before_ms` left unwritten (all of them at open:
/// what a crash interrupted); returns the deliveries written.
fn spread_left_over(c: &Connection, before_ms: i64) -> Result<Vec<NewDelivery>> {
    let left: Vec<(i64, i64)> = c
        .prepare_cached(
            "SELECT p.event_seq, p.part FROM spreads p JOIN events e ON e.seq = p.event_seq \
             WHERE e.created_ms < ?1 ORDER BY p.event_seq, p.part",
        )?
        .query_map([before_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut written = Vec::new();
    for (event_seq, part) in left {
        written.extend(spread(c, event_seq, part)?);
    }
    Ok(written)
}

/// Writes `e`'s delivery to `target`, parked when an earlier one of its order
/// key is pending.
///
/// One single-row INSERT per delivery, not one INSERT … SELECT for the fan-out: a statement
/// that writes several rows keeps a statement journal, a copy of every page it touches.
/// The id is the event's time-ordered id with the subscription's number, so new rows append
/// to the indexes.
fn insert_delivery(c: &Connection, e: &EventHead, target: Target) -> Result<NewDelivery> {
    let parked = match &target.order_key {
        Some(key) => c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE subscription_id = ?1 AND order_key = ?2 \
                 AND status = 'PENDING')",
            )?
            .query_row(params![target.id, key], |r| r.get(0))?,
        None => false,
    };
    let id = delivery_id(e.id, target.seq);
    let lean = e.lean && !target.include_payload;
    let due = !parked;
    c.prepare_cached(
        "INSERT INTO deliveries (id, event_id, event_type, subscription_id, tenant_id, mode, status, attempts, \
         next_attempt_ms, lean, created_ms, updated_ms, order_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PENDING', 0, ?7, ?8, ?9, ?9, ?10)",
    )?
    .execute(params![
        id,
        e.id,
        e.event_type,
        target.id,
        e.scope.tenant_id,
        e.scope.mode.as_str(),
        due.then_some(e.created_ms),
        lean,
        e.created_ms,
        target.order_key
    ])?;
    Ok(NewDelivery {
        seq: c.last_insert_rowid(),
        id,
        subscription_id: target.id,
        lean,
        due,
        order_key: target.order_key,
    })
}

/// The event from `e` (of the log) that subscription `s` takes: the test `targets` makes at
/// publish, made at read time.
const TAKES_FROM_LOG: &str = "e.tenant_id = s.tenant_id AND e.mode = s.mode AND e.seq > s.cursor_seq \
    AND e.only_subscription IS NULL \
    AND (instr(s.event_types, ',' || e.type || ',') > 0 OR instr(s.event_types, ',ALL_EVENTS,') > 0)";

/// Deliveries still in the event log (of lanes that fell behind) as the PENDING deliveries
/// they will be, newest first, at most `limit` whose page position is below `below`. The
/// position is the event's number among a subscription's deliveries, the subscription's
/// among an event's.
fn log_deliveries(c: &Connection, scope: &Scope, of: &Listing, below: i64, limit: u32) -> Result<Vec<(i64, Delivery)>> {
    let (filter, position) = match of {
        Listing::Subscription(_) => ("s.id = ?3", "e.seq"),
        Listing::Event(_) => ("e.id = ?3", "s.seq"),
    };
    let sql = format!(
        "SELECT {position}, e.id, e.type, e.created_ms, e.lean_body IS NOT NULL AND NOT s.include_payload, \
         s.seq, s.id FROM subscriptions s JOIN events e ON {TAKES_FROM_LOG} \
         WHERE s.tenant_id = ?1 AND s.mode = ?2 AND {filter} AND s.cursor_seq IS NOT NULL AND {position} < ?4 \
         ORDER BY {position} DESC LIMIT ?5"
    );
    let found = c
        .prepare_cached(&sql)?
        .query_map(params![scope.tenant_id, scope.mode.as_str(), of.key(), below, limit], |r| {
            let (event_id, created_ms): (String, i64) = (r.get(1)?, r.get(3)?);
            let delivery = Delivery {
                id: delivery_id(&event_id, r.get(5)?),
                event_id,
                event_type: r.get(2)?,
                subscription_id: r.get(6)?,
                scope: scope.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_ms: Some(created_ms),
                lean: r.get(4)?,
                created_ms,
                updated_ms: created_ms,
                last_status_code: None,
                last_error: None,
            };
            Ok((r.get(0)?, delivery))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

/// A delivery by id: its row, or, for a lane that fell behind, the one still in the log.
fn delivery_by_id(c: &Connection, scope: &Scope, id: &str) -> Result<Option<Delivery>> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND tenant_id = ?2 AND mode = ?3");
    let row = c
        .prepare_cached(&sql)?
        .query_row(params![id, scope.tenant_id, scope.mode.as_str()], delivery_row)
        .optional()?;
    if let Some((_, d)) = row {
        return Ok(Some(d));
    }
    let Some(prefix) = event_id_prefix(id) else { return Ok(None) };
    let event_id: Option<String> = c
        .prepare_cached("SELECT id FROM events WHERE id >= ?1 AND id < ?1 || 'g' LIMIT 1")?
        .query_row([prefix], |r| r.get(0))
        .optional()?;
    let Some(event_id) = event_id else { return Ok(None) };
    let in_log = log_deliveries(c, scope, &Listing::Event(event_id), i64::MAX, u32::MAX)?;
    Ok(in_log.into_iter().map(|(_, d)| d).find(|d| d.id == id))
}

/// Which deliveries a list is of ([`DeliveriesOf`], owned).
enum Listing {
    Subscription(String),
    Event(String),
}

impl Listing {
    fn of(of: DeliveriesOf<'_>) -> Self {
        match of {
            DeliveriesOf::Subscription(id) => Listing::Subscription(id.to_owned()),
            DeliveriesOf::Event(id) => Listing::Event(id.to_owned()),
        }
    }

    fn key(&self) -> &str {
        match self {
            Listing::Subscription(id) | Listing::Event(id) => id,
        }
    }

    fn column(&self) -> &'static str {
        match self {
            Listing::Subscription(_) => "subscription_id",
            Listing::Event(_) => "event_id",
        }
    }
}

/// Stops writing a subscription's deliveries at publish: from the log's end on, they wait
/// in the event log until [`read_log`] writes them. False if it is gone, inactive or behind.
fn fall_behind(c: &Connection, subscription_id: &str) -> Result<bool> {
    let changed = c
        .prepare_cached(
            "UPDATE subscriptions SET cursor_seq = (SELECT COALESCE(MAX(seq), 0) FROM events) \
             WHERE id = ?1 AND active = 1 AND cursor_seq IS NULL",
        )?
        .execute([subscription_id])?;
    Ok(changed > 0)
}

/// Writes the deliveries of a subscription that fell behind for the next at
/// most `limit` matching events of the log past its cursor, and moves the cursor over them.
/// One writer commits events in `seq` order, so nothing below the log's end can commit
/// later. Once the log is read to its end, publishes write the subscription's deliveries
/// again. Returns the due deliveries it wrote, bodies included, and whether it is still behind.
fn read_log(c: &Connection, subscription_id: &str, limit: u32) -> Result<LaneBatch> {
    let events = c
        .prepare_cached(&READ_LOG)?
        .query_map(params![subscription_id, limit], |r| {
            let head = (r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?);
            let scope = Scope { tenant_id: r.get(3)?, mode: mode_of(&r.get::<_, String>(4)?) };
            let (created_ms, lean) = (r.get::<_, i64>(5)?, r.get::<_, bool>(6)?);
            let target = Target {
                seq: r.get(7)?,
                id: subscription_id.to_owned(),
                include_payload: r.get(8)?,
                order_key: r.get(9)?,
            };
            Ok((head, scope, created_ms, lean, target, r.get::<_, String>(10)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let behind = events.len() as u32 >= limit;
    let mut last = None;
    let mut deliveries = Vec::with_capacity(events.len());
    for ((seq, id, event_type), scope, created_ms, lean, target, body) in events {
        let head = EventHead { id: &id, event_type: &event_type, scope: &scope, created_ms, lean };
        let written = insert_delivery(c, &head, target)?;
        deliveries.extend(due_from_log(written, id, body));
        last = Some(seq);
    }
    c.prepare_cached("UPDATE subscriptions SET cursor_seq = ?1 WHERE id = ?2 AND cursor_seq IS NOT NULL")?
        .execute(params![last.filter(|_| behind), subscription_id])?;
    Ok(LaneBatch { deliveries, next_due_ms: None, behind })
}

/// The next events of a lane's log, each with the subscription's columns and the body it sends.
static READ_LOG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.seq, e.id, e.type, e.tenant_id, e.mode, e.created_ms, e.lean_body IS NOT NULL, \
         s.seq, s.include_payload, {}, {} FROM subscriptions s JOIN events e ON {TAKES_FROM_LOG} \
         WHERE s.id = ?1 ORDER BY e.seq LIMIT ?2",
        order_key_of("e.order_key"),
        sent_body("NOT s.include_payload")
    )
});

/// A lane's due rows, each with the body it sends, leaving out those the lane holds.
static READ_LANE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT d.seq, d.id, d.event_id, d.attempts, d.order_key, {} \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.subscription_id = ?1 AND d.status = 'PENDING' AND d.next_attempt_ms <= ?2 \
         AND d.seq NOT IN (SELECT value FROM json_each(?3)) \
         ORDER BY d.next_attempt_ms, d.seq LIMIT ?4",
        sent_body("d.lean")
    )
});

/// The order key a subscription's delivery waits behind: the FIFO key for a FIFO
/// subscription `s`, else the event's (`event_key`, an SQL expression).
fn order_key_of(event_key: &str) -> String {
    format!("CASE WHEN s.fifo THEN '{FIFO_KEY}' ELSE {event_key} END")
}

/// Takes `e`'s idempotency key (if it has one) for it; or, when the key names an event made
/// within the window, returns that event instead. Keys older than the window are taken over.
fn take_idempotency_key(c: &Connection, e: &NewEvent) -> Result<Option<Published>> {
    let Some(k) = &e.idempotency else {
        return Ok(None);
    };
    let (tenant, mode) = (e.scope.tenant_id.as_str(), e.scope.mode.as_str());
    let taken = c
        .prepare_cached(
            "INSERT INTO idempotency_keys (tenant_id, mode, key, fingerprint, event_id, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, mode, key) DO UPDATE SET \
             fingerprint = excluded.fingerprint, event_id = excluded.event_id, created_ms = excluded.created_ms \
             WHERE idempotency_keys.created_ms <= ?7",
        )?
        .execute(params![
            tenant,
            mode,
            k.key,
            k.fingerprint,
            e.id,
            e.created_ms,
            e.created_ms - IDEMPOTENCY_WINDOW_MS
        ])?;
    if taken > 0 {
        return Ok(None);
    }
    let (event_id, fingerprint) = c
        .prepare_cached(
            "SELECT event_id, fingerprint FROM idempotency_keys WHERE tenant_id = ?1 AND mode = ?2 AND key = ?3",
        )?
        .query_row(params![tenant, mode, k.key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Some(Published::Replayed { event_id, fingerprint }))
}

/// Runs a statement kept prepared, since these run once per write.
fn run_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([]))?;
    Ok(())
}

// ---- row mapping ---------------------------------------------------------------------

const SUBSCRIPTION_COLUMNS: &str = "seq, id, tenant_id, mode, name, url, event_types, active, secret, \
    previous_secret, previous_secret_until_ms, include_payload, disabled_reason, failing_since_ms, \
    created_ms, updated_ms, fifo";

fn subscription_row(row: &Row) -> rusqlite::Result<(i64, Subscription)> {
    Ok((
        row.get(0)?,
        Subscription {
            id: row.get(1)?,
            scope: Scope { tenant_id: row.get(2)?, mode: mode_of(&row.get::<_, String>(3)?) },
            name: row.get(4)?,
            url: row.get(5)?,
            event_types: types_from_column(&row.get::<_, String>(6)?),
            active: row.get(7)?,
            secret: row.get(8)?,
            previous_secret: row.get(9)?,
            previous_secret_until_ms: row.get(10)?,
            include_payload: row.get(11)?,
            disabled_reason: row.get(12)?,
            failing_since_ms: row.get(13)?,
            created_ms: row.get(14)?,
            updated_ms: row.get(15)?,
            ordering: if row.get(16)? { Ordering::Fifo } else { Ordering::Concurrent },
        },
    ))
}

const DELIVERY_COLUMNS: &str = "seq, id, event_id, event_type, subscription_id, tenant_id, mode, status, \
    attempts, next_attempt_ms, lean, created_ms, updated_ms, last_status_code, last_error";

fn delivery_row(row: &Row) -> rusqlite::Result<(i64, Delivery)> {
    Ok((
        row.get(0)?,
        Delivery {
            id: row.get(1)?,
            event_id: row.get(2)?,
            event_type: row.get(3)?,
            subscription_id: row.get(4)?,
            scope: Scope { tenant_id: row.get(5)?, mode: mode_of(&row.get::<_, String>(6)?) },
            status: DeliveryStatus::parse(&row.get::<_, String>(7)?),
            attempts: row.get(8)?,
            next_attempt_ms: row.get(9)?,
            lean: row.get(10)?,
            created_ms: row.get(11)?,
            updated_ms: row.get(12)?,
            last_status_code: row.get(13)?,
            last_error: row.get(14)?,
        },
    ))
}

fn event_row(row: &Row) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get(0)?,
        id: row.get(1)?,
        event_type: row.get(2)?,
        created_ms: row.get(3)?,
        body: row.get(4)?,
    })
}

/// Ends every open delivery of a subscription (disabled: FAILED; deleted: CANCELLED). Those
/// still in the log are written first, ended, so that `recover` finds them.
fn fail_pending(conn: &Connection, subscription_id: &str, status: DeliveryStatus, why: &str) -> Result<()> {
    while read_log(conn, subscription_id, 10_000)?.behind {}
    conn.prepare_cached(&format!(
        "UPDATE deliveries SET status = ?1, next_attempt_ms = NULL, last_error = ?2, updated_ms = ?3 \
         WHERE subscription_id = ?4 AND {OPEN_DELIVERY}"
    ))?
    .execute(params![status.as_str(), why, now(), subscription_id])?;
    Ok(())
}

/// Makes the next parked delivery of an order key due, unless one of the key is due already.
fn unpark(conn: &Connection, subscription_id: &str, order_key: &str, now_ms: i64) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET next_attempt_ms = ?3 WHERE seq = (SELECT seq FROM deliveries \
             WHERE subscription_id = ?1 AND order_key = ?2 AND status = 'PENDING' ORDER BY seq LIMIT 1) \
             AND next_attempt_ms IS NULL",
        )?
        .execute(params![subscription_id, order_key, now_ms])?;
    Ok(changed > 0)
}

/// A delivery's order key, read on its own: with `UPDATE … RETURNING` SQLite opens and drops
/// a temporary B-tree (its own pager and page cache) for the returned row at every outcome,
/// 10,000 a second in single-endpoint, on the writer that every other stage waits for.
fn order_key(c: &Connection, delivery_id: &str) -> Result<Option<String>> {
    Ok(c.prepare_cached("SELECT order_key FROM deliveries WHERE id = ?1")?
        .query_row([delivery_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// The outcomes one write records: a few milliseconds of the writer, so that a publish waits
/// behind at most one such write (see [`BATCH_BUDGET`]). A batch's writes still commit
/// together unless a publish waits.
const OUTCOME_PART: usize = 128;

/// Records attempts and their deliveries' transitions (only from PENDING). Running it again
/// changes nothing: the attempt is kept once, and a delivery that left PENDING stays.
fn record_outcomes(c: &Connection, outcomes: &[Outcome]) -> Result<OutcomeEffects> {
    let mut attempt = c.prepare_cached(
        "INSERT OR IGNORE INTO attempts (id, delivery_id, attempt, attempted_ms, status_code, latency_ms, response_body, error) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
    )?;
    let mut delivery = c.prepare_cached(&format!(
        "UPDATE deliveries SET status = ?1, attempts = MAX(attempts, ?2), next_attempt_ms = ?3, updated_ms = ?4, \
         last_status_code = ?5, last_error = ?6 WHERE id = ?7 AND {OPEN_DELIVERY}"
    ))?;
    let mut effects = OutcomeEffects::default();
    for o in outcomes {
        let a = &o.attempt;
        attempt.execute(params![
            a.id,
            a.delivery_id,
            a.attempt,
            a.attempted_ms,
            a.status_code,
            a.latency_ms as i64,
            a.response_body,
            a.error
        ])?;
        let changed = delivery.execute(params![
            o.status.as_str(),
            a.attempt,
            o.next_attempt_ms,
            a.attempted_ms,
            a.status_code,
            a.error,
            a.delivery_id
        ])?;
        if changed > 0
            && o.status != DeliveryStatus::Pending
            && let Some(key) = order_key(c, &a.delivery_id)?
            && unpark(c, &o.subscription_id, &key, a.attempted_ms)?
        {
            effects.unparked.push(o.subscription_id.clone());
        }
        match &o.subscription_effect {
            SubscriptionEffect::None => {}
            SubscriptionEffect::Recovered => {
                c.prepare_cached("UPDATE subscriptions SET failing_since_ms = NULL WHERE id = ?1")?
                    .execute([&o.subscription_id])?;
            }
            SubscriptionEffect::FailingSince(since) => {
                c.prepare_cached(
                    "UPDATE subscriptions SET failing_since_ms = COALESCE(failing_since_ms, ?1) WHERE id = ?2",
                )?
                .execute(params![since, o.subscription_id])?;
            }
            SubscriptionEffect::Disable { reason } => {
                let changed = c
                    .prepare_cached(
                        "UPDATE subscriptions SET active = 0, disabled_reason = ?1, updated_ms = ?2 WHERE id = ?3 AND active = 1",
                    )?
                    .execute(params![reason, now(), o.subscription_id])?;
                if changed > 0 {
                    fail_pending(c, &o.subscription_id, DeliveryStatus::Failed, reason)?;
                    effects.disabled.push(o.subscription_id.clone());
                }
            }
        }
    }
    Ok(effects)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tenant_key(&self, tenant_id: &str, mode: Mode) -> Result<NewKey> {
        let tenant_id = tenant_id.to_owned();
        self.write(move |c| {
            let (key, hash) = new_key_pair();
            c.execute("INSERT OR IGNORE INTO tenants (id, created_ms) VALUES (?1, ?2)", params![tenant_id, now()])?;
            c.execute(
                "INSERT INTO api_keys (api_key, secret_sha256, tenant_id, mode, operator, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![key.api_key, hash.as_slice(), tenant_id, mode.as_str(), now()],
            )?;
            Ok(key)
        })
        .await
    }

    async fn create_operator_key(&self) -> Result<NewKey> {
        self.write(move |c| {
            let (key, hash) = new_key_pair();
            c.execute(
                "INSERT INTO api_keys (api_key, secret_sha256, operator, created_ms) VALUES (?1, ?2, 1, ?3)",
                params![key.api_key, hash.as_slice(), now()],
            )?;
            Ok(key)
        })
        .await
    }

    async fn find_key(&self, api_key: &str) -> Result<Option<KeyRecord>> {
        let api_key = api_key.to_owned();
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT secret_sha256, tenant_id, mode, operator FROM api_keys WHERE api_key = ?1")?
                .query_row([api_key], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })
                .optional()?;
            let Some((hash, tenant, mode, operator)) = row else { return Ok(None) };
            let secret_sha256: [u8; 32] = hash.try_into().map_err(|_| StoreError::Invalid("bad key hash".into()))?;
            let principal = match (operator, tenant, mode) {
                (true, _, _) => Principal::Operator,
                (false, Some(tenant_id), Some(mode)) => Principal::Tenant(Scope { tenant_id, mode: mode_of(&mode) }),
                _ => return Ok(None),
            };
            Ok(Some(KeyRecord { secret_sha256, principal }))
        })
        .await
    }

    async fn backlog(&self) -> Result<Backlog> {
        self.read(|c| {
            // Rows, and the deliveries of lanes that fell behind, still in the log.
            Ok(c.query_row(
                &format!(
                    "SELECT SUM(n), MIN(oldest) FROM ( \
                     SELECT COUNT(*) AS n, MIN(created_ms) AS oldest FROM deliveries WHERE status = 'PENDING' \
                     UNION ALL SELECT COUNT(*), MIN(e.created_ms) FROM subscriptions s JOIN events e \
                     ON {TAKES_FROM_LOG} WHERE s.cursor_seq IS NOT NULL)"
                ),
                [],
                |r| {
                    Ok(Backlog {
                        pending: r.get::<_, Option<i64>>(0)?.unwrap_or(0) as u64,
                        oldest_created_ms: r.get(1)?,
                    })
                },
            )?)
        })
        .await
    }

    async fn delivery_counts(&self, scope: &Scope, subscription_id: &str, since_ms: i64) -> Result<Vec<MinuteCount>> {
        let (scope, id) = (scope.clone(), subscription_id.to_owned());
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT (created_ms / 60000) * 60000, status, COUNT(*) FROM deliveries WHERE subscription_id = ?1 AND tenant_id = ?2 AND mode = ?3 AND created_ms >= ?4 GROUP BY 1, 2",
            )?;
            let rows = statement.query_map(params![id, scope.tenant_id, scope.mode.as_str(), since_ms], |r| {
                Ok(MinuteCount {
                    minute_ms: r.get(0)?,
                    status: DeliveryStatus::parse(&r.get::<_, String>(1)?),
                    count: r.get::<_, i64>(2)? as u64,
                })
            })?;
            let mut counts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let in_log = c
                .prepare_cached(&format!(
                    "SELECT (e.created_ms / 60000) * 60000, COUNT(*) FROM subscriptions s JOIN events e \
                     ON {TAKES_FROM_LOG} WHERE s.id = ?1 AND s.tenant_id = ?2 AND s.mode = ?3 \
                     AND s.cursor_seq IS NOT NULL AND e.created_ms >= ?4 GROUP BY 1"
                ))?
                .query_map(params![id, scope.tenant_id, scope.mode.as_str(), since_ms], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            add_log_counts(&mut counts, in_log);
            Ok(counts)
        })
        .await
    }

    async fn has_tenants(&self) -> Result<bool> {
        self.read(|c| Ok(c.query_row("SELECT EXISTS(SELECT 1 FROM tenants)", [], |r| r.get(0))?)).await
    }

    async fn tenant_exists(&self, tenant_id: &str) -> Result<bool> {
        let tenant_id = tenant_id.to_owned();
        self.read(move |c| {
            Ok(c.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)", [tenant_id], |r| r.get(0))?)
        })
        .await
    }

    async fn insert_subscription(&self, s: Subscription) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO subscriptions (id, tenant_id, mode, name, url, event_types, active, secret, \
                 previous_secret, previous_secret_until_ms, include_payload, disabled_reason, failing_since_ms, \
                 created_ms, updated_ms, fifo) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
                params![
                    s.id,
                    s.scope.tenant_id,
                    s.scope.mode.as_str(),
                    s.name,
                    s.url,
                    types_to_column(&s.event_types),
                    s.active,
                    s.secret,
                    s.previous_secret,
                    s.previous_secret_until_ms,
                    s.include_payload,
                    s.disabled_reason,
                    s.failing_since_ms,
                    s.created_ms,
                    s.updated_ms,
                    s.ordering == Ordering::Fifo
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_subscription(&self, scope: &Scope, id: &str) -> Result<Option<Subscription>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| {
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1 AND tenant_id = ?2 AND mode = ?3"
            );
            Ok(c.prepare_cached(&sql)?
                .query_row(params![id, scope.tenant_id, scope.mode.as_str()], subscription_row)
                .optional()?
                .map(|(_, s)| s))
        })
        .await
    }

    async fn subscriptions_changed_since(&self, since_ms: i64) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached("SELECT id FROM subscriptions WHERE updated_ms >= ?1")?;
            let ids = statement.query_map([since_ms], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            Ok(ids)
        })
        .await
    }

    async fn subscription_by_id(&self, id: &str) -> Result<Option<Subscription>> {
        let id = id.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1");
            Ok(c.prepare_cached(&sql)?.query_row([id], subscription_row).optional()?.map(|(_, s)| s))
        })
        .await
    }

    async fn list_subscriptions(&self, scope: &Scope, page: &PageRequest) -> Result<Page<Subscription>> {
        let (scope, page) = (scope.clone(), page.clone());
        self.read(move |c| {
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant_id = ?1 AND mode = ?2 \
                 AND seq < ?3 ORDER BY seq DESC LIMIT ?4"
            );
            let rows = c
                .prepare_cached(&sql)?
                .query_map(
                    params![scope.tenant_id, scope.mode.as_str(), page.before_seq.unwrap_or(i64::MAX), page.size + 1],
                    subscription_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, page.size))
        })
        .await
    }

    async fn patch_subscription(
        &self,
        scope: &Scope,
        id: &str,
        patch: &SubscriptionPatch,
        now_ms: i64,
    ) -> Result<Option<Subscription>> {
        let (p, scope, id) = (patch.clone(), scope.clone(), id.to_owned());
        self.write(move |c| {
            let sql = format!(
                "UPDATE subscriptions SET name = COALESCE(?1, name), url = COALESCE(?2, url), \
                 event_types = COALESCE(?3, event_types), \
                 previous_secret = CASE WHEN ?4 IS NULL THEN previous_secret ELSE secret END, \
                 previous_secret_until_ms = COALESCE(?4, previous_secret_until_ms), \
                 secret = COALESCE(?5, secret), include_payload = COALESCE(?6, include_payload), \
                 fifo = COALESCE(?7, fifo), \
                 disabled_reason = CASE WHEN ?8 AND NOT active THEN NULL ELSE disabled_reason END, \
                 failing_since_ms = CASE WHEN ?8 AND NOT active THEN NULL ELSE failing_since_ms END, \
                 active = COALESCE(?8, active), updated_ms = ?9 \
                 WHERE id = ?10 AND tenant_id = ?11 AND mode = ?12 RETURNING {SUBSCRIPTION_COLUMNS}"
            );
            let updated = c
                .query_row(
                    &sql,
                    params![
                        p.name,
                        p.url,
                        p.event_types.as_deref().map(types_to_column),
                        p.previous_secret_until_ms,
                        p.secret,
                        p.include_payload,
                        p.ordering.map(|o| o == Ordering::Fifo),
                        p.active,
                        now_ms,
                        id,
                        scope.tenant_id,
                        scope.mode.as_str()
                    ],
                    subscription_row,
                )
                .optional()?
                .map(|(_, sub)| sub);
            if let Some(sub) = &updated
                && !sub.active
            {
                fail_pending(c, &sub.id, DeliveryStatus::Failed, "subscription inactive")?;
            }
            Ok(updated)
        })
        .await
    }

    async fn delete_subscription(&self, scope: &Scope, id: &str) -> Result<bool> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.write(move |c| {
            let deleted = c.execute(
                "DELETE FROM subscriptions WHERE id = ?1 AND tenant_id = ?2 AND mode = ?3",
                params![id, scope.tenant_id, scope.mode.as_str()],
            )?;
            if deleted > 0 {
                fail_pending(c, &id, DeliveryStatus::Cancelled, "subscription deleted")?;
                c.execute("DELETE FROM lanes WHERE subscription_id = ?1", [&id])?;
            }
            Ok(deleted > 0)
        })
        .await
    }

    async fn publish(&self, e: NewEvent) -> Result<Published> {
        let written = self.write(move |c| {
            if let Some(replayed) = take_idempotency_key(c, &e)? {
                return Ok((replayed, 0, 0, 0));
            }
            let (tenant, mode) = (e.scope.tenant_id.as_str(), e.scope.mode.as_str());
            c.prepare_cached(
                "INSERT INTO events (id, tenant_id, mode, type, created_ms, body, lean_body, order_key, \
                 only_subscription) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            )?
            .execute(params![
                e.id,
                tenant,
                mode,
                e.event_type,
                e.created_ms,
                e.body,
                e.lean_body,
                e.order_key,
                e.only_subscription
            ])?;
            let event_seq = c.last_insert_rowid();
            let (mut now, later): (Vec<_>, Vec<_>) = targets(c, &e)?.into_iter().partition(|t| t.order_key.is_some());
            let spreading = later.len() > SPREAD_AFTER;
            let (mut parts, spread) = (0, if spreading { later.len() } else { 0 });
            if spreading {
                for (part, targets) in later.chunks(SPREAD_PART).enumerate() {
                    let seqs: Vec<i64> = targets.iter().map(|t| t.seq).collect();
                    let seqs = serde_json::to_string(&seqs).map_err(|e| StoreError::Invalid(e.to_string()))?;
                    c.prepare_cached("INSERT INTO spreads (event_seq, part, subscriptions) VALUES (?1, ?2, ?3)")?
                        .execute(params![event_seq, part, seqs])?;
                    parts += 1;
                }
            } else {
                now.extend(later);
            }
            let mut created = Vec::new();
            for target in now {
                created.push(insert_delivery(c, &EventHead::of(&e), target)?);
            }
            Ok((Published::Created(created), event_seq, parts, spread))
        });
        let (published, event_seq, parts, later) = written.await?;
        let deliveries = match published {
            Published::Created(deliveries) if parts > 0 => deliveries,
            other => return Ok(other),
        };
        let mut answers = Vec::new();
        for part in 0..parts {
            answers.push(self.queue(move |c| spread(c, event_seq, part), false).await?);
        }
        let (parts, rest) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for answer in answers {
                let part = answer.await.map_err(|_| StoreError::Closed).and_then(|r| r);
                let failed = part.is_err();
                if parts.send(part).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Published::Spreading { deliveries, later, rest })
    }

    async fn write_left_over_spreads(&self, now_ms: i64) -> Result<Vec<String>> {
        let before = now_ms - SPREAD_LEFT_AFTER_MS;
        // A read first: the poll that asks runs every few seconds, and there is rarely any.
        let any: bool = self
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM spreads p JOIN events e ON e.seq = p.event_seq WHERE e.created_ms < ?1)",
                )?
                .query_row([before], |r| r.get(0))?)
            })
            .await?;
        if !any {
            return Ok(Vec::new());
        }
        let written = self.write_bulk(move |c| spread_left_over(c, before)).await?;
        let subscriptions: std::collections::BTreeSet<String> =
            written.into_iter().map(|d| d.subscription_id).collect();
        Ok(subscriptions.into_iter().collect())
    }

    async fn forget_idempotency_keys(&self, before_ms: i64) -> Result<u64> {
        self.write_bulk(move |c| {
            Ok(c.execute("DELETE FROM idempotency_keys WHERE created_ms < ?1", [before_ms])? as u64)
        })
        .await
    }

    async fn get_event(&self, scope: &Scope, id: &str) -> Result<Option<StoredEvent>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT seq, id, type, created_ms, body FROM events WHERE id = ?1 AND tenant_id = ?2 AND mode = ?3",
            )?
            .query_row(params![id, scope.tenant_id, scope.mode.as_str()], event_row)
            .optional()?)
        })
        .await
    }

    async fn list_events(&self, scope: &Scope, filter: &EventFilter, page: &PageRequest) -> Result<Page<StoredEvent>> {
        let (scope, filter, page) = (scope.clone(), filter.clone(), page.clone());
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT seq, id, type, created_ms, body FROM events WHERE tenant_id = ?1 AND mode = ?2 \
                     AND seq < ?3 AND (?4 IS NULL OR type = ?4) AND created_ms >= ?5 AND created_ms < ?6 \
                     ORDER BY seq DESC LIMIT ?7",
                )?
                .query_map(
                    params![
                        scope.tenant_id,
                        scope.mode.as_str(),
                        page.before_seq.unwrap_or(i64::MAX),
                        filter.event_type,
                        filter.from_ms.unwrap_or(i64::MIN),
                        filter.to_ms.unwrap_or(i64::MAX),
                        page.size + 1
                    ],
                    |r| event_row(r).map(|e| (e.seq, e)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, page.size))
        })
        .await
    }

    async fn get_delivery(&self, scope: &Scope, id: &str) -> Result<Option<Delivery>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| delivery_by_id(c, &scope, &id)).await
    }

    async fn list_deliveries(&self, scope: &Scope, of: DeliveriesOf<'_>, page: &PageRequest) -> Result<Page<Delivery>> {
        let (scope, page, of) = (scope.clone(), page.clone(), Listing::of(of));
        self.read(move |c| {
            let mut listed = DeliveryPage::new(&page);
            if let Some((below, limit)) = listed.log() {
                listed.add_log(log_deliveries(c, &scope, &of, below, limit)?);
            }
            if let Some((before, wanted)) = listed.rows() {
                let sql = format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {} = ?1 AND tenant_id = ?2 AND mode = ?3 \
                     AND seq < ?4 ORDER BY seq DESC LIMIT ?5",
                    of.column()
                );
                let rows = c
                    .prepare_cached(&sql)?
                    .query_map(params![of.key(), scope.tenant_id, scope.mode.as_str(), before, wanted], delivery_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                listed.add_rows(rows);
            }
            Ok(listed.finish())
        })
        .await
    }

    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let delivery_id = delivery_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, delivery_id, attempt, attempted_ms, status_code, latency_ms, response_body, error \
                 FROM attempts WHERE delivery_id = ?1 ORDER BY attempted_ms, attempt, id",
            )?
            .query_map([delivery_id], |r| {
                Ok(Attempt {
                    id: r.get(0)?,
                    delivery_id: r.get(1)?,
                    attempt: r.get(2)?,
                    attempted_ms: r.get(3)?,
                    status_code: r.get(4)?,
                    latency_ms: r.get(5)?,
                    response_body: r.get(6)?,
                    error: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn record_outcomes(&self, outcomes: Arc<[Outcome]>) -> Result<OutcomeEffects> {
        let mut answers = Vec::new();
        for start in (0..outcomes.len()).step_by(OUTCOME_PART) {
            let (outcomes, end) = (outcomes.clone(), (start + OUTCOME_PART).min(outcomes.len()));
            answers.push(self.queue(move |c| record_outcomes(c, &outcomes[start..end]), false).await?);
        }
        let mut effects = OutcomeEffects::default();
        for answer in answers {
            let part = answer.await.map_err(|_| StoreError::Closed)??;
            effects.disabled.extend(part.disabled);
            effects.unparked.extend(part.unparked);
        }
        Ok(effects)
    }

    async fn read_lane(&self, id: &str, now_ms: i64, held: &[i64], limit: u32) -> Result<LaneBatch> {
        let id = id.to_owned();
        let held = serde_json::to_string(held).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.read(move |c| {
            let deliveries = c
                .prepare_cached(&READ_LANE)?
                .query_map(params![id, now_ms, held, limit], |r| {
                    Ok(LaneDelivery {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        event_id: r.get(2)?,
                        attempts: r.get(3)?,
                        order_key: r.get(4)?,
                        body: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_due_ms = c
                .prepare_cached(
                    "SELECT MIN(next_attempt_ms) FROM deliveries \
                     WHERE subscription_id = ?1 AND status = 'PENDING' AND next_attempt_ms > ?2",
                )?
                .query_row(params![id, now_ms], |r| r.get(0))?;
            let behind = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE id = ?1 AND cursor_seq IS NOT NULL)")?
                .query_row([&id], |r| r.get(0))?;
            Ok(LaneBatch { deliveries, next_due_ms, behind })
        })
        .await
    }

    async fn read_log(&self, subscription_id: &str, limit: u32) -> Result<LaneBatch> {
        let id = subscription_id.to_owned();
        self.write_bulk(move |c| read_log(c, &id, limit)).await
    }

    async fn fall_behind(&self, subscription_id: &str) -> Result<bool> {
        let id = subscription_id.to_owned();
        self.write_bulk(move |c| fall_behind(c, &id)).await
    }

    async fn lanes_with_work(&self, node: &str, now_ms: i64, limit: u32) -> Result<Vec<String>> {
        let node = node.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT s.id FROM subscriptions s LEFT JOIN lanes l ON l.subscription_id = s.id \
                 WHERE s.active = 1 AND (l.owner IS NULL OR l.owner = ?1 OR l.until_ms <= ?2) \
                 AND (s.cursor_seq IS NOT NULL OR EXISTS (SELECT 1 FROM deliveries d WHERE d.subscription_id = s.id \
                 AND d.status = 'PENDING' AND d.next_attempt_ms <= ?2)) LIMIT ?3",
            )?
            .query_map(params![node, now_ms, limit], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn claim_lanes(&self, lease: &Lease, subscription_ids: &[String], now_ms: i64) -> Result<Vec<String>> {
        let (lease, ids) = (lease.clone(), subscription_ids.to_vec());
        self.write(move |c| {
            let mut claim = c.prepare_cached(
                "INSERT INTO lanes (subscription_id, owner, until_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (subscription_id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
                 WHERE lanes.owner = excluded.owner OR lanes.until_ms <= ?4",
            )?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in &ids {
                if claim.execute(params![id, lease.owner, lease.until_ms, now_ms])? > 0 {
                    claimed.push(id.clone());
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn renew_lanes(&self, lease: &Lease, subscription_ids: &[String]) -> Result<Vec<String>> {
        let (lease, ids) = (lease.clone(), subscription_ids.to_vec());
        self.write(move |c| {
            let mut renew =
                c.prepare_cached("UPDATE lanes SET until_ms = ?1 WHERE subscription_id = ?2 AND owner = ?3")?;
            let mut held = Vec::with_capacity(ids.len());
            for id in &ids {
                if renew.execute(params![lease.until_ms, id, lease.owner])? > 0 {
                    held.push(id.clone());
                }
            }
            Ok(held)
        })
        .await
    }

    async fn release_lanes(&self, owner: &str, subscription_ids: &[String], until_ms: i64) -> Result<()> {
        let (owner, ids) = (owner.to_owned(), subscription_ids.to_vec());
        self.write(move |c| {
            let mut release =
                c.prepare_cached("DELETE FROM lanes WHERE subscription_id = ?1 AND owner = ?2 AND until_ms <= ?3")?;
            for id in &ids {
                release.execute(params![id, owner, until_ms])?;
            }
            Ok(())
        })
        .await
    }

    async fn release_all_lanes(&self) -> Result<()> {
        self.write(|c| Ok(c.execute("DELETE FROM lanes", []).map(|_| ())?)).await
    }

    async fn blocked_head(&self, scope: &Scope, subscription_id: &str) -> Result<Option<Delivery>> {
        let (scope, id) = (scope.clone(), subscription_id.to_owned());
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE subscription_id = ?1 AND tenant_id = ?2 AND mode = ?3 \
                 AND status = 'PENDING' AND order_key = '{FIFO_KEY}' AND next_attempt_ms IS NOT NULL AND attempts > 0 \
                 ORDER BY seq LIMIT 1"
            );
            Ok(c.prepare_cached(&sql)?
                .query_row(params![id, scope.tenant_id, scope.mode.as_str()], delivery_row)
                .optional()?
                .map(|(_, d)| d))
        })
        .await
    }

    fn single_node(&self) -> bool {
        true
    }

    async fn count_request(&self, client: &str, window_s: i64) -> Result<u32> {
        let mut requests = self.requests.lock().map_err(|_| StoreError::Closed)?;
        let (window, counts) = &mut *requests;
        if *window != window_s {
            *window = window_s;
            counts.clear();
        }
        let count = counts.entry(client.to_owned()).or_default();
        *count += 1;
        Ok(*count)
    }

    async fn listen(&self, _node: &str) -> Result<mpsc::UnboundedReceiver<Signal>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners.lock().map_err(|_| StoreError::Closed)?.push(tx);
        Ok(rx)
    }

    async fn notify(&self, signal: Signal) -> Result<()> {
        let mut listeners = self.listeners.lock().map_err(|_| StoreError::Closed)?;
        listeners.retain(|l| l.send(signal.clone()).is_ok());
        Ok(())
    }

    async fn put_documents(&self, documents: Vec<Document>) -> Result<()> {
        self.write(move |c| {
            let mut put = c.prepare_cached(
                "INSERT INTO documents (kind, id, tenant_id, mode, user_id, source_id, created_ms, body) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT (kind, id) DO UPDATE SET \
                 user_id = excluded.user_id, source_id = excluded.source_id, body = excluded.body",
            )?;
            for d in &documents {
                put.execute(params![
                    d.kind,
                    d.id,
                    d.scope.tenant_id,
                    d.scope.mode.as_str(),
                    d.user_id,
                    d.source_id,
                    d.created_ms,
                    d.body.to_string()
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn get_document(&self, scope: &Scope, kind: &str, id: &str) -> Result<Option<Document>> {
        let (scope, kind, id) = (scope.clone(), kind.to_owned(), id.to_owned());
        self.read(move |c| {
            let sql = format!(
                "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE kind = ?1 AND id = ?2 AND tenant_id = ?3 AND mode = ?4"
            );
            Ok(c.prepare_cached(&sql)?
                .query_row(params![kind, id, scope.tenant_id, scope.mode.as_str()], document_row)
                .optional()?
                .map(|(_, d)| d))
        })
        .await
    }

    async fn documents_of_kind(&self, kind: &str, until_ms: i64, limit: u32) -> Result<Vec<Document>> {
        let kind = kind.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE kind = ?1 AND created_ms <= ?2 ORDER BY seq LIMIT ?3"
            );
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![kind, until_ms, limit], document_row)?;
            Ok(rows.map(|r| r.map(|(_, d)| d)).collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn document_by_id(&self, kind: &str, id: &str) -> Result<Option<Document>> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.read(move |c| {
            let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE kind = ?1 AND id = ?2");
            Ok(c.prepare_cached(&sql)?.query_row(params![kind, id], document_row).optional()?.map(|(_, d)| d))
        })
        .await
    }

    async fn list_documents(
        &self,
        scope: &Scope,
        kind: &str,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<Document>> {
        let (scope, kind, filter, page) = (scope.clone(), kind.to_owned(), filter.clone(), page.clone());
        self.read(move |c| {
            let sql = format!(
                "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant_id = ?1 AND mode = ?2 AND kind = ?3 AND seq < ?4 \
                 AND (?5 IS NULL OR user_id = ?5) AND (?6 IS NULL OR source_id = ?6) AND created_ms >= ?7 \
                 AND created_ms < ?8 AND (?10 IS NULL OR json_extract(body, '$.type') = ?10) ORDER BY seq DESC LIMIT ?9"
            );
            let rows = c
                .prepare_cached(&sql)?
                .query_map(
                    params![
                        scope.tenant_id, scope.mode.as_str(), kind, page.before_seq.unwrap_or(i64::MAX), filter.user_id,
                        filter.source_id, filter.from_ms.unwrap_or(i64::MIN), filter.to_ms.unwrap_or(i64::MAX),
                        page.size + 1,
                        filter.body_type
                    ],
                    document_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(paginate(rows, page.size))
        })
        .await
    }

    async fn delete_documents_of_source(&self, scope: &Scope, kinds: &[&str], source_id: &str) -> Result<u64> {
        let (scope, source_id) = (scope.clone(), source_id.to_owned());
        let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
        self.write(move |c| {
            let mut delete = c.prepare_cached(
                "DELETE FROM documents WHERE tenant_id = ?1 AND mode = ?2 AND kind = ?3 AND source_id = ?4",
            )?;
            let mut deleted = 0;
            for kind in &kinds {
                deleted += delete.execute(params![scope.tenant_id, scope.mode.as_str(), kind, source_id])? as u64;
            }
            Ok(deleted)
        })
        .await
    }

    async fn retry_delivery(&self, scope: &Scope, id: &str, now_ms: i64) -> Result<Option<Delivery>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE deliveries SET status = 'PENDING', next_attempt_ms = ?1, updated_ms = ?1 WHERE id = ?2 AND tenant_id = ?3 AND mode = ?4 AND status != 'CANCELLED'",
                params![now_ms, id, scope.tenant_id, scope.mode.as_str()],
            )?;
            // One still in the log is pending already: its lane sends it as it reads the log.
            delivery_by_id(c, &scope, &id)
        })
        .await
    }

    async fn recover_deliveries(
        &self,
        scope: &Scope,
        subscription_id: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Delivery>> {
        let (scope, subscription_id) = (scope.clone(), subscription_id.to_owned());
        self.write(move |c| {
            let sql = format!(
                "UPDATE deliveries SET status = 'PENDING', next_attempt_ms = ?1, updated_ms = ?1 WHERE subscription_id = ?2 AND tenant_id = ?3 AND mode = ?4 AND status = 'FAILED' \
                 AND created_ms >= ?5 RETURNING {DELIVERY_COLUMNS}"
            );
            Ok(c.prepare_cached(&sql)?
                .query_map(params![now_ms, subscription_id, scope.tenant_id, scope.mode.as_str(), since_ms], delivery_row)?
                .map(|r| r.map(|(_, d)| d))
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

fn document_row(row: &Row) -> rusqlite::Result<(i64, Document)> {
    let body: String = row.get(8)?;
    Ok((
        row.get(0)?,
        Document {
            kind: row.get(1)?,
            id: row.get(2)?,
            scope: Scope { tenant_id: row.get(3)?, mode: mode_of(&row.get::<_, String>(4)?) },
            user_id: row.get(5)?,
            source_id: row.get(6)?,
            created_ms: row.get(7)?,
            body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        },
    ))
}

const DOCUMENT_COLUMNS: &str = "seq, kind, id, tenant_id, mode, user_id, source_id, created_ms, body";

#[cfg(test)]
mod writer_tests {
    use super::*;

    fn open_store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        (store, dir)
    }

    fn queued(urgent: &[bool]) -> (Queue, mpsc::Receiver<Job>) {
        let mut queue = Queue::default();
        for &urgent in urgent {
            let (reply, _) = oneshot::channel();
            queue.push(Box::new(PendingWrite { f: |_: &Connection| Ok(()), urgent, result: None, reply }));
        }
        (queue, mpsc::channel(1).1)
    }

    /// Takes writes from `plan` until it stops; whether each was urgent.
    fn take_all(plan: &mut BatchPlan, queue: &mut Queue, jobs: &mut mpsc::Receiver<Job>) -> Vec<bool> {
        let mut batch = Vec::new();
        while let Some(job) = plan.next(queue, jobs, &batch) {
            batch.push(job);
        }
        batch.iter().map(|job| job.urgent()).collect()
    }

    #[test]
    fn a_batch_takes_urgent_writes_first_and_everything_queued_within_its_budget() {
        let (mut queue, mut jobs) = queued(&[false, true, false, true]);
        let mut plan = BatchPlan::new(&queue);
        assert_eq!(take_all(&mut plan, &mut queue, &mut jobs), [true, true, false, false]);
    }

    #[test]
    fn a_batch_past_its_budget_commits_early_only_for_an_urgent_write() {
        let late = std::time::Instant::now() - BATCH_BUDGET * 2;
        let (mut queue, mut jobs) = queued(&[false, false, false]);
        let mut plan = BatchPlan { started: late, ..BatchPlan::new(&queue) };
        assert_eq!(take_all(&mut plan, &mut queue, &mut jobs).len(), 3, "background writes alone run on");
        let (mut queue, mut jobs) = queued(&[true, false, false]);
        let mut plan = BatchPlan { started: late, ..BatchPlan::new(&queue) };
        assert_eq!(take_all(&mut plan, &mut queue, &mut jobs), [true], "the urgent write is committed at once");
        let (mut queue, mut jobs) = queued(&[true, true, true, false]);
        let mut plan = BatchPlan { started: late, ..BatchPlan::new(&queue) };
        assert_eq!(
            take_all(&mut plan, &mut queue, &mut jobs),
            [true, true, true],
            "urgent writes are not cut from each other"
        );
    }

    /// A batch that began late (its thread descheduled past the budget) must still run its
    /// first write: an empty batch answered its writes as if the store had closed (a 503).
    #[test]
    fn a_batch_that_begins_past_its_budget_still_runs_its_first_write() {
        let (mut queue, _) = queued(&[false]);
        let (urgent, _) = queued(&[true]);
        let (send, mut jobs) = mpsc::channel(1);
        urgent.urgent.into_iter().for_each(|job| send.try_send(job).map_err(drop).expect("sent"));
        let mut plan = BatchPlan { started: std::time::Instant::now() - BATCH_BUDGET * 2, ..BatchPlan::new(&queue) };
        assert_eq!(take_all(&mut plan, &mut queue, &mut jobs), [false], "the first write runs");
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let (store, _dir) = open_store();
        let panicked = store
            .write(|c| -> Result<()> {
                c.execute("INSERT INTO tenants (id, created_ms) VALUES ('half', 1)", [])?;
                panic!("a bug in a write");
            })
            .await;
        assert!(panicked.is_err(), "its caller hears of it");
        store.create_tenant_key("after", Mode::Sandbox).await.expect("the writer still writes");
        assert!(store.tenant_exists("after").await.expect("read"));
        assert!(!store.tenant_exists("half").await.expect("read"), "the panicked write is rolled back");
    }

    /// A write for [`run_batch`], and where its answer arrives.
    fn job<F>(f: F) -> (Job, oneshot::Receiver<Result<()>>)
    where
        F: Fn(&Connection) -> Result<()> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        (Box::new(PendingWrite { f, urgent: true, result: None, reply }), answer)
    }

    fn insert_tenant(id: &'static str) -> impl Fn(&Connection) -> Result<()> + Send + 'static {
        move |c| Ok(c.execute("INSERT INTO tenants (id, created_ms) VALUES (?1, 1)", [id]).map(|_| ())?)
    }

    /// Runs `jobs` as one batch on the store's file and answers each.
    fn run_alone(dir: &Path, jobs: Vec<(Job, oneshot::Receiver<Result<()>>)>) -> (Result<()>, Vec<Result<()>>) {
        let mut conn = open(&dir.join("s.db")).expect("open");
        let (jobs, answers): (Vec<Job>, Vec<_>) = jobs.into_iter().unzip();
        let (mut jobs, mut batch) = (jobs.into_iter(), Vec::new());
        let committed = run_batch(&mut conn, &mut batch, |_| jobs.next());
        for job in batch {
            job.finish(committed.clone());
        }
        let answers = answers.into_iter().map(|mut a| a.try_recv().unwrap_or(Err(StoreError::Closed))).collect();
        (committed, answers)
    }

    #[test]
    fn a_kept_statement_is_not_prepared_again_when_its_bound_values_change() {
        let (_store, dir) = open_store();
        let conn = open(&dir.path().join("s.db")).expect("open");
        let mut statement = conn.prepare_cached("SELECT id FROM tenants LIMIT ?1").expect("prepare");
        for limit in 1..=5 {
            statement.query_map([limit], |r| r.get::<_, String>(0)).expect("query").for_each(drop);
        }
        assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// The WAL header's checkpoint sequence number, which goes up each time the WAL starts
    /// over (SQLite's file format, "WAL File Format"). Read from the file, so that nothing here
    /// checkpoints.
    fn wal_restarts(db: &Path) -> u32 {
        let mut header = [0u8; 16];
        let wal = std::fs::File::open(db.with_extension("db-wal")).expect("the WAL");
        std::os::unix::fs::FileExt::read_exact_at(&wal, &mut header, 0).expect("its header");
        u32::from_be_bytes([header[12], header[13], header[14], header[15]])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_the_writer_and_readers_never_stop() {
        let (store, dir) = open_store();
        let path = dir.path().join("s.db");
        store.write(|c| Ok(c.execute_batch("CREATE TABLE filler (b BLOB)")?)).await.expect("create");
        let before = wal_restarts(&path);
        let stop = Arc::new(AtomicBool::new(false));
        // Two readers with overlapping transactions, as the lanes' are under load.
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(move || {
                    let conn = open(&path).expect("open");
                    while !stop.load(atomic::Ordering::Relaxed) {
                        conn.execute_batch("BEGIN; SELECT count(*) FROM filler;").expect("read");
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        conn.execute_batch("COMMIT").expect("end read");
                    }
                })
            })
            .collect();
        // Four writers, so that the writer always has the next batch waiting, until the WAL
        // starts over or 30 s have passed (the first tries may find a reader of old frames and
        // give up; a fixed 120 MiB was written faster than the checkpoints came on a fast disk).
        let store = Arc::new(store);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (store, path, stop) = (store.clone(), path.clone(), stop.clone());
                tokio::spawn(async move {
                    while std::time::Instant::now() < deadline {
                        if stop.load(atomic::Ordering::Relaxed) {
                            break;
                        }
                        let insert =
                            |c: &Connection| Ok(c.execute("INSERT INTO filler VALUES (randomblob(65536))", [])?);
                        store.write(insert).await.expect("write");
                        if wal_restarts(&path) != before {
                            stop.store(true, atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
        let started_over = stop.swap(true, atomic::Ordering::Relaxed);
        readers.into_iter().for_each(|r| r.join().expect("reader"));
        assert!(started_over, "30 s of writes and the WAL never started over");
    }

    #[tokio::test]
    async fn a_failing_write_is_undone_alone_and_the_rest_of_its_batch_commits() {
        let (store, dir) = open_store();
        let failing = |c: &Connection| -> Result<()> {
            insert_tenant("failed")(c)?;
            Err(StoreError::Invalid("failed after writing".into()))
        };
        let jobs = vec![job(insert_tenant("first")), job(failing), job(insert_tenant("third"))];
        let (committed, answers) = run_alone(dir.path(), jobs);
        assert!(committed.is_ok());
        assert!(answers[0].is_ok() && answers[1].is_err() && answers[2].is_ok(), "{answers:?}");
        assert!(store.tenant_exists("first").await.expect("read"));
        assert!(store.tenant_exists("third").await.expect("read"));
        assert!(!store.tenant_exists("failed").await.expect("read"), "the failed write is undone");
    }

    #[tokio::test]
    async fn a_job_whose_savepoint_cannot_be_rolled_back_commits_nothing() {
        let (store, dir) = open_store();
        // Beside a good write, so that the batch runs again in savepoints; this job then ends
        // its own savepoint, writes and fails: its write cannot be undone alone.
        let breaking = |c: &Connection| -> Result<()> {
            c.execute_batch("RELEASE job")?;
            insert_tenant("partial")(c)?;
            Err(StoreError::Invalid("failed after writing".into()))
        };
        let (committed, answers) = run_alone(dir.path(), vec![job(insert_tenant("good")), job(breaking)]);
        assert!(committed.is_err());
        assert!(answers.iter().all(Result::is_err), "both callers hear of it: {answers:?}");
        assert!(!store.tenant_exists("partial").await.expect("read"), "nothing of it is committed");
        assert!(!store.tenant_exists("good").await.expect("read"), "nor of its batch");
        store.create_tenant_key("next", Mode::Sandbox).await.expect("later writes work");
    }
}
