//! Leaving gracefully: SIGTERM lets the attempts in flight finish, hands the node's lanes to
//! the others at once, and exits 0.

use crate::process::{Process, keys_create, serve};
use crate::support::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sends SIGTERM and waits (with a deadline) for the process to exit, serving the test's
/// receivers meanwhile.
async fn terminate(node: &mut Process, within: Duration) -> std::process::ExitStatus {
    let pid = node.child.id().to_string();
    let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(sent.success(), "SIGTERM sent");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = node.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "still running {within:?} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends! {
    async fn sigterm_lets_the_attempt_in_flight_finish_then_exits_0() {
        let dir = tempfile::tempdir().expect("dir");
        let mut node = serve(dir.path(), &[], &[]);
        let (key, secret) = node.key.clone().expect("sandbox keys");
        let api = Api::new(node.addr, &key, &secret);
        let receiver = Receiver::scripted(vec![Reply::Late(Duration::from_millis(1500), 200)]).await;
        let sub = api.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
        let (status, body) = api.post_empty(&format!("/v1/webhooks/{sub}/test")).await;
        assert_eq!(status, 200, "{body}");
        receiver.wait_hits(1).await;

        let status = terminate(&mut node, Duration::from_secs(10)).await;
        assert!(status.success(), "a graceful exit, not {status}");

        // The attempt's outcome was committed before the exit: nothing is sent again.
        let node = serve(dir.path(), &[], &[]);
        let api = api.on(node.addr);
        let deliveries = api.deliveries(&sub).await;
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0]["status"], "SUCCEEDED", "{}", deliveries[0]);
        assert_eq!(deliveries[0]["attemptCount"], 1, "{}", deliveries[0]);
        assert_eq!(receiver.hits().len(), 1);
    }
}

#[tokio::test]
async fn a_node_leaving_on_sigterm_hands_its_lanes_over_at_once() {
    Backend::on_postgres(|_| hand_over()).await
}

async fn hand_over() {
    const EVENTS: usize = 100;
    let dir = tempfile::tempdir().expect("dir");
    // A long lease: without a hand back the survivor would wait 30 s for it to run out.
    let args = ["--lease", "30s", "--max-in-flight", "1"];
    let mut leaving = serve(&dir.path().join("n0"), &args, &[]);
    let (key, secret) = leaving.key.clone().expect("the first node creates the sandbox keys");
    let survivor = serve(&dir.path().join("n1"), &args, &[]);
    let (ok, os) = keys_create(&dir.path().join("n0"), &["--operator"]);
    let receiver = Receiver::scripted(vec![Reply::Late(Duration::from_millis(30), 200); EVENTS]).await;
    Api::new(leaving.addr, &key, &secret).subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    // Publishing through the leaving node makes it the lane's holder.
    let operator = Api::new(leaving.addr, &ok, &os);
    for i in 0..EVENTS {
        publish(&operator, "default", "SANDBOX", "USER_CREATED", json!({"userId": format!("u{i}")})).await;
    }
    receiver.wait_hits(5).await;

    let status = terminate(&mut leaving, Duration::from_secs(15)).await;
    assert!(status.success(), "a graceful exit, not {status}");
    let left = Instant::now();
    assert!(receiver.hits().len() < EVENTS, "the node left with work still queued");
    eventually(Duration::from_secs(5), "the survivor takes the lane over at once, not when the lease runs out", || {
        let done = receiver.hits().len() >= EVENTS;
        async move { done.then_some(()) }
    })
    .await;
    println!("the rest arrived {:?} after the node left", left.elapsed());
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    for hit in receiver.hits() {
        *arrivals.entry(hit.header("webhook-id").to_owned()).or_default() += 1;
    }
    assert_eq!(arrivals.len(), EVENTS, "every event arrived");
    let duplicates: usize = arrivals.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0, "attempts in flight finished before the node left; none is sent twice");
    drop(survivor);
}

on_both_backends! {
    /// A process that embeds servers (the bench, these tests) outlives them: once one has
    /// shut down, none of its loops holds the store, so its database connections close. The
    /// sandbox's loops held it forever, and a bench's seventh server on PostgreSQL was refused
    /// with "too many clients".
    async fn a_server_that_shut_down_lets_go_of_its_store() {
        let server = TestServer::start().await;
        let (status, _) = server.sandbox.get("/v1/users").await;
        assert_eq!(status, 200);
        let store = std::sync::Arc::downgrade(&server.running.store);
        server.running.shutdown(Duration::from_secs(5)).await.expect("shuts down");
        eventually(Duration::from_secs(10), "nothing holds the store", || async {
            store.upgrade().is_none().then_some(())
        })
        .await;
    }
}
