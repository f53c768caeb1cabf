//! The engine's invariants: a bounded window, nothing left pending after a disable or a
//! delete, finished deliveries that stay finished, and FIFO subscriptions.

use crate::process::{keys_create, serve};
use crate::support::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Event ids in the order they reached `receiver`, with back-to-back repeats (a retry, or a
/// resend after a crash) collapsed.
pub(crate) fn arrival_order(receiver: &Receiver) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for hit in receiver.hits() {
        let id = hit.header("webhook-id").to_owned();
        if order.last() != Some(&id) {
            order.push(id);
        }
    }
    order
}

async fn statuses(api: &Api, delivery_ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in delivery_ids {
        let (status, body) = api.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(status, 200, "{body}");
        out.push(body["data"]["status"].as_str().expect("status").to_owned());
    }
    out
}

/// Checks `holds` every 50 ms for `period`: for what must stay true.
async fn stays(period: Duration, what: &str, mut holds: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(holds().await, "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An endpoint that accepts connections and never answers, until its task is aborted (which
/// closes them): its URL and its task.
async fn hanging_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", hang.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = hang.accept().await {
            open.push(stream);
        }
    });
    (url, task)
}

/// The delivery rows written for subscription `sub` (those still in the event log are not
/// rows).
async fn rows_written(server: &TestServer, sub: &str) -> i64 {
    let count = "SELECT COUNT(*) FROM deliveries WHERE subscription_id = $1";
    match &server.database_url {
        Some(url) => {
            let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(connection);
            db.query_one(count, &[&sub]).await.expect("count").get(0)
        }
        None => {
            let db = rusqlite::Connection::open(server.running_data_dir().join("smile.db")).expect("open");
            db.query_row(&count.replace("$1", "?1"), [sub], |r| r.get(0)).expect("count")
        }
    }
}

/// Points hung subscription `sub` at an endpoint that answers and closes the hung
/// connections: every one of the 60 `published` events then arrives exactly once, and every
/// delivery ends SUCCEEDED.
async fn moves_to_an_answering_endpoint(
    server: &TestServer,
    sub: &str,
    hanging: tokio::task::JoinHandle<()>,
    published: &HashSet<String>,
) {
    let receiver = Receiver::start().await;
    let (status, body) = server.sandbox.patch(&format!("/v1/webhooks/{sub}"), json!({"url": receiver.url()})).await;
    assert_eq!(status, 200, "{body}");
    // The hung attempts see their connections close, and are tried again at the new address.
    hanging.abort();
    let hits = receiver.wait_hits(60).await;
    let arrived: HashSet<String> = hits.iter().map(|h| h.header("webhook-id").to_owned()).collect();
    assert_eq!(&arrived, published, "every event arrived");
    eventually(Duration::from_secs(20), "every delivery SUCCEEDED", || async {
        let listed = server.sandbox.deliveries(sub).await;
        (listed.len() == 60 && listed.iter().all(|d| d["status"] == "SUCCEEDED")).then_some(())
    })
    .await;
    assert_eq!(receiver.hits().len(), 60, "each event once");
}

pub(crate) async fn fifo_subscription(api: &Api, url: &str) -> String {
    let (status, body) = api
        .post(
            "/v1/webhooks",
            json!({"name": "fifo", "url": url, "eventTypes": ["ALL_EVENTS"], "active": true,
                   "secret": "s", "ordering": "fifo"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["ordering"], "fifo");
    body["data"]["id"].as_str().expect("id").to_owned()
}

on_both_backends! {
/// A publish to more subscriptions than SQLite writes in the publish's own commit (their rows
/// follow it in parts) reaches every subscription exactly once, at once.
async fn a_large_fan_out_reaches_every_subscription_once() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let operator = server.operator().await;
    for i in 0..100 {
        server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], &format!("secret-{i}")).await;
    }
    let events = [user_created(&operator).await, user_created(&operator).await];
    receiver.wait_hits(200).await;
    stays(Duration::from_millis(300), "no more than one each", || async { receiver.hits().len() == 200 }).await;
    let signed: HashSet<(String, String)> = receiver
        .hits()
        .iter()
        .map(|h| (h.header("webhook-id").to_owned(), h.header("webhook-signature").to_owned()))
        .collect();
    assert_eq!(signed.len(), 200, "one delivery per subscription and event");
    for event in events {
        assert_eq!(signed.iter().filter(|(id, _)| *id == event).count(), 100, "{event} reached all 100");
    }
}

