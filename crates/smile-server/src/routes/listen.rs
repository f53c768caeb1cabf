//! `/v1/listen`: sessions of `smile listen`, which brings a tenant's webhooks to a developer's
//! laptop. A session is a subscription to `listen://<session>`; the engine signs and logs its
//! attempts as for any other, and hands them to the CLI polling here, which forwards each to
//! its local URL and reports the status back as the attempt's result. A session whose CLI stops
//! polling ends, and its subscription is deleted.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Data, Done, Error, Result};
use crate::extract::{Id, JsonBody, QueryParams};
use crate::routes::webhooks::{SigningScheme, check_event_types, new_secret};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smile_core::catalog::ALL_EVENTS;
use smile_core::{ApiError, ids, timefmt};
use smile_delivery::relay::{RELAY_SCHEME, RelayError, RelayReport};
use smile_store::Subscription;
use std::time::Duration;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OpenRequest {
    /// Event types to receive; default every type.
    event_types: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    session_id: String,
    subscription_id: String,
    /// The session's signing secret, for the local app to verify `Smile-Signature` with.
    secret: String,
    /// The same, as a Standard Webhooks library takes it.
    standard_secret: String,
    /// How long the session lives without a poll.
    idle_timeout_seconds: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    token: String,
    event_id: String,
    headers: std::collections::BTreeMap<&'static str, String>,
    /// The exact body to forward (the signatures cover these bytes).
    body: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReportRequest {
    token: String,
    /// What the local URL answered; none if it could not be reached.
    status: Option<u16>,
    latency_ms: u64,
    response_body: Option<String>,
    error: Option<String>,
}

fn no_session(_: RelayError) -> Error {
    Error(ApiError::missing("listen session"))
}

/// `POST /v1/listen`: opens a session and its subscription.
#[utoipa::path(
    post,
    path = "/v1/listen",
    tag = "listen",
    request_body = Option<OpenRequest>,
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn open(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Data<SessionView>> {
    let r: OpenRequest = body.parse_or_default()?;
    let event_types = check_event_types(r.event_types.unwrap_or_else(|| vec![ALL_EVENTS.to_owned()]))?;
    let session_id = ids::new_id("ls-");
    let secret = new_secret(SigningScheme::Hmac);
    let name = format!("smile listen {session_id}");
    let url = format!("{RELAY_SCHEME}{session_id}");
    let sub = Subscription {
        include_payload: true,
        ..Subscription::new(scope.clone(), name, url, event_types, secret.clone(), timefmt::now_ms())
    };
    state.store.insert_subscription(sub.clone()).await?;
    state.engine.relays().open(&session_id, scope, &sub.id);
    state.engine.subscription_changed(&sub).await;
    Ok(Data(SessionView {
        session_id,
        subscription_id: sub.id,
        standard_secret: smile_signature::standard_key_for(secret.as_bytes()),
        secret,
        idle_timeout_seconds: state.listen_idle.as_secs(),
    }))
}

/// `GET /v1/listen/{id}/next?waitSeconds=`: the next attempt to forward, waiting for one up to
/// `waitSeconds` (default and most: half the idle timeout); `data` is null if none came.
#[utoipa::path(
    get,
    path = "/v1/listen/{id}/next",
    tag = "listen",
    params(("id" = String, Path), ("waitSeconds" = Option<u64>, Query)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn next(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    q: QueryParams,
) -> Result<Data<Option<RequestView>>> {
    let most = state.listen_idle / 2;
    let wait = match q.get("waitSeconds") {
        Some(text) => {
            let secs: u64 = text.parse().map_err(|_| Error(ApiError::invalid("waitSeconds must be a whole number")))?;
            Duration::from_secs(secs).min(most)
        }
        None => most,
    };
    let next = state.engine.relays().next(&id, &scope, wait).await.map_err(no_session)?;
    Ok(Data(next.map(|r| RequestView {
        token: r.token,
        event_id: r.event_id,
        headers: r.headers.into_iter().collect(),
        body: String::from_utf8_lossy(&r.body).into_owned(),
    })))
}

/// `POST /v1/listen/{id}/results`: what the local URL answered to one attempt.
#[utoipa::path(
    post,
    path = "/v1/listen/{id}/results",
    tag = "listen",
    request_body = ReportRequest,
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn report(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    body: JsonBody,
) -> Result<Done> {
    let r: ReportRequest = body.parse()?;
    let report = RelayReport {
        status: r.status,
        latency: Duration::from_millis(r.latency_ms),
        response_body: r.response_body.map(|b| b.chars().take(512).collect()),
        error: r.error.map(|e| e.chars().take(512).collect()),
    };
    state.engine.relays().report(&id, &scope, &r.token, report).map_err(no_session)?;
    Ok(Done)
}

/// `DELETE /v1/listen/{id}`: ends the session and deletes its subscription.
#[utoipa::path(
    delete,
    path = "/v1/listen/{id}",
    tag = "listen",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn close(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Done> {
    if state.engine.relays().get(&id, &scope).is_none() {
        return Err(no_session(RelayError::NoSession));
    }
    end(&state, &id).await;
    Ok(Done)
}

/// Ends a session: no more attempts go to it, and its subscription is deleted.
async fn end(state: &AppState, id: &str) {
    let Some(session) = state.engine.relays().close(id) else { return };
    match state.store.delete_subscription(&session.scope, &session.subscription_id).await {
        Ok(_) => state.engine.subscription_deleted(&session.subscription_id).await,
        Err(error) => tracing::warn!(%error, session = id, "could not delete a listen session's subscription"),
    }
}

/// Ends the sessions whose CLI stopped polling, checking a few times per idle timeout.
pub(crate) fn reap_idle_sessions(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(state.listen_idle / 4);
        loop {
            every.tick().await;
            for id in state.engine.relays().idle(state.listen_idle) {
                tracing::info!(session = %id, "a `smile listen` session stopped polling; ending it");
                end(&state, &id).await;
            }
        }
    })
}
