//! The Wink Widget, its SDK and the pages around them, embedded into the binary at compile
//! time from `widget/`. Everything they load comes from this server.

use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const SDK: &str = include_str!("../../../../widget/sdk.js");
const WIDGET_HTML: &str = include_str!("../../../../widget/index.html");
const WIDGET_JS: &str = include_str!("../../../../widget/widget.js");
const WIDGET_CSS: &str = include_str!("../../../../widget/widget.css");
const WIDGET_ZH_CN: &str = include_str!("../../../../widget/zh-CN.js");
const INVITE_HTML: &str = include_str!("../../../../widget/invite.html");
const INVITE_JS: &str = include_str!("../../../../widget/invite.js");
const DEMO_HTML: &str = include_str!("../../../../widget/demo.html");
const DEMO_JS: &str = include_str!("../../../../widget/demo.js");
const DEMO_CSS: &str = include_str!("../../../../widget/demo.css");
const PORTAL_HTML: &str = include_str!("../../../../widget/portal.html");
const PORTAL_JS: &str = include_str!("../../../../widget/portal.js");
const PORTAL_CSS: &str = include_str!("../../../../widget/portal.css");

/// The portal calls only this server, runs only its own script, and may be framed by any site
/// (integrators embed it in their dashboards); it keeps its link out of `Referer`.
const PORTAL_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors *";

/// A static file as served: its bytes, its ETag, and its gzip form when that is smaller.
struct Prepared {
    body: Vec<u8>,
    etag: String,
    gzip: Option<Vec<u8>>,
}

/// Made once per file, on first use. Scripts and styles lose their indentation and comment
/// lines (the sources stay readable; the wire does not pay for it).
fn prepared(body: &'static str, content_type: &str) -> &'static Prepared {
    static CACHE: OnceLock<Mutex<HashMap<usize, &'static Prepared>>> = OnceLock::new();
    let key = body.as_ptr() as usize;
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    cache.entry(key).or_insert_with(|| {
        let served = if content_type.starts_with("text/javascript") || content_type.starts_with("text/css") {
            compact(body)
        } else {
            body.to_owned()
        };
        Box::leak(Box::new(prepare(served.into_bytes())))
    })
}

/// Drops each line's indentation, and lines that are only a comment (`//`, or a `/* … */`
/// starting a line). Line breaks stay, so JavaScript's automatic semicolons are untouched; our
/// files hold no multi-line strings.
fn compact(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut in_comment = false;
    for line in source.lines().map(str::trim) {
        if in_comment || line.starts_with("/*") {
            in_comment = !line.contains("*/");
            continue;
        }
        if !line.is_empty() && !line.starts_with("//") {
            out.push_str(line);
            // A line break after `{ ; , ( [ ? : & | =` means nothing in JS or CSS: the
            // statement or rule goes on either way (strings and regular expressions cannot span
            // lines, and no file here ends a line of code with a comment). Elsewhere it may end
            // a statement, and after `+` or `-` joining could make `++`.
            if !line.ends_with(['{', ';', ',', '(', '[', '?', ':', '&', '|', '=']) {
                out.push('\n');
            }
        }
    }
    out
}

fn prepare(body: Vec<u8>) -> Prepared {
    use sha2::Digest;
    let etag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&body)[..12]));
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let gzip = std::io::Write::write_all(&mut encoder, &body)
        .and_then(|()| encoder.finish())
        .ok()
        .filter(|gz| gz.len() < body.len());
    Prepared { body, etag, gzip }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compacting_keeps_code_and_line_breaks_and_drops_comments() {
        let source = "/*\n * A file.\n */\n(function () {\n  // why\n  var a = 1 /* inline */;\n  /** doc */\n  return a\n})();\n";
        assert_eq!(super::compact(source), "(function () {var a = 1 /* inline */;return a\n})();");
    }
}

/// Serves a static file: `304` when the client has this version (`If-None-Match`), gzip when
/// it accepts it; browsers revalidate each time (`no-cache`), so a re-open costs a 304.
pub fn serve_static(headers: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let prepared = prepared(body, content_type);
    respond_static(headers, content_type, &prepared.body, prepared)
}

/// Like [`serve_static`], for a file made at run time (a provider logo).
pub fn serve_made(headers: &HeaderMap, content_type: &'static str, body: Vec<u8>) -> Response {
    let prepared = prepare(body);
    respond_static(headers, content_type, &prepared.body, &prepared)
}

