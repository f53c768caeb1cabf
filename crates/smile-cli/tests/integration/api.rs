//! The subscription, event and catalog endpoints, and what they do with bad input.

use crate::support::*;
use serde_json::{Value, json};

fn assert_envelope_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["requestId"].as_str().is_some_and(|r| r.len() == 36), "{body}");
}

on_both_backends! {
async fn subscriptions_follow_the_contract() {
    let server = TestServer::start().await;
    let api = &server.sandbox;
    let request = json!({"name": "Event Notification Postback", "url": "https://webhook.example.com/smile",
        "eventTypes": ["ACCOUNT_CONNECTED", "IDENTITY_ADDED"], "active": true, "secret": "a little secret"});
    let (status, created) = api.post("/v1/webhooks", request).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["code"], "OK");
    assert_eq!(created["message"], "Success");
    let sub = &created["data"];
    let id = sub["id"].as_str().expect("id");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    for field in ["createdAt", "updatedAt"] {
        assert!(
            sub[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "{field}"
        );
    }
    assert_eq!(
        sub["eventTypes"],
        json!(["ACCOUNT_CONNECTED", "IDENTITY_ADDED"])
    );
    assert_eq!(sub["active"], true);
    assert_eq!(sub["secret"], "a little secret");
    assert_eq!(sub["includePayload"], false);

    let (status, got) = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["data"], created["data"]);

    let (status, patched) = api
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"name": "renamed", "eventTypes": ["ALL_EVENTS"]}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["name"], "renamed");
    assert_eq!(patched["data"]["eventTypes"], json!(["ALL_EVENTS"]));
    assert_eq!(patched["data"]["url"], "https://webhook.example.com/smile");

    let (status, deleted) = api.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["code"], "OK");
    let (status, body) = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_envelope_error(status, &body, 404, "MISSING_RESOURCE");
    let (status, body) = api.delete(&format!("/v1/webhooks/{id}")).await;
    assert_envelope_error(status, &body, 404, "MISSING_RESOURCE");
}

async fn lists_page_with_size_and_cursor() {
    let server = TestServer::start().await;
    let api = &server.sandbox;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            api.subscribe(&format!("https://example.com/{i}"), &["USER_CREATED"], "s")
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/webhooks?size=2&cursor={c}"),
            None => "/v1/webhooks?size=2".to_owned(),
        };
        let (status, body) = api.get(&path).await;
        assert_eq!(status, 200, "{body}");
        let items = body["data"]["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|s| s["id"].as_str().expect("id").to_owned()),
        );
        match body["data"].get("nextCursor") {
            Some(c) => cursor = Some(c.as_str().expect("nextCursor is a string (Smile's spec)").to_owned()),
            None => break, // the last page leaves it out rather than sending null
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    for bad in ["size=0", "size=151", "size=ten", "cursor=abc"] {
        let (status, body) = api.get(&format!("/v1/webhooks?{bad}")).await;
        assert_envelope_error(status, &body, 400, "INVALID_PARAMETERS");
    }
}

async fn delete_cancels_pending_deliveries() {
    let server = TestServer::with(|o| {
        o.delivery.retry_schedule = vec![std::time::Duration::from_secs(3600)]
    })
    .await;
    let receiver = Receiver::scripted(vec![Reply::Status(500)]).await;
    let operator = server.operator().await;
    let sub = server
        .sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    let event = user_created(&operator).await;
    receiver.wait_hits(1).await;
    eventually(
        std::time::Duration::from_secs(10),
        "a pending retry",
        || async {
            let (_, body) = server
                .sandbox
                .get(&format!("/v1/events/{event}/deliveries"))
                .await;
            (body["data"]["items"][0]["status"] == "PENDING"
                && body["data"]["items"][0]["attemptCount"] == 1)
                .then_some(())
        },
    )
    .await;
    server.sandbox.delete(&format!("/v1/webhooks/{sub}")).await;
    let (_, body) = server
        .sandbox
        .get(&format!("/v1/events/{event}/deliveries"))
        .await;
    assert_eq!(body["data"]["items"][0]["status"], "CANCELLED");
}

