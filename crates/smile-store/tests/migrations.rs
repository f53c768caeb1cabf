//! Schema migrations: applied once, adopted from the versioning that came before, and free
//! of locks when there is nothing to do.

use smile_store::*;
use std::time::Duration;
use tokio_postgres::NoTls;

const V1_POSTGRES: &str = include_str!("../migrations/postgres/V1__initial.sql");
const V2_POSTGRES: &str = include_str!("../migrations/postgres/V2__lanes_and_order_keys.sql");
const V1_SQLITE: &str = include_str!("../migrations/sqlite/V1__initial.sql");
const V2_SQLITE: &str = include_str!("../migrations/sqlite/V2__lanes_and_order_keys.sql");
/// Two attempts of one delivery, the later one written first, as the schema before version 4
/// holds them.
const OLD_ATTEMPTS: &str = "INSERT INTO attempts (id, delivery_id, attempt, attempted_ms, status_code, latency_ms) \
     VALUES ('att-2', 'dlv-1', 2, 2000, 200, 5), ('att-1', 'dlv-1', 1, 1000, 500, 7)";

/// An event and its delivery as the schema before version 5 holds them (keyed by seq).
const OLD_EVENT_AND_DELIVERY: &str = "INSERT INTO events (id, tenant_id, mode, type, created_ms, body) \
     VALUES ('evt-1', 'kept', 'SANDBOX', 'USER_CREATED', 1000, '{}'); \
     INSERT INTO deliveries (id, event_id, event_type, subscription_id, tenant_id, mode, status, attempts, lean, \
     created_ms, updated_ms) VALUES ('dlv-1', 'evt-1', 'USER_CREATED', 'sub-1', 'kept', 'SANDBOX', 'SUCCEEDED', 2, \
     FALSE, 1000, 2000)";

/// The attempts of [`OLD_ATTEMPTS`] survived the migration, in the order they were made.
async fn assert_old_attempts_kept(store: &dyn Store) {
    let attempts = store.list_attempts("dlv-1").await.expect("attempts");
    let kept: Vec<(&str, u32, Option<u16>)> =
        attempts.iter().map(|a| (a.id.as_str(), a.attempt, a.status_code)).collect();
    assert_eq!(kept, vec![("att-1", 1, Some(500)), ("att-2", 2, Some(200))]);
}

/// The advisory lock migrations take (see `src/migrations.rs`).
const MIGRATION_LOCK: i64 = 0x736d_696c_6501;

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn a_node_on_an_up_to_date_schema_takes_no_lock() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    postgres::PostgresStore::connect(&url).await.expect("first start migrates");
    // What running nodes hold while they write, and a migration in progress elsewhere: any
    // DDL (CREATE INDEX takes SHARE) or a wait for the migration lock would block here.
    let mut other = raw(&url).await;
    other.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.expect("advisory lock");
    let tx = other.transaction().await.expect("begin");
    tx.batch_execute("LOCK TABLE subscriptions, events, deliveries, attempts, lanes, api_keys IN ROW EXCLUSIVE MODE")
        .await
        .expect("lock tables");
    let started = tokio::time::timeout(Duration::from_secs(10), postgres::PostgresStore::connect(&url)).await;
    let store = started.expect("a start on an up-to-date schema must not wait for any lock").expect("start");
    let key = tokio::time::timeout(Duration::from_secs(10), store.create_tenant_key("t", smile_core::Mode::Sandbox))
        .await
        .expect("keys create must not wait for a lock");
    key.expect("key created");
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn a_postgres_schema_versioned_before_refinery_is_adopted_without_rerunning() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    let db = raw(&url).await;
    db.batch_execute(V1_POSTGRES).await.expect("v1");
    db.batch_execute(V2_POSTGRES).await.expect("v2");
    db.batch_execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY); INSERT INTO schema_version VALUES (1), (2)",
    )
    .await
    .expect("old versioning");
    db.execute("INSERT INTO tenants (id, created_ms) VALUES ('kept', 1)", &[]).await.expect("a tenant");
    db.batch_execute(OLD_ATTEMPTS).await.expect("attempts");
    db.batch_execute(OLD_EVENT_AND_DELIVERY).await.expect("an event and its delivery");
    // Re-running V2 would fail (its ALTER TABLE ADD COLUMN has no IF NOT EXISTS).
    let store = postgres::PostgresStore::connect(&url).await.expect("adopts the old schema");
    assert!(store.tenant_exists("kept").await.expect("read"), "data survives");
    assert_old_attempts_kept(&store).await;
    let kept = Scope { tenant_id: "kept".into(), mode: smile_core::Mode::Sandbox };
    let event = store.get_event(&kept, "evt-1").await.expect("read").expect("the event, found by its id");
    let delivery = store.get_delivery(&kept, "dlv-1").await.expect("read").expect("the delivery, found by its id");
    assert_eq!((event.seq, delivery.event_id.as_str(), delivery.status), (1, "evt-1", DeliveryStatus::Succeeded));
    let keys: Vec<String> = db
        .query(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indisprimary AND i.indrelid IN ('events'::regclass, 'deliveries'::regclass)",
            &[],
        )
        .await
        .expect("primary keys")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, vec!["id", "id"], "events and deliveries are keyed by id");
    let versions: Vec<i32> = db
        .query("SELECT version FROM refinery_schema_history ORDER BY version", &[])
        .await
        .expect("history")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6], "1 and 2 adopted, the later ones applied");
    let old: bool = db.query_one("SELECT to_regclass('schema_version') IS NULL", &[]).await.expect("q").get(0);
    assert!(old, "the old version table is gone");
}

