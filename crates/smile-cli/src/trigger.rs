//! `smile trigger`: publishes a sample event (or given data) for the key's sandbox tenant and
//! shows where it went.

use crate::remote::{Remote, RemoteArgs};
use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct TriggerArgs {
    /// The event type, e.g. ACCOUNT_CONNECTED (see GET /v1/eventTypes).
    pub event_type: String,
    /// The event's `data` as JSON, checked against the type's schema [default: the type's sample].
    #[arg(long)]
    pub data: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// How long to wait for each delivery's first attempt before printing what is known.
const WAIT_FOR_FIRST_ATTEMPT: Duration = Duration::from_secs(10);

pub async fn run(args: TriggerArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote)?;
    let mut request = json!({"type": args.event_type});
    if let Some(data) = &args.data {
        request["data"] = serde_json::from_str(data).context("--data is not valid JSON")?;
    }
    let event = remote.call(Method::POST, "/v1/events", Some(&request)).await?;
    let id = event["id"].as_str().context("the answer names no event id")?.to_owned();
    println!("Triggered {} {id}", args.event_type);
    let names = subscription_names(&remote).await?;
    let deliveries = first_attempts(&remote, &id).await?;
    if deliveries.is_empty() {
        println!("  no subscription of this tenant and mode takes {}", args.event_type);
    }
    for d in deliveries {
        let sub = d["webhookId"].as_str().unwrap_or("?");
        let (name, url) = names.get(sub).cloned().unwrap_or_default();
        println!("  → {sub} {name:?} {url}: {}", describe(&d));
    }
    Ok(())
}

/// Subscription id → (name, URL).
async fn subscription_names(remote: &Remote) -> anyhow::Result<HashMap<String, (String, String)>> {
    let mut names = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/webhooks?size=150&cursor={c}"),
            None => "/v1/webhooks?size=150".to_owned(),
        };
        let page = remote.call(Method::GET, &path, None).await?;
        for s in page["items"].as_array().into_iter().flatten() {
            let field = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
            names.insert(field("id"), (field("name"), field("url")));
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(names),
        }
    }
}

/// The event's deliveries, once each has an attempt (or the wait is over).
async fn first_attempts(remote: &Remote, event_id: &str) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + WAIT_FOR_FIRST_ATTEMPT;
    loop {
        let page = remote.call(Method::GET, &format!("/v1/events/{event_id}/deliveries?size=150"), None).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let waiting = items.iter().any(|d| d["attemptCount"].as_u64() == Some(0) && d["status"] == "PENDING");
        if !waiting || Instant::now() >= deadline {
            return Ok(items);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn describe(delivery: &Value) -> String {
    let status = delivery["status"].as_str().unwrap_or("?");
    let last = delivery["attempts"].as_array().and_then(|a| a.last());
    match last {
        None => format!("{status}, not attempted yet"),
        Some(a) => {
            let answer = match (a["statusCode"].as_u64(), a["error"].as_str()) {
                (Some(code), _) => format!("HTTP {code}"),
                (None, Some(error)) => error.to_owned(),
                (None, None) => "no answer".to_owned(),
            };
            let retry = delivery["nextAttemptAt"].as_str().map(|t| format!("; next attempt {t}")).unwrap_or_default();
            format!("{status} ({answer}, {} ms{retry})", a["latencyMs"].as_u64().unwrap_or(0))
        }
    }
}