fn respond_static(headers: &HeaderMap, content_type: &'static str, body: &[u8], prepared: &Prepared) -> Response {
    let mut response = if client_has(headers, &prepared.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match (&prepared.gzip, accepts_gzip(headers)) {
            (Some(gzip), true) => {
                ([(header::CONTENT_TYPE, content_type), (header::CONTENT_ENCODING, "gzip")], gzip.clone())
                    .into_response()
            }
            _ => ([(header::CONTENT_TYPE, content_type)], body.to_vec()).into_response(),
        }
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(etag) = HeaderValue::from_str(&prepared.etag) {
        out.insert(header::ETAG, etag);
    }
    response
}

fn client_has(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*"))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

/// `/v2/smile.v2.js` and `/v1/smile.v1.js`: the SDK, for any page to load.
pub async fn sdk(headers: HeaderMap) -> Response {
    let mut response = serve_static(&headers, "text/javascript; charset=utf-8", SDK);
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// `/widget/?frame=<key>`: the page the SDK frames, with the framing policy of the key's
/// tenant and mode (see `widget`).
pub async fn widget(
    State(state): State<AppState>,
    crate::extract::QueryParams(query): crate::extract::QueryParams,
    headers: HeaderMap,
) -> Response {
    let mut response = serve_static(&headers, "text/html; charset=utf-8", WIDGET_HTML);
    let policy = super::widget::policy(&state, query.get("frame").map(String::as_str)).await;
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

pub async fn widget_js(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/javascript; charset=utf-8", WIDGET_JS)
}

pub async fn widget_css(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/css; charset=utf-8", WIDGET_CSS)
}

/// The widget's Chinese words, fetched only when it opens in zh-CN.
pub async fn widget_zh_cn(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/javascript; charset=utf-8", WIDGET_ZH_CN)
}

/// `/invite/{id}?token=…`: where an invite's link lands; it opens the widget for that user.
pub async fn invite(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/html; charset=utf-8", INVITE_HTML)
}

pub async fn invite_js(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/javascript; charset=utf-8", INVITE_JS)
}

/// `/demo`: an integrator's page in one minute (see the README).
pub async fn demo(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/html; charset=utf-8", DEMO_HTML)
}

pub async fn demo_js(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/javascript; charset=utf-8", DEMO_JS)
}

pub async fn demo_css(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/css; charset=utf-8", DEMO_CSS)
}

/// `/portal#token=…`: the consumer portal (see `routes::portal`).
pub async fn portal(headers: HeaderMap) -> Response {
    let mut response = serve_static(&headers, "text/html; charset=utf-8", PORTAL_HTML);
    let out = response.headers_mut();
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PORTAL_CSP));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub async fn portal_js(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/javascript; charset=utf-8", PORTAL_JS)
}

pub async fn portal_css(headers: HeaderMap) -> Response {
    serve_static(&headers, "text/css; charset=utf-8", PORTAL_CSS)
}

/// What the demo receiver got: the raw body and its signature, for the demo page to check.
#[derive(Clone, serde::Serialize)]
pub struct DemoDelivery {
    signature: String,
    body: String,
}

/// Deliveries kept per demo inbox, and inboxes kept (the oldest goes first).
const INBOX_DELIVERIES: usize = 200;
const INBOXES: usize = 1000;

/// The demo receiver's inboxes, in this process only: one per demo session, named by an
/// unguessable id, holding the last deliveries of that session's subscriptions.
#[derive(Default)]
pub struct DemoInbox(std::sync::Mutex<DemoInboxes>);

#[derive(Default)]
pub struct DemoInboxes {
    by_id: std::collections::HashMap<String, std::collections::VecDeque<DemoDelivery>>,
    /// Ids, oldest first, for eviction.
    order: std::collections::VecDeque<String>,
}

#[derive(serde::Serialize)]
pub struct NewInbox {
    id: String,
}

fn no_inbox() -> crate::envelope::Error {
    crate::envelope::Error(smile_core::ApiError::missing("demo inbox"))
}

/// `POST /demo/inboxes`: a fresh inbox for one demo session (needs a sandbox key).
pub async fn demo_new_inbox(
    crate::auth::TenantKey(_scope): crate::auth::TenantKey,
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> crate::envelope::Result<crate::envelope::Created<NewInbox>> {
    // The id is the only key to the inbox.
    let id = format!("inbox_{}", smile_core::ids::new_token());
    let mut inboxes = state.demo.0.lock().map_err(|_| no_inbox())?;
    if inboxes.order.len() >= INBOXES
        && let Some(oldest) = inboxes.order.pop_front()
    {
        inboxes.by_id.remove(&oldest);
    }
    inboxes.by_id.insert(id.clone(), Default::default());
    inboxes.order.push_back(id.clone());
    Ok(crate::envelope::Created(NewInbox { id }))
}

/// `POST /demo/hooks/{inbox}`: the receiver the demo page subscribes.
pub async fn demo_receive(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    axum::extract::Path(inbox): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: String,
) -> crate::envelope::Result<&'static str> {
    let signature = headers.get("smile-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut inboxes = state.demo.0.lock().map_err(|_| no_inbox())?;
    let deliveries = inboxes.by_id.get_mut(&inbox).ok_or_else(no_inbox)?;
    if deliveries.len() == INBOX_DELIVERIES {
        deliveries.pop_front();
    }
    deliveries.push_back(DemoDelivery { signature, body });
    Ok("ok")
}

/// `GET /demo/hooks/{inbox}`: what that inbox got, oldest first.
pub async fn demo_inbox(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    axum::extract::Path(inbox): axum::extract::Path<String>,
) -> crate::envelope::Result<crate::envelope::Data<crate::views::ListView<DemoDelivery>>> {
    let inboxes = state.demo.0.lock().map_err(|_| no_inbox())?;
    let items = inboxes.by_id.get(&inbox).ok_or_else(no_inbox)?.iter().cloned().collect();
    Ok(crate::envelope::Data(crate::views::ListView::new(items, None)))
}
