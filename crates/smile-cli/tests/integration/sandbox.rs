//! The sandbox platform: each flow over real HTTP, asserting the API state and the signed
//! webhooks a real receiver got.

use crate::support::*;
use serde_json::{Value, json};
use smile_core::EventType;
use std::time::Duration;

/// Every event's `data` has its type's shape, and `createdAt` never goes back.
fn assert_well_formed(receiver: &Receiver) {
    let mut last = String::new();
    for hit in receiver.hits() {
        let event = hit.json();
        let t = EventType::from_name(event["type"].as_str().expect("type")).expect("a catalog type");
        t.validate_data(&event["data"]).unwrap_or_else(|e| panic!("{t}: {e}: {}", event["data"]));
        let created = event["createdAt"].as_str().expect("createdAt").to_owned();
        assert!(created >= last, "createdAt went back: {last} then {created}");
        last = created;
    }
}

fn types(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

on_both_backends! {
async fn users_and_link_tokens_follow_the_contract() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["USER_CREATED"], "s").await;
    let (status, body) = server.sandbox.post("/v1/users", json!({"externalMetadata": {"crmId": "C-42"}})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["code"], "OK");
    let user = &body["data"]["user"];
    let id = user["id"].as_str().expect("id");
    let (tenant, hex) = id.split_once('-').expect("<tenant>-<hex>");
    assert_eq!(tenant, "default");
    assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(user["externalMetadata"], json!({"crmId": "C-42"}));
    let token = &body["data"]["token"];
    assert_eq!(token["mode"], "SANDBOX");
    assert!(token["accessToken"].as_str().is_some_and(|t| t.len() >= 32));
    assert!(token["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let got = wait_for_event(&receiver, "USER_CREATED").await;
    assert_eq!(got[0].1, json!({"userId": id}));
    let (status, listed) = server.sandbox.get("/v1/users").await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"]["items"][0]["id"], id);
    let (status, one) = server.sandbox.get(&format!("/v1/users/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["data"]["id"], id);

    let (status, fresh) = server.sandbox.post_empty(&format!("/v1/tokens?userId={id}")).await;
    assert_eq!(status, 201, "{fresh}");
    assert_ne!(fresh["data"]["accessToken"], token["accessToken"]);
    let link = Link::new(&server.sandbox, fresh["data"]["accessToken"].as_str().expect("token"));
    let (status, session) = link.get("/link/v1/session").await;
    assert_eq!(status, 200);
    assert_eq!(session["data"], json!({"userId": id, "mode": "SANDBOX", "frame": "sandbox.default"}));

    let (status, body) = server.sandbox.post_empty("/v1/tokens?userId=default-nobody").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("MISSING_RESOURCE")));
    let (status, _) = server.sandbox.post_empty("/v1/tokens").await;
    assert_eq!(status, 400);
    for bad in [
        json!({"externalMetadata": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"}}),
        json!({"externalMetadata": {"nested": {"x": 1}}}),
        json!({"externalMetadata": {"k": "é"}}),
    ] {
        let (status, body) = server.sandbox.post("/v1/users", bad).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{body}");
    }
    let (_, listed) = server.sandbox.get("/v1/users").await;
    assert_eq!(listed["data"]["items"].as_array().expect("items").len(), 1, "no half-made user");
}

async fn link_tokens_expire_and_refresh() {
    let server = TestServer::with(|o| o.token_ttl = Duration::from_millis(400)).await;
    let (user, link) = new_user(&server.sandbox).await;
    assert_eq!(link.get("/link/v1/session").await.0, 200);
    let expired = eventually(Duration::from_secs(5), "the token to expire", || async {
        let (status, body) = link.get("/link/v1/session").await;
        (status == 401).then_some(body)
    })
    .await;
    assert_eq!(expired["code"], "INVALID_TOKEN");
    let (status, _) = link.post("/link/v1/accounts", json!({"providerId": "sss", "username": "x", "password": "y"})).await;
    assert_eq!(status, 401);
    let (_, fresh) = server.sandbox.post_empty(&format!("/v1/tokens?userId={user}")).await;
    let refreshed = Link::new(&server.sandbox, fresh["data"]["accessToken"].as_str().expect("token"));
    assert_eq!(refreshed.get("/link/v1/session").await.0, 200);
    let (_, accounts) = server.sandbox.get("/v1/accounts").await;
    assert_eq!(accounts["data"]["items"], json!([]), "an expired token made nothing");
}

async fn connecting_with_mfa_syncs_data_and_sends_every_event_in_order() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let with_payload = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let (status, _) = server
        .sandbox
        .post("/v1/webhooks", json!({"name": "p", "url": with_payload.url(), "eventTypes": ["TASK_FINISHED"],
            "active": true, "secret": "s", "includePayload": true}))
        .await;
    assert_eq!(status, 200);
    let (user, link) = new_user(&server.sandbox).await;

    let pending = link.connect("grab", "gpalomero1234@smileapi.io", "123456").await;
    assert_eq!(pending["connectionStatus"], "AWAITING_MFA");
    let account = pending["id"].as_str().expect("account id").to_owned();
    assert!(account.starts_with("a-"));
    let (status, connected) = link.post(&format!("/link/v1/accounts/{account}/mfa"), json!({"code": "1234"})).await;
    assert_eq!(status, 200, "{connected}");
    assert_eq!(connected["data"]["connectionStatus"], "CONNECTED");

    let got = wait_for_event(&receiver, "TASK_FINISHED").await;
    assert_eq!(
        types(&got),
        vec!["USER_CREATED", "ACCOUNT_CREATED", "ACCOUNT_CONNECTED", "TASK_STARTED", "IDENTITY_ADDED", "INCOMES_ADDED",
            "RATING_ADDED", "TRANSACTIONS_ADDED", "EINCOMES_ADDED", "INSIGHT_ADDED", "TASK_FINISHED"]
    );
    assert_well_formed(&receiver);
    let data = |t: &str| got.iter().find(|(x, _)| x == t).map(|(_, d)| d.clone()).expect(t);
    assert_eq!(data("ACCOUNT_CREATED"), json!({"userId": user, "accountId": account, "providers": ["grab"]}));
    assert_eq!(data("ACCOUNT_CONNECTED")["loginName"], "gpalomero1234@smileapi.io");
    assert_eq!(data("TASK_STARTED")["taskType"], "LINK_ACCOUNT");
    assert_eq!(data("INCOMES_ADDED")["count"], 12);
    assert_eq!(data("TRANSACTIONS_ADDED")["count"], 30);
    let finished = data("TASK_FINISHED");
    assert_eq!(finished["status"], "SUCCEEDED");
    assert_eq!(finished["datapoints"], json!(["IDENTITIES", "INCOMES", "RATINGS", "TRANSACTIONS", "EINCOMES", "INSIGHTS"]));
    let (_, insights) = server.sandbox.get(&format!("/v1/insights?sourceId={account}")).await;
    assert_eq!(insights["data"]["items"][0]["id"], data("INSIGHT_ADDED")["id"]);
    assert!(finished.get("payload").is_none(), "no payload without includePayload");
    let full = with_payload.wait_hits(1).await.remove(0).json();
    assert_eq!(full["data"]["payload"]["identity"]["firstName"], "George");
    assert_eq!(full["data"]["payload"]["incomes"].as_array().expect("incomes").len(), 12);

    let (_, api_account) = server.sandbox.get(&format!("/v1/accounts/{account}")).await;
    assert_eq!(api_account["data"]["connectionStatus"], "CONNECTED");
    assert_eq!(api_account["data"]["connection"]["status"], "CONNECTED");
    let (_, incomes) = server.sandbox.get(&format!("/v1/incomes?sourceId={account}&size=150")).await;
    let incomes = incomes["data"]["items"].as_array().expect("items").clone();
    assert_eq!(incomes.len(), 12);
    assert!(incomes.iter().all(|i| i["id"].as_str().is_some_and(|id| id.starts_with("inc-"))
        && i["metadata"]["sourceId"] == account.as_str() && i["metadata"]["userId"] == user.as_str()));
    let (_, identities) = server.sandbox.get(&format!("/v1/identities?userId={user}")).await;
    assert_eq!(identities["data"]["items"][0]["fullName"], "George Cimafranca Palomero Jr.");
    let (_, tasks) = server.sandbox.get(&format!("/v1/tasks?sourceId={account}")).await;
    assert_eq!(tasks["data"]["items"][0]["status"], "Finished");
    let (_, users) = server.sandbox.get(&format!("/v1/users/{user}")).await;
    assert_eq!(users["data"]["providers"], json!(["grab"]));
}

async fn failed_logins_and_wrong_codes_fail_the_account() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ACCOUNT_FAILED"], "s").await;
    let (_, link) = new_user(&server.sandbox).await;

    let failed = link.connect("abccorp", "gpalomero1234@smileapi.io", "wrong").await;
    assert_eq!(failed["connectionStatus"], "ERROR");
    assert_eq!(failed["connection"]["errorCode"], "INVALID_CREDENTIALS");
    let got = wait_for_event(&receiver, "ACCOUNT_FAILED").await;
    assert_eq!(got[0].1["errorCode"], "INVALID_CREDENTIALS");
    assert_eq!(got[0].1["errorMessage"], "Invalid username or password!");
    assert_eq!(got[0].1["loginName"], "gpalomero1234@smileapi.io");

    let pending = link.connect("xyzbank", "christina4321@smileapi.io", "YGUS1").await;
    let id = pending["id"].as_str().expect("id");
    let mfa = format!("/link/v1/accounts/{id}/mfa");
    // A wrong code leaves the account waiting, with the tries left; resending starts them over.
    let (_, wrong) = link.post(&mfa, json!({"code": "9999"})).await;
    assert_eq!(wrong["data"]["connectionStatus"], "AWAITING_MFA");
    assert_eq!(wrong["data"]["connection"]["errorCode"], "INVALID_MFA");
    assert_eq!(wrong["data"]["connection"]["mfaAttemptsLeft"], 2);
    let (_, resent) = link.post(&format!("{mfa}/resend"), json!({})).await;
    assert_eq!(resent["data"]["connection"]["mfaAttemptsLeft"], 3);
    assert!(resent["data"]["connection"]["errorCode"].is_null());
    for left in [2, 1] {
        let (_, wrong) = link.post(&mfa, json!({"code": "9999"})).await;
        assert_eq!(wrong["data"]["connection"]["mfaAttemptsLeft"], left);
    }
    // The third wrong code in a row fails the connection.
    let (_, failed) = link.post(&mfa, json!({"code": "9999"})).await;
    assert_eq!(failed["data"]["connectionStatus"], "ERROR");
    assert_eq!(failed["data"]["connection"]["errorCode"], "INVALID_MFA");
    let (status, _) = link.post(&mfa, json!({"code": "1234"})).await;
    assert_eq!(status, 400, "a failed account takes no more codes");

    let (status, body) = link.post("/link/v1/accounts", json!({"providerId": "abccorp"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["connection"]["errorCode"], "AUTH_REQUIRED");
    eventually(Duration::from_secs(10), "three ACCOUNT_FAILED", || async { (events(&receiver).len() == 3).then_some(()) }).await;
    assert_well_formed(&receiver);
}

async fn an_employer_survey_is_kept_for_the_integrator() {
    let server = TestServer::start().await;
    let (user, link) = new_user(&server.sandbox).await;
    let (status, survey) = link.post("/link/v1/employerSurveys", json!({"employerName": "  Jollibee Foods "})).await;
    assert_eq!(status, 200, "{survey}");
    assert_eq!(survey["data"]["employerName"], "Jollibee Foods");
    let (status, _) = link.post("/link/v1/employerSurveys", json!({"employerName": " "})).await;
    assert_eq!(status, 400);
    let (_, listed) = server.sandbox.get("/v1/employerSurveys").await;
    let items = listed["data"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["userId"], user.as_str());
    // Another tenant's key sees none of it.
    let other = server.key("other", smile_core::Mode::Sandbox).await;
    let (_, theirs) = other.get("/v1/employerSurveys").await;
    assert_eq!(theirs["data"]["items"].as_array().map(Vec::len), Some(0));
}

async fn every_account_error_code_can_be_simulated() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ACCOUNT_FAILED"], "s").await;
    let (_, link) = new_user(&server.sandbox).await;
    let codes: Vec<&str> = smile_sandbox::people::ACCOUNT_ERRORS.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes.len(), 16);
    for code in &codes {
        let account = link.connect("sss", smile_sandbox::people::FAILING_LOGIN, code).await;
        assert_eq!(account["connection"]["errorCode"], *code);
        assert_eq!(account["monitorStatus"], "USER_ACTION_REQUIRED");
    }
    let got = eventually(Duration::from_secs(15), "16 ACCOUNT_FAILED", || async {
        let got = events(&receiver);
        (got.len() == 16).then_some(got)
    })
    .await;
    let reported: Vec<&str> = got.iter().map(|(_, d)| d["errorCode"].as_str().expect("code")).collect();
    assert_eq!(reported, codes);
}

async fn revoking_an_account_removes_its_data() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let (_, link) = new_user(&server.sandbox).await;
    let account = link.connect("sss", "3300000008", "123456").await;
    let id = account["id"].as_str().expect("id").to_owned();
    wait_for_event(&receiver, "TASK_FINISHED").await;
    let (_, contributions) = server.sandbox.get(&format!("/v1/contributions?sourceId={id}&size=150")).await;
    assert_eq!(contributions["data"]["items"].as_array().expect("items").len(), 24);

    let (status, revoked) = link.call(reqwest::Method::DELETE, &format!("/link/v1/accounts/{id}"), None).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["data"]["connectionStatus"], "DISCONNECTED");
    let got = wait_for_event(&receiver, "ACCOUNT_DISCONNECTED").await;
    assert_eq!(last_event(&got, "ACCOUNT_DISCONNECTED")["accountId"], id.as_str());
    for path in ["contributions", "identities", "employments", "tasks"] {
        let (_, left) = server.sandbox.get(&format!("/v1/{path}?sourceId={id}")).await;
        assert_eq!(left["data"]["items"], json!([]), "{path} removed");
    }
    let (status, again) = server.sandbox.delete(&format!("/v1/accounts/{id}")).await;
    assert_eq!((status, again["code"].as_str()), (400, Some("INVALID_PARAMETERS")));
    assert_well_formed(&receiver);
}

