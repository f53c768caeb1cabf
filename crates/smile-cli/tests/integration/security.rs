//! Authentication, tenant and mode isolation, and the SSRF guard.

use crate::support::*;
use serde_json::{Value, json};
use smile_core::Mode;
use std::time::Duration;

on_both_backends! {
async fn credentials_are_checked() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/webhooks", server.sandbox.base);
    let no_auth = client.get(&url).send().await.expect("request");
    assert_eq!(no_auth.status().as_u16(), 400);
    let body: serde_json::Value = no_auth.json().await.expect("json");
    assert_eq!(body["code"], "INVALID_CREDENTIALS");
    let wrong = client
        .get(&url)
        .basic_auth("nobody", Some("nothing"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 400);
    let operator = server.operator().await;
    let (status, body) = operator.get("/v1/webhooks").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "UNAUTHORIZED_ACCESS");
}

async fn tenants_and_modes_see_only_their_own() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let a = server.sandbox.clone();
    let b = server.key("tenant-b", Mode::Sandbox).await;
    let a_production = server.key("default", Mode::Production).await;
    let receiver = Receiver::start().await;
    let sub = a.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let event = user_created(&operator).await;
    let delivery = receiver.wait_hits(1).await;
    assert_eq!(delivery.len(), 1);
    let (_, deliveries) = a.get(&format!("/v1/events/{event}/deliveries")).await;
    let delivery_id = deliveries["data"]["items"][0]["id"]
        .as_str()
        .expect("delivery")
        .to_owned();

    for other in [&b, &a_production] {
        for path in [
            format!("/v1/webhooks/{sub}"),
            format!("/v1/webhooks/{sub}/deliveries"),
            format!("/v1/events/{event}"),
            format!("/v1/events/{event}/deliveries"),
            format!("/v1/deliveries/{delivery_id}"),
        ] {
            let (status, body) = other.get(&path).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(body["code"], "MISSING_RESOURCE");
        }
        let (status, _) = other
            .patch(&format!("/v1/webhooks/{sub}"), json!({"name": "mine now"}))
            .await;
        assert_eq!(status, 404);
        for path in [
            format!("/v1/webhooks/{sub}/test"),
            format!("/v1/webhooks/{sub}/rotateSecret"),
            format!("/v1/deliveries/{delivery_id}/retry"),
        ] {
            let (status, _) = other.post_empty(&path).await;
            assert_eq!(status, 404, "{path}");
        }
        let (status, _) = other
            .post(
                &format!("/v1/webhooks/{sub}/recover"),
                json!({"since": "2020-01-01"}),
            )
            .await;
        assert_eq!(status, 404);
        let (status, _) = other.delete(&format!("/v1/webhooks/{sub}")).await;
        assert_eq!(status, 404);
        let (_, list) = other.get("/v1/webhooks").await;
        assert_eq!(list["data"]["items"], json!([]));
        let (_, list) = other.get("/v1/events").await;
        assert_eq!(list["data"]["items"], json!([]));
    }
    let (_, still) = a.get(&format!("/v1/webhooks/{sub}")).await;
    assert_eq!(still["data"]["name"], "test", "untouched by the others");
    assert_eq!(
        receiver.hits().len(),
        1,
        "no test send or replay by the others"
    );

    // Events of another tenant or mode never reach this tenant's subscriptions.
    publish(
        &operator,
        "tenant-b",
        "SANDBOX",
        "USER_CREATED",
        json!({"userId": "u"}),
    )
    .await;
    publish(
        &operator,
        "default",
        "PRODUCTION",
        "USER_CREATED",
        json!({"userId": "u"}),
    )
    .await;
    let marker = user_created(&operator).await;
    let hits = receiver.wait_hits(2).await;
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].header("webhook-id"), marker);
}

