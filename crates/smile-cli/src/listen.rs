//! `smile listen`: a server's webhooks on a developer's laptop. Opens a listen session (a
//! subscription whose attempts the server hands to this process), forwards each signed request
//! to the local URL unchanged, reports the local answer back into the attempt log, and prints
//! one line per event. The session, and its subscription, end with the process.

use crate::remote::{Remote, RemoteArgs};
use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ListenArgs {
    /// The local URL each event is POSTed to, e.g. http://localhost:3000/webhooks.
    #[arg(long)]
    pub forward_to: String,
    /// Only these event types (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub events: Vec<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// How long the local URL has to answer.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of the local answer reported into the attempt log.
const KEPT_RESPONSE: usize = 512;

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let target = url::Url::parse(&args.forward_to)
        .with_context(|| format!("--forward-to: `{}` is not a URL", args.forward_to))?;
    if !matches!(target.scheme(), "http" | "https") {
        bail!("--forward-to must be an http:// or https:// URL");
    }
    let remote = Arc::new(Remote::new(&args.remote)?);
    let mut request = json!({});
    if !args.events.is_empty() {
        request["eventTypes"] = json!(args.events);
    }
    let session = remote.call(Method::POST, "/v1/listen", Some(&request)).await?;
    let id = session["sessionId"].as_str().context("the server named no session")?.to_owned();
    println!("Ready: forwarding {}'s events to {target} (session {id}).", remote.server());
    println!(
        "Signing secret for this session: {} (Standard Webhooks: {}). Ctrl-C to stop.",
        session["secret"].as_str().unwrap_or("?"),
        session["standardSecret"].as_str().unwrap_or("?")
    );
    let local = reqwest::Client::builder().timeout(LOCAL_TIMEOUT).no_proxy().build().context("HTTP client")?;
    let polled = tokio::select! {
        polled = poll(remote.clone(), &id, target.to_string(), local) => polled,
        _ = crate::stop_signal() => Ok(()),
    };
    // Ending the session deletes its subscription at once; if this fails, the server ends it
    // when the polls stop.
    if let Err(error) = remote.call(Method::DELETE, &format!("/v1/listen/{id}"), None).await {
        eprintln!("could not end the session ({error:#}); the server ends it when it stops hearing from us");
    }
    polled
}

/// Takes attempts from the session until it ends; each is forwarded in a task of its own.
async fn poll(remote: Arc<Remote>, id: &str, target: String, local: reqwest::Client) -> anyhow::Result<()> {
    let mut failures = 0u32;
    loop {
        match remote.call(Method::GET, &format!("/v1/listen/{id}/next?waitSeconds=25"), None).await {
            Ok(Value::Null) => failures = 0,
            Ok(request) => {
                failures = 0;
                let (remote, id, target, local) = (remote.clone(), id.to_owned(), target.clone(), local.clone());
                tokio::spawn(async move { forward(&remote, &id, &target, &local, request).await });
            }
            Err(error) if error.to_string().contains("MISSING_RESOURCE") => {
                bail!("the server ended the session: {error:#}");
            }
            Err(error) => {
                failures += 1;
                let pause = Duration::from_millis(250 << failures.min(5));
                eprintln!("{error:#}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Forwards one attempt to the local URL, exactly as signed, reports what it answered, and
/// prints one line.
async fn forward(remote: &Remote, id: &str, target: &str, local: &reqwest::Client, request: Value) {
    let body = request["body"].as_str().unwrap_or_default().to_owned();
    let event_type = serde_json::from_str::<Value>(&body).ok().and_then(|e| e["type"].as_str().map(str::to_owned));
    let mut post = local.post(target);
    for (name, value) in request["headers"].as_object().into_iter().flatten() {
        if let Some(value) = value.as_str() {
            post = post.header(name.as_str(), value);
        }
    }
    let started = Instant::now();
    let (status, response_body, error) = match post.body(body).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (Some(status), Some(text.chars().take(KEPT_RESPONSE).collect::<String>()), None)
        }
        Err(e) => (None, None, Some(describe(&e))),
    };
    let latency = started.elapsed();
    let report = json!({
        "token": request["token"],
        "status": status,
        "latencyMs": latency.as_millis() as u64,
        "responseBody": response_body,
        "error": error,
    });
    let reported = remote.call(Method::POST, &format!("/v1/listen/{id}/results"), Some(&report)).await;
    let shown = match (status, &error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => format!("failed: {error}"),
        (None, None) => "failed".to_owned(),
    };
    println!(
        "{}  {:<32}  {}  {}  {} ms",
        smile_core::timefmt::format_ms(smile_core::timefmt::now_ms()),
        event_type.as_deref().unwrap_or("?"),
        request["eventId"].as_str().unwrap_or("?"),
        shown,
        latency.as_millis()
    );
    if let Err(error) = reported {
        eprintln!("could not report the result to the server ({error:#}); it will send the event again");
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    if error.is_connect() {
        return "connection refused or unreachable".to_owned();
    }
    error.to_string()
}
