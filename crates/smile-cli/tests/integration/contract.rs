//! The rest of Smile's API: templates, payloads and session resets, exports, continuous sync
//! off, liabilities and links, classification and the payslip predictions. Each over real
//! HTTP, with the webhooks a real receiver got.

use crate::support::*;
use base64::Engine as _;
use serde_json::{Value, json};
use smile_sandbox::archives::SAMPLES;
use std::time::Duration;

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sample(extension: &str) -> &'static smile_sandbox::archives::Sample {
    SAMPLES.iter().find(|s| s.name.ends_with(extension)).expect("a sample")
}

fn invite_template(name: &str, subject: &str) -> Value {
    let page = json!({"header": "Share your income", "description": "Two minutes.", "button": "Start"});
    json!({"name": name, "company": {"name": "Acme", "logoUrl": "https://acme.example/logo.png"},
        "email": {"sendEmail": true, "senderName": "Acme", "replyAddress": "help@acme.example", "subject": subject,
            "body": "Acme asks you to share your income."},
        "landingPage": page, "successPage": page})
}

/// Connects an account and waits for its first sync to finish.
async fn connected(receiver: &Receiver, link: &Link, provider: &str, login: &str, mfa: bool) -> String {
    let account = link.connect(provider, login, "123456").await;
    let id = account["id"].as_str().expect("id").to_owned();
    if mfa {
        let (status, body) = link.post(&format!("/link/v1/accounts/{id}/mfa"), json!({"code": "1234"})).await;
        assert_eq!(status, 200, "{body}");
    }
    eventually(Duration::from_secs(15), "the sync to finish", || async {
        events(receiver).iter().any(|(t, d)| t == "TASK_FINISHED" && d["sourceId"] == id.as_str()).then_some(())
    })
    .await;
    id
}

