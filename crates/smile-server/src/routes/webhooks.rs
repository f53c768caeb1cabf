//! `/v1/webhooks`: subscriptions, as the contract defines them, plus update, test send,
//! secret rotation and recovery.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Data, Done, Error, Published, Result};
use crate::extract::{Id, IdempotencyKey, JsonBody, QueryParams};
use crate::views::{ListView, SubscriptionView};
use axum::extract::State;
use serde::Deserialize;
use smile_core::catalog::ALL_EVENTS;
use smile_core::{ApiError, EventType, Mode, ids, timefmt};
use smile_signature::Secret;
use smile_store::{Ordering, Scope, Subscription, SubscriptionPatch};

const MAX_NAME: usize = 200;
const MAX_URL: usize = 500;
const MAX_SECRET: usize = 64;
const DEFAULT_OVERLAP_SECS: u64 = 24 * 3600;
const MAX_OVERLAP_SECS: u64 = 7 * 24 * 3600;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    name: String,
    url: String,
    event_types: Vec<String>,
    active: bool,
    /// Required for `hmac` signing; for `ed25519`, a `whsk_` key, or left out to have one made.
    secret: Option<String>,
    #[serde(default)]
    include_payload: bool,
    /// `hmac` (the default: a shared secret) or `ed25519` (Standard Webhooks `v1a`).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "ed25519")]
    signing: SigningScheme,
    /// `fifo`: one delivery at a time, in publish order; default `concurrent`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "concurrent")]
    ordering: Ordering,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateRequest {
    name: Option<String>,
    url: Option<String>,
    event_types: Option<Vec<String>>,
    active: Option<bool>,
    secret: Option<String>,
    include_payload: Option<bool>,
    #[schema(value_type = Option<String>, example = "fifo")]
    ordering: Option<Ordering>,
}

/// How a subscription's deliveries are signed.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SigningScheme {
    #[default]
    Hmac,
    Ed25519,
}

fn invalid(message: impl Into<String>) -> Error {
    Error(ApiError::invalid(message))
}

/// Refuses control characters (NUL, CR, LF, tab, …): they have no place in these fields,
/// and some stores cannot even hold them.
fn check_printable(field: &str, value: &str) -> Result<()> {
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} must not contain control characters")));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(invalid(format!("name must be 1 to {MAX_NAME} characters")));
    }
    check_printable("name", name)
}

/// Checks a secret given by the caller: a shared secret, or a `whsk_` ed25519 key that parses
/// (the prefix alone decides the scheme, so a broken key is refused rather than used as HMAC).
fn check_secret(secret: &str) -> Result<()> {
    let n = secret.chars().count();
    if n == 0 || n > MAX_SECRET {
        return Err(invalid(format!("secret must be 1 to {MAX_SECRET} characters")));
    }
    check_printable("secret", secret)?;
    Secret::parse(secret)
        .map(|_| ())
        .map_err(|e| invalid(format!("secret starts with `whsk_`, an ed25519 key, but {e}")))
}

/// The secret a subscription starts with, or turns to on rotation, when none is given.
pub(crate) fn new_secret(scheme: SigningScheme) -> String {
    match scheme {
        SigningScheme::Hmac => ids::new_subscription_id() + &ids::new_subscription_id()[..16],
        SigningScheme::Ed25519 => Secret::ed25519_from_seed(rand::random()),
    }
}

fn scheme_of(stored: &str) -> SigningScheme {
    match Secret::parse(stored) {
        Ok(Secret::Ed25519(_)) => SigningScheme::Ed25519,
        _ => SigningScheme::Hmac,
    }
}

/// The secret of a new subscription: checked against the scheme asked for, or made.
fn initial_secret(scheme: SigningScheme, given: Option<String>) -> Result<String> {
    let Some(secret) = given else {
        return match scheme {
            SigningScheme::Hmac => Err(invalid("secret is required (or choose \"signing\": \"ed25519\")")),
            SigningScheme::Ed25519 => Ok(new_secret(scheme)),
        };
    };
    check_secret(&secret)?;
    if scheme_of(&secret) != scheme {
        return Err(invalid(match scheme {
            SigningScheme::Ed25519 => "with \"signing\": \"ed25519\", secret must be a `whsk_` key, or left out",
            SigningScheme::Hmac => "a `whsk_` secret is an ed25519 key: add \"signing\": \"ed25519\"",
        }));
    }
    Ok(secret)
}