async fn continuous_sync_providers_resync() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ACCOUNT_SYNC_TASK_FINISHED", "TASK_FINISHED"], "s").await;
    let (_, link) = new_user(&server.sandbox).await;
    let account = link.connect("sss", "gpalomero1234@smileapi.io", "123456").await;
    assert_eq!(account["monitorStatus"], "ACTIVE");
    let id = account["id"].as_str().expect("id");
    wait_for_event(&receiver, "TASK_FINISHED").await;
    let (status, task) = server.sandbox.post_empty(&format!("/v1/accounts/{id}/sync")).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["data"]["type"], "UPDATE_ACCOUNT");
    let got = wait_for_event(&receiver, "ACCOUNT_SYNC_TASK_FINISHED").await;
    let synced = &last_event(&got, "ACCOUNT_SYNC_TASK_FINISHED");
    assert_eq!(synced["monitorStatus"], "ACTIVE");
    assert_eq!(synced["datapoints"], json!(["IDENTITIES", "EMPLOYMENTS", "CONTRIBUTIONS"]));
    let (_, contributions) = server.sandbox.get(&format!("/v1/contributions?sourceId={id}&size=150")).await;
    assert_eq!(contributions["data"]["items"].as_array().expect("items").len(), 24, "replaced, not doubled");

    let other = link.connect("abccorp", "gpalomero1234@smileapi.io", "123456").await;
    let (status, _) = server.sandbox.post_empty(&format!("/v1/accounts/{}/sync", other["id"].as_str().expect("id"))).await;
    assert_eq!(status, 400, "employers do not sync continuously");
}