on_both_backends! {
async fn templates_are_kept_and_word_the_invites_that_name_them() {
    let server = TestServer::start().await;
    let api = &server.sandbox;
    let (status, consent) = api.post("/v1/consentTemplates", json!({"consentType": "DATA_SHARING", "version": "2",
        "consentText": "I agree.", "title": "Sharing"})).await;
    assert_eq!(status, 201, "{consent}");
    let consent_id = consent["data"]["id"].as_str().expect("id").to_owned();
    let (_, listed) = api.get("/v1/consentTemplates").await;
    assert_eq!(listed["data"]["items"][0]["consentText"], "I agree.");
    for bad in [json!({"consentType": "X", "version": "", "consentText": "t"}), json!({"version": "1", "consentText": "t"})] {
        let (status, body) = api.post("/v1/consentTemplates", bad).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{body}");
    }
    assert_eq!(api.delete(&format!("/v1/consentTemplates/{consent_id}")).await.0, 200);
    assert_eq!(api.delete(&format!("/v1/consentTemplates/{consent_id}")).await.0, 404);

    // What the API answers later must be an e-mail address by the spec's format (the fuzzer
    // found a template saved with "l~õø…r@" that broke every listing of templates after it).
    for bad in ["l~\u{f5}\u{f8}r@", "@acme.example", "help@", "help@acme..example", "he lp@acme.example", "a@b@c.d"] {
        let mut template = invite_template("payroll", "Hi");
        template["email"]["replyAddress"] = json!(bad);
        let (status, body) = api.post("/v1/inviteTemplates", template).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{bad}: {body}");
        let (status, body) = api.post("/v1/invites", json!({"fullName": "G P", "email": bad, "templateId": "x"})).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{bad}: {body}");
    }
    let (status, created) = api.post("/v1/inviteTemplates", invite_template("payroll", "Your payslips, please")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("ivt-"), "{id}");
    let (status, updated) = api
        .call(reqwest::Method::PUT, &format!("/v1/inviteTemplates/{id}"), Some(invite_template("payroll", "Share your income")))
        .await;
    assert_eq!(status, 200, "{updated}");
    let (_, one) = api.get(&format!("/v1/inviteTemplates/{id}")).await;
    assert_eq!(one["data"]["email"]["subject"], "Share your income");
    let (status, invite) = api
        .post("/v1/invites", json!({"fullName": "George Palomero", "email": "gpalomero1234@smileapi.io", "templateId": id}))
        .await;
    assert_eq!(status, 201, "{invite}");
    let (_, logs) = api.get(&format!("/v1/invites/{}/logs", invite["data"]["id"].as_str().expect("id"))).await;
    let message = &logs["data"]["items"][0]["message"];
    assert_eq!(message["subject"], "Share your income", "the template words the e-mail");
    assert!(message["body"].as_str().is_some_and(|b| b.starts_with("Acme asks you")), "{message}");
    assert_eq!(api.delete(&format!("/v1/inviteTemplates/{id}")).await.0, 200);
    assert_eq!(api.get(&format!("/v1/inviteTemplates/{id}")).await.0, 404);
    let other = server.key("other", smile_core::Mode::Sandbox).await;
    assert_eq!(other.get("/v1/consentTemplates").await.1["data"]["items"], json!([]), "another tenant sees none");
}

async fn payloads_gather_a_session_and_a_reset_starts_it_over() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let (user, link) = new_user(&server.sandbox).await;
    let grab = connected(&receiver, &link, "grab", "gpalomero1234@smileapi.io", true).await;
    let lazada = connected(&receiver, &link, "lazada", "gpalomero1234@smileapi.io", false).await;

    let (status, payload) = server.sandbox.get(&format!("/v1/accounts/{grab}/payload")).await;
    assert_eq!(status, 200, "{payload}");
    let data = &payload["data"];
    assert_eq!(data["metadata"], json!({"sourceId": grab, "sourceType": "ACCOUNT", "userId": user, "providerId": "grab"}));
    assert_eq!(data["identity"]["firstName"], "George");
    assert_eq!(data["incomes"].as_array().expect("incomes").len(), 12);
    assert_eq!(data["eincomes"].as_array().expect("eincomes").len(), 12);
    assert!(data["insight"]["features"]["incomes_count"] == 12, "{}", data["insight"]);

    let (_, session) = server.sandbox.get(&format!("/v1/users/{user}/payload")).await;
    assert_eq!(session["data"]["metadata"]["status"], "COMPLETED");
    let accounts = session["data"]["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 2);
    let of_lazada = accounts.iter().find(|a| a["id"] == lazada.as_str()).expect("lazada");
    assert_eq!(of_lazada["payload"]["links"]["items"].as_array().expect("links").len(), 1);

    let (status, _) = server.sandbox.post_empty(&format!("/v1/users/{user}/resetSession")).await;
    assert_eq!(status, 200);
    let got = wait_for_event(&receiver, "USER_SESSION_RESET").await;
    assert_eq!(last_event(&got, "USER_SESSION_RESET"), json!({"session": {"userId": user, "channel": "Default", "status": "IN_PROGRESS"}}));
    let (_, session) = server.sandbox.get(&format!("/v1/users/{user}/payload")).await;
    assert_eq!(session["data"]["metadata"]["status"], "IN_PROGRESS");
    assert_eq!(session["data"]["accounts"], json!([]), "the reset session starts empty");
    let (_, still) = server.sandbox.get(&format!("/v1/incomes?sourceId={grab}")).await;
    assert!(!still["data"]["items"].as_array().expect("items").is_empty(), "the records stay");

    assert_eq!(server.sandbox.get("/v1/users/default-nobody/payload").await.0, 404);
    assert_eq!(server.sandbox.post_empty("/v1/users/default-nobody/resetSession").await.0, 404);
    assert_eq!(server.sandbox.get("/v1/accounts/a-nothing/payload").await.0, 404);
}

async fn exports_download_with_their_md5_and_continuous_sync_can_be_turned_off() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["TASK_FINISHED"], "s").await;
    let (_, link) = new_user(&server.sandbox).await;
    let sss = connected(&receiver, &link, "sss", "gpalomero1234@smileapi.io", false).await;

    for (format, starts) in [("CSV", &b"kind,id,date"[..]), ("PDF", &b"%PDF-1.4"[..])] {
        let (status, export) =
            server.sandbox.post(&format!("/v1/accounts/{sss}/exports/generate"), json!({"exportExtensionType": format})).await;
        assert_eq!(status, 200, "{export}");
        let export = &export["data"];
        assert_eq!((export["accountId"].as_str(), export["exportExtensionType"].as_str()), (Some(sss.as_str()), Some(format)));
        let file = reqwest::Client::new()
            .get(export["downloadUrl"].as_str().expect("url"))
            .basic_auth(server.sandbox.key_id(), Some(server.sandbox.key_secret()))
            .send()
            .await
            .expect("download");
        assert_eq!(file.status(), 200);
        let bytes = file.bytes().await.expect("bytes");
        assert!(bytes.starts_with(starts), "{format}");
        let md5: String = <md5::Md5 as md5::Digest>::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(export["md5"], md5.as_str());
        if format == "CSV" {
            let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
            assert_eq!(text.lines().filter(|l| l.starts_with("contributions,")).count(), 24, "{text}");
        }
    }
    let (status, _) = server.sandbox.post(&format!("/v1/accounts/{sss}/exports/generate"), json!({"exportExtensionType": "XLS"})).await;
    assert_eq!(status, 400);
    let anonymous = reqwest::Client::new().get(format!("{}/v1/accounts/{sss}/exports/exp-x", server.sandbox.base)).send().await.expect("get");
    assert_eq!(anonymous.status(), 400, "an export needs the API key");

    let (status, _) = server.sandbox.post_empty(&format!("/v1/accounts/{sss}/disableMonitor")).await;
    assert_eq!(status, 200);
    let (_, account) = server.sandbox.get(&format!("/v1/accounts/{sss}")).await;
    assert_eq!(account["data"]["monitorStatus"], "CUSTOMER_DISABLED");
    let (status, refused) = server.sandbox.post_empty(&format!("/v1/accounts/{sss}/sync")).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{refused}");
    let lazada = connected(&receiver, &link, "lazada", "gpalomero1234@smileapi.io", false).await;
    assert_eq!(server.sandbox.post_empty(&format!("/v1/accounts/{lazada}/disableMonitor")).await.0, 400, "no continuous sync to turn off");
}