/// Checks a subscription URL and returns it normalised by the WHATWG URL parser (the form
/// stored, shown and delivered to). Spaces and control characters are refused rather than
/// silently dropped or escaped.
fn check_url(state: &AppState, url: &str, mode: Mode) -> Result<String> {
    if url.is_empty() || url.chars().count() > MAX_URL {
        return Err(invalid(format!("url must be 1 to {MAX_URL} characters")));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("url must not contain spaces or control characters"));
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("url is not a valid URL: {e}")))?;
    match (parsed.scheme(), mode) {
        ("https", _) | ("http", Mode::Sandbox) => {}
        ("http", Mode::Production) => {
            return Err(invalid("url must begin with https:// in production mode"));
        }
        _ => {
            return Err(invalid("url must begin with https:// (or http:// in sandbox mode)"));
        }
    }
    if parsed.host().is_none() {
        return Err(invalid("url must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("url must not carry credentials; sign with the secret instead"));
    }
    let normalised = parsed.to_string();
    if let Some(reason) = state.engine.url_refusal(&normalised, mode) {
        return Err(invalid(format!("url is not reachable from production: {reason}")));
    }
    Ok(normalised)
}

/// Checks and normalises event type names: each known or `ALL_EVENTS`, no repeats.
pub(crate) fn check_event_types(types: Vec<String>) -> Result<Vec<String>> {
    if types.is_empty() {
        return Err(invalid("eventTypes must name at least one event type (or ALL_EVENTS)"));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        if t != ALL_EVENTS && EventType::from_name(&t).is_none() {
            return Err(invalid(format!("unknown event type `{t}`; see GET /v1/eventTypes")));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// `GET /v1/webhooks`
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    params(("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn list(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<ListView<SubscriptionView>>> {
    let page = state.store.list_subscriptions(&scope, &q.page()?).await?;
    Ok(Data(ListView::of(page, |s| SubscriptionView::from(&s))))
}

/// `POST /v1/webhooks`
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body = CreateRequest,
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn create(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<SubscriptionView>> {
    let r: CreateRequest = body.parse()?;
    check_name(&r.name)?;
    let url = check_url(&state, &r.url, scope.mode)?;
    let secret = initial_secret(r.signing, r.secret)?;
    let event_types = check_event_types(r.event_types)?;
    let sub = Subscription {
        active: r.active,
        include_payload: r.include_payload,
        ordering: r.ordering,
        ..Subscription::new(scope, r.name, url, event_types, secret, timefmt::now_ms())
    };
    state.store.insert_subscription(sub.clone()).await?;
    state.engine.subscription_changed(&sub).await;
    Ok(Data(SubscriptionView::from(&sub)))
}

async fn find(state: &AppState, scope: &Scope, id: &str) -> Result<Subscription> {
    state.store.get_subscription(scope, id).await?.ok_or_else(|| Error(ApiError::missing("webhook")))
}

/// Applies a change in one statement (never from a stale read) and tells the engine.
pub(crate) async fn save(
    state: &AppState,
    scope: &Scope,
    id: &str,
    patch: SubscriptionPatch,
) -> Result<Data<SubscriptionView>> {
    let sub = state
        .store
        .patch_subscription(scope, id, &patch, timefmt::now_ms())
        .await?
        .ok_or_else(|| Error(ApiError::missing("webhook")))?;
    state.engine.subscription_changed(&sub).await;
    Ok(Data(SubscriptionView::from(&sub)))
}

/// `GET /v1/webhooks/{id}`
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn get(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<SubscriptionView>> {
    let sub = find(&state, &scope, &id).await?;
    let blocked = match sub.ordering {
        Ordering::Fifo => state.store.blocked_head(&scope, &id).await?,
        Ordering::Concurrent => None,
    };
    Ok(Data(SubscriptionView::from(&sub).blocked_by(blocked)))
}

/// `PATCH /v1/webhooks/{id}`: changes the fields given. Activating clears a disable.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    request_body = UpdateRequest,
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn update(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    body: JsonBody,
) -> Result<Data<SubscriptionView>> {
    let r: UpdateRequest = body.parse()?;
    if let Some(name) = &r.name {
        check_name(name)?;
    }
    let url = r.url.as_deref().map(|url| check_url(&state, url, scope.mode)).transpose()?;
    let event_types = r.event_types.map(check_event_types).transpose()?;
    if let Some(secret) = &r.secret {
        check_secret(secret)?;
    }
    let patch = SubscriptionPatch {
        name: r.name,
        url,
        event_types,
        active: r.active,
        secret: r.secret,
        previous_secret_until_ms: None,
        include_payload: r.include_payload,
        ordering: r.ordering,
    };
    save(&state, &scope, &id, patch).await
}

/// `DELETE /v1/webhooks/{id}`: its pending deliveries are cancelled.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn delete(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Done> {
    if !state.store.delete_subscription(&scope, &id).await? {
        return Err(Error(ApiError::missing("webhook")));
    }
    state.engine.subscription_deleted(&id).await;
    Ok(Done)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestRequest {
    #[schema(value_type = Option<String>, example = "ACCOUNT_CONNECTED")]
    event_type: Option<EventType>,
}

/// `POST /v1/webhooks/{id}/test`: a sample event to this subscription only.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    tag = "webhooks",
    request_body = Option<TestRequest>,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: the same key within 24 hours answers the first event again")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn test(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody,
) -> Result<Published> {
    let r: TestRequest = body.parse_or_default()?;
    Ok(Published(state.engine.send_test(&scope, &id, r.event_type, key.as_deref()).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateRequest {
    secret: Option<String>,
    overlap_seconds: Option<u64>,
}

/// `POST /v1/webhooks/{id}/rotateSecret`: a new secret; the old one keeps signing too
/// (a second signature in each header) for the overlap window.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotateSecret",
    tag = "webhooks",
    request_body = Option<RotateRequest>,
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn rotate_secret(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    body: JsonBody,
) -> Result<Data<SubscriptionView>> {
    let r: RotateRequest = body.parse_or_default()?;
    let overlap = r.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECS);
    if overlap > MAX_OVERLAP_SECS {
        return Err(invalid(format!("overlapSeconds must be at most {MAX_OVERLAP_SECS}")));
    }
    let secret = match r.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => new_secret(scheme_of(&find(&state, &scope, &id).await?.secret)),
    };
    let until = timefmt::now_ms() + overlap as i64 * 1000;
    let patch = SubscriptionPatch {
        secret: Some(secret),
        previous_secret_until_ms: Some(until),
        ..SubscriptionPatch::default()
    };
    save(&state, &scope, &id, patch).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecoverRequest {
    since: String,
}

/// `POST /v1/webhooks/{id}/recover`: sends again every failed delivery created since `since`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/recover",
    tag = "webhooks",
    request_body = RecoverRequest,
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn recover(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    body: JsonBody,
) -> Result<Data<serde_json::Value>> {
    let r: RecoverRequest = body.parse()?;
    let since = timefmt::parse_time(&r.since)
        .ok_or_else(|| invalid("since must be a date (yyyy-MM-dd) or a date-time (yyyy-MM-ddTHH:mm:ssZ)"))?;
    let sub = find(&state, &scope, &id).await?;
    if !sub.active {
        return Err(invalid("the webhook is inactive; activate it first"));
    }
    let recovered = state.store.recover_deliveries(&scope, &id, since, timefmt::now_ms()).await?;
    let count = recovered.len();
    state.engine.deliveries_due_now(&id).await;
    Ok(Data(serde_json::json!({ "recovered": count })))
}
