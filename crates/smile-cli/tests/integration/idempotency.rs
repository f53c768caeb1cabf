//! `Idempotency-Key` on publishing and test sends: one event per key, however often and
//! however concurrently it is sent, across restarts.

use crate::process::{keys_create, serve};
use crate::support::*;
use serde_json::{Value, json};

const PUBLISH: &str = "/v1/operator/events";

fn user_created_request(user: &str) -> Value {
    json!({"tenantId": "default", "mode": "SANDBOX", "type": "USER_CREATED", "data": {"userId": user}})
}

/// How many events the tenant has, and how many deliveries the subscription has.
async fn counts(sandbox: &Api, subscription: &str) -> (usize, usize) {
    let (_, events) = sandbox.get("/v1/events?size=150").await;
    let events = events["data"]["items"].as_array().map_or(0, Vec::len);
    (events, sandbox.deliveries(subscription).await.len())
}

on_both_backends! {
async fn the_same_key_answers_the_first_event_and_sends_nothing_more() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let operator = server.operator().await;
    let sub = server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;

    let (status, first, replayed) = operator.post_once(PUBLISH, "order-1", user_created_request("u1")).await;
    assert_eq!(status, 200, "{first}");
    assert!(!replayed);
    let (status, again, replayed) = operator.post_once(PUBLISH, "order-1", user_created_request("u1")).await;
    assert_eq!(status, 200, "{again}");
    assert!(replayed, "a replay says so in Idempotent-Replayed");
    assert_eq!(again["data"], first["data"], "same id, same body");
    receiver.wait_hits(1).await;

    // Another key is another event; the same key with another request is refused.
    let (status, other, _) = operator.post_once(PUBLISH, "order-2", user_created_request("u1")).await;
    assert_eq!(status, 200);
    assert_ne!(other["data"]["id"], first["data"]["id"]);
    let (status, refused, _) = operator.post_once(PUBLISH, "order-1", user_created_request("u2")).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "INVALID_PARAMETERS");
    let (status, _, _) = operator.post_once(PUBLISH, "bad key with spaces", user_created_request("u1")).await;
    assert_eq!(status, 400);

    receiver.wait_hits(2).await;
    assert_eq!(counts(&server.sandbox, &sub).await, (2, 2), "two keys: two events, two deliveries");

    // Test sends take a key too, scoped to the tenant and mode.
    let path = format!("/v1/webhooks/{sub}/test");
    let (status, test, replayed) = server.sandbox.post_once(&path, "test-1", json!({})).await;
    assert_eq!((status, replayed), (200, false), "{test}");
    let (status, test_again, replayed) = server.sandbox.post_once(&path, "test-1", json!({})).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(test_again["data"], test["data"]);
    receiver.wait_hits(3).await;
    assert_eq!(counts(&server.sandbox, &sub).await, (3, 3));
    assert_eq!(receiver.hits().len(), 3, "no delivery was sent twice");
}

async fn of_concurrent_requests_with_one_key_exactly_one_makes_the_event() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let operator = server.operator().await;
    let sub = server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let requests = (0..16).map(|_| {
        let operator = operator.clone();
        tokio::spawn(async move { operator.post_once(PUBLISH, "burst", user_created_request("u1")).await })
    });
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for request in requests {
        let (status, body, replayed) = request.await.expect("joined");
        assert_eq!(status, 200, "{body}");
        ids.insert(body["data"]["id"].as_str().expect("id").to_owned());
        created += usize::from(!replayed);
    }
    assert_eq!(ids.len(), 1, "every answer names the same event");
    assert_eq!(created, 1, "exactly one request created it");
    receiver.wait_hits(1).await;
    assert_eq!(counts(&server.sandbox, &sub).await, (1, 1));
}

async fn a_key_is_remembered_across_a_crash() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    let first = serve(&data, &[], &[]);
    let (key, secret) = first.key.clone().expect("keys");
    let (ok, os) = keys_create(&data, &["--operator"]);
    let sub = Api::new(first.addr, &key, &secret).subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let (status, before, _) = Api::new(first.addr, &ok, &os).post_once(PUBLISH, "k", user_created_request("u1")).await;
    assert_eq!(status, 200);
    receiver.wait_hits(1).await;
    let mut first = first;
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");

    let second = serve(&data, &[], &[]);
    let (status, after, replayed) = Api::new(second.addr, &ok, &os).post_once(PUBLISH, "k", user_created_request("u1")).await;
    assert_eq!((status, replayed), (200, true), "{after}");
    assert_eq!(after["data"], before["data"]);
    let sandbox = Api::new(second.addr, &key, &secret);
    assert_eq!(counts(&sandbox, &sub).await, (1, 1));
}
}