#[tokio::test]
async fn a_sqlite_file_versioned_before_refinery_is_adopted_without_rerunning() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("smile.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(V1_SQLITE).expect("v1");
        conn.execute_batch(V2_SQLITE).expect("v2");
        conn.execute_batch("PRAGMA user_version = 2; INSERT INTO tenants (id, created_ms) VALUES ('kept', 1);")
            .expect("old versioning");
        conn.execute_batch(OLD_ATTEMPTS).expect("attempts");
    }
    let store = sqlite::SqliteStore::open(&path).expect("adopts the old file");
    assert!(store.tenant_exists("kept").await.expect("read"), "data survives");
    assert_old_attempts_kept(&store).await;
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let versions: Vec<i32> = conn
        .prepare("SELECT version FROM refinery_schema_history ORDER BY version")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6], "1 and 2 adopted, the later ones applied");
}

#[tokio::test]
async fn a_deadlock_is_a_conflict_to_retry_and_a_lost_connection_is_unavailable() {
    let Some(url) = testing::fresh_postgres_schema().await else {
        return;
    };
    let setup = raw(&url).await;
    setup
        .batch_execute("CREATE TABLE pair (id INT PRIMARY KEY, n INT); INSERT INTO pair VALUES (1, 0), (2, 0)")
        .await
        .expect("table");
    let (mut a, mut b) = (raw(&url).await, raw(&url).await);
    let ta = a.transaction().await.expect("begin a");
    let tb = b.transaction().await.expect("begin b");
    ta.execute("UPDATE pair SET n = 1 WHERE id = 1", &[]).await.expect("a locks 1");
    tb.execute("UPDATE pair SET n = 1 WHERE id = 2", &[]).await.expect("b locks 2");
    // Each now waits for the other; PostgreSQL fails one of them.
    let (ra, rb) = tokio::join!(
        ta.execute("UPDATE pair SET n = 2 WHERE id = 2", &[]),
        tb.execute("UPDATE pair SET n = 2 WHERE id = 1", &[]),
    );
    let error = ra.err().or(rb.err()).expect("one side loses the deadlock");
    let error = StoreError::from(error);
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert!(error.to_string().contains("40P01"), "the database's own words are kept: {error}");

    let closed = tokio_postgres::connect("postgres://postgres@127.0.0.1:1/none", NoTls).await.err().expect("refused");
    let error = StoreError::from(closed);
    assert!(matches!(error, StoreError::Unavailable(_)) && error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("refused"), "the cause is kept: {error}");
}