async fn liabilities_and_links_are_synced_and_announced() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let (user, link) = new_user(&server.sandbox).await;
    let bank = connected(&receiver, &link, "xyzbank", "gpalomero1234@smileapi.io", true).await;
    let lazada = connected(&receiver, &link, "lazada", "gpalomero1234@smileapi.io", false).await;
    let got = events(&receiver);
    let liabilities = got.iter().find(|(t, _)| t == "LIABILITIES_ADDED").expect("LIABILITIES_ADDED");
    assert_eq!(liabilities.1, json!({"userId": user, "accountId": bank, "count": 1, "providers": ["xyzbank"]}));
    let (_, listed) = server.sandbox.get(&format!("/v1/liabilities?sourceId={bank}")).await;
    let liability = &listed["data"]["items"][0];
    assert_eq!((liability["type"].as_str(), liability["amortizationFrequency"].as_str()), (Some("Personal Loan"), Some("Monthly")));
    let (_, one) = server.sandbox.get(&format!("/v1/liabilities/{}", liability["id"].as_str().expect("id"))).await;
    assert_eq!(one["data"]["loanAmount"], liability["loanAmount"]);
    let added = last_event(&got, "LINK_ADDED");
    assert_eq!(added["accountId"], lazada.as_str());
    let (_, one) = server.sandbox.get(&format!("/v1/links/{}", added["id"].as_str().expect("id"))).await;
    assert_eq!(one["data"]["records"][0]["count"], 2);
    assert_eq!(server.sandbox.get("/v1/links?userId=default-nobody").await.1["data"]["items"], json!([]));
}