async fn events_are_listed_filtered_and_read_back() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let created = publish(
        &operator,
        "default",
        "SANDBOX",
        "USER_CREATED",
        json!({"userId": "u1"}),
    )
    .await;
    let connected = publish(
        &operator,
        "default",
        "SANDBOX",
        "ACCOUNT_CONNECTED",
        account_connected("u1"),
    )
    .await;

    let (status, body) = server.sandbox.get("/v1/events").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![connected.as_str(), created.as_str()]);

    let (_, body) = server.sandbox.get("/v1/events?type=USER_CREATED").await;
    assert_eq!(body["data"]["items"].as_array().expect("items").len(), 1);
    assert_eq!(body["data"]["items"][0]["id"], created.as_str());

    let today = &smile_core::timefmt::format_ms(smile_core::timefmt::now_ms())[..10];
    let (_, body) = server
        .sandbox
        .get(&format!("/v1/events?startDate={today}&endDate={today}"))
        .await;
    assert_eq!(body["data"]["items"].as_array().expect("items").len(), 2);
    let (_, body) = server.sandbox.get("/v1/events?endDate=2020-01-01").await;
    assert_eq!(body["data"]["items"].as_array().expect("items").len(), 0);

    let (status, body) = server.sandbox.get(&format!("/v1/events/{connected}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["type"], "ACCOUNT_CONNECTED");
    assert_eq!(body["data"]["version"], 1);
    assert_eq!(body["data"]["data"], account_connected("u1"));

    for bad in ["type=NOPE", "startDate=yesterday"] {
        let (status, body) = server.sandbox.get(&format!("/v1/events?{bad}")).await;
        assert_envelope_error(status, &body, 400, "INVALID_PARAMETERS");
    }
    let (status, body) = server.sandbox.get("/v1/events/et-doesnotexist").await;
    assert_envelope_error(status, &body, 404, "MISSING_RESOURCE");
}

async fn the_catalog_serves_every_type_with_a_schema() {
    let server = TestServer::start().await;
    let (status, body) = server.sandbox.get("/v1/eventTypes").await;
    assert_eq!(status, 200);
    let items = body["data"]["items"].as_array().expect("items");
    assert_eq!(items.len(), smile_core::EventType::ALL.len());
    let connected = items
        .iter()
        .find(|t| t["type"] == "ACCOUNT_CONNECTED")
        .expect("ACCOUNT_CONNECTED");
    assert!(
        connected["schema"]["required"]
            .as_array()
            .expect("required")
            .contains(&json!("loginName"))
    );
    assert_eq!(connected["deprecated"], false);
    let updated = items
        .iter()
        .find(|t| t["type"] == "INCOMES_UPDATED")
        .expect("INCOMES_UPDATED");
    assert_eq!(updated["deprecated"], true);
    assert!(
        items
            .iter()
            .any(|t| t["type"] == "TASK_FINISHED" && t["carriesPayload"] == true)
    );
}

async fn operator_publish_checks_its_input() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let cases = [
        (
            json!({"tenantId": "default", "mode": "SANDBOX", "type": "NOT_A_TYPE", "data": {}}),
            400,
            "INVALID_PARAMETERS",
        ),
        (
            json!({"tenantId": "default", "mode": "SANDBOX", "type": "ACCOUNT_CONNECTED", "data": {"userId": "u"}}),
            400,
            "INVALID_PARAMETERS",
        ),
        (
            json!({"tenantId": "default", "mode": "SANDBOX", "type": "INCOMES_ADDED", "data": {"userId": "u", "accountId": "a", "count": "3", "providers": []}}),
            400,
            "INVALID_PARAMETERS",
        ),
        (
            json!({"tenantId": "default", "mode": "STAGING", "type": "USER_CREATED", "data": {"userId": "u"}}),
            400,
            "INVALID_PARAMETERS",
        ),
        (
            json!({"tenantId": "nobody", "mode": "SANDBOX", "type": "USER_CREATED", "data": {"userId": "u"}}),
            404,
            "MISSING_RESOURCE",
        ),
    ];
    for (request, status_want, code) in cases {
        let (status, body) = operator.post("/v1/operator/events", request.clone()).await;
        assert_envelope_error(status, &body, status_want, code);
    }
    let (_, body) = server.sandbox.get("/v1/events").await;
    assert_eq!(body["data"]["items"], json!([]), "nothing was written");
    let (status, body) = server
        .sandbox
        .post("/v1/operator/events", json!({"tenantId": "default", "mode": "SANDBOX", "type": "USER_CREATED", "data": {"userId": "u"}}))
        .await;
    assert_envelope_error(status, &body, 403, "UNAUTHORIZED_ACCESS");
}