async fn production_requires_https_and_refuses_internal_addresses() {
    let server = TestServer::start().await;
    let production = server.key("default", Mode::Production).await;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.8/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
        // Forms an earlier guard let through at create.
        "https://[::127.0.0.1]/hook",
        "https://[::ffff:0:127.0.0.1]/hook",
        "https://[64:ff9b::a9fe:a9fe]/hook",
        "https://[2002:a9fe:a9fe::1]/hook",
        "https://[fec0::1]/hook",
        "https://192.0.2.1/hook",
        "https://198.18.0.1/hook",
        "https://192.0.0.1/hook",
        "https://2130706433/hook",
        "https://0x7f.1/hook",
    ] {
        let (status, body) = production
            .post("/v1/webhooks", json!({"name": "n", "url": url, "eventTypes": ["ALL_EVENTS"], "active": true, "secret": "s"}))
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["code"], "INVALID_PARAMETERS");
    }
    // Sandbox takes plain http and loopback, for local development.
    server
        .sandbox
        .subscribe("http://127.0.0.1:9/hook", &["ALL_EVENTS"], "s")
        .await;
}

async fn production_deliveries_to_names_that_resolve_internally_are_blocked_at_connect() {
    let ca = TestCa::new();
    let receiver = Receiver::tls(&ca).await;
    let ca_file = ca.pem_file();
    let path = ca_file.path().to_owned();
    let server = TestServer::with(move |o| o.delivery.egress.extra_ca = vec![path]).await;
    let operator = server.operator().await;
    let production = server.key("default", Mode::Production).await;
    // `localhost` passes the create-time check (it is a name) but resolves to loopback.
    let sub = production
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    publish(
        &operator,
        "default",
        "PRODUCTION",
        "USER_CREATED",
        json!({"userId": "u"}),
    )
    .await;
    let delivery = eventually(
        std::time::Duration::from_secs(10),
        "a failed delivery",
        || async {
            production
                .deliveries(&sub)
                .await
                .into_iter()
                .find(|d| d["status"] == "FAILED")
        },
    )
    .await;
    let error = delivery["attempts"][0]["error"].as_str().expect("error");
    assert!(
        error.contains("SSRF guard") && error.contains("loopback"),
        "{error}"
    );
    assert!(
        receiver.hits().is_empty(),
        "no request reached the internal address"
    );

    // An operator allow-list lets the same delivery through.
    let ca_file2 = ca.pem_file();
    let path2 = ca_file2.path().to_owned();
    let allowed = TestServer::with(move |o| {
        o.delivery.egress.extra_ca = vec![path2];
        o.delivery.egress.ssrf_allow = vec!["127.0.0.0/8".parse().expect("net")];
    })
    .await;
    let operator = allowed.operator().await;
    let production = allowed.key("default", Mode::Production).await;
    production
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    publish(
        &operator,
        "default",
        "PRODUCTION",
        "USER_CREATED",
        json!({"userId": "u"}),
    )
    .await;
    receiver.wait_hits(1).await;
}