async fn classification_and_payslip_predictions_follow_the_files() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    server.sandbox.subscribe(&receiver.url(), &["ARCHIVE_ANALYZED", "ARCHIVE_FAILED"], "s").await;
    let (user, _) = new_user(&server.sandbox).await;
    let pdf = sample(".pdf");
    let file = |content: &[u8]| json!([{"fileExtensionType": "PDF", "fileName": "a.pdf", "fileContent": base64(content)}]);
    let (status, classified) = server.sandbox.post("/v1/archives/classify", json!({"userId": user, "rawFiles": file(pdf.content)})).await;
    assert_eq!(status, 200, "{classified}");
    let archive = classified["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(classified["data"]["classification"], json!({"fileType": "PAYSLIP"}));
    assert_eq!(classified["data"]["analysis"]["startDate"], "2025-11-01");
    let got = wait_for_event(&receiver, "ARCHIVE_ANALYZED").await;
    assert_eq!(last_event(&got, "ARCHIVE_ANALYZED")["archiveId"], archive.as_str());

    let other = b"%PDF-1.4\nnot a payslip\n%%EOF\n";
    let (_, unknown) = server.sandbox.post("/v1/archives/classify", json!({"userId": user, "rawFiles": file(other)})).await;
    assert_eq!(unknown["data"]["classification"], json!({"fileType": "OTHERS"}));
    let got = wait_for_event(&receiver, "ARCHIVE_FAILED").await;
    assert_eq!(last_event(&got, "ARCHIVE_FAILED")["errorCode"], "FILE_UNABLE_TO_RECOGNIZE");

    let (status, uploaded) = server.sandbox.post("/v1/archives/-/payslips/uploadRawFile",
        json!({"userId": user, "fileExtensionType": "PNG", "fileContent": base64(sample(".png").content)})).await;
    assert_eq!(status, 200, "{uploaded}");
    let png = uploaded["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(uploaded["data"]["type"], "PAYSLIP");
    let prediction = eventually(Duration::from_secs(10), "the PNG's prediction", || async {
        let (status, body) = server.sandbox.get(&format!("/v1/archives/-/payslips/queryPrediction?archiveId={png}")).await;
        (status == 200).then_some(body["data"].clone())
    })
    .await;
    assert_eq!((prediction["startDate"].as_str(), prediction["currency"].as_str()), (Some("2025-10-01"), Some("PHP")));
    assert_eq!(prediction["metadata"]["sourceId"], png.as_str());
    let (_, listed) = server.sandbox.get("/v1/archives/-/payslips/listPredictions").await;
    assert_eq!(listed["data"]["items"].as_array().expect("items").len(), 2, "both analysed payslips");

    let (status, _) = server.sandbox.post("/v1/archives/-/payslips/sendManualResult",
        json!({"archiveId": png, "validFile": true, "checkedFields": ["grossAmount"], "data": {"grossAmount": 50000.5}})).await;
    assert_eq!(status, 200);
    let (_, corrected) = server.sandbox.get(&format!("/v1/archives/-/payslips/queryPrediction?archiveId={png}")).await;
    assert_eq!(corrected["data"]["grossAmount"], 50000.5, "the person's value wins");
    let (status, _) = server.sandbox.post("/v1/archives/-/payslips/sendManualResult", json!({"archiveId": archive, "validFile": false})).await;
    assert_eq!(status, 200);
    let (_, failed) = server.sandbox.get(&format!("/v1/archives/{archive}")).await;
    assert_eq!(failed["data"]["state"]["status"], "ERROR");
    let got = eventually(Duration::from_secs(10), "ARCHIVE_FAILED for the manual check", || async {
        let got = events(&receiver);
        got.iter().any(|(t, d)| t == "ARCHIVE_FAILED" && d["archiveId"] == archive.as_str()).then_some(got)
    })
    .await;
    assert!(!got.is_empty());
    for bad in [json!({"archiveId": png, "validFile": true, "data": {"grossAmount": "a lot"}}), json!({"archiveId": png})] {
        let (status, body) = server.sandbox.post("/v1/archives/-/payslips/sendManualResult", bad).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{body}");
    }
    assert_eq!(server.sandbox.get("/v1/archives/-/payslips/queryPrediction?archiveId=u-nothing").await.0, 404);
    assert_eq!(server.sandbox.get("/v1/archives/-/payslips/queryPrediction").await.0, 400);
}

async fn production_widgets_need_their_frame_key_and_are_framed_only_on_allowed_origins() {
    let server = TestServer::start().await;
    let production = server.key("acme", smile_core::Mode::Production).await;
    let (status, made) = production.post("/v1/users", json!({})).await;
    assert_eq!(status, 201, "{made}");
    let token = made["data"]["token"]["accessToken"].as_str().expect("token").to_owned();
    let client = reqwest::Client::new();
    let link_call = |frame: Option<&'static str>| {
        let mut request = client.get(format!("{}/link/v1/providers", server.sandbox.base)).bearer_auth(&token);
        if let Some(frame) = frame {
            request = request.header("x-smile-frame", frame);
        }
        async move { request.send().await.expect("call").status().as_u16() }
    };
    assert_eq!(link_call(None).await, 403, "a production token outside the SDK's widget");
    assert_eq!(link_call(Some("sandbox.acme")).await, 403, "under a frame key that is not its own");
    assert_eq!(link_call(Some("production.default")).await, 403, "under another tenant's key");
    assert_eq!(link_call(Some("production.acme")).await, 200);
    let (status, session) = Link::new(&production, &token).get("/link/v1/session").await;
    assert_eq!(status, 200, "the SDK learns the key without one");
    assert_eq!(session["data"]["frame"], "production.acme");
    let (_, sandbox_user) = new_user(&server.sandbox).await;
    assert_eq!(sandbox_user.get("/link/v1/providers").await.0, 200, "sandbox tokens need no key");

    let policy = |query: &'static str| {
        let url = format!("{}/widget/{query}", server.sandbox.base);
        async move {
            let response = reqwest::get(url).await.expect("widget");
            response.headers()["content-security-policy"].to_str().expect("ascii").to_owned()
        }
    };
    assert_eq!(policy("?frame=production.acme").await.split("; ").last(), Some("frame-ancestors 'self'"));
    assert!(!policy("?frame=sandbox.default").await.contains("frame-ancestors"), "a sandbox widget may be framed anywhere");
    assert!(!policy("").await.contains("frame-ancestors"));
    for bad in [json!({"origins": ["http://app.example.com"]}), json!({"origins": ["https://app.example.com/x"]}), json!({"origins": "*"})] {
        let (status, body) = production.call(reqwest::Method::PUT, "/v1/widget/allowedOrigins", Some(bad)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAMETERS")), "{body}");
    }
    let (status, stored) = production
        .call(reqwest::Method::PUT, "/v1/widget/allowedOrigins", Some(json!({"origins": ["https://App.example.com/", "http://localhost:3000"]})))
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["data"]["origins"], json!(["https://app.example.com", "http://localhost:3000"]));
    assert_eq!(production.get("/v1/widget/allowedOrigins").await.1["data"], stored["data"]);
    assert!(policy("?frame=production.acme").await.ends_with("frame-ancestors 'self' https://app.example.com http://localhost:3000"));
    assert_eq!(server.sandbox.get("/v1/widget/allowedOrigins").await.1["data"]["origins"], json!([]), "per tenant and mode");
}
}
