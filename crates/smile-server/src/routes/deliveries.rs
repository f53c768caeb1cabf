//! Deliveries and their attempt logs, and replays.

use crate::AppState;
use crate::auth::TenantKey;
use crate::envelope::{Data, Error, Result};
use crate::extract::{Id, QueryParams};
use crate::views::{DeliveryView, ListView};
use axum::extract::State;
use smile_core::{ApiError, timefmt};
use smile_store::{DeliveriesOf, Delivery, Page, Scope};

async fn with_attempts(state: &AppState, page: Page<Delivery>) -> Result<ListView<DeliveryView>> {
    let mut items = Vec::with_capacity(page.items.len());
    for d in page.items {
        let attempts = state.store.list_attempts(&d.id).await?;
        items.push(DeliveryView::new(d, attempts));
    }
    Ok(ListView::new(items, page.next_cursor))
}

/// `GET /v1/webhooks/{id}/deliveries`
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "deliveries",
    params(("id" = String, Path), ("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn of_subscription(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    q: QueryParams,
) -> Result<Data<ListView<DeliveryView>>> {
    if state.store.get_subscription(&scope, &id).await?.is_none() {
        return Err(Error(ApiError::missing("webhook")));
    }
    let page = state.store.list_deliveries(&scope, DeliveriesOf::Subscription(&id), &q.page()?).await?;
    Ok(Data(with_attempts(&state, page).await?))
}

/// `GET /v1/events/{id}/deliveries`
#[utoipa::path(
    get,
    path = "/v1/events/{id}/deliveries",
    tag = "deliveries",
    params(("id" = String, Path), ("size" = Option<u32>, Query, description = "1 to 150, default 10"), ("cursor" = Option<String>, Query, description = "a previous nextCursor")),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn of_event(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
    q: QueryParams,
) -> Result<Data<ListView<DeliveryView>>> {
    if state.store.get_event(&scope, &id).await?.is_none() {
        return Err(Error(ApiError::missing("event")));
    }
    let page = state.store.list_deliveries(&scope, DeliveriesOf::Event(&id), &q.page()?).await?;
    Ok(Data(with_attempts(&state, page).await?))
}

async fn view(state: &AppState, scope: &Scope, id: &str) -> Result<DeliveryView> {
    let d = state.store.get_delivery(scope, id).await?.ok_or_else(|| Error(ApiError::missing("delivery")))?;
    let attempts = state.store.list_attempts(&d.id).await?;
    Ok(DeliveryView::new(d, attempts))
}

/// `GET /v1/deliveries/{id}`
#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}",
    tag = "deliveries",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn get(TenantKey(scope): TenantKey, State(state): State<AppState>, Id(id): Id) -> Result<Data<DeliveryView>> {
    Ok(Data(view(&state, &scope, &id).await?))
}

/// `POST /v1/deliveries/{id}/retry`: one more attempt, now.
#[utoipa::path(
    post,
    path = "/v1/deliveries/{id}/retry",
    tag = "deliveries",
    params(("id" = String, Path)),
    responses((status = 200, description = "success, in the Smile envelope")),
    security(("basic" = []))
)]
pub async fn retry(
    TenantKey(scope): TenantKey,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Data<DeliveryView>> {
    let delivery = state
        .store
        .retry_delivery(&scope, &id, timefmt::now_ms())
        .await?
        .ok_or_else(|| Error(ApiError::missing("delivery")))?;
    if delivery.status == smile_store::DeliveryStatus::Cancelled {
        return Err(Error(ApiError::invalid("the delivery was cancelled with its webhook")));
    }
    state.engine.deliveries_due_now(&delivery.subscription_id).await;
    Ok(Data(view(&state, &scope, &id).await?))
}
