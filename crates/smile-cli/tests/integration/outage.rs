//! The database going away under a running node: requests answer 503 with Retry-After (so
//! clients know to retry), and the node serves again once the database is back.

use crate::support::*;
use serde_json::json;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones.
pub(crate) struct Proxy {
    pub addr: std::net::SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, watching) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut up = watching.clone();
                if !*up.borrow() {
                    continue; // dropped: the connection closes at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = up.wait_for(|up| !up) => {}
                    }
                });
            }
        });
        Proxy { addr, up }
    }

    /// A proxy in front of the database of `url`, and the URL that goes through it.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let target = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).expect("host:port").to_owned();
        let proxy = Proxy::start(target.clone()).await;
        let proxied = url.replacen(&target, &proxy.addr.to_string(), 1);
        (proxy, proxied)
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[tokio::test]
async fn a_database_outage_answers_503_with_retry_after_and_recovers() {
    let Some(Backend::Postgres(url)) = Backend::postgres().await else {
        return;
    };
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let server = TestServer::with(|options| options.database_url = Some(proxied)).await;
    let api = &server.sandbox;
    let operator = server.operator().await;
    let (status, _) = api.get("/v1/webhooks").await;
    assert_eq!(status, 200);

    proxy.set_up(false);
    let (status, body) = eventually(Duration::from_secs(15), "a read answers 503", || async {
        let (status, body) = api.get("/v1/webhooks").await;
        (status != 200).then_some((status, body))
    })
    .await;
    assert_eq!((status, body["code"].as_str()), (503, Some("SERVER_UNAVAILABLE")), "a read: {body}");
    let (status, body) = operator.post("/v1/operator/events", publish_body()).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("SERVER_UNAVAILABLE")), "a publish: {body}");
    let raw = reqwest::Client::new()
        .get(format!("{}/v1/webhooks", api.base))
        .basic_auth(api.key_id(), Some(api.key_secret()))
        .send()
        .await
        .expect("answers");
    assert_eq!(raw.status(), 503);
    assert_eq!(raw.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));

    proxy.set_up(true);
    eventually(Duration::from_secs(15), "the node serves again once the database is back", || async {
        let (status, _) = api.get("/v1/webhooks").await;
        (status == 200).then_some(())
    })
    .await;
    let (status, body) = operator.post("/v1/operator/events", publish_body()).await;
    assert_eq!(status, 200, "{body}");
}

fn publish_body() -> serde_json::Value {
    json!({"tenantId": "default", "mode": "SANDBOX", "type": "USER_CREATED", "data": {"userId": "u"}})
}