async fn link_calls_are_checked_and_scoped_to_the_token() {
    let server = TestServer::start().await;
    let (_, alice) = new_user(&server.sandbox).await;
    let (_, bob) = new_user(&server.sandbox).await;
    for (request, why) in [
        (json!({"providerId": "nope", "username": "a", "password": "b"}), "unknown provider"),
        (json!({"providerId": "user-provided", "username": "a", "password": "b"}), "upload-only source"),
        (json!({"provider": "sss"}), "wrong field"),
    ] {
        let (status, body) = alice.post("/link/v1/accounts", request).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{why}: {body}");
    }
    let (_, accounts) = server.sandbox.get("/v1/accounts").await;
    assert_eq!(accounts["data"]["items"], json!([]), "no half-made account");

    let account = alice.connect("lazada", "ryan1234@smileapi.io", "654321").await;
    let id = account["id"].as_str().expect("id");
    assert_eq!(bob.get(&format!("/link/v1/accounts/{id}")).await.0, 404, "another user's account");
    assert_eq!(bob.call(reqwest::Method::DELETE, &format!("/link/v1/accounts/{id}"), None).await.0, 404);
    let (_, mine) = alice.get("/link/v1/accounts").await;
    assert_eq!(mine["data"]["items"][0]["id"], id);
    let (_, theirs) = bob.get("/link/v1/accounts").await;
    assert_eq!(theirs["data"]["items"], json!([]));
    let production = server.key("default", smile_core::Mode::Production).await;
    assert_eq!(production.get(&format!("/v1/accounts/{id}")).await.0, 404, "another mode");
}