async fn bad_input_gets_a_4xx_envelope_and_writes_nothing() {
    let server = TestServer::with(|o| o.max_body_bytes = 16 * 1024).await;
    let api = &server.sandbox;
    let valid = json!({"name": "n", "url": "https://example.com/hook", "eventTypes": ["USER_CREATED"], "active": true, "secret": "s"});
    let with = |field: &str, value: Value| {
        let mut v = valid.clone();
        v[field] = value;
        v
    };
    let without = |field: &str| {
        let mut v = valid.clone();
        v.as_object_mut().expect("object").remove(field);
        v
    };
    let cases = vec![
        ("missing secret", without("secret")),
        ("missing active", without("active")),
        ("name too long", with("name", json!("n".repeat(201)))),
        ("empty name", with("name", json!(""))),
        (
            "url too long",
            with(
                "url",
                json!(format!("https://example.com/{}", "a".repeat(500))),
            ),
        ),
        ("not a url", with("url", json!("example.com/hook"))),
        ("ftp url", with("url", json!("ftp://example.com/hook"))),
        ("secret too long", with("secret", json!("s".repeat(65)))),
        (
            "unknown event type",
            with("eventTypes", json!(["USER_CREATED", "SOMETHING_ELSE"])),
        ),
        ("no event types", with("eventTypes", json!([]))),
        ("active as string", with("active", json!("yes"))),
        (
            "eventTypes as string",
            with("eventTypes", json!("USER_CREATED")),
        ),
        ("body is an array", json!([1, 2])),
    ];
    for (what, body) in cases {
        let (status, response) = api.post("/v1/webhooks", body).await;
        assert_eq!(status, 400, "{what}: {response}");
        assert_eq!(response["code"], "INVALID_PARAMETERS", "{what}");
    }
    let (status, body) = api
        .raw(
            reqwest::Method::POST,
            "/v1/webhooks",
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_envelope_error(status, &body, 400, "INVALID_PARAMETERS");
    let (status, body) = api
        .raw(
            reqwest::Method::POST,
            "/v1/webhooks",
            "text/plain",
            b"hello".to_vec(),
        )
        .await;
    assert_envelope_error(status, &body, 415, "UNSUPPORTED_TYPE");
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(32 * 1024));
    let (status, body) = api
        .raw(
            reqwest::Method::POST,
            "/v1/webhooks",
            "application/json",
            huge.into_bytes(),
        )
        .await;
    assert_envelope_error(status, &body, 413, "INVALID_PARAMETERS");
    let (status, body) = api.get("/v1/nothing-here").await;
    assert_envelope_error(status, &body, 404, "MISSING_RESOURCE");
    let (status, body) = api.call(reqwest::Method::PUT, "/v1/webhooks", None).await;
    assert_envelope_error(status, &body, 405, "UNSUPPORTED_METHOD");
    let (status, body) = api.get(&format!("/v1/webhooks/{}", "x".repeat(201))).await;
    assert_envelope_error(status, &body, 400, "INVALID_PARAMETERS");
    let (status, body) = api.patch("/v1/webhooks/abc", json!({"bogus": 1})).await;
    assert_envelope_error(status, &body, 400, "INVALID_PARAMETERS");

    let (_, list) = api.get("/v1/webhooks").await;
    assert_eq!(
        list["data"]["items"],
        json!([]),
        "no half-made subscription"
    );

    // A bad PATCH changes nothing either.
    let id = api
        .subscribe("https://example.com/ok", &["USER_CREATED"], "s")
        .await;
    let (status, _) = api
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"name": "changed", "url": "nope"}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, got) = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(got["data"]["name"], "test");
}

