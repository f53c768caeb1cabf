//! The consumer portal: a page an integrator hands to its own customers, as a short-lived link
//! from `POST /v1/portal/sessions`. The link's token (in the URL fragment, so it never reaches
//! logs or `Referer`) acts as its tenant and mode, on the subscriptions it names only. Its calls
//! under `/portal/api/` are the `/v1` handlers themselves, behind [`grant`], plus a list with
//! each subscription's health and a per-minute chart of the last 24 hours.

use crate::AppState;
use crate::auth::{PortalGrant, TenantKey};
use crate::envelope::{Data, Error, Result};
use crate::extract::JsonBody;
use crate::views::SubscriptionView;
use axum::Extension;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use smile_core::timefmt::{format_ms, now_ms};
use smile_core::{ApiError, ErrorCode};
use smile_store::{DeliveryStatus, Document, PageRequest, Subscription, SubscriptionPatch};
use std::collections::BTreeMap;

/// The stored kind of a portal session.
const SESSION: &str = "portal_session";
const DEFAULT_TTL_SECS: u64 = 3600;
const MAX_TTL_SECS: u64 = 24 * 3600;
/// The most subscriptions one portal shows.
const MAX_SUBSCRIPTIONS: u32 = 150;
const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SessionRequest {
    /// Only these subscriptions; default every subscription of the key's tenant and mode.
    subscription_ids: Option<Vec<String>>,
    /// How long the link works: 1 to 86400 seconds, default 3600.
    expires_in_seconds: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    url: String,
    expires_at: String,
}

/// `POST /v1/portal/sessions`: a short-lived link to the portal for this tenant and mode.
#[utoipa::path(
    post,
    path = "/v1/portal/sessions",
    tag = "portal",
    request_body = Option<SessionRequest>,
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn create_session(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<SessionView>> {
    let r: SessionRequest = body.parse_or_default()?;
    let ttl = r.expires_in_seconds.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(Error(ApiError::invalid(format!("expiresInSeconds must be 1 to {MAX_TTL_SECS}"))));
    }
    if let Some(ids) = &r.subscription_ids {
        if ids.is_empty() || ids.len() > MAX_SUBSCRIPTIONS as usize {
            return Err(Error(ApiError::invalid(format!("subscriptionIds must name 1 to {MAX_SUBSCRIPTIONS}"))));
        }
        for id in ids {
            if id.len() > 200 || state.store.get_subscription(&scope, id).await?.is_none() {
                return Err(Error(ApiError::invalid(format!("subscriptionIds: no webhook `{id}`"))));
            }
        }
    }
    let token = smile_core::ids::new_token();
    let expires_ms = now_ms() + ttl as i64 * 1000;
    let body = serde_json::json!({ "expiresMs": expires_ms, "only": r.subscription_ids });
    let document = Document::new(SESSION, &token, &scope, body);
    state.store.put_documents(vec![document]).await?;
    Ok(Data(SessionView {
        url: format!("{}/portal#token={token}", state.public_url),
        expires_at: format_ms(expires_ms),
    }))
}

fn expired() -> Error {
    Error(ApiError::new(ErrorCode::InvalidToken, "this portal link is invalid or has expired; ask for a new one"))
}