async fn the_provider_catalog_has_every_kind_and_filters() {
    let server = TestServer::start().await;
    let (_, all) = server.sandbox.get("/v1/providers?size=150").await;
    let all = all["data"]["items"].as_array().expect("items").clone();
    for t in ["GIG", "GOVERNMENT", "SYSTEM", "EMPLOYER", "CREDENTIAL"] {
        assert!(all.iter().any(|p| p["type"] == t), "{t}");
    }
    assert!(all.iter().any(|p| p["mfa"] == true) && all.iter().any(|p| p["mfa"] == false));
    assert!(all.iter().any(|p| p["monitorSupported"] == true));
    assert!(all.iter().any(|p| p["accountConnection"] == false), "an upload-only source");
    assert!(all.iter().any(|p| p["loginOptions"].as_array().is_some_and(|o| o.contains(&json!("SS_NUMBER")))));
    let (_, gov) = server.sandbox.get("/v1/providers?type=GOVERNMENT").await;
    assert!(gov["data"]["items"].as_array().expect("items").iter().all(|p| p["type"] == "GOVERNMENT"));
    let (_, top) = server.sandbox.get("/v1/providers?topIds=upwork,sss&size=3").await;
    assert_eq!(top["data"]["items"][0]["id"], "upwork");
    assert_eq!(top["data"]["items"][1]["id"], "sss");
    assert!(top["data"]["nextCursor"].is_string());
    let (_, bank) = api_get_provider(&server, "xyzbank").await;
    assert_eq!(bank["subTypeLabel"], "Financial and insurance activities", "an industry of Smile's list");
    let (_, named) = server.sandbox.get("/v1/providers?name=social").await;
    assert_eq!(named["data"]["items"][0]["id"], "sss");
    let (status, one) = server.sandbox.get("/v1/providers/grab").await;
    assert_eq!((status, one["data"]["mfa"].as_bool()), (200, Some(true)));
    assert_eq!(server.sandbox.get("/v1/providers/nope").await.0, 404);
    let logo = reqwest::get(format!("{}{}", server.sandbox.base, one["data"]["logoUrl"].as_str().expect("logo"))).await.expect("logo");
    assert_eq!(logo.headers()["content-type"], "image/svg+xml");
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/link/v1/accounts", server.sandbox.base))
        .header("origin", "http://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    // Every answer of `/link/*` carries it, a refusal too; the `/v1` API's none.
    let link = reqwest::get(format!("{}/link/v1/providers", server.sandbox.base)).await.expect("link");
    assert_eq!(link.status().as_u16(), 401, "no link token");
    assert_eq!(link.headers()["access-control-allow-origin"], "*");
    let api = reqwest::get(format!("{}/v1/providers", server.sandbox.base)).await.expect("api");
    assert!(api.headers().get("access-control-allow-origin").is_none());
}

async fn uploading_the_sample_payslips_analyses_them_and_adds_their_data() {
    use smile_sandbox::archives::SAMPLES;
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let (user, link) = new_user(&server.sandbox).await;

    // The widget's way: multipart, judged by content.
    let png = SAMPLES.iter().find(|s| s.name.ends_with(".png")).expect("png sample");
    let (status, uploaded) = link.upload("PAYSLIP", png.name, png.content).await;
    assert_eq!(status, 200, "{uploaded}");
    let archive = uploaded["data"]["id"].as_str().expect("id").to_owned();
    assert!(archive.starts_with("u-"));
    assert_eq!(uploaded["data"]["state"]["status"], "STARTED");
    let got = wait_for_event(&receiver, "INCOMES_ADDED").await;
    let after_user: Vec<&str> = types(&got).into_iter().filter(|t| *t != "USER_CREATED").collect();
    assert_eq!(after_user, vec!["ARCHIVE_STARTED", "ARCHIVE_ANALYZED", "EMPLOYMENTS_ADDED", "INCOMES_ADDED"]);
    assert_eq!(got[1].1, json!({"userId": user, "archiveId": archive}));
    let (_, stored) = server.sandbox.get(&format!("/v1/archives/{archive}")).await;
    assert_eq!(stored["data"]["state"]["status"], "ANALYZED");
    assert_eq!(stored["data"]["rawFiles"][0]["format"], "PNG");
    let (_, incomes) = server.sandbox.get(&format!("/v1/incomes?sourceId={archive}")).await;
    assert_eq!(incomes["data"]["items"][0]["startDate"], "2025-10-01");
    assert_eq!(incomes["data"]["items"][0]["metadata"]["sourceType"], "ARCHIVE");
    let (_, uploads) = server.sandbox.get(&format!("/v1/uploads/{archive}")).await;
    assert_eq!(uploads["data"]["id"], archive.as_str());
    let url = stored["data"]["rawFiles"][0]["url"].as_str().expect("url");
    let file = reqwest::Client::new()
        .get(format!("{}{url}", server.sandbox.base))
        .basic_auth(server.sandbox.key_id(), Some(server.sandbox.key_secret()))
        .send()
        .await
        .expect("file");
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(file.bytes().await.expect("bytes").as_ref(), png.content);

    // The API's way: base64 in JSON.
    let pdf = SAMPLES.iter().find(|s| s.name.ends_with(".pdf")).expect("pdf sample");
    use base64::Engine as _;
    let (status, created) = server
        .sandbox
        .post("/v1/archives", json!({"userId": user, "fileType": "PAYSLIP", "rawFiles": [{"fileExtensionType": "PDF",
            "fileName": pdf.name, "fileContent": base64::engine::general_purpose::STANDARD.encode(pdf.content)}]}))
        .await;
    assert_eq!(status, 200, "{created}");
    let second = created["data"]["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(10), "the PDF analysed", || async {
        let (_, a) = server.sandbox.get(&format!("/v1/archives/{second}")).await;
        (a["data"]["state"]["status"] == "ANALYZED").then_some(())
    })
    .await;

    // Deleting removes the files and the data.
    let (status, deleted) = link.call(reqwest::Method::DELETE, &format!("/link/v1/archives/{archive}"), None).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["data"]["state"]["status"], "REVOKED");
    let revoked = wait_for_event(&receiver, "ARCHIVE_REVOKED").await;
    assert_eq!(last_event(&revoked, "ARCHIVE_REVOKED")["archiveId"], archive.as_str());
    let (_, left) = server.sandbox.get(&format!("/v1/incomes?sourceId={archive}")).await;
    assert_eq!(left["data"]["items"], json!([]));
    assert!(!server.running_data_dir().join("archives").join(&archive).exists(), "files removed");
    assert_well_formed(&receiver);
}

