//! `smile listen` and `smile trigger` against a real server, with a real local receiver.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `smile` CLI process whose stdout lines are collected.
struct Cli {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cli {
    fn start(server: &TestServer, api: &Api, args: &[&str]) -> Cli {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smile"))
            .args(args)
            .env("SMILE_SERVER", format!("http://{}", server.running.addr))
            .env("SMILE_API_KEY", api.key_id())
            .env("SMILE_API_SECRET", api.key_secret())
            .env("SMILE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("smile starts");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                collected.lock().expect("lock").push(line);
            }
        });
        Cli { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    async fn line_with(&self, needles: &[&str]) -> String {
        eventually(Duration::from_secs(15), &format!("a line with {needles:?}"), || async {
            self.lines().into_iter().find(|l| needles.iter().all(|n| l.contains(n)))
        })
        .await
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    async fn exit_code(mut self) -> Option<i32> {
        let child =
            Arc::new(Mutex::new(std::mem::replace(&mut self.child, Command::new("true").spawn().expect("true"))));
        let status = eventually(Duration::from_secs(10), "the CLI exits", || {
            let child = child.clone();
            async move { child.lock().expect("lock").try_wait().expect("wait") }
        })
        .await;
        status.code()
    }
}

/// The subscriptions of listen sessions the tenant has.
async fn listen_subscriptions(api: &Api) -> Vec<Value> {
    let (_, body) = api.get("/v1/webhooks?size=150").await;
    body["data"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["url"].as_str().is_some_and(|u| u.starts_with("listen://")))
        .cloned()
        .collect()
}

on_both_backends! {
async fn listen_forwards_signed_events_and_reports_the_local_answer() {
    let server = TestServer::with(|o| o.listen_idle = Duration::from_secs(2)).await;
    let operator = server.operator().await;
    // The local app fails once, then accepts.
    let local = Receiver::scripted(vec![Reply::Status(500)]).await;
    let cli = Cli::start(&server, &server.sandbox, &["listen", "--forward-to", &local.url(), "--events", "USER_CREATED"]);
    let ready = cli.line_with(&["Signing secret"]).await;
    let secret = ready.split_whitespace().nth(5).expect("the secret").to_owned();
    let subs = listen_subscriptions(&server.sandbox).await;
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["eventTypes"], serde_json::json!(["USER_CREATED"]));

    let event_id = user_created(&operator).await;
    let hits = local.wait_hits(2).await;
    for hit in &hits {
        assert_eq!(hit.header("webhook-id"), event_id);
        assert!(smile_signature::smile_verify(secret.as_bytes(), &hit.body, hit.header("smile-signature")).is_ok());
        assert_eq!(hit.json()["type"], "USER_CREATED");
    }
    cli.line_with(&["USER_CREATED", &event_id, " 500 "]).await;
    cli.line_with(&["USER_CREATED", &event_id, " 200 "]).await;
    // The local answers are the attempt log.
    let sub = subs[0]["id"].as_str().expect("id").to_owned();
    let delivery = eventually(Duration::from_secs(10), "the delivery succeeds", || async {
        server.sandbox.deliveries(&sub).await.into_iter().find(|d| d["status"] == "SUCCEEDED")
    })
    .await;
    let codes: Vec<Value> = delivery["attempts"].as_array().expect("attempts").iter().map(|a| a["statusCode"].clone()).collect();
    assert_eq!(codes, vec![Value::from(500), Value::from(200)]);

    // Ctrl-C ends the session and its subscription at once.
    cli.signal("-INT");
    assert_eq!(cli.exit_code().await, Some(0));
    assert!(listen_subscriptions(&server.sandbox).await.is_empty());
}

async fn a_listener_that_dies_loses_its_subscription() {
    let server = TestServer::with(|o| o.listen_idle = Duration::from_secs(2)).await;
    let local = Receiver::start().await;
    let cli = Cli::start(&server, &server.sandbox, &["listen", "--forward-to", &local.url()]);
    cli.line_with(&["Ready"]).await;
    assert_eq!(listen_subscriptions(&server.sandbox).await.len(), 1);
    cli.signal("-KILL");
    eventually(Duration::from_secs(10), "the session ends when its polls stop", || async {
        listen_subscriptions(&server.sandbox).await.is_empty().then_some(())
    })
    .await;
}

async fn trigger_publishes_a_sample_and_shows_where_it_went() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let sub = server.sandbox.subscribe(&receiver.url(), &["ACCOUNT_CONNECTED"], "s").await;
    let cli = Cli::start(&server, &server.sandbox, &["trigger", "ACCOUNT_CONNECTED"]);
    let lines = cli.lines.clone();
    assert_eq!(cli.exit_code().await, Some(0));
    let lines = lines.lock().expect("lock").clone();
    assert!(lines[0].starts_with("Triggered ACCOUNT_CONNECTED et-"), "{lines:?}");
    assert!(lines[1].contains(&sub) && lines[1].contains("SUCCEEDED (HTTP 200"), "{lines:?}");
    assert_eq!(receiver.wait_hits(1).await[0].json()["type"], "ACCOUNT_CONNECTED");

    // Given data is checked against the type's schema; production keys cannot trigger.
    let bad = Cli::start(&server, &server.sandbox, &["trigger", "USER_CREATED", "--data", r#"{"userId": 5}"#]);
    assert_eq!(bad.exit_code().await, Some(1));
    let production = server.key("default", smile_core::Mode::Production).await;
    let refused = Cli::start(&server, &production, &["trigger", "USER_CREATED"]);
    assert_eq!(refused.exit_code().await, Some(1));
    let (_, events) = server.sandbox.get("/v1/events").await;
    assert_eq!(events["data"]["items"].as_array().map(Vec::len), Some(1), "only the good trigger made an event");
}
}