async fn the_window_never_holds_more_than_its_caps() {
    // Each delivery costs its bookkeeping and its body (shared by the two subscriptions when
    // fresh): about 15–25 deliveries, fewer than the two lanes' windows hold together, and
    // fewer than the 32 that two stalled lanes (4 in flight, 12 queued each) come to.
    const BUDGET: usize = 12 * 1024;
    let server = TestServer::with(|o| {
        o.delivery.lane_window = 20;
        o.delivery.window_bytes = BUDGET;
        o.delivery.max_in_flight_per_endpoint = 4;
    })
    .await;
    // Each endpoint takes 4 × 1 / 0.15 s = 27 deliveries/s: slower than even a loaded machine
    // publishes, so the backlog outgrows the window.
    let slow = Receiver::scripted(vec![Reply::Slow(Duration::from_millis(150)); 400]).await;
    let other = Receiver::scripted(vec![Reply::Slow(Duration::from_millis(150)); 400]).await;
    server.sandbox.subscribe(&slow.url(), &["ALL_EVENTS"], "s").await;
    server.sandbox.subscribe(&other.url(), &["ALL_EVENTS"], "s").await;
    let operator = server.operator().await;
    let engine = server.running.engine.clone();
    let watch = tokio::spawn(async move {
        let mut most = 0;
        loop {
            let w = engine.window().await;
            assert!(w.held_bytes <= BUDGET && w.largest_lane <= 20, "window over its caps: {w:?}");
            assert!(w.held <= 40, "at most the two lanes' windows: {w:?}");
            most = most.max(w.held_bytes);
            if most >= BUDGET * 9 / 10 && w.held == 0 {
                return most;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    for _ in 0..200 {
        user_created(&operator).await;
    }
    slow.wait_hits(200).await;
    other.wait_hits(200).await;
    eventually(Duration::from_secs(20), "the window filled up, then drained", || async {
        watch.is_finished().then_some(())
    })
    .await;
    let most = watch.await.expect("the window stayed within its caps");
    assert!(most >= BUDGET * 9 / 10, "filled to its cap: {most} of {BUDGET} bytes");
}

/// A fan-out's deliveries share their body in the window: 100 deliveries of an 8 KB event fit
/// in 128 KiB at once, where 15 would if each paid for its body.
async fn a_fan_out_pays_for_its_body_once_in_the_window() {
    const BUDGET: usize = 128 * 1024;
    let server = TestServer::with(|o| {
        o.delivery.window_bytes = BUDGET;
        // No lane is renewed, or given up as idle, before the test ends.
        o.delivery.lease = Duration::from_secs(90);
    })
    .await;
    let replies = [vec![Reply::Status(200); 100], vec![Reply::Slow(Duration::from_secs(30)); 100]].concat();
    let receiver = Receiver::scripted(replies).await;
    for _ in 0..100 {
        server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    }
    let operator = server.operator().await;
    // A first event makes this node claim the 100 lanes; the next goes to them fresh.
    user_created(&operator).await;
    receiver.wait_hits(100).await;
    let note = "x".repeat(8000);
    publish(&operator, "default", "SANDBOX", "USER_CREATED", json!({"userId": "u", "note": note})).await;
    // Each delivery is held, and sent, until its endpoint answers: all 100 at once.
    receiver.wait_hits(200).await;
    let w = server.running.engine.window().await;
    assert_eq!(w.held, 100, "every delivery in the window: {w:?}");
    assert!(w.held_bytes <= BUDGET / 2, "the body counted once among them: {w:?}");
}

/// A hung endpoint's lane fills its window and falls behind: later publishes write no
/// delivery for it (they wait in the event log). Once it answers again, every event reaches
/// it exactly once, and every delivery ends SUCCEEDED.
async fn a_full_lane_leaves_its_deliveries_in_the_log_until_it_drains() {
    let server = TestServer::with(|o| {
        o.delivery.lane_window = 10;
        o.delivery.max_in_flight_per_endpoint = 2;
        o.delivery.request_timeout = Duration::from_secs(60);
    })
    .await;
    let (hang_url, hanging) = hanging_endpoint().await;
    let sub = server.sandbox.subscribe(&hang_url, &["ALL_EVENTS"], "s").await;
    let operator = server.operator().await;
    let mut published = HashSet::new();
    for _ in 0..60 {
        published.insert(user_created(&operator).await);
    }
    let listed = server.sandbox.deliveries(&sub).await;
    assert_eq!(listed.len(), 60, "listed, whether a row or still in the log");
    assert!(listed.iter().all(|d| d["status"] == "PENDING"), "all pending");
    let written = rows_written(&server, &sub).await;
    assert!(written <= 30, "{written} of 60 deliveries written for a full lane");
    moves_to_an_answering_endpoint(&server, &sub, hanging, &published).await;
}

/// A hung endpoint's lane does not wait to fill its window: once a quarter of a window came
/// in while all its attempt slots hung, it falls behind. It holds 11 deliveries of its window
/// of 40 (2 in flight, 9 queued), and later publishes write no delivery for it.
async fn a_hung_lane_falls_behind_before_it_fills_its_window() {
    let server = TestServer::with(|o| {
        o.delivery.lane_window = 40;
        o.delivery.max_in_flight_per_endpoint = 2;
        o.delivery.request_timeout = Duration::from_secs(60);
    })
    .await;
    let (hang_url, hanging) = hanging_endpoint().await;
    let sub = server.sandbox.subscribe(&hang_url, &["ALL_EVENTS"], "s").await;
    let operator = server.operator().await;
    let mut published = HashSet::from([user_created(&operator).await]);
    // The node claims the lane and sends its first delivery; the rest come to it fresh.
    let engine = server.running.engine.clone();
    eventually(Duration::from_secs(10), "the first attempt in flight", || async {
        (engine.window().await.in_flight == 1).then_some(())
    })
    .await;
    for _ in 1..60 {
        published.insert(user_created(&operator).await);
    }
    let window = engine.window().await;
    assert!(window.largest_lane <= 13, "a stalled lane holds about a quarter of its window: {window:?}");
    let written = rows_written(&server, &sub).await;
    assert!(written <= 13, "{written} of 60 deliveries written for a stalled lane");
    moves_to_an_answering_endpoint(&server, &sub, hanging, &published).await;
}

/// A lane its breaker paused takes no work: it holds nothing in memory, later publishes
/// write no delivery for it (they wait in the event log), and on probation it reads
/// one delivery at a time. Once the endpoint answers, every event arrives and succeeds.
async fn a_paused_lane_holds_nothing_and_leaves_its_deliveries_in_the_log() {
    let server = TestServer::with(|o| {
        o.delivery.breaker_after = 2;
        o.delivery.max_in_flight_per_endpoint = 1;
        o.delivery.retry_schedule = vec![Duration::from_millis(100); 30];
    })
    .await;
    // Two failures pause the lane for 1 s; the probes after it fail too (2 s, then 4 s).
    let receiver = Receiver::scripted(vec![Reply::Status(500); 4]).await;
    let sub = server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let operator = server.operator().await;
    let mut published = HashSet::new();
    for _ in 0..2 {
        published.insert(user_created(&operator).await);
    }
    receiver.wait_hits(2).await;
    for _ in 0..30 {
        published.insert(user_created(&operator).await);
    }
    let window = server.running.engine.window().await;
    assert!(window.largest_lane <= 1, "a paused lane holds at most its probe: {window:?}");
    let written = rows_written(&server, &sub).await;
    assert!(written <= 8, "{written} of 32 deliveries written for a paused lane");
    eventually(Duration::from_secs(30), "every delivery SUCCEEDED", || async {
        let listed = server.sandbox.deliveries(&sub).await;
        (listed.len() == 32 && listed.iter().all(|d| d["status"] == "SUCCEEDED")).then_some(())
    })
    .await;
    let arrived: HashSet<String> = receiver.hits().iter().map(|h| h.header("webhook-id").to_owned()).collect();
    assert_eq!(arrived, published, "every event arrived");
}

async fn disable_gone_and_delete_leave_nothing_pending() {
    let server = TestServer::with(|o| {
        o.delivery.retry_schedule = vec![Duration::from_millis(100); 30];
        o.delivery.disable_after = Duration::from_millis(600);
        o.delivery.max_in_flight_per_endpoint = 2;
    })
    .await;
    let operator = server.operator().await;
    let failing = Receiver::scripted(vec![Reply::Status(500); 10_000]).await;
    // The 410 comes while the rest wait behind it.
    let gone = Receiver::scripted(vec![Reply::Late(Duration::from_millis(500), 410); 2]).await;
    let slow = Receiver::scripted(vec![Reply::Slow(Duration::from_millis(300)); 100]).await;
    let mut ids = Vec::new();
    for url in [failing.url(), gone.url(), slow.url()] {
        ids.push(server.sandbox.subscribe(&url, &["ALL_EVENTS"], "s").await);
    }
    for _ in 0..20 {
        user_created(&operator).await;
    }
    let mut deliveries = Vec::new();
    for id in &ids {
        let listed = server.sandbox.deliveries(id).await;
        assert_eq!(listed.len(), 20);
        deliveries.push(listed.iter().map(|d| d["id"].as_str().expect("id").to_owned()).collect::<Vec<_>>());
    }
    let (status, _) = server.sandbox.delete(&format!("/v1/webhooks/{}", ids[2])).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(15), "failing and gone subscriptions disabled", || async {
        let (_, a) = server.sandbox.get(&format!("/v1/webhooks/{}", ids[0])).await;
        let (_, b) = server.sandbox.get(&format!("/v1/webhooks/{}", ids[1])).await;
        (a["data"]["active"] == false && b["data"]["active"] == false).then_some(())
    })
    .await;
    let expect = [("FAILED", "disabled after failing"), ("FAILED", "410"), ("CANCELLED", "deleted")];
    for ((want, why), ids) in expect.iter().zip(&deliveries) {
        stays(Duration::from_millis(1500), why, async || {
            statuses(&server.sandbox, ids).await.iter().all(|s| s == want || (*want == "CANCELLED" && s == "SUCCEEDED"))
        })
        .await;
    }
    assert_eq!(gone.hits().len(), 2, "nothing more is sent after a 410");
}

async fn a_fifo_subscription_sends_in_order_and_shows_what_blocks_it() {
    let server = TestServer::with(|o| o.delivery.retry_schedule = vec![Duration::from_millis(400); 5]).await;
    let receiver = Receiver::scripted(vec![Reply::Status(503), Reply::Status(503)]).await;
    let sub = fifo_subscription(&server.sandbox, &receiver.url()).await;
    let operator = server.operator().await;
    let mut published = Vec::new();
    for _ in 0..6 {
        published.push(user_created(&operator).await);
    }
    let blocked = eventually(Duration::from_secs(10), "the lane shows its blocked head", || async {
        let (_, body) = server.sandbox.get(&format!("/v1/webhooks/{sub}")).await;
        let blocked = body["data"]["blockedBy"].clone();
        (!blocked.is_null()).then_some(blocked)
    })
    .await;
    assert_eq!(blocked["eventId"], published[0].as_str(), "{blocked}");
    assert_eq!(receiver.hits().iter().filter(|h| h.header("webhook-id") != published[0]).count(), 0, "nothing passes the head");
    receiver.wait_hits(8).await;
    eventually(Duration::from_secs(10), "all six in order", || async {
        (arrival_order(&receiver) == published).then_some(())
    })
    .await;
    let (_, body) = server.sandbox.get(&format!("/v1/webhooks/{sub}")).await;
    assert_eq!(body["data"]["blockedBy"], Value::Null);
    // A concurrent subscription (the default) does not wait.
    let (status, body) = server.sandbox.patch(&format!("/v1/webhooks/{sub}"), json!({"ordering": "sideways"})).await;
    assert_eq!(status, 400, "{body}");
}

/// A node killed while a lane is behind (its deliveries in the log) sends every
/// event once it is back and the endpoint answers: the cursor, not memory, keeps the place.
async fn a_lane_that_fell_behind_sends_everything_after_a_crash() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let (hang_url, hanging) = hanging_endpoint().await;
    let args = ["--lease", "2s", "--poll-interval", "300ms", "--retry-schedule", "100ms,100ms"];
    // Ten attempts in flight fail at once when the hung connections close: the breaker counts
    // them as one failure (as ten, it paused the lane 32 s and this test timed out).
    let args = [&args[..], &["--lane-window", "10", "--request-timeout", "60s"]].concat();
    let first = serve(&data, &args, &[]);
    let (key, secret) = first.key.clone().expect("keys");
    let (ok, os) = keys_create(&data, &["--operator"]);
    let sandbox = Api::new(first.addr, &key, &secret);
    let sub = sandbox.subscribe(&hang_url, &["ALL_EVENTS"], "s").await;
    let operator = Api::new(first.addr, &ok, &os);
    let mut published = HashSet::new();
    for _ in 0..60 {
        published.insert(user_created(&operator).await);
    }
    let mut first = first;
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    let second = serve(&data, &args, &[]);
    let sandbox = sandbox.on(second.addr);
    assert_eq!(sandbox.deliveries(&sub).await.len(), 60, "every delivery listed after the restart");
    let receiver = Receiver::start().await;
    let (status, body) = sandbox.patch(&format!("/v1/webhooks/{sub}"), json!({"url": receiver.url()})).await;
    assert_eq!(status, 200, "{body}");
    // The attempts hung on the old address fail as their connections close, and go again.
    hanging.abort();
    eventually(Duration::from_secs(20), "every event arrived", || async {
        let arrived: HashSet<String> = receiver.hits().iter().map(|h| h.header("webhook-id").to_owned()).collect();
        (arrived == published).then_some(())
    })
    .await;
}

async fn a_fifo_lane_keeps_its_order_across_a_crash() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let receiver = Receiver::scripted(vec![Reply::Slow(Duration::from_millis(30)); 400]).await;
    let args = ["--lease", "2s", "--poll-interval", "300ms", "--retry-schedule", "100ms,100ms"];
    let first = serve(&data, &args, &[]);
    let (key, secret) = first.key.clone().expect("keys");
    let (ok, os) = keys_create(&data, &["--operator"]);
    fifo_subscription(&Api::new(first.addr, &key, &secret), &receiver.url()).await;
    let operator = Api::new(first.addr, &ok, &os);
    let mut published = Vec::new();
    for i in 0..60 {
        published.push(publish(&operator, "default", "SANDBOX", "USER_CREATED", json!({"userId": format!("u{i}")})).await);
    }
    let mut first = first;
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    assert!(receiver.hits().len() < 60, "the kill came mid-way");
    let _second = serve(&data, &args, &[]);
    eventually(Duration::from_secs(30), "every event, in publish order", || async {
        let order = arrival_order(&receiver);
        assert!(published.starts_with(&order), "out of order: {order:?}");
        (order.len() == published.len()).then_some(())
    })
    .await;
    let distinct: HashSet<String> = receiver.hits().iter().map(|h| h.header("webhook-id").to_owned()).collect();
    assert_eq!(distinct.len(), 60);
}
}

