//! `/v1/events`: what was published to this tenant and mode.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Data, Error, Result};
use crate::extract::{Id, QueryParams};
use crate::views::{ListView, event_json};
use axum::extract::State;
use smile_core::{ApiError, EventType, timefmt};
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