async fn requests_over_the_rate_limit_get_429_on_every_node() {
    const LIMIT: u32 = 5;
    let server = TestServer::with(|o| o.rate_limit.per_second = LIMIT).await;
    let mut apis = vec![server.sandbox.clone()];
    // On PostgreSQL a second node shares the database, and so the count.
    let mut second = None;
    if let Some(url) = server.database_url.clone() {
        let dir = tempfile::tempdir().expect("dir");
        let mut options = fast_options(dir.path());
        options.database_url = Some(url);
        options.rate_limit.per_second = LIMIT;
        let node = smile_server::start(options).await.expect("second node");
        apis.push(server.sandbox.on(node.addr));
        second = Some((node, dir));
    }
    let started = smile_core::timefmt::now_ms() / 1000;
    let (mut accepted, mut limited) = (0u32, 0u32);
    for i in 0..30 {
        let (status, body) = apis[i % apis.len()].get("/v1/webhooks").await;
        match status {
            200 => accepted += 1,
            429 => {
                assert_eq!(body["code"], "REQUEST_LIMIT_EXCEEDED");
                limited += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let windows = (smile_core::timefmt::now_ms() / 1000 - started + 1) as u32;
    assert!(limited > 0, "some requests were limited");
    assert!(accepted <= windows * LIMIT, "{accepted} accepted in {windows} one-second windows, all nodes together");
    drop(second);
}
}

#[tokio::test]
async fn demo_inboxes_are_per_session_and_unguessable() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let base = server.sandbox.base.clone();
    // The shared inbox of old is gone.
    let old = client.get(format!("{base}/demo/hooks")).send().await.expect("answers");
    assert_eq!(old.status(), 404);
    // Making an inbox takes a key.
    let anonymous = client.post(format!("{base}/demo/inboxes")).send().await.expect("answers");
    assert_eq!(anonymous.status(), 400);
    let (status, one) = server.sandbox.post_empty("/demo/inboxes").await;
    assert_eq!(status, 201, "{one}");
    let (_, two) = server.sandbox.post_empty("/demo/inboxes").await;
    let (one, two) = (one["data"]["id"].as_str().expect("id"), two["data"]["id"].as_str().expect("id"));
    assert!(one.len() >= 64 && one != two, "{one} {two}");
    let sub = server.sandbox.subscribe(&format!("{base}/demo/hooks/{one}"), &["ALL_EVENTS"], "s").await;
    let (status, _) = server.sandbox.post_empty(&format!("/v1/webhooks/{sub}/test")).await;
    assert_eq!(status, 200);
    let got = eventually(Duration::from_secs(10), "the delivery in its inbox", || async {
        let inbox: Value = client.get(format!("{base}/demo/hooks/{one}")).send().await.ok()?.json().await.ok()?;
        let items = inbox["data"]["items"].as_array()?.clone();
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert!(got[0]["signature"].as_str().is_some_and(|s| !s.is_empty()));
    let other: Value =
        client.get(format!("{base}/demo/hooks/{two}")).send().await.expect("answers").json().await.expect("json");
    assert_eq!(other["data"]["items"].as_array().map(Vec::len), Some(0), "another session sees nothing of it");
    let unknown = client.get(format!("{base}/demo/hooks/inbox_guess")).send().await.expect("answers");
    assert_eq!(unknown.status(), 404);
    let posted = client.post(format!("{base}/demo/hooks/inbox_guess")).body("{}").send().await.expect("answers");
    assert_eq!(posted.status(), 404);
}

#[tokio::test]
async fn static_files_are_not_rate_limited_and_operators_have_a_limit_of_their_own() {
    const LIMIT: u32 = 3;
    let server = TestServer::with(|o| o.rate_limit.per_second = LIMIT).await;
    let client = reqwest::Client::new();
    let base = server.sandbox.base.clone();
    let (_, providers) = server.sandbox.get("/v1/providers?size=20").await;
    let logos: Vec<String> = providers["data"]["items"]
        .as_array()
        .expect("providers")
        .iter()
        .filter_map(|p| p["logoUrl"].as_str().map(str::to_owned))
        .collect();
    assert!(logos.len() >= 11, "{providers}");
    // A widget page loads its scripts and a dozen logos at once.
    let mut paths =
        vec!["/widget/".to_owned(), "/widget/widget.js".to_owned(), "/v2/smile.v2.js".to_owned(), "/demo".to_owned()];
    paths.extend(logos.into_iter().take(11));
    for path in &paths {
        let response = client.get(format!("{base}{path}")).send().await.expect("answers");
        assert_eq!(response.status(), 200, "{path}");
    }
    // The API is still limited.
    let mut limited = 0;
    for _ in 0..(LIMIT * 3) {
        let (status, _) = server.sandbox.get("/v1/webhooks").await;
        limited += u32::from(status == 429);
    }
    assert!(limited > 0, "API requests over the limit get 429");
    // Operator endpoints are not limited by default…
    let operator = server.operator().await;
    for _ in 0..(LIMIT * 3) {
        user_created(&operator).await;
    }
    // …and have a limit of their own when one is set.
    let limited_operators = TestServer::with(|o| o.rate_limit.operator_per_second = 2).await;
    let operator = limited_operators.operator().await;
    let mut refused = 0;
    for _ in 0..10 {
        let (status, _) = operator
            .post(
                "/v1/operator/events",
                json!({"tenantId": "default", "mode": "SANDBOX", "type": "USER_CREATED", "data": {"userId": "u"}}),
            )
            .await;
        refused += u32::from(status == 429);
    }
    assert!(refused > 0, "the operator limit applies");
}