fn bearer(request: &Request) -> String {
    request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn session_of(state: &AppState, token: &str) -> Result<PortalGrant> {
    if token.is_empty() || token.len() > 128 {
        return Err(expired());
    }
    let session = state.store.document_by_id(SESSION, token).await?.ok_or_else(expired)?;
    let expires_ms = session.body["expiresMs"].as_i64().unwrap_or(0);
    if expires_ms <= now_ms() {
        return Err(expired());
    }
    let only = serde_json::from_value(session.body["only"].clone()).unwrap_or(None);
    Ok(PortalGrant { scope: session.scope, only, expires_ms })
}

/// Authenticates a portal call and keeps it to the session's subscriptions: an id in the path
/// (a subscription's, or a delivery's) outside them answers 404, as another tenant's would.
pub(crate) async fn grant(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let (token, path) = (bearer(&request), request.uri().path().to_owned());
    let grant = match session_of(&state, &token).await {
        Ok(grant) => grant,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = allowed(&state, &grant, &path).await {
        return error.into_response();
    }
    request.extensions_mut().insert(grant);
    next.run(request).await
}

async fn allowed(state: &AppState, grant: &PortalGrant, path: &str) -> Result<()> {
    let Some(only) = &grant.only else { return Ok(()) };
    let mut segments = path.trim_start_matches("/portal/api/").split('/');
    let subscription = match (segments.next(), segments.next()) {
        (Some("webhooks"), Some(id)) => id.to_owned(),
        (Some("deliveries"), Some(id)) => match state.store.get_delivery(&grant.scope, id).await? {
            Some(delivery) => delivery.subscription_id,
            None => return Err(Error(ApiError::missing("delivery"))),
        },
        _ => return Ok(()),
    };
    if only.contains(&subscription) { Ok(()) } else { Err(Error(ApiError::missing("webhook"))) }
}

/// The subscriptions a session may see.
async fn visible(state: &AppState, grant: &PortalGrant) -> Result<Vec<Subscription>> {
    let page = PageRequest { size: MAX_SUBSCRIPTIONS, before_seq: None };
    let all = state.store.list_subscriptions(&grant.scope, &page).await?.items;
    Ok(all.into_iter().filter(|s| grant.only.as_ref().is_none_or(|only| only.contains(&s.id))).collect())
}

/// Deliveries of the last 24 hours by status.
#[derive(Serialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct Counts {
    succeeded: u64,
    failed: u64,
    pending: u64,
    cancelled: u64,
}

impl Counts {
    fn add(&mut self, status: DeliveryStatus, n: u64) {
        match status {
            DeliveryStatus::Succeeded => self.succeeded += n,
            DeliveryStatus::Failed => self.failed += n,
            DeliveryStatus::Pending => self.pending += n,
            DeliveryStatus::Cancelled => self.cancelled += n,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    #[serde(flatten)]
    subscription: SubscriptionView,
    /// When its current run of failures began, if it is failing.
    failing_since: Option<String>,
    last_day: Counts,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MinuteView {
    minute: String,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverviewView {
    mode: &'static str,
    expires_at: String,
    subscriptions: Vec<HealthView>,
    /// Deliveries created per minute over the last 24 hours, by status; minutes without any
    /// are left out.
    minutes: Vec<MinuteView>,
    since: String,
}

/// `GET /portal/api/overview`: the session's subscriptions, each with its health, and the chart.
pub async fn overview(
    State(state): State<AppState>,
    Extension(grant): Extension<PortalGrant>,
) -> Result<Data<OverviewView>> {
    let since = now_ms() - DAY_MS;
    let mut minutes: BTreeMap<i64, Counts> = BTreeMap::new();
    let mut subscriptions = Vec::new();
    for sub in visible(&state, &grant).await? {
        let mut last_day = Counts::default();
        for c in state.store.delivery_counts(&grant.scope, &sub.id, since).await? {
            last_day.add(c.status, c.count);
            minutes.entry(c.minute_ms).or_default().add(c.status, c.count);
        }
        subscriptions.push(HealthView {
            failing_since: sub.failing_since_ms.map(format_ms),
            subscription: SubscriptionView::from(&sub),
            last_day,
        });
    }
    Ok(Data(OverviewView {
        mode: grant.scope.mode.as_str(),
        expires_at: format_ms(grant.expires_ms),
        subscriptions,
        minutes: minutes.into_iter().map(|(m, counts)| MinuteView { minute: format_ms(m), counts }).collect(),
        since: format_ms(since),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActiveRequest {
    active: bool,
}

/// `POST /portal/api/webhooks/{id}/active`: disables or re-enables (clearing an automatic disable).
pub async fn set_active(
    State(state): State<AppState>,
    Extension(grant): Extension<PortalGrant>,
    crate::extract::Id(id): crate::extract::Id,
    body: JsonBody,
) -> Result<Data<SubscriptionView>> {
    let r: ActiveRequest = body.parse()?;
    let patch = SubscriptionPatch { active: Some(r.active), ..SubscriptionPatch::default() };
    crate::routes::webhooks::save(&state, &grant.scope, &id, patch).await
}
