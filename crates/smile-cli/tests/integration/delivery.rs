//! Deliveries: signatures, retries, redirects, test sends, rotation, replay, egress, TLS.

use crate::support::*;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};
use std::time::Duration;

/// Signatures computed here from the primitives, not with the project's signature crate.
fn expected_smile(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn expected_standard(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Verifies `v1a` signatures with Python's `cryptography` (OpenSSL), not with our code: each
/// `(whpk_ key, v1a,signature)` pair must verify over `id.timestamp.body`.
fn python_verifies(hit: &Hit, pairs: &[(&str, &str)]) {
    let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
job = json.load(sys.stdin)
content = (job["id"] + "." + job["ts"] + ".").encode() + base64.b64decode(job["body"])
for key, signature in job["pairs"]:
    assert key.startswith("whpk_") and signature.startswith("v1a,")
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key[5:])).verify(base64.b64decode(signature[4:]), content)
print("verified", len(job["pairs"]))
"#;
    let job = json!({
        "id": hit.header("webhook-id"),
        "ts": hit.header("webhook-timestamp"),
        "body": base64::engine::general_purpose::STANDARD.encode(&hit.body),
        "pairs": pairs,
    });
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs its cryptography package)");
    use std::io::Write as _;
    child.stdin.take().expect("stdin").write_all(job.to_string().as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(out.status.success(), "Python rejected the signatures: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("verified {}", pairs.len()));
}

/// Waits until the subscription is disabled and returns it.
async fn wait_disabled(api: &Api, subscription: &str) -> Value {
    eventually(Duration::from_secs(10), "the subscription is disabled", || async {
        let (_, body) = api.get(&format!("/v1/webhooks/{subscription}")).await;
        (body["data"]["active"] == false).then_some(body["data"].clone())
    })
    .await
}

async fn wait_delivery_status(api: &Api, subscription: &str, status: &str) -> Value {
    eventually(Duration::from_secs(15), &format!("a {status} delivery"), || async {
        api.deliveries(subscription).await.into_iter().find(|d| d["status"] == status)
    })
    .await
}

on_both_backends! {
async fn delivery_carries_both_signatures_and_the_envelope() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let operator = server.operator().await;
    server
        .sandbox
        .subscribe(&receiver.url(), &["ACCOUNT_CONNECTED"], "a little secret")
        .await;
    let event_id = publish(
        &operator,
        "default",
        "SANDBOX",
        "ACCOUNT_CONNECTED",
        account_connected("default-u1"),
    )
    .await;

    let hit = receiver.wait_hits(1).await.remove(0);
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(
        hit.header("smile-signature"),
        expected_smile("a little secret", &hit.body)
    );
    assert_eq!(hit.header("webhook-id"), event_id);
    let timestamp = hit.header("webhook-timestamp");
    let now = smile_core::timefmt::now_ms() / 1000;
    assert!((now - timestamp.parse::<i64>().expect("seconds")).abs() < 60);
    assert_eq!(
        hit.header("webhook-signature"),
        expected_standard("a little secret", &event_id, timestamp, &hit.body)
    );

    let body = hit.json();
    assert_eq!(body["id"], event_id.as_str());
    assert_eq!(body["version"], 1);
    assert_eq!(body["type"], "ACCOUNT_CONNECTED");
    assert_eq!(body["data"], account_connected("default-u1"));
    let created = body["createdAt"].as_str().expect("createdAt");
    assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
    // The envelope's keys come in the documented order.
    let text = std::str::from_utf8(&hit.body).expect("utf8");
    assert!(text.starts_with(r#"{"id":""#) && text.find("\"version\"") < text.find("\"type\""));
}

async fn only_matching_active_subscriptions_receive() {
    let server = TestServer::start().await;
    let (wanted, all, other, inactive) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let operator = server.operator().await;
    server
        .sandbox
        .subscribe(&wanted.url(), &["ACCOUNT_CONNECTED"], "s1")
        .await;
    server
        .sandbox
        .subscribe(&all.url(), &["ALL_EVENTS"], "s2")
        .await;
    server
        .sandbox
        .subscribe(&other.url(), &["USER_CREATED"], "s3")
        .await;
    let (status, _) = server
        .sandbox
        .post("/v1/webhooks", json!({"name": "off", "url": inactive.url(), "eventTypes": ["ALL_EVENTS"], "active": false, "secret": "s4"}))
        .await;
    assert_eq!(status, 200);
    publish(
        &operator,
        "default",
        "SANDBOX",
        "ACCOUNT_CONNECTED",
        account_connected("u"),
    )
    .await;
    let marker = user_created(&operator).await;

    assert_eq!(
        wanted.wait_hits(1).await[0].json()["type"],
        "ACCOUNT_CONNECTED"
    );
    all.wait_hits(2).await;
    other.wait_hits(1).await;
    // Everything published before the marker has been handed out: nothing more may come.
    assert_eq!(other.hits()[0].header("webhook-id"), marker);
    assert_eq!(wanted.hits().len(), 1);
    assert!(inactive.hits().is_empty());
}

async fn a_500_is_retried_until_success_and_every_attempt_is_logged() {
    let server = TestServer::start().await;
    let receiver = Receiver::scripted(vec![Reply::Status(500), Reply::Status(503)]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    let event_id = user_created(&operator).await;

    let hits = receiver.wait_hits(3).await;
    assert!(
        hits.iter().all(|h| h.header("webhook-id") == event_id),
        "the same event each time"
    );
    let delivery = wait_delivery_status(&server.sandbox, &sub, "SUCCEEDED").await;
    assert_eq!(delivery["attemptCount"], 3);
    let attempts = delivery["attempts"].as_array().expect("attempts");
    let codes: Vec<_> = attempts.iter().map(|a| a["statusCode"].clone()).collect();
    assert_eq!(codes, vec![json!(500), json!(503), json!(200)]);
    assert_eq!(attempts[0]["responseBody"], "answered 500");
    assert_eq!(attempts[0]["error"], "HTTP 500");
    assert_eq!(attempts[2]["responseBody"], "thanks");
    assert!(
        attempts
            .iter()
            .all(|a| a["latencyMs"].is_u64() && a["attemptedAt"].is_string())
    );

    // The same log is reachable from the event.
    let (status, body) = server
        .sandbox
        .get(&format!("/v1/events/{event_id}/deliveries"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["items"][0]["id"], delivery["id"]);
}

async fn a_timeout_is_retried() {
    let server =
        TestServer::with(|o| o.delivery.request_timeout = Duration::from_millis(300)).await;
    let receiver = Receiver::scripted(vec![Reply::Slow(Duration::from_secs(3))]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    user_created(&operator).await;
    let delivery = wait_delivery_status(&server.sandbox, &sub, "SUCCEEDED").await;
    let attempts = delivery["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["statusCode"], Value::Null);
    assert_eq!(attempts[0]["error"], "timed out");
}

async fn a_refused_connection_is_retried_then_given_up() {
    let server = TestServer::start().await;
    // Bind and drop: nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(
            &format!("http://127.0.0.1:{port}/hook"),
            &["ALL_EVENTS"],
            "s",
        )
        .await;
    user_created(&operator).await;
    // 1 attempt + 3 retries (the test schedule), then FAILED.
    let delivery = wait_delivery_status(&server.sandbox, &sub, "FAILED").await;
    assert_eq!(delivery["attemptCount"], 4);
    let error = delivery["attempts"][0]["error"].as_str().expect("error");
    assert!(error.contains("Connection refused"), "{error}");
}

async fn redirects_are_not_followed() {
    let server = TestServer::start().await;
    let target = Receiver::start().await;
    let receiver = Receiver::scripted(vec![Reply::Redirect(target.url())]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    user_created(&operator).await;
    let delivery = wait_delivery_status(&server.sandbox, &sub, "SUCCEEDED").await;
    assert_eq!(delivery["attempts"][0]["statusCode"], 307);
    assert!(
        target.hits().is_empty(),
        "the redirect target was never called"
    );
    assert_eq!(receiver.hits().len(), 2);
}

async fn test_send_reaches_only_that_subscription() {
    let server = TestServer::start().await;
    let (one, two) = (Receiver::start().await, Receiver::start().await);
    let sub = server
        .sandbox
        .subscribe(&one.url(), &["ACCOUNT_FAILED"], "s")
        .await;
    server
        .sandbox
        .subscribe(&two.url(), &["ALL_EVENTS"], "s")
        .await;
    let (status, body) = server
        .sandbox
        .post_empty(&format!("/v1/webhooks/{sub}/test"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["type"], "ACCOUNT_FAILED");
    let hit = one.wait_hits(1).await.remove(0);
    assert_eq!(hit.json()["id"], body["data"]["id"]);
    smile_core::EventType::AccountFailed
        .validate_data(&hit.json()["data"])
        .expect("sample matches the schema");

    let (status, body) = server
        .sandbox
        .post(
            &format!("/v1/webhooks/{sub}/test"),
            json!({"eventType": "TASK_STARTED"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["type"], "TASK_STARTED");
    one.wait_hits(2).await;
    assert!(two.hits().is_empty());
}

async fn rotation_signs_with_both_secrets_during_the_overlap() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "old-secret")
        .await;
    let (status, body) = server
        .sandbox
        .post(
            &format!("/v1/webhooks/{sub}/rotateSecret"),
            json!({"secret": "new-secret", "overlapSeconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["secret"], "new-secret");
    assert!(body["data"]["previousSecretExpiresAt"].is_string());

    user_created(&operator).await;
    let hit = receiver.wait_hits(1).await.remove(0);
    let smile: Vec<&str> = hit.header("smile-signature").split(',').collect();
    assert_eq!(
        smile,
        vec![
            expected_smile("new-secret", &hit.body),
            expected_smile("old-secret", &hit.body)
        ]
    );
    let (id, ts) = (hit.header("webhook-id"), hit.header("webhook-timestamp"));
    let standard: Vec<&str> = hit.header("webhook-signature").split(' ').collect();
    assert_eq!(
        standard,
        vec![
            expected_standard("new-secret", id, ts, &hit.body),
            expected_standard("old-secret", id, ts, &hit.body)
        ]
    );

    // With no overlap, only the new secret signs.
    let (status, body) = server
        .sandbox
        .post(
            &format!("/v1/webhooks/{sub}/rotateSecret"),
            json!({"overlapSeconds": 0}),
        )
        .await;
    assert_eq!(status, 200);
    let generated = body["data"]["secret"]
        .as_str()
        .expect("generated secret")
        .to_owned();
    assert!(generated.len() >= 32 && generated.len() <= 64);
    user_created(&operator).await;
    let hit = receiver.wait_hits(2).await.remove(1);
    assert_eq!(
        hit.header("smile-signature"),
        expected_smile(&generated, &hit.body)
    );
}

async fn ed25519_subscriptions_sign_v1a_that_an_independent_verifier_accepts() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let operator = server.operator().await;
    let (status, body) = server
        .sandbox
        .post(
            "/v1/webhooks",
            json!({"name": "asym", "url": receiver.url(), "eventTypes": ["ALL_EVENTS"], "active": true, "signing": "ed25519"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sub = body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(body["data"]["signing"], "ed25519");
    let first_key = body["data"]["publicKey"].as_str().expect("publicKey").to_owned();
    assert!(first_key.starts_with("whpk_"), "{first_key}");
    // The secret key never leaves the server.
    assert_eq!(body["data"]["secret"], first_key.as_str());
    assert!(!body.to_string().contains("whsk_"));

    user_created(&operator).await;
    let hit = receiver.wait_hits(1).await.remove(0);
    assert_eq!(hit.header("smile-signature"), "", "no shared secret, so no HMAC");
    let signatures: Vec<&str> = hit.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 1);
    python_verifies(&hit, &[(&first_key, signatures[0])]);

    // Rotation: a new key pair; during the overlap, both sign.
    let (status, body) = server
        .sandbox
        .post(&format!("/v1/webhooks/{sub}/rotateSecret"), json!({"overlapSeconds": 3600}))
        .await;
    assert_eq!(status, 200, "{body}");
    let second_key = body["data"]["publicKey"].as_str().expect("publicKey").to_owned();
    assert_ne!(second_key, first_key);
    user_created(&operator).await;
    let hit = receiver.wait_hits(2).await.remove(1);
    let signatures: Vec<&str> = hit.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2);
    python_verifies(&hit, &[(&second_key, signatures[0]), (&first_key, signatures[1])]);

    for (request, why) in [
        (json!({"signing": "ed25519", "secret": "plain"}), "a shared secret with ed25519"),
        (json!({"signing": "ed25519", "secret": "whsk_broken"}), "a malformed key"),
        (json!({"secret": "whsk_AAAA"}), "a whsk_ key without ed25519"),
        (json!({}), "no secret for hmac"),
        (json!({"signing": "rsa", "secret": "x"}), "an unknown scheme"),
    ] {
        let mut body = json!({"name": "bad", "url": receiver.url(), "eventTypes": ["ALL_EVENTS"], "active": true});
        for (k, v) in request.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = server.sandbox.post("/v1/webhooks", body).await;
        assert_eq!(status, 400, "{why}: {answer}");
        assert_eq!(answer["code"], "INVALID_PARAMETERS", "{why}");
    }
}

async fn replay_and_recover_send_failed_deliveries_again() {
    let server = TestServer::with(|o| o.delivery.retry_schedule = vec![]).await;
    // Fails everything at first: three events, three failures (no retries configured).
    let receiver = Receiver::scripted(vec![Reply::Status(500); 3]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    let since = smile_core::timefmt::format_ms(smile_core::timefmt::now_ms() - 1000);
    for _ in 0..3 {
        user_created(&operator).await;
    }
    let failed = eventually(
        Duration::from_secs(10),
        "three failed deliveries",
        || async {
            let d = server.sandbox.deliveries(&sub).await;
            (d.iter().filter(|d| d["status"] == "FAILED").count() == 3).then_some(d)
        },
    )
    .await;

    // Replay one.
    let one = failed[0]["id"].as_str().expect("id");
    let (status, body) = server
        .sandbox
        .post_empty(&format!("/v1/deliveries/{one}/retry"))
        .await;
    assert_eq!(status, 200, "{body}");
    receiver.wait_hits(4).await;
    eventually(
        Duration::from_secs(10),
        "the replayed delivery succeeds",
        || async {
            let (_, d) = server.sandbox.get(&format!("/v1/deliveries/{one}")).await;
            (d["data"]["status"] == "SUCCEEDED").then_some(())
        },
    )
    .await;

    // Recover the other two.
    let (status, body) = server
        .sandbox
        .post(
            &format!("/v1/webhooks/{sub}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["recovered"], 2);
    receiver.wait_hits(6).await;
    eventually(
        Duration::from_secs(10),
        "all deliveries succeed",
        || async {
            let d = server.sandbox.deliveries(&sub).await;
            d.iter().all(|d| d["status"] == "SUCCEEDED").then_some(())
        },
    )
    .await;
    let delivered: std::collections::HashSet<String> = receiver.hits()[3..]
        .iter()
        .map(|h| h.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        delivered.len(),
        3,
        "each event delivered again exactly once"
    );
}

async fn egress_bind_sets_the_source_address() {
    let server = TestServer::with(|o| {
        o.delivery.egress.bind = Some("127.0.0.2".parse().expect("ip"));
        o.delivery.egress.public_ips = vec!["203.0.113.9".into()];
    })
    .await;
    let receiver = Receiver::start().await;
    let operator = server.operator().await;
    server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    user_created(&operator).await;
    let hit = receiver.wait_hits(1).await.remove(0);
    assert_eq!(hit.peer.ip().to_string(), "127.0.0.2");
    let (status, body) = server.sandbox.get("/v1/egressIps").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["ips"], json!(["203.0.113.9"]));
}

async fn https_receivers_are_trusted_through_an_extra_ca() {
    let ca = TestCa::new();
    let ca_file = ca.pem_file();
    let path = ca_file.path().to_owned();
    let server = TestServer::with(move |o| o.delivery.egress.extra_ca = vec![path]).await;
    let receiver = Receiver::tls(&ca).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "tls-secret")
        .await;
    user_created(&operator).await;
    let hit = receiver.wait_hits(1).await.remove(0);
    assert_eq!(
        hit.header("smile-signature"),
        expected_smile("tls-secret", &hit.body)
    );
    wait_delivery_status(&server.sandbox, &sub, "SUCCEEDED").await;

    // Without the CA the same receiver is not trusted.
    let untrusting = TestServer::start().await;
    let operator = untrusting.operator().await;
    let sub = untrusting
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    user_created(&operator).await;
    let delivery = wait_delivery_status(&untrusting.sandbox, &sub, "FAILED").await;
    let error = delivery["attempts"][0]["error"]
        .as_str()
        .expect("error")
        .to_lowercase();
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(receiver.hits().len(), 1);
}

async fn include_payload_decides_who_gets_the_task_payload() {
    let server = TestServer::start().await;
    let (with, without) = (Receiver::start().await, Receiver::start().await);
    let operator = server.operator().await;
    let (status, _) = server
        .sandbox
        .post(
            "/v1/webhooks",
            json!({"name": "p", "url": with.url(), "eventTypes": ["TASK_FINISHED"], "active": true, "secret": "s", "includePayload": true}),
        )
        .await;
    assert_eq!(status, 200);
    server
        .sandbox
        .subscribe(&without.url(), &["TASK_FINISHED"], "s")
        .await;
    let data = json!({"userId": "u", "sourceId": "a-1", "sourceType": "ACCOUNT", "taskType": "LINK_ACCOUNT",
        "status": "SUCCEEDED", "errorCode": null, "providers": ["sss"], "datapoints": ["IDENTITIES"],
        "payload": {"identity": {"id": "i-1", "firstName": "George"}}});
    publish(&operator, "default", "SANDBOX", "TASK_FINISHED", data).await;
    let full = with.wait_hits(1).await.remove(0).json();
    assert_eq!(full["data"]["payload"]["identity"]["firstName"], "George");
    let hit = without.wait_hits(1).await.remove(0);
    let lean = hit.json();
    assert!(lean["data"].get("payload").is_none(), "{lean}");
    assert_eq!(lean["data"]["datapoints"], json!(["IDENTITIES"]));
    assert_eq!(lean["id"], full["id"]);
    assert_eq!(
        hit.header("smile-signature"),
        expected_smile("s", &hit.body),
        "the lean body is what is signed"
    );
}

async fn gone_disables_the_subscription_at_once() {
    let server = TestServer::start().await;
    let receiver = Receiver::scripted(vec![Reply::Status(410)]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    user_created(&operator).await;
    let subscription = wait_disabled(&server.sandbox, &sub).await;
    assert!(
        subscription["disabledReason"]
            .as_str()
            .expect("reason")
            .contains("410")
    );
    wait_delivery_status(&server.sandbox, &sub, "FAILED").await;
    assert_eq!(receiver.hits().len(), 1, "no retry after 410");

    // Re-activating clears the reason and deliveries flow again.
    let (status, body) = server
        .sandbox
        .patch(&format!("/v1/webhooks/{sub}"), json!({"active": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["disabledReason"], Value::Null);
    user_created(&operator).await;
    receiver.wait_hits(2).await;
}

async fn a_subscription_failing_past_the_window_is_disabled() {
    let server = TestServer::with(|o| {
        o.delivery.disable_after = Duration::from_millis(250);
        o.delivery.retry_schedule = vec![Duration::from_millis(150); 10];
    })
    .await;
    let receiver = Receiver::scripted(vec![Reply::Status(500); 100]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    user_created(&operator).await;
    let subscription = wait_disabled(&server.sandbox, &sub).await;
    assert!(
        subscription["disabledReason"]
            .as_str()
            .expect("reason")
            .contains("failing without a success")
    );
    let attempts = receiver.hits().len();
    assert!(
        (2..=5).contains(&attempts),
        "retried until the window closed, then stopped: {attempts}"
    );
}

async fn a_slow_endpoint_does_not_hold_up_another() {
    let server = TestServer::with(|o| {
        o.delivery.max_in_flight_per_endpoint = 2;
        o.delivery.request_timeout = Duration::from_secs(10);
    })
    .await;
    let slow = Receiver::scripted(vec![Reply::Slow(Duration::from_secs(5)); 10]).await;
    let fast = Receiver::start().await;
    let operator = server.operator().await;
    server
        .sandbox
        .subscribe(&slow.url(), &["ALL_EVENTS"], "s")
        .await;
    server
        .sandbox
        .subscribe(&fast.url(), &["ALL_EVENTS"], "s")
        .await;
    for _ in 0..10 {
        user_created(&operator).await;
    }
    // All ten reach the fast endpoint while the slow one still holds its first two.
    fast.wait_hits(10).await;
    assert!(
        slow.hits().len() <= 2,
        "the in-flight cap holds: {}",
        slow.hits().len()
    );
}

async fn retry_after_is_honoured() {
    // The schedule says 100 ms; the endpoint asks for 1 s.
    let server = TestServer::start().await;
    let receiver = Receiver::scripted(vec![Reply::RetryAfter(429, 1)]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    user_created(&operator).await;
    let hits = receiver.wait_hits(2).await;
    let waited = hits[1].at.duration_since(hits[0].at);
    assert!(
        waited >= Duration::from_millis(900),
        "retried after {waited:?}"
    );
    let delivery = wait_delivery_status(&server.sandbox, &sub, "SUCCEEDED").await;
    assert_eq!(delivery["attempts"][0]["statusCode"], 429);
}

async fn the_egress_proxy_carries_every_delivery() {
    let ca = TestCa::new();
    let receiver = Receiver::tls(&ca).await;
    let proxy = ConnectProxy::start().await;
    let ca_file = ca.pem_file();
    let (path, proxy_url) = (ca_file.path().to_owned(), proxy.url_with_credentials("smile", "s3cret"));
    let server = TestServer::with(move |o| {
        o.delivery.egress.extra_ca = vec![path];
        o.delivery.egress.proxy = Some(proxy_url);
    })
    .await;
    let operator = server.operator().await;
    server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "proxied")
        .await;
    user_created(&operator).await;
    let hit = receiver.wait_hits(1).await.remove(0);
    assert_eq!(
        hit.header("smile-signature"),
        expected_smile("proxied", &hit.body)
    );
    assert_eq!(
        proxy.targets(),
        vec![format!("localhost:{}", receiver.addr.port())]
    );
    assert_eq!(proxy.seen()[0].authorization.as_deref(), Some("Basic c21pbGU6czNjcmV0"));
}

/// A plain-HTTP endpoint behind the proxy: the request goes to the proxy in absolute form,
/// with the proxy URL's credentials.
async fn plain_http_deliveries_go_to_the_proxy_by_their_full_url_with_its_credentials() {
    let receiver = Receiver::start().await;
    let proxy = ConnectProxy::start().await;
    let proxy_url = proxy.url_with_credentials("smile", "s3cret");
    let server = TestServer::with(move |o| o.delivery.egress.proxy = Some(proxy_url)).await;
    let operator = server.operator().await;
    server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "proxied").await;
    user_created(&operator).await;
    let hit = receiver.wait_hits(1).await.remove(0);
    assert_eq!(hit.header("smile-signature"), expected_smile("proxied", &hit.body));
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, receiver.url(), "absolute form");
    assert_eq!(seen[0].authorization.as_deref(), Some("Basic c21pbGU6czNjcmV0"));
}
}