async fn nul_and_control_characters_get_400_never_a_server_error() {
    let server = TestServer::start().await;
    let api = &server.sandbox;
    let operator = server.operator().await;
    let valid = json!({"name": "n", "url": "https://example.com/hook", "eventTypes": ["USER_CREATED"], "active": true, "secret": "s"});
    let with = |field: &str, value: &str| {
        let mut v = valid.clone();
        v[field] = json!(value);
        v
    };
    let sub = api.subscribe("https://example.com/hook", &["ALL_EVENTS"], "s").await;
    let mut bodies = vec![
        ("POST", "/v1/webhooks".to_owned(), with("name", "a\u{0}b")),
        ("POST", "/v1/webhooks".to_owned(), with("name", "line\nbreak")),
        ("POST", "/v1/webhooks".to_owned(), with("name", "bell\u{7}")),
        ("POST", "/v1/webhooks".to_owned(), with("secret", "s\u{0}")),
        ("POST", "/v1/webhooks".to_owned(), with("url", "https://example.com/\u{0}")),
        ("POST", "/v1/webhooks".to_owned(), with("url", "https://example.com/a\r\nX-Injected: 1")),
        ("POST", "/v1/webhooks".to_owned(), with("url", "https://exa\tmple.com/hook")),
        ("POST", "/v1/webhooks".to_owned(), with("url", " https://example.com/hook")),
        ("POST", "/v1/webhooks".to_owned(), with("url", "https://example.com/a b")),
        ("POST", "/v1/webhooks".to_owned(), {
            let mut v = valid.clone();
            v["color"] = json!("red");
            v
        }),
        ("PATCH", format!("/v1/webhooks/{sub}"), json!({"name": "x\u{0}"})),
        ("PATCH", format!("/v1/webhooks/{sub}"), json!({"url": "https://example.com/\u{0}"})),
        ("POST", "/v1/users".to_owned(), json!({"email": "a\u{0}@example.com"})),
        ("POST", "/v1/invites".to_owned(), json!({"email": "a\u{0}@example.com"})),
        ("POST", "/v1/users".to_owned(), json!({"\u{0}": 1})),
    ];
    bodies.push(("POST", "/v1/tokens?userId=u%00".to_owned(), json!({})));
    for (method, path, body) in bodies {
        let (status, response) = api.call(method.parse().expect("method"), &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{method} {path} {body}: {response}");
        assert_eq!(response["code"], "INVALID_PARAMETERS", "{method} {path} {body}");
    }
    let (status, response) = operator
        .post("/v1/operator/events", json!({"tenantId": "default", "mode": "SANDBOX", "type": "USER_CREATED", "data": {"userId": "u\u{0}"}}))
        .await;
    assert_eq!(status, 400, "{response}");
    for path in [
        "/v1/webhooks/a%00b",
        "/v1/webhooks/a%00b/deliveries",
        "/v1/events/a%00b",
        "/v1/events?eventType=USER%00",
        "/v1/webhooks?cursor=%00",
        "/v1/deliveries/a%00b",
        "/v1/users/a%00b",
        "/v1/accounts?userId=a%00b",
        "/v1/providers/a%00b",
        "/v1/invites/a%00b/logs",
        "/link/v1/accounts/a%00b",
    ] {
        let (status, response) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {response}");
    }
    // The user of a Basic auth header is never looked up when it cannot be a key.
    let nul_user = Api::new(server.running.addr, "ab\u{0}cd", "secret");
    let (status, response) = nul_user.get("/v1/webhooks").await;
    assert_eq!((status, response["code"].as_str()), (400, Some("INVALID_CREDENTIALS")), "{response}");
}

async fn subscription_urls_are_stored_normalised() {
    let server = TestServer::start().await;
    let api = &server.sandbox;
    let (status, body) = api
        .post("/v1/webhooks", json!({"name": "n", "url": "HTTPS://Example.COM:443/a/../hook?x=1", "eventTypes": ["ALL_EVENTS"], "active": true, "secret": "s"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["url"], "https://example.com/hook?x=1");
    let id = body["data"]["id"].as_str().expect("id");
    let (_, got) = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(got["data"]["url"], "https://example.com/hook?x=1");
}
}

#[tokio::test]
async fn the_api_description_covers_every_route_family() {
    let server = TestServer::start().await;
    let document: Value = reqwest::get(format!("{}/v1/openapi.json", server.sandbox.base))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", document["openapi"]);
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/rotateSecret",
        "/v1/events",
        "/v1/deliveries/{id}/retry",
        "/v1/eventTypes",
        "/v1/egressIps",
        "/v1/operator/events",
        "/v1/users",
        "/v1/invites",
        "/v1/archives",
        "/v1/incomes/{id}",
        "/link/v1/accounts",
    ] {
        assert!(paths.contains_key(path), "{path} is described");
    }
    let create = &document["paths"]["/v1/webhooks"]["post"]["requestBody"];
    assert!(create.is_object(), "request bodies are described");

    // Every `/v1` route the router declares is described (the per-kind data routes are added
    // in a loop, and described the same way).
    let router = include_str!("../../../smile-server/src/routes/mod.rs");
    let declared: Vec<&str> = router
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
        .filter(|path| path.starts_with("/v1/") && *path != "/v1/smile.v1.js")
        .collect();
    assert!(declared.len() > 40, "found the routes: {declared:?}");
    for path in declared {
        assert!(paths.contains_key(path), "{path} is routed but not described");
    }

    // The event catalog: one webhook per type, its envelope and `data` schemas, and every
    // reference in the document resolves.
    for event_type in smile_core::EventType::ALL {
        let name = event_type.as_str();
        let body = &document["webhooks"][name]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(body, &json!(format!("#/components/schemas/{name}.event")), "{name}");
        let data = &document["components"]["schemas"][format!("{name}.data")];
        assert_eq!(data, &resolve_refs_as_catalog(&event_type.data_schema(), &document), "{name}");
    }
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    for target in refs {
        let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{target} points outside"));
        assert!(document["components"]["schemas"].get(name).is_some(), "{target} resolves");
    }
    let failure = &document["paths"]["/v1/webhooks/{id}"]["get"]["responses"]["404"]["content"]["application/json"];
    assert_eq!(failure["schema"]["$ref"], "#/components/schemas/Failure", "errors are the envelope");
}

/// The catalog's schema for a type as the document holds it: definitions moved to the
/// components, references pointed there.
fn resolve_refs_as_catalog(schema: &Value, document: &Value) -> Value {
    let mut schema = schema.clone();
    let object = schema.as_object_mut().expect("an object schema");
    if let Some(definitions) = object.remove("$defs") {
        for (name, definition) in definitions.as_object().expect("definitions") {
            let mut definition = definition.clone();
            repoint(&mut definition);
            assert_eq!(document["components"]["schemas"][name], definition, "{name}");
        }
    }
    object.remove("$schema");
    object.remove("title");
    repoint(&mut schema);
    schema
}

fn repoint(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get_mut("$ref") {
                *target = target.replace("#/$defs/", "#/components/schemas/");
            }
            object.values_mut().for_each(repoint);
        }
        Value::Array(items) => items.iter_mut().for_each(repoint),
        _ => {}
    }
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get("$ref") {
                into.push(target.clone());
            }
            object.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