async fn other_files_fail_analysis_or_are_refused() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ARCHIVE_FAILED"], "s").await;
    let (_, link) = new_user(&server.sandbox).await;
    let other_pdf = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
    let (status, body) = link.upload("PAYSLIP", "march.pdf", other_pdf).await;
    assert_eq!(status, 200, "{body}");
    let failed = wait_for_event(&receiver, "ARCHIVE_FAILED").await;
    assert_eq!(failed[0].1["errorCode"], "FILE_UNABLE_TO_RECOGNIZE");
    let id = body["data"]["id"].as_str().expect("id");
    let (_, archive) = server.sandbox.get(&format!("/v1/archives/{id}")).await;
    assert_eq!(archive["data"]["state"]["status"], "ERROR");
    let sample = smile_sandbox::archives::SAMPLES[0].content;
    let (_, unsupported) = link.upload("SOCIAL_SECURITY", "sss.pdf", sample).await;
    let id = unsupported["data"]["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(10), "an UNSUPPORTED archive", || async {
        let (_, a) = server.sandbox.get(&format!("/v1/archives/{id}")).await;
        (a["data"]["state"]["status"] == "UNSUPPORTED").then_some(())
    })
    .await;

    let big = {
        let mut v = b"%PDF-".to_vec();
        v.resize(15 * 1024 * 1024 + 1, b'0');
        v
    };
    let png_named_pdf = smile_sandbox::archives::SAMPLES[1].content;
    for (file_type, name, content, status_want, code) in [
        ("PAYSLIP", "empty.pdf", &b""[..], 400, "INVALID_PARAMETERS"),
        ("PAYSLIP", "big.pdf", &big[..], 400, "INVALID_PARAMETERS"),
        ("PAYSLIP", "cat.gif", &b"GIF89a......"[..], 415, "UNSUPPORTED_TYPE"),
        ("PAYSLIP", "lying.pdf", png_named_pdf, 415, "UNSUPPORTED_TYPE"),
        ("RECIPE", "payslip.pdf", sample, 400, "INVALID_PARAMETERS"),
    ] {
        let (status, body) = link.upload(file_type, name, content).await;
        assert_eq!((status, body["code"].as_str()), (status_want, Some(code)), "{name}: {body}");
    }
    let (_, archives) = server.sandbox.get("/v1/archives?size=150").await;
    assert_eq!(archives["data"]["items"].as_array().expect("items").len(), 2, "refused uploads left nothing");
    let (_, social) = server.sandbox.get("/v1/archives?fileType=SOCIAL_SECURITY").await;
    let social = social["data"]["items"].as_array().expect("items").clone();
    assert_eq!(social.len(), 1);
    assert_eq!(social[0]["type"], "SOCIAL_SECURITY");
    let (_, types) = server.sandbox.get("/v1/fileTypes").await;
    assert!(types["data"]["items"].as_array().expect("items").iter().any(|t| t["type"] == "PAYSLIP"));
    let sample_download = reqwest::get(format!("{}/sandbox/samples/payslip-george-2025-11.pdf", server.sandbox.base)).await.expect("sample");
    assert_eq!(sample_download.bytes().await.expect("bytes").as_ref(), sample);
}

