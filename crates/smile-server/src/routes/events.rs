//! `/v1/events`: what was published to this tenant and mode, and sandbox triggers.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Data, Error, Published, Result};
use crate::extract::{Id, IdempotencyKey, JsonBody, QueryParams};
use crate::views::{ListView, event_json};
use axum::extract::State;
use smile_core::{ApiError, ErrorCode, EventType, Mode, timefmt};
use smile_store::EventFilter;

fn bound(q: &QueryParams, name: &str, end: bool) -> Result<Option<i64>> {
    let Some(text) = q.get(name) else {
        return Ok(None);
    };
    let ms = timefmt::parse_time(text)
        .ok_or_else(|| Error(ApiError::invalid(format!("{name} must be yyyy-MM-dd or yyyy-MM-ddTHH:mm:ssZ"))))?;
    // An end date covers that whole day.
    Ok(Some(if end && timefmt::is_date_only(text) { ms + 86_400_000 } else { ms }))
}

/// `GET /v1/events?type=&startDate=&endDate=&size=&cursor=`
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(("type" = Option<String>, Query), ("startDate" = Option<String>, Query), ("endDate" = Option<String>, Query), ("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn list(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    q: QueryParams,
) -> Result<Data<ListView<serde_json::Value>>> {
    let event_type = match q.get("type") {
        Some(t) => Some(
            EventType::from_name(t)
                .ok_or_else(|| Error(ApiError::invalid(format!("unknown event type `{t}`"))))?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let filter =
        EventFilter { event_type, from_ms: bound(&q, "startDate", false)?, to_ms: bound(&q, "endDate", true)? };
    let page = state.store.list_events(&scope, &filter, &q.page()?).await?;
    Ok(Data(ListView::of(page, |e| event_json(&e))))
}

/// `GET /v1/events/{id}`
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn get(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<serde_json::Value>> {
    let event = state.store.get_event(&scope, &id).await?.ok_or_else(|| Error(ApiError::missing("event")))?;
    Ok(Data(event_json(&event)))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TriggerRequest {
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "ACCOUNT_CONNECTED")]
    event_type: EventType,
    /// The event's `data`, checked against the type's schema; default: the type's sample.
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
}

/// `POST /v1/events`: publishes an event (the type's sample data unless given) to every
/// matching subscription of this tenant, as `smile trigger` does. Sandbox keys only.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body = TriggerRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: the same key within 24 hours answers the first event again")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn trigger(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody,
) -> Result<Published> {
    if scope.mode != Mode::Sandbox {
        return Err(Error(ApiError::new(
            ErrorCode::UnauthorizedAccess,
            "triggering events takes a sandbox key: production events come from the platform",
        )));
    }
    let request: TriggerRequest = body.parse()?;
    let data = request.data.unwrap_or_else(|| request.event_type.sample_data());
    Ok(Published(state.engine.publish_once(&scope, request.event_type, data, key.as_deref()).await?))
}