#[tokio::test]
async fn static_files_are_compressed_and_revalidated_without_a_body() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let base = server.sandbox.base.clone();
    let (_, providers) = server.sandbox.get("/v1/providers?size=20").await;
    let mut paths = vec![
        "/widget/".to_owned(),
        "/widget/widget.js".to_owned(),
        "/widget/widget.css".to_owned(),
        "/v2/smile.v2.js".to_owned(),
    ];
    paths.extend(
        providers["data"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|p| p["logoUrl"].as_str().map(str::to_owned)),
    );
    let mut over_the_wire = 0;
    for path in &paths {
        let first =
            client.get(format!("{base}{path}")).header("accept-encoding", "gzip, br").send().await.expect("answers");
        assert_eq!(first.status(), 200, "{path}");
        let etag = first.headers().get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_owned();
        let encoding = first.headers().get("content-encoding").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = first.bytes().await.expect("body");
        if path.ends_with(".js") || path.ends_with(".css") || path.ends_with('/') {
            assert_eq!(encoding.as_deref(), Some("gzip"), "{path} is compressed");
        }
        over_the_wire += body.len();
        // Opening the widget again: each file is revalidated, and nothing comes back but headers.
        let again = client
            .get(format!("{base}{path}"))
            .header("accept-encoding", "gzip")
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("answers");
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.bytes().await.expect("body").is_empty(), "{path}: a 304 has no body");
    }
    println!("the widget's static files: {over_the_wire} bytes over the wire");
    assert!(over_the_wire <= 15 * 1024, "{over_the_wire} bytes; the budget is 15 KB");
    // A client that does not ask for gzip gets the plain file.
    let plain = client.get(format!("{base}/widget/widget.js")).send().await.expect("answers");
    assert!(plain.headers().get("content-encoding").is_none());
}