async fn invites_are_sent_and_linked_when_the_user_connects() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["INVITE_INVITED", "INVITE_LINKED", "USER_CREATED"], "s").await;
    let (status, created) = server
        .sandbox
        .post("/v1/invites", json!({"fullName": "George Cimafranca Palomero, Jr", "firstName": "George",
            "lastName": "Palomero", "email": "gpalomero1234@smileapi.io", "templateId": "tpl-1"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let invite = &created["data"];
    let (id, user) = (invite["id"].as_str().expect("id"), invite["userId"].as_str().expect("user"));
    assert!(id.starts_with("iv-"));
    assert_eq!(invite["status"], "INVITED");
    let got = wait_for_event(&receiver, "INVITE_INVITED").await;
    assert_eq!(types(&got), vec!["USER_CREATED", "INVITE_INVITED"]);
    assert_eq!(got[1].1, json!({"userId": user, "inviteId": id}));
    let (_, logs) = server.sandbox.get(&format!("/v1/invites/{id}/logs")).await;
    let message = &logs["data"]["items"][0]["message"];
    assert_eq!(message["to"], "gpalomero1234@smileapi.io");
    let landing = invite["inviteLandingPageUrl"].as_str().expect("landing");
    // A link that works outside this server: absolute, on the address it listens on.
    assert!(landing.starts_with(&format!("{}/invite/", server.sandbox.base)), "{landing}");
    assert!(message["body"].as_str().expect("body").contains(landing));

    // The landing link carries the invited user's link token.
    let token = landing.split("token=").nth(1).expect("token");
    let link = Link::new(&server.sandbox, token);
    let (_, session) = link.get("/link/v1/session").await;
    assert_eq!(session["data"]["userId"], user);
    link.connect("abccorp", "gpalomero1234@smileapi.io", "123456").await;
    let got = wait_for_event(&receiver, "INVITE_LINKED").await;
    assert_eq!(last_event(&got, "INVITE_LINKED"), json!({"userId": user, "inviteId": id}));
    let (_, linked) = server.sandbox.get(&format!("/v1/invites/{id}")).await;
    assert_eq!(linked["data"]["status"], "LINKED");
    assert!(linked["data"]["linkedAt"].is_string());
    let (_, listed) = server.sandbox.get("/v1/invites").await;
    assert_eq!(listed["data"]["items"][0]["id"], id);

    for bad in [
        json!({"fullName": "No Contact", "templateId": "tpl-1"}),
        json!({"fullName": "", "email": "a@b.c", "templateId": "tpl-1"}),
        json!({"fullName": "Bad Phone", "phone": "0917", "templateId": "tpl-1"}),
        json!({"email": "a@b.c", "templateId": "tpl-1"}),
    ] {
        let (status, body) = server.sandbox.post("/v1/invites", bad).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{body}");
    }
    let (status, sms) = server.sandbox.post("/v1/invites", json!({"fullName": "Ryan Ng", "phone": "+628119994321", "templateId": "tpl-1"})).await;
    assert_eq!(status, 201);
    let (_, logs) = server.sandbox.get(&format!("/v1/invites/{}/logs", sms["data"]["id"].as_str().expect("id"))).await;
    assert_eq!(logs["data"]["items"][0]["message"]["channel"], "SMS");
}

async fn credential_providers_add_documents_and_the_catalog_says_what_produces_each_event() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["DOCUMENTS_ADDED", "TASK_FINISHED"], "s").await;
    let (_, link) = new_user(&server.sandbox).await;
    let account = link.connect("nbi_ph", "christina4321@smileapi.io", "YGUS1").await;
    let got = wait_for_event(&receiver, "TASK_FINISHED").await;
    assert_eq!(types(&got), vec!["DOCUMENTS_ADDED", "TASK_FINISHED"]);
    assert_eq!(got[0].1["count"], 1);
    let (_, documents) = server.sandbox.get(&format!("/v1/documents?sourceId={}", account["id"].as_str().expect("id"))).await;
    assert!(documents["data"]["items"][0]["id"].as_str().is_some_and(|id| id.starts_with("d-")));
    let (_, catalog) = server.sandbox.get("/v1/eventTypes").await;
    for entry in catalog["data"]["items"].as_array().expect("items") {
        assert!(entry["producedBy"].as_str().is_some_and(|p| !p.is_empty()), "{}", entry["type"]);
    }
}
}

#[tokio::test]
async fn links_handed_out_start_with_the_public_url() {
    let server = TestServer::with(|o| o.public_url = Some("https://smile.example.com".into())).await;
    let (status, created) = server
        .sandbox
        .post(
            "/v1/invites",
            json!({"fullName": "George Palomero", "email": "gpalomero1234@smileapi.io", "templateId": "tpl-1"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let landing = created["data"]["inviteLandingPageUrl"].as_str().expect("landing");
    assert!(landing.starts_with("https://smile.example.com/invite/iv-"), "{landing}");
}

async fn api_get_provider(server: &TestServer, id: &str) -> (u16, Value) {
    let (status, body) = server.sandbox.get(&format!("/v1/providers/{id}")).await;
    (status, body["data"].clone())
}