/// While the attempt log cannot be written, a lane sends no more than its bound of unrecorded
/// attempts, and the rest wait: a node dying then leaves at most that many to be sent again.
/// PostgreSQL only, where a lock on the attempt log stalls its writes and nothing else.
#[tokio::test]
async fn a_lane_sends_no_further_ahead_of_its_attempt_log_than_its_bound() {
    Backend::on_postgres(|_| unrecorded_stay_bounded()).await
}

async fn unrecorded_stay_bounded() {
    let server = TestServer::with(|o| {
        o.delivery.max_in_flight_per_endpoint = 2;
        o.delivery.max_unrecorded_per_endpoint = 5;
    })
    .await;
    let receiver = Receiver::start().await;
    let sub = server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let operator = server.operator().await;
    let url = server.database_url.clone().expect("a PostgreSQL URL");
    let (mut db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let lock = db.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE attempts IN EXCLUSIVE MODE").await.expect("lock the attempt log");
    let mut published = HashSet::new();
    for _ in 0..40 {
        published.insert(user_created(&operator).await);
    }
    receiver.wait_hits(5).await;
    stays(Duration::from_millis(500), "5 sent while none is recorded", || async { receiver.hits().len() == 5 }).await;
    lock.rollback().await.expect("unlock");
    eventually(Duration::from_secs(20), "every delivery SUCCEEDED", || async {
        let listed = server.sandbox.deliveries(&sub).await;
        (listed.len() == 40 && listed.iter().all(|d| d["status"] == "SUCCEEDED")).then_some(())
    })
    .await;
    let arrived: Vec<String> = receiver.hits().iter().map(|h| h.header("webhook-id").to_owned()).collect();
    assert_eq!(arrived.len(), 40, "each event once");
    assert_eq!(arrived.into_iter().collect::<HashSet<_>>(), published, "every event arrived");
}
