//! The Wink Widget, its SDK and the pages around them, embedded into the binary at compile
//! time from `widget/`. Everything they load comes from this server.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const SDK: &str = include_str!("../../../../widget/sdk.js");
const WIDGET_HTML: &str = include_str!("../../../../widget/index.html");
const WIDGET_JS: &str = include_str!("../../../../widget/widget.js");
const WIDGET_CSS: &str = include_str!("../../../../widget/widget.css");
const INVITE_HTML: &str = include_str!("../../../../widget/invite.html");
const INVITE_JS: &str = include_str!("../../../../widget/invite.js");
const DEMO_HTML: &str = include_str!("../../../../widget/demo.html");
const DEMO_JS: &str = include_str!("../../../../widget/demo.js");
const DEMO_CSS: &str = include_str!("../../../../widget/demo.css");

/// Only this server's own scripts, styles and images; any site may frame the widget.
const WIDGET_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors *";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `/v2/smile.v2.js` and `/v1/smile.v1.js`: the SDK, for any page to load.
pub async fn sdk() -> Response {
    let mut response = asset("text/javascript; charset=utf-8", SDK);
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// `/widget/`: the page the SDK frames.
pub async fn widget() -> Response {
    let mut response = asset("text/html; charset=utf-8", WIDGET_HTML);
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(WIDGET_CSP));
    response
}

pub async fn widget_js() -> Response {
    asset("text/javascript; charset=utf-8", WIDGET_JS)
}

pub async fn widget_css() -> Response {
    asset("text/css; charset=utf-8", WIDGET_CSS)
}

/// `/invite/{id}?token=…`: where an invite's link lands; it opens the widget for that user.
pub async fn invite() -> Response {
    asset("text/html; charset=utf-8", INVITE_HTML)
}

pub async fn invite_js() -> Response {
    asset("text/javascript; charset=utf-8", INVITE_JS)
}

/// `/demo`: an integrator's page in one minute (see the README).
pub async fn demo() -> Response {
    asset("text/html; charset=utf-8", DEMO_HTML)
}

pub async fn demo_js() -> Response {
    asset("text/javascript; charset=utf-8", DEMO_JS)
}

pub async fn demo_css() -> Response {
    asset("text/css; charset=utf-8", DEMO_CSS)
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
    // Two random (v4) UUIDs: the id is the only key to the inbox.
    let id = format!("inbox_{}{}", smile_core::ids::new_subscription_id(), smile_core::ids::new_subscription_id());
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
